"""``make bench``: run every benchmark, write ``bench.json`` and ``bench.md``.

Figures are reported against a limit measured in the same run (memory bandwidth for the
model's scan pass), never judged: a benchmark does not fail because a machine is slow.
"""

from pathlib import Path

from rich.console import Console

from .benchmarks import bench_scan
from .report import write_results

__all__ = ["run_benchmarks"]

#: The target of the model's scan pass (entries per second on one core).
SCAN_TARGET = 300e6


def run_benchmarks(out: Path, console: Console, *, quick: bool = False) -> dict:
    entries = 1 << 16 if quick else 16 << 20
    with console.status(f"scan pass over {entries:,} EPT leaves"):
        scan = bench_scan(entries, passes=2 if quick else 5)
    rows = [
        ["model scan pass (best)", f"{scan['best_entries_per_s'] / 1e6:.0f} M entries/s",
         f"{scan['best_entries_per_s'] / SCAN_TARGET:.2f} of the 300 M/s target",
         f"{scan['ratio_to_bandwidth']:.2f} of memory bandwidth"],
        ["model scan pass (median)", f"{scan['median_entries_per_s'] / 1e6:.0f} M entries/s",
         f"{scan['median_entries_per_s'] / SCAN_TARGET:.2f} of the target", ""],
        ["memory bandwidth (numpy sweep)", f"{scan['sweep_entries_per_s'] / 1e6:.0f} M entries/s",
         "limit", ""],
        ["peak memory", f"{scan['peak_rss_mib']:.0f} MiB", f"{scan['entries']:,} entries",
         f"{scan['peak_rss_mib'] * 2**20 / scan['entries']:.1f} bytes/entry"],
    ]
    data = {"scan": scan, "scan_target_entries_per_s": SCAN_TARGET}

    from model.trace import bench_convert
    with console.status("trace conversion (lackey text to page-level trace)"):
        conv = bench_convert()
    rows.append(["trace conversion", f"{conv['best_accesses_per_s'] / 1e6:.2f} M accesses/s",
                 f"{conv['best_lines_per_s'] / 1e6:.2f} M lackey lines/s",
                 f"{conv['bytes_per_access']:.3f} trace bytes/access"])
    data["trace_convert"] = conv

    from cosim.bench_walker import bench_walker, cosim_speed
    with console.status("hardware walker: cycles per walk"):
        walker = bench_walker((1, 10) if quick else (1, 10, 30))
    for r in walker["walker_cycles"]:
        over = "" if r["refs"] == 0 else f"{r['overhead_per_ref']:.2f} cycles/ref over latency"
        rows.append([f"walker {r['case']} @ latency {r['latency']}",
                     f"{r['cycles']} cycles ({r['cycles_from_offer']} from offer)",
                     f"bound {r['lower_bound']} ({r['refs']} refs x {r['latency']})", over])
    data.update(walker)
    if not quick:
        with console.status("walker co-simulation speed (Verilator)"):
            speed = cosim_speed()
        rows.append(["walker co-simulation", f"{speed['cycles_per_second']:,.0f} cycles/s",
                     f"{speed['responses']} responses checked", "cocotb + Verilator"])
        data["cosim"] = speed
    from cosim.bench_prefetcher import bench_prefetcher
    with console.status("hardware prefetcher: cycles to the first GPA"):
        pf = bench_prefetcher((1, 10) if quick else (1, 10, 30))
    for r in pf["prefetch_first_gpa"]:
        rows.append([f"prefetcher first GPA @ latency {r['latency']}", f"{r['cycles']} cycles",
                     f"bound {r['lower_bound']} ({r['single_reads']} reads x {r['latency']}"
                     f" + {r['burst_beats']} beats)",
                     f"{r['overhead_per_read']:.2f} cycles/read over latency"])
    data.update(pf)

    from cosim.bench_scanner import scanner_throughput
    with console.status("hardware scanner: entries per cycle"):
        scan_hw = scanner_throughput((64, 256) if quick else (64, 128, 256),
                                     (1, 30) if quick else (1, 10, 30),
                                     (0.0, 1.0) if quick else (0.0, 0.5, 1.0),
                                     tables=4 if quick else 16)
    for r in scan_hw["scanner_throughput"]:
        rows.append([f"scanner {r['data_width']}-bit @ latency {r['latency']}, "
                     f"{r['changing']:.0%} changing",
                     f"{r['leaf_entries_per_cycle']:.2f} entries/cycle (leaf tables)",
                     f"{r['leaf_ratio_to_limit']:.3f} of {r['data_width'] // 64}/cycle "
                     f"(target 0.95)",
                     f"whole pass {r['pass_ratio_to_limit']:.3f} of the limit "
                     f"({r['tables']} leaf tables + 3 upper)"])
    data.update(scan_hw)
    if not quick:
        from cosim.bench_engine import engine_throughput
        with console.status("engine: every unit alone, then all at once (Verilator)"):
            eng = engine_throughput()
        t = eng["engine_throughput"]
        for unit, what in (("walks", f"{t['walk_count']} cold demand walks"),
                           ("scan", "one scan pass"),
                           ("prefetch", f"{t['fault_count']} prefetch requests")):
            r = t[unit]
            rows.append([f"engine busy: {what}", f"{r['together_cycles']:,} cycles",
                         f"alone {r['alone_cycles']:,} cycles",
                         f"{r['slowdown']:.2f}x with every unit busy"])
        r = t["scan_all_accessed"]
        rows.append(["engine: scan pass clearing every leaf's A bit",
                     f"{r['entries_per_cycle']:.2f} entries/cycle",
                     "limit 1/cycle", f"{r['entries']:,} entries, {r['cleared']:,} cleared "
                     f"(one walker scan_clear each), {r['cycles']:,} cycles"])
        data.update(eng)
    write_results(out, "bench", data, ["benchmark", "figure", "against", "note"], rows,
                  console)
    return data
