"""Accessed-bit scanner and activity classifier (model/scanner.py).

The reference used here is written from the specification alone: a per-page state machine
(:func:`ref_step`), the moving average of the prioritizer (:func:`ref_ema`) and bookkeeping of
what each random tree holds. Both implementations of a pass (the compiled ``scan_pass`` and the
step-by-step ``iter_pass``) are held to it and to each other, word by word.
"""

import dataclasses
import json
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings, strategies as st

from model.memory import PhysMem
from model.pagetable import FrameAllocator, PageTable
from model.prioritizer import Candidate, LargePageConfig
from model.scanner import Pending, ScanConfig, Scanner, ScanStats, drive
from thermocline.layouts import EPT_ENTRY, LPCOUNT, X86_ENTRY, ENGINE_BITS

from .helpers import scale

MEM = 4 << 20                                    # host memory of the random trees
SIZES = {1: 1 << 12, 2: 1 << 21, 3: 1 << 30}


# --- reference --------------------------------------------------------------------------

def ref_step(cfg, level, long_level, seen, a, p):
    """The leaf step as the specification states it."""
    top = cfg.levels - 1
    level = min(level, top)
    level = min(level + cfg.up, top) if a else max(level - cfg.down, 0)
    if cfg.long_every:
        seen = min(seen + a, cfg.long_need)
        if (p + 1) % cfg.long_every == 0:
            g = min(long_level, cfg.long_levels - 1)
            long_level = min(g + 1, cfg.long_levels - 1) if seen >= cfg.long_need \
                else max(g - 1, 0)
            seen = 0
    return level, long_level, seen


