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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args, Console())


if __name__ == "__main__":
    sys.exit(main())
