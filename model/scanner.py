"""Accessed-bit scanner and activity classifier (specification section 3.2), with the
large-page prioritizer of section 3.4 computed in the same pass.

A pass walks the host tree (EPT, NPT or an IA-32e shadow table) depth-first from the root
table, entries in ascending address order, and for every present, well-formed leaf (4 KiB,
2 MiB or 1 GiB) test-and-clears the accessed (A) bit and steps the page's activity state,
which lives in the engine-owned software bits of the leaf itself
(:func:`thermocline.layouts.activity_fields`).

Pass contract
-------------
Let ``p`` be the 0-based index of the pass (the scanner counts its passes). Each entry is
read from memory when the walk reaches it, so everything the pass wrote earlier is visible
to it (sequential semantics). Per entry at level ``l`` (4 = root .. 1):

* read answered with an error (:class:`~model.memory.BusError`: past the end of memory,
  or a poisoned word) -> ``bus_errors += 1``, entry skipped. A child table wholly outside
  memory therefore costs 512 errors.
* not present (EPT: bits 2:0 all zero; x86: P clear) -> skipped.
* present but malformed -> ``malformed += 1``, neither written nor descended. EPT: an EPT
  misconfiguration (W without R, a reserved bit for the level -- PS at level 4 included --,
  or a leaf memory type of 2, 3 or 7); x86: any reserved bit (NXE assumed on).
* a leaf (level 1, or PS set at level 2 or 3) -> the leaf step below.
* otherwise (a table pointer) -> the walk descends into the table it points at. A table
  reached twice (aliased or self-referencing tables) is simply walked again; the walk is four
  levels deep, so it always ends.

The root is given as ``SCAN_ROOT`` holds it: bits 11..0 are ignored, and a root with an
address bit at or above ``pa_bits`` (the root pointer's reserved bits) makes the pass count
``malformed += 1`` and walk nothing (no table read, no leaf, no candidate).

Leaf step, with ``N`` levels, steps ``up``/``down`` and, if the multi-granularity option is on,
a long period of ``P`` passes, ``long_levels`` long levels and a need of ``n`` passes:

* ``a`` = the A bit; ``L`` = the stored level, ``min(L, N - 1)`` if it is out of range;
* ``L' = min(L + up, N - 1)`` if ``a`` else ``max(L - down, 0)``;
* multi-granularity: ``seen' = min(seen + a, n)``; on the last short pass of a long period
  (``(p + 1) % P == 0``) the long level ``G`` (clamped to ``long_levels - 1`` first) becomes
  ``min(G + 1, long_levels - 1)`` if ``seen' >= n`` else ``max(G - 1, 0)``, and ``seen' = 0``;
  on other passes the stored long level is left as it is;
* the new entry is the old one with A cleared (only if it was set) and the activity fields
  replaced; D and all other bits are untouched. It is written back only if it differs.

Large-page prioritizer (see :mod:`model.prioritizer`): after the leaf table of a present,
well-formed level-2 table pointer has been walked, the parent entry is read again; if it is
still a present, well-formed table pointer to the same table, its ``LPCOUNT`` becomes the new
moving average (written back only if it changed) and the table may become a candidate. The
re-read is part of the write protocol and not counted in ``entries_read``. Entries of the
leaf table that could not be read, were malformed or absent all count as absent.

Input addresses (of leaves in the cleared list, of candidate regions) are the table indices
along the walk put together, bits 47..12, without sign extension.

Two implementations
-------------------
:meth:`Scanner.scan_pass` runs the pass in a compiled kernel directly on the memory image.
:meth:`Scanner.iter_pass` is a step-by-step generator with the same result that performs every
write as a compare-and-set and yields before each one, so that a test can act as another
agent (a page walker setting A and D) between the read and the write; see :class:`Pending`.
Both share the per-leaf step (:func:`step_leaf`) and the prioritizer arithmetic.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator, NamedTuple

import numpy as np
from numba import njit
from numba.core.caching import FunctionCache

import thermocline.layouts
from thermocline.layouts import (
    ENTRIES_PER_TABLE, HOST_FORMATS, LEVEL_SHIFT, LPCOUNT, PAGE_SHIFT, ActivityFields,
    activity_fields, ept_reserved_mask, x86_reserved_mask,
)
from .entries import EptFormat, host_format
from .memory import BusError, PhysMem
from . import prioritizer
from .prioritizer import (
    Candidate, LargePageConfig, _check_bool, _check_int, eligible, lp_step, rank,
)

__all__ = ["ScanConfig", "ScanStats", "Scanner", "Pending", "step_activity", "step_leaf",
           "drive", "LEAF_SIZES"]

#: Page size of a leaf at each level.
LEAF_SIZES = {lvl: 1 << s for lvl, s in PAGE_SHIFT.items()}


def ceil_log2(n: int) -> int:
    """Bits needed to hold the values ``0 .. n - 1``."""
    return (n - 1).bit_length()


# --- configuration ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ScanConfig:
    """Settings of the scanner and classifier.

    Parameters
    ----------
    fmt : str
        Host tree format: ``"ept"``, ``"npt"`` or ``"ia32e"`` (the last two share the x86
        entry layout).
    pa_bits : int
        Physical-address width, 32..52; address bits above it are reserved.
    levels : int
        ``N``, number of activity levels (0 = coldest), 2..32; stored in
        ``ceil_log2(N)`` bits.
    up, down : int
        Levels gained when a page was accessed / lost when it was not, 1..N-1.
    long_every : int
        ``P``: short passes per long period, 0 (multi-granularity off) or >= 2.
    long_levels : int
        Levels of the long period, >= 2 (with ``long_every``; stored in
        ``ceil_log2(long_levels)`` bits).
    long_need : int
        ``n``: short passes of a long period that must see the page accessed for its long
        level to step hotter, 1..P. The count saturates at ``n`` and is stored in
        ``n.bit_length()`` bits. ``long_levels`` and ``long_need`` are ignored (but still
        checked to be >= 2 and >= 1) while ``long_every`` is 0.
    large_page : LargePageConfig
        Prioritizer settings.
    report_cleared : bool
        Report the input address and size of every leaf whose A bit the pass cleared (what a
        page walker must drop from its caches). Costs 16 bytes per such leaf.

    The activity state of a leaf is packed from bit 52 upward: level, then (with the long
    period) long level and seen count; see :attr:`fields`. It must fit the engine-owned bits
    of the format (EPT 52..56, NPT and IA-32e 52..58), else ``ValueError``.
    """

    fmt: str = "ept"
    pa_bits: int = 52
    levels: int = 4
    up: int = 1
    down: int = 1
    long_every: int = 0
    long_levels: int = 4
    long_need: int = 1
    large_page: LargePageConfig = field(default_factory=LargePageConfig)
    report_cleared: bool = False

    def __post_init__(self):
        owner = "ScanConfig"
        if not isinstance(self.fmt, str) or self.fmt not in HOST_FORMATS:
            raise ValueError(f"{owner}: fmt must be one of {sorted(HOST_FORMATS)}, "
                             f"got {self.fmt!r}")
        _check_int(owner, "pa_bits", self.pa_bits, 32, 52)
        _check_int(owner, "levels", self.levels, 2, 32)
        _check_int(owner, "up", self.up, 1, self.levels - 1)
        _check_int(owner, "down", self.down, 1, self.levels - 1)
        _check_int(owner, "long_every", self.long_every, 0, None)
        if self.long_every == 1:
            raise ValueError(f"{owner}: long_every must be 0 (off) or >= 2, got 1")
        _check_int(owner, "long_levels", self.long_levels, 2, None)
        _check_int(owner, "long_need", self.long_need, 1,
                   self.long_every if self.long_every else None)
        if not isinstance(self.large_page, LargePageConfig):
            raise ValueError(f"{owner}: large_page must be a LargePageConfig, "
                             f"got {self.large_page!r}")
        _check_bool(owner, "report_cleared", self.report_cleared)
        try:
            self.fields
        except ValueError as err:
            raise ValueError(f"{owner}(fmt={self.fmt!r}, levels={self.levels}, "
                             f"long_every={self.long_every}, long_levels={self.long_levels}, "
                             f"long_need={self.long_need}): {err}") from None

    @property
    def multi(self) -> bool:
        """Is the multi-granularity (long period) option on?"""
        return self.long_every > 0

    @property
    def level_bits(self) -> int:
        return ceil_log2(self.levels)

    @property
    def long_bits(self) -> int:
        return ceil_log2(self.long_levels) if self.multi else 0

    @property
    def seen_bits(self) -> int:
        return self.long_need.bit_length() if self.multi else 0

    @property
    def fields(self) -> ActivityFields:
        """Placement of the activity state in a leaf."""
        return activity_fields(self.fmt, self.level_bits, self.long_bits, self.seen_bits)

    def end_of_long(self, pass_index: int) -> bool:
        """Is pass ``pass_index`` the last short pass of a long period?"""
        return self.multi and (pass_index + 1) % self.long_every == 0


def step_activity(config: ScanConfig, level: int, long_level: int, seen: int, accessed: bool,
                  end_of_long: bool) -> tuple[int, int, int]:
    """The activity step of one leaf: stored fields -> new fields (the classifier's contract).

    Parameters
    ----------
    config : ScanConfig
    level, long_level, seen : int
        Stored field values; any value the field can hold (out-of-range values are clamped
        as the module docstring says). ``long_level`` and ``seen`` are ignored (and returned
        unchanged) unless the multi-granularity option is on.
    accessed : bool
        The A bit as read.
    end_of_long : bool
        This pass is the last short pass of a long period.

    Returns
    -------
    (level, long_level, seen) : tuple of int
    """
    top = config.levels - 1
    cur = min(level, top)
    level = min(cur + config.up, top) if accessed else max(cur - config.down, 0)
    if config.multi:
        seen = min(seen + int(bool(accessed)), config.long_need)
        if end_of_long:
            g = min(long_level, config.long_levels - 1)
            if seen >= config.long_need:
                long_level = min(g + 1, config.long_levels - 1)
            else:
                long_level = max(g - 1, 0)
            seen = 0
    return level, long_level, seen


def _step_table(config: ScanConfig, end_of_long: bool) -> np.ndarray:
    """Every activity step as a table: ``table[(a << bits) | state] = new state``.

    ``state`` is the whole activity field (level, long level, seen; LSB first) shifted down
    to bit 0, ``bits`` its width. Built from :func:`step_activity` for every value the field
    can hold.
    """
    lb, gb, sb = config.level_bits, config.long_bits, config.seen_bits
    bits = lb + gb + sb
    table = np.zeros(2 << bits, dtype=np.uint64)
    for a in (0, 1):
        for state in range(1 << bits):
            level = state & ((1 << lb) - 1)
            long_level = (state >> lb) & ((1 << gb) - 1)
            seen = state >> (lb + gb)
            lv, g, s = step_activity(config, level, long_level, seen, bool(a), end_of_long)
            table[(a << bits) | state] = lv | (g << lb) | (s << (lb + gb))
    return table


# --- results ------------------------------------------------------------------------------

@dataclass(eq=False)
class ScanStats:
    """What one pass saw and did.

    Members
    -------
    pass_index : int
        0-based index of the pass.
    histogram : numpy.ndarray
        ``int64[N]``: present, well-formed leaves by level after the step.
    long_histogram : numpy.ndarray or None
        ``int64[long_levels]``: the same leaves by long level after the pass (a stored value
        out of range counted as ``long_levels - 1``); ``None`` without the long period.
    accessed : int
        Leaves whose A bit was set (and cleared).
    leaves_by_size : dict
        ``{4096: n, 2097152: n, 1073741824: n}``: present, well-formed leaves by page size.
    entries_read : int
        Entries read successfully when the walk reached them (compare-and-set re-reads not
        counted). ``entries_read + bus_errors == 512 * tables_read``.
    tables_read : int
        Tables walked (the root and every table descended into, inside memory or not).
    writes : int
        Entries written: leaves and level-2 parents whose value changed.
    malformed : int
        Present entries that were malformed.
    bus_errors : int
        Reads (or writes) answered with an error.
    retries : int
        Compare-and-set attempts that found the word changed by another agent (always 0 for
        :meth:`Scanner.scan_pass`).
    candidates : list of Candidate
        Large-page candidates, ranked, at most ``top_k``.
    cleared_base, cleared_size : numpy.ndarray or None
        ``int64``: input address and size of every leaf whose A bit was cleared, in walk
        order (with ``report_cleared``; else ``None``).
    """

    pass_index: int
    histogram: np.ndarray
    long_histogram: np.ndarray | None
    accessed: int
    leaves_by_size: dict[int, int]
    entries_read: int
    tables_read: int
    writes: int
    malformed: int
    bus_errors: int
    retries: int
    candidates: list[Candidate]
    cleared_base: np.ndarray | None = None
    cleared_size: np.ndarray | None = None

    @property
    def leaves(self) -> int:
        """Present, well-formed leaves of the pass."""
        return sum(self.leaves_by_size.values())

    def to_dict(self) -> dict:
        """A JSON-able copy (the cleared arrays become lists)."""
        def conv(x):
            return None if x is None else [int(v) for v in x]
        return {
            "pass_index": self.pass_index, "histogram": conv(self.histogram),
            "long_histogram": conv(self.long_histogram), "accessed": self.accessed,
            "leaves_by_size": {str(k): v for k, v in self.leaves_by_size.items()},
            "entries_read": self.entries_read, "tables_read": self.tables_read,
            "writes": self.writes, "malformed": self.malformed, "bus_errors": self.bus_errors,
            "retries": self.retries, "candidates": [c._asdict() for c in self.candidates],
            "cleared_base": conv(self.cleared_base), "cleared_size": conv(self.cleared_size),
        }

    def __eq__(self, other):
        if not isinstance(other, ScanStats):
            return NotImplemented

        def same(x, y):
            if x is None or y is None:
                return x is None and y is None
            return np.array_equal(x, y)
        return (self.pass_index == other.pass_index
                and same(self.histogram, other.histogram)
                and same(self.long_histogram, other.long_histogram)
                and self.accessed == other.accessed
                and self.leaves_by_size == other.leaves_by_size
                and self.entries_read == other.entries_read
                and self.tables_read == other.tables_read
                and self.writes == other.writes
                and self.malformed == other.malformed
                and self.bus_errors == other.bus_errors
                and self.retries == other.retries
                and self.candidates == other.candidates
                and same(self.cleared_base, other.cleared_base)
                and same(self.cleared_size, other.cleared_size))

    __hash__ = None


class Pending(NamedTuple):
    """What :meth:`Scanner.iter_pass` yields: a compare-and-set about to happen.

    The scanner read ``old`` from the word at ``addr`` and wants to replace it with ``new``.
    While the generator is suspended, the consumer may write memory (as another agent would);
    on resumption the scanner re-reads the word and writes ``new`` only if it still equals
    ``old``. Otherwise it recomputes from the current value and, if a write is still needed,
    yields again.

    Members
    -------
    kind : str
        ``"leaf"`` (a leaf's A bit and activity fields) or ``"lpcount"`` (a level-2 parent's
        ``LPCOUNT``).
    addr : int
        Host-physical address of the entry.
    level : int
        Level of the entry (1..3 for a leaf, 2 for a parent).
    old, new : int
        Expected current value and the value to write.
    """

    kind: str
    addr: int
    level: int
    old: int
    new: int


# --- shared compiled helpers --------------------------------------------------------------

_U1 = np.uint64(1)
_U3 = np.uint64(3)
_U7 = np.uint64(7)
_U12 = np.uint64(12)
_U511 = np.uint64(511)
_PAGE = np.uint64(4096)
#: EPT leaf memory types 2, 3 and 7 (misconfigured) as a bit set.
_BAD_MEMTYPES = np.uint64((1 << 2) | (1 << 3) | (1 << 7))
_LP_SHIFT = np.uint64(LPCOUNT.lsb)
_LP_MAX = np.uint64(LPCOUNT.max)
_LP_CLEAR = np.uint64(~LPCOUNT.mask & (2**64 - 1))

_ABSENT, _MALFORMED, _LEAF, _TABLE = 0, 1, 2, 3
_ENTRIES, _TABLES, _WRITES, _MALF, _BUS, _ACCESSED = range(6)


@njit(cache=True)
def step_leaf(e, accessed, a_shift, fshift, fmask, fbits, table):
    """New value of a leaf entry ``e`` (all arguments ``uint64``).

    The activity field ``(e >> fshift) & fmask`` (``fbits`` wide) is replaced with
    ``table[(accessed << fbits) | field]`` (see :func:`_step_table`), and the A bit
    (``1 << a_shift``) is cleared if ``accessed`` is 1. Every other bit is kept.
    """
    state = (e >> fshift) & fmask
    new_state = table[(accessed << fbits) | state]
    keep = ~((fmask << fshift) | (accessed << a_shift))
    return (e & keep) | (new_state << fshift)


@njit(cache=True, inline="always")
def _read_word(pool, slot, size, poison, addr):
    """``(ok, value)`` of the 64-bit word at ``addr``; ``ok`` false on a bus error."""
    if addr >= size:
        return False, np.uint64(0)
    if poison.size:
        j = np.searchsorted(poison, addr)
        if j < poison.size and poison[j] == addr:
            return False, np.uint64(0)
    row = slot[addr >> _U12]
    if row < 0:
        return True, np.uint64(0)
    return True, pool[row, (addr >> _U3) & _U511]


@njit(cache=True, inline="always")
def _write_word(pool, slot, addr, value):
    """Store a word whose page has storage (it was just read as non-zero)."""
    pool[slot[addr >> _U12], (addr >> _U3) & _U511] = value


@njit(cache=True, inline="always")
def _page_poisoned(poison, base):
    """Is any word of the page at ``base`` poisoned?"""
    if poison.size == 0:
        return False
    j = np.searchsorted(poison, base)
    return j < poison.size and poison[j] < base + _PAGE


@njit(cache=True, inline="always")
def _classify(e, level, is_ept, pmask, resv_nl, resv_leaf):
    """Absent, malformed, leaf or table: what the present/reserved rules make of ``e``."""
    if (e & pmask) == 0:
        return _ABSENT
    leaf = level == 1 or ((level == 2 or level == 3) and ((e >> _U7) & _U1) != 0)
    resv = resv_leaf[level] if leaf else resv_nl[level]
    if (e & resv) != 0:
        return _MALFORMED
    if is_ept:
        if ((e >> _U1) & ~e & _U1) != 0:                    # W without R
            return _MALFORMED
        if leaf and ((_BAD_MEMTYPES >> ((e >> _U3) & _U7)) & _U1) != 0:
            return _MALFORMED
    return _LEAF if leaf else _TABLE


@njit(cache=True)
def _grow(a):
    b = np.empty(max(2 * a.size, 64), a.dtype)
    b[:a.size] = a
    return b


@njit(cache=True, inline="always")
def _leaf_row(row, is_ept, pmask, resv1, a_shift, fshift, fmask, fbits, table, hist, lhist,
              level_bits, lmask, long_on, long_mask, long_top, acc_idx):
    """Walk one leaf table held in ``row`` (no bus errors possible), as the general loop would.

    The indices of the leaves whose A bit was cleared go to ``acc_idx[:accessed]``.
    Returns ``(accessed, leaves, malformed, writes)``.
    """
    n_acc = 0
    n_leaf = 0
    n_mal = 0
    n_wr = 0
    for j in range(512):
        e = row[j]
        if (e & pmask) == 0:
            continue
        if (e & resv1) != 0:
            n_mal += 1
            continue
        if is_ept and (((e >> _U1) & ~e & _U1) != 0
                       or ((_BAD_MEMTYPES >> ((e >> _U3) & _U7)) & _U1) != 0):
            n_mal += 1
            continue
        a = (e >> a_shift) & _U1
        new = step_leaf(e, a, a_shift, fshift, fmask, fbits, table)
        row[j] = new                     # storing an unchanged word changes nothing ...
        n_wr += np.int64(new != e)       # ... and only changed words count as writes
        state = (new >> fshift) & fmask
        hist[state & lmask] += 1
        if long_on:
            hist_long = (state >> level_bits) & long_mask
            lhist[min(np.int64(hist_long), long_top)] += 1
        n_leaf += 1
        acc_idx[n_acc] = j
        n_acc += np.int64(a)
    return n_acc, n_leaf, n_mal, n_wr


@njit(cache=True)
def _scan_kernel(pool, slot, size, poison, root, is_ept, pmask, a_shift, resv_nl, resv_leaf,
                 amask, fshift, fmask, fbits, table, level_bits, lmask, nlevels, long_on,
                 long_mask, long_top, lp_on, lp_k, pass_index, warmup, threshold, max_absent,
                 record):
    """One pass over the tree at ``root``; see the module docstring for the contract.

    All mask/shift arguments are ``uint64``. Returns ``(counters, histogram,
    long_histogram, by_level, cand_region, cand_addr, cand_value, n_cand, cleared_base,
    cleared_size, n_cleared)``.
    """
    cnt = np.zeros(6, np.int64)
    hist = np.zeros(nlevels, np.int64)
    lhist = np.zeros(long_top + 1 if long_on else 0, np.int64)
    by_level = np.zeros(4, np.int64)
    cand_reg = np.empty(64, np.int64)
    cand_addr = np.empty(64, np.int64)
    cand_val = np.empty(64, np.int64)
    ncand = 0
    clr_base = np.empty(1024 if record else 0, np.int64)
    clr_size = np.empty(1024 if record else 0, np.int64)
    nclr = 0
    shifts = np.array([0, 12, 21, 30, 39], np.int64)
    sizes = np.array([0, 1 << 12, 1 << 21, 1 << 30, 0], np.int64)
    acc_idx = np.empty(512, np.int64)
    tbl = np.zeros(5, np.uint64)
    idx = np.zeros(5, np.int64)
    vbase = np.zeros(5, np.int64)
    # The level-2 entry whose leaf table is being walked, and that table's counts.
    p_addr = np.uint64(0)
    p_visit = np.uint64(0)
    p_va = 0
    t_acc = 0
    t_present = 0

    lvl = 4
    tbl[4] = root
    cnt[_TABLES] += 1
    while True:
        i = idx[lvl]
        if i == 512:
            if lvl == 1 and lp_on:
                ok, cur = _read_word(pool, slot, size, poison, p_addr)
                if not ok:
                    cnt[_BUS] += 1
                elif (_classify(cur, 2, is_ept, pmask, resv_nl, resv_leaf) == _TABLE
                      and (cur & amask) == (p_visit & amask)):
                    v = np.int64((cur >> _LP_SHIFT) & _LP_MAX)
                    v2 = lp_step(v, t_acc, lp_k)
                    new = (cur & _LP_CLEAR) | (np.uint64(v2) << _LP_SHIFT)
                    if new != cur:
                        _write_word(pool, slot, p_addr, new)
                        cnt[_WRITES] += 1
                    if eligible(pass_index, v2, 512 - t_present, warmup, threshold,
                                max_absent):
                        if ncand == cand_reg.size:
                            cand_reg = _grow(cand_reg)
                            cand_addr = _grow(cand_addr)
                            cand_val = _grow(cand_val)
                        cand_reg[ncand] = p_va
                        cand_addr[ncand] = np.int64(p_addr)
                        cand_val[ncand] = v2
                        ncand += 1
            if lvl == 4:
                break
            lvl += 1
            continue
        idx[lvl] = i + 1
        addr = tbl[lvl] + np.uint64(8 * i)
        va = vbase[lvl] + (i << shifts[lvl])
        ok, e = _read_word(pool, slot, size, poison, addr)
        if not ok:
            cnt[_BUS] += 1
            continue
        cnt[_ENTRIES] += 1
        kind = _classify(e, lvl, is_ept, pmask, resv_nl, resv_leaf)
        if kind == _ABSENT:
            continue
        if kind == _MALFORMED:
            cnt[_MALF] += 1
            continue
        if kind == _LEAF:
            a = (e >> a_shift) & _U1
            new = step_leaf(e, a, a_shift, fshift, fmask, fbits, table)
            if new != e:
                _write_word(pool, slot, addr, new)
                cnt[_WRITES] += 1
            state = (new >> fshift) & fmask
            hist[state & lmask] += 1
            if long_on:
                hist_long = (state >> level_bits) & long_mask
                lhist[min(np.int64(hist_long), long_top)] += 1
            by_level[lvl] += 1
            if lvl == 1:
                t_present += 1
                t_acc += np.int64(a)
            if a:
                cnt[_ACCESSED] += 1
                if record:
                    if nclr == clr_base.size:
                        clr_base = _grow(clr_base)
                        clr_size = _grow(clr_size)
                    clr_base[nclr] = va
                    clr_size[nclr] = sizes[lvl]
                    nclr += 1
            continue
        # A table pointer: descend.
        child = e & amask
        cnt[_TABLES] += 1
        lvl -= 1
        tbl[lvl] = child
        idx[lvl] = 0
        vbase[lvl] = va
        if lvl != 1:
            continue
        p_addr = addr
        p_visit = e
        p_va = va
        t_acc = 0
        t_present = 0
        if child >= size or _page_poisoned(poison, child):
            continue                     # the general loop above reads it entry by entry
        # Fast path: a leaf table wholly inside memory with no poisoned word.
        cnt[_ENTRIES] += 512
        idx[1] = 512
        row_index = slot[child >> _U12]
        if row_index < 0:
            continue                     # never written: 512 zero (absent) entries
        n_acc, n_leaf, n_mal, n_wr = _leaf_row(
            pool[row_index], is_ept, pmask, resv_leaf[1], a_shift, fshift, fmask, fbits,
            table, hist, lhist, level_bits, lmask, long_on, long_mask, long_top, acc_idx)
        if record:
            while nclr + n_acc > clr_base.size:
                clr_base = _grow(clr_base)
                clr_size = _grow(clr_size)
            for j in range(n_acc):
                clr_base[nclr] = va + (acc_idx[j] << 12)
                clr_size[nclr] = 4096
                nclr += 1
        cnt[_MALF] += n_mal
        cnt[_WRITES] += n_wr
        cnt[_ACCESSED] += n_acc
        by_level[1] += n_leaf
        t_present = n_leaf
        t_acc = n_acc
    return (cnt, hist, lhist, by_level, cand_reg, cand_addr, cand_val, ncand, clr_base,
            clr_size, nclr)


class _KernelCache(FunctionCache):
    """On-disk cache of the kernel that also keys on the other sources compiled into it.

    numba's cache is only invalidated by changes to the file defining a function, but the
    kernel also compiles in the prioritizer's arithmetic and constants taken from the bit
    layouts. Their source digest joins the cache key, so editing either recompiles.
    """

    _deps = hashlib.sha256(b"".join(
        Path(m.__file__).read_bytes() for m in (prioritizer, thermocline.layouts))).hexdigest()

    def _index_key(self, sig, codegen):
        return (*super()._index_key(sig, codegen), self._deps)


_scan_kernel._cache = _KernelCache(_scan_kernel.py_func)


# --- the scanner --------------------------------------------------------------------------

class Scanner:
    """Accessed-bit scanner, activity classifier and large-page prioritizer.

    Parameters
    ----------
    config : ScanConfig, optional
        Defaults to ``ScanConfig()``.
    pass_index : int
        Index of the next pass (passes count from 0). Each completed pass adds one.

    Members
    -------
    config : ScanConfig
    pass_index : int
        Index the next pass will have.
    last_stats : ScanStats or None
        Result of the last completed pass.
    """

    def __init__(self, config: ScanConfig | None = None, *, pass_index: int = 0):
        config = ScanConfig() if config is None else config
        if not isinstance(config, ScanConfig):
            raise ValueError(f"Scanner: config must be a ScanConfig, got {config!r}")
        _check_int("Scanner", "pass_index", pass_index, 0, None)
        self._config = config
        self._pass = int(pass_index)
        self.last_stats: ScanStats | None = None
        self._fmt = host_format(config.fmt, config.pa_bits)
        self._is_ept = isinstance(self._fmt, EptFormat)
        layout = HOST_FORMATS[config.fmt]
        f = config.fields
        self._fbits = config.level_bits + config.long_bits + config.seen_bits
        self._fshift = f.level.lsb
        self._a_shift = layout.A.lsb
        self._tables = (_step_table(config, False), _step_table(config, True))
        resv_nl = np.zeros(5, np.uint64)
        resv_leaf = np.zeros(5, np.uint64)
        for level in (1, 2, 3, 4):
            if self._is_ept:
                resv_nl[level] = ept_reserved_mask(level, level == 1, config.pa_bits)
                resv_leaf[level] = ept_reserved_mask(level, level != 4, config.pa_bits)
            else:
                resv_nl[level] = x86_reserved_mask(level, level == 1, config.pa_bits, True)
                resv_leaf[level] = x86_reserved_mask(level, level != 4, config.pa_bits, True)
        self._resv_nl, self._resv_leaf = resv_nl, resv_leaf

    @property
    def config(self) -> ScanConfig:
        return self._config

    @property
    def pass_index(self) -> int:
        return self._pass

    # --- common ----------------------------------------------------------------------

    def _check_root(self, mem, root) -> int | None:
        """The root table's address, or None for a root with a reserved bit set."""
        if not isinstance(mem, PhysMem):
            raise ValueError(f"mem must be a PhysMem, got {type(mem).__name__}")
        if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
            raise ValueError(f"root must be a table address (int), got {root!r}")
        root = int(root)
        if not 0 <= root < 1 << 64:
            raise ValueError(f"root must be a 64-bit register value, got {root:#x}")
        if root >> self._config.pa_bits:
            return None
        return root & ~0xFFF

    def _bad_root_pass(self) -> ScanStats:
        """A pass whose root has a reserved bit set: one malformed entry, nothing walked."""
        acc = _Accumulator(self._config, self._pass)
        acc.malformed = 1
        return self._finish(acc.stats(self._config))

    def _state_args(self, end_of_long: bool):
        return (np.uint64(self._a_shift), np.uint64(self._fshift),
                np.uint64((1 << self._fbits) - 1), np.uint64(self._fbits),
                self._tables[int(end_of_long)])

    def _finish(self, stats: ScanStats) -> ScanStats:
        self._pass += 1
        self.last_stats = stats
        return stats

    # --- compiled pass ---------------------------------------------------------------

    def scan_pass(self, mem: PhysMem, root: int) -> ScanStats:
        """Run one pass over the tree whose root table is at ``root`` (host-physical).

        Modifies ``mem`` in place and returns the pass's :class:`ScanStats`.
        """
        root = self._check_root(mem, root)
        if root is None:
            return self._bad_root_pass()
        cfg, lp = self._config, self._config.large_page
        p = self._pass
        a_shift, fshift, fmask, fbits, table = self._state_args(cfg.end_of_long(p))
        poison = np.array(sorted(mem.poisoned), dtype=np.uint64)
        lb = cfg.level_bits
        (cnt, hist, lhist, by_level, c_reg, c_addr, c_val, ncand, clr_base, clr_size,
         nclr) = _scan_kernel(
            mem.pool, mem.slot, np.uint64(mem.size), poison, np.uint64(root), self._is_ept,
            np.uint64(7 if self._is_ept else 1), a_shift, self._resv_nl, self._resv_leaf,
            np.uint64(self._fmt.addr_mask), fshift, fmask, fbits, table, np.uint64(lb),
            np.uint64((1 << lb) - 1), cfg.levels, cfg.multi,
            np.uint64((1 << cfg.long_bits) - 1), cfg.long_levels - 1, lp.enable, lp.shift, p,
            lp.warmup, lp.threshold, lp.max_nonpresent, cfg.report_cleared)
        stats = ScanStats(
            pass_index=p, histogram=hist, long_histogram=lhist if cfg.multi else None,
            accessed=int(cnt[_ACCESSED]),
            leaves_by_size={LEAF_SIZES[lvl]: int(by_level[lvl]) for lvl in (1, 2, 3)},
            entries_read=int(cnt[_ENTRIES]), tables_read=int(cnt[_TABLES]),
            writes=int(cnt[_WRITES]), malformed=int(cnt[_MALF]), bus_errors=int(cnt[_BUS]),
            retries=0,
            candidates=rank(c_reg[:ncand], c_addr[:ncand], c_val[:ncand], lp.top_k),
            cleared_base=clr_base[:nclr].copy() if cfg.report_cleared else None,
            cleared_size=clr_size[:nclr].copy() if cfg.report_cleared else None,
        )
        return self._finish(stats)

    # --- step-by-step pass -----------------------------------------------------------

    def iter_pass(self, mem: PhysMem, root: int) -> Generator[Pending, None, ScanStats]:
        """The same pass as :meth:`scan_pass`, one entry at a time, writes as compare-and-set.

        A generator: it yields a :class:`Pending` before every write; its return value
        (``StopIteration.value``, or :func:`drive`'s result) is the :class:`ScanStats`, also
        kept in :attr:`last_stats`. The pass index is taken when the generator starts and
        advanced when it finishes. Without other writers the result (memory and statistics)
        equals :meth:`scan_pass`'s.

        Compare-and-set rules, when the re-read finds the word changed by another agent
        (``retries += 1``):

        * a leaf: the A bit as first read decides the step (``accessed``); the new value is
          recomputed from the current word -- its activity fields stepped with that decision,
          its A bit cleared only if the decision was "accessed". An A bit set by another
          agent after the first read therefore stays set and counts in the next pass; D is
          never touched. If the current word is no longer a present, well-formed leaf, the
          update is dropped and the entry counts as nothing (no leaf, not accessed).
        * a level-2 parent: if it is no longer a present, well-formed table pointer to the
          same table, the update and candidate are dropped; otherwise ``LPCOUNT`` is
          recomputed from the current word.

        A re-read or write answered with a bus error counts in ``bus_errors`` and drops the
        update (the leaf then counts as nothing). Statistics count the outcome that was
        committed. The generator must be run to its end for the pass to count.
        """
        return self._iter_pass(mem, self._check_root(mem, root))

    def _iter_pass(self, mem, root):
        if root is None:
            return self._bad_root_pass()
            yield  # a generator all the same
        cfg = self._config
        acc = _Accumulator(cfg, self._pass)
        args = self._state_args(cfg.end_of_long(self._pass))
        acc.tables += 1
        yield from self._walk(mem, root, 4, 0, acc, args)
        return self._finish(acc.stats(cfg))

    def _classify(self, e: int, level: int) -> int:
        fmt = self._fmt
        if not fmt.present(e):
            return _ABSENT
        if self._is_ept:
            bad = fmt.misconfigured(e, level)
        else:
            bad = fmt.reserved(e, level) != 0
        if bad:
            return _MALFORMED
        return _LEAF if fmt.is_leaf(e, level) else _TABLE

    def _walk(self, mem, table, level, va, acc, args):
        """Walk one table; returns (accessed leaves, present leaves) of it."""
        n_acc = n_present = 0
        for i in range(ENTRIES_PER_TABLE):
            addr = table + 8 * i
            eva = va + (i << LEVEL_SHIFT[level])
            try:
                e = mem.read(addr)
            except BusError:
                acc.bus_errors += 1
                continue
            acc.entries += 1
            kind = self._classify(e, level)
            if kind == _ABSENT:
                continue
            if kind == _MALFORMED:
                acc.malformed += 1
                continue
            if kind == _LEAF:
                a = yield from self._leaf(mem, addr, level, eva, e, acc, args)
                if a is not None:
                    n_present += 1
                    n_acc += a
                continue
            child = self._fmt.address(e, level)
            acc.tables += 1
            if level != 2:
                yield from self._walk(mem, child, level - 1, eva, acc, args)
                continue
            t_acc, t_present = yield from self._walk(mem, child, 1, eva, acc, args)
            if self._config.large_page.enable:
                yield from self._parent(mem, addr, e, eva, t_acc, t_present, acc)
        return n_acc, n_present

    def _leaf(self, mem, addr, level, va, e, acc, args):
        """Step one leaf with compare-and-set; returns its A bit (0/1) or None if dropped."""
        a_shift, fshift, fmask, fbits, table = args
        a = (e >> self._a_shift) & 1
        cur = e
        while True:
            new = int(step_leaf(np.uint64(cur), np.uint64(a), a_shift, fshift, fmask, fbits,
                                table))
            if new == cur:
                break
            yield Pending("leaf", addr, level, cur, new)
            try:
                now = mem.read(addr)
            except BusError:
                acc.bus_errors += 1
                return None
            if now != cur:
                acc.retries += 1
                if self._classify(now, level) != _LEAF:
                    return None
                cur = now
                continue
            try:
                mem.write(addr, new)
            except BusError:
                acc.bus_errors += 1
                return None
            acc.writes += 1
            break
        acc.leaf(new >> self._fshift, level, va, a)
        return a

    def _parent(self, mem, addr, visited, va, t_acc, t_present, acc):
        """Update a level-2 parent's LPCOUNT with compare-and-set; maybe add a candidate."""
        lp = self._config.large_page
        try:
            cur = mem.read(addr)
        except BusError:
            acc.bus_errors += 1
            return
        while True:
            if (self._classify(cur, 2) != _TABLE
                    or self._fmt.address(cur, 2) != self._fmt.address(visited, 2)):
                return
            v2 = int(lp_step(LPCOUNT.get(cur), t_acc, lp.shift))
            new = LPCOUNT.set(cur, v2)
            if new == cur:
                break
            yield Pending("lpcount", addr, 2, cur, new)
            try:
                now = mem.read(addr)
            except BusError:
                acc.bus_errors += 1
                return
            if now != cur:
                acc.retries += 1
                cur = now
                continue
            try:
                mem.write(addr, new)
            except BusError:
                acc.bus_errors += 1
                return
            acc.writes += 1
            break
        if eligible(acc.pass_index, v2, ENTRIES_PER_TABLE - t_present, lp.warmup,
                    lp.threshold, lp.max_nonpresent):
            acc.cand.append((va, addr, v2))


class _Accumulator:
    """Running statistics of :meth:`Scanner.iter_pass`."""

    def __init__(self, cfg: ScanConfig, pass_index: int):
        self.pass_index = pass_index
        self.hist = np.zeros(cfg.levels, np.int64)
        self.lhist = np.zeros(cfg.long_levels, np.int64) if cfg.multi else None
        self.by_level = {1: 0, 2: 0, 3: 0}
        self.entries = self.tables = self.writes = self.malformed = 0
        self.bus_errors = self.retries = self.accessed = 0
        self.cand: list[tuple[int, int, int]] = []
        self.cleared: list[tuple[int, int]] = []
        self._lmask = (1 << cfg.level_bits) - 1
        self._lb = cfg.level_bits
        self._gmask = (1 << cfg.long_bits) - 1
        self._gtop = cfg.long_levels - 1

    def leaf(self, state: int, level: int, va: int, a: int):
        self.hist[state & self._lmask] += 1
        if self.lhist is not None:
            self.lhist[min((state >> self._lb) & self._gmask, self._gtop)] += 1
        self.by_level[level] += 1
        if a:
            self.accessed += 1
            self.cleared.append((va, LEAF_SIZES[level]))

    def stats(self, cfg: ScanConfig) -> ScanStats:
        reg, addr, val = (zip(*self.cand) if self.cand else ((), (), ()))
        base = np.array([c[0] for c in self.cleared], np.int64)
        size = np.array([c[1] for c in self.cleared], np.int64)
        return ScanStats(
            pass_index=self.pass_index, histogram=self.hist, long_histogram=self.lhist,
            accessed=self.accessed,
            leaves_by_size={LEAF_SIZES[lvl]: self.by_level[lvl] for lvl in (1, 2, 3)},
            entries_read=self.entries, tables_read=self.tables, writes=self.writes,
            malformed=self.malformed, bus_errors=self.bus_errors, retries=self.retries,
            candidates=rank(list(reg), list(addr), list(val), cfg.large_page.top_k),
            cleared_base=base if cfg.report_cleared else None,
            cleared_size=size if cfg.report_cleared else None,
        )


def drive(gen: Generator[Pending, None, ScanStats],
          agent: Callable[[Pending], None] | None = None) -> ScanStats:
    """Run an :meth:`Scanner.iter_pass` generator to the end and return its statistics.

    ``agent``, if given, is called with every :class:`Pending` while the scanner is
    suspended between its read and its compare-and-set; it may write memory.
    """
    try:
        while True:
            pending = next(gen)
            if agent is not None:
                agent(pending)
    except StopIteration as stop:
        return stop.value
