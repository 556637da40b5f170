"""Scan-interval controller (``model.interval``): modes, clamps, overruns, configuration."""


import pytest
from hypothesis import given, settings, strategies as st

from model.interval import (
    MODES, Q16_ONE, REG_MAX, IntervalConfig, IntervalController, PassTiming,
    cycles_per_page_q16,
)

from .helpers import scale



def ctl(**kw) -> IntervalController:
    return IntervalController(IntervalConfig(**kw))


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, shown", [
    (dict(mode="adaptive", period=10), "'adaptive'"),
    (dict(period=0), "got 0"),
    (dict(period=1 << 32), str(1 << 32)),
    (dict(period=10, min_period=0), "got 0"),
    (dict(period=10, min_period=11), "min_period=11"),
    (dict(period=10, max_period=9), "max_period=9"),
    (dict(period=10, max_period=1 << 32), str(1 << 32)),
    (dict(period=2.5), "2.5"),
    (dict(period=10, target=65536), "65536"),
    (dict(period=10, target=-1), "-1"),
    (dict(period=10, hysteresis=70000), "70000"),
    (dict(period=10, step_shift=17), "17"),
    (dict(period=10, step_shift=True), "True"),
])
def test_bad_config_names_the_value(kw, shown):
    with pytest.raises(ValueError, match=shown.replace(".", r"\.")):
        IntervalConfig(**kw)


def test_config_is_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        IntervalConfig("fixed", 10)
    c = IntervalConfig(period=10)
    with pytest.raises(AttributeError):
        c.period = 11


@pytest.mark.parametrize("call, shown", [
    (lambda c: c.end_pass(1 << 32), str(1 << 32)),
    (lambda c: c.end_pass(5, accessed=-1, leaves=3), "-1"),
    (lambda c: c.end_pass(5, accessed=4, leaves=3), r"accessed \(4\).*leaves \(3\)"),
    (lambda c: c.set_period(-5), "-5"),
    (lambda c: c.set_batch(1 << 32, 1), str(1 << 32)),
    (lambda c: c.set_batch(1, 1.5), "1.5"),
])
def test_bad_register_values_name_the_value(call, shown):
    c = ctl(mode="ratio", period=100)
    with pytest.raises(ValueError, match=shown):
        call(c)
    assert c.period == 100 and c.last_start == 0 and not c.overrun


# --- fixed mode and overruns --------------------------------------------------------------------

def test_fixed_period_schedules_passes_a_period_apart():
    c = IntervalController(IntervalConfig(period=1000), start=50)
    t = c.end_pass(400, accessed=10, leaves=10)
    assert t == PassTiming(start=50, cycles=400, period_used=1000, overrun=False,
                           next_start=1050, period=1000)
    t = c.end_pass(1000)                      # exactly the period: not an overrun
    assert (t.start, t.overrun, t.next_start) == (1050, False, 2050)
    assert c.last_start == 2050 and c.overrun_count == 0 and not c.overrun


def test_overrun_starts_next_pass_at_once_and_is_sticky():
    c = ctl(period=1000)
    t = c.end_pass(1500)
    assert t.overrun and t.next_start == 1500
    assert c.overrun and c.overrun_count == 1
    t = c.end_pass(200)                       # on time again: flag stays, count stays
    assert not t.overrun and t.next_start == 2500
    assert c.overrun and c.overrun_count == 1
    c.end_pass(1001)
    c.end_pass(3000)
    assert c.overrun_count == 3 and c.last_start == 2500 + 1001 + 3000
    c.clear_overrun()
    assert not c.overrun and c.overrun_count == 3
    c.end_pass(10)
    assert not c.overrun


def test_overrun_count_saturates():
    c = ctl(period=10)
    c._overrun_count = REG_MAX - 1
    c.end_pass(11)
    c.end_pass(11)
    assert c.overrun_count == REG_MAX


def test_set_period_clamps_and_applies_to_the_pass_in_progress():
    c = ctl(period=100, min_period=50, max_period=200)
    assert c.set_period(10) == 50
    assert c.set_period(10_000) == 200
    assert c.set_period(120) == 120
    t = c.end_pass(110)
    assert t.period_used == 120 and not t.overrun and t.next_start == 120
    c.set_period(100)
    assert c.end_pass(110).overrun


def test_reset_restores_configuration_state():
    c = IntervalController(IntervalConfig(mode="migration", period=77), start=5)
    c.set_batch(10, 3 * Q16_ONE)
    c.end_pass(1000)
    c.reset()
    assert (c.period, c.batch_pages, c.cycles_per_page_q16, c.overrun, c.overrun_count,
            c.last_start) == (77, 0, 0, False, 0, 5)


# --- migration mode -----------------------------------------------------------------------------

