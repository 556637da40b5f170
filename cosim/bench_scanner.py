"""Scanner throughput: entries per cycle of a pass, against one 8-byte entry per cycle per
64-bit data lane.

Each case runs one pass of the RTL on the Amaranth simulator over :func:`bench_tree` (full
leaf tables under consecutive level-2 entries, a chosen fraction of leaves with A set, so the
pass writes those back) and checks it against the model before reporting. The memory takes a
request and a beat per cycle and answers reads ``latency`` cycles after their address.

Two figures per case: the *leaf-table phase* (from the first leaf-table beat to the last
leaf-table write or beat: what a large guest's pass is made of) and the *whole pass* (with
the walk of the three upper levels, one entry per cycle, which a small tree cannot amortize).
"""

import itertools

from .scan_rig import measure_throughput

__all__ = ["scanner_throughput"]


def scanner_throughput(widths=(64, 128, 256), latencies=(1, 10, 30),
                       changing=(0.0, 0.5, 1.0), *, tables: int = 16) -> dict:
    """One row per (data width, latency, fraction changing)."""
    rows = []
    for width, latency, change in itertools.product(widths, latencies, changing):
        r = measure_throughput(data_width=width, latency=latency, changing=change,
                               tables=tables)
        lanes = width // 64
        rows.append({
            "data_width": width, "latency": latency, "changing": change, "tables": tables,
            "cycles": r["cycles"], "entries_read": r["entries_read"], "writes": r["writes"],
            "leaf_entries_per_cycle": r["leaf_entries_per_cycle"],
            "leaf_ratio_to_limit": r["leaf_entries_per_cycle"] / lanes,
            "pass_entries_per_cycle": r["entries_per_cycle"],
            "pass_ratio_to_limit": r["entries_per_cycle"] / lanes,
        })
    return {"scanner_throughput": rows, "scanner_target_ratio": 0.95}
