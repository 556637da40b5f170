"""Prefetcher: the non-resident virtual neighbours of a faulting page, in hardware.

The hardware twin of :mod:`model.prefetcher`, whose module docstring is the contract. For a
request ``{GVA, CR3, HROOT}`` the unit makes the model's memory references in the model's
order: a read-only guest walk to the guest leaf table (each guest table address translated
by a read-only host walk), the window of guest PTEs around the fault as one burst into a
local buffer, then for each present, well-formed PTE in nearest-first order a host walk of
its GPA. It answers with the same GPAs in the same order and the same status.

Streams (layouts :data:`PREFETCH_REQ` and :data:`PREFETCH_RESP`):

* ``req``: one request. ``window`` (1..511) and ``direction`` (0 forward, 1 backward,
  2 both: the index in ``model.prefetcher.DIRECTIONS``) are sampled when it is taken.
* ``resp``: zero or more GPA records (``DONE`` 0: ``PAGE`` is the GPA's page number,
  ``GVA`` the neighbour's virtual page), nearest first, then one record with ``DONE`` 1 and
  ``STATUS`` (an index in ``model.prefetcher.STATUSES``).

Outcomes the model has no request for: ``window`` 0 or ``direction`` 3 answer
``bad_config`` at once (the model's configuration rejects those values); ``drop`` answers
``dropped`` (below).

Memory: reads only (``awvalid`` and ``wvalid`` stay low; no A or D bit is ever set). One
read is in flight at a time: single 64-bit beats for the walks, INCR bursts of at most
``max_burst`` beats for the window (one burst when the span fits). A read answered
``SLVERR``/``DECERR`` ends the request with ``bus_error``, except in a neighbour's host walk,
where it only rules that neighbour out (as in the model). A burst is always read to its end;
the window's remaining bursts are read too, and an error on any beat answers ``bus_error``
after the last one.

Sharing the memory port (never delaying demand walks): ``want`` is high while a read waits
to start; the read's ``arvalid`` is raised only while ``grant`` is high. The engine's arbiter
raises ``grant`` only when no demand walk wants the port, and once it sees ``arvalid`` holds
``grant`` until the address handshake. A demand walk therefore waits at most for the one
prefetch read already started (a single beat, or one window burst of ``max_burst`` beats).

Dropping: a ``drop`` pulse while a request is in progress abandons it. A read that waits
for ``grant`` is withdrawn; a read already started is completed and its data discarded; a
GPA record already offered on ``resp`` is still delivered. The request then ends with
``dropped``, its GPA records being a prefix of the model's (``model.prefetcher.dropped``).
A request that reaches its own end first is answered as usual.

Reset (the ``sync`` domain's) abandons the request in progress; the AXI slave is reset with
the unit (AXI's shared ``ARESETn``), and beats arriving afterwards are taken and ignored.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from thermocline import layouts as L
from .axi import MAX_BURST_BEATS, AxiParams, Burst, Resp, axi4_signature
from thermocline.layouts import PREFETCH_REQ, PREFETCH_RESP
from .layouts import struct

__all__ = ["Prefetcher", "PREFETCH_REQ", "PREFETCH_RESP", "STATUS", "SYNTH_DESIGNS"]

#: Status codes of ``PREFETCH_RESP.STATUS``.
STATUS = {name: code for code, name in enumerate(L.PREFETCH_STATUSES)}

#: Purposes of a host walk: a guest table entry's address, the guest leaf table's, a
#: neighbour's GPA.
_P_GUEST, _P_LEAF, _P_CHECK = 0, 1, 2


def _index(addr, level):
    """Entry number (9 bits) of ``addr`` in its table at ``level`` (a 3-bit signal, 1..4)."""
    a = Cat(addr, Const(0, max(0, 48 - len(addr))))
    return Mux(level == 4, a[39:48], Mux(level == 3, a[30:39],
                                         Mux(level == 2, a[21:30], a[12:21])))


class Prefetcher(wiring.Component):
    """The prefetcher (see the module docstring).

    Parameters (keyword-only)
    ----------
    host : "ept" or "npt"
        Host table format (``model.prefetcher.PrefetchConfig.host``).
    pa_bits : int
        Physical-address width, 32..52 (``PrefetchConfig.pa_bits``).
    max_burst : int
        Most beats of one window burst, 1..256; default 64.
    axi : AxiParams
        Memory port widths: ``data_width`` 64 and ``addr_width`` 52 (root pointers carry
        52-bit addresses).

    Members
    -------
    req : In(stream of PREFETCH_REQ)
    resp : Out(stream of PREFETCH_RESP)
    window : In(9)
    direction : In(2)
    drop : In(1)
    want : Out(1)
        A read waits for ``grant``.
    grant : In(1)
        The arbiter lets a read start.
    m_axi : Out(AXI4 master), read channels only in use
    busy : Out(1)
        A request is in progress (until its ``DONE`` record is taken).
    """

    def __init__(self, *, host: str = "ept", pa_bits: int = 52, max_burst: int = 64,
                 axi: AxiParams | None = None):
        if host not in ("ept", "npt"):
            raise ValueError(f"Prefetcher: host must be 'ept' or 'npt', got {host!r}")
        if isinstance(pa_bits, bool) or not isinstance(pa_bits, int) \
                or not 32 <= pa_bits <= 52:
            raise ValueError(f"Prefetcher: pa_bits must be an integer in 32..52, "
                             f"got {pa_bits!r}")
        if isinstance(max_burst, bool) or not isinstance(max_burst, int) \
                or not 1 <= max_burst <= MAX_BURST_BEATS:
            raise ValueError(f"Prefetcher: max_burst must be an integer in "
                             f"1..{MAX_BURST_BEATS}, got {max_burst!r}")
        axi = axi if axi is not None else AxiParams(addr_width=52, data_width=64)
        if not isinstance(axi, AxiParams):
            raise TypeError(f"Prefetcher: axi must be an AxiParams, got {axi!r}")
        if axi.data_width != 64 or axi.addr_width != 52:
            raise ValueError(f"Prefetcher: the memory port is 64 bits wide with 52-bit "
                             f"addresses, got data_width={axi.data_width}, "
                             f"addr_width={axi.addr_width}")
        self._p = dict(host=host, pa_bits=pa_bits, max_burst=max_burst)
        self._axi = axi
        super().__init__({
            "req": In(stream.Signature(struct(PREFETCH_REQ))),
            "resp": Out(stream.Signature(struct(PREFETCH_RESP))),
            "window": In(9),
            "direction": In(2),
            "drop": In(1),
            "want": Out(1),
            "grant": In(1),
            "m_axi": Out(axi4_signature(axi)),
            "busy": Out(1),
        })

    @property
    def params(self) -> dict:
        """``host``, ``pa_bits`` and ``max_burst``."""
        return dict(self._p)

    @property
    def axi(self) -> AxiParams:
        return self._axi

    def elaborate(self, platform):
        m = Module()
        ept = self._p["host"] == "ept"
        pa = self._p["pa_bits"]
        fw = pa - 12
        max_burst = self._p["max_burst"]
        axi = self.m_axi

        # --- request ----------------------------------------------------------------------
        r_gva = Signal(64, reset_less=True)
        r_hroot = Signal(40, reset_less=True)
        r_win = Signal(9, reset_less=True)
        r_dir = Signal(2, reset_less=True)
        r_idx = Signal(9, reset_less=True)
        m.d.comb += r_idx.eq(r_gva[12:21])

        # --- walk state -------------------------------------------------------------------
        g_level = Signal(3, reset_less=True)
        g_table = Signal(40, reset_less=True)       # guest table being walked (page number)
        purpose = Signal(2, reset_less=True)
        h_gpa = Signal(52, reset_less=True)         # GPA being translated
        h_level = Signal(3, reset_less=True)
        leaf_base = Signal(40, reset_less=True)     # HPA page of the guest leaf table
        status = Signal(3, reset_less=True)
        dropping = Signal()
        stop = Signal()
        m.d.comb += stop.eq(dropping | self.drop)

        # --- the one read in flight -------------------------------------------------------
        ar_pend = Signal()                          # address waits for grant / arready
        rd_addr = Signal(52, reset_less=True)
        rd_len = Signal(8, reset_less=True)
        after_guest = Signal(reset_less=True)       # the single read is of a guest entry
        e_r = Signal(64, reset_less=True)
        m.d.comb += [
            self.want.eq(ar_pend),
            axi.arvalid.eq(ar_pend & self.grant),
            axi.araddr.eq(rd_addr),
            axi.arlen.eq(rd_len),
            axi.arsize.eq(3),
            axi.arburst.eq(Burst.INCR),
            axi.arid.eq(0),
            axi.rready.eq(1),
            axi.awvalid.eq(0),
            axi.wvalid.eq(0),
            axi.bready.eq(1),
        ]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += ar_pend.eq(0)
        beat = axi.rvalid & ~ar_pend                # a beat of the read in flight
        beat_err = (axi.rresp == Resp.SLVERR) | (axi.rresp == Resp.DECERR)

        def read(addr, guest):
            m.d.sync += [rd_addr.eq(addr), rd_len.eq(0), ar_pend.eq(1),
                         after_guest.eq(guest)]
            m.next = "WAIT"

        def host_start(gpa, why):
            """Translate ``gpa`` through the host table, from its root."""
            m.d.sync += [h_gpa.eq(gpa), purpose.eq(why), h_level.eq(4)]
            read(Cat(Const(0, 3), _index(gpa, Const(4, 3)), r_hroot), 0)

        def finish(name):
            m.d.sync += status.eq(STATUS[name])
            m.next = "DONE"

        # --- window buffer: per leaf-table index, "present and well formed" and the frame --
        m.submodules.buf = buf = Memory(shape=1 + fw, depth=512, init=[])
        buf_w = buf.write_port()
        buf_r = buf.read_port()
        has_f = Signal(reset_less=True)
        has_b = Signal(reset_less=True)
        w_next = Signal(9, reset_less=True)         # index of the next beat's entry
        s_hi = Signal(9, reset_less=True)           # last index of the span
        w_left = Signal(10, reset_less=True)        # entries not yet requested
        w_err = Signal(reset_less=True)
        d = Signal(10, reset_less=True)             # distance being looked at
        side = Signal(reset_less=True)              # 0: after the fault, 1: before
        c_idx = Signal(9, reset_less=True)          # the neighbour being checked
        entry = Signal(1 + fw, reset_less=True)     # ... and its buffer entry

        # --- entry decoding ---------------------------------------------------------------
        e = e_r
        above = e[pa:52].any() if pa < 52 else Const(0)
        ps = e[7]

        def big_leaf(level):
            return ((level == 2) | (level == 3)) & ps

        g_bad = Mux(g_level == 4, above | ps,
                    Mux(big_leaf(g_level),
                        above | Mux(g_level == 3, e[13:30].any(), e[13:21].any()),
                        above))
        h_leaf = (h_level == 1) | big_leaf(h_level)
        if ept:
            h_present = e[0:3].any()
            memtype = e[3:6]
            h_bad = ((e[1] & ~e[0])
                     | (h_leaf & ((memtype == 2) | (memtype == 3) | (memtype == 7)))
                     | Mux(h_level == 4, above | e[3:8].any(),
                           Mux(big_leaf(h_level),
                               above | Mux(h_level == 3, e[12:30].any(), e[12:21].any()),
                               Mux(h_level == 1, above, above | e[3:7].any()))))
        else:
            h_present = e[0]
            h_bad = Mux(h_level == 4, above | ps,
                        Mux(big_leaf(h_level),
                            above | Mux(h_level == 3, e[13:30].any(), e[13:21].any()),
                            above))
        frame = Cat(Const(0, 12), e[12:pa])         # table or page address, pa bits
        hpa = Signal(pa)
        m.d.comb += hpa.eq(Mux(h_level == 3, Cat(h_gpa[:30], frame[30:]),
                               Mux(h_level == 2, Cat(h_gpa[:21], frame[21:]),
                                   Cat(h_gpa[:12], frame[12:]))))

        # The record, as one word (reserved bits zero): GPA records and the DONE record.
        done = Signal()
        record = struct(PREFETCH_RESP)
        m.d.comb += self.resp.payload.as_value().eq(Cat(
            status, done, Const(0, record["PAGE"].offset - 4), h_gpa[12:],
            Const(0, record["GVA"].offset - 52), Const(0, 12), c_idx, r_gva[21:]))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.req.ready.eq(1)
                m.d.sync += dropping.eq(0)
                with m.If(self.req.valid):
                    pl = self.req.payload
                    m.d.sync += [r_gva.eq(pl.GVA),
                                 r_hroot.eq(pl.HROOT[12:52]), r_win.eq(self.window),
                                 r_dir.eq(self.direction), g_level.eq(4),
                                 g_table.eq(pl.CR3[12:52])]
                    with m.If((self.window == 0) | (self.direction == 3)):
                        finish("bad_config")
                    with m.Else():
                        m.next = "GUEST"

            with m.State("GUEST"):                  # the host walk of a guest entry's GPA
                m.d.comb += self.busy.eq(1)
                with m.If(stop):
                    finish("dropped")
                with m.Else():
                    host_start(Cat(Const(0, 3), _index(r_gva, g_level), g_table), _P_GUEST)

            with m.State("WAIT"):                   # one single-beat read
                m.d.comb += self.busy.eq(1)
                with m.If(self.drop):
                    m.d.sync += dropping.eq(1)
                with m.If(stop & ar_pend & ~self.grant):
                    m.d.sync += ar_pend.eq(0)
                    finish("dropped")
                with m.Elif(beat):
                    m.d.sync += e_r.eq(axi.rdata)
                    with m.If(stop):
                        finish("dropped")
                    with m.Elif(beat_err):
                        with m.If(purpose == _P_CHECK):
                            m.next = "NEXT"
                        with m.Else():
                            finish("bus_error")
                    with m.Elif(after_guest):
                        m.next = "GDEC"
                    with m.Else():
                        m.next = "HDEC"

            with m.State("HDEC"):                   # a host entry
                m.d.comb += self.busy.eq(1)
                with m.If(~h_present):
                    with m.If(purpose == _P_CHECK):
                        m.next = "EMIT"             # non-resident
                    with m.Else():
                        finish("host_fault")
                with m.Elif(h_bad):
                    with m.If(purpose == _P_CHECK):
                        m.next = "NEXT"
                    with m.Else():
                        finish("host_fault")
                with m.Elif(h_leaf):
                    with m.If(purpose == _P_GUEST):
                        read(hpa, 1)
                    with m.Elif(purpose == _P_LEAF):
                        m.d.sync += leaf_base.eq(hpa[12:])
                        m.next = "SPAN"
                    with m.Else():
                        m.next = "NEXT"             # resident
                with m.Else():
                    m.d.sync += h_level.eq(h_level - 1)
                    read(Cat(Const(0, 3), _index(h_gpa, h_level - 1), frame[12:]), 0)

            with m.State("GDEC"):                   # a guest entry
                m.d.comb += self.busy.eq(1)
                with m.If(~e[0] | g_bad):
                    finish("guest_fault")
                with m.Elif(big_leaf(g_level)):
                    finish("no_leaf_table")
                with m.Elif(g_level == 2):
                    with m.If(stop):
                        finish("dropped")
                    with m.Else():
                        host_start(frame, _P_LEAF)
                with m.Else():
                    m.d.sync += [g_level.eq(g_level - 1), g_table.eq(e[12:pa])]
                    m.next = "GUEST"

            with m.State("SPAN"):                   # the window's span in the leaf table
                m.d.comb += self.busy.eq(1)
                f = (r_dir != 1) & (r_idx != 511)
                b = (r_dir != 0) & (r_idx != 0)
                m.d.sync += [has_f.eq(f), has_b.eq(b), w_err.eq(0),
                             w_next.eq(Mux(b, Mux(r_idx >= r_win, r_idx - r_win, 0), r_idx + 1)),
                             s_hi.eq(Mux(f, Mux(r_idx + r_win <= 511, r_idx + r_win, 511),
                                         r_idx - 1))]
                m.next = "SPAN2"

            with m.State("SPAN2"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += w_left.eq(s_hi - w_next + 1)
                with m.If(stop):
                    finish("dropped")
                with m.Elif(~has_f & ~has_b):
                    finish("ok")
                with m.Else():
                    m.next = "BURST"

            with m.State("BURST"):                  # request the next part of the span
                m.d.comb += self.busy.eq(1)
                chunk = Mux(w_left > max_burst, max_burst, w_left)
                with m.If(stop):
                    finish("dropped")
                with m.Else():
                    m.d.sync += [rd_addr.eq(Cat(Const(0, 3), w_next, leaf_base)),
                                 rd_len.eq(chunk - 1), ar_pend.eq(1),
                                 w_left.eq(w_left - chunk)]
                    m.next = "BEATS"

            with m.State("BEATS"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.drop):
                    m.d.sync += dropping.eq(1)
                word = axi.rdata
                m.d.comb += [buf_w.addr.eq(w_next),
                             buf_w.data.eq(Cat(word[0] & ~(word[pa:52].any() if pa < 52
                                                           else Const(0)),
                                               word[12:pa])),
                             buf_w.en.eq(beat)]
                with m.If(stop & ar_pend & ~self.grant):
                    m.d.sync += ar_pend.eq(0)
                    finish("dropped")
                with m.Elif(beat):
                    m.d.sync += w_next.eq(w_next + 1)
                    with m.If(beat_err):
                        m.d.sync += w_err.eq(1)
                    with m.If(axi.rlast):
                        with m.If(stop):
                            finish("dropped")
                        with m.Elif(w_left != 0):
                            m.next = "BURST"
                        with m.Elif(w_err | beat_err):
                            finish("bus_error")
                        with m.Else():
                            m.d.sync += [d.eq(1), side.eq(0)]
                            m.next = "NEXT"

            with m.State("NEXT"):                   # the next neighbour, nearest first
                m.d.comb += self.busy.eq(1)
                f_ok = has_f & (r_idx + d <= 511)
                b_ok = has_b & (d <= r_idx)
                cand = Mux(side, r_idx - d, r_idx + d)
                m.d.comb += [buf_r.addr.eq(cand), buf_r.en.eq(1)]
                m.d.sync += c_idx.eq(cand)
                with m.If(stop):
                    finish("dropped")
                with m.Elif((d > r_win) | (~f_ok & ~b_ok)):
                    finish("ok")
                with m.Elif(~side):
                    m.d.sync += side.eq(1)
                    with m.If(f_ok):
                        m.next = "LOAD"
                with m.Else():
                    m.d.sync += [side.eq(0), d.eq(d + 1)]
                    with m.If(b_ok):
                        m.next = "LOAD"

            with m.State("LOAD"):                   # the neighbour's PTE, from the buffer
                m.d.comb += self.busy.eq(1)
                m.d.sync += entry.eq(buf_r.data)    # registered: block RAM output is slow
                m.next = "PICK"

            with m.State("PICK"):
                m.d.comb += self.busy.eq(1)
                with m.If(entry[0]):
                    m.next = "CHECK"
                    m.d.sync += [h_gpa.eq(Cat(Const(0, 12), entry[1:])), purpose.eq(_P_CHECK)]
                with m.Else():
                    m.next = "NEXT"

            with m.State("CHECK"):                  # its GPA's host walk
                m.d.comb += self.busy.eq(1)
                with m.If(stop):
                    finish("dropped")
                with m.Else():
                    host_start(h_gpa, _P_CHECK)

            with m.State("EMIT"):
                m.d.comb += [self.busy.eq(1), self.resp.valid.eq(1)]
                with m.If(self.drop):
                    m.d.sync += dropping.eq(1)
                with m.If(self.resp.ready):
                    m.next = "NEXT"

            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.resp.valid.eq(1), done.eq(1)]
                with m.If(self.resp.ready):
                    m.next = "IDLE"

        # A drop seen in any other state of a request is remembered until the next stop point.
        with m.If(self.drop & self.busy):
            m.d.sync += dropping.eq(1)
        return m


#: Designs for ``make synth`` (see :mod:`thermocline.synth`).
SYNTH_DESIGNS = {
    "prefetcher": lambda: Prefetcher(),
    "prefetcher-npt": lambda: Prefetcher(host="npt"),
}
