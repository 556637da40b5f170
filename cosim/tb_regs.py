"""Co-simulation of the register block (:class:`hdl.regs.Regs`) under cocotbext-axi's
AXI4-Lite master, against the map's model of the register file.

Started from ``tests/test_cosim_regs.py`` through :mod:`cosim.runner`; the harness seed
(``seed`` parameter: window contents) and the run seed come from the environment. The
design is :class:`RegsHarness`: the block with its windows served by memories, every other
port at the top level.

Pieces:

* :class:`Units` plays the units: random values on the ``RO``/``RWU`` inputs (changed
  between transactions), set pulses on ``IRQ_CAUSE``, and a monitor that records every
  write strobe with its value, once per clock;
* :class:`RegisterFile` (from :mod:`thermocline.regmap`) says what every read and write
  answers;
* :class:`TB` issues the traffic and checks every response, every strobe, every held
  register's output and the interrupt line against the model.

Every failure names the seed; ``THERMOCLINE_SEED=<seed>`` reproduces the run.
"""

import random
import time

import cocotb
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from cosim.runner import record_metric, scale, sim_params, sim_seed
from hdl.regs import Regs
from thermocline.regmap import ADDR_WIDTH, REGMAP, RegisterFile

CLOCK_NS = 10

__all__ = ["window_contents", "RegsHarness", "STROBED", "UNIT_INPUTS"]

#: Registers whose unit gets a write strobe, and registers whose value a unit supplies.
STROBED = [r for r in REGMAP.registers.values() if r.strobe]
UNIT_INPUTS = [r for r in REGMAP.registers.values()
               if r.access in ("RO", "RWU") and not r.const]


def window_contents(seed: int) -> dict[str, list[int]]:
    """Words of every window of a :class:`RegsHarness` built with ``seed``."""
    rng = random.Random(seed)
    return {name: [rng.getrandbits(32) for _ in range(win.size)]
            for name, win in REGMAP.windows.items()}


class RegsHarness(wiring.Component):
    """:class:`hdl.regs.Regs` with its windows served by memories filled by
    :func:`window_contents`; every other port of the block is a port of the harness."""

    def __init__(self, *, seed: int = 1):
        self._seed = seed
        self.regs = Regs()
        super().__init__({name: member for name, member in self.regs.signature.members.items()
                          if name.upper() not in REGMAP.windows})

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = regs = self.regs
        for name, member in self.signature.members.items():
            if member.is_port:
                m.d.comb += getattr(self, name).eq(getattr(regs, name))
            elif member.flow == wiring.In:
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(regs, name))
            else:
                wiring.connect(m, getattr(regs, name), wiring.flipped(getattr(self, name)))
        for name, words in window_contents(self._seed).items():
            port = getattr(regs, name.lower())
            mem = Memory(shape=32, depth=len(words), init=words)
            m.submodules[f"mem_{name.lower()}"] = mem
            rd = mem.read_port()
            m.d.comb += [rd.addr.eq(port.addr), rd.en.eq(port.re), port.data.eq(rd.data)]
        return m



class Units:
    """The units around the block: input values, set pulses, strobe monitor."""

    def __init__(self, dut, rng: random.Random):
        self.dut = dut
        self.rng = rng
        self.values: dict[str, int] = {}
        self.strobes: list[tuple[str, int]] = []
        self.errors: list[str] = []
        cocotb.start_soon(self._monitor())

    def port(self, name: str, member: str):
        return getattr(self.dut, f"{name.lower()}__{member}")

    def randomize(self):
        """New random values on every unit input (between transactions)."""
        for reg in UNIT_INPUTS:
            value = self.rng.getrandbits(reg.width)
            self.values[reg.name] = value
            self.port(reg.name, "r").value = value

    def value(self, name: str) -> int:
        return self.values[name]

    async def pulse_set(self, name: str, bits: int):
        """Set ``bits`` of a W1C register for one cycle."""
        await RisingEdge(self.dut.clk)
        self.port(name, "set").value = bits
        await RisingEdge(self.dut.clk)
        self.port(name, "set").value = 0

    async def _monitor(self):
        edge, ro = RisingEdge(self.dut.clk), ReadOnly()
        ports = [(r, self.port(r.name, "we"), self.port(r.name, "w")) for r in STROBED]
        while True:
            await edge
            await ro
            for reg, we, w in ports:
                if int(we.value):
                    self.strobes.append((reg.name, int(w.value)))
                elif reg.access in ("WO", "RWU") and int(w.value):
                    self.errors.append(f"{reg.name}.w is {int(w.value):#x} outside its strobe")


