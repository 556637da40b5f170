"""Co-simulation of :class:`hdl.walker.Walker` against :class:`model.walker.Walker`.

Started from ``tests/test_cosim_walker.py`` through :mod:`cosim.runner`; the walker's
parameters (the ``WalkerConfig`` keywords) and the seed come from the environment.

Pieces, in the cocotb style:

* :class:`~cosim.stream.StreamDriver` x 2: requests and invalidation commands, each with
  random idle cycles, so commands arrive while walks are in progress;
* :class:`~cosim.stream.StreamMonitor`: responses, with random backpressure;
* :class:`Scoreboard`: the model walker, told every request and command in the order the
  hardware accepted them (a command is accepted only between walks, so that order is the
  order of execution), and every response compared bit for bit;
* :class:`~cosim.axi_mem.AxiMem`: the memory, with latency, backpressure and errors;
* :class:`TB` wires them; :meth:`TB.finish` compares the full memory image, the memory
  references in order and the counters.

Every failure names the seed; ``THERMOCLINE_SEED=<seed>`` reproduces the run.
"""

import random
import time
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly

from cosim.axi_mem import AxiMem
from cosim.runner import record_metric, scale, sim_params, sim_seed
from cosim.stream import StreamDriver, StreamMonitor, Ticker
from cosim.walk_codec import Invalidate, apply_inv, describe_response, encode_inv, \
    encode_request, encode_result, model_counters
from hdl.walker import COUNTERS
from model.memory import BusError, PhysMem
from model.system import pick, random_system
from model.walker import Translation, Walker, WalkerConfig, WalkRequest
from thermocline.layouts import INV_OPS

CLOCK_NS = 10
#: Memory size of every system :func:`model.system.random_system` makes.
SYSTEM_SIZE = (8 << 20) + (64 << 20) + (16 << 20)



class CountingMem:
    """The model's view of memory, failing chosen references the way the testbench memory
    does: the ``n``-th read (or write) from now answers an error."""

    def __init__(self, mem: PhysMem):
        self.mem = mem
        self.reads = 0
        self.writes = 0
        self.fail_reads: dict[int, str] = {}
        self.fail_writes: dict[int, str] = {}

    def read(self, addr: int) -> int:
        n, self.reads = self.reads, self.reads + 1
        if n in self.fail_reads:
            raise BusError(addr, self.fail_reads.pop(n))
        return self.mem.read(addr)

    def write(self, addr: int, value: int):
        n, self.writes = self.writes, self.writes + 1
        if n in self.fail_writes:
            raise BusError(addr, self.fail_writes.pop(n))
        self.mem.write(addr, value)


class Scoreboard:
    """The model walker and the responses it expects, in order."""

    def __init__(self, image: PhysMem, config: WalkerConfig, seed: int):
        self.seed = seed
        self.config = config
        self.mem = CountingMem(image)
        self.walker = Walker(self.mem, config)
        self.expected: deque = deque()
        self.log: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self.checked = 0
        self.faults = 0
        self.gpas: list[int] = []        # GPA of every translation, in acceptance order
        self.dropped = 0                 # cache slots the commands dropped

    def accept_request(self, req: WalkRequest):
        result = self.walker.translate(req)
        if isinstance(result, Translation):
            self.gpas.append(result.gpa)
        self.log += [(r.op, r.addr) for r in self.walker.log]
        self.expected.append((req, encode_result(result)))

    def accept_inv(self, cmd: Invalidate):
        self.dropped += apply_inv(self.walker, cmd)

    def response(self, word: int, cycle: int):
        if not self.expected:
            self.errors.append(f"[seed {self.seed}] cycle {cycle}: unexpected response "
                               f"{describe_response(word)}")
            return
        req, want = self.expected.popleft()
        self.checked += 1
        self.faults += (want & 0xF) != 0
        if word != want and len(self.errors) < 10:
            self.errors.append(f"[seed {self.seed}] cycle {cycle}: {req}\n"
                               f"  hardware {describe_response(word)}\n"
                               f"  model    {describe_response(want)}")

    def resync(self, image: PhysMem):
        """After a reset: the hardware's caches and counters start empty; so does the
        model, over the memory as the hardware left it."""
        self.mem = CountingMem(image)
        self.walker = Walker(self.mem, self.config)
        self.expected.clear()
        self.log = []


