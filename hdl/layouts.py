"""Amaranth views of the shared layouts.

The bit positions live in :mod:`thermocline.layouts` only; this module turns each
:class:`~thermocline.layouts.Layout` into an :class:`amaranth.lib.data.StructLayout` with the
same fields in the same places (reserved gaps included, as ``_b<lsb>`` members), so hardware
code reads ``entry.A`` or ``entry.ADDR`` on a ``data.View`` of a memory word.
"""

from functools import cache

from amaranth.lib import data

from thermocline import layouts as L

__all__ = ["struct", "pack", "EPT_ENTRY", "X86_ENTRY", "EPTP", "CR3", "PF_ERROR", "EPT_QUAL",
           "NPF_INFO"]


@cache
def struct(layout: L.Layout) -> data.StructLayout:
    """The :class:`~amaranth.lib.data.StructLayout` of ``layout`` (LSB-first, full width)."""
    return data.StructLayout({f.name: f.width for f in layout.fields})


EPT_ENTRY = struct(L.EPT_ENTRY)
X86_ENTRY = struct(L.X86_ENTRY)
EPTP = struct(L.EPTP)
CR3 = struct(L.CR3)
PF_ERROR = struct(L.PF_ERROR)
EPT_QUAL = struct(L.EPT_QUAL)
NPF_INFO = struct(L.NPF_INFO)


def pack(layout: L.Layout, **values):
    """A value of ``layout.width`` bits with the named fields set (others zero)."""
    from amaranth.hdl import Cat, Const, Value
    unknown = set(values) - {f.name for f in layout.fields}
    if unknown:
        raise ValueError(f"layout {layout.name} has no field(s) {sorted(unknown)}")
    parts = []
    for f in layout.fields:
        v = values.get(f.name, 0)
        parts.append(Value.cast(v)[:f.width] if not isinstance(v, int) else Const(v, f.width))
    return Cat(*parts)
