"""An AXI4 memory for the Amaranth simulator, serving a :class:`model.memory.PhysMem`.

For fast unit tests without Verilator: the slave answers single- and multi-beat INCR reads
and writes from the model's memory image, with a fixed latency, optional random stalls on
every ready/valid it drives, DECERR past the end of memory and SLVERR on poisoned words
(per beat). It also logs every access, in order, as ``("read"|"write", addr, value)`` (failed reads
with the value 0).
"""

import random

from model.memory import BusError, PhysMem

__all__ = ["SimAxiMemory"]

OKAY, SLVERR, DECERR = 0, 2, 3


class SimAxiMemory:
    """Drive it once per clock from an Amaranth testbench: ``await mem.step(ctx)``."""

    def __init__(self, axi, mem: PhysMem, *, latency: int = 1, stall: float = 0.0,
                 seed: int = 0):
        if latency < 1:
            raise ValueError(f"latency must be at least 1 cycle, got {latency}")
        self.axi, self.mem, self.latency, self.stall = axi, mem, latency, stall
        self.rng = random.Random(seed)
        self.log: list[tuple[str, int, int]] = []
        self._reads: list[list] = []        # [due cycle, [(data, resp), ...]]
        self._aw: list[tuple[int, int]] = []
        self._w: list[int] = []
        self._b: list[list] = []            # [due cycle, resp]
        self.cycle = 0

    def _go(self) -> int:
        return int(self.rng.random() >= self.stall)

    def _beat(self, addr: int, write: int | None = None) -> tuple[int, int]:
        try:
            if write is None:
                value = self.mem.read(addr)
                self.log.append(("read", addr, value))
                return value, OKAY
            self.mem.write(addr, write)
            self.log.append(("write", addr, write))
            return 0, OKAY
        except BusError as e:
            self.log.append(("read" if write is None else "write", addr,
                             0 if write is None else write))
            return 0, SLVERR if e.resp == "SLVERR" else DECERR

    def outputs(self, ctx):
        """Set the slave's outputs for this cycle (call before sampling handshakes)."""
        a = self.axi
        self._arready = self._go() if len(self._reads) < 4 else 0
        ctx.set(a.arready, self._arready)
        r = self._reads[0] if self._reads and self._reads[0][0] <= self.cycle else None
        self._rvalid = int(r is not None and self._go())
        ctx.set(a.rvalid, self._rvalid)
        if r is not None:
            data, resp = r[1][0]
            ctx.set(a.rdata, data)
            ctx.set(a.rresp, resp)
            ctx.set(a.rlast, int(len(r[1]) == 1))
        self._awready = self._go()
        self._wready = self._go()
        ctx.set(a.awready, self._awready)
        ctx.set(a.wready, self._wready)
        b = self._b[0] if self._b and self._b[0][0] <= self.cycle else None
        self._bvalid = int(b is not None and self._go())
        ctx.set(a.bvalid, self._bvalid)
        if b is not None:
            ctx.set(a.bresp, b[1])

    def sample(self, ctx):
        """Record the handshakes of this cycle (call after the DUT's inputs are set)."""
        a = self.axi
        if self._arready and ctx.get(a.arvalid):
            addr, beats = ctx.get(a.araddr), ctx.get(a.arlen) + 1
            self._reads.append([self.cycle + self.latency,
                                [self._beat(addr + 8 * i) for i in range(beats)]])
        if self._rvalid and ctx.get(a.rready):
            self._reads[0][1].pop(0)
            if not self._reads[0][1]:
                self._reads.pop(0)
        if self._awready and ctx.get(a.awvalid):
            self._aw.append((ctx.get(a.awaddr), ctx.get(a.awlen) + 1))
        if self._wready and ctx.get(a.wvalid):
            self._w.append(ctx.get(a.wdata))
        while self._aw and len(self._w) >= self._aw[0][1]:
            addr, beats = self._aw.pop(0)
            resp = OKAY
            for i in range(beats):
                _, r = self._beat(addr + 8 * i, self._w.pop(0))
                resp = max(resp, r)
            self._b.append([self.cycle + self.latency, resp])
        if self._bvalid and ctx.get(a.bready):
            self._b.pop(0)
        self.cycle += 1
