# amaranth: UnusedElaboratable=no
"""The hardware exit detector against the model, on the Amaranth simulator.

Every drop (in order) and the counters must equal :class:`model.exit_detector.ExitDetector`'s
for the same events; the events arrive with random gaps and the drops leave under random
backpressure. Co-simulation in Verilator (tests/test_cosim_exit_detector.py) runs the same
comparison on longer streams.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from cosim.tb_exit_detector import counters_of, decode_drop, encode_event, random_events
from hdl.exit_detector import COUNTERS, EXIT_DROP, EXIT_EVENT, ExitDetector as HwDetector
from hdl.layouts import struct
from model.exit_detector import Access, Drop, ExitConfig, ExitDetector, PteWrite
from thermocline.layouts import X86_ENTRY

from .helpers import scale

PTE = X86_ENTRY.pack(P=1, RW=1, US=1, A=1, ADDR=0x1234)


def run(config: ExitConfig, phases, *, gaps=0.3, seed=0, reset_after=None):
    """Feed each phase's events; reset the design between phases.

    ``reset_after`` (cycles into a phase) asserts reset while that phase is still in
    progress; the phase's remaining events are then not fed. Returns, per phase, the drops
    and the counters read at its end.
    """
    dut = HwDetector(**{k: getattr(config, k) for k in
                        ("spaces", "tables", "run_threshold", "tables_needed")})
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for k, events in enumerate(phases):
            queue = list(events)
            drops = []
            cycle = 0
            limit = 100 + (config.spaces + config.tables + 20) * len(queue)
            while cycle < limit:
                if reset_after is not None and k < len(phases) - 1 and cycle == reset_after:
                    break
                offer = bool(queue) and rng.random() >= gaps
                ctx.set(dut.event.valid, offer)
                if offer:
                    ctx.set(dut.event.payload.as_value(), encode_event(queue[0]))
                ready = rng.random() >= gaps
                ctx.set(dut.drop.ready, ready)
                took = offer and ctx.get(dut.event.ready)
                if ready and ctx.get(dut.drop.valid):
                    drops.append(decode_drop(ctx.get(dut.drop.payload.as_value())))
                await ctx.tick()
                cycle += 1
                if took:
                    queue.pop(0)
                if not queue and not ctx.get(dut.busy):
                    break
            else:
                raise AssertionError(f"seed {seed}: hang in phase {k}")
            counters = {c: ctx.get(getattr(dut.counters, c)) for c in COUNTERS}
            results.append((drops, counters, len(events) - len(queue)))
            ctx.set(dut.event.valid, 0)
            ctx.set(cd.rst, 1)
            await ctx.tick()
            ctx.set(cd.rst, 0)

    sim = Simulator(top)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(bench)
    sim.run()
    return results


def check(config, events, *, seed=0, gaps=0.3):
    (drops, counters, _), = run(config, [events], seed=seed, gaps=gaps)
    model = ExitDetector(config)
    want = model.feed_all(events)
    for i, (g, w) in enumerate(zip(drops, want)):
        assert g == w, f"seed {seed}: drop {i}: hardware {g}, model {w}"
    assert len(drops) == len(want), f"seed {seed}: {len(drops)} drops, model {len(want)}"
    assert counters == counters_of(model), f"seed {seed}: counters differ"
    return want


def unmap(asid, table, i):
    return PteWrite(asid, table << 12, i, PTE, 0)


def test_layouts_fit_the_model_fields():
    assert struct(EXIT_EVENT).size == 320 and struct(EXIT_DROP).size == 128
    assert EXIT_EVENT.TABLE.width == 40 and EXIT_EVENT.ASID.width == 64


def test_exit_by_lowest_address_then_bulk():
    asid = 0xDEAD_BEEF_0000_0001
    events = [Access(asid, 0x40_0000, 0x5000, 0, True), Access(asid, 0x40_5000, 0x5000, 5, True)]
    events += [unmap(asid, 0x5, 0), unmap(asid, 0x5, 1), unmap(asid, 0x6, 0)]
    other = 7
    events += [Access(other, 0x1000_0000, 0x20000, 0, True)]   # a table never unmapped
    events += [unmap(other, 0x9 + t, i) for t in range(3) for i in range(5)]
    drops = check(ExitConfig(), events)
    assert [d.reason for d in drops].count("exit") == 3
    assert "bulk" in [d.reason for d in drops]


@pytest.mark.parametrize("seed", range(scale(6)))
def test_random_streams_match_model(seed):
    rng = random.Random(seed)
    tables = rng.choice([1, 3, 8, 16])
    config = ExitConfig(spaces=rng.choice([1, 2, 4, 8]), tables=tables,
                        run_threshold=rng.choice([1, 2, 4, 7]),
                        tables_needed=rng.randint(1, min(3, tables)))
    check(config, random_events(rng, 500, processes=rng.randint(1, 12)), seed=seed,
          gaps=rng.choice([0.0, 0.4]))


def test_full_tables_evict_round_robin():
    """More spaces and tables than slots: evictions counted, drops as the model's."""
    config = ExitConfig(spaces=2, tables=3, run_threshold=2, tables_needed=2)
    events = []
    for asid in range(5):
        events.append(Access(asid, (asid + 1) << 21, 0x1000 * (asid + 1), 0, True))
        for t in range(4):
            events += [unmap(asid, 0x100 + 16 * asid + t, i) for i in range(1, 4)]
    events += [unmap(0, 1, 0), unmap(4, 5, 0)]
    check(config, events, gaps=0.0)
    model = ExitDetector(config)
    model.feed_all(events)
    assert model.counters.space_evictions > 0 and model.counters.table_evictions > 0