def ref_ema(v, count, k):
    q = min(count // 16, 31)
    step = -(-abs(q - v) // 2**k)                           # ceil(|q - v| / 2**k)
    return v + step if q >= v else v - step


def layout(fmt):
    return EPT_ENTRY if fmt == "ept" else X86_ENTRY


def get_state(cfg, e):
    f = cfg.fields
    g = f.long_level.get(e) if f.long_level else 0
    s = f.seen.get(e) if f.seen else 0
    return f.level.get(e), g, s


def put_state(cfg, e, level, long_level, seen):
    f = cfg.fields
    e = f.level.set(e, level)
    if f.long_level:
        e = f.seen.set(f.long_level.set(e, long_level), seen)
    return e


# --- random trees -----------------------------------------------------------------------

@dataclass
class Tree:
    """A host tree and what it holds, kept beside it by the builder."""

    fmt: str
    pa_bits: int
    mem: PhysMem
    pt: PageTable
    leaves: dict = field(default_factory=dict)      # addr -> (va, level, parent addr | None)
    parents: dict = field(default_factory=dict)     # L2 table pointer addr -> region va
    malformed: int = 0
    outside: int = 0                                # table pointers past the end of memory
    poisoned_hits: int = 0                          # poisoned words the walk reads
    lost_tables: int = 0                            # tables not walked (poisoned pointer)
    aliased: bool = False

    @property
    def root(self):
        return self.pt.root

    def tables(self):
        return self.pt.alloc.next // 4096 + self.outside - self.lost_tables


def leaf_value(rng, tree, level, pa):
    """A well-formed leaf with random rights, flags, A, D and engine/ignored bits."""
    fmt = tree.pt.fmt
    if tree.fmt == "ept":
        f = dict(R=1, W=rng.randint(0, 1), X=rng.randint(0, 1),
                 MEMTYPE=rng.choice([0, 1, 4, 5, 6]), IPAT=rng.randint(0, 1),
                 A=rng.randint(0, 1), D=rng.randint(0, 1), XU=rng.randint(0, 1),
                 _ign11=rng.randint(0, 1), SW=rng.randrange(32), _hw57=rng.randrange(128))
        if rng.random() < 0.1:
            f.update(R=0, W=0, X=1)          # execute-only: well-formed
    else:
        f = dict(P=1, RW=rng.randint(0, 1), US=rng.randint(0, 1), PWT=rng.randint(0, 1),
                 PCD=rng.randint(0, 1), A=rng.randint(0, 1), D=rng.randint(0, 1),
                 G=rng.randint(0, 1), AVL=rng.randrange(8), SW=rng.randrange(128),
                 PKEY=rng.randrange(16), XD=rng.randint(0, 1))
    if level == 1:
        f["PS"] = rng.randint(0, 1)          # ignored (EPT) / PAT (x86) in a 4 KiB entry
    e = fmt.make(level, pa, leaf=True, **f)
    if level > 1 and tree.fmt != "ept":
        e |= rng.randint(0, 1) << 12         # PAT of a large x86 page
    return e


def random_pa(rng, tree, level):
    return rng.randrange(1 << (tree.pa_bits - 12 - 9 * (level - 1))) << (12 + 9 * (level - 1))


def add_leaf(rng, tree, va, level, parent=None):
    e = leaf_value(rng, tree, level, random_pa(rng, tree, level))
    tree.pt.write_entry(va, level, e)
    tree.leaves[tree.pt.entry_addr(va, level)] = (va, level, parent)


def randomize_parent(rng, tree, addr):
    lay = layout(tree.fmt)
    e = tree.mem.read(addr)
    e = LPCOUNT.set(e, rng.randrange(32))
    e = lay.A.set(e, rng.randint(0, 1))
    tree.mem.write(addr, e)


def build_tree(seed, fmt, pa_bits=52, *, bad=False, alias=False):
    """A random tree: 4K/2M/1G leaves; optionally malformed entries, tables outside memory,
    poisoned words (``bad``) and aliased / self-referencing tables (``alias``)."""
    rng = random.Random(seed)
    mem = PhysMem(MEM)
    pt = PageTable(mem, FrameAllocator(0, MEM), fmt, pa_bits=pa_bits)
    tree = Tree(fmt, pa_bits, mem, pt)
    l4 = rng.sample(range(16, 512), 4)
    leaf_tables = []
    for i4 in l4[:rng.randint(1, 2)]:
        for i3 in rng.sample(range(512), rng.randint(1, 2)):
            va3 = i4 << 39 | i3 << 30
            if rng.random() < 0.2:
                add_leaf(rng, tree, va3, 3)
                continue
            for i2 in rng.sample(range(512), rng.randint(1, 3)):
                va2 = va3 | i2 << 21
                if rng.random() < 0.3:
                    add_leaf(rng, tree, va2, 2)
                    continue
                count = rng.choice([1, 3, 17, 40, 300, 512])
                first = True
                for i1 in sorted(rng.sample(range(512), count)):
                    if first:
                        pt.entry_addr(va2, 1, create=True)
                        first = False
                    add_leaf(rng, tree, va2 | i1 << 12, 1, pt.entry_addr(va2, 2))
                parent = pt.entry_addr(va2, 2)
                tree.parents[parent] = va2
                randomize_parent(rng, tree, parent)
                leaf_tables.append(va2)
    if bad:
        plant_bad(rng, tree, l4[2] << 39, l4[3])
        poison_some(rng, tree, leaf_tables)
    if alias:
        make_aliases(rng, tree, l4)
    return tree


def plant_bad(rng, tree, base, root_index):
    """Malformed entries and table pointers past the end of memory under ``base``."""
    fmt, pt = tree.fmt, tree.pt
    f = pt.fmt
    above = [] if tree.pa_bits == 52 else [1 << rng.randrange(tree.pa_bits, 52)]
    plants = []                                             # (va, level, value)
    # level 1, under i3 = 2, i2 = 0: the parent stays well-formed (all its leaves bad).
    l1 = []
    if fmt == "ept":
        l1.append(f.make(1, 0x5000, leaf=True, R=0, W=1, X=rng.randint(0, 1)))
        l1 += [f.make(1, 0x6000, leaf=True, MEMTYPE=mt) for mt in (2, 3, 7)]
    l1 += [f.make(1, 0x7000, leaf=True) | b for b in above]
    for i, value in enumerate(l1):
        plants.append((base | 2 << 30 | (7 + i) << 12, 1, value))
    # level 2 leaves with reserved bits, level 2 table pointers with reserved bits (i3 = 1).
    lo = 12 if fmt == "ept" else 13
    l2 = [f.make(2, 1 << 21, leaf=True) | 1 << rng.randrange(lo, 21)]
    if fmt == "ept":
        l2.append(f.make(2, 0x3000, leaf=False) | rng.randrange(1, 16) << 3)
    l2 += [f.make(2, 0x3000, leaf=False) | b for b in above]
    for i, value in enumerate(l2):
        plants.append((base | 1 << 30 | (3 + i) << 21, 2, value))
    # level 3: a 1G leaf with a reserved bit.
    plants.append((base | 9 << 30, 3, f.make(3, 1 << 30, leaf=True)
                   | 1 << rng.randrange(lo, 30)))
    # level 4: PS (or another reserved bit) in the root.
    bit = 7 if fmt != "ept" else rng.randrange(3, 8)
    plants.append((root_index << 39, 4, f.make(4, 0x3000, leaf=False) | 1 << bit))
    for va, level, value in plants:
        pt.write_entry(va, level, value)
        tree.malformed += 1
    if l1:
        tree.parents[pt.entry_addr(base | 2 << 30, 2)] = base | 2 << 30
    # table pointers past the end of memory: one at level 2, one at level 3.
    for va, level in ((base | 3 << 30 | 5 << 21, 2), (base | 11 << 30, 3)):
        out = MEM + rng.randrange(64) * 4096
        pt.write_entry(va, level, f.make(level, out, leaf=False))
        tree.outside += 1
        if level == 2:                                  # a parent of 512 unreadable entries
            tree.parents[pt.entry_addr(va, 2)] = va


def poison_some(rng, tree, leaf_tables):
    """Poison one parent (its leaf table is never walked), some leaves, an absent word of a
    walked leaf table and a word no table holds."""
    mem = tree.mem
    leaf_tables = list(leaf_tables)
    if len(leaf_tables) > 1:
        va2 = leaf_tables.pop(rng.randrange(len(leaf_tables)))
        paddr = tree.pt.entry_addr(va2, 2)
        mem.poison(paddr)
        tree.poisoned_hits += 1
        tree.lost_tables += 1
        del tree.parents[paddr]
        for a in [a for a, v in tree.leaves.items() if v[2] == paddr]:
            del tree.leaves[a]
    l1 = [a for a, (va, lvl, p) in tree.leaves.items() if lvl == 1]
    for addr in rng.sample(l1, min(3, len(l1))):
        mem.poison(addr, rng.choice(["SLVERR", "DECERR"]))
        del tree.leaves[addr]
        tree.poisoned_hits += 1
    if leaf_tables:
        table = tree.pt.entry_addr(rng.choice(leaf_tables), 1) & ~0xFFF
        zero = np.flatnonzero(mem.page(table >> 12) == 0)
        if len(zero):
            mem.poison(table + 8 * int(rng.choice(list(zero))))
            tree.poisoned_hits += 1
    mem.poison(MEM - 8)


def make_aliases(rng, tree, l4):
    """A self-referencing root entry, an aliased leaf table and an aliased level-2 table."""
    pt, f = tree.pt, tree.pt.fmt
    tree.aliased = True
    pt.write_entry(rng.randrange(16) << 39, 4, f.make(4, pt.root, leaf=False, A=1))
    l1 = [(va, a) for a, (va, lvl, p) in tree.leaves.items() if lvl == 1]
    l2 = [(va, a) for a, (va, lvl, p) in tree.leaves.items() if lvl == 2]
    if l1:
        va, _ = rng.choice(l1)
        table = pt.entry_addr(va, 1) & ~0xFFF
        pt.write_entry(l4[2] << 39 | 77 << 30 | 5 << 21, 2, f.make(2, table, leaf=False))
    if l1 or l2:
        va, _ = rng.choice(l1 + l2)
        table = pt.entry_addr(va, 2) & ~0xFFF
        pt.write_entry(l4[2] << 39 | 78 << 30, 3, f.make(3, table, leaf=False))


def set_a_pattern(rng, tree, p_set=0.5):
    """Give every well-formed leaf a random A bit; returns {addr: a}."""
    a_mask = layout(tree.fmt).A.mask
    out = {}
    for addr in tree.leaves:
        a = int(rng.random() < p_set)
        e = tree.mem.read(addr)
        tree.mem.write(addr, (e | a_mask) if a else (e & ~a_mask))
        out[addr] = a
    return out


# --- strategies -------------------------------------------------------------------------

@st.composite
def scan_configs(draw, fmts=("ept", "npt", "ia32e")):
    fmt = draw(st.sampled_from(fmts))
    multi = draw(st.booleans())
    levels = draw(st.integers(2, 8 if multi else 32))
    kw = dict(fmt=fmt, levels=levels, up=draw(st.integers(1, levels - 1)),
              down=draw(st.integers(1, levels - 1)),
              pa_bits=draw(st.sampled_from([52, 46, 40])),
              report_cleared=draw(st.booleans()))
    if multi:
        period = draw(st.integers(2, 4))
        kw.update(long_every=period, long_levels=draw(st.integers(2, 4)),
                  long_need=draw(st.integers(1, period)))
    kw["large_page"] = LargePageConfig(
        enable=draw(st.booleans()), shift=draw(st.integers(0, 4)),
        warmup=draw(st.integers(0, 3)), threshold=draw(st.integers(0, 31)),
        top_k=draw(st.integers(0, 64)),
        max_nonpresent=draw(st.sampled_from([0, 17, 300, 511, 512])))
    try:
        return ScanConfig(**kw)
    except ValueError:
        reject()


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.filter_too_much])


