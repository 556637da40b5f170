"""Co-simulation of :class:`hdl.arbiter.AxiArbiter`: three units' traffic onto one memory.

Each unit port is driven by a cocotbext-axi ``AxiMaster`` running random reads and writes in
a region of its own (a walker-like 64-bit unit with single-word writes, a full-width unit
with bursts, a 64-bit unit with bursts); every read is checked against a shadow memory and
the final memory image against the shadow. Monitors check, every cycle, that a ``snoop``
transfer is exactly a downstream write-address handshake of the snooped unit with its
address and data, on offer since the cycle before, and that no other unit's write address
is accepted while ``lock`` is high (unless the walker's own write waits for
``snoop.ready``).
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster

from cosim.axi_mem import AxiMem
from cosim.runner import record_metric, scale, sim_params, sim_seed

CLOCK_NS = 10
REGION = 1 << 16
#: (unit, region base) in the arbiter's priority order (see tests/test_cosim_arbiter.py).
REGIONS = {"walker": 0, "scanner": REGION, "prefetch": 2 * REGION}



class TB:
    def __init__(self, dut):
        self.dut = dut
        self.seed = sim_seed()
        self.rng = random.Random(self.seed)
        self.params = sim_params()
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 0
        dut.walker_lock.value = 0
        dut.snoop__ready.value = 1
        self.mem = AxiMem(dut, dut.clk, dut.rst, size=4 * REGION, latency=3,
                          seed=self.rng.getrandbits(32))
        self.mem.set_backpressure(ar=0.2, r=0.2, aw=0.2, w=0.2, b=0.2)
        self.shadow = bytearray(4 * REGION)
        self.masters = {
            name: AxiMaster(AxiBus.from_prefix(dut, name, bus_separator="__"), dut.clk,
                            dut.rst, max_burst_len=1 if name == "walker" else 16)
            for name in REGIONS}
        self.snooped = []
        self.walker_writes = []
        self.errors = []
        self.lock_cycles = 0
        self.offered = False                 # the walker's write was on offer, not taken
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.rst.value == 1:
                continue
            aw = dut.m_axi__awvalid.value == 1 and dut.m_axi__awready.value == 1
            addr = int(dut.m_axi__awaddr.value) if aw else None
            offered, self.offered = self.offered, (
                dut.walker__awvalid.value == 1 and dut.walker__wvalid.value == 1
                and dut.walker__awready.value == 0)
            if dut.snoop__valid.value == 1 and dut.snoop__ready.value == 1:
                payload = dut.snoop__payload.value.to_unsigned()
                pa = len(dut.m_axi__awaddr)
                s_addr, s_data = payload & ((1 << pa) - 1), payload >> pa
                if not aw or addr != s_addr:
                    self.errors.append(f"snoop {s_addr:#x} without its write address "
                                       f"(AW {aw}, {addr})")
                if not offered:
                    self.errors.append(f"snoop {s_addr:#x} not on offer the cycle before")
                if dut.walker__wdata.value.to_unsigned() != s_data:
                    self.errors.append(f"snoop data {s_data:#x} is not the walker's word")
                self.snooped.append((s_addr, s_data))
            elif aw and addr < REGION:
                self.errors.append(f"walker write {addr:#x} accepted without a snoop")
            if dut.walker_lock.value == 1:
                self.lock_cycles += 1
                # (allowed while the walker's own write, on offer since the cycle before,
                # waits for snoop.ready)
                waits = offered and dut.snoop__ready.value == 0
                if aw and addr >= REGION and not waits:
                    self.errors.append(f"write {addr:#x} of another unit during lock")

    async def worker(self, name: str, base: int, size: int, ops: int):
        rng = random.Random(self.rng.getrandbits(64))
        master = self.masters[name]
        for _ in range(ops):
            if name == "walker":
                addr = base + 8 * rng.randrange(size // 8)
                length = 8
            else:
                length = rng.choice([8, 16, 24, 64, 200, 512])
                addr = base + rng.randrange(size - length)
                if rng.random() < 0.5:
                    addr &= ~7
            if rng.random() < 0.5:
                data = rng.randbytes(length)
                await master.write(addr, data)
                self.shadow[addr:addr + length] = data
                if name == "walker":
                    self.walker_writes.append((addr, int.from_bytes(data, "little")))
            else:
                got = (await master.read(addr, length)).data
                want = bytes(self.shadow[addr:addr + length])
                if got != want:
                    self.errors.append(f"{name} read {addr:#x}+{length}: data differs")

    async def toggles(self, stop):
        """Random ``lock`` periods and ``snoop.ready`` gaps."""
        dut = self.dut
        while not stop():
            await RisingEdge(dut.clk)
            if self.rng.random() < 0.02:
                dut.walker_lock.value = 1 - int(dut.walker_lock.value)
            dut.snoop__ready.value = int(self.rng.random() >= 0.2)
        dut.walker_lock.value = 0
        dut.snoop__ready.value = 1


@cocotb.test()
async def random_traffic(dut):
    """Random reads and writes of three units at once; data, image, snoop and lock checked."""
    tb = TB(dut)
    await ClockCycles(dut.clk, 2)
    ops = scale(150)
    tasks = []
    for name, base in REGIONS.items():
        # two workers per unit, in halves of its region, so reads and writes overlap
        for half in range(2):
            tasks.append(cocotb.start_soon(tb.worker(name, base + half * REGION // 2,
                                                     REGION // 2, ops)))
    done = []
    cocotb.start_soon(tb.toggles(lambda: bool(done)))
    for t in tasks:
        await t
    done.append(True)
    await ClockCycles(dut.clk, 20)
    assert not tb.errors, f"[seed {tb.seed}] " + "\n".join(tb.errors[:10])
    image = tb.mem.peek(0, 3 * REGION)
    assert image == bytes(tb.shadow[:3 * REGION]), f"[seed {tb.seed}] memory image differs"
    assert sorted(tb.snooped) == sorted(tb.walker_writes), \
        f"[seed {tb.seed}] snooped writes differ from the walker's writes"
    assert tb.lock_cycles > 0
    record_metric("walker_writes", len(tb.walker_writes))
    record_metric("lock_cycles", tb.lock_cycles)
