"""The engine's register map: one AXI4-Lite block (specification section 3.7).

This module is the single definition of every software-visible register. From it come the
register block in hardware (:mod:`hdl.regs`), ``docs/registers.md`` (:func:`markdown`), a C
header (:func:`c_header`, ``python -m thermocline.regmap --c-header PATH``) and the constants
the testbenches use (this module).

Bus
---
32-bit data, byte addresses :data:`ADDR_WIDTH` bits wide; address bits 1..0 are ignored (the
write strobes say which bytes a write carries). Every register is 32-bit aligned.

Access kinds (one per register; every field of a register shares it)
-------------------------------------------------------------------
``RW``
    Read/write, held in the block; the unit sees its value. Strobed bytes replace the old
    ones; bits outside the fields are read as 0 and ignored on write.
``RO``
    Read-only, the unit's value (or a constant). A write is answered with SLVERR.
``W1C``
    Held in the block; the unit sets bits with one-cycle pulses; writing 1 to a bit clears
    it. A set and a clear of one bit in the same cycle leave it set.
``WO``
    Write-only command: the written fields reach the unit for one cycle (the written value
    during the write, 0 otherwise); reads return 0.
``RWU``
    Read/write, held in the unit: a write hands the merged value (strobed bytes from the
    write, the others from the unit's current value) to the unit for one cycle, and a read
    returns the unit's current value. What a write does is the register's own contract.

A register with ``pulse`` set also gives its unit a one-cycle strobe each time it is
written (``WO`` and ``RWU`` registers always do). A write with no strobe bit set changes
nothing and gives no strobe, but is answered OKAY.

64-bit registers
----------------
A 64-bit register takes two words, ``<NAME>_LO`` (bits 31..0) at its offset and
``<NAME>_HI`` (bits 63..32) at offset + 4. Read order: LO first, then HI. Reading LO
captures the HI half at the same instant, and reading HI returns the captured half, so a
LO-then-HI pair is one consistent 64-bit value even while it changes (a HI read never
captures). 64-bit ``RW`` registers are two independent words; the units sample them only
when they act on them (a pass start), so software writes both halves before that.

Windows
-------
A window is a read-only array served by a unit's synchronous memory: the block presents a
word index and takes the unit's word one cycle later. Elements of ``stride`` words each;
word ``j`` of element ``i`` is at ``offset + 4 * (i * stride + j)``.

Errors
------
A read or write of an address that no register or window maps, and a write to an ``RO``
register or a window, are answered with SLVERR (the slave exists; the register does not).
Such a write changes nothing; such a read returns 0.
"""

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from thermocline.layouts import FAULT_KINDS

__all__ = [
    "ACCESS", "ADDR_WIDTH", "DATA_WIDTH", "OKAY", "SLVERR", "Field", "Register", "Word",
    "Window", "Section", "RegisterMap", "REGMAP", "WALKER_COUNTERS", "EXIT_COUNTERS",
    "RegisterFile", "markdown", "c_header", "c_offsets_program", "main",
]

#: Access kinds (module documentation).
ACCESS = ("RW", "RO", "W1C", "WO", "RWU")
#: Width of the byte address of the block.
ADDR_WIDTH = 12
#: Data width of the bus.
DATA_WIDTH = 32
#: AXI response codes the block gives.
OKAY, SLVERR = 0, 2

_WORD = (1 << 32) - 1


@dataclass(frozen=True)
class Field:
    """Bits ``[lsb, lsb + width)`` of a register.

    ``values`` names the meaningful values of an enumerated field (``{value: name}``).
    """

    name: str
    lsb: int
    width: int
    desc: str
    reset: int = 0
    values: dict = field(default_factory=dict)

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def mask(self) -> int:
        """The field's bits in place."""
        return ((1 << self.width) - 1) << self.lsb

    def get(self, word: int) -> int:
        return (word >> self.lsb) & ((1 << self.width) - 1)


@dataclass(frozen=True)
class Register:
    """A register of 32 or 64 bits at byte ``offset``; see the module documentation.

    ``const`` makes an ``RO`` register a constant (the unit supplies nothing).
    """

    name: str
    offset: int
    access: str
    desc: str
    fields: tuple
    width: int = 32
    pulse: bool = False
    const: bool = False

    @property
    def reset(self) -> int:
        """Value after reset (and the constant of a ``const`` register)."""
        value = 0
        for f in self.fields:
            value |= f.reset << f.lsb
        return value

    @property
    def mask(self) -> int:
        """Bits that belong to a field."""
        value = 0
        for f in self.fields:
            value |= f.mask
        return value

    @property
    def strobe(self) -> bool:
        """Does the unit get a write strobe?"""
        return self.pulse or self.access in ("WO", "RWU")

    @property
    def words(self) -> list[tuple[str, int, int]]:
        """``(name, byte offset, shift)`` of each 32-bit word: one, or LO then HI."""
        if self.width == 32:
            return [(self.name, self.offset, 0)]
        return [(self.name + "_LO", self.offset, 0), (self.name + "_HI", self.offset + 4, 32)]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    def pack(self, **values: int) -> int:
        """A register value with the named fields set (the others 0)."""
        word = 0
        for name, value in values.items():
            f = self.field(name)
            if not 0 <= value <= (1 << f.width) - 1:
                raise ValueError(f"{self.name}.{name} holds {f.width} bits, got {value:#x}")
            word |= value << f.lsb
        return word


