"""Large-page prioritizer in hardware: the moving-average step and the ranked candidate list.

The twin of :mod:`model.prioritizer`. The scanner (:mod:`hdl.scanner`) walks each leaf table
and hands the accessed count of that table to :func:`lp_step`, which computes the new value
of the parent's ``LPCOUNT`` exactly as :func:`model.prioritizer.lp_step` does; tables that are
eligible go into a :class:`CandidateList`, which keeps the ``top_k`` best in the order of
:func:`model.prioritizer.rank` (value descending, then region ascending, then parent entry
address ascending).
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from thermocline.layouts import ENTRIES_PER_TABLE, LPCOUNT

__all__ = ["VA_BITS", "COUNT_BITS", "candidate_layout", "lp_prepare", "lp_finish", "lp_step",
           "CandidateList"]

#: Width of an input (guest-physical) address: four levels of 9 bits above a 4 KiB page.
VA_BITS = 48

#: Width of an accessed or present count of one leaf table (0..512).
COUNT_BITS = ENTRIES_PER_TABLE.bit_length()


def candidate_layout(pa_bits: int) -> data.StructLayout:
    """One large-page candidate, LSB first.

    Parameters
    ----------
    pa_bits : int
        Physical-address width; ``entry_addr`` is that wide.

    Returns
    -------
    data.StructLayout
        ``region``: input address of the 2 MiB region (:data:`VA_BITS` bits);
        ``entry_addr``: host-physical byte address of the parent (level-2) entry;
        ``value``: the parent's ``LPCOUNT`` after the pass.
    """
    if not isinstance(pa_bits, int) or not 32 <= pa_bits <= 52:
        raise ValueError(f"candidate_layout: pa_bits must be an integer from 32 to 52, "
                         f"got {pa_bits!r}")
    return data.StructLayout({"region": VA_BITS, "entry_addr": pa_bits,
                              "value": LPCOUNT.width})


def lp_prepare(m: Module, v, count, shift):
    """First half of :func:`lp_step`: the quantized count and the distances to move.

    Returns
    -------
    (rises, rise, fall) : tuple of Signal
        ``rises``: the count is at or above ``v``; ``rise``/``fall``: the distance rounded
        up for the shift, towards or away from the count (``q - v + 2**k - 1`` and
        ``v - q + 2**k - 1``; only the one that ``rises`` selects is meaningful).
    """
    top = LPCOUNT.max
    q = Signal(LPCOUNT.width)
    m.d.comb += q.eq(Mux(count[4:] > top, top, count[4:]))
    round_up = Signal(16)
    m.d.comb += round_up.eq((Const(1, 1) << shift) - 1)
    rises = Signal()
    rise = Signal(8)
    fall = Signal(8)
    m.d.comb += [
        rises.eq(q >= v),
        rise.eq(q - v + round_up),
        fall.eq(v - q + round_up),
    ]
    return rises, rise, fall


def lp_finish(m: Module, v, rises, rise, fall, shift) -> Signal:
    """Second half of :func:`lp_step`, from :func:`lp_prepare`'s results."""
    new = Signal(LPCOUNT.width)
    with m.If(rises):
        m.d.comb += new.eq(v + (rise >> shift))
    with m.Else():
        m.d.comb += new.eq(v - (fall >> shift))
    return new


def lp_step(m: Module, v, count, shift) -> Signal:
    """New ``LPCOUNT`` from the current one and a leaf table's accessed count.

    Combinational logic added to ``m``; the result is
    ``model.prioritizer.lp_step(v, count, shift)`` for every input in range. Hardware that
    needs it faster registers :func:`lp_prepare`'s results and finishes with
    :func:`lp_finish` a cycle later.

    Parameters
    ----------
    m : Module
        Where the logic goes.
    v : Value
        Current value, ``LPCOUNT.width`` bits.
    count : Value
        Accessed leaves of the table, 0..512 (:data:`COUNT_BITS` bits).
    shift : Value
        Smoothing ``k``, 0..4 (3 bits).

    Returns
    -------
    Signal
        The new value, ``LPCOUNT.width`` bits.
    """
    rises, rise, fall = lp_prepare(m, v, count, shift)
    return lp_finish(m, v, rises, rise, fall, shift)


