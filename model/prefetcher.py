"""Prefetcher: the non-resident virtual neighbours of a faulting page.

Contract
--------
Given a fault ``{gva, cr3, hroot}`` (typically an EPT violation or NPF on a page the
hypervisor swapped out), :meth:`Prefetcher.prefetch`:

1. walks the guest tables for ``gva`` down to its guest leaf table, translating every guest
   table GPA through the host table. The walk is read-only: no A or D bit is set anywhere,
   no walk cache is read or filled, so prefetch work never changes what demand walks see.
   If a guest entry on the way is not present or malformed, or ``gva`` is mapped by a
   2 MiB / 1 GiB guest page (there is no leaf table), nothing is emitted;
2. reads the window of guest PTEs around the fault's index inside that one leaf table
   (indices clipped to 0..511, so a single burst covers it): ``window`` entries after the
   fault (``forward``), before it (``backward``), or both;
3. for each window entry in nearest-first order (distance 1, 2, ...; at equal distance the
   entry after the fault first), if the guest PTE is present and well formed, checks its
   GPA in the host table (read-only). A GPA whose host walk meets a not-present entry is
   non-resident and is emitted; a resident GPA, or one whose host walk meets a malformed
   entry or a bus error, is not.

The fault's own page is never emitted. Every memory read that succeeds is counted in
``reads``; every reference, failed or not, is logged in order in ``log`` (its address).

Bus errors. A read of the guest walk (or of a host walk on the way to a guest table or the
leaf table) answered with an error ends the request with ``bus_error``. The window is read as
one burst, and a burst cannot be cut short: every word of the span is read, and an error on
any of them ends the request with ``bus_error`` after the whole span (nothing is emitted).

Hardware-only outcomes (:data:`STATUSES`): ``"dropped"``, a request abandoned by the
hardware's drop input, whose emitted GPAs are a prefix of this model's (see
:func:`dropped`); ``"bad_config"``, a window or direction register outside what
:class:`PrefetchConfig` accepts, answered without any memory reference.
"""

from dataclasses import dataclass

from thermocline.layouts import LEVEL_SHIFT, CR3, EPTP, PREFETCH_STATUSES
from .entries import EptFormat, X86Format
from .memory import BusError, PhysMem

__all__ = ["PrefetchConfig", "PrefetchRequest", "PrefetchResult", "Prefetcher", "DIRECTIONS",
           "STATUSES", "window_order", "window_span", "dropped"]

DIRECTIONS = ("forward", "backward", "both")

#: Every outcome of a request, in the order of their hardware codes.
STATUSES = PREFETCH_STATUSES


@dataclass(frozen=True)
class PrefetchConfig:
    """``window``: neighbours on each side considered (1..511); ``direction``: one of
    :data:`DIRECTIONS`; ``host``: "ept" or "npt"; ``pa_bits``: physical-address width."""

    window: int = 8
    direction: str = "both"
    host: str = "ept"
    pa_bits: int = 52

    def __post_init__(self):
        if not isinstance(self.window, int) or not 1 <= self.window <= 511:
            raise ValueError(f"prefetch window must be 1..511 pages, got {self.window!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"prefetch direction must be one of {DIRECTIONS}, got "
                             f"{self.direction!r}")
        if self.host not in ("ept", "npt"):
            raise ValueError(f"host must be 'ept' or 'npt', got {self.host!r}")


@dataclass(frozen=True)
class PrefetchRequest:
    gva: int
    cr3: int
    hroot: int


@dataclass(frozen=True)
class PrefetchResult:
    """``gpas``: non-resident guest-physical pages, nearest first, with their ``gvas``;
    ``status``: "ok", or why nothing could be looked at: "no_leaf_table", "guest_fault",
    "host_fault", "bus_error" (:data:`STATUSES` adds the hardware-only ones); ``reads``:
    memory reads that succeeded."""

    gpas: tuple
    gvas: tuple
    status: str
    reads: int


def window_order(index: int, window: int, direction: str) -> list[int]:
    """Leaf-table indices to consider for a fault at ``index``, nearest first."""
    out = []
    for d in range(1, window + 1):
        if direction in ("forward", "both") and index + d <= 511:
            out.append(index + d)
        if direction in ("backward", "both") and index - d >= 0:
            out.append(index - d)
    return out


def window_span(index: int, window: int, direction: str) -> tuple[int, int] | None:
    """First and last leaf-table index the window burst reads (``None``: nothing to read)."""
    order = window_order(index, window, direction)
    return (min(order), max(order)) if order else None


