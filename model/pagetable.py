"""Page-table builder: frames, host tables (EPT or NPT) and guest tables (IA-32e).

A :class:`PageTable` builds a 4-level radix tree in some address space. Host tables live in
host physical memory (:class:`~model.memory.PhysMem`); guest tables live in guest-physical
memory, which :class:`GuestPhys` reaches through the host table, exactly as the hardware
does. Every table keeps, beside the tree, a plain dictionary of what it maps: the brute-force
reference that tests compare the walker against.

Leaf and non-leaf entries are written with the layout's own field names, e.g.
``ept.map(gpa, hpa, R=1, W=0, X=1)`` or ``guest.map(gva, gpa, size=1 << 21, RW=0, XD=1)``.
"""

from dataclasses import dataclass

import numpy as np

from thermocline.layouts import LEVEL_SHIFT, PAGE_SIZE, EPTP, EPT_MEMTYPE_WB
from .entries import EntryFormat, EptFormat, X86Format, host_format
from .memory import PhysMem

__all__ = ["FrameAllocator", "OutOfFrames", "GuestPhys", "PageTable", "Mapping",
           "SIZE_4K", "SIZE_2M", "SIZE_1G"]

SIZE_4K, SIZE_2M, SIZE_1G = 1 << 12, 1 << 21, 1 << 30
_LEAF_LEVEL = {SIZE_4K: 1, SIZE_2M: 2, SIZE_1G: 3}


class OutOfFrames(Exception):
    pass


class FrameAllocator:
    """Hands out naturally aligned frames of 4 KiB, 2 MiB or 1 GiB from ``[base, limit)``."""

    def __init__(self, base: int, limit: int):
        if base % PAGE_SIZE or limit % PAGE_SIZE or not 0 <= base < limit:
            raise ValueError(f"frame range must be page-aligned and non-empty, got "
                             f"[{base:#x}, {limit:#x})")
        self.base, self.limit, self.next = base, limit, base
        self._free: dict[int, list[int]] = {}

    def alloc(self, size: int = SIZE_4K) -> int:
        if size not in _LEAF_LEVEL:
            raise ValueError(f"frame size must be 4K, 2M or 1G, got {size:#x}")
        if self._free.get(size):
            return self._free[size].pop()
        addr = (self.next + size - 1) & ~(size - 1)
        if addr + size > self.limit:
            raise OutOfFrames(f"no {size:#x}-byte frame left in [{self.base:#x}, "
                              f"{self.limit:#x})")
        self.next = addr + size
        return addr

    def free(self, addr: int, size: int = SIZE_4K):
        self._free.setdefault(size, []).append(addr)


class GuestPhys:
    """Guest-physical memory: word access through a host table's reference mapping."""

    def __init__(self, mem: PhysMem, host: "PageTable"):
        self.mem, self.host = mem, host

    def hpa(self, gpa: int) -> int:
        m = self.host.lookup(gpa)
        if m is None:
            raise KeyError(f"guest-physical address {gpa:#x} is not mapped by the host table")
        return m.pa + (gpa & (m.size - 1))

    def read(self, gpa: int) -> int:
        return self.mem.read(self.hpa(gpa))

    def write(self, gpa: int, value: int):
        self.mem.write(self.hpa(gpa), value)

    def zero_page(self, gpa: int):
        page = self.mem.page(self.hpa(gpa) >> 12, create=True)
        page[:] = 0


class _HostPhys:
    """Host memory seen by a host table (identity)."""

    def __init__(self, mem: PhysMem):
        self.mem = mem

    def read(self, addr):
        return self.mem.read(addr)

    def write(self, addr, value):
        self.mem.write(addr, value)

    def zero_page(self, addr):
        self.mem.page(addr >> 12, create=True)[:] = 0


@dataclass(frozen=True)
class Mapping:
    """One leaf as the builder made it: input base, output base, size, leaf entry."""

    va: int
    pa: int
    size: int
    entry: int