class TB:
    """Master, units, model and checks for one run."""

    def __init__(self, dut, name: str):
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster

        self.dut = dut
        self.seed = sim_seed()
        self.params = sim_params()
        self.rng = random.Random(f"{self.seed}:{name}")
        dut._log.info("test %s: seed %d, params %s", name, self.seed, self.params)
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 1
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"),
                                    dut.clk, dut.rst)
        self.units = Units(dut, self.rng)
        self.windows = window_contents(self.params["seed"])
        self.model = RegisterFile()
        self.transactions = 0
        for reg in REGMAP.registers.values():
            if reg.access == "W1C":
                self.units.port(reg.name, "set").value = 0

    def fail(self, message: str):
        raise AssertionError(f"[seed {self.seed}] {message}")

    async def reset(self, cycles: int = 3):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        self.model.reset()
        self.units.strobes.clear()

    def window_value(self, name: str, index: int) -> int:
        return self.windows[name][index]

    async def read(self, addr: int):
        """A read of the word at ``addr``, checked."""
        want = self.model.read(addr, self.units.value, self.window_value)
        resp = await self.master.read(addr & ~3, 4)
        self.transactions += 1
        got = (int.from_bytes(resp.data, "little"), int(resp.resp))
        if got != want:
            self.fail(f"read {addr:#05x}: got {got[0]:#x}/{got[1]}, model "
                      f"{want[0]:#x}/{want[1]}")

    async def write(self, addr: int, first: int, data: bytes):
        """A write of ``data`` to bytes ``first..`` of the word at ``addr``, checked."""
        unit = dict(self.units.values)
        strb = sum(1 << (first + i) for i in range(len(data)))
        word = int.from_bytes(data, "little") << (8 * first)
        self.model.events.clear()
        want = self.model.write(addr, word, strb, unit.__getitem__)
        resp = await self.master.write((addr & ~3) + first, data)
        self.transactions += 1
        await ClockCycles(self.dut.clk, 1)          # let the monitor see every strobe
        if int(resp.resp) != want:
            self.fail(f"write {word:#x} strb {strb:#x} to {addr:#05x}: BRESP "
                      f"{int(resp.resp)}, model {want}")
        if self.units.strobes != self.model.events:
            self.fail(f"write {word:#x} strb {strb:#x} to {addr:#05x}: strobes "
                      f"{self.units.strobes}, model {self.model.events}")
        self.units.strobes.clear()

    async def check_outputs(self, where: str):
        await ReadOnly()
        for name, value in self.model.values.items():
            got = int(self.units.port(name, "w").value)
            if got != value:
                self.fail(f"{where}: {name}.w = {got:#x}, model {value:#x}")
        irq = (self.model.values["IRQ_CAUSE"] & self.model.values["IRQ_MASK"]) != 0
        if int(self.dut.irq.value) != irq:
            self.fail(f"{where}: irq {int(self.dut.irq.value)}, model {int(irq)}")
        if self.units.errors:
            self.fail(f"{where}: {self.units.errors[0]}")
        await RisingEdge(self.dut.clk)

    def random_addr(self) -> int:
        if self.rng.random() < 0.9:
            return self.rng.choice(ADDRESSES)
        return self.rng.randrange(1 << ADDR_WIDTH) & ~3

    async def random_op(self):
        rng = self.rng
        kind = rng.random()
        addr = self.random_addr()
        if kind < 0.45:
            first = rng.choice([0, 0, 0, rng.randint(0, 3)])
            size = rng.choice([4 - first, rng.randint(1, 4 - first)])
            await self.write(addr, first, rng.getrandbits(8 * size).to_bytes(size, "little"))
        elif kind < 0.9:
            await self.read(addr)
        elif kind < 0.95:
            self.units.randomize()
        else:
            bits = rng.getrandbits(32)
            await self.units.pulse_set("IRQ_CAUSE", bits)
            self.model.set_bits("IRQ_CAUSE", bits)


ADDRESSES = REGMAP.addresses()


@cocotb.test()
async def every_register(dut):
    """Every mapped word read after reset, written with random data and read back."""
    tb = TB(dut, "every_register")
    tb.units.randomize()
    await tb.reset()
    await tb.check_outputs("after reset")
    for addr in ADDRESSES:
        await tb.read(addr)
    for addr in ADDRESSES:
        await tb.write(addr, 0, tb.rng.getrandbits(32).to_bytes(4, "little"))
    await tb.check_outputs("after writes")
    for addr in ADDRESSES:
        await tb.read(addr)
    assert REGMAP["ID"].reset == 0x5448524D


@cocotb.test()
async def random_traffic(dut):
    """Random reads and writes (byte, half-word and word strobes; unmapped addresses), unit
    values changing and causes set between transactions, resets between batches."""
    tb = TB(dut, "random_traffic")
    tb.units.randomize()
    await tb.reset()
    start = time.monotonic()
    for batch in range(3):
        for _ in range(scale(150)):
            await tb.random_op()
            if tb.rng.random() < 0.2:
                await tb.check_outputs(f"batch {batch}")
        await tb.check_outputs(f"end of batch {batch}")
        await tb.reset(tb.rng.randint(1, 4))
        await tb.check_outputs(f"reset after batch {batch}")
    seconds = time.monotonic() - start
    record_metric("transactions", tb.transactions)
    record_metric("transactions_per_s", round(tb.transactions / seconds, 1))


@cocotb.test()
async def concurrent_reads_and_writes(dut):
    """Writes to read/write registers overlapping reads of read-only words and windows:
    the channels are independent and every answer still matches the model."""
    tb = TB(dut, "concurrent")
    tb.units.randomize()
    await tb.reset()
    rw = [o for r in REGMAP.registers.values() if r.access == "RW" and r.name != "IRQ_MASK"
          for _, o, _ in r.words]
    ro = [a for a in ADDRESSES
          if (hit := REGMAP.word(a)) is None or hit[0].access in ("RO", "WO")]

    async def writer():
        for _ in range(scale(80)):
            await tb.write(tb.rng.choice(rw), 0, tb.rng.getrandbits(32).to_bytes(4, "little"))

    async def reader():
        for _ in range(scale(80)):
            addr = tb.rng.choice(ro)
            hit = REGMAP.word(addr)
            if hit is not None and hit[0].width == 64:
                addr = hit[0].offset        # LO first (no HI read between another's pair)
            await tb.read(addr)

    w = cocotb.start_soon(writer())
    r = cocotb.start_soon(reader())
    await w
    await r
    await tb.check_outputs("after concurrent traffic")
    if tb.transactions != 2 * scale(80):
        tb.fail(f"{tb.transactions} transactions, expected {2 * scale(80)}")
