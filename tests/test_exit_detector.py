"""Exit detector (``model.exit_detector``): both mechanisms, finite tables, configuration."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from model.exit_detector import (
    COUNTER_MAX, Access, Drop, ExitConfig, ExitDetector, PteWrite,
)

from .helpers import scale
from thermocline.layouts import X86_ENTRY, ENTRIES_PER_TABLE, PAGE_SIZE


PTE = X86_ENTRY.pack(P=1, RW=1, US=1, A=1, ADDR=0x1234)
SWAP = X86_ENTRY.ADDR.set(0, 0x777)                 # not present, non-zero (a swap entry)
NONE = 0


def table(n: int) -> int:
    return 0x10_0000 + n * PAGE_SIZE


def unmap(asid, t, i=0, old=PTE, new=NONE):
    return PteWrite(asid, table(t), i, old, new)


def remap(asid, t, i=0):
    return PteWrite(asid, table(t), i, NONE, PTE)


def touch(asid, page, t, i, user=True):
    return Access(asid, page * PAGE_SIZE + 0x18, table(t), i, user)


class Guest:
    """A toy guest process: 4 KiB pages, one leaf table per 2 MiB region, allocated on use."""

    def __init__(self, asid: int, table_base: int):
        self.asid = asid
        self.next_table = table_base
        self.tables: dict[int, int] = {}
        self.ptes: dict[int, int] = {}            # virtual page -> present PTE

    def where(self, page: int) -> tuple[int, int]:
        region = page // ENTRIES_PER_TABLE
        if region not in self.tables:
            self.tables[region] = self.next_table
            self.next_table += PAGE_SIZE
        return self.tables[region], page % ENTRIES_PER_TABLE

    def map(self, gva: int, npages: int) -> list[PteWrite]:
        writes = []
        for page in range(gva >> 12, (gva >> 12) + npages):
            gpa, i = self.where(page)
            self.ptes[page] = X86_ENTRY.pack(P=1, RW=1, US=1, ADDR=page & 0xFFFFF)
            writes.append(PteWrite(self.asid, gpa, i, NONE, self.ptes[page]))
        return writes

    def access(self, page: int, user: bool = True) -> Access:
        gpa, i = self.where(page)
        return Access(self.asid, page * PAGE_SIZE, gpa, i, user)

    def unmap(self, gva: int, npages: int) -> list[PteWrite]:
        """Clear the present PTEs of a range in ascending order, as Linux's zap does."""
        writes = []
        for page in range(gva >> 12, (gva >> 12) + npages):
            if page in self.ptes:
                gpa, i = self.where(page)
                writes.append(PteWrite(self.asid, gpa, i, self.ptes.pop(page), NONE))
        return writes


#: A process image: (start, pages) of its VMAs in ascending order.
VMAS = [
    (0x0040_0000, 40),           # text
    (0x0060_0000, 12),           # data
    (0x0100_0000, 300),          # heap
    (0x7f00_0010_0000, 700),     # mmap region over two leaf tables
    (0x7fff_ff80_0000, 16),      # stack
]


def start_guest(asid: int, table_base: int, rng: random.Random) -> tuple[Guest, list]:
    g = Guest(asid, table_base)
    events = []
    for base, n in VMAS:
        events += g.map(base, n)
    pages = sorted(g.ptes)
    # Touch a random sample; the lowest pages of the text are never touched.
    for page in rng.sample(pages[5:], 200):
        events.append(g.access(page))
    return g, events


def exit_writes(g: Guest) -> list[PteWrite]:
    writes = []
    for base, n in VMAS:
        writes += g.unmap(base, n)
    return writes


def feed_each(det: ExitDetector, events) -> list[list[Drop]]:
    return [det.feed(e) for e in events]


# --- configuration and events -------------------------------------------------------------------

@pytest.mark.parametrize("kw, shown", [
    (dict(spaces=0), "got 0"),
    (dict(tables=-3), "got -3"),
    (dict(run_threshold=0), "got 0"),
    (dict(run_threshold=513), "1..512, got 513"),
    (dict(tables_needed=0), "got 0"),
    (dict(tables=4, tables_needed=5), "1..4, got 5"),
    (dict(spaces=2.0), "2.0"),
    (dict(tables=True), "True"),
])
def test_bad_config_names_the_value(kw, shown):
    with pytest.raises(ValueError, match=shown):
        ExitConfig(**kw)


