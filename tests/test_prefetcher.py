"""Prefetcher: non-resident neighbours, nearest first, read-only."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from model.pagetable import SIZE_4K, SIZE_2M
from model.prefetcher import Prefetcher, PrefetchConfig, PrefetchRequest, window_order
from model.system import GuestSystem

from .helpers import scale

BASE = 0x5555_0000_0000          # 2 MiB aligned


def build(host="ept", resident=None, n=512):
    """A guest with pages BASE + i*4K for i in 0..n-1; ``resident(i)`` says whether the
    host maps the page's GPA (else it is unmapped: swapped out)."""
    s = GuestSystem(guest_ram=8 << 20, host=host)
    sp = s.new_space()
    gpas = {}
    for i in range(n):
        gpa = s.alloc_data()
        sp.map(BASE + i * SIZE_4K, gpa)
        gpas[i] = gpa
    for i, gpa in gpas.items():
        if resident is not None and not resident(i):
            s.host.unmap(gpa)
    return s, sp, gpas


def test_window_order_nearest_first_forward_first():
    assert window_order(10, 3, "both") == [11, 9, 12, 8, 13, 7]
    assert window_order(10, 3, "forward") == [11, 12, 13]
    assert window_order(1, 3, "backward") == [0]
    assert window_order(511, 2, "both") == [510, 509]


def test_emits_non_resident_neighbours_nearest_first():
    s, sp, gpas = build(resident=lambda i: i % 2 == 0)
    p = Prefetcher(s.mem, window=4, direction="both")
    r = p.prefetch(PrefetchRequest(BASE + 100 * SIZE_4K, sp.root, s.hroot))
    assert r.status == "ok"
    assert r.gpas == (gpas[101], gpas[99], gpas[103], gpas[97])
    assert r.gvas == tuple(BASE + i * SIZE_4K for i in (101, 99, 103, 97))


def test_window_stays_inside_the_leaf_table():
    s, sp, gpas = build(resident=lambda i: False)
    p = Prefetcher(s.mem, window=8, direction="forward")
    r = p.prefetch(PrefetchRequest(BASE + 509 * SIZE_4K, sp.root, s.hroot))
    assert r.gpas == (gpas[510], gpas[511])


def test_prefetch_never_writes_memory():
    s, sp, _ = build(resident=lambda i: i % 3 == 0)
    snap = s.mem.copy()
    p = Prefetcher(s.mem, window=16)
    for i in range(0, 512, 37):
        p.prefetch(PrefetchRequest(BASE + i * SIZE_4K, sp.root, s.hroot))
    assert s.mem.diff(snap) == []


def test_large_guest_page_and_guest_fault_and_bus_error():
    s = GuestSystem(guest_ram=8 << 20)
    sp = s.new_space()
    sp.map(BASE, s.alloc_data(SIZE_2M), size=SIZE_2M)
    p = Prefetcher(s.mem)
    assert p.prefetch(PrefetchRequest(BASE, sp.root, s.hroot)).status == "no_leaf_table"
    assert p.prefetch(PrefetchRequest(BASE + (1 << 39), sp.root, s.hroot)).status \
        == "guest_fault"
    s.mem.poison(s.gphys.hpa(sp.root) + 8 * ((BASE >> 39) & 511))
    r = p.prefetch(PrefetchRequest(BASE, sp.root, s.hroot))
    assert r.status == "bus_error" and r.gpas == ()


@pytest.mark.parametrize("host", ["ept", "npt"])
@settings(max_examples=scale(10), deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), window=st.integers(1, 40),
       direction=st.sampled_from(["forward", "backward", "both"]))
def test_matches_brute_force(host, seed, window, direction):
    rnd = random.Random(seed)
    absent = set(rnd.sample(range(512), rnd.randrange(0, 200)))
    s, sp, gpas = build(host, resident=lambda i: i not in absent)
    index = rnd.randrange(512)
    r = Prefetcher(s.mem, window=window, direction=direction, host=host).prefetch(
        PrefetchRequest(BASE + index * SIZE_4K + 0x10, sp.root, s.hroot))
    expect = tuple(gpas[i] for i in window_order(index, window, direction) if i in absent)
    assert r.gpas == expect


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="0"):
        PrefetchConfig(window=0)
    with pytest.raises(ValueError, match="'sideways'"):
        PrefetchConfig(direction="sideways")


def test_log_lists_every_reference_in_order():
    s, sp, _ = build(resident=lambda i: i % 2 == 0)
    p = Prefetcher(s.mem, window=2, direction="forward")
    r = p.prefetch(PrefetchRequest(BASE + 10 * SIZE_4K, sp.root, s.hroot))
    # guest walk (3 x (4 host + 1 guest)), leaf table (4), burst (2), two host walks
    assert len(p.log) == 15 + 4 + 2 + 4 + 4 and r.reads == len(p.log)
    burst = p.log[19:21]
    assert burst[1] == burst[0] + 8


def test_window_burst_is_read_to_its_end_on_an_error():
    s, sp, _ = build(resident=lambda i: False)
    p = Prefetcher(s.mem, window=4, direction="both")
    req = PrefetchRequest(BASE + 100 * SIZE_4K, sp.root, s.hroot)
    assert p.prefetch(req).gpas
    clean = list(p.log)
    first = clean[19]                              # the burst's first word (index 96)
    s.mem.poison(first + 8, "DECERR")
    r = p.prefetch(req)
    assert r.status == "bus_error" and r.gpas == ()
    assert p.log == clean[:19 + 9]                 # all nine words of the span, then stop
    assert r.reads == 19 + 8


def test_window_span_and_statuses():
    from model.prefetcher import STATUSES, window_span
    assert window_span(10, 3, "both") == (7, 13)
    assert window_span(0, 3, "both") == (1, 3)
    assert window_span(511, 3, "forward") is None
    assert STATUSES[:5] == ("ok", "no_leaf_table", "guest_fault", "host_fault", "bus_error")


def test_dropped_is_a_prefix_of_the_result():
    from model.prefetcher import dropped
    s, sp, gpas = build(resident=lambda i: False)
    r = Prefetcher(s.mem, window=3).prefetch(PrefetchRequest(BASE + 50 * SIZE_4K, sp.root,
                                                              s.hroot))
    d = dropped(r, 2)
    assert d.status == "dropped" and d.gpas == r.gpas[:2] and d.gvas == r.gvas[:2]
    with pytest.raises(ValueError, match="got -1"):
        dropped(r, -1)
