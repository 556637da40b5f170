"""Streaming AXI4 burst reader: read requests in, data beats out.

The smallest complete AXI4 read master of the engine, and the template for how the walker and
the scanner talk to memory: a request stream, a response stream, an ``m_axi`` port, bursts
split where AXI requires, several bursts in flight, every response code passed through.
"""

from amaranth.hdl import Cat, Const, Module, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .axi import BOUNDARY, MAX_BURST_BEATS, AxiParams, Burst, Resp, axi4_signature

__all__ = ["AxiReader", "read_request_layout", "read_response_layout", "COUNT_WIDTH"]

#: Width of the ``count`` field of a read request (counts up to 511 beats).
COUNT_WIDTH = 9


def read_request_layout(params: AxiParams) -> data.StructLayout:
    """Payload of :class:`AxiReader` requests, LSB first.

    Parameters
    ----------
    params : AxiParams
        Bus widths; ``addr`` is ``params.addr_width`` bits wide.

    Returns
    -------
    data.StructLayout
        ``addr``: byte address of the first beat; the bits below the beat size are ignored.
        ``count``: number of full-width beats, 1 to 256 (:data:`COUNT_WIDTH` bits; zero is
        accepted and reads nothing).
    """
    return data.StructLayout({"addr": params.addr_width, "count": COUNT_WIDTH})


def read_response_layout(params: AxiParams) -> data.StructLayout:
    """Payload of :class:`AxiReader` responses, LSB first.

    Parameters
    ----------
    params : AxiParams
        Bus widths; ``data`` is ``params.data_width`` bits wide.

    Returns
    -------
    data.StructLayout
        ``data``: the beat as the slave returned it (meaningless when ``resp`` is an error).
        ``resp``: the beat's ``RRESP`` (:class:`~hdl.axi.Resp`).
        ``last``: set on the last beat of a request (not of each AXI burst).
    """
    return data.StructLayout({"data": params.data_width, "resp": Resp, "last": 1})


