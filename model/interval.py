"""Scan-interval controller: how long a scan period is, and when the next pass starts.

The scanner runs passes over the host table; the controller decides the period between pass
starts. Time is counted in engine clock cycles and every quantity is an unsigned integer
that fits a hardware register; fractions are fixed point. The controller has three modes
(:class:`IntervalConfig` ``mode``):

``"fixed"``
    The period is a register that software writes (:meth:`IntervalController.set_period`).

``"migration"``
    Migration-aligned. Software writes two registers, ``batch_pages`` (pages in the batch
    being sent) and ``cycles_per_page_q16`` (cycles to transmit one page on the link, unsigned
    Q16.16), and the period becomes::

        period = clamp((batch_pages * cycles_per_page_q16) >> 16, min_period, max_period)

    With ``cycles_per_page_q16`` computed by :func:`cycles_per_page_q16` from the page size,
    the link bandwidth and the engine clock, the period equals ``batch_pages * page_size /
    bandwidth`` (in cycles, truncated, and up to the rounding of the Q16.16 register), the
    time the batch takes to send: a pass that starts with the batch delivers fresh levels when
    the batch ends, ready to choose the next one.

``"ratio"``
    Access-ratio goal (the hardware adapts the period by itself). After each pass that saw
    ``leaves > 0`` present leaves, ``accessed`` of them with the A bit set, and with ``target``
    and ``hysteresis`` unsigned Q0.16 fractions and ``s = step_shift``::

        step = max(1, period >> s)
        if accessed * 65536 > (target + hysteresis) * leaves:
            period -= step
        elif target > hysteresis and accessed * 65536 < (target - hysteresis) * leaves:
            period += step
        period = clamp(period, min_period, max_period)

    A longer period gives every page more time to be touched between two passes, so the
    fraction seen accessed grows with the period: a ratio above the band shortens the period
    and a ratio below it lengthens it. Inside the band ``[target - hysteresis, target +
    hysteresis]`` (bounds included) the period does not move, so the loop settles instead of
    hunting. Each step is about ``2**-s`` of the period (at least one cycle). A pass with
    ``leaves == 0`` leaves the period unchanged. When ``target + hysteresis >= 65536`` the
    period never shortens; when ``target <= hysteresis`` it never lengthens.

Pass timing (all modes). A pass starts at ``last_start``. When it ends, after
``pass_cycles`` cycles, :meth:`IntervalController.end_pass` compares its length with the
period in force at that moment (the ``period`` register as last written or adapted):

* ``pass_cycles > period``: an overrun. The sticky ``overrun`` flag is set, the saturating
  ``overrun_count`` counts it, and the next pass starts at once, at ``last_start +
  pass_cycles``.
* otherwise the next pass starts ``period`` cycles after this one started, at ``last_start +
  period`` (a pass exactly as long as the period is not an overrun).

Only then does ratio mode adapt the period from the pass's counts; the new period governs the
next pass. Register writes (:meth:`~IntervalController.set_period`,
:meth:`~IntervalController.set_batch`) take effect at once and so apply to the pass in
progress.

Registers a register block exposes: ``period`` (32 bits), ``batch_pages`` (32 bits),
``cycles_per_page_q16`` (32 bits), ``overrun`` (1 bit, sticky, cleared by
:meth:`~IntervalController.clear_overrun`), ``overrun_count`` (32 bits, saturating) and
``last_start`` (64-bit cycle timestamp of the pass in progress).
"""

from dataclasses import dataclass
from numbers import Integral

__all__ = [
    "MODES", "REG_MAX", "TIME_MAX", "Q16_ONE", "IntervalConfig", "PassTiming", "IntervalController",
    "cycles_per_page_q16",
]

#: Scan-interval modes.
MODES = ("fixed", "migration", "ratio")
#: Largest value of a 32-bit register (period, batch size, Q16.16 rate, counters).
REG_MAX = (1 << 32) - 1
#: Largest value of the 64-bit cycle timestamp.
TIME_MAX = (1 << 64) - 1
#: One in Q16.16 and the scale of a Q0.16 fraction.
Q16_ONE = 1 << 16


