"""The main job on bundled defaults: a guest runs a workload while the engine classifies.

A guest with ``guest_mib`` of RAM runs one process whose heap of ``heap_pages`` pages is
touched by a synthetic workload, one time slice per scan pass. Each touch is a demand walk
through the nested walker (which sets the A bits); after each slice the scanner classifies
every guest page from its EPT leaf. At the end the hypervisor swaps out the coldest heap
pages, the guest faults on one of them and the prefetcher names its non-resident
neighbours; then the process exits and the exit detector drops its tables.

:func:`evaluation_summary` then runs the three evaluations of :mod:`thermocline.evaluate` on
the bundled real trace, small settings, and draws their figures.
"""

from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.progress import Progress

from model.engine import Engine, EngineConfig
from model.exit_detector import PteWrite
from model.pagetable import SIZE_4K
from model.prefetcher import PrefetchRequest
from model.scanner import ScanConfig
from model.system import GuestSystem
from model.walker import WalkRequest
from model import workload as wl
from .report import rich_table

__all__ = ["DemoConfig", "run_demo", "evaluation_summary"]

HEAP = 0x7F00_0000_0000
LEVEL_NAMES = {4: ["cold", "cool", "warm", "hot"]}


@dataclass(frozen=True)
class DemoConfig:
    guest_mib: int = 128
    heap_pages: int = 16384
    workload: str = "zipf"
    touches: int = 4000
    passes: int = 8
    seed: int = 1
    swap_out: int = 2048


def _level_names(n: int) -> list[str]:
    return LEVEL_NAMES.get(n, [f"L{i}" for i in range(n)])


