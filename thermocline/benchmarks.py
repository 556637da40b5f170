"""Benchmarks of the golden model. Each returns a JSON-able dict; none prints or judges.

``bench_scan``: the scanner's compiled pass (:meth:`model.scanner.Scanner.scan_pass`) over a
guest of 4 KiB pages, against the memory bandwidth of the same machine for the same bytes.
"""

import platform
import resource
import time

import numpy as np

from model.memory import PhysMem
from model.pagetable import FrameAllocator, PageTable, SIZE_4K
from model.scanner import ScanConfig, Scanner
from thermocline.layouts import EPT_ENTRY

__all__ = ["bench_scan"]


def _leaf_rows(mem: PhysMem, pt: PageTable, entries: int) -> np.ndarray:
    """Pool rows of the leaf tables of a tree built by ``map_range(0, ..., entries)``."""
    vas = np.arange(0, entries * SIZE_4K, 512 * SIZE_4K, dtype=np.int64)
    addrs = [pt.entry_addr(int(va), 1) - 8 * ((int(va) >> 12) & 511) for va in vas]
    return mem.slot[np.asarray(addrs, dtype=np.int64) >> 12].astype(np.int64)


def bench_scan(entries: int = 16 * 2**20, passes: int = 3, *, seed: int = 0) -> dict:
    """Time scan passes over an EPT of ``entries`` 4 KiB leaves (default: a 64 GiB guest).

    The host memory holds the guest frames (identity mapped) followed by the tables. Before
    every pass a fresh random half of the leaves gets its A bit set (outside the timing).
    One warm-up pass (which includes compiling the kernel, if it is not cached) is followed
    by ``passes`` timed passes. The bandwidth reference is the best of five numpy in-place
    read-modify-write sweeps over an array as large as the leaf tables.

    Parameters
    ----------
    entries : int
        Leaf entries (4 KiB pages) in the guest, >= 1.
    passes : int
        Timed passes, >= 1.
    seed : int
        Seed of the A-bit pattern.

    Returns
    -------
    dict
        ``entries``, ``leaf_tables``, ``passes``, ``build_s``, ``warmup_s``, ``pass_s``
        (every timed pass), ``best_s``, ``median_s``, ``best_entries_per_s``,
        ``median_entries_per_s``, ``writes_per_pass``, ``sweep_best_s``,
        ``sweep_entries_per_s``, ``ratio_to_bandwidth`` (best scan rate / sweep rate),
        ``peak_rss_mib``, ``seed`` and ``platform``.
    """
    if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
        raise ValueError(f"entries must be a positive integer, got {entries!r}")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be a positive integer, got {passes!r}")
    rng = np.random.default_rng(seed)

    t0 = time.perf_counter()
    guest = entries * SIZE_4K
    tables = 1 + sum(-(-entries // 512**k) for k in (1, 2, 3))    # every table of the tree
    table_base = (guest + (1 << 21) - 1) & ~((1 << 21) - 1)
    mem = PhysMem(table_base + tables * SIZE_4K)
    pt = PageTable(mem, FrameAllocator(table_base, mem.size), "ept")
    pt.map_range(0, 0, entries)
    rows = _leaf_rows(mem, pt, entries)
    build_s = time.perf_counter() - t0

    scanner = Scanner(ScanConfig(fmt="ept"))
    a_bit = np.uint64(EPT_ENTRY.A.mask)

    def set_half():
        block = mem.pool[rows]
        block |= np.where(rng.random(block.shape) < 0.5, a_bit, np.uint64(0))
        mem.pool[rows] = block

    set_half()
    t0 = time.perf_counter()
    scanner.scan_pass(mem, pt.root)
    warmup_s = time.perf_counter() - t0

    times, writes = [], []
    for _ in range(passes):
        set_half()
        t0 = time.perf_counter()
        stats = scanner.scan_pass(mem, pt.root)
        times.append(time.perf_counter() - t0)
        writes.append(stats.writes)

    sweep = np.zeros(len(rows) * 512, dtype=np.uint64)
    sweep_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        np.bitwise_xor(sweep, a_bit, out=sweep)
        sweep_times.append(time.perf_counter() - t0)
    del sweep

    best, median = min(times), float(np.median(times))
    sweep_best = min(sweep_times)
    return {
        "entries": entries,
        "leaf_tables": int(len(rows)),
        "passes": passes,
        "build_s": build_s,
        "warmup_s": warmup_s,
        "pass_s": times,
        "best_s": best,
        "median_s": median,
        "best_entries_per_s": entries / best,
        "median_entries_per_s": entries / median,
        "writes_per_pass": writes,
        "sweep_best_s": sweep_best,
        "sweep_entries_per_s": len(rows) * 512 / sweep_best,
        "ratio_to_bandwidth": (entries / best) / (len(rows) * 512 / sweep_best),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seed": seed,
        "platform": {"machine": platform.machine(), "python": platform.python_version(),
                     "numpy": np.__version__},
    }
