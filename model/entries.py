"""What the bits of a paging-structure entry mean, per format.

The layouts (bit positions) come from :mod:`thermocline.layouts`; this module gives them
meaning: when an entry is present, when it maps a page, which address it holds, which bits
are reserved, and how an EPT entry can be misconfigured. The walker, scanner, prefetcher and
builder all ask these questions through one of the three format objects below.
"""

from thermocline.layouts import (
    EPT_ENTRY as E, X86_ENTRY as X, EPT_BAD_MEMTYPES, addr_mask, ept_reserved_mask,
    x86_reserved_mask,
)

__all__ = ["EntryFormat", "EptFormat", "X86Format", "host_format", "GUEST"]


class EntryFormat:
    """Semantics of one table format. Subclasses: :class:`EptFormat`, :class:`X86Format`."""

    name: str
    A: int          # accessed-flag mask
    D: int          # dirty-flag mask
    table_flags: dict  # fields of a non-leaf entry that grants everything
    leaf_flags: dict   # default fields of a leaf

    def __init__(self, pa_bits: int = 52):
        self.pa_bits = pa_bits
        self.addr_mask = addr_mask(pa_bits)

    def present(self, e: int) -> bool:
        raise NotImplementedError

    def is_leaf(self, e: int, level: int) -> bool:
        """Does a present entry at ``level`` map a page (rather than point at a table)?"""
        return level == 1 or (level in (2, 3) and bool(e >> 7 & 1))

    def address(self, e: int, level: int = 1) -> int:
        """Table address of a non-leaf entry, or page base of a leaf at ``level``."""
        a = e & self.addr_mask
        if level in (2, 3) and self.is_leaf(e, level):
            a &= ~((1 << (9 * level + 3)) - 1)
        return a

    def reserved(self, e: int, level: int) -> int:
        """Reserved bits set in a present entry (0 if none)."""
        raise NotImplementedError

    def make(self, level: int, addr: int, leaf: bool, **fields: int) -> int:
        layout = E if isinstance(self, EptFormat) else X
        word = addr & self.addr_mask
        base = dict(self.leaf_flags if leaf else self.table_flags)
        base.update(fields)
        if leaf and level in (2, 3):
            base["PS"] = 1
        for name, value in base.items():
            word = getattr(layout, name).set(word, int(value))
        return word


class EptFormat(EntryFormat):
    """Intel EPT entries. Present when any of R, W, X is set."""

    name = "ept"
    A = E.A.mask
    D = E.D.mask
    table_flags = {"R": 1, "W": 1, "X": 1}
    leaf_flags = {"R": 1, "W": 1, "X": 1, "MEMTYPE": 6}

    def __init__(self, pa_bits: int = 52, execute_only: bool = True):
        super().__init__(pa_bits)
        self.execute_only = execute_only

    def present(self, e: int) -> bool:
        return bool(e & 7)

    def is_leaf(self, e: int, level: int) -> bool:
        return level == 1 or (level in (2, 3) and bool(e & E.PS.mask))

    def reserved(self, e: int, level: int) -> int:
        return e & ept_reserved_mask(level, self.is_leaf(e, level), self.pa_bits)

    def misconfigured(self, e: int, level: int) -> bool:
        """A present entry that the processor would report as an EPT misconfiguration."""
        r, w, x = e & 1, e >> 1 & 1, e >> 2 & 1
        if w and not r:
            return True
        if x and not r and not self.execute_only:
            return True
        if self.reserved(e, level):
            return True
        return self.is_leaf(e, level) and E.MEMTYPE.get(e) in EPT_BAD_MEMTYPES

    def rights(self, e: int) -> tuple[int, int, int, int]:
        """(read, write, execute, user-execute) granted by one entry."""
        return e & 1, e >> 1 & 1, e >> 2 & 1, e >> 10 & 1


class X86Format(EntryFormat):
    """IA-32e entries: guest tables, AMD nested (NPT) tables and shadow tables."""

    name = "x86"
    A = X.A.mask
    D = X.D.mask
    table_flags = {"P": 1, "RW": 1, "US": 1}
    leaf_flags = {"P": 1, "RW": 1, "US": 1}

    def __init__(self, pa_bits: int = 52, nxe: bool = True):
        super().__init__(pa_bits)
        self.nxe = nxe

    def present(self, e: int) -> bool:
        return bool(e & 1)

    def reserved(self, e: int, level: int) -> int:
        leaf = level in (2, 3) and bool(e & X.PS.mask)
        return e & x86_reserved_mask(level, leaf, self.pa_bits, self.nxe)

    def rights(self, e: int) -> tuple[int, int, int]:
        """(writable, user, no-execute) of one entry."""
        return e >> 1 & 1, e >> 2 & 1, (e >> 63) & int(self.nxe)


GUEST = X86Format()


def host_format(fmt: str, pa_bits: int = 52) -> EntryFormat:
    """The entry format of a host (scanned) table: ``"ept"``, ``"npt"`` or ``"ia32e"``."""
    if fmt == "ept":
        return EptFormat(pa_bits)
    if fmt in ("npt", "ia32e"):
        return X86Format(pa_bits)
    raise ValueError(f"host format must be 'ept', 'npt' or 'ia32e', got {fmt!r}")
