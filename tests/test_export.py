"""``make verilog``: the exported engine has the port names and directions FPGA tools infer,
and the Verilog passes Verilator's lint."""

import json
import shutil
import subprocess

import pytest

from hdl.axi import AxiParams, axi4_signature
from hdl.regs import axil_signature
from thermocline.export import export, main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("verilog")
    export(out, host="ept", pa_bits=46, data_width=128)   # m_axi stays 52 bits wide
    return out


def test_ports(exported):
    meta = json.loads((exported / "ports.json").read_text())
    ports = meta["ports"]
    assert meta["module"] == "thermocline_engine"
    for name in axi4_signature(AxiParams(addr_width=52, data_width=128)).members:
        assert f"m_axi_{name}" in ports
    for name in axil_signature().members:
        assert f"s_axil_{name}" in ports
    assert ports["m_axi_awvalid"]["dir"] == "out" and ports["m_axi_awready"]["dir"] == "in"
    assert ports["m_axi_rdata"] == {"dir": "in", "width": 128}
    assert ports["m_axi_araddr"] == {"dir": "out", "width": 52}
    assert ports["s_axil_awvalid"]["dir"] == "in" and ports["s_axil_rdata"]["dir"] == "out"
    assert ports["irq"]["dir"] == "out" and ports["aresetn"]["dir"] == "in"
    assert ports["walk_req_valid"]["dir"] == "in" and ports["walk_req_ready"]["dir"] == "out"
    assert ports["walk_resp_data"] == {"dir": "out", "width": 320}
    text = (exported / "thermocline_engine.v").read_text()
    assert "module thermocline_engine(" in text
    assert "#define" in (exported / "thermocline_regs.h").read_text()


def test_verilator_lint(exported):
    from cosim.runner import CONTROL_FILE, setup_tools
    setup_tools()
    verilator = shutil.which("verilator")
    if verilator is None:
        pytest.skip("verilator not on PATH")
    r = subprocess.run([verilator, "--lint-only", str(CONTROL_FILE),
                        str(exported / "thermocline_engine.v"), "--top-module",
                        "thermocline_engine"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("argv,message", [
    (["--data-width", "100"], "invalid choice"),
    (["--pa-bits", "53"], "--pa-bits: must be 32..52, got 53"),
    (["--pa-bits", "31"], "--pa-bits: must be 32..52, got 31"),
    (["--pa-bits", "4x"], "--pa-bits: not an integer: '4x'"),
])
def test_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
