"""The scanner on the Amaranth simulator: an AXI4 slave, the harness and the runs.

:class:`AxiSlave` serves a :class:`model.memory.PhysMem` to the design (read latency, random
ready/valid gaps, ``DECERR`` past the end of memory, the poisoned words' response on the beat
that carries them, narrow transfers answered per 8-byte word) and records the traffic by
cycle. :class:`Rig` runs passes; :func:`run_against_model` compares every pass with
:meth:`model.scanner.Scanner.scan_pass`; :func:`run_with_agent` lets an :class:`Agent` write
memory during the passes and compares with ``iter_pass`` replayed with the interleaving the
hardware saw; :func:`measure_throughput` is the benchmark helper (entries per cycle).
"""

import random
from collections import deque

from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.sim import Simulator

from hdl.axi import Burst, Resp
from hdl.scanner import STAT_NAMES, Scanner, stat_index
from model.memory import PhysMem
from model.scanner import ScanConfig, drive
from model.scanner import Scanner as ModelScanner

from .scan_replay import Agent, HookMem, Traffic, replay_schedule, tree_shape
from .scan_trees import SIZES, bench_tree, compare, freshen, hw_config, layout

__all__ = ["AxiSlave", "Rig", "run_against_model", "run_with_agent",
           "run_with_agent_anywhere", "measure_throughput"]


