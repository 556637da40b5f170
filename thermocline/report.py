"""Result files: every benchmark and evaluation writes JSON and a Markdown table."""

import json
import platform
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["write_results", "markdown_table", "rich_table", "machine"]


def machine() -> dict:
    """What the figures were measured on."""
    import os
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "system": platform.system()}


def markdown_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def rich_table(title: str, headers: list[str], rows: list[list]) -> Table:
    t = Table(title=title)
    for h in headers:
        t.add_column(h, justify="right" if h not in headers[:1] else "left")
    for row in rows:
        t.add_row(*(str(c) for c in row))
    return t


def write_results(out_dir: Path, name: str, data: dict, headers: list[str], rows: list[list],
                  console: Console | None = None) -> tuple[Path, Path]:
    """Write ``<name>.json`` (``data`` plus the machine) and ``<name>.md`` (the table)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{name}.json"
    md = out_dir / f"{name}.md"
    js.write_text(json.dumps({"machine": machine(), **data}, indent=2, default=_jsonable)
                  + "\n")
    md.write_text(f"# {name}\n\n" + markdown_table(headers, rows))
    if console is not None:
        console.print(rich_table(name, headers, rows))
    return js, md


def _jsonable(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