# --- helpers ----------------------------------------------------------------------------

def both_passes(cfg, mem_a, mem_b, root, pass_index):
    """One pass of each implementation on its own copy; returns both statistics."""
    sa = Scanner(cfg, pass_index=pass_index).scan_pass(mem_a, root)
    sb = drive(Scanner(cfg, pass_index=pass_index).iter_pass(mem_b, root))
    return sa, sb


def assert_same(sa, sb, mem_a, mem_b, context):
    diff = mem_a.diff(mem_b)
    assert not diff, f"{context}: memory differs, first words {diff[:4]}"
    assert sa == sb, f"{context}: statistics differ\n{sa}\n{sb}"


# --- the two implementations agree -------------------------------------------------------

@settings(max_examples=scale(80), **SETTINGS)
@given(cfg=scan_configs(), seed=st.integers(0, 2**32 - 1), bad=st.booleans(),
       alias=st.booleans(), first=st.integers(0, 5))
def test_scan_pass_equals_iter_pass(cfg, seed, bad, alias, first):
    tree = build_tree(seed, cfg.fmt, cfg.pa_bits, bad=bad, alias=alias)
    rng = random.Random(seed ^ 0x5A5A)
    mem_a, mem_b = tree.mem, tree.mem.copy()
    for p in range(first, first + 3):
        sa, sb = both_passes(cfg, mem_a, mem_b, tree.root, p)
        assert_same(sa, sb, mem_a, mem_b, f"seed={seed} pass={p}")
        assert sa.entries_read + sa.bus_errors == 512 * sa.tables_read
        assert int(sa.histogram.sum()) == sa.leaves
        if sa.long_histogram is not None:
            assert int(sa.long_histogram.sum()) == sa.leaves
        # fresh A bits (on a copy made identically in both images)
        for addr in tree.leaves:
            if rng.random() < 0.5:
                e = mem_a.read(addr) | layout(cfg.fmt).A.mask
                mem_a.write(addr, e)
                mem_b.write(addr, e)


