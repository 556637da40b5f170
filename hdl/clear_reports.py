"""The engine's path from the scanner's cleared-leaf reports to the walker's invalidations.

When the scanner clears a leaf's A bit, the walker must drop what it cached of that leaf
(a ``scan_clear`` command for the host root ``SCAN_HROOT``), or a later access through its
cache would set no A bit and the page would look idle though it is in use. The model's
engine does this at once; here the two units run side by side, and this unit sits between
them:

* Reports wait in a queue of ``depth`` entries, so the scanner never holds a write
  response waiting for the walker. (The walker takes commands only between walks, and a
  walk may itself wait for that response: writes are answered in order.)
* Each report becomes one ``scan_clear`` command per leaf it names, in lane order (a report
  with an empty mask is dropped without a command). While a report is queued or a flush is
  owed, :attr:`quiet` is low and the engine gives the walker nothing else.
* The scanner's writes wait for room instead: :attr:`room` is high while the queue has room
  for the report of every scanner write not yet answered (``write_sent`` counts an accepted
  write address, ``write_done`` a write response), the next one included, and one more.
  It is a register computed from the counts of the cycle before; the spare slot covers
  the write address accepted in that cycle. The scanner sends a write's report in the cycle
  of its write response, so a write moves from owed to queued at once. (It also reports a
  leaf without a write when another agent cleared the leaf's A bit between the scanner's
  read and its step; such a report is not counted. The engine's walker only sets A and D,
  so in the engine every report comes with a write.)
* The engine may send a scanner write without room (when the walker's own write waits for
  the scanner, see :mod:`hdl.engine`). A report that then finds the queue full is lost:
  :attr:`lost` rises, and once the queue has drained the walker gets one ``root`` command
  for ``SCAN_HROOT`` that drops everything it cached under that root. The walker forgets
  more than the lost reports named, never less. :attr:`lost` falls when that command is
  taken.

``hroot`` is read when a command is made, so it must not change while a pass's reports are
on their way (the engine gives it ``SCAN_HROOT`` as it was when the pass started).
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from thermocline import layouts as L
from .layouts import struct
from .scanner import cleared_layout
from .walker import INV

__all__ = ["ClearReports"]


class ClearReports(wiring.Component):
    """Cleared-leaf reports to walker invalidations, and the scanner's write gate (module
    docstring).

    Parameters
    ----------
    lanes : int
        Entries per scanner beat (1..4): the width of a report's mask.
    depth : int
        Reports the queue holds, 3..512. (The queue is a buffered FIFO, whose first entry
        moves to its output register a cycle after it is written; with two entries, a second
        report right after the first into an empty queue would find it full.)

    Members
    -------
    report : ``In(stream.Signature(cleared_layout(lanes)))``, always ready
    hroot : ``In(64)``, the host root of the commands (the pass's ``SCAN_HROOT``)
    inv : ``Out(stream.Signature(WALK_INV))``, commands for the walker
    quiet : ``Out(1)``, no report queued and no flush owed
    write_sent, write_done : ``In(1)``, a scanner write address accepted / a write answered
    room : ``Out(1)``, registered: a scanner write address may go
    lost : ``Out(1)``, a report was lost and the flush that replaces it is not yet taken
    """

    def __init__(self, *, lanes: int = 1, depth: int = 32):
        if lanes not in (1, 2, 4):
            raise ValueError(f"ClearReports: lanes must be 1, 2 or 4, got {lanes}")
        if not 3 <= depth <= 512:
            raise ValueError(f"ClearReports: depth must be 3..512, got {depth}")
        self._lanes = lanes
        self._depth = depth
        super().__init__({
            "report": In(stream.Signature(cleared_layout(lanes))),
            "hroot": In(64),
            "inv": Out(stream.Signature(struct(L.WALK_INV))),
            "quiet": Out(1),
            "write_sent": In(1),
            "write_done": In(1),
            "room": Out(1),
            "lost": Out(1),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        layout = cleared_layout(lanes)
        q = m.submodules.queue = SyncFIFOBuffered(width=layout.size, depth=self._depth)
        m.d.comb += [self.report.ready.eq(1), q.w_data.eq(self.report.payload),
                     q.w_en.eq(self.report.valid)]

        # The head report, one leaf at a time from ``lane`` on.
        head = data.View(layout, q.r_data)
        lane = Signal(range(lanes + 1))
        pending = Signal(lanes)
        m.d.comb += pending.eq(head.mask & ~((Const(1, lanes + 1) << lane) - 1)[:lanes])
        first = Signal(range(lanes))
        for i in reversed(range(lanes)):
            with m.If(pending[i]):
                m.d.comb += first.eq(i)
        clear = Signal(struct(L.WALK_INV))
        size_shift = Mux(head.level == 1, 12, Mux(head.level == 2, 21, 30))
        m.d.comb += [
            clear.OP.eq(INV["scan_clear"]), clear.MATCH_HROOT.eq(1),
            clear.SIZE.eq(head.level - 1), clear.HROOT.eq(self.hroot),
            clear.ADDR.eq(head.base + (first << size_shift)),
        ]
        flush = Signal(struct(L.WALK_INV))
        m.d.comb += [flush.OP.eq(INV["root"]), flush.MATCH_HROOT.eq(1),
                     flush.HROOT.eq(self.hroot)]

        # (A report written into an empty queue reaches the output a cycle later: ``level``
        # counts it at once, ``r_rdy`` only then.)
        m.d.comb += self.quiet.eq((q.level == 0) & ~self.lost)
        with m.If(q.r_rdy & (pending != 0)):
            m.d.comb += [self.inv.valid.eq(1), self.inv.payload.eq(clear)]
            with m.If(self.inv.ready):
                last = (pending & ~(Const(1, lanes) << first)[:lanes]) == 0
                with m.If(last):
                    m.d.comb += q.r_en.eq(1)
                    m.d.sync += lane.eq(0)
                with m.Else():
                    m.d.sync += lane.eq(first + 1)
        with m.Elif(q.r_rdy):
            m.d.comb += q.r_en.eq(1)                 # an empty mask: nothing to drop
            m.d.sync += lane.eq(0)
        with m.Elif(self.lost & (q.level == 0)):
            m.d.comb += [self.inv.valid.eq(1), self.inv.payload.eq(flush)]
            with m.If(self.inv.ready):
                m.d.sync += self.lost.eq(0)
        # (Set after the clear: a report lost as the flush is taken keeps a flush owed,
        # though the queue is empty then and takes it.)
        with m.If(self.report.valid & ~q.w_rdy):
            m.d.sync += self.lost.eq(1)

        # Scanner writes accepted and not yet answered; the room a cycle early, one slot
        # to spare: queued reports plus writes owed grow by at most one a cycle (an
        # accepted write address; an answer moves a write from owed to the queue).
        owed = Signal(range(self._depth + 258))
        with m.If(self.write_sent & ~self.write_done):
            m.d.sync += owed.eq(owed + 1)
        with m.Elif(self.write_done & ~self.write_sent):
            m.d.sync += owed.eq(owed - 1)
        m.d.sync += self.room.eq(q.level + owed + 1 < self._depth)
        return m
