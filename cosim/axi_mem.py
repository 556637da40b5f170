"""Testbench AXI4 memory: a cocotbext-axi slave backed by a sparse image of host memory.

:class:`AxiMem` answers an AXI4 master port of the design under test (``m_axi__*`` ports). It
is loaded from a :class:`model.memory.PhysMem` image and dumped back into one, so a test can
compare the whole memory with the golden model's after every operation. On top of a plain RAM
it adds what the engine's tests need:

* read latency: cycles from the AR handshake to the first beat's ``RVALID``, with several
  bursts in flight (the latency of one burst overlaps the data of the previous ones);
* seeded random backpressure on every channel (``READY`` low on the address and write-data
  channels, ``VALID`` gaps on the read-data and write-response channels);
* error responses: ``SLVERR``/``DECERR`` on chosen 64-bit words (the image's poisoned words
  included), on beat *k* of read burst *n*, or on write burst *n*; any access outside the
  memory answers ``DECERR``.

Channel handling, reset and backpressure come from cocotbext-axi's ``AxiSlaveRead`` and
``AxiSlaveWrite``; this module replaces their transaction loops (``_process_read`` and
``_process_write``) to add latency and error responses. Storage is page-granular (4 KiB
pages, created on first write), so multi-gigabyte memories cost only the pages in use.

Reset: the memory follows the design's reset signal. Asserting it drops every burst in
flight (no stale beat is answered after reset); the contents are kept.
"""

import logging
import random
import warnings
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.queue import Queue
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge, Timer, current_gpi_trigger
from cocotbext.axi import AxiBus
from cocotbext.axi.axi_slave import AxiSlaveRead, AxiSlaveWrite

from hdl.axi import BOUNDARY, Burst, Resp
from model.memory import PhysMem
from thermocline.layouts import PAGE_SIZE

__all__ = ["AxiMem", "BurstInfo", "ProtocolError"]

# cocotbext-axi 0.1.28 still calls cocotb 1.x APIs that cocotb 2 deprecates (kill,
# setimmediatevalue, Edge); their warnings would bury the testbench's own log lines.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi\.")

_RESP_NAMES = {"OKAY": Resp.OKAY, "EXOKAY": Resp.EXOKAY,
               "SLVERR": Resp.SLVERR, "DECERR": Resp.DECERR}


def _resp(value) -> Resp:
    if isinstance(value, str) and value.upper() in _RESP_NAMES:
        return _RESP_NAMES[value.upper()]
    try:
        return Resp(value)
    except ValueError:
        raise ValueError(f"response must be OKAY, EXOKAY, SLVERR or DECERR, "
                         f"got {value!r}") from None


def _worse(a: Resp, b: Resp) -> Resp:
    """The more severe of two responses (DECERR > SLVERR > OKAY)."""
    rank = {Resp.OKAY: 0, Resp.EXOKAY: 0, Resp.SLVERR: 1, Resp.DECERR: 2}
    return a if rank[a] >= rank[b] else b


class ProtocolError(AssertionError):
    """The master broke an AXI4 rule (the message names the rule and the burst)."""


@dataclass(frozen=True)
class BurstInfo:
    """One accepted address-channel request.

    Attributes
    ----------
    index : int
        Number of the burst on its channel (reads and writes counted separately), from 0
        when the memory was created.
    id : int
        ``ARID``/``AWID``.
    addr : int
        Start address.
    beats : int
        ``AxLEN + 1``.
    size : int
        ``AxSIZE``: bytes per beat are ``1 << size``.
    burst : Burst
        Burst type.
    time : int
        Simulation time (steps) when the memory took the request.
    """

    index: int
    id: int
    addr: int
    beats: int
    size: int
    burst: Burst
    time: int

    def beat_addr(self, n: int) -> int:
        """Address of beat ``n`` (0-based)."""
        nbytes = 1 << self.size
        aligned = self.addr & ~(nbytes - 1)
        if self.burst == Burst.FIXED:
            return self.addr
        if self.burst == Burst.WRAP:
            total = nbytes * self.beats
            low = self.addr & ~(total - 1)
            return low + (aligned - low + n * nbytes) % total
        return self.addr if n == 0 else aligned + n * nbytes


