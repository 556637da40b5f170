"""Walk caches of the nested page walker: two TLBs and two sets of paging-structure caches.

Every structure is direct-mapped (one slot per index, a fill overwrites the slot) so that
the hardware, built from synchronous-read memories, holds exactly the same contents as this
model after every operation. Four kinds, all keyed by a context and an address prefix:

* guest TLB  (GVA page -> GPA page, guest rights, dirty), one array per guest page size;
* nested TLB (GPA page -> HPA page, host rights, dirty), one array per host page size;
* guest PWC  (GVA prefix at level 4/3/2 -> next guest table GPA, rights so far);
* host PWC   (GPA prefix at level 4/3/2 -> next host table HPA, rights so far).

A slot's index is the low bits of the key's page number (``key >> shift``); its tag is the
whole page number and the context (CR3 and host root for guest structures, host root for
host structures). Keeping the TLBs of the two dimensions apart lets the scanner's A-bit
clear drop exactly one nested-TLB slot, and makes a TLB hit two lookups deep.
"""

from dataclasses import dataclass

from thermocline.layouts import LEVEL_SHIFT, PAGE_SHIFT

__all__ = ["CacheArray", "WalkCaches", "TlbEntry", "PwcEntry"]


@dataclass(frozen=True)
class TlbEntry:
    """A cached leaf: output page base, rights accumulated over the walk, dirty state."""

    base: int
    rights: tuple
    dirty: bool
    extra: int = 0          # memory type of a host leaf; 0 for guest leaves


@dataclass(frozen=True)
class PwcEntry:
    """A cached non-leaf entry: the next table's address and the rights accumulated so far."""

    table: int
    rights: tuple


class CacheArray:
    """A direct-mapped array of ``entries`` slots (0 disables it) indexed by ``key >> shift``."""

    def __init__(self, entries: int, shift: int):
        if entries < 0 or entries & (entries - 1):
            raise ValueError(f"cache entries must be 0 or a power of two, got {entries}")
        self.entries = entries
        self.shift = shift
        self.slots: list = [None] * entries      # (tag, value) or None

    def index(self, addr: int) -> int:
        return (addr >> self.shift) & (self.entries - 1)

    def lookup(self, ctx: tuple, addr: int):
        if not self.entries:
            return None
        slot = self.slots[self.index(addr)]
        if slot is not None and slot[0] == (ctx, addr >> self.shift):
            return slot[1]
        return None

    def fill(self, ctx: tuple, addr: int, value):
        if self.entries:
            self.slots[self.index(addr)] = ((ctx, addr >> self.shift), value)

    def drop(self, addr: int, ctx_match=None) -> int:
        """Drop the slot that would hold ``addr`` if its page matches (and its context, if
        ``ctx_match(ctx)`` is given). Returns how many slots were dropped (0 or 1)."""
        if not self.entries:
            return 0
        i = self.index(addr)
        slot = self.slots[i]
        if slot is None or slot[0][1] != addr >> self.shift:
            return 0
        if ctx_match is not None and not ctx_match(slot[0][0]):
            return 0
        self.slots[i] = None
        return 1

    def sweep(self, ctx_match) -> int:
        """Drop every slot whose context matches; returns how many."""
        n = 0
        for i, slot in enumerate(self.slots):
            if slot is not None and ctx_match(slot[0][0]):
                self.slots[i] = None
                n += 1
        return n

    def valid(self) -> int:
        return sum(s is not None for s in self.slots)


class WalkCaches:
    """The walker's four cache kinds, sized by ``tlb_entries`` (4 KiB arrays),
    ``tlb_large_entries`` (2 MiB and 1 GiB arrays) and ``pwc_entries`` (each PWC level)."""

    def __init__(self, tlb_entries: int, tlb_large_entries: int, pwc_entries: int):
        sizes = {1: tlb_entries, 2: tlb_large_entries, 3: tlb_large_entries}
        #: TLB arrays by leaf level (1 = 4K, 2 = 2M, 3 = 1G): guest and nested.
        self.gtlb = {lvl: CacheArray(n, PAGE_SHIFT[lvl]) for lvl, n in sizes.items()}
        self.ntlb = {lvl: CacheArray(n, PAGE_SHIFT[lvl]) for lvl, n in sizes.items()}
        #: PWC arrays by the level of the cached entry (4, 3, 2).
        self.gpwc = {lvl: CacheArray(pwc_entries, LEVEL_SHIFT[lvl]) for lvl in (4, 3, 2)}
        self.hpwc = {lvl: CacheArray(pwc_entries, LEVEL_SHIFT[lvl]) for lvl in (4, 3, 2)}

    def arrays(self):
        yield from self.gtlb.values()
        yield from self.ntlb.values()
        yield from self.gpwc.values()
        yield from self.hpwc.values()

    def clear(self) -> int:
        return sum(a.sweep(lambda ctx: True) for a in self.arrays())
