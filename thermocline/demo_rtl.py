"""The demo's main part: the RTL engine replays a real trace, held to the model as it goes.

Builds the engine in Verilator (once; cached under ``build/sim``), runs the full-system
testbench (:mod:`cosim.tb_engine`) on :class:`cosim.engine_scenario.Scenario` for the trace,
follows its progress, and prints what the engine reported: per-pass level histograms,
large-page candidates, prefetch answers, exit drop events, and the agreement with the model
(every walk response, pass statistic, candidate, prefetch record and drop compared, and the
full memory image after every pass).
"""

import json
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .report import rich_table

__all__ = ["ENGINE_PARAMS", "run_rtl_demo"]

#: The engine configuration the demo and the full-system tests share (one build).
ENGINE_PARAMS = dict(host="ept", data_width=64)

LEVEL_NAMES = ["cold", "cool", "warm", "hot"]


def run_rtl_demo(console: Console, out: Path, *, trace, passes: int = 8,
                 max_walks: int | None = None, faults: int = 4) -> dict:
    """Replay ``trace`` on the RTL engine; print the tables; return the testbench's results.

    Raises :class:`cosim.runner.CosimError` if the hardware and the model disagree (the
    message says where) or the simulation fails.
    """
    from cosim.engine_scenario import ReplayConfig
    from cosim.runner import build
    from hdl.engine import Engine

    out.mkdir(parents=True, exist_ok=True)
    results = out / "rtl.json"
    progress_file = out / "rtl-progress.jsonl"
    progress_file.write_text("")
    cfg = ReplayConfig(host=ENGINE_PARAMS["host"], trace=str(trace), passes=passes,
                       max_walks=max_walks or 0, faults=faults, swap_out=512, out=str(results.resolve()),
                       progress=str(progress_file.resolve()))
    from model.trace import TraceReader
    TraceReader(trace)                 # a bad file fails here, with the reason
    with console.status("building the engine in Verilator (once; cached in build/sim)"):
        sim = build("engine", lambda **p: Engine(**p), ENGINE_PARAMS)

    box = {}

    def work():
        try:
            box["result"] = sim.run("cosim.tb_engine", testcase=r"\.replay$", seed=1,
                                    extra_env=cfg.to_env(), run_name="demo")
        except BaseException as e:          # reported in the main thread
            box["error"] = e

    thread = threading.Thread(target=work, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn())
    tasks = {}
    with Progress(*columns, console=console, transient=True) as bar:
        seen = 0
        while thread.is_alive():
            thread.join(0.5)
            text = progress_file.read_text()
            # Whole lines only: the testbench may be writing the last one.
            lines = text[:text.rfind("\n") + 1].splitlines()
            for line in lines[seen:]:
                p = json.loads(line)
                step = p["step"]
                if step not in tasks:
                    tasks[step] = bar.add_task(f"RTL engine: {step}", total=p["total"])
                bar.update(tasks[step], completed=p["done"], total=p["total"])
            seen = len(lines)
    if "error" in box:
        raise box["error"]
    data = json.loads(results.read_text())
    data["wall_seconds_total"] = time.perf_counter() - t0
    _print(console, data)
    return data


def _print(console: Console, data: dict):
    passes = data["passes"]
    levels = len(passes[0]["histogram"]) if passes else 4
    names = LEVEL_NAMES if levels == 4 else [f"L{i}" for i in range(levels)]
    console.print(rich_table(
        "RTL engine on the trace: scan passes (every guest page's level, from its EPT leaf)",
        ["pass", "walks", "A set", "written", *names, "candidates", "cycles"],
        [[p["pass"], p["walks"], p["accessed"], p["writes"], *p["histogram"],
          len(p["candidates"]), p["cycles"]] for p in passes]))
    if passes:
        console.print(rich_table(
            "Large-page candidates after the last pass (2 MiB guest-physical regions)",
            ["rank", "GPA region", "moving average"],
            [[i + 1, f"{c['region']:#x}", c["value"]]
             for i, c in enumerate(passes[-1]["candidates"])]))
    console.print(rich_table(
        "Prefetch on faults at swapped-out pages (non-resident neighbours, nearest first)",
        ["faulting page", "status", "GPAs out"],
        [[f["page"], f["status"], " ".join(f"{g >> 12:#x}" for g in f["gpas"][:8])
          + (" ..." if len(f["gpas"]) > 8 else "")] for f in data["prefetch"]]))
    drops = data["drops"]
    reasons = {}
    for d in drops:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    console.print(f"Process exit: {len(drops)} drop events "
                  f"({', '.join(f'{n} {r}' for r, n in sorted(reasons.items())) or 'none'}) "
                  f"over {len({d['table'] for d in drops})} guest page tables.")
    c = data["checked"]
    console.print(
        f"[bold green]RTL and model agree[/]: {c['walks']} walk responses, {c['passes']} "
        f"passes (statistics, histograms, candidates), {c['prefetches']} prefetch answers, "
        f"{c['drops']} drop events, {c['images']} full memory images, walker and exit "
        f"counters; {data['cycles']:,.0f} cycles simulated in {data['wall_seconds']:.0f} s.")
