"""A virtualized system to run the engine against: host memory, one guest, its address spaces.

:class:`GuestSystem` lays host physical memory out as

* ``[0, host_tables)``: host (EPT or NPT) table pages;
* ``[host_tables, host_tables + guest_ram)``: backing frames of guest RAM;
* the rest: free host memory (what a hypervisor would use for other guests).

Guest RAM ``[0, guest_ram)`` is mapped by the host table with pages of ``host_page`` bytes
(optionally shuffled, so that GPA order and HPA order differ). Guest page tables are built
by :meth:`GuestSystem.new_space` inside guest RAM, through the host table, as a guest
kernel would. Each space's tables come from the top of guest RAM downwards; guest data
frames from the bottom up.
"""

import random

from .memory import PhysMem
from .pagetable import FrameAllocator, GuestPhys, PageTable, SIZE_4K, SIZE_2M, SIZE_1G

__all__ = ["GuestSystem"]


class _TwoEnded(FrameAllocator):
    """Guest frames: page-table pages from the top down (:meth:`alloc`, what the builder
    calls), data frames from the bottom up (:meth:`alloc_data`)."""

    def __init__(self, base: int, limit: int):
        super().__init__(base, limit)
        self.top = limit

    def alloc(self, size: int = SIZE_4K) -> int:
        if size != SIZE_4K:
            raise ValueError(f"guest page-table pages are 4 KiB, got {size:#x}")
        if self._free.get(size):
            return self._free[size].pop()
        if self.top - SIZE_4K < self.next:
            raise MemoryError("guest RAM exhausted")
        self.top -= SIZE_4K
        return self.top

    def alloc_data(self, size: int) -> int:
        addr = super().alloc(size)
        if addr + size > self.top:
            raise MemoryError("guest RAM exhausted")
        return addr


class GuestSystem:
    """Host memory, a host table mapping one guest's RAM, and the guest's address spaces."""

    def __init__(self, *, guest_ram: int = 64 << 20, host: str = "ept",
                 host_page: int = SIZE_4K, host_tables: int = 8 << 20, spare: int = 16 << 20,
                 pa_bits: int = 52, ad: bool = True, shuffle: int | None = None):
        if host_page not in (SIZE_4K, SIZE_2M, SIZE_1G):
            raise ValueError(f"host_page must be 4K, 2M or 1G, got {host_page:#x}")
        if guest_ram <= 0 or guest_ram % host_page:
            raise ValueError(f"guest_ram must be a positive multiple of host_page, got "
                             f"{guest_ram:#x}")
        align = max(host_page, SIZE_2M)
        data_base = (host_tables + align - 1) & ~(align - 1)
        self.mem = PhysMem(data_base + guest_ram + spare)
        self.data_base = data_base
        self.guest_ram = guest_ram
        self.host = PageTable(self.mem, FrameAllocator(0, host_tables), host,
                              pa_bits=pa_bits, ad=ad)
        frames = list(range(guest_ram // host_page))
        if shuffle is not None:
            random.Random(shuffle).shuffle(frames)
        for gpa_index, frame in enumerate(frames):
            self.host.map(gpa_index * host_page, data_base + frame * host_page, host_page)
        self.gphys = GuestPhys(self.mem, self.host)
        self.galloc = _TwoEnded(0, guest_ram)
        self.spaces: list[PageTable] = []

    @property
    def hroot(self) -> int:
        """Host root as requests carry it (EPTP or nested CR3)."""
        return self.host.pointer

    def new_space(self) -> PageTable:
        """A new, empty guest address space; its ``root`` is the CR3 value."""
        space = PageTable(self.gphys, self.galloc, "guest", pa_bits=self.host.fmt.pa_bits)
        self.spaces.append(space)
        return space

    def alloc_data(self, size: int = SIZE_4K) -> int:
        """A guest frame for data (bottom-up)."""
        return self.galloc.alloc_data(size)
