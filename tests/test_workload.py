"""Synthetic workloads: deterministic, in range, distinct pages per slice."""

import numpy as np
import pytest

from model import workload as wl


@pytest.mark.parametrize("name", sorted(wl.GENERATORS))
def test_generators_are_deterministic_and_in_range(name):
    a = list(wl.make(name, 5000, 800, 4, seed=3))
    b = list(wl.make(name, 5000, 800, 4, seed=3))
    assert len(a) == 4
    for x, y in zip(a, b):
        assert np.array_equal(x.pages, y.pages) and np.array_equal(x.writes, y.writes)
        assert (np.diff(x.pages) > 0).all()
        assert x.pages.min() >= 0 and x.pages.max() < 5000
        assert 0 < len(x.pages) <= 800


def test_zipf_is_skewed_and_clustered():
    s = next(wl.zipf(1 << 14, 20000, 1, seed=1))
    assert len(s.pages) < 20000 / 4                       # many repeats
    per_region = np.bincount(s.pages // 512, minlength=32)
    assert per_region.max() > 4 * per_region.mean()      # hot pages cluster in regions


def test_shifting_moves_its_hot_set():
    slices = list(wl.shifting(10000, 3000, 8, hot_fraction=0.05, shift_every=4, seed=0))
    first = set(slices[0].pages.tolist()) & set(slices[1].pages.tolist())
    later = set(slices[0].pages.tolist()) & set(slices[5].pages.tolist())
    assert len(first) > 2 * len(later)


def test_stream_sweeps_in_order():
    s = list(wl.stream(100, 30, 4, stride=2))
    assert s[0].pages.tolist() == list(range(0, 60, 2))
    assert s[1].pages.tolist()[0] == 0 and 60 in s[1].pages.tolist()


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="nope"), "'nope'"), (dict(npages=0), "npages"), (dict(touches=-1), "-1"),
])
def test_bad_parameters_are_named(kwargs, match):
    args = dict(name="uniform", npages=10, touches=5, slices=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        list(wl.make(args.pop("name"), **args))
