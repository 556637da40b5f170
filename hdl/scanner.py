"""Accessed-bit scanner, activity classifier and large-page prioritizer in hardware.

The twin of :mod:`model.scanner`: one pass of :class:`Scanner` leaves memory, the pass
statistics and the ranked large-page candidates exactly as
:meth:`model.scanner.Scanner.scan_pass` does for the same tree, configuration and pass index,
whatever the tree holds (malformed entries, aliased and self-referencing tables, tables past
the end of memory, words answered with an error). The module docstring of
:mod:`model.scanner` is the specification; this one states what the hardware adds to it.

Work order and speed
--------------------
Upper levels (4, 3, 2) are walked one entry per cycle from a small window of the current
table, read ahead with narrow (8-byte) INCR bursts so that every entry gets its own read
response. Leaf tables are streamed with full-width INCR bursts, several in flight, one beat
(``data_width / 64`` entries) per cycle; every beat whose entries change is written back as
one single-beat write whose ``WSTRB`` covers exactly the changed entries, while the read
channel keeps streaming. While a leaf table streams, the next leaf-table pointer of the same
level-2 table is found in the window and that table is read ahead, so consecutive leaf
tables follow each other without a gap; only a well-formed table pointer is followed, so no
table is read that the walk will not enter. A full-width beat answered with an error is read
again entry by entry (narrow), and so is the rest of that table, so that errors count per
8-byte entry as in the model.

At the start of a pass the unit computes the activity step of every state the configured
fields can hold into a small table (the model's ``_step_table``), so stepping a leaf is one
lookup. Statistics are gathered in narrow per-cycle accumulators that are added, one per
cycle, into 32-bit totals kept in a small memory; after ``done`` they are read through
``stats_addr``/``stats_data``.

Ordering rules (hazards)
------------------------
The model reads each entry when the depth-first walk reaches it and sees every earlier write
of the pass. The hardware reads ahead; these rules make every early read return what the
model's read would:

1. Writes are issued in walk order, one AXI ID, single beats. A *pending write* is one
   computed and not yet answered by its B response; pending writes are tracked by page.
2. A read of a page that has a pending write is not issued: the first burst of a leaf table,
   every burst of the upper-level window and every read-ahead of the next leaf table wait
   until that page's writes are answered. (A leaf table's own later bursts do not wait for
   its own writes: those go to entries already read.)
3. The next leaf table is read ahead only if its page is neither the current upper table's
   page nor the page of the leaf table being walked.
4. Read-ahead data is dropped (bursts in flight are discarded as their beats arrive) and read
   again when an earlier write could have changed it: a write of the scanner to an entry of
   the current upper table beyond the walk position (a leaf table aliasing its own level-2
   table) drops the window and the next-table read-ahead.
5. A level-2 parent is never read twice: its value is kept from the moment the walk reads
   it, and every later write to it (the scanner's own, e.g. a self-referencing table that
   steps the very word as a leaf, and every snooped write) updates the kept value. The
   parent update (``LPCOUNT``) is computed from that value when its leaf table is done, which
   is what the model's re-read returns.

Atomicity with the other agents of the engine (``snoop``)
--------------------------------------------------------
Every write that another agent of the engine (the page walker setting A/D bits) makes to
memory is shown on ``snoop`` as ``{addr, data}``, the full new 64-bit word. The arbiter of
the engine's memory port must guarantee:

* a write of another agent is accepted by the memory port in exactly the cycle its snoop
  transfer happens (``snoop.valid & snoop.ready``), and it is visible to every read the
  scanner issues (``AR`` accepted) after that cycle;
* a write is offered on ``snoop`` (its address on ``snoop.payload.addr``, ``valid`` low) at
  least one cycle before it may land, and ``snoop.valid`` rises only while the address
  offered is the one offered the cycle before: ``snoop.ready`` is a register that answers
  for that address (``data`` may change, it is only used as the write lands);
* the arbiter keeps accepting the scanner's ``AW``/``W``/``AR`` while another agent's write
  waits for ``snoop.ready`` (``snoop.ready`` is low only while a write of the scanner to
  the same word waits in its write queue for its address to be accepted, while the word
  is in the step stage (S1) or waits for it (U1), or may enter either in the cycle the
  answer is for (the head beat of a leaf table, the entry the walk is at), and while a
  kept level-2 parent's update may be committed; it never depends on ``snoop.valid``);
* writes are performed in the order their write addresses are accepted (one ID, or an
  arbiter that keeps the order), and a read-modify-write of another agent is not split by
  a scanner write to the same word — or, as the walker does, writes only the bits it sets
  (its A/D byte), so that a scanner write landing in between keeps everything the scanner
  changed.

With that, the scanner implements :meth:`model.scanner.Scanner.iter_pass`'s compare-and-set
for every entry it has read and not yet written back:

* a snooped write to a leaf-table entry read and not yet taken into the step stage (its
  read in flight, or its beat in the queue of arrived beats) makes the scanner drop the
  data and read the rest of that leaf table again, so the entry is read after the other
  agent's write; a write to an upper-level entry not yet walked drops the window, which is
  read again the same way;
* a snooped write landing as its entry moves into the step stage or is taken by the walk
  replaces the entry's current value: the A bit as first read still decides the step, the
  new value is recomputed from the snooped word (A cleared only if it was read set, D never
  touched), and the update is dropped if the word is no longer a present, well-formed leaf
  (``retries`` counts these changed words, as the model's compare-and-set does). Since
  ``ready`` answers a cycle ahead and waits for the head beat and the walk's entry, this
  happens only to an entry that became one of them in that cycle;
* a write to an entry in the step stage (S1, U1) waits (``snoop.ready`` low) until the
  entry's write-back has its address accepted;
* a snooped write to a kept level-2 parent replaces the kept value (rule 5).

Progress: every dropped window or restarted leaf table is read again, so each snooped write
costs at most one memory round trip. The engine's walker writes an entry only to set its A
or D bit, and only the scanner clears A — as its walk takes the entry, or ahead of the walk
where a leaf table aliases the upper table being walked, once per aliasing leaf — so the
walker's writes ahead of the walk are bounded in every pass and every pass ends. An agent
that kept rewriting upper-level entries just ahead of the walk, faster than the window can
be read again, would keep the pass from ending.

An agent outside the engine that writes the tables (software, another device) gets none of
this: it must stop the scanner (or not write entries the scanner owns bits of) while it
changes a table, as with any hardware walker that has no bus lock.

Reported leaves whose A bit was cleared (``cleared``) come out after the B response of the
write that cleared them, so a walker that drops its cached copy on seeing the report cannot
re-read the entry from memory before the clear has landed.

Differences from the model that the model's memory cannot show
---------------------------------------------------------------
* A write answered with an error counts one bus error per entry it carried and no write; the
  statistics of those leaves were counted when the write was issued, and their ``cleared``
  reports are not sent. (In the model's memory a word that fails a write also failed its
  read, so the scanner never writes it.)
* Counters are 32 bits wide and wrap; the pass index is 32 bits wide.

Reset
-----
The ``sync`` reset abandons the pass: the unit is idle and the internal pass counter restarts
at 0 (a start may load any index); the statistics and candidates of the abandoned pass are
meaningless, and the next start clears them. Memory is not restored: writes already
accepted stay, so the pass after the reset sees a partly stepped tree, as the model would
after an interrupted pass. The AXI slave (interconnect) must be reset together with the
unit, so that no response of a request made before the reset arrives after it; as a
safeguard, read beats and write responses that arrive while nothing is outstanding are
accepted and ignored.
"""

from amaranth.hdl import Array, Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from thermocline import layouts as L

from .axi import DATA_WIDTHS, AxiParams, Burst, axi4_signature
from .prioritizer import (
    COUNT_BITS, VA_BITS, CandidateList, candidate_layout, lp_finish, lp_prepare,
)

__all__ = [
    "HostFormat", "CONFIG_LAYOUT", "COUNTER_BITS", "STAT_NAMES", "stat_index",
    "start_layout", "snoop_layout", "cleared_layout", "done_layout", "candidate_layout",
    "Scanner", "SYNTH_DESIGNS",
]

#: Width of every statistics counter.
COUNTER_BITS = 32

_ENTRIES = L.ENTRIES_PER_TABLE
_IDX_BITS = _ENTRIES.bit_length()              # 0..512
_E, _X = L.EPT_ENTRY, L.X86_ENTRY
#: The engine-owned window holding the activity state: bits 52.. of every format, as wide as
#: the widest format's (the EPT format owns fewer of them; see ``ENGINE_BITS``).
_SW = L.ENGINE_BITS["npt"]
assert all(f.lsb == _SW.lsb and f.width <= _SW.width for f in L.ENGINE_BITS.values())
assert _E.PS.lsb == _X.PS.lsb


class HostFormat(enum.Enum, shape=2):
    """Host tree format (``fmt`` of the configuration). ``3`` is reserved and acts as IA32E."""

    EPT = 0
    NPT = 1
    IA32E = 2


#: Configuration of a pass; sampled when the pass starts. Fields and ranges as in
#: :class:`model.scanner.ScanConfig` and :class:`model.prioritizer.LargePageConfig`:
#: ``fmt`` (:class:`HostFormat`), ``levels`` (2..32, at most ``max_levels``), ``up``,
#: ``down`` (1..levels-1), ``long_every`` (0 = off, or 2..65535), ``long_levels`` (2..32, at
#: most ``max_levels``), ``long_need`` (1..long_every), ``lp_enable``, ``lp_shift`` (0..4),
#: ``lp_warmup``, ``lp_threshold`` (0..31), ``lp_top_k`` (0..64), ``lp_max_nonpresent``
#: (0..512). The activity fields must fit the format's engine-owned bits (as ``ScanConfig``
#: checks); bits outside them are never written whatever the configuration.
CONFIG_LAYOUT = data.StructLayout({
    "fmt": HostFormat,
    "levels": 6,
    "up": 5,
    "down": 5,
    "long_every": 16,
    "long_levels": 6,
    "long_need": 5,
    "lp_enable": 1,
    "lp_shift": 3,
    "lp_warmup": 32,
    "lp_threshold": 5,
    "lp_top_k": 7,
    "lp_max_nonpresent": 10,
})


def _check_int(owner, name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{owner}: {name} must be an integer from {lo} to {hi}, "
                         f"got {value!r}")


def start_layout(pa_bits: int) -> data.StructLayout:
    """Payload of a pass start, LSB first.

    Returns
    -------
    data.StructLayout
        ``root``: host-physical byte address of the root table, 64 bits as software wrote
        it: bits 11..0 are ignored, and a root with a bit set at or above ``pa_bits`` (the
        root pointer's reserved bits) makes the pass count one malformed entry and walk
        nothing. ``pass_index``: index of the pass when ``set_index`` is set; otherwise the
        unit uses its own count (0 after reset, one more after each completed pass). Both
        as :class:`model.scanner.Scanner` does.
    """
    _check_int("start_layout", "pa_bits", pa_bits, 32, 52)
    return data.StructLayout({"root": 64, "pass_index": 32, "set_index": 1})


def snoop_layout(pa_bits: int) -> data.StructLayout:
    """A write of another engine agent: ``addr`` (byte address; bits 2..0 ignored), ``data``."""
    _check_int("snoop_layout", "pa_bits", pa_bits, 32, 52)
    return data.StructLayout({"addr": pa_bits, "data": 64})


def cleared_layout(lanes: int) -> data.StructLayout:
    """One report of leaves whose A bit was cleared, LSB first.

    Returns
    -------
    data.StructLayout
        The leaves of one written beat: ``base`` is the input address of the entry in lane 0
        of that beat, ``level`` the level of the entries (1: 4 KiB, 2: 2 MiB, 3: 1 GiB
        pages); lane ``i`` (bit ``i`` of ``mask``, ``lanes`` bits) is the page
        ``[base + i * size, base + (i + 1) * size)``. With a 64-bit bus every report is one
        leaf.
    """
    _check_int("cleared_layout", "lanes", lanes, 1, 4)
    return data.StructLayout({"base": VA_BITS, "level": 2, "mask": lanes})


#: Scalar statistics of a pass, in the order of their ``stats_addr`` (as
#: :class:`model.scanner.ScanStats`; ``cycles`` counts from the start transfer to the end
#: of the work, before the counters are settled for ``done``).
STAT_NAMES = ("accessed", "leaves_4k", "leaves_2m", "leaves_1g", "entries_read",
              "tables_read", "writes", "malformed", "bus_errors", "retries", "cycles")


