"""Co-simulation of :class:`hdl.exit_detector.ExitDetector` against
:class:`model.exit_detector.ExitDetector`, and the codec both test benches share.

Started from ``tests/test_cosim_exit_detector.py`` through :mod:`cosim.runner`; the table
sizes and thresholds (the ``ExitConfig`` keywords) and the seed come from the environment.

Pieces, in the cocotb style:

* :class:`~cosim.stream.StreamDriver`: events (accesses and PTE writes) with random idle
  cycles;
* :class:`~cosim.stream.StreamMonitor`: drops, with random backpressure;
* :class:`Scoreboard`: the model, fed every event in the order the hardware took them, and
  every drop compared as it comes out; the counters compared at the end.

:func:`random_events` makes the stimulus: processes that map, touch and unmap pages in a few
leaf tables each, exit (their whole image unmapped in ascending order), bulk unmappings,
remaps and unrelated writes, over more spaces and tables than the hardware holds, so that
both replacement paths run. Every failure names the seed.
"""

import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly

from cosim.runner import scale
from hdl.exit_detector import COUNTERS, EXIT_DROP, EXIT_EVENT
from model.exit_detector import REASONS, Access, Drop, ExitConfig, ExitDetector, PteWrite
from thermocline.layouts import X86_ENTRY

__all__ = ["encode_event", "decode_drop", "counters_of", "random_events", "Scoreboard"]

CLOCK_NS = 10


# --- codec -----------------------------------------------------------------------------------

def encode_event(e: Access | PteWrite) -> int:
    """The ``EXIT_EVENT`` payload word of a model event."""
    if isinstance(e, Access):
        return EXIT_EVENT.pack(KIND=0, USER=int(e.user), INDEX=e.index,
                               TABLE=e.table_gpa >> 12, ASID=e.asid, GVA=e.gva)
    return EXIT_EVENT.pack(KIND=1, INDEX=e.index, TABLE=e.table_gpa >> 12, ASID=e.asid,
                           OLD=e.old, NEW=e.new)


def decode_drop(word: int) -> Drop:
    """The model :class:`~model.exit_detector.Drop` of an ``EXIT_DROP`` payload word."""
    f = EXIT_DROP.unpack(word)
    return Drop(f["ASID"], f["TABLE"] << 12, REASONS[f["REASON"]])


def counters_of(det: ExitDetector) -> dict:
    """The model's counters by the names of the hardware's ``counters`` port."""
    c = det.counters
    return {name: getattr(c, name) for name in COUNTERS}


# --- stimulus --------------------------------------------------------------------------------

_PTE = X86_ENTRY.pack(P=1, RW=1, US=1, A=1)


def _pte(rng: random.Random, present: bool) -> int:
    """A random entry word with P as asked (other bits random, as the model ignores them)."""
    return (rng.getrandbits(64) & ~1) | int(present)


def random_events(rng: random.Random, n: int, *, processes: int = 10,
                  tables: int = 6) -> list:
    """About ``n`` events of ``processes`` guest processes with up to ``tables`` leaf tables
    each (see the module docstring)."""
    procs = []
    for _ in range(processes):
        asid = rng.getrandbits(64) if rng.random() < 0.5 else rng.randrange(16)
        nt = rng.randint(1, tables)
        regions = rng.sample(range(1 << 20), nt)
        procs.append({"asid": asid, "tables": [rng.randrange(1 << 40) for _ in range(nt)],
                      "regions": regions})
    events: list = []

    def loc(p, t, i):
        return p["tables"][t] << 12, (p["regions"][t] * 512 + i) << 12

    while len(events) < n:
        p = rng.choice(procs)
        nt = len(p["tables"])
        r = rng.random()
        if r < 0.3:                                       # accesses
            for _ in range(rng.randint(1, 4)):
                t, i = rng.randrange(nt), rng.randrange(512)
                gpa, gva = loc(p, t, i)
                events.append(Access(p["asid"], gva | rng.randrange(4096), gpa, i,
                                     rng.random() < 0.9))
        elif r < 0.55:                                    # a run of unmappings
            t, i = rng.randrange(nt), rng.randrange(512)
            gpa, _ = loc(p, t, i)
            for k in range(rng.randint(1, 9)):
                if i + k < 512:
                    events.append(PteWrite(p["asid"], gpa, i + k, _pte(rng, True),
                                           _pte(rng, False)))
        elif r < 0.62:                                    # an exit: everything, in order
            for t in sorted(range(nt), key=lambda t: p["regions"][t]):
                gpa, _ = loc(p, t, 0)
                for i in sorted(rng.sample(range(512), rng.randint(1, 12))):
                    events.append(PteWrite(p["asid"], gpa, i, _PTE, 0))
        elif r < 0.72:                                    # the lowest touched page unmapped
            t = min(range(nt), key=lambda t: p["regions"][t])
            i = rng.randrange(8)
            gpa, gva = loc(p, t, i)
            events.append(Access(p["asid"], gva, gpa, i, True))
            events.append(PteWrite(p["asid"], gpa, i, _PTE, 0))
        else:                                             # other writes
            t, i = rng.randrange(nt), rng.randrange(512)
            gpa, _ = loc(p, t, i)
            old, new = rng.choice([(False, True), (True, True), (False, False)])
            events.append(PteWrite(p["asid"], gpa, i, _pte(rng, old), _pte(rng, new)))
    return events[:n]


