"""Full-system co-simulation: the RTL engine (:class:`hdl.engine.Engine`) replays a
page-level trace against the model engine (:class:`model.engine.Engine`).

The scenario is :class:`cosim.engine_scenario.Scenario` (configuration from the environment,
:data:`cosim.engine_scenario.ENV`). Steps, each on both engines:

1. software programs the registers over AXI4-Lite (roots, host root, interrupt mask);
2. per pass: the pass's demand walks on ``walk_req`` (every response compared with the
   model engine's translation, including where the guest PTE lives), then a scan pass
   started by ``SCAN_CMD``; at ``PASS_DONE`` every statistic, the level histogram and the
   ranked candidates are read from the register windows and compared, and the full memory
   image is compared;
3. the coldest pages are swapped out (host leaves cleared, walker caches invalidated by
   ``WALK_INV_CMD``) and the guest faults on some of them: every prefetch record compared;
4. the process exits: its heap PTE writes go to ``pte_write``; the drop events read from
   the ``EXIT_DROP_*`` queue are compared in order;
5. the walker's and the exit detector's counters (registers) and the memory image.

Results (per-pass figures, candidates, prefetches, drops, agreement) are written as JSON
when the configuration names a file: ``make demo`` prints them.
"""

import json
import random
import time
from collections import deque
from dataclasses import replace

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from cosim.axi_mem import AxiMem
from cosim.engine_scenario import HEAP, ReplayConfig, Scenario, scanner_build
from cosim.runner import record_metric, sim_params, sim_seed
from cosim.stream import StreamDriver, StreamMonitor, Ticker
from cosim.tb_exit_detector import counters_of, encode_event
from cosim.tb_prefetcher import decode_records, encode_request as encode_fault, same
from cosim.walk_codec import describe_response, encode_request, encode_result, \
    model_counters
from hdl.exit_detector import COUNTERS as EXIT_COUNTERS
from hdl.scanner import STAT_NAMES
from hdl.walker import COUNTERS as WALK_COUNTERS
from hdl.interval import BATCH_DELAY, RATIO_DELAY
from model.engine import EngineConfig
from model.entries import host_format
from model.interval import IntervalConfig, IntervalController
from model.walker import FaultKind
from thermocline.layouts import X86_ENTRY
from thermocline.regmap import REGMAP

CLOCK_NS = 10