def test_config_is_keyword_only():
    with pytest.raises(TypeError):
        ExitConfig(8, 32)
    assert ExitConfig() == ExitConfig(spaces=8, tables=32, run_threshold=4, tables_needed=2)


@pytest.mark.parametrize("make, shown", [
    (lambda: Access(1, 0x1000, 0x2001, 0, True), "0x2001"),
    (lambda: Access(1, 0x1000, 0x2000, 512, True), "index must be in 0..511, got 512"),
    (lambda: Access(1, -1, 0x2000, 0, True), "-0x1"),
    (lambda: Access(1, 0x1000, 0x2000, 0, 1), "user must be a bool, got 1"),
    (lambda: PteWrite(-2, 0x2000, 0, 1, 0), "asid.*got -2"),
    (lambda: PteWrite(1, 1 << 52, 0, 1, 0), hex(1 << 52)),
    (lambda: PteWrite(1, 0x2000, 0, 1 << 64, 0), hex(1 << 64)),
])
def test_bad_events_name_the_value(make, shown):
    with pytest.raises(ValueError, match=shown):
        make()


def test_feed_rejects_other_objects():
    det = ExitDetector()
    with pytest.raises(ValueError, match="Drop"):
        det.feed(Drop(1, table(0), "exit"))
    assert det.counters.events == 0


def test_unmaps_uses_the_present_bit_only():
    assert unmap(1, 0).unmaps
    assert unmap(1, 0, new=SWAP).unmaps
    assert unmap(1, 0, new=PTE & ~X86_ENTRY.P.mask).unmaps
    assert not unmap(1, 0, old=SWAP).unmaps                       # not present -> not present
    assert not PteWrite(1, table(0), 0, PTE, PTE ^ X86_ENTRY.D.mask).unmaps
    assert not remap(1, 0).unmaps


