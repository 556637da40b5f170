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

Timing: the cycle an event is taken is followed by a match cycle; a supervisor access ends
there, a user access after one more (space update), a PTE write of a known space or an
unmapping write after four more (space update, table match, qualified count, table update).
A drop is offered the next cycle and held until taken; no event is taken meanwhile. Both
tables are flip-flops compared in parallel; every compare is registered before it is used.

Reset (the ``sync`` domain's) empties both tables, points both victims at slot 0 and zeroes
the counters, as :meth:`model.exit_detector.ExitDetector.reset`; an event in progress is
lost and a waiting drop is withdrawn.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from thermocline import layouts as L
from thermocline.layouts import EXIT_DROP, EXIT_EVENT
from .layouts import struct

__all__ = ["ExitDetector", "EXIT_EVENT", "EXIT_DROP", "COUNTERS", "MAX_ENTRIES",
           "SYNTH_DESIGNS"]

#: The ``counters`` port, in the order of ``model.exit_detector.ExitCounters``.
COUNTERS = ("events", "exit_drops", "bulk_drops", "space_evictions", "table_evictions")

#: Most entries of either table (they are flip-flops compared in parallel).
MAX_ENTRIES = 256

_PAGE_BITS = 52          # gva >> 12


def _lowest(bits):
    """One-hot of the lowest set bit of ``bits`` (zero if none)."""
    return bits & (~bits + 1)[:len(bits)]


def _encode(onehot, width):
    """Binary index of a one-hot vector (zero if none is set)."""
    result = Const(0, width)
    for i in range(len(onehot)):
        result = result | Mux(onehot[i], i, 0)
    return result


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
        S, T, thr = p["spaces"], p["tables"], p["run_threshold"]
        sw = max(1, ceil_log2(S))
        cw = ceil_log2(thr + 1)
        X = L.X86_ENTRY

        # --- state -------------------------------------------------------------------------
        sp_valid = Signal(S)
        sp_exiting = Signal(S)
        sp_low = Signal(S)                          # the lowest-address record is held
        sp_asid = [Signal(64, name=f"sp_asid{i}", reset_less=True) for i in range(S)]
        sp_page = [Signal(_PAGE_BITS, name=f"sp_page{i}", reset_less=True) for i in range(S)]
        sp_table = [Signal(40, name=f"sp_table{i}", reset_less=True) for i in range(S)]
        sp_index = [Signal(9, name=f"sp_index{i}", reset_less=True) for i in range(S)]
        tb_valid = Signal(T)
        tb_space = [Signal(sw, name=f"tb_space{i}", reset_less=True) for i in range(T)]
        tb_table = [Signal(40, name=f"tb_table{i}", reset_less=True) for i in range(T)]
        tb_count = [Signal(cw, name=f"tb_count{i}", reset_less=True) for i in range(T)]
        sp_victim = Signal(range(S))
        tb_victim = Signal(range(T))

        cnt = {c: Signal(32, name=f"cnt_{c}") for c in COUNTERS}
        m.d.comb += [getattr(self.counters, c).eq(cnt[c]) for c in COUNTERS]

        def count(name):
            with m.If(cnt[name] != 0xFFFF_FFFF):
                m.d.sync += cnt[name].eq(cnt[name] + 1)

        # --- the event being worked on ------------------------------------------------------
        ev = Signal(struct(EXIT_EVENT), reset_less=True)
        ev_page = ev.GVA[12:]
        unmaps = ev.KIND & ev.OLD[X.P.lsb] & ~ev.NEW[X.P.lsb]

        s1_hit = Signal(S, reset_less=True)         # space match, one-hot
        s1_free = Signal(S, reset_less=True)        # lowest free space slot, one-hot
        s1_lower = Signal(S, reset_less=True)       # the access is at or below the record
        s1_at_low = Signal(S, reset_less=True)      # the write hits the recorded PTE
        s2_sel = Signal(S, reset_less=True)         # the event's space slot, one-hot
        s2_slot = Signal(sw, reset_less=True)       # ... and its index
        s2_exit = Signal(reset_less=True)           # the write drops with reason "exit"
        s3_hit = Signal(T, reset_less=True)         # table match, one-hot
        s3_free = Signal(T, reset_less=True)        # lowest free table slot, one-hot
        s3_qual = Signal(T, reset_less=True)        # qualified tables of the space
        s4_bulk = Signal(reset_less=True)           # enough of them
        out = Signal(struct(EXIT_DROP), reset_less=True)
        m.d.comb += self.drop.payload.eq(out)

        # Flushing the table entries of one space slot (eviction, revival).
        flush = Signal()
        flush_slot = Signal(sw)
        with m.If(flush):
            m.d.sync += tb_valid.eq(tb_valid & ~Cat(tb_space[i] == flush_slot
                                                   for i in range(T)))

        def set_low(i):
            m.d.sync += [sp_low[i].eq(1), sp_page[i].eq(ev_page), sp_table[i].eq(ev.TABLE),
                         sp_index[i].eq(ev.INDEX)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.event.ready.eq(1)]
                with m.If(self.event.valid):
                    m.d.sync += ev.eq(self.event.payload)
                    count("events")
                    m.next = "MATCH"

            with m.State("MATCH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    s1_hit.eq(sp_valid & Cat(a == ev.ASID for a in sp_asid)),
                    s1_free.eq(_lowest(~sp_valid)),
                    s1_lower.eq(Cat(~sp_low[i] | (ev_page <= sp_page[i]) for i in range(S))),
                    s1_at_low.eq(Cat(sp_low[i] & (sp_table[i] == ev.TABLE)
                                     & (sp_index[i] == ev.INDEX) for i in range(S))),
                ]
                with m.If(ev.KIND | ev.USER):
                    m.next = "SPACE"
                with m.Else():
                    m.next = "IDLE"                  # supervisor accesses only count

            with m.State("SPACE"):
                m.d.comb += self.busy.eq(1)
                hit = s1_hit.any()
                victim = Signal(S)
                m.d.comb += victim.eq(Const(1, S) << sp_victim)
                alloc = Signal(S)
                m.d.comb += alloc.eq(Mux(s1_free.any(), s1_free, victim))
                sel = Mux(hit, s1_hit, alloc)
                m.d.sync += [s2_sel.eq(sel), s2_slot.eq(_encode(sel, sw)), s2_exit.eq(0)]
                allocate = ~hit & (~ev.KIND | unmaps)

                with m.If(allocate):
                    with m.If(~s1_free.any()):
                        m.d.sync += sp_victim.eq(Mux(sp_victim == S - 1, 0, sp_victim + 1))
                        count("space_evictions")
                        m.d.comb += [flush.eq(1), flush_slot.eq(sp_victim)]
                    for i in range(S):
                        with m.If(alloc[i]):
                            m.d.sync += [sp_valid[i].eq(1), sp_exiting[i].eq(0),
                                         sp_asid[i].eq(ev.ASID), sp_low[i].eq(0)]
                            with m.If(~ev.KIND):
                                set_low(i)

                with m.If(~ev.KIND):                 # a user access
                    with m.If(hit):
                        for i in range(S):
                            with m.If(s1_hit[i]):
                                with m.If(sp_exiting[i]):
                                    m.d.sync += sp_exiting[i].eq(0)
                                    m.d.comb += [flush.eq(1), flush_slot.eq(i)]
                                    set_low(i)
                                with m.Elif(s1_lower[i]):
                                    set_low(i)
                    m.next = "IDLE"
                with m.Elif(unmaps):
                    with m.If(hit):
                        for i in range(S):
                            with m.If(s1_hit[i]):
                                with m.If(sp_exiting[i]):
                                    m.d.sync += s2_exit.eq(1)
                                with m.Elif(s1_at_low[i]):
                                    m.d.sync += [s2_exit.eq(1), sp_exiting[i].eq(1),
                                                 sp_low[i].eq(0)]
                    m.next = "TMATCH"
                with m.Elif(hit):                    # any other write: resets a counter
                    m.next = "TMATCH"
                with m.Else():
                    m.next = "IDLE"

            with m.State("TMATCH"):
                m.d.comb += self.busy.eq(1)
                mine = Cat(tb_space[i] == s2_slot for i in range(T)) & tb_valid
                m.d.sync += [
                    s3_hit.eq(mine & Cat(t == ev.TABLE for t in tb_table)),
                    s3_free.eq(_lowest(~tb_valid)),
                    s3_qual.eq(mine & Cat(c == thr for c in tb_count)),
                ]
                m.next = "COUNT"

            with m.State("COUNT"):
                m.d.comb += self.busy.eq(1)
                total = sum(s3_qual[i] for i in range(T))
                m.d.sync += s4_bulk.eq(total >= p["tables_needed"])
                m.next = "TABLE"

            with m.State("TABLE"):
                m.d.comb += self.busy.eq(1)
                m.next = "IDLE"
                with m.If(~unmaps):
                    for i in range(T):
                        with m.If(s3_hit[i]):
                            m.d.sync += tb_count[i].eq(0)
                with m.Else():
                    with m.If(s3_hit.any()):
                        for i in range(T):
                            with m.If(s3_hit[i] & (tb_count[i] != thr)):
                                m.d.sync += tb_count[i].eq(tb_count[i] + 1)
                    with m.Else():
                        free = s3_free.any()
                        alloc = Mux(free, s3_free, Const(1, T) << tb_victim)
                        with m.If(~free):
                            m.d.sync += tb_victim.eq(Mux(tb_victim == T - 1, 0,
                                                         tb_victim + 1))
                            count("table_evictions")
                        for i in range(T):
                            with m.If(alloc[i]):
                                m.d.sync += [tb_valid[i].eq(1), tb_space[i].eq(s2_slot),
                                             tb_table[i].eq(ev.TABLE), tb_count[i].eq(1)]
                    m.d.sync += [out.ASID.eq(ev.ASID), out.TABLE.eq(ev.TABLE),
                                 out.REASON.eq(~s2_exit)]
                    with m.If(s2_exit):
                        count("exit_drops")
                        m.next = "DROP"
                    with m.Elif(s4_bulk):
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