class EngineTB:
    def __init__(self, dut, cfg: ReplayConfig):
        self.dut = dut
        self.cfg = cfg
        self.seed = sim_seed()
        self.rng = random.Random(self.seed)
        self.log = dut._log
        t0 = time.perf_counter()
        self.sc = Scenario(cfg, sim_params())
        self.log.info("scenario: %d heap pages, %d passes, %d walks (%.1f s)",
                      self.sc.npages, len(self.sc.passes),
                      sum(len(p) for p in self.sc.passes), time.perf_counter() - t0)
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 0
        dut.prefetch_drop.value = 0
        image = self.sc.image
        self.mem = AxiMem(dut, dut.clk, dut.rst, size=image.size, latency=4,
                          seed=self.rng.getrandbits(32))
        self.mem.load(image)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"),
                                  dut.clk, dut.rst)
        self.ticker = Ticker(dut.clk)
        self.walks = StreamDriver(dut, "walk_req", self.ticker, encode_request)
        self.resp = StreamMonitor(dut, "walk_resp", self.ticker)
        self.faults = StreamDriver(dut, "fault", self.ticker, encode_fault)
        self.pf = StreamMonitor(dut, "prefetch", self.ticker)
        self.ptes = StreamDriver(dut, "pte_write", self.ticker, encode_event)
        self.expected: deque = deque()
        self.errors: list[str] = []
        self.checked = {"walks": 0, "passes": 0, "prefetches": 0, "drops": 0, "images": 0}
        self.walks.on_accept.append(self._accepted)
        self.resp.on_item.append(self._response)
        self.pf_words: list[int] = []
        self.pf.on_item.append(lambda w, c: self.pf_words.append(w))
        self.results = {"passes": [], "prefetch": [], "drops": [], "config": cfg.__dict__}
        self.t_wall = time.perf_counter()
        self.progress_file = open(cfg.progress, "w") if cfg.progress else None

    def progress(self, step: str, done: int, total: int):
        if self.progress_file:
            self.progress_file.write(json.dumps({"step": step, "done": done,
                                                 "total": total}) + "\n")
            self.progress_file.flush()

    # --- walks -------------------------------------------------------------------------------

    def _accepted(self, req):
        result = self.sc.engine.translate(req)
        self.expected.append((req, encode_result(result)))

    def _response(self, word, cycle):
        if not self.expected:
            self.errors.append(f"cycle {cycle}: a response nobody asked for")
            return
        req, want = self.expected.popleft()
        if word != want:
            self.errors.append(f"cycle {cycle}: {req}\n  hardware {describe_response(word)}"
                               f"\n  model    {describe_response(want)}")
        self.checked["walks"] += 1

    async def drain_walks(self, limit: int):
        waited = 0
        while (self.walks.pending or self.expected) and waited < limit and not self.errors:
            await ClockCycles(self.dut.clk, 16)
            waited += 16
        self.check()
        assert not self.walks.pending and not self.expected, \
            f"[seed {self.seed}] walks hang: {self.walks.pending} not accepted, " \
            f"{len(self.expected)} unanswered"

    def check(self):
        assert not self.errors, f"[seed {self.seed}] " + "\n".join(self.errors[:5])

    async def start(self):
        """Reset, then :meth:`program`."""
        await self.reset(4)
        await self.program()

    async def reset(self, cycles: int):
        """Hold reset for ``cycles`` cycles (the memory drops its bursts in flight with it);
        whatever the testbench still had to send or expected back is forgotten."""
        dut = self.dut
        dut.rst.value = 1
        for driver in (self.walks, self.faults, self.ptes):
            driver.clear()
        self.expected.clear()
        await ClockCycles(dut.clk, cycles)
        self.pf_words.clear()               # whatever comes from here on is after the reset
        dut.rst.value = 0
        await ClockCycles(dut.clk, 4)

    async def program(self):
        """Program what every step needs: the scanned tree and its host root, the host
        format, every interrupt cause enabled."""
        await self.write("SCAN_ROOT", self.sc.system.host.root)
        await self.write("SCAN_HROOT", self.sc.hroot)
        if self.cfg.host == "npt":
            await self.write("SCAN_CONFIG", REGMAP["SCAN_CONFIG"].reset | 1)
        await self.write("IRQ_MASK", REGMAP["IRQ_MASK"].mask)

    # --- registers ---------------------------------------------------------------------------

    async def write(self, name: str, value: int):
        reg = REGMAP[name]
        for _, offset, shift in reg.words:
            await self.axil.write_dword(offset, (value >> shift) & 0xFFFF_FFFF)

    async def read(self, name: str) -> int:
        reg = REGMAP[name]
        value = 0
        for _, offset, shift in reg.words:            # LO first: it captures HI
            value |= await self.axil.read_dword(offset) << shift
        return value

    async def read_window(self, name: str, words: int) -> list[int]:
        base = REGMAP.windows[name].offset
        return [await self.axil.read_dword(base + 4 * i) for i in range(words)]

    async def wait_irq(self, cause: str, limit: int):
        bit = REGMAP["IRQ_CAUSE"].field(cause).mask
        for _ in range(limit // 32):
            await ClockCycles(self.dut.clk, 32)
            await ReadOnly()
            if self.dut.irq.value == 1:
                await RisingEdge(self.dut.clk)
                value = await self.read("IRQ_CAUSE")
                if value & bit:
                    await self.write("IRQ_CAUSE", bit)
                    return value
        raise AssertionError(f"[seed {self.seed}] no {cause} interrupt within {limit} cycles")

    # --- checks ------------------------------------------------------------------------------

    async def check_counters(self, context: str) -> tuple[dict, dict]:
        """The walker's and the exit detector's counter registers against the model's
        (the walker's cache hits among them); returns them."""
        walk_hw = {name: await self.read(f"WALK_{name.upper()}") for name in WALK_COUNTERS}
        walk_model = model_counters(self.sc.engine.walker)
        assert walk_hw == walk_model, f"[seed {self.seed}] {context}: walker counters hw " \
                                      f"{walk_hw} model {walk_model}"
        exit_hw = {name: await self.read(f"EXIT_{name.upper()}") for name in EXIT_COUNTERS}
        exit_model = counters_of(self.sc.engine.exits)
        assert exit_hw == exit_model, f"[seed {self.seed}] {context}: exit counters hw " \
                                      f"{exit_hw} model {exit_model}"
        return walk_hw, exit_hw

    def check_image(self, context: str):
        diff = self.mem.dump().diff(self.sc.engine.mem, limit=6)
        assert not diff, (f"[seed {self.seed}] {context}: memory differs (addr, rtl, model): "
                          f"{[(hex(a), hex(x), hex(y)) for a, x, y in diff]}")
        self.checked["images"] += 1

    def poison(self, addr: int, resp: str):
        """Make both memories answer ``resp`` (SLVERR or DECERR) for the word at ``addr``."""
        self.mem.fail_address(addr, resp)
        self.sc.engine.mem.poison(addr, resp)

    def poke(self, addr: int, value: int):
        """A write by software (the hypervisor or the guest) to both memories."""
        self.mem.write_word(addr, value)
        self.sc.engine.mem.write(addr, value)

    # --- steps -------------------------------------------------------------------------------

    async def swap_out(self, pages):
        """Make ``pages`` non-resident in both memories (their host leaves cleared) and
        drop every cached translation, in the walker and in the model's."""
        for addr, word in self.sc.swap_out_words(pages):
            self.poke(addr, word)
        await self.write("WALK_INV_CMD", REGMAP["WALK_INV_CMD"].pack(OP=0))
        await ClockCycles(self.dut.clk, 64)
        self.sc.engine.walker.invalidate_all()

    async def fault(self, page: int, what: str):
        """A prefetch request for ``page``: waits for its last record and compares the
        records with the model's answer (``what`` names it in the message). Returns the
        hardware's and the model's results."""
        req = self.sc.fault(page)
        self.pf_words.clear()
        self.faults.send(req)
        for _ in range(20_000):
            await ClockCycles(self.dut.clk, 8)
            if self.pf_words and (self.pf_words[-1] >> 3) & 1:
                break
        hw, want = decode_records(self.pf_words), self.sc.engine.fault(req)
        assert same(hw, want), f"[seed {self.seed}] {what}: hw {hw} model {want}"
        self.checked["prefetches"] += 1
        return hw, want


async def scan_pass(tb: EngineTB, index: int, *, started: bool = False, during=None,
                    set_index: bool = True, limit: int = 4_000_000):
    """One pass, started by command (unless ``started``: already running; with
    ``SET_INDEX`` and ``index`` unless not ``set_index``: the engine's own count must then
    be ``index``), with ``during()`` awaited while it runs; everything it reports compared
    with the model; ``limit``: most cycles it may take. Returns ``IRQ_CAUSE`` as read at
    the pass's end."""
    if not started:
        if set_index:
            await tb.write("SCAN_PASS_INDEX", index)
        await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1, SET_INDEX=int(set_index)))
    if during is not None:
        await during()
    cause = await tb.wait_irq("PASS_DONE", limit)
    await check_pass(tb, index, cause)
    return cause


async def check_pass(tb: EngineTB, index: int, cause: int):
    """The pass that just ended, as the register windows show it, against the model's next
    pass."""
    report = tb.sc.engine.scan()
    ref = report.stats
    hw = dict(zip(STAT_NAMES, await tb.read_window("SCAN_STAT", len(STAT_NAMES))))
    levels = tb.sc.config.scan.levels
    hist = await tb.read_window("SCAN_HIST", levels)
    count = await tb.read("LP_COUNT")
    words = await tb.read_window("LP_CAND", 4 * count)
    cands = [(words[4 * i] | words[4 * i + 1] << 32,
              words[4 * i + 2] | (words[4 * i + 3] & 0xFFFFF) << 32,
              (words[4 * i + 3] >> 24) & 31) for i in range(count)]
    want = {
        "accessed": ref.accessed, "leaves_4k": ref.leaves_by_size[4096],
        "leaves_2m": ref.leaves_by_size[1 << 21], "leaves_1g": ref.leaves_by_size[1 << 30],
        "entries_read": ref.entries_read, "tables_read": ref.tables_read,
        "writes": ref.writes, "malformed": ref.malformed, "bus_errors": ref.bus_errors,
        "retries": ref.retries,
    }
    got = {k: hw[k] for k in want}
    assert got == want, f"[seed {tb.seed}] pass {index}: statistics hw {got} model {want}"
    assert hist == [int(x) for x in ref.histogram], \
        f"[seed {tb.seed}] pass {index}: histogram hw {hist} model {list(ref.histogram)}"
    scan = tb.sc.config.scan
    if scan.multi:
        long_hist = await tb.read_window("SCAN_LONG_HIST", scan.long_levels)
        assert long_hist == [int(x) for x in ref.long_histogram], \
            f"[seed {tb.seed}] pass {index}: long histogram hw {long_hist} " \
            f"model {list(ref.long_histogram)}"
    model_cands = [tuple(int(v) for v in c) for c in ref.candidates]
    assert count == len(ref.candidates) and cands == model_cands, \
        f"[seed {tb.seed}] pass {index}: candidates hw {cands} model {model_cands}"
    assert ref.pass_index == index, f"model pass index {ref.pass_index}, expected {index}"
    assert await tb.read("SCAN_LAST_PASS") == index
    tb.check_image(f"pass {index}")
    tb.checked["passes"] += 1
    tb.results["passes"].append({
        "pass": index, "walks": len(tb.sc.passes[index]), "histogram": hist,
        "accessed": got["accessed"], "leaves": got["leaves_4k"] + got["leaves_2m"]
        + got["leaves_1g"], "writes": got["writes"], "cycles": hw["cycles"],
        "candidates": [{"region": r, "value": v} for r, _, v in cands],
        "irq_cause": cause, "agree": True})


