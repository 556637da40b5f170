"""Cycle counts of the hardware walker, next to their lower bounds.

Runs the walker on the Amaranth simulator against a memory of fixed read latency (no
stalls) and counts the cycles from a request's acceptance to its response for

* a cold 2D walk (every cache empty, 4 KiB pages in both dimensions, A/D to set),
* a warm walk of the neighbouring page (paging-structure caches and nested TLB hit),
* a TLB hit (the same page again),

each next to its lower bound, ``memory references x latency``, and also counted from the
first cycle the request is offered (``cycles_from_offer``: the acceptance itself waits for
the request's lookups). Cycle counts do not depend on the machine, so these figures are exact
and repeatable.
"""

from amaranth.sim import Simulator

from cosim.simmem import SimAxiMemory
from cosim.walk_codec import encode_request
from hdl.walker import Walker as HwWalker
from model.pagetable import SIZE_4K
from model.system import GuestSystem
from model.walker import Walker, WalkerConfig, WalkRequest

__all__ = ["walk_cycles", "bench_walker", "cosim_speed"]

GVA = 0x7F12_3456_7000


def walk_cycles(latency: int, host: str = "ept") -> list[dict]:
    """Cycles and memory references of a cold walk, a warm walk and a TLB hit."""
    s = GuestSystem(guest_ram=16 << 20, host=host, shuffle=3)
    sp = s.new_space()
    for i in range(2):
        sp.map(GVA + i * SIZE_4K, s.alloc_data())
    reqs = [("cold 2D walk", WalkRequest(gva=GVA, cr3=sp.root, hroot=s.hroot)),
            ("walk-cache hits", WalkRequest(gva=GVA + SIZE_4K, cr3=sp.root, hroot=s.hroot)),
            ("TLB hit", WalkRequest(gva=GVA + SIZE_4K + 8, cr3=sp.root, hroot=s.hroot))]
    model = Walker(s.mem.copy(), WalkerConfig(host=host))
    refs = []
    for _, rq in reqs:
        model.translate(rq)
        refs.append(len(model.log))

    dut = HwWalker(host=host)
    slave = SimAxiMemory(dut.m_axi, s.mem, latency=latency)
    cycles = []

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        for _ in range(64):                       # the cache sweep after reset
            slave.outputs(ctx)
            slave.sample(ctx)
            await ctx.tick()
        for _, rq in reqs:
            ctx.set(dut.req.payload.as_value(), encode_request(rq))
            ctx.set(dut.req.valid, 1)
            start = None
            for n in range(10_000):
                slave.outputs(ctx)
                if start is None and ctx.get(dut.req.ready):
                    start = n
                    accepted = True
                else:
                    accepted = False
                done = ctx.get(dut.resp.valid)
                slave.sample(ctx)
                await ctx.tick()
                if accepted:
                    ctx.set(dut.req.valid, 0)
                if done:
                    cycles.append((n - start, n))
                    break
            else:
                raise RuntimeError(f"no response to {rq}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    out = []
    for (name, _), n, (c, offer) in zip(reqs, refs, cycles):
        bound = n * latency
        out.append({"case": name, "latency": latency, "refs": n, "cycles": c,
                    "cycles_from_offer": offer, "lower_bound": bound,
                    "overhead_per_ref": (c - bound) / n if n else None})
    return out


def bench_walker(latencies=(1, 10, 30)) -> dict:
    return {"walker_cycles": [row for lat in latencies for row in walk_cycles(lat)]}


def cosim_speed(seed: int = 1) -> dict:
    """Simulated cycles per second of the walker's co-simulation (Verilator + cocotb, every
    response checked against the model), from one run of its random-walk test."""
    from cosim.runner import build
    sim = build("walker", lambda **p: HwWalker(**p),
                dict(host="ept", pa_bits=46, tlb_entries=8, tlb_large_entries=2,
                     pwc_entries=4))
    result = sim.run("cosim.tb_walker", testcase=r"\.random_walks/latency=1$", seed=seed)
    speeds = result.metrics.get("cycles_per_second")
    responses = result.metrics.get("responses")
    speed = max(speeds) if isinstance(speeds, list) else speeds
    return {"cycles_per_second": speed, "responses": responses, "seed": result.seed}
