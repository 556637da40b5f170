"""The full-system scenario the engine is replayed on, model side.

A guest with one process whose heap holds every page of a page-level trace (a real trace
from :mod:`model.trace`, renumbered densely, or a synthetic workload from
:mod:`model.workload`). The trace's time slices are grouped into scan passes: in each pass
every distinct page touched becomes one demand walk (a write if any touch wrote it), in the
order of first touch; then a scan pass runs. Afterwards the coldest pages are swapped out
(their host leaves cleared), the guest faults on some of them (prefetch requests), and
finally the process exits (its heap PTEs are cleared one by one, as guest PTE writes).

:class:`Scenario` holds the guest and the model engine; the Verilator testbench
(:mod:`cosim.tb_engine`) drives the RTL engine with the same steps and compares.
"""

import inspect
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from hdl.scanner import Scanner as RtlScanner
from model import workload as wl
from model.engine import Engine, EngineConfig
from model.exit_detector import ExitConfig, PteWrite
from model.memory import PhysMem
from model.pagetable import SIZE_4K
from model.prefetcher import PrefetchConfig, PrefetchRequest
from model.prioritizer import LargePageConfig
from model.scanner import ScanConfig
from model.system import GuestSystem
from model.trace import TraceReader
from model.walker import WalkerConfig, WalkRequest
from thermocline.layouts import X86_ENTRY
from thermocline.regmap import REGMAP

__all__ = ["ReplayConfig", "Scenario", "engine_config", "HEAP", "ENV"]