@dataclass(frozen=True)
class Word:
    """One word of a window element."""

    name: str
    desc: str
    fields: tuple = ()


@dataclass(frozen=True)
class Window:
    """A read-only array of ``count`` elements of ``len(words)`` words from ``offset``."""

    name: str
    offset: int
    count: int
    desc: str
    words: tuple

    @property
    def stride(self) -> int:
        """Words per element."""
        return len(self.words)

    @property
    def size(self) -> int:
        """Words in the window."""
        return self.count * self.stride

    @property
    def end(self) -> int:
        """First byte offset after the window."""
        return self.offset + 4 * self.size


@dataclass(frozen=True)
class Section:
    """A group of registers and windows of one unit."""

    title: str
    desc: str
    items: tuple


def _f(name, lsb, width, desc, reset=0, values=None):
    return Field(name, lsb, width, desc, reset, dict(values or {}))


def _value(name, desc, reset=0, width=32):
    """A register that is one field of its whole width."""
    return (_f(name, 0, width, desc, reset),)


def _counter(name, offset, desc):
    return Register(name, offset, "RO", desc, _value("COUNT", "32-bit count, wraps"))


#: The walker's performance counters, in the order of ``hdl.walker.COUNTERS``.
WALKER_COUNTERS = (
    ("requests", "requests accepted"),
    ("walks", "requests that walked (missed the full TLB)"),
    ("mem_reads", "memory reads"),
    ("mem_writes", "memory writes (A/D updates)"),
    ("restarts", "update phases restarted because an entry changed"),
    ("tlb_hits", "full-translation TLB hits"),
    ("gtlb_hits", "guest TLB hits"),
    ("ntlb_hits", "nested TLB hits"),
    ("gpwc_hits_4", "guest paging-structure cache hits, level 4"),
    ("gpwc_hits_3", "guest paging-structure cache hits, level 3"),
    ("gpwc_hits_2", "guest paging-structure cache hits, level 2"),
    ("hpwc_hits_4", "host paging-structure cache hits, level 4"),
    ("hpwc_hits_3", "host paging-structure cache hits, level 3"),
    ("hpwc_hits_2", "host paging-structure cache hits, level 2"),
) + tuple((f"fault_{k}", f"responses with fault {k!r}") for k in FAULT_KINDS[1:])

#: The exit detector's counters (``model.exit_detector.ExitCounters``).
EXIT_COUNTERS = (
    ("events", "events fed"),
    ("exit_drops", "drops with reason exit"),
    ("bulk_drops", "drops with reason bulk"),
    ("space_evictions", "space-table round-robin replacements"),
    ("table_evictions", "table-table round-robin replacements"),
)

#: Scalar statistics of a pass, in the order of ``hdl.scanner.STAT_NAMES``.
SCAN_STATS = (
    ("accessed", "leaves whose A bit was set (and cleared)"),
    ("leaves_4k", "present, well-formed 4 KiB leaves"),
    ("leaves_2m", "present, well-formed 2 MiB leaves"),
    ("leaves_1g", "present, well-formed 1 GiB leaves"),
    ("entries_read", "entries read when the walk reached them"),
    ("tables_read", "tables walked"),
    ("writes", "entries written back"),
    ("malformed", "present entries that were malformed"),
    ("bus_errors", "reads or writes answered with an error"),
    ("retries", "compare-and-set attempts that found the word changed"),
    ("cycles", "cycles from the start of the pass to the end of its work"),
)

_IRQ_FIELDS = (
    _f("PASS_DONE", 0, 1, "a scan pass finished"),
    _f("OVERRUN", 1, 1, "a scan pass took longer than its period"),
    _f("CANDIDATES", 2, 1, "a scan pass finished with at least one large-page candidate"),
    _f("BUS_ERROR", 3, 1, "a scan pass met a bus error"),
    _f("EXIT_DROP", 4, 1, "the exit detector queued a drop event"),
    _f("WALK_FAULT", 5, 1, "the walker answered a request with a fault"),
)