@cocotb.test()
async def replay(dut):
    """The scenario end to end on the RTL engine, every output compared with the model."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    cycles0 = get_sim_time("ns") / CLOCK_NS
    # 1. registers
    await tb.start()
    assert await tb.read("ID") == REGMAP["ID"].reset
    await _replay_steps(tb, cycles0)


@cocotb.test()
async def configured_replay(dut):
    """The replay with every unit's configuration register away from its reset value, the
    model configured to match (:func:`random_settings`): the scanner's levels, steps and
    long period (the long histogram window compared too), the prioritizer's smoothing,
    threshold, candidate count, warm-up and absence limit, the prefetch window and
    direction. Every register field reaches its unit as the model reads it."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    cycles0 = get_sim_time("ns") / CLOCK_NS
    writes, config = random_settings(tb.rng, tb.sc.config,
                                     scanner_build(sim_params())["max_levels"])
    tb.log.info("settings: %s", {k: hex(v) for k, v in writes.items()})
    tb.sc.config = config
    tb.sc.restart(tb.sc.system.mem)
    await tb.start()
    for name, value in writes.items():
        await tb.write(name, value)
    await _replay_steps(tb, cycles0)


def random_settings(rng: random.Random, base: EngineConfig, max_levels: int):
    """Register values for the scanner, prioritizer and prefetcher configuration, and the
    model configuration they stand for (``base``, the reset configuration, with those units
    replaced). Every field is drawn from values other than its reset value (``UP`` or
    ``DOWN`` may keep 1: they differ from each other instead), so the long period is
    always on. ``max_levels``: the build's histogram size."""
    reset = base.scan
    while True:
        levels = rng.choice([n for n in range(2, max_levels + 1) if n != reset.levels])
        up, down = rng.randint(1, levels - 1), rng.randint(1, levels - 1)
        every = rng.choice([2, 3])
        try:
            scan = replace(
                base.scan, levels=levels, up=up, down=down, long_every=every,
                long_levels=rng.choice([n for n in range(2, max_levels + 1)
                                        if n != reset.long_levels]),
                long_need=rng.randint(1, every),
                large_page=replace(
                    reset.large_page, shift=rng.choice([0, 2, 3, 4]),
                    threshold=rng.randint(0, 6), warmup=rng.randint(0, 1),
                    max_nonpresent=rng.choice([8, 511]),
                    top_k=rng.randint(1, min(7, reset.large_page.top_k))))
        except ValueError:                   # the fields do not fit the entry's free bits
            continue
        if up != down:                       # (so that UP and DOWN swapped show)
            break
    lp = scan.large_page
    prefetch = replace(base.prefetch, window=rng.choice([1, 3, 16, 100]),
                       direction=rng.choice(["forward", "backward"]))
    writes = {
        "SCAN_CONFIG": REGMAP["SCAN_CONFIG"].pack(FMT=_encoding("SCAN_CONFIG", "FMT",
                                                                base.scan.fmt),
                                                  LEVELS=scan.levels, UP=scan.up,
                                                  DOWN=scan.down),
        "SCAN_LONG": REGMAP["SCAN_LONG"].pack(EVERY=scan.long_every, LEVELS=scan.long_levels,
                                              NEED=scan.long_need),
        "LP_CONFIG": REGMAP["LP_CONFIG"].pack(ENABLE=1, SHIFT=lp.shift,
                                              THRESHOLD=lp.threshold, TOP_K=lp.top_k),
        "LP_WARMUP": lp.warmup,
        "LP_MAX_NONPRESENT": lp.max_nonpresent,
        "PF_CONFIG": REGMAP["PF_CONFIG"].pack(
            WINDOW=prefetch.window,
            DIRECTION=_encoding("PF_CONFIG", "DIRECTION", prefetch.direction)),
    }
    return writes, replace(base, scan=scan, prefetch=prefetch)


def _encoding(register: str, field: str, name: str) -> int:
    """The value of an enumerated register field that the register map names ``name``."""
    values = REGMAP[register].field(field).values
    return {v.lower(): k for k, v in values.items()}[name]


