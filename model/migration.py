"""Live migration: QEMU-style pre-copy versus activity-ordered pre-copy.

A guest of ``npages`` 4 KiB pages runs a workload (a list of :class:`~model.workload.Slice`,
replayed cyclically) while its memory is copied to another host over a link of ``bandwidth``
bytes per second. Both policies below share one transfer model and differ only in the order
in which a round sends its pages.

Transfer model (assumptions)
----------------------------
* Time is counted in engine clock cycles (``clock_hz``). Guest slice ``k`` (``k = 0, 1,
  ...``; trace slice ``k mod len(slices)``) runs during ``[k S, (k + 1) S)`` with ``S =
  slice_cycles``; its touches take effect at the slice's end.
* The guest runs ``start_slice`` slices before migration starts at ``t0 = start_slice * S``
  (the engine scans during that time, so levels are warm when the first batch is chosen).
* Pages go in batches of ``batch_pages``. Sending ``n`` pages takes ``(n * cpp) >> 16``
  cycles, ``cpp`` being :func:`model.interval.cycles_per_page_q16` of the page size, the
  link and the clock: each page costs a full 4 KiB on the link (no zero-page or compression
  shortcut), for both policies.
* Dirty logging starts at ``t0``. A page is clean once sent and dirty again when a slice
  ending after its send writes it (write protection re-armed at send, as with KVM's
  manual dirty-log clearing). Within a batch, writes applied at the batch's end count as
  after the send of every page of the batch.
* Round 1 sends every guest page; round ``r + 1`` sends the pages dirty at the end of round
  ``r``. Before each round, if the dirty pages fit ``bandwidth * downtime`` bytes, or
  ``max_rounds`` rounds have run, the guest stops and the rest is sent (stop-and-copy); the
  downtime is that transfer's time.

Policies
--------
``"address"``  QEMU: each round sends its pages in ascending guest-physical address order.
``"activity"`` The engine's: the EPT scanner (:class:`model.engine.Engine`) classifies every
               page; each batch is the ``batch_pages`` pages of the round with the lowest
               activity level (ties: lowest address), so cold pages go first and hot pages
               last. The scan interval runs in migration-aligned mode: before each batch the
               sender writes ``batch_pages`` and ``cycles_per_page_q16``, so a pass starts
               once per batch time and levels are fresh when the next batch is chosen. A pass
               reads the A bits the guest set up to its start cycle.

The guest's RAM under the engine's scanner is :class:`model.scanned_guest.ScannedGuest`.
"""

from dataclasses import dataclass, field

import numpy as np

from .interval import IntervalConfig, cycles_per_page_q16
from .pagetable import SIZE_4K
from .prioritizer import LargePageConfig
from .scanner import ScanConfig
from .scanned_guest import ScannedGuest
from .workload import Slice

__all__ = ["MigrationConfig", "MigrationResult", "POLICIES", "precopy",
           "compare"]

POLICIES = ("address", "activity")
PAGE_BYTES = SIZE_4K


