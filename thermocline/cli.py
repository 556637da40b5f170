"""``thermocline``: the command line of the engine's model, benchmarks and evaluations."""

import argparse
import sys
from pathlib import Path

from rich.console import Console

__all__ = ["main"]


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_demo(args, console: Console) -> int:
    from model.workload import GENERATORS
    from .report import write_results
    if args.workload not in GENERATORS:
        console.print(f"[red]error:[/] workload must be one of {sorted(GENERATORS)}, "
                      f"got {args.workload!r}")
        return 2
    out = Path(args.out)
    if args.rtl:
        from cosim.runner import CosimError
        from model.trace import TraceError
        from model.trace import bundled_trace
        from .demo_rtl import run_rtl_demo
        trace = args.trace or bundled_trace()
        try:
            result = {"rtl": run_rtl_demo(console, out, trace=trace, passes=args.passes,
                                          max_walks=args.max_walks)}
        except (TraceError, OSError) as e:
            return _trace_error(e)
        except CosimError as e:
            console.print(f"[red]error:[/] the RTL engine and the model disagree or the "
                          f"simulation failed:\n{e}")
            return 1
        rows = [[p["pass"], p["walks"], p["accessed"], p["writes"],
                 " ".join(map(str, p["histogram"])), len(p["candidates"])]
                for p in result["rtl"]["passes"]]
        config = {"trace": str(trace), "passes": args.passes, "max_walks": args.max_walks}
    else:
        from .demo import DemoConfig, run_demo
        cfg = DemoConfig(guest_mib=args.guest_mib, heap_pages=args.heap_pages,
                         workload=args.workload, touches=args.touches, passes=args.passes,
                         seed=args.seed)
        try:
            result = run_demo(cfg, console)
        except ValueError as e:
            console.print(f"[red]error:[/] {e}")
            return 2
        rows = [[p["pass_index"], p["touched"], p["accessed"], p["writes"],
                 " ".join(map(str, p["histogram"])), len(p["candidates"])]
                for p in result["passes"]]
        config = cfg.__dict__
    if not args.no_eval:
        from .demo import evaluation_summary
        result["evaluation"] = evaluation_summary(console, args.out)
    js, md = write_results(args.out, "demo", {"config": config, **result},
                           ["pass", "walks" if args.rtl else "touched", "A set", "written",
                            "histogram", "candidates"], rows)
    console.print(f"wrote {js} and {md}")
    return 0


def _cmd_bench(args, console: Console) -> int:
    from .benchrun import run_benchmarks
    run_benchmarks(Path(args.out), console, quick=args.quick)
    return 0


def _trace_error(e: BaseException | str) -> int:
    from rich.text import Text
    Console(stderr=True).print(Text.assemble(("error:", "red"), f" {e}"), soft_wrap=True)
    return 2


def _trace_options(args) -> dict:
    return {"slice_length": args.slice, "clock": args.clock, "fetches": args.fetches,
            "page_size": args.page_size}


def _trace_summary_table(title: str, s: dict, out: Path):
    from rich.table import Table
    t = Table(title=title, show_header=False)
    t.add_column(justify="left")
    t.add_column(justify="right")
    rows = [("trace", str(out)), ("size", f"{s['bytes']:,} bytes"),
            ("slices", f"{s['slices']:,}"), ("accesses", f"{s['accesses']:,}"),
            ("instructions", f"{s['instructions']:,}"),
            ("loads / stores / modifies",
             f"{s['loads']:,} / {s['stores']:,} / {s['modifies']:,}"),
            ("(slice, page) entries", f"{s['entries']:,}"),
            ("lines read", f"{s['lines']:,}"),
            ("time", f"{s['seconds']:.1f} s ({s['accesses_per_s'] / 1e6:.2f} M accesses/s)")]
    if s.get("skipped_lines"):
        line, text = s["first_skipped"]
        rows.append(("skipped lines", f"{s['skipped_lines']:,} (first: line {line}: "
                                      f"{text[:40]!r})"))
    for k, v in rows:
        t.add_row(k, v)
    return t