async def _replay_steps(tb: EngineTB, cycles0: float):
    """The replay after its registers are programmed: passes, faults, the exit, counters."""
    dut, cfg, sc = tb.dut, tb.cfg, tb.sc

    # 2. passes
    total = sum(len(p) for p in sc.passes)
    done = 0
    for index, walks in enumerate(sc.passes):
        for page, write in walks:
            tb.walks.send(sc.walk(page, write))
        waited, limit = 0, 200 * len(walks) + 10_000
        while tb.walks.pending:
            assert waited < limit, f"[seed {tb.seed}] pass {index}: walks not accepted " \
                                   f"within {limit} cycles ({tb.walks.pending} left)"
            await ClockCycles(dut.clk, 256)
            waited += 256
            tb.progress("walks", done + len(walks) - tb.walks.pending, total)
            tb.check()
        await tb.drain_walks(200 * len(walks) + 10_000)
        done += len(walks)
        await scan_pass(tb, index)
        tb.progress("passes", index + 1, len(sc.passes))

    # 3. swap out the coldest pages, fault on some of them
    cold = sc.coldest()
    await tb.swap_out(cold)
    for k, page in enumerate(tb.rng.sample(cold, min(cfg.faults, len(cold)))):
        hw, _ = await tb.fault(page, f"fault on page {page}")
        tb.results["prefetch"].append({"page": page, "status": hw.status,
                                       "gpas": list(hw.gpas), "gvas": list(hw.gvas)})
        tb.progress("faults", k + 1, cfg.faults)
    tb.check_image("after the faults")

    # 4. the process exits
    writes = sc.exit_writes()
    drops_want = []
    drops_got = []

    async def pop_drops():
        while True:
            status = await tb.read("EXIT_DROP_STATUS")
            if not status & 1:
                return
            asid = await tb.read("EXIT_DROP_ASID")
            table = await tb.read("EXIT_DROP_TABLE")
            drops_got.append((asid, table, ("exit", "bulk")[status >> 1 & 1]))
            await tb.write("EXIT_DROP_POP", 1)

    for k, (hpa, event) in enumerate(writes):
        tb.poke(hpa, event.new)
        drops_want += [(d.asid, d.table_gpa, d.reason) for d in sc.engine.pte_write(event)]
        tb.ptes.send(event)
        waited = 0
        while tb.ptes.pending:
            assert waited < 100_000, f"[seed {tb.seed}] PTE write {k} not accepted"
            await ClockCycles(dut.clk, 4)
            waited += 4
            if dut.irq.value == 1:
                await pop_drops()
        if k % 256 == 0:
            tb.progress("exit", k + 1, len(writes))
    await ClockCycles(dut.clk, 64)
    await pop_drops()
    assert drops_got == drops_want, \
        f"[seed {tb.seed}] drops hw {drops_got[:8]} model {drops_want[:8]}"
    tb.checked["drops"] = len(drops_got)
    tb.results["drops"] = [{"asid": a, "table": t, "reason": r} for a, t, r in drops_got]

    # 5. counters and the final image
    walk_hw, exit_hw = await tb.check_counters("at the end")
    tb.check_image("at the end")
    cycles = get_sim_time("ns") / CLOCK_NS - cycles0
    wall = time.perf_counter() - tb.t_wall
    tb.results.update(checked=tb.checked, walker_counters=walk_hw, exit_counters=exit_hw,
                      cycles=cycles, wall_seconds=wall, agree=True)
    if cfg.out:
        with open(cfg.out, "w") as f:
            json.dump(tb.results, f, indent=1, default=int)
    for name, value in tb.checked.items():
        record_metric(name, value)
    record_metric("cycles_per_second", round(cycles / wall))


async def _walks(tb: EngineTB, walks):
    for page, write in walks:
        tb.walks.send(tb.sc.walk(page, write))
    await tb.drain_walks(200 * len(walks) + 10_000)


#: Heap pages the directed tests have the walker cache (distinct TLB slots).
CACHED = list(range(8))


async def _started_with_cached(dut) -> EngineTB:
    """A started engine whose walker has walked (and cached) the :data:`CACHED` pages."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    await tb.start()
    await _walks(tb, [(p, False) for p in CACHED])
    return tb


async def _tlb_hits(tb: EngineTB, pages) -> int:
    """Walks of ``pages`` (each answer compared with the model): how many hit the TLB, which
    must be as many as hit the model's (its caches have the hardware's sizes)."""
    model = tb.sc.engine.walker.counters
    before, model_before = await tb.read("WALK_TLB_HITS"), model.tlb_hits
    await _walks(tb, [(p, False) for p in pages])
    hits, model_hits = await tb.read("WALK_TLB_HITS") - before, model.tlb_hits - model_before
    assert hits == model_hits, \
        f"[seed {tb.seed}] {hits} of the walks hit the TLB, {model_hits} in the model"
    return hits


async def _hold_walker(tb: EngineTB):
    """Keep the walker busy: it walks a page (200, in no slot of :data:`CACHED`) and holds
    the response, so it takes no command until ``tb.resp.hold`` is cleared."""
    tb.resp.hold = True
    tb.walks.send(tb.sc.walk(200, False))
    await ClockCycles(tb.dut.clk, 200)


async def _until_scan_busy(tb: EngineTB, what: str):
    """Wait (a few hundred cycles at most) for ``STATUS.SCAN_BUSY``."""
    for _ in range(200):
        await ClockCycles(tb.dut.clk, 4)
        if (await tb.read("STATUS")) & REGMAP["STATUS"].field("SCAN_BUSY").mask:
            return
    raise AssertionError(f"[seed {tb.seed}] {what} started no pass")


@cocotb.test()
async def registers_mid_pass(dut):
    """Register writes while a pass runs: continuous scanning turned off, the period
    changed, the root, the host root of its cleared reports and the configuration
    rewritten. The pass keeps what it sampled at its start and equals the model (the walks
    after it too: its cleared A bits dropped the right host root's translations); no pass starts once scanning is off; the next pass
    (by command, the unit's own index) uses the restored root and equals the model."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    sc = tb.sc
    await tb.start()
    await _walks(tb, sc.passes[0])
    period = 5000
    await tb.write("INT_PERIOD", period)
    assert await tb.read("INT_PERIOD") == period
    await tb.write("SCAN_CTRL", 1)                 # the controller says a pass is due: it starts
    await _until_scan_busy(tb, "continuous scanning")

    async def rewrite():
        await ClockCycles(dut.clk, 200)
        await tb.write("SCAN_CTRL", 0)
        await tb.write("INT_PERIOD", 1 << 30)
        await tb.write("SCAN_ROOT", sc.system.host.root + 0x1000)
        await tb.write("SCAN_HROOT", sc.hroot ^ 0x1000)
        await tb.write("SCAN_CONFIG", REGMAP["SCAN_CONFIG"].pack(FMT=0, LEVELS=8, UP=2, DOWN=3))
        assert (await tb.read("STATUS")) & REGMAP["STATUS"].field("SCAN_BUSY").mask, \
            "the pass ended before the registers were rewritten"

    await scan_pass(tb, 0, started=True, during=rewrite)
    assert await tb.read("INT_PERIOD") == 1 << 30
    await ClockCycles(dut.clk, 4 * period)
    assert not (await tb.read("IRQ_CAUSE")) & REGMAP["IRQ_CAUSE"].field("PASS_DONE").mask, \
        "a pass ran with continuous scanning off"
    await tb.write("SCAN_ROOT", sc.system.host.root)
    await tb.write("SCAN_HROOT", sc.hroot)
    await tb.write("SCAN_CONFIG", REGMAP["SCAN_CONFIG"].reset)
    # The pages the walker had cached when the pass ran first: those the pass found
    # accessed were dropped, so they are walked again, as in the model.
    recent = list(dict.fromkeys(page for page, _ in reversed(sc.passes[0])))[:16]
    await _walks(tb, [(page, False) for page in recent])
    await _walks(tb, sc.passes[1])
    await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1))   # the unit's count: 1
    await scan_pass(tb, 1, started=True)
    tb.check_image("at the end")