_ENGINE = Section("Engine", "Identification, interrupts and status.", (
    Register("ID", 0x000, "RO", "Constant: ASCII 'THRM'.",
             _value("ID", "0x5448524D", 0x5448524D), const=True),
    Register("VERSION", 0x004, "RO", "Constant: version of this register map.", (
        _f("MINOR", 0, 16, "minor version (compatible additions)", 0),
        _f("MAJOR", 16, 16, "major version (incompatible changes)", 1),
    ), const=True),
    Register("IRQ_CAUSE", 0x008, "W1C",
             "Interrupt causes, set by the units; write 1 to clear. The interrupt line is "
             "high while `IRQ_CAUSE & IRQ_MASK` is not 0.", _IRQ_FIELDS),
    Register("IRQ_MASK", 0x00C, "RW", "Interrupt enables, one per cause (1 = enabled).",
             tuple(Field(f.name, f.lsb, f.width, f"enable {f.name}") for f in _IRQ_FIELDS)),
    Register("STATUS", 0x010, "RO", "What the units are doing.", (
        _f("WALK_BUSY", 0, 1, "the walker has a request or command in progress"),
        _f("SCAN_BUSY", 1, 1, "a scan pass is wanted or running, or its end is not yet "
           "published (`PASS_DONE`)"),
        _f("PASS_DUE", 2, 1, "the interval controller says a pass is due"),
    )),
))

_WALKER = Section("Walker", "Cache invalidation commands and performance counters.", (
    Register("WALK_INV_ADDR", 0x040, "RW", "Address operand of an invalidation (GVA or GPA).",
             _value("ADDR", "address", width=64), width=64),
    Register("WALK_INV_CR3", 0x048, "RW", "Guest root operand of an invalidation.",
             _value("CR3", "guest CR3", width=64), width=64),
    Register("WALK_INV_HROOT", 0x050, "RW", "Host root operand of an invalidation.",
             _value("HROOT", "EPTP or nested CR3", width=64), width=64),
    Register("WALK_INV_CMD", 0x058, "WO",
             "Queue an invalidation with the operands above (the `WALK_INV` layout). The "
             "queue holds 4 and the walker takes them between walks; a command that finds "
             "it full is replaced by `ALL`, so none is lost (the walker forgets more).", (
                 _f("OP", 0, 3, "operation", 0,
                    {0: "ALL", 1: "GVA", 2: "GPA", 3: "ROOT", 4: "SCAN_CLEAR"}),
                 _f("MATCH_CR3", 3, 1, "only entries of `WALK_INV_CR3`"),
                 _f("MATCH_HROOT", 4, 1, "only entries of `WALK_INV_HROOT`"),
                 _f("SIZE", 5, 2, "page size of a by-address operation", 0,
                    {0: "4K", 1: "2M", 2: "1G"}),
             )),
) + tuple(_counter(f"WALK_{name.upper()}", 0x080 + 4 * i, desc)
          for i, (name, desc) in enumerate(WALKER_COUNTERS)))

_SCANNER = Section("Scanner", "Pass control, classifier configuration and per-pass statistics. "
                   "Configuration is sampled when a pass starts.", (
    Register("SCAN_CTRL", 0x100, "RW", "Continuous scanning.", (
        _f("ENABLE", 0, 1, "start a pass whenever the interval controller says one is due "
           "(if one is due when a pass ends, the next starts at once, and its start clears "
           "the statistics and candidate windows: read them first, set `ACK`, or turn "
           "scanning off)"),
        _f("ACK", 1, 1, "with `ENABLE`: a pass also waits until `IRQ_CAUSE.PASS_DONE` is "
           "clear, so the windows keep each pass until software has read it and cleared "
           "the cause"),
    )),
    Register("SCAN_CMD", 0x104, "WO", "Pass commands.", (
        _f("START", 0, 1, "start one pass now (ignored while `STATUS.SCAN_BUSY`; the pass "
           "waits until the walker has taken the last pass's cleared A bits)"),
        _f("SET_INDEX", 1, 1, "with START: the pass takes index `SCAN_PASS_INDEX`"),
    )),
    Register("SCAN_ROOT", 0x108, "RW", "Host-physical address of the root table (bits 11..0 "
             "ignored). A root with a bit set at or above the engine's physical-address "
             "width (`pa_bits`) is malformed: the pass counts one `malformed` entry and walks "
             "nothing.", _value("ROOT", "root table address", width=64), width=64),
    Register("SCAN_CONFIG", 0x110, "RW", "Host format and activity levels.", (
        _f("FMT", 0, 2, "host tree format", 0, {0: "EPT", 1: "NPT", 2: "IA32E"}),
        _f("LEVELS", 8, 6, "activity levels N, 2..32", 4),
        _f("UP", 16, 5, "levels gained when accessed, 1..N-1", 1),
        _f("DOWN", 24, 5, "levels lost when not accessed, 1..N-1", 1),
    )),
    Register("SCAN_LONG", 0x114, "RW", "Multi-granularity (long period) option.", (
        _f("EVERY", 0, 16, "short passes per long period P; 0 = off, else 2..65535", 0),
        _f("LEVELS", 16, 6, "long levels, 2..32", 4),
        _f("NEED", 24, 5, "short passes of a long period that must see the page accessed, "
           "1..P", 1),
    )),
    Register("SCAN_HROOT", 0x120, "RW", "Host root the walker's requests use for the tree "
             "being scanned (EPTP or nested CR3): the A bits a pass clears drop the "
             "walker's cached translations of the host root this register held when the "
             "pass started.",
             _value("HROOT", "host root", width=64), width=64),
    Register("SCAN_PASS_INDEX", 0x118, "RW", "Index a pass started with SET_INDEX takes.",
             _value("INDEX", "pass index")),
    Register("SCAN_LAST_PASS", 0x11C, "RO", "Index of the last finished pass.",
             _value("INDEX", "pass index")),
    Window("SCAN_STAT", 0x140, 1, "Scalar statistics of the last finished pass (32 bits, "
           "wrapping).", tuple(Word(n.upper(), d) for n, d in SCAN_STATS)),
    Window("SCAN_HIST", 0x180, 32, "Leaves by activity level after the last pass; element "
           "`i` is level `i` (levels beyond the unit's size read 0).",
           (Word("COUNT", "leaves at this level"),)),
    Window("SCAN_LONG_HIST", 0x200, 32, "Leaves by long level after the last pass (0 without "
           "the long period).", (Word("COUNT", "leaves at this long level"),)),
))