# --- against the reference ---------------------------------------------------------------

@settings(max_examples=scale(60), **SETTINGS)
@given(cfg=scan_configs(), seed=st.integers(0, 2**32 - 1), bad=st.booleans(),
       first=st.integers(0, 5))
def test_passes_match_reference(cfg, seed, bad, first):
    """Every word of the image and every statistic, pass after pass, from the spec alone."""
    tree = build_tree(seed, cfg.fmt, cfg.pa_bits, bad=bad)
    rng = random.Random(seed ^ 0xA5A5)
    lay, lp = layout(cfg.fmt), cfg.large_page
    a_mask, d_mask = lay.A.mask, lay.D.mask
    state = {addr: get_state(cfg, tree.mem.read(addr)) for addr in tree.leaves}
    mem_b = tree.mem.copy()
    scan_a = Scanner(cfg, pass_index=first)
    scan_b = Scanner(cfg, pass_index=first)
    for p in range(first, first + 5):
        pattern = set_a_pattern(rng, tree, rng.choice([0.1, 0.5, 0.9]))
        mem_b = tree.mem.copy()
        before = tree.mem.copy()
        sa = scan_a.scan_pass(tree.mem, tree.root)
        sb = drive(scan_b.iter_pass(mem_b, tree.root))
        assert_same(sa, sb, tree.mem, mem_b, f"seed={seed} pass={p}")
        assert sa.pass_index == p and scan_a.pass_index == p + 1

        expect = {}                                    # addr -> expected word
        hist = np.zeros(cfg.levels, np.int64)
        lhist = np.zeros(cfg.long_levels, np.int64)
        by_size = {4096: 0, 2097152: 0, 1073741824: 0}
        counts = {}                                    # parent -> [accessed, present]
        cleared = []
        for addr, (va, level, parent) in tree.leaves.items():
            old = before.read(addr)
            a = pattern[addr]
            lv, g, s = ref_step(cfg, *state[addr], a, p)
            state[addr] = (lv, g, s)
            expect[addr] = put_state(cfg, old & ~a_mask, lv, g, s)
            assert (expect[addr] ^ old) & d_mask == 0
            hist[lv] += 1
            lhist[min(g, cfg.long_levels - 1)] += 1
            by_size[SIZES[level]] += 1
            if a:
                cleared.append((va, SIZES[level]))
            if parent is not None:
                c = counts.setdefault(parent, [0, 0])
                c[0] += a
                c[1] += 1
        cands = []
        for paddr, region in tree.parents.items():
            if not lp.enable:
                continue
            old = before.read(paddr)
            acc, present = counts.get(paddr, [0, 0])
            v = ref_ema(LPCOUNT.get(old), acc, lp.shift)
            expect[paddr] = LPCOUNT.set(old, v)
            if p >= lp.warmup and v >= lp.threshold and 512 - present <= lp.max_nonpresent:
                cands.append((-v, region, paddr))
        cands = [(r, a, -nv) for nv, r, a in sorted(cands)[:lp.top_k]]

        changed = {addr for addr, new in expect.items() if new != before.read(addr)}
        diff = {a: (o, n) for a, o, n in before.diff(tree.mem, limit=1 << 30)}
        assert set(diff) == changed, f"seed={seed} pass={p}: other words changed"
        for addr, (o, n) in diff.items():
            assert n == expect[addr], (f"seed={seed} pass={p} addr={addr:#x}: "
                                       f"{o:#x} -> {n:#x}, expected {expect[addr]:#x}")
        assert np.array_equal(sa.histogram, hist)
        if cfg.multi:
            assert np.array_equal(sa.long_histogram, lhist)
        else:
            assert sa.long_histogram is None
        assert sa.leaves_by_size == by_size
        assert sa.accessed == sum(pattern.values())
        assert sa.writes == len(changed)
        assert sa.malformed == tree.malformed
        assert sa.bus_errors == 512 * tree.outside + tree.poisoned_hits
        assert sa.tables_read == tree.tables()
        assert sa.retries == 0
        assert [tuple(c) for c in sa.candidates] == cands
        if cfg.report_cleared:
            assert list(zip(sa.cleared_base.tolist(), sa.cleared_size.tolist())) \
                == sorted(cleared)
        else:
            assert sa.cleared_base is None and sa.cleared_size is None


