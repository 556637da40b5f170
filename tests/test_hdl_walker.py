"""The hardware walker against the model, on the Amaranth simulator.

Every request's response word, the memory references in order, the final memory image and
the counters must equal the model's. Co-simulation with Verilator (tests/test_cosim_walker.py)
runs the same comparison at scale.
"""

import random

import pytest
from amaranth.sim import Simulator

from cosim.simmem import SimAxiMemory
from cosim.walk_codec import Invalidate, apply_inv, describe_response, encode_inv, \
    encode_request, encode_result, model_counters
from hdl.walker import COUNTERS, Walker as HwWalker
from model.pagetable import SIZE_4K
from model.walker import Walker, WalkerConfig, WalkRequest

from .helpers import scale
from model.system import pick, random_system

from .test_walker import GVA, make


def run_both(mem, items, config: WalkerConfig, *, latency=1, stall=0.0, seed=0,
             resp_stall=0.0):
    """Run ``items`` (WalkRequest or Invalidate) through the model and the hardware (the
    memory stalls each handshake with probability ``stall``, the response consumer with
    ``resp_stall``)."""
    model_mem = mem.copy()
    model = Walker(model_mem, config)
    expect, model_log = [], []
    for it in items:
        if isinstance(it, Invalidate):
            apply_inv(model, it)
        else:
            expect.append(encode_result(model.translate(it)))
            model_log += [(r.op, r.addr, r.value) for r in model.log]

    dut = HwWalker(**{k: getattr(config, k) for k in (
        "host", "pa_bits", "tlb_entries", "tlb_large_entries", "pwc_entries", "wp", "nxe",
        "mbec", "execute_only", "max_restarts")})
    got, counters = [], {}
    slave = SimAxiMemory(dut.m_axi, mem, latency=latency, stall=stall, seed=seed)

    rnd = random.Random(seed)

    async def bench(ctx):
        queue = list(items)
        waiting = 0
        for _ in range(400 * len(items) + 1000):
            head = queue[0] if queue else None
            is_inv = isinstance(head, Invalidate)
            ctx.set(dut.req.valid, int(head is not None and not is_inv))
            ctx.set(dut.inv.valid, int(is_inv))
            if head is not None:
                if is_inv:
                    ctx.set(dut.inv.payload.as_value(), encode_inv(head))
                else:
                    ctx.set(dut.req.payload.as_value(), encode_request(head))
            ready = int(rnd.random() >= resp_stall)
            ctx.set(dut.resp.ready, ready)
            slave.outputs(ctx)
            if head is not None and not is_inv and ctx.get(dut.req.ready):
                queue.pop(0)
                waiting += 1
            elif is_inv and ctx.get(dut.inv.ready):
                queue.pop(0)
            if ready and ctx.get(dut.resp.valid):
                got.append(ctx.get(dut.resp.payload.as_value()))
                waiting -= 1
            slave.sample(ctx)
            await ctx.tick()
            if not queue and not waiting and not ctx.get(dut.busy):
                break
        for name in COUNTERS:
            counters[name] = ctx.get(getattr(dut.counters, name))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return dict(expect=expect, got=got, model_log=model_log, hw_log=slave.log,
                model_mem=model_mem, model=model, counters=counters, cycles=slave.cycle)


def check(res, mem, context=""):
    assert len(res["got"]) == len(res["expect"]), f"{context}: responses missing"
    for i, (g, e) in enumerate(zip(res["got"], res["expect"])):
        assert g == e, (f"{context} response {i}:\n  hw    {describe_response(g)}\n"
                        f"  model {describe_response(e)}")
    assert res["hw_log"] == res["model_log"], f"{context}: memory references differ"
    assert mem.diff(res["model_mem"]) == [], f"{context}: memory images differ"
    assert res["counters"] == model_counters(res["model"]), f"{context}: counters differ"


@pytest.mark.parametrize("host", ["ept", "npt"])
def test_cold_warm_and_faulting_walks(host):
    s, sp, _ = make(host)
    for i in range(3):
        sp.map(GVA + i * SIZE_4K, s.alloc_data(), RW=int(i != 2))
    rq = lambda i, **kw: WalkRequest(gva=GVA + i * SIZE_4K + 8, cr3=sp.root,  # noqa: E731
                                     hroot=s.hroot, **kw)
    items = [rq(0), rq(0), rq(0, write=True), rq(1, user=True), rq(2, write=True),
             rq(7), WalkRequest(gva=1 << 47, cr3=sp.root, hroot=s.hroot),
             WalkRequest(gva=GVA, cr3=sp.root, hroot=s.hroot | 1 << 60)]
    res = run_both(s.mem, items, WalkerConfig(host=host))
    check(res, s.mem, host)