@cocotb.test()
async def inv_queue_full(dut):
    """Software queues more invalidations than the queue holds while the walker is busy, and
    the last one matters: the page it names was remapped. It must not be lost: the commands
    that find the queue full become one invalidation of everything, so the remapped page is
    walked again (its new translation, as the model says) and so are the other cached
    pages."""
    tb = await _started_with_cached(dut)
    sc = tb.sc
    # Remap page 0 onto page 100's frame, in both memories.
    space, gphys, pte = sc.space, sc.system.gphys, X86_ENTRY
    hpa = gphys.hpa(space.entry_addr(HEAP, 1))
    other = tb.mem.read_word(gphys.hpa(space.entry_addr(HEAP + 100 * 4096, 1)))
    tb.poke(hpa, pte.ADDR.set(sc.engine.mem.read(hpa), pte.ADDR.get(other)))
    # The walker takes no command; eleven commands that change nothing (a guest-physical
    # address outside the guest), then the one for page 0. The queue takes four.
    await _hold_walker(tb)
    assert (await tb.read("STATUS")) & REGMAP["STATUS"].field("WALK_BUSY").mask
    await tb.write("WALK_INV_ADDR", HEAP)
    await tb.write("WALK_INV_CR3", sc.cr3)
    for _ in range(11):
        await tb.write("WALK_INV_CMD", REGMAP["WALK_INV_CMD"].pack(OP=2))
        sc.engine.walker.invalidate_gpa(HEAP)
    await tb.write("WALK_INV_CMD", REGMAP["WALK_INV_CMD"].pack(OP=1, MATCH_CR3=1))
    sc.engine.walker.invalidate_gva(HEAP, cr3=sc.cr3)
    sc.engine.walker.invalidate_all()              # what replaces the commands not queued
    tb.resp.hold = False
    await tb.drain_walks(10_000)
    hits = await _tlb_hits(tb, CACHED)                   # page 0 compared with the model
    assert hits == 0, f"[seed {tb.seed}] {hits} cached pages still hit: no command was " \
                      f"replaced by an invalidation of everything"
    tb.check_image("at the end")


@cocotb.test()
async def reports_keep_their_pass_root(dut):
    """A pass ends while the walker, holding a walk's response, has taken none of its
    cleared reports; software then sets another ``SCAN_HROOT`` and starts the next pass. The
    queued reports must still drop the first pass's host root (the next pass waits for them
    and shows busy meanwhile), so the pages cached before are walked again, as in the
    model."""
    tb = await _started_with_cached(dut)
    sc = tb.sc
    await _hold_walker(tb)
    await scan_pass(tb, 0)
    await tb.write("SCAN_HROOT", sc.hroot ^ 0x1000)
    await tb.write("SCAN_PASS_INDEX", 1)
    await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1, SET_INDEX=1))
    await ClockCycles(dut.clk, 500)
    assert (await tb.read("STATUS")) & REGMAP["STATUS"].field("SCAN_BUSY").mask, \
        f"[seed {tb.seed}] a started pass does not show busy"
    tb.resp.hold = False
    await scan_pass(tb, 1, started=True)
    await tb.drain_walks(10_000)
    await tb.write("SCAN_HROOT", sc.hroot)
    assert await _tlb_hits(tb, CACHED) == 0, \
        f"[seed {tb.seed}] pages whose A bit the first pass cleared still hit"
    tb.check_image("at the end")