@pytest.mark.parametrize("fmt", ["ept", "npt"])
def test_only_a_and_engine_bits_change(fmt):
    """A fixed pattern of page activity, watched bit by bit over eight passes."""
    cfg = ScanConfig(fmt=fmt, levels=4, long_every=3, long_levels=2, long_need=2)
    tree = build_tree(11, fmt, bad=True)
    lay = layout(fmt)
    allowed = {a: lay.A.mask | cfg.fields.mask for a in tree.leaves}
    allowed.update({a: LPCOUNT.mask for a in tree.parents})
    assert (cfg.fields.mask | LPCOUNT.mask) & ~ENGINE_BITS[fmt].mask == 0
    scanner = Scanner(cfg)
    rng = random.Random(3)
    for p in range(8):
        set_a_pattern(rng, tree)
        before = tree.mem.copy()
        scanner.scan_pass(tree.mem, tree.root)
        for addr, old, new in before.diff(tree.mem, limit=1 << 30):
            assert (old ^ new) & ~allowed.get(addr, 0) == 0, f"{addr:#x}: {old:#x}->{new:#x}"
            assert (old ^ new) & lay.D.mask == 0
            if addr in tree.leaves:
                assert new & lay.A.mask == 0


def test_level_walk_of_one_page():
    """One 4 KiB page, hand-checked: hot for three passes, then idle."""
    mem = PhysMem(1 << 20)
    pt = PageTable(mem, FrameAllocator(0, 1 << 20), "ept")
    pt.map(0x40000000, 0x1000)
    addr = pt.entry_addr(0x40000000, 1)
    scanner = Scanner(ScanConfig(levels=4, up=1, down=2, long_every=2, long_levels=2,
                                 long_need=2))
    level = EPT_ENTRY.SW
    seen = []
    for a in [1, 1, 1, 0, 1, 0, 0, 0]:
        if a:
            mem.write(addr, mem.read(addr) | EPT_ENTRY.A.mask)
        scanner.scan_pass(mem, pt.root)
        e = mem.read(addr)
        assert not e & EPT_ENTRY.A.mask
        seen.append(level.get(e))
    # SW bits: level (1:0), long level (2), seen (4:3)
    levels = [v & 3 for v in seen]
    longs = [v >> 2 & 1 for v in seen]
    seens = [v >> 3 for v in seen]
    assert levels == [1, 2, 3, 1, 2, 0, 0, 0]
    assert seens == [1, 0, 1, 0, 1, 0, 0, 0]
    assert longs == [0, 1, 1, 0, 0, 0, 0, 0]      # passes 1, 3, 5, 7 end a long period


def test_out_of_range_fields_clamp():
    """Stored values a field can hold but the configuration does not use."""
    mem = PhysMem(1 << 20)
    pt = PageTable(mem, FrameAllocator(0, 1 << 20), "npt")
    cfg = ScanConfig(fmt="npt", levels=3, long_every=2, long_levels=3, long_need=1)
    # level field 2 bits (3 stored), long 2 bits (3 stored), seen 1 bit
    pt.map(0, 0, SW=3 | 3 << 2, A=0)                   # L=3 -> 2-1=1 ; G=3 (kept)
    pt.map(0x1000, 0, SW=3 | 3 << 2, A=1)              # L=3 -> 2 (top)
    st_ = Scanner(cfg).scan_pass(mem, pt.root)         # pass 0: not the end of a period
    assert st_.long_histogram.tolist() == [0, 0, 2]    # stored 3 counted as 2
    f = cfg.fields
    e0, e1 = mem.read(pt.entry_addr(0, 1)), mem.read(pt.entry_addr(0x1000, 1))
    assert (f.level.get(e0), f.long_level.get(e0), f.seen.get(e0)) == (1, 3, 0)
    assert (f.level.get(e1), f.long_level.get(e1), f.seen.get(e1)) == (2, 3, 1)
    st_ = Scanner(cfg, pass_index=1).scan_pass(mem, pt.root)     # end: G clamps to 2 first
    e0, e1 = mem.read(pt.entry_addr(0, 1)), mem.read(pt.entry_addr(0x1000, 1))
    assert (f.level.get(e0), f.long_level.get(e0), f.seen.get(e0)) == (0, 1, 0)
    assert (f.level.get(e1), f.long_level.get(e1), f.seen.get(e1)) == (1, 2, 0)
    assert st_.long_histogram.tolist() == [0, 1, 1]


