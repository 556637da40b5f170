"""AMBA AXI4 master interface: parameters, signature and protocol constants.

Every unit that reaches host memory does so through an AXI4 master port built from
:func:`axi4_signature`. Members are flat (``arvalid``, ``rdata``, ...) so that a component port
named ``m_axi`` becomes ``m_axi__arvalid``, ``m_axi__rdata``, ... in the generated Verilog, the
names FPGA tools and cocotbext-axi (``AxiBus.from_prefix(dut, "m_axi", bus_separator="__")``)
expect.

Only the signals the engine needs are present: no ``*lock``, ``*cache``, ``*prot``, ``*qos``,
``*region`` or ``*user``; an interconnect ties those to their defaults. Units produce INCR
bursts only, of full-width beats, never crossing a 4 KiB boundary.
"""

from dataclasses import dataclass

from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "Resp", "Burst", "AxiParams", "axi4_signature",
    "DATA_WIDTHS", "MAX_BURST_BEATS", "BOUNDARY",
]

#: Data bus widths the engine supports, in bits.
DATA_WIDTHS = (64, 128, 256)

#: Most beats in one AXI4 INCR burst (``AxLEN`` is 8 bits: beats minus one).
MAX_BURST_BEATS = 256

#: An AXI burst must not cross an address boundary of this many bytes.
BOUNDARY = 4096


class Resp(enum.IntEnum, shape=2):
    """Response codes of the ``BRESP`` and ``RRESP`` fields."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


class Burst(enum.IntEnum, shape=2):
    """Burst types of the ``AWBURST`` and ``ARBURST`` fields."""

    FIXED = 0
    INCR = 1
    WRAP = 2


@dataclass(frozen=True, kw_only=True)
class AxiParams:
    """Widths of an AXI4 interface.

    Parameters
    ----------
    addr_width : int
        Width of ``awaddr`` and ``araddr`` in bits, 12 to 64.
    data_width : int
        Width of ``wdata`` and ``rdata`` in bits: one of :data:`DATA_WIDTHS`.
    id_width : int
        Width of the transaction ID signals in bits, 1 to 16.

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If a width is out of range; the message names the parameter and the bad value.
    """

    addr_width: int = 48
    data_width: int = 64
    id_width: int = 4

    def __post_init__(self):
        for name in ("addr_width", "data_width", "id_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"AxiParams: {name} must be an integer, got {value!r}")
        if not 12 <= self.addr_width <= 64:
            raise ValueError(f"AxiParams: addr_width must be between 12 and 64 (a burst needs "
                             f"the 4 KiB page offset), got {self.addr_width}")
        if self.data_width not in DATA_WIDTHS:
            raise ValueError(f"AxiParams: data_width must be one of "
                             f"{', '.join(map(str, DATA_WIDTHS))}, got {self.data_width}")
        if not 1 <= self.id_width <= 16:
            raise ValueError(f"AxiParams: id_width must be between 1 and 16, "
                             f"got {self.id_width}")

    @property
    def beat_bytes(self) -> int:
        """Bytes per full-width beat (``data_width // 8``)."""
        return self.data_width // 8

    @property
    def size(self) -> int:
        """``AxSIZE`` of a full-width beat: ``log2(beat_bytes)``."""
        return (self.beat_bytes - 1).bit_length()

    @property
    def strb_width(self) -> int:
        """Width of ``wstrb``: one bit per data byte."""
        return self.beat_bytes


def axi4_signature(params: AxiParams) -> wiring.Signature:
    """Signature of an AXI4 master port, seen from the master.

    Parameters
    ----------
    params : AxiParams
        Widths of the interface.

    Returns
    -------
    wiring.Signature
        Flat members, ``Out`` driven by the master and ``In`` driven by the slave:

        * write address: ``awvalid``, ``awready`` (In), ``awaddr``, ``awlen`` (8),
          ``awsize`` (3), ``awburst`` (2), ``awid``;
        * write data: ``wvalid``, ``wready`` (In), ``wdata``, ``wstrb``, ``wlast``;
        * write response: ``bvalid`` (In), ``bready``, ``bresp`` (In, 2), ``bid`` (In);
        * read address: ``arvalid``, ``arready`` (In), ``araddr``, ``arlen`` (8),
          ``arsize`` (3), ``arburst`` (2), ``arid``;
        * read data: ``rvalid`` (In), ``rready``, ``rdata`` (In), ``rresp`` (In, 2),
          ``rlast`` (In), ``rid`` (In).

        Use ``Out(axi4_signature(p))`` for a master port and ``In(...)`` (or ``.flip()``) for a
        slave port. Response fields compare directly with :class:`Resp` members.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`AxiParams`.
    """
    if not isinstance(params, AxiParams):
        raise TypeError(f"axi4_signature: params must be an AxiParams, got {params!r}")
    aw, dw, iw = params.addr_width, params.data_width, params.id_width
    return wiring.Signature({
        "awvalid": Out(1),
        "awready": In(1),
        "awaddr": Out(aw),
        "awlen": Out(8),
        "awsize": Out(3),
        "awburst": Out(2),
        "awid": Out(iw),
        "wvalid": Out(1),
        "wready": In(1),
        "wdata": Out(dw),
        "wstrb": Out(params.strb_width),
        "wlast": Out(1),
        "bvalid": In(1),
        "bready": Out(1),
        "bresp": In(2),
        "bid": In(iw),
        "arvalid": Out(1),
        "arready": In(1),
        "araddr": Out(aw),
        "arlen": Out(8),
        "arsize": Out(3),
        "arburst": Out(2),
        "arid": Out(iw),
        "rvalid": In(1),
        "rready": Out(1),
        "rdata": In(dw),
        "rresp": In(2),
        "rlast": In(1),
        "rid": In(iw),
    })
