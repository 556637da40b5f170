"""The prefetcher in Verilator against the model (cocotb tests in cosim/tb_prefetcher.py).

One Verilator build per parameter set, shared by its tests and cached in ``build/sim``.
``THERMOCLINE_SEED=<n>`` changes the seed, ``THERMOCLINE_SCALE=10`` runs ten times the
random cases, ``THERMOCLINE_WAVES=1`` records waveforms; see docs/cosim.md.
"""

import pytest

from hdl.prefetcher import Prefetcher

pytest.importorskip("cocotb_tools.runner")
from cosim.runner import build  # noqa: E402

PARAM_SETS = [
    dict(host="ept", pa_bits=52, max_burst=16),
    dict(host="npt", pa_bits=46, max_burst=64),
]

COCOTB_TESTS = {"random_faults": 2, "error_on_every_reference": 1, "drop_and_reset": 1}


@pytest.fixture(scope="module", params=PARAM_SETS, ids=lambda p: p["host"])
def prefetcher_sim(request):
    return build("prefetcher", lambda **p: Prefetcher(**p), request.param)


@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_prefetcher(prefetcher_sim, testcase):
    result = prefetcher_sim.run("cosim.tb_prefetcher", testcase=rf"\.{testcase}(/|$)", seed=1)
    assert result.tests == COCOTB_TESTS[testcase]
    print(f"\n{testcase} {prefetcher_sim.params}: seed {result.seed}, {result.metrics}")
