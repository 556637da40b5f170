"""Host physical memory image: sparse, page-granular, numpy-backed.

Only pages that were written hold storage; every other page inside the memory reads as
zero. An access past the end of memory is a decode error and an access to a poisoned
quad-word a slave error, both raised as :class:`BusError`, the way an AXI interconnect
answers DECERR or SLVERR. The walker and scanner turn those into precise faults and error
counts.

Storage is a pool of 4 KiB rows (512 little-endian 64-bit words) and a dense map from page
number to row, so a memory of tens of millions of pages costs 4 bytes a page plus the pages
actually written. Vectorized users (the scanner) work on ``pool`` and ``slot`` directly.
"""

import numpy as np

from thermocline.layouts import PAGE_SIZE, ENTRIES_PER_TABLE

__all__ = ["BusError", "PhysMem", "MAX_MEMORY"]

#: Largest memory the image accepts (its page map costs 4 bytes per page).
MAX_MEMORY = 1 << 40


class BusError(Exception):
    """A memory access answered with an error response (``"DECERR"`` or ``"SLVERR"``)."""

    def __init__(self, addr: int, resp: str):
        super().__init__(f"{resp} at {addr:#x}")
        self.addr = addr
        self.resp = resp


class PhysMem:
    """Byte-addressed memory of ``size`` bytes, accessed in aligned 64-bit words."""

    def __init__(self, size: int):
        if size <= 0 or size % PAGE_SIZE or size > MAX_MEMORY:
            raise ValueError(f"memory size must be a positive multiple of {PAGE_SIZE} up to "
                             f"{MAX_MEMORY:#x} bytes, got {size:#x}")
        self.size = size
        self.npages = size // PAGE_SIZE
        #: Row of ``pool`` holding each page, or -1 for a page never written.
        self.slot = np.full(self.npages, -1, dtype=np.int32)
        self.pool = np.zeros((16, ENTRIES_PER_TABLE), dtype=np.uint64)
        self.used = 0
        self._poison: dict[int, str] = {}

    # --- errors --------------------------------------------------------------------------

    def poison(self, addr: int, resp: str = "SLVERR"):
        """Make every access to the quad-word at ``addr`` answer ``resp``."""
        if resp not in ("SLVERR", "DECERR"):
            raise ValueError(f"error response must be SLVERR or DECERR, got {resp!r}")
        self._poison[addr & ~7] = resp

    def unpoison(self, addr: int | None = None):
        """Clear one poisoned word, or all of them."""
        if addr is None:
            self._poison.clear()
        else:
            self._poison.pop(addr & ~7, None)

    @property
    def poisoned(self) -> dict[int, str]:
        return dict(self._poison)

    def check(self, addr: int):
        """Raise :class:`BusError` if a 64-bit access at ``addr`` would fail."""
        if addr & 7:
            raise ValueError(f"unaligned 64-bit access at {addr:#x}")
        if not 0 <= addr < self.size:
            raise BusError(addr, "DECERR")
        if addr in self._poison:
            raise BusError(addr, self._poison[addr])

    # --- pages ---------------------------------------------------------------------------

    def _alloc_row(self) -> int:
        if self.used == len(self.pool):
            grown = np.zeros((2 * len(self.pool), ENTRIES_PER_TABLE), dtype=np.uint64)
            grown[:self.used] = self.pool[:self.used]
            self.pool = grown
        self.used += 1
        return self.used - 1

    def page(self, pfn: int, create: bool = False) -> np.ndarray | None:
        """The 512 words of page ``pfn`` (a view), or ``None`` for a page never written.

        With ``create`` the page gets storage. The view stays valid until the next page is
        created (the pool may move when it grows).
        """
        if not 0 <= pfn < self.npages:
            raise BusError(pfn * PAGE_SIZE, "DECERR")
        row = int(self.slot[pfn])
        if row < 0:
            if not create:
                return None
            row = self._alloc_row()
            self.slot[pfn] = row
        return self.pool[row]

    def reserve(self, pfns: np.ndarray) -> np.ndarray:
        """Give storage to many pages at once; returns their rows."""
        pfns = np.asarray(pfns, dtype=np.int64)
        if len(pfns) and (pfns.min() < 0 or pfns.max() >= self.npages):
            raise BusError(int(pfns.max()) * PAGE_SIZE, "DECERR")
        new = np.unique(pfns[self.slot[pfns] < 0])
        if len(new):
            need = self.used + len(new)
            if need > len(self.pool):
                cap = max(need, 2 * len(self.pool))
                grown = np.zeros((cap, ENTRIES_PER_TABLE), dtype=np.uint64)
                grown[:self.used] = self.pool[:self.used]
                self.pool = grown
            self.slot[new] = np.arange(self.used, need, dtype=np.int32)
            self.used = need
        return self.slot[pfns]

    def pages(self) -> np.ndarray:
        """Page numbers that hold storage, ascending."""
        return np.flatnonzero(self.slot >= 0)

    # --- words ---------------------------------------------------------------------------

    def read(self, addr: int) -> int:
        self.check(addr)
        row = self.slot[addr >> 12]
        return 0 if row < 0 else int(self.pool[row, (addr >> 3) & 511])

    def write(self, addr: int, value: int):
        self.check(addr)
        if not 0 <= value < 1 << 64:
            raise ValueError(f"value {value:#x} does not fit 64 bits")
        self.page(addr >> 12, create=True)[(addr >> 3) & 511] = value

    def read_many(self, addrs: np.ndarray) -> np.ndarray:
        """Gather aligned words (no poison check; for bulk model work)."""
        addrs = np.asarray(addrs, dtype=np.uint64)
        if len(addrs) and int(addrs.max()) >= self.size:
            raise BusError(int(addrs.max()), "DECERR")
        rows = self.slot[(addrs >> np.uint64(12)).astype(np.int64)]
        out = np.zeros(len(addrs), dtype=np.uint64)
        hit = rows >= 0
        out[hit] = self.pool[rows[hit], ((addrs[hit] >> np.uint64(3)) & np.uint64(511))
                             .astype(np.int64)]
        return out

    def write_many(self, addrs: np.ndarray, values: np.ndarray):
        """Scatter aligned words (no poison check; for bulk model work)."""
        addrs = np.asarray(addrs, dtype=np.uint64)
        if len(addrs) and int(addrs.max()) >= self.size:
            raise BusError(int(addrs.max()), "DECERR")
        rows = self.reserve((addrs >> np.uint64(12)).astype(np.int64))
        self.pool[rows, ((addrs >> np.uint64(3)) & np.uint64(511)).astype(np.int64)] = values

    # --- images --------------------------------------------------------------------------

    def image(self) -> dict[int, np.ndarray]:
        """Every non-zero page, by page number (copies)."""
        out = {}
        for pfn in self.pages():
            data = self.pool[self.slot[pfn]]
            if data.any():
                out[int(pfn)] = data.copy()
        return out

    def diff(self, other: "PhysMem", limit: int = 16) -> list[tuple[int, int, int]]:
        """Words that differ between two images: ``(addr, self value, other value)``."""
        if self.size != other.size:
            raise ValueError(f"memory sizes differ: {self.size:#x} and {other.size:#x}")
        out = []
        for pfn in np.union1d(self.pages(), other.pages()):
            a = self.page(int(pfn))
            b = other.page(int(pfn))
            a = np.zeros(ENTRIES_PER_TABLE, np.uint64) if a is None else a
            b = np.zeros(ENTRIES_PER_TABLE, np.uint64) if b is None else b
            for i in np.flatnonzero(a != b):
                out.append((int(pfn) * PAGE_SIZE + 8 * int(i), int(a[i]), int(b[i])))
                if len(out) >= limit:
                    return out
        return out

    def __eq__(self, other):
        if not isinstance(other, PhysMem):
            return NotImplemented
        return self.size == other.size and not self.diff(other, limit=1)

    __hash__ = None

    def copy(self) -> "PhysMem":
        new = PhysMem(self.size)
        new.slot = self.slot.copy()
        new.pool = self.pool[:max(self.used, 1)].copy()
        new.used = self.used
        new._poison = dict(self._poison)
        return new

    def save(self, path):
        """Write the image (pages with storage only) to an ``.npz`` file."""
        pfns = self.pages()
        np.savez_compressed(path, size=np.uint64(self.size), pfns=pfns.astype(np.int64),
                            data=self.pool[self.slot[pfns]])

    @classmethod
    def load(cls, path) -> "PhysMem":
        with np.load(path) as f:
            mem = cls(int(f["size"]))
            rows = mem.reserve(f["pfns"])
            mem.pool[rows] = f["data"]
        return mem
