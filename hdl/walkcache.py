"""Walk caches of the nested page walker, in synchronous-read memories.

Twelve direct-mapped arrays, as in :mod:`model.walkcache`: the guest TLB and the nested TLB
(one array per page size each) and the guest and host paging-structure caches (one array per
level 4, 3, 2 each). Every array is a :class:`amaranth.lib.memory.Memory` with one
synchronous read port and one write port, so Yosys maps it to block or distributed RAM.

Slots (:func:`slot_layout`) hold a valid bit, the context tag (guest root frame for guest
arrays, host root for all), the whole page number of the key, and the payload.
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from thermocline.layouts import LEVEL_SHIFT, PAGE_SHIFT

__all__ = ["slot_layout", "ARRAYS", "GTLB", "NTLB", "GPWC", "HPWC", "CacheArray"]

def slot_layout(kind: str, level: int) -> data.StructLayout:
    """The slot of one array: valid bit, context tag (guest root frame for guest arrays,
    host root for all), the key's page number, and the payload (output frame, rights;
    dirty for TLBs; memory type for the nested TLB)."""
    guest = kind in ("gtlb", "gpwc")
    tlb = kind in ("gtlb", "ntlb")
    shift = PAGE_SHIFT[level] if tlb else LEVEL_SHIFT[level]
    fields = {"valid": 1}
    if guest:
        fields["cr3"] = 40
    fields["hroot"] = 52            # bits 63..52 of a root are zero once the root is checked
    fields["vpn"] = (48 if guest else 52) - shift
    fields["frame"] = 40
    fields["rights"] = 3 if guest else 4
    if tlb:
        fields["dirty"] = 1
    if kind == "ntlb":
        fields["memtype"] = 3
    return data.StructLayout(fields)


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
    """One direct-mapped array of ``entries`` slots (a power of two, >= 1) of kind ``kind``
    ("gtlb", "ntlb", "gpwc" or "hpwc") for ``level``; slots as :func:`slot_layout`.

    Members
    -------
    rd_index : In(index width)
        Slot to read; its contents appear on ``rd_data`` one cycle later.
    rd_data : Out(slot)
        The slot read.
    wr_en : In(1)
        Write ``wr_data`` into slot ``wr_index`` at the next clock edge.
    wr_index : In(index width)
    wr_data : In(slot)
    """

    def __init__(self, *, kind: str, level: int, entries: int):
        if entries < 1 or entries & (entries - 1):
            raise ValueError(f"cache array entries must be a power of two, got {entries}")
        if kind not in ("gtlb", "ntlb", "gpwc", "hpwc"):
            raise ValueError(f"cache array kind must be gtlb, ntlb, gpwc or hpwc, got {kind!r}")
        self._entries = entries
        self._kind = kind
        self._shift = PAGE_SHIFT[level] if kind in ("gtlb", "ntlb") else LEVEL_SHIFT[level]
        self._layout = slot_layout(kind, level)
        iw = max(1, (entries - 1).bit_length())
        super().__init__({
            "rd_index": In(iw), "rd_data": Out(self._layout),
            "wr_en": In(1), "wr_index": In(iw), "wr_data": In(self._layout),
        })

    @property
    def entries(self) -> int:
        return self._entries

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def shift(self) -> int:
        return self._shift

    @property
    def guest(self) -> bool:
        return self._kind in ("gtlb", "gpwc")

    def index_of(self, key):
        """The slot a key (an address) maps to."""
        return (key >> self._shift)[:len(self.rd_index)] if self._entries > 1 else 0

    def vpn_of(self, key):
        """The page number this array stores for ``key``."""
        return (key >> self._shift)[:len(self.rd_data.vpn)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._layout, depth=self._entries, init=[])
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += [
            rd.addr.eq(self.rd_index), self.rd_data.eq(rd.data),
            wr.addr.eq(self.wr_index), wr.data.eq(self.wr_data), wr.en.eq(self.wr_en),
        ]
        return m
