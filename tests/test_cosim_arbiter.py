"""The AXI arbiter in Verilator (cocotb tests in cosim/tb_arbiter.py)."""

import pytest

from hdl.arbiter import AxiArbiter, Unit
from hdl.axi import AxiParams

pytest.importorskip("cocotb_tools.runner")
from cosim.runner import build  # noqa: E402


def make_arbiter(data_width: int, pa_bits: int) -> AxiArbiter:
    narrow = AxiParams(addr_width=pa_bits, data_width=64, id_width=4)
    wide = AxiParams(addr_width=pa_bits, data_width=data_width, id_width=4)
    return AxiArbiter(AxiParams(addr_width=pa_bits, data_width=data_width, id_width=6), [
        Unit("walker", narrow, snooped=True, lock=True),
        Unit("scanner", wide),
        Unit("prefetch", narrow),
    ])


@pytest.fixture(scope="module", params=[64, 256], ids=lambda w: f"w{w}")
def arbiter_sim(request):
    return build("arbiter", make_arbiter, dict(data_width=request.param, pa_bits=32))


def test_random_traffic(arbiter_sim):
    result = arbiter_sim.run("cosim.tb_arbiter", testcase="random_traffic", seed=1)
    assert result.tests == 1
    print(f"\n{arbiter_sim.params}: seed {result.seed}, {result.metrics}")


@pytest.mark.parametrize("kwargs, words", [
    (dict(units=[]), "at least one unit"),
    (dict(units=[Unit("a", AxiParams(addr_width=32, data_width=64, id_width=4)), Unit("a", AxiParams(addr_width=32, data_width=64, id_width=4))]),
     "names must differ"),
    (dict(units=[Unit("a", AxiParams(addr_width=40, data_width=64, id_width=4))]), "address bits"),
    (dict(units=[Unit("a", AxiParams(addr_width=32, data_width=256, id_width=4))]), "wider than"),
    (dict(units=[Unit("a", AxiParams(addr_width=32, data_width=64, id_width=4)), Unit("b", AxiParams(addr_width=32, data_width=64, id_width=6))]),
     "cannot hold"),
    (dict(units=[Unit("a", AxiParams(addr_width=32, data_width=128, id_width=4), snooped=True)]), "64 bits wide"),
    (dict(units=[Unit("a", AxiParams(addr_width=32, data_width=64, id_width=4))], max_reads=1), "max_reads"),
])
def test_parameters_are_checked(kwargs, words):
    with pytest.raises(ValueError, match=words):
        AxiArbiter(AxiParams(addr_width=32, data_width=128, id_width=6), **kwargs)