@cocotb.test()
async def scan_busy_until_published(dut):
    """Software that polls ``STATUS.SCAN_BUSY`` instead of taking the interrupt: the first
    read of 0 after a start comes only once the pass is published (``SCAN_LAST_PASS`` names
    it, ``PASS_DONE`` is raised), and the windows read right after hold it, equal to the
    model's. The engine reads the pass's end figures through the same statistics port in
    the cycles after the scanner stops; polled back to back, over several passes, some read
    falls in them."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    sc = tb.sc
    busy = REGMAP["STATUS"].field("SCAN_BUSY").mask
    done = REGMAP["IRQ_CAUSE"].field("PASS_DONE").mask
    await tb.start()
    for index, walks in enumerate(sc.passes):
        await _walks(tb, walks)
        await tb.write("SCAN_PASS_INDEX", index)
        await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1, SET_INDEX=1))
        await _until_scan_busy(tb, f"pass {index}'s command")
        for _ in range(400_000):
            if not (await tb.read("STATUS")) & busy:
                break
        else:
            raise AssertionError(f"[seed {tb.seed}] pass {index} never ended")
        last = await tb.read("SCAN_LAST_PASS")
        cause = await tb.read("IRQ_CAUSE")
        assert last == index and cause & done, \
            f"[seed {tb.seed}] STATUS.SCAN_BUSY read 0 before pass {index} was published " \
            f"(SCAN_LAST_PASS {last}, IRQ_CAUSE {cause:#x})"
        await check_pass(tb, index, cause)
        await tb.write("IRQ_CAUSE", done)


@cocotb.test()
async def continuous_scanning_waits_for_ack(dut):
    """Continuous scanning with a period shorter than a pass (a pass is always due) and
    ``SCAN_CTRL.ACK``: the next pass waits while ``PASS_DONE`` is set, so the windows keep
    the pass (equal to the model's) however long software takes; clearing the cause starts
    the next, which equals the model's too. Each pass overruns the period: ``OVERRUN``,
    ``INT_STATUS``, ``INT_OVERRUN_COUNT`` and the next start (``INT_LAST_START``) are the
    model controller's told the pass's length (``SCAN_STAT.CYCLES``); ``INT_CMD`` clears
    the flag and keeps the count."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    sc = tb.sc
    done = REGMAP["IRQ_CAUSE"].field("PASS_DONE").mask
    interval = IntervalController(IntervalConfig(period=1000))
    await tb.start()
    await _walks(tb, sc.passes[0])
    await tb.write("INT_PERIOD", 1000)
    await tb.write("SCAN_CTRL", REGMAP["SCAN_CTRL"].pack(ENABLE=1, ACK=1))
    for _ in range(20_000):
        await ClockCycles(dut.clk, 64)
        cause = await tb.read("IRQ_CAUSE")
        if cause & done:
            break
    else:
        raise AssertionError(f"[seed {tb.seed}] continuous scanning ended no pass")
    stats = await tb.read_window("SCAN_STAT", len(STAT_NAMES))
    await ClockCycles(dut.clk, 20_000)
    assert not (await tb.read("STATUS")) & REGMAP["STATUS"].field("SCAN_BUSY").mask, \
        f"[seed {tb.seed}] a pass started with PASS_DONE still set"
    assert await tb.read_window("SCAN_STAT", len(STAT_NAMES)) == stats
    await check_pass(tb, 0, cause)
    await _check_overrun(tb, interval, dict(zip(STAT_NAMES, stats)))
    await tb.write("IRQ_CAUSE", done)
    await _until_scan_busy(tb, "clearing PASS_DONE")
    await tb.write("SCAN_CTRL", 0)
    await scan_pass(tb, 1, started=True)
    stats = dict(zip(STAT_NAMES, await tb.read_window("SCAN_STAT", len(STAT_NAMES))))
    await _check_overrun(tb, interval, stats)


async def _check_overrun(tb: EngineTB, interval: IntervalController, stats: dict):
    """The interval registers after a pass that overran, against ``interval`` told the
    pass's length; then ``INT_CMD.CLEAR_OVERRUN``. ``IRQ_CAUSE`` is read here, not where
    ``PASS_DONE`` was seen: ``OVERRUN`` is set a cycle after it."""
    leaves = stats["leaves_4k"] + stats["leaves_2m"] + stats["leaves_1g"]
    t = interval.end_pass(stats["cycles"], accessed=stats["accessed"], leaves=leaves)
    assert t.overrun, f"[seed {tb.seed}] a pass of {stats['cycles']} cycles did not overrun"
    cause = await tb.read("IRQ_CAUSE")
    overrun = REGMAP["IRQ_CAUSE"].field("OVERRUN").mask
    got = {"cause": bool(cause & overrun), "status": await tb.read("INT_STATUS"),
           "count": await tb.read("INT_OVERRUN_COUNT"),
           "last_start": await tb.read("INT_LAST_START")}
    want = {"cause": True, "status": 1, "count": interval.overrun_count,
            "last_start": t.next_start}
    assert got == want, f"[seed {tb.seed}] after a pass of {stats['cycles']} cycles: " \
                        f"interval hw {got} model {want}"
    await tb.write("IRQ_CAUSE", overrun)
    await tb.write("INT_CMD", REGMAP["INT_CMD"].pack(CLEAR_OVERRUN=1))
    interval.clear_overrun()
    assert (await tb.read("INT_STATUS"), await tb.read("INT_OVERRUN_COUNT")) == \
        (0, interval.overrun_count), f"[seed {tb.seed}] INT_CMD.CLEAR_OVERRUN"


@cocotb.test()
async def ia32e_pass_keeps_walker_caches(dut):
    """A pass over an IA-32e shadow table (built in spare host memory, its leaves covering
    guest-physical addresses of pages the walker has cached, every A bit set): its cleared
    A bits are guest-virtual, not host, so the walker drops nothing (the model's engine
    sends no report for such a pass) and the cached pages still hit."""
    tb = await _started_with_cached(dut)
    sc = tb.sc
    gpas = [sc.frames[p] for p in CACHED]
    assert len({g >> 21 for g in gpas}) == 1, "the cached pages span two 2 MiB regions"
    f = host_format("ia32e")
    base = sc.system.data_base + sc.system.guest_ram
    tables = [base + 4096 * k for k in range(4)]          # levels 4, 3, 2, 1
    words = {}
    for level, (table, child) in zip((4, 3, 2), zip(tables, tables[1:])):
        words[table + 8 * ((gpas[0] >> (12 + 9 * (level - 1))) & 511)] = \
            f.make(level, child, leaf=False)
    region = gpas[0] & ~((1 << 21) - 1)
    for i in range(512):
        words[tables[3] + 8 * i] = f.make(1, sc.system.data_base + 4096 * i, leaf=True, A=1)
    for addr, word in words.items():
        tb.poke(addr, word)
    await tb.write("SCAN_CONFIG", REGMAP["SCAN_CONFIG"].reset | 2)       # FMT = IA32E
    await tb.write("SCAN_ROOT", tables[0])
    await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1))
    await tb.wait_irq("PASS_DONE", 1_000_000)
    cleared = sum(1 for i in range(512)
                  if not tb.mem.read_word(tables[3] + 8 * i) & f.A)
    assert cleared == 512, f"[seed {tb.seed}] the pass cleared {cleared} of 512 A bits"
    for k in range(4):                                   # the model's memory follows
        for i in range(512):
            tb.sc.engine.mem.write(tables[k] + 8 * i, tb.mem.read_word(tables[k] + 8 * i))
    await tb.write("SCAN_CONFIG", REGMAP["SCAN_CONFIG"].reset)
    await tb.write("SCAN_ROOT", sc.system.host.root)
    hits = await _tlb_hits(tb, CACHED)          # as many as the model's, which kept them all
    assert hits > 0, f"[seed {tb.seed}] no cached page of {region:#x}.. to keep"
    tb.check_image("at the end")


@cocotb.test()
async def bad_scan_root(dut):
    """A ``SCAN_ROOT`` with a bit set at or above the build's ``pa_bits``, and one with bit
    63: each pass counts one malformed entry, reads no table, writes nothing, and raises
    ``PASS_DONE`` without ``BUS_ERROR``; the walker keeps its caches. Written back, the root
    scans as the model's does (the pass index advanced as the model's)."""
    tb = await _started_with_cached(dut)
    sc = tb.sc
    good = sc.system.host.root
    bus_error = REGMAP["IRQ_CAUSE"].field("BUS_ERROR").mask
    for index, high in enumerate((sc.config.scan.pa_bits, 63)):
        sc.engine.scan_root = good | 1 << high
        await tb.write("SCAN_ROOT", sc.engine.scan_root)
        cause = await scan_pass(tb, index, limit=100_000)      # it reads nothing
        assert not cause & bus_error, f"[seed {tb.seed}] root bit {high}: cause {cause:#x}"
        ref = sc.engine.scanner.last_stats
        assert (ref.malformed, ref.tables_read) == (1, 0), f"model: {ref}"
        stats = tb.results["passes"][-1]
        assert stats["leaves"] == 0 and stats["writes"] == 0, \
            f"[seed {tb.seed}] root bit {high}: {stats}"
        await tb.write("IRQ_CAUSE", cause)
    assert await _tlb_hits(tb, CACHED) > 0
    sc.engine.scan_root = good | 0xFFF                  # bits 11..0 ignored
    await tb.write("SCAN_ROOT", sc.engine.scan_root)
    await scan_pass(tb, 2, set_index=False)        # the engine's count went past both
    assert tb.results["passes"][-1]["leaves"] > 0


