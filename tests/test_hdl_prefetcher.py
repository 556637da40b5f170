# amaranth: UnusedElaboratable=no
"""The hardware prefetcher against the model, on the Amaranth simulator.

For every request the response records (GPAs, their GVAs, nearest first, then the status)
and the memory references in order must equal :class:`model.prefetcher.Prefetcher`'s; a
dropped request must answer a prefix of the model's GPAs and reference a prefix of its
addresses. The memory has latency and random stalls, ``grant`` is withheld at random (and
held once ``arvalid`` is up, as the arbiter does), and the memory image is compared after
every run (the unit never writes). Co-simulation (tests/test_cosim_prefetcher.py) repeats
this in Verilator.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from cosim.simmem import SimAxiMemory
from cosim.tb_prefetcher import (
    decode_records, encode_request, random_guest, random_setting, same,
)
from hdl.axi import AxiParams
from hdl.prefetcher import PREFETCH_REQ, PREFETCH_RESP, STATUS, Prefetcher as HwPrefetcher
from hdl.layouts import struct
from model.prefetcher import DIRECTIONS, STATUSES, Prefetcher, dropped

from .helpers import scale


class Item:
    """One request: window, direction, and optionally a drop or a reset after ``at``
    cycles."""

    def __init__(self, req, window, direction, *, drop=None, reset=None):
        self.req, self.window, self.direction = req, window, direction
        self.drop, self.reset = drop, reset


def run(mem, items, *, host="ept", pa_bits=52, max_burst=64, latency=1, stall=0.0,
        grant_gaps=0.0, seed=0):
    """Run ``items`` one after the other; returns per item ``(result, addresses read)``
    (``result`` is ``None`` for an item cut by reset)."""
    dut = HwPrefetcher(host=host, pa_bits=pa_bits, max_burst=max_burst)
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    rng = random.Random(seed)
    out = []
    state = {"slave": SimAxiMemory(dut.m_axi, mem, latency=latency, stall=stall, seed=seed)}

    async def bench(ctx):
        hold = False
        for it in items:
            slave = state["slave"]
            first = len(slave.log)
            ctx.set(dut.window, it.window)
            ctx.set(dut.direction, it.direction if isinstance(it.direction, int)
                    else DIRECTIONS.index(it.direction))
            ctx.set(dut.req.payload.as_value(), encode_request(it.req))
            ctx.set(dut.req.valid, 1)
            taken = None
            words = []
            for cycle in range(50_000):
                slave.outputs(ctx)
                grant = hold or rng.random() >= grant_gaps
                ctx.set(dut.grant, grant)
                ctx.set(dut.drop, taken is not None and it.drop is not None
                        and cycle - taken == it.drop)
                ready = rng.random() >= stall
                ctx.set(dut.resp.ready, ready)
                hold = ctx.get(dut.m_axi.arvalid) and not slave._arready
                if taken is None and ctx.get(dut.req.ready):
                    taken = cycle
                done = False
                if ready and ctx.get(dut.resp.valid):
                    words.append(ctx.get(dut.resp.payload.as_value()))
                    done = PREFETCH_RESP.DONE.get(words[-1])
                slave.sample(ctx)
                if it.reset is not None and taken is not None and cycle - taken == it.reset:
                    ctx.set(cd.rst, 1)
                    await ctx.tick()
                    ctx.set(cd.rst, 0)
                    ctx.set(dut.req.valid, 0)
                    state["slave"] = SimAxiMemory(dut.m_axi, mem, latency=latency,
                                                  stall=stall, seed=seed + cycle)
                    hold = False
                    out.append((None, slave.log[first:]))
                    break
                await ctx.tick()
                if taken == cycle:
                    ctx.set(dut.req.valid, 0)
                if done:
                    out.append((decode_records(words), slave.log[first:]))
                    break
            else:
                raise AssertionError(f"seed {seed}: hang on {it.req}")
            assert not ctx.get(dut.m_axi.awvalid) and not ctx.get(dut.m_axi.wvalid)

    sim = Simulator(top)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(bench)
    sim.run()
    return out


def model_of(mem, item, host, pa_bits):
    m = Prefetcher(mem, window=item.window, direction=item.direction, host=host,
                   pa_bits=pa_bits)
    return m.prefetch(item.req), m.log


def check(mem, items, results, host, pa_bits, context):
    for k, (it, (hw, refs)) in enumerate(zip(items, results)):
        want, log = model_of(mem, it, host, pa_bits)
        where = (f"{context} request {k} {it.req} window {it.window} {it.direction}:\n"
                 f"  hardware {hw and hw.status} {hw and [hex(g) for g in hw.gpas]}\n"
                 f"  model    {want.status} {[hex(g) for g in want.gpas]}")
        addrs = [a for _, a, _ in refs]
        if hw is None or hw.status == "dropped":
            assert hw is None or same(hw, want), where
            assert addrs == log[:len(addrs)], f"{where}\n  references are not a prefix"
        else:
            assert hw == want.__class__(want.gpas, want.gvas, want.status, -1), where
            assert addrs == log, f"{where}\n  references differ"


def test_layouts_and_status_codes():
    assert tuple(STATUS) == STATUSES
    assert struct(PREFETCH_REQ).size == 192 and struct(PREFETCH_RESP).size == 128


@pytest.mark.parametrize("host", ["ept", "npt"])
def test_non_resident_neighbours_nearest_first(host):
    rnd = random.Random(1)
    g = random_guest(rnd, host)
    faults = g.faults[:512]                     # one per page of the first region
    items = [Item(g.request(faults[i]), w, d)
             for i, w, d in ((100, 8, "both"), (0, 8, "both"), (511, 4, "forward"),
                             (300, 40, "backward"), (5, 511, "both"), (511, 3, "forward"))]
    mem = g.system.mem
    snap = mem.copy()
    res = run(mem, items, host=host, latency=2)
    check(mem, items, res, host, 52, host)
    assert mem.diff(snap) == []
    assert any(r.gpas for r, _ in res)


@pytest.mark.parametrize("host, pa_bits", [("ept", 52), ("npt", 46), ("ept", 40)])
@pytest.mark.parametrize("seed", range(scale(2)))
def test_random_guests_match_model(host, pa_bits, seed):
    rnd = random.Random(seed * 31 + pa_bits + (host == "npt"))
    g = random_guest(rnd, host, pa_bits, bad=seed % 3 * 2)
    items = [Item(g.request(rnd.choice(g.faults)), *random_setting(rnd)) for _ in range(12)]
    max_burst = rnd.choice([1, 7, 64, 256])
    res = run(g.system.mem, items, host=host, pa_bits=pa_bits, max_burst=max_burst,
              latency=rnd.choice([1, 3]), stall=0.2, grant_gaps=0.3, seed=seed)
    check(g.system.mem, items, res, host, pa_bits, f"seed {seed} max_burst {max_burst}")


@pytest.mark.parametrize("resp", ["SLVERR", "DECERR"])
def test_bus_error_on_each_reference(resp):
    """The n-th reference of one request fails (walk reads, host reads of neighbours, a
    beat of the window burst): the model's outcome, and the same references."""
    g = random_guest(random.Random(7), "ept")
    it = Item(g.request(g.faults[200]), 6, "both")
    want, log = model_of(g.system.mem, it, "ept", 52)
    assert want.status == "ok" and want.gpas
    seen = set()
    for n in range(len(log)):
        mem = g.system.mem.copy()
        mem.poison(log[n], resp)
        res = run(mem, [it], latency=2)
        check(mem, [it], res, "ept", 52, f"{resp} at reference {n} ({log[n]:#x})")
        seen.add(res[0][0].status)
    assert seen == {"ok", "bus_error"}


