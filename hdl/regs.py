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
  rises two cycles after the address is taken (three for a window, whose memory answers
  one cycle after ``re``). A read of a register's LO word captures its HI word in the cycle
  after the address is taken.
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


def _or(values):
    """The OR of ``values`` (0 when there are none)."""
    out = Const(0, 32)
    for v in values:
        out = out | v
    return out


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

        # --- held registers and unit-side outputs ----------------------------------------
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
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += aw_full.eq(1)
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)

        do_write = Signal()
        m.d.comb += do_write.eq(aw_full & w_full & ~bvalid)
        any_strb = w_strb.any()
        byte_mask = _bytes(w_strb)
        writable = []
        set_bits = {name: Signal(reg.width, name=f"{name.lower()}_set_bits")
                    for name, reg in regs.items() if reg.access == "W1C"}
        clear_bits = {name: Signal(reg.width, name=f"{name.lower()}_clear_bits")
                      for name in set_bits}
        for name, reg in regs.items():
            port = getattr(self, name.lower(), None)
            strobes = []
            for _, offset, shift in reg.words:
                if reg.access == "RO":
                    continue
                hit = Signal(name=f"{name.lower()}_w{shift}_hit")
                with m.If(bus.awvalid & bus.awready):
                    m.d.sync += hit.eq(bus.awaddr[2:R.ADDR_WIDTH] == offset >> 2)
                writable.append(hit)
                mask = Signal(reg.width, name=f"{name.lower()}_w{shift}_mask")
                m.d.comb += mask.eq((byte_mask << shift) & reg.mask)
                data = Signal(reg.width, name=f"{name.lower()}_w{shift}_data")
                m.d.comb += data.eq((w_data << shift) & mask)
                strobe = do_write & hit & any_strb
                if reg.access == "RW":
                    with m.If(strobe):
                        m.d.sync += store[name].eq((store[name] & ~mask) | data)
                elif reg.access == "W1C":
                    with m.If(strobe):
                        m.d.comb += clear_bits[name].eq(data)
                else:
                    base = 0 if reg.access == "WO" else unit_value(reg) & ~mask
                    with m.If(strobe):
                        m.d.sync += port.w.eq(base | data)
                    with m.Else():
                        m.d.sync += port.w.eq(0)
                strobes.append(strobe)
            if reg.strobe:
                m.d.sync += port.we.eq(Cat(*strobes).any())
        for name, reg in regs.items():
            if reg.access == "W1C":
                port = getattr(self, name.lower())
                m.d.comb += set_bits[name].eq(port.set.as_value() & reg.mask)
                m.d.sync += store[name].eq((store[name] & ~clear_bits[name]) | set_bits[name])
        with m.If(do_write):
            m.d.sync += [
                aw_full.eq(0), w_full.eq(0), bvalid.eq(1),
                bresp.eq(Mux(Cat(*writable).any(), R.OKAY, R.SLVERR)),
            ]

        # --- read channels ---------------------------------------------------------------
        ar_addr = Signal(R.ADDR_WIDTH - 2)
        busy = Signal()          # an address is held, the response not yet taken
        phase = Signal(2)        # 1: decode, 2: window data, 3: response
        rdata = Signal(32)
        rresp = Signal(2)
        m.d.comb += [
            bus.arready.eq(~busy),
            bus.rvalid.eq(phase == 3),
            bus.rdata.eq(rdata),
            bus.rresp.eq(rresp),
        ]
        ar_take = bus.arvalid & bus.arready
        ar_word = bus.araddr[2:R.ADDR_WIDTH]
        with m.If(ar_take):
            m.d.sync += [busy.eq(1), phase.eq(1), ar_addr.eq(ar_word)]

        words = []
        mapped = []
        win_hits = []
        for name, reg in regs.items():
            for _, offset, shift in reg.words:
                hit = Signal(name=f"{name.lower()}_r{shift}_hit")
                with m.If(ar_take):
                    m.d.sync += hit.eq(ar_word == offset >> 2)
                mapped.append(hit)
                if reg.access in ("RW", "W1C"):
                    word = store[name][shift:shift + 32]
                elif reg.access == "WO":
                    continue
                else:
                    full = unit_value(reg)
                    word = full[shift:shift + 32]
                    if reg.access == "RO" and reg.width == 64:
                        if shift:
                            word = shadow[name]
                        else:
                            with m.If((phase == 1) & hit):
                                m.d.sync += shadow[name].eq(full[32:64])
                words.append(word & hit.replicate(32))
        for name, win in wins.items():
            port = getattr(self, name.lower())
            lo, hi = win.offset >> 2, win.end >> 2
            hit = Signal(name=f"{name.lower()}_hit")
            with m.If(ar_take):
                m.d.sync += hit.eq((ar_word >= lo) & (ar_word < hi))
            mapped.append(hit)
            m.d.comb += [port.addr.eq(ar_addr - lo), port.re.eq((phase == 1) & hit)]
            hit_q = Signal(name=f"{name.lower()}_hit_q")
            m.d.sync += hit_q.eq((phase == 1) & hit)
            win_hits.append((hit, hit_q, port))
        any_win = Cat(*(h for h, _, _ in win_hits)).any() if win_hits else Const(0)
        ok = Cat(*mapped).any()
        value = Signal(32)
        m.d.comb += value.eq(_or(words))

        with m.If(phase == 1):
            m.d.sync += rresp.eq(Mux(ok, R.OKAY, R.SLVERR))
            with m.If(any_win):
                m.d.sync += phase.eq(2)
            with m.Else():
                m.d.sync += [rdata.eq(value), phase.eq(3)]
        with m.If(phase == 2):
            word = _or([port.data & hit_q.replicate(32) for _, hit_q, port in win_hits])
            m.d.sync += [rdata.eq(word), phase.eq(3)]
        with m.If((phase == 3) & bus.rready):
            m.d.sync += [busy.eq(0), phase.eq(0)]

        # --- interrupt -------------------------------------------------------------------
        if self._irq is not None:
            cause, mask = self._irq
            m.d.comb += self.irq.eq((store[cause] & store[mask]).any())
        return m


SYNTH_DESIGNS = {
    "regs": lambda: Regs(),
}
