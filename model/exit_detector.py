"""Exit detector: notice that a guest process is tearing down its address space.

When a process exits, the guest kernel clears every present PTE of the process, in ascending
virtual-address order, table after table. The detector watches that pattern in the events the
engine sees and answers with :class:`Drop` events that tell the consumer it can drop the
activity trace of a guest leaf table, because the table is being emptied.

Events, fed in order to :meth:`ExitDetector.feed`:

* :class:`Access`: a successful access reported by the page walker, with the guest-physical
  address (GPA) of the guest leaf table holding its PTE and the index of the PTE there.
* :class:`PteWrite`: a guest PTE write seen by the hypervisor, with the entry's old and new
  values. It *unmaps* when ``old.P == 1`` and ``new.P == 0`` (``X86_ENTRY.P``).

Mechanism (a), exit by lowest address. Per address space the detector keeps the lowest user
virtual page seen accessed and where its PTE is (table GPA, index). A user access to a page at
or below the recorded one replaces the record (at the same page, the newer PTE location wins).
When an unmapping write hits the recorded PTE, the space is marked *exiting* and the record is
cleared; that write drops its table, and so does every later unmapping write in the space, all
with reason ``"exit"``. A user access to an exiting space means it is alive again (for
instance its ASID was reused): *exiting* is cleared, the lowest-address record restarts from
that access and the space's table run counters (mechanism (b)) are forgotten. Supervisor
accesses are ignored.

Mechanism (b), bulk unmapping. Per guest leaf table of a space, a run counter counts
consecutive unmapping writes (saturating at ``run_threshold``); any other write to the table
resets it to 0. A table whose counter is at ``run_threshold`` is *qualified*. An unmapping
write drops its table with reason ``"bulk"`` when, before the write is counted, at least
``tables_needed`` tables of its space are qualified. So the write that qualifies the last
needed table does not drop; the next unmapping write in the space does, and so does every
later one while the space keeps ``tables_needed`` qualified tables.

A write yields at most one :class:`Drop`; when both mechanisms apply, the reason is
``"exit"``. Every unmapping write updates the run counters, whether or not it drops. Accesses
never drop.

Finite state (hardware tables)
------------------------------
The *space table* has ``spaces`` entries {ASID, exiting, lowest user page, its table GPA and
index}; the *table table* has ``tables`` entries {space slot, table GPA, run counter}. Both
are fully associative with round-robin replacement: a new entry takes the lowest free slot,
and when none is free it takes the slot under the table's victim pointer, which then advances
by one (modulo the size); a hit or an allocation into a free slot leaves the pointer alone.
Table entries are tagged with their space's slot, so evicting a space invalidates its table
entries (and so does the revival of an exiting space).

What allocates: a user access to an unknown space allocates a space entry; an unmapping write
allocates its space entry (with no lowest-address record) and its table entry (counter 0
before the write counts) when missing. Any other write allocates nothing and only resets an
existing counter; supervisor accesses allocate nothing.

What is lost when a table is full:

* Space eviction loses the victim's lowest-address record, its exiting mark and all its run
  counters. An exit in progress is then seen only by mechanism (b), from zero. If the space
  comes back, tracking restarts from its next access, so the new record may be higher than
  the true lowest page; an unmapping write of that PTE later marks the space exiting.
* Table eviction loses the victim's run counter: a qualified table stops counting for its
  space, and a run that continues after re-allocation counts from 1. This only delays or
  suppresses ``"bulk"`` drops, never adds one.

Qualification lasts until the table sees another write or leaves the table table. So two
unrelated unmappings of at least ``run_threshold`` pages in two tables of a live space make
its later unmapping writes drop with ``"bulk"`` too, and a reclaimed lowest page marks a live
space exiting until its next user access: both mechanisms trade such false drops for catching
exits without any help from the guest.

Counters (32-bit, saturating): events fed, drops per reason, space evictions and table
evictions (round-robin replacements only; entries invalidated with their space are not
counted).
"""

from dataclasses import dataclass
from numbers import Integral

from thermocline.layouts import X86_ENTRY, ENTRIES_PER_TABLE, PAGE_SIZE

