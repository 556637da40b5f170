"""The engine's AXI4-Lite register block, elaborated from :mod:`thermocline.regmap`.

The register map's module documentation is the contract (access kinds, 64-bit read order,
windows, SLVERR for unmapped addresses and for writes to read-only words); this module
states the timing.

Timing
------
* Write: the AW and W channels are independent; each is taken (``awready``/``wready`` high)
  whenever its one-entry buffer is empty, in any order or in the same cycle. The write is
  performed in the cycle after both are held and no B response is waiting, and ``bvalid``
  rises in the next cycle. Held registers (``RW``, ``W1C``) change at that edge too, and
  every unit-side strobe (``we``) and command value (``w`` of ``WO`` and ``RWU``) is
  registered: high for exactly the one cycle after the write, when ``w`` of a strobed
  ``RW`` register already holds the new value.
* Read: one read at a time. ``arready`` is high while no read is in progress; ``rvalid``
  rises three cycles after the address is taken, for registers and windows alike. In the
  cycle after the address is taken, the block samples the register (a unit's value, and
  the HI word with it for a read of a 64-bit ``RO`` register's LO word) or presents the
  window's ``addr`` and ``re``; the window's memory answers in the next.
* Reset (``rst`` of the ``sync`` domain) abandons transactions in progress (the master
  must be reset with the block, as AXI requires) and returns every held register to its
  reset value.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from thermocline import regmap as R

__all__ = ["axil_signature", "field_layout", "register_signature", "window_signature", "Regs",
           "SYNTH_DESIGNS"]


def axil_signature(addr_width: int = R.ADDR_WIDTH) -> wiring.Signature:
    """Signature of an AXI4-Lite port with 32-bit data, seen from the master.

    Members (``Out`` driven by the master): ``awaddr``, ``awvalid``, ``awready`` (In);
    ``wdata``, ``wstrb`` (4), ``wvalid``, ``wready`` (In); ``bresp`` (In, 2), ``bvalid``
    (In), ``bready``; ``araddr``, ``arvalid``, ``arready`` (In); ``rdata`` (In), ``rresp``
    (In, 2), ``rvalid`` (In), ``rready``. A slave port is ``In(axil_signature())``; named
    ``s_axil`` it flattens to ``s_axil__awaddr`` and so on. There are no ``*prot`` signals:
    the block ignores protection.
    """
    if not isinstance(addr_width, int) or isinstance(addr_width, bool) or \
            not 4 <= addr_width <= 64:
        raise ValueError(f"axil_signature: addr_width must be an integer from 4 to 64, "
                         f"got {addr_width!r}")
    return wiring.Signature({
        "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
        "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def field_layout(width: int, fields) -> data.FlexibleLayout:
    """A :class:`~amaranth.lib.data.FlexibleLayout` of ``width`` bits with the register's
    fields (lower-case names) in place."""
    return data.FlexibleLayout(width, {f.name.lower(): data.Field(f.width, f.lsb)
                                       for f in fields})


def register_signature(reg: R.Register) -> wiring.Signature | None:
    """The unit-side port of ``reg``, seen from the block (None for a constant).

    ``w`` (Out): the held value (``RW``, ``W1C``) or the written value during the strobe
    (``WO``, ``RWU``; 0 otherwise); ``we`` (Out): the one-cycle write strobe; ``r`` (In):
    the unit's value (``RO``, ``RWU``); ``set`` (In): bits to set (``W1C``).
    """
    layout = field_layout(reg.width, reg.fields)
    members = {}
    if reg.access == "RO":
        if reg.const:
            return None
        members["r"] = In(layout)
    elif reg.access == "RWU":
        members["r"] = In(layout)
    if reg.access != "RO":
        members["w"] = Out(layout)
    if reg.access == "W1C":
        members["set"] = In(layout)
    if reg.strobe:
        members["we"] = Out(1)
    return wiring.Signature(members)


def window_signature(win: R.Window) -> wiring.Signature:
    """The unit-side port of a window, seen from the block: ``addr`` (Out, word index),
    ``re`` (Out, a read of ``addr`` in this cycle) and ``data`` (In, the word read, one cycle
    after ``re``)."""
    return wiring.Signature({"addr": Out(range(win.size)), "re": Out(1), "data": In(32)})


_WORD = (1 << 32) - 1
#: Words per address group: a read's first cycle picks a word in every group of this many
#: (2**_GROUP_BITS) consecutive words, the second picks the group.
_GROUP_BITS = 4


def _runs(mask: int, lo: int, hi: int):
    """``(start, end)`` of each run of consecutive set bits of ``mask`` within ``[lo, hi)``."""
    out = []
    start = None
    for bit in range(lo, hi + 1):
        if bit < hi and mask >> bit & 1:
            if start is None:
                start = bit
        elif start is not None:
            out.append((start, bit))
            start = None
    return out


#: Low bits of a word index: its position in its group.
_POS_MASK = (1 << _GROUP_BITS) - 1


def _one_hot(m, take, word, prefix):
    """Flip-flops loaded from the word index ``word`` when ``take``: the one-hot position
    in the group and the one-hot group."""
    pos = Signal(1 << _GROUP_BITS, name=f"{prefix}_pos")
    group = Signal(1 << (len(word) - _GROUP_BITS), name=f"{prefix}_group")
    with m.If(take):
        m.d.sync += [pos.eq(1 << word[:_GROUP_BITS]), group.eq(1 << word[_GROUP_BITS:])]
    return pos, group


def _hit(pos, group, index):
    """Is the word index held in ``pos``/``group`` equal to ``index``?"""
    return pos[index & _POS_MASK] & group[index >> _GROUP_BITS]


def _lookup(word, indices):
    """Is ``word`` one of ``indices``? (A constant table that synthesis reduces to logic.)"""
    table = Const(sum(1 << i for i in indices), 1 << len(word))
    return table.bit_select(word, 1)


def _or(values):
    """The OR of ``values`` (0 when there are none), as a balanced tree."""
    values = list(values)
    if not values:
        return Const(0, 32)
    while len(values) > 1:
        values = [a | b for a, b in zip(values[::2], values[1::2])] + values[len(values) & ~1:]
    return values[0]


def _bytes(strb):
    return Cat(*(strb[i].replicate(8) for i in range(4)))


class Regs(wiring.Component):
    """AXI4-Lite slave holding every register of a register map.

    Parameters
    ----------
    regmap : thermocline.regmap.RegisterMap
        The map (the engine's :data:`~thermocline.regmap.REGMAP` by default).
    irq : tuple of str, optional
        ``(cause, mask)``: a ``W1C`` and an ``RW`` register; ``irq`` is high while
        ``cause & mask`` is not 0. ``("IRQ_CAUSE", "IRQ_MASK")`` by default when the map
        has them; None for no interrupt.

    Members
    -------
    s_axil : ``In(axil_signature())``
        The bus.
    irq : ``Out(1)``
        Interrupt line (0 without ``irq``).
    <register> : ``Out(register_signature(reg))``
        One port per register that is not constant, named by the register in lower case
        (``scan_config__w``, ``int_period__we``, ``irq_cause__set`` ...).
    <window> : ``Out(window_signature(win))``
        One port per window (``scan_hist__addr`` ...).
    """

    def __init__(self, *, regmap: R.RegisterMap = R.REGMAP, irq: tuple | None = ()):
        if not isinstance(regmap, R.RegisterMap):
            raise ValueError(f"Regs: regmap must be a RegisterMap, got {regmap!r}")
        if irq == ():
            irq = (("IRQ_CAUSE", "IRQ_MASK")
                   if {"IRQ_CAUSE", "IRQ_MASK"} <= set(regmap.registers) else None)
        if irq is not None:
            cause, mask = (regmap.registers.get(n) for n in irq)
            if (cause is None or mask is None or cause.access != "W1C" or mask.access != "RW"
                    or cause.width != mask.width):
                raise ValueError(f"Regs: irq must name a W1C cause and an RW mask register "
                                 f"of the map, got {irq!r}")
        self._regmap = regmap
        self._irq = irq
        members = {"s_axil": In(axil_signature()), "irq": Out(1)}
        for name, reg in regmap.registers.items():
            sig = register_signature(reg)
            if sig is not None:
                members[name.lower()] = Out(sig)
        for name, win in regmap.windows.items():
            members[name.lower()] = Out(window_signature(win))
        super().__init__(members)

    @property
    def regmap(self) -> R.RegisterMap:
        return self._regmap

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        regs = self._regmap.registers
        wins = self._regmap.windows

        # --- held registers and unit-side values -----------------------------------------
        store = {}
        for name, reg in regs.items():
            if reg.access in ("RW", "W1C"):
                store[name] = Signal(reg.width, init=reg.reset, name=f"{name.lower()}_q")
                m.d.comb += getattr(self, name.lower()).w.eq(store[name])
        shadow = {name: Signal(32, name=f"{name.lower()}_hi")
                  for name, reg in regs.items() if reg.access == "RO" and reg.width == 64}

        def unit_value(reg):
            if reg.const:
                return Const(reg.reset, reg.width)
            return getattr(self, reg.name.lower()).r.as_value() & reg.mask

        # --- write channels --------------------------------------------------------------
        aw_full = Signal()
        w_full = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        bvalid = Signal()
        bresp = Signal(2)
        m.d.comb += [
            bus.awready.eq(~aw_full),
            bus.wready.eq(~w_full),
            bus.bvalid.eq(bvalid),
            bus.bresp.eq(bresp),
        ]
        aw_take = bus.awvalid & ~aw_full
        w_take = bus.wvalid & ~w_full
        with m.If(w_take):
            m.d.sync += [w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]

        # ``do_write`` (both channels held, no B response waiting) is a flip-flop of its
        # own, computed from the next state of the channels, so that the many write enables
        # it drives start at a register.
        do_write = Signal()
        aw_next = Signal()
        w_next = Signal()
        b_next = Signal()
        m.d.comb += [
            aw_next.eq((aw_full & ~do_write) | aw_take),
            w_next.eq((w_full & ~do_write) | w_take),
            b_next.eq(do_write | (bvalid & ~bus.bready)),
        ]
        m.d.sync += [
            aw_full.eq(aw_next), w_full.eq(w_next), bvalid.eq(b_next),
            do_write.eq(aw_next & w_next & ~b_next),
        ]

        lanes = Signal(4)                # strobed byte lanes of the write being performed
        m.d.comb += lanes.eq(w_strb & do_write.replicate(4))
        lane_bits = _bytes(lanes)
        written = w_data & lane_bits

        # The address is decoded when AW is taken: a one-hot position within its group of
        # words and a one-hot group, so a word's hit is the AND of two flip-flops.
        aw_word = bus.awaddr[2:R.ADDR_WIDTH]
        aw_pos, aw_group = _one_hot(m, aw_take, aw_word, "aw")
        writable = Signal()
        writable_words = {o >> 2 for r in regs.values() if r.access != "RO" for _, o, _ in r.words}
        with m.If(aw_take):
            m.d.sync += writable.eq(_lookup(aw_word, writable_words))
        clear_bits = {name: Signal(reg.width, name=f"{name.lower()}_clear_bits")
                      for name, reg in regs.items() if reg.access == "W1C"}
        for name, reg in regs.items():
            if reg.access == "RO":
                continue
            port = getattr(self, name.lower())
            strobes = []
            for _, offset, shift in reg.words:
                hit = _hit(aw_pos, aw_group, offset >> 2)
                strobe = hit & lanes.any()
                strobes.append(strobe)
                word_mask = (reg.mask >> shift) & _WORD
                if reg.access == "RW":
                    for k in range(4):
                        for lo, hi in _runs(word_mask, 8 * k, 8 * k + 8):
                            with m.If(hit & lanes[k]):
                                m.d.sync += store[name][shift + lo:shift + hi].eq(w_data[lo:hi])
                elif reg.access == "W1C":
                    m.d.comb += clear_bits[name].eq(written & word_mask & hit.replicate(32))
                elif reg.access == "WO":
                    m.d.sync += port.w.eq(written & word_mask & hit.replicate(32))
                else:
                    merged = (unit_value(reg) & ~lane_bits) | written
                    m.d.sync += port.w.eq(Mux(strobe, merged & reg.mask, 0))
            if reg.strobe:
                m.d.sync += port.we.eq(Cat(*strobes).any())
        for name, reg in regs.items():
            if reg.access == "W1C":
                port = getattr(self, name.lower())
                set_bits = port.set.as_value() & reg.mask
                m.d.sync += store[name].eq((store[name] & ~clear_bits[name]) | set_bits)
        with m.If(do_write):
            m.d.sync += bresp.eq(Mux(writable, R.OKAY, R.SLVERR))

        # --- read channels ---------------------------------------------------------------
        ar_addr = Signal(R.ADDR_WIDTH - 2)
        busy = Signal()          # an address is held, the response not yet taken
        phase = Signal(2)        # 1: select within groups, 2: select a group, 3: respond
        rdata = Signal(32)
        rresp = Signal(2)
        m.d.comb += [
            bus.arready.eq(~busy),
            bus.rvalid.eq(phase == 3),
            bus.rdata.eq(rdata),
            bus.rresp.eq(rresp),
        ]
        ar_take = bus.arvalid & ~busy
        ar_word = bus.araddr[2:R.ADDR_WIDTH]
        with m.If(ar_take):
            m.d.sync += [busy.eq(1), phase.eq(1), ar_addr.eq(ar_word)]
        with m.If((phase == 1) | (phase == 2)):
            m.d.sync += phase.eq(phase + 1)
        with m.If((phase == 3) & bus.rready):
            m.d.sync += [busy.eq(0), phase.eq(0)]
        ar_pos, ar_group = _one_hot(m, ar_take, ar_word, "ar")

        # Readable words by word index (WO words read 0 and have none).
        words = {}
        for name, reg in regs.items():
            for _, offset, shift in reg.words:
                index = offset >> 2
                if reg.access in ("RW", "W1C"):
                    words[index] = store[name][shift:shift + 32]
                elif reg.access != "WO":
                    full = unit_value(reg)
                    if reg.access == "RO" and reg.width == 64:
                        if shift:
                            words[index] = shadow[name]
                            continue
                        with m.If((phase == 1) & _hit(ar_pos, ar_group, index)):
                            m.d.sync += shadow[name].eq(full[32:64])
                    words[index] = full[shift:shift + 32]

        # Phase 1: the group of the address takes its word at the position, every other
        # group 0; phase 2: the OR of the groups and of the window words.
        gathered = []
        for g in sorted({i >> _GROUP_BITS for i in words}):
            group = Signal(32, name=f"group_{g:x}")
            picked = _or(v & ar_pos[i & _POS_MASK].replicate(32)
                         for i, v in words.items() if i >> _GROUP_BITS == g)
            with m.If(~ar_group[g]):
                m.d.sync += group.eq(0)
            with m.Elif(phase == 1):
                m.d.sync += group.eq(picked)
            gathered.append(group)
        ok = Signal()
        with m.If(ar_take):
            m.d.sync += ok.eq(_lookup(ar_word, {a >> 2 for a in self._regmap.addresses()}))
        for name, win in wins.items():
            port = getattr(self, name.lower())
            lo, hi = win.offset >> 2, win.end >> 2
            hit = Signal(name=f"{name.lower()}_hit")
            with m.If(ar_take):
                m.d.sync += hit.eq(_lookup(ar_word, range(lo, hi)))
            bits = len(port.addr)
            # An offset aligned to the window's index width needs no subtraction.
            index = ar_addr[:bits] if lo % (1 << bits) == 0 else ar_addr - lo
            m.d.comb += [port.addr.eq(index), port.re.eq((phase == 1) & hit)]
            gathered.append(port.data & hit.replicate(32))
        with m.If(phase == 2):
            m.d.sync += [rdata.eq(_or(gathered)), rresp.eq(Mux(ok, R.OKAY, R.SLVERR))]

        # --- interrupt -------------------------------------------------------------------
        if self._irq is not None:
            cause, mask = self._irq
            m.d.comb += self.irq.eq((store[cause] & store[mask]).any())
        return m


SYNTH_DESIGNS = {
    "regs": lambda: Regs(),
}
