"""Exit detector: drop events for guest leaf tables being emptied, in hardware.

The hardware twin of :mod:`model.exit_detector`, whose module docstring is the contract: both
mechanisms ((a) the lowest user page of a space unmapped marks it exiting, (b) enough tables
of a space in bulk-unmapping runs), the fully associative space and table tables with
round-robin replacement, what a full table loses, and the saturating counters. Fed the same
events in the same order, this unit emits the same drops in the same order and ends with the
same counters.

Streams (layouts :data:`EXIT_EVENT` and :data:`EXIT_DROP`):

* ``event``: one walker access (``KIND`` 0: ``ASID``, ``GVA``, ``TABLE``, ``INDEX``,
  ``USER``) or one guest PTE write (``KIND`` 1: ``ASID``, ``TABLE``, ``INDEX``, ``OLD``,
  ``NEW``). ``TABLE`` is the page number of the guest leaf table's GPA, so every payload is
  a valid event (the model's alignment and range checks cannot fail here).
* ``drop``: ``{ASID, TABLE, REASON}`` (``REASON`` 0: ``"exit"``, 1: ``"bulk"``).

Storage: each table is a LUT-RAM memory (ASIDs, lowest-page records, table addresses and run
counters) searched one entry per cycle, read and compared through registers; only the valid,
exiting and record-held marks of each entry and the victim pointers (also one-hot) are
flip-flops.

Timing, in cycles from the one an event is taken to the first one the next event can be taken
(``S = spaces``, ``T = tables``):

* supervisor access: 1;
* user access, or a PTE write that neither unmaps nor hits a known space: ``S + 5``; a user
  access that evicts a space or revives an exiting one: ``S + T + 9`` (the table table is
  swept for that space's entries);
* any other PTE write: ``S + T + 9``, plus the cycles its drop waits (a drop is offered in
  the cycle after the last of these and held until taken; no event is taken meanwhile).

With the defaults (``S = 8``, ``T = 32``) that is 13 cycles for a user access and 49 for a
PTE write.

Reset (the ``sync`` domain's) empties both tables, points both victims at slot 0 and zeroes
the counters, as :meth:`model.exit_detector.ExitDetector.reset`; an event in progress is
lost and a waiting drop is withdrawn.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from thermocline import layouts as L
from thermocline.layouts import EXIT_DROP, EXIT_EVENT
from .layouts import struct

__all__ = ["ExitDetector", "EXIT_EVENT", "EXIT_DROP", "COUNTERS", "MAX_ENTRIES",
           "SYNTH_DESIGNS"]

#: The ``counters`` port, in the order of ``model.exit_detector.ExitCounters``.
COUNTERS = ("events", "exit_drops", "bulk_drops", "space_evictions", "table_evictions")

#: Most entries of either table (each entry keeps its marks in flip-flops, and a search takes
#: one cycle per entry).
MAX_ENTRIES = 256

_PAGE_BITS = 52          # gva >> 12


class ExitDetector(wiring.Component):
    """The exit detector (see the module docstring).

    Parameters (keyword-only; the names and meaning of ``model.exit_detector.ExitConfig``)
    ----------
    spaces : int
        Space-table entries, 1..256.
    tables : int
        Table-table entries (run counters), 1..256.
    run_threshold : int
        Consecutive unmapping writes that qualify a table, 1..512.
    tables_needed : int
        Qualified tables a space needs before its unmapping writes drop with ``bulk``,
        1..``tables``.

    Members
    -------
    event : In(stream of EXIT_EVENT)
    drop : Out(stream of EXIT_DROP)
    counters : Out(struct of 32-bit saturating counters, see :data:`COUNTERS`)
    busy : Out(1)
        An event is in progress or a drop waits.
    """

    def __init__(self, *, spaces: int = 8, tables: int = 32, run_threshold: int = 4,
                 tables_needed: int = 2):
        for name, value, hi in (("spaces", spaces, MAX_ENTRIES), ("tables", tables, MAX_ENTRIES),
                                ("run_threshold", run_threshold, 512)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise ValueError(f"ExitDetector: {name} must be an integer in 1..{hi}, "
                                 f"got {value!r}")
        if isinstance(tables_needed, bool) or not isinstance(tables_needed, int) \
                or not 1 <= tables_needed <= tables:
            raise ValueError(f"ExitDetector: tables_needed must be an integer in "
                             f"1..{tables}, got {tables_needed!r}")
        self._p = dict(spaces=spaces, tables=tables, run_threshold=run_threshold,
                       tables_needed=tables_needed)
        super().__init__({
            "event": In(stream.Signature(struct(EXIT_EVENT))),
            "drop": Out(stream.Signature(struct(EXIT_DROP))),
            "counters": Out(data.StructLayout({c: 32 for c in COUNTERS})),
            "busy": Out(1),
        })

    @property
    def params(self) -> dict:
        """The parameters (as ``model.exit_detector.ExitConfig`` keywords)."""
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        S, T, thr, need = p["spaces"], p["tables"], p["run_threshold"], p["tables_needed"]
        sw = max(1, ceil_log2(S))
        tw = max(1, ceil_log2(T))
        iw = max(sw, tw)
        cw = ceil_log2(thr + 1)
        X = L.X86_ENTRY

        # --- the event being worked on ------------------------------------------------------
        ev_kind = Signal(reset_less=True)           # 0 access, 1 PTE write
        ev_user = Signal(reset_less=True)
        ev_unmaps = Signal(reset_less=True)
        ev_asid = Signal(64, reset_less=True)
        ev_page = Signal(_PAGE_BITS, reset_less=True)
        ev_table = Signal(40, reset_less=True)
        ev_index = Signal(9, reset_less=True)
        reason = Signal(reset_less=True)
        m.d.comb += [self.drop.payload.ASID.eq(ev_asid), self.drop.payload.TABLE.eq(ev_table),
                     self.drop.payload.REASON.eq(reason)]

        # --- state -------------------------------------------------------------------------
        # Each memory has one address for its read and write ports; a read is registered
        # only in cycles without a write, so a read never meets a write and needs no bypass.
        # LUT RAM: on ECP5, block RAM saves about 430 LUTs but its slow output misses 125 MHz.
        def memory(name, layout, depth):
            mem = m.submodules[name] = Memory(shape=layout, depth=depth, init=[],
                                              attrs={"ram_style": "distributed"})
            rd, wr = mem.read_port(domain="comb"), mem.write_port()
            q = Signal(layout, name=f"{name}_q", reset_less=True)
            d = Signal(layout, name=f"{name}_d", reset_less=True)
            m.d.comb += rd.addr.eq(wr.addr)
            with m.If(~wr.en):
                m.d.sync += q.eq(rd.data)
            m.d.sync += d.eq(q)                     # compares start from a register
            return wr, d

        # Space table: {ASID, lowest user page, its table and index}; marks in flip-flops.
        sp_wr, sp_q = memory("sp_mem", data.StructLayout(
            {"asid": 64, "page": _PAGE_BITS, "table": 40, "index": 9}), S)
        sp_valid = Signal(S)
        sp_exiting = Signal(S)
        sp_low = Signal(S)                          # the lowest-address record is held
        sp_victim = Signal(range(S))
        sp_victim_1h = Signal(S, init=1)
        m.d.comb += [sp_wr.data.asid.eq(ev_asid), sp_wr.data.page.eq(ev_page),
                     sp_wr.data.table.eq(ev_table), sp_wr.data.index.eq(ev_index)]
        # Table table: {space slot, table, run counter}; valid marks in flip-flops.
        tb_wr, tb_q = memory("tb_mem", data.StructLayout(
            {"space": sw, "table": 40, "count": cw}), T)
        tb_valid = Signal(T)
        tb_victim = Signal(range(T))
        tb_victim_1h = Signal(T, init=1)

        cnt = {c: Signal(32, name=f"cnt_{c}") for c in COUNTERS}
        m.d.comb += [getattr(self.counters, c).eq(cnt[c]) for c in COUNTERS]

        def count(name):
            nxt = cnt[name] + 1                     # 33 bits: the carry out saturates
            with m.If(~nxt[32]):
                m.d.sync += cnt[name].eq(nxt[:32])

        def advance(victim, victim_1h, n):
            m.d.sync += [victim.eq(Mux(victim == n - 1, 0, victim + 1)),
                         victim_1h.eq(victim_1h.rotate_left(1))]

        # --- the search: read entry i, compare it with the event, then use the result ------
        issue = Signal(iw)                          # entry read this cycle
        issuing = Signal()
        p0_v = Signal()                             # entry p0_i is out of the memory
        p0_i = Signal(iw)
        p1_v = Signal()                             # ... and registered
        p1_i = Signal(iw)
        p2_v = Signal()                             # compare results of entry p2_i are out
        p2_i = Signal(iw)
        p2_1h = Signal(max(S, T))                   # one-hot of p2_i

        def search(last):
            m.d.sync += [p0_v.eq(issuing), p0_i.eq(issue), p1_v.eq(p0_v), p1_i.eq(p0_i),
                         p2_v.eq(p1_v), p2_i.eq(p1_i)]
            with m.If(issuing):
                m.d.sync += issue.eq(issue + 1)
                with m.If(issue == last):
                    m.d.sync += issuing.eq(0)
            with m.If(p2_v):
                m.d.sync += p2_1h.eq(p2_1h << 1)
            return p2_v & (p2_i == last)            # the last entry's results are used now

        def start():
            m.d.sync += [issue.eq(0), issuing.eq(1), p0_v.eq(0), p1_v.eq(0), p2_v.eq(0),
                         p2_1h.eq(1)]

        m.d.comb += [sp_wr.addr.eq(issue), tb_wr.addr.eq(issue)]

        # Space search results.
        c_asid = Signal(reset_less=True)            # registered compares of entry p2_i
        c_lower = Signal(reset_less=True)           # the access is at or below the record
        c_at = Signal(reset_less=True)              # the write hits the recorded PTE
        s_hit = Signal()                            # the event's space, if known
        s_hit_i = Signal(sw)
        s_hit_1h = Signal(S)
        s_exiting = Signal()
        s_lower = Signal()
        s_at_low = Signal()
        s_free = Signal()                           # the lowest free slot, if any
        s_free_i = Signal(sw)
        s_free_1h = Signal(S)
        # After the space step: the event's slot; its table entries go (eviction, revival).
        slot = Signal(sw)
        flush = Signal()
        s_exit = Signal()                           # the write drops with reason "exit"
        m.d.comb += tb_wr.data.space.eq(slot), tb_wr.data.table.eq(ev_table)

        # Table search results.
        c_space = Signal(reset_less=True)
        c_table = Signal(reset_less=True)
        c_qual = Signal(reset_less=True)
        c_count = Signal(cw, reset_less=True)
        t_hit = Signal()
        t_hit_i = Signal(tw)
        t_count = Signal(cw)
        t_free = Signal()
        t_free_i = Signal(tw)
        t_free_1h = Signal(T)
        t_qual = Signal(range(need + 1))            # qualified tables of the space, saturating
        bumped = Mux(t_count == thr, thr, t_count + 1)
        m.d.comb += tb_wr.data.count.eq(Mux(~ev_unmaps, 0, Mux(t_hit, bumped, 1)))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.event.ready.eq(1)
                ev = self.event.payload
                with m.If(self.event.valid):
                    m.d.sync += [
                        ev_kind.eq(ev.KIND), ev_user.eq(ev.USER),
                        ev_unmaps.eq(ev.KIND & ev.OLD[X.P.lsb] & ~ev.NEW[X.P.lsb]),
                        ev_asid.eq(ev.ASID), ev_page.eq(ev.GVA[12:]), ev_table.eq(ev.TABLE),
                        ev_index.eq(ev.INDEX),
                        s_hit.eq(0), s_free.eq(0), t_hit.eq(0), t_free.eq(0), t_qual.eq(0),
                    ]
                    count("events")
                    with m.If(ev.KIND | ev.USER):    # supervisor accesses only count
                        start()
                        m.next = "SPACES"

            with m.State("SPACES"):
                m.d.comb += self.busy.eq(1)
                done = search(S - 1)
                m.d.sync += [
                    c_asid.eq(sp_q.asid == ev_asid),
                    c_lower.eq(ev_page <= sp_q.page),
                    c_at.eq((sp_q.table == ev_table) & (sp_q.index == ev_index)),
                ]
                at = p2_1h[:S]
                valid = (sp_valid & at).any()
                with m.If(p2_v):
                    with m.If(valid & c_asid):
                        low = (sp_low & at).any()
                        m.d.sync += [s_hit.eq(1), s_hit_i.eq(p2_i), s_hit_1h.eq(at),
                                     s_exiting.eq((sp_exiting & at).any()),
                                     s_lower.eq(~low | c_lower), s_at_low.eq(low & c_at)]
                    with m.If(~valid & ~s_free):
                        m.d.sync += [s_free.eq(1), s_free_i.eq(p2_i), s_free_1h.eq(at)]
                with m.If(done):
                    m.next = "SPACE"

            with m.State("SPACE"):
                m.d.comb += self.busy.eq(1)
                sel = Mux(s_hit, s_hit_i, Mux(s_free, s_free_i, sp_victim))
                sel_1h = Mux(s_hit, s_hit_1h, Mux(s_free, s_free_1h, sp_victim_1h))
                allocate = ~s_hit & (~ev_kind | ev_unmaps)
                evict = allocate & ~s_free
                revive = ~ev_kind & s_hit & s_exiting
                mark = ev_unmaps & s_hit & ~s_exiting & s_at_low      # the space exits
                set_low = ~ev_kind & (~s_hit | s_exiting | s_lower)
                m.d.sync += [slot.eq(sel), flush.eq(evict | revive),
                             s_exit.eq(ev_unmaps & s_hit & (s_exiting | s_at_low))]
                m.d.comb += [sp_wr.addr.eq(sel), sp_wr.en.eq(allocate | set_low)]
                with m.If(allocate):
                    m.d.sync += sp_valid.eq(sp_valid | sel_1h)
                with m.If(allocate | revive):
                    m.d.sync += sp_exiting.eq(sp_exiting & ~sel_1h)
                with m.Elif(mark):
                    m.d.sync += sp_exiting.eq(sp_exiting | sel_1h)
                with m.If(set_low):
                    m.d.sync += sp_low.eq(sp_low | sel_1h)
                with m.Elif(allocate | mark):
                    m.d.sync += sp_low.eq(sp_low & ~sel_1h)
                with m.If(evict):
                    advance(sp_victim, sp_victim_1h, S)
                    count("space_evictions")
                with m.If(evict | revive | (ev_kind & (s_hit | ev_unmaps))):
                    start()
                    m.next = "TABLES"
                with m.Else():
                    m.next = "IDLE"

            with m.State("TABLES"):
                m.d.comb += self.busy.eq(1)
                done = search(T - 1)
                m.d.sync += [
                    c_space.eq(tb_q.space == slot), c_table.eq(tb_q.table == ev_table),
                    c_qual.eq(tb_q.count == thr), c_count.eq(tb_q.count),
                ]
                at = p2_1h[:T]
                valid = (tb_valid & at).any()
                mine = valid & c_space
                with m.If(p2_v):
                    with m.If(flush):
                        with m.If(mine):
                            m.d.sync += tb_valid.eq(tb_valid & ~at)
                    with m.Elif(mine):
                        with m.If(c_table):
                            m.d.sync += [t_hit.eq(1), t_hit_i.eq(p2_i), t_count.eq(c_count)]
                        with m.If(c_qual & (t_qual != need)):
                            m.d.sync += t_qual.eq(t_qual + 1)
                    with m.If(~t_free & (~valid | (flush & c_space))):
                        m.d.sync += [t_free.eq(1), t_free_i.eq(p2_i), t_free_1h.eq(at)]
                with m.If(done):
                    m.next = "TABLE"

            with m.State("TABLE"):
                m.d.comb += self.busy.eq(1)
                m.next = "IDLE"
                m.d.comb += [
                    tb_wr.addr.eq(Mux(t_hit, t_hit_i, Mux(t_free, t_free_i, tb_victim))),
                    tb_wr.en.eq(ev_kind & (t_hit | ev_unmaps)),
                ]
                with m.If(ev_unmaps & ~t_hit):
                    m.d.sync += tb_valid.eq(tb_valid | Mux(t_free, t_free_1h, tb_victim_1h))
                    with m.If(~t_free):
                        advance(tb_victim, tb_victim_1h, T)
                        count("table_evictions")
                with m.If(ev_unmaps):
                    m.d.sync += reason.eq(~s_exit)
                    with m.If(s_exit):
                        count("exit_drops")
                        m.next = "DROP"
                    with m.Elif(s_hit & (t_qual == need)):
                        count("bulk_drops")
                        m.next = "DROP"

            with m.State("DROP"):
                m.d.comb += [self.busy.eq(1), self.drop.valid.eq(1)]
                with m.If(self.drop.ready):
                    m.next = "IDLE"
        return m


#: Designs for ``make synth`` (see :mod:`thermocline.synth`).
SYNTH_DESIGNS = {
    "exit_detector": lambda: ExitDetector(),
}