# --- mechanism (a): exit by lowest address ------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_linux_like_exit_drops_from_the_lowest_accessed_page(seed):
    rng = random.Random(seed)
    det = ExitDetector()
    g, events = start_guest(7, 0x20_0000, rng)
    assert det.feed_all(events) == []
    lowest = min(e.gva >> 12 for e in events if isinstance(e, Access))
    writes = exit_writes(g)
    first = next(k for k, w in enumerate(writes)
                 if (w.table_gpa, w.index) == g.where(lowest))
    assert first > 0                                  # untouched text pages go first
    drops = feed_each(det, writes)
    assert all(d == [] for d in drops[:first])
    assert all(d == [Drop(7, w.table_gpa, "exit")]
               for d, w in zip(drops[first:], writes[first:], strict=True))
    # Every leaf table from the one of the lowest page upwards was dropped.
    dropped = {d[0].table_gpa for d in drops if d}
    assert dropped == {gpa for region, gpa in g.tables.items()
                       if region >= lowest // ENTRIES_PER_TABLE}
    c = det.counters
    assert (c.exit_drops, c.bulk_drops) == (len(writes) - first, 0)
    assert c.events == len(events) + len(writes)


def test_exit_of_one_process_leaves_another_alone():
    rng = random.Random(11)
    det = ExitDetector()
    a, ev_a = start_guest(1, 0x20_0000, rng)
    b, ev_b = start_guest(2, 0x80_0000, rng)
    det.feed_all(ev_a + ev_b)
    wa = exit_writes(a)
    # B keeps running while A exits: faults, accesses, and the odd single unmap.
    live = [b.access(p) for p in rng.sample(sorted(b.ptes), 50)]
    live += b.unmap(0x0100_0000 + 37 * PAGE_SIZE, 1) + b.map(0x0100_0000 + 37 * PAGE_SIZE, 1)
    mixed = wa[:]
    for k, e in enumerate(live):
        mixed.insert(3 * k + 1, e)
    drops = [d for ds in feed_each(det, mixed) for d in ds]
    assert drops and all(d.asid == 1 and d.reason == "exit" for d in drops)
    space_b = next(s for s in det.spaces if s is not None and s.asid == 2)
    assert not space_b.exiting and space_b.low_page < 0x0100_0000 >> 12


def test_munmap_of_a_middle_region_drops_nothing():
    rng = random.Random(5)
    det = ExitDetector()
    g, events = start_guest(3, 0x20_0000, rng)
    det.feed_all(events)
    assert det.feed_all(g.unmap(0x0100_0000 + 10 * PAGE_SIZE, 200)) == []   # one table
    assert det.feed_all(g.unmap(0x0060_0000, 3)) == []                     # a short run
    assert not det.spaces[0].exiting and det.qualified(3) == 1
    # Qualification outlives the munmap: a second long run in another table makes the space
    # look like a bulk unmap (a documented false positive of mechanism (b)).
    drops = det.feed_all(g.unmap(0x0060_0000 + 3 * PAGE_SIZE, 9))
    assert [d.reason for d in drops] == ["bulk"] * 8     # the run reaches 4 at its 1st write


def test_large_munmap_drops_by_bulk_never_by_exit():
    rng = random.Random(6)
    det = ExitDetector()
    g, events = start_guest(3, 0x20_0000, rng)
    det.feed_all(events)
    writes = g.unmap(0x7f00_0010_0000, 700)          # tables of 256 + 444 entries
    drops = feed_each(det, writes)
    # The first table qualifies after 4 writes and the second after 4 more: the 9th drops.
    assert all(d == [] for d in drops[:256 + 4])
    assert all(d == [Drop(3, w.table_gpa, "bulk")]
               for d, w in zip(drops[260:], writes[260:], strict=True))


def test_supervisor_accesses_never_count():
    det = ExitDetector()
    det.feed(touch(1, 100, 0, 100))
    det.feed(touch(1, 50, 0, 50, user=False))          # lower, but supervisor
    det.feed(touch(9, 10, 3, 10, user=False))          # unknown space: nothing allocated
    assert det.spaces[0].low_page == 100 and det.spaces[1] is None
    assert det.feed(unmap(1, 0, 50)) == []
    assert det.feed(unmap(1, 0, 100)) == [Drop(1, table(0), "exit")]


def test_lowest_page_record_follows_lower_accesses():
    det = ExitDetector()
    for page, t in [(300, 2), (40, 1), (90, 1), (40, 5)]:
        det.feed(touch(1, page, t, page % 512))
    s = det.spaces[0]
    # Equal page: the newer PTE location wins.
    assert (s.low_page, s.low_table_gpa, s.low_index) == (40, table(5), 40)
    assert det.feed(unmap(1, 2, 300)) == []
    assert det.feed(unmap(1, 1, 40)) == []             # the old location of page 40
    assert det.feed(unmap(1, 5, 40)) == [Drop(1, table(5), "exit")]
    s = det.spaces[0]
    assert s.exiting and s.low_page is None
    assert det.feed(unmap(1, 9, 3)) == [Drop(1, table(9), "exit")]
    assert det.feed(remap(1, 9, 3)) == []              # only unmapping writes drop
    assert det.feed(unmap(1, 9, 3, new=SWAP)) == [Drop(1, table(9), "exit")]


def test_other_writes_to_the_lowest_pte_do_not_mark_exiting():
    det = ExitDetector()
    det.feed(touch(1, 8, 0, 8))
    det.feed(PteWrite(1, table(0), 8, PTE, PTE | X86_ENTRY.D.mask))
    det.feed(unmap(1, 0, 8, old=SWAP))                  # not present -> not present
    assert not det.spaces[0].exiting and det.spaces[0].low_page == 8
    assert det.feed(unmap(2, 0, 8)) == []              # same PTE, other space
    assert det.feed(unmap(1, 0, 8)) == [Drop(1, table(0), "exit")]


def test_user_access_revives_an_exiting_space():
    det = ExitDetector()
    det.feed(touch(4, 16, 0, 16))
    for t in (1, 2):                                   # two qualified tables
        det.feed_all(unmap(4, t, i) for i in range(4))
    assert det.qualified(4) == 2
    assert det.feed(unmap(4, 0, 16)) == [Drop(4, table(0), "exit")]
    det.feed(touch(4, 700, 3, 188))                    # the ASID runs a new process
    s = det.spaces[0]
    assert not s.exiting and (s.low_page, s.low_table_gpa, s.low_index) == (700, table(3), 188)
    assert det.qualified(4) == 0 and all(t is None for t in det.tables)
    assert det.feed(unmap(4, 6, 1)) == []
    assert det.feed(unmap(4, 3, 188)) == [Drop(4, table(3), "exit")]


# --- mechanism (b): bulk unmapping --------------------------------------------------------------

def test_bulk_drops_start_after_the_second_table_qualifies():
    det = ExitDetector()
    for i in range(4):
        assert det.feed(unmap(5, 0, i)) == []
    assert det.qualified(5) == 1
    for i in range(4):
        assert det.feed(unmap(5, 1, i)) == []          # incl. the write that qualifies it
    assert det.qualified(5) == 2
    assert det.feed(unmap(5, 2, 0)) == [Drop(5, table(2), "bulk")]
    assert det.feed(unmap(5, 0, 9)) == [Drop(5, table(0), "bulk")]
    assert det.feed(unmap(6, 0, 0)) == []              # another space
    c = det.counters
    assert (c.exit_drops, c.bulk_drops, c.events) == (0, 2, 11)


def test_any_other_write_resets_the_run():
    det = ExitDetector()
    det.feed_all(unmap(5, 0, i) for i in range(3))
    det.feed(remap(5, 0, 1))                           # not present -> present
    det.feed_all(unmap(5, 0, i) for i in range(3, 6))
    assert det.qualified(5) == 0                       # 3 + 3, not 6
    det.feed(unmap(5, 0, 6))
    assert det.qualified(5) == 1
    det.feed_all(unmap(5, 1, i) for i in range(3))
    det.feed(unmap(5, 0, 7, old=SWAP))                 # not present -> not present on table 0
    det.feed(unmap(5, 1, 3))                           # qualifies table 1, table 0 lost it
    assert det.qualified(5) == 1
    assert det.feed(unmap(5, 2, 0)) == []
    det.feed(PteWrite(5, table(1), 3, PTE, PTE ^ X86_ENTRY.RW.mask))   # present -> present
    det.feed_all(unmap(5, 0, i) for i in range(10, 14))
    assert det.qualified(5) == 1
    tables = {t.table_gpa: t.count for t in det.tables if t is not None}
    assert tables == {table(0): 4, table(1): 0, table(2): 1}


def test_run_counter_saturates_at_the_threshold():
    det = ExitDetector(ExitConfig(run_threshold=3))
    det.feed_all(unmap(1, 0, i) for i in range(50))
    assert [t.count for t in det.tables if t is not None] == [3]


def test_thresholds_are_configurable():
    det = ExitDetector(ExitConfig(run_threshold=1, tables_needed=1))
    assert det.feed(unmap(1, 0, 0)) == []
    assert det.feed(unmap(1, 4, 0)) == [Drop(1, table(4), "bulk")]
    det = ExitDetector(ExitConfig(run_threshold=2, tables_needed=3))
    drops = feed_each(det, [unmap(1, t, i) for t in range(3) for i in range(2)])
    assert all(d == [] for d in drops)
    assert det.feed(unmap(1, 3, 0)) == [Drop(1, table(3), "bulk")]


def test_exit_wins_over_bulk():
    det = ExitDetector()
    det.feed(touch(1, 2, 0, 2))
    det.feed_all(unmap(1, t, i) for t in (1, 2) for i in range(4))
    assert det.feed(unmap(1, 0, 2)) == [Drop(1, table(0), "exit")]
    assert det.feed(unmap(1, 1, 9)) == [Drop(1, table(1), "exit")]
    assert (det.counters.exit_drops, det.counters.bulk_drops) == (2, 0)


# --- finite tables ------------------------------------------------------------------------------

def test_third_space_evicts_the_oldest():
    det = ExitDetector(ExitConfig(spaces=2))
    det.feed(touch(1, 10, 0, 10))
    det.feed(touch(2, 20, 1, 20))
    assert [s.asid for s in det.spaces] == [1, 2] and det.space_victim == 0
    det.feed(touch(3, 30, 2, 30))
    assert [s.asid for s in det.spaces] == [3, 2] and det.space_victim == 1
    assert det.counters.space_evictions == 1
    # Space 1's record is gone: its lowest PTE going away is not seen as an exit; the write
    # allocates space 1 again, evicting space 2.
    assert det.feed(unmap(1, 0, 10)) == []
    assert [s.asid for s in det.spaces] == [3, 1] and det.spaces[1].low_page is None
    assert det.space_victim == 0 and det.counters.space_evictions == 2
    assert det.feed(unmap(2, 1, 20)) == []
    assert det.feed(unmap(3, 2, 30)) == []             # space 3 was evicted by space 2
    # Writes that do not unmap never allocate.
    det.feed(remap(9, 0))
    assert 9 not in {s.asid for s in det.spaces}


def test_evicting_a_space_forgets_its_tables():
    det = ExitDetector(ExitConfig(spaces=1))
    det.feed_all(unmap(1, t, i) for t in (0, 1) for i in range(4))
    assert det.qualified(1) == 2
    det.feed(unmap(2, 7, 0))                           # evicts space 1 and its counters
    assert [(t.asid, t.table_gpa) for t in det.tables if t is not None] == [(2, table(7))]
    assert det.tables[0] is not None and det.tables[0].table_gpa == table(7)
    assert det.counters.table_evictions == 0 and det.table_victim == 0
    assert det.feed(unmap(1, 0, 4)) == []              # would have been a bulk drop
    assert det.qualified(1) == 0


def test_fifth_table_evicts_per_the_victim_pointer():
    det = ExitDetector(ExitConfig(tables=4))
    det.feed_all(unmap(1, 0, i) for i in range(4))     # table 0 qualifies, slot 0
    for t in (1, 2, 3):
        det.feed(unmap(1, t, 0))
    assert [t.table_gpa for t in det.tables] == [table(0), table(1), table(2), table(3)]
    det.feed(unmap(1, 4, 0))
    assert [t.table_gpa for t in det.tables] == [table(4), table(1), table(2), table(3)]
    assert det.table_victim == 1 and det.qualified(1) == 0
    det.feed(unmap(1, 0, 4))                           # table 0 again: counts from 1
    assert [t.table_gpa for t in det.tables] == [table(4), table(0), table(2), table(3)]
    assert det.tables[1].count == 1
    assert det.table_victim == 2 and det.counters.table_evictions == 2
    det.feed(unmap(1, 2, 1))                           # a hit allocates nothing
    assert det.table_victim == 2 and det.tables[2].count == 2


def test_counters_saturate_and_reset_clears_everything():
    det = ExitDetector(ExitConfig(spaces=1, tables=1, run_threshold=1, tables_needed=1))
    det._events = COUNTER_MAX
    det.feed(touch(1, 3, 0, 3))
    det.feed(unmap(1, 0, 3))
    assert det.counters.events == COUNTER_MAX and det.counters.exit_drops == 1
    det.feed(unmap(2, 1, 0))
    assert det.counters.space_evictions == 1
    det.reset()
    assert det.spaces == (None,) and det.tables == (None,)
    assert det.space_victim == det.table_victim == 0
    assert det.counters == type(det.counters)(0, 0, 0, 0, 0)


# --- properties ---------------------------------------------------------------------------------

@st.composite
def exit_configs(draw):
    tables = draw(st.integers(1, 6))
    return ExitConfig(spaces=draw(st.integers(1, 4)), tables=tables,
                      run_threshold=draw(st.integers(1, 5)),
                      tables_needed=draw(st.integers(1, tables)))


ENTRIES = st.sampled_from([NONE, SWAP, PTE, PTE | X86_ENTRY.D.mask])


def events(n_asids: int = 5, n_tables: int = 7):
    asids, tables = st.integers(0, n_asids - 1), st.integers(0, n_tables - 1)
    access = st.builds(lambda a, page, t, i, u: Access(a, page * PAGE_SIZE, table(t), i, u),
                       asids, st.integers(0, 15), tables, st.integers(0, 3), st.booleans())
    write = st.builds(lambda a, t, i, old, new: PteWrite(a, table(t), i, old, new),
                      asids, tables, st.integers(0, 3), ENTRIES, ENTRIES)
    return st.one_of(access, write, write)


def check_state(det: ExitDetector):
    cfg = det.config
    spaces, tables = det.spaces, det.tables
    assert len(spaces) == cfg.spaces and len(tables) == cfg.tables
    asids = [s.asid for s in spaces if s is not None]
    assert len(asids) == len(set(asids))
    keys = [(t.space, t.table_gpa) for t in tables if t is not None]
    assert len(keys) == len(set(keys))
    for t in tables:
        if t is not None:
            assert spaces[t.space] is not None and spaces[t.space].asid == t.asid
            assert 0 <= t.count <= cfg.run_threshold
            assert t.qualified == (t.count == cfg.run_threshold)
    for s in spaces:
        if s is not None and s.exiting:
            assert s.low_page is None
    assert 0 <= det.space_victim < cfg.spaces and 0 <= det.table_victim < cfg.tables


@given(config=exit_configs(), stream=st.lists(events(), max_size=60))
@settings(max_examples=scale(300), deadline=None)
def test_drops_are_single_and_only_on_unmapping_writes(config, stream):
    det = ExitDetector(config)
    n = 0
    for e in stream:
        drops = det.feed(e)
        assert len(drops) <= 1
        if drops:
            assert isinstance(e, PteWrite) and e.unmaps
            assert (drops[0].asid, drops[0].table_gpa) == (e.asid, e.table_gpa)
            assert drops[0].reason in ("exit", "bulk")
            n += 1
        check_state(det)
    c = det.counters
    assert c.events == len(stream) and c.exit_drops + c.bulk_drops == n


class Reference:
    """The two mechanisms with unbounded dictionaries, written from the rules alone."""

    def __init__(self, run_threshold: int, tables_needed: int):
        self.thr, self.need = run_threshold, tables_needed
        self.low: dict[int, tuple[int, int, int]] = {}    # asid -> (page, table, index)
        self.exiting: set[int] = set()
        self.runs: dict[tuple[int, int], int] = {}        # (asid, table) -> run length

    def feed(self, e) -> list[Drop]:
        if isinstance(e, Access):
            if e.user:
                page = e.gva >> 12
                if e.asid in self.exiting:
                    self.exiting.discard(e.asid)
                    self.runs = {k: v for k, v in self.runs.items() if k[0] != e.asid}
                    self.low[e.asid] = (page, e.table_gpa, e.index)
                elif e.asid not in self.low or page <= self.low[e.asid][0]:
                    self.low[e.asid] = (page, e.table_gpa, e.index)
            return []
        key = (e.asid, e.table_gpa)
        if not e.unmaps:
            if key in self.runs:
                self.runs[key] = 0
            return []
        reason = None
        if e.asid in self.exiting:
            reason = "exit"
        elif self.low.get(e.asid, (None,))[1:] == (e.table_gpa, e.index):
            self.exiting.add(e.asid)
            del self.low[e.asid]
            reason = "exit"
        elif sum(1 for (a, _), n in self.runs.items()
                 if a == e.asid and n >= self.thr) >= self.need:
            reason = "bulk"
        self.runs[key] = self.runs.get(key, 0) + 1
        return [] if reason is None else [Drop(e.asid, e.table_gpa, reason)]


@given(thr=st.integers(1, 5), need=st.integers(1, 4),
       stream=st.lists(events(4, 6), max_size=80))
@settings(max_examples=scale(300), deadline=None)
def test_matches_unbounded_reference_when_nothing_is_evicted(thr, need, stream):
    # 4 spaces and 4 x 6 tables hold every key the stream can name.
    det = ExitDetector(ExitConfig(spaces=4, tables=24, run_threshold=thr, tables_needed=need))
    ref = Reference(thr, need)
    for e in stream:
        assert det.feed(e) == ref.feed(e), e
    assert det.counters.space_evictions == det.counters.table_evictions == 0