# --- cocotb pieces ---------------------------------------------------------------------------

class Scoreboard:
    """The model and the drops it expects, in order."""

    def __init__(self, config: ExitConfig, seed: int):
        self.seed = seed
        self.model = ExitDetector(config)
        self.expected: deque = deque()
        self.errors: list[str] = []
        self.checked = 0
        self.events = 0

    def accept(self, event):
        self.events += 1
        self.expected.extend(self.model.feed(event))

    def drop(self, word: int, cycle: int):
        got = decode_drop(word)
        if not self.expected:
            self.errors.append(f"[seed {self.seed}] cycle {cycle}: unexpected drop {got}")
            return
        want = self.expected.popleft()
        self.checked += 1
        if got != want and len(self.errors) < 10:
            self.errors.append(f"[seed {self.seed}] cycle {cycle}, after {self.events} "
                               f"events: hardware {got}, model {want}")


class TB:
    """The detector, an event driver, a drop monitor and a scoreboard."""

    def __init__(self, dut, name: str, *, stall: float = 0.3):
        from cosim.runner import sim_params, sim_seed
        from cosim.stream import StreamDriver, StreamMonitor, Ticker
        self.dut = dut
        self.seed = sim_seed()
        self.rng = random.Random(f"{self.seed}:{name}")
        self.config = ExitConfig(**sim_params())
        dut._log.info("%s: seed %d, params %s", name, self.seed, sim_params())
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 0
        self.ticker = Ticker(dut.clk)
        self.event = StreamDriver(dut, "event", self.ticker, encode_event,
                                  rng=random.Random(self.rng.getrandbits(64)), idle=stall)
        self.drops = StreamMonitor(dut, "drop", self.ticker,
                                   rng=random.Random(self.rng.getrandbits(64)), stall=stall)
        self.board = Scoreboard(self.config, self.seed)
        self.event.on_accept.append(lambda e: self.board.accept(e))
        self.drops.on_item.append(lambda w, c: self.board.drop(w, c))

    async def reset(self, cycles: int = 3):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 1)

    async def drain(self):
        # S + T + 9 cycles per event at most (see hdl/exit_detector.py), plus drop waits.
        per_event = self.config.spaces + self.config.tables + 20
        waited, limit = 0, 200 + per_event * self.event.pending
        while self.event.pending or self.board.expected or self.dut.busy.value:
            if waited >= limit or self.board.errors:
                break
            await ClockCycles(self.dut.clk, 4)
            waited += 4
        await ClockCycles(self.dut.clk, 4)
        if self.board.errors:
            raise AssertionError("\n".join(self.board.errors))
        assert not (self.event.pending or self.board.expected), (
            f"[seed {self.seed}] hang: {self.event.pending} events not taken, "
            f"{len(self.board.expected)} drops owed after {waited} cycles")

    async def counters(self) -> dict:
        await ReadOnly()
        raw = self.dut.counters.value.to_unsigned()
        return {name: (raw >> (32 * i)) & 0xFFFF_FFFF for i, name in enumerate(COUNTERS)}

    async def finish(self):
        hw = await self.counters()
        want = counters_of(self.board.model)
        assert hw == want, f"[seed {self.seed}] counters differ: hardware {hw}, model {want}"
        await ClockCycles(self.dut.clk, 1)


@cocotb.test()
async def random_streams(dut):
    """Random processes over small tables: every drop and the counters against the model."""
    tb = TB(dut, "random_streams")
    await tb.reset()
    n = scale(4000)
    for e in random_events(tb.rng, n, processes=tb.rng.randint(2, 14)):
        tb.event.send(e)
    await tb.drain()
    await tb.finish()
    dut._log.info("random_streams: %d events, %d drops checked", tb.board.events,
                  tb.board.checked)


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset at random points: afterwards the detector behaves as a fresh model."""
    tb = TB(dut, "reset_mid_stream")
    await tb.reset()
    for _ in range(6):
        for e in random_events(tb.rng, 300):
            tb.event.send(e)
        await ClockCycles(dut.clk, tb.rng.randrange(20, 600))
        tb.event.clear()
        await tb.reset(tb.rng.randint(1, 3))
        if tb.board.errors:
            raise AssertionError("\n".join(tb.board.errors))
        tb.board = Scoreboard(tb.config, tb.seed)
        tb.event.on_accept[:] = [lambda e: tb.board.accept(e)]
        tb.drops.on_item[:] = [lambda w, c: tb.board.drop(w, c)]
        for e in random_events(tb.rng, 300):
            tb.event.send(e)
        await tb.drain()
        await tb.finish()
