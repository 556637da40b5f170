"""Co-simulation of :class:`hdl.scanner.Scanner` against :class:`model.scanner.Scanner`.

Started from ``tests/test_cosim_scanner.py`` through :mod:`cosim.runner`; the scanner's
parameters (its constructor keywords) and the seed come from the environment.

Pieces:

* :class:`~cosim.axi_mem.AxiMem`: the memory, with latency, backpressure and error responses
  (poisoned words answer on the beat that carries them, so an error can sit on any beat of
  a burst);
* :class:`~cosim.stream.StreamDriver` for ``start``, a :class:`~cosim.stream.StreamMonitor`
  for ``cleared`` (with backpressure); ``done`` and the statistics are read by :meth:`TB.run_pass`;
* :class:`BusMonitor`: what the scanner did on the bus, by cycle (read beats, writes, writes
  still owed a response), for the replay of another agent's writes;
* :class:`~cosim.scan_replay.Agent` on ``snoop`` (optional): a walker-like agent writing
  words while the pass runs;
* :class:`TB` wires them; after every pass the full memory image, every statistic, the
  candidate list and the cleared-leaf reports are compared with the model.

Every failure names the seed; ``THERMOCLINE_SEED=<seed>`` reproduces the run.
"""

import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from cosim.axi_mem import AxiMem
from cosim.runner import record_metric, scale, sim_params, sim_seed
from cosim.scan_replay import Agent, HookMem, Traffic, replay_schedule
from cosim.scan_trees import SIZES, Tree, compare, hw_config, layout, random_config, random_tree
from cosim.stream import Codec, StreamDriver, StreamMonitor, Ticker
from hdl.scanner import CONFIG_LAYOUT, STAT_NAMES, cleared_layout, snoop_layout, start_layout, \
    stat_index
from hdl.prioritizer import candidate_layout
from model.memory import PhysMem
from model.scanner import ScanConfig, drive
from model.scanner import Scanner as ModelScanner
from model.system import random_system
from model.walker import Walker, WalkerConfig, WalkRequest
from model.pagetable import SIZE_2M, SIZE_4K

CLOCK_NS = 10
WORD = (1 << 64) - 1



class WordView:
    """:class:`AxiMem` seen as 64-bit words (``read``/``write``/``poisoned``), for the agent."""

    def __init__(self, mem: AxiMem):
        self.read, self.write = mem.read_word, mem.write_word
        self._mem = mem

    @property
    def poisoned(self):
        return self._mem.failed_words


