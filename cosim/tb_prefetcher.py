"""Co-simulation of :class:`hdl.prefetcher.Prefetcher` against :class:`model.prefetcher.Prefetcher`,
and the codec and guest builder both test benches share.

Started from ``tests/test_cosim_prefetcher.py`` through :mod:`cosim.runner`; the unit's
parameters (``host``, ``pa_bits``, ``max_burst``) and the seed come from the environment.

Pieces, in the cocotb style:

* :class:`~cosim.axi_mem.AxiMem`: the memory, with latency, backpressure and error beats;
* :class:`~cosim.stream.StreamMonitor`: the response records, with random backpressure;
* the driver (:meth:`TB.request`): one request at a time, with its window and direction
  and a randomly withheld ``grant`` (held once ``arvalid`` is seen, as the arbiter does);
* the scoreboard (:meth:`TB.check`): the model's result for the same request on the same
  memory, compared record by record, and the burst addresses against the model's references.

Every failure names the seed and the request.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hdl.prefetcher import PREFETCH_REQ, PREFETCH_RESP, STATUS
from cosim.runner import record_metric, scale
from model.memory import BusError, PhysMem
from model.pagetable import SIZE_2M, SIZE_4K
from model.prefetcher import DIRECTIONS, STATUSES, Prefetcher, PrefetchRequest, PrefetchResult
from model.system import GuestSystem

__all__ = ["encode_request", "decode_records", "Guest", "random_guest", "CountingMem",
           "SYSTEM_SIZE"]

CLOCK_NS = 10
#: Host memory of every guest :func:`random_guest` builds.
SYSTEM_SIZE = (8 << 20) + (8 << 20) + (16 << 20)
#: Start of the densely mapped regions (2 MiB aligned); the kernel half is used too.
BASES = (0x0000_5555_0000_0000, 0xFFFF_8000_1000_0000)

assert tuple(STATUS) == STATUSES, "hardware status codes must follow model.prefetcher.STATUSES"


# --- codec -----------------------------------------------------------------------------------

def encode_request(req: PrefetchRequest) -> int:
    """The ``PREFETCH_REQ`` payload word of a request."""
    return PREFETCH_REQ.pack(GVA=req.gva, CR3=req.cr3, HROOT=req.hroot)


def decode_records(words: list[int]) -> PrefetchResult:
    """The result a request's response records (GPA records, then the ``DONE`` one) say;
    ``reads`` is -1 (the hardware does not count them)."""
    gpas, gvas = [], []
    for k, w in enumerate(words):
        f = PREFETCH_RESP.unpack(w)
        if f["DONE"]:
            assert k == len(words) - 1, "records after the DONE record"
            return PrefetchResult(tuple(gpas), tuple(gvas), STATUSES[f["STATUS"]], -1)
        gpas.append(f["PAGE"] << 12)
        gvas.append(f["GVA"])
    raise AssertionError("no DONE record")


def same(hw: PrefetchResult, model: PrefetchResult) -> bool:
    """The hardware answered what the model did (``dropped``: a prefix of it)."""
    if hw.status == "dropped":
        n = len(hw.gpas)
        return hw.gpas == model.gpas[:n] and hw.gvas == model.gvas[:n]
    return (hw.gpas, hw.gvas, hw.status) == (model.gpas, model.gvas, model.status)


class CountingMem:
    """The model's memory, failing the ``n``-th read from now (as the testbench memory's
    ``fail_read_beat`` does on a beat)."""

    def __init__(self, mem: PhysMem):
        self.mem = mem
        self.reads = 0
        self.fail: dict[int, str] = {}

    def read(self, addr: int) -> int:
        n, self.reads = self.reads, self.reads + 1
        if n in self.fail:
            raise BusError(addr, self.fail.pop(n))
        return self.mem.read(addr)


# --- guests ----------------------------------------------------------------------------------

class Guest:
    """A guest built by :func:`random_guest`: the system, its space, and fault addresses."""

    def __init__(self, system: GuestSystem, space, faults: list[int]):
        self.system, self.space, self.faults = system, space, faults

    def request(self, gva: int) -> PrefetchRequest:
        return PrefetchRequest(gva, self.space.root, self.system.hroot)


def random_guest(rnd: random.Random, host: str = "ept", pa_bits: int = 52, *,
                 bad: int = 0) -> Guest:
    """A guest with two densely mapped 2 MiB regions (holes, non-resident pages, pages whose
    host entry is malformed), a 2 MiB guest page, and ``bad`` defects on the walk paths:
    reserved bits in guest or host table entries, poisoned words (SLVERR or DECERR).
    Deterministic for a given ``rnd`` state."""
    s = GuestSystem(guest_ram=8 << 20, host=host, pa_bits=pa_bits,
                    shuffle=rnd.randrange(1 << 16))
    assert s.mem.size == SYSTEM_SIZE
    sp = s.new_space()
    faults = []
    data = []
    for base in BASES:
        region = base + rnd.randrange(64) * SIZE_2M
        hole = rnd.random() * 0.4
        for i in range(512):
            va = region + i * SIZE_4K
            faults.append(va + rnd.randrange(SIZE_4K))
            if rnd.random() < hole:
                continue
            gpa = s.alloc_data()
            sp.map(va & ((1 << 48) - 1), gpa, XD=rnd.random() < 0.3)
            data.append((va, gpa))
    big = BASES[0] + 100 * SIZE_2M
    sp.map(big & ((1 << 48) - 1), s.alloc_data(SIZE_2M), SIZE_2M)
    faults += [big + rnd.randrange(SIZE_2M), BASES[0] + (1 << 39)]      # no leaf table; unmapped
    away = rnd.random() * 0.6
    for _, gpa in data:
        r = rnd.random()
        if r < away:                                                    # swapped out
            if rnd.random() < 0.5:
                s.host.unmap(gpa)
            else:
                s.host.protect(gpa, **(dict(R=0, W=0, X=0) if host == "ept" else dict(P=0)))
        elif r < away + 0.05:                                           # malformed host leaf
            e = s.host.read_entry(gpa, 1)
            if host == "ept":
                s.host.write_entry(gpa, 1, (e & ~1) | 2)                # W without R
            elif pa_bits < 52:
                s.host.write_entry(gpa, 1, e | 1 << pa_bits)
    if pa_bits < 52:                                                    # malformed guest PTEs
        for va, _ in rnd.sample(data, len(data) // 20):
            e = sp.read_entry(va & ((1 << 48) - 1), 1)
            sp.write_entry(va & ((1 << 48) - 1), 1, e | 1 << rnd.randrange(pa_bits, 52))
    for _ in range(bad):
        _defect(rnd, s, sp, data, pa_bits)
    return Guest(s, sp, faults)


def _defect(rnd, s: GuestSystem, sp, data, pa_bits: int):
    """One defect on the path of a random mapped page (skipped if an earlier defect makes
    that path unreadable)."""
    va, gpa = rnd.choice(data)
    va &= (1 << 48) - 1
    kind = rnd.randrange(4)
    level = rnd.choice([1, 1, 1, 2, 2, 3, 4])      # most defects low: fewer whole-tree faults
    try:
        if kind == 0:                               # poisoned guest entry (walk or window)
            addr = s.gphys.hpa(sp.entry_addr(va, level))
            s.mem.poison(addr, rnd.choice(["SLVERR", "DECERR"]))
        elif kind == 1:                             # poisoned host entry
            target = gpa if rnd.random() < 0.5 else sp.entry_addr(va, 1)
            s.mem.poison(s.host.entry_addr(target, level), rnd.choice(["SLVERR", "DECERR"]))
        elif kind == 2:                             # a reserved bit in a guest table entry
            level = max(level, 2)
            e = sp.read_entry(va, level)
            if level == 4 or pa_bits == 52:
                e |= 1 << 7 | (1 << 13 if level < 4 else 0)   # PS in a PML4E; a big page's
            else:                                             # reserved bit 13
                e |= 1 << rnd.randrange(pa_bits, 52)
            sp.write_entry(va, level, e)
        else:                                       # a host entry mapping a guest table
            table = sp.entry_addr(va, rnd.randint(1, 4)) & ~0xFFF
            e = s.host.read_entry(table, level)
            if s.host.fmt.name == "ept":
                e = (e & ~1) | 2                    # write without read
            elif level == 4 or pa_bits == 52:
                level, e = 4, s.host.read_entry(table, 4) | 1 << 7
            else:
                e |= 1 << pa_bits
            s.host.write_entry(table, level, e)
    except (BusError, TypeError):
        pass


def random_setting(rnd: random.Random) -> tuple[int, str]:
    """A window and direction, mostly small windows."""
    window = rnd.choice([1, 2, 3, 5, 8, 8, 16, 31, rnd.randint(1, 511)])
    return window, rnd.choice(DIRECTIONS)


# --- cocotb --------------------------------------------------------------------------------

class TB:
    """The prefetcher, its memory, the driver and the scoreboard for one cocotb test."""

    def __init__(self, dut, name: str, *, latency: int = 1, stall: float = 0.25):
        from cosim.axi_mem import AxiMem
        from cosim.runner import sim_params, sim_seed
        self.dut = dut
        self.seed = sim_seed()
        self.rng = random.Random(f"{self.seed}:{name}")
        self.params = sim_params()
        dut._log.info("%s: seed %d, params %s, latency %d", name, self.seed, self.params,
                      latency)
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 0
        dut.req__valid.value = 0
        dut.resp__ready.value = 0
        dut.drop.value = 0
        dut.grant.value = 1
        self.mem = AxiMem(dut, dut.clk, dut.rst, size=SYSTEM_SIZE, latency=latency,
                          seed=self.rng.getrandbits(32))
        self.mem.set_backpressure(ar=stall, r=stall)
        self.stall = stall
        self.checked = 0
        self.cycles = 0

    def load(self, guest: Guest):
        self.guest = guest
        self.mem.clear()
        self.mem.load(guest.system.mem)

    async def reset(self, cycles: int = 3):
        self.dut.rst.value = 1
        self.dut.req__valid.value = 0
        self.dut.drop.value = 0
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 1)

    async def request(self, req: PrefetchRequest, window: int, direction: str, *,
                      drop_at: int | None = None, reset_at: int | None = None,
                      limit: int = 40_000) -> PrefetchResult | None:
        """Run one request to its ``DONE`` record and decode its records. ``drop_at`` /
        ``reset_at``: pulse ``drop`` / reset that many cycles after the request is taken
        (a reset returns ``None``). ``grant`` is withheld on random cycles, but held while
        ``arvalid`` waits; ``resp.ready`` is withheld on random cycles."""
        dut, rng = self.dut, self.rng
        dut.window.value = window
        dut.direction.value = DIRECTIONS.index(direction)
        dut.req__payload.value = encode_request(req)
        dut.req__valid.value = 1
        words: list[int] = []
        taken = None
        for cycle in range(limit):
            await ReadOnly()
            hold = dut.m_axi__arvalid.value == 1 and dut.m_axi__arready.value == 0
            fired = taken is None and dut.req__ready.value == 1
            done = False
            if dut.resp__valid.value == 1 and dut.resp__ready.value == 1:
                words.append(dut.resp__payload.value.to_unsigned())
                done = bool(PREFETCH_RESP.DONE.get(words[-1]))
            await RisingEdge(dut.clk)
            self.cycles += 1
            if fired:
                taken = cycle
                dut.req__valid.value = 0
            if done:
                dut.resp__ready.value = 0
                return decode_records(words)
            since = None if taken is None else cycle - taken
            if reset_at is not None and since == reset_at:
                await self.reset(rng.randint(1, 3))
                return None
            dut.drop.value = int(drop_at is not None and since == drop_at)
            dut.grant.value = int(hold or rng.random() >= self.stall)
            dut.resp__ready.value = int(rng.random() >= self.stall)
        raise AssertionError(f"[seed {self.seed}] hang: no DONE record for {req} "
                             f"(window {window} {direction}) after {limit} cycles")

    def expect(self, req: PrefetchRequest, window: int, direction: str):
        """The model's result and references for ``req`` on the guest's memory."""
        model = Prefetcher(self.guest.system.mem, window=window, direction=direction,
                           host=self.params["host"], pa_bits=self.params["pa_bits"])
        return model.prefetch(req), model.log

    async def run(self, req, window, direction, **kw) -> PrefetchResult | None:
        """:meth:`request`, checked against the model: the records, and the addresses read
        (equal; a prefix for a dropped or reset request)."""
        first = len(self.mem.reads)
        hw = await self.request(req, window, direction, **kw)
        want, log = self.expect(req, window, direction)
        where = f"[seed {self.seed}] {req} window {window} {direction}"
        addrs = [b.beat_addr(n) for b in self.mem.reads[first:] for n in range(b.beats)]
        if hw is None or hw.status == "dropped":
            assert addrs == log[:len(addrs)], f"{where}: references are not a prefix"
        else:
            assert addrs == log, f"{where}: references differ"
        if hw is not None:
            assert same(hw, want), (
                f"{where}:\n  hardware {hw.status} {[hex(g) for g in hw.gpas]}\n"
                f"  model    {want.status} {[hex(g) for g in want.gpas]}")
        self.checked += 1
        return hw

    def finish(self):
        """The memory is unchanged: the unit never writes."""
        assert not self.mem.writes, f"[seed {self.seed}] the prefetcher wrote memory"
        diff = self.mem.dump().diff(self.guest.system.mem)
        assert not diff, f"[seed {self.seed}] memory changed: {diff[:4]}"



def _guest(tb: TB, bad: int = 0) -> Guest:
    return random_guest(random.Random(tb.rng.getrandbits(64)), tb.params["host"],
                        tb.params["pa_bits"], bad=bad)


@cocotb.test()
@cocotb.parametrize(latency=[1, 10])
async def random_faults(dut, latency):
    """Random guests (defects in some), windows and directions, with backpressure and a
    withheld grant: every record and every address read against the model."""
    tb = TB(dut, f"random_faults/latency={latency}", latency=latency)
    await tb.reset()
    for k in range(3):
        tb.load(_guest(tb, bad=k))
        for _ in range(scale(12)):
            await tb.run(tb.guest.request(tb.rng.choice(tb.guest.faults)),
                         *random_setting(tb.rng))
        tb.finish()
    record_metric("requests", tb.checked)
    dut._log.info("random_faults: %d requests in %d cycles", tb.checked, tb.cycles)


@cocotb.test()
async def error_on_every_reference(dut):
    """SLVERR and DECERR on each word one request reads, in turn (walk reads, neighbours'
    host walks, each beat of the window burst): the model's outcome, never a hang."""
    tb = TB(dut, "error_on_every_reference", stall=0.0)
    await tb.reset()
    guest = _guest(tb)
    req = guest.request(guest.faults[200])
    tb.load(guest)
    _, log = tb.expect(req, 8, "both")
    statuses = set()
    for n, addr in enumerate(log):
        for resp in ("SLVERR", "DECERR"):
            tb.mem.clear_errors()
            tb.mem.fail_address(addr, resp)
            guest.system.mem.unpoison()
            guest.system.mem.poison(addr, resp)
            statuses.add((await tb.run(req, 8, "both")).status)
    guest.system.mem.unpoison()
    tb.mem.clear_errors()
    assert "bus_error" in statuses, f"[seed {tb.seed}] no reference error reached the result"
    dut._log.info("error_on_every_reference: %d cases, outcomes %s", 2 * len(log), statuses)


@cocotb.test()
async def drop_and_reset(dut):
    """Drops and resets at random points of requests; the next request is exact."""
    tb = TB(dut, "drop_and_reset", latency=3)
    await tb.reset()
    tb.load(_guest(tb))
    for _ in range(scale(16)):
        at = tb.rng.randrange(300)
        kind = tb.rng.choice(["drop_at", "reset_at"])
        await tb.run(tb.guest.request(tb.rng.choice(tb.guest.faults)),
                     *random_setting(tb.rng), **{kind: at})
        await tb.run(tb.guest.request(tb.rng.choice(tb.guest.faults)),
                     *random_setting(tb.rng))
    tb.finish()
