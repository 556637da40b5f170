# amaranth: UnusedElaboratable=no
"""Interval controller RTL (hdl/interval.py) against model.interval, cycle by cycle.

Every random case builds a valid :class:`model.interval.IntervalConfig`, drives the same
random events into the hardware and the model (in the order the hardware applies the
events of one cycle, with ratio-mode adaptations and migration-mode periods landing when the
hardware's cycle contract says) and compares every output after every cycle. Failures name
the seed.
"""

import random
from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from hdl.interval import BATCH_DELAY, RATIO_DELAY, IntervalController, Mode
from model.interval import IntervalConfig
from model.interval import IntervalController as ModelController
from thermocline.regmap import REGMAP

from .helpers import scale

REG_MAX = (1 << 32) - 1
MODES = {"fixed": Mode.FIXED, "migration": Mode.MIGRATION, "ratio": Mode.RATIO}


def random_config(rng: random.Random, big: bool) -> IntervalConfig:
    """A valid configuration; small periods (many overruns, clamps hit) unless ``big``."""
    top = REG_MAX if big else 400
    lo = rng.choice([1, 1, rng.randint(1, top)])
    hi = rng.choice([top, rng.randint(lo, top)])
    return IntervalConfig(mode=rng.choice(list(MODES)), period=rng.randint(lo, hi),
                          min_period=lo, max_period=hi,
                          target=rng.choice([0, 1 << 14, rng.randint(0, 65535), 65535]),
                          hysteresis=rng.choice([0, 1 << 11, rng.randint(0, 65535)]),
                          step_shift=rng.randint(0, 16))


class Loop:
    """What the test expects of the outputs the model does not have (``now`` and ``due``),
    and the period change in flight in the hardware's sequential unit."""

    def __init__(self):
        self.now = 0
        self.running = False
        self.pending = None        # (cycle it lands, "ratio" or "batch", arguments)


def adapted(model: ModelController, accessed: int, leaves: int) -> int:
    """The period the model's ratio mode derives from the period in force and a pass's
    counts (the model's own adaptation, run on a copy)."""
    copy = ModelController(replace(model.config, period=model.period))
    return copy.end_pass(0, accessed, leaves).period


def model_cycle(model: ModelController, loop: Loop, cycle: int, ev: dict) -> bool:
    """Apply the events of one cycle to the model as the hardware does; returns the pass's
    overrun verdict. A pass end's verdict and a period write act at once; the ratio-mode
    adaptation of a pass end lands ``RATIO_DELAY`` cycles later and a migration-mode batch
    write ``BATCH_DELAY`` cycles later, each dropped if a period write, another adaptation
    or another migration-mode batch write comes first."""
    mode = model.config.mode
    overran = False
    if ev.get("clear"):
        model.clear_overrun()
    if "pass_end" in ev:
        cycles, accessed, leaves = ev["pass_end"]
        overran = model.end_pass(cycles, 0, 0).overrun
        if mode == "ratio" and leaves:
            loop.pending = (cycle + RATIO_DELAY - 1, "ratio", (accessed, leaves))
    if "period" in ev:
        model.set_period(ev["period"])
        loop.pending = None
    if "batch" in ev:
        if mode == "migration":
            loop.pending = (cycle + BATCH_DELAY - 1, "batch", ev["batch"])
        else:
            model.set_batch(*ev["batch"])
    if loop.pending is not None and loop.pending[0] == cycle:
        _, kind, args = loop.pending
        loop.pending = None
        if kind == "ratio":
            model.set_period(adapted(model, *args))
        else:
            model.set_batch(*args)
    return overran


