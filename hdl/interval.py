"""Scan-interval controller in hardware: the twin of :mod:`model.interval`.

The module docstring of :mod:`model.interval` is the specification of the period, the
overrun verdict, the migration-aligned and access-ratio modes and the pass timing; this one
states what the hardware adds.

Cycle contract
--------------
Every event is a one-cycle input; its effect is visible on the outputs in the next cycle.
Events of one cycle are applied in the model's call order::

    clear_overrun -> end_pass(pass_end) -> set_period -> set_batch

so a clear never hides an overrun reported in the same cycle, and a register write in the
cycle a pass ends overrides that pass's ratio-mode adaptation. ``now`` counts cycles from 0
after reset (the model's ``start``). A pass is *due* (``due``) while none is running and
``now >= last_start``; ``started`` says the scanner took the start, ``pass_end`` that it
finished. Configuration (``config``) is read whenever it is used, so software changes it
between passes; ranges as :class:`model.interval.IntervalConfig`, except that the hardware
does not check them (``min_period > max_period`` clamps every period to ``max_period``;
``mode`` 3 acts as ``"fixed"``; ``accessed > leaves`` is a ratio above one).

The 64-bit cycle timestamps wrap instead of raising as the model does past ``2**64 - 1``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from thermocline.regmap import REGMAP

__all__ = ["Mode", "CONFIG_LAYOUT", "PASS_LAYOUT", "BATCH_LAYOUT", "IntervalController",
           "SYNTH_DESIGNS"]

_MODE_VALUES = REGMAP["INT_MODE"].field("MODE").values


class Mode(enum.Enum, shape=2):
    """Interval modes, encoded as the ``INT_MODE`` register (3 acts as FIXED)."""

    FIXED = 0
    MIGRATION = 1
    RATIO = 2


assert {m.value: m.name for m in Mode} == _MODE_VALUES

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
        The model's registers (32, 1, 32, 64 bits).
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

        def clamp(value, name):
            lo = Signal(len(value), name=f"{name}_lo")
            out = Signal(32, name=name)
            m.d.comb += lo.eq(Mux(value < cfg.min_period, cfg.min_period, value))
            m.d.comb += out.eq(Mux(lo > cfg.max_period, cfg.max_period, lo))
            return out

        # Pass end: verdict and next start.
        used = self.period
        over = Signal()
        m.d.comb += over.eq(pe.cycles > used)
        next_start = Signal(64)
        m.d.comb += next_start.eq(self.last_start + Mux(over, pe.cycles, used))

        # Ratio adaptation of the period in force.
        step = Signal(32)
        shifted = Signal(32)
        m.d.comb += shifted.eq(used >> cfg.step_shift)
        m.d.comb += step.eq(Mux(shifted == 0, 1, shifted))
        seen = Signal(48)
        m.d.comb += seen.eq(Cat(Const(0, 16), pe.accessed))
        upper = Signal(49)
        lower = Signal(48)
        m.d.comb += upper.eq((cfg.target + cfg.hysteresis) * pe.leaves)
        m.d.comb += lower.eq((cfg.target - cfg.hysteresis)[:16] * pe.leaves)
        moved = Signal(33)
        with m.If(seen > upper):
            m.d.comb += moved.eq(used - step)
        with m.Elif((cfg.target > cfg.hysteresis) & (seen < lower)):
            m.d.comb += moved.eq(used + step)
        with m.Else():
            m.d.comb += moved.eq(used)
        adapted = clamp(moved, "adapted")

        # Register writes.
        written = clamp(self.set_period.payload, "written")
        product = Signal(64)
        m.d.comb += product.eq(self.set_batch.payload.pages * self.set_batch.payload.cpp_q16)
        derived = clamp(product[16:], "derived")

        period = Signal(32)
        m.d.comb += period.eq(self.period)
        with m.If(self.pass_end.valid & (cfg.mode == Mode.RATIO) & (pe.leaves != 0)):
            m.d.comb += period.eq(adapted)
        with m.If(self.set_period.valid):
            m.d.comb += period.eq(written)
        with m.If(self.set_batch.valid & (cfg.mode == Mode.MIGRATION)):
            m.d.comb += period.eq(derived)
        m.d.sync += self.period.eq(period)

        # Overrun flag and count, pass timing.
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
        return m


SYNTH_DESIGNS = {
    "interval": lambda: IntervalController(),
}