class TB:
    """The walker, its memory, drivers, monitor and scoreboard for one cocotb test.

    :meth:`new_system` puts a fresh random guest system into the memory and the model.
    """

    def __init__(self, dut, name: str, *, latency: int = 1, backpressure: bool = True):
        self.dut = dut
        self.name = name
        self.seed = sim_seed()
        self.rng = random.Random(f"{self.seed}:{name}")
        self.config = WalkerConfig(**dict(sim_params()))
        self.log = dut._log
        self.log.info("%s: seed %d, params %s, latency %d", name, self.seed,
                      sim_params(), latency)
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 0
        self.mem = AxiMem(dut, dut.clk, dut.rst, size=SYSTEM_SIZE, latency=latency,
                          seed=self.rng.getrandbits(32))
        stall = 0.25 if backpressure else 0.0
        self.mem.set_backpressure(ar=stall, r=stall, aw=stall, w=stall, b=stall)
        self.ticker = Ticker(dut.clk)
        self.req = StreamDriver(dut, "req", self.ticker, encode_request,
                                rng=random.Random(self.rng.getrandbits(64)), idle=stall)
        self.inv = StreamDriver(dut, "inv", self.ticker, encode_inv,
                                rng=random.Random(self.rng.getrandbits(64)), idle=stall)
        self.resp = StreamMonitor(dut, "resp", self.ticker,
                                  rng=random.Random(self.rng.getrandbits(64)), stall=stall)
        self.board: Scoreboard | None = None
        self.req.on_accept.append(lambda r: self.board.accept_request(r))
        self.inv.on_accept.append(lambda c: self.board.accept_inv(c))
        self.resp.on_item.append(lambda w, c: self.board.response(w, c))
        self.checked = 0
        self._wall = time.perf_counter()
        self._start = get_sim_time("ns")

    def new_system(self, corrupt: int = 0):
        """A new random guest (``corrupt`` bad entries on its paths), loaded everywhere.
        Call it with the walker idle and its caches empty (after a reset)."""
        if self.board is not None:
            self.checked += self.board.checked
        rnd = random.Random(self.rng.getrandbits(64))
        self.system, self.space, self.gvas = random_system(
            rnd, self.config.host, corrupt=corrupt, pa_bits=self.config.pa_bits)
        assert self.system.mem.size == SYSTEM_SIZE
        self.image0 = self.system.mem.copy()
        self.mem.clear()
        self.mem.load(self.system.mem)
        self.board = Scoreboard(self.system.mem.copy(), self.config, self.seed)
        self.mark()

    def mark(self):
        """From here on, :meth:`finish` checks references and counters."""
        self.mem_reads0, self.mem_writes0 = len(self.mem.reads), len(self.mem.writes)
        self.counters0 = self.counters()

    # --- stimulus ------------------------------------------------------------------------

    def random_request(self) -> WalkRequest:
        rng = self.rng
        gva = pick(rng, self.gvas) if rng.random() < 0.93 else rng.getrandbits(48)
        if rng.random() < 0.01:
            gva |= 1 << 47                                   # non-canonical
        acc = rng.choice([{}, {"write": True}, {"fetch": True}])
        return WalkRequest(gva=gva, cr3=self.space.root, hroot=self.system.hroot,
                           user=rng.random() < 0.5, **acc)

    def random_inv(self) -> Invalidate:
        rng = self.rng
        op = rng.choice(INV_OPS)
        if op == "gva":
            return Invalidate("gva", addr=pick(rng, self.gvas),
                              cr3=self.space.root if rng.random() < 0.5 else None)
        if op == "gpa":
            return Invalidate("gpa", addr=rng.randrange(self.system.guest_ram) & ~0xFFF,
                              hroot=self.system.hroot if rng.random() < 0.5 else None)
        if op == "root":
            return Invalidate("root", cr3=self.space.root if rng.random() < 0.5 else None,
                              hroot=self.system.hroot if rng.random() < 0.5 else None)
        if op == "scan_clear":
            size = rng.choice([1 << 12, 1 << 21])
            return Invalidate("scan_clear", addr=rng.randrange(self.system.guest_ram)
                              & ~(size - 1), hroot=self.system.hroot, size=size)
        return Invalidate("all")

    def send(self, item):
        (self.inv if isinstance(item, Invalidate) else self.req).send(item)

    # --- waiting and checking ------------------------------------------------------------

    async def reset(self, cycles: int = 4):
        """Hold reset for ``cycles`` cycles; returns once the design is out of reset and
        its registers can be read."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 1)
        await ReadOnly()

    async def drain(self, timeout_cycles: int | None = None):
        """Wait until every request has been answered; fail on a hang or a mismatch."""
        if timeout_cycles is None:
            timeout_cycles = 2000 + 400 * (self.req.pending + self.inv.pending
                                           + len(self.board.expected))
        waited = 0
        while self.req.pending or self.inv.pending or self.board.expected:
            if waited >= timeout_cycles or self.board.errors:
                break
            await ClockCycles(self.dut.clk, 8)
            waited += 8
        await ClockCycles(self.dut.clk, 4)
        self.assert_clean()
        if self.req.pending or self.inv.pending or self.board.expected:
            raise AssertionError(
                f"[seed {self.seed}] hang: {self.req.pending} requests and "
                f"{self.inv.pending} commands not accepted, {len(self.board.expected)} "
                f"responses owed after {waited} cycles")

    def assert_clean(self):
        if self.board.errors:
            raise AssertionError("\n".join(self.board.errors))

    def counters(self) -> dict:
        raw = self.dut.counters.value.to_unsigned()
        return {name: (raw >> (32 * i)) & 0xFFFF_FFFF for i, name in enumerate(COUNTERS)}

    def finish(self):
        """Compare the memory image, the references in order and the counters."""
        seed = self.seed
        diff = self.mem.dump().diff(self.board.mem.mem)
        assert not diff, f"[seed {seed}] memory images differ (addr, hw, model): {diff}"
        hw = ([("read", b.addr) for b in self.mem.reads[self.mem_reads0:]],
              [("write", b.addr) for b in self.mem.writes[self.mem_writes0:]])
        model = ([r for r in self.board.log if r[0] == "read"],
                 [r for r in self.board.log if r[0] == "write"])
        assert hw[0] == model[0], f"[seed {seed}] read sequences differ"
        assert hw[1] == model[1], f"[seed {seed}] write sequences differ"
        hw_c = {k: (v - self.counters0[k]) & 0xFFFF_FFFF for k, v in self.counters().items()}
        model_c = model_counters(self.board.walker)
        assert hw_c == model_c, (f"[seed {seed}] counters differ: "
                                 f"{ {k: (hw_c[k], model_c[k]) for k in hw_c if hw_c[k] != model_c[k]} }")
        self.check_isolation()

    def check_isolation(self):
        """Every address the walker touched is a host-table page or guest RAM (or past the
        end of memory, where nothing is touched: such an access answers DECERR)."""
        s = self.system
        for op, addr in self.board.log:
            ok = (addr < s.data_base or s.data_base <= addr < s.data_base + s.guest_ram
                  or addr >= SYSTEM_SIZE)
            assert ok, f"[seed {self.seed}] {op} at {addr:#x} is outside the guest's memory"

    def report(self):
        cycles = (get_sim_time("ns") - self._start) / CLOCK_NS
        wall = time.perf_counter() - self._wall
        rate = cycles / wall if wall else 0.0
        checked = self.checked + self.board.checked
        self.log.info("%s: %d responses checked, %d cycles in %.2f s: %.0f cycles/s",
                      self.name, checked, cycles, wall, rate)
        record_metric("responses", checked)
        record_metric("cycles_per_second", round(rate))


# --- tests ---------------------------------------------------------------------------------

@cocotb.test()
@cocotb.parametrize(latency=[1, 10])
async def random_walks(dut, latency):
    """Random walks over random 2D tables with invalidations arriving mid-walk, caches,
    restarts and backpressure; every response, reference, image and counter checked."""
    tb = TB(dut, f"random_walks/latency={latency}", latency=latency)
    for k in range(2):
        await tb.reset()
        tb.new_system(corrupt=k)                     # the second system has a bad entry
        for _ in range(scale(1250)):
            tb.send(tb.random_inv() if tb.rng.random() < 0.05 else tb.random_request())
        await tb.drain()
        tb.finish()
    tb.report()


@cocotb.test()
async def malformed_tables(dut):
    """Tables with reserved bits, misconfigured EPT entries and pointers past memory."""
    tb = TB(dut, "malformed_tables")
    for k in range(3):
        await tb.reset()
        tb.new_system(corrupt=4 + 2 * k)
        for _ in range(scale(300)):
            tb.send(tb.random_request())
        await tb.drain()
        tb.finish()
    tb.report()


@cocotb.test()
async def error_on_every_reference(dut):
    """SLVERR and DECERR on each memory reference of a cold walk in turn (reads of the walk
    phase and the update phase, and the update writes): a precise bus-error fault, no hang,
    and nothing written that the model would not write."""
    tb = TB(dut, "error_on_every_reference", backpressure=False)
    await tb.reset()
    tb.new_system()
    req = WalkRequest(gva=tb.gvas[0][0], cr3=tb.space.root, hroot=tb.system.hroot,
                      write=True)
    probe = Walker(tb.image0.copy(), tb.config)
    probe.translate(req)
    reads = sum(r.op == "read" for r in probe.log)
    writes = sum(r.op == "write" for r in probe.log)
    cases = [("read", n, resp) for n in range(reads) for resp in ("SLVERR", "DECERR")]
    cases += [("write", n, "SLVERR") for n in range(writes)]
    for op, n, resp in cases:
        tb.send(Invalidate("all"))                   # empty caches on both sides
        await tb.drain()
        tb.mem.load(tb.image0)                       # the original tables again
        tb.board.resync(tb.image0.copy())
        tb.mark()
        if op == "read":
            tb.mem.fail_read_beat(len(tb.mem.reads) + n, 0, resp)
            tb.board.mem.fail_reads[n] = resp
        else:
            tb.mem.fail_write_burst(len(tb.mem.writes) + n, resp)
            tb.board.mem.fail_writes[n] = resp
        tb.send(req)
        await tb.drain()
        tb.finish()
    tb.log.info("error_on_every_reference: %d cases (%d reads, %d writes)", len(cases),
                reads, writes)


@cocotb.test()
async def reset_mid_walk(dut):
    """Reset at random points of walks (update phase included): afterwards the walker
    answers correctly from empty caches, and memory differs from before only in A/D bits."""
    tb = TB(dut, "reset_mid_walk", latency=4)
    await tb.reset()
    tb.new_system()
    ad_bits = (1 << 5) | (1 << 6) | (1 << 8) | (1 << 9)
    for _ in range(scale(12)):
        for _ in range(5):
            tb.send(tb.random_request())
        await ClockCycles(dut.clk, tb.rng.randrange(5, 120))
        tb.req.clear()
        tb.inv.clear()
        await tb.reset(tb.rng.randrange(1, 4))
        image = tb.mem.dump()
        for addr, now, before in image.diff(tb.image0, limit=10_000):
            assert (now ^ before) & ~ad_bits == 0, (
                f"[seed {tb.seed}] reset left {addr:#x} = {now:#x} (was {before:#x})")
        tb.board.resync(image)
        tb.mark()
        for _ in range(20):
            tb.send(tb.random_request())
        await tb.drain()
        tb.finish()
    tb.report()


@cocotb.test()
async def scan_clear_burst(dut):
    """The scanner's A-bit clears back to back, for pages just walked (most of them still
    in the nested TLB) and for others, then the same walks again: which slots the clears
    dropped shows in the references, the responses and the counters."""
    tb = TB(dut, "scan_clear_burst", backpressure=False)
    await tb.reset()
    tb.new_system()
    rng = tb.rng
    for _ in range(scale(12)):
        reqs = [tb.random_request() for _ in range(8)]
        start = len(tb.board.gpas)
        for r in reqs:
            tb.send(r)
        await tb.drain()
        for gpa in tb.board.gpas[start:] + [rng.randrange(tb.system.guest_ram)]:
            size = 1 << 21 if rng.random() < 0.2 else 1 << 12
            tb.send(Invalidate("scan_clear", addr=gpa & ~(size - 1), hroot=tb.system.hroot,
                               size=size))
        for r in reqs:
            tb.send(r)
        await tb.drain()
    assert tb.board.dropped > 0, f"[seed {tb.seed}] no clear found its slot cached"
    tb.finish()
    tb.report()


@cocotb.test()
async def invalidation_storm(dut):
    """Commands on every other item, arriving while walks are in progress."""
    tb = TB(dut, "invalidation_storm")
    await tb.reset()
    tb.new_system()
    for _ in range(scale(400)):
        tb.send(tb.random_inv() if tb.rng.random() < 0.5 else tb.random_request())
    await tb.drain()
    tb.finish()
    tb.report()