class AxiReader(wiring.Component):
    """Reads runs of consecutive beats from memory over AXI4.

    Each request ``{addr, count}`` reads ``count`` full-width beats starting at ``addr``
    (aligned down to the beat size). The reader issues INCR bursts of at most 256 beats that
    never cross a 4 KiB boundary, so one request becomes one or more bursts; the response
    stream carries exactly ``count`` beats per request, in request order, with ``last`` set on
    the final one. With no stalls it streams one beat per cycle.

    Parameters
    ----------
    params : AxiParams
        Widths of the AXI4 port; default ``AxiParams()``.
    max_outstanding : int
        Most bursts in flight, 1 to 64; default 4.
    arid : int
        ``ARID`` of every burst; must fit ``params.id_width``; default 0.

    Members
    -------
    req : ``In(stream.Signature(read_request_layout(params)))``
        Read requests.
    resp : ``Out(stream.Signature(read_response_layout(params)))``
        Read data, one transfer per beat.
    m_axi : ``Out(axi4_signature(params))``
        AXI4 master port.

    Notes
    -----
    Contract:

    * Up to one request is accepted per cycle. ``req.ready`` depends only on internal state
      and reset (no combinational path from the AXI port); an accepted request drives
      ``arvalid`` on the next cycle when the address channel is free.
    * At most ``max_outstanding`` bursts are in flight (address accepted, last beat not yet
      delivered). All bursts use the ID ``arid``, so the slave returns them in order.
    * Every beat is delivered with its own ``RRESP``: a ``SLVERR`` or ``DECERR`` on beat *k*
      comes out on beat *k*, and the remaining beats of the request still follow. Nothing is
      dropped or merged; error handling belongs to the consumer.
    * Backpressure: ``rready`` follows ``resp.ready``; while the consumer stalls, the slave is
      stalled too. ``resp.valid`` never depends on ``resp.ready``.
    * Reset (the ``sync`` domain's ``rst``) abandons every request and burst in flight.
      While reset is asserted ``arvalid``, ``req.ready`` and ``resp.valid`` are low. The AXI
      slave must be reset together with the reader (AXI's ``ARESETn`` is shared by both
      ends), so no beat of an abandoned burst arrives afterwards. As a safeguard, beats that
      arrive while no burst is outstanding are accepted (``rready`` high) and discarded, so a
      slave finishing an old burst can never stall the interface.
    * The write channels are unused: ``awvalid`` and ``wvalid`` stay low.
    """

    def __init__(self, *, params: AxiParams | None = None, max_outstanding: int = 4,
                 arid: int = 0):
        if params is None:
            params = AxiParams()
        if not isinstance(params, AxiParams):
            raise TypeError(f"AxiReader: params must be an AxiParams, got {params!r}")
        if not isinstance(max_outstanding, int) or not 1 <= max_outstanding <= 64:
            raise ValueError(f"AxiReader: max_outstanding must be an integer from 1 to 64, "
                             f"got {max_outstanding!r}")
        if not isinstance(arid, int) or not 0 <= arid < 1 << params.id_width:
            raise ValueError(f"AxiReader: arid must fit id_width={params.id_width} bits, "
                             f"got {arid!r}")
        self._params = params
        self._max_outstanding = max_outstanding
        self._arid = arid
        super().__init__({
            "req": In(stream.Signature(read_request_layout(params))),
            "resp": Out(stream.Signature(read_response_layout(params))),
            "m_axi": Out(axi4_signature(params)),
        })

    @property
    def params(self) -> AxiParams:
        """Widths of the AXI4 port."""
        return self._params

    @property
    def max_outstanding(self) -> int:
        """Most bursts in flight."""
        return self._max_outstanding

    @property
    def arid(self) -> int:
        """``ARID`` of every burst."""
        return self._arid

    def elaborate(self, platform):
        m = Module()
        p = self._params
        axi = self.m_axi
        shift = p.size
        page_beats = BOUNDARY // p.beat_bytes
        max_burst = min(MAX_BURST_BEATS, page_beats)
        beat_addr_width = p.addr_width - shift
        in_reset = ResetSignal()

        # Kind of each burst in flight: 1 if it ends its request.
        m.submodules.tags = tags = SyncFIFO(width=1, depth=self._max_outstanding)

        # Request being split into bursts, and one waiting behind it.
        busy = Signal()
        cur_beat = Signal(beat_addr_width)
        remaining = Signal(COUNT_WIDTH)
        pend_valid = Signal()
        pend_beat = Signal(beat_addr_width)
        pend_count = Signal(COUNT_WIDTH)

        # Next burst of the current request: up to the 4 KiB boundary, at most 256 beats.
        to_boundary = Signal(range(page_beats + 1))
        burst_len = Signal(range(max_burst + 1))
        final = Signal()
        m.d.comb += to_boundary.eq(page_beats - cur_beat[:(BOUNDARY.bit_length() - 1) - shift])
        with m.If((remaining <= to_boundary) & (remaining <= max_burst)):
            m.d.comb += [burst_len.eq(remaining), final.eq(1)]
        with m.Elif(to_boundary <= max_burst):
            m.d.comb += burst_len.eq(to_boundary)
        with m.Else():
            m.d.comb += burst_len.eq(max_burst)

        # Read address channel.
        ar_fire = Signal()
        m.d.comb += [
            axi.arvalid.eq(busy & tags.w_rdy & ~in_reset),
            axi.araddr.eq(Cat(Const(0, shift), cur_beat)),
            axi.arlen.eq(burst_len - 1),
            axi.arsize.eq(shift),
            axi.arburst.eq(Burst.INCR),
            axi.arid.eq(self._arid),
            ar_fire.eq(axi.arvalid & axi.arready),
            tags.w_en.eq(ar_fire),
            tags.w_data.eq(final),
        ]
        with m.If(ar_fire):
            m.d.sync += [
                cur_beat.eq(cur_beat + burst_len),
                remaining.eq(remaining - burst_len),
            ]
            with m.If(final):
                m.d.sync += busy.eq(0)

        # Requests: straight into the splitter when it is free, else into the waiting slot.
        req_fire = Signal()
        req_beat = self.req.payload.addr[shift:]
        req_count = self.req.payload.count
        m.d.comb += [
            self.req.ready.eq(~pend_valid & ~in_reset),
            req_fire.eq(self.req.valid & self.req.ready & (req_count != 0)),
        ]
        with m.If(~busy | (ar_fire & final)):
            with m.If(pend_valid):
                m.d.sync += [
                    busy.eq(1),
                    cur_beat.eq(pend_beat),
                    remaining.eq(pend_count),
                    pend_valid.eq(0),
                ]
            with m.Elif(req_fire):
                m.d.sync += [
                    busy.eq(1),
                    cur_beat.eq(req_beat),
                    remaining.eq(req_count),
                ]
        with m.Elif(req_fire):
            m.d.sync += [
                pend_valid.eq(1),
                pend_beat.eq(req_beat),
                pend_count.eq(req_count),
            ]

        # Read data channel: every beat passes straight through with its response code.
        expected = tags.r_rdy
        m.d.comb += [
            self.resp.valid.eq(axi.rvalid & expected & ~in_reset),
            self.resp.payload.data.eq(axi.rdata),
            self.resp.payload.resp.eq(axi.rresp),
            self.resp.payload.last.eq(axi.rlast & tags.r_data),
            axi.rready.eq(self.resp.ready | ~expected),
            tags.r_en.eq(axi.rvalid & axi.rlast & self.resp.ready & ~in_reset),
        ]
        return m