class AxiSlave:
    """AXI4 slave serving ``mem`` to ``axi`` (the design's ``m_axi``).

    Reads: a burst accepted in cycle ``t`` may start its data in cycle ``t + latency``; beat
    data is taken from memory when the beat is first presented. Writes are performed when
    both address and data are in, in address order; the response follows ``b_latency``
    cycles later. ``gaps`` is the probability of a low ``READY``/``VALID`` in any cycle.
    Responses per 8-byte word: ``DECERR`` at or past ``mem.size``, the poisoned response of a
    poisoned word; a beat answers the worst response of the words it carries (a narrow beat
    carries one word).
    """

    def __init__(self, mem: PhysMem, axi, lanes: int, *, latency=1, b_latency=2, gaps=0.0,
                 seed=0, snoop=None, cleared=None, cleared_gaps=0.0):
        self.mem, self.axi, self.lanes = mem, axi, lanes
        self.snoop = snoop
        self.agent = None
        self.eager = False               # raise snoop.valid on a ripe offer without ready
        self.cleared_port, self.cleared_gaps = cleared, cleared_gaps
        self.cleared = []                # (base, size) of every reported leaf
        self._driven = {}
        self.latency, self.b_latency, self.gaps = latency, b_latency, gaps
        self.rng = random.Random(seed)
        self.traffic = Traffic()
        self.reset()

    def reset(self):
        self.bursts = deque()        # [ready cycle, addr, beats, size, next beat]
        self.beat = None             # (data, resp, last, words) being presented
        self.aw = deque()            # (cycle, addr)
        self.w = deque()             # (data, strb)
        self.b = deque()             # (ready cycle, resp)
        self.pending_words = set()   # word addresses of writes with address but no data yet

    def _resp(self, words):
        worst = Resp.OKAY
        poisoned = self.mem.poisoned
        for a in words:
            r = Resp.DECERR if a >= self.mem.size else \
                {"SLVERR": Resp.SLVERR, "DECERR": Resp.DECERR}.get(poisoned.get(a), Resp.OKAY)
            if r == Resp.DECERR or (r == Resp.SLVERR and worst == Resp.OKAY):
                worst = r
        return worst

    def _make_beat(self, burst):
        _, addr, beats, size, n = burst
        nbytes = 1 << size
        beat_addr = (addr & ~(nbytes - 1)) + n * nbytes
        bus = beat_addr & ~(8 * self.lanes - 1)
        if nbytes == 8:
            words = [beat_addr]
        else:
            words = [bus + 8 * i for i in range(self.lanes)]
        resp = self._resp(words)
        data = 0
        if resp == Resp.OKAY:
            for a in words:
                data |= self.mem.read(a) << (64 * ((a - bus) // 8))
        else:
            data = self.rng.getrandbits(64 * self.lanes)
        return data, resp, n == beats - 1, words

    def perform_writes(self, cycle):
        while self.aw and self.w:
            aw_cycle, addr = self.aw.popleft()
            data, strb = self.w.popleft()
            resp = Resp.OKAY
            words = []
            for i in range(self.lanes):
                if (strb >> (8 * i)) & 0xFF:
                    assert (strb >> (8 * i)) & 0xFF == 0xFF, "partial word strobe"
                    words.append(addr + 8 * i)
            r = self._resp(words)
            if r != Resp.OKAY:
                resp = r
            else:
                for a in words:
                    self.mem.write(a, (data >> (64 * ((a - addr) // 8))) & (2**64 - 1))
            for a in words:
                self.pending_words.discard(a)
            self.traffic.writes.append((aw_cycle, words))
            self.b.append((cycle + self.b_latency, resp))

    def write_pending(self, addr):
        return (addr & ~7) in self.pending_words

    def _drive_agent(self, ctx, cycle):
        """Offer the agent's next write on ``snoop``: valid once its address has been on
        offer for a cycle, and only while ``ready`` is high (as the engine's arbiter does)
        or, ``eager``, whether or not ``ready`` is high (as a stream source may: the write
        lands with ``valid & ready``)."""
        port = self.snoop
        agent = self.agent
        agent.pending = None
        ctx.set(port.valid, 0)
        write = agent.propose(cycle, self.mem, self.traffic, self.write_pending)
        if write is None:
            return
        addr, new, action, ripe = write
        ctx.set(port.payload, {"addr": addr, "data": new})
        if not ripe:
            return
        ready = ctx.get(port.ready)
        if ready or self.eager:
            ctx.set(port.valid, 1)
        if ready:
            agent.pending = addr, new, action

    def gap(self):
        return self.gaps and self.rng.random() < self.gaps

    def _put(self, ctx, sig, value):
        """Drive ``sig`` only when its value changes (each change costs a settle)."""
        value = int(value)
        key = id(sig)
        if self._driven.get(key) != value:
            self._driven[key] = value
            ctx.set(sig, value)

    async def serve(self, ctx, cycle_ref):
        axi = self.axi
        put = self._put
        self._driven = {}
        sink = self.cleared_port
        while True:
            cycle = cycle_ref[0]
            put(ctx, axi.arready, not self.gap())
            if self.beat is None and self.bursts and self.bursts[0][0] <= cycle:
                self.beat = self._make_beat(self.bursts[0])
            if self.beat is not None and not self.gap():
                data, resp, last, _ = self.beat
                put(ctx, axi.rvalid, 1)
                put(ctx, axi.rdata, data)
                put(ctx, axi.rresp, resp)
                put(ctx, axi.rlast, last)
            else:
                put(ctx, axi.rvalid, 0)
            put(ctx, axi.awready, not self.gap())
            put(ctx, axi.wready, not self.gap())
            if self.b and self.b[0][0] <= cycle and not self.gap():
                put(ctx, axi.bvalid, 1)
                put(ctx, axi.bresp, self.b[0][1])
            else:
                put(ctx, axi.bvalid, 0)
            if sink is not None:
                put(ctx, sink.ready, not (self.cleared_gaps
                                          and self.rng.random() < self.cleared_gaps))
            if self.agent is not None:
                self._drive_agent(ctx, cycle)
            (_, rst, arv, arr, araddr, arlen, arsize, arburst, rv, rr, awv, awr, awaddr,
             awlen, awsize, wv, wr, wdata, wstrb, wlast, bv, br, snv, snr, cv, cr, cp) = \
                await ctx.tick().sample(
                    axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.arsize, axi.arburst,
                    axi.rvalid, axi.rready, axi.awvalid, axi.awready, axi.awaddr, axi.awlen,
                    axi.awsize, axi.wvalid, axi.wready, axi.wdata, axi.wstrb, axi.wlast,
                    axi.bvalid, axi.bready, self.snoop.valid, self.snoop.ready,
                    sink.valid, sink.ready, sink.payload)
            if cv and cr and not rst:
                size = SIZES[cp.level]
                for i in range(self.lanes):
                    if cp.mask >> i & 1:
                        self.cleared.append((cp.base + i * size, size))
            if rst:
                self.reset()
                cycle_ref[0] += 1
                continue
            if arv and arr:
                beats = arlen + 1
                assert arburst == Burst.INCR
                nbytes = 1 << arsize
                assert nbytes in (8, 8 * self.lanes), f"AR size {arsize}"
                start = araddr & ~(nbytes - 1)
                assert start // 4096 == (start + beats * nbytes - 1) // 4096, \
                    f"read burst {araddr:#x}+{beats} crosses 4 KiB"
                self.bursts.append([cycle + self.latency, araddr, beats, arsize, 0])
                self.traffic.ar.append((cycle, araddr, beats, arsize))
            if rv and rr:
                data, resp, last, words = self.beat
                bus = words[0] & ~(8 * self.lanes - 1)
                self.traffic.reads.append((cycle, {
                    a: (data >> (64 * ((a - bus) // 8))) & (2**64 - 1) for a in words}))
                self.beat = None
                self.bursts[0][4] += 1
                if last:
                    self.bursts.popleft()
            if awv and awr:
                assert awlen == 0 and awsize == (8 * self.lanes).bit_length() - 1
                self.aw.append((cycle, awaddr))
                for i in range(self.lanes):
                    self.pending_words.add(awaddr + 8 * i)
            if wv and wr:
                assert wlast
                self.w.append((wdata, wstrb))
            if bv and br:
                self.b.popleft()
            if snv and snr:
                self.agent.fired(cycle, self.mem)
            self.perform_writes(cycle)
            cycle_ref[0] += 1


# --- harness ------------------------------------------------------------------------------

class Rig:
    """A scanner, its memory and the processes around it on one simulator."""

    def __init__(self, mem: PhysMem, *, data_width=64, latency=1, gaps=0.0, seed=0,
                 cleared_gaps=0.0, **params):
        self.dut = Scanner(data_width=data_width, checks=True, **params)
        self.lanes = data_width // 64
        self.mem = mem
        m = Module()
        m.domains.sync = self.cd = ClockDomain()
        m.submodules.dut = self.dut
        self.timer = Signal(32)                  # cycles since the start (simulation only)
        m.d.sync += self.timer.eq(self.timer + 1)
        self.sim = Simulator(m)
        self.sim.add_clock(1e-8)
        self.cycle = [0]
        self.slave = AxiSlave(mem, self.dut.m_axi, self.lanes, latency=latency, gaps=gaps,
                              seed=seed, snoop=self.dut.snoop, cleared=self.dut.cleared,
                              cleared_gaps=cleared_gaps)
        self.sim.add_testbench(self._serve, background=True)

    @property
    def cleared(self):
        """Leaves reported on ``cleared``, as ``(base, size)``, since the last clear."""
        return self.slave.cleared

    async def _serve(self, ctx):
        await self.slave.serve(ctx, self.cycle)

    async def run_pass(self, ctx, cfg: ScanConfig, root: int, pass_index=None,
                       max_cycles=200_000):
        """Start a pass and wait for its end; returns the statistics as a dict."""
        dut = self.dut
        ctx.set(dut.config, hw_config(cfg))
        ctx.set(dut.start.payload, {"root": root, "pass_index": pass_index or 0,
                                    "set_index": int(pass_index is not None)})
        ctx.set(dut.start.valid, 1)
        await ctx.tick().until(dut.start.ready)
        ctx.set(dut.start.valid, 0)
        deadline = ctx.get(self.timer) + max_cycles
        await ctx.tick().until(dut.done.valid | (self.timer >= deadline))
        assert ctx.get(dut.done.valid), f"pass does not end within {max_cycles} cycles"
        payload = ctx.get(dut.done.payload)
        stats = {"pass_index": int(payload.pass_index), "candidates": int(payload.candidates)}
        where = stat_index(dut.max_levels)
        values = []
        for addr in range(len(STAT_NAMES) + 2 * dut.max_levels):
            ctx.set(dut.stats_addr, addr)
            await ctx.tick()
            values.append(ctx.get(dut.stats_data))
        for name in STAT_NAMES:
            stats[name] = values[where[name]]
        for name in ("histogram", "long_histogram"):
            stats[name] = values[where[name]:where[name] + dut.max_levels]
        cands = []
        for i in range(stats["candidates"]):
            ctx.set(dut.cand_addr, i)
            await ctx.tick()
            c = ctx.get(dut.cand_data)
            cands.append((int(c.region), int(c.entry_addr), int(c.value)))
        stats["cand_list"] = cands
        stats["coverage"] = {name: ctx.get(sig) for name, sig in dut.coverage.items()}
        ctx.set(dut.done.ready, 1)
        await ctx.tick()
        ctx.set(dut.done.ready, 0)
        return stats

    def run(self, bench):
        self.sim.add_testbench(bench)
        self.sim.run()


def run_against_model(tree, cfg, *, seed, passes=2, first=0, data_width=64, latency=1,
                      gaps=0.0, cleared_gaps=0.0, p_set=0.5, set_index=True, **params):
    """Passes on the RTL and on the model; everything compared after every pass."""
    rig = Rig(tree.mem, data_width=data_width, latency=latency, gaps=gaps, seed=seed,
              cleared_gaps=cleared_gaps, **params)
    model = ModelScanner(cfg, pass_index=first)
    rng = random.Random(seed ^ 0x77)
    results = []

    async def bench(ctx):
        for p in range(first, first + passes):
            ctx_msg = f"seed={seed} fmt={tree.fmt} width={data_width} pass={p}"
            ref_mem = tree.mem.copy()
            rig.cleared.clear()
            hw = await rig.run_pass(ctx, cfg, tree.root, p if set_index or p == first else None)
            ref = model.scan_pass(ref_mem, tree.root)
            diff = tree.mem.diff(ref_mem)
            assert not diff, f"{ctx_msg}: memory differs (addr, rtl, model): " \
                             f"{[(hex(a), hex(x), hex(y)) for a, x, y in diff[:4]]}"
            compare(hw, ref, cfg, rig.cleared, ctx_msg, rig.dut.top_k_max)
            results.append((hw, ref))
            freshen(rng, tree, p_set)

    rig.run(bench)
    return results


def run_with_agent(tree, cfg, *, seed, data_width=64, latency=1, gaps=0.0, rate=0.05,
                   generic=True, passes=1, eager=False, **params):
    """Passes with the agent on the RTL; each against ``iter_pass`` replayed with the
    interleaving the RTL saw (``eager``: the agent's ``valid`` does not wait for ``ready``).
    Returns the per-pass (hw, model stats, kinds, agent log)."""
    rig = Rig(tree.mem, data_width=data_width, latency=latency, gaps=gaps, seed=seed,
              **params)
    agent = Agent(tree, seed, rate=rate, generic=generic, pa_bits=cfg.pa_bits)
    rig.slave.agent = agent
    rig.slave.eager = eager
    out = []

    async def bench(ctx):
        for p in range(passes):
            msg = f"seed={seed} fmt={tree.fmt} width={data_width} pass={p}"
            before = tree.mem.copy()
            rig.cleared.clear()
            rig.slave.traffic = Traffic()
            agent.log = []
            hw = await rig.run_pass(ctx, cfg, tree.root, p)
            hooks, end, kinds = replay_schedule(rig.slave.traffic, agent.log)
            ref_mem = HookMem.of(before, hooks, agent.apply)
            ref = drive(ModelScanner(cfg, pass_index=p).iter_pass(ref_mem, tree.root))
            for s, addr, action in sorted(ref_mem.leftovers() + end):
                PhysMem.write(ref_mem, addr, agent.apply(action, PhysMem.read(ref_mem, addr)))
            diff = tree.mem.diff(ref_mem)
            assert not diff, f"{msg}: memory differs (addr, rtl, model): " \
                             f"{[(hex(a), hex(x), hex(y)) for a, x, y in diff[:4]]}"
            compare(hw, ref, cfg, rig.cleared, msg, rig.dut.top_k_max)
            out.append((hw, ref, kinds, list(agent.log), rig.slave.traffic))

    rig.run(bench)
    return out


def run_with_agent_anywhere(tree, cfg, *, seed, data_width=64, latency=1, gaps=0.0,
                            rate=0.05, upper=False, **params):
    """One pass with the agent writing every word of the tree, those of tables walked more
    than once included, where :func:`replay_schedule` cannot place its writes. What holds
    whatever the interleaving is checked against the model's pass without the agent:

    * the pass ends, having read as many entries and tables;
    * every word the agent did not write ends as the model leaves it (but for a level-2
      parent's engine-owned bits: its ``LPCOUNT`` counts A bits the agent set);
    * in a word the agent wrote, every bit but A and the engine-owned ones is what the
      agent's writes left (D, the frame, an unmapped word's zero);
    * an A bit the agent set in its last write of a word, after the scanner's last write of
      that word, is still set.

    Returns (hw, model stats, agent log, pages walked more than once)."""
    revisited, parents = tree_shape(tree, cfg.pa_bits)
    rig = Rig(tree.mem, data_width=data_width, latency=latency, gaps=gaps, seed=seed,
              **params)
    agent = Agent(tree, seed, rate=rate, revisited=True, pa_bits=cfg.pa_bits, upper=upper)
    rig.slave.agent = agent
    lay = layout(tree.fmt)
    out = []

    async def bench(ctx):
        msg = f"seed={seed} fmt={tree.fmt} width={data_width}"
        before = tree.mem.copy()
        rig.slave.traffic = Traffic()
        agent.log = []
        hw = await rig.run_pass(ctx, cfg, tree.root, 0)
        ref_mem = before.copy()
        ref = ModelScanner(cfg, pass_index=0).scan_pass(ref_mem, tree.root)
        assert (hw["entries_read"], hw["tables_read"]) == (ref.entries_read, ref.tables_read), \
            f"{msg}: the walk differs: hw {hw['entries_read']} entries, " \
            f"{hw['tables_read']} tables; model {ref.entries_read}, {ref.tables_read}"
        acts = {}
        for _, addr, action in agent.log:
            acts.setdefault(addr, []).append(action)
        wrong = [(hex(a), hex(x), hex(y)) for a, x, y in tree.mem.diff(ref_mem)
                 if a not in acts and (a not in parents or (x ^ y) & ~lay.SW.mask)]
        assert not wrong, f"{msg}: words the agent never wrote differ (addr, rtl, model): " \
                          f"{wrong[:4]}"
        # The scanner changes only A and the engine-owned bits of a word, so every other
        # bit is what the agent's writes, in order, left in it.
        keep = ~(lay.A.mask | lay.SW.mask) & ((1 << 64) - 1)
        for addr, actions in acts.items():
            want = before.read(addr)
            for action in actions:
                want = agent.apply(action, want)
            got = tree.mem.read(addr)
            assert (got ^ want) & keep == 0, \
                f"{msg}: the agent's bits lost at {addr:#x}: {got:#x}, agent left {want:#x}"
        # Only a write of the scanner clears A.
        last_write = {}
        for cycle, words in rig.slave.traffic.writes:
            for a in words:
                last_write[a] = cycle
        last_act = {addr: (cycle, action) for cycle, addr, action in agent.log}
        late_a = 0
        for addr, (cycle, (kind, arg)) in last_act.items():
            if kind == "or" and arg & lay.A.mask and cycle > last_write.get(addr, -1):
                assert tree.mem.read(addr) & lay.A.mask, f"{msg}: late A cleared at {addr:#x}"
                late_a += 1
        assert late_a, f"{msg}: no A bit set after the scanner's last write to check"
        out.append((hw, ref, list(agent.log), revisited))

    rig.run(bench)
    return out[0]


def measure_throughput(*, data_width=64, latency=1, changing=0.5, tables=4, fmt="ept",
                       **params) -> dict:
    """Entries per cycle of one pass over :func:`bench_tree` (no backpressure; the memory
    accepts a request and a beat per cycle and answers after ``latency`` cycles).

    The pass is also checked against the model. Returns a dict: ``cycles`` and
    ``entries_read`` of the pass and their ratio ``entries_per_cycle``; ``leaf_cycles``, the
    cycles from the first leaf-table beat to the last leaf-table write (or beat) accepted,
    and ``leaf_entries_per_cycle`` (leaf-table entries over those cycles); ``writes``.
    """
    tree = bench_tree(fmt, tables=tables, changing=changing)
    cfg = ScanConfig(fmt=fmt, report_cleared=True)
    rig = Rig(tree.mem, data_width=data_width, latency=latency, **params)
    pages = {table >> 12 for table, _ in tree.leaf_tables}
    out = {}

    async def bench(ctx):
        ref_mem = tree.mem.copy()
        hw = await rig.run_pass(ctx, cfg, tree.root, 0)
        ref = ModelScanner(cfg).scan_pass(ref_mem, tree.root)
        assert not tree.mem.diff(ref_mem), "benchmark pass differs from the model"
        compare(hw, ref, cfg, rig.cleared, f"benchmark width={data_width}")
        tr = rig.slave.traffic
        leaf_reads = [c for c, words in tr.reads if next(iter(words)) >> 12 in pages]
        leaf_writes = [c for c, words in tr.writes if words and words[0] >> 12 in pages]
        first = min(leaf_reads)
        last = max(leaf_reads + leaf_writes)
        out.update(cycles=hw["cycles"], entries_read=hw["entries_read"], writes=hw["writes"],
                   entries_per_cycle=hw["entries_read"] / hw["cycles"],
                   leaf_cycles=last - first + 1,
                   leaf_entries_per_cycle=512 * tables / (last - first + 1))

    rig.run(bench)
    return out
