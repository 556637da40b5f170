"""Scan-interval controller in hardware: the twin of :mod:`model.interval`.

The module docstring of :mod:`model.interval` is the specification of the period, the
overrun verdict, the migration-aligned and access-ratio modes and the pass timing; this one
states what the hardware adds.

Cycle contract
--------------
Every event is a one-cycle input. ``clear_overrun``, ``set_period``, ``started`` and a pass
end's verdict (``overrun``, ``overrun_count``, ``overran``, ``last_start``, ``due``) are
visible on the outputs in the next cycle. The two products the modes need are computed by
one sequential shift-and-add unit instead, so the period they give lands later:

* a pass end in ratio mode with ``leaves != 0`` changes ``period`` :data:`RATIO_DELAY`
  cycles after it (counting the pass end's cycle as 0), moving the period in force at the
  pass end, which is also the one its verdict used;
* a ``set_batch`` in migration mode sets ``period`` :data:`BATCH_DELAY` cycles after it.

The unit holds one such change at a time: a ``set_period``, a ratio-mode pass end or a
migration-mode ``set_batch`` drops the change in flight (even one that would land in the
same cycle) and, for the last two, starts its own. So the period ends as the model's does
whenever these events are more than the delays apart: a write overrides an adaptation in
flight, a newer batch a batch in flight. What the delays change is which period a verdict
uses: a pass end within :data:`BATCH_DELAY` cycles of a migration-mode ``set_batch`` is
judged against the period before it, and of two ratio-mode pass ends closer than
:data:`RATIO_DELAY` only the second adapts. Passes are far longer than that in the
engine (every pass reads at least one 512-entry table).

Events of one cycle are applied in the model's call order::

    clear_overrun -> end_pass(pass_end) -> set_period -> set_batch

so a clear never hides an overrun reported in the same cycle, and a register write in the
cycle a pass ends overrides that pass's ratio-mode adaptation. ``now`` counts cycles from 0
after reset (the model's ``start``). A pass is *due* (``due``) while none is running and
``now >= last_start``; ``started`` says the scanner took the start, ``pass_end`` that it
finished. Configuration (``config``) is read whenever it is used: the mode, ``target``,
``hysteresis`` and ``step_shift`` when the event happens, the clamps when the period is
written, so software changes it between passes. Ranges as
:class:`model.interval.IntervalConfig`, except that the hardware does not check them
(``min_period > max_period`` clamps every period to ``max_period``; ``mode`` 3 acts as
``"fixed"``; ``accessed > leaves`` is a ratio above one).

The 64-bit cycle timestamps wrap instead of raising as the model does past ``2**64 - 1``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from thermocline.regmap import REGMAP

__all__ = ["Mode", "RATIO_DELAY", "BATCH_DELAY", "CONFIG_LAYOUT", "PASS_LAYOUT", "BATCH_LAYOUT", "IntervalController",
           "SYNTH_DESIGNS"]

_MODE_VALUES = REGMAP["INT_MODE"].field("MODE").values


class Mode(enum.Enum, shape=2):
    """Interval modes, encoded as the ``INT_MODE`` register (3 acts as FIXED)."""

    FIXED = 0
    MIGRATION = 1
    RATIO = 2


assert {m.value: m.name for m in Mode} == _MODE_VALUES


class _Op(enum.Enum, shape=2):
    """What the sequential unit is computing."""

    IDLE = 0
    RATIO = 1
    BATCH = 2


#: Bits of a ratio-mode factor (``target + hysteresis`` < 2**17).
_FACTOR_BITS = 17
#: Cycles the sequential unit spends on a ratio-mode adaptation: two 17-step products, a
#: comparison after each, the moved period, the update.
RATIO_LATENCY = 2 * _FACTOR_BITS + 4
#: Cycles from a pass end to the first cycle its ratio-mode adaptation shows on ``period``.
RATIO_DELAY = RATIO_LATENCY + 1
#: Cycles the sequential unit spends on a migration-mode period: a 32-step product, the
#: shifted product, the update.
BATCH_LATENCY = 32 + 2
#: Cycles from a migration-mode batch write to the first cycle its period shows on
#: ``period``.
BATCH_DELAY = BATCH_LATENCY + 1

#: Configuration, read whenever used: ``mode``, ``min_period``, ``max_period`` (the clamps),
#: ``target`` and ``hysteresis`` (Q0.16) and ``step_shift`` of the ratio mode.
CONFIG_LAYOUT = data.StructLayout({
    "mode": Mode,
    "min_period": 32,
    "max_period": 32,
    "target": 16,
    "hysteresis": 16,
    "step_shift": 5,
})

#: End of a pass: its length in cycles, the leaves it saw accessed and the present leaves.
PASS_LAYOUT = data.StructLayout({"cycles": 32, "accessed": 32, "leaves": 32})

#: A migration round: pages in the batch and cycles per page (Q16.16).
BATCH_LAYOUT = data.StructLayout({"pages": 32, "cpp_q16": 32})


class IntervalController(wiring.Component):
    """Period register, overrun accounting and the two adaptive modes.

    Parameters
    ----------
    period_init : int
        Period after reset, ``1..2**32 - 1`` (the ``INT_PERIOD`` reset value by default).

    Members
    -------
    config : ``In(CONFIG_LAYOUT)``
    set_period : ``In(stream.Signature(32, always_ready=True))``
        Write of the period register (``set_period``), clamped.
    set_batch : ``In(stream.Signature(BATCH_LAYOUT, always_ready=True))``
        Start of a migration round (``set_batch``).
    clear_overrun : ``In(1)``
        Clear the sticky overrun flag.
    pass_end : ``In(stream.Signature(PASS_LAYOUT, always_ready=True))``
        A pass finished (``end_pass``).
    started : ``In(1)``
        The due pass has started.
    period, overrun, overrun_count, last_start : ``Out``
        The model's registers (32, 1, 32, 64 bits); ``period`` as the cycle contract says.
    now : ``Out(64)``
        Cycle counter.
    due : ``Out(1)``
        A pass should start.
    overran : ``Out(1)``
        One-cycle pulse: the pass reported in the previous cycle overran.
    """

    def __init__(self, *, period_init: int | None = None):
        if period_init is None:
            period_init = REGMAP["INT_PERIOD"].reset
        if (not isinstance(period_init, int) or isinstance(period_init, bool)
                or not 1 <= period_init <= (1 << 32) - 1):
            raise ValueError(f"IntervalController: period_init must be an integer from 1 to "
                             f"2**32 - 1, got {period_init!r}")
        self._period_init = period_init
        super().__init__({
            "config": In(CONFIG_LAYOUT),
            "set_period": In(stream.Signature(32, always_ready=True)),
            "set_batch": In(stream.Signature(BATCH_LAYOUT, always_ready=True)),
            "clear_overrun": In(1),
            "pass_end": In(stream.Signature(PASS_LAYOUT, always_ready=True)),
            "started": In(1),
            "period": Out(32, init=period_init),
            "overrun": Out(1),
            "overrun_count": Out(32),
            "last_start": Out(64),
            "now": Out(64),
            "due": Out(1),
            "overran": Out(1),
        })

    @property
    def period_init(self) -> int:
        return self._period_init

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        pe = self.pass_end.payload
        batch = self.set_batch.payload

        # --- pass end: verdict and next start (applied at once) --------------------------
        # next start = last_start + max(cycles, period): both low sums, and the high half
        # with and without a carry, are formed side by side with the comparison.
        over = Signal()
        m.d.comb += over.eq(pe.cycles > self.period)
        by_cycles = Signal(33)
        by_period = Signal(33)
        high_next = Signal(32)
        m.d.comb += [
            by_cycles.eq(self.last_start[:32] + pe.cycles),
            by_period.eq(self.last_start[:32] + self.period),
            high_next.eq(self.last_start[32:] + 1),
        ]
        low = Mux(over, by_cycles, by_period)
        next_start = Cat(low[:32], Mux(low[32], high_next, self.last_start[32:]))
        running = Signal()
        m.d.sync += self.overran.eq(0)
        with m.If(self.clear_overrun):
            m.d.sync += self.overrun.eq(0)
        with m.If(self.pass_end.valid):
            m.d.sync += self.last_start.eq(next_start)
            with m.If(over):
                saturated = self.overrun_count == (1 << 32) - 1
                m.d.sync += [
                    self.overrun.eq(1),
                    self.overran.eq(1),
                    self.overrun_count.eq(self.overrun_count + ~saturated),
                ]
        m.d.sync += [
            self.now.eq(self.now + 1),
            running.eq(self.started | (running & ~self.pass_end.valid)),
        ]
        m.d.comb += self.due.eq(~running & (self.now >= self.last_start))

        # --- the sequential unit: products by shift and add ------------------------------
        # ``acc`` holds the product of ``mcand`` and the bits of ``mplier`` already used,
        # shifted right once per step, so that after ``k`` steps it is ``mcand * (mplier's
        # first k bits) << (32 - k)``.
        op = Signal(_Op)
        count = Signal(range(RATIO_LATENCY))
        mcand = Signal(32)
        mplier = Signal(32)
        acc = Signal(64)
        accessed = Signal(32)
        lower = Signal(16)          # target - hysteresis
        lower_on = Signal()         # target > hysteresis
        shorten = Signal()
        lengthen = Signal()
        step = Signal(32)           # the period, shifted right ``step_shift`` times
        shifts = Signal(5)
        moved = Signal(33)          # the adapted period, before the clamps
        derived = Signal(33)        # the migration period, saturated, before the clamps
        result = Signal(33)         # either, held for the update

        sum_ = Signal(33)
        m.d.comb += sum_.eq(acc[32:] + Mux(mplier[0], mcand, 0))
        advance = [acc.eq(Cat(acc[1:32], sum_)), mplier.eq(mplier >> 1)]

        # After 17 steps, ``ratio_product`` is leaves times a ratio-mode factor. One
        # comparison serves both bounds: ``upper * leaves < accessed * 2**16`` (``probe``
        # 0) and ``not lower * leaves < accessed * 2**16 + 1`` (``probe`` 1).
        ratio_product = acc[32 - _FACTOR_BITS:]
        probe = Signal()
        below = Signal()
        m.d.comb += below.eq(ratio_product < Cat(probe, Const(0, 15), accessed))

        start_ratio = self.pass_end.valid & (cfg.mode == Mode.RATIO) & (pe.leaves != 0)
        start_batch = self.set_batch.valid & (cfg.mode == Mode.MIGRATION)
        with m.If(start_batch):
            m.d.sync += [op.eq(_Op.BATCH), count.eq(0), acc.eq(0),
                         mcand.eq(batch.pages), mplier.eq(batch.cpp_q16)]
        with m.Elif(self.set_period.valid):
            m.d.sync += op.eq(_Op.IDLE)
        with m.Elif(start_ratio):
            m.d.sync += [
                op.eq(_Op.RATIO), count.eq(0), acc.eq(0), mcand.eq(pe.leaves),
                mplier.eq(cfg.target + cfg.hysteresis), accessed.eq(pe.accessed),
                lower.eq(cfg.target - cfg.hysteresis), lower_on.eq(cfg.target > cfg.hysteresis),
                step.eq(self.period), shifts.eq(cfg.step_shift), probe.eq(0),
            ]
        with m.Else():
            with m.Switch(op):
                with m.Case(_Op.BATCH):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count < 32):
                        m.d.sync += advance
                    with m.Elif(count == 32):
                        m.d.sync += result.eq(derived)
                    with m.Else():
                        m.d.sync += op.eq(_Op.IDLE)
                with m.Case(_Op.RATIO):
                    m.d.sync += count.eq(count + 1)
                    with m.If(shifts != 0):
                        m.d.sync += [step.eq(step >> 1), shifts.eq(shifts - 1)]
                    with m.If(count == _FACTOR_BITS):
                        m.d.sync += [shorten.eq(below), acc.eq(0), mplier.eq(lower),
                                     probe.eq(1)]
                    with m.Elif(count == 2 * _FACTOR_BITS + 1):
                        m.d.sync += lengthen.eq(lower_on & ~below)
                    with m.Elif(count == 2 * _FACTOR_BITS + 2):
                        m.d.sync += result.eq(moved)
                    with m.Elif(count == RATIO_LATENCY - 1):
                        m.d.sync += op.eq(_Op.IDLE)
                    with m.Else():
                        m.d.sync += advance

        # --- the period --------------------------------------------------------------------
        # moved = period - step, period + step or period, in 33 bits (only a period of 0,
        # which valid clamps exclude, could wrap; the clamps then give max_period).
        step_zero = Signal()        # registered: ``step`` is final long before it is used
        m.d.sync += step_zero.eq(step == 0)
        step_used = Signal(32)
        m.d.comb += step_used.eq(Mux(shorten | lengthen, step | step_zero, 0))
        m.d.comb += moved.eq(self.period + Cat(step_used ^ shorten.replicate(32), shorten)
                             + shorten)
        m.d.comb += derived.eq(Mux(acc[48:].any(), (1 << 33) - 1, acc[16:48]))

        value = Signal(33)
        m.d.comb += value.eq(Mux(self.set_period.valid, self.set_period.payload, result))
        # clamp(value) = min(max(value, min_period), max_period), the comparisons side by side.
        clamped = Signal(32)
        with m.If((cfg.min_period > cfg.max_period) | (value > cfg.max_period)):
            m.d.comb += clamped.eq(cfg.max_period)
        with m.Elif(value < cfg.min_period):
            m.d.comb += clamped.eq(cfg.min_period)
        with m.Else():
            m.d.comb += clamped.eq(value)

        done = Signal()
        m.d.comb += done.eq(((op == _Op.BATCH) & (count == BATCH_LATENCY - 1))
                            | ((op == _Op.RATIO) & (count == RATIO_LATENCY - 1)))
        with m.If(self.set_period.valid | (done & ~start_ratio & ~start_batch)):
            m.d.sync += self.period.eq(clamped)
        return m


SYNTH_DESIGNS = {
    "interval": lambda: IntervalController(),
}
