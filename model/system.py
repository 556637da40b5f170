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

from .memory import BusError, PhysMem
from .pagetable import FrameAllocator, GuestPhys, PageTable, SIZE_4K, SIZE_2M, SIZE_1G

__all__ = ["GuestSystem", "random_system", "pick"]


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


def random_system(rnd: random.Random, host: str = "ept", *, mappings: tuple[int, int] = (4, 24),
                  corrupt: int = 0, pa_bits: int = 52):
    """A random guest for verification: returns ``(system, space, [(gva, size), ...])``.

    One address space with ``mappings`` (a range) 4 KiB and 2 MiB pages in three regions (low
    user, high user, kernel half), random RW/US/XD and A/D; the host maps guest RAM with
    4 KiB or 2 MiB pages and a third of the data frames lose a host right. With ``corrupt``
    > 0, that many guest and host entries on the mapped paths get a random bad bit: a
    reserved bit, an EPT write-without-read, a bad memory type, or an address past the end
    of memory. Deterministic for a given ``rnd`` state.
    """
    s = GuestSystem(guest_ram=64 << 20, host=host, host_page=rnd.choice([SIZE_4K, SIZE_2M]),
                    shuffle=rnd.randrange(1 << 16), pa_bits=pa_bits)
    sp = s.new_space()
    gvas = []
    for _ in range(rnd.randrange(*mappings)):
        size = rnd.choice([SIZE_4K] * 6 + [SIZE_2M])
        base = rnd.choice([0x1000_0000, 0x7F00_0000_0000, 0xFFFF_8000_0000_0000]) \
            + rnd.randrange(64) * SIZE_2M
        base &= ~(size - 1)
        if size == SIZE_4K:
            base += rnd.randrange(512) * SIZE_4K
        va = base & ((1 << 48) - 1)
        if sp.lookup(va) is not None:
            continue
        flds = dict(RW=rnd.random() < 0.7, US=rnd.random() < 0.7, XD=rnd.random() < 0.3,
                    A=rnd.random() < 0.5)
        flds["D"] = flds["A"] and rnd.random() < 0.5
        try:
            sp.map(va, s.alloc_data(size), size, **flds)
        except ValueError:
            continue
        gvas.append((base, size))
    # Take some host rights away from data frames (never from guest table frames).
    frames = [m.pa + rnd.randrange(m.size // SIZE_4K) * SIZE_4K for m in sp.maps.values()]
    for gpa in rnd.sample(frames, len(frames) // 3):
        if s.host.lookup(gpa).size != SIZE_4K:
            continue
        if host == "ept":
            s.host.protect(gpa, **rnd.choice([dict(W=0), dict(X=0), dict(R=0, W=0, X=0)]))
        else:
            s.host.protect(gpa, **rnd.choice([dict(RW=0), dict(XD=1), dict(P=0)]))
    for _ in range(corrupt):
        _corrupt_one(rnd, s, sp, gvas, host)
    return s, sp, gvas


def _corrupt_one(rnd: random.Random, s: GuestSystem, sp: PageTable, gvas, host: str):
    try:
        _corrupt(rnd, s, sp, gvas, host)
    except (BusError, KeyError):
        pass                 # the path is already broken by an earlier corruption


def _corrupt(rnd: random.Random, s: GuestSystem, sp: PageTable, gvas, host: str):
    gva, _ = rnd.choice(gvas)
    va = gva & ((1 << 48) - 1)
    level = rnd.choice([1, 2, 3, 4])
    addr_field = ((1 << 52) - 1) & ~0xFFF
    if rnd.random() < 0.5:                       # a guest entry
        addr = sp.entry_addr(va, level)
        if addr is None:
            return
        e = s.gphys.read(addr)
        choices = [e | 1 << 51,                                  # reserved if pa_bits < 52
                   (e & ~addr_field) | (s.mem.size << 4)]        # far past guest RAM
        if level == 4:
            choices.append(e | 1 << 7)                           # PS in a PML4E
        if level in (2, 3):
            choices.append(e | 1 << 7 | 1 << 13)                 # large page, reserved bit
        s.gphys.write(addr, rnd.choice(choices))
    else:                                        # a host entry on the path of a guest page
        gpa = sp.translate(va)
        addr = None if gpa is None else s.host.entry_addr(gpa, level)
        if addr is None:
            return
        e = s.mem.read(addr)
        choices = [e | 1 << 51, (e & ~addr_field) | (s.mem.size << 3)]
        if host == "ept":
            choices += [(e & ~1) | 2, (e & ~0x38) | (rnd.choice([2, 3, 7]) << 3)]
        s.mem.write(addr, rnd.choice(choices))


def pick(rnd: random.Random, gvas) -> int:
    """A random address inside one of the mappings of :func:`random_system`."""
    base, size = rnd.choice(gvas)
    return base + rnd.randrange(size)