# --- edge cases, by hand -------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["ept", "npt", "ia32e"])
def test_self_referencing_root(fmt):
    """Root entry 0 points at the root: walked as PML4, PDPT, PD and PT; the word itself is
    then a 4 KiB leaf (level step) and a level-2 parent (LPCOUNT)."""
    mem = PhysMem(1 << 20)
    root = 0x3000
    lay = layout(fmt)
    flags = 0x7 if fmt == "ept" else 0x7               # R W X / P RW US
    word = root | flags | lay.A.mask
    mem.write(root, word)
    cfg = ScanConfig(fmt=fmt, large_page=LargePageConfig(warmup=0, threshold=0,
                                                         max_nonpresent=512))
    sa = Scanner(cfg).scan_pass(mem, root)
    # leaf step: A cleared, level 0 -> 1 (bit 52); then the same word as a parent: v = 1
    # (the level bits), count 1 -> q 0, v' = 1 - ceil(1 / 2) = 0.
    assert mem.read(root) == root | flags
    assert sa.tables_read == 4 and sa.entries_read == 4 * 512
    assert sa.writes == 2 and sa.accessed == 1
    assert sa.leaves_by_size == {4096: 1, 2097152: 0, 1073741824: 0}
    assert sa.histogram.tolist() == [0, 1, 0, 0]
    assert [tuple(c) for c in sa.candidates] == [(0, root, 0)]
    mem2 = PhysMem(1 << 20)
    mem2.write(root, word)
    sb = drive(Scanner(cfg).iter_pass(mem2, root))
    assert_same(sa, sb, mem, mem2, fmt)
    sa = Scanner(cfg, pass_index=1).scan_pass(mem, root)
    assert mem.read(root) == root | flags                 # level 0 stays 0; v' = 0
    assert sa.writes == 0 and sa.accessed == 0 and sa.histogram.tolist() == [1, 0, 0, 0]


def test_root_outside_memory_and_empty_root():
    mem = PhysMem(1 << 20)
    st_ = Scanner().scan_pass(mem, 1 << 20)
    assert (st_.bus_errors, st_.entries_read, st_.tables_read) == (512, 0, 1)
    st_ = drive(Scanner().iter_pass(mem, 0x5000))      # inside memory, never written
    assert (st_.bus_errors, st_.entries_read, st_.tables_read, st_.leaves) == (0, 512, 1, 0)


@pytest.mark.parametrize("fmt", ["ept", "npt"])
def test_poisoned_words(fmt):
    mem = PhysMem(1 << 20)
    pt = PageTable(mem, FrameAllocator(0, 1 << 20), fmt)
    for i in range(4):
        pt.map(i << 12, 0, A=1)
    leaf = pt.entry_addr(1 << 12, 1)
    mem.poison(leaf)
    old = mem.page(leaf >> 12)[(leaf >> 3) & 511]
    for impl in ("scan", "iter"):
        m = mem.copy()
        s = Scanner(ScanConfig(fmt=fmt))
        st_ = s.scan_pass(m, pt.root) if impl == "scan" else drive(s.iter_pass(m, pt.root))
        assert st_.bus_errors == 1 and st_.leaves == 3 and st_.accessed == 3
        assert m.page(leaf >> 12)[(leaf >> 3) & 511] == old       # untouched
    # a poisoned table pointer hides its whole subtree
    mem.unpoison()
    mem.poison(pt.entry_addr(0, 2))
    st_ = Scanner(ScanConfig(fmt=fmt)).scan_pass(mem, pt.root)
    assert st_.bus_errors == 1 and st_.leaves == 0 and st_.tables_read == 3


def test_validation_of_root():
    mem = PhysMem(1 << 20)
    for bad in (-4096, 1 << 64, "0x1000", 1.0):
        with pytest.raises(ValueError, match="root"):
            Scanner().scan_pass(mem, bad)
        with pytest.raises(ValueError, match="root"):
            Scanner().iter_pass(mem, bad)
    with pytest.raises(ValueError, match="PhysMem"):
        Scanner().scan_pass({}, 0)


@pytest.mark.parametrize("fmt", ["ept", "npt", "ia32e"])
@pytest.mark.parametrize("pa_bits", [40, 52])
def test_root_with_reserved_bits(fmt, pa_bits):
    """A root is taken as the register holds it: bits 11..0 ignored; a bit at or above
    pa_bits is a malformed root pointer, counted once, and the pass walks nothing."""
    mem = PhysMem(1 << 20)
    pt = PageTable(mem, FrameAllocator(0, 1 << 20), fmt)
    for i in range(4):
        pt.map(i << 12, 0x10000 * i, A=1)
    cfg = ScanConfig(fmt=fmt, pa_bits=pa_bits, report_cleared=fmt != "ia32e")
    before = mem.copy()
    for run in ("scan", "iter"):
        for high in (pa_bits, 63):
            sc = Scanner(cfg, pass_index=5)
            root = pt.root | 1 << high
            st_ = sc.scan_pass(mem, root) if run == "scan" else drive(sc.iter_pass(mem, root))
            assert not mem.diff(before), f"{run}: a bad root wrote memory"
            assert (st_.malformed, st_.tables_read, st_.entries_read, st_.leaves,
                    st_.writes, st_.pass_index, sc.pass_index) == (1, 0, 0, 0, 0, 5, 6)
            assert not st_.histogram.any() and len(st_.candidates) == 0
            if cfg.report_cleared:
                assert len(st_.cleared_base) == 0
    edge = Scanner(cfg).scan_pass(mem.copy(), 1 << (pa_bits - 1))    # in range, past memory
    assert (edge.malformed, edge.tables_read, edge.bus_errors) == (0, 1, 512)
    low = Scanner(cfg).scan_pass(mem.copy(), pt.root | 0xFFF)
    ref = Scanner(cfg).scan_pass(mem.copy(), pt.root)
    assert low.malformed == 0 and low.leaves == ref.leaves == 4
    assert low.histogram.tolist() == ref.histogram.tolist()