def test_same_page_newer_pte_location_wins():
    """An access at the recorded page moves the record to its PTE; the old PTE no longer
    marks the space exiting, the new one does."""
    asid = 3
    events = [Access(asid, 0x7000, 0x1000, 7, True), Access(asid, 0x7FFF, 0x2000, 9, True),
              unmap(asid, 0x1, 7), unmap(asid, 0x2, 9), unmap(asid, 0x2, 10)]
    drops = check(ExitConfig(spaces=2, tables=4, run_threshold=4), events)
    assert drops == [Drop(asid, 0x2000, "exit"), Drop(asid, 0x2000, "exit")]


def test_cycles_per_event_match_the_documented_timing():
    """Back to back, with drops taken at once: S + 5 cycles per user access, S + T + 9 per
    unmapping write (plus one per drop), one per supervisor access."""
    config = ExitConfig(spaces=3, tables=5)
    S, T = config.spaces, config.tables
    cases = [
        ([Access(1, 0x1000, 0x1000, 1, False)] * 4, 4),
        ([Access(1, 0x1000 * k, 0x1000, k, True) for k in range(4)], 4 * (S + 5)),
        ([unmap(1, 0x10, k) for k in range(4)], 4 * (S + T + 9)),
    ]
    for events, want in cases:
        cycles = timed(config, events)
        assert cycles == want, f"{events[0]}: {cycles} cycles, documented {want}"


def timed(config, events):
    """Cycles from the first event taken to the cycle after the last is done (no gaps, drops
    taken at once)."""
    dut = HwDetector(**{k: getattr(config, k) for k in
                        ("spaces", "tables", "run_threshold", "tables_needed")})
    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.dut = dut
    result = []

    async def bench(ctx):
        queue = list(events)
        cycle = 0
        ctx.set(dut.drop.ready, 1)
        while queue or ctx.get(dut.busy):
            assert cycle < 1000, "hang"
            ctx.set(dut.event.valid, bool(queue))
            if queue:
                ctx.set(dut.event.payload.as_value(), encode_event(queue[0]))
            took = bool(queue) and ctx.get(dut.event.ready)
            await ctx.tick()
            cycle += 1
            if took:
                queue.pop(0)
        result.append(cycle)

    sim = Simulator(top)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(bench)
    sim.run()
    return result[0]


def test_counters_and_supervisor_accesses():
    events = [Access(1, 0x1000, 0x2000, 1, False)] * 5 + [PteWrite(1, 0x2000, 1, 0, 0)]
    check(ExitConfig(spaces=1, tables=1, run_threshold=1, tables_needed=1), events)


def test_reset_mid_stream_restarts_from_empty_tables():
    rng = random.Random(5)
    config = ExitConfig(spaces=4, tables=8)
    first, second = random_events(rng, 300), random_events(rng, 200)
    for cut in (3, 57, 400):
        (d1, _, fed), (d2, c2, _) = run(config, [first, second], seed=cut, reset_after=cut)
        before = ExitDetector(config).feed_all(first[:fed])
        assert d1 == before[:len(d1)], f"cut {cut}: drops before the reset differ"
        model = ExitDetector(config)
        assert d2 == model.feed_all(second), f"cut {cut}: drops after the reset differ"
        assert c2 == counters_of(model)


@pytest.mark.parametrize("kw, shown", [
    (dict(spaces=0), "spaces.*got 0"),
    (dict(tables=257), "tables.*got 257"),
    (dict(run_threshold=513), "run_threshold.*got 513"),
    (dict(tables=4, tables_needed=5), "1..4, got 5"),
    (dict(spaces=True), "True"),
])
def test_bad_parameters_are_named(kw, shown):
    with pytest.raises(ValueError, match=shown):
        HwDetector(**kw)


def test_synth_design_registered():
    from hdl.exit_detector import SYNTH_DESIGNS
    assert isinstance(SYNTH_DESIGNS["exit_detector"](), HwDetector)
