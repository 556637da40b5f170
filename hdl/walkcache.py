"""Walk caches of the nested page walker, in synchronous-read memories.

Twelve direct-mapped arrays, as in :mod:`model.walkcache`: the guest TLB and the nested TLB
(one array per page size each) and the guest and host paging-structure caches (one array per
level 4, 3, 2 each). Every array is a :class:`amaranth.lib.memory.Memory` with one
synchronous read port and one write port, so Yosys maps it to block or distributed RAM.

Every slot has the same layout (:data:`SLOT`): a valid bit, the context tag (guest root
frame and host root), the whole page number of the key, and the payload (output frame,
rights, dirty, memory type). Host arrays leave the guest-root tag at zero.
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from thermocline.layouts import LEVEL_SHIFT, PAGE_SHIFT

__all__ = ["SLOT", "ARRAYS", "GTLB", "NTLB", "GPWC", "HPWC", "CacheArray"]

#: One slot of any walk-cache array.
SLOT = data.StructLayout({
    "valid": 1,
    "cr3": 40,        # guest root frame (guest arrays only)
    "hroot": 64,      # host root as the request carried it
    "vpn": 40,        # key >> shift
    "frame": 40,      # output frame: page base or next table >> 12
    "rights": 4,
    "dirty": 1,
    "memtype": 3,
})

#: Array numbers: guest TLB 4K/2M/1G, nested TLB 4K/2M/1G, guest PWC L4/L3/L2, host PWC
#: L4/L3/L2. ``ARRAYS[n] = (kind, level, shift)``.
GTLB = {1: 0, 2: 1, 3: 2}
NTLB = {1: 3, 2: 4, 3: 5}
GPWC = {4: 6, 3: 7, 2: 8}
HPWC = {4: 9, 3: 10, 2: 11}
ARRAYS = ([("gtlb", lvl, PAGE_SHIFT[lvl]) for lvl in (1, 2, 3)]
          + [("ntlb", lvl, PAGE_SHIFT[lvl]) for lvl in (1, 2, 3)]
          + [("gpwc", lvl, LEVEL_SHIFT[lvl]) for lvl in (4, 3, 2)]
          + [("hpwc", lvl, LEVEL_SHIFT[lvl]) for lvl in (4, 3, 2)])


class CacheArray(wiring.Component):
    """One direct-mapped array of ``entries`` slots (``entries`` a power of two, >= 1).

    Members
    -------
    rd_index : In(index width)
        Slot to read; its contents appear on ``rd_data`` one cycle later.
    rd_data : Out(SLOT)
        The slot read.
    wr_en : In(1)
        Write ``wr_data`` into slot ``wr_index`` at the next clock edge.
    wr_index : In(index width)
    wr_data : In(SLOT)
    """

    def __init__(self, *, entries: int, shift: int):
        if entries < 1 or entries & (entries - 1):
            raise ValueError(f"cache array entries must be a power of two, got {entries}")
        self._entries = entries
        self._shift = shift
        iw = max(1, (entries - 1).bit_length())
        super().__init__({
            "rd_index": In(iw), "rd_data": Out(SLOT),
            "wr_en": In(1), "wr_index": In(iw), "wr_data": In(SLOT),
        })

    @property
    def entries(self) -> int:
        return self._entries

    @property
    def shift(self) -> int:
        return self._shift

    def index_of(self, key):
        """The slot a key (an address) maps to."""
        return (key >> self._shift)[:len(self.rd_index)] if self._entries > 1 else 0

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=SLOT, depth=self._entries, init=[])
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += [
            rd.addr.eq(self.rd_index), self.rd_data.eq(rd.data),
            wr.addr.eq(self.wr_index), wr.data.eq(self.wr_data), wr.en.eq(self.wr_en),
        ]
        return m


def vpn_of(key, shift):
    """The page number a slot stores for ``key`` (40 bits)."""
    return (key >> shift)[:40]