def test_bad_window_and_direction_answer_bad_config():
    g = random_guest(random.Random(3), "ept")
    items = [Item(g.request(g.faults[10]), 0, "both"), Item(g.request(g.faults[10]), 4, 3),
             Item(g.request(g.faults[10]), 4, "both")]
    res = run(g.system.mem, items)
    assert [r.status for r, _ in res[:2]] == ["bad_config", "bad_config"]
    assert res[0][1] == [] and res[1][1] == []
    check(g.system.mem, items[2:], res[2:], "ept", 52, "after bad_config")


@pytest.mark.parametrize("host, pa_bits", [("npt", 46), ("ept", 52)])
def test_malformed_and_missing_entries(host, pa_bits):
    """Reserved bits, misconfigured host entries, poisoned words, unmapped and 2 MiB guest
    pages: together they give every status of the model."""
    statuses = set()
    for seed in (0, 1) if host == "npt" else (1, 2):
        g = random_guest(random.Random(seed), host, pa_bits, bad=3)
        items = [Item(g.request(f), 8, "both") for f in g.faults[::37] + g.faults[-2:]]
        res = run(g.system.mem, items, host=host, pa_bits=pa_bits, latency=1)
        check(g.system.mem, items, res, host, pa_bits, f"malformed, guest {seed}")
        statuses |= {r.status for r, _ in res}
    assert statuses == {"ok", "no_leaf_table", "guest_fault", "host_fault", "bus_error"}


@pytest.mark.parametrize("seed", range(scale(2)))
def test_drop_and_reset_mid_request(seed):
    rnd = random.Random(100 + seed)
    g = random_guest(rnd, "ept")
    items = []
    for _ in range(16):
        req = g.request(rnd.choice(g.faults[:1024]))
        w, d = rnd.choice([8, 16, 64]), rnd.choice(DIRECTIONS)
        at = rnd.randrange(0, 300)
        kind = rnd.choice(["drop", "reset", "none"])
        items.append(Item(req, w, d, drop=at if kind == "drop" else None,
                          reset=at if kind == "reset" else None))
    res = run(g.system.mem, items, latency=2, stall=0.2, grant_gaps=0.2, seed=seed)
    check(g.system.mem, items, res, "ept", 52, f"seed {seed}")
    statuses = [r.status for r, _ in res if r is not None]
    assert "dropped" in statuses and "ok" in statuses


def test_dropped_helper_is_a_prefix():
    g = random_guest(random.Random(2), "ept")
    it = Item(g.request(g.faults[100]), 16, "both")
    want, _ = model_of(g.system.mem, it, "ept", 52)
    d = dropped(want, 1)
    assert d.status == "dropped" and d.gpas == want.gpas[:1]
    with pytest.raises(ValueError, match="got 99"):
        dropped(want, 99)


@pytest.mark.parametrize("kw, shown", [
    (dict(host="ia32e"), "'ia32e'"),
    (dict(pa_bits=31), "got 31"),
    (dict(max_burst=0), "got 0"),
    (dict(max_burst=257), "got 257"),
    (dict(axi=AxiParams(addr_width=48)), "addr_width=48"),
])
def test_bad_parameters_are_named(kw, shown):
    with pytest.raises(ValueError, match=shown):
        HwPrefetcher(**kw)


def test_synth_designs_registered():
    from hdl.prefetcher import SYNTH_DESIGNS
    assert isinstance(SYNTH_DESIGNS["prefetcher"](), HwPrefetcher)
    assert SYNTH_DESIGNS["prefetcher-npt"]().params["host"] == "npt"

