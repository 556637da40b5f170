# amaranth: UnusedElaboratable=no
"""The AXI4-Lite register block (hdl/regs.py) on the Amaranth simulator, against the map's
own model of the register file (:class:`thermocline.regmap.RegisterFile`).

The block runs inside :class:`cosim.tb_regs.RegsHarness`, which serves every window from a memory filled
from a seed; the testbench plays the units (values on the ``RO`` and ``RWU`` inputs, set
pulses on ``W1C`` registers) and an AXI4-Lite master that can present AW and W in either
order or together, with random delays and backpressure. Failures name the seed.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from cosim.tb_regs import STROBED, UNIT_INPUTS, RegsHarness, window_contents
from hdl.regs import Regs, axil_signature
from thermocline import regmap as R
from thermocline.regmap import REGMAP, SLVERR, RegisterFile

from .helpers import scale


class Bench:
    """Master, units and model around one harness."""

    def __init__(self, ctx, dut: RegsHarness, cd: ClockDomain, rng: random.Random,
                 seed: int):
        self.ctx, self.dut, self.cd, self.rng, self.seed = ctx, dut, cd, rng, seed
        self.model = RegisterFile()
        self.windows = window_contents(seed)
        self.unit = {}
        self.events: list[tuple[str, int]] = []
        self.cycle = 0
        self.gaps = 0.0

    # --- units --------------------------------------------------------------------------

    def set_unit(self, name: str, value: int):
        self.unit[name] = value
        self.ctx.set(getattr(self.dut, name.lower()).r.as_value(), value)

    def randomize_units(self):
        for reg in UNIT_INPUTS:
            self.set_unit(reg.name, self.rng.getrandbits(reg.width))

    def unit_value(self, name):
        return self.unit[name]

    def window_value(self, name, index):
        return self.windows[name][index]

    async def step(self):
        """One clock edge; records the strobes of the cycle after it."""
        await self.ctx.tick()
        self.cycle += 1
        for reg in STROBED:
            port = getattr(self.dut, reg.name.lower())
            if self.ctx.get(port.we):
                self.events.append((reg.name, self.ctx.get(port.w.as_value())))
                if reg.access == "RWU":          # the unit takes the written value
                    self.set_unit(reg.name, self.ctx.get(port.w.as_value()))
            elif reg.access in ("WO", "RWU"):
                assert self.ctx.get(port.w.as_value()) == 0, \
                    f"seed={self.seed}: {reg.name}.w is not 0 outside its strobe"

    async def idle(self):
        while self.rng.random() < self.gaps:
            await self.step()

    # --- master -------------------------------------------------------------------------

    async def write(self, addr: int, data: int, strb: int = 0xF, order: str = "same",
                    delay: int = 0) -> int:
        """One write; ``order``: ``"aw"`` (AW, then W ``delay`` cycles later), ``"w"``
        (the reverse) or ``"same"``. Returns BRESP."""
        ctx, bus = self.ctx, self.dut.s_axil
        aw_at = delay if order == "w" else 0
        w_at = delay if order == "aw" else 0
        aw_done = w_done = False
        t = 0
        while not (aw_done and w_done):
            ctx.set(bus.awvalid, not aw_done and t >= aw_at)
            ctx.set(bus.awaddr, addr)
            ctx.set(bus.wvalid, not w_done and t >= w_at)
            ctx.set(bus.wdata, data)
            ctx.set(bus.wstrb, strb)
            aw_fire = ctx.get(bus.awvalid) and ctx.get(bus.awready)
            w_fire = ctx.get(bus.wvalid) and ctx.get(bus.wready)
            await self.step()
            aw_done |= aw_fire
            w_done |= w_fire
            t += 1
            assert t < 50, f"seed={self.seed}: write of {addr:#x} not accepted"
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        return await self._response(bus.bvalid, bus.bready, lambda: ctx.get(bus.bresp))

    async def read(self, addr: int) -> tuple[int, int]:
        """One read: ``(RDATA, RRESP)``."""
        ctx, bus = self.ctx, self.dut.s_axil
        t = 0
        while True:
            ctx.set(bus.arvalid, 1)
            ctx.set(bus.araddr, addr)
            fire = ctx.get(bus.arready)
            await self.step()
            if fire:
                break
            t += 1
            assert t < 50, f"seed={self.seed}: read of {addr:#x} not accepted"
        ctx.set(bus.arvalid, 0)
        return await self._response(bus.rvalid, bus.rready,
                                    lambda: (ctx.get(bus.rdata), ctx.get(bus.rresp)))

    async def _response(self, valid, ready, value):
        ctx = self.ctx
        for _ in range(50):
            stall = self.rng.random() < self.gaps
            ctx.set(ready, not stall)
            if ctx.get(valid) and not stall:
                out = value()
                await self.step()
                ctx.set(ready, 0)
                return out
            await self.step()
        raise AssertionError(f"seed={self.seed}: no response")

    # --- checked operations -------------------------------------------------------------

    async def check_read(self, addr: int):
        got = await self.read(addr)
        want = self.model.read(addr, self.unit_value, self.window_value)
        assert got == want, (f"seed={self.seed} cycle={self.cycle}: read {addr:#05x} gave "
                             f"{got[0]:#x}/{got[1]}, model {want[0]:#x}/{want[1]}")
        return got

    async def check_write(self, addr: int, data: int, strb: int = 0xF, order: str = "same",
                          delay: int = 0):
        unit = dict(self.unit)
        self.model.events.clear()
        self.events.clear()
        got = await self.write(addr, data, strb, order, delay)
        want = self.model.write(addr, data, strb, unit.__getitem__)
        where = (f"seed={self.seed} cycle={self.cycle}: write {data:#x} strb {strb:#x} to "
                 f"{addr:#05x} ({order}, delay {delay})")
        assert got == want, f"{where}: BRESP {got}, model {want}"
        assert self.events == self.model.events, \
            f"{where}: strobes {self.events}, model {self.model.events}"
        self.check_outputs(where)

    def check_outputs(self, where: str):
        """Every held register's ``w`` output equals the model's value."""
        for name, value in self.model.values.items():
            got = self.ctx.get(getattr(self.dut, name.lower()).w.as_value())
            assert got == value, f"{where}: {name}.w = {got:#x}, model {value:#x}"


def simulate(seed: int, body, gaps: float = 0.0):
    dut = RegsHarness(seed=seed)
    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    m.submodules.dut = dut

    async def bench(ctx):
        b = Bench(ctx, dut, cd, random.Random(seed), seed)
        b.gaps = gaps
        b.randomize_units()
        await body(b)

    sim = Simulator(m)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(bench)
    sim.run()


def word_addresses():
    return [a for a in REGMAP.addresses()]


def test_every_register_after_reset():
    """Every mapped word reads its reset value, the unit's value or the window word; every
    held register drives its reset value."""
    async def body(b):
        b.check_outputs("after reset")
        for addr in word_addresses():
            await b.check_read(addr)
        assert (await b.read(REGMAP["ID"].offset))[0] == 0x5448524D
    simulate(3, body)


def test_every_register_written():
    """A write of random data to every mapped word: responses, held values, strobes and
    command values as the model says, then every word read back."""
    async def body(b):
        for addr in word_addresses():
            await b.check_write(addr, b.rng.getrandbits(32))
        for addr in word_addresses():
            await b.check_read(addr)
    simulate(4, body)


@pytest.mark.parametrize("order", ["aw", "w", "same"])
@pytest.mark.parametrize("delay", [0, 1, 3])
def test_channel_orders(order, delay):
    """AW before W, W before AW, or both in one cycle, with gaps between them."""
    reg = REGMAP["INT_MAX_PERIOD"]

    async def body(b):
        for k in range(3):
            await b.check_write(reg.offset, 0x1234567 * (k + 1), order=order, delay=delay)
            await b.check_read(reg.offset)
        # A second transaction's AW (or W) may be taken while the B response waits.
        await b.check_write(REGMAP["IRQ_MASK"].offset, 0x3F, order=order, delay=delay)
    simulate(5, body)


def test_write_strobes():
    """Each byte lane alone and in every combination on an RW, a 64-bit RW half, a W1C, a WO
    and an RWU register; no strobe at all changes nothing."""
    regs = ["INT_RATIO", "SCAN_ROOT", "IRQ_CAUSE", "WALK_INV_CMD", "INT_PERIOD", "INT_BATCH"]

    async def body(b):
        for name in regs:
            reg = REGMAP[name]
            for _, offset, _ in reg.words:
                for strb in range(16):
                    if reg.access == "W1C":
                        await b.pulse_set(name, reg.mask)
                    await b.check_write(offset, b.rng.getrandbits(32), strb)
                    await b.check_read(offset)
    Bench.pulse_set = _pulse_set
    simulate(6, body)


async def _pulse_set(b, name, bits):
    """A unit sets ``bits`` of a W1C register for one cycle."""
    port = getattr(b.dut, name.lower())
    b.ctx.set(port.set.as_value(), bits)
    await b.step()
    b.ctx.set(port.set.as_value(), 0)
    b.model.set_bits(name, bits)


def test_w1c_and_interrupt():
    """Causes set by pulses stay until written 1; a set in the cycle of a clear wins; the
    interrupt line follows ``IRQ_CAUSE & IRQ_MASK``."""
    cause, mask = REGMAP["IRQ_CAUSE"], REGMAP["IRQ_MASK"]

    async def body(b):
        irq = b.dut.irq
        await _pulse_set(b, "IRQ_CAUSE", 0b000101)
        await b.check_read(cause.offset)
        assert not b.ctx.get(irq)
        await b.check_write(mask.offset, 0b000100)
        assert b.ctx.get(irq)
        await b.check_write(cause.offset, 0b000001)       # clears PASS_DONE only
        assert b.ctx.get(irq)
        await b.check_write(cause.offset, 0b000100)
        assert not b.ctx.get(irq) and (await b.check_read(cause.offset))[0] == 0
        # Bits outside the fields neither set nor read.
        await _pulse_set(b, "IRQ_CAUSE", 0xFFFFFFFF)
        assert (await b.check_read(cause.offset))[0] == cause.mask
        # Set and clear of one bit in the same cycle: the set wins.
        port = b.dut.irq_cause
        await b.check_write(cause.offset, cause.mask)
        bus = b.dut.s_axil
        ctx = b.ctx
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.awaddr, cause.offset)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.wdata, 0b10)
        ctx.set(bus.wstrb, 0xF)
        await b.step()                                   # both taken
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        ctx.set(port.set.as_value(), 0b10)               # the write happens in this cycle
        await b.step()
        ctx.set(port.set.as_value(), 0)
        ctx.set(bus.bready, 1)
        await b.step()
        ctx.set(bus.bready, 0)
        assert ctx.get(port.w.as_value()) == 0b10
    simulate(7, body)


def test_unmapped_and_read_only():
    """Unmapped words answer SLVERR (reads return 0), so do writes to RO registers and
    windows, which change nothing."""
    mapped = set(REGMAP.addresses())
    holes = [a for a in range(0, 1 << R.ADDR_WIDTH, 4) if a not in mapped]
    ro = [o for r in REGMAP.registers.values() if r.access == "RO" for _, o, _ in r.words]
    wins = [w.offset for w in REGMAP.windows.values()] + [w.end - 4
                                                        for w in REGMAP.windows.values()]

    async def body(b):
        rng = b.rng
        for addr in rng.sample(holes, 20) + [holes[0], holes[-1]]:
            assert await b.check_read(addr + rng.randint(0, 3)) == (0, SLVERR)
            await b.check_write(addr, rng.getrandbits(32))
        for addr in ro + wins:
            await b.check_write(addr, rng.getrandbits(32))
            await b.check_read(addr)
        assert await b.write(REGMAP["ID"].offset, 0) == SLVERR
    simulate(8, body)


def test_64bit_read_order():
    """Reading LO captures HI: a value that changes between the two reads still reads as
    one 64-bit value; a HI read alone returns the last capture."""
    reg = REGMAP["INT_NOW"]

    async def body(b):
        b.set_unit(reg.name, 0x11111111_22222222)
        assert (await b.check_read(reg.offset))[0] == 0x22222222
        b.set_unit(reg.name, 0x33333333_44444444)
        assert (await b.check_read(reg.offset + 4))[0] == 0x11111111
        assert (await b.check_read(reg.offset + 4))[0] == 0x11111111
        assert (await b.check_read(reg.offset))[0] == 0x44444444
        assert (await b.check_read(reg.offset + 4))[0] == 0x33333333
    simulate(9, body)


def test_strobe_is_one_cycle_with_the_new_value():
    """``INT_BATCH`` (RW with strobe): ``we`` is high for exactly one cycle, when ``w``
    already holds the written value; ``WO`` values are 0 outside their strobe."""
    reg = REGMAP["INT_BATCH"]

    async def body(b):
        await b.check_write(reg.offset, 0xABCD)
        assert b.events == [("INT_BATCH", 0xABCD)]
        await b.check_write(REGMAP["SCAN_CMD"].offset, 0b11)
        assert b.events == [("SCAN_CMD", 0b11)]
    simulate(10, body)


def test_documented_latencies():
    """``rvalid`` rises three cycles after the address is taken (register, window or
    unmapped word); the unit's value is the one of the cycle after; ``bvalid`` rises two
    cycles after AW and W are taken together, with the register already written."""
    reg = REGMAP["INT_OVERRUN_COUNT"]
    win = REGMAP.windows["SCAN_HIST"]

    async def body(b):
        ctx, bus = b.ctx, b.dut.s_axil
        for addr in (reg.offset, win.offset + 8, 0xFFC):
            ctx.set(bus.arvalid, 1)
            ctx.set(bus.araddr, addr)
            assert ctx.get(bus.arready)
            await b.step()                               # taken: cycle 1 after it
            ctx.set(bus.arvalid, 0)
            b.set_unit(reg.name, 0x1234)                 # sampled in this cycle
            assert not ctx.get(bus.rvalid)
            await b.step()
            b.set_unit(reg.name, 0x5678)                 # too late for this read
            assert not ctx.get(bus.rvalid), f"{addr:#x}: rvalid 2 cycles after"
            await b.step()
            assert ctx.get(bus.rvalid), f"{addr:#x}: no rvalid 3 cycles after"
            want = b.model.read(addr, {reg.name: 0x1234}.get, b.window_value)
            assert (ctx.get(bus.rdata), ctx.get(bus.rresp)) == want
            ctx.set(bus.rready, 1)
            await b.step()
            ctx.set(bus.rready, 0)
        target = REGMAP["INT_MIN_PERIOD"]
        for sig, value in ((bus.awvalid, 1), (bus.wvalid, 1), (bus.awaddr, target.offset),
                           (bus.wdata, 0xCAFE), (bus.wstrb, 0xF)):
            ctx.set(sig, value)
        await b.step()                                   # both taken: cycle 1 after
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        assert not ctx.get(bus.bvalid)
        await b.step()
        assert ctx.get(bus.bvalid) and ctx.get(b.dut.int_min_period.w.as_value()) == 0xCAFE
    simulate(12, body)


@pytest.mark.parametrize("seed", range(scale(4)))
def test_random_traffic(seed):
    """Random reads and writes anywhere (mapped or not, any address bits 1..0), random
    strobes, channel orders, delays and backpressure, unit values changing between
    transactions and W1C set pulses."""
    async def body(b):
        rng = b.rng
        addrs = word_addresses()
        for _ in range(150):
            kind = rng.random()
            addr = rng.choice(addrs) if rng.random() < 0.9 else rng.randrange(1 << R.ADDR_WIDTH)
            addr = (addr & ~3) | rng.randint(0, 3)
            if kind < 0.45:
                await b.check_write(addr, rng.getrandbits(32),
                                    rng.choice([0xF, 0xF, rng.randint(0, 15)]),
                                    rng.choice(["aw", "w", "same"]), rng.randint(0, 3))
            elif kind < 0.9:
                await b.check_read(addr)
            elif kind < 0.95:
                b.randomize_units()
            else:
                await _pulse_set(b, "IRQ_CAUSE", rng.getrandbits(32))
            await b.idle()
    simulate(100 + seed, body, gaps=0.3)


def test_reset_mid_transaction():
    """A reset after AW only, after W only, with a B or R response waiting and in the middle
    of a read leaves the block idle with every register at its reset value; the next
    transactions work."""
    async def body(b):
        ctx, bus = b.ctx, b.dut.s_axil

        async def reset():
            ctx.set(b.cd.rst, 1)
            for sig in (bus.awvalid, bus.wvalid, bus.arvalid, bus.bready, bus.rready):
                ctx.set(sig, 0)
            await b.step()
            ctx.set(b.cd.rst, 0)
            b.model.reset()
            b.check_outputs("after reset")
            assert ctx.get(bus.awready) and ctx.get(bus.wready) and ctx.get(bus.arready)
            assert not ctx.get(bus.bvalid) and not ctx.get(bus.rvalid)

        target = REGMAP["INT_MIN_PERIOD"].offset
        for half in ("awvalid", "wvalid"):
            await b.check_write(target, 77)
            ctx.set(bus.awaddr, target)
            ctx.set(bus.wdata, 99)
            ctx.set(bus.wstrb, 0xF)
            ctx.set(getattr(bus, half), 1)
            await b.step()
            await reset()
            await b.check_read(target)
            await b.check_write(target, 55)
            await b.check_read(target)
        # B waiting.
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.awaddr, target)
        ctx.set(bus.wdata, 11)
        await b.step()
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        await b.step()
        await b.step()
        assert ctx.get(bus.bvalid)
        await reset()
        # Mid-read and with R waiting.
        for wait in (1, 4):
            ctx.set(bus.arvalid, 1)
            ctx.set(bus.araddr, REGMAP.windows["LP_CAND"].offset)
            await b.step()
            ctx.set(bus.arvalid, 0)
            for _ in range(wait):
                await b.step()
            await reset()
            await b.check_read(REGMAP.windows["LP_CAND"].offset + 8)
            await b.check_write(target, 1234)
    simulate(11, body)


def test_parameters_checked():
    with pytest.raises(ValueError, match="regmap"):
        Regs(regmap=REGMAP.registers)
    with pytest.raises(ValueError, match="irq"):
        Regs(irq=("IRQ_MASK", "IRQ_CAUSE"))
    with pytest.raises(ValueError, match="addr_width"):
        axil_signature(2)
    Regs(irq=None)
