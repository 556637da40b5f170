"""The engine as a whole: every unit on one memory, wired the way the hardware wires them.

:class:`Engine` is the model twin of the engine top level. It owns one walker, scanner
(with the large-page prioritizer inside it), interval controller, prefetcher and exit
detector, all on the same host memory, and keeps them coherent:

* every A bit the scanner clears drops the walker's nested-TLB copy of that leaf
  (:meth:`model.walker.Walker.scanner_cleared`), so the next access sets it again;
* every successful walk of the guest dimension tells the exit detector where the page's
  guest PTE lives (an :class:`~model.exit_detector.Access` event);
* the interval controller is told the length and A-bit ratio of every pass.

Pass length: the model has no clock, so it charges a pass the bus-limited cost of its
memory traffic, ``max(entries_read, writes)`` cycles (one 8-byte entry per cycle on a
64-bit data lane, reads and write-backs on separate AXI channels). The RTL reports the
cycles it really took; co-simulation compares everything but that figure.
"""

from dataclasses import dataclass, field, replace

from .exit_detector import Access, Drop, ExitConfig, ExitDetector, PteWrite
from .interval import IntervalConfig, IntervalController, PassTiming
from .memory import PhysMem
from .prefetcher import PrefetchConfig, Prefetcher, PrefetchRequest, PrefetchResult
from .scanner import ScanConfig, Scanner, ScanStats
from .walker import Fault, Translation, WalkerConfig, Walker, WalkRequest

__all__ = ["EngineConfig", "Engine", "PassReport"]


@dataclass(frozen=True)
class EngineConfig:
    """Configuration of every unit. The scanner's host format must match the walker's for
    EPT/NPT scanning; a shadow IA-32e table (``scan.fmt == "ia32e"``) is independent of the
    walker's tables and needs no coherence. The walker, the scanner and the prefetcher have
    one physical-address width (``pa_bits``, the host's MAXPHYADDR)."""

    walker: WalkerConfig = field(default_factory=WalkerConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    interval: IntervalConfig = field(
        default_factory=lambda: IntervalConfig(mode="fixed", period=1 << 20))
    prefetch: PrefetchConfig = field(default_factory=PrefetchConfig)
    exit: ExitConfig = field(default_factory=ExitConfig)

    def __post_init__(self):
        if self.scan.fmt != "ia32e" and self.scan.fmt != self.walker.host:
            raise ValueError(f"scanner format {self.scan.fmt!r} must match the walker's host "
                             f"format {self.walker.host!r} (or be 'ia32e' for a shadow table)")
        widths = {"walker": self.walker.pa_bits, "scanner": self.scan.pa_bits,
                  "prefetcher": self.prefetch.pa_bits}
        if len(set(widths.values())) != 1:
            raise ValueError("every unit sees the same physical addresses: pa_bits must "
                             f"agree, got {widths}")
        if self.prefetch.host != self.walker.host:
            raise ValueError(f"prefetcher host format {self.prefetch.host!r} must match the "
                             f"walker's {self.walker.host!r}")


@dataclass(frozen=True)
class PassReport:
    """One scan pass: the scanner's statistics and the interval controller's timing."""

    stats: ScanStats
    timing: PassTiming
    invalidated: int


class Engine:
    """All units over ``mem``; ``hroot`` is the host root requests use (EPTP or nested CR3)
    and ``scan_root`` the address of the table the scanner walks."""

    def __init__(self, mem: PhysMem, *, hroot: int, scan_root: int,
                 config: EngineConfig | None = None):
        self.mem = mem
        self.config = config or EngineConfig()
        c = self.config
        self.hroot = hroot
        self.scan_root = scan_root
        self.walker = Walker(mem, c.walker)
        coherent = c.scan.fmt != "ia32e"
        self.scanner = Scanner(replace(c.scan, report_cleared=coherent))
        self.interval = IntervalController(c.interval)
        self.prefetcher = Prefetcher(mem, c.prefetch)
        self.exits = ExitDetector(c.exit)

    def translate(self, req: WalkRequest) -> Translation | Fault:
        """A demand walk; a successful one that walked the guest dimension is reported to
        the exit detector (address space = the request's CR3)."""
        result = self.walker.translate(req)
        if isinstance(result, Translation) and result.pte_gpa is not None:
            self.exits.feed(Access(asid=req.cr3, gva=req.gva & ((1 << 48) - 1),
                                   table_gpa=result.pte_gpa & ~0xFFF,
                                   index=(result.pte_gpa >> 3) & 511, user=req.user))
        return result

    def scan(self) -> PassReport:
        """One scan pass, the walker kept coherent, the interval controller told."""
        stats = self.scanner.scan_pass(self.mem, self.scan_root)
        dropped = 0
        if stats.cleared_base is not None:
            for base, size in zip(stats.cleared_base.tolist(), stats.cleared_size.tolist()):
                dropped += self.walker.scanner_cleared(self.hroot, base, size)
        cycles = max(stats.entries_read, stats.writes, 1)
        timing = self.interval.end_pass(cycles, accessed=stats.accessed, leaves=stats.leaves)
        return PassReport(stats, timing, dropped)

    def fault(self, req: PrefetchRequest) -> PrefetchResult:
        """A fault on a non-resident page: the neighbours worth fetching with it."""
        return self.prefetcher.prefetch(req)

    def pte_write(self, event: PteWrite) -> list[Drop]:
        """A guest PTE write seen by the hypervisor: shadow tables to drop."""
        return self.exits.feed(event)