class PageTable:
    """A 4-level table of format ``fmt`` (``"ept"``, ``"npt"``, ``"ia32e"`` or ``"guest"``).

    ``space`` is where the tables live (host memory for host tables, :class:`GuestPhys` for
    guest tables); ``alloc`` hands out the frames for table pages in that space.
    """

    def __init__(self, space, alloc: FrameAllocator, fmt: str = "ept", *, pa_bits: int = 52,
                 ad: bool = True):
        self.space = _HostPhys(space) if isinstance(space, PhysMem) else space
        self.alloc = alloc
        self.kind = fmt
        self.fmt: EntryFormat = X86Format(pa_bits) if fmt == "guest" else host_format(fmt,
                                                                                      pa_bits)
        self.ad = ad
        self.root = self._new_table()
        self.maps: dict[int, Mapping] = {}
        #: Bulk ranges made by :meth:`map_range`: (va, pa, count, size, entry template).
        self.ranges: list[tuple[int, int, int, int, int]] = []

    # --- roots ---------------------------------------------------------------------------

    @property
    def pointer(self) -> int:
        """The root as hardware takes it: an EPTP for EPT, else a CR3-style address."""
        if isinstance(self.fmt, EptFormat):
            return EPTP.pack(MEMTYPE=EPT_MEMTYPE_WB, WALK_LEN=3, AD=int(self.ad),
                             ADDR=self.root >> 12)
        return self.root

    # --- tree ----------------------------------------------------------------------------

    def _new_table(self) -> int:
        addr = self.alloc.alloc(SIZE_4K)
        self.space.zero_page(addr)
        return addr

    def entry_addr(self, va: int, level: int, create: bool = False) -> int | None:
        """Address of the entry for ``va`` at ``level``, walking (and maybe growing) the tree.

        Returns ``None`` if a table on the way is missing (and ``create`` is false) or if a
        leaf above ``level`` maps ``va``.
        """
        table = self.root
        for lvl in (4, 3, 2, 1):
            addr = table + 8 * ((va >> LEVEL_SHIFT[lvl]) & 511)
            if lvl == level:
                return addr
            e = self.space.read(addr)
            if not self.fmt.present(e):
                if not create:
                    return None
                nxt = self._new_table()
                self.space.write(addr, self.fmt.make(lvl, nxt, leaf=False))
                table = nxt
            elif self.fmt.is_leaf(e, lvl):
                if create:
                    raise ValueError(f"{va:#x} is already mapped by a level-{lvl} leaf")
                return None
            else:
                table = self.fmt.address(e, lvl)
        raise ValueError(f"level must be 1..4, got {level}")

    def read_entry(self, va: int, level: int) -> int | None:
        addr = self.entry_addr(va, level)
        return None if addr is None else self.space.read(addr)

    def write_entry(self, va: int, level: int, value: int):
        """Write a raw entry (tables on the way are created): for malformed-table tests."""
        self.space.write(self.entry_addr(va, level, create=True), value)

    def map(self, va: int, pa: int, size: int = SIZE_4K, **fields: int) -> Mapping:
        """Map ``[va, va + size)`` to ``pa`` with a leaf whose fields default to full rights.

        Accessed and dirty flags can be given as fields (``A=1``) to start a page warm.
        """
        if size not in _LEAF_LEVEL:
            raise ValueError(f"page size must be 4K, 2M or 1G, got {size:#x}")
        if va % size or pa % size:
            raise ValueError(f"addresses {va:#x} -> {pa:#x} are not aligned to {size:#x}")
        level = _LEAF_LEVEL[size]
        if level > 1:
            addr = self.entry_addr(va, level, create=True)
            old = self.space.read(addr)
            if self.fmt.present(old) and not self.fmt.is_leaf(old, level):
                raise ValueError(f"{va:#x}: a level-{level} table is in the way of a "
                                 f"{size:#x} page; unmap its pages first")
        else:
            addr = self.entry_addr(va, 1, create=True)
        entry = self.fmt.make(level, pa, leaf=True, **fields)
        self.space.write(addr, entry)
        m = Mapping(va, pa, size, entry)
        self.maps[va] = m
        return m

    def unmap(self, va: int) -> Mapping:
        """Remove the leaf mapping ``va`` (tables stay)."""
        m = self.lookup(va)
        if m is None:
            raise KeyError(f"{va:#x} is not mapped")
        self.space.write(self.entry_addr(m.va, _LEAF_LEVEL[m.size]), 0)
        self.maps.pop(m.va, None)
        return m

    def protect(self, va: int, **fields: int) -> Mapping:
        """Rewrite fields of the leaf mapping ``va``."""
        m = self.lookup(va)
        if m is None:
            raise KeyError(f"{va:#x} is not mapped")
        level = _LEAF_LEVEL[m.size]
        addr = self.entry_addr(m.va, level)
        entry = self.space.read(addr)
        from thermocline.layouts import EPT_ENTRY, X86_ENTRY
        layout = EPT_ENTRY if isinstance(self.fmt, EptFormat) else X86_ENTRY
        for name, value in fields.items():
            entry = getattr(layout, name).set(entry, int(value))
        self.space.write(addr, entry)
        new = Mapping(m.va, m.pa, m.size, entry)
        self.maps[m.va] = new
        return new

    def map_range(self, va: int, pa: int, count: int, **fields: int):
        """Map ``count`` consecutive 4 KiB pages at once (bulk build of big tables).

        Only for host tables in host memory. Each 2 MiB region gets its leaf table written
        as one vector.
        """
        if not isinstance(self.space, _HostPhys):
            raise ValueError("map_range builds host tables only")
        if va % SIZE_4K or pa % SIZE_4K:
            raise ValueError(f"addresses {va:#x} -> {pa:#x} are not page-aligned")
        template = self.fmt.make(1, 0, leaf=True, **fields)
        mem = self.space.mem
        done = 0
        while done < count:
            v = va + done * SIZE_4K
            first = (v >> 12) & 511
            n = min(512 - first, count - done)
            table = self.entry_addr(v, 1, create=True) - 8 * first
            frames = (np.uint64(pa + done * SIZE_4K)
                      + np.arange(n, dtype=np.uint64) * np.uint64(SIZE_4K))
            page = mem.page(table >> 12, create=True)
            page[first:first + n] = (frames & np.uint64(self.fmt.addr_mask)) | np.uint64(
                template)
            done += n
        self.ranges.append((va, pa, count, SIZE_4K, template))

    # --- reference -----------------------------------------------------------------------

    def lookup(self, va: int) -> Mapping | None:
        """The builder's own record of the leaf covering ``va`` (brute force, no memory)."""
        for size in (SIZE_4K, SIZE_2M, SIZE_1G):
            m = self.maps.get(va & ~(size - 1))
            if m is not None and m.size == size:
                return m
        for rva, rpa, count, size, template in self.ranges:
            if rva <= va < rva + count * size:
                off = (va - rva) & ~(size - 1)
                return Mapping(rva + off, rpa + off, size, template | (rpa + off))
        return None

    def translate(self, va: int) -> int | None:
        m = self.lookup(va)
        return None if m is None else m.pa + (va & (m.size - 1))
