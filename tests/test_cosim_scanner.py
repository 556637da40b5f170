"""The scanner in Verilator against the model (cocotb tests in cosim/tb_scanner.py).

One Verilator build per parameter set, shared by its tests and cached in ``build/sim``.
``THERMOCLINE_SEED=<n>`` changes the seed, ``THERMOCLINE_SCALE=10`` runs ten times the
random cases, ``THERMOCLINE_WAVES=1`` records waveforms; see docs/cosim.md.
"""

import pytest

from hdl.scanner import Scanner

pytest.importorskip("cocotb_tools.runner")
from cosim.runner import build  # noqa: E402

PARAM_SETS = [
    dict(data_width=64, pa_bits=52, max_reads=4, burst_beats=16, max_writes=8, window=16),
    dict(data_width=256, pa_bits=46, max_reads=8, burst_beats=8, max_writes=32, window=64),
]

COCOTB_TESTS = {"passes_with_walks": 2, "bad_trees": 1, "agent_during_passes": 1,
                "reset_mid_pass": 1, "inputs_change_mid_pass": 1}


@pytest.fixture(scope="module", params=PARAM_SETS, ids=lambda p: f"w{p['data_width']}")
def scanner_sim(request):
    return build("scanner", lambda **p: Scanner(**p), request.param)


@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_scanner(scanner_sim, testcase):
    result = scanner_sim.run("cosim.tb_scanner", testcase=rf"\.{testcase}(/|$)", seed=1)
    assert result.tests == COCOTB_TESTS[testcase]
    print(f"\n{testcase} {scanner_sim.params}: seed {result.seed}, {result.metrics}")
