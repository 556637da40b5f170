"""The register block in Verilator under cocotbext-axi's AXI4-Lite master (cocotb tests in
cosim/tb_regs.py), checked against :class:`thermocline.regmap.RegisterFile`.

One Verilator build, shared by every test (and cached in ``build/sim``).
``THERMOCLINE_SEED=<n>`` changes the seed, ``THERMOCLINE_WAVES=1`` records waveforms.
"""

import pytest

pytest.importorskip("cocotb_tools.runner")
pytest.importorskip("cocotbext.axi")
from cosim.runner import build  # noqa: E402
from cosim.tb_regs import RegsHarness  # noqa: E402

PARAMS = {"seed": 7}

COCOTB_TESTS = ["every_register", "random_traffic", "concurrent_reads_and_writes"]


def make_harness(seed: int) -> RegsHarness:
    """The design under test: the register block with memories behind its windows."""
    return RegsHarness(seed=seed)


@pytest.fixture(scope="module")
def regs_sim():
    sim = build("regs", make_harness, PARAMS)
    if sim.build_seconds:
        print(f"\nVerilator build of regs: {sim.build_seconds:.1f} s")
    return sim


@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_regs(regs_sim, testcase):
    result = regs_sim.run("cosim.tb_regs", testcase=rf"\.{testcase}$", seed=1)
    assert result.tests == 1, f"{result.tests} cocotb tests ran, expected 1"
    print(f"\n{testcase}: seed {result.seed}, {result.metrics}")