@cocotb.test()
async def interval_modes(dut):
    """The interval controller's adaptive modes through the engine's registers. Migration
    mode: each ``INT_BATCH`` write (after ``INT_CPP``) sets the model's period, as is or
    clamped by ``INT_MAX_PERIOD`` or ``INT_MIN_PERIOD``. Ratio mode, told by the engine at
    each pass end: a pass after walks (far more leaves accessed than the goal) shortens the
    period, the pass after it (no walks, nothing accessed) lengthens it, each to the
    model's period."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    sc = tb.sc
    await tb.start()
    top = 3_000_000
    model = IntervalController(IntervalConfig(
        mode="migration", period=REGMAP["INT_PERIOD"].reset, max_period=top))
    await tb.write("INT_MODE", REGMAP["INT_MODE"].pack(MODE=1))
    await tb.write("INT_MAX_PERIOD", top)
    seen = []
    for pages, cpp in ((1000, 0x2_8000), (70_000, 0x40_0000), (3, 0x1234)):
        await tb.write("INT_CPP", cpp)
        await tb.write("INT_BATCH", pages)
        await ClockCycles(dut.clk, BATCH_DELAY)
        got, want = await tb.read("INT_PERIOD"), model.set_batch(pages, cpp)
        assert got == want, f"[seed {tb.seed}] batch {pages} x {cpp:#x}: INT_PERIOD {got}, " \
                            f"model {want}"
        seen.append(got)
    assert seen == [2500, top, 1], seen                  # as is, clamped high, clamped low
    await tb.write("INT_MAX_PERIOD", REGMAP["INT_MAX_PERIOD"].reset)
    target, hysteresis, shift, period = 0x0100, 0x0080, 2, 50_000
    sc.engine.interval = IntervalController(IntervalConfig(
        mode="ratio", period=period, target=target, hysteresis=hysteresis, step_shift=shift))
    await tb.write("INT_MODE", REGMAP["INT_MODE"].pack(MODE=2))
    await tb.write("INT_RATIO", REGMAP["INT_RATIO"].pack(TARGET=target, HYSTERESIS=hysteresis))
    await tb.write("INT_STEP", REGMAP["INT_STEP"].pack(SHIFT=shift))
    await tb.write("INT_PERIOD", period)
    periods = [period]
    for index, walks in enumerate((sc.passes[0], [])):
        await _walks(tb, walks)
        await scan_pass(tb, index)
        await ClockCycles(dut.clk, RATIO_DELAY)
        got, want = await tb.read("INT_PERIOD"), sc.engine.interval.period
        assert got == want, f"[seed {tb.seed}] pass {index}: INT_PERIOD {got}, model {want}"
        periods.append(got)
    assert periods[1] < periods[0] and periods[2] > periods[1], \
        f"[seed {tb.seed}] periods {periods}"
    tb.check_image("at the end")


@cocotb.test()
async def bus_errors(dut):
    """AXI error responses go back through the arbiter to the unit whose access failed: a
    demand walk whose host leaf answers SLVERR faults with the model's ``bus_error``; the
    scan pass counts the entries that fail and raises ``BUS_ERROR``; a prefetch whose guest
    PTE window holds a DECERR word answers as the model's does. The other walks still hit,
    and the memory image equals the model's."""
    tb = await _started_with_cached(dut)
    sc = tb.sc
    walk_page, pf_page = 300, 400
    tb.poison(sc.system.host.entry_addr(sc.frames[walk_page], 1), "SLVERR")
    pte = sc.system.gphys.hpa(sc.space.entry_addr(HEAP + (pf_page + 1) * 4096, 1))
    tb.poison(pte, "DECERR")
    await _walks(tb, [(walk_page, False), (walk_page + 1, True)])   # compared with the model
    faults = await tb.read("WALK_FAULT_BUS_ERROR")
    assert faults == sc.engine.walker.counters.faults.get(FaultKind.BUS_ERROR, 0) == 1, \
        f"[seed {tb.seed}] {faults} bus-error faults (the model's: 1)"
    assert await _tlb_hits(tb, CACHED) > 0
    await tb.write("SCAN_PASS_INDEX", 0)
    await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1, SET_INDEX=1))
    cause = await tb.wait_irq("PASS_DONE", 4_000_000)
    assert cause & REGMAP["IRQ_CAUSE"].field("BUS_ERROR").mask, \
        f"[seed {tb.seed}] a pass over a failing entry raised no BUS_ERROR ({cause:#x})"
    await check_pass(tb, 0, cause)                      # bus_errors compared there
    await tb.swap_out([pf_page])
    _, want = await tb.fault(pf_page, "prefetch")
    assert want.status == "bus_error", f"model status {want.status}"
    tb.check_image("at the end")


