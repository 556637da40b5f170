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
    from .demo import DemoConfig, run_demo
    from .report import write_results
    if args.workload not in GENERATORS:
        console.print(f"[red]error:[/] workload must be one of {sorted(GENERATORS)}, "
                      f"got {args.workload!r}")
        return 2
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
    js, md = write_results(args.out, "demo", {"config": cfg.__dict__, **result},
                           ["pass", "touched", "A set", "written", "histogram", "candidates"],
                           rows)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thermocline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="the main job on bundled defaults",
                       description="A guest runs a workload while the engine classifies its "
                                   "pages; prints per-pass histograms, large-page candidates, "
                                   "prefetch and exit results.")
    d.add_argument("--out", default="build/demo", help="where to write demo.json/.md")
    d.add_argument("--guest-mib", type=_positive, default=128, help="guest RAM in MiB")
    d.add_argument("--heap-pages", type=_positive, default=16384,
                   help="pages of the process heap the workload touches")
    d.add_argument("--workload", default="zipf", help="uniform, zipf, shifting or stream")
    d.add_argument("--touches", type=_positive, default=4000, help="touches per time slice")
    d.add_argument("--passes", type=_positive, default=8, help="scan passes (time slices)")
    d.add_argument("--seed", type=int, default=1, help="random seed")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="benchmarks: JSON and a table",
                       description="Measure the model (and, where built, the hardware) "
                                   "against limits measured in the same run.")
    b.add_argument("--out", default="build/bench", help="where to write bench.json/.md")
    b.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    b.set_defaults(func=_cmd_bench)

    _add_trace_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args, Console())


if __name__ == "__main__":
    sys.exit(main())