class CandidateList(wiring.Component):
    """The best large-page candidates of a pass, kept ranked as they arrive.

    Contract
    --------
    * ``clear`` empties the list (the next cycle it holds nothing).
    * A candidate is taken when ``insert.valid & insert.ready``; the list then needs at most
      ``count + 2`` cycles to put it in place, during which ``insert.ready`` is low. After
      the inserts of a pass the list holds exactly ``model.prioritizer.rank(all inserted,
      k)`` with ``k = min(top_k, top_k_max)``, whatever the order of insertion.
    * ``read_data`` shows entry ``read_addr`` of the ranked list one cycle after the address
      is presented (entries at or beyond ``count`` are meaningless).

    The list lives in a small memory (LUT RAM on FPGAs) read a cycle ahead of one comparator
    that walks it, one slot per cycle, so the cost grows with ``top_k_max`` only by the
    memory.

    Parameters
    ----------
    top_k_max : int
        Most candidates kept, 1..64.
    pa_bits : int
        Physical-address width, 32..52.

    Members
    -------
    clear : ``In(1)``
        Empty the list.
    top_k : ``In(7)``
        ``K`` of the pass, 0..64; values above ``top_k_max`` act as ``top_k_max``. Hold it
        stable while inserts are in progress.
    insert : ``In(stream.Signature(candidate_layout(pa_bits)))``
        New candidates.
    count : ``Out(range(top_k_max + 1))``
        Candidates held (final once ``insert.ready`` is high again).
    read_addr : ``In(range(top_k_max))``
        Rank to read (0 = best).
    read_data : ``Out(candidate_layout(pa_bits))``
        The candidate at ``read_addr``, one cycle later.
    """

    def __init__(self, *, top_k_max: int = 8, pa_bits: int = 52):
        if not isinstance(top_k_max, int) or isinstance(top_k_max, bool) \
                or not 1 <= top_k_max <= 64:
            raise ValueError(f"CandidateList: top_k_max must be an integer from 1 to 64, "
                             f"got {top_k_max!r}")
        self._layout = candidate_layout(pa_bits)
        self._top_k_max = top_k_max
        self._pa_bits = pa_bits
        super().__init__({
            "clear": In(1),
            "top_k": In(7),
            "insert": In(stream.Signature(self._layout)),
            "count": Out(range(top_k_max + 1)),
            "read_addr": In(range(top_k_max)),
            "read_data": Out(self._layout),
        })

    @property
    def top_k_max(self) -> int:
        """Most candidates kept."""
        return self._top_k_max

    @property
    def pa_bits(self) -> int:
        """Physical-address width."""
        return self._pa_bits

    def elaborate(self, platform):
        m = Module()
        n = self._top_k_max
        lay = self._layout
        m.submodules.slots = slots = Memory(shape=lay, depth=n, init=[])
        wr = slots.write_port()
        walk_rd = slots.read_port()
        out_rd = slots.read_port(domain="comb")

        count = Signal(range(n + 1))
        k = Signal(range(n + 1))
        busy = Signal()
        new = Signal(lay)
        m.d.comb += [
            k.eq(Mux(self.top_k > n, n, self.top_k)),
            self.count.eq(count),
            self.insert.ready.eq(~busy & ~self.clear),
        ]

        # Walk up from the bottom: while the newcomer ranks before slot j - 1, that slot
        # moves down to j (dropped if j is past k); otherwise the newcomer takes slot j.
        # Writes go to slot j, reads to the slots above it, so the read of each step is
        # issued a cycle ahead of its decision: read slot j - 1 (r_), then compare and write
        # (c_). Step j = 0 reads nothing and always ends the walk.
        r_go = Signal()
        r_j = Signal(range(n + 1))
        c_go = Signal()
        c_j = Signal(range(n + 1))
        above = walk_rd.data
        # Rank order: value descending, then region and entry address ascending.
        better = Signal()
        m.d.comb += [
            walk_rd.addr.eq(r_j - 1),
            better.eq((c_j != 0)
                      & ((new.value > above.value)
                         | ((new.value == above.value)
                            & ((new.region < above.region)
                               | ((new.region == above.region)
                                  & (new.entry_addr < above.entry_addr)))))),
        ]
        m.d.sync += [c_go.eq(r_go), c_j.eq(r_j)]
        with m.If(r_go & (r_j != 0)):
            m.d.sync += r_j.eq(r_j - 1)
        with m.Else():
            m.d.sync += r_go.eq(0)
        with m.If(c_go):
            with m.If(c_j < k):
                m.d.comb += [wr.addr.eq(c_j), wr.data.eq(Mux(better, above, new)),
                             wr.en.eq(1)]
            with m.If(~better):
                with m.If(c_j < k):
                    m.d.sync += count.eq(Mux(count < k, count + 1, k))
                m.d.sync += [busy.eq(0), r_go.eq(0), c_go.eq(0)]
        with m.If(self.clear):
            m.d.sync += [count.eq(0), busy.eq(0), r_go.eq(0), c_go.eq(0)]
        with m.Elif(~busy & self.insert.valid):
            m.d.sync += [
                busy.eq(1), r_go.eq(1),
                new.eq(self.insert.payload),
                r_j.eq(Mux(count < k, count, k)),
            ]

        m.d.comb += out_rd.addr.eq(self.read_addr)
        m.d.sync += self.read_data.eq(out_rd.data)
        return m