class AxiMem:
    """AXI4 slave memory for cocotb testbenches.

    Parameters
    ----------
    dut : cocotb handle
        The design (top-level handle).
    clock, reset : cocotb handles
        Clock and active-high reset of the AXI port.
    size : int, optional
        Memory size in bytes, a multiple of 4 KiB; addresses at or above it answer
        ``DECERR``. Defaults to the size of ``image``.
    image : model.memory.PhysMem, optional
        Initial contents (see :meth:`load`).
    prefix : str
        Port prefix of the AXI4 master in the design; default ``"m_axi"`` (ports
        ``m_axi__arvalid`` and so on).
    latency : int
        Read latency in clock cycles, at least 1: ``RVALID`` of a burst's first beat rises
        no earlier than ``latency`` cycles after the edge that completed its AR handshake
        (exactly that when the memory is idle).
    read_depth : int
        Read bursts the memory holds between accepting an address and sending its data;
        when full, ``ARREADY`` falls. Latency is counted from when a burst enters this
        queue.
    seed : int
        Seed of the backpressure patterns.

    Attributes
    ----------
    reads, writes : list of BurstInfo
        Every accepted read and write burst, in order.
    beats_read, beats_written : int
        Data beats transferred.
    protocol_errors : list of str
        AXI rule violations seen (each is also raised as :class:`ProtocolError` in the
        memory's task, which fails the running cocotb test).
    """

    def __init__(self, dut, clock, reset=None, *, size: int | None = None,
                 image: PhysMem | None = None, prefix: str = "m_axi", latency: int = 1,
                 read_depth: int = 16, seed: int = 0):
        if size is None:
            if image is None:
                raise ValueError("AxiMem: give size or image")
            size = image.size
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"AxiMem: size must be a positive multiple of {PAGE_SIZE}, "
                             f"got {size:#x}")
        if not isinstance(latency, int) or latency < 1:
            raise ValueError(f"AxiMem: latency must be an integer >= 1, got {latency!r}")
        if read_depth < 1:
            raise ValueError(f"AxiMem: read_depth must be >= 1, got {read_depth!r}")
        self.size = size
        self.latency = latency
        self.read_depth = read_depth
        self.clock = clock
        self.log = logging.getLogger(f"cocotb.{dut._name}.{prefix}.mem")
        self._pages: dict[int, bytearray] = {}
        self._word_errors: dict[int, Resp] = {}
        self._read_beat_errors: dict[tuple[int, int], Resp] = {}
        self._write_errors: dict[int, Resp] = {}
        self._rng = random.Random(seed)
        self.reads: list[BurstInfo] = []
        self.writes: list[BurstInfo] = []
        self.beats_read = 0
        self.beats_written = 0
        self.protocol_errors: list[str] = []
        self._period: int | None = None
        self._stall_task = None
        self._period_known = Event()
        cocotb.start_soon(self._measure_period())
        if image is not None:
            self.load(image)
        bus = AxiBus.from_prefix(dut, prefix, bus_separator="__")
        # Quiet the per-burst INFO logging of the cocotbext-axi base classes.
        for channel in (bus.read.ar, bus.write.aw):
            logging.getLogger(f"cocotb.{channel._entity._name}.{channel._name}").setLevel(
                logging.WARNING)
        self.read_if = _ReadPort(self, bus.read, clock, reset)
        self.write_if = _WritePort(self, bus.write, clock, reset)

    # --- contents ------------------------------------------------------------------------

    def load(self, image: PhysMem, *, errors: bool = True):
        """Copy the pages of ``image`` that hold storage, replacing those pages here.

        Parameters
        ----------
        image : model.memory.PhysMem
            Source image; its size must not exceed this memory's.
        errors : bool
            Also take over the image's poisoned words as address errors.
        """
        if image.size > self.size:
            raise ValueError(f"AxiMem.load: image of {image.size:#x} bytes does not fit a "
                             f"memory of {self.size:#x} bytes")
        for pfn in image.pages():
            words = image.pool[image.slot[pfn]]
            self._pages[int(pfn)] = bytearray(words.astype("<u8").tobytes())
        if errors:
            for addr, resp in image.poisoned.items():
                self.fail_address(addr, resp)

    def dump(self) -> PhysMem:
        """The whole memory as a new :class:`~model.memory.PhysMem` (pages in use only).

        Address errors set on 64-bit words come along as poisoned words, so
        ``mem.dump() == model_image`` compares contents and ``dump().poisoned`` the errors.
        """
        image = PhysMem(self.size)
        for pfn, page in sorted(self._pages.items()):
            image.page(pfn, create=True)[:] = np.frombuffer(bytes(page), dtype="<u8")
        for addr, resp in self._word_errors.items():
            image.poison(addr, resp.name)
        return image

    def peek(self, addr: int, length: int) -> bytes:
        """Read bytes without a bus transaction (zeros where nothing was written)."""
        if addr < 0 or addr + length > self.size:
            raise ValueError(f"AxiMem.peek: [{addr:#x}, {addr + length:#x}) is outside the "
                             f"memory of {self.size:#x} bytes")
        out = bytearray()
        while length > 0:
            offset = addr % PAGE_SIZE
            n = min(length, PAGE_SIZE - offset)
            page = self._pages.get(addr // PAGE_SIZE)
            out += page[offset:offset + n] if page is not None else bytes(n)
            addr += n
            length -= n
        return bytes(out)

    def poke(self, addr: int, data: bytes):
        """Write bytes without a bus transaction."""
        if addr < 0 or addr + len(data) > self.size:
            raise ValueError(f"AxiMem.poke: [{addr:#x}, {addr + len(data):#x}) is outside the "
                             f"memory of {self.size:#x} bytes")
        done = 0
        while done < len(data):
            offset = (addr + done) % PAGE_SIZE
            n = min(len(data) - done, PAGE_SIZE - offset)
            page = self._pages.setdefault((addr + done) // PAGE_SIZE, bytearray(PAGE_SIZE))
            page[offset:offset + n] = data[done:done + n]
            done += n

    def read_word(self, addr: int) -> int:
        """The little-endian 64-bit word at ``addr`` (8-byte aligned), without a bus
        transaction."""
        return int.from_bytes(self.peek(addr, 8), "little")

    def write_word(self, addr: int, value: int):
        """Write the 64-bit word at ``addr`` without a bus transaction (as another agent
        would: software, or a write the testbench injects)."""
        self.poke(addr, (value & ((1 << 64) - 1)).to_bytes(8, "little"))

    @property
    def failed_words(self) -> dict:
        """The 64-bit words given an error response (:meth:`fail_address`), by address."""
        return dict(self._word_errors)

    # --- errors --------------------------------------------------------------------------

    def fail_address(self, addr: int, resp="SLVERR"):
        """Answer ``resp`` for every beat that touches the 64-bit word at ``addr``.

        A read beat touches the bytes it transfers (all lanes, or ``1 << size`` of them for a
        narrow beat): such a beat returns ``resp`` (and zero data). A write beat touches the
        bytes its strobes enable: the word is left unchanged and the burst's ``BRESP`` is at
        least as severe as ``resp``; other words of the beat are written.
        """
        resp = _resp(resp)
        if resp not in (Resp.SLVERR, Resp.DECERR):
            raise ValueError(f"fail_address: response must be SLVERR or DECERR, got {resp!r}")
        self._word_errors[addr & ~7] = resp

    def fail_read_beat(self, burst: int, beat: int, resp="SLVERR"):
        """Answer ``resp`` on beat ``beat`` (0-based) of read burst number ``burst``.

        ``burst`` counts accepted read bursts from 0 since the memory was created (see
        :attr:`reads`); a beat past the end of that burst is never answered. The error
        applies once.
        """
        self._read_beat_errors[(burst, beat)] = _resp(resp)

    def fail_write_burst(self, burst: int, resp="SLVERR"):
        """Answer ``resp`` on write burst number ``burst`` and write none of its data."""
        self._write_errors[burst] = _resp(resp)

    def clear(self):
        """Forget every page (all memory reads as zero again) and every injected error."""
        self._pages.clear()
        self.clear_errors()

    def clear_errors(self):
        """Remove every injected error (address, read-beat and write-burst errors)."""
        self._word_errors.clear()
        self._read_beat_errors.clear()
        self._write_errors.clear()

    # --- backpressure --------------------------------------------------------------------

    def set_backpressure(self, *, ar: float = 0.0, r: float = 0.0, aw: float = 0.0,
                         w: float = 0.0, b: float = 0.0):
        """Stall each channel on a random fraction of cycles (seeded).

        Parameters
        ----------
        ar, aw, w : float
            Probability that ``ARREADY``/``AWREADY``/``WREADY`` is held low in a cycle.
        r, b : float
            Probability that the memory leaves a gap (``RVALID``/``BVALID`` low) in a cycle.
        """
        channels = {"ar": (self.read_if.ar_channel, ar), "r": (self.read_if.r_channel, r),
                    "aw": (self.write_if.aw_channel, aw), "w": (self.write_if.w_channel, w),
                    "b": (self.write_if.b_channel, b)}
        stalls = []
        for name, (channel, p) in channels.items():
            if not 0.0 <= p < 1.0:
                raise ValueError(f"set_backpressure: {name} must be in [0, 1), got {p!r}")
            channel.pause = False
            if p > 0.0:
                stalls.append((channel, p))
        if self._stall_task is not None:
            self._stall_task.cancel()
            self._stall_task = None
        if stalls:
            self._stall_task = cocotb.start_soon(self._stall(stalls))

    async def _stall(self, stalls):
        # One task for every stalled channel: a coroutine per channel per cycle is the main
        # cost of a Python testbench.
        rng = random.Random(self._rng.getrandbits(64))
        edge = RisingEdge(self.clock)
        while True:
            for channel, p in stalls:
                channel.pause = rng.random() < p
            await edge

    # --- internals -----------------------------------------------------------------------

    async def _measure_period(self):
        edge = RisingEdge(self.clock)
        await edge
        start = get_sim_time("step")
        await edge
        self._period = get_sim_time("step") - start
        self._period_known.set()

    async def _wait_cycles_after(self, t0: int, cycles: int):
        """Return in the read-only phase of the clock edge ``cycles`` edges after time ``t0``
        (``t0`` being an edge), or at once if that edge has passed."""
        if self._period is None:
            await self._period_known.wait()
        target = t0 + cycles * self._period
        now = get_sim_time("step")
        if now < target:
            await Timer(target - now, "step")
            await ReadOnly()
        elif now == target and not isinstance(current_gpi_trigger(), ReadOnly):
            await ReadOnly()

    def _protocol_error(self, message: str):
        self.protocol_errors.append(message)
        self.log.error("AXI protocol error: %s", message)
        raise ProtocolError(message)

    def _burst_info(self, kind: str, index: int, axid, addr, length, size, burst,
                    lanes: int) -> BurstInfo:
        """Decode and check an address-channel request."""
        if int(burst) not in (Burst.FIXED, Burst.INCR, Burst.WRAP):
            self._protocol_error(f"{kind} burst {index} at {int(addr):#x}: reserved burst "
                                 f"type {int(burst)}")
        info = BurstInfo(index=index, id=int(axid), addr=int(addr), beats=int(length) + 1,
                         size=int(size), burst=Burst(int(burst)), time=get_sim_time("step"))
        nbytes = 1 << info.size
        if nbytes > lanes:
            self._protocol_error(f"{kind} burst {info.index} at {info.addr:#x}: size "
                                 f"{nbytes} bytes exceeds the {lanes}-byte bus")
        if info.burst == Burst.INCR:
            start = info.addr & ~(nbytes - 1)
            if start // BOUNDARY != (start + nbytes * info.beats - 1) // BOUNDARY:
                self._protocol_error(f"{kind} burst {info.index} at {info.addr:#x} of "
                                     f"{info.beats} beats crosses a 4 KiB boundary")
        if info.burst == Burst.WRAP and (info.beats not in (2, 4, 8, 16)
                                         or info.addr % nbytes):
            self._protocol_error(f"{kind} burst {info.index}: WRAP needs 2, 4, 8 or 16 "
                                 f"aligned beats, got {info.beats} at {info.addr:#x}")
        return info

    def _word_resp(self, word_addr: int, lanes: int) -> Resp:
        """Response of an access to the ``lanes`` bytes at ``word_addr`` from range and
        address errors."""
        if word_addr < 0 or word_addr + lanes > self.size:
            return Resp.DECERR
        resp = Resp.OKAY
        for addr in range(word_addr & ~7, word_addr + lanes, 8):
            err = self._word_errors.get(addr)
            if err is not None:
                resp = _worse(resp, err)
        return resp

    def _read_beat(self, info: BurstInfo, n: int, lanes: int) -> tuple[int, Resp]:
        word_addr = info.beat_addr(n) & ~(lanes - 1)
        resp = self._read_beat_errors.pop((info.index, n), None)
        if resp is None:
            # Only the bytes the beat transfers (a narrow beat carries 1 << size of them).
            nbytes = min(1 << info.size, lanes)
            resp = self._word_resp(info.beat_addr(n) & ~(nbytes - 1), nbytes)
        if resp in (Resp.SLVERR, Resp.DECERR):
            return 0, resp
        page = self._pages.get(word_addr // PAGE_SIZE)
        if page is None:
            return 0, resp
        offset = word_addr % PAGE_SIZE
        return int.from_bytes(page[offset:offset + lanes], "little"), resp

    def _write_beat(self, info: BurstInfo, n: int, lanes: int, data: int, strb: int) -> Resp:
        word_addr = info.beat_addr(n) & ~(lanes - 1)
        if info.index in self._write_errors:
            return self._write_errors[info.index]
        if word_addr < 0 or word_addr + lanes > self.size:
            return Resp.DECERR
        raw = data.to_bytes(lanes, "little")
        page = None
        resp = Resp.OKAY
        for qw in range(0, lanes, 8):
            mask = (strb >> qw) & 0xFF
            if not mask:
                continue                       # bytes not written cannot fail
            err = self._word_errors.get(word_addr + qw)
            if err is not None:
                resp = _worse(resp, err)
                continue
            if page is None:
                page = self._pages.setdefault(word_addr // PAGE_SIZE, bytearray(PAGE_SIZE))
            offset = (word_addr + qw) % PAGE_SIZE
            if mask == 0xFF:
                page[offset:offset + 8] = raw[qw:qw + 8]
            else:
                for i in range(8):
                    if mask >> i & 1:
                        page[offset + i] = raw[qw + i]
        return resp


class _ReadPort(AxiSlaveRead):
    """Read channels of :class:`AxiMem`: accepts addresses, answers after the latency."""

    def __init__(self, mem: AxiMem, bus, clock, reset):
        self._mem = mem
        self._pending = Queue(maxsize=mem.read_depth)
        self._serve_cr = None
        super().__init__(bus, clock, reset)

    def _handle_reset(self, state):
        super()._handle_reset(state)
        if state:
            if self._serve_cr is not None:
                self._serve_cr.cancel()
                self._serve_cr = None
            while not self._pending.empty():
                self._pending.get_nowait()
        elif self._serve_cr is None:
            self._serve_cr = cocotb.start_soon(self._serve())

    async def _process_read(self):
        mem = self._mem
        while True:
            ar = await self.ar_channel.recv()
            info = mem._burst_info("read", len(mem.reads), ar.arid, ar.araddr, ar.arlen,
                                   ar.arsize, ar.arburst, self.byte_lanes)
            mem.reads.append(info)
            mem.log.debug("read burst %d: id %d addr %#x beats %d", info.index, info.id,
                          info.addr, info.beats)
            await self._pending.put(info)

    async def _serve(self):
        mem = self._mem
        lanes = self.byte_lanes
        while True:
            info = await self._pending.get()
            await mem._wait_cycles_after(info.time, mem.latency - 1)
            for n in range(info.beats):
                data, resp = mem._read_beat(info, n, lanes)
                r = self.r_channel._transaction_obj()
                r.rid = info.id
                r.rdata = data
                r.rresp = int(resp)
                r.rlast = int(n == info.beats - 1)
                await self.r_channel.send(r)
                mem.beats_read += 1


class _WritePort(AxiSlaveWrite):
    """Write channels of :class:`AxiMem`."""

    def __init__(self, mem: AxiMem, bus, clock, reset):
        self._mem = mem
        super().__init__(bus, clock, reset)

    async def _process_write(self):
        mem = self._mem
        lanes = self.byte_lanes
        while True:
            aw = await self.aw_channel.recv()
            info = mem._burst_info("write", len(mem.writes), aw.awid, aw.awaddr, aw.awlen,
                                   aw.awsize, aw.awburst, lanes)
            mem.writes.append(info)
            resp = Resp.OKAY
            for n in range(info.beats):
                w = await self.w_channel.recv()
                last = int(w.wlast)
                if last != (n == info.beats - 1):
                    mem._protocol_error(f"write burst {info.index} at {info.addr:#x}: WLAST "
                                        f"{last} on beat {n} of {info.beats}")
                strb = int(w.wstrb) if self.wstrb_present else self.strb_mask
                resp = _worse(resp, mem._write_beat(info, n, lanes, int(w.wdata), strb))
                mem.beats_written += 1
            b = self.b_channel._transaction_obj()
            b.bid = info.id
            b.bresp = int(resp)
            await self.b_channel.send(b)
