"""Demand-paging evaluator: the engine's prefetcher, Linux-style readahead, no prefetch."""

import numpy as np
import pytest

from model.paging import PagingConfig, compare, readahead_span, readahead_window, run
from model.workload import Slice, make
from tests.helpers import scale


def stream(n):
    return [Slice(np.array([i]), np.array([False])) for i in range(n)]


def test_sequential_stream_by_hand():
    cfg = PagingConfig(memory_pages=64, window=4, direction="both")
    rows = {r["policy"]: r for r in compare(stream(20), 512, cfg)}
    assert rows["none"]["faults"] == 20 and rows["none"]["prefetched"] == 0
    # The engine: faults at 0, 5, 10, 15, each bringing the 4 pages after it.
    e = rows["engine"]
    assert (e["faults"], e["prefetched"], e["used"], e["wasted"]) == (4, 16, 16, 0)
    # Linux: no window at 0; 2 at 1 (adjacent); then 4 pages around each fault, two of
    # them new: faults at 0, 1, 3, 6, 9, 12, 15, 18; the last reads 19 and 20, and 20 is
    # never used.
    r = rows["readahead"]
    assert (r["faults"], r["prefetched"], r["used"], r["wasted"]) == (8, 13, 12, 1)
    assert e["faults"] < r["faults"] < rows["none"]["faults"]


def test_prefetch_stays_in_the_2m_region():
    cfg = PagingConfig(memory_pages=64, window=8, direction="forward")
    r = run([Slice(np.array([508]), np.array([False]))], 1024, cfg, "engine")
    assert r.prefetched == 3                          # 509, 510, 511: the leaf table ends
    assert readahead_span(511, 510, 8, 1024) == range(511, 512)
    assert readahead_span(512, 513, 8, 1024) == range(512, 513)


def test_eviction_makes_unused_prefetches_wasted():
    cfg = PagingConfig(memory_pages=9, window=4, direction="forward")
    # Every fault brings the 4 pages after it; none of them is ever touched.
    w = [Slice(np.array([0]), np.array([False])),
         Slice(np.arange(100, 190, 10), np.zeros(9, bool))]
    r = run(w, 512, cfg, "engine")
    assert r.faults == 10 and r.used == 0 and r.wasted == r.prefetched == 40


@pytest.mark.parametrize("args, win", [
    ((5, 4, 0, 0, 8), 2), ((5, 9, 0, 0, 8), 1), ((5, None, 0, 0, 8), 1),
    ((5, 9, 1, 0, 8), 4), ((5, 9, 3, 0, 8), 8), ((5, 9, 6, 0, 8), 8), ((5, 9, 0, 8, 8), 4),
    ((5, 9, 20, 0, 4), 4),
])
def test_readahead_window(args, win):
    assert readahead_window(*args) == win


@pytest.mark.parametrize("seed", range(scale(3)))
def test_invariants_on_random_workloads(seed):
    rng = np.random.default_rng(seed)
    name = ["zipf", "stream", "shifting", "uniform"][seed % 4]
    npages = int(rng.integers(600, 2000))
    w = list(make(name, npages, int(rng.integers(20, 120)), 20, seed=seed))
    cfg = PagingConfig(memory_pages=int(rng.integers(20, 400)),
                       window=int(rng.integers(1, 9)),
                       direction=["forward", "backward", "both"][seed % 3])
    refs = sum(len(s.pages) for s in w)
    distinct = len(np.unique(np.concatenate([s.pages for s in w])))
    for r in compare(w, npages, cfg):
        assert r["used"] + r["wasted"] == r["prefetched"]
        assert r["references"] == refs and r["faults"] <= refs
        assert r["faults"] + r["used"] >= distinct        # each page is first read in somehow
        if r["policy"] == "none":
            assert r["prefetched"] == 0 and r["faults"] >= distinct


@pytest.mark.parametrize("kwargs, match", [
    (dict(memory_pages=8), "memory_pages"),
    (dict(memory_pages=64, window=0), "window"),
    (dict(memory_pages=64, direction="sideways"), "direction"),
    (dict(memory_pages=64, readahead_max=6), "power of two"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PagingConfig(**kwargs)


def test_bad_workload_and_policy():
    cfg = PagingConfig(memory_pages=64)
    with pytest.raises(ValueError, match="policy"):
        run(stream(2), 16, cfg, "oracle")
    with pytest.raises(ValueError, match="outside"):
        run(stream(20), 16, cfg, "none")
    with pytest.raises(ValueError, match="no slices"):
        compare([], 16, cfg)
