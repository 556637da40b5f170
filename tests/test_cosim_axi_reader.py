"""AxiReader in Verilator against the model memory (cocotb tests in cosim/tb_axi_reader.py).

One Verilator build per parameter set, shared by every test of that set (and cached in
``build/sim`` across runs). ``THERMOCLINE_SEED=<n>`` changes the seed, ``THERMOCLINE_WAVES=1``
records waveforms; see docs/cosim.md.
"""

import pytest

from hdl.axi import AxiParams
from hdl.axi_reader import AxiReader

pytest.importorskip("cocotb_tools.runner")
from cosim.runner import build  # noqa: E402

PARAM_SETS = [
    {"data_width": 64, "max_outstanding": 4},
    {"data_width": 128, "max_outstanding": 2},
]

COCOTB_TESTS = [
    "random_requests",
    "error_on_every_beat",
    "reset_mid_burst",
    "stale_beats_discarded",
    "outstanding_and_throughput",
]


def make_reader(data_width: int, max_outstanding: int) -> AxiReader:
    """The design under test for one parameter set."""
    return AxiReader(params=AxiParams(data_width=data_width), max_outstanding=max_outstanding)


@pytest.fixture(scope="module", params=PARAM_SETS,
                ids=lambda p: f"dw{p['data_width']}-mo{p['max_outstanding']}")
def reader_sim(request):
    sim = build("axi_reader", make_reader, request.param)
    if sim.build_seconds:
        print(f"\nVerilator build of axi_reader {request.param}: {sim.build_seconds:.1f} s")
    return sim


@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_axi_reader(reader_sim, testcase):
    result = reader_sim.run("cosim.tb_axi_reader", testcase=rf"\.{testcase}(/|$)", seed=1)
    expected = 3 if testcase == "random_requests" else 1
    assert result.tests == expected, f"{result.tests} cocotb tests ran, expected {expected}"
    print(f"\n{testcase} {reader_sim.params}: seed {result.seed}, {result.metrics}")


SELFCHECK = '''
import cocotb
from cocotb.triggers import Timer

from cosim.runner import record_metric, sim_params, sim_seed


@cocotb.test()
async def passes(dut):
    record_metric("seed", sim_seed())
    record_metric("params", sim_params())
    await Timer(1, "ns")


@cocotb.test()
async def fails(dut):
    await Timer(1, "ns")
    assert False, "deliberate failure"
'''


def test_runner_reports_results_and_failures(tmp_path, monkeypatch):
    """The runner passes parameters and seed, collects metrics, and turns a failing cocotb
    test (or a run without tests) into a pytest failure naming the test and the seed."""
    from cosim.runner import CosimError

    (tmp_path / "tb_selfcheck.py").write_text(SELFCHECK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("THERMOCLINE_SEED", raising=False)
    sim = build("axi_reader", make_reader, PARAM_SETS[0])

    result = sim.run("tb_selfcheck", testcase=r"\.passes$", seed=1234, run_name="selfcheck")
    assert result.tests == 1
    assert result.metrics == {"seed": 1234, "params": PARAM_SETS[0]}

    with pytest.raises(CosimError, match=r"(?s)seed 4321.*fails: .*deliberate failure"):
        sim.run("tb_selfcheck", seed=4321, run_name="selfcheck_fail")
    with pytest.raises(CosimError, match="no cocotb test ran"):
        sim.run("tb_selfcheck", testcase="no_such_test", run_name="selfcheck_none")
