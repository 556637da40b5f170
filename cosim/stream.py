"""Generic cocotb pieces for Amaranth ``lib.stream`` ports: one per-cycle ticker, a driver, a
monitor and a payload codec.

An Amaranth stream port named ``req`` flattens to ``req__valid``, ``req__ready`` and
``req__payload`` (one packed vector). :class:`StreamDriver` sends items on such an input port
in order, holding ``valid`` until the handshake; :class:`StreamMonitor` takes items off an
output port with optional random backpressure; :class:`Codec` packs and unpacks the payload
vector from the port's layout. Driver and monitor run from one :class:`Ticker`, so the
whole testbench costs one pair of awaits per clock cycle: Python per cycle is what limits a
cocotb testbench's speed.
"""

import enum
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["Codec", "Ticker", "StreamDriver", "StreamMonitor"]


class Codec:
    """Packs and unpacks the integer value of an Amaranth ``data.StructLayout`` port."""

    def __init__(self, layout):
        self.fields = {name: (field.offset, field.width) for name, field in layout}

    def pack(self, **values) -> int:
        """The port value with the named fields set (enum members by their value)."""
        raw = 0
        for name, value in values.items():
            value = value.value if isinstance(value, enum.Enum) else value
            offset, width = self.fields[name]
            if not 0 <= value < 1 << width:
                raise ValueError(f"field {name} holds {width} bits, got {value:#x}")
            raw |= value << offset
        return raw

    def unpack(self, raw: int) -> dict:
        return {name: (raw >> offset) & ((1 << width) - 1)
                for name, (offset, width) in self.fields.items()}


class Ticker:
    """Runs the per-cycle work of every driver and monitor from one task.

    After each rising edge it calls the ``edge`` hooks (drive inputs, act on handshakes
    sampled in the previous cycle); in that cycle's read-only phase it calls the ``sample``
    hooks (read settled values: what the next edge will capture).
    """

    def __init__(self, clock):
        self.clock = clock
        self.cycle = 0
        self.edge: list[Callable[[], None]] = []
        self.sample: list[Callable[[], None]] = []
        cocotb.start_soon(self._run())

    async def _run(self):
        edge = RisingEdge(self.clock)
        read_only = ReadOnly()
        while True:
            await edge
            self.cycle += 1
            for hook in self.edge:
                hook()
            await read_only
            for hook in self.sample:
                hook()


class StreamDriver:
    """Drives the input stream ``<prefix>__valid/ready/payload`` of ``dut``.

    :meth:`send` queues an item; ``encode(item)`` gives its payload word. Items go out in
    order; with ``idle`` > 0 each waits a random number of cycles first. ``on_accept``
    callbacks get each item in the cycle after its handshake. Nothing is transferred while
    ``reset`` is high.
    """

    def __init__(self, dut, prefix: str, ticker: Ticker, encode: Callable[[Any], int], *,
                 rng: random.Random | None = None, idle: float = 0.0, reset=None):
        self.reset = reset if reset is not None else dut.rst
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.encode = encode
        self.rng = rng or random.Random(0)
        self.idle = idle
        self.queue: deque = deque()
        self.on_accept: list[Callable[[Any], None]] = []
        self.accepted = 0
        self._current = None
        self._has_current = False
        self._fired = False
        self._valid = False
        self.valid.value = 0
        self.payload.value = 0
        ticker.edge.append(self._edge)
        ticker.sample.append(self._sample)

    def send(self, item):
        self.queue.append(item)

    def clear(self):
        """Forget every item not yet accepted (on reset)."""
        self.queue.clear()
        self._current = None
        self._has_current = False
        self._fired = False
        self._valid = False
        self.valid.value = 0

    @property
    def pending(self) -> int:
        """Items not yet accepted by the design."""
        return len(self.queue) + self._has_current

    def _edge(self):
        if self._fired:
            item, self._current, self._has_current = self._current, None, False
            self.accepted += 1
            for callback in self.on_accept:
                callback(item)
        if not self._has_current:
            if self.queue and not (self.idle and self.rng.random() < self.idle):
                self._current = self.queue.popleft()
                self._has_current = True
                self.payload.value = self.encode(self._current)
                self.valid.value = 1
            elif self._valid:
                self.valid.value = 0
        self._valid = self._has_current

    def _sample(self):
        self._fired = (self._has_current and self.ready.value == 1
                       and self.reset.value == 0)


class StreamMonitor:
    """Takes items off the output stream ``<prefix>__valid/ready/payload`` of ``dut``.

    ``ready`` is held low on a ``stall`` fraction of cycles (or always while :attr:`hold` is
    set). ``on_item`` callbacks get ``(payload word, cycle)`` for every handshake.
    """

    def __init__(self, dut, prefix: str, ticker: Ticker, *, rng: random.Random | None = None,
                 stall: float = 0.0, reset=None):
        self.ticker = ticker
        self.reset = reset if reset is not None else dut.rst
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.rng = rng or random.Random(0)
        self.stall = stall
        self.on_item: list[Callable[[int, int], None]] = []
        self.items = 0
        #: Hold ``ready`` low while set.
        self.hold = False
        self._sampled = None
        self._ready = False
        self.ready.value = 0
        ticker.edge.append(self._edge)
        ticker.sample.append(self._sample)

    def _edge(self):
        if self._sampled is not None:
            self.items += 1
            for callback in self.on_item:
                callback(self._sampled, self.ticker.cycle)
        ready = not (self.hold or self.stall and self.rng.random() < self.stall)
        if ready != self._ready:
            self.ready.value = int(ready)
            self._ready = ready

    def _sample(self):
        self._sampled = None
        if self.valid.value == 1 and self.ready.value == 1 and self.reset.value == 0:
            self._sampled = self.payload.value.to_unsigned()