def test_cycles_per_page_hand_values():
    # 4 KiB pages, 10 Gbit/s (1.25 GB/s) link, 200 MHz: 655.36 cycles a page.
    assert cycles_per_page_q16(4096, 1_250_000_000, 200_000_000) == 42_949_673
    # Exactly 4 cycles a page is 4.0 in Q16.16.
    assert cycles_per_page_q16(4096, 1024, 1) == 4 * Q16_ONE
    # Rounded to nearest: 1/3 of a cycle is 21845.33 -> 21845; 2/3 is 43690.67 -> 43691.
    assert cycles_per_page_q16(1, 3, 1) == 21845
    assert cycles_per_page_q16(2, 3, 1) == 43691
    # Half a unit rounds up: 1/131072 cycle is 0.5 in Q16.16.
    assert cycles_per_page_q16(1, 131072, 1) == 1
    # Never zero, however fast the link.
    assert cycles_per_page_q16(1, 10**12, 1) == 1


def test_cycles_per_page_rejects_what_the_register_cannot_hold():
    with pytest.raises(ValueError, match="link_bytes_per_s=1000"):
        cycles_per_page_q16(4096, 1000, 100_000_000)
    assert cycles_per_page_q16(65535, 1, 1) == 65535 * Q16_ONE
    with pytest.raises(ValueError, match="65536"):
        cycles_per_page_q16(65536, 1, 1)
    for args in [(0, 1, 1), (1, 0, 1), (1, 1, 0), (1.0, 1, 1)]:
        with pytest.raises(ValueError):
            cycles_per_page_q16(*args)


