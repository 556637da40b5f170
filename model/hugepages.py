"""Large pages: TLB misses with K 2 MiB pages chosen by the prioritizer, first come, or in
hindsight.

Reference model (assumptions)
-----------------------------
A workload (a list of :class:`~model.workload.Slice` over ``npages`` guest pages) is turned
into a reference stream: every page touched in a slice is one reference, slices in order and
pages ascending within a slice (a slice keeps no finer order). Region ``r`` is the 2 MiB
region of pages ``512 r .. 512 r + 511``. A policy decides, for each region, the slice from
which it is mapped by a large page (or never); promotions are never undone and at most ``K``
regions are promoted.

TLB organisation
----------------
Two fully associative TLBs with least-recently-used replacement, one for 4 KiB translations
(``entries_4k``) and one for 2 MiB translations (``entries_2m``), both empty at the start. A
reference to a page of a promoted region looks up its region in the 2 MiB TLB, any other
reference its page in the 4 KiB TLB; a lookup that does not find its translation is a miss
and fills it (evicting the least recently used entry when full). ``K`` may not exceed
``entries_2m``, so a promoted region misses once in the 2 MiB TLB and never again.

Policies
--------
``"prioritizer"`` The engine's: after each slice the EPT scanner runs a pass over the guest's
                  RAM (:class:`model.scanned_guest.ScannedGuest`), the large-page prioritizer
                  inside it ranks the leaf tables (:mod:`model.prioritizer`, ``top_k = K``),
                  and the hypervisor promotes the reported regions, best first, from the next
                  slice on, while fewer than ``K`` are promoted.
``"first_come"``  What a fault-time allocator does: the first ``K`` regions touched are
                  promoted when first touched.
``"hindsight"``   An oracle that knows the whole stream and maps a fixed set of ``K`` regions
                  with large pages from the start: the set with the fewest misses among the
                  ``K`` regions with the most 4 KiB misses when no region is promoted, the
                  ``K`` regions with the most references, and the sets the two policies above
                  ended with.

Why hindsight is a lower bound: take a policy's final set ``P``. Mapping ``P`` from the
start instead removes the references to ``P`` from the 4 KiB stream; with LRU, removing
references never turns a hit of the remaining ones into a miss (the distinct pages between
two uses of a page can only become fewer). Each region of ``P`` then costs one 2 MiB miss,
which the policy also pays -- either as its 2 MiB miss after promotion or as the cold 4 KiB
miss of the region's first page before it. So the static ``P`` never misses more than the
policy, and the oracle's best set never more than the static ``P``.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

from thermocline.layouts import ENTRIES_PER_TABLE
from .scanned_guest import ScannedGuest
from .prioritizer import LargePageConfig
from .scanner import ScanConfig

__all__ = ["TlbConfig", "References", "references", "tlb_misses", "prioritizer_reports",
           "promote_prioritizer",
           "promote_first_come", "hindsight", "evaluate", "sweep", "POLICIES", "NEVER"]

POLICIES = ("prioritizer", "first_come", "hindsight")
#: Promotion slice of a region that is never promoted.
NEVER = np.iinfo(np.int64).max
REGION_BYTES = ENTRIES_PER_TABLE * 4096


@dataclass(frozen=True, kw_only=True)
class TlbConfig:
    """Entries of the 4 KiB and 2 MiB TLBs (fully associative, LRU), each >= 1."""

    entries_4k: int = 64
    entries_2m: int = 32

    def __post_init__(self):
        for name in ("entries_4k", "entries_2m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"TlbConfig: {name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class References:
    """The reference stream: ``slice``, ``page`` and ``region`` of every reference
    (``int64`` arrays), the number of slices and of guest pages."""

    slice: np.ndarray
    page: np.ndarray
    region: np.ndarray
    nslices: int
    npages: int

    @property
    def nregions(self) -> int:
        return -(-self.npages // ENTRIES_PER_TABLE)


def references(slices, npages: int) -> References:
    """The reference stream of a workload (see the module documentation)."""
    slices = list(slices)
    if isinstance(npages, bool) or not isinstance(npages, (int, np.integer)) or npages < 1:
        raise ValueError(f"npages must be a positive integer, got {npages!r}")
    if not slices:
        raise ValueError("the workload has no slices")
    pages = [np.asarray(s.pages, dtype=np.int64) for s in slices]
    page = np.concatenate(pages)
    if len(page) and (page.min() < 0 or page.max() >= npages):
        raise ValueError(f"a slice touches a page outside 0..{npages - 1}")
    sl = np.repeat(np.arange(len(slices), dtype=np.int64), [len(p) for p in pages])
    return References(sl, page, page // ENTRIES_PER_TABLE, len(slices), int(npages))


@njit(cache=True)
def _misses(page, region, sl, promo, npages, nregions, e4, e2):
    """Misses of the two LRU TLBs: (misses_4k, misses_2m, 4 KiB misses per region)."""
    slot4 = np.full(npages, -1, np.int64)
    slot2 = np.full(nregions, -1, np.int64)
    tag4 = np.full(e4, -1, np.int64)
    tag2 = np.full(e2, -1, np.int64)
    use4 = np.zeros(e4, np.int64)
    use2 = np.zeros(e2, np.int64)
    per_region = np.zeros(nregions, np.int64)
    m4 = 0
    m2 = 0
    for i in range(len(page)):
        r = region[i]
        if sl[i] >= promo[r]:
            key, slot, tag, use, e = r, slot2, tag2, use2, e2
        else:
            key, slot, tag, use, e = page[i], slot4, tag4, use4, e4
        s = slot[key]
        if s < 0:
            if sl[i] >= promo[r]:
                m2 += 1
            else:
                m4 += 1
                per_region[r] += 1
            s = 0
            for j in range(e):
                if tag[j] < 0:
                    s = j
                    break
                if use[j] < use[s]:
                    s = j
            if tag[s] >= 0:
                slot[tag[s]] = -1
            tag[s] = key
            slot[key] = s
        use[s] = i + 1
    return m4, m2, per_region


def tlb_misses(refs: References, promo: np.ndarray, tlb: TlbConfig) -> dict:
    """Misses of ``refs`` when region ``r`` is a large page from slice ``promo[r]`` on.

    Returns ``{"misses", "misses_4k", "misses_2m", "per_region_4k"}``.
    """
    promo = np.asarray(promo, dtype=np.int64)
    if promo.shape != (refs.nregions,):
        raise ValueError(f"promo needs one slice per region ({refs.nregions}), "
                         f"got shape {promo.shape}")
    m4, m2, per = _misses(refs.page, refs.region, refs.slice, promo, refs.npages,
                          refs.nregions, int(tlb.entries_4k), int(tlb.entries_2m))
    return {"misses": int(m4 + m2), "misses_4k": int(m4), "misses_2m": int(m2),
            "per_region_4k": per}


def _check_k(k: int, tlb: TlbConfig):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= 64:
        raise ValueError(f"K must be an integer 0..64 (the prioritizer reports at most 64), "
                         f"got {k!r}")
    if k > tlb.entries_2m:
        raise ValueError(f"K={k} large pages need at least {k} 2 MiB TLB entries, the TLB "
                         f"has {tlb.entries_2m}")


def promote_first_come(refs: References, k: int) -> np.ndarray:
    """Promotion slices: the first ``k`` regions touched, each from its first touch."""
    promo = np.full(refs.nregions, NEVER, np.int64)
    regions, first = np.unique(refs.region, return_index=True)
    order = np.argsort(first, kind="stable")[:k]
    promo[regions[order]] = refs.slice[first[order]]
    return promo


def prioritizer_reports(slices, npages: int, top_k: int, *,
                        lp: LargePageConfig | None = None, levels: int = 4) -> list[list[int]]:
    """Regions (best first) the engine's prioritizer reports after each slice.

    The guest's RAM is scanned once after every slice (:class:`ScannedGuest`); ``lp`` gives
    warm-up, threshold, smoothing and eligibility, its ``top_k`` replaced by ``top_k``.
    """
    lp = lp or LargePageConfig(warmup=2, threshold=1)
    guest = ScannedGuest(npages, scan=ScanConfig(
        levels=levels, large_page=LargePageConfig(
            enable=True, shift=lp.shift, warmup=lp.warmup, threshold=lp.threshold,
            top_k=top_k, max_nonpresent=lp.max_nonpresent)))
    reports = []
    for s in slices:
        guest.touch(s.pages, s.writes)
        reports.append([c.region // REGION_BYTES for c in guest.scan().stats.candidates])
    return reports


def promote_prioritizer(reports: list[list[int]], nregions: int, k: int) -> np.ndarray:
    """Promotion slices from the prioritizer's reports: after slice ``i``, the first ``k``
    reported regions not yet promoted are promoted from slice ``i + 1``, best first, while
    fewer than ``k`` are promoted. (The ranking is a total order, so the first ``k`` of a
    longer report are the report of a prioritizer with ``top_k = k``.)"""
    promo = np.full(nregions, NEVER, np.int64)
    budget = k
    for i, regions in enumerate(reports):
        for r in regions[:k]:
            if budget and promo[r] == NEVER:
                promo[r] = i + 1
                budget -= 1
    return promo


def hindsight(refs: References, k: int, tlb: TlbConfig, extra_sets=()) -> np.ndarray:
    """Promotion slices of the oracle: the best static set of ``k`` regions among its
    candidate sets (see the module documentation), each region promoted at slice 0."""
    base = tlb_misses(refs, np.full(refs.nregions, NEVER, np.int64), tlb)["per_region_4k"]
    counts = np.bincount(refs.region, minlength=refs.nregions)
    ids = np.arange(refs.nregions)
    sets = [ids[np.lexsort((ids, -base))][:k], ids[np.lexsort((ids, -counts))][:k],
            *[np.asarray(sorted(s), dtype=np.int64)[:k] for s in extra_sets]]
    best, best_misses = None, None
    for chosen in sets:
        promo = np.full(refs.nregions, NEVER, np.int64)
        promo[np.asarray(chosen, dtype=np.int64)] = 0
        m = tlb_misses(refs, promo, tlb)["misses"]
        if best_misses is None or m < best_misses:
            best, best_misses = promo, m
    return best


def evaluate(slices, npages: int, k: int, tlb: TlbConfig | None = None, *,
             lp: LargePageConfig | None = None, refs: References | None = None,
             reports: list[list[int]] | None = None) -> list[dict]:
    """Misses of every policy with ``k`` large pages; one dict per policy with ``policy``,
    ``k``, ``misses``, ``misses_4k``, ``misses_2m`` and ``regions`` (those promoted)."""
    tlb = tlb or TlbConfig()
    _check_k(k, tlb)
    slices = list(slices)
    refs = refs if refs is not None else references(slices, npages)
    if reports is None:
        reports = prioritizer_reports(slices, npages, k, lp=lp)
    promos = {"prioritizer": promote_prioritizer(reports, refs.nregions, k),
              "first_come": promote_first_come(refs, k)}
    sets = [np.flatnonzero(p != NEVER) for p in promos.values()]
    promos["hindsight"] = hindsight(refs, k, tlb, extra_sets=sets)
    out = []
    for policy in POLICIES:
        m = tlb_misses(refs, promos[policy], tlb)
        out.append({"policy": policy, "k": k, "misses": m["misses"],
                    "misses_4k": m["misses_4k"], "misses_2m": m["misses_2m"],
                    "regions": [int(r) for r in np.flatnonzero(promos[policy] != NEVER)]})
    return out


def sweep(slices, npages: int, ks, tlb: TlbConfig | None = None, *,
          lp: LargePageConfig | None = None, progress=None) -> list[dict]:
    """:func:`evaluate` at every ``k`` in ``ks``; ``progress()`` after each."""
    tlb = tlb or TlbConfig()
    for k in ks:
        _check_k(k, tlb)
    slices = list(slices)
    refs = references(slices, npages)
    reports = prioritizer_reports(slices, npages, max(ks, default=0), lp=lp)
    rows = []
    for k in ks:
        rows += evaluate(slices, npages, int(k), tlb, lp=lp, refs=refs, reports=reports)
        if progress is not None:
            progress()
    return rows