def _cmd_trace_record(args, console: Console) -> int:
    import subprocess
    from model import trace
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        args.parser.error("no program given: thermocline trace record [OPTIONS] -- PROGRAM "
                          "[ARGS...]")
    out = Path(args.out) if args.out else Path(Path(program[0]).name + trace.SUFFIX)
    quiet = subprocess.DEVNULL if args.quiet else None
    try:
        with console.status(f"recording {' '.join(program)} under valgrind lackey") as st:
            def progress(accesses: int, slices: int):
                st.update(f"recording {program[0]}: {accesses:,} accesses, {slices:,} slices")
            s = trace.record(program, out, stdout=quiet, stderr=quiet, progress=progress,
                             **_trace_options(args))
    except (trace.TraceError, ValueError, OSError) as e:
        return _trace_error(e)
    except KeyboardInterrupt:
        return _trace_error("interrupted; no trace written")
    console.print(_trace_summary_table("trace record", s, out))
    if s["exit_status"]:
        console.print(f"[yellow]note:[/] {program[0]} exited with status {s['exit_status']}; "
                      f"the trace covers its run up to then")
    return 0


def _cmd_trace_convert(args, console: Console) -> int:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from model import trace
    stdin = args.input == "-"
    if stdin and not args.out:
        args.parser.error("--out is required when reading from standard input")
    if args.out:
        out = Path(args.out)
    else:
        name = Path(args.input).name
        for suffix in (".gz", ".xz", ".bz2", ".txt", ".log", ".lackey"):
            name = name.removesuffix(suffix)
        out = Path((name or "trace") + trace.SUFFIX)
    if not stdin and not Path(args.input).is_file():
        return _trace_error(f"input {args.input!r} does not exist or is not a file")
    columns = [TextColumn("converting"), BarColumn(), DownloadColumn(),
               TextColumn("{task.fields[accesses]:,} accesses"), TimeElapsedColumn()]
    if not stdin:
        columns.append(TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("convert", total=None, accesses=0)

            def progress(done: int, total: int | None, accesses: int):
                bar.update(task, completed=done, total=total, accesses=accesses)
            source = sys.stdin.buffer if stdin else args.input
            s = trace.convert(source, out, lenient=args.lenient, progress=progress,
                              **_trace_options(args))
    except (trace.TraceError, ValueError, OSError) as e:
        return _trace_error(e)
    except KeyboardInterrupt:
        return _trace_error("interrupted; no trace written")
    console.print(_trace_summary_table("trace convert", s, out))
    return 0


def _cmd_trace_info(args, console: Console) -> int:
    import json
    from rich.table import Table
    from model import trace
    try:
        i = trace.info(args.file, top=args.top)
    except (trace.TraceError, OSError) as e:
        return _trace_error(e)
    if args.json:
        print(json.dumps(i, indent=2))
        return 0
    t = Table(title=f"trace {i['path']}", show_header=False)
    t.add_column(justify="left")
    t.add_column(justify="right")
    lo, mean, hi = i["pages_per_slice"]
    for k, v in [
        ("format", f"version {i['version']}, {i['file_bytes']:,} bytes"),
        ("bytes per (slice, page) entry", f"{i['bytes_per_entry']:.2f}"),
        ("page size", f"{i['page_size']:,} bytes"),
        ("slice", f"{i['slice_length']:,} {i['clock']}"
                  + (" (fetches recorded)" if i["fetches"] else "")),
        ("slices", f"{i['slices']:,}"),
        ("accesses", f"{i['accesses']:,}"),
        ("instructions", f"{i['instructions']:,}"),
        ("loads / stores / modifies", f"{i['loads']:,} / {i['stores']:,} / {i['modifies']:,}"),
        ("page touches: reads / writes", f"{i['read_touches']:,} / {i['write_touches']:,}"),
        ("distinct pages", f"{i['distinct_pages']:,} ({i['written_pages']:,} written)"),
        ("footprint", f"{i['footprint_bytes'] / 2**20:,.1f} MiB in {i['regions_2m']:,} "
                      f"2 MiB regions"),
        ("pages per slice", f"min {lo:,}, mean {mean:,.1f}, max {hi:,}"),
        ("skipped lines", f"{i['skipped']:,}"),
    ]:
        t.add_row(k, v)
    console.print(t)
    if i["top_pages"]:
        top = Table(title=f"top {len(i['top_pages'])} pages (by slices touched)")
        for h in ("address", "slices", "reads", "writes"):
            top.add_column(h, justify="right")
        for p in i["top_pages"]:
            top.add_row(p["address"], f"{p['slices']:,}", f"{p['reads']:,}",
                        f"{p['writes']:,}")
        console.print(top)
    return 0


def _add_trace_parser(sub):
    from model.trace import CLOCKS, DEFAULT_SLICE_LENGTH
    t = sub.add_parser("trace", help="real workloads: record, convert and inspect traces",
                       description="Page-level memory traces of real programs, recorded with "
                                   "valgrind's lackey tool and stored per time slice in a "
                                   "compact binary file (.tct); see model/trace.py for the "
                                   "format.")
    ts = t.add_subparsers(dest="trace_command", required=True, metavar="ACTION")

    def options(p):
        p.add_argument("--slice", type=_positive, default=DEFAULT_SLICE_LENGTH, metavar="N",
                       help="clock events per time slice (default %(default)s)")
        p.add_argument("--clock", choices=CLOCKS, default="accesses",
                       help="what a slice counts: data accesses (default) or instructions")
        p.add_argument("--fetches", action="store_true",
                       help="record instruction fetches as reads of code pages")
        p.add_argument("--page-size", type=_positive, default=4096, metavar="BYTES",
                       help="page size, a power of two (default %(default)s)")

    r = ts.add_parser("record", help="run a program under valgrind and record its trace",
                      description="Run PROGRAM under valgrind --tool=lackey --trace-mem=yes "
                                  "and convert its accesses on the fly (no raw text is "
                                  "stored). The program's own output is shown unless "
                                  "--quiet; its standard input is /dev/null. Put -- before "
                                  "the program. A program that exits with a non-zero status "
                                  "still gives a trace (exit status 0 here, with a note).",
                      epilog="example: thermocline trace record --out ls.tct -- ls -l /")
    r.add_argument("--out", metavar="FILE",
                   help="trace file to write (default: PROGRAM-NAME.tct here)")
    options(r)
    r.add_argument("--quiet", action="store_true", help="discard the program's output")
    r.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS...]",
                   help="the program to run and its arguments")
    r.set_defaults(func=_cmd_trace_record, parser=r)

    c = ts.add_parser("convert", help="convert a saved lackey text to a trace",
                      description="Convert the output of valgrind --tool=lackey "
                                  "--trace-mem=yes (saved with --log-file, plain or "
                                  "compressed with gzip, xz or bzip2, or '-' for standard "
                                  "input) to a trace file, streaming. A malformed line stops "
                                  "the conversion with its line number, unless --lenient.")
    c.add_argument("input", metavar="INPUT", help="lackey text file, or - for standard input")
    c.add_argument("--out", metavar="FILE",
                   help="trace file to write (default: INPUT without its suffixes + .tct)")
    options(c)
    c.add_argument("--lenient", action="store_true",
                   help="skip malformed lines (counted) instead of stopping")
    c.set_defaults(func=_cmd_trace_convert, parser=c)

    i = ts.add_parser("info", help="summary of a trace file",
                      description="Slices, accesses, distinct pages, footprint, reads and "
                                  "writes, and the most often touched pages of a trace.")
    i.add_argument("file", metavar="FILE", help="a .tct trace file")
    i.add_argument("--top", type=_positive, default=10, metavar="N",
                   help="how many of the most touched pages to list (default %(default)s)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=_cmd_trace_info, parser=i)


def _number_list(kind):
    """A comma-separated list of ``kind`` values (argparse type)."""
    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                             f"numbers")
        if not values or any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"need non-negative numbers, got {text!r}")
        return values
    return parse


