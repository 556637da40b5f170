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
