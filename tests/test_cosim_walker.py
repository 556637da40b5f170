"""The walker in Verilator against the model (cocotb tests in cosim/tb_walker.py).

One Verilator build per parameter set, shared by its tests and cached in ``build/sim``.
``THERMOCLINE_SEED=<n>`` changes the seed, ``THERMOCLINE_SCALE=10`` runs ten times the
random cases, ``THERMOCLINE_WAVES=1`` records waveforms; see docs/cosim.md.
"""

import pytest

from hdl.walker import Walker

pytest.importorskip("cocotb_tools.runner")
from cosim.runner import build  # noqa: E402

PARAM_SETS = [
    dict(host="ept", pa_bits=46, tlb_entries=8, tlb_large_entries=2, pwc_entries=4),
    dict(host="npt", pa_bits=46, tlb_entries=4, tlb_large_entries=2, pwc_entries=2),
]

COCOTB_TESTS = {"random_walks": 2, "malformed_tables": 1, "error_on_every_reference": 1,
                "reset_mid_walk": 1, "invalidation_storm": 1, "scan_clear_burst": 1}


@pytest.fixture(scope="module", params=PARAM_SETS, ids=lambda p: p["host"])
def walker_sim(request):
    return build("walker", lambda **p: Walker(**p), request.param)


@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_walker(walker_sim, testcase):
    result = walker_sim.run("cosim.tb_walker", testcase=rf"\.{testcase}(/|$)", seed=1)
    assert result.tests == COCOTB_TESTS[testcase]
    print(f"\n{testcase} {walker_sim.params}: seed {result.seed}, {result.metrics}")
