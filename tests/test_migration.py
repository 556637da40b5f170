"""Live-migration evaluator: QEMU-style address-order pre-copy versus activity order."""

import numpy as np
import pytest

from model.migration import MigrationConfig, compare, precopy
from model.scanned_guest import ScannedGuest
from model.workload import Slice, make
from tests.helpers import scale


def written(pages):
    p = np.asarray(pages, dtype=np.int64)
    return Slice(p, np.ones(len(p), dtype=bool))


EMPTY = Slice(np.zeros(0, np.int64), np.zeros(0, bool))

# 1 MHz clock and a link of 1000 pages/s: one page is exactly 1000 cycles, a batch of 8
# pages 8000 cycles, the length of one slice.
HAND = dict(bandwidth=4096 * 1000, clock_hz=1_000_000, batch_pages=8, slice_us=8000,
            start_slice=4, downtime_ms=4)


def phase_workload():
    """Pages 0..7 written in slices 0..9, nothing afterwards; 64 guest pages."""
    return [written(range(8))] * 10 + [EMPTY] * 30


def test_hand_built_hot_set_address_order_resends_it():
    r = precopy(phase_workload(), 64, MigrationConfig(**HAND), "address")
    # Round 1 sends 0..7 first (slice 4); slices 5..9 write them again: 8 dirty > 4 -> a
    # second round of 8; nothing is written after that.
    assert (r.rounds, r.per_round, r.final_pages, r.pages_sent) == (2, [64, 8], 0, 72)
    assert r.converged and r.total_s == pytest.approx(72 * 1e-3)


def test_hand_built_hot_set_activity_order_sends_it_last():
    r = precopy(phase_workload(), 64, MigrationConfig(**HAND), "activity")
    # The warm-up passes rank 0..7 hot: they go in the last batch (cycles 88000..96000),
    # after their last write (slice 9 ends at 80000), so one round suffices.
    assert (r.rounds, r.per_round, r.final_pages, r.pages_sent) == (1, [64], 0, 64)
    assert r.scans >= 12                              # one pass per batch time, from cycle 0


def test_threshold_covering_everything_is_stop_and_copy_at_once():
    cfg = MigrationConfig(**{**HAND, "downtime_ms": 1000})
    r = precopy(phase_workload(), 64, cfg, "address")
    assert (r.rounds, r.final_pages, r.pages_sent) == (0, 64, 64)
    assert r.downtime_s == pytest.approx(0.064)


def test_never_converging_guest_is_stopped_after_max_rounds():
    cfg = MigrationConfig(**{**HAND, "max_rounds": 3})
    r = precopy([written(range(16))], 64, cfg, "address")
    assert r.rounds == 3 and not r.converged and r.final_pages == 16


@pytest.mark.parametrize("seed", range(scale(3)))
def test_invariants_on_random_workloads(seed):
    rng = np.random.default_rng(seed)
    name = ["uniform", "zipf", "shifting", "stream"][seed % 4]
    npages = int(rng.integers(300, 1500))
    sl = list(make(name, npages, int(rng.integers(20, 200)), 24, seed=seed))
    bws = [int(rng.integers(5, 80)) * 10**6]
    rows = compare(sl, npages, bws, batch_pages=int(rng.integers(16, 128)), slice_us=100,
                   max_rounds=8, start_slice=int(rng.integers(0, 6)))
    assert [r["policy"] for r in rows] == ["address", "activity"]
    for r in rows:
        assert r["pages_sent"] >= npages
        assert r["pages_sent"] == sum(r["per_round"]) + r["final_pages"]
        if r["rounds"]:
            assert r["per_round"][0] == npages
        assert r["rounds"] <= 8
        assert r["converged"] == (r["final_pages"] <= MigrationConfig(
            bandwidth=bws[0], downtime_ms=5).threshold_pages)


def test_deterministic():
    sl = list(make("zipf", 800, 100, 20, seed=3))
    a = compare(sl, 800, [20_000_000], slice_us=50, max_rounds=5)
    b = compare(sl, 800, [20_000_000], slice_us=50, max_rounds=5)
    assert a == b


def test_scanned_guest_levels_follow_touches():
    g = ScannedGuest(1000)
    assert g.npages == 1000 and g.regions == 2
    for _ in range(3):
        g.touch(np.array([3, 700]), np.array([True, False]))
        g.scan()
    g.scan()
    lv = g.levels()
    assert lv[3] == lv[700] == 2 and lv.sum() == 4          # up 3 times, down once
    with pytest.raises(ValueError, match="outside"):
        g.touch(np.array([1000]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(bandwidth=0), "bandwidth"),
    (dict(bandwidth=10**8, batch_pages=0), "batch_pages"),
    (dict(bandwidth=10**8, downtime_ms=-1), "downtime_ms"),
    (dict(bandwidth=10**8, start_slice=-1), "start_slice"),
    (dict(bandwidth=10**8, slice_us=1e-6), "shorter than one cycle"),
    (dict(bandwidth=1, clock_hz=10**9), "does not fit"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MigrationConfig(**kwargs)


def test_bad_workload_and_policy():
    cfg = MigrationConfig(bandwidth=10**8)
    with pytest.raises(ValueError, match="policy"):
        precopy([written([1])], 8, cfg, "random")
    with pytest.raises(ValueError, match="no slices"):
        precopy([], 8, cfg, "address")
    with pytest.raises(ValueError, match="outside"):
        precopy([written([8])], 8, cfg, "activity")
