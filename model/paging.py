"""Demand paging: a memory limit, faults served with the engine's prefetcher, Linux-style swap
readahead, or no prefetch.

Paging model (assumptions)
--------------------------
* A guest of ``npages`` 4 KiB pages runs a workload (a list of
  :class:`~model.workload.Slice`); every page touched in a slice is one reference, slices in
  order and pages ascending within a slice. Every page starts swapped out.
* At most ``memory_pages`` pages are resident. A reference to a non-resident page is a fault:
  the page is read in with the pages the policy prefetches; when memory is full, the least
  recently used resident pages are evicted first (a prefetched page counts as used at the
  time it is read in; the faulting page is the most recent).
* A prefetched page is *used* if it is referenced before it is evicted, else *wasted* (also
  when it is still unreferenced at the end): ``used + wasted == prefetched``.

Policies
--------
``"engine"``    The engine's prefetcher (:class:`model.engine.Engine`,
                :mod:`model.prefetcher`) on real tables: the guest maps its pages at
                ``BASE + 4 KiB * page`` with 4 KiB pages, the hypervisor's EPT maps a page's
                GPA exactly while it is resident. On a fault the prefetcher reads the guest
                PTEs around the faulting one (``window``, ``direction``, inside its leaf
                table) and names the non-resident GPAs, nearest first; all are read in.
``"readahead"`` Linux's VMA-based swap readahead: the window is ``hits + 2`` readahead hits
                since the last fault, rounded up to a power of two (at least 4), or 1 when
                there were no hits and the fault is not next to the previous one; at most
                ``readahead_max`` (8, ``1 << page_cluster``) and at least half the previous
                window. It extends forward after a fault one page above the previous fault,
                backward after one page below, else around the fault (``(win - 1) // 2``
                pages before it), clamped to the faulting page's 2 MiB region and the guest.
                Its non-resident pages are read in.
``"none"``      Only the faulting page.
"""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from thermocline.layouts import ENTRIES_PER_TABLE
from .engine import Engine, EngineConfig
from .pagetable import SIZE_4K
from .prefetcher import PrefetchConfig, PrefetchRequest
from .system import GuestSystem

__all__ = ["PagingConfig", "PagingResult", "readahead_window", "run", "compare", "POLICIES",
           "BASE"]

POLICIES = ("engine", "readahead", "none")
#: Guest virtual address of page 0.
BASE = 0x7F00_0000_0000


@dataclass(frozen=True, kw_only=True)
class PagingConfig:
    """Memory limit and prefetch settings.

    Parameters
    ----------
    memory_pages : int
        Resident pages at most; more than the largest prefetch (``2 * window`` and
        ``readahead_max``).
    window : int
        Engine prefetcher: PTEs considered on each side (1..511).
    direction : str
        Engine prefetcher: ``"forward"``, ``"backward"`` or ``"both"``.
    readahead_max : int
        Linux readahead: largest window, a power of two (``1 << page_cluster``).
    """

    memory_pages: int
    window: int = 4
    direction: str = "both"
    readahead_max: int = 8

    def __post_init__(self):
        PrefetchConfig(window=self.window, direction=self.direction)
        r = self.readahead_max
        if isinstance(r, bool) or not isinstance(r, int) or r < 1 or r & (r - 1):
            raise ValueError(f"PagingConfig: readahead_max must be a power of two, got {r!r}")
        m = self.memory_pages
        need = max(2 * self.window, r) + 1
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < need:
            raise ValueError(f"PagingConfig: memory_pages must be an integer >= {need} (more "
                             f"than the largest prefetch), got {m!r}")


