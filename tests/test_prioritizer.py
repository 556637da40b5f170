"""Large-page prioritizer (model/prioritizer.py), alone and inside scan passes."""

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from model.memory import PhysMem
from model.pagetable import FrameAllocator, PageTable
from model.prioritizer import (
    Candidate, LargePageConfig, eligible, ema, lp_step, quantize, rank,
)
from model.scanner import ScanConfig, Scanner, drive
from thermocline.layouts import EPT_ENTRY, LPCOUNT, X86_ENTRY

from .helpers import scale


# --- arithmetic --------------------------------------------------------------------------

@pytest.mark.parametrize("v,q,k,expect", [
    (0, 31, 0, 31), (30, 3, 0, 3), (31, 0, 0, 0),
    (0, 31, 1, 16), (16, 31, 1, 24), (24, 31, 1, 28), (28, 31, 1, 30), (30, 31, 1, 31),
    (31, 31, 1, 31), (31, 0, 1, 15), (1, 0, 1, 0), (2, 0, 1, 1),
    (8, 0, 2, 6), (0, 31, 2, 8), (31, 31, 2, 31), (0, 1, 2, 1), (0, 2, 2, 1), (1, 0, 4, 0),
    (5, 17, 3, 7), (10, 20, 4, 11), (31, 31, 4, 31), (0, 31, 4, 2),
])
def test_ema_by_hand(v, q, k, expect):
    assert ema(v, q, k) == expect


@pytest.mark.parametrize("k", range(5))
def test_ema_reaches_its_input_from_both_sides(k):
    for q in (0, 7, 31):
        for v0 in (0, 13, 31):
            v = v0
            for _ in range(40):
                v = ema(v, q, k)
            assert v == q, (k, q, v0)


def test_ema_range_and_monotonic():
    for k in range(5):
        for v in range(32):
            row = [ema(v, q, k) for q in range(32)]
            assert all(0 <= x <= 31 for x in row)
            assert row == sorted(row), f"not monotonic in q: v={v} k={k}"
        for q in range(32):
            col = [ema(v, q, k) for v in range(32)]
            assert col == sorted(col), f"not monotonic in v: q={q} k={k}"
        assert ema(31, 31, k) == 31 and ema(0, 0, k) == 0


@pytest.mark.parametrize("count,q", [(0, 0), (15, 0), (16, 1), (31, 1), (32, 2), (255, 15),
                                     (256, 16), (495, 30), (496, 31), (511, 31), (512, 31)])
def test_quantize(count, q):
    assert quantize(count) == q
    assert lp_step(9, count, 0) == q
    assert lp_step(9, count, 2) == ema(9, q, 2)


def test_eligible():
    # pass_index, value, absent, warmup, threshold, max_nonpresent
    assert eligible(2, 8, 0, 2, 8, 0)
    assert not eligible(1, 31, 0, 2, 8, 0)                # warm-up
    assert not eligible(2, 7, 0, 2, 8, 0)                 # below threshold
    assert not eligible(2, 8, 1, 2, 8, 0)                 # one absent entry too many
    assert eligible(2, 8, 512, 2, 8, 512)
    assert eligible(0, 0, 0, 0, 0, 0)


# --- ranking -----------------------------------------------------------------------------

def test_rank_order_and_top_k():
    regions = [0x600000, 0x200000, 0x400000, 0x000000, 0x800000]
    addrs = [0x5030, 0x5010, 0x5020, 0x5000, 0x5040]
    values = [9, 20, 20, 3, 31]
    assert rank(regions, addrs, values, 64) == [
        Candidate(0x800000, 0x5040, 31), Candidate(0x200000, 0x5010, 20),
        Candidate(0x400000, 0x5020, 20), Candidate(0x600000, 0x5030, 9),
        Candidate(0x000000, 0x5000, 3)]
    assert rank(regions, addrs, values, 2) == [
        Candidate(0x800000, 0x5040, 31), Candidate(0x200000, 0x5010, 20)]
    assert rank(regions, addrs, values, 0) == []
    assert rank([], [], [], 8) == []
    # same value and region (a table reached twice): parent address breaks the tie
    assert rank([0, 0], [0x2008, 0x1008], [5, 5], 2) == [Candidate(0, 0x1008, 5),
                                                         Candidate(0, 0x2008, 5)]
    with pytest.raises(ValueError, match="length"):
        rank([1, 2], [3], [4, 5], 1)


