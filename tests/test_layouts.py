"""The layouts match the bit positions of the specification (SPEC §2)."""

import pytest
from hypothesis import given, strategies as st

from thermocline.layouts import (
    EPT_ENTRY, EPTP, X86_ENTRY, CR3, PF_ERROR, EPT_QUAL, NPF_INFO, ENGINE_BITS, LPCOUNT,
    HOST_FORMATS, Layout, activity_fields, ept_reserved_mask, x86_reserved_mask, is_canonical,
)

ALL = [EPT_ENTRY, EPTP, X86_ENTRY, CR3, PF_ERROR, EPT_QUAL, NPF_INFO]


def positions(layout):
    return {f.name: (f.msb, f.lsb) for f in layout if not f.reserved}


def test_ept_entry_matches_spec():
    assert positions(EPT_ENTRY) == {
        "R": (0, 0), "W": (1, 1), "X": (2, 2), "MEMTYPE": (5, 3), "IPAT": (6, 6),
        "PS": (7, 7), "A": (8, 8), "D": (9, 9), "XU": (10, 10), "ADDR": (51, 12),
        "SW": (56, 52)}
    assert EPTP.AD.lsb == 6 and EPTP.ADDR.lsb == 12 and EPTP.WALK_LEN.lsb == 3


def test_ia32e_entry_matches_spec():
    assert positions(X86_ENTRY) == {
        "P": (0, 0), "RW": (1, 1), "US": (2, 2), "PWT": (3, 3), "PCD": (4, 4), "A": (5, 5),
        "D": (6, 6), "PS": (7, 7), "G": (8, 8), "AVL": (11, 9), "ADDR": (51, 12),
        "SW": (58, 52), "PKEY": (62, 59), "XD": (63, 63)}


def test_engine_owns_only_software_available_bits():
    assert (ENGINE_BITS["ept"].lsb, ENGINE_BITS["ept"].msb) == (52, 56)
    npt_available = X86_ENTRY.AVL.mask | X86_ENTRY.SW.mask
    for fmt in ("npt", "ia32e"):
        assert ENGINE_BITS[fmt].mask & ~npt_available == 0
    assert ENGINE_BITS["ept"].mask & ~EPT_ENTRY.SW.mask == 0
    for fmt in HOST_FORMATS:
        assert LPCOUNT.mask & ~ENGINE_BITS[fmt].mask == 0


@pytest.mark.parametrize("layout", ALL)
def test_layouts_cover_their_width_without_overlap(layout):
    covered = 0
    for f in layout:
        assert covered & f.mask == 0
        covered |= f.mask
    assert covered == (1 << layout.width) - 1


@given(st.integers(0, 2 ** 64 - 1))
def test_pack_unpack_round_trip(word):
    for layout in (EPT_ENTRY, X86_ENTRY, EPTP):
        fields = layout.unpack(word)
        reserved = sum(f.mask for f in layout if f.reserved)
        assert layout.pack(**fields) == word & ~reserved


def test_activity_fields_fit_or_say_why():
    f = activity_fields("ept", 2)
    assert (f.level.lsb, f.level.width, f.long_level) == (52, 2, None)
    m = activity_fields("ept", 2, 2, 1)
    assert m.mask & ~ENGINE_BITS["ept"].mask == 0 and m.seen.msb == 56
    assert activity_fields("npt", 3, 2, 2).mask & ~ENGINE_BITS["npt"].mask == 0
    with pytest.raises(ValueError, match="6 bits"):
        activity_fields("ept", 3, 2, 1)
    with pytest.raises(ValueError, match="'vmcs'"):
        activity_fields("vmcs", 2)
    with pytest.raises(ValueError):
        activity_fields("ept", 2, 2, 0)


def test_reserved_masks():
    assert ept_reserved_mask(4, False, 52) == 0xF8
    assert ept_reserved_mask(2, True, 46) & (1 << 12)
    assert not ept_reserved_mask(2, False, 46) & (1 << 12)
    assert ept_reserved_mask(1, True, 46) == ((1 << 52) - 1) & ~((1 << 46) - 1)
    assert x86_reserved_mask(4, False, 52) == 1 << 7
    assert x86_reserved_mask(2, True, 52) & (1 << 13) and not x86_reserved_mask(
        2, True, 52) & (1 << 12)                                     # bit 12 is PAT
    assert x86_reserved_mask(1, True, 52, nxe=False) == 1 << 63


def test_canonical():
    assert is_canonical(0x7FFF_FFFF_F000) and is_canonical(0xFFFF_8000_0000_0000)
    assert not is_canonical(0x8000_0000_0000)


def test_layout_errors_name_the_problem():
    with pytest.raises(ValueError, match="overlaps"):
        Layout("bad", 8, [("a", 0, 4), ("b", 3, 2)])
    with pytest.raises(ValueError, match="width is 8"):
        Layout("bad", 8, [("a", 4, 5)])
    with pytest.raises(ValueError, match="holds 0..1"):
        EPT_ENTRY.A.set(0, 2)
    with pytest.raises(AttributeError, match="'Q'"):
        EPT_ENTRY.Q


def test_hardware_structs_put_every_field_where_the_layout_does():
    from hdl import layouts as H
    for layout in ALL:
        s = H.struct(layout)
        assert s.size == layout.width
        for f in layout:
            assert (s[f.name].offset, s[f.name].width) == (f.lsb, f.width), (layout, f)
