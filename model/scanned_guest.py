"""Guest RAM under an EPT watched by the engine's scanner, for the evaluations.

:class:`ScannedGuest` is what :mod:`model.migration`, :mod:`model.hugepages` and the ``run``
command share: every page of a workload mapped by a 4 KiB EPT leaf, the CPU's A/D updates
applied in bulk, and scan passes of the model engine.
"""

import numpy as np

from thermocline.layouts import EPT_ENTRY, ENTRIES_PER_TABLE
from .engine import Engine, EngineConfig, PassReport
from .interval import IntervalConfig
from .memory import PhysMem
from .pagetable import SIZE_2M, SIZE_4K, FrameAllocator, PageTable
from .scanner import ScanConfig

__all__ = ["ScannedGuest"]

_A = np.uint64(EPT_ENTRY.A.mask)
_D = np.uint64(EPT_ENTRY.D.mask)


class ScannedGuest:
    """Guest RAM of ``npages`` pages (rounded up to whole 2 MiB regions), mapped by an EPT
    with 4 KiB leaves (GPA = page * 4 KiB), and an :class:`~model.engine.Engine` scanning it.

    :meth:`touch` does what the CPU's MMU does when the guest touches pages: it sets the A bit
    (and D for writes) of their EPT leaves. :meth:`scan` runs one pass of the engine;
    :meth:`levels` reads every page's activity level back from its leaf.

    Parameters
    ----------
    npages : int
        Guest pages, at least 1.
    scan : ScanConfig
        Scanner settings (``fmt`` must be ``"ept"``).
    interval : IntervalConfig
        Scan-interval controller settings.
    """

    def __init__(self, npages: int, *, scan: ScanConfig | None = None,
                 interval: IntervalConfig | None = None):
        if isinstance(npages, bool) or not isinstance(npages, (int, np.integer)) \
                or npages < 1:
            raise ValueError(f"npages must be a positive integer, got {npages!r}")
        scan = scan or ScanConfig()
        if scan.fmt != "ept":
            raise ValueError(f"ScannedGuest builds an EPT; scan.fmt must be 'ept', "
                             f"got {scan.fmt!r}")
        self.npages = int(npages)
        regions = -(-self.npages // ENTRIES_PER_TABLE)
        self.regions = regions
        tables = regions + 2 * (regions // ENTRIES_PER_TABLE + 1) + 1
        table_bytes = tables * SIZE_4K
        data_base = -(-table_bytes // SIZE_2M) * SIZE_2M
        self.mem = PhysMem(data_base + regions * SIZE_2M)
        self.host = PageTable(self.mem, FrameAllocator(0, table_bytes), "ept")
        self.host.map_range(0, data_base, regions * ENTRIES_PER_TABLE)
        tables = np.array([self.host.entry_addr(r * SIZE_2M, 1) for r in range(regions)],
                          dtype=np.uint64)
        self.leaf_addr = (tables[:, None] + np.uint64(8)
                          * np.arange(ENTRIES_PER_TABLE, dtype=np.uint64)[None, :]).ravel()
        interval = interval or IntervalConfig(mode="fixed", period=1 << 20)
        self.engine = Engine(self.mem, hroot=self.host.pointer, scan_root=self.host.root,
                             config=EngineConfig(scan=scan, interval=interval))
        self._level = scan.fields.level

    def touch(self, pages: np.ndarray, writes: np.ndarray | None = None):
        """Set the A bit of every page in ``pages`` (and D where ``writes``)."""
        pages = np.asarray(pages, dtype=np.int64)
        if not len(pages):
            return
        bad = pages[(pages < 0) | (pages >= self.npages)]
        if len(bad):
            raise ValueError(f"page {int(bad[0])} is outside the guest's {self.npages} pages")
        addrs = self.leaf_addr[pages]
        bits = np.full(len(pages), _A, dtype=np.uint64)
        if writes is not None:
            bits |= np.where(np.asarray(writes, dtype=bool), _D, np.uint64(0))
        self.mem.write_many(addrs, self.mem.read_many(addrs) | bits)

    def scan(self) -> PassReport:
        """One scan pass of the engine."""
        return self.engine.scan()

    def levels(self) -> np.ndarray:
        """Activity level of every guest page (``int64[npages]``)."""
        e = self.mem.read_many(self.leaf_addr[:self.npages])
        return ((e >> np.uint64(self._level.lsb)) & np.uint64(self._level.max)).astype(np.int64)