def stat_index(max_levels: int) -> dict:
    """Where each statistic is read (``stats_addr``) for a given ``max_levels``.

    Returns
    -------
    dict
        ``{name: address}`` for :data:`STAT_NAMES`, and ``"histogram"`` and
        ``"long_histogram"`` mapped to the address of their entry 0 (entry ``i`` of each is
        at that address plus ``i``; ``max_levels`` entries). The long histogram counts
        nothing without the long period.
    """
    _check_int("stat_index", "max_levels", max_levels, 2, 32)
    out = {name: i for i, name in enumerate(STAT_NAMES)}
    out["histogram"] = len(STAT_NAMES)
    out["long_histogram"] = len(STAT_NAMES) + max_levels
    return out


def done_layout(top_k_max: int) -> data.StructLayout:
    """Payload of ``done``: ``pass_index`` of the finished pass and ``candidates``, how many
    candidates the list holds."""
    _check_int("done_layout", "top_k_max", top_k_max, 1, 64)
    return data.StructLayout({"pass_index": 32, "candidates": range(top_k_max + 1)})


def _bit_length(m, x, name):
    """``x.bit_length()`` of a small unsigned value (comb)."""
    out = Signal(range(len(x) + 1), name=name)
    for i in range(len(x)):
        with m.If(x[i]):
            m.d.comb += out.eq(i + 1)
    return out


def _popcount(bits):
    return sum(bits[i] for i in range(len(bits))) if len(bits) > 1 else bits[0]


# Kinds of read bursts in flight.
_CLS_WIN, _CLS_LEAF, _CLS_AHEAD = 0, 1, 2

# Top-level phases and walk states.
_PH_IDLE, _PH_INIT, _PH_RUN, _PH_DONE, _PH_FLUSH = range(5)
_DS_UPPER, _DS_LEAF, _DS_PARENT, _DS_FIN = range(4)
# Read-ahead of the next leaf table.
_PF_IDLE, _PF_FOUND, _PF_ISSUE = range(3)


