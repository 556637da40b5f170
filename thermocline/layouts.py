"""Bit layouts of every entry, pointer and fault word the engine reads or writes.

This module is the single source of truth for bit positions. The golden model (``model/``),
the hardware (``hdl/``) and the testbenches (``cosim/``) all import it; nothing else spells a
bit position. Every layout is declared LSB-first, in the order of the specification, and
covers its whole width (gaps become reserved fields whose names start with ``_``).

Formats
-------
* ``EPT_ENTRY``   Intel EPT paging-structure entry (host tables, EPT mode).
* ``EPTP``        EPT pointer.
* ``X86_ENTRY``   x86-64 IA-32e paging-structure entry: guest tables, AMD NPT host tables and
                  shadow tables all share it.
* ``CR3``         guest root / nested CR3.
* ``PF_ERROR``    guest page-fault error code.
* ``EPT_QUAL``    EPT-violation exit qualification.
* ``NPF_INFO``    nested-page-fault information (EXITINFO1).

Engine-owned software bits
--------------------------
The engine may write only the software-available bits it owns: EPT bits 52..56, NPT and
IA-32e (shadow) bits 52..58. The activity level of a leaf and the large-page count of a
leaf table (kept in its parent entry) live there; see :func:`activity_fields` and
``LPCOUNT``.
"""

from dataclasses import dataclass

__all__ = [
    "Field", "Layout",
    "EPT_ENTRY", "EPTP", "X86_ENTRY", "CR3", "PF_ERROR", "EPT_QUAL", "NPF_INFO",
    "HOST_FORMATS", "ENGINE_BITS", "LPCOUNT", "ActivityFields", "activity_fields",
    "LEVEL_SHIFT", "PAGE_SHIFT", "ENTRIES_PER_TABLE", "PAGE_SIZE",
    "EPT_MEMTYPE_UC", "EPT_MEMTYPE_WB", "EPT_BAD_MEMTYPES",
    "addr_mask", "ept_reserved_mask", "x86_reserved_mask", "is_canonical",
    "FAULT_KINDS", "SIZE_CODES", "RESP_CODES", "WALK_REQ", "WALK_RESP", "INV_OPS", "WALK_INV",
    "PREFETCH_REQ", "PREFETCH_RESP", "PREFETCH_STATUSES", "EXIT_EVENT", "EXIT_DROP",
]


@dataclass(frozen=True)
class Field:
    """A bit field ``[lsb, lsb + width)`` of a word."""

    name: str
    lsb: int
    width: int

    def __post_init__(self):
        if self.lsb < 0 or self.width < 1:
            raise ValueError(f"field {self.name!r}: bad position lsb={self.lsb} "
                             f"width={self.width}")

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def max(self) -> int:
        """Largest value the field holds."""
        return (1 << self.width) - 1

    @property
    def mask(self) -> int:
        """The field's bits in place."""
        return self.max << self.lsb

    def get(self, word: int) -> int:
        return (word >> self.lsb) & self.max

    def set(self, word: int, value: int) -> int:
        if not 0 <= value <= self.max:
            raise ValueError(f"field {self.name!r} holds 0..{self.max}, got {value}")
        return (word & ~self.mask) | (value << self.lsb)

    @property
    def reserved(self) -> bool:
        return self.name.startswith("_")


class Layout:
    """An ordered, non-overlapping set of fields covering a word of ``width`` bits.

    Fields are reached as attributes (``EPT_ENTRY.A``). Gaps between declared fields are
    filled with reserved fields (``_b<lsb>``) so that the layout covers every bit, which is
    what a packed hardware struct needs.
    """

    def __init__(self, name: str, width: int, fields: list[tuple[str, int, int]]):
        self.name = name
        self.width = width
        declared = sorted((Field(n, lsb, w) for n, lsb, w in fields), key=lambda f: f.lsb)
        filled, pos = [], 0
        for f in declared:
            if f.lsb < pos:
                raise ValueError(f"layout {name}: field {f.name!r} overlaps its neighbour")
            if f.lsb > pos:
                filled.append(Field(f"_b{pos}", pos, f.lsb - pos))
            filled.append(f)
            pos = f.lsb + f.width
        if pos > width:
            raise ValueError(f"layout {name}: fields reach bit {pos - 1}, width is {width}")
        if pos < width:
            filled.append(Field(f"_b{pos}", pos, width - pos))
        self.fields: tuple[Field, ...] = tuple(filled)
        self._by_name = {f.name: f for f in self.fields}

    def __getattr__(self, name: str) -> Field:
        try:
            return self.__dict__["_by_name"][name]
        except KeyError:
            raise AttributeError(f"layout {self.__dict__.get('name')} has no field {name!r}")

    def __iter__(self):
        return iter(self.fields)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def pack(self, **values: int) -> int:
        word = 0
        for name, value in values.items():
            word = getattr(self, name).set(word, int(value))
        return word

    def unpack(self, word: int) -> dict[str, int]:
        return {f.name: f.get(word) for f in self.fields if not f.reserved}

    def __repr__(self):
        return f"Layout({self.name}, {self.width} bits)"