# --- another agent between read and write -------------------------------------------------

def interleave_tree(fmt, seed):
    tree = build_tree(seed, fmt)
    rng = random.Random(seed)
    set_a_pattern(rng, tree)
    return tree, rng


@pytest.mark.parametrize("fmt,seed", [("ept", 1), ("npt", 3), ("ia32e", 5), ("ept", 9)])
def test_interleaved_a_and_d_are_never_lost(fmt, seed):
    tree, rng = interleave_tree(fmt, seed)
    lay = layout(fmt)
    a_mask, d_mask = lay.A.mask, lay.D.mask
    cfg = ScanConfig(fmt=fmt, report_cleared=True)
    before = tree.mem.copy()
    acted = {}                                          # addr -> bits the agent set
    changed_words = 0

    def agent(pend: Pending):
        nonlocal changed_words
        assert tree.mem.read(pend.addr) == pend.old and pend.new != pend.old
        if pend.kind != "leaf" or pend.addr in acted or rng.random() < 0.3:
            return
        bits = rng.choice([a_mask, d_mask, a_mask | d_mask])
        acted[pend.addr] = bits
        cur = tree.mem.read(pend.addr)
        if cur | bits != cur:
            changed_words += 1
        tree.mem.write(pend.addr, cur | bits)

    scanner = Scanner(cfg)
    stats = drive(scanner.iter_pass(tree.mem, tree.root), agent)
    assert acted, "the agent never acted: the test would prove nothing"
    assert stats.retries == changed_words
    late_a = []
    for addr, (va, level, _) in tree.leaves.items():
        old, new = before.read(addr), tree.mem.read(addr)
        bits = acted.get(addr, 0)
        sampled = bool(old & a_mask)
        # D: kept if it was set, and set if the agent set it
        assert new & d_mask == (old | bits) & d_mask
        # A: cleared iff it was seen set; an A set after the read survives
        if sampled:
            assert not new & a_mask
        else:
            assert bool(new & a_mask) == bool(bits & a_mask)
            if bits & a_mask:
                late_a.append((va, SIZES[level]))
        # the step used the A bit as first read
        lv, _, _ = ref_step(cfg, *get_state(cfg, old), int(sampled), 0)
        assert cfg.fields.level.get(new) == lv
    assert late_a, "no late A bit to carry over"
    nxt = scanner.scan_pass(tree.mem, tree.root)
    carried = list(zip(nxt.cleared_base.tolist(), nxt.cleared_size.tolist()))
    assert carried == sorted(late_a) and nxt.accessed == len(late_a)


def test_interleaved_parent_update_keeps_a():
    tree, rng = interleave_tree("npt", 5)
    lay = layout("npt")
    cfg = ScanConfig(fmt="npt", large_page=LargePageConfig(shift=0, warmup=0, threshold=0,
                                                           max_nonpresent=512))
    for addr in tree.parents:                          # start with A clear on every parent
        tree.mem.write(addr, tree.mem.read(addr) & ~lay.A.mask)
    hit = []

    def agent(pend):
        if pend.kind == "lpcount":
            e = tree.mem.read(pend.addr)
            if not e & lay.A.mask:
                tree.mem.write(pend.addr, e | lay.A.mask)
                hit.append(pend)

    st_ = drive(Scanner(cfg).iter_pass(tree.mem, tree.root), agent)
    assert hit and st_.retries == len(hit)
    for pend in hit:
        e = tree.mem.read(pend.addr)
        assert e & lay.A.mask
        assert LPCOUNT.get(e) == LPCOUNT.get(pend.new)      # shift 0: value is q