@dataclass
class PagingResult:
    """``references``, ``faults``, ``prefetched``, ``used``, ``wasted`` and ``evictions``
    of one policy."""

    policy: str
    references: int
    faults: int
    prefetched: int
    used: int
    wasted: int
    evictions: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def readahead_window(fault: int, prev: int | None, hits: int, prev_win: int,
                     max_pages: int) -> int:
    """Linux's readahead window size for a fault at page ``fault`` (see the module
    documentation); ``prev`` is the previous fault's page (``None`` before the first)."""
    pages = hits + 2
    if pages == 2:
        if prev is None or abs(fault - prev) != 1:
            pages = 1
    else:
        up = 4
        while up < pages:
            up <<= 1
        pages = up
    return max(min(pages, max_pages), prev_win // 2)


def readahead_span(fault: int, prev: int | None, win: int, npages: int) -> range:
    """Pages Linux's readahead reads for a window of ``win`` pages, clamped to the faulting
    page's 2 MiB region and to the guest."""
    if win <= 1:
        return range(fault, fault + 1)
    if prev is not None and fault == prev + 1:
        lo, hi = fault, fault + win
    elif prev is not None and prev == fault + 1:
        lo, hi = fault - win + 1, fault + 1
    else:
        left = (win - 1) // 2
        lo, hi = fault - left, fault + win - left
    region = fault - fault % ENTRIES_PER_TABLE
    return range(max(lo, region, 0), min(hi, region + ENTRIES_PER_TABLE, npages))


class _EngineSide:
    """A guest mapping ``npages`` pages, its EPT kept equal to the resident set, and the
    engine whose prefetcher serves faults."""

    def __init__(self, npages: int, cfg: PagingConfig):
        regions = -(-npages // ENTRIES_PER_TABLE)
        tables = 4 * (regions + 8)
        self.system = GuestSystem(guest_ram=(regions * ENTRIES_PER_TABLE + tables) * SIZE_4K)
        self.space = self.system.new_space()
        first = self.system.alloc_data()
        for _ in range(1, npages):
            self.system.alloc_data()
        self.gpa0 = first
        for p in range(npages):
            self.space.map(BASE + p * SIZE_4K, first + p * SIZE_4K)
        host = self.system.host
        self.hpa = [host.translate(first + p * SIZE_4K) for p in range(npages)]
        for p in range(npages):
            host.unmap(first + p * SIZE_4K)
        self.engine = Engine(self.system.mem, hroot=self.system.hroot,
                             scan_root=host.root,
                             config=EngineConfig(prefetch=PrefetchConfig(
                                 window=cfg.window, direction=cfg.direction)))

    def load(self, page: int):
        self.system.host.map(self.gpa0 + page * SIZE_4K, self.hpa[page])

    def evict(self, page: int):
        self.system.host.unmap(self.gpa0 + page * SIZE_4K)

    def prefetch(self, page: int) -> list[int]:
        r = self.engine.fault(PrefetchRequest(BASE + page * SIZE_4K, self.space.root,
                                              self.system.hroot))
        if r.status != "ok":
            raise AssertionError(f"prefetcher could not look at page {page}: {r.status}")
        return [(g - self.gpa0) // SIZE_4K for g in r.gpas]


def _pages(slices, npages: int) -> list[np.ndarray]:
    if isinstance(npages, bool) or not isinstance(npages, (int, np.integer)) or npages < 1:
        raise ValueError(f"npages must be a positive integer, got {npages!r}")
    out = [np.asarray(s.pages, dtype=np.int64) for s in slices]
    if not out:
        raise ValueError("the workload has no slices")
    for i, p in enumerate(out):
        if len(p) and (p.min() < 0 or p.max() >= npages):
            raise ValueError(f"slice {i} touches a page outside 0..{npages - 1}")
    return out


def run(slices, npages: int, config: PagingConfig, policy: str) -> PagingResult:
    """Replay ``slices`` under the memory limit with ``policy``."""
    if policy not in POLICIES:
        raise ValueError(f"paging policy must be one of {POLICIES}, got {policy!r}")
    pages = _pages(slices, npages)
    cfg = config
    side = _EngineSide(npages, cfg) if policy == "engine" else None
    resident: OrderedDict[int, bool] = OrderedDict()    # page -> still an unused prefetch
    refs = faults = prefetched = used = evictions = 0
    prev, hits, prev_win = None, 0, 0

    def bring(page: int, unused: bool):
        nonlocal evictions
        while len(resident) >= cfg.memory_pages:
            victim, _ = resident.popitem(last=False)
            evictions += 1
            if side is not None:
                side.evict(victim)
        resident[page] = unused
        if side is not None:
            side.load(page)

    for sl in pages:
        for page in sl.tolist():
            refs += 1
            if page in resident:
                if resident[page]:
                    resident[page] = False
                    used += 1
                    hits += 1
                resident.move_to_end(page)
                continue
            faults += 1
            if policy == "engine":
                extra = side.prefetch(page)
            elif policy == "readahead":
                win = readahead_window(page, prev, hits, prev_win, cfg.readahead_max)
                extra = [p for p in readahead_span(page, prev, win, npages)
                         if p != page and p not in resident]
                prev, hits, prev_win = page, 0, win
            else:
                extra = []
            for p in extra:
                bring(p, True)
            prefetched += len(extra)
            bring(page, False)
    wasted = prefetched - used
    return PagingResult(policy, refs, faults, prefetched, used, wasted, evictions)


def compare(slices, npages: int, config: PagingConfig, progress=None) -> list[dict]:
    """Every policy on the same workload; ``progress()`` after each."""
    slices = list(slices)
    _pages(slices, npages)
    rows = []
    for policy in POLICIES:
        rows.append(run(slices, npages, config, policy).to_dict())
        if progress is not None:
            progress()
    return rows