# --- Paging geometry ------------------------------------------------------------------------

PAGE_SIZE = 4096
ENTRIES_PER_TABLE = 512
#: Shift of the address bits that index the table at each level (4 = PML4 .. 1 = PT).
LEVEL_SHIFT = {4: 39, 3: 30, 2: 21, 1: 12}
#: Page size (as a shift) of a leaf at each level: 1G at level 3, 2M at level 2, 4K at 1.
PAGE_SHIFT = {3: 30, 2: 21, 1: 12}


def addr_mask(pa_bits: int) -> int:
    """Mask of the table/page address field (bits ``pa_bits-1 .. 12``)."""
    if not 32 <= pa_bits <= 52:
        raise ValueError(f"physical-address width must be 32..52 bits, got {pa_bits}")
    return ((1 << pa_bits) - 1) & ~0xFFF


def is_canonical(va: int) -> bool:
    """48-bit canonical: bits 63..47 all equal."""
    top = va >> 47
    return top == 0 or top == (1 << 17) - 1


# --- Intel EPT ---------------------------------------------------------------------------

EPT_ENTRY = Layout("EPT_ENTRY", 64, [
    ("R", 0, 1), ("W", 1, 1), ("X", 2, 1), ("MEMTYPE", 3, 3), ("IPAT", 6, 1), ("PS", 7, 1),
    ("A", 8, 1), ("D", 9, 1), ("XU", 10, 1), ("_ign11", 11, 1), ("ADDR", 12, 40),
    ("SW", 52, 5), ("_hw57", 57, 7),
])

EPTP = Layout("EPTP", 64, [
    ("MEMTYPE", 0, 3), ("WALK_LEN", 3, 3), ("AD", 6, 1), ("SSS", 7, 1), ("_rsvd8", 8, 4),
    ("ADDR", 12, 40), ("_rsvd52", 52, 12),
])

EPT_MEMTYPE_UC = 0
EPT_MEMTYPE_WB = 6
#: Leaf memory types that make an EPT entry misconfigured.
EPT_BAD_MEMTYPES = frozenset({2, 3, 7})


def ept_reserved_mask(level: int, leaf: bool, pa_bits: int) -> int:
    """Bits that must be zero in a present EPT entry at ``level`` (misconfiguration if set).

    ``leaf`` is the PS bit at levels 3 and 2 (ignored at levels 4 and 1: a level-4 entry
    with PS set is itself reserved, and a level-1 entry is always a leaf).
    """
    above = ((1 << 52) - 1) & ~((1 << pa_bits) - 1)          # bits 51..pa_bits
    if level == 4:
        return above | 0xF8                                  # 7:3
    if level in (3, 2) and not leaf:
        return above | 0x78                                  # 6:3
    if level == 3:
        return above | (((1 << 30) - 1) & ~0xFFF)            # 29:12
    if level == 2:
        return above | (((1 << 21) - 1) & ~0xFFF)            # 20:12
    if level == 1:
        return above
    raise ValueError(f"EPT level must be 1..4, got {level}")


# --- x86-64 IA-32e (guest tables, AMD NPT, shadow tables) -------------------------------------

X86_ENTRY = Layout("X86_ENTRY", 64, [
    ("P", 0, 1), ("RW", 1, 1), ("US", 2, 1), ("PWT", 3, 1), ("PCD", 4, 1), ("A", 5, 1),
    ("D", 6, 1), ("PS", 7, 1), ("G", 8, 1), ("AVL", 9, 3), ("ADDR", 12, 40), ("SW", 52, 7),
    ("PKEY", 59, 4), ("XD", 63, 1),
])