def dropped(result: PrefetchResult, emitted: int) -> PrefetchResult:
    """The outcome of a request dropped after ``emitted`` of ``result``'s GPAs were out."""
    if not 0 <= emitted <= len(result.gpas):
        raise ValueError(f"emitted must be 0..{len(result.gpas)}, got {emitted}")
    return PrefetchResult(result.gpas[:emitted], result.gvas[:emitted], "dropped",
                          result.reads)


class _Stop(Exception):
    def __init__(self, status):
        self.status = status


class Prefetcher:
    """Read-only neighbour finder over ``mem`` (see the module docstring)."""

    def __init__(self, mem: PhysMem, config: PrefetchConfig | None = None, **kwargs):
        self.mem = mem
        self.config = config if config is not None else PrefetchConfig(**kwargs)
        c = self.config
        self.guest = X86Format(c.pa_bits)
        self.hfmt = EptFormat(c.pa_bits) if c.host == "ept" else X86Format(c.pa_bits)
        self.reads = 0
        self.log: list[int] = []

    def _read(self, addr: int) -> int:
        self.log.append(addr)
        try:
            value = self.mem.read(addr)
        except BusError:
            raise _Stop("bus_error")
        self.reads += 1
        return value

    def _burst(self, addr: int, words: int) -> list[int]:
        """``words`` consecutive words from ``addr``, all read even when one fails."""
        values, failed = [], False
        for k in range(words):
            try:
                values.append(self._read(addr + 8 * k))
            except _Stop:
                failed = True
        if failed:
            raise _Stop("bus_error")
        return values

    def _host_lookup(self, hroot: int, gpa: int) -> int | None:
        """HPA of ``gpa``, or ``None`` if a host entry on the way is not present.

        Raises ``_Stop("host_fault")`` on a malformed entry and ``_Stop("bus_error")``.
        """
        h = self.hfmt
        ept = isinstance(h, EptFormat)
        table = (EPTP.ADDR.get(hroot) if ept else CR3.ADDR.get(hroot)) << 12
        for level in (4, 3, 2, 1):
            e = self._read(table + 8 * ((gpa >> LEVEL_SHIFT[level]) & 511))
            if not h.present(e):
                return None
            if (h.misconfigured(e, level) if ept else h.reserved(e, level)):
                raise _Stop("host_fault")
            if h.is_leaf(e, level):
                return h.address(e, level) | (gpa & ((1 << LEVEL_SHIFT[level]) - 1))
            table = h.address(e, level)
        raise AssertionError("unreachable: level 1 is always a leaf")

    def prefetch(self, req: PrefetchRequest) -> PrefetchResult:
        self.reads = 0
        self.log = []
        try:
            return self._prefetch(req)
        except _Stop as s:
            return PrefetchResult((), (), s.status, self.reads)

    def _prefetch(self, req: PrefetchRequest) -> PrefetchResult:
        g, c = self.guest, self.config
        va = req.gva & ((1 << 48) - 1)
        table = CR3.ADDR.get(req.cr3) << 12
        for level in (4, 3, 2):
            hpa = self._host_lookup(req.hroot, table + 8 * ((va >> LEVEL_SHIFT[level]) & 511))
            if hpa is None:
                raise _Stop("host_fault")
            e = self._read(hpa)
            if not g.present(e) or g.reserved(e, level):
                raise _Stop("guest_fault")
            if g.is_leaf(e, level):
                raise _Stop("no_leaf_table")
            table = g.address(e, level)
        leaf_table = self._host_lookup(req.hroot, table)
        if leaf_table is None:
            raise _Stop("host_fault")
        index = (va >> 12) & 511
        order = window_order(index, c.window, c.direction)
        if not order:
            return PrefetchResult((), (), "ok", self.reads)
        # One burst over the contiguous span of the window.
        lo, hi = min(order), max(order)
        ptes = dict(zip(range(lo, hi + 1), self._burst(leaf_table + 8 * lo, hi - lo + 1)))
        gpas, gvas = [], []
        region = req.gva & ~((1 << 21) - 1)
        for i in order:
            e = ptes[i]
            if not g.present(e) or g.reserved(e, 1):
                continue
            gpa = g.address(e, 1)
            try:
                resident = self._host_lookup(req.hroot, gpa) is not None
            except _Stop as s:
                if s.status == "bus_error" or s.status == "host_fault":
                    continue
                raise
            if not resident:
                gpas.append(gpa)
                gvas.append(region | (i << 12))
        return PrefetchResult(tuple(gpas), tuple(gvas), "ok", self.reads)
