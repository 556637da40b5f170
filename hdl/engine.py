"""The engine top level: every unit on one AXI4 master, one AXI4-Lite register block, one
interrupt line.

The hardware twin of :class:`model.engine.Engine`. Inside:

* :class:`~hdl.walker.Walker` — demand walks from ``walk_req`` answered on ``walk_resp``;
  every successful walk of the guest dimension is reported to the exit detector (an access
  event, address space = the request's CR3), as the model's engine does. Its invalidations,
  in this order:

  - for coherence, one ``scan_clear`` command per leaf whose A bit an EPT or NPT pass
    cleared, for the host root ``SCAN_HROOT`` held when the pass started (the next pass
    starts only once they have all gone), from a queue of
    ``clear_depth`` reports (:class:`~hdl.clear_reports.ClearReports`). A scanner write goes
    only when the queue has room for its report, so the scanner never holds a write response
    for the walker; only while the walker's own write waits for ``snoop.ready`` (for a word
    the scanner holds or has queued a write of) does a scanner write go regardless. The
    queue can then overflow, and one ``root`` command for that host root replaces the lost
    reports: the walker forgets more, never less;
  - the ``WALK_INV_*`` register commands, from a queue of four; a command that finds it
    full becomes one ``all`` command, so none is lost.
* :class:`~hdl.scanner.Scanner` — passes started by ``SCAN_CMD.START`` or, with
  ``SCAN_CTRL.ENABLE``, whenever the interval controller says one is due; configuration from
  ``SCAN_CONFIG``, ``SCAN_LONG``, ``LP_*``; statistics, histograms and candidates read
  through the register windows. At the end of a pass the engine reads the pass's accessed,
  leaf, bus-error and cycle counts, tells the interval controller, then raises
  ``PASS_DONE`` (and ``CANDIDATES``, ``BUS_ERROR``) and updates ``SCAN_LAST_PASS``: the
  windows hold the pass once ``SCAN_LAST_PASS`` says so.
* :class:`~hdl.interval.IntervalController` — ``INT_*`` registers; ``OVERRUN`` cause.
* :class:`~hdl.prefetcher.Prefetcher` — faults from ``fault``, GPAs out on ``prefetch``;
  window and direction from ``PF_CONFIG``; ``prefetch_drop`` abandons the request in
  progress. It reads memory only when no demand walk wants the port.
* :class:`~hdl.exit_detector.ExitDetector` — guest PTE writes from ``pte_write`` and the
  walker's access events (those first); drops queue in the ``EXIT_DROP_*`` registers
  (``EXIT_DROP`` cause), ``drop_depth`` of them; a full queue holds the detector, which
  holds its inputs.
* :class:`~hdl.arbiter.AxiArbiter` — walker, scanner, prefetcher in that priority order on
  ``m_axi``; the walker's writes are shown to the scanner (``snoop``). The walker's A/D
  updates write only the byte that holds A and D, so a scanner write to the same word
  landing between the update's read and its write keeps its level bits and loses nothing
  of the walker's: the result is the scanner's write followed by the walker's A/D set. The
  arbiter therefore does not hold the port for the walker's read-modify-write (``lock``
  unused): holding it deadlocks when the memory answers reads in order and the scanner,
  whose writes would wait, stops taking read data.
* :class:`~hdl.regs.Regs` — ``s_axil`` and ``irq`` (``IRQ_CAUSE & IRQ_MASK``).

Everything runs in one clock domain with one synchronous reset; the AXI slave and the
register master are reset with the engine.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect, flipped

from thermocline import layouts as L
from .arbiter import AxiArbiter, Unit
from .clear_reports import ClearReports
from .axi import AxiParams, axi4_signature
from .exit_detector import COUNTERS as EXIT_COUNTERS, EXIT_DROP, EXIT_EVENT, ExitDetector
from .interval import IntervalController
from .layouts import struct
from .prefetcher import PREFETCH_REQ, PREFETCH_RESP, Prefetcher
from .regs import Regs, axil_signature
from .scanner import STAT_NAMES, Scanner, stat_index
from .walker import COUNTERS as WALK_COUNTERS, INV, Walker

__all__ = ["Engine", "SYNTH_DESIGNS"]

#: What the access-event queue keeps of an ``EXIT_EVENT`` made from a walk response (kind 0,
#: no old or new value, a 48-bit GVA).
_ACCESS = data.StructLayout({"user": 1, "index": 9, "table": 40, "asid": 64, "gva": 48})


class Engine(wiring.Component):
    """The engine (module docstring).

    Parameters (keyword-only)
    ----------
    host : "ept" or "npt"
        Host table format of the walker and the prefetcher.
    pa_bits : int
        Physical-address width of the walker, the scanner and the prefetcher, 32..52: the
        host CPU's MAXPHYADDR, so that entry address bits at and above it are reserved (a
        fault or a malformed entry) as they are for the CPU. The walker and the scanner
        keep addresses, cache tags and frames this wide; ``m_axi`` stays 52 bits, the
        high bits zero for their transfers.
    data_width : int
        ``m_axi`` data width, 64/128/256 (the scanner's width; the walker and the
        prefetcher make 64-bit transfers on it).
    walker : dict
        Walker cache sizes and options (:class:`hdl.walker.Walker` keywords except
        ``host``, ``pa_bits`` and ``axi``).
    scanner : dict
        Scanner parameters (:class:`hdl.scanner.Scanner` keywords except ``data_width``
        and ``pa_bits``).
    exits : dict
        Exit detector table sizes and thresholds (:class:`hdl.exit_detector.ExitDetector`).
    prefetch_burst : int
        Most beats of one prefetch window burst.
    drop_depth : int
        Exit drop events the register queue holds.
    clear_depth : int
        Cleared-leaf reports of the scanner waiting for the walker; beyond that, the walker
        drops every cached translation of ``SCAN_HROOT`` instead.

    Members
    -------
    m_axi : ``Out(axi4_signature(...))``, 52-bit addresses, ``data_width`` data, 6-bit IDs
    s_axil : ``In(axil_signature())``
    irq : ``Out(1)``
    walk_req, walk_resp : walker request and response streams (``WALK_REQ``, ``WALK_RESP``)
    fault, prefetch : prefetcher request and response streams
    prefetch_drop : ``In(1)``
    pte_write : guest PTE writes (``EXIT_EVENT`` with ``KIND`` 1)
    """

    def __init__(self, *, host: str = "ept", pa_bits: int = 52, data_width: int = 64,
                 walker: dict | None = None, scanner: dict | None = None,
                 exits: dict | None = None, prefetch_burst: int = 16, drop_depth: int = 8,
                 clear_depth: int = 32):
        if host not in ("ept", "npt"):
            raise ValueError(f"Engine: host must be 'ept' or 'npt', got {host!r}")
        if isinstance(pa_bits, bool) or not isinstance(pa_bits, int) \
                or not 32 <= pa_bits <= 52:
            raise ValueError(f"Engine: pa_bits must be an integer in 32..52, got {pa_bits!r}")
        self._host = host
        self._pa_bits = pa_bits
        self._walker = dict(walker or {})
        self._scanner = dict(scanner or {})
        self._exits = dict(exits or {})
        for unit, params, keys in (("walker", self._walker, ("host", "pa_bits", "axi")),
                                   ("scanner", self._scanner, ("pa_bits", "data_width"))):
            for key in keys:
                if key in params:
                    raise ValueError(f"Engine: {unit} parameter {key!r} is set by the engine")
        self._data_width = data_width
        self._prefetch_burst = prefetch_burst
        if not 1 <= drop_depth <= 256:
            raise ValueError(f"Engine: drop_depth must be 1..256, got {drop_depth}")
        self._drop_depth = drop_depth
        if not 3 <= clear_depth <= 512:
            raise ValueError(f"Engine: clear_depth must be 3..512, got {clear_depth}")
        self._clear_depth = clear_depth
        self._bus = AxiParams(addr_width=52, data_width=data_width, id_width=6)
        super().__init__({
            "m_axi": Out(axi4_signature(self._bus)),
            "s_axil": In(axil_signature()),
            "irq": Out(1),
            "walk_req": In(stream.Signature(struct(L.WALK_REQ))),
            "walk_resp": Out(stream.Signature(struct(L.WALK_RESP))),
            "fault": In(stream.Signature(struct(PREFETCH_REQ))),
            "prefetch": Out(stream.Signature(struct(PREFETCH_RESP))),
            "prefetch_drop": In(1),
            "pte_write": In(stream.Signature(struct(EXIT_EVENT))),
        })

    @property
    def bus(self) -> AxiParams:
        return self._bus

    def elaborate(self, platform):
        m = Module()
        self._pass_coherent = Signal()       # the pass scans an EPT or NPT tree
        self._scan_pending = Signal()        # a pass is wanted or its end not yet published
        pa = self._pa_bits
        wk = m.submodules.walker = Walker(
            host=self._host, pa_bits=pa,
            axi=AxiParams(addr_width=pa, data_width=64, id_width=4), **self._walker)
        sc = m.submodules.scanner = Scanner(data_width=self._data_width, pa_bits=pa,
                                            **self._scanner)
        pf = m.submodules.prefetcher = Prefetcher(host=self._host, pa_bits=pa,
                                                   max_burst=self._prefetch_burst)
        ex = m.submodules.exits = ExitDetector(**self._exits)
        iv = m.submodules.interval = IntervalController()
        rg = m.submodules.regs = Regs()
        arb = m.submodules.arbiter = AxiArbiter(self._bus, [
            Unit("walker", wk.axi,
                 snooped=True),
            Unit("scanner", sc.params),
            Unit("prefetch", AxiParams(addr_width=52, data_width=64, id_width=4)),
        ])
        connect(m, wk.m_axi, arb.walker)
        connect(m, pf.m_axi, arb.prefetch)
        # The walker's addresses are below 2 ** pa_bits: the snooped address is its low bits.
        m.d.comb += [sc.snoop.valid.eq(arb.snoop.valid), arb.snoop.ready.eq(sc.snoop.ready),
                     sc.snoop.payload.addr.eq(arb.snoop.payload.addr[:pa]),
                     sc.snoop.payload.data.eq(arb.snoop.payload.data)]
        connect(m, arb.m_axi, flipped(self.m_axi))
        connect(m, flipped(self.s_axil), rg.s_axil)
        m.d.comb += self.irq.eq(rg.irq)

        cause = rg.irq_cause.set
        m.d.comb += [
            rg.status.r.walk_busy.eq(wk.busy),
            rg.status.r.scan_busy.eq(sc.busy | self._scan_pending),
            rg.status.r.pass_due.eq(iv.due),
        ]
        for name in WALK_COUNTERS:
            m.d.comb += getattr(rg, f"walk_{name}").r.eq(getattr(wk.counters, name))
        for name in EXIT_COUNTERS:
            m.d.comb += getattr(rg, f"exit_{name}").r.eq(getattr(ex.counters, name))
        m.d.comb += [
            rg.exit_config.r.run_threshold.eq(ex.params["run_threshold"]),
            rg.exit_config.r.tables_needed.eq(ex.params["tables_needed"]),
        ]

        self._walker_side(m, wk, sc, ex, rg, cause)
        self._scanner_port(m, sc, arb)
        self._scanner_side(m, sc, iv, rg, cause)
        self._prefetch_side(m, pf, wk, arb, rg)
        self._exit_side(m, ex, rg, cause)
        return m

    # --- walker: requests, responses, access events, invalidations ---------------------------

    def _walker_side(self, m, wk, sc, ex, rg, cause):
        # Requests pass straight through; the request is kept for the access event.
        m.d.comb += [
            wk.req.valid.eq(self.walk_req.valid), wk.req.payload.eq(self.walk_req.payload),
            self.walk_req.ready.eq(wk.req.ready),
        ]
        req = Signal(struct(L.WALK_REQ))
        with m.If(wk.req.valid & wk.req.ready):
            m.d.sync += req.eq(wk.req.payload)

        # Responses: a translation that walked the guest dimension also makes an access
        # event; the response waits until the event queue has room.
        # The queue keeps only the fields an access event sets (the rest are zero).
        acc = m.submodules.access_q = SyncFIFOBuffered(width=_ACCESS.size, depth=4)
        self._access_q = acc
        resp = wk.resp.payload
        walked = resp.PTE_VALID                    # (set only on a translation)
        room = ~walked | acc.w_rdy
        m.d.comb += [
            self.walk_resp.valid.eq(wk.resp.valid & room),
            self.walk_resp.payload.eq(resp),
            wk.resp.ready.eq(self.walk_resp.ready & room),
        ]
        event = Signal(_ACCESS)
        m.d.comb += [
            event.user.eq(req.USER), event.asid.eq(req.CR3), event.gva.eq(req.GVA[:48]),
            event.table.eq(resp.PTE_GPA[12:52]), event.index.eq(resp.PTE_GPA[3:12]),
            acc.w_data.eq(event),
            acc.w_en.eq(wk.resp.valid & wk.resp.ready & walked),
        ]
        with m.If(wk.resp.valid & wk.resp.ready & (resp.FAULT != 0)):
            m.d.comb += cause.walk_fault.eq(1)

        # Invalidations: the scanner's cleared leaves (one command per leaf), then the
        # register command queue.
        cmd_q = m.submodules.inv_q = SyncFIFOBuffered(
            width=struct(L.WALK_INV).size, depth=4)
        cmd = Signal(struct(L.WALK_INV))
        w = rg.walk_inv_cmd.w
        m.d.comb += [
            cmd.OP.eq(w.op), cmd.MATCH_CR3.eq(w.match_cr3), cmd.MATCH_HROOT.eq(w.match_hroot),
            cmd.SIZE.eq(w.size), cmd.ADDR.eq(rg.walk_inv_addr.w),
            cmd.CR3.eq(rg.walk_inv_cr3.w), cmd.HROOT.eq(rg.walk_inv_hroot.w),
            cmd_q.w_data.eq(cmd), cmd_q.w_en.eq(rg.walk_inv_cmd.we),
        ]
        # The scanner's cleared leaves go first (hdl.clear_reports), then the register
        # command queue.
        cr = self._clear_reports = m.submodules.clear_reports = ClearReports(
            lanes=sc.lanes, depth=self._clear_depth)
        # (A pass over an IA-32e table, a shadow table of guest-virtual addresses, has nothing
        # cached in the walker: its reports are dropped, as the model's engine reports none.)
        m.d.comb += [cr.report.payload.eq(sc.cleared.payload),
                     cr.report.valid.eq(sc.cleared.valid & self._pass_coherent),
                     sc.cleared.ready.eq(cr.report.ready)]
        # A command that finds its queue full is not lost: it is replaced by one that drops
        # every cached translation (``all``), sent before the queued ones. The walker
        # forgets more, never less. The command chosen waits in a register for the walker,
        # so that the walker's input starts at flip-flops.
        cmd_lost = Signal()
        every = Signal(struct(L.WALK_INV))
        m.d.comb += every.OP.eq(INV["all"])
        inv_valid = Signal()
        inv_payload = Signal(struct(L.WALK_INV))
        take = Signal()                            # the register is free for a command
        m.d.comb += [take.eq(~inv_valid | wk.inv.ready),
                     wk.inv.valid.eq(inv_valid), wk.inv.payload.eq(inv_payload)]
        with m.If(take):
            m.d.sync += inv_valid.eq(0)
            with m.If(~cr.quiet):
                m.d.comb += cr.inv.ready.eq(1)
                m.d.sync += [inv_valid.eq(cr.inv.valid), inv_payload.eq(cr.inv.payload)]
            with m.Elif(cmd_lost):
                m.d.sync += [inv_valid.eq(1), inv_payload.eq(every), cmd_lost.eq(0)]
            with m.Elif(cmd_q.r_rdy):
                m.d.comb += cmd_q.r_en.eq(1)
                m.d.sync += [inv_valid.eq(1), inv_payload.eq(cmd_q.r_data)]
        with m.If(rg.walk_inv_cmd.we & ~cmd_q.w_rdy):   # (after the clear above: it wins)
            m.d.sync += cmd_lost.eq(1)

    # --- the scanner's memory port: writes wait for room for their cleared reports -----------

    def _scanner_port(self, m, sc, arb):
        """The scanner's AXI port onto the arbiter, with one gate: a write address goes only
        while the cleared-report queue has room for the report of every scanner write not
        yet answered, this one included, and one more (the room is a register, a cycle
        old), so a report never finds the queue full and the scanner never holds a write
        response. The gate opens anyway while the walker's
        A/D write waits for ``snoop.ready``: it waits for a word the scanner holds or has
        queued a write of, and the scanner may need that write to go first (a word in the
        step stage leaves only through the write queue); only then can the queue
        overflow."""
        src, dst = sc.m_axi, arb.scanner
        for name, member in src.signature.members.items():
            if name in ("awvalid", "awready"):
                continue
            if member.flow == Out:
                m.d.comb += getattr(dst, name).eq(getattr(src, name))
            else:
                m.d.comb += getattr(src, name).eq(getattr(dst, name))
        cr = self._clear_reports
        m.d.comb += [cr.write_sent.eq(dst.awvalid & dst.awready),
                     cr.write_done.eq(dst.bvalid & dst.bready)]
        allow = Signal()
        m.d.comb += [
            allow.eq(cr.room | arb.snoop_waits),
            dst.awvalid.eq(src.awvalid & allow),
            src.awready.eq(dst.awready & allow),
        ]

    # --- scanner and interval controller ---------------------------------------------------------

    def _scanner_side(self, m, sc, iv, rg, cause):
        cfg = rg.scan_config.w
        lg = rg.scan_long.w
        lp = rg.lp_config.w
        m.d.comb += [
            sc.config.fmt.eq(cfg.fmt), sc.config.levels.eq(cfg.levels), sc.config.up.eq(cfg.up),
            sc.config.down.eq(cfg.down), sc.config.long_every.eq(lg.every),
            sc.config.long_levels.eq(lg.levels), sc.config.long_need.eq(lg.need),
            sc.config.lp_enable.eq(lp.enable), sc.config.lp_shift.eq(lp.shift),
            sc.config.lp_threshold.eq(lp.threshold), sc.config.lp_top_k.eq(lp.top_k),
            sc.config.lp_warmup.eq(rg.lp_warmup.w.passes),
            sc.config.lp_max_nonpresent.eq(rg.lp_max_nonpresent.w.count),
        ]
        # Starts: a command, or the interval controller with continuous scanning on.
        want = Signal()
        set_index = Signal()
        with m.If(rg.scan_cmd.we & rg.scan_cmd.w.start & ~sc.busy & ~want):
            m.d.sync += [want.eq(1), set_index.eq(rg.scan_cmd.w.set_index)]
        ctrl = rg.scan_ctrl.w
        unread = ctrl.ack & rg.irq_cause.w.pass_done        # the last pass is not yet read
        with m.Elif(ctrl.enable & iv.due & ~sc.busy & ~want & ~unread):
            m.d.sync += [want.eq(1), set_index.eq(0)]
        # A pass starts only once the reports of the one before have all gone to the walker
        # (their host root is that pass's).
        m.d.comb += [
            sc.start.valid.eq(want & self._clear_reports.quiet),
            sc.start.payload.root.eq(rg.scan_root.w),
            sc.start.payload.pass_index.eq(rg.scan_pass_index.w),
            sc.start.payload.set_index.eq(set_index),
        ]
        # Busy from the command until the end figures are published (``PASS_DONE``).
        m.d.comb += self._scan_pending.eq(want | sc.done.valid)
        started = sc.start.valid & sc.start.ready
        with m.If(started):
            m.d.sync += want.eq(0)
        m.d.comb += iv.started.eq(started)
        # The host root of the pass's cleared reports is sampled at its start, as the rest of
        # the scanner's configuration is.
        pass_hroot = Signal(64)
        with m.If(started):
            m.d.sync += [pass_hroot.eq(rg.scan_hroot.w),
                         self._pass_coherent.eq(rg.scan_config.w.fmt < 2)]   # EPT, NPT
        m.d.comb += self._clear_reports.hroot.eq(pass_hroot)

        # The interval controller's configuration and commands.
        m.d.comb += [
            iv.config.mode.eq(rg.int_mode.w.mode),
            iv.config.min_period.eq(rg.int_min_period.w.period),
            iv.config.max_period.eq(rg.int_max_period.w.period),
            iv.config.target.eq(rg.int_ratio.w.target),
            iv.config.hysteresis.eq(rg.int_ratio.w.hysteresis),
            iv.config.step_shift.eq(rg.int_step.w.shift),
            iv.set_period.valid.eq(rg.int_period.we),
            iv.set_period.payload.eq(rg.int_period.w.period),
            rg.int_period.r.period.eq(iv.period),
            iv.set_batch.valid.eq(rg.int_batch.we),
            iv.set_batch.payload.pages.eq(rg.int_batch.w.pages),
            iv.set_batch.payload.cpp_q16.eq(rg.int_cpp.w.cpp_q16),
            iv.clear_overrun.eq(rg.int_cmd.we & rg.int_cmd.w.clear_overrun),
            rg.int_status.r.overrun.eq(iv.overrun),
            rg.int_overrun_count.r.count.eq(iv.overrun_count),
            rg.int_last_start.r.cycle.eq(iv.last_start),
            rg.int_now.r.cycle.eq(iv.now),
            cause.overrun.eq(iv.overran),
        ]

        # End of a pass: read the figures the interval controller needs, then take ``done``.
        # The leaves of the three sizes are summed as they are read, so that the sum leaves
        # a register (it decides whether the controller starts a ratio-mode adaptation).
        where = stat_index(sc.max_levels)
        reads = ["accessed", "leaves_4k", "leaves_2m", "leaves_1g", "bus_errors", "cycles"]
        step = Signal(range(len(reads) + 2))
        got = {name: Signal(32, name=f"end_{name}") for name in reads
               if not name.startswith("leaves")}
        leaves = Signal(32, name="end_leaves")
        ending = Signal()
        m.d.comb += ending.eq(sc.done.valid)
        stats_addr = Signal.like(sc.stats_addr)
        with m.If(ending):
            with m.Switch(step):
                for k, name in enumerate(reads):
                    with m.Case(k):
                        m.d.comb += stats_addr.eq(where[name])
            for k, name in enumerate(reads):
                with m.If(step == k + 1):
                    if name == "leaves_4k":
                        m.d.sync += leaves.eq(sc.stats_data)
                    elif name.startswith("leaves"):
                        m.d.sync += leaves.eq(leaves + sc.stats_data)
                    else:
                        m.d.sync += got[name].eq(sc.stats_data)
            with m.If(step == len(reads) + 1):
                m.d.comb += [
                    sc.done.ready.eq(1),
                    iv.pass_end.valid.eq(1),
                    iv.pass_end.payload.cycles.eq(got["cycles"]),
                    iv.pass_end.payload.accessed.eq(got["accessed"]),
                    iv.pass_end.payload.leaves.eq(leaves),
                    cause.pass_done.eq(1),
                    cause.candidates.eq(sc.done.payload.candidates != 0),
                    cause.bus_error.eq(got["bus_errors"] != 0),
                ]
                m.d.sync += [
                    step.eq(0),
                    rg.scan_last_pass.r.index.eq(sc.done.payload.pass_index),
                    rg.lp_count.r.count.eq(sc.done.payload.candidates),
                ]
            with m.Else():
                m.d.sync += step.eq(step + 1)

        # Register windows on the scanner's statistics and candidates (one read at a time;
        # each answers one cycle after its address, as the scanner's ports do).
        nstat = len(STAT_NAMES)
        levels = sc.max_levels
        zero = Signal()                      # the element read is past the unit's histograms
        with m.If(~ending):
            with m.If(rg.scan_stat.re):
                m.d.comb += stats_addr.eq(rg.scan_stat.addr)
            with m.Elif(rg.scan_hist.re):
                m.d.comb += stats_addr.eq(where["histogram"] + rg.scan_hist.addr)
            with m.Elif(rg.scan_long_hist.re):
                m.d.comb += stats_addr.eq(where["long_histogram"] + rg.scan_long_hist.addr)
        m.d.sync += zero.eq((rg.scan_hist.re & (rg.scan_hist.addr >= levels))
                            | (rg.scan_long_hist.re & (rg.scan_long_hist.addr >= levels)))
        m.d.comb += sc.stats_addr.eq(stats_addr)
        value = Mux(zero, 0, sc.stats_data)
        m.d.comb += [rg.scan_stat.data.eq(sc.stats_data), rg.scan_hist.data.eq(value),
                     rg.scan_long_hist.data.eq(value)]
        assert nstat + 2 * levels <= 2 ** len(sc.stats_addr)

        word = Signal(2)
        m.d.sync += word.eq(rg.lp_cand.addr[:2])
        m.d.comb += sc.cand_addr.eq(rg.lp_cand.addr[2:])
        c = sc.cand_data
        entry = Cat(c.entry_addr.as_unsigned(), Const(0, 52 - self._pa_bits))   # 52 bits
        region = c.region.as_unsigned()
        with m.Switch(word):
            with m.Case(0):
                m.d.comb += rg.lp_cand.data.eq(region[:32])
            with m.Case(1):
                m.d.comb += rg.lp_cand.data.eq(region[32:])
            with m.Case(2):
                m.d.comb += rg.lp_cand.data.eq(entry[:32])
            with m.Case(3):
                m.d.comb += rg.lp_cand.data.eq(Cat(entry[32:52], Const(0, 4), c.value))

    # --- prefetcher ---------------------------------------------------------------------------

    def _prefetch_side(self, m, pf, wk, arb, rg):
        connect(m, flipped(self.fault), pf.req)
        connect(m, pf.resp, flipped(self.prefetch))
        m.d.comb += [
            pf.window.eq(rg.pf_config.w.window),
            pf.direction.eq(rg.pf_config.w.direction),
            pf.drop.eq(self.prefetch_drop),
        ]
        # Never delay a demand walk: a prefetch read starts only while the walker wants no
        # read; once offered, its address is held until taken.
        held = Signal()
        with m.If(pf.m_axi.arvalid & ~pf.m_axi.arready):
            m.d.sync += held.eq(1)
        with m.Elif(pf.m_axi.arvalid & pf.m_axi.arready):
            m.d.sync += held.eq(0)
        m.d.comb += pf.grant.eq(held | ~wk.m_axi.arvalid)

    # --- exit detector ------------------------------------------------------------------------

    def _exit_side(self, m, ex, rg, cause):
        acc = self._access_q
        head = data.View(_ACCESS, acc.r_data)
        with m.If(acc.r_rdy):
            p = ex.event.payload
            m.d.comb += [ex.event.valid.eq(1), acc.r_en.eq(ex.event.ready),
                         p.KIND.eq(0), p.USER.eq(head.user), p.INDEX.eq(head.index),
                         p.TABLE.eq(head.table), p.ASID.eq(head.asid), p.GVA.eq(head.gva)]
        with m.Else():
            m.d.comb += [ex.event.valid.eq(self.pte_write.valid),
                         ex.event.payload.eq(self.pte_write.payload),
                         self.pte_write.ready.eq(ex.event.ready)]
        drops = m.submodules.drop_q = SyncFIFOBuffered(
            width=struct(EXIT_DROP).size, depth=self._drop_depth)
        m.d.comb += [drops.w_data.eq(ex.drop.payload), drops.w_en.eq(ex.drop.valid),
                     ex.drop.ready.eq(drops.w_rdy),
                     cause.exit_drop.eq(ex.drop.valid & drops.w_rdy)]
        head = data.View(struct(EXIT_DROP), drops.r_data)
        m.d.comb += [
            rg.exit_drop_status.r.valid.eq(drops.r_rdy),
            rg.exit_drop_status.r.reason.eq(head.REASON),
            rg.exit_drop_asid.r.asid.eq(head.ASID),
            rg.exit_drop_table.r.gpa.eq(Cat(Const(0, 12), head.TABLE)),
            drops.r_en.eq(rg.exit_drop_pop.we & rg.exit_drop_pop.w.pop),
        ]


#: The engine as built for a small FPGA: small walk caches, a 64-bit scanner with a short
#: read-ahead window, small exit-detector tables, and 46-bit physical addresses (the
#: MAXPHYADDR of many server CPUs). The co-simulation replays this configuration too.
SMALL = dict(
    pa_bits=46,
    walker=dict(tlb_entries=8, tlb_large_entries=2, pwc_entries=4),
    scanner=dict(max_levels=8, top_k_max=8, max_reads=4, burst_beats=16, max_writes=8,
                 window=16),
    exits=dict(spaces=4, tables=8),
)

#: nextpnr's analytic placer weighted towards timing (weight 40 instead of 10, criticality
#: exponent 4 instead of 2), for the engine on the ECP5: on the nearly full part it placed
#: three ``engine-small`` netlists 8 to 19 % faster (seed 1). On a part a quarter full
#: (the walker alone) it placed slower, so the units keep nextpnr's defaults.
ECP5_PLACER = ("--placer-heap-timingweight", "40", "--placer-heap-critexp", "4")

SYNTH_DESIGNS = {
    "engine": (lambda: Engine(), None, {"ecp5": ECP5_PLACER}),
    "engine-small": (lambda: Engine(**SMALL), None, {"ecp5": ECP5_PLACER}),
}
