"""Cycle counts of the hardware prefetcher: from a fault taken to its first GPA out.

Runs :class:`hdl.prefetcher.Prefetcher` on the Amaranth simulator against a memory of fixed
read latency (no stalls, ``grant`` always high) for a fault whose nearest neighbour is
non-resident, 4 KiB pages in both dimensions, window 8 on both sides. Reported next to the
memory references the model makes before that GPA can be known (the cold guest walk, the
leaf table's host walk, the window burst and the neighbour's host walk), and the lower
bound ``single reads x latency + burst beats``. Cycle counts do not depend on the machine,
so the figures are exact and repeatable.
"""

from amaranth.sim import Simulator

from cosim.simmem import SimAxiMemory
from cosim.tb_prefetcher import encode_request
from hdl.prefetcher import PREFETCH_RESP, Prefetcher as HwPrefetcher
from model.pagetable import SIZE_4K
from model.prefetcher import DIRECTIONS, Prefetcher, PrefetchRequest, window_span
from model.system import GuestSystem

__all__ = ["first_gpa_cycles", "bench_prefetcher"]

GVA = 0x7F12_3450_0000 + 100 * SIZE_4K
WINDOW = 8


def first_gpa_cycles(latency: int, host: str = "ept") -> dict:
    """Cycles from the request's handshake to the handshake of its first GPA record."""
    s = GuestSystem(guest_ram=16 << 20, host=host, shuffle=3)
    sp = s.new_space()
    base = GVA - 100 * SIZE_4K
    gpas = {}
    for i in range(512):
        gpas[i] = s.alloc_data()
        sp.map(base + i * SIZE_4K, gpas[i])
    s.host.unmap(gpas[101])                       # the nearest neighbour is swapped out
    req = PrefetchRequest(GVA, sp.root, s.hroot)
    model = Prefetcher(s.mem.copy(), window=WINDOW, direction="both", host=host)
    result = model.prefetch(req)
    assert result.gpas[:1] == (gpas[101],), result
    lo, hi = window_span(100, WINDOW, "both")
    beats = hi - lo + 1
    # Single reads before the first GPA is known: the guest walk (three guest entries, each
    # after a four-read host walk), the leaf table's host walk, the neighbour's host walk.
    singles = 3 * (4 + 1) + 4 + 4
    burst = model.log[singles - 4:singles - 4 + beats]
    assert burst == [burst[0] + 8 * k for k in range(beats)], "window burst not where expected"

    dut = HwPrefetcher(host=host)
    slave = SimAxiMemory(dut.m_axi, s.mem, latency=latency)
    out = {}

    async def bench(ctx):
        ctx.set(dut.grant, 1)
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.window, WINDOW)
        ctx.set(dut.direction, DIRECTIONS.index("both"))
        ctx.set(dut.req.payload.as_value(), encode_request(req))
        ctx.set(dut.req.valid, 1)
        start = None
        for n in range(20_000):
            slave.outputs(ctx)
            if start is None and ctx.get(dut.req.ready):
                start = n
            if ctx.get(dut.resp.valid):
                word = ctx.get(dut.resp.payload.as_value())
                if not PREFETCH_RESP.DONE.get(word):
                    out["cycles"] = n - start
                    out["gpa"] = PREFETCH_RESP.PAGE.get(word) << 12
                    return
            slave.sample(ctx)
            await ctx.tick()
            if start is not None:
                ctx.set(dut.req.valid, 0)
        raise RuntimeError("no GPA record")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert out["gpa"] == gpas[101]
    return {"latency": latency, "host": host, "cycles": out["cycles"], "single_reads": singles,
            "burst_beats": beats, "overhead_per_read": round((out["cycles"] - singles * latency
                                                             - beats) / singles, 2), "lower_bound": singles * latency + beats}


def bench_prefetcher(latencies=(1, 10, 30)) -> dict:
    """``{"prefetch_first_gpa": [row per latency]}`` (see :func:`first_gpa_cycles`)."""
    return {"prefetch_first_gpa": [first_gpa_cycles(lat) for lat in latencies]}


if __name__ == "__main__":
    for row in bench_prefetcher()["prefetch_first_gpa"]:
        print(row)