def test_migration_period_is_batch_transmit_time():
    c = ctl(mode="migration", period=5000)
    assert c.period == 5000                    # before the first batch
    cpp = cycles_per_page_q16(4096, 1_250_000_000, 200_000_000)
    # 1000 pages * 4096 B / 1.25 GB/s = 3.2768 ms = 655360 cycles at 200 MHz.
    assert c.set_batch(1000, cpp) == 655_360
    assert (c.batch_pages, c.cycles_per_page_q16) == (1000, cpp)
    # 3 pages at 2.5 cycles a page: 7.5 cycles, truncated to 7.
    assert c.set_batch(3, 5 * Q16_ONE // 2) == 7
    t = c.end_pass(6)
    assert t.period_used == 7 and t.next_start == 7


def test_migration_period_is_clamped():
    c = ctl(mode="migration", period=100, min_period=50, max_period=1000)
    assert c.set_batch(0, 123 * Q16_ONE) == 50
    assert c.set_batch(10, 1 * Q16_ONE) == 50
    assert c.set_batch(REG_MAX, REG_MAX) == 1000
    assert c.set_batch(7, 100 * Q16_ONE) == 700


@given(pages=st.integers(0, REG_MAX), cpp=st.integers(0, REG_MAX))
@settings(max_examples=scale(100), deadline=None)
def test_migration_formula(pages, cpp):
    c = ctl(mode="migration", period=1)
    assert c.set_batch(pages, cpp) == min(REG_MAX, max(1, pages * cpp // Q16_ONE))


@pytest.mark.parametrize("mode", ["fixed", "ratio"])
def test_batch_registers_do_not_move_other_modes(mode):
    c = ctl(mode=mode, period=123)
    assert c.set_batch(1000, 10 * Q16_ONE) == 123
    assert c.batch_pages == 1000


# --- ratio mode: single steps -------------------------------------------------------------------

QUARTER, EIGHTH = Q16_ONE // 4, Q16_ONE // 8


@pytest.mark.parametrize("period, accessed, leaves, expected", [
    (1000, 500, 1000, 875),     # 50 % > 25 % + 12.5 %: shorten by 1000 >> 3
    (1000, 100, 1000, 1125),    # 10 % < 25 % - 12.5 %: lengthen by 1000 >> 3
    (1000, 250, 1000, 1000),    # on target
    (1000, 375, 1000, 1000),    # upper edge of the band, included
    (1000, 376, 1000, 875),
    (1000, 125, 1000, 1000),    # lower edge of the band, included
    (1000, 124, 1000, 1125),
    (1000, 0, 0, 1000),         # no leaves: unchanged
    (5, 5, 5, 4),               # 5 >> 3 == 0: step of one cycle
    (5, 0, 5, 6),
])
def test_ratio_step(period, accessed, leaves, expected):
    c = ctl(mode="ratio", period=period, target=QUARTER, hysteresis=EIGHTH, step_shift=3)
    assert c.end_pass(1, accessed=accessed, leaves=leaves).period == expected
    assert c.period == expected


def test_ratio_adapts_after_the_overrun_check():
    c = ctl(mode="ratio", period=1000, target=QUARTER, hysteresis=0, step_shift=1)
    t = c.end_pass(900, accessed=1000, leaves=1000)
    # Checked against 1000 (no overrun, next start at 1000); then halved for the next pass.
    assert (t.period_used, t.overrun, t.next_start, t.period) == (1000, False, 1000, 500)
    t = c.end_pass(900, accessed=1000, leaves=1000)
    assert (t.period_used, t.overrun, t.next_start, t.period) == (500, True, 1900, 250)


def test_ratio_clamps_and_extreme_steps():
    c = ctl(mode="ratio", period=100, min_period=60, max_period=150, target=QUARTER,
            hysteresis=0, step_shift=0)
    assert c.end_pass(1, accessed=10, leaves=10).period == 60    # 100 - 100, clamped
    assert c.end_pass(1, accessed=0, leaves=10).period == 120    # doubled
    assert c.end_pass(1, accessed=0, leaves=10).period == 150    # clamped


def test_ratio_band_edges_that_disable_a_direction():
    # target <= hysteresis: the lower edge is at or below zero, the period never lengthens.
    c = ctl(mode="ratio", period=100, target=1000, hysteresis=1000)
    assert c.end_pass(1, accessed=0, leaves=10).period == 100
    # target + hysteresis >= 1.0: the ratio can never exceed it, the period never shortens.
    c = ctl(mode="ratio", period=100, target=60000, hysteresis=6000)
    assert c.end_pass(1, accessed=10, leaves=10).period == 100
    assert c.end_pass(1, accessed=0, leaves=10).period > 100


# --- properties ---------------------------------------------------------------------------------

@st.composite
def configs(draw):
    lo = draw(st.integers(1, REG_MAX))
    hi = draw(st.integers(lo, REG_MAX))
    return IntervalConfig(mode=draw(st.sampled_from(MODES)), period=draw(st.integers(lo, hi)),
                          min_period=lo, max_period=hi, target=draw(st.integers(0, 65535)),
                          hysteresis=draw(st.integers(0, 65535)),
                          step_shift=draw(st.integers(0, 16)))


@st.composite
def passes(draw):
    leaves = draw(st.integers(0, REG_MAX))
    return ("pass", draw(st.integers(0, REG_MAX)), draw(st.integers(0, leaves)), leaves)


ops = st.one_of(
    passes(),
    st.tuples(st.just("set"), st.integers(0, REG_MAX)),
    st.tuples(st.just("batch"), st.integers(0, REG_MAX), st.integers(0, REG_MAX)),
)


@given(config=configs(), script=st.lists(ops, max_size=40))
@settings(max_examples=scale(200), deadline=None)
def test_period_stays_within_clamps_and_timing_is_consistent(config, script):
    c = IntervalController(config)
    overruns = 0
    for op in script:
        if op[0] == "pass":
            before, start = c.period, c.last_start
            t = c.end_pass(*op[1:])
            assert t.start == start and t.period_used == before
            assert t.overrun == (op[1] > before)
            assert t.next_start == start + max(op[1], before) == c.last_start
            overruns += t.overrun
            if config.mode != "ratio" or op[3] == 0:
                assert c.period == before
        elif op[0] == "set":
            c.set_period(op[1])
        else:
            c.set_batch(op[1], op[2])
        assert config.min_period <= c.period <= config.max_period
    assert c.overrun_count == overruns and c.overrun == (overruns > 0)


LEAVES = 1 << 20


def plant(period: int, p_star: int, target: int) -> int:
    """Pages touched per pass: proportional to the period, ``target`` ratio at ``p_star``."""
    return min(LEAVES, period * (target * LEAVES >> 16) // p_star)


def in_band(accessed: int, target: int, hyst: int) -> bool:
    seen = accessed * Q16_ONE
    return (target - hyst) * LEAVES <= seen <= (target + hyst) * LEAVES


@st.composite
def loops(draw):
    s = draw(st.integers(2, 8))
    target = draw(st.integers(2048, 40000))
    # A band wider than one step, so that a step cannot jump over it.
    hyst = draw(st.integers(-(-target >> s), target // 2))
    p_star = draw(st.integers(256, 1 << 20))
    start = draw(st.integers(max(1, p_star // 16), p_star * 16))
    return s, target, hyst, p_star, start


@given(loop=loops())
@settings(max_examples=scale(100), deadline=None)
def test_ratio_mode_settles_monotonically_inside_the_band(loop):
    s, target, hyst, p_star, start = loop
    c = ctl(mode="ratio", period=start, target=target, hysteresis=hyst, step_shift=s)
    direction = 0
    for _ in range(4000):
        before = c.period
        accessed = plant(before, p_star, target)
        c.end_pass(1, accessed=accessed, leaves=LEAVES)
        moved = (c.period > before) - (c.period < before)
        if moved == 0:
            break
        # Ratio too high -> shorter, too low -> longer, and never back again.
        assert moved == (-1 if accessed * Q16_ONE > (target + hyst) * LEAVES else 1)
        assert direction in (0, moved)
        direction = moved
    else:
        pytest.fail(f"no fixed point after 4000 passes, period {c.period}")
    assert in_band(plant(c.period, p_star, target), target, hyst)
    for _ in range(3):
        assert c.end_pass(1, plant(c.period, p_star, target), LEAVES).period == c.period


def test_ratio_mode_tracks_a_change_of_workload():
    target, hyst = QUARTER, Q16_ONE // 64
    c = ctl(mode="ratio", period=10_000, target=target, hysteresis=hyst, step_shift=4)
    for p_star in (50_000, 4_000, 200_000):
        for _ in range(2000):
            c.end_pass(1, plant(c.period, p_star, target), LEAVES)
        assert in_band(plant(c.period, p_star, target), target, hyst)
        # The band is +-1/16 of the target ratio, so the period is within about 1/16 of p_star.
        assert abs(c.period - p_star) * target * 100 <= p_star * hyst * 101
