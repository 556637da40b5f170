# amaranth: UnusedElaboratable=no
"""Interval controller RTL (hdl/interval.py) against model.interval, cycle by cycle.

Every random case builds a valid :class:`model.interval.IntervalConfig`, drives the same
random events into the hardware and the model (in the order the hardware applies the
events of one cycle) and compares every output after every cycle. Failures name the seed.
"""

import random

import pytest
from amaranth.sim import Simulator

from hdl.interval import IntervalController, Mode
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
    """What the test expects of the outputs the model does not have: ``now`` and ``due``."""

    def __init__(self):
        self.now = 0
        self.running = False


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
                if rng.random() < 0.3:
                    leaves = value(REG_MAX if rng.random() < 0.3 else top)
                    ev["pass_end"] = (value(REG_MAX if big else 3 * top),
                                      rng.randint(0, leaves), leaves)
            if rng.random() < 0.05:
                ev["clear"] = True
            if rng.random() < 0.04:
                ev["period"] = value(REG_MAX)
            if rng.random() < 0.04:
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

            # The model, in the hardware's order of one cycle.
            overran = False
            if ev.get("clear"):
                model.clear_overrun()
            if "pass_end" in ev:
                overran = model.end_pass(*ev["pass_end"]).overrun
            if "period" in ev:
                model.set_period(ev["period"])
            if "batch" in ev:
                model.set_batch(*ev["batch"])
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