def run_case(seed: int, cycles: int, closed_loop: bool):
    """Drive ``cycles`` cycles of random events; with ``closed_loop`` passes start when
    ``due`` says so and last a random time, as in the engine."""
    rng = random.Random(seed)
    big = rng.random() < 0.3
    cfg = random_config(rng, big)
    model = ModelController(cfg)
    dut = IntervalController(period_init=cfg.period)
    loop = Loop()
    top = REG_MAX if big else 600
    # Dense events, or events sparse enough for adaptations and derived periods to land.
    p_end, p_write = rng.choice([(0.3, 0.04), (0.02, 0.04), (0.02, 0.005)])

    def value(limit):
        return rng.choice([0, 1, limit, rng.randint(0, limit)])

    async def bench(ctx):
        ctx.set(dut.config, {"mode": MODES[cfg.mode], "min_period": cfg.min_period,
                             "max_period": cfg.max_period, "target": cfg.target,
                             "hysteresis": cfg.hysteresis, "step_shift": cfg.step_shift})
        pass_left = None
        due = True
        for cycle in range(cycles):
            ev = {}
            if closed_loop:
                if due and not loop.running and rng.random() < 0.7:
                    ev["started"] = True
                    pass_left = rng.randint(0, 2 * min(model.period, 300))
                elif loop.running and pass_left is not None:
                    pass_left -= 1
                    if pass_left <= 0:
                        leaves = value(top)
                        ev["pass_end"] = (rng.randint(0, 3 * min(model.period, 300)),
                                          rng.randint(0, leaves), leaves)
            else:
                if rng.random() < 0.1:
                    ev["started"] = True
                if rng.random() < p_end:
                    leaves = value(REG_MAX if rng.random() < 0.3 else top)
                    ev["pass_end"] = (value(REG_MAX if big else 3 * top),
                                      rng.randint(0, leaves), leaves)
            if rng.random() < 0.05:
                ev["clear"] = True
            if rng.random() < p_write:
                ev["period"] = value(REG_MAX)
            if rng.random() < p_write:
                ev["batch"] = (value(REG_MAX if big else 5000),
                               value(REG_MAX) if big else rng.randint(0, 1 << 18))

            ctx.set(dut.started, ev.get("started", False))
            ctx.set(dut.clear_overrun, ev.get("clear", False))
            ctx.set(dut.pass_end.valid, "pass_end" in ev)
            if "pass_end" in ev:
                c, a, n = ev["pass_end"]
                ctx.set(dut.pass_end.payload, {"cycles": c, "accessed": a, "leaves": n})
            ctx.set(dut.set_period.valid, "period" in ev)
            ctx.set(dut.set_period.payload, ev.get("period", 0))
            ctx.set(dut.set_batch.valid, "batch" in ev)
            if "batch" in ev:
                ctx.set(dut.set_batch.payload, {"pages": ev["batch"][0],
                                                "cpp_q16": ev["batch"][1]})
            await ctx.tick()

            overran = model_cycle(model, loop, cycle, ev)
            loop.running = ev.get("started", False) or (loop.running and "pass_end" not in ev)
            loop.now += 1

            got = {"period": ctx.get(dut.period), "overrun": ctx.get(dut.overrun),
                   "overrun_count": ctx.get(dut.overrun_count),
                   "last_start": ctx.get(dut.last_start), "now": ctx.get(dut.now),
                   "due": ctx.get(dut.due), "overran": ctx.get(dut.overran)}
            want = {"period": model.period, "overrun": int(model.overrun),
                    "overrun_count": model.overrun_count, "last_start": model.last_start,
                    "now": loop.now,
                    "due": int(not loop.running and loop.now >= model.last_start),
                    "overran": int(overran)}
            assert got == want, (f"seed={seed} cycle={cycle} config={cfg} events={ev}: "
                                 f"hardware {got} != model {want}")
            due = bool(got["due"])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return model


@pytest.mark.parametrize("seed", range(scale(12)))
def test_random_events_against_model(seed):
    """Events at random, several in one cycle, values at the edges of their ranges."""
    run_case(seed, 300, closed_loop=False)


@pytest.mark.parametrize("seed", range(1000, 1000 + scale(6)))
def test_closed_loop_against_model(seed):
    """Passes started on ``due`` and ended after a random time, with register writes."""
    model = run_case(seed, 600, closed_loop=True)
    assert model.last_start > 0, f"seed={seed}: no pass ended"