def _workload_options(p):
    from model.workload import GENERATORS
    g = p.add_argument_group("workload (default: the bundled trace)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--trace", metavar="FILE", help="a .tct trace file")
    src.add_argument("--workload", choices=sorted(GENERATORS),
                     help="a synthetic workload instead of a trace")
    g.add_argument("--pages", type=_positive, default=4096,
                   help="synthetic: guest pages (default %(default)s)")
    g.add_argument("--touches", type=_positive, default=400,
                   help="synthetic: touches per slice (default %(default)s)")
    g.add_argument("--slices", type=_positive, default=64,
                   help="synthetic: time slices (default %(default)s)")
    g.add_argument("--seed", type=int, default=1, help="synthetic: random seed")
    p.add_argument("--out", default="build/eval", metavar="DIR",
                   help="where results (JSON, Markdown) and plots (PNG) go "
                        "(default %(default)s)")


def _load_workload(args):
    from . import evaluate
    if args.workload:
        return evaluate.synthetic(args.workload, args.pages, args.touches, args.slices,
                                  args.seed)
    return evaluate.load_trace(args.trace)


def _progress(console: Console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    return Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _guarded(job):
    """Run ``job()``; bad input (a bad trace, a bad value) becomes an error and exit 2."""
    from model.trace import TraceError
    try:
        return job()
    except (TraceError, ValueError, OSError) as e:
        return _trace_error(e)


def _cmd_run(args, console: Console) -> int:
    def job():
        from . import evaluate, plots
        from .report import rich_table, write_results
        w = _load_workload(args)
        with _progress(console) as bar:
            task = bar.add_task(f"scan passes over {w.name}", total=len(w.slices))
            res = evaluate.classify(w, levels=args.levels,
                                    progress=lambda: bar.advance(task))
        headers = ["pass", "touched", "A set", "written", *[f"L{i}" for i in
                                                            range(args.levels)], "candidates"]
        rows = [[p["pass"], p["touched"], p["accessed"], p["writes"], *p["histogram"],
                 p["candidates"]] for p in res["passes"]]
        shown = rows if len(rows) <= args.show else rows[:args.show // 2] + \
            [["..."] * len(headers)] + rows[-(args.show - args.show // 2):]
        console.print(rich_table(f"classification passes: {w.name} ({w.npages:,} pages)",
                                 headers, shown))
        out = Path(args.out)
        js, md = write_results(out, "run", {"workload": w.source, "npages": w.npages,
                                            "levels": args.levels, "passes": res["passes"]},
                               headers, rows)
        png = plots.heatmap(res["levels"], out / "run-heatmap.png",
                            title=f"activity levels: {w.name}")
        console.print(f"wrote {js}, {md} and {png}")
        return 0
    return _guarded(job)


def _cmd_eval(args, console: Console) -> int:
    def job():
        from . import evaluate, plots
        from .report import rich_table, write_results
        w = _load_workload(args)
        out = Path(args.out)
        name = f"eval-{args.what}"
        extra = {}
        if args.what == "migrate":
            cfg = dict(downtime_ms=args.downtime_ms, batch_pages=args.batch,
                       slice_us=args.slice_us, start_slice=args.start_slice,
                       max_rounds=args.max_rounds)
            from model.migration import MigrationConfig
            for b in args.bandwidths:
                MigrationConfig(bandwidth=int(b * 1e6), **cfg)      # check before running
            total = 2 * len(args.bandwidths)
            headers = evaluate.MIGRATE_HEADERS
            with _progress(console) as bar:
                task = bar.add_task("migrations", total=total)
                data = evaluate.migrate(w, args.bandwidths, progress=lambda: bar.advance(task),
                                        **cfg)
            rows = evaluate.migrate_rows(data)
            extra["plot"] = plots.migration_rounds(data, out / f"{name}.png",
                                                   title=f"migration traffic: {w.name}")
        elif args.what == "hugepage":
            from model.hugepages import TlbConfig
            tlb = TlbConfig(entries_4k=args.tlb_4k, entries_2m=args.tlb_2m)
            headers = evaluate.HUGEPAGE_HEADERS
            with _progress(console) as bar:
                task = bar.add_task("large-page budgets", total=len(args.k))
                data = evaluate.hugepage(w, args.k, tlb, progress=lambda: bar.advance(task),
                                         threshold=args.threshold, warmup=args.warmup)
            rows = evaluate.hugepage_rows(data)
            extra["plot"] = plots.tlb_misses(data, out / f"{name}.png",
                                             title=f"TLB misses: {w.name}")
        else:
            cfg = dict(window=args.window, direction=args.direction)
            if args.memory is not None:
                cfg["memory_pages"] = args.memory
            headers = evaluate.PREFETCH_HEADERS
            with _progress(console) as bar:
                task = bar.add_task("paging policies", total=3)
                data = evaluate.prefetch(w, progress=lambda: bar.advance(task), **cfg)
            rows = evaluate.prefetch_rows(data)
        console.print(rich_table(f"{name}: {w.name} ({w.npages:,} pages)", headers, rows))
        js, md = write_results(out, name, {"workload": w.source, "npages": w.npages,
                                           "args": {k: v for k, v in vars(args).items()
                                                    if k not in ("func", "parser")},
                                           "results": data}, headers, rows)
        files = [js, md] + ([extra["plot"]] if "plot" in extra else [])
        console.print("wrote " + ", ".join(map(str, files)))
        return 0
    return _guarded(job)


def _add_eval_parsers(sub):
    from model.prefetcher import DIRECTIONS
    r = sub.add_parser("run", help="classification passes over a trace or synthetic workload",
                       description="Map the workload's pages with an EPT, replay it slice by "
                                   "slice (the guest's touches set A bits) and run one scan "
                                   "pass after each slice; print the level histogram of every "
                                   "pass and draw the activity heatmap (page x time).")
    _workload_options(r)
    r.add_argument("--levels", type=_positive, default=4, help="activity levels (default 4)")
    r.add_argument("--show", type=_positive, default=24,
                   help="passes printed (first and last; all are written to run.json)")
    r.set_defaults(func=_cmd_run, parser=r)

    e = sub.add_parser("eval", help="evaluations against today's baselines",
                       description="Evaluate the engine's decisions on a workload against "
                                   "the baseline users run today; docs/evaluation.md explains "
                                   "each model.")
    es = e.add_subparsers(dest="what", required=True, metavar="EVALUATION")
    m = es.add_parser("migrate", help="pre-copy live migration: address order vs activity "
                                      "order",
                      description="QEMU-style pre-copy (address order) versus "
                                  "activity-ordered pre-copy with the migration-aligned scan "
                                  "interval, at several bandwidths.")
    _workload_options(m)
    m.add_argument("--bandwidths", type=_number_list(float), default=[200, 400, 800, 1600],
                   metavar="MB/S,...", help="link bandwidths in MB/s (default "
                                            "200,400,800,1600)")
    m.add_argument("--downtime-ms", type=float, default=5.0, help="downtime limit (ms)")
    m.add_argument("--batch", type=_positive, default=256, help="pages per batch")
    m.add_argument("--slice-us", type=float, default=100.0,
                   help="guest time per slice, microseconds (default 100)")
    m.add_argument("--start-slice", type=int, default=8,
                   help="slices the guest runs before migration starts (default 8)")
    m.add_argument("--max-rounds", type=_positive, default=30,
                   help="pre-copy rounds before stop-and-copy is forced")
    m.set_defaults(func=_cmd_eval, parser=m)

    h = es.add_parser("hugepage", help="TLB misses with K large pages",
                      description="K 2 MiB pages chosen by the engine's prioritizer, versus "
                                  "first-come promotion, versus the best K in hindsight; "
                                  "TLB misses of a 4 KiB and a 2 MiB TLB (fully associative, "
                                  "LRU).")
    _workload_options(h)
    h.add_argument("--k", type=_number_list(int), default=[0, 1, 2, 4, 8, 16],
                   metavar="K,...", help="large-page budgets (default 0,1,2,4,8,16)")
    h.add_argument("--tlb-4k", type=_positive, default=64, help="4 KiB TLB entries")
    h.add_argument("--tlb-2m", type=_positive, default=32, help="2 MiB TLB entries")
    h.add_argument("--threshold", type=int, default=1,
                   help="prioritizer threshold, 0..31 (default 1)")
    h.add_argument("--warmup", type=int, default=2, help="prioritizer warm-up passes")
    h.set_defaults(func=_cmd_eval, parser=h)

    f = es.add_parser("prefetch", help="demand paging: engine prefetcher vs swap readahead",
                      description="A memory limit with LRU eviction; faults served with the "
                                  "engine's prefetcher, Linux-style swap readahead, or no "
                                  "prefetch.")
    _workload_options(f)
    f.add_argument("--memory", type=_positive, metavar="PAGES",
                   help="resident pages at most (default: half the pages touched)")
    f.add_argument("--window", type=_positive, default=4,
                   help="engine prefetcher window on each side (default 4)")
    f.add_argument("--direction", choices=DIRECTIONS, default="both",
                   help="engine prefetcher direction (default both)")
    f.set_defaults(func=_cmd_eval, parser=f)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thermocline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="the main job on bundled defaults",
                       description="The RTL engine (in Verilator) replays the bundled trace "
                                   "while the model checks every output: per-pass "
                                   "histograms, large-page candidates, prefetch answers, exit "
                                   "events and the agreement; then the evaluation summary on "
                                   "the bundled trace, with its plots. With --no-rtl, the "
                                   "model alone runs a synthetic workload instead.")
    d.add_argument("--out", default="build/demo", help="where to write demo.json/.md")
    d.add_argument("--no-rtl", dest="rtl", action="store_false",
                   help="the model alone on a synthetic workload (no Verilator)")
    d.add_argument("--trace", default=None,
                   help="trace the RTL engine replays (default: the bundled trace)")
    d.add_argument("--max-walks", type=_positive, default=None,
                   help="at most this many demand walks per pass on the RTL engine")
    d.add_argument("--guest-mib", type=_positive, default=128, help="guest RAM in MiB")
    d.add_argument("--heap-pages", type=_positive, default=16384,
                   help="pages of the process heap the workload touches")
    d.add_argument("--workload", default="zipf", help="uniform, zipf, shifting or stream")
    d.add_argument("--touches", type=_positive, default=4000, help="touches per time slice")
    d.add_argument("--passes", type=_positive, default=8, help="scan passes (time slices)")
    d.add_argument("--seed", type=int, default=1, help="random seed")
    d.add_argument("--no-eval", action="store_true",
                   help="skip the evaluation summary on the bundled trace")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="benchmarks: JSON and a table",
                       description="Measure the model (and, where built, the hardware) "
                                   "against limits measured in the same run.")
    b.add_argument("--out", default="build/bench", help="where to write bench.json/.md")
    b.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    b.set_defaults(func=_cmd_bench)

    _add_trace_parser(sub)
    _add_eval_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args, Console())


if __name__ == "__main__":
    sys.exit(main())
