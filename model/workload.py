"""Synthetic workloads: which pages a guest touches in each time slice.

A workload is an iterator of :class:`Slice`: the distinct page indices (0-based, within the
workload's ``npages``) touched during one time slice, each with a flag saying whether any
touch was a write. Every generator is deterministic for a given ``seed``.

Generators:

* :func:`uniform`  every page equally likely;
* :func:`zipf`     page popularity follows a Zipf law; hot pages are clustered in 2 MiB
                   regions, as heaps and arrays are in real programs;
* :func:`shifting` a hot set that receives most touches and moves every few slices;
* :func:`stream`   sequential or strided sweeps over the pages.
"""

from dataclasses import dataclass
from typing import Iterator

import numpy as np

__all__ = ["Slice", "uniform", "zipf", "shifting", "stream", "GENERATORS", "make"]

REGION_PAGES = 512


@dataclass(frozen=True)
class Slice:
    """Distinct pages touched in one time slice (ascending) and whether each was written."""

    pages: np.ndarray
    writes: np.ndarray

    def __post_init__(self):
        if self.pages.shape != self.writes.shape:
            raise ValueError("pages and writes must have the same length")


def _check(npages: int, touches: int, slices: int):
    for name, v in (("npages", npages), ("touches", touches), ("slices", slices)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _slice(raw: np.ndarray, rng: np.random.Generator, write_ratio: float) -> Slice:
    writes = rng.random(len(raw)) < write_ratio
    pages, inverse = np.unique(raw, return_inverse=True)
    w = np.zeros(len(pages), dtype=bool)
    np.logical_or.at(w, inverse, writes)
    return Slice(pages.astype(np.int64), w)


def uniform(npages: int, touches: int, slices: int, *, seed: int = 0,
            write_ratio: float = 0.3) -> Iterator[Slice]:
    _check(npages, touches, slices)
    rng = np.random.default_rng(seed)
    for _ in range(slices):
        yield _slice(rng.integers(0, npages, touches), rng, write_ratio)


def _clustered_ranking(npages: int, rng: np.random.Generator) -> np.ndarray:
    """Page for each popularity rank: regions shuffled, pages in a region kept together."""
    regions = (npages + REGION_PAGES - 1) // REGION_PAGES
    order = rng.permutation(regions)
    pages = (order[:, None] * REGION_PAGES + np.arange(REGION_PAGES)[None, :]).ravel()
    return pages[pages < npages]


def zipf(npages: int, touches: int, slices: int, *, alpha: float = 1.2, seed: int = 0,
         write_ratio: float = 0.3) -> Iterator[Slice]:
    _check(npages, touches, slices)
    if not alpha > 0:
        raise ValueError(f"Zipf exponent must be positive, got {alpha!r}")
    rng = np.random.default_rng(seed)
    page_of_rank = _clustered_ranking(npages, rng)
    weights = 1.0 / np.arange(1, npages + 1) ** alpha
    cdf = np.cumsum(weights / weights.sum())
    for _ in range(slices):
        ranks = np.minimum(np.searchsorted(cdf, rng.random(touches)), npages - 1)
        yield _slice(page_of_rank[ranks], rng, write_ratio)


def shifting(npages: int, touches: int, slices: int, *, hot_fraction: float = 0.1,
             hot_share: float = 0.9, shift_every: int = 4, seed: int = 0,
             write_ratio: float = 0.3) -> Iterator[Slice]:
    _check(npages, touches, slices)
    if not 0 < hot_fraction <= 1 or not 0 <= hot_share <= 1 or shift_every < 1:
        raise ValueError(f"need 0 < hot_fraction <= 1, 0 <= hot_share <= 1, shift_every >= 1;"
                         f" got {hot_fraction!r}, {hot_share!r}, {shift_every!r}")
    rng = np.random.default_rng(seed)
    hot_n = max(1, int(npages * hot_fraction))
    start = 0
    for s in range(slices):
        if s and s % shift_every == 0:
            start = (start + hot_n) % npages
        n_hot = rng.binomial(touches, hot_share)
        hot = (start + rng.integers(0, hot_n, n_hot)) % npages
        cold = rng.integers(0, npages, touches - n_hot)
        yield _slice(np.concatenate([hot, cold]), rng, write_ratio)


def stream(npages: int, touches: int, slices: int, *, stride: int = 1, seed: int = 0,
           write_ratio: float = 0.5) -> Iterator[Slice]:
    _check(npages, touches, slices)
    if stride < 1:
        raise ValueError(f"stride must be at least 1 page, got {stride!r}")
    rng = np.random.default_rng(seed)
    pos = 0
    for _ in range(slices):
        raw = (pos + stride * np.arange(touches)) % npages
        pos = int((pos + stride * touches) % npages)
        yield _slice(raw, rng, write_ratio)


GENERATORS = {"uniform": uniform, "zipf": zipf, "shifting": shifting, "stream": stream}


def make(name: str, npages: int, touches: int, slices: int, **kwargs) -> Iterator[Slice]:
    """A generator by name (see :data:`GENERATORS`)."""
    if name not in GENERATORS:
        raise ValueError(f"workload must be one of {sorted(GENERATORS)}, got {name!r}")
    return GENERATORS[name](npages, touches, slices, **kwargs)
