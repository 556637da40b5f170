"""``make verilog``: the engine as one Verilog module with the port names FPGA tools infer.

The top module ``thermocline_engine`` wraps :class:`hdl.engine.Engine`:

* ``aclk``, ``aresetn`` (active-low, synchronous, as AXI's ``ARESETn``);
* ``m_axi_*`` — the AXI4 master (``awvalid``, ``awaddr``, ..., ``rready``), and
  ``s_axil_*`` — the AXI4-Lite register slave; vendor tools (Vivado's interface inference,
  Quartus Platform Designer) recognise these names as bus interfaces;
* ``irq`` — level-sensitive interrupt, high while ``IRQ_CAUSE & IRQ_MASK`` is not 0;
* the stream ports, ``<name>_valid``, ``<name>_ready``, ``<name>_data`` (the payload
  vector; bit layouts in ``thermocline/layouts.py``): ``walk_req``/``walk_resp``,
  ``fault``/``prefetch``, ``pte_write``; and ``prefetch_drop``.

``python -m thermocline.export --out DIR [--host ept|npt] [--pa-bits 32..52]
[--data-width 64|128|256]`` writes ``DIR/thermocline_engine.v``, the register header ``DIR/thermocline_regs.h`` and
``DIR/ports.json`` (every port with its direction and width).
"""

import argparse
import json
import sys
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib.wiring import Out

__all__ = ["EngineTop", "export", "main"]

#: The stream ports of the engine and the direction of their data.
_STREAMS = {"walk_req": "in", "walk_resp": "out", "fault": "in", "prefetch": "out",
            "pte_write": "in"}


class EngineTop(Elaboratable):
    """:class:`hdl.engine.Engine` with flat, conventionally named ports (module docstring)."""

    def __init__(self, **engine):
        from hdl.engine import Engine
        self.engine = Engine(**engine)
        self.aclk = Signal(name="aclk")
        self.aresetn = Signal(name="aresetn")
        self.irq = Signal(name="irq")
        self.prefetch_drop = Signal(name="prefetch_drop")
        self.ports = {"aclk": ("in", self.aclk), "aresetn": ("in", self.aresetn),
                      "irq": ("out", self.irq), "prefetch_drop": ("in", self.prefetch_drop)}
        self._bus_pairs = []
        for bus, port in (("m_axi", self.engine.m_axi), ("s_axil", self.engine.s_axil)):
            for name, member in port.signature.members.items():
                inner = getattr(port, name)
                sig = Signal(len(inner), name=f"{bus}_{name}")
                # The engine drives the members that flow out of it (the slave port's
                # signature is flipped, so its ``*ready``/``rdata`` flow out).
                out = member.flow == Out
                self.ports[sig.name] = ("out" if out else "in", sig)
                self._bus_pairs.append((sig, inner, out))
        self._streams = []
        for name, direction in _STREAMS.items():
            port = getattr(self.engine, name)
            valid = Signal(name=f"{name}_valid")
            ready = Signal(name=f"{name}_ready")
            payload = Signal(len(port.payload.as_value()), name=f"{name}_data")
            opposite = "out" if direction == "in" else "in"
            self.ports.update({valid.name: (direction, valid), ready.name: (opposite, ready),
                               payload.name: (direction, payload)})
            self._streams.append((port, direction, valid, ready, payload))

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]
        m.submodules.engine = e = self.engine
        m.d.comb += [self.irq.eq(e.irq), e.prefetch_drop.eq(self.prefetch_drop)]
        for sig, inner, out in self._bus_pairs:
            m.d.comb += sig.eq(inner) if out else inner.eq(sig)
        for port, direction, valid, ready, payload in self._streams:
            if direction == "in":
                m.d.comb += [port.valid.eq(valid), port.payload.eq(payload),
                             ready.eq(port.ready)]
            else:
                m.d.comb += [valid.eq(port.valid), payload.eq(port.payload),
                             port.ready.eq(ready)]
        return m


def export(out: Path, **engine) -> dict:
    """Write the Verilog, the C header and the port list; returns the port list."""
    from amaranth.back import verilog
    from cosim.runner import setup_yosys
    from .regmap import c_header
    setup_yosys()
    top = EngineTop(**engine)
    text = verilog.convert(top, name="thermocline_engine", emit_src=False,
                           strip_internal_attrs=True,
                           ports=[sig for _, sig in top.ports.values()])
    out.mkdir(parents=True, exist_ok=True)
    (out / "thermocline_engine.v").write_text(text)
    (out / "thermocline_regs.h").write_text(c_header())
    ports = {name: {"dir": d, "width": len(sig)} for name, (d, sig) in top.ports.items()}
    (out / "ports.json").write_text(json.dumps({"module": "thermocline_engine",
                                                "engine": engine, "ports": ports}, indent=1))
    return ports


def _pa_bits(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 32 <= value <= 52:
        raise argparse.ArgumentTypeError(f"must be 32..52, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m thermocline.export",
                                description="Write the engine's Verilog with FPGA port names.")
    p.add_argument("--out", type=Path, default=Path("build/verilog"))
    p.add_argument("--host", choices=("ept", "npt"), default="ept")
    p.add_argument("--pa-bits", type=_pa_bits, default=52, metavar="32..52",
                   help="the host CPU's physical-address width (MAXPHYADDR)")
    p.add_argument("--data-width", type=int, choices=(64, 128, 256), default=64)
    args = p.parse_args(argv)
    ports = export(args.out, host=args.host, pa_bits=args.pa_bits,
                   data_width=args.data_width)
    print(f"wrote {args.out / 'thermocline_engine.v'} ({len(ports)} ports), "
          f"{args.out / 'thermocline_regs.h'}, {args.out / 'ports.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