def _int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]``, or a ValueError that shows it."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def cycles_per_page_q16(page_bytes: int, link_bytes_per_s: int, clock_hz: int) -> int:
    """Value of the ``cycles_per_page_q16`` register for a page size, link and clock.

    Parameters
    ----------
    page_bytes : int
        Bytes sent per page (4096 for 4 KiB pages), at least 1.
    link_bytes_per_s : int
        Link bandwidth available to the migration stream, bytes per second, at least 1.
    clock_hz : int
        Engine clock frequency, Hz, at least 1.

    Returns
    -------
    int
        ``page_bytes * clock_hz / link_bytes_per_s`` cycles in unsigned Q16.16, rounded to
        nearest (halves up) and at least 1. With it, the migration-mode period
        ``(batch_pages * value) >> 16`` equals ``batch_pages * page_bytes /
        link_bytes_per_s`` seconds expressed in cycles, up to the register's rounding.

    Raises
    ------
    ValueError
        An argument is not a positive integer, or the result exceeds the 32-bit register
        (more than 65535.99 cycles per page: the link is too slow for this clock).
    """
    page_bytes = _int("page_bytes", page_bytes, 1, TIME_MAX)
    link = _int("link_bytes_per_s", link_bytes_per_s, 1, TIME_MAX)
    clock_hz = _int("clock_hz", clock_hz, 1, TIME_MAX)
    num = page_bytes * clock_hz * Q16_ONE
    value = max(1, (2 * num + link) // (2 * link))
    if value > REG_MAX:
        raise ValueError(
            f"cycles per page {num / link / Q16_ONE:.2f} does not fit the Q16.16 register "
            f"(at most {REG_MAX / Q16_ONE:.2f}); page_bytes={page_bytes}, "
            f"link_bytes_per_s={link}, clock_hz={clock_hz}: use a faster link figure or a "
            f"slower clock")
    return value


@dataclass(frozen=True, kw_only=True)
class IntervalConfig:
    """Configuration of the scan-interval controller; see the module documentation.

    Parameters
    ----------
    mode : str
        ``"fixed"``, ``"migration"`` or ``"ratio"``.
    period : int
        Initial period in cycles (the fixed period in ``"fixed"`` mode, the period before
        the first batch in ``"migration"`` mode, the starting point in ``"ratio"`` mode).
    min_period, max_period : int
        Clamps, ``1 <= min_period <= period <= max_period <= 2**32 - 1``.
    target : int
        Ratio mode: goal for ``accessed / leaves`` as unsigned Q0.16 (``0..65535``).
    hysteresis : int
        Ratio mode: half-width of the dead band around ``target``, Q0.16 (``0..65535``).
    step_shift : int
        Ratio mode: each adjustment moves the period by ``max(1, period >> step_shift)``
        cycles (``0..16``).

    Raises
    ------
    ValueError
        A value is not an integer, is out of range or breaks the ordering of the clamps;
        the message shows the value.
    """

    mode: str = "fixed"
    period: int
    min_period: int = 1
    max_period: int = REG_MAX
    target: int = Q16_ONE // 4
    hysteresis: int = Q16_ONE // 32
    step_shift: int = 3

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        _int("min_period", self.min_period, 1, REG_MAX)
        _int("max_period", self.max_period, 1, REG_MAX)
        _int("period", self.period, 1, REG_MAX)
        if not self.min_period <= self.period <= self.max_period:
            raise ValueError(
                f"need min_period <= period <= max_period, got min_period={self.min_period}, "
                f"period={self.period}, max_period={self.max_period}")
        _int("target", self.target, 0, Q16_ONE - 1)
        _int("hysteresis", self.hysteresis, 0, Q16_ONE - 1)
        _int("step_shift", self.step_shift, 0, 16)


@dataclass(frozen=True)
class PassTiming:
    """What :meth:`IntervalController.end_pass` decided about one pass.

    Attributes
    ----------
    start : int
        Cycle at which the pass started.
    cycles : int
        Length of the pass.
    period_used : int
        Period in force when the pass ended, the one its length was checked against.
    overrun : bool
        ``cycles > period_used``.
    next_start : int
        Cycle at which the next pass starts.
    period : int
        Period in force for the next pass (after ratio-mode adaptation).
    """

    start: int
    cycles: int
    period_used: int
    overrun: bool
    next_start: int
    period: int


class IntervalController:
    """The scan-interval controller of one engine.

    Parameters
    ----------
    config : IntervalConfig
        Mode, clamps and ratio-mode parameters.
    start : int
        Cycle at which the first pass starts (default 0).

    Notes
    -----
    State (what a register block exposes): ``period``, ``batch_pages``,
    ``cycles_per_page_q16``, ``overrun``, ``overrun_count`` and ``last_start``. The period
    always stays within ``[min_period, max_period]``.
    """

    def __init__(self, config: IntervalConfig, *, start: int = 0):
        if not isinstance(config, IntervalConfig):
            raise ValueError(f"config must be an IntervalConfig, got {config!r}")
        self._config = config
        self._start0 = _int("start", start, 0, TIME_MAX)
        self.reset()

    def reset(self):
        """Return to the state after construction (registers and counters cleared)."""
        self._period = self._config.period
        self._batch_pages = 0
        self._cpp_q16 = 0
        self._overrun = False
        self._overrun_count = 0
        self._last_start = self._start0

    # --- registers -------------------------------------------------------------------------

    @property
    def config(self) -> IntervalConfig:
        return self._config

    @property
    def period(self) -> int:
        """Period in force, cycles."""
        return self._period

    @property
    def batch_pages(self) -> int:
        return self._batch_pages

    @property
    def cycles_per_page_q16(self) -> int:
        return self._cpp_q16

    @property
    def overrun(self) -> bool:
        """Sticky: some pass since the last :meth:`clear_overrun` was longer than its period."""
        return self._overrun

    @property
    def overrun_count(self) -> int:
        """Passes that overran since reset (32-bit, saturating)."""
        return self._overrun_count

    @property
    def last_start(self) -> int:
        """Start cycle of the pass in progress."""
        return self._last_start

    def _clamp(self, value: int) -> int:
        return min(max(value, self._config.min_period), self._config.max_period)

    def set_period(self, period: int) -> int:
        """Write the period register (any mode); returns the period now in force.

        The value is clamped to ``[min_period, max_period]``. In ``"migration"`` mode the next
        :meth:`set_batch` overwrites it; in ``"ratio"`` mode adaptation continues from it.

        Raises
        ------
        ValueError
            ``period`` is not an integer in ``0..2**32 - 1``.
        """
        self._period = self._clamp(_int("period", period, 0, REG_MAX))
        return self._period

    def set_batch(self, batch_pages: int, cycles_per_page_q16: int) -> int:
        """Write the migration registers; returns the period now in force.

        The registers are stored in every mode, but only ``"migration"`` mode derives the
        period from them: ``clamp((batch_pages * cycles_per_page_q16) >> 16, min, max)``.

        Raises
        ------
        ValueError
            A value is not an integer in ``0..2**32 - 1``.
        """
        self._batch_pages = _int("batch_pages", batch_pages, 0, REG_MAX)
        self._cpp_q16 = _int("cycles_per_page_q16", cycles_per_page_q16, 0, REG_MAX)
        if self._config.mode == "migration":
            self._period = self._clamp((self._batch_pages * self._cpp_q16) >> 16)
        return self._period

    def clear_overrun(self):
        """Clear the sticky ``overrun`` flag (``overrun_count`` keeps its value)."""
        self._overrun = False

    # --- passes ----------------------------------------------------------------------------

    def end_pass(self, pass_cycles: int, accessed: int = 0, leaves: int = 0) -> PassTiming:
        """Account for the pass that started at :attr:`last_start` and schedule the next.

        Parameters
        ----------
        pass_cycles : int
            Length of the pass in cycles, ``0..2**32 - 1``.
        accessed : int
            Leaves the pass found with the A bit set, ``0..leaves``.
        leaves : int
            Present leaves the pass visited, ``0..2**32 - 1``.

        Returns
        -------
        PassTiming
            The pass's overrun verdict, the start cycle of the next pass (which becomes
            :attr:`last_start`) and the period in force for it.

        Raises
        ------
        ValueError
            A count is not an integer in range, or ``accessed > leaves``.
        """
        pass_cycles = _int("pass_cycles", pass_cycles, 0, REG_MAX)
        leaves = _int("leaves", leaves, 0, REG_MAX)
        accessed = _int("accessed", accessed, 0, REG_MAX)
        if accessed > leaves:
            raise ValueError(f"accessed ({accessed}) cannot exceed leaves ({leaves})")
        start, used = self._last_start, self._period
        overrun = pass_cycles > used
        next_start = start + max(pass_cycles, used)
        if next_start > TIME_MAX:
            raise ValueError(f"cycle timestamp overflows 64 bits after pass start {start}")
        if overrun:
            self._overrun = True
            self._overrun_count = min(self._overrun_count + 1, REG_MAX)
        self._last_start = next_start
        if self._config.mode == "ratio" and leaves:
            self._period = self._adapt(accessed, leaves)
        return PassTiming(start=start, cycles=pass_cycles, period_used=used, overrun=overrun,
                          next_start=next_start, period=self._period)

    def _adapt(self, accessed: int, leaves: int) -> int:
        c = self._config
        p = self._period
        step = max(1, p >> c.step_shift)
        seen = accessed * Q16_ONE
        if seen > (c.target + c.hysteresis) * leaves:
            p -= step
        elif c.target > c.hysteresis and seen < (c.target - c.hysteresis) * leaves:
            p += step
        return self._clamp(p)