def test_ratio_mode_converges_and_overrun_saturates():
    """Directed: the ratio loop shortens a period whose passes see every leaf accessed, and
    lengthens it when none is; the overrun count saturates at 2**32 - 1."""
    dut = IntervalController(period_init=1000)

    async def bench(ctx):
        ctx.set(dut.config, {"mode": Mode.RATIO, "min_period": 10, "max_period": 5000,
                             "target": 1 << 14, "hysteresis": 1 << 11, "step_shift": 3})

        async def end(cycles, accessed, leaves):
            ctx.set(dut.pass_end.valid, 1)
            ctx.set(dut.pass_end.payload, {"cycles": cycles, "accessed": accessed,
                                           "leaves": leaves})
            await ctx.tick()
            ctx.set(dut.pass_end.valid, 0)
            for _ in range(RATIO_DELAY - 1):          # the adaptation lands
                await ctx.tick()
            return ctx.get(dut.period)

        assert await end(5, 100, 100) == 1000 - 125
        assert await end(5, 25, 100) == 875          # inside the band: unchanged
        assert await end(5, 0, 100) == 875 + 109
        assert await end(5, 0, 0) == 984             # no leaves: unchanged
        for _ in range(100):
            p = await end(5, 100, 100)
        assert p == 10
        assert not ctx.get(dut.overrun)
        # A pass of 11 cycles against a period of 10 overruns; saturation at the top.
        await end(11, 25, 100)
        assert ctx.get(dut.overrun) and ctx.get(dut.overrun_count) == 1
        ctx.set(dut.clear_overrun, 1)
        await ctx.tick()
        ctx.set(dut.clear_overrun, 0)
        assert not ctx.get(dut.overrun) and ctx.get(dut.overrun_count) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_period_changes_land_after_their_delay():
    """Directed: a ratio-mode adaptation shows on ``period`` exactly ``RATIO_DELAY`` cycles
    after its pass end, a migration-mode period ``BATCH_DELAY`` cycles after its batch write;
    a period write drops the change in flight, a newer batch write replaces it, and the
    verdict, overrun and next start of a pass end show in the next cycle."""
    dut = IntervalController(period_init=1000)

    async def bench(ctx):
        cfg = {"mode": Mode.RATIO, "min_period": 10, "max_period": 5000,
               "target": 1 << 14, "hysteresis": 1 << 11, "step_shift": 3}
        ctx.set(dut.config, cfg)

        async def pulse(port, payload):
            ctx.set(port.valid, 1)
            ctx.set(port.payload, payload)
            await ctx.tick()
            ctx.set(port.valid, 0)

        async def expect_after(delay, before, after):
            for k in range(1, delay):
                assert ctx.get(dut.period) == before, f"cycle {k}: {ctx.get(dut.period)}"
                await ctx.tick()
            assert ctx.get(dut.period) == after

        await pulse(dut.pass_end, {"cycles": 1001, "accessed": 100, "leaves": 100})
        assert ctx.get(dut.overrun) and ctx.get(dut.overran)
        assert ctx.get(dut.last_start) == 1001
        await expect_after(RATIO_DELAY, 1000, 875)
        # A period write drops the adaptation in flight.
        await pulse(dut.pass_end, {"cycles": 5, "accessed": 100, "leaves": 100})
        for _ in range(5):
            await ctx.tick()
        await pulse(dut.set_period, 2000)
        await expect_after(RATIO_DELAY, 2000, 2000)
        # Counts exactly on the band's edges (accessed / leaves == target -+ hysteresis)
        # leave the period alone.
        for accessed in ((1 << 14) - (1 << 11), (1 << 14) + (1 << 11)):
            await pulse(dut.pass_end, {"cycles": 5, "accessed": accessed, "leaves": 1 << 16})
            await expect_after(RATIO_DELAY, 2000, 2000)
        # A pass end in the cycle an adaptation would land drops it and starts its own.
        await pulse(dut.pass_end, {"cycles": 5, "accessed": 0, "leaves": 100})
        for _ in range(RATIO_DELAY - 2):
            await ctx.tick()
        await pulse(dut.pass_end, {"cycles": 5, "accessed": 100, "leaves": 100})
        await expect_after(RATIO_DELAY, 2000, 1750)
        # Migration mode: a newer batch write replaces the one in flight.
        ctx.set(dut.config, {**cfg, "mode": Mode.MIGRATION})
        await pulse(dut.set_batch, {"pages": 1000, "cpp_q16": 3 << 16})
        for _ in range(9):
            await ctx.tick()
        await pulse(dut.set_batch, {"pages": 1500, "cpp_q16": 5 << 15})
        await expect_after(BATCH_DELAY, 1750, 3750)
        # A product beyond 32 bits clamps to the maximum.
        await pulse(dut.set_batch, {"pages": REG_MAX, "cpp_q16": REG_MAX})
        await expect_after(BATCH_DELAY, 3750, 5000)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_inverted_clamps_give_the_maximum():
    """The hardware does not check the clamps: with ``min_period > max_period`` every period
    written becomes ``max_period``."""
    dut = IntervalController(period_init=1000)

    async def bench(ctx):
        ctx.set(dut.config, {"mode": Mode.FIXED, "min_period": 500, "max_period": 100,
                             "target": 0, "hysteresis": 0, "step_shift": 0})
        for written in (50, 300, 700, REG_MAX):
            ctx.set(dut.set_period.valid, 1)
            ctx.set(dut.set_period.payload, written)
            await ctx.tick()
            assert ctx.get(dut.period) == 100, f"wrote {written}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_overrun_count_saturates():
    model = ModelController(IntervalConfig(period=1))
    model._overrun_count = REG_MAX - 1
    dut = IntervalController(period_init=1)

    async def bench(ctx):
        ctx.set(dut.overrun_count, REG_MAX - 1)
        for _ in range(3):
            ctx.set(dut.pass_end.valid, 1)
            ctx.set(dut.pass_end.payload, {"cycles": 2, "accessed": 0, "leaves": 0})
            await ctx.tick()
            model.end_pass(2)
            assert ctx.get(dut.overrun_count) == model.overrun_count
        assert model.overrun_count == REG_MAX

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_reset_value_comes_from_the_register_map():
    assert IntervalController().period_init == REGMAP["INT_PERIOD"].reset


@pytest.mark.parametrize("bad", [0, 1 << 32, -1, 2.0, True, "1000"])
def test_bad_parameter(bad):
    with pytest.raises(ValueError, match="period_init"):
        IntervalController(period_init=bad)
