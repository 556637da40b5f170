"""PNG figures of the evaluations (matplotlib, Agg backend): activity heatmap (page x time),
migration traffic per round, TLB misses against K."""

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["heatmap", "migration_rounds", "tlb_misses"]

#: Most page rows drawn in a heatmap; more pages are grouped (each row the hottest of its group).
MAX_ROWS = 1024


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap(levels: np.ndarray, path, *, title: str = "activity") -> Path:
    """Activity level of every page (rows) after every pass (columns)."""
    levels = np.asarray(levels)
    if levels.ndim != 2 or 0 in levels.shape:
        raise ValueError(f"heatmap needs a non-empty pages x passes array, got {levels.shape}")
    group = -(-levels.shape[0] // MAX_ROWS)
    if group > 1:
        pad = (-levels.shape[0]) % group
        levels = np.pad(levels, ((0, pad), (0, 0)))
        levels = levels.reshape(-1, group, levels.shape[1]).max(axis=1)
    fig, ax = plt.subplots(figsize=(8, 5))
    im = ax.imshow(levels, aspect="auto", interpolation="nearest", cmap="inferno",
                   origin="lower")
    ax.set_xlabel("scan pass (time slice)")
    ax.set_ylabel("guest page" + (f" (groups of {group})" if group > 1 else ""))
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="activity level")
    fig.tight_layout()
    return _save(fig, path)


def migration_rounds(rows: list[dict], path, *, title: str = "migration traffic") -> Path:
    """Pages sent per pre-copy round and in stop-and-copy, per bandwidth and policy."""
    if not rows:
        raise ValueError("no migration results to plot")
    bws = sorted({r["bandwidth"] for r in rows})
    fig, axes = plt.subplots(1, len(bws), figsize=(3.2 * len(bws) + 1, 3.8), squeeze=False,
                             sharey=True)
    for ax, bw in zip(axes[0], bws):
        for r in (r for r in rows if r["bandwidth"] == bw):
            y = list(r["per_round"]) + [r["final_pages"]]
            ax.plot(range(1, len(y) + 1), y, marker="o", ms=3, label=r["policy"])
        ax.set_title(f"{bw / 1e6:g} MB/s")
        ax.set_xlabel("round (last: stop-and-copy)")
        ax.set_yscale("symlog")
    axes[0][0].set_ylabel("pages sent")
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def tlb_misses(rows: list[dict], path, *, title: str = "TLB misses") -> Path:
    """TLB misses against the number K of large pages, one line per policy."""
    if not rows:
        raise ValueError("no large-page results to plot")
    fig, ax = plt.subplots(figsize=(6, 4))
    for policy in dict.fromkeys(r["policy"] for r in rows):
        pts = sorted((r["k"], r["misses"]) for r in rows if r["policy"] == policy)
        ax.plot([k for k, _ in pts], [m for _, m in pts], marker="o", label=policy)
    ax.set_xlabel("K (2 MiB pages)")
    ax.set_ylabel("TLB misses")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