CR3 = Layout("CR3", 64, [
    ("_ign0", 0, 3), ("PWT", 3, 1), ("PCD", 4, 1), ("_ign5", 5, 7), ("ADDR", 12, 40),
    ("_rsvd52", 52, 12),
])


def x86_reserved_mask(level: int, leaf: bool, pa_bits: int, nxe: bool = True) -> int:
    """Bits that must be zero in a present IA-32e entry at ``level`` (#PF with RSVD if set)."""
    mask = ((1 << 52) - 1) & ~((1 << pa_bits) - 1)
    if not nxe:
        mask |= 1 << 63
    if level == 4:
        return mask | (1 << 7)                               # PS in a PML4E
    if level == 3 and leaf:
        return mask | (((1 << 30) - 1) & ~0x1FFF)            # 29:13 of a 1G page
    if level == 2 and leaf:
        return mask | (((1 << 21) - 1) & ~0x1FFF)            # 20:13 of a 2M page
    if level in (1, 2, 3):
        return mask
    raise ValueError(f"IA-32e level must be 1..4, got {level}")


# --- Fault words -------------------------------------------------------------------------

PF_ERROR = Layout("PF_ERROR", 32, [
    ("P", 0, 1), ("W", 1, 1), ("US", 2, 1), ("RSVD", 3, 1), ("ID", 4, 1),
])

EPT_QUAL = Layout("EPT_QUAL", 64, [
    ("RD", 0, 1), ("WR", 1, 1), ("FETCH", 2, 1),
    ("READABLE", 3, 1), ("WRITABLE", 4, 1), ("EXECUTABLE", 5, 1), ("USER_EXEC", 6, 1),
    ("GLA_VALID", 7, 1), ("GLA_XLAT", 8, 1),
    ("GLA_USER", 9, 1), ("GLA_RW", 10, 1), ("GLA_NX", 11, 1),
])

NPF_INFO = Layout("NPF_INFO", 64, [
    ("P", 0, 1), ("RW", 1, 1), ("US", 2, 1), ("RSVD", 3, 1), ("ID", 4, 1),
    ("FINAL", 32, 1), ("TABLE", 33, 1),
])


# --- Engine-owned software bits -------------------------------------------------------------

#: Host (scanned) table formats and the layout of their entries.
HOST_FORMATS = {"ept": EPT_ENTRY, "npt": X86_ENTRY, "ia32e": X86_ENTRY}

#: The software-available bits the engine owns, per host format.
ENGINE_BITS = {
    "ept": Field("ENGINE", 52, 5),
    "npt": Field("ENGINE", 52, 7),
    "ia32e": Field("ENGINE", 52, 7),
}

#: Large-page count value (moving average, see ``model.prioritizer``) in the parent entry of
#: a leaf table (a level-2 non-leaf entry). Same place in every host format.
LPCOUNT = Field("LPCOUNT", 52, 5)


@dataclass(frozen=True)
class ActivityFields:
    """Where a leaf keeps its activity state, inside the engine-owned bits.

    ``level``: the short-period level; ``long_level`` and ``seen``: the long-period level and
    the saturating count of short passes seen accessed during the current long period (both
    ``None`` unless the multi-granularity option is on).
    """

    level: Field
    long_level: Field | None = None
    seen: Field | None = None

    @property
    def mask(self) -> int:
        return sum(f.mask for f in (self.level, self.long_level, self.seen) if f is not None)


def activity_fields(fmt: str, level_bits: int, long_bits: int = 0,
                    seen_bits: int = 0) -> ActivityFields:
    """Pack the activity fields from bit 52 upward and check they fit the engine's bits."""
    if fmt not in ENGINE_BITS:
        raise ValueError(f"host format must be one of {sorted(ENGINE_BITS)}, got {fmt!r}")
    if level_bits < 1:
        raise ValueError(f"the level field needs at least 1 bit, got {level_bits}")
    if (long_bits == 0) != (seen_bits == 0):
        raise ValueError("long_bits and seen_bits are both zero (single period) or both "
                         f"positive (multi-granularity), got {long_bits} and {seen_bits}")
    window = ENGINE_BITS[fmt]
    need = level_bits + long_bits + seen_bits
    if need > window.width:
        raise ValueError(f"activity state needs {need} bits; {fmt} leaves have "
                         f"{window.width} engine-owned bits ({window.lsb}..{window.msb})")
    lsb = window.lsb
    level = Field("LEVEL", lsb, level_bits)
    if not long_bits:
        return ActivityFields(level)
    long_level = Field("LONG_LEVEL", lsb + level_bits, long_bits)
    seen = Field("SEEN", lsb + level_bits + long_bits, seen_bits)
    return ActivityFields(level, long_level, seen)