#: Guest-virtual base of the process heap.
HEAP = 0x7F00_0000_0000
#: Environment variable carrying a :class:`ReplayConfig` (JSON) to the testbench.
ENV = "THERMOCLINE_REPLAY"


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay. ``trace``: a ``.tct`` file, or None for the synthetic ``workload``;
    ``passes``: scan passes (the trace's slices are split evenly among them);
    ``max_walks``: most demand walks per pass (0: all); ``swap_out``: coldest pages
    swapped out; ``faults``: prefetch requests on swapped-out pages; ``exit_pages``:
    heap PTEs cleared at the exit (0: all); ``out``: where the testbench writes its
    results (JSON), and ``progress`` where it reports its progress (a line per step)."""

    host: str = "ept"
    trace: str | None = None
    workload: str = "zipf"
    npages: int = 4096
    passes: int = 4
    max_walks: int = 0
    swap_out: int = 256
    faults: int = 8
    exit_pages: int = 0
    seed: int = 1
    out: str | None = None
    progress: str | None = None

    def to_env(self) -> dict:
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> "ReplayConfig":
        return cls(**json.loads(os.environ.get(ENV, "{}")))


def _passes(cfg: ReplayConfig) -> tuple[int, list[list[tuple[int, bool]]]]:
    """The heap size in pages and, per pass, the demand walks ``(page, write)``."""
    if cfg.trace:
        npages, slices = TraceReader(cfg.trace).compact_slices()
        slices = list(slices)
    else:
        npages = cfg.npages
        slices = list(wl.make(cfg.workload, npages, max(64, npages // 4), 4 * cfg.passes,
                              seed=cfg.seed))
    groups = np.array_split(np.arange(len(slices)), cfg.passes)
    out = []
    for group in groups:
        order, writes = [], {}
        for k in group:
            s = slices[k]
            for page, w in zip(s.pages.tolist(), s.writes.tolist()):
                if page not in writes:
                    order.append(page)
                    writes[page] = False
                writes[page] = writes[page] or bool(w)
        walks = [(p, writes[p]) for p in order]
        if cfg.max_walks:
            walks = walks[:cfg.max_walks]
        out.append(walks)
    return npages, out


def scanner_build(params: dict | None = None) -> dict:
    """The scanner's capacities in the RTL engine built with ``params`` (``max_levels``,
    ``top_k_max``, ...): the engine's ``scanner`` keywords over :class:`hdl.scanner.Scanner`'s
    defaults. (``data_width`` and ``pa_bits`` are the engine's, not these.)"""
    built = {k: p.default for k, p in inspect.signature(RtlScanner).parameters.items()}
    built.update((params or {}).get("scanner", {}))
    return built


def engine_config(params: dict | None = None, *, levels: int = 4) -> EngineConfig:
    """The model twin of the RTL engine built with ``params`` (:class:`hdl.engine.Engine`
    keywords; its defaults where absent): the same host format, physical-address width,
    walk-cache sizes and exit-detector tables, and as many candidates as ``LP_CONFIG``'s
    reset ``TOP_K`` asks for and the scanner keeps (``top_k_max``). ``levels``: the activity
    levels the scanner is programmed with, at most its ``max_levels``."""
    params = dict(params or {})
    host = params.get("host", "ept")
    pa_bits = params.get("pa_bits", 52)
    built = scanner_build(params)
    if levels > built["max_levels"]:
        raise ValueError(f"{levels} activity levels: the scanner keeps {built['max_levels']}")
    top_k = REGMAP["LP_CONFIG"].field("TOP_K").reset
    return EngineConfig(
        walker=WalkerConfig(host=host, pa_bits=pa_bits, **params.get("walker", {})),
        scan=ScanConfig(fmt=host, levels=levels, pa_bits=pa_bits,
                        large_page=LargePageConfig(top_k=min(top_k, built["top_k_max"]))),
        prefetch=PrefetchConfig(host=host, pa_bits=pa_bits),
        exit=ExitConfig(**params.get("exits", {})))


class Scenario:
    """The guest, its heap and the model engine for a :class:`ReplayConfig`, the model
    configured as the RTL engine built with ``params`` is (:func:`engine_config`)."""

    def __init__(self, cfg: ReplayConfig, params: dict | None = None):
        self.config = engine_config(params)
        if cfg.host != self.config.walker.host:
            raise ValueError(f"the replay's host format {cfg.host!r} is not the engine's "
                             f"{self.config.walker.host!r}")
        self.cfg = cfg
        self.npages, self.passes = _passes(cfg)
        ram = 1 << max(24, (2 * self.npages * SIZE_4K - 1).bit_length())
        self.system = GuestSystem(guest_ram=ram, host=cfg.host, shuffle=cfg.seed)
        self.space = self.system.new_space()
        self.frames = [self.system.alloc_data() for _ in range(self.npages)]
        for i, gpa in enumerate(self.frames):
            self.space.map(HEAP + i * SIZE_4K, gpa, US=1, RW=1)
        self.image = self.system.mem.copy()           # what the RTL's memory starts from
        self.engine = Engine(self.system.mem, hroot=self.system.hroot,
                             scan_root=self.system.host.root, config=self.config)
        self.cr3 = self.space.root
        self.hroot = self.system.hroot

    def restart(self, mem: PhysMem):
        """A fresh model engine (caches, tables, counters and interval controller empty) on
        ``mem``: the twin of the RTL engine after a reset, on the memory the reset left."""
        self.engine = Engine(mem, hroot=self.hroot, scan_root=self.system.host.root,
                             config=self.config)

    # --- steps -----------------------------------------------------------------------------

    def walk(self, page: int, write: bool) -> WalkRequest:
        return WalkRequest(gva=HEAP + page * SIZE_4K, cr3=self.cr3, hroot=self.hroot,
                           write=write, user=True)

    def level_of(self, page: int) -> int:
        """The activity level the model's memory holds for a heap page."""
        pt = self.system.host
        leaf = self.engine.mem.read(pt.entry_addr(self.frames[page], 1))
        return self.config.scan.fields.level.get(leaf)

    def coldest(self) -> list[int]:
        """The ``swap_out`` heap pages with the lowest level (ties: lowest page first)."""
        levels = [(self.level_of(p), p) for p in range(self.npages)]
        return [p for _, p in sorted(levels)[:self.cfg.swap_out]]

    def swap_out_words(self, pages) -> list[tuple[int, int]]:
        """``(host address, new word)`` of the host leaves that make ``pages`` non-resident
        (the leaf is cleared)."""
        pt = self.system.host
        return [(pt.entry_addr(self.frames[p], 1), 0) for p in pages]

    def fault(self, page: int) -> PrefetchRequest:
        return PrefetchRequest(gva=HEAP + page * SIZE_4K, cr3=self.cr3, hroot=self.hroot)

    def exit_writes(self) -> list[tuple[int, PteWrite]]:
        """The heap PTE writes of the process exit, lowest address first: ``(host address
        of the PTE, event)``; the new word is 0. Reads the model's memory."""
        n = self.cfg.exit_pages or self.npages
        out = []
        gphys = self.system.gphys
        for page in range(n):
            pte_gpa = self.space.entry_addr(HEAP + page * SIZE_4K, 1)
            hpa = gphys.hpa(pte_gpa)
            old = self.engine.mem.read(hpa)
            if not X86_ENTRY.P.get(old):
                continue
            out.append((hpa, PteWrite(asid=self.cr3, table_gpa=pte_gpa & ~0xFFF,
                                      index=(pte_gpa >> 3) & 511, old=old, new=0)))
        return out