def test_entry_removed_or_rewritten_meanwhile():
    mem = PhysMem(1 << 20)
    pt = PageTable(mem, FrameAllocator(0, 1 << 20), "ept")
    for i in range(3):
        pt.map(i << 12, 0x100000 * (i + 1), A=1, SW=2)
    addrs = [pt.entry_addr(i << 12, 1) for i in range(3)]
    parent = pt.entry_addr(0, 2)
    parent_before = mem.read(parent)
    cfg = ScanConfig(large_page=LargePageConfig(warmup=0, threshold=0, max_nonpresent=512))

    def agent(pend):
        if pend.addr == addrs[0] and pend.kind == "leaf":
            mem.write(pend.addr, 0)                       # unmapped: update dropped
        elif pend.addr == addrs[1] and pend.kind == "leaf" and EPT_ENTRY.SW.get(pend.old):
            mem.write(pend.addr, EPT_ENTRY.SW.set(pend.old, 0))   # level reset to 0

    st_ = drive(Scanner(cfg).iter_pass(mem, pt.root), agent)
    assert mem.read(addrs[0]) == 0
    assert EPT_ENTRY.SW.get(mem.read(addrs[1])) == 1       # stepped from 0, not from 2
    assert EPT_ENTRY.SW.get(mem.read(addrs[2])) == 3
    assert st_.leaves == 2 and st_.accessed == 2 and st_.retries == 2
    assert st_.histogram.tolist() == [0, 1, 0, 1]
    assert mem.read(parent) == parent_before             # 2 accessed: q = 0, v stays 0
    assert st_.candidates == [Candidate(0, parent, 0)]

    # a parent repointed (or removed) while its table was counted: no update, no candidate
    pt2_mem = PhysMem(1 << 20)
    pt2 = PageTable(pt2_mem, FrameAllocator(0, 1 << 20), "ept")
    pt2.map(0, 0, A=1)
    paddr = pt2.entry_addr(0, 2)
    v0 = pt2_mem.read(paddr)
    other = pt2.fmt.make(2, 0x80000, leaf=False)

    def repoint(pend):
        if pend.kind == "lpcount":
            pt2_mem.write(paddr, other)

    cfg0 = ScanConfig(large_page=LargePageConfig(shift=0, warmup=0, threshold=0,
                                                 max_nonpresent=512))
    st_ = drive(Scanner(cfg0).iter_pass(pt2_mem, pt2.root), repoint)
    # count 1 -> q 0 == v: nothing to write, so no yield, so the agent never ran
    assert pt2_mem.read(paddr) == v0 and len(st_.candidates) == 1
    page = pt2_mem.page(pt2.entry_addr(0, 1) >> 12)
    page[:] = np.uint64(pt2.fmt.make(1, 0, leaf=True, A=1))     # 512 accessed: q = 31
    st_ = drive(Scanner(cfg0).iter_pass(pt2_mem, pt2.root), repoint)
    assert pt2_mem.read(paddr) == other and st_.candidates == [] and st_.retries == 1


# --- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,shown", [
    (dict(fmt="x86"), "'x86'"),
    (dict(fmt=["ept"]), "['ept']"),
    (dict(pa_bits=53), "53"),
    (dict(levels=1), "1"),
    (dict(levels=33), "33"),
    (dict(levels=2.0), "2.0"),
    (dict(levels=True), "True"),
    (dict(up=0), "0"),
    (dict(levels=4, down=4), "4"),
    (dict(long_every=1), "1"),
    (dict(long_every=-2), "-2"),
    (dict(long_every=4, long_levels=1), "1"),
    (dict(long_every=4, long_need=5), "5"),
    (dict(long_every=4, long_need=0), "0"),
    (dict(levels=32, long_every=2), "levels=32"),             # does not fit EPT's 5 bits
    (dict(fmt="npt", levels=16, long_every=8, long_levels=4, long_need=8), "need"),
    (dict(large_page=3), "3"),
    (dict(report_cleared=1), "1"),
])
def test_bad_config(kwargs, shown):
    with pytest.raises(ValueError) as err:
        ScanConfig(**kwargs)
    assert shown in str(err.value)


def test_config_fields_and_defaults():
    cfg = ScanConfig()
    assert (cfg.fmt, cfg.levels, cfg.up, cfg.down, cfg.long_every) == ("ept", 4, 1, 1, 0)
    assert cfg.fields.level.lsb == 52 and cfg.fields.level.width == 2
    cfg = ScanConfig(fmt="npt", levels=5, long_every=6, long_levels=3, long_need=3)
    f = cfg.fields
    assert (f.level.width, f.long_level.width, f.seen.width) == (3, 2, 2)
    assert (f.level.lsb, f.long_level.lsb, f.seen.lsb) == (52, 55, 57)
    assert ScanConfig(fmt="npt", levels=32, long_every=2, long_levels=2, long_need=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.levels = 3


def test_stats_are_json_able():
    tree = build_tree(7, "ept", bad=True)
    st_ = Scanner(ScanConfig(report_cleared=True, large_page=LargePageConfig(
        warmup=0, threshold=0, max_nonpresent=512))).scan_pass(tree.mem, tree.root)
    assert isinstance(st_, ScanStats)
    d = json.loads(json.dumps(st_.to_dict()))
    assert d["histogram"] == st_.histogram.tolist() and d["candidates"]


# --- benchmark ---------------------------------------------------------------------------

def test_bench_scan_small():
    from thermocline.benchmarks import bench_scan
    r = bench_scan(entries=2**16, passes=2)
    json.dumps(r)
    assert r["entries"] == 2**16 and r["leaf_tables"] == 128 and len(r["pass_s"]) == 2
    assert r["best_s"] <= r["median_s"] and r["best_entries_per_s"] > 0
    assert r["sweep_entries_per_s"] > 0 and r["ratio_to_bandwidth"] > 0
    assert r["peak_rss_mib"] > 0
    assert all(0 < w <= 2**16 + 128 for w in r["writes_per_pass"])
    with pytest.raises(ValueError, match="0"):
        bench_scan(entries=0)