# --- Page-walker streams ------------------------------------------------------------------

#: Fault kinds as the hardware encodes them in ``WALK_RESP.FAULT`` (0: a translation). The
#: names are the values of ``model.walker.FaultKind``.
FAULT_KINDS = ("none", "gp", "bad_root", "page_fault", "ept_violation", "ept_misconfig",
               "npf", "bus_error", "conflict")

#: Page sizes as the hardware encodes them (0: 4 KiB, 1: 2 MiB, 2: 1 GiB).
SIZE_CODES = {4096: 0, 1 << 21: 1, 1 << 30: 2}

#: AXI response codes of a bus error (``WALK_RESP.RESP``).
RESP_CODES = {"": 0, "SLVERR": 2, "DECERR": 3}

WALK_REQ = Layout("WALK_REQ", 195, [
    ("GVA", 0, 64), ("CR3", 64, 64), ("HROOT", 128, 64), ("WRITE", 192, 1), ("FETCH", 193, 1),
    ("USER", 194, 1),
])

#: ``PTE_VALID``: a translation that walked the guest dimension, and ``PTE_GPA`` the GPA of
#: its guest leaf entry (``model.walker.Translation.pte_gpa``; what the exit detector learns
#: from).
WALK_RESP = Layout("WALK_RESP", 320, [
    ("FAULT", 0, 4), ("LEVEL", 4, 3), ("RESP", 7, 2), ("SIZE", 9, 2), ("GSIZE", 11, 2),
    ("HSIZE", 13, 2), ("GRIGHTS", 15, 3), ("HRIGHTS", 18, 4), ("MEMTYPE", 22, 3),
    ("GPA", 25, 52), ("HPA", 77, 52), ("ADDR", 129, 52), ("PTE_VALID", 181, 1),
    ("CODE", 192, 64), ("PTE_GPA", 256, 52),
])

#: Invalidation operations (``WALK_INV.OP``).
INV_OPS = ("all", "gva", "gpa", "root", "scan_clear")

WALK_INV = Layout("WALK_INV", 200, [
    ("OP", 0, 3), ("MATCH_CR3", 3, 1), ("MATCH_HROOT", 4, 1), ("SIZE", 5, 2),
    ("ADDR", 8, 64), ("CR3", 72, 64), ("HROOT", 136, 64),
])

#: A prefetch request (a fault on a non-resident page) and one record of its answer: GPA
#: records (``DONE`` 0: ``PAGE`` the GPA's page number, ``GVA`` the neighbour), then one
#: ``DONE`` record with ``STATUS``.
PREFETCH_REQ = Layout("PREFETCH_REQ", 192, [
    ("GVA", 0, 64), ("CR3", 64, 64), ("HROOT", 128, 64),
])

PREFETCH_RESP = Layout("PREFETCH_RESP", 128, [
    ("STATUS", 0, 3), ("DONE", 3, 1), ("PAGE", 12, 40), ("GVA", 64, 64),
])

#: Status codes of ``PREFETCH_RESP.STATUS`` (the order of ``model.prefetcher.STATUSES``).
PREFETCH_STATUSES = ("ok", "no_leaf_table", "guest_fault", "host_fault", "bus_error",
                     "dropped", "bad_config")

#: One event: a walker access (``KIND`` 0) or a guest PTE write (``KIND`` 1).
EXIT_EVENT = Layout("EXIT_EVENT", 320, [
    ("KIND", 0, 1), ("USER", 1, 1), ("INDEX", 2, 9), ("TABLE", 11, 40), ("ASID", 64, 64),
    ("GVA", 128, 64), ("OLD", 192, 64), ("NEW", 256, 64),
])

#: One drop: guest leaf table ``TABLE`` (page number) of space ``ASID``; ``REASON`` indexes
#: ``model.exit_detector.REASONS`` (0 exit, 1 bulk).
EXIT_DROP = Layout("EXIT_DROP", 128, [
    ("REASON", 0, 1), ("TABLE", 12, 40), ("ASID", 64, 64),
])