class Scanner(wiring.Component):
    """One depth-first pass over a host tree per start: A-bit test-and-clear, activity step,
    large-page prioritizer.

    A pass starts with a transfer on ``start`` (root address, optional pass index), runs with
    the configuration sampled at that moment, and ends with ``done`` holding its statistics;
    the next start is accepted once ``done`` has been taken. The candidate list of the pass
    stays readable until the next start. See the module docstring for the memory-ordering
    and atomicity contract.

    Parameters
    ----------
    data_width : int
        AXI data width: 64, 128 or 256 (``data_width / 64`` entries per beat).
    pa_bits : int
        Physical-address width, 32..52; also the AXI address width.
    id_width : int
        AXI ID width, 1..16 (every request uses ID 0).
    max_levels : int
        Entries of each histogram, 2..32; ``levels`` and ``long_levels`` of the
        configuration must not exceed it.
    top_k_max : int
        Most candidates kept, 1..64; ``lp_top_k`` above it acts as ``top_k_max``.
    max_reads : int
        Most read bursts in flight, 2..16.
    burst_beats : int
        Beats per leaf-table burst, a power of two from 1 to ``min(256, 512 / lanes)``.
    max_writes : int
        Most writes (and ``cleared`` reports) waiting for their B response, 2..256.
    window : int
        Entries of the upper-level window, a power of two from 4 to 256.
    checks : bool
        Simulation only: assert on every cycle that the registered copies the unit keeps
        for timing (the page compares of a landing snooped write, "walking an upper table",
        "the head queue holds an entry") equal what they stand for, and count how often
        their cases occur (:attr:`coverage`). The simulation tests build the unit with
        them; synthesis and Verilog leave them out.

    Members
    -------
    start : ``In(stream.Signature(start_layout(pa_bits)))``
        Pass starts; ready while idle.
    config : ``In(CONFIG_LAYOUT)``
        Configuration, sampled at each start.
    done : ``Out(stream.Signature(done_layout(top_k_max)))``
        End of the pass, valid until taken.
    stats_addr : ``In(range(len(STAT_NAMES) + 2 * max_levels))``
        Statistic to read (:func:`stat_index`).
    stats_data : ``Out(COUNTER_BITS)``
        That statistic of the last finished pass, one cycle later (meaningless while a pass
        runs).
    cleared : ``Out(stream.Signature(cleared_layout(lanes)))``
        Leaves whose A bit was cleared, after their write is answered; backpressure stalls
        the pass.
    snoop : ``In(stream.Signature(snoop_layout(pa_bits)))``
        Writes of other engine agents (module docstring).
    cand_addr : ``In(range(top_k_max))``
        Rank of the candidate to read (0 = best).
    cand_data : ``Out(candidate_layout(pa_bits))``
        That candidate, one cycle later.
    busy : ``Out(1)``
        A pass is running (start taken, ``done`` not yet valid).
    m_axi : ``Out(axi4_signature(AxiParams(addr_width=pa_bits, data_width=data_width,
    id_width=id_width)))``
        Memory.
    """

    def __init__(self, *, data_width: int = 64, pa_bits: int = 52, id_width: int = 4,
                 max_levels: int = 8, top_k_max: int = 8, max_reads: int = 4,
                 burst_beats: int = 32, max_writes: int = 32, window: int = 64,
                 checks: bool = False):
        owner = "Scanner"
        if not isinstance(checks, bool):
            raise ValueError(f"{owner}: checks must be True or False, got {checks!r}")
        self._checks = checks
        #: Simulation only (``checks``): coverage counters of the checked cases, by name.
        self.coverage = {}
        if data_width not in DATA_WIDTHS or isinstance(data_width, bool):
            raise ValueError(f"{owner}: data_width must be one of "
                             f"{', '.join(map(str, DATA_WIDTHS))}, got {data_width!r}")
        _check_int(owner, "pa_bits", pa_bits, 32, 52)
        _check_int(owner, "id_width", id_width, 1, 16)
        _check_int(owner, "max_levels", max_levels, 2, 32)
        _check_int(owner, "top_k_max", top_k_max, 1, 64)
        _check_int(owner, "max_reads", max_reads, 2, 16)
        lanes = data_width // 64
        beats_max = min(256, _ENTRIES // lanes)
        _check_int(owner, "burst_beats", burst_beats, 1, beats_max)
        if burst_beats & (burst_beats - 1):
            raise ValueError(f"{owner}: burst_beats must be a power of two, got {burst_beats}")
        _check_int(owner, "max_writes", max_writes, 2, 256)
        _check_int(owner, "window", window, 4, 256)
        if window & (window - 1):
            raise ValueError(f"{owner}: window must be a power of two, got {window}")
        self._data_width = data_width
        self._pa_bits = pa_bits
        self._id_width = id_width
        self._max_levels = max_levels
        self._top_k_max = top_k_max
        self._max_reads = max_reads
        self._burst_beats = burst_beats
        self._max_writes = max_writes
        self._window = window
        self._params = AxiParams(addr_width=pa_bits, data_width=data_width, id_width=id_width)
        super().__init__({
            "start": In(stream.Signature(start_layout(pa_bits))),
            "config": In(CONFIG_LAYOUT),
            "done": Out(stream.Signature(done_layout(top_k_max))),
            "stats_addr": In(range(len(STAT_NAMES) + 2 * max_levels)),
            "stats_data": Out(COUNTER_BITS),
            "cleared": Out(stream.Signature(cleared_layout(lanes))),
            "snoop": In(stream.Signature(snoop_layout(pa_bits))),
            "cand_addr": In(range(top_k_max)),
            "cand_data": Out(candidate_layout(pa_bits)),
            "busy": Out(1),
            "m_axi": Out(axi4_signature(self._params)),
        })

    # --- parameters -------------------------------------------------------------------

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def lanes(self) -> int:
        """Entries per beat."""
        return self._data_width // 64

    @property
    def pa_bits(self) -> int:
        return self._pa_bits

    @property
    def id_width(self) -> int:
        return self._id_width

    @property
    def max_levels(self) -> int:
        return self._max_levels

    @property
    def top_k_max(self) -> int:
        return self._top_k_max

    @property
    def max_reads(self) -> int:
        return self._max_reads

    @property
    def burst_beats(self) -> int:
        return self._burst_beats

    @property
    def max_writes(self) -> int:
        return self._max_writes

    @property
    def window(self) -> int:
        return self._window

    @property
    def params(self) -> AxiParams:
        """Widths of ``m_axi``."""
        return self._params

    # --- entry logic -------------------------------------------------------------------

    def _masks(self):
        """Reserved-bit masks, indexed by ``Cat(leaf, level - 1, is_ept)``."""
        pa = self._pa_bits
        out = []
        for is_ept in (0, 1):
            for level in (1, 2, 3, 4):
                for leaf in (0, 1):
                    lf = bool(leaf) if level in (2, 3) else level == 1
                    if is_ept:
                        out.append(L.ept_reserved_mask(level, lf, pa))
                    else:
                        out.append(L.x86_reserved_mask(level, lf, pa, True))
        return out

    def _classify(self, m, e, level, is_ept, name):
        """(absent, malformed, leaf, table) of a 64-bit entry ``e`` read at ``level`` (1..4),
        as the model's ``_classify`` decides."""
        present = Signal(name=f"{name}_present")
        leaf = Signal(name=f"{name}_isleaf")
        bad = Signal(name=f"{name}_bad")
        ept_present = _E.R.mask | _E.W.mask | _E.X.mask
        m.d.comb += [
            present.eq(Mux(is_ept, (e & ept_present) != 0, (e & _X.P.mask) != 0)),
            leaf.eq((level == 1) | (((level == 2) | (level == 3)) & e[_E.PS.lsb])),
        ]
        masks = Array(Const(v, 64) for v in self._masks())
        resv = masks[Cat(leaf, (level - 1)[:2], is_ept)]
        bad_types = sum(1 << t for t in L.EPT_BAD_MEMTYPES)
        memtype = e[_E.MEMTYPE.lsb:_E.MEMTYPE.lsb + _E.MEMTYPE.width]
        m.d.comb += bad.eq(((e & resv) != 0)
                           | (is_ept & e[_E.W.lsb] & ~e[_E.R.lsb])
                           | (is_ept & leaf & (Const(bad_types, 8) >> memtype)[0]))
        absent = Signal(name=f"{name}_absent")
        malformed = Signal(name=f"{name}_malformed")
        is_leaf = Signal(name=f"{name}_leaf")
        table = Signal(name=f"{name}_table")
        m.d.comb += [
            absent.eq(~present),
            malformed.eq(present & bad),
            is_leaf.eq(present & ~bad & leaf),
            table.eq(present & ~bad & ~leaf),
        ]
        return absent, malformed, is_leaf, table

    # --- the unit ----------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        axi = self.m_axi
        pa = self._pa_bits
        pw = pa - 12                                  # page-number width
        lanes = self.lanes
        lane_bits = ceil_log2(lanes)
        beat_bits = 9 - lane_bits                     # beat index within a table
        beat_shift = self._params.size                # log2(bytes per beat)
        nread = self._max_reads
        win = self._window
        win_bits = ceil_log2(win)
        win_burst = win // 2
        amask = L.addr_mask(pa)
        top_k_max = self._top_k_max
        sw_lo, sw_w = _SW.lsb, _SW.width
        cb = COUNTER_BITS

        def page_of(addr):
            return addr[12:pa]

        def lane_of(index):
            return index[:lane_bits] if lane_bits else Const(0, 1)

        # ================================================================== pass control
        cfg = Signal(CONFIG_LAYOUT)
        pass_idx = Signal(32)
        pass_ctr = Signal(32)
        root = Signal(pw)
        root_bad = Signal()                  # a root bit at or above pa_bits: walk nothing
        root_malf = Signal()                 # ... and count it, once
        phase = Signal(3)
        walk_upper = Signal()                # phase RUN and ds UPPER, as a flip-flop of its own
        m.d.comb += self.busy.eq((phase == _PH_INIT) | (phase == _PH_RUN)
                                 | (phase == _PH_FLUSH))

        class _Derived:
            pass

        d = _Derived()
        d.is_ept = Signal()
        d.multi = Signal()
        d.lb = Signal(3)
        d.lgb = Signal(4)
        d.fb = Signal(4)                       # bits of the activity state
        d.lmask = Signal(sw_w)
        d.gmask = Signal(sw_w)
        d.smask = Signal(sw_w)
        d.fmask = Signal(sw_w)
        d.engmask = Signal(sw_w)
        d.keep = Signal(sw_w)                  # window bits a step never changes
        d.top = Signal(5)
        d.up = Signal(5)
        d.down = Signal(5)
        d.need = Signal(5)
        d.lltop = Signal(5)
        d.eol = Signal()
        d.warm = Signal()

        multi_c = Signal()
        m.d.comb += multi_c.eq(cfg.long_every != 0)
        lb_c = _bit_length(m, (cfg.levels - 1)[:6], "lb_c")
        gb_raw = _bit_length(m, (cfg.long_levels - 1)[:6], "gb_raw")
        sb_raw = _bit_length(m, cfg.long_need, "sb_raw")
        gb_c = Signal(3)
        sb_c = Signal(3)
        eng_c = Signal(sw_w)
        m.d.comb += [
            gb_c.eq(Mux(multi_c, gb_raw, 0)),
            sb_c.eq(Mux(multi_c, sb_raw, 0)),
            eng_c.eq(Mux(cfg.fmt == HostFormat.EPT, (1 << L.ENGINE_BITS["ept"].width) - 1,
                         (1 << sw_w) - 1)),
        ]
        # Derived in three registered steps, every INIT cycle: they have settled long before
        # the step table is built (the division before it takes 33 cycles).
        d_gb = Signal(3)
        d_sb = Signal(3)
        with m.If(phase == _PH_INIT):
            m.d.sync += [
                d.is_ept.eq(cfg.fmt == HostFormat.EPT),
                d.multi.eq(multi_c),
                d.lb.eq(lb_c),
                d_gb.eq(gb_c),
                d_sb.eq(sb_c),
                d.lgb.eq(d.lb + d_gb),
                d.fb.eq(d.lb + d_gb + d_sb),
                d.lmask.eq((Const(1, 8) << d.lb) - 1),
                d.gmask.eq((Const(1, 8) << d_gb) - 1),
                d.smask.eq((Const(1, 8) << d_sb) - 1),
                d.fmask.eq((Const(1, 16) << d.fb) - 1),
                d.engmask.eq(eng_c),
                d.keep.eq(~d.fmask | ~d.engmask),
                d.top.eq(cfg.levels - 1),
                d.up.eq(cfg.up),
                d.down.eq(cfg.down),
                d.need.eq(cfg.long_need),
                d.lltop.eq(cfg.long_levels - 1),
                d.warm.eq(pass_idx >= cfg.lp_warmup),
            ]

        def a_of(e):
            return Mux(d.is_ept, e[_E.A.lsb], e[_X.A.lsb])

        def sw_of(e):
            return e[sw_lo:sw_lo + sw_w]

        def merge(e, state, a):
            """``e`` with its activity state replaced and, if ``a``, its A bit cleared."""
            new_sw = (sw_of(e) & d.keep) | (state & ~d.keep)
            out = Signal(64, name="merged")
            m.d.comb += out.eq(Cat(e[:sw_lo], new_sw, e[sw_lo + sw_w:]))
            m.d.comb += [out[_E.A.lsb].eq(e[_E.A.lsb] & ~(a & d.is_ept)),
                         out[_X.A.lsb].eq(e[_X.A.lsb] & ~(a & ~d.is_ept))]
            return out

        # INIT: (pass_index + 1) % long_every one bit per cycle, then the step table.
        div_num = Signal(33)
        div_rem = Signal(17)
        div_cnt = Signal(range(34))
        div_shift = Signal(17)
        m.d.comb += div_shift.eq(Cat(div_num[32], div_rem[:16]))
        init_tab = Signal()                    # building the step table

        # The step table: ``tab[(a << 7) | state] = new state``, the model's ``_step_table``
        # for this pass (``state`` is the activity window masked to the fields in use).
        m.submodules.tab = tab = Memory(shape=sw_w, depth=1 << (sw_w + 1), init=[])
        tab_w = tab.write_port()
        tab_f = [tab.read_port(domain="comb") for _ in range(lanes)]
        tab_c = tab.read_port(domain="comb")
        # Builder: four pipeline stages from the address counter to the write.
        b_addr = Signal(sw_w + 2)
        b1 = Signal(data.StructLayout({"v": 1, "addr": sw_w + 1, "a": 1, "level": 5,
                                       "long": 5, "seen": 5}))
        b2 = Signal(data.StructLayout({"v": 1, "addr": sw_w + 1, "a": 1, "cur": 5, "upv": 6,
                                       "dn": 5, "seen2": 5, "g": 5, "long": 5}))
        b3 = Signal(data.StructLayout({"v": 1, "addr": sw_w + 1, "level": 5, "long": 5,
                                       "seen": 5}))
        # Only the entries this configuration can read: a state of fbits bits and the A bit.
        b_sw = Signal(sw_w)
        b_a = Signal()
        b_last = Signal(sw_w + 2)
        m.d.comb += [
            b_sw.eq(b_addr[:sw_w] & d.fmask),
            b_a.eq((b_addr >> d.fb)[0]),
            b_last.eq(Cat(Const(1, 1), d.fmask)),
        ]
        m.d.sync += [
            b1.v.eq(init_tab & (b_addr <= b_last)),
            b1.addr.eq(Cat(b_sw, b_a)),
            b1.a.eq(b_a),
            b1.level.eq(b_sw & d.lmask),
            b1.long.eq((b_sw >> d.lb) & d.gmask),
            b1.seen.eq((b_sw >> d.lgb) & d.smask),
            b2.v.eq(b1.v),
            b2.addr.eq(b1.addr),
            b2.a.eq(b1.a),
            b2.cur.eq(Mux(b1.level > d.top, d.top, b1.level)),
            b2.upv.eq(Mux(b1.level > d.top, d.top, b1.level) + d.up),
            b2.dn.eq(Mux(b1.level > d.down, b1.level - d.down, 0)),
            b2.seen2.eq(Mux(b1.seen + b1.a > d.need, d.need, b1.seen + b1.a)),
            b2.g.eq(Mux(b1.long > d.lltop, d.lltop, b1.long)),
            b2.long.eq(b1.long),
            b3.v.eq(b2.v),
            b3.addr.eq(b2.addr),
            b3.level.eq(Mux(b2.a, Mux(b2.upv > d.top, d.top, b2.upv),
                            Mux(b2.cur > d.down, b2.cur - d.down, 0))),
            b3.long.eq(Mux(d.eol, Mux(b2.seen2 >= d.need,
                                      Mux(b2.g < d.lltop, b2.g + 1, d.lltop),
                                      Mux(b2.g > 0, b2.g - 1, 0)),
                           b2.long)),
            b3.seen.eq(Mux(d.eol, 0, b2.seen2)),
        ]
        m.d.comb += [
            tab_w.addr.eq(b3.addr),
            tab_w.data.eq((b3.level | (b3.long << d.lb) | (b3.seen << d.lgb)) & d.fmask),
            tab_w.en.eq(b3.v),
        ]

        # ================================================================== statistics
        # Each statistic has a narrow accumulator that collects the increments of a few
        # cycles; one accumulator per cycle, in turn, is added into its 32-bit total in a
        # small memory (read out through ``stats_addr``).
        names = list(STAT_NAMES) + [f"hist{i}" for i in range(self._max_levels)] \
            + [f"lhist{i}" for i in range(self._max_levels)]
        n_stats = len(names)
        delta = {n: Signal(range(2 * lanes + 3), name=f"delta_{n}") for n in names}
        acc_w = ceil_log2(n_stats * (2 * lanes + 2) + 1)
        acc = Array(Signal(acc_w, name=f"acc_{n}") for n in names)
        m.submodules.stats = stats = Memory(shape=cb, depth=n_stats, init=[])
        stats_wr = stats.write_port()
        stats_rmw = stats.read_port(domain="comb")
        stats_out = stats.read_port(domain="comb")
        fk = Signal(range(n_stats))          # the accumulator added this cycle
        clr_left = Signal(range(n_stats + 1))    # totals still to be zeroed
        fl_left = Signal(range(n_stats + 3))     # cycles of settling still to go
        tbl_root = Signal()                  # the root table counts as read

        # ================================================================== candidates
        m.submodules.cands = cands = CandidateList(top_k_max=top_k_max, pa_bits=pa)
        m.d.comb += [
            cands.top_k.eq(cfg.lp_top_k),
            cands.read_addr.eq(self.cand_addr),
            self.cand_data.eq(cands.read_data),
        ]

        # ================================================================== walk state
        ds = Signal(2)
        lvl = Signal(3)
        tbl3 = Signal(pw)
        idx4 = Signal(9)
        idx3 = Signal(9)
        cur_tbl = Signal(pw)                 # U: the upper table being walked
        pos = Signal(_IDX_BITS)              # walk position in U
        pos_nx = Signal(_IDX_BITS)
        m.d.comb += pos_nx.eq(pos)

        def va_at(index):
            """Input address of entry ``index`` of the current table."""
            i9 = index[:9]
            return Mux(lvl == 4, Cat(Const(0, 39), i9),
                       Mux(lvl == 3, Cat(Const(0, 30), i9, idx4),
                           Cat(Const(0, 21), i9, idx3, idx4)))

        # ================================================================== window
        m.submodules.win = winmem = Memory(shape=65, depth=win, init=[],
                                           attrs={"ram_style": "block"})
        win_wr = winmem.write_port()
        win_rda = winmem.read_port()
        win_rdb = winmem.read_port()
        w_iss = Signal(_IDX_BITS)            # next entry to request
        w_arr = Signal(_IDX_BITS)            # next entry to arrive
        w_rd = Signal(_IDX_BITS)             # next entry to move towards the walk
        w_inval = Signal()                   # drop the window (and read-ahead) this cycle
        inv_r = Signal()                     # a write into the window ahead, last cycle
        # Head queue: window entries read out and classified, in order, for the walk. It
        # shifts on every pop, so the walk's entry is always ``hf[0]`` (no read multiplexer
        # in front of the walk's decode).
        hf_n = Signal(range(5))
        hf_any = Signal()                    # hf_n != 0, as a flip-flop of its own
        hf_lay = data.StructLayout({"idx": _IDX_BITS, "err": 1, "e": 64, "absent": 1,
                                    "malformed": 1, "leaf": 1, "table": 1})
        hf = Array(Signal(hf_lay, name=f"hf{i}") for i in range(4))

        # ================================================================== leaf table (E)
        e_act = Signal()
        e_page = Signal(pw)
        e_va = Signal(VA_BITS)
        e_iss = Signal(_IDX_BITS)            # next entry to request
        e_arr = Signal(_IDX_BITS)            # next entry to arrive
        e_take = Signal(_IDX_BITS)           # next entry to enter S1
        e_narrow = Signal()
        e_started = Signal()
        p_C = Signal(64)                     # the kept parent value
        p_child = Signal(pw)                 # the table the parent pointed at when read
        p_addr = Signal(pa)
        m.d.comb += p_addr.eq(Cat(Const(0, 3), pos[:9], cur_tbl))
        t_acc = Signal(COUNT_BITS)
        t_present = Signal(COUNT_BITS)

        # ================================================================== read-ahead (P)
        pf_st = Signal(2)
        pf_idx = Signal(_IDX_BITS)
        pf_page = Signal(pw)
        pf_iss = Signal(_IDX_BITS)
        pf_started = Signal()
        la = Signal(_IDX_BITS)
        la_reset = Signal()

        # ================================================================== read bursts
        t_valid = Signal(nread)
        t_cls = Array(Signal(2, name=f"t_cls{i}") for i in range(nread))
        t_disc = Signal(nread)
        t_head = Signal(range(nread))
        t_tail = Signal(range(nread))
        t_count = Signal(range(nread + 1))
        ar_valid = Signal()
        ar_addr = Signal(pa)
        ar_len = Signal(8)
        ar_size = Signal(3)
        m.d.comb += [
            axi.arvalid.eq(ar_valid),
            axi.araddr.eq(ar_addr),
            axi.arlen.eq(ar_len),
            axi.arsize.eq(ar_size),
            axi.arburst.eq(Burst.INCR),
            axi.arid.eq(0),
        ]

        # ================================================================== beat queue (RF)
        rf_n = Signal(range(3))
        rf_head = Signal()
        # With each beat, the F results of its entries (see S1 load): class, A, stepped
        # state and whether the entry needs a write.
        rf_lay = data.StructLayout({"idx": _IDX_BITS, "err": 1, "data": 64 * lanes,
                                    "ns": sw_w * lanes, "fa": lanes, "need": lanes,
                                    "leaf": lanes, "malf": lanes})
        rf = Array(Signal(rf_lay, name=f"rf{i}") for i in range(2))

        # ================================================================== U1 and S1
        u1_valid = Signal()
        u1_level = Signal(2)
        u1_page = Signal(pw)
        u1_idx = Signal(9)
        u1_va = Signal(VA_BITS)
        u1_F = Signal(64)
        u1_ns = Signal(sw_w)                 # its F results: stepped state, A, needs a write
        u1_fa = Signal()
        u1_need = Signal()
        u1_W = Signal(64)
        u1_sn = Signal()

        s1_valid = Signal()
        s1_level = Signal(2)
        s1_dfs = Signal()                    # an upper-level leaf (entry counted by the walk)
        s1_page = Signal(pw)
        s1_beat = Signal(beat_bits)
        s1_va = Signal(VA_BITS)
        s1_lv = Signal(lanes)
        s1_err = Signal(lanes)
        s1_F = Array(Signal(64, name=f"s1_F{i}") for i in range(lanes))
        s1_W = Array(Signal(64, name=f"s1_W{i}") for i in range(lanes))
        s1_sn = Signal(lanes)                # the word was changed by another agent
        s1_chg = Signal(lanes)               # ... to a value other than the one read (valid
                                             # with the C results)
        s1_fa = Signal(lanes)
        s1_fleaf = Signal(lanes)
        s1_fmalf = Signal(lanes)
        s1_fneed = Signal(lanes)
        s1_fns = Array(Signal(sw_w, name=f"s1_fns{i}") for i in range(lanes))
        s1_cok = Signal(lanes)               # C results below are for the current word
        s1_cleaf = Signal(lanes)
        s1_cneed = Signal(lanes)
        s1_cns = Array(Signal(sw_w, name=f"s1_cns{i}") for i in range(lanes))

        # ================================================================== write queue
        nwq = 2
        wq_lay = data.StructLayout({"page": pw, "beat": beat_bits, "data": 64 * lanes,
                                    "strb": lanes})
        wq = Array(Signal(wq_lay, name=f"wq{i}") for i in range(nwq))
        wq_tail = Signal(2)                  # pointers count modulo twice the depth
        wq_aw = Signal(2)
        wq_w = Signal(2)
        # Room for one more write in the queue, its metadata and its run: registered, from
        # the next occupancies (computed where the pushes and pops are, below).
        wr_room = Signal(init=1)

        # Pending writes by page: runs of consecutive writes to one page, from commit to B.
        nrun = 4
        run_page = Array(Signal(pw, name=f"run_page{i}") for i in range(nrun))
        run_cnt = Array(Signal(range(self._max_writes + nwq + 2), name=f"run_cnt{i}")
                        for i in range(nrun))
        run_head = Signal(range(nrun))
        run_n = Signal(range(nrun + 1))
        run_last = Signal(range(nrun))
        m.d.comb += run_last.eq((run_head + run_n - 1)[:ceil_log2(nrun)])
        run_use = Signal(nrun)
        for i in range(nrun):
            m.d.comb += run_use[i].eq((i + nrun - run_head)[:ceil_log2(nrun)] < run_n)

        def pending(page):
            """A write to ``page`` is computed (or being computed) and not yet answered."""
            hit = ((s1_valid & (s1_page == page)) | (u1_valid & (u1_page == page))
                   | ((ds == _DS_PARENT) & (cur_tbl == page)))
            for i in range(nrun):
                hit = hit | (run_use[i] & (run_page[i] == page))
            return hit

        # Write metadata, one entry per write (and per report without a write), in order.
        wm_layout = data.StructLayout({
            "has_write": 1, "strb": lanes, "rec": lanes, "base": VA_BITS, "level": 2,
        })
        m.submodules.wmeta = wmeta = SyncFIFO(width=wm_layout.size, depth=self._max_writes)
        wm_in = Signal(wm_layout)
        wm_out = Signal(wm_layout)
        m.d.comb += [wmeta.w_data.eq(wm_in), wm_out.eq(wmeta.r_data)]

        # ================================================================== snoop
        sn = self.snoop.payload
        sn_page = Signal(pw)
        sn_idx = Signal(9)
        sn_beat = Signal(beat_bits)
        sn_lane = Signal(max(lane_bits, 1))
        m.d.comb += [
            sn_page.eq(page_of(sn.addr)),
            sn_idx.eq(sn.addr[3:12]),
            sn_beat.eq(sn.addr[3 + lane_bits:12]),
            sn_lane.eq(lane_of(sn.addr[3:12])),
        ]
        # Not ready while a write to the same word waits for its address to be taken.
        sn_block = Signal()
        for i in range(nwq):
            waiting = Signal(name=f"wq_waiting{i}")
            m.d.comb += waiting.eq(((i - wq_aw[:1])[:1] < (wq_tail - wq_aw)[:2])
                                   & ((wq_tail - wq_aw)[:2] != 0))
            with m.If(waiting & (wq[i].page == sn_page) & (wq[i].beat == sn_beat)
                      & wq[i].strb.bit_select(sn_lane, 1)):
                m.d.comb += sn_block.eq(1)
        # Not ready either for the words in S1 and U1, nor for the kept parent while its
        # update may be committed: those writes land after the scanner's.
        # ``ready`` is a register: it answers, for the address offered in the cycle before,
        # whether a write to it may land now (see ``sn_next`` below), so that the arbiter's
        # grant, which waits for ``ready``, starts from a flip-flop.
        # ``sn_any``: a write lands (``valid & ready``). ``ready`` low holds back only the
        # words listed above; every other word the unit holds read and unwritten (beat
        # queue, the window ahead) takes the write as it lands, through ``sn_any``.
        sn_hold = Signal()                   # the offer is to a word held in S1, U1, parent
        sn_next = Signal()                   # ... or to a word that may enter S1 or U1 now
        sn_ready = Signal()
        par_act = Signal()                   # the parent update is committed this cycle
        sn_any = Signal()
        m.d.sync += sn_ready.eq(~sn_block & ~sn_hold & ~sn_next)
        m.d.comb += [
            self.snoop.ready.eq(sn_ready),
            sn_any.eq(self.snoop.valid & sn_ready),
        ]

        # ================================================================== R channel
        h_valid = Signal()
        h_cls = Signal(2)
        h_disc = Signal()
        m.d.comb += [
            h_valid.eq(t_count != 0),
            h_cls.eq(t_cls[t_head]),
            h_disc.eq(t_disc.bit_select(t_head, 1)),
        ]
        r_err = Signal()
        m.d.comb += r_err.eq(axi.rresp[1])                # SLVERR or DECERR
        r_lanes = Array(axi.rdata[64 * i:64 * (i + 1)] for i in range(lanes))
        w_beat = Signal()
        leaf_beat = Signal()
        m.d.comb += [
            w_beat.eq(axi.rvalid & h_valid & ~h_disc & (h_cls == _CLS_WIN)),
            leaf_beat.eq(axi.rvalid & h_valid & ~h_disc & (h_cls == _CLS_LEAF) & (rf_n < 2)),
            axi.rready.eq(~h_valid | h_disc | (h_cls == _CLS_WIN)
                          | ((h_cls == _CLS_LEAF) & (rf_n < 2))),
        ]
        r_pop = Signal()
        m.d.comb += r_pop.eq(axi.rvalid & axi.rready & axi.rlast & h_valid)
        m.d.comb += [
            win_wr.addr.eq(w_arr[:win_bits]),
            win_wr.data.eq(Cat(r_lanes[lane_of(w_arr)], r_err)),
            win_wr.en.eq(w_beat),
        ]

        # ================================================================== write channels
        aw_fire = Signal()
        w_fire = Signal()
        wq_aw_e = wq[wq_aw[:1]]
        wq_w_e = wq[wq_w[:1]]
        m.d.comb += [
            axi.awvalid.eq(wq_tail != wq_aw),
            axi.awaddr.eq(Cat(Const(0, beat_shift), wq_aw_e.beat, wq_aw_e.page)),
            axi.awlen.eq(0),
            axi.awsize.eq(beat_shift),
            axi.awburst.eq(Burst.INCR),
            axi.awid.eq(0),
            axi.wvalid.eq(wq_tail != wq_w),
            axi.wdata.eq(wq_w_e.data),
            axi.wstrb.eq(Cat(*(wq_w_e.strb[i].replicate(8) for i in range(lanes)))),
            axi.wlast.eq(1),
            aw_fire.eq(axi.awvalid & axi.awready),
            w_fire.eq(axi.wvalid & axi.wready),
        ]
        with m.If(aw_fire):
            m.d.sync += wq_aw.eq(wq_aw + 1)
        with m.If(w_fire):
            m.d.sync += wq_w.eq(wq_w + 1)

        # ================================================================== S1 compare-and-set
        # A word that took a snooped write on its way into S1 (``s1_sn``) has its step
        # recomputed (one lane per cycle) before S1 may commit.
        s1_at = Signal()                     # the offer's address is a word held in S1
        commit = Signal()
        m.d.comb += s1_at.eq(s1_valid & (sn_page == s1_page) & (sn_beat == s1_beat)
                             & s1_lv.bit_select(sn_lane, 1))
        rc_need = Signal(lanes)
        m.d.comb += rc_need.eq(s1_sn & ~s1_cok)
        rc_lane = Signal(range(lanes))
        for i in reversed(range(lanes)):
            with m.If(rc_need[i]):
                m.d.comb += rc_lane.eq(i)
        rc_w = Signal(64)
        m.d.comb += rc_w.eq(s1_W[rc_lane])
        s1_lvl3 = Signal(3)
        m.d.comb += s1_lvl3.eq(s1_level)
        _, _, rc_leaf, _ = self._classify(m, rc_w, s1_lvl3, d.is_ept, "rc")
        rc_fa = Signal()
        m.d.comb += rc_fa.eq(s1_fa.bit_select(rc_lane, 1))
        rc_st = Signal(sw_w)
        m.d.comb += [
            rc_st.eq(sw_of(rc_w) & d.fmask),
            tab_c.addr.eq(Cat(rc_st, rc_fa)),
        ]
        with m.If(rc_need.any()):
            for i in range(lanes):
                with m.If(rc_lane == i):
                    m.d.sync += [
                        s1_cok[i].eq(1),
                        s1_chg[i].eq(rc_w != s1_F[i]),
                        s1_cleaf[i].eq(rc_leaf),
                        s1_cneed[i].eq((rc_fa & a_of(rc_w))
                                       | (((tab_c.data ^ rc_st) & d.engmask) != 0)),
                        s1_cns[i].eq(tab_c.data),
                    ]

        # ================================================================== commit (S1 out)
        m.d.comb += commit.eq(s1_valid & ~rc_need.any() & wr_room)
        lane_wr = Signal(lanes)
        lane_leaf = Signal(lanes)
        lane_retry = Signal(lanes)
        lane_ns = [Signal(sw_w, name=f"lane_ns{i}") for i in range(lanes)]
        lane_new = [Signal(64, name=f"lane_new{i}") for i in range(lanes)]
        for i in range(lanes):
            good = s1_lv[i] & ~s1_err[i]
            cas = s1_sn[i] & s1_chg[i]
            with m.If(good & s1_fleaf[i]):
                with m.If(~s1_fneed[i]):
                    m.d.comb += [lane_leaf[i].eq(1), lane_ns[i].eq(s1_fns[i])]
                with m.Elif(~cas):
                    m.d.comb += [lane_leaf[i].eq(1), lane_ns[i].eq(s1_fns[i]),
                                 lane_wr[i].eq(1)]
                with m.Else():
                    m.d.comb += lane_retry[i].eq(1)
                    with m.If(s1_cleaf[i]):
                        m.d.comb += [lane_leaf[i].eq(1), lane_ns[i].eq(s1_cns[i]),
                                     lane_wr[i].eq(s1_cneed[i])]
            m.d.comb += lane_new[i].eq(merge(s1_W[i], lane_ns[i], s1_fa[i]))
        lane_acc = Signal(lanes)
        m.d.comb += lane_acc.eq(lane_leaf & s1_fa)
        any_wr = Signal()
        any_rec = Signal()
        m.d.comb += [any_wr.eq(lane_wr.any()), any_rec.eq(lane_acc.any())]

        # Own writes that hit a kept value (the parent) or the read-ahead window; applied
        # the next cycle (``ow_win`` joins the delayed window drop ``inv_r`` below).
        ow_par = Signal()
        ow_par_val = Signal(64)
        ow_win = Signal()
        s1_in_u = Signal()
        m.d.comb += s1_in_u.eq(s1_page == cur_tbl)
        m.d.sync += ow_par.eq(0)
        for i in range(lanes):
            idx_i = Cat(Const(i, lane_bits), s1_beat) if lane_bits else s1_beat
            with m.If(commit & lane_wr[i] & s1_in_u):
                with m.If(e_act & (idx_i == pos)):
                    m.d.sync += [ow_par.eq(1), ow_par_val.eq(lane_new[i])]
                with m.If(idx_i > pos):
                    m.d.comb += ow_win.eq(1)

        # Statistics of committed entries, two stages.
        st1 = Signal(data.StructLayout({
            "v": 1, "level": 2, "leaf": lanes, "a": lanes, "ns": sw_w * lanes,
            "ok": range(lanes + 1), "err": range(lanes + 1), "malf": range(lanes + 1),
            "retry": range(lanes + 1)}))
        st2 = Signal(data.StructLayout({
            "v": 1, "level": 2, "leaf": lanes, "a": lanes, "lv": 5 * lanes, "lg": 5 * lanes,
            "ok": range(lanes + 1), "err": range(lanes + 1), "malf": range(lanes + 1),
            "retry": range(lanes + 1)}))
        m.d.sync += [
            st1.v.eq(commit),
            st1.level.eq(s1_level),
            st1.leaf.eq(lane_leaf),
            st1.a.eq(lane_acc),
            st1.ns.eq(Cat(*lane_ns)),
            st1.ok.eq(Mux(s1_dfs, 0, _popcount(s1_lv & ~s1_err))),
            st1.err.eq(Mux(s1_dfs, 0, _popcount(s1_lv & s1_err))),
            st1.malf.eq(Mux(s1_dfs, 0, _popcount(s1_lv & ~s1_err & s1_fmalf))),
            st1.retry.eq(_popcount(lane_retry)),
            st2.v.eq(st1.v),
            st2.level.eq(st1.level),
            st2.leaf.eq(st1.leaf),
            st2.a.eq(st1.a),
            st2.ok.eq(st1.ok),
            st2.err.eq(st1.err),
            st2.malf.eq(st1.malf),
            st2.retry.eq(st1.retry),
        ]
        for i in range(lanes):
            ns_i = st1.ns[sw_w * i:sw_w * (i + 1)]
            lg_i = (ns_i >> d.lb) & d.gmask
            m.d.sync += [
                st2.lv[5 * i:5 * (i + 1)].eq(ns_i & d.lmask),
                st2.lg[5 * i:5 * (i + 1)].eq(Mux(lg_i > d.lltop, d.lltop, lg_i)),
            ]
        with m.If(st1.v & (st1.level == 1)):
            m.d.sync += [t_acc.eq(t_acc + _popcount(st1.a)),
                         t_present.eq(t_present + _popcount(st1.leaf))]

        # ================================================================== walk decode
        hd = hf[0]
        hd_child = Signal(pw)
        m.d.comb += hd_child.eq(page_of(hd.e & amask))
        cur_ok = Signal()
        m.d.comb += cur_ok.eq(hf_any & (pos < _ENTRIES) & walk_upper & ~inv_r)
        cur_va = Signal(VA_BITS)
        cur_va0 = Signal(VA_BITS)
        m.d.comb += [cur_va.eq(va_at(pos)), cur_va0.eq(va_at(pos & (1023 & ~(lanes - 1))))]
        dfs_proc = Signal()
        dfs_upleaf = Signal()
        dfs_leaftab = Signal()
        dfs_descend = Signal()
        dfs_skip = Signal()
        dfs_inc = {k: Signal(name=f"dfs_inc_{k}") for k in ("entries", "malf", "bus",
                                                              "tables")}
        with m.If(cur_ok):
            with m.If(hd.err):
                m.d.comb += [dfs_skip.eq(1), dfs_inc["bus"].eq(1)]
            with m.Elif(hd.leaf):
                m.d.comb += [dfs_upleaf.eq(~u1_valid), dfs_inc["entries"].eq(~u1_valid)]
            with m.Elif(hd.table):
                m.d.comb += [dfs_inc["entries"].eq(1), dfs_inc["tables"].eq(1)]
                with m.If(lvl == 2):
                    m.d.comb += dfs_leaftab.eq(1)
                with m.Else():
                    m.d.comb += dfs_descend.eq(1)
            with m.Else():
                m.d.comb += [dfs_skip.eq(1), dfs_inc["entries"].eq(1),
                             dfs_inc["malf"].eq(hd.malformed)]
        m.d.comb += dfs_proc.eq(dfs_skip | dfs_upleaf | dfs_leaftab | dfs_descend)
        dfs_end = Signal()
        dfs_return = Signal()
        m.d.comb += [
            dfs_end.eq(walk_upper & (pos == _ENTRIES)),
            dfs_return.eq(dfs_end & (lvl != 4)),
        ]
        # Page compares for a write that lands (``sn_any``). Its address is the one offered
        # in the cycle before (the contract), so they are registered from that cycle:
        # against each page's value then, or, for a page loaded at the end of that cycle,
        # against what it was loaded from (``cur_from``, ``e_from_hd``). The compares that
        # answer for the offer itself (``ready``, a cycle ahead) stay combinational.
        # ``pf_page`` is loaded only while the read-ahead is idle, and a landing write
        # matters to it only once its reads are issued, a cycle later at the earliest; the
        # kept parent's address does not change while a leaf table is walked (``e_act``),
        # nor as the walk takes the parent.
        sn_at_parent = Signal()              # the offered write is to the kept parent
        m.d.comb += sn_at_parent.eq(sn.addr[3:pa] == p_addr[3:])
        eq_cur, eq_hd, eq_tbl3, eq_root, eq_e, eq_pf, eq_par = (
            Signal(name=f"land_eq_{k}") for k in ("cur", "hd", "tbl3", "root", "e", "pf",
                                                  "par"))
        m.d.sync += [
            eq_cur.eq(sn_page == cur_tbl), eq_hd.eq(sn_page == hd_child),
            eq_tbl3.eq(sn_page == tbl3), eq_root.eq(sn_page == root),
            eq_e.eq(sn_page == e_page), eq_pf.eq(sn_page == pf_page),
            eq_par.eq(sn_at_parent),
        ]
        cur_from = Signal(2)                 # cur_tbl was: kept, hd_child, tbl3, root
        e_from_hd = Signal()                 # e_page was loaded from hd_child
        land_cur = Signal()                  # the landing write is to cur_tbl
        land_e = Signal()                    # ... to e_page
        m.d.comb += [
            land_cur.eq(Array([eq_cur, eq_hd, eq_tbl3, eq_root])[cur_from]),
            land_e.eq(Mux(e_from_hd, eq_hd, eq_e)),
        ]
        if self._checks:
            # (Checked at each clock edge, on the values the cycle settled to.)
            m.d.sync += [
                Assert(~sn_any | (land_cur == (sn_page == cur_tbl)), "land_cur"),
                Assert(~sn_any | (land_e == (sn_page == e_page)), "land_e"),
                Assert(~sn_any | (pf_st != _PF_ISSUE) | (eq_pf == (sn_page == pf_page)),
                       "eq_pf"),
                Assert(~sn_any | ~e_act | (eq_par == sn_at_parent), "eq_par"),
                Assert(walk_upper == ((phase == _PH_RUN) & (ds == _DS_UPPER)), "walk_upper"),
                Assert(hf_any == (hf_n != 0), "hf_any"),
            ]
            # Coverage of the registered compares: landing writes in each case of where
            # ``cur_tbl`` came from (and those to the table itself), counted since reset.
            for k, name in enumerate(("kept", "descend", "return3", "return4")):
                for hit in (0, 1):
                    cov = Signal(32, name=f"cov_land_{name}{'_hit' * hit}")
                    self.coverage[f"land_{name}{'_hit' * hit}"] = cov
                    cond = sn_any & (phase == _PH_RUN) & (cur_from == k)
                    m.d.sync += cov.eq(cov + (cond & land_cur if hit else cond))
        sn_cur = Signal()                    # a snoop of the entry the walk takes now
        sn_at_walk = Signal()                # the offer's address is the walk's entry
        sn_at_pos = sn_idx == pos[:9]
        m.d.comb += [
            sn_at_walk.eq((sn_page == cur_tbl) & sn_at_pos),
            sn_cur.eq(sn_any & land_cur & sn_at_pos & dfs_proc),
        ]
        sn_parent = Signal()                 # a write to the kept parent lands now
        m.d.comb += sn_parent.eq(sn_any & e_act & eq_par)
        # A landed write to the parent is applied to the kept value a cycle later; until then
        # (``snp_r``) the update neither proceeds nor commits. That includes a write landing
        # as the walk takes the parent (``sn_cur`` with ``dfs_leaftab``): the parent is kept
        # as read and the write applied the cycle after, while the leaf table has just
        # started and nothing looks at the kept value (the scanner's own writes to it are
        # applied a cycle after their commit, so they stay after it).
        snp_r = Signal()
        snp_data = Signal(64)
        m.d.sync += [snp_r.eq(sn_parent | (sn_cur & dfs_leaftab)), snp_data.eq(sn.data)]

        # ================================================================== read-ahead match
        pf_hit_snoop = Signal()
        m.d.comb += pf_hit_snoop.eq(sn_any & (pf_st == _PF_ISSUE) & eq_pf)
        adopt = Signal()
        # (The read-ahead is dropped whenever the window is, so the entry the walk takes at
        # pf_idx is the one the lookahead found: same value, same table.)
        m.d.comb += adopt.eq(dfs_leaftab & (pf_st != _PF_IDLE) & (pf_idx == pos)
                             & ~pf_hit_snoop)

        # ================================================================== E restarts
        rfh = rf[rf_head]
        mv_leaf = Signal()                   # the head beat enters S1 this cycle
        mv_up = Signal()                     # U1 enters S1 this cycle
        head_wide_err = Signal()
        m.d.comb += head_wide_err.eq((lanes > 1) & ~e_narrow & rfh.err)
        s1_free = Signal()
        u1_at = Signal()                     # the offer's address is the word held in U1
        m.d.comb += u1_at.eq(u1_valid & (sn_page == u1_page) & (sn_idx == u1_idx))
        m.d.comb += [
            s1_free.eq(~s1_valid | commit),
            mv_up.eq(u1_valid & s1_free),
            mv_leaf.eq((rf_n != 0) & ~head_wide_err & ~u1_valid & s1_free & e_act
                       & (ds == _DS_LEAF)),
        ]
        take_step = Signal(range(lanes + 1))
        m.d.comb += take_step.eq(Mux(e_narrow, 1, lanes))
        take_nx = Signal(_IDX_BITS)
        e_take_p = Signal(_IDX_BITS)         # e_take plus one step, kept ready
        m.d.comb += take_nx.eq(Mux(mv_leaf, e_take_p, e_take))
        err_restart = Signal()
        m.d.comb += err_restart.eq((rf_n != 0) & head_wide_err & e_act & (ds == _DS_LEAF))
        sn_restart = Signal()
        m.d.comb += sn_restart.eq(sn_any & e_act & land_e
                                  & Mux(mv_leaf, sn_idx >= e_take_p, sn_idx >= e_take)
                                  & (sn_idx < e_iss))
        e_restart = Signal()
        m.d.comb += e_restart.eq(sn_restart | err_restart)

        # ================================================================== window drops
        sn_win = Signal()
        m.d.comb += sn_win.eq(sn_any & land_cur & (phase == _PH_RUN)
                              & ((sn_idx > pos) | ((sn_idx == pos[:9]) & (pos < _ENTRIES)
                                                   & (ds == _DS_UPPER) & ~dfs_proc)))
        # Writes into the window ahead of the walk (own or snooped) drop it one cycle later;
        # in that cycle the walk takes nothing (``cur_ok``), and every read issued until
        # then is discarded with the window.
        m.d.sync += inv_r.eq(ow_win | sn_win)
        m.d.comb += w_inval.eq(dfs_descend | dfs_return | inv_r)
        pf_discard = Signal()
        m.d.comb += pf_discard.eq((pf_st != _PF_IDLE)
                                  & (w_inval | e_restart | pf_hit_snoop
                                     | (dfs_leaftab & ~adopt) | (pf_idx < pos)))

        # ================================================================== read issue
        can_issue = Signal()
        m.d.comb += can_issue.eq((phase == _PH_RUN) & ~ar_valid & (t_count < nread))
        # The conditions and burst lengths below are registered a cycle early. That is
        # safe: a stale "wait" only delays; bursts are issued at most every other cycle (the
        # AR register), so what an issue changes is fresh again before the next issue; a
        # position set otherwise (a new table, a restart) disarms its requests for a cycle;
        # and a write that could collide with a read is pending for at least a cycle before
        # the read may be issued (a write enters S1 or U1 one cycle before it can reach a
        # page being read).
        # After the page they are about is set, each waits a cycle for its flag ("armed").
        room = Signal()
        pend_u = Signal()
        pend_e = Signal()
        pend_p = Signal()
        w_armed = Signal()
        e_armed = Signal()
        pf_armed = Signal()
        m.d.sync += [
            room.eq(w_iss + win_burst <= pos + win),
            pend_u.eq(pending(cur_tbl)),
            pend_e.eq(pending(e_page)),
            pend_p.eq(pending(pf_page)),
            w_armed.eq(~w_inval),
            e_armed.eq(e_act & ~e_restart),
            pf_armed.eq(pf_st != _PF_IDLE),
        ]
        win_n = Signal(range(win_burst + 1))
        m.d.sync += win_n.eq(Mux(w_iss > _ENTRIES - win_burst, _ENTRIES - w_iss, win_burst))
        win_req = Signal()
        m.d.comb += win_req.eq((w_iss < _ENTRIES) & room & ~pend_u & w_armed & (ds != _DS_FIN))
        e_left = Signal(_IDX_BITS)
        m.d.comb += e_left.eq(_ENTRIES - e_iss)
        e_n = Signal(range(257))             # entries (narrow) or beats (wide)
        with m.If(e_narrow):
            m.d.sync += e_n.eq(Mux(e_left < self._burst_beats, e_left, self._burst_beats))
        with m.Else():
            m.d.sync += e_n.eq(Mux((e_left >> lane_bits) < self._burst_beats,
                                   e_left >> lane_bits, self._burst_beats))
        e_req = Signal()
        m.d.comb += e_req.eq(e_act & e_armed & (e_iss < _ENTRIES) & (e_started | ~pend_e))
        pf_left = Signal(_IDX_BITS)
        m.d.comb += pf_left.eq((_ENTRIES - pf_iss) >> lane_bits)
        pf_n = Signal(range(257))
        m.d.sync += pf_n.eq(Mux(pf_left < self._burst_beats, pf_left, self._burst_beats))
        # (The page compares are registered too: ``pf_page``, ``cur_tbl`` and ``e_page``
        # change only as ``pf_st`` returns to idle or as the read-ahead is found, and
        # either disarms the read-ahead for a cycle; ``e_act`` falling only delays it.)
        pf_apart = Signal()
        m.d.sync += pf_apart.eq((pf_page != cur_tbl) & ~(e_act & (pf_page == e_page)))
        pf_req = Signal()
        m.d.comb += pf_req.eq((pf_st != _PF_IDLE) & pf_armed & (pf_iss < _ENTRIES)
                              & (~e_act | (e_iss == _ENTRIES)) & pf_apart
                              & (pf_started | ~pend_p) & (lvl == 2)
                              & ~((ds == _DS_UPPER) & (pos == pf_idx)))
        issue_win = Signal()
        issue_e = Signal()
        issue_pf = Signal()
        m.d.comb += [
            issue_win.eq(can_issue & win_req),
            issue_e.eq(can_issue & ~win_req & e_req),
            issue_pf.eq(can_issue & ~win_req & ~e_req & pf_req),
        ]
        issue = Signal()
        issue_cls = Signal(2)
        issue_kill = Signal()
        m.d.comb += [
            issue.eq(issue_win | issue_e | issue_pf),
            issue_cls.eq(Mux(issue_win, _CLS_WIN, Mux(issue_e, _CLS_LEAF, _CLS_AHEAD))),
            issue_kill.eq((issue_win & w_inval) | (issue_e & e_restart)
                          | (issue_pf & (e_restart | pf_discard))),
        ]
        with m.If(axi.arready):
            m.d.sync += ar_valid.eq(0)
        with m.If(issue_win):
            m.d.sync += [
                ar_valid.eq(1),
                ar_addr.eq(Cat(Const(0, 3), w_iss[:9], cur_tbl)),
                ar_len.eq(win_n - 1),
                ar_size.eq(3),
            ]
        with m.If(issue_e):
            m.d.sync += [
                ar_valid.eq(1),
                ar_addr.eq(Cat(Const(0, 3), e_iss[:9], e_page)),
                ar_len.eq(e_n - 1),
                ar_size.eq(Mux(e_narrow, 3, beat_shift)),
            ]
        with m.If(issue_pf):
            m.d.sync += [
                ar_valid.eq(1),
                ar_addr.eq(Cat(Const(0, 3), pf_iss[:9], pf_page)),
                ar_len.eq(pf_n - 1),
                ar_size.eq(beat_shift),
            ]

        # Burst tags: push on issue, pop on the last beat, drops and adoption in between.
        for j in range(nread):
            with m.If(t_valid[j]):
                with m.If(w_inval & (t_cls[j] == _CLS_WIN)):
                    m.d.sync += t_disc[j].eq(1)
                with m.If(e_restart & (t_cls[j] != _CLS_WIN)):
                    m.d.sync += t_disc[j].eq(1)
                with m.If(pf_discard & (t_cls[j] == _CLS_AHEAD)):
                    m.d.sync += t_disc[j].eq(1)
                with m.If(adopt & (t_cls[j] == _CLS_AHEAD)):
                    m.d.sync += t_cls[j].eq(_CLS_LEAF)
                with m.If(r_pop & (t_head == j)):
                    m.d.sync += t_valid[j].eq(0)
            with m.If(issue & (t_tail == j)):
                m.d.sync += [t_valid[j].eq(1), t_cls[j].eq(issue_cls),
                             t_disc[j].eq(issue_kill)]
        with m.If(issue):
            m.d.sync += t_tail.eq(Mux(t_tail == nread - 1, 0, t_tail + 1))
        with m.If(r_pop):
            m.d.sync += t_head.eq(Mux(t_head == nread - 1, 0, t_head + 1))
        m.d.sync += t_count.eq(t_count + issue - r_pop)

        # ================================================================== window pointers
        # The window restarts at the next entry the walk will take.
        w_base = Signal(_IDX_BITS)
        m.d.comb += w_base.eq(Mux(ds == _DS_UPPER, pos_nx, pos + 1))
        with m.If(w_inval):
            m.d.sync += [w_iss.eq(w_base), w_arr.eq(w_base), w_rd.eq(w_base)]
        with m.Else():
            with m.If(issue_win):
                m.d.sync += w_iss.eq(w_iss + win_n)
            with m.If(w_beat):
                m.d.sync += w_arr.eq(w_arr + 1)
        # Read out (two stages: the memory, then a register) and classify, up to four
        # entries ahead of the walk.
        rd_go = Signal()
        rd1 = Signal()                       # read issued last cycle
        rd1_idx = Signal(_IDX_BITS)
        rd2 = Signal()                       # its data registered
        rd2_idx = Signal(_IDX_BITS)
        rd2_data = Signal(65)
        m.d.comb += [
            rd_go.eq((phase == _PH_RUN) & (w_rd < w_arr) & ((hf_n + rd1 + rd2) < 4)
                     & ~w_inval),
            win_rda.addr.eq(w_rd[:win_bits]),
        ]
        with m.If(rd_go):
            m.d.sync += w_rd.eq(w_rd + 1)
        m.d.sync += [
            rd1.eq(rd_go), rd1_idx.eq(w_rd),
            rd2.eq(rd1 & ~w_inval), rd2_idx.eq(rd1_idx), rd2_data.eq(win_rda.data),
        ]
        _, ra_malf, ra_leaf, ra_table = self._classify(m, rd2_data[:64], lvl, d.is_ept, "ra")
        hf_push = Signal()
        hf_pop = Signal()
        m.d.comb += [
            hf_push.eq(rd2 & ~w_inval),
            hf_pop.eq(dfs_proc),
        ]
        rd2_err = rd2_data[64]
        hf_new = Signal(hf_lay)
        m.d.comb += hf_new.eq(Cat(
            rd2_idx, rd2_err, rd2_data[:64],
            ~rd2_err & ~ra_malf & ~ra_leaf & ~ra_table, ~rd2_err & ra_malf,
            ~rd2_err & ra_leaf, ~rd2_err & ra_table))
        # A push lands at ``hf_n``, one place lower if the head is popped: both cases are
        # decoded without the pop, which selects between them last. The places are loaded
        # from ``rd2`` whether or not the window is dropped (``w_inval``, late in the cycle):
        # a drop empties the queue (``hf_n``), so what they hold then is never read.
        for i in range(4):
            with m.If(hf_pop):
                with m.If(rd2 & (hf_n == i + 1)):
                    m.d.sync += hf[i].eq(hf_new)
                if i < 3:
                    with m.Else():
                        m.d.sync += hf[i].eq(hf[i + 1])
            with m.Elif(rd2 & (hf_n == i)):
                m.d.sync += hf[i].eq(hf_new)
        hf_n_nx = Signal.like(hf_n)
        m.d.comb += hf_n_nx.eq(hf_n + hf_push - hf_pop)
        with m.If(w_inval):
            m.d.sync += [hf_n.eq(0), hf_any.eq(0)]
        with m.Else():
            m.d.sync += [hf_n.eq(hf_n_nx), hf_any.eq(hf_n_nx != 0)]

        # ================================================================== lookahead
        # A stream of reads from ``lb_addr`` (at most three ahead of ``la``), registered,
        # then examined in order at ``la``; the read addresses never depend on the data.
        lb_addr = Signal(_IDX_BITS)
        lb1 = Signal()
        lb1_idx = Signal(_IDX_BITS)
        lb2 = Signal()
        lb2_idx = Signal(_IDX_BITS)
        lb2_data = Signal(65)
        lb_go = Signal()
        m.d.comb += [
            lb_go.eq((lb_addr < w_arr) & ((lb_addr - la)[:_IDX_BITS] < 3) & ~la_reset
                     & (phase == _PH_RUN)),
            win_rdb.addr.eq(lb_addr[:win_bits]),
        ]
        m.d.sync += [
            lb1.eq(lb_go), lb1_idx.eq(lb_addr),
            lb2.eq(lb1 & ~la_reset), lb2_idx.eq(lb1_idx), lb2_data.eq(win_rdb.data),
        ]
        la_look = Signal()
        la_hint = Signal()
        # Only a pointer the walk will follow (a well-formed level-2 table pointer read
        # without error) is read ahead, so that no table is read for nothing.
        _, _, _, la_table = self._classify(m, lb2_data[:64], Const(2, 3), d.is_ept, "la")
        m.d.comb += [
            la_look.eq((pf_st == _PF_IDLE) & (lvl == 2) & lb2 & (lb2_idx == la) & (la > pos)
                       & (la < _ENTRIES) & ~la_reset & (phase == _PH_RUN)),
            la_hint.eq(~lb2_data[64] & la_table),
        ]
        with m.If(la_reset):
            m.d.sync += [la.eq(pos + 1), lb_addr.eq(pos + 1)]
        with m.Else():
            with m.If(la_look & ~la_hint):
                m.d.sync += la.eq(la + 1)
            with m.If(lb_go):
                m.d.sync += lb_addr.eq(lb_addr + 1)
        m.d.sync += la_reset.eq(w_inval | pf_discard | adopt | (la <= pos))
        with m.If(la_look & la_hint):
            m.d.sync += [pf_st.eq(_PF_FOUND), pf_idx.eq(la),
                         pf_page.eq(page_of(lb2_data[:64] & amask)),
                         pf_iss.eq(0), pf_started.eq(0)]
        with m.If(issue_pf):
            m.d.sync += [pf_iss.eq(pf_iss + (pf_n << lane_bits)), pf_started.eq(1),
                         pf_st.eq(_PF_ISSUE)]
        with m.If(pf_discard | adopt):
            m.d.sync += [pf_st.eq(_PF_IDLE), pf_iss.eq(0), pf_started.eq(0)]

        # ================================================================== beat queue
        rf_flush = Signal()
        m.d.comb += rf_flush.eq(e_restart)
        rf_tail = Signal()
        m.d.comb += rf_tail.eq(rf_head ^ (rf_n == 1))
        # F results of an arriving beat, for the queue: the step-table lookups use the
        # table's ports 0..lanes-1 (port 0 is shared with U1, which loads only while no leaf
        # table is walked, ``~e_act``).
        f_st = [Signal(sw_w, name=f"f_st{k}") for k in range(lanes)]
        f_a = Signal(lanes)
        f_need = Signal(lanes)
        f_leaf = Signal(lanes)
        f_malf = Signal(lanes)
        for k in range(lanes):
            _, malf_k, leaf_k, _ = self._classify(m, r_lanes[k], Const(1, 3), d.is_ept,
                                                  f"fr{k}")
            m.d.comb += [
                f_st[k].eq(sw_of(r_lanes[k]) & d.fmask),
                f_a[k].eq(a_of(r_lanes[k])),
                f_need[k].eq(f_a[k] | (((tab_f[k].data ^ f_st[k]) & d.engmask) != 0)),
                f_leaf[k].eq(leaf_k),
                f_malf[k].eq(malf_k),
            ]
            if k:
                m.d.comb += tab_f[k].addr.eq(Cat(f_st[k], f_a[k]))
        with m.If(leaf_beat):
            for i in range(2):
                with m.If(rf_tail == i):
                    m.d.sync += rf[i].eq(Cat(e_arr, r_err, axi.rdata,
                                             Cat(*(tab_f[k].data for k in range(lanes))),
                                             f_a, f_need, f_leaf, f_malf))
            m.d.sync += e_arr.eq(e_arr + take_step)
        with m.If(rf_flush):
            m.d.sync += [rf_n.eq(0), rf_head.eq(0)]
        with m.Else():
            m.d.sync += rf_n.eq(rf_n + leaf_beat - mv_leaf)
            with m.If(mv_leaf):
                m.d.sync += rf_head.eq(~rf_head)
        with m.If(mv_leaf):
            m.d.sync += e_take.eq(e_take_p)
        with m.If(err_restart):
            m.d.sync += e_take_p.eq(e_take + 1)
        with m.Elif(mv_leaf):
            m.d.sync += e_take_p.eq(e_take_p + take_step)
        with m.If(e_restart):
            m.d.sync += [e_iss.eq(Mux(err_restart, e_take, take_nx)),
                         e_arr.eq(Mux(err_restart, e_take, take_nx))]
            with m.If(err_restart):
                m.d.sync += e_narrow.eq(1)
        with m.Elif(issue_e):
            m.d.sync += [e_iss.eq(e_iss + Mux(e_narrow, e_n, e_n << lane_bits)),
                         e_started.eq(1)]

        # ================================================================== S1 load
        # F results of the word entering S1: class, A, step through the table.
        # The F results were computed a stage earlier: with each beat as it arrived, and for
        # U1 as the walk took the entry (an upper-level leaf: present and well formed).
        u1_lane = lane_of(u1_idx)
        narrow_lane = lane_of(rfh.idx)
        sn_at_head = Signal()                # the offer's address is in the head beat
        m.d.comb += sn_at_head.eq((sn_page == e_page) & (sn_beat == rfh.idx[lane_bits:9]))
        for i in range(lanes):
            f_in = Signal(64, name=f"f_in{i}")
            m.d.comb += f_in.eq(Mux(u1_valid, u1_F, rfh.data[64 * i:64 * (i + 1)]))
            ld_hit = Signal(name=f"ld_hit{i}")
            m.d.comb += ld_hit.eq(sn_any & mv_leaf & land_e
                                  & (sn_beat == rfh.idx[lane_bits:9]) & (sn_lane == i))
            with m.If(mv_up | mv_leaf):
                m.d.sync += [
                    s1_F[i].eq(f_in),
                    s1_fa[i].eq(Mux(u1_valid, u1_fa, rfh.fa[i])),
                    s1_fleaf[i].eq(u1_valid | rfh.leaf[i]),
                    s1_fmalf[i].eq(~u1_valid & rfh.malf[i]),
                    s1_fneed[i].eq(Mux(u1_valid, u1_need, rfh.need[i])),
                    s1_fns[i].eq(Mux(u1_valid, u1_ns, rfh.ns[sw_w * i:sw_w * (i + 1)])),
                    s1_cok[i].eq(0),
                ]
            with m.If(mv_up):
                m.d.sync += [
                    s1_lv[i].eq(u1_lane == i),
                    s1_err[i].eq(0),
                    s1_W[i].eq(u1_W),
                    s1_sn[i].eq(u1_sn & (u1_lane == i)),
                ]
            with m.Elif(mv_leaf):
                m.d.sync += [
                    s1_lv[i].eq(~e_narrow | (narrow_lane == i)),
                    s1_err[i].eq(rfh.err),
                    s1_W[i].eq(Mux(ld_hit, sn.data, f_in)),
                    s1_sn[i].eq(ld_hit),
                ]
        with m.If(commit):
            m.d.sync += s1_valid.eq(0)
        with m.If(mv_up):
            m.d.sync += [
                s1_valid.eq(1), s1_level.eq(u1_level), s1_dfs.eq(1), s1_page.eq(u1_page),
                s1_beat.eq(u1_idx[lane_bits:9]), s1_va.eq(u1_va),
            ]
        with m.Elif(mv_leaf):
            m.d.sync += [
                s1_valid.eq(1), s1_level.eq(1), s1_dfs.eq(0), s1_page.eq(e_page),
                s1_beat.eq(rfh.idx[lane_bits:9]),
                s1_va.eq(e_va | Cat(Const(0, 12), rfh.idx[:9] & (511 & ~(lanes - 1)))),
            ]

        # U1: an upper-level leaf taken by the walk, waiting for S1.
        u_st = Signal(sw_w)
        u_a = Signal()
        m.d.comb += [
            u_st.eq(sw_of(hd.e) & d.fmask),
            u_a.eq(a_of(hd.e)),
            tab_f[0].addr.eq(Mux(e_act, Cat(f_st[0], f_a[0]), Cat(u_st, u_a))),
        ]
        with m.If(mv_up):
            m.d.sync += u1_valid.eq(0)
        with m.If(dfs_upleaf):
            m.d.sync += [
                u1_valid.eq(1), u1_level.eq(lvl), u1_page.eq(cur_tbl), u1_idx.eq(pos[:9]),
                u1_va.eq(cur_va0), u1_F.eq(hd.e),
                u1_ns.eq(tab_f[0].data), u1_fa.eq(u_a),
                u1_need.eq(u_a | (((tab_f[0].data ^ u_st) & d.engmask) != 0)),
                u1_W.eq(Mux(sn_cur, sn.data, hd.e)), u1_sn.eq(sn_cur),
            ]

        # ================================================================== parent update
        # Three compute steps (p_sub 0, 1, 2), then the act (p_sub 3); a change of the kept
        # value on the way starts over.
        p_sub = Signal(2)
        p_dirty = Signal()                   # the kept value changed since step 0
        par = Signal(data.StructLayout({
            "ok": 1, "rises": 1, "rise": 8, "fall": 8, "v2": L.LPCOUNT.width, "write": 1,
            "elig": 1, "new": 64}))
        _, _, _, pc_table = self._classify(m, p_C, Const(2, 3), d.is_ept, "pc")
        v_old = p_C[L.LPCOUNT.lsb:L.LPCOUNT.lsb + L.LPCOUNT.width]
        rises, rise, fall = lp_prepare(m, v_old, t_acc, cfg.lp_shift)
        v2 = lp_finish(m, v_old, par.rises, par.rise, par.fall, cfg.lp_shift)
        in_parent = Signal()
        m.d.comb += in_parent.eq((phase == _PH_RUN) & (ds == _DS_PARENT) & ~s1_valid
                                 & ~u1_valid & ~st1.v & ~st2.v)
        with m.If(in_parent & cfg.lp_enable):
            with m.Switch(p_sub):
                with m.Case(0):
                    m.d.sync += [
                        p_sub.eq(1), p_dirty.eq(0),
                        par.ok.eq(pc_table & (page_of(p_C & amask) == p_child)),
                        par.rises.eq(rises), par.rise.eq(rise), par.fall.eq(fall),
                    ]
                with m.Case(1):
                    m.d.sync += [p_sub.eq(2), par.v2.eq(v2)]
                with m.Case(2):
                    m.d.sync += [
                        p_sub.eq(3),
                        par.write.eq(par.ok & (par.v2 != v_old)),
                        par.elig.eq(par.ok & d.warm & (par.v2 >= cfg.lp_threshold)
                                    & ((_ENTRIES - t_present) <= cfg.lp_max_nonpresent)),
                        par.new.eq(Cat(p_C[:L.LPCOUNT.lsb], par.v2,
                                       p_C[L.LPCOUNT.lsb + L.LPCOUNT.width:])),
                    ]
        par_skip = Signal()                  # prioritizer off: nothing to do
        m.d.comb += [
            par_skip.eq(in_parent & ~cfg.lp_enable),
            par_act.eq(in_parent & cfg.lp_enable & (p_sub == 3) & ~p_dirty & ~snp_r
                       & (~par.write | wr_room)
                       & cands.insert.ready),
            # Writes wait for the words in S1 and U1, and for the parent while its update
            # may be committed. (Registers and the offer's address only: ``ready`` never
            # depends on ``valid``.)
            sn_hold.eq(((ds == _DS_PARENT) & (p_sub == 3) & sn_at_parent) | s1_at | u1_at),
            # ``ready`` is computed a cycle ahead, so it also waits for whatever may join the
            # held words in that cycle: the head beat (entering S1), the entry the walk
            # takes (entering U1), the parent one step before its act. A queued write comes
            # from S1 or from the parent's act, both already held.
            # (Only while a pass runs: the walk's registers keep their last values after it.)
            sn_next.eq((phase == _PH_RUN)
                       & (((rf_n != 0) & e_act & sn_at_head)
                          | ((ds == _DS_UPPER) & sn_at_walk)
                          | ((ds == _DS_PARENT) & p_sub[1] & sn_at_parent))),
        ]
        with m.If(in_parent & (p_sub != 0) & (p_dirty | snp_r)):
            m.d.sync += p_sub.eq(0)
        par_write = Signal()
        m.d.comb += par_write.eq(par_act & par.write)
        m.d.comb += [
            cands.clear.eq((phase == _PH_IDLE) & self.start.valid),
            cands.insert.valid.eq(par_act & par.elig),
            cands.insert.payload.region.eq(e_va),
            cands.insert.payload.entry_addr.eq(p_addr),
            cands.insert.payload.value.eq(par.v2),
        ]
        # The kept parent value follows every write to it. (``e_act`` is low whenever the walk
        # may take a new parent.)
        with m.If(e_act):
            with m.If(snp_r):
                m.d.sync += [p_C.eq(snp_data), p_dirty.eq(1)]
            with m.Elif(ow_par):
                m.d.sync += [p_C.eq(ow_par_val), p_dirty.eq(1)]

        # ================================================================== write queue in
        wq_push = Signal()
        wq_in = Signal(wq_lay)
        par_lane = lane_of(pos[:9])
        # The parent update is committed only while S1 is empty (``in_parent``), so the
        # register ``s1_valid`` selects what is pushed, and the enables just add up.
        m.d.comb += [
            wq_push.eq(par_write | (commit & any_wr)),
            wmeta.w_en.eq(par_write | (commit & (any_wr | any_rec))),
        ]
        with m.If(~s1_valid):
            m.d.comb += [
                wq_in.page.eq(cur_tbl), wq_in.beat.eq(pos[lane_bits:9]),
                wq_in.data.eq(par.new.replicate(lanes)),
                wq_in.strb.eq(Const(1, lanes) << par_lane),
                wm_in.has_write.eq(1),
                wm_in.strb.eq(Const(1, lanes) << par_lane),
            ]
        with m.Else():
            m.d.comb += [
                wq_in.page.eq(s1_page), wq_in.beat.eq(s1_beat),
                wq_in.data.eq(Cat(*lane_new)), wq_in.strb.eq(lane_wr),
                wm_in.has_write.eq(any_wr),
                wm_in.strb.eq(lane_wr), wm_in.rec.eq(lane_acc), wm_in.base.eq(s1_va),
                wm_in.level.eq(s1_level),
            ]
        with m.If(wq_push):
            for i in range(nwq):
                with m.If(wq_tail[:1] == i):
                    m.d.sync += wq[i].eq(wq_in)
            m.d.sync += wq_tail.eq(wq_tail + 1)

        # Runs: booked at the push, released by B responses in order.
        b_ok = Signal()
        m.d.comb += b_ok.eq(~axi.bresp[1])
        hv = wmeta.r_rdy
        head_rec = Signal()
        m.d.comb += head_rec.eq(wm_out.rec != 0)
        release = Signal()
        out_ok = Signal()
        m.d.comb += [
            release.eq(hv & (~wm_out.has_write | axi.bvalid)),
            out_ok.eq(~wm_out.has_write | b_ok),
            self.cleared.valid.eq(release & head_rec & out_ok),
            self.cleared.payload.base.eq(wm_out.base),
            self.cleared.payload.level.eq(wm_out.level),
            self.cleared.payload.mask.eq(wm_out.rec),
            wmeta.r_en.eq(release & (~(head_rec & out_ok) | self.cleared.ready)),
            axi.bready.eq(~hv | (wm_out.has_write
                                 & (~(head_rec & b_ok) | self.cleared.ready))),
        ]
        b_fire = Signal()
        m.d.comb += b_fire.eq(axi.bvalid & axi.bready & hv & wm_out.has_write)
        # Same page as the last run: compared for both sources in parallel, then selected.
        run_same = Signal()
        last_page = Signal(pw)               # run_page[run_last], kept
        with m.If(wq_push):
            m.d.sync += last_page.eq(wq_in.page)
        m.d.comb += [
            run_same.eq((run_n != 0) & Mux(~s1_valid, last_page == cur_tbl,
                                            last_page == s1_page)),
        ]
        for i in range(nrun):
            dec = Signal(name=f"run_dec{i}")
            inc_ = Signal(name=f"run_inc{i}")
            new = Signal(name=f"run_new{i}")
            m.d.comb += [
                dec.eq(b_fire & (run_head == i) & (run_n != 0)),
                inc_.eq(wq_push & run_same & (run_last == i)),
                new.eq(wq_push & ~run_same & (((run_head + run_n) % nrun) == i)),
            ]
            with m.If(new):
                m.d.sync += [run_page[i].eq(wq_in.page), run_cnt[i].eq(1)]
            with m.Else():
                m.d.sync += run_cnt[i].eq(run_cnt[i] + inc_ - dec)
        head_empties = Signal()
        m.d.comb += head_empties.eq(b_fire & (run_n != 0) & (run_cnt[run_head] == 1)
                                    & ~(wq_push & run_same & (run_last == run_head)))
        with m.If(head_empties):
            m.d.sync += run_head.eq(Mux(run_head == nrun - 1, 0, run_head + 1))
        m.d.sync += run_n.eq(run_n + (wq_push & ~run_same) - head_empties)
        # The write queue's next occupancies count this cycle's transfers; the metadata's
        # and the runs' do not count this cycle's releases (those come from the B channel
        # through the metadata memory): a freed place is seen a cycle late.
        wq_n_aw = Signal(2)
        wq_n_w = Signal(2)
        wm_upper = Signal(range(self._max_writes + 2))
        run_upper = Signal(range(nrun + 2))
        m.d.comb += [
            wq_n_aw.eq(wq_tail + wq_push - wq_aw - aw_fire),
            wq_n_w.eq(wq_tail + wq_push - wq_w - w_fire),
            wm_upper.eq(wmeta.level + wmeta.w_en),
            run_upper.eq(run_n + (wq_push & ~run_same)),
        ]
        m.d.sync += wr_room.eq((wq_n_aw < nwq) & (wq_n_w < nwq)
                               & (wm_upper < self._max_writes) & (run_upper < nrun))

        # ================================================================== walk state
        lvl_nx = Signal(3)
        tbl_nx = Signal(pw)
        m.d.comb += [lvl_nx.eq(lvl), tbl_nx.eq(cur_tbl)]
        m.d.sync += [cur_from.eq(0), e_from_hd.eq(0)]
        with m.If(phase == _PH_RUN):
            with m.Switch(ds):
                with m.Case(_DS_UPPER):
                    with m.If(dfs_skip | dfs_upleaf):
                        m.d.comb += pos_nx.eq(pos + 1)
                    with m.If(dfs_descend):
                        m.d.comb += [pos_nx.eq(0), tbl_nx.eq(hd_child), lvl_nx.eq(lvl - 1)]
                        m.d.sync += cur_from.eq(1)
                        with m.If(lvl == 4):
                            m.d.sync += idx4.eq(pos[:9])
                        with m.Else():
                            m.d.sync += [idx3.eq(pos[:9]), tbl3.eq(cur_tbl)]
                    with m.If(dfs_leaftab):
                        m.d.sync += [
                            ds.eq(_DS_LEAF), walk_upper.eq(0), e_act.eq(1), e_page.eq(hd_child),
                            e_from_hd.eq(1),
                            e_va.eq(cur_va), e_take.eq(0), e_take_p.eq(lanes), e_arr.eq(0),
                            e_narrow.eq(0),
                            p_C.eq(hd.e), p_child.eq(hd_child),
                            t_acc.eq(0), t_present.eq(0), p_sub.eq(0),
                        ]
                        with m.If(adopt):
                            m.d.sync += [e_iss.eq(pf_iss), e_started.eq(pf_started)]
                        with m.Else():
                            m.d.sync += [e_iss.eq(0), e_started.eq(0)]
                    with m.If(dfs_return):
                        with m.If(lvl == 2):
                            m.d.comb += [pos_nx.eq(idx3 + 1), tbl_nx.eq(tbl3), lvl_nx.eq(3)]
                            m.d.sync += cur_from.eq(2)
                        with m.Else():
                            m.d.comb += [pos_nx.eq(idx4 + 1), tbl_nx.eq(root), lvl_nx.eq(4)]
                            m.d.sync += cur_from.eq(3)
                    with m.If(dfs_end & (lvl == 4)):
                        m.d.sync += [ds.eq(_DS_FIN), walk_upper.eq(0)]
                with m.Case(_DS_LEAF):
                    with m.If(take_nx == _ENTRIES):
                        m.d.sync += ds.eq(_DS_PARENT)
                with m.Case(_DS_PARENT):
                    with m.If(par_act | par_skip):
                        m.d.comb += pos_nx.eq(pos + 1)
                        m.d.sync += [ds.eq(_DS_UPPER), walk_upper.eq(1), e_act.eq(0)]
        m.d.sync += [pos.eq(pos_nx), cur_tbl.eq(tbl_nx), lvl.eq(lvl_nx)]

        # ================================================================== statistics
        dfs_r = {k: Signal(name=f"dfs_r_{k}") for k in dfs_inc}
        m.d.sync += [dfs_r[k].eq(dfs_inc[k]) for k in dfs_inc]
        b_n = _popcount(wm_out.strb)
        b_writes = Signal(range(lanes + 1))
        b_bus = Signal(range(lanes + 1))
        m.d.sync += [
            b_writes.eq(Mux(b_fire & b_ok, b_n, 0)),
            b_bus.eq(Mux(b_fire & ~b_ok, b_n, 0)),
        ]
        leaves2 = Signal(lanes)
        m.d.comb += leaves2.eq(Mux(st2.v, st2.leaf, 0))
        n_leaves = _popcount(leaves2)
        ok2 = Mux(st2.v, st2.ok, 0)
        m.d.comb += [
            delta["accessed"].eq(_popcount(leaves2 & st2.a)),
            delta["leaves_4k"].eq(Mux(st2.level == 1, n_leaves, 0)),
            delta["leaves_2m"].eq(Mux(st2.level == 2, n_leaves, 0)),
            delta["leaves_1g"].eq(Mux(st2.level == 3, n_leaves, 0)),
            delta["entries_read"].eq(dfs_r["entries"] + ok2),
            delta["tables_read"].eq(dfs_r["tables"] + tbl_root),
            delta["writes"].eq(b_writes),
            delta["malformed"].eq(dfs_r["malf"] + Mux(st2.v, st2.malf, 0) + root_malf),
            delta["bus_errors"].eq(dfs_r["bus"] + Mux(st2.v, st2.err, 0) + b_bus),
            delta["retries"].eq(Mux(st2.v, st2.retry, 0)),
            delta["cycles"].eq((phase == _PH_INIT) | (phase == _PH_RUN)),
        ]
        for b in range(self._max_levels):
            m.d.comb += [
                delta[f"hist{b}"].eq(sum(leaves2[i] & (st2.lv[5 * i:5 * (i + 1)] == b)
                                         for i in range(lanes))),
                delta[f"lhist{b}"].eq(sum(leaves2[i] & d.multi
                                          & (st2.lg[5 * i:5 * (i + 1)] == b)
                                          for i in range(lanes))),
            ]
        settling = Signal()
        m.d.comb += settling.eq((phase == _PH_INIT) | (phase == _PH_RUN) | (phase == _PH_FLUSH))
        with m.If(phase == _PH_IDLE):
            m.d.sync += [a.eq(0) for a in acc]
        with m.Else():
            for k, n in enumerate(names):
                with m.If(settling & (fk == k)):
                    m.d.sync += acc[k].eq(delta[n])
                with m.Else():
                    m.d.sync += acc[k].eq(acc[k] + delta[n])
        m.d.comb += [
            stats_rmw.addr.eq(fk),
            stats_wr.addr.eq(fk),
            stats_wr.data.eq(Mux(clr_left != 0, 0, stats_rmw.data) + acc[fk]),
            stats_wr.en.eq(settling),
            stats_out.addr.eq(self.stats_addr),
        ]
        m.d.sync += self.stats_data.eq(stats_out.data)
        with m.If(settling):
            m.d.sync += fk.eq(Mux(fk == n_stats - 1, 0, fk + 1))
            with m.If(clr_left != 0):
                m.d.sync += clr_left.eq(clr_left - 1)
        m.d.sync += [tbl_root.eq(0), root_malf.eq(0)]

        # ================================================================== phases
        m.d.comb += self.start.ready.eq(phase == _PH_IDLE)
        with m.Switch(phase):
            with m.Case(_PH_IDLE):
                with m.If(self.start.valid):
                    index = Mux(self.start.payload.set_index, self.start.payload.pass_index,
                                pass_ctr)
                    m.d.sync += [
                        phase.eq(_PH_INIT),
                        cfg.eq(self.config),
                        root.eq(page_of(self.start.payload.root)),
                        root_bad.eq(self.start.payload.root[pa:] != 0),
                        pass_idx.eq(index),
                        div_num.eq(index + 1),
                        div_rem.eq(0),
                        div_cnt.eq(33),
                        init_tab.eq(0),
                        b_addr.eq(0),
                        fk.eq(0),
                        clr_left.eq(n_stats),
                    ]
            with m.Case(_PH_INIT):
                with m.If(div_cnt != 0):
                    m.d.sync += [
                        div_cnt.eq(div_cnt - 1),
                        div_num.eq(div_num << 1),
                        div_rem.eq(Mux(div_shift >= cfg.long_every,
                                       div_shift - cfg.long_every, div_shift)),
                    ]
                with m.Elif(~init_tab):
                    m.d.sync += [d.eol.eq(d.multi & (div_rem == 0)), init_tab.eq(1)]
                with m.Elif((b_addr <= b_last) | b1.v | b2.v | b3.v):
                    with m.If(b_addr <= b_last):
                        m.d.sync += b_addr.eq(b_addr + 1)
                with m.Elif(clr_left == 0):
                    m.d.sync += [
                        phase.eq(_PH_RUN), init_tab.eq(0), tbl_root.eq(~root_bad),
                        root_malf.eq(root_bad),
                        ds.eq(Mux(root_bad, _DS_FIN, _DS_UPPER)), walk_upper.eq(~root_bad),
                        lvl.eq(4), cur_tbl.eq(root),
                        cur_from.eq(3),
                        pos.eq(0),
                        w_iss.eq(0), w_arr.eq(0), w_rd.eq(0), hf_n.eq(0), hf_any.eq(0),
                        la.eq(1), lb_addr.eq(1), la_reset.eq(1), e_act.eq(0),
                        pf_st.eq(_PF_IDLE), w_armed.eq(0), e_armed.eq(0), pf_armed.eq(0),
                        u1_valid.eq(0), rf_n.eq(0), rf_head.eq(0), p_sub.eq(0),
                    ]
            with m.Case(_PH_RUN):
                with m.If((ds == _DS_FIN) & ~s1_valid & ~u1_valid & (wq_tail == wq_aw)
                          & (wq_tail == wq_w) & ~wmeta.r_rdy & (t_count == 0) & ~ar_valid
                          & ~st1.v & ~st2.v & cands.insert.ready):
                    m.d.sync += [phase.eq(_PH_FLUSH), fl_left.eq(n_stats + 2)]
            with m.Case(_PH_FLUSH):
                # Two cycles for the last increments to reach the accumulators, then one
                # round of the accumulators into the totals.
                m.d.sync += fl_left.eq(fl_left - 1)
                with m.If(fl_left == 1):
                    m.d.sync += phase.eq(_PH_DONE)
            with m.Case(_PH_DONE):
                with m.If(self.done.ready):
                    m.d.sync += [phase.eq(_PH_IDLE), pass_ctr.eq(pass_idx + 1)]

        # ================================================================== done
        m.d.comb += [
            self.done.valid.eq(phase == _PH_DONE),
            self.done.payload.pass_index.eq(pass_idx),
            self.done.payload.candidates.eq(cands.count),
        ]
        return m


#: Designs for ``make synth`` (see :mod:`thermocline.synth`).
SYNTH_DESIGNS = {
    "scanner": lambda: Scanner(),
    # The configuration hdl/engine.py builds as ``SMALL``.
    "scanner-small": lambda: Scanner(data_width=64, pa_bits=46, max_levels=8, top_k_max=8,
                                     max_reads=4, burst_beats=16, max_writes=8, window=16),
}
