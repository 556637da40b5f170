"""Co-simulation of :class:`hdl.axi_reader.AxiReader` against the model memory.

Started from ``tests/test_cosim_axi_reader.py`` through :mod:`cosim.runner`; the design's
parameters (``data_width``, ``max_outstanding``) and the seed come from the environment.

Pieces, in the cocotb style:

* :class:`RequestDriver` drives the ``req`` stream, with random idle cycles;
* :class:`ResponseMonitor` takes beats off the ``resp`` stream, with random backpressure;
* :class:`AxiReadMonitor` watches the AXI read channels: address-channel rules, the burst
  split, bursts in flight and the read latency;
* :class:`ReaderModel` says what every request must produce, from a
  :class:`model.memory.PhysMem` image and the errors the test injected;
* :class:`Checker` compares every beat with the model, response code included;
* :class:`TB` wires them to an :class:`cosim.axi_mem.AxiMem` loaded from the same image.

Every check failure names the seed; ``THERMOCLINE_SEED=<seed>`` reproduces the run.
"""

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge

from cosim.axi_mem import AxiMem
from cosim.runner import record_metric, scale, sim_params, sim_seed
from cosim.stream import Codec, StreamDriver, StreamMonitor, Ticker
from hdl.axi import BOUNDARY, MAX_BURST_BEATS, AxiParams, Resp
from hdl.axi_reader import read_request_layout, read_response_layout
from model.memory import BusError, PhysMem
from thermocline.layouts import PAGE_SIZE

CLOCK_NS = 10
MEM_SIZE = 1 << 20



@dataclass(frozen=True)
class Request:
    """A read request as the driver sends it."""

    index: int
    addr: int
    count: int


@dataclass(frozen=True)
class Beat:
    """A beat as it left the ``resp`` stream."""

    data: int
    resp: int
    last: int
    cycle: int


@dataclass(frozen=True)
class Expected:
    """What beat ``beat`` of ``request`` must carry (``data`` is ignored on errors)."""

    request: Request
    beat: int
    addr: int
    data: int
    resp: Resp
    last: bool


# --- model ----------------------------------------------------------------------------------

