"""Large-page evaluator: TLB misses with the prioritizer's K regions, first come, hindsight."""

import numpy as np
import pytest

from model.hugepages import (
    NEVER, TlbConfig, evaluate, prioritizer_reports, promote_first_come, references, sweep,
    tlb_misses,
)
from model.prioritizer import LargePageConfig
from model.workload import Slice, make
from tests.helpers import scale


def sl(pages):
    p = np.asarray(sorted(pages), dtype=np.int64)
    return Slice(p, np.zeros(len(p), dtype=bool))


def hot_region_workload():
    """Page 0 once (region 0), then pages 512..543 (region 1) in each of 20 slices."""
    hot = list(range(512, 544))
    return [sl([0] + hot)] + [sl(hot)] * 19


TLB = TlbConfig(entries_4k=16, entries_2m=2)
LP = LargePageConfig(warmup=2, threshold=1, shift=1)


def test_lru_tlb_by_hand():
    refs = references([sl([0, 1, 2]), sl([0, 1, 2]), sl([0, 3])], 8)
    none = np.full(refs.nregions, NEVER)
    assert tlb_misses(refs, none, TlbConfig(entries_4k=3))["misses"] == 4     # cold only
    # Two entries, cycling over three pages: every reference misses.
    assert tlb_misses(refs, none, TlbConfig(entries_4k=2))["misses"] == 8
    m = tlb_misses(refs, np.array([1]), TlbConfig(entries_4k=2))              # huge from slice 1
    assert (m["misses_4k"], m["misses_2m"]) == (3, 1)


def test_hand_built_hot_region():
    rows = {r["policy"]: r for r in evaluate(hot_region_workload(), 1024, 1, TLB, lp=LP)}
    # 16 entries cycling over 32 pages: every 4 KiB reference misses.
    assert rows["first_come"]["regions"] == [0]
    assert rows["first_come"]["misses"] == 1 + 20 * 32
    # The prioritizer's value for region 1 reaches 1, 2, 2 in passes 0, 1, 2; warm-up ends
    # at pass 2, so region 1 is a large page from slice 3: 33 + 2 * 32 + one 2 MiB miss.
    assert rows["prioritizer"]["regions"] == [1]
    assert rows["prioritizer"]["misses"] == 33 + 64 + 1
    assert rows["hindsight"]["regions"] == [1]
    assert rows["hindsight"]["misses"] == 2
    assert {r["misses"] for r in evaluate(hot_region_workload(), 1024, 0, TLB, lp=LP)} == {641}


def test_prioritizer_reports_follow_the_hot_region():
    reports = prioritizer_reports(hot_region_workload(), 1024, 4, lp=LP)
    assert reports[:2] == [[], []] and all(r == [1] for r in reports[2:])


def test_first_come_promotes_at_first_touch():
    refs = references([sl([600]), sl([5, 1100])], 1536)
    promo = promote_first_come(refs, 2)
    assert promo[1] == 0 and promo[0] == 1 and promo[2] == NEVER


@pytest.mark.parametrize("seed", range(scale(3)))
def test_hindsight_is_a_lower_bound(seed):
    rng = np.random.default_rng(seed)
    name = ["zipf", "shifting", "uniform"][seed % 3]
    npages = int(rng.integers(2, 9)) * 512
    w = list(make(name, npages, int(rng.integers(50, 600)), 30, seed=seed))
    tlb = TlbConfig(entries_4k=int(rng.integers(8, 256)), entries_2m=8)
    rows = sweep(w, npages, [0, 1, 2, 4, 8], tlb, lp=LP)
    for k in (0, 1, 2, 4, 8):
        r = {x["policy"]: x for x in rows if x["k"] == k}
        assert r["hindsight"]["misses"] <= r["prioritizer"]["misses"]
        assert r["hindsight"]["misses"] <= r["first_come"]["misses"]
        for x in r.values():
            assert len(x["regions"]) <= k and x["misses_2m"] <= len(x["regions"])
            assert x["misses"] == x["misses_4k"] + x["misses_2m"]
        if k == 0:
            assert len({x["misses"] for x in r.values()}) == 1


def test_bad_arguments():
    w = hot_region_workload()
    with pytest.raises(ValueError, match="2 MiB TLB entries"):
        evaluate(w, 1024, 3, TLB)
    with pytest.raises(ValueError, match="K must be"):
        evaluate(w, 1024, -1, TLB)
    with pytest.raises(ValueError, match="entries_4k"):
        TlbConfig(entries_4k=0)
    with pytest.raises(ValueError, match="outside"):
        references([sl([1024])], 1024)
    with pytest.raises(ValueError, match="no slices"):
        references([], 1024)
    with pytest.raises(ValueError, match="one slice per region"):
        tlb_misses(references(w, 1024), np.zeros(5), TLB)
