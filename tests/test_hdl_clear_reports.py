# amaranth: UnusedElaboratable=no
"""The engine's cleared-report path (hdl/clear_reports.py) on the Amaranth simulator.

A scanner-like source sends write addresses while ``room`` allows (or, for the overflow
tests, regardless), its writes are answered in order after random latencies, and every answer
brings a report with a random mask; a walker-like sink takes commands under random
backpressure. Every command is checked against the reports: one ``scan_clear`` per leaf, in
order; with the gate honoured no report is ever lost; a lost report is replaced by one
``root`` command once the queue is empty.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hdl.clear_reports import ClearReports
from hdl.prioritizer import VA_BITS
from thermocline.layouts import INV_OPS

SCAN_CLEAR, ROOT = INV_OPS.index("scan_clear"), INV_OPS.index("root")
SHIFT = {1: 12, 2: 21, 3: 30}


def run(lanes, depth, seed, *, writes=150, honour=True, p_send=0.7, p_take=0.4,
        max_latency=12):
    """Returns (commands taken, expected clears of every report in order, reports lost per
    report index, whether ``lost`` was seen high, cycles the gate was closed)."""
    dut = ClearReports(lanes=lanes, depth=depth)
    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.dut = dut
    rng = random.Random(seed)
    hroot = rng.randrange(1 << 52) & ~0xFFF
    out = {"commands": [], "reports": [], "lost_seen": False, "closed": 0, "dropped": []}

    async def bench(ctx):
        ctx.set(dut.hroot, hroot)
        owed = []                            # answer cycles of the writes sent, in order
        sent = 0
        cycle = 0
        while sent < writes or owed or not ctx.get(dut.quiet):
            assert cycle < 100 * writes, "commands stopped"
            room = ctx.get(dut.room)
            out["closed"] += not room
            send = sent < writes and (room or not honour) and rng.random() < p_send
            ctx.set(dut.write_sent, send)
            if send:
                answer = max(owed[-1] + 1 if owed else 0, cycle + rng.randint(1, max_latency))
                owed.append(answer)
                sent += 1
            done = bool(owed) and owed[0] <= cycle
            ctx.set(dut.write_done, done)
            ctx.set(dut.report.valid, done)
            if done:
                owed.pop(0)
                level = rng.choice([1, 1, 2, 3])
                mask = rng.randrange(1 << lanes) if rng.random() < 0.9 else 0
                base = rng.randrange(1 << 36) << SHIFT[level]
                base &= (1 << VA_BITS) - 1
                ctx.set(dut.report.payload.base, base)
                ctx.set(dut.report.payload.level, level)
                ctx.set(dut.report.payload.mask, mask)
                assert ctx.get(dut.report.ready)
                clears = [(SCAN_CLEAR, level - 1, base + (i << SHIFT[level]), hroot)
                          for i in range(lanes) if mask >> i & 1]
                out["reports"].append(clears)
            take = rng.random() < p_take
            ctx.set(dut.inv.ready, take)
            if take and ctx.get(dut.inv.valid):
                assert ctx.get(dut.inv.payload.MATCH_HROOT) == 1
                out["commands"].append((ctx.get(dut.inv.payload.OP),
                                        ctx.get(dut.inv.payload.SIZE),
                                        ctx.get(dut.inv.payload.ADDR),
                                        ctx.get(dut.inv.payload.HROOT)))
            await ctx.tick()
            out["lost_seen"] |= bool(ctx.get(dut.lost))
            cycle += 1
        ctx.set(dut.write_sent, 0)
        ctx.set(dut.write_done, 0)
        ctx.set(dut.report.valid, 0)
        assert ctx.get(dut.quiet) and not ctx.get(dut.lost) and not ctx.get(dut.inv.valid)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("lanes,depth,seed", [(1, 3, 1), (2, 3, 2), (4, 3, 3), (4, 8, 4),
                                              (1, 16, 5)])
def test_gate_keeps_every_report(lanes, depth, seed):
    """With writes sent only while ``room`` is high, no report is lost, and every leaf of
    every report becomes one ``scan_clear`` command, in order."""
    out = run(lanes, depth, seed)
    expected = [c for clears in out["reports"] for c in clears]
    assert not out["lost_seen"], f"seed={seed}: a report was lost with the gate honoured"
    assert out["commands"] == expected, f"seed={seed}: commands differ from the reports"
    assert out["closed"] > 0, f"seed={seed}: the gate never closed"


@pytest.mark.parametrize("lanes,depth,seed", [(1, 3, 11), (4, 4, 12)])
def test_lost_report_becomes_one_root_flush(lanes, depth, seed):
    """Writes sent regardless of ``room`` and a slow walker: reports are lost; the walker
    gets the kept reports' clears in order and, once the queue is empty, one ``root``
    command for the host root, after which nothing is owed."""
    out = run(lanes, depth, seed, honour=False, p_send=0.9, p_take=0.15)
    assert out["lost_seen"], f"seed={seed}: no report was lost"
    expected = [c for clears in out["reports"] for c in clears]
    flushes = [i for i, c in enumerate(out["commands"]) if c[0] == ROOT]
    assert flushes, "no root command after a lost report"
    hroot = out["commands"][flushes[0]][3]
    assert all(out["commands"][i] == (ROOT, 0, 0, hroot) for i in flushes)
    clears = [c for c in out["commands"] if c[0] != ROOT]
    # The clears that came are the expected ones in order, some missing (lost) ...
    kept, k = [], 0
    for c in clears:
        while k < len(expected) and expected[k] != c:
            k += 1
        assert k < len(expected), f"seed={seed}: clear {c} out of order or unknown"
        kept.append(k)
        k += 1
    lost = sorted(set(range(len(expected))) - set(kept))
    assert lost, f"seed={seed}: reports lost but every clear arrived"
    # ... and the last flush comes after every clear that preceded the last lost one.
    before_last_lost = sum(1 for k in kept if k < lost[-1])
    clears_before_flush = sum(1 for c in out["commands"][:flushes[-1]] if c[0] != ROOT)
    assert clears_before_flush >= before_last_lost, \
        f"seed={seed}: the last lost report has no flush after it"


def test_parameters_are_checked():
    for kw in ({"lanes": 3}, {"depth": 2}, {"depth": 513}):
        with pytest.raises(ValueError):
            ClearReports(**kw)