_PRIORITIZER = Section("Large-page prioritizer", "Configuration (sampled at a pass start) and "
                       "the candidates of the last pass.", (
    Register("LP_CONFIG", 0x280, "RW", "Prioritizer settings.", (
        _f("ENABLE", 0, 1, "update the moving averages and report candidates", 1),
        _f("SHIFT", 4, 3, "smoothing k of the moving average, 0..4", 1),
        _f("THRESHOLD", 8, 5, "smallest value proposed, 0..31", 8),
        _f("TOP_K", 16, 7, "most candidates reported, 0..64 (the engine keeps at most as "
           "many as it was built for, 8 by default; more act as that)", 8),
    )),
    Register("LP_MAX_NONPRESENT", 0x284, "RW", "Eligibility limit.",
             (_f("COUNT", 0, 10, "most absent entries of a proposed leaf table, 0..512"),)),
    Register("LP_WARMUP", 0x288, "RW", "Passes 0..W-1 propose nothing.",
             _value("PASSES", "W", 2)),
    Register("LP_COUNT", 0x28C, "RO", "Candidates reported by the last pass.",
             (_f("COUNT", 0, 7, "0..64"),)),
    Window("LP_CAND", 0x400, 64, "Ranked candidates of the last pass, best first (element "
           "`i` is rank `i`; only the first `LP_COUNT` are meaningful).", (
               Word("REGION_LO", "2 MiB region (input address), bits 31..0"),
               Word("REGION_HI", "2 MiB region, bits 63..32"),
               Word("ENTRY_LO", "host-physical address of the parent entry, bits 31..0"),
               Word("ENTRY_HI", "parent entry address bits 51..32 and the value", (
                   _f("ADDR", 0, 20, "parent entry address, bits 51..32"),
                   _f("VALUE", 24, 5, "moving average after the pass, 0..31"),
               )),
           )),
))