def run_demo(cfg: DemoConfig = DemoConfig(), console: Console | None = None) -> dict:
    """Run the demo, print its tables, return its figures."""
    console = console or Console()
    if cfg.heap_pages * SIZE_4K > (cfg.guest_mib << 20) // 2:
        raise ValueError(f"a heap of {cfg.heap_pages} pages does not fit half of "
                         f"{cfg.guest_mib} MiB of guest RAM")
    system = GuestSystem(guest_ram=cfg.guest_mib << 20, shuffle=cfg.seed)
    space = system.new_space()
    frames = [system.alloc_data() for _ in range(cfg.heap_pages)]
    for i, gpa in enumerate(frames):
        space.map(HEAP + i * SIZE_4K, gpa)
    engine = Engine(system.mem, hroot=system.hroot, scan_root=system.host.root,
                    config=EngineConfig(scan=ScanConfig(levels=4)))
    names = _level_names(engine.scanner.config.levels)
    slices = wl.make(cfg.workload, cfg.heap_pages, cfg.touches, cfg.passes, seed=cfg.seed)

    rows, result = [], {"passes": []}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("scan passes", total=cfg.passes)
        for s in slices:
            for page, write in zip(s.pages.tolist(), s.writes.tolist()):
                engine.translate(WalkRequest(gva=HEAP + page * SIZE_4K, cr3=space.root,
                                             hroot=system.hroot, write=write, user=True))
            rep = engine.scan()
            st = rep.stats
            rows.append([st.pass_index, len(s.pages), st.accessed, st.writes,
                         *st.histogram.tolist(), len(st.candidates)])
            summary = st.to_dict()
            del summary["cleared_base"], summary["cleared_size"]
            result["passes"].append({"touched": int(len(s.pages)), **summary})
            progress.advance(task)
    console.print(rich_table("Scan passes (levels of every guest page, from its EPT leaf)",
                             ["pass", "touched", "A set", "written", *names, "candidates"],
                             rows))

    cands = result["passes"][-1]["candidates"]
    console.print(rich_table("Large-page candidates (2 MiB guest-physical regions)",
                             ["rank", "GPA region", "parent entry (HPA)", "value"],
                             [[i + 1, f"{c['region']:#x}", f"{c['entry_addr']:#x}",
                               c["value"]] for i, c in enumerate(cands)]))

    # Swap out the coldest heap pages: the hypervisor unmaps them in EPT.
    level = engine.scanner.config.fields.level
    levels = np.array([level.get(system.host.read_entry(g, 1)) for g in frames])
    cold = np.flatnonzero(levels == 0)[:cfg.swap_out]
    for i in cold.tolist():
        system.host.unmap(frames[i])
    engine.walker.invalidate_all()
    fault_page = int(cold[len(cold) // 2]) if len(cold) else 0
    pf = engine.fault(PrefetchRequest(HEAP + fault_page * SIZE_4K, space.root, system.hroot))
    console.print(rich_table(
        f"Prefetch on a fault at heap page {fault_page} ({len(cold)} pages swapped out)",
        ["order", "GVA", "GPA"],
        [[i + 1, f"{v:#x}", f"{g:#x}"] for i, (v, g) in enumerate(zip(pf.gvas, pf.gpas))]))
    result["prefetch"] = {"status": pf.status, "gpas": list(pf.gpas), "reads": pf.reads}

    # The process exits: the kernel unmaps its pages in ascending address order.
    drops = []
    for i in range(cfg.heap_pages):
        va = HEAP + i * SIZE_4K
        addr = space.entry_addr(va, 1)
        old = space.space.read(addr)
        drops += engine.pte_write(PteWrite(asid=space.root, table_gpa=addr & ~0xFFF,
                                           index=(addr >> 3) & 511, old=old, new=0))
        space.space.write(addr, 0)
    tables = {d.table_gpa for d in drops}
    first = drops[0].reason if drops else "-"
    console.print(f"Process exit: {len(drops)} drop events over {len(tables)} guest page "
                  f"tables (first reason: {first}).")
    result["exit"] = {"drops": len(drops), "tables": len(tables)}
    result["walker"] = {"requests": engine.walker.counters.requests,
                        "tlb_hits": engine.walker.counters.tlb_hits,
                        "mem_reads": engine.walker.counters.mem_reads}
    return result


def evaluation_summary(console: Console | None = None, out=None) -> dict:
    """Migration, large pages and demand paging on the bundled trace, each against its
    baseline; prints one table each and, with ``out``, writes the heatmap and the
    migration and TLB figures there. Returns the rows of each evaluation."""
    from pathlib import Path
    from . import evaluate, plots
    console = console or Console()
    w = evaluate.load_trace()
    from model.hugepages import TlbConfig
    res = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"evaluations on {w.name}", total=4 + 3 + 3)
        step = lambda: progress.advance(task)          # noqa: E731
        res["migrate"] = evaluate.migrate(w, [400, 1600], progress=step)
        res["hugepage"] = evaluate.hugepage(w, [0, 4, 8], TlbConfig(), progress=step)
        res["prefetch"] = evaluate.prefetch(w, progress=step)
    console.print(rich_table(f"Live migration of {w.name} ({w.npages:,} pages)",
                             evaluate.MIGRATE_HEADERS, evaluate.migrate_rows(res["migrate"])))
    console.print(rich_table("Large pages: TLB misses (64 x 4K, 32 x 2M entries)",
                             evaluate.HUGEPAGE_HEADERS,
                             evaluate.hugepage_rows(res["hugepage"])))
    console.print(rich_table(f"Demand paging, {res['prefetch'][0]['memory_pages']:,} resident "
                             f"pages", evaluate.PREFETCH_HEADERS,
                             evaluate.prefetch_rows(res["prefetch"])))
    if out is not None:
        out = Path(out)
        levels = evaluate.classify(w)["levels"]
        res["plots"] = [str(plots.heatmap(levels, out / "heatmap.png",
                                          title=f"activity levels: {w.name}")),
                        str(plots.migration_rounds(res["migrate"], out / "migration.png",
                                                   title=f"migration traffic: {w.name}")),
                        str(plots.tlb_misses(res["hugepage"], out / "tlb.png",
                                             title=f"TLB misses: {w.name}"))]
    return res