class ReaderModel:
    """The reader's contract, computed from the model memory.

    Parameters
    ----------
    image : PhysMem
        The memory the testbench memory was loaded from.
    params : AxiParams
        Bus widths of the design.
    """

    def __init__(self, image: PhysMem, params: AxiParams):
        self.image = image
        self.lanes = params.beat_bytes
        self.next_burst = 0
        self._beat_errors: dict[tuple[int, int], Resp] = {}

    def split(self, addr: int, count: int) -> list[tuple[int, int]]:
        """AXI bursts ``(address, beats)`` for ``count`` beats from ``addr``: at most 256
        beats each, none crossing a 4 KiB boundary."""
        addr &= ~(self.lanes - 1)
        out = []
        while count:
            room = (BOUNDARY - addr % BOUNDARY) // self.lanes
            beats = min(count, room, MAX_BURST_BEATS)
            out.append((addr, beats))
            addr += beats * self.lanes
            count -= beats
        return out

    def inject(self, burst: int, beat: int, resp: Resp):
        """Expect ``resp`` on beat ``beat`` of read burst number ``burst``."""
        self._beat_errors[(burst, beat)] = resp

    def resync(self, next_burst: int):
        """Continue burst numbering at ``next_burst`` (after a reset dropped bursts)."""
        self.next_burst = next_burst

    def beat(self, addr: int) -> tuple[int, Resp]:
        """Data and response of a full-width beat at ``addr`` read from the image."""
        data = 0
        resp = Resp.OKAY
        for i in range(self.lanes // 8):
            try:
                data |= self.image.read(addr + 8 * i) << (64 * i)
            except BusError as err:
                code = Resp[err.resp]
                if resp == Resp.OKAY or code == Resp.DECERR:
                    resp = code
        return (0, resp) if resp != Resp.OKAY else (data, resp)

    def accept(self, req: Request) -> tuple[list[tuple[int, int, int]], list[Expected]]:
        """Bursts ``(index, address, beats)`` and beats a request accepted now produces."""
        bursts = []
        beats = []
        for addr, n in self.split(req.addr, req.count):
            index = self.next_burst
            self.next_burst += 1
            bursts.append((index, addr, n))
            for k in range(n):
                beat_addr = addr + k * self.lanes
                data, resp = self.beat(beat_addr)
                injected = self._beat_errors.pop((index, k), None)
                if injected is not None:
                    data, resp = 0, injected
                beats.append(Expected(req, len(beats), beat_addr, data, resp,
                                      len(beats) == req.count - 1))
        return bursts, beats


# --- driver and monitors -------------------------------------------------------------------

class RequestDriver(StreamDriver):
    """Drives the ``req`` stream with :class:`Request` items, with random idle cycles."""

    def __init__(self, dut, ticker: Ticker, codec: "Codec", *, rng: random.Random,
                 idle: float = 0.0):
        super().__init__(dut, "req", ticker,
                         lambda r: codec.pack(addr=r.addr, count=r.count), rng=rng, idle=idle)


class ResponseMonitor(StreamMonitor):
    """Takes beats off the ``resp`` stream, holding ``ready`` low on a ``stall`` fraction of
    cycles (or always, while :attr:`hold` is set), and reports each :class:`Beat` to
    ``on_beat`` callbacks."""

    def __init__(self, dut, ticker: Ticker, codec: "Codec", *, rng: random.Random,
                 stall: float = 0.0):
        super().__init__(dut, "resp", ticker, rng=rng, stall=stall)
        self.codec = codec
        self.on_beat: list[Callable[[Beat], None]] = []
        self.on_item.append(self._beat)

    @property
    def beats(self) -> int:
        return self.items

    def _beat(self, raw: int, cycle: int):
        fields = self.codec.unpack(raw)
        beat = Beat(fields["data"], fields["resp"], fields["last"], cycle)
        for callback in self.on_beat:
            callback(beat)


class AxiReadMonitor:
    """Watches the AXI read channels of the design.

    Checks, cycle by cycle: ``ARVALID`` low during reset; once ``ARVALID`` is high it stays
    high with a stable payload until ``ARREADY``; every AR matches the next burst the model
    expects (address, length, full-width size, INCR); bursts in flight never exceed
    ``max_outstanding``. Records the read latency of every burst (cycles from the AR
    handshake edge to the first cycle its first beat is valid) and the highest number of
    bursts in flight.
    """

    def __init__(self, dut, ticker: Ticker, params: AxiParams, max_outstanding: int,
                 fail: Callable[[str], None]):
        self.ticker = ticker
        self.reset = dut.rst
        self.ar = {name: getattr(dut, f"m_axi__ar{name}")
                   for name in ("valid", "ready", "addr", "len", "size", "burst", "id")}
        self.rvalid = dut.m_axi__rvalid
        self.rready = dut.m_axi__rready
        self.rlast = dut.m_axi__rlast
        self.size = params.size
        self.max_outstanding = max_outstanding
        self.fail = fail
        self.expected: deque[tuple[int, int, int]] = deque()
        self.issued: deque[int] = deque()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.latencies: list[int] = []
        self.bursts = 0
        #: Beats of the current burst already transferred (0 between bursts).
        self.beat_in_burst = 0
        #: ``ARVALID`` high and ``ARREADY`` low in the last cycle: the address is still
        #: waiting in the current one.
        self.ar_stalled = False
        self._timed = False
        self._held = None
        self._ar_fire = self._r_fire = self._r_last = False
        ticker.edge.append(self._edge)
        ticker.sample.append(self._sample)

    def expect(self, bursts: list[tuple[int, int, int]]):
        self.expected.extend(bursts)

    def flush(self):
        """Forget bursts in flight and expected (on reset)."""
        self.expected.clear()
        self.issued.clear()
        self.in_flight = 0
        self.beat_in_burst = 0
        self._timed = False

    def _edge(self):
        if self._ar_fire:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if self.in_flight > self.max_outstanding:
                self.fail(f"{self.in_flight} bursts in flight, more than max_outstanding="
                          f"{self.max_outstanding}")
            self.issued.append(self.ticker.cycle)
        if self._r_fire and self._r_last and self.in_flight:
            self.in_flight -= 1

    def _sample(self):
        arvalid = self.ar["valid"].value == 1
        self.ar_stalled = False
        if self.reset.value == 1:
            if arvalid:
                self.fail("ARVALID high during reset")
            self._held = None
            self._ar_fire = self._r_fire = False
            return
        payload = None
        if arvalid or self._held is not None:
            payload = tuple(self.ar[n].value.to_unsigned()
                            for n in ("addr", "len", "size", "burst", "id"))
        if self._held is not None and (not arvalid or payload != self._held):
            self.fail(f"AR changed before ARREADY: held {self._held}, now valid={int(arvalid)} "
                      f"{payload}")
        self._ar_fire = arvalid and self.ar["ready"].value == 1
        self._held = payload if arvalid and not self._ar_fire else None
        self.ar_stalled = self._held is not None
        if self._ar_fire:
            self._check_ar(*payload)
        rvalid = self.rvalid.value == 1
        if rvalid and self.issued and not self._timed:
            self.latencies.append(self.ticker.cycle - self.issued[0])
            self._timed = True
        self._r_fire = rvalid and self.rready.value == 1
        self._r_last = self.rlast.value == 1
        if self._r_fire:
            self.beat_in_burst = 0 if self._r_last else self.beat_in_burst + 1
            if self._r_last:
                if self.issued:
                    self.issued.popleft()
                self._timed = False

    def _check_ar(self, addr, length, size, burst, arid):
        self.bursts += 1
        if not self.expected:
            self.fail(f"unexpected AR addr={addr:#x} len={length}")
            return
        index, want_addr, beats = self.expected.popleft()
        if (addr, length + 1, size, burst) != (want_addr, beats, self.size, 1):
            self.fail(f"read burst {index}: expected AR addr={want_addr:#x} beats={beats} "
                      f"size={self.size} INCR, got addr={addr:#x} beats={length + 1} "
                      f"size={size} burst={burst}")


class Checker:
    """Compares each beat leaving the reader with the next expected one."""

    def __init__(self, seed: int, limit: int = 10):
        self.seed = seed
        self.limit = limit
        self.expected: deque[Expected] = deque()
        self.errors: list[str] = []
        self.checked = 0
        self.error_beats = 0

    def expect(self, beats: list[Expected]):
        self.expected.extend(beats)

    def flush(self):
        """Drop every outstanding expectation (the reset abandoned those requests)."""
        dropped = len(self.expected)
        self.expected.clear()
        return dropped

    def fail(self, message: str):
        if len(self.errors) < self.limit:
            self.errors.append(message)

    def check(self, beat: Beat):
        if not self.expected:
            self.fail(f"cycle {beat.cycle}: beat with no request outstanding "
                      f"(resp={beat.resp} last={beat.last} data={beat.data:#x})")
            return
        want = self.expected.popleft()
        self.checked += 1
        where = (f"request {want.request.index} (addr={want.request.addr:#x} "
                 f"count={want.request.count}) beat {want.beat} at {want.addr:#x}")
        if beat.resp != want.resp:
            self.fail(f"{where}: RRESP {Resp(beat.resp).name}, expected {want.resp.name}")
        elif want.resp == Resp.OKAY and beat.data != want.data:
            self.fail(f"{where}: data {beat.data:#x}, expected {want.data:#x}")
        if beat.last != want.last:
            self.fail(f"{where}: last={beat.last}, expected {int(want.last)}")
        if want.resp != Resp.OKAY:
            self.error_beats += 1

    def assert_clean(self):
        if self.errors:
            raise AssertionError(f"[seed {self.seed}] {len(self.errors)} mismatch(es):\n  "
                                 + "\n  ".join(self.errors))


# --- testbench ---------------------------------------------------------------------------------

def random_image(rng: random.Random, size: int = MEM_SIZE, fill: float = 0.6) -> PhysMem:
    """A memory with random words in a random ``fill`` fraction of its pages."""
    image = PhysMem(size)
    pages = [p for p in range(size // PAGE_SIZE) if rng.random() < fill]
    nprng = np.random.default_rng(rng.getrandbits(64))
    rows = image.reserve(np.array(pages, dtype=np.int64))
    image.pool[rows] = nprng.integers(0, 1 << 64, size=(len(pages), 512), dtype=np.uint64)
    return image


class TB:
    """The reader, its memory, driver, monitors, model and checker for one cocotb test.

    Parameters
    ----------
    dut : cocotb handle
        The ``axi_reader`` top level.
    name : str
        Test name; with the run's seed it selects this test's random streams.
    image : PhysMem, optional
        Memory contents; a random one by default.
    latency : int
        Read latency of the memory.
    backpressure : bool
        Random stalls everywhere: idle request cycles, ``resp.ready`` low, ``ARREADY`` low,
        ``RVALID`` gaps.
    mem_follows_reset : bool
        Whether the memory is reset with the design (the reader's contract); ``False``
        models a slave that finishes its bursts regardless.
    """

    def __init__(self, dut, name: str, *, image: PhysMem | None = None, latency: int = 1,
                 backpressure: bool = True, mem_follows_reset: bool = True):
        self.dut = dut
        self.name = name
        self.seed = sim_seed()
        self.rng = random.Random(f"{self.seed}:{name}")
        params = sim_params()
        self.params = AxiParams(data_width=params["data_width"])
        self.max_outstanding = params["max_outstanding"]
        self.lanes = self.params.beat_bytes
        self.log = dut._log
        self.log.info("%s: seed %d, params %s, latency %d, backpressure %s", name, self.seed,
                      params, latency, backpressure)
        self.image = image if image is not None else random_image(self.rng)

        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 0
        self.mem = AxiMem(dut, dut.clk, dut.rst if mem_follows_reset else None,
                          image=self.image, latency=latency, seed=self.rng.getrandbits(32))
        stall = 0.3 if backpressure else 0.0
        self.mem.set_backpressure(ar=stall, r=stall)
        self.model = ReaderModel(self.image, self.params)
        self.checker = Checker(self.seed)
        self.ticker = Ticker(dut.clk)
        self.driver = RequestDriver(dut, self.ticker, Codec(read_request_layout(self.params)),
                                    rng=random.Random(self.rng.getrandbits(64)), idle=stall)
        self.monitor = ResponseMonitor(dut, self.ticker,
                                       Codec(read_response_layout(self.params)),
                                       rng=random.Random(self.rng.getrandbits(64)),
                                       stall=stall)
        self.axi = AxiReadMonitor(dut, self.ticker, self.params, self.max_outstanding,
                                  self.checker.fail)
        self.driver.on_accept.append(self._accepted)
        self.monitor.on_beat.append(self.checker.check)
        self.requests = 0
        self._wall = time.perf_counter()
        self._start = get_sim_time("ns")

    def _accepted(self, req: Request):
        bursts, beats = self.model.accept(req)
        self.axi.expect(bursts)
        self.checker.expect(beats)

    def request(self, addr: int, count: int) -> Request:
        """Queue a read request."""
        req = Request(self.requests, addr, count)
        self.requests += 1
        self.driver.send(req)
        return req

    def poison(self, addr: int, resp: Resp) -> int:
        """Make the 64-bit word at ``addr`` answer ``resp``, in the model and the memory."""
        self.image.poison(addr, resp.name)
        self.mem.fail_address(addr, resp)
        return addr

    def inject(self, burst: int, beat: int, resp: Resp):
        """Make beat ``beat`` of read burst number ``burst`` answer ``resp``."""
        self.mem.fail_read_beat(burst, beat, resp)
        self.model.inject(burst, beat, resp)

    def random_request(self) -> tuple[int, int]:
        """A random ``(addr, count)``: often near a 4 KiB boundary, sometimes unaligned in
        the low bits, sometimes running past the end of memory."""
        rng = self.rng
        count = rng.choice([rng.randint(1, 8), rng.randint(1, 64), rng.randint(1, 256)])
        if rng.random() < 0.05:
            addr = self.mem.size - rng.randint(0, 16) * self.lanes
        else:
            page = rng.randrange(self.mem.size // PAGE_SIZE)
            offset = (PAGE_SIZE - rng.randint(1, 64) * self.lanes if rng.random() < 0.5
                      else rng.randrange(PAGE_SIZE // self.lanes) * self.lanes)
            addr = page * PAGE_SIZE + offset
        if rng.random() < 0.1:
            addr |= rng.randrange(self.lanes)
        return addr, count

    async def reset(self, cycles: int = 4, *, now: bool = False):
        """Hold reset for ``cycles`` cycles; everything in flight is abandoned.

        Reset rises after the next clock edge, or in the current cycle with ``now`` (call
        it right after a rising edge). Returns the number of expected beats dropped.
        """
        if not now:
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 1
        self.driver.clear()
        await ClockCycles(self.dut.clk, cycles)
        dropped = self.checker.flush()
        self.axi.flush()
        self.model.resync(len(self.mem.reads))
        self.dut.rst.value = 0
        return dropped

    async def drain(self, timeout_cycles: int | None = None):
        """Wait until every queued request has been answered, then check the results."""
        if timeout_cycles is None:
            beats = sum(r.count for r in self.driver.queue) + len(self.checker.expected)
            timeout_cycles = 4000 + 20 * beats + 100 * self.mem.latency
        waited = 0
        while self.driver.pending or self.checker.expected:
            if waited >= timeout_cycles or self.checker.errors:
                break
            await ClockCycles(self.dut.clk, 16)
            waited += 16
        self.checker.assert_clean()
        if self.checker.expected or self.driver.pending:
            raise AssertionError(
                f"[seed {self.seed}] hang: {len(self.checker.expected)} beats and "
                f"{self.driver.pending} requests still outstanding after {waited} cycles; "
                f"next expected: "
                f"{self.checker.expected[0] if self.checker.expected else None}")
        await ClockCycles(self.dut.clk, 8)
        self.checker.assert_clean()

    def report(self):
        """Log and record the simulation speed, and check the memory image is intact."""
        cycles = (get_sim_time("ns") - self._start) / CLOCK_NS
        wall = time.perf_counter() - self._wall
        rate = cycles / wall if wall else 0.0
        self.log.info("%s: %d requests, %d beats checked (%d error beats), %d cycles in "
                      "%.2f s: %.0f cycles/s", self.name, self.requests, self.checker.checked,
                      self.checker.error_beats, cycles, wall, rate)
        record_metric("cycles_per_second", round(rate))
        record_metric("cycles", int(cycles))
        diff = self.mem.dump().diff(self.image)
        assert not diff, f"[seed {self.seed}] memory image changed by reads: {diff}"


# --- tests ---------------------------------------------------------------------------------

@cocotb.test()
@cocotb.parametrize(latency=[1, 10, 30])
async def random_requests(dut, latency):
    """Random requests with backpressure everywhere, poisoned words, injected beat errors and
    beats past the end of memory; every beat and every AR checked."""
    tb = TB(dut, f"random_requests/latency={latency}", latency=latency)
    await tb.reset()
    rng = tb.rng
    poisoned = [tb.poison(rng.randrange(tb.image.size // 8) * 8,
                          rng.choice([Resp.SLVERR, Resp.DECERR])) for _ in range(6)]
    requests = [(addr & ~(tb.lanes - 1), rng.randint(1, 4)) for addr in poisoned[:3]]
    requests += [tb.random_request() for _ in range(scale(40))]
    next_burst = tb.model.next_burst
    for addr, count in requests:
        bursts = tb.model.split(addr, count)
        for k, (_, beats) in enumerate(bursts):
            if rng.random() < 0.1:
                tb.inject(next_burst + k, rng.randrange(beats),
                          rng.choice([Resp.SLVERR, Resp.DECERR]))
        next_burst += len(bursts)
        tb.request(addr, count)
    await tb.drain()
    assert min(tb.axi.latencies) >= latency, (
        f"[seed {tb.seed}] a first beat came {min(tb.axi.latencies)} cycles after its AR, "
        f"memory latency is {latency}")
    assert tb.checker.error_beats >= 3, f"[seed {tb.seed}] too few error beats exercised"
    tb.report()


@cocotb.test()
async def error_on_every_beat(dut):
    """An error response on each beat position of bursts of several lengths comes back on
    exactly that beat, and the other beats of the request are intact."""
    tb = TB(dut, "error_on_every_beat", latency=4)
    await tb.reset()
    rng = tb.rng
    longest = min(MAX_BURST_BEATS, BOUNDARY // tb.lanes)
    plan = [(beats, list(range(beats))) for beats in (1, 2, 3, 8, 16)]
    plan.append((longest, [0, 1, longest // 2, longest - 2, longest - 1]))
    injected = 0
    next_burst = tb.model.next_burst
    for beats, positions in plan:
        for k in positions:
            addr = rng.randrange(tb.image.size // PAGE_SIZE) * PAGE_SIZE
            tb.inject(next_burst, k, Resp.SLVERR if k % 2 == 0 else Resp.DECERR)
            tb.request(addr, beats)
            next_burst += 1
            injected += 1
    # A request split in two bursts: errors on the last beat of the first burst and the
    # first beat of the second are still on the right beats of the request.
    for _ in range(4):
        before = rng.randint(1, 16)
        addr = (rng.randrange(1, tb.image.size // PAGE_SIZE)) * PAGE_SIZE - before * tb.lanes
        count = before + rng.randint(1, 16)
        assert len(tb.model.split(addr, count)) == 2
        tb.inject(next_burst, before - 1, Resp.SLVERR)
        tb.inject(next_burst + 1, 0, Resp.DECERR)
        tb.request(addr, count)
        next_burst += 2
        injected += 2
    await tb.drain()
    assert tb.checker.error_beats == injected, (
        f"[seed {tb.seed}] {tb.checker.error_beats} error beats seen, {injected} injected")
    tb.report()


@cocotb.test()
async def reset_mid_burst(dut):
    """Reset in the middle of a burst, with an address waiting on ARREADY, abandons
    everything in flight; later requests all complete and no beat of an abandoned burst
    ever comes out."""
    tb = TB(dut, "reset_mid_burst", latency=10)
    await tb.reset()
    rng = tb.rng
    with_ar_pending = 0
    for _ in range(scale(4)):
        for _ in range(3 * tb.max_outstanding):
            addr, count = tb.random_request()
            tb.request(addr, max(count, 16))
        # Every request has at least 16 beats: the reset comes during the first ones, while
        # the reader still has addresses to issue.
        target = tb.checker.checked + rng.randint(1, 15)
        for _ in range(20000):
            if tb.checker.checked >= target and tb.axi.beat_in_burst > 0:
                break
            await RisingEdge(dut.clk)
        else:
            raise AssertionError(f"[seed {tb.seed}] found no burst in progress to reset")
        # Hold ARREADY low so that the next address waits on it, and reset while a burst is
        # still streaming (or when nothing is streaming any more).
        tb.mem.set_backpressure(r=0.3)
        tb.mem.read_if.ar_channel.pause = True
        while True:
            await RisingEdge(dut.clk)
            if tb.axi.beat_in_burst > 0 and tb.axi.ar_stalled:
                with_ar_pending += 1
                break
            if tb.axi.in_flight == 0:
                break
        dropped = await tb.reset(rng.randint(1, 5), now=True)
        tb.mem.set_backpressure(ar=0.3, r=0.3)
        assert dropped > 0, f"[seed {tb.seed}] the reset came after the last beat"
        for _ in range(8):
            tb.request(*tb.random_request())
        await tb.drain()
    assert with_ar_pending, f"[seed {tb.seed}] no reset hit a burst with ARVALID pending"
    tb.report()


@cocotb.test()
async def stale_beats_discarded(dut):
    """Beats that reach the reader with no burst outstanding are taken and dropped, even
    while the consumer stalls: here the memory ignores the reset and finishes its bursts;
    the reader neither stalls on them nor passes them on, and serves new requests
    afterwards."""
    tb = TB(dut, "stale_beats_discarded", latency=10, mem_follows_reset=False)
    await tb.reset()
    rng = tb.rng
    for _ in range(3):
        tb.request(rng.randrange(tb.image.size // PAGE_SIZE) * PAGE_SIZE, 200)
    while not (tb.checker.checked >= 50 and tb.axi.beat_in_burst > 0):
        await RisingEdge(dut.clk)
    tb.monitor.hold = True
    await tb.reset()
    owed = sum(b.beats for b in tb.mem.reads)
    for _ in range(4000):
        if tb.mem.beats_read == owed and tb.mem.read_if.r_channel.idle():
            break
        await RisingEdge(dut.clk)
    assert tb.mem.beats_read == owed, (
        f"[seed {tb.seed}] the reader stalled the stale beats: {tb.mem.beats_read} of "
        f"{owed} sent")
    await ClockCycles(dut.clk, 4)
    tb.monitor.hold = False
    await ClockCycles(dut.clk, 4)
    tb.checker.assert_clean()
    for _ in range(10):
        tb.request(*tb.random_request())
    await tb.drain()
    tb.report()


@cocotb.test()
async def outstanding_and_throughput(dut):
    """With a slow memory the reader keeps exactly ``max_outstanding`` bursts in flight;
    with a fast one it streams a beat every cycle."""
    tb = TB(dut, "outstanding_and_throughput", latency=30, backpressure=False)
    await tb.reset()
    base = tb.rng.randrange(tb.image.size // PAGE_SIZE // 2) * PAGE_SIZE
    for i in range(8 * tb.max_outstanding):
        tb.request(base + i * 4 * tb.lanes, 4)
    await tb.drain()
    assert tb.axi.peak_in_flight == tb.max_outstanding, (
        f"[seed {tb.seed}] at most {tb.axi.peak_in_flight} bursts in flight, "
        f"max_outstanding is {tb.max_outstanding}")
    # The memory was idle for the first burst and never stalled: latency exactly as set.
    assert tb.axi.latencies[0] == 30 and min(tb.axi.latencies) >= 30, (
        f"[seed {tb.seed}] read latencies {tb.axi.latencies[:8]}..., memory latency 30")

    tb.mem.latency = 1
    first = len(tb.axi.latencies)
    beats = []
    tb.monitor.on_beat.append(beats.append)
    per_request = min(MAX_BURST_BEATS, BOUNDARY // tb.lanes)
    for i in range(8):
        tb.request(base + i * per_request * tb.lanes, per_request)
    await tb.drain()
    span = beats[-1].cycle - beats[0].cycle + 1
    rate = len(beats) / span
    tb.log.info("streaming: %d beats in %d cycles (%.3f beats/cycle)", len(beats), span, rate)
    record_metric("beats_per_cycle", round(rate, 3))
    assert tb.axi.latencies[first] == 1, (
        f"[seed {tb.seed}] first beat {tb.axi.latencies[first]} cycles after its AR, "
        f"memory latency 1")
    assert rate >= 0.95, f"[seed {tb.seed}] only {rate:.3f} beats per cycle when streaming"
    tb.report()