_INTERVAL = Section("Interval controller", "Scan period: fixed, migration-aligned or "
                    "access-ratio goal (`model.interval`). Times are engine clock cycles.", (
    Register("INT_MODE", 0x300, "RW", "Mode of the controller.", (
        _f("MODE", 0, 2, "mode", 0, {0: "FIXED", 1: "MIGRATION", 2: "RATIO"}),
    )),
    Register("INT_PERIOD", 0x304, "RWU", "Period in force. A write sets it, clamped to "
             "[`INT_MIN_PERIOD`, `INT_MAX_PERIOD`].", _value("PERIOD", "cycles", 1 << 20)),
    Register("INT_MIN_PERIOD", 0x308, "RW", "Lower clamp of the period.",
             _value("PERIOD", "cycles", 1)),
    Register("INT_MAX_PERIOD", 0x30C, "RW", "Upper clamp of the period.",
             _value("PERIOD", "cycles", _WORD)),
    Register("INT_RATIO", 0x310, "RW", "Ratio mode goal, unsigned Q0.16 fractions.", (
        _f("TARGET", 0, 16, "goal for accessed / leaves", 0x4000),
        _f("HYSTERESIS", 16, 16, "half-width of the dead band", 0x0800),
    )),
    Register("INT_STEP", 0x314, "RW", "Ratio mode step.", (
        _f("SHIFT", 0, 5, "each step moves the period by max(1, period >> SHIFT), 0..16", 3),
    )),
    Register("INT_CPP", 0x318, "RW", "Migration mode: cycles to send one page, unsigned "
             "Q16.16 (`model.interval.cycles_per_page_q16`).", _value("CPP_Q16", "Q16.16")),
    Register("INT_BATCH", 0x31C, "RW", "Migration mode: pages in the batch being sent. "
             "Writing it starts a migration round: the period becomes clamp((BATCH * "
             "INT_CPP) >> 16). Write `INT_CPP` first.", _value("PAGES", "pages"), pulse=True),
    Register("INT_STATUS", 0x320, "RO", "Controller status.", (
        _f("OVERRUN", 0, 1, "sticky: a pass was longer than its period (`INT_CMD`)"),
    )),
    Register("INT_OVERRUN_COUNT", 0x324, "RO", "Passes that overran since reset (saturates).",
             _value("COUNT", "passes")),
    Register("INT_LAST_START", 0x328, "RO", "Start cycle of the pass in progress (or due), "
             "as scheduled: each pass's end, a `SCAN_CMD` pass's too, moves it on by the "
             "period (or by the pass's length, if longer).",
             _value("CYCLE", "cycle", width=64), width=64),
    Register("INT_NOW", 0x330, "RO", "Cycle counter of the controller.",
             _value("CYCLE", "cycle", width=64), width=64),
    Register("INT_CMD", 0x338, "WO", "Controller commands.", (
        _f("CLEAR_OVERRUN", 0, 1, "clear `INT_STATUS.OVERRUN` (the count keeps its value)"),
    )),
))

_PREFETCH = Section("Prefetcher", "Window of guest PTEs read around a fault.", (
    Register("PF_CONFIG", 0x380, "RW", "Prefetch window.", (
        _f("WINDOW", 0, 9, "neighbours considered on each side, 1..511", 8),
        _f("DIRECTION", 12, 2, "which neighbours", 2, {0: "FORWARD", 1: "BACKWARD", 2: "BOTH"}),
    )),
))

_EXIT = Section("Exit detector", "Thresholds, the queue of drop events and counters.", (
    Register("EXIT_CONFIG", 0x3A0, "RO", "Thresholds the unit was built with.", (
        _f("RUN_THRESHOLD", 0, 10, "consecutive unmapping writes that qualify a table, "
           "1..512", 4),
        _f("TABLES_NEEDED", 16, 16, "qualified tables a space needs for bulk drops, "
           "1..tables", 2),
    )),
    Register("EXIT_DROP_STATUS", 0x3A4, "RO", "Head of the drop-event queue. Software must "
             "pop events: while the queue is full the detector takes no input, and demand "
             "walks whose responses carry an access event for it wait.", (
        _f("VALID", 0, 1, "the queue holds an event (the registers below describe it)"),
        _f("REASON", 1, 1, "reason", 0, {0: "EXIT", 1: "BULK"}),
    )),
    Register("EXIT_DROP_ASID", 0x3A8, "RO", "Address space of the head event.",
             _value("ASID", "address space (guest CR3)", width=64), width=64),
    Register("EXIT_DROP_TABLE", 0x3B0, "RO", "Guest leaf table of the head event.",
             _value("GPA", "table guest-physical address", width=64), width=64),
    Register("EXIT_DROP_POP", 0x3B8, "WO", "Queue command.", (
        _f("POP", 0, 1, "remove the head event"),
    )),
) + tuple(_counter(f"EXIT_{name.upper()}", 0x3C0 + 4 * i, desc)
          for i, (name, desc) in enumerate(EXIT_COUNTERS)))