@cocotb.test()
async def reset_mid_operation(dut):
    """Reset at a random cycle while every unit works: demand walks, a scan pass, a prefetch
    request and guest PTE writes in flight (the memory drops its bursts with the reset, as
    AXI's common ``ARESETn`` does). After it the engine answers nothing of the abandoned
    work, shows idle, and its registers, interrupt and counters read their reset values.
    Programmed again, it equals a fresh model engine on the memory the reset left (walks,
    a scan pass, a prefetch). Twice, at different cycles."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    sc = tb.sc
    await tb.start()
    await _walks(tb, sc.passes[0])
    due = REGMAP["STATUS"].field("PASS_DUE").mask          # (the first pass is due at once)
    idle_regs = {"STATUS": due, "IRQ_CAUSE": 0, "EXIT_DROP_STATUS": 0, "LP_COUNT": 0,
                 "WALK_REQUESTS": 0, "WALK_MEM_READS": 0, "EXIT_EVENTS": 0,
                 "SCAN_LAST_PASS": REGMAP["SCAN_LAST_PASS"].reset,
                 "SCAN_ROOT": REGMAP["SCAN_ROOT"].reset}
    for k in range(2):
        for page, write in sc.passes[1]:
            tb.walks.send(sc.walk(page, write))
        await tb.write("SCAN_PASS_INDEX", k)
        await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1, SET_INDEX=1))
        tb.faults.send(sc.fault(sc.passes[1][0][0]))
        for _, event in sc.exit_writes()[:16]:
            tb.ptes.send(event)
        when = tb.rng.randrange(50, 2000)
        await ClockCycles(dut.clk, when)
        assert (await tb.read("STATUS")) & REGMAP["STATUS"].field("SCAN_BUSY").mask, \
            f"[seed {tb.seed}] the pass had already ended at cycle {when}"
        await tb.reset(tb.rng.randrange(1, 4))
        await ClockCycles(dut.clk, 500)
        tb.check()                                   # (no answer to an abandoned request)
        assert not tb.pf_words, f"[seed {tb.seed}] prefetch records after the reset"
        assert dut.irq.value == 0, f"[seed {tb.seed}] irq high after the reset"
        got = {name: await tb.read(name) for name in idle_regs}
        assert got == idle_regs, f"[seed {tb.seed}] reset at cycle {when}: registers " \
                                 f"{got}, expected {idle_regs}"
        sc.restart(tb.mem.dump())
        await tb.program()
        await _walks(tb, sc.passes[0])
        await scan_pass(tb, 0)
        await tb.fault(sc.passes[0][0][0], f"prefetch after reset {k}")
        await tb.check_counters(f"after reset {k}")      # a cache kept would hit more
        tb.check_image(f"after reset {k}")


def probe(dut) -> str:
    """Handshake signals inside the engine (for a hang's message)."""
    names = [
        "walker.fsm_state", "walker.busy", "walker.lock", "walker.m_axi__arvalid",
        "walker.m_axi__awvalid", "walker.m_axi__wvalid", "walker.m_axi__bready",
        "walker.resp__valid", "walker.resp__ready", "walker.inv__valid", "walker.inv__ready",
        "scanner.busy", "scanner.snoop__ready", "scanner.m_axi__awvalid",
        "scanner.m_axi__arvalid", "scanner.m_axi__bready", "scanner.m_axi__rready",
        "scanner.cleared__valid", "scanner.done__valid", "prefetcher.busy",
        "prefetcher.m_axi__arvalid", "exits.event__valid", "exits.event__ready",
        "m_axi__awvalid", "m_axi__awready", "m_axi__wvalid", "m_axi__wready",
        "m_axi__bvalid", "m_axi__bready", "m_axi__arvalid", "m_axi__arready",
        "m_axi__rvalid", "m_axi__rready"]
    out = []
    for name in names:
        h = dut
        try:
            for part in name.split("."):
                h = getattr(h, part)
            out.append(f"{name}={int(h.value)}")
        except Exception:
            out.append(f"{name}=?")
    return " ".join(out)


@cocotb.test()
async def throughput(dut):
    """Each unit alone, then all at once: demand walks, a scan pass and prefetch requests
    (``make bench``). Every walk response and prefetch answer is still compared with the
    model (the scan changes only A and level bits, which no answer reports)."""
    tb = EngineTB(dut, ReplayConfig.from_env())
    sc = tb.sc
    await tb.start()
    rng = random.Random(tb.seed)
    walks = int(sc.cfg.max_walks or 500)
    faults = sc.cfg.faults

    def send_walks():
        for page in rng.sample(range(sc.npages), walks):
            tb.walks.send(sc.walk(page, rng.random() < 0.3))

    answers = []

    def count_done(word, cycle):
        if (word >> 3) & 1:
            answers.append(cycle)

    tb.pf.on_item.append(count_done)

    def send_faults():
        for page in rng.sample(range(sc.npages), faults):
            req = sc.fault(page)
            tb.faults.send(req)
            pf_expected.append(req)

    pf_expected: list = []

    async def until(cond, limit=5_000_000):
        t0 = tb.ticker.cycle
        while not cond():
            await ClockCycles(dut.clk, 8)
            assert tb.ticker.cycle - t0 < limit, f"[seed {tb.seed}] throughput run hangs"
        return tb.ticker.cycle - t0

    def check_prefetches():
        words = list(tb.pf_words)
        tb.pf_words.clear()
        k = 0
        for req in pf_expected:
            rec = []
            while True:
                rec.append(words[k])
                k += 1
                if (rec[-1] >> 3) & 1:
                    break
            hw, want = decode_records(rec), sc.engine.fault(req)
            assert same(hw, want), f"[seed {tb.seed}] prefetch {req}: hw {hw} model {want}"
        pf_expected.clear()

    passes = []

    async def run_scan():
        await tb.write("SCAN_CMD", REGMAP["SCAN_CMD"].pack(START=1))
        await tb.wait_irq("PASS_DONE", 5_000_000)
        passes.append(sc.engine.scan().stats)

    figures = {}
    # alone
    send_walks()
    figures["walks_alone"] = await until(lambda: not tb.walks.pending and not tb.expected)
    t0 = tb.ticker.cycle
    await run_scan()
    figures["scan_alone"] = tb.ticker.cycle - t0
    answers.clear()
    send_faults()
    figures["prefetch_alone"] = await until(lambda: len(answers) == faults)
    check_prefetches()
    # together: the scan starts, then the walks and the faults arrive
    answers.clear()
    t0 = tb.ticker.cycle
    scan = cocotb.start_soon(run_scan())
    send_walks()
    send_faults()
    ends = {}
    while len(ends) < 3:
        await ClockCycles(dut.clk, 8)
        now = tb.ticker.cycle - t0
        assert now < 1_000_000, (
            f"[seed {tb.seed}] throughput run hangs: finished {ends}; walks "
            f"{tb.walks.pending} unsent, {len(tb.expected)} unanswered; prefetch answers "
            f"{len(answers)}/{faults}; {probe(dut)}")
        if "walks_together" not in ends and not tb.walks.pending and not tb.expected:
            ends["walks_together"] = now
        if "prefetch_together" not in ends and len(answers) == faults:
            ends["prefetch_together"] = now
        if "scan_together" not in ends and scan.done():
            ends["scan_together"] = now
    figures.update(ends)
    check_prefetches()
    tb.check()
    figures.update(walks=walks, faults=faults, checked_walks=tb.checked["walks"])
    for i, stats in enumerate(passes):           # what each pass read and cleared
        figures[f"scan_entries_{i}"] = stats.entries_read
        figures[f"scan_accessed_{i}"] = stats.accessed
    for name, value in figures.items():
        record_metric(name, value)