__all__ = [
    "REASONS", "COUNTER_MAX", "Access", "PteWrite", "Drop", "ExitConfig", "SpaceEntry",
    "TableEntry", "ExitCounters", "ExitDetector",
]

#: Drop reasons, in priority order.
REASONS = ("exit", "bulk")
#: Saturation value of the 32-bit event counters.
COUNTER_MAX = (1 << 32) - 1

_U64 = (1 << 64) - 1
_GPA_MAX = (1 << 52) - 1


def _int(name: str, value, lo: int, hi: int, addr: bool = False) -> int:
    """``value`` as an int in ``[lo, hi]``, or a ValueError that shows it (in hex if ``addr``)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        if addr:
            raise ValueError(f"{name} must be in {lo:#x}..{hi:#x}, got {value:#x}")
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def _table_gpa(value) -> int:
    value = _int("table_gpa", value, 0, _GPA_MAX, addr=True)
    if value % PAGE_SIZE:
        raise ValueError(f"table_gpa must be {PAGE_SIZE}-byte aligned, got {value:#x}")
    return value


# --- events -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """A successful guest access reported by the page walker.

    Parameters
    ----------
    asid : int
        Address-space tag (a 64-bit value chosen by the integration, e.g. VPID and PCID).
    gva : int
        Guest virtual address accessed (64 bits); its page is ``gva >> 12``.
    table_gpa : int
        Guest-physical address of the guest leaf table holding the PTE (page aligned).
    index : int
        Index of the PTE in that table, ``0..511``.
    user : bool
        User-mode access; supervisor accesses are ignored by the detector.
    """

    asid: int
    gva: int
    table_gpa: int
    index: int
    user: bool

    def __post_init__(self):
        _int("asid", self.asid, 0, _U64)
        _int("gva", self.gva, 0, _U64, addr=True)
        _table_gpa(self.table_gpa)
        _int("index", self.index, 0, ENTRIES_PER_TABLE - 1)
        if not isinstance(self.user, bool):
            raise ValueError(f"user must be a bool, got {self.user!r}")


@dataclass(frozen=True)
class PteWrite:
    """A guest PTE write seen by the hypervisor.

    Parameters
    ----------
    asid : int
        Address-space tag of the table's owner (64 bits).
    table_gpa : int
        Guest-physical address of the guest leaf table (page aligned).
    index : int
        Index of the written PTE, ``0..511``.
    old, new : int
        The entry before and after the write (64-bit ``X86_ENTRY`` words).
    """

    asid: int
    table_gpa: int
    index: int
    old: int
    new: int

    def __post_init__(self):
        _int("asid", self.asid, 0, _U64)
        _table_gpa(self.table_gpa)
        _int("index", self.index, 0, ENTRIES_PER_TABLE - 1)
        _int("old", self.old, 0, _U64, addr=True)
        _int("new", self.new, 0, _U64, addr=True)

    @property
    def unmaps(self) -> bool:
        """Present -> not-present: ``old.P == 1 and new.P == 0``."""
        return X86_ENTRY.P.get(self.old) == 1 and X86_ENTRY.P.get(self.new) == 0


@dataclass(frozen=True)
class Drop:
    """The trace of guest leaf table ``table_gpa`` of space ``asid`` can be dropped.

    ``reason`` is ``"exit"`` (mechanism (a)) or ``"bulk"`` (mechanism (b)).
    """

    asid: int
    table_gpa: int
    reason: str


# --- configuration and state ------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ExitConfig:
    """Sizes and thresholds of the exit detector.

    Parameters
    ----------
    spaces : int
        Entries of the space table, ``1..65536``.
    tables : int
        Entries of the table table (run counters), ``1..65536``.
    run_threshold : int
        Consecutive unmapping writes that qualify a table, ``1..512`` (a table has 512
        entries; the counter is ``ceil(log2(run_threshold + 1))`` bits).
    tables_needed : int
        Qualified tables a space needs before its unmapping writes drop with ``"bulk"``,
        ``1..tables`` (more could never be held at once).

    Raises
    ------
    ValueError
        A value is not an integer or is out of range; the message shows the value.
    """

    spaces: int = 8
    tables: int = 32
    run_threshold: int = 4
    tables_needed: int = 2

    def __post_init__(self):
        _int("spaces", self.spaces, 1, 1 << 16)
        _int("tables", self.tables, 1, 1 << 16)
        _int("run_threshold", self.run_threshold, 1, ENTRIES_PER_TABLE)
        _int("tables_needed", self.tables_needed, 1, self.tables)


@dataclass(frozen=True)
class SpaceEntry:
    """One valid space-table entry (a snapshot).

    ``low_page`` is the lowest user virtual page seen accessed (``gva >> 12``) and
    ``low_table_gpa``/``low_index`` where its PTE is; all three are ``None`` when there is no
    record (none seen yet, or cleared when the space was marked exiting).
    """

    asid: int
    exiting: bool
    low_page: int | None
    low_table_gpa: int | None
    low_index: int | None


@dataclass(frozen=True)
class TableEntry:
    """One valid table-table entry (a snapshot).

    The run counter ``count`` of guest leaf table ``table_gpa`` of the space in slot
    ``space`` (whose ASID is ``asid``); ``qualified`` when ``count == run_threshold``.
    """

    space: int
    asid: int
    table_gpa: int
    count: int
    qualified: bool


@dataclass(frozen=True)
class ExitCounters:
    """Event counters (32-bit, saturating)."""

    events: int
    exit_drops: int
    bulk_drops: int
    space_evictions: int
    table_evictions: int


class _Space:
    __slots__ = ("asid", "exiting", "low_page", "low_table_gpa", "low_index")

    def __init__(self, asid: int):
        self.asid = asid
        self.exiting = False
        self.clear_low()

    def clear_low(self):
        self.low_page = self.low_table_gpa = self.low_index = None

    def set_low(self, e: Access):
        self.low_page = e.gva >> 12
        self.low_table_gpa = e.table_gpa
        self.low_index = e.index


class _Table:
    __slots__ = ("space", "table_gpa", "count")

    def __init__(self, space: int, table_gpa: int):
        self.space = space
        self.table_gpa = table_gpa
        self.count = 0


def _sat(value: int) -> int:
    return min(value + 1, COUNTER_MAX)


class ExitDetector:
    """Exit detector with finite, round-robin replaced state; see the module documentation.

    Parameters
    ----------
    config : ExitConfig
        Table sizes and thresholds (default: ``ExitConfig()``).
    """

    def __init__(self, config: ExitConfig | None = None):
        config = ExitConfig() if config is None else config
        if not isinstance(config, ExitConfig):
            raise ValueError(f"config must be an ExitConfig, got {config!r}")
        self._config = config
        self.reset()

    def reset(self):
        """Invalidate every entry, point both victim pointers at slot 0, zero the counters."""
        self._spaces: list[_Space | None] = [None] * self._config.spaces
        self._tables: list[_Table | None] = [None] * self._config.tables
        self._space_victim = 0
        self._table_victim = 0
        self._events = 0
        self._drops = dict.fromkeys(REASONS, 0)
        self._space_evictions = 0
        self._table_evictions = 0

    # --- inspection --------------------------------------------------------------------------

    @property
    def config(self) -> ExitConfig:
        return self._config

    @property
    def spaces(self) -> tuple[SpaceEntry | None, ...]:
        """The space table, one item per slot (``None`` for a free slot)."""
        return tuple(None if s is None else SpaceEntry(s.asid, s.exiting, s.low_page,
                                                       s.low_table_gpa, s.low_index)
                     for s in self._spaces)

    @property
    def tables(self) -> tuple[TableEntry | None, ...]:
        """The table table, one item per slot (``None`` for a free slot)."""
        thr = self._config.run_threshold
        return tuple(None if t is None else TableEntry(t.space, self._spaces[t.space].asid,
                                                       t.table_gpa, t.count, t.count >= thr)
                     for t in self._tables)

    @property
    def space_victim(self) -> int:
        """Slot the next space allocation takes when the space table is full."""
        return self._space_victim

    @property
    def table_victim(self) -> int:
        """Slot the next table allocation takes when the table table is full."""
        return self._table_victim

    @property
    def counters(self) -> ExitCounters:
        return ExitCounters(self._events, self._drops["exit"], self._drops["bulk"],
                            self._space_evictions, self._table_evictions)

    def qualified(self, asid: int) -> int:
        """Qualified tables the space ``asid`` holds now (0 if it has no entry)."""
        slot = self._find_space(asid)
        return 0 if slot is None else self._qualified(slot)

    # --- events ------------------------------------------------------------------------------

    def feed(self, event: Access | PteWrite) -> list[Drop]:
        """Apply one event; return the drops it causes (empty, or one :class:`Drop`).

        Raises
        ------
        ValueError
            ``event`` is neither an :class:`Access` nor a :class:`PteWrite`.
        """
        if isinstance(event, Access):
            self._events = _sat(self._events)
            if event.user:
                self._access(event)
            return []
        if isinstance(event, PteWrite):
            self._events = _sat(self._events)
            return self._write(event)
        raise ValueError(f"event must be an Access or a PteWrite, got {event!r}")

    def feed_all(self, events) -> list[Drop]:
        """Feed ``events`` in order; return all their drops in order."""
        drops = []
        for event in events:
            drops += self.feed(event)
        return drops

    def _access(self, e: Access):
        slot = self._find_space(e.asid)
        if slot is None:
            slot = self._alloc_space(e.asid)
        space = self._spaces[slot]
        if space.exiting:
            space.exiting = False
            self._flush_tables(slot)
            space.set_low(e)
        elif space.low_page is None or e.gva >> 12 <= space.low_page:
            space.set_low(e)

    def _write(self, e: PteWrite) -> list[Drop]:
        slot = self._find_space(e.asid)
        if not e.unmaps:
            if slot is not None:
                t = self._find_table(slot, e.table_gpa)
                if t is not None:
                    self._tables[t].count = 0
            return []
        reason = None
        if slot is None:
            slot = self._alloc_space(e.asid)
        else:
            space = self._spaces[slot]
            if space.exiting:
                reason = "exit"
            elif (space.low_page is not None and space.low_table_gpa == e.table_gpa
                  and space.low_index == e.index):
                space.exiting = True
                space.clear_low()
                reason = "exit"
            if reason is None and self._qualified(slot) >= self._config.tables_needed:
                reason = "bulk"
        t = self._find_table(slot, e.table_gpa)
        if t is None:
            t = self._alloc_table(slot, e.table_gpa)
        table = self._tables[t]
        table.count = min(table.count + 1, self._config.run_threshold)
        if reason is None:
            return []
        self._drops[reason] = _sat(self._drops[reason])
        return [Drop(e.asid, e.table_gpa, reason)]

    # --- associative tables ------------------------------------------------------------------

    def _find_space(self, asid: int) -> int | None:
        for i, s in enumerate(self._spaces):
            if s is not None and s.asid == asid:
                return i
        return None

    def _find_table(self, slot: int, table_gpa: int) -> int | None:
        for i, t in enumerate(self._tables):
            if t is not None and t.space == slot and t.table_gpa == table_gpa:
                return i
        return None

    def _qualified(self, slot: int) -> int:
        thr = self._config.run_threshold
        return sum(1 for t in self._tables
                   if t is not None and t.space == slot and t.count >= thr)

    def _flush_tables(self, slot: int):
        for i, t in enumerate(self._tables):
            if t is not None and t.space == slot:
                self._tables[i] = None

    def _alloc_space(self, asid: int) -> int:
        slot = next((i for i, s in enumerate(self._spaces) if s is None), None)
        if slot is None:
            slot = self._space_victim
            self._space_victim = (slot + 1) % len(self._spaces)
            self._space_evictions = _sat(self._space_evictions)
            self._flush_tables(slot)
        self._spaces[slot] = _Space(asid)
        return slot

    def _alloc_table(self, slot: int, table_gpa: int) -> int:
        t = next((i for i, x in enumerate(self._tables) if x is None), None)
        if t is None:
            t = self._table_victim
            self._table_victim = (t + 1) % len(self._tables)
            self._table_evictions = _sat(self._table_evictions)
        self._tables[t] = _Table(slot, table_gpa)
        return t
