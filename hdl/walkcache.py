"""Walk caches of the nested page walker: distributed-RAM arrays with a registered lookup.

Twelve direct-mapped arrays, as in :mod:`model.walkcache`: the guest TLB and the nested TLB
(one array per page size each) and the guest and host paging-structure caches (one array per
level 4, 3, 2 each).

Every array is a :class:`amaranth.lib.memory.Memory` with one asynchronous read port and one
write port (distributed RAM), read at an index register. A lookup is registered: the cycle
after the index register is loaded, the slot is read and each tag is compared with its
operand only far enough to reduce every ``chunk`` bits to one equal bit (one LUT level for
two bits); those bits and the payload are registered, and the outputs finish the compare
from the registers (optionally through a second register stage). While the operands and the
array stay the same, so do the outputs.

Slots (:func:`slot_layout`) hold only what can differ between slots:

* the context tag: the guest root frame (guest arrays) and the host root tag
  (:func:`root_tag`: the bits of a host root that are not fixed once the root is checked);
* the page tag: the key's page number without the bits that index the array;
* the output frame without the bits that a page of the array's size has zero.

All physical addresses (host and guest) are below ``2 ** pa_bits``: roots with address bits
above are refused, and entry addresses are masked to ``pa_bits``.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from thermocline.layouts import LEVEL_SHIFT, PAGE_SHIFT

__all__ = ["root_tag", "root_tag_width", "slot_layout", "ARRAYS", "GTLB", "NTLB", "GPWC",
           "HPWC", "CacheArray"]


def root_tag_width(host: str, pa_bits: int) -> int:
    """Width of :func:`root_tag`."""
    return 3 + pa_bits - 12 if host == "ept" else pa_bits


def root_tag(hroot, host: str, pa_bits: int):
    """The bits of a well-formed host root that can vary: for an EPTP the memory type's bit 1
    (UC or WB), the A/D enable, bit 7 and the address; for an nCR3 bits ``pa_bits - 1 .. 0``.
    Two well-formed roots are equal exactly when their tags are."""
    if host == "ept":
        return Cat(hroot[1], hroot[6], hroot[7], hroot[12:pa_bits])
    return hroot[:pa_bits]


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


class _Geometry:
    """Field widths of one array (see :func:`slot_layout`)."""

    def __init__(self, kind, level, entries, host, pa_bits):
        self.guest = kind in ("gtlb", "gpwc")
        self.tlb = kind in ("gtlb", "ntlb")
        self.shift = PAGE_SHIFT[level] if self.tlb else LEVEL_SHIFT[level]
        self.key_width = (48 if self.guest else pa_bits) - 12
        self.index_lsb = self.shift - 12
        self.index_width = (entries - 1).bit_length()
        self.tag_lsb = min(self.index_lsb + self.index_width, self.key_width)
        self.frame_lsb = self.shift - 12 if self.tlb else 0
        self.frame_width = pa_bits - 12
        self.rights = 3 if self.guest or host == "npt" else 4
        tags = {"valid": 1}
        if self.guest:
            tags["cr3"] = pa_bits - 12
        tags["hroot"] = root_tag_width(host, pa_bits)
        if self.key_width > self.tag_lsb:
            tags["page"] = self.key_width - self.tag_lsb
        payload = {"frame": self.frame_width - self.frame_lsb, "rights": self.rights}
        if self.tlb:
            payload["dirty"] = 1
        if kind == "ntlb" and host == "ept":
            payload["memtype"] = 3
        self.payload = data.StructLayout(payload)
        self.layout = data.StructLayout(tags | payload)


def slot_layout(kind: str, level: int, entries: int, *, host: str = "ept",
                pa_bits: int = 52) -> data.StructLayout:
    """The slot of one array: valid bit, context tag (guest root frame for guest arrays,
    host root tag for all), page tag (the key's page number above the index bits, absent
    when the index covers it), and the payload: output frame (without the bits a page of
    this size has zero), rights, and dirty for TLBs and memory type for an EPT nested TLB."""
    return _Geometry(kind, level, entries, host, pa_bits).layout


def _chunks(a, b, chunk):
    """One equal bit per ``chunk`` bits of ``a`` and ``b``."""
    return Cat(*(a[i:i + chunk] == b[i:i + chunk] for i in range(0, len(a), chunk)))


class CacheArray(wiring.Component):
    """One direct-mapped array of ``entries`` slots (a power of two, >= 1) of kind ``kind``
    ("gtlb", "ntlb", "gpwc" or "hpwc") for ``level``, for a walker of host format ``host``
    and physical-address width ``pa_bits``; slots as :func:`slot_layout`. A lookup registers
    one equal bit per ``chunk`` bits of each tag; with ``settle``, a second register stage
    reduces them to one bit per tag, a cycle later.

    Members
    -------
    index_next : In(index width)
        Slot to look up next cycle (usually :meth:`index_of` a key).
    index : Out(index width)
        Slot looked up this cycle (``index_next`` of the cycle before; 0 after reset).
    key : In(36 for guest arrays, else pa_bits - 12)
        Page number (address bits 12 and up) of the address to compare with the slot's page
        tag, this cycle.
    cr3 : In(pa_bits - 12)
        Guest root frame to compare (guest arrays only).
    hroot : In(root tag width)
        Host root tag to compare.
    slot : Out(payload)
        The payload of the slot looked up, this cycle (not registered).
    valid, page_eq, hroot_eq, cr3_eq : Out(1)
        Of the previous cycle's lookup: the slot was valid; its page, host root and (guest
        arrays) guest root tags matched (with ``settle``: the tag matches of the lookup two
        cycles ago). ``page_eq`` is absent when the index covers the whole page number
        (:attr:`page_matches` then is constant 1).
    frame, rights, dirty, memtype : Out
        That slot's payload (``dirty`` for TLBs, ``memtype`` for an EPT nested TLB). ``frame``
        holds address bits ``pa_bits - 1 .. 12 + frame_lsb``.
    wr_en : In(1)
        Write slot ``wr_index`` at the next clock edge: valid bit ``wr_valid``, tags from
        ``wr_key`` (a page number like ``key``), ``wr_cr3`` and ``wr_hroot``, payload
        ``wr_frame`` (address bits ``pa_bits - 1 .. 12``), ``wr_rights``, ``wr_dirty``,
        ``wr_memtype``.
    """

    def __init__(self, *, kind: str, level: int, entries: int, host: str = "ept",
                 pa_bits: int = 52, chunk: int = 8, settle: bool = False):
        if entries < 1 or entries & (entries - 1):
            raise ValueError(f"cache array entries must be a power of two, got {entries}")
        if kind not in ("gtlb", "ntlb", "gpwc", "hpwc"):
            raise ValueError(f"cache array kind must be gtlb, ntlb, gpwc or hpwc, got {kind!r}")
        if chunk < 1:
            raise ValueError(f"compare chunk must be at least 1 bit, got {chunk}")
        self._kind = kind
        self._entries = entries
        self._chunk = chunk
        self._settle = settle
        self._g = g = _Geometry(kind, level, entries, host, pa_bits)
        iw = max(1, g.index_width)
        f = g.layout.members
        ports = {
            "index_next": In(iw), "index": Out(iw), "key": In(g.key_width),
            "hroot": In(f["hroot"]), "slot": Out(g.payload), "valid": Out(1),
            "hroot_eq": Out(1), "frame": Out(f["frame"]), "rights": Out(g.rights),
            "wr_en": In(1), "wr_index": In(iw), "wr_valid": In(1), "wr_key": In(g.key_width),
            "wr_hroot": In(f["hroot"]), "wr_frame": In(g.frame_width),
            "wr_rights": In(g.rights),
        }
        if "page" in f:
            ports.update(page_eq=Out(1))
        if g.guest:
            ports.update(cr3=In(f["cr3"]), cr3_eq=Out(1), wr_cr3=In(f["cr3"]))
        if g.tlb:
            ports.update(dirty=Out(1), wr_dirty=In(1))
        if "memtype" in f:
            ports.update(memtype=Out(3), wr_memtype=In(3))
        super().__init__(ports)

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def entries(self) -> int:
        return self._entries

    @property
    def guest(self) -> bool:
        return self._g.guest

    @property
    def frame_lsb(self) -> int:
        """Frame bits a slot leaves out (those a page of this size has zero)."""
        return self._g.frame_lsb

    @property
    def page_matches(self):
        """``page_eq``, or 1 where the array has no page tag."""
        return self.page_eq if "page" in self._g.layout.members else Const(1)

    def index_of(self, key):
        """The slot a key (a page number, as ``key``) maps to."""
        g = self._g
        return key[g.index_lsb:g.index_lsb + g.index_width] if g.index_width else 0

    def elaborate(self, platform):
        m = Module()
        g = self._g
        f = g.layout.members

        m.submodules.mem = mem = Memory(shape=g.layout, depth=self._entries, init=[])
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()
        t = p = rd.data
        m.d.sync += self.index.eq(self.index_next)
        m.d.comb += [rd.addr.eq(self.index), wr.addr.eq(self.wr_index), wr.en.eq(self.wr_en),
                     self.slot.frame.eq(p.frame), self.slot.rights.eq(p.rights)]
        if g.tlb:
            m.d.comb += self.slot.dirty.eq(p.dirty)
        if "memtype" in f:
            m.d.comb += self.slot.memtype.eq(p.memtype)

        w = wr.data
        m.d.comb += [w.valid.eq(self.wr_valid), w.hroot.eq(self.wr_hroot),
                     w.frame.eq(self.wr_frame[g.frame_lsb:]), w.rights.eq(self.wr_rights)]
        if "page" in f:
            m.d.comb += w.page.eq(self.wr_key[g.tag_lsb:])
        if g.guest:
            m.d.comb += w.cr3.eq(self.wr_cr3)
        if g.tlb:
            m.d.comb += w.dirty.eq(self.wr_dirty)
        if "memtype" in f:
            m.d.comb += w.memtype.eq(self.wr_memtype)

        # The lookup register: the slot's payload and one equal bit per chunk of each tag.
        def register(name, value):
            reg = Signal(len(value), name=f"r_{name}", reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        def tag_eq(name, a, b):
            equal = register(name, _chunks(a, b, self._chunk)).all()
            return register(name + "_all", equal) if self._settle else equal

        m.d.comb += [self.valid.eq(register("valid", t.valid)),
                     self.frame.eq(register("frame", p.frame)),
                     self.rights.eq(register("rights", p.rights)),
                     self.hroot_eq.eq(tag_eq("hroot_eq", t.hroot, self.hroot))]
        if "page" in f:
            m.d.comb += self.page_eq.eq(tag_eq("page_eq", t.page, self.key[g.tag_lsb:]))
        if g.guest:
            m.d.comb += self.cr3_eq.eq(tag_eq("cr3_eq", t.cr3, self.cr3))
        if g.tlb:
            m.d.comb += self.dirty.eq(register("dirty", p.dirty))
        if "memtype" in f:
            m.d.comb += self.memtype.eq(register("memtype", p.memtype))
        return m
