# amaranth: UnusedElaboratable=no
"""The engine's parameters: every bad one is refused with a message that names it."""

import pytest

from hdl.engine import SMALL, Engine


@pytest.mark.parametrize("params,message", [
    (dict(host="vmx"), "host must be 'ept' or 'npt'"),
    (dict(pa_bits=31), "pa_bits must be an integer in 32..52, got 31"),
    (dict(pa_bits=53), "pa_bits must be an integer in 32..52, got 53"),
    (dict(pa_bits=True), "pa_bits must be an integer in 32..52, got True"),
    (dict(walker=dict(pa_bits=46)), "walker parameter 'pa_bits' is set by the engine"),
    (dict(walker=dict(host="npt")), "walker parameter 'host' is set by the engine"),
    (dict(scanner=dict(pa_bits=46)), "scanner parameter 'pa_bits' is set by the engine"),
    (dict(scanner=dict(data_width=128)),
     "scanner parameter 'data_width' is set by the engine"),
    (dict(drop_depth=0), "drop_depth must be 1..256"),
    (dict(clear_depth=2), "clear_depth must be 3..512"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        Engine(**params)


def test_small_engine_has_the_full_address_bus():
    """``pa_bits`` narrows the units, not the bus: ``m_axi`` keeps 52 address bits."""
    e = Engine(**SMALL)
    assert SMALL["pa_bits"] < 52
    assert e.bus.addr_width == 52 and len(e.m_axi.araddr) == 52


def test_model_twin_of_a_build():
    """``engine_config`` gives the model the build's widths, cache sizes and scanner
    capacities: as many candidates as the register asks for and the build keeps, and no
    more activity levels than the build's histograms hold."""
    from cosim.engine_scenario import engine_config

    small = engine_config(SMALL)
    assert small.scan.pa_bits == small.walker.pa_bits == SMALL["pa_bits"]
    assert small.walker.tlb_entries == SMALL["walker"]["tlb_entries"]
    assert small.scan.large_page.top_k == 8
    assert engine_config(dict(scanner=dict(top_k_max=3))).scan.large_page.top_k == 3
    assert engine_config(dict(scanner=dict(max_levels=16)), levels=16).scan.levels == 16
    with pytest.raises(ValueError, match="9 activity levels: the scanner keeps 8"):
        engine_config(levels=9)
