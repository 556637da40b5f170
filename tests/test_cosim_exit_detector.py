"""The exit detector in Verilator against the model (cocotb tests in cosim/tb_exit_detector.py).

One Verilator build per parameter set, shared by its tests and cached in ``build/sim``.
``THERMOCLINE_SEED=<n>`` changes the seed, ``THERMOCLINE_SCALE=10`` runs ten times the
random cases, ``THERMOCLINE_WAVES=1`` records waveforms; see docs/cosim.md.
"""

import pytest

from hdl.exit_detector import ExitDetector

pytest.importorskip("cocotb_tools.runner")
from cosim.runner import build  # noqa: E402

PARAM_SETS = [
    dict(spaces=8, tables=32, run_threshold=4, tables_needed=2),
    dict(spaces=3, tables=5, run_threshold=2, tables_needed=2),
]

COCOTB_TESTS = {"random_streams": 1, "reset_mid_stream": 1}


@pytest.fixture(scope="module", params=PARAM_SETS, ids=lambda p: f"s{p['spaces']}t{p['tables']}")
def exit_sim(request):
    return build("exit_detector", lambda **p: ExitDetector(**p), request.param)


@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_exit_detector(exit_sim, testcase):
    result = exit_sim.run("cosim.tb_exit_detector", testcase=rf"\.{testcase}$", seed=1)
    assert result.tests == COCOTB_TESTS[testcase]
    print(f"\n{testcase} {exit_sim.params}: seed {result.seed}")