@dataclass(frozen=True, kw_only=True)
class MigrationConfig:
    """One migration; see the module documentation.

    Parameters
    ----------
    bandwidth : int
        Link bandwidth for the migration stream, bytes per second.
    downtime_ms : float
        Downtime limit: stop-and-copy starts when the dirty pages fit ``bandwidth *
        downtime_ms / 1000`` bytes.
    batch_pages : int
        Pages per batch (and per migration-aligned scan period).
    slice_us : float
        Guest time per workload slice, microseconds.
    start_slice : int
        Slices the guest runs before migration starts.
    max_rounds : int
        Pre-copy rounds before stop-and-copy is forced.
    clock_hz : int
        Engine clock.
    levels : int
        Activity levels of the scanner.
    """

    bandwidth: int
    downtime_ms: float = 5.0
    batch_pages: int = 256
    slice_us: float = 100.0
    start_slice: int = 8
    max_rounds: int = 30
    clock_hz: int = 125_000_000
    levels: int = 4

    def __post_init__(self):
        def positive(name, value, integer=True):
            ok = (isinstance(value, (int, np.integer)) if integer
                  else isinstance(value, (int, float, np.integer, np.floating)))
            if isinstance(value, bool) or not ok or not value > 0:
                raise ValueError(f"MigrationConfig: {name} must be a positive "
                                 f"{'integer' if integer else 'number'}, got {value!r}")
        positive("bandwidth", self.bandwidth)
        positive("downtime_ms", self.downtime_ms, integer=False)
        positive("batch_pages", self.batch_pages)
        positive("slice_us", self.slice_us, integer=False)
        positive("max_rounds", self.max_rounds)
        positive("clock_hz", self.clock_hz)
        if isinstance(self.start_slice, bool) or not isinstance(self.start_slice, int) \
                or self.start_slice < 0:
            raise ValueError(f"MigrationConfig: start_slice must be an integer >= 0, "
                             f"got {self.start_slice!r}")
        if self.slice_cycles < 1:
            raise ValueError(f"MigrationConfig: a slice of {self.slice_us} us is shorter than "
                             f"one cycle of a {self.clock_hz} Hz clock")
        cycles_per_page_q16(PAGE_BYTES, self.bandwidth, self.clock_hz)   # fits the register
        ScanConfig(levels=self.levels)

    @property
    def slice_cycles(self) -> int:
        return round(self.slice_us * self.clock_hz / 1e6)

    @property
    def cpp_q16(self) -> int:
        """Cycles to send one page, Q16.16 (the interval controller's register)."""
        return cycles_per_page_q16(PAGE_BYTES, self.bandwidth, self.clock_hz)

    @property
    def threshold_pages(self) -> int:
        """Dirty pages that fit the downtime limit."""
        return int(self.bandwidth * self.downtime_ms / 1000 // PAGE_BYTES)

    def send_cycles(self, pages: int) -> int:
        """Cycles to send ``pages`` pages."""
        return (pages * self.cpp_q16) >> 16


@dataclass
class MigrationResult:
    """Outcome of one migration.

    Members
    -------
    policy : str
    guest_pages : int
    pages_sent : int
        Every page sent, stop-and-copy included (>= ``guest_pages``).
    rounds : int
        Pre-copy rounds run.
    per_round : list of int
        Pages sent in each round.
    final_pages : int
        Pages sent during stop-and-copy.
    total_s, downtime_s : float
        From the start of migration to the end of stop-and-copy; the stop-and-copy alone.
    converged : bool
        False if ``max_rounds`` forced the stop.
    scans : int
        Scan passes the engine ran (0 for ``"address"``).
    """

    policy: str
    guest_pages: int
    pages_sent: int
    rounds: int
    per_round: list[int]
    final_pages: int
    total_s: float
    downtime_s: float
    converged: bool
    scans: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Guest:
    """The workload's progress in time, the dirty log, and (for "activity") the engine."""

    slices: list[Slice]
    cfg: MigrationConfig
    npages: int
    watched: ScannedGuest | None
    dirty: np.ndarray = field(init=False)
    levels: np.ndarray = field(init=False)
    k: int = 0
    logging_from: int = 0
    scans: int = 0

    def __post_init__(self):
        self.dirty = np.zeros(self.npages, dtype=bool)
        self.levels = np.zeros(self.npages, dtype=np.int64)

    def advance(self, t: int):
        """Apply every slice end and scan pass at or before cycle ``t``, in time order (a
        slice ending exactly when a pass starts is seen by that pass)."""
        S = self.cfg.slice_cycles
        while True:
            end = (self.k + 1) * S
            scan_at = (self.watched.engine.interval.last_start if self.watched is not None
                       else None)
            if end <= t and (scan_at is None or end <= scan_at):
                s = self.slices[self.k % len(self.slices)]
                if self.k * S >= self.logging_from:
                    self.dirty[s.pages[s.writes]] = True
                if self.watched is not None:
                    self.watched.touch(s.pages, s.writes)
                self.k += 1
            elif scan_at is not None and scan_at <= t:
                self.watched.scan()
                self.levels = self.watched.levels()
                self.scans += 1
            else:
                return


def _check_slices(slices, npages: int) -> list[Slice]:
    slices = list(slices)
    if not slices:
        raise ValueError("the workload has no slices")
    for i, s in enumerate(slices):
        if len(s.pages) and (s.pages.min() < 0 or s.pages.max() >= npages):
            raise ValueError(f"slice {i} touches a page outside 0..{npages - 1}")
    return slices


def precopy(slices, npages: int, config: MigrationConfig, policy: str) -> MigrationResult:
    """Migrate a guest of ``npages`` pages running ``slices`` with ``policy``.

    Raises
    ------
    ValueError
        Unknown policy, an empty workload or a page outside the guest.
    """
    if policy not in POLICIES:
        raise ValueError(f"migration policy must be one of {POLICIES}, got {policy!r}")
    slices = _check_slices(slices, npages)
    cfg = config
    watched = None
    if policy == "activity":
        period = max(1, cfg.send_cycles(cfg.batch_pages))
        watched = ScannedGuest(
            npages,
            scan=ScanConfig(levels=cfg.levels, large_page=LargePageConfig(enable=False)),
            interval=IntervalConfig(mode="migration", period=period))
    g = _Guest(slices, cfg, npages, watched)
    t0 = cfg.start_slice * cfg.slice_cycles
    g.logging_from = t0
    g.advance(t0)
    t = t0
    to_send = np.ones(npages, dtype=bool)
    addresses = np.arange(npages, dtype=np.int64)
    per_round: list[int] = []
    while to_send.sum() > cfg.threshold_pages and len(per_round) < cfg.max_rounds:
        remaining = to_send
        sent = 0
        while remaining.any():
            left = np.flatnonzero(remaining)
            n = min(cfg.batch_pages, len(left))
            if policy == "address":
                batch = left[:n]
            else:
                watched.engine.interval.set_batch(n, cfg.cpp_q16)
                key = g.levels[left] * npages + addresses[left]
                batch = left[np.argpartition(key, n - 1)[:n]] if n < len(left) else left
            g.dirty[batch] = False
            remaining[batch] = False
            t += cfg.send_cycles(n)
            sent += n
            g.advance(t)
        per_round.append(sent)
        to_send = g.dirty.copy()
    final = int(to_send.sum())
    down = cfg.send_cycles(final)
    return MigrationResult(
        policy=policy, guest_pages=npages, pages_sent=sum(per_round) + final,
        rounds=len(per_round), per_round=per_round, final_pages=final,
        total_s=(t - t0 + down) / cfg.clock_hz, downtime_s=down / cfg.clock_hz,
        converged=final <= cfg.threshold_pages, scans=g.scans)


def compare(slices, npages: int, bandwidths, progress=None, **config) -> list[dict]:
    """Both policies at each bandwidth (bytes/s); one row per (bandwidth, policy).

    ``config`` holds the other :class:`MigrationConfig` fields; ``progress()`` is called
    after each migration.
    """
    slices = _check_slices(slices, npages)
    rows = []
    for bw in bandwidths:
        cfg = MigrationConfig(bandwidth=int(bw), **config)
        for policy in POLICIES:
            r = precopy(slices, npages, cfg, policy)
            rows.append({"bandwidth": int(bw), **r.to_dict()})
            if progress is not None:
                progress()
    return rows