class RegisterMap:
    """The sections, with lookups by name and address; checked on construction.

    Raises
    ------
    ValueError
        Two items overlap, an offset is not aligned or outside the address space, a field
        is outside its register or overlaps another, a reset value does not fit, an access
        kind is unknown, or a 64-bit register is not plain ``RW``/``RO``.
    """

    def __init__(self, sections):
        self.sections = tuple(sections)
        self.registers: dict[str, Register] = {}
        self.windows: dict[str, Window] = {}
        spans = []
        for section in self.sections:
            for item in section.items:
                if item.name in self.registers or item.name in self.windows:
                    raise ValueError(f"register map: name {item.name} defined twice")
                if isinstance(item, Register):
                    self._check_register(item)
                    self.registers[item.name] = item
                    spans.append((item.offset, item.offset + item.width // 8, item.name))
                else:
                    self._check_window(item)
                    self.windows[item.name] = item
                    spans.append((item.offset, item.end, item.name))
        spans.sort()
        for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
            if start < end:
                raise ValueError(f"register map: {b} at {start:#x} overlaps {a}")
        self._words = {}
        for reg in self.registers.values():
            for _, offset, shift in reg.words:
                self._words[offset] = (reg, shift)

    @staticmethod
    def _check_register(reg: Register):
        where = f"register {reg.name}"
        if reg.access not in ACCESS:
            raise ValueError(f"{where}: access must be one of {ACCESS}, got {reg.access!r}")
        if reg.width not in (32, 64):
            raise ValueError(f"{where}: width must be 32 or 64, got {reg.width}")
        if reg.offset % (reg.width // 8) or not 0 <= reg.offset < 1 << ADDR_WIDTH:
            raise ValueError(f"{where}: offset {reg.offset:#x} must be {reg.width // 8}-byte "
                             f"aligned and below {1 << ADDR_WIDTH:#x}")
        if reg.width == 64 and (reg.access not in ("RW", "RO") or reg.pulse):
            raise ValueError(f"{where}: a 64-bit register must be RW or RO without pulse")
        if reg.const and reg.access != "RO":
            raise ValueError(f"{where}: only an RO register can be constant")
        if not reg.fields:
            raise ValueError(f"{where}: has no field")
        used = 0
        names = set()
        for f in reg.fields:
            if f.name in names:
                raise ValueError(f"{where}: field {f.name} defined twice")
            names.add(f.name)
            if f.width < 1 or f.lsb < 0 or f.msb >= reg.width:
                raise ValueError(f"{where}: field {f.name} [{f.msb}:{f.lsb}] is outside "
                                 f"its {reg.width} bits")
            if used & f.mask:
                raise ValueError(f"{where}: field {f.name} overlaps another field")
            used |= f.mask
            if not 0 <= f.reset < 1 << f.width:
                raise ValueError(f"{where}: reset {f.reset:#x} of {f.name} does not fit "
                                 f"{f.width} bits")
            for value in f.values:
                if not 0 <= value < 1 << f.width:
                    raise ValueError(f"{where}: value {value} of {f.name} does not fit")

    @staticmethod
    def _check_window(win: Window):
        where = f"window {win.name}"
        if win.offset % 4 or win.end > 1 << ADDR_WIDTH or win.count < 1 or not win.words:
            raise ValueError(f"{where}: offset {win.offset:#x}, {win.count} elements of "
                             f"{win.stride} words must be aligned, non-empty and inside the "
                             f"address space")
        for w in win.words:
            used = 0
            for f in w.fields:
                if f.lsb < 0 or f.msb >= 32 or used & f.mask:
                    raise ValueError(f"{where}: field {w.name}.{f.name} is outside 32 bits "
                                     f"or overlaps")
                used |= f.mask

    def __getitem__(self, name: str) -> Register:
        return self.registers[name]

    def word(self, addr: int) -> tuple[Register, int] | None:
        """``(register, shift)`` of the word at byte address ``addr`` (bits 1..0 ignored),
        or None."""
        return self._words.get(addr & ~3 & ((1 << ADDR_WIDTH) - 1))

    def window(self, addr: int) -> tuple[Window, int] | None:
        """``(window, word index)`` at byte address ``addr``, or None."""
        addr = addr & ~3 & ((1 << ADDR_WIDTH) - 1)
        for win in self.windows.values():
            if win.offset <= addr < win.end:
                return win, (addr - win.offset) // 4
        return None

    def addresses(self) -> list[int]:
        """Every mapped word address, ascending."""
        out = list(self._words)
        for win in self.windows.values():
            out += range(win.offset, win.end, 4)
        return sorted(out)


#: The register map of the engine.
REGMAP = RegisterMap([_ENGINE, _WALKER, _SCANNER, _PRIORITIZER, _INTERVAL, _PREFETCH, _EXIT])


# --- behaviour -----------------------------------------------------------------------------

def _byte_mask(strb: int) -> int:
    return sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1)


class RegisterFile:
    """What the register block answers, word by word: the map's contract as a model.

    The units are represented by callbacks: ``unit(name)`` gives the current value of an
    ``RO``/``RWU`` register, ``window(name, index)`` a window word. :attr:`values` holds the
    ``RW`` and ``W1C`` registers; :attr:`events` collects what the unit sees of each write,
    ``(name, value)`` for registers with a strobe.
    """

    def __init__(self, regmap: RegisterMap = REGMAP):
        self.regmap = regmap
        self.reset()

    def reset(self):
        """State after reset: every held register at its reset value, shadows 0."""
        self.values = {r.name: r.reset for r in self.regmap.registers.values()
                       if r.access in ("RW", "W1C")}
        self.shadows = {r.name: 0 for r in self.regmap.registers.values()
                        if r.access == "RO" and r.width == 64}
        self.events: list[tuple[str, int]] = []

    def set_bits(self, name: str, bits: int):
        """A unit sets bits of a ``W1C`` register."""
        reg = self.regmap[name]
        self.values[name] |= bits & reg.mask

    def read(self, addr: int, unit, window) -> tuple[int, int]:
        """``(data, resp)`` of a read of ``addr``."""
        hit = self.regmap.word(addr)
        if hit is None:
            win = self.regmap.window(addr)
            if win is None:
                return 0, SLVERR
            return window(win[0].name, win[1]) & _WORD, OKAY
        reg, shift = hit
        if reg.access == "WO":
            return 0, OKAY
        if reg.access in ("RW", "W1C"):
            return (self.values[reg.name] >> shift) & _WORD, OKAY
        value = reg.reset if reg.const else unit(reg.name) & reg.mask
        if reg.width == 64:
            if shift == 0:
                self.shadows[reg.name] = value >> 32
                return value & _WORD, OKAY
            return self.shadows[reg.name], OKAY
        return value, OKAY

    def write(self, addr: int, data: int, strb: int, unit) -> int:
        """Response of a write of ``data`` with byte strobes ``strb`` to ``addr``."""
        hit = self.regmap.word(addr)
        if hit is None or hit[0].access == "RO":
            return SLVERR
        reg, shift = hit
        if not strb & 0xF:
            return OKAY
        mask = (_byte_mask(strb) << shift) & reg.mask
        data = (data << shift) & mask
        if reg.access == "RW":
            self.values[reg.name] = (self.values[reg.name] & ~mask) | data
            if reg.pulse:
                self.events.append((reg.name, self.values[reg.name]))
        elif reg.access == "W1C":
            self.values[reg.name] &= ~data
        elif reg.access == "WO":
            self.events.append((reg.name, data))
        else:
            self.events.append((reg.name, (unit(reg.name) & reg.mask & ~mask) | data))
        return OKAY


# --- generated text ------------------------------------------------------------------------

def _bits(f: Field) -> str:
    return f"{f.lsb}" if f.width == 1 else f"{f.msb}:{f.lsb}"


def _field_desc(f: Field) -> str:
    text = f.desc
    if f.values:
        text += " (" + ", ".join(f"{v} = {n}" for v, n in sorted(f.values.items())) + ")"
    return text


def markdown(regmap: RegisterMap = REGMAP) -> str:
    """The text of ``docs/registers.md``."""
    out = [
        "# Registers",
        "",
        "<!-- Generated from thermocline/regmap.py by "
        "`python -m thermocline.regmap --markdown docs/registers.md`; do not edit. -->",
        "",
        f"One AXI4-Lite slave, {DATA_WIDTH}-bit data, {ADDR_WIDTH}-bit byte addresses "
        "(bits 1..0 ignored; write strobes honoured). Unmapped addresses, and writes to "
        "read-only registers and windows, are answered with SLVERR and change nothing. "
        "A C header comes from `python -m thermocline.regmap --c-header PATH`.",
        "",
        "| access | meaning |",
        "|---|---|",
        "| RW | read/write, held in the register block |",
        "| RO | read-only: the unit's value, or a constant; writes answer SLVERR |",
        "| W1C | set by the unit, write 1 to clear; a set wins over a clear in the same cycle |",
        "| WO | write-only command: the written fields reach the unit for one cycle; reads 0 |",
        "| RWU | read/write, held in the unit: a write is handed to the unit, a read returns "
        "the unit's value |",
        "",
        "64-bit registers are two words, `_LO` (bits 31..0) then `_HI` (bits 63..32). Read "
        "LO first: reading LO captures HI, and reading HI returns the captured half, so the "
        "pair is one consistent value. 64-bit RW registers are sampled by their unit only "
        "when it acts on them; write both halves before that. A register marked *strobe* "
        "also gives its unit a one-cycle pulse when written (WO and RWU always do).",
        "",
        "Windows are read-only arrays served by a unit's memory: word `j` of element `i` is "
        "at `offset + 4 * (i * stride + j)`.",
        "",
        "## Summary",
        "",
        "| offset | name | access | reset | description |",
        "|---|---|---|---|---|",
    ]
    for section in regmap.sections:
        for item in section.items:
            if isinstance(item, Register):
                for name, offset, shift in item.words:
                    flags = item.access + (" strobe" if item.pulse else "")
                    reset = (item.reset >> shift) & _WORD
                    out.append(f"| `{offset:#05x}` | `{name}` | {flags} | `{reset:#x}` | "
                               f"{item.desc} |")
            else:
                out.append(f"| `{item.offset:#05x}`..`{item.end - 4:#05x}` | `{item.name}` | "
                           f"window | - | {item.count} x {item.stride} words. {item.desc} |")
    for section in regmap.sections:
        out += ["", f"## {section.title}", "", section.desc]
        for item in section.items:
            out.append("")
            if isinstance(item, Register):
                out += [f"### `{item.name}` ({item.offset:#05x}, {item.width}-bit "
                        f"{item.access}{', strobe' if item.pulse else ''})", "", item.desc, "",
                        "| bits | field | reset | description |", "|---|---|---|---|"]
                out += [f"| {_bits(f)} | `{f.name}` | `{f.reset:#x}` | {_field_desc(f)} |"
                        for f in item.fields]
            else:
                out += [f"### `{item.name}` (window {item.offset:#05x}, {item.count} x "
                        f"{item.stride} words)", "", item.desc, "",
                        "| word | name | description |", "|---|---|---|"]
                for j, w in enumerate(item.words):
                    desc = w.desc
                    if w.fields:
                        desc += ": " + "; ".join(f"bits {_bits(f)} `{f.name}` {f.desc}"
                                                 for f in w.fields)
                    out.append(f"| {j} | `{w.name}` | {desc} |")
    return "\n".join(out) + "\n"


def _c_defines(regmap: RegisterMap) -> list[tuple[str, int, str]]:
    """Every ``(macro, value, comment)`` of the C header, in order."""
    out = []
    for section in regmap.sections:
        for item in section.items:
            if isinstance(item, Register):
                for name, offset, shift in item.words:
                    out.append((f"TC_REG_{name}", offset, f"{item.access}: {item.desc}"))
                    out.append((f"TC_REG_{name}_RESET", (item.reset >> shift) & _WORD, ""))
                for f in item.fields:
                    base = f"TC_{item.name}_{f.name}"
                    out.append((f"{base}_SHIFT", f.lsb, f.desc))
                    out.append((f"{base}_WIDTH", f.width, ""))
                    if f.msb < 32:
                        out.append((f"{base}_MASK", f.mask, ""))
                    for value, vname in sorted(f.values.items()):
                        out.append((f"{base}_{vname}", value, ""))
            else:
                out.append((f"TC_WIN_{item.name}", item.offset, item.desc))
                out.append((f"TC_WIN_{item.name}_ELEMENTS", item.count, "elements"))
                out.append((f"TC_WIN_{item.name}_STRIDE", 4 * item.stride,
                            "bytes per element"))
                for j, w in enumerate(item.words):
                    out.append((f"TC_WIN_{item.name}_{w.name}", 4 * j, w.desc))
                    for f in w.fields:
                        base = f"TC_{item.name}_{w.name}_{f.name}"
                        out.append((f"{base}_SHIFT", f.lsb, f.desc))
                        out.append((f"{base}_MASK", f.mask, ""))
    return out


def _c_comment(text: str) -> str:
    return text.replace("*/", "* /").replace("`", "")


def c_header(regmap: RegisterMap = REGMAP) -> str:
    """A C header with every offset, reset value, field position and named value."""
    out = [
        "/* Thermocline register map. Generated from thermocline/regmap.py by",
        " * python -m thermocline.regmap --c-header; do not edit.",
        " * Offsets are bytes from the base of the AXI4-Lite block; read 64-bit registers",
        " * LO then HI. */",
        "#ifndef THERMOCLINE_REGS_H",
        "#define THERMOCLINE_REGS_H",
        "",
        f"#define TC_ADDR_WIDTH {ADDR_WIDTH}u",
    ]
    for name, value, comment in _c_defines(regmap):
        if comment:
            out.append(f"/* {_c_comment(comment)} */")
        out.append(f"#define {name} {value:#x}u")
    out += ["", "#endif /* THERMOCLINE_REGS_H */"]
    return "\n".join(out) + "\n"


def c_offsets_program(header_name: str, regmap: RegisterMap = REGMAP) -> tuple[str, str]:
    """A C program that prints every macro of the header as ``name value`` lines, and the
    output it must print."""
    lines = [f'#include "{header_name}"', "#include <stdio.h>", "int main(void) {"]
    expected = []
    for name, value, _ in _c_defines(regmap):
        lines.append(f'    printf("{name} %lu\\n", (unsigned long){name});')
        expected.append(f"{name} {value}")
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n", "\n".join(expected) + "\n"


def main(argv=None) -> int:
    """``python -m thermocline.regmap``: write the generated documents."""
    parser = argparse.ArgumentParser(prog="python -m thermocline.regmap",
                                     description="Write the register map's C header and docs.")
    parser.add_argument("--c-header", metavar="PATH", type=Path, help="write the C header")
    parser.add_argument("--markdown", metavar="PATH", type=Path,
                        help="write the Markdown reference (docs/registers.md)")
    args = parser.parse_args(argv)
    if args.c_header is None and args.markdown is None:
        parser.error("nothing to do: give --c-header PATH and/or --markdown PATH")
    for path, text in ((args.c_header, c_header), (args.markdown, markdown)):
        if path is None:
            continue
        try:
            path.write_text(text())
        except OSError as err:
            print(f"error: cannot write {path}: {err.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