class BusMonitor:
    """Samples the scanner's AXI port every cycle: read beats (with the words they carried),
    writes (with the words they wrote), and writes whose response is still owed."""

    def __init__(self, dut, ticker: Ticker, lanes: int):
        self.dut, self.ticker, self.lanes = dut, ticker, lanes
        self.traffic = Traffic()
        s = {n: getattr(dut, f"m_axi__{n}") for n in (
            "arvalid", "arready", "araddr", "arlen", "arsize", "rvalid", "rready", "rdata",
            "rlast", "awvalid", "awready", "awaddr", "wvalid", "wready", "wstrb", "bvalid",
            "bready")}
        self.s = s
        self.reset()
        ticker.sample.append(self._sample)

    def reset(self):
        self.bursts = []          # [addr, beats, size, next beat]
        self.aw = []              # (cycle, addr)
        self.w = []               # strobes
        self.owed = []            # word lists of writes awaiting their response
        self.pending = set()

    def write_pending(self, addr: int) -> bool:
        return (addr & ~7) in self.pending

    def _sample(self):
        s, cycle, lanes = self.s, self.ticker.cycle, self.lanes
        if self.dut.rst.value == 1:
            self.reset()
            return
        if s["arvalid"].value == 1 and s["arready"].value == 1:
            addr, beats = int(s["araddr"].value), int(s["arlen"].value) + 1
            size = int(s["arsize"].value)
            self.bursts.append([addr, beats, size, 0])
            self.traffic.ar.append((cycle, addr, beats, size))
        if s["rvalid"].value == 1 and s["rready"].value == 1 and self.bursts:
            b = self.bursts[0]
            nbytes = 1 << b[2]
            beat = (b[0] & ~(nbytes - 1)) + b[3] * nbytes
            bus = beat & ~(8 * lanes - 1)
            words = [beat] if nbytes == 8 else [bus + 8 * i for i in range(lanes)]
            data = int(s["rdata"].value)
            self.traffic.reads.append((cycle, {
                a: (data >> (64 * ((a - bus) // 8))) & WORD for a in words}))
            b[3] += 1
            if b[3] == b[1]:
                self.bursts.pop(0)
        if s["awvalid"].value == 1 and s["awready"].value == 1:
            addr = int(s["awaddr"].value)
            self.aw.append((cycle, addr))
            words = [addr + 8 * i for i in range(lanes)]
            self.owed.append(words)
            self.pending.update(words)
        if s["wvalid"].value == 1 and s["wready"].value == 1:
            self.w.append(int(s["wstrb"].value))
        while self.aw and self.w:
            c, addr = self.aw.pop(0)
            strb = self.w.pop(0)
            self.traffic.writes.append(
                (c, [addr + 8 * i for i in range(lanes) if (strb >> (8 * i)) & 0xFF]))
        if s["bvalid"].value == 1 and s["bready"].value == 1 and self.owed:
            self.pending.difference_update(self.owed.pop(0))


class SnoopDriver:
    """Drives ``snoop`` from an :class:`Agent`: shows a write's address a cycle before it
    may land, makes it valid only while ``ready`` is high, and performs it in memory in the
    cycle of the transfer."""

    def __init__(self, dut, ticker: Ticker, monitor: BusMonitor, mem: WordView,
                 pa_bits: int):
        self.dut, self.ticker, self.monitor, self.mem = dut, ticker, monitor, mem
        self.codec = Codec(snoop_layout(pa_bits))
        self.agent: Agent | None = None
        self._valid = False
        dut.snoop__valid.value = 0
        ticker.edge.append(self._edge)
        ticker.sample.append(self._sample)

    def _edge(self):
        agent = self.agent
        if agent is None or self.dut.rst.value == 1:
            if self._valid:
                self.dut.snoop__valid.value = 0
                self._valid = False
            return
        agent.pending = None
        write = agent.propose(self.ticker.cycle, self.mem, self.monitor.traffic,
                              self.monitor.write_pending)
        valid = False
        if write is not None:
            addr, new, action, ripe = write
            self.dut.snoop__payload.value = self.codec.pack(addr=addr, data=new)
            valid = ripe and self.dut.snoop__ready.value == 1
            if valid:
                agent.pending = addr, new, action
        if valid != self._valid:
            self.dut.snoop__valid.value = int(valid)
            self._valid = valid

    def _sample(self):
        if (self._valid and self.agent is not None and self.agent.pending is not None
                and self.dut.snoop__ready.value == 1 and self.dut.rst.value == 0):
            self.agent.fired(self.ticker.cycle, self.mem)


class TB:
    """The scanner, its memory and the pieces around it for one cocotb test."""

    def __init__(self, dut, name: str, *, size: int, latency: int = 1,
                 backpressure: float = 0.25):
        self.dut = dut
        self.name = name
        self.seed = sim_seed()
        self.rng = random.Random(f"{self.seed}:{name}")
        self.params = dict(sim_params())
        self.lanes = self.params.get("data_width", 64) // 64
        self.pa_bits = self.params.get("pa_bits", 52)
        self.max_levels = self.params.get("max_levels", 8)
        self.top_k_max = self.params.get("top_k_max", 8)
        self.log = dut._log
        self.log.info("%s: seed %d, params %s, latency %d", name, self.seed, self.params,
                      latency)
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 0
        dut.done__ready.value = 0
        dut.stats_addr.value = 0
        dut.cand_addr.value = 0
        self.mem = AxiMem(dut, dut.clk, dut.rst, size=size, latency=latency,
                          seed=self.rng.getrandbits(32))
        self.mem.set_backpressure(ar=backpressure, r=backpressure, aw=backpressure,
                                  w=backpressure, b=backpressure)
        self.words = WordView(self.mem)
        self.ticker = Ticker(dut.clk)
        start = Codec(start_layout(self.pa_bits))
        self.start = StreamDriver(dut, "start", self.ticker, lambda v: start.pack(**v))
        self.cleared: list[tuple[int, int]] = []
        cleared = Codec(cleared_layout(self.lanes))
        self.cleared_mon = StreamMonitor(dut, "cleared", self.ticker,
                                         rng=random.Random(self.rng.getrandbits(64)),
                                         stall=backpressure)
        self.cleared_mon.on_item.append(lambda w, c: self._cleared(cleared.unpack(w)))
        self.bus = BusMonitor(dut, self.ticker, self.lanes)
        self.snoop = SnoopDriver(dut, self.ticker, self.bus, self.words, self.pa_bits)
        self.passes = 0
        self.cycles = 0
        self._wall = time.perf_counter()

    def _cleared(self, item):
        size = SIZES[item["level"]]
        for i in range(self.lanes):
            if item["mask"] >> i & 1:
                self.cleared.append((item["base"] + i * size, size))

    def load(self, image: PhysMem):
        self.mem.clear()
        self.mem.load(image)

    async def reset(self, cycles: int = 4):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 1)

    async def start_pass(self, cfg: ScanConfig, root: int, pass_index: int | None = None):
        """Set the configuration and start a pass (returns once ``start`` is accepted)."""
        self.cleared.clear()
        self.bus.traffic = Traffic()
        self.dut.config.value = Codec(CONFIG_LAYOUT).pack(**hw_config(cfg))
        self.start.send({"root": root, "pass_index": pass_index or 0,
                         "set_index": int(pass_index is not None)})
        while self.start.pending:
            await RisingEdge(self.dut.clk)

    async def finish_pass(self, max_cycles: int = 400_000) -> dict:
        """Wait for ``done``; read the statistics and candidates, then take ``done``."""
        dut = self.dut
        t0 = get_sim_time("ns")
        for waited in range(max_cycles):
            await ReadOnly()
            if dut.done__valid.value == 1:
                break
            await RisingEdge(dut.clk)
        else:
            raise AssertionError(f"[seed {self.seed}] {self.name}: pass does not end within "
                                 f"{max_cycles} cycles")
        self.cycles += (get_sim_time("ns") - t0) / CLOCK_NS
        payload = dut.done__payload.value.to_unsigned()
        stats = {"pass_index": payload & 0xFFFF_FFFF, "candidates": payload >> 32}
        where = stat_index(self.max_levels)
        values = []
        for addr in range(len(STAT_NAMES) + 2 * self.max_levels):
            await RisingEdge(dut.clk)
            dut.stats_addr.value = addr
            await RisingEdge(dut.clk)
            await ReadOnly()
            values.append(dut.stats_data.value.to_unsigned())
        for name in STAT_NAMES:
            stats[name] = values[where[name]]
        for name in ("histogram", "long_histogram"):
            stats[name] = values[where[name]:where[name] + self.max_levels]
        cand = Codec(candidate_layout(self.pa_bits))
        stats["cand_list"] = []
        for i in range(stats["candidates"]):
            await RisingEdge(dut.clk)
            dut.cand_addr.value = i
            await RisingEdge(dut.clk)
            await ReadOnly()
            c = cand.unpack(dut.cand_data.value.to_unsigned())
            stats["cand_list"].append((c["region"], c["entry_addr"], c["value"]))
        await RisingEdge(dut.clk)
        dut.done__ready.value = 1
        await RisingEdge(dut.clk)
        dut.done__ready.value = 0
        # Let the last cleared reports out (they follow their writes' responses).
        await ClockCycles(dut.clk, 8)
        self.passes += 1
        return stats

    async def run_pass(self, cfg, root, pass_index=None) -> dict:
        await self.start_pass(cfg, root, pass_index)
        return await self.finish_pass()

    def check_image(self, ref: PhysMem, context: str):
        diff = self.mem.dump().diff(ref, limit=8)
        assert not diff, (f"[seed {self.seed}] {context}: memory differs (addr, rtl, model): "
                          f"{[(hex(a), hex(x), hex(y)) for a, x, y in diff]}")

    def report(self):
        wall = time.perf_counter() - self._wall
        rate = self.cycles / wall if wall else 0.0
        self.log.info("%s: %d passes checked, %d cycles in passes, %.2f s: %.0f cycles/s",
                      self.name, self.passes, self.cycles, wall, rate)
        record_metric("passes", self.passes)
        record_metric("cycles_per_second", round(rate))


# --- stimulus between passes ----------------------------------------------------------------

def host_tree(system) -> Tree:
    """The host table of a :func:`model.system.random_system` as a :class:`Tree`."""
    pt = system.host
    tree = Tree(pt.kind, system.mem, pt)
    step = SIZE_4K if pt.entry_addr(0, 1) is not None else SIZE_2M
    level = 1 if step == SIZE_4K else 2
    for gpa in range(0, system.guest_ram, step):
        addr = pt.entry_addr(gpa, level)
        tree.leaves.append((addr, level))
        if level == 1 and gpa % SIZE_2M == 0:
            tree.leaf_tables.append((addr & ~0xFFF, pt.entry_addr(gpa, 2)))
    return tree


def random_walks(rng, system, space, gvas, mem: PhysMem, count: int):
    """``count`` walks of the model walker on ``mem`` (they set A/D bits in both dimensions)."""
    walker = Walker(mem, WalkerConfig(host=system.host.kind, pa_bits=system.host.fmt.pa_bits))
    for _ in range(count):
        gva, _size = rng.choice(gvas)
        acc = rng.choice([{}, {"write": True}])
        walker.translate(WalkRequest(gva=gva, cr3=space.root, hroot=system.hroot,
                                     user=rng.random() < 0.5, **acc))


def random_writes(rng, tree: Tree, mem: PhysMem, count: int):
    """Direct writes to host leaves, as software would make them: set or clear A and D,
    rewrite the engine-owned bits, unmap a leaf."""
    lay = layout(tree.fmt)
    a, d = lay.A.mask, lay.D.mask
    for _ in range(count):
        addr, _level = rng.choice(tree.leaves)
        old = mem.read(addr)
        roll = rng.random()
        if roll < 0.4:
            new = old | a | (d if rng.random() < 0.3 else 0)
        elif roll < 0.7:
            new = old & ~(a if rng.random() < 0.5 else d)
        elif roll < 0.95:
            new = lay.SW.set(old, rng.randrange(1 << lay.SW.width))
        else:
            new = 0
        mem.write(addr, new)


def copy_changes(tb: TB, before: PhysMem, after: PhysMem):
    """Put every word that differs between ``before`` and ``after`` into the testbench memory."""
    for addr, _old, new in before.diff(after, limit=1 << 30):
        tb.words.write(addr, new)


# --- tests ---------------------------------------------------------------------------------

@cocotb.test()
@cocotb.parametrize(latency=[1, 10])
async def passes_with_walks(dut, latency):
    """Many passes over a guest's host table (EPT, then NPT), with model walks and direct
    writes between passes; memory, statistics, candidates and reports checked every pass."""
    tb = TB(dut, f"passes_with_walks/latency={latency}", size=(8 + 64 + 16) << 20,
            latency=latency)
    for fmt in ("ept", "npt"):
        rnd = random.Random(tb.rng.getrandbits(64))
        pa_bits = tb.pa_bits           # the model checks the address bits the unit was built for
        system, space, gvas = random_system(rnd, fmt, pa_bits=pa_bits)
        tree = host_tree(system)
        cfg = random_config(tb.rng, fmt, pa_bits, top_k=tb.rng.randint(1, tb.top_k_max))
        await tb.reset()
        tb.load(system.mem)
        model = ModelScanner(cfg, pass_index=0)
        ref = system.mem.copy()
        for p in range(scale(4)):
            context = f"{fmt} pass {p}"
            tb.check_image(ref, context + " (start)")
            hw = await tb.run_pass(cfg, tree.pt.root, p)
            stats = model.scan_pass(ref, tree.pt.root)
            tb.check_image(ref, context)
            compare(hw, stats, cfg, tb.cleared, f"[seed {tb.seed}] {context}", tb.top_k_max)
            before = ref.copy()
            random_walks(tb.rng, system, space, gvas, ref, 200)
            random_writes(tb.rng, tree, ref, 100)
            copy_changes(tb, before, ref)
    tb.report()


@cocotb.test()
async def bad_trees(dut):
    """Malformed entries, tables past the end of memory, poisoned words on every beat
    position of a leaf-table burst, aliased and self-referencing tables; three passes."""
    tb = TB(dut, "bad_trees", size=1 << 20, latency=5)
    for k, fmt in enumerate(("ept", "npt", "ia32e")):
        seed = tb.rng.getrandbits(32)
        pa_bits = tb.pa_bits
        tree = random_tree(seed, fmt, pa_bits, leaf_tables=3, bad=True, alias=k == 1)
        # an error on the first, a middle and the last beat of one full-width burst
        table = tree.leaf_tables[0][0]
        burst = 8 * tb.lanes * tb.params.get("burst_beats", 32)
        for offset in (0, burst // 2, burst - 8 * tb.lanes):
            tree.mem.poison(table + offset + 8 * tb.rng.randrange(tb.lanes),
                            tb.rng.choice(["SLVERR", "DECERR"]))
        cfg = random_config(tb.rng, fmt, pa_bits, top_k=tb.rng.randint(1, tb.top_k_max))
        await tb.reset()
        tb.load(tree.mem)
        model = ModelScanner(cfg, pass_index=0)
        ref = tree.mem.copy()
        for p in range(3):
            hw = await tb.run_pass(cfg, tree.root, p)
            stats = model.scan_pass(ref, tree.root)
            tb.check_image(ref, f"{fmt} pass {p}")
            compare(hw, stats, cfg, tb.cleared, f"[seed {tb.seed}] {fmt} pass {p}",
                    tb.top_k_max)
            assert stats.bus_errors > 0 and stats.malformed > 0
    tb.report()


@cocotb.test()
async def agent_during_passes(dut):
    """A walker-like agent writes leaves and parents while passes run (before the
    scanner's read, between read and write-back, after it); each pass equals ``iter_pass``
    replayed with the interleaving the hardware saw."""
    tb = TB(dut, "agent_during_passes", size=1 << 20, latency=5, backpressure=0.3)
    kinds_seen = set()
    retries = 0
    for k in range(scale(2)):
        seed = tb.rng.getrandbits(32)
        fmt = ("ept", "npt")[k % 2]
        tree = random_tree(seed, fmt, tb.pa_bits, leaf_tables=2, dense=True)
        cfg = random_config(tb.rng, fmt, tb.pa_bits,
                            top_k=tb.rng.randint(1, tb.top_k_max))
        agent = Agent(tree, seed, rate=0.05, pa_bits=tb.pa_bits)
        await tb.reset()
        tb.load(tree.mem)
        for p in range(2):
            before = tb.mem.dump()
            agent.log = []
            tb.snoop.agent = agent
            hw = await tb.run_pass(cfg, tree.root, p)
            tb.snoop.agent = None
            hooks, end, kinds = replay_schedule(tb.bus.traffic, agent.log)
            ref = HookMem.of(before, hooks, agent.apply)
            stats = drive(ModelScanner(cfg, pass_index=p).iter_pass(ref, tree.root))
            for _s, addr, action in sorted(ref.leftovers() + end):
                PhysMem.write(ref, addr, agent.apply(action, PhysMem.read(ref, addr)))
            tb.check_image(ref, f"agent {k} pass {p}")
            compare(hw, stats, cfg, tb.cleared, f"[seed {tb.seed}] agent {k} pass {p}",
                    tb.top_k_max)
            kinds_seen |= set(kinds)
            retries += hw["retries"]
    assert {"before", "between", "after"} <= kinds_seen, kinds_seen
    assert retries > 0, "no compare-and-set retry happened"
    tb.report()


@cocotb.test()
async def reset_mid_pass(dut):
    """Reset at a random point of a pass (bursts in flight dropped with the memory); the
    unit is idle after it and the next pass equals the model on the memory left behind."""
    tb = TB(dut, "reset_mid_pass", size=1 << 20, latency=3)
    for k in range(scale(4)):
        seed = tb.rng.getrandbits(32)
        fmt = ("ept", "npt", "ia32e")[k % 3]
        tree = random_tree(seed, fmt, tb.pa_bits, leaf_tables=3, dense=True)
        cfg = random_config(tb.rng, fmt, tb.pa_bits, top_k=tb.rng.randint(1, tb.top_k_max))
        await tb.reset()
        tb.load(tree.mem)
        await tb.start_pass(cfg, tree.root, 1)
        await ClockCycles(dut.clk, tb.rng.randrange(10, 2500))
        await tb.reset(tb.rng.randrange(1, 4))
        await ReadOnly()
        assert dut.busy.value == 0 and dut.start__ready.value == 1, "busy after reset"
        assert dut.m_axi__arvalid.value == 0 and dut.m_axi__awvalid.value == 0
        await RisingEdge(dut.clk)
        ref = tb.mem.dump()
        hw = await tb.run_pass(cfg, tree.root, 2)
        stats = ModelScanner(cfg, pass_index=2).scan_pass(ref, tree.root)
        tb.check_image(ref, f"after reset {k}")
        compare(hw, stats, cfg, tb.cleared, f"[seed {tb.seed}] after reset {k}", tb.top_k_max)
    tb.report()


@cocotb.test()
async def inputs_change_mid_pass(dut):
    """The configuration and the start payload change while a pass runs: the pass keeps
    what it sampled at its start (the next one takes the new values)."""
    tb = TB(dut, "inputs_change_mid_pass", size=1 << 20, latency=2)
    seed = tb.rng.getrandbits(32)
    tree = random_tree(seed, "ept", tb.pa_bits, leaf_tables=2, dense=True)
    other = random_tree(seed + 1, "npt", tb.pa_bits, leaf_tables=1, dense=True)
    cfg = random_config(tb.rng, "ept", tb.pa_bits, top_k=tb.top_k_max)
    cfg2 = random_config(tb.rng, "npt", tb.pa_bits, top_k=1)
    await tb.reset()
    tb.load(tree.mem)
    ref = tree.mem.copy()
    await tb.start_pass(cfg, tree.root, 0)
    for _ in range(20):
        await ClockCycles(dut.clk, tb.rng.randrange(20, 100))
        dut.config.value = Codec(CONFIG_LAYOUT).pack(
            **hw_config(tb.rng.choice([cfg, cfg2])))
        dut.start__payload.value = Codec(start_layout(tb.pa_bits)).pack(
            root=other.root, pass_index=99, set_index=1)
    hw = await tb.finish_pass()
    stats = ModelScanner(cfg, pass_index=0).scan_pass(ref, tree.root)
    tb.check_image(ref, "inputs changed mid-pass")
    compare(hw, stats, cfg, tb.cleared, f"[seed {tb.seed}] inputs changed", tb.top_k_max)
    tb.report()
