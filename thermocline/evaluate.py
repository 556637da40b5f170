"""From the command line to the model's evaluators: workloads, classification passes, and the
result tables of ``thermocline run`` and ``thermocline eval``."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from model import hugepages, migration, paging
from model import trace as tr
from model import workload as wl
from model.scanned_guest import ScannedGuest
from model.scanner import ScanConfig

__all__ = ["Workload", "load_trace", "synthetic", "classify", "migrate", "hugepage",
           "prefetch", "MIGRATE_HEADERS", "HUGEPAGE_HEADERS", "PREFETCH_HEADERS",
           "migrate_rows", "hugepage_rows", "prefetch_rows"]


@dataclass
class Workload:
    """Slices over a dense range of ``npages`` guest pages, and where they came from."""

    name: str
    npages: int
    slices: list = field(repr=False)
    source: dict = field(default_factory=dict)

    @property
    def distinct_pages(self) -> int:
        return len(np.unique(np.concatenate([s.pages for s in self.slices])))


def load_trace(path=None) -> Workload:
    """A trace file (default: the bundled trace), its 2 MiB regions packed together
    (:meth:`model.trace.TraceReader.compact_slices`).

    Raises
    ------
    model.trace.TraceError
        Unreadable, malformed or empty trace.
    """
    p = tr.bundled_trace() if path is None else Path(path)
    if not p.is_file():
        raise tr.TraceError(f"trace {str(p)!r} does not exist or is not a file")
    reader = tr.TraceReader(p)
    npages, it = reader.compact_slices()
    slices = list(it)
    if not slices or npages == 0:
        raise tr.TraceError(f"{p}: the trace touches no page")
    return Workload(p.stem, npages, slices, {"trace": str(p), "slices": len(slices),
                                              "page_size": reader.page_size})


def synthetic(name: str, npages: int, touches: int, slices: int, seed: int = 0) -> Workload:
    """A synthetic workload of :mod:`model.workload`."""
    s = list(wl.make(name, npages, touches, slices, seed=seed))
    return Workload(f"{name}-{npages}", npages, s,
                    {"workload": name, "npages": npages, "touches": touches,
                     "slices": slices, "seed": seed})


def classify(w: Workload, *, levels: int = 4, progress: Callable[[], None] | None = None
             ) -> dict:
    """One scan pass after each slice over an EPT mapping the workload's pages.

    Returns ``passes`` (per pass: ``pass``, ``touched``, ``accessed``, ``writes``,
    ``histogram``, ``candidates``) and ``levels`` (``int8[npages, passes]``: each page's level
    after each pass, for the heatmap).
    """
    guest = ScannedGuest(w.npages, scan=ScanConfig(levels=levels))
    passes = []
    mat = np.zeros((w.npages, len(w.slices)), dtype=np.int8)
    for i, s in enumerate(w.slices):
        guest.touch(s.pages, s.writes)
        st = guest.scan().stats
        lv = guest.levels()
        mat[:, i] = lv
        passes.append({"pass": i, "touched": int(len(s.pages)), "accessed": st.accessed,
                       "writes": st.writes,
                       "histogram": np.bincount(lv, minlength=levels).tolist(),
                       "candidates": len(st.candidates)})
        if progress is not None:
            progress()
    return {"passes": passes, "levels": mat}


MIGRATE_HEADERS = ["bandwidth MB/s", "policy", "pages sent", "rounds", "final pages",
                   "total ms", "downtime ms", "converged"]
HUGEPAGE_HEADERS = ["K", "policy", "TLB misses", "4K misses", "2M misses", "vs first-come"]
PREFETCH_HEADERS = ["policy", "faults", "prefetched", "used", "wasted", "evictions"]


def migrate(w: Workload, bandwidths_mb, progress=None, **config) -> list[dict]:
    """:func:`model.migration.compare` at bandwidths given in MB/s (10**6 bytes/s)."""
    return migration.compare(w.slices, w.npages, [int(b * 1e6) for b in bandwidths_mb],
                             progress=progress, **config)


def migrate_rows(rows: list[dict]) -> list[list]:
    return [[f"{r['bandwidth'] / 1e6:g}", r["policy"], r["pages_sent"], r["rounds"],
             r["final_pages"], f"{r['total_s'] * 1e3:.1f}", f"{r['downtime_s'] * 1e3:.2f}",
             "yes" if r["converged"] else "no"] for r in rows]


def hugepage(w: Workload, ks, tlb: hugepages.TlbConfig, progress=None, **lp) -> list[dict]:
    """:func:`model.hugepages.sweep`; ``lp`` holds :class:`LargePageConfig` fields."""
    from model.prioritizer import LargePageConfig
    return hugepages.sweep(w.slices, w.npages, ks, tlb,
                           lp=LargePageConfig(**{"warmup": 2, "threshold": 1, **lp}),
                           progress=progress)


def hugepage_rows(rows: list[dict]) -> list[list]:
    first = {r["k"]: r["misses"] for r in rows if r["policy"] == "first_come"}
    return [[r["k"], r["policy"], r["misses"], r["misses_4k"], r["misses_2m"],
             f"{r['misses'] / max(first[r['k']], 1):.2f}"] for r in rows]


def default_memory(w: Workload) -> int:
    """Half the distinct pages the workload touches, and enough for the largest prefetch."""
    return max(w.distinct_pages // 2, 32)


def prefetch(w: Workload, progress=None, **config) -> list[dict]:
    """:func:`model.paging.compare`; ``config`` holds :class:`PagingConfig` fields
    (``memory_pages`` defaults to :func:`default_memory`)."""
    config.setdefault("memory_pages", default_memory(w))
    rows = paging.compare(w.slices, w.npages, paging.PagingConfig(**config), progress=progress)
    for r in rows:
        r["memory_pages"] = config["memory_pages"]
    return rows


def prefetch_rows(rows: list[dict]) -> list[list]:
    return [[r["policy"], r["faults"], r["prefetched"], r["used"], r["wasted"],
             r["evictions"]] for r in rows]