@settings(max_examples=scale(50), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**36), st.integers(0, 2**40), st.integers(0, 31)),
                max_size=80), st.integers(0, 64), st.randoms())
def test_rank_independent_of_input_order(cands, k, rnd):
    expect = sorted(cands, key=lambda c: (-c[2], c[0], c[1]))[:k]
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    got = rank(*zip(*shuffled), k) if shuffled else rank([], [], [], k)
    assert [tuple(c) for c in got] == expect


# --- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,shown", [
    (dict(enable=1), "1"), (dict(enable="yes"), "'yes'"),
    (dict(shift=-1), "-1"), (dict(shift=5), "5"), (dict(shift=1.5), "1.5"),
    (dict(warmup=-3), "-3"),
    (dict(threshold=32), "32"), (dict(threshold=-1), "-1"),
    (dict(top_k=65), "65"), (dict(top_k=None), "None"),
    (dict(max_nonpresent=513), "513"), (dict(max_nonpresent=-1), "-1"),
])
def test_bad_config(kwargs, shown):
    with pytest.raises(ValueError) as err:
        LargePageConfig(**kwargs)
    name = next(iter(kwargs))
    assert name in str(err.value) and shown in str(err.value)


def test_config_defaults_and_frozen():
    c = LargePageConfig()
    assert (c.enable, c.shift, c.warmup, c.threshold, c.top_k, c.max_nonpresent) == \
        (True, 1, 2, 8, 8, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.shift = 2
    with pytest.raises(TypeError):
        LargePageConfig(True)                                  # keyword-only


# --- inside scan passes ------------------------------------------------------------------

#: Six 2 MiB regions: (accessed leaves, absent entries, malformed entries) per pass.
REGIONS = [(512, 0, 0), (256, 0, 0), (128, 0, 0), (400, 0, 1), (508, 4, 0), (507, 5, 0)]
#: LPCOUNT after passes 0..4 with shift 1, by hand from q = 31, 16, 8, 25, 31, 31.
VALUES = [[16, 24, 28, 30, 31], [8, 12, 14, 15, 16], [4, 6, 7, 8, 8],
          [13, 19, 22, 24, 25], [16, 24, 28, 30, 31], [16, 24, 28, 30, 31]]
BASE = 1 << 30                                             # first region's input address
PA_BITS = 46                                               # so that bit 51 is reserved


def build(fmt):
    mem = PhysMem(16 << 20)
    pt = PageTable(mem, FrameAllocator(0, 16 << 20), fmt, pa_bits=PA_BITS)
    rows, parents = [], []
    for i, (acc, absent, bad) in enumerate(REGIONS):
        va = BASE + (i << 21)
        pt.map_range(va, 0x80000000 + (i << 21), 512)
        row = mem.page(pt.entry_addr(va, 1) >> 12)
        row[512 - absent:] = 0
        if bad:                                             # W without R / reserved bit
            row[0] = row[0] & ~np.uint64(1) if fmt == "ept" else row[0] | np.uint64(1 << 51)
        rows.append(pt.entry_addr(va, 1) >> 12)
        parents.append(pt.entry_addr(va, 2))
    return mem, pt, rows, parents


def set_a(mem, rows, a_mask):
    for pfn, (acc, absent, bad) in zip(rows, REGIONS):
        row = mem.page(pfn)
        row[bad:bad + acc] |= np.uint64(a_mask)


@pytest.mark.parametrize("fmt", ["ept", "npt"])
@pytest.mark.parametrize("impl", ["scan", "iter"])
def test_warmup_threshold_eligibility_top_k(fmt, impl):
    mem, pt, rows, parents = build(fmt)
    a_mask = (EPT_ENTRY if fmt == "ept" else X86_ENTRY).A.mask
    lp = LargePageConfig(shift=1, warmup=2, threshold=8, top_k=3, max_nonpresent=4)
    scanner = Scanner(ScanConfig(fmt=fmt, pa_bits=PA_BITS, large_page=lp))
    expect_cands = {
        2: [(0, 28), (4, 28), (3, 22)],        # r2 (7) below threshold, r5 (5 absent) out
        3: [(0, 30), (4, 30), (3, 24)],
        4: [(0, 31), (4, 31), (3, 25)],
    }
    for p in range(5):
        set_a(mem, rows, a_mask)
        if impl == "scan":
            stats = scanner.scan_pass(mem, pt.root)
        else:
            stats = drive(scanner.iter_pass(mem, pt.root))
        got = [LPCOUNT.get(mem.read(a)) for a in parents]
        assert got == [v[p] for v in VALUES], f"pass {p}"
        want = [Candidate(BASE + (i << 21), parents[i], v)
                for i, v in expect_cands.get(p, [])]
        assert stats.candidates == want, f"pass {p}"
        leaves = 6 * 512 - sum(a + b for _, a, b in REGIONS)
        assert stats.leaves == leaves and stats.malformed == 1
        assert stats.accessed == sum(acc for acc, _, _ in REGIONS)


def test_shift_zero_disable_and_decay():
    mem, pt, rows, parents = build("ept")
    a_mask = EPT_ENTRY.A.mask
    lp0 = LargePageConfig(shift=0, warmup=0, threshold=0, top_k=64, max_nonpresent=512)
    set_a(mem, rows, a_mask)
    stats = Scanner(ScanConfig(pa_bits=PA_BITS, large_page=lp0)).scan_pass(mem, pt.root)
    assert [LPCOUNT.get(mem.read(a)) for a in parents] == [31, 16, 8, 25, 31, 31]
    assert [c.value for c in stats.candidates] == [31, 31, 31, 25, 16, 8]
    assert [c.region for c in stats.candidates][:3] == [BASE, BASE + (4 << 21),
                                                         BASE + (5 << 21)]
    # disabled: the parents are neither read for it nor written, nothing is proposed
    before = {a: mem.read(a) for a in parents}
    set_a(mem, rows, a_mask)
    off = Scanner(ScanConfig(pa_bits=PA_BITS, large_page=LargePageConfig(enable=False)))
    stats = off.scan_pass(mem, pt.root)
    assert {a: mem.read(a) for a in parents} == before and stats.candidates == []
    assert stats.writes == stats.accessed                 # only the leaves with A change
    # no A bits at all: the A bits were cleared by the previous pass, so q = 0
    stats = Scanner(ScanConfig(pa_bits=PA_BITS, large_page=lp0)).scan_pass(mem, pt.root)
    assert [LPCOUNT.get(mem.read(a)) for a in parents] == [0] * 6
    assert [c.value for c in stats.candidates] == [0] * 6


@settings(max_examples=scale(30), deadline=None)
@given(st.integers(0, 4), st.lists(st.integers(0, 512), min_size=1, max_size=12),
       st.integers(0, 31))
def test_lpcount_follows_formula(k, counts, v0):
    """One leaf table, its accessed count varied pass by pass, in both implementations."""
    mem = PhysMem(1 << 20)
    pt = PageTable(mem, FrameAllocator(0, 1 << 20), "npt")
    pt.map_range(0, 0, 512)
    paddr = pt.entry_addr(0, 2)
    mem.write(paddr, LPCOUNT.set(mem.read(paddr), v0))
    row = mem.page(pt.entry_addr(0, 1) >> 12)
    lp = LargePageConfig(shift=k, warmup=0, threshold=0, max_nonpresent=0)
    scan_a, scan_b = Scanner(ScanConfig(fmt="npt", large_page=lp)), None
    v = v0
    for n, count in enumerate(counts):
        order = random.Random(n).sample(range(512), count)
        row[order] |= np.uint64(X86_ENTRY.A.mask)
        mem_b = mem.copy()
        scan_b = Scanner(ScanConfig(fmt="npt", large_page=lp), pass_index=n)
        sa = scan_a.scan_pass(mem, pt.root)
        sb = drive(scan_b.iter_pass(mem_b, pt.root))
        assert sa == sb and not mem.diff(mem_b)
        q = min(count >> 4, 31)
        step = -(-abs(q - v) // 2**k)                       # ceil(|q - v| / 2**k)
        v = v + step if q >= v else v - step
        assert LPCOUNT.get(mem.read(paddr)) == v
        assert sa.candidates == [Candidate(0, paddr, v)]
        row = mem.page(pt.entry_addr(0, 1) >> 12)