@pytest.mark.parametrize("host", ["ept", "npt"])
@pytest.mark.parametrize("seed", range(scale(3)))
def test_random_walks_match_model(host, seed):
    rnd = random.Random(seed * 7 + (host == "npt"))
    s, sp, gvas = random_system(rnd, host)
    items = []
    for _ in range(40):
        if rnd.random() < 0.1:
            op = rnd.choice(["all", "gva", "gpa", "root", "scan_clear"])
            items.append(Invalidate(op, addr=pick(rnd, gvas) if op == "gva" else
                                    rnd.randrange(16 << 20) & ~0xFFF,
                                    hroot=s.hroot if op != "gva" else None,
                                    cr3=sp.root if op == "root" and rnd.random() < 0.5
                                    else None))
            continue
        acc = rnd.choice([{}, {"write": True}, {"fetch": True}])
        items.append(WalkRequest(gva=pick(rnd, gvas), cr3=sp.root, hroot=s.hroot,
                                 user=rnd.random() < 0.5, **acc))
    cfg = WalkerConfig(host=host, tlb_entries=4, tlb_large_entries=2, pwc_entries=2)
    res = run_both(s.mem, items, cfg, latency=rnd.choice([1, 3]), stall=0.2, seed=seed,
                   resp_stall=0.3)
    check(res, s.mem, f"seed {seed}")


def test_bus_errors_and_misconfiguration():
    s, sp, w = make()
    data = [s.alloc_data() for _ in range(3)]
    for i, gpa in enumerate(data):
        sp.map(GVA + i * SIZE_4K, gpa)
    s.mem.poison(s.host.entry_addr(data[0], 1))
    s.host.write_entry(data[1], 1, s.host.read_entry(data[1], 1) | 0x2 & ~0x1)
    e = s.host.read_entry(data[1], 1)
    s.host.write_entry(data[1], 1, e & ~1)                   # W without R
    items = [WalkRequest(gva=GVA + i * SIZE_4K, cr3=sp.root, hroot=s.hroot)
             for i in range(3)]
    check(run_both(s.mem, items, WalkerConfig()), s.mem)


def test_tlb_hit_latency_is_two_cycles():
    s, sp, _ = make()
    sp.map(GVA, s.alloc_data(), A=1)
    rq = WalkRequest(gva=GVA, cr3=sp.root, hroot=s.hroot)
    warm = run_both(s.mem.copy(), [rq], WalkerConfig())
    both = run_both(s.mem.copy(), [rq, rq], WalkerConfig())
    check(both, both["model_mem"])
    # The second request costs: accept, guest TLB, nested TLB, respond.
    assert both["cycles"] - warm["cycles"] <= 4


@pytest.mark.parametrize("host", ["ept", "npt"])
def test_tlb_hit_answers_two_cycles_after_acceptance(host):
    from cosim.bench_walker import walk_cycles
    rows = {r["case"]: r for r in walk_cycles(1, host)}
    # Accepted once its guest and nested lookups are registered: host decision, respond.
    assert rows["TLB hit"]["refs"] == 0
    assert rows["TLB hit"]["cycles"] == 2


@pytest.mark.parametrize("host", ["ept", "npt"])
def test_cold_walk_costs_one_cycle_per_reference_beyond_latency(host):
    from cosim.bench_walker import walk_cycles
    fast, slow = ({r["case"]: r for r in walk_cycles(lat, host)}["cold 2D walk"]
                  for lat in (1, 7))
    refs = fast["refs"]
    assert refs == slow["refs"] and refs > 40
    # Each reference waits exactly its latency (nothing else depends on it) ...
    assert slow["cycles"] - fast["cycles"] == 6 * refs
    # ... plus one cycle (its data registered), plus a small fixed cost per translation.
    assert fast["cycles"] <= 2 * refs + 16, fast


@pytest.mark.parametrize("host", ["ept", "npt"])
def test_request_waiting_on_a_response_is_looked_up_afresh(host):
    # Each request waits on offer while the one before answers (the response is held back
    # by the consumer). The last one hits the guest TLB but not the nested TLB (its slot was
    # dropped): its nested lookup must be of its own GPA, not of the one before, which hits.
    s, sp, _ = make(host)
    data = [s.alloc_data() for _ in range(2)]
    for i, gpa in enumerate(data):
        sp.map(GVA + i * SIZE_4K, gpa)
    rq = lambda i, **kw: WalkRequest(gva=GVA + i * SIZE_4K + 8, cr3=sp.root,  # noqa: E731
                                     hroot=s.hroot, **kw)
    items = [rq(0), rq(1), Invalidate("gpa", addr=data[1]), rq(0), rq(1), rq(0), rq(1)]
    for seed in range(4):
        mem = s.mem.copy()
        res = run_both(mem, items, WalkerConfig(host=host), resp_stall=0.6, seed=seed)
        check(res, mem, f"{host} seed {seed}")
