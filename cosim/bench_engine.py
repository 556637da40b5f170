"""Engine throughput with every unit busy at once, against each unit alone (``make bench``).

Runs the ``throughput`` test of :mod:`cosim.tb_engine` on the engine build the demo uses:
``walks`` demand walks over random heap pages (cold: the heap is far larger than the walk
caches), one scan pass over the guest's EPT, and ``faults`` prefetch requests — first each
alone, then all three started together. Every walk response and prefetch answer is compared
with the model in both runs. The figures are cycles; the ratios (together / alone) are the
slowdown each unit suffers from sharing the memory port.

A second run walks every page first, so that the scan pass clears the A bit of every leaf:
each cleared leaf is a ``scan_clear`` command the walker must take, and the figure is that
pass's entries per cycle (the scanner's bus limit is one).
"""

from dataclasses import replace

from .engine_scenario import ReplayConfig

__all__ = ["engine_throughput"]


def engine_throughput(*, walks: int = 400, faults: int = 16, npages: int = 2048) -> dict:
    from hdl.engine import Engine
    from thermocline.demo_rtl import ENGINE_PARAMS
    from .runner import build
    sim = build("engine", lambda **p: Engine(**p), ENGINE_PARAMS)
    cfg = ReplayConfig(host=ENGINE_PARAMS["host"], workload="uniform", npages=npages,
                       passes=1, max_walks=walks, faults=faults)
    m = _run(sim, cfg, "bench-throughput")
    out = {"walk_count": m["walks"], "fault_count": m["faults"], "npages": npages}
    for unit in ("walks", "scan", "prefetch"):
        alone, together = m[f"{unit}_alone"], m[f"{unit}_together"]
        out[unit] = {"alone_cycles": alone, "together_cycles": together,
                     "slowdown": together / alone}
    hot = _run(sim, replace(cfg, max_walks=npages), "bench-all-accessed")
    out["scan_all_accessed"] = {
        "cycles": hot["scan_alone"], "entries": hot["scan_entries_0"],
        "cleared": hot["scan_accessed_0"],
        "entries_per_cycle": hot["scan_entries_0"] / hot["scan_alone"]}
    return {"engine_throughput": out}


def _run(sim, cfg: ReplayConfig, name: str) -> dict:
    result = sim.run("cosim.tb_engine", testcase=r"\.throughput$", seed=1,
                     extra_env=cfg.to_env(), run_name=name)
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in result.metrics.items()}
