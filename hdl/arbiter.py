"""One AXI4 master port shared by the engine's units, fixed priority.

:class:`AxiArbiter` takes the AXI4 master ports of several units (each an ``In`` port of the
arbiter) and drives one AXI4 master port, ``m_axi``. Units are listed in priority order: on
each channel the first unit with a request wins (demand walks first, prefetches last).

Reads. Address requests are granted per cycle; ``ARID`` downstream is the unit's ``ARID``
with the unit's number above it, and read data goes back to the unit by ``RID`` (bursts of
different units may interleave). A unit narrower than the bus issues narrow transfers
(``ARSIZE`` at most its own width); its data is taken from the lanes each beat's address
selects, so the unit sees its own bus. Each narrow unit has ``max_reads`` bursts in flight
at most.

Writes. ``AW`` is granted per cycle; the write data of the granted bursts follows in grant
order (``W`` is routed from a queue of grants, one cycle after its ``AW`` at the earliest,
so back-to-back single-beat writes go at one per cycle). Every write goes out with ``AWID``
0, so the memory performs and answers them in the order their addresses were accepted;
``B`` goes back to the units in that order, with the unit's own ``AWID``. Narrow units'
data and strobes are placed in the lanes of each beat's address.

Atomicity (see the contract in :mod:`hdl.scanner`):

* ``lock`` units (the walker) raise their ``lock`` input from the read of a read-modify-write
  to its write response; meanwhile no other unit's write address is granted — except while
  the lock holder's write waits for ``snoop.ready`` (``snoop_waits``), which means another
  unit holds the word or has queued a write of it, and that write may have to land first
  (otherwise neither would ever go). The walker writes only the byte holding A and D, so
  such an earlier write keeps its other bits.
* ``snooped`` units (the walker) make single-beat writes of whole 64-bit words with ``AW``
  and ``W`` offered together. ``snoop`` always shows the unit's offer as ``{addr, data}``;
  the write is granted only after a cycle on offer (``snoop.ready`` answers for the address
  offered the cycle before), with ``snoop.ready`` high and once the unit's previous write
  has passed its data, and ``snoop.valid`` is high in exactly the cycle the write's address
  is accepted downstream.

The memory must return, for every read whose address is accepted after a write's address,
data that includes the write (read-after-write ordering by address, which memory
controllers provide); the scanner's re-read rules rely on it.

Reset: units, arbiter and slave are reset together; bursts in flight are forgotten.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .axi import AxiParams, axi4_signature
from .scanner import snoop_layout

__all__ = ["AxiArbiter", "Unit"]


class Unit:
    """A unit's port on the arbiter: its name (the arbiter's member ``name``), its AXI
    parameters, and whether its writes are snooped and whether it has a ``lock``."""

    def __init__(self, name: str, params: AxiParams, *, snooped: bool = False,
                 lock: bool = False):
        if not isinstance(params, AxiParams):
            raise TypeError(f"Unit {name!r}: params must be an AxiParams, got {params!r}")
        if not name.isidentifier():
            raise ValueError(f"Unit: name must be an identifier, got {name!r}")
        self.name, self.params, self.snooped, self.lock = name, params, snooped, lock

    def __repr__(self):
        return f"Unit({self.name!r}, {self.params})"


class AxiArbiter(wiring.Component):
    """Fixed-priority AXI4 arbiter (module docstring).

    Parameters
    ----------
    params : AxiParams
        The downstream port. Its ``id_width`` must hold the widest unit's ID plus the unit
        number (``ceil_log2(len(units))`` bits); its data and address widths must be at
        least every unit's (narrower addresses are zero-extended).
    units : list of Unit
        In priority order (first wins).
    max_reads : int
        Read bursts in flight per narrow unit (2..32).
    max_writes : int
        Write bursts granted and not yet answered (2..64).

    Members
    -------
    <unit name> : ``In(axi4_signature(unit.params))``
        Each unit's master port.
    <unit name>_lock : ``In(1)``
        For ``lock`` units.
    snoop : ``Out(stream.Signature(snoop_layout(addr_width)))``
        Present when a unit is ``snooped``.
    snoop_waits : ``Out(1)``
        Present with ``snoop``: the snooped unit's write has been on offer since the cycle
        before and waits for ``snoop.ready``.
    m_axi : ``Out(axi4_signature(params))``
    """

    def __init__(self, params: AxiParams, units: list[Unit], *, max_reads: int = 8,
                 max_writes: int = 16):
        if not units:
            raise ValueError("AxiArbiter: at least one unit")
        names = [u.name for u in units]
        if len(set(names)) != len(names):
            raise ValueError(f"AxiArbiter: unit names must differ, got {names}")
        if "m_axi" in names or "snoop" in names:
            raise ValueError("AxiArbiter: 'm_axi' and 'snoop' are the arbiter's own ports")
        self._sel_bits = ceil_log2(len(units))
        for u in units:
            p = u.params
            if p.addr_width > params.addr_width:
                raise ValueError(f"AxiArbiter: unit {u.name} has {p.addr_width} address bits, "
                                 f"the bus only {params.addr_width}")
            if p.data_width > params.data_width:
                raise ValueError(f"AxiArbiter: unit {u.name} is {p.data_width} bits wide, "
                                 f"wider than the {params.data_width}-bit bus")
            if p.id_width + self._sel_bits > params.id_width:
                raise ValueError(f"AxiArbiter: id_width {params.id_width} cannot hold unit "
                                 f"{u.name}'s {p.id_width}-bit IDs and {self._sel_bits} "
                                 f"unit bits")
            if u.snooped and sum(v.snooped for v in units) > 1:
                raise ValueError("AxiArbiter: at most one unit is snooped")
            if u.snooped and p.data_width != 64:
                raise ValueError(f"AxiArbiter: snooped unit {u.name} must be 64 bits wide")
        if not 2 <= max_reads <= 32:
            raise ValueError(f"AxiArbiter: max_reads must be 2..32, got {max_reads}")
        if not 2 <= max_writes <= 64:
            raise ValueError(f"AxiArbiter: max_writes must be 2..64, got {max_writes}")
        self._params, self._units = params, list(units)
        self._max_reads, self._max_writes = max_reads, max_writes
        members = {u.name: In(axi4_signature(u.params)) for u in units}
        for u in units:
            if u.lock:
                members[f"{u.name}_lock"] = In(1)
        if any(u.snooped for u in units):
            members["snoop"] = Out(stream.Signature(snoop_layout(params.addr_width)))
            members["snoop_waits"] = Out(1)
        members["m_axi"] = Out(axi4_signature(params))
        super().__init__(members)

    @property
    def params(self) -> AxiParams:
        return self._params

    @property
    def units(self) -> list[Unit]:
        return list(self._units)

    def elaborate(self, platform):
        m = Module()
        bus = self.m_axi
        p = self._params
        units = self._units
        ports = [getattr(self, u.name) for u in units]
        n = len(units)
        sel = self._sel_bits
        bus_bytes = p.data_width // 8
        lo_bits = exact_log2(bus_bytes)

        # --- read address ----------------------------------------------------------------
        ar_fifos = {}
        for i, (u, port) in enumerate(zip(units, ports)):
            if u.params.data_width < p.data_width:
                f = SyncFIFOBuffered(width=lo_bits + 3, depth=self._max_reads)
                m.submodules[f"ar_{u.name}"] = f
                ar_fifos[i] = f
        ar_can = [Signal(name=f"ar_can_{u.name}") for u in units]
        ar_win = [Signal(name=f"ar_win_{u.name}") for u in units]
        for i, port in enumerate(ports):
            ok = port.arvalid
            if i in ar_fifos:
                ok = ok & ar_fifos[i].w_rdy
            m.d.comb += ar_can[i].eq(ok)
        taken = Const(0)
        for i in range(n):
            m.d.comb += ar_win[i].eq(ar_can[i] & ~taken)
            taken = taken | ar_can[i]
        m.d.comb += bus.arvalid.eq(taken)
        for i, (u, port) in enumerate(zip(units, ports)):
            with m.If(ar_win[i]):
                m.d.comb += [
                    bus.araddr.eq(port.araddr), bus.arlen.eq(port.arlen),
                    bus.arsize.eq(port.arsize), bus.arburst.eq(port.arburst),
                    bus.arid.eq(Cat(port.arid, Const(0, p.id_width - sel - u.params.id_width),
                                    Const(i, sel)) if sel else port.arid),
                ]
            m.d.comb += port.arready.eq(ar_win[i] & bus.arready)
            if i in ar_fifos:
                f = ar_fifos[i]
                m.d.comb += [
                    f.w_en.eq(ar_win[i] & bus.arready),
                    f.w_data.eq(Cat(port.araddr[:lo_bits], port.arsize)),
                ]

        # --- read data --------------------------------------------------------------------
        r_sel = bus.rid[p.id_width - sel:] if sel else Const(0, 1)
        for i, (u, port) in enumerate(zip(units, ports)):
            mine = bus.rvalid & (r_sel == i)
            m.d.comb += [
                port.rvalid.eq(mine), port.rid.eq(bus.rid[:u.params.id_width]),
                port.rresp.eq(bus.rresp), port.rlast.eq(bus.rlast),
            ]
            with m.If(r_sel == i):
                m.d.comb += bus.rready.eq(port.rready)
            if i not in ar_fifos:
                m.d.comb += port.rdata.eq(bus.rdata)
                continue
            f = ar_fifos[i]
            ubytes = u.params.data_width // 8
            first = Signal(init=1, name=f"r_first_{u.name}")
            lo = Signal(lo_bits, name=f"r_lo_{u.name}")       # address of the next beat
            start, size = f.r_data[:lo_bits], f.r_data[lo_bits:]
            aligned = Signal(lo_bits, name=f"r_start_{u.name}")
            m.d.comb += aligned.eq(start & ~((Const(1, lo_bits + 1) << size) - 1)[:lo_bits])
            cur = Mux(first, aligned, lo)
            slices = bus_bytes // ubytes
            m.d.comb += port.rdata.eq(
                bus.rdata.word_select(cur[exact_log2(ubytes):], u.params.data_width)
                if slices > 1 else bus.rdata)
            with m.If(mine & port.rready):
                m.d.sync += [lo.eq(cur + (Const(1, lo_bits + 1) << size)[:lo_bits]),
                             first.eq(bus.rlast)]
                m.d.comb += f.r_en.eq(bus.rlast)

        # --- write address ----------------------------------------------------------------
        locks = [getattr(self, f"{u.name}_lock") if u.lock else None for u in units]
        w_q = SyncFIFOBuffered(width=max(1, sel) + lo_bits + 3 + 1, depth=4)
        b_q = SyncFIFOBuffered(width=max(1, sel) + max(u.params.id_width for u in units),
                               depth=self._max_writes)
        m.submodules.w_q, m.submodules.b_q = w_q, b_q
        snoop = getattr(self, "snoop", None)
        aw_fire = Signal()
        aw_can = [Signal(name=f"aw_can_{u.name}") for u in units]
        aw_win = [Signal(name=f"aw_win_{u.name}") for u in units]
        # ``snoop.ready`` answers for the address offered the cycle before: the snooped
        # unit's write may be granted only once it has been on offer for a cycle, with no
        # earlier write of the unit still owing its W beat (so the data offered is this
        # write's). AXI holds an offered address and data until they are taken, so the
        # grant needs only this register, ``snoop.ready`` (a register too) and the room
        # downstream: nothing of the unit's combinational logic.
        offered = {}
        owed = {}
        for i, (u, port) in enumerate(zip(units, ports)):
            if u.snooped:
                offered[i] = Signal(name=f"offered_{u.name}")
                owed[i] = Signal(name=f"w_owed_{u.name}")
                m.d.sync += offered[i].eq(port.awvalid & port.wvalid & ~port.awready
                                          & ~owed[i])
        for i in offered:
            m.d.comb += self.snoop_waits.eq(offered[i] & ~snoop.ready)
        # A lock holder whose write waits for ``snoop.ready`` waits for a word another unit
        # holds or has queued a write of: that write may have to go first (else neither
        # would).
        held = []
        for j, (u, port) in enumerate(zip(units, ports)):
            if locks[j] is not None:
                lk = locks[j]
                if u.snooped:
                    lk = lk & ~self.snoop_waits
                held.append((j, lk))
        for i, (u, port) in enumerate(zip(units, ports)):
            ok = offered[i] & snoop.ready if u.snooped else port.awvalid
            for j, lk in held:
                if j != i:
                    ok = ok & ~lk
            if u.snooped:
                with m.If(aw_fire & aw_win[i]):
                    m.d.sync += owed[i].eq(1)
                with m.Elif(port.wvalid & port.wready & port.wlast):
                    m.d.sync += owed[i].eq(0)
            m.d.comb += aw_can[i].eq(ok)
        taken = Const(0)
        for i in range(n):
            m.d.comb += aw_win[i].eq(aw_can[i] & ~taken)
            taken = taken | aw_can[i]
        space = w_q.w_rdy & b_q.w_rdy
        m.d.comb += bus.awvalid.eq(taken & space)
        m.d.comb += aw_fire.eq(bus.awvalid & bus.awready)
        for i, (u, port) in enumerate(zip(units, ports)):
            with m.If(aw_win[i]):
                m.d.comb += [
                    bus.awaddr.eq(port.awaddr), bus.awlen.eq(port.awlen),
                    bus.awsize.eq(port.awsize), bus.awburst.eq(port.awburst),
                    w_q.w_data.eq(Cat(Const(i, max(1, sel)), port.awaddr[:lo_bits],
                                      port.awsize, Const(int(u.snooped), 1))),
                    b_q.w_data.eq(Cat(Const(i, max(1, sel)), port.awid)),
                ]
            m.d.comb += port.awready.eq(aw_win[i] & space & bus.awready)
        m.d.comb += [bus.awid.eq(0), w_q.w_en.eq(aw_fire), b_q.w_en.eq(aw_fire)]
        if snoop is not None:
            # The payload is the snooped unit's offer whether or not it wins (``ready`` may
            # depend on the payload, and winning depends on ``ready``).
            for i, (u, port) in enumerate(zip(units, ports)):
                if u.snooped:
                    m.d.comb += [snoop.valid.eq(aw_win[i] & space & bus.awready),
                                 snoop.payload.addr.eq(port.awaddr),
                                 snoop.payload.data.eq(port.wdata)]

        # --- write data ----------------------------------------------------------------------
        w_unit = w_q.r_data[:max(1, sel)]
        w_start = w_q.r_data[max(1, sel):max(1, sel) + lo_bits]
        w_size = w_q.r_data[max(1, sel) + lo_bits:max(1, sel) + lo_bits + 3]
        w_first = Signal(init=1)
        w_lo = Signal(lo_bits)
        w_aligned = Signal(lo_bits)
        m.d.comb += w_aligned.eq(w_start & ~((Const(1, lo_bits + 1) << w_size) - 1)[:lo_bits])
        w_cur = Mux(w_first, w_aligned, w_lo)
        for i, (u, port) in enumerate(zip(units, ports)):
            with m.If(w_q.r_rdy & (w_unit == i)):
                ubytes = u.params.data_width // 8
                slices = bus_bytes // ubytes
                if slices > 1:
                    k = w_cur[exact_log2(ubytes):]
                    m.d.comb += [bus.wdata.eq(Cat(*[port.wdata] * slices)),
                                 bus.wstrb.eq(port.wstrb << (k * ubytes))]
                else:
                    m.d.comb += [bus.wdata.eq(port.wdata), bus.wstrb.eq(port.wstrb)]
                m.d.comb += [bus.wvalid.eq(port.wvalid), bus.wlast.eq(port.wlast),
                             port.wready.eq(bus.wready)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_lo.eq(w_cur + (Const(1, lo_bits + 1) << w_size)[:lo_bits]),
                         w_first.eq(bus.wlast)]
            m.d.comb += w_q.r_en.eq(bus.wlast)

        # --- write response ------------------------------------------------------------------
        b_unit = b_q.r_data[:max(1, sel)]
        b_id = b_q.r_data[max(1, sel):]
        for i, (u, port) in enumerate(zip(units, ports)):
            mine = b_q.r_rdy & (b_unit == i)
            m.d.comb += [port.bvalid.eq(bus.bvalid & mine), port.bresp.eq(bus.bresp),
                         port.bid.eq(b_id[:u.params.id_width])]
            with m.If(mine):
                m.d.comb += bus.bready.eq(port.bready)
        m.d.comb += b_q.r_en.eq(bus.bvalid & bus.bready)
        return m
