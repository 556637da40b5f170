"""The RTL engine replaying a scenario against the model engine (cocotb test in
cosim/tb_engine.py): a synthetic workload here; ``make demo`` replays the bundled trace."""

import pytest

from hdl.engine import SMALL, Engine
from thermocline.demo_rtl import ENGINE_PARAMS

pytest.importorskip("cocotb_tools.runner")
from cosim.engine_scenario import ReplayConfig  # noqa: E402
from cosim.runner import build  # noqa: E402


@pytest.fixture(scope="module")
def engine_sim():
    return build("engine", lambda **p: Engine(**p), ENGINE_PARAMS)


@pytest.fixture(scope="module")
def small_sim():
    """The configuration ``make synth`` builds as ``engine-small``."""
    return build("engine", lambda **p: Engine(**p), SMALL)


@pytest.mark.parametrize("workload", ["zipf", "shifting"])
def test_replay(engine_sim, workload, tmp_path):
    cfg = ReplayConfig(host="ept", workload=workload, npages=1024, passes=3, max_walks=300,
                       swap_out=128, faults=4, exit_pages=600)
    result = engine_sim.run("cosim.tb_engine", testcase=r"\.replay$", seed=1,
                            extra_env=cfg.to_env())
    assert result.tests == 1
    print(f"\n{workload}: {result.metrics}")


def test_replay_small(small_sim, tmp_path):
    """The synthesized small engine (its model twin with the same caches, tables and
    physical-address width)."""
    cfg = ReplayConfig(host="ept", workload="zipf", npages=1024, passes=3, max_walks=300,
                       swap_out=128, faults=4, exit_pages=600, seed=2)
    result = small_sim.run("cosim.tb_engine", testcase=r"\.replay$", seed=2,
                           extra_env=cfg.to_env())
    assert result.tests == 1
    print(f"\nsmall: {result.metrics}")


@pytest.mark.parametrize("sim,seed", [("engine_sim", 3), ("small_sim", 4), ("npt_wide_sim", 5)])
def test_configured_replay(request, sim, seed):
    """The replay with every scanner, prioritizer and prefetch configuration field away
    from its reset value (random per seed), the model configured to match."""
    host = "npt" if sim == "npt_wide_sim" else "ept"
    cfg = ReplayConfig(host=host, workload="zipf", npages=1024, passes=4, max_walks=200,
                       swap_out=128, faults=4, exit_pages=300, seed=seed)
    result = request.getfixturevalue(sim).run("cosim.tb_engine",
                                              testcase=r"\.configured_replay$",
                                              seed=seed, extra_env=cfg.to_env())
    assert result.tests == 1


@pytest.fixture(scope="module")
def npt_wide_sim():
    """An engine for AMD hosts (NPT) on a 128-bit bus."""
    return build("engine", lambda **p: Engine(**p), dict(host="npt", data_width=128))


def test_replay_npt_wide(npt_wide_sim, tmp_path):
    """Nested paging over NPT, the scanner on a 128-bit bus, the walker and the prefetcher
    making 64-bit transfers on it."""
    cfg = ReplayConfig(host="npt", workload="shifting", npages=1024, passes=3,
                       max_walks=300, swap_out=128, faults=4, exit_pages=600, seed=3)
    result = npt_wide_sim.run("cosim.tb_engine", testcase=r"\.replay$", seed=3,
                              extra_env=cfg.to_env())
    assert result.tests == 1
    print(f"\nnpt, 128-bit: {result.metrics}")


def test_registers_mid_pass(engine_sim):
    cfg = ReplayConfig(host="ept", workload="uniform", npages=1024, passes=2, max_walks=200)
    result = engine_sim.run("cosim.tb_engine", testcase=r"\.registers_mid_pass$", seed=1,
                            extra_env=cfg.to_env())
    assert result.tests == 1


@pytest.mark.parametrize("testcase,passes,max_walks", [
    ("inv_queue_full", 1, 8),
    ("reports_keep_their_pass_root", 2, 8),
    ("continuous_scanning_waits_for_ack", 2, 50),
    ("scan_busy_until_published", 4, 20),
    ("reset_mid_operation", 2, 100),
    ("bus_errors", 1, 8),
    ("bad_scan_root", 3, 8),
    ("interval_modes", 2, 100),
    ("ia32e_pass_keeps_walker_caches", 1, 8),
])
@pytest.mark.parametrize("sim", ["engine_sim", "small_sim"])
def test_directed(request, sim, testcase, passes, max_walks):
    """The directed engine tests of cosim/tb_engine.py, each on a small uniform workload,
    on the default engine and on the small one."""
    cfg = ReplayConfig(host="ept", workload="uniform", npages=512, passes=passes,
                       max_walks=max_walks)
    result = request.getfixturevalue(sim).run("cosim.tb_engine", testcase=rf"\.{testcase}$",
                                              seed=1, extra_env=cfg.to_env())
    assert result.tests == 1


def test_throughput_bench_runs_and_checks():
    """The benchmark (every answer checked against the model, alone and together)."""
    from cosim.bench_engine import engine_throughput
    out = engine_throughput(walks=60, faults=3, npages=1024)["engine_throughput"]
    for unit in ("walks", "scan", "prefetch"):
        assert out[unit]["alone_cycles"] > 0 and out[unit]["together_cycles"] > 0
