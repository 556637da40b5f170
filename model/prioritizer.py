"""Large-page prioritizer: which 2 MiB regions deserve a large page.

The prioritizer rides along with the accessed-bit scanner (:mod:`model.scanner`). Each time a
scan pass finishes a leaf (level-1) table of 512 entries, it folds that table's accessed count
into a small moving average kept in the table's parent entry (a level-2 non-leaf entry), in
the engine-owned field :data:`thermocline.layouts.LPCOUNT`. After a warm-up, tables whose
average passes a threshold (and that are nearly fully populated) become candidates; at the
end of the pass the candidates are ranked and the first ``top_k`` are reported.

Contract, per level-2 non-leaf entry visited in a pass (its leaf table scanned just before):

* ``count``  = leaves of the table that were present, well-formed and had A set before the
  scanner cleared it; ``present`` = present, well-formed leaves; ``absent = 512 - present``.
* ``q = min(count >> 4, 31)``                                   (:func:`quantize`)
* ``v' = v + ceil((q - v) / 2**shift)`` if ``q >= v``, else
  ``v - ceil((v - q) / 2**shift)``                              (:func:`ema`)
  where ``v`` is the parent's current ``LPCOUNT`` (``shift`` 0: ``v' = q``); ``v'`` never
  exceeds 31.
* candidate iff ``pass_index >= warmup and v' >= threshold and absent <= max_nonpresent``
  (:func:`eligible`).
* ranking: value descending, then region base ascending, then parent entry address
  ascending; the first ``top_k`` are kept (:func:`rank`).

The arithmetic helpers are compiled with numba so that the scanner's kernel and its
step-by-step twin call the very same code.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from thermocline.layouts import ENTRIES_PER_TABLE, LPCOUNT

__all__ = ["LargePageConfig", "Candidate", "quantize", "ema", "lp_step", "eligible", "rank",
           "LP_MAX"]

#: Largest value of the moving average (the width of ``LPCOUNT``).
LP_MAX = LPCOUNT.max


def _check_int(owner: str, name: str, value, lo: int, hi: int | None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{owner}: {name} must be {span}, got {value!r}")


def _check_bool(owner: str, name: str, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class LargePageConfig:
    """Settings of the large-page prioritizer.

    Parameters
    ----------
    enable : bool
        Update the parents' ``LPCOUNT`` and report candidates. When false the prioritizer
        neither reads nor writes anything.
    shift : int
        Smoothing ``k`` of the moving average, 0..4 (0: the value is the latest count).
    warmup : int
        ``W``: passes ``0 .. W-1`` (0-based pass index) propose nothing; >= 0.
    threshold : int
        Smallest value that can be proposed, 0..31.
    top_k : int
        ``K``: most candidates reported per pass, 0..64.
    max_nonpresent : int
        Most entries of a leaf table that may be absent (not a present, well-formed leaf)
        for the table to be proposed, 0..512.
    """

    enable: bool = True
    shift: int = 1
    warmup: int = 2
    threshold: int = 8
    top_k: int = 8
    max_nonpresent: int = 0

    def __post_init__(self):
        owner = "LargePageConfig"
        _check_bool(owner, "enable", self.enable)
        _check_int(owner, "shift", self.shift, 0, 4)
        _check_int(owner, "warmup", self.warmup, 0, None)
        _check_int(owner, "threshold", self.threshold, 0, LP_MAX)
        _check_int(owner, "top_k", self.top_k, 0, 64)
        _check_int(owner, "max_nonpresent", self.max_nonpresent, 0, ENTRIES_PER_TABLE)


class Candidate(NamedTuple):
    """A proposed large page.

    Members
    -------
    region : int
        Input (guest-physical) address of the 2 MiB region the leaf table maps.
    entry_addr : int
        Host-physical address of the parent (level-2) entry holding the value.
    value : int
        The parent's ``LPCOUNT`` after this pass, 0..31.
    """

    region: int
    entry_addr: int
    value: int


@njit(cache=True)
def quantize(count):
    """Accessed count of one leaf table (0..512) -> ``q = min(count >> 4, 31)``."""
    q = count >> 4
    return q if q < 31 else 31


@njit(cache=True)
def ema(v, q, shift):
    """One step of the integer moving average.

    The value moves ``1/2**k`` of the way towards ``q``, rounded away from ``v``: any
    difference moves it by at least one, so it reaches ``q`` exactly when ``q`` stays put
    (a table that cools down does decay to 0).

    Parameters
    ----------
    v : int
        Current value, 0..31.
    q : int
        Quantized count of this pass, 0..31.
    shift : int
        Smoothing ``k``, 0..4 (0: the value is ``q``).

    Returns
    -------
    int
        ``v + ceil((q - v) / 2**k)`` if ``q >= v``, else ``v - ceil((v - q) / 2**k)``;
        0..31.
    """
    round_up = (1 << shift) - 1
    if q >= v:
        return v + ((q - v + round_up) >> shift)
    return v - ((v - q + round_up) >> shift)


@njit(cache=True)
def lp_step(v, count, shift):
    """New ``LPCOUNT`` from the current one and the table's accessed count."""
    return ema(v, quantize(count), shift)


@njit(cache=True)
def eligible(pass_index, value, absent, warmup, threshold, max_nonpresent):
    """Is a leaf table with new value ``value`` and ``absent`` absent entries a candidate?"""
    return pass_index >= warmup and value >= threshold and absent <= max_nonpresent


def rank(regions, entry_addrs, values, top_k: int) -> list[Candidate]:
    """Order candidates and keep the first ``top_k``.

    Order: value descending, then region base ascending, then parent entry address
    ascending (a total order, so the result never depends on the order of the input).

    Parameters
    ----------
    regions, entry_addrs, values : array_like of int
        One element per candidate, all the same length.
    top_k : int
        How many to keep.
    """
    regions = np.asarray(regions, dtype=np.int64)
    entry_addrs = np.asarray(entry_addrs, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    if not len(regions) == len(entry_addrs) == len(values):
        raise ValueError(f"candidate arrays differ in length: {len(regions)}, "
                         f"{len(entry_addrs)}, {len(values)}")
    order = np.lexsort((entry_addrs, regions, -values))[:top_k]
    return [Candidate(int(regions[i]), int(entry_addrs[i]), int(values[i])) for i in order]
