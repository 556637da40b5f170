"""The register map (thermocline/regmap.py): a sound definition, up-to-date documents, a C
header that compiles and agrees with the Python offsets, and the unit lists it mirrors."""

import shutil
import subprocess
from pathlib import Path

import pytest

from hdl.exit_detector import COUNTERS as EXIT_HDL_COUNTERS
from hdl.scanner import STAT_NAMES
from hdl.walker import COUNTERS as WALKER_HDL_COUNTERS
from model.exit_detector import ExitCounters
from model.interval import IntervalConfig
from model.prefetcher import DIRECTIONS, PrefetchConfig
from model.prioritizer import LargePageConfig
from model.scanner import ScanConfig
from thermocline import regmap as R
from thermocline.regmap import (
    ADDR_WIDTH, OKAY, REGMAP, SLVERR, Field, Register, RegisterFile, RegisterMap, Section,
    Window, Word,
)

ROOT = Path(__file__).resolve().parent.parent


def test_no_overlaps_and_aligned():
    spans = []
    for reg in REGMAP.registers.values():
        assert reg.offset % (reg.width // 8) == 0, reg.name
        spans.append((reg.offset, reg.offset + reg.width // 8, reg.name))
    for win in REGMAP.windows.values():
        assert win.offset % 4 == 0, win.name
        spans.append((win.offset, win.end, win.name))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        assert end <= start, f"{a} overlaps {b}"
    assert spans[-1][1] <= 1 << ADDR_WIDTH


def test_fields_fit_and_resets_fit():
    for reg in REGMAP.registers.values():
        used = 0
        for f in reg.fields:
            assert 0 <= f.lsb and f.msb < reg.width, (reg.name, f.name)
            assert used & f.mask == 0, (reg.name, f.name)
            used |= f.mask
            assert 0 <= f.reset < 1 << f.width, (reg.name, f.name)
        assert reg.reset & ~reg.mask == 0
        assert reg.access in R.ACCESS
    for win in REGMAP.windows.values():
        for w in win.words:
            for f in w.fields:
                assert f.msb < 32


def bad_map(**kw):
    base = dict(name="X", offset=0x10, access="RW", desc="x",
                fields=(Field("A", 0, 4, "a"),))
    base.update(kw)
    return RegisterMap([Section("s", "s", (Register(**base),))])


@pytest.mark.parametrize("kw,match", [
    (dict(offset=0x12), "aligned"),
    (dict(offset=1 << ADDR_WIDTH), "aligned"),
    (dict(offset=0x14, width=64, fields=(Field("A", 0, 64, "a"),)), "aligned"),
    (dict(access="RX"), "access"),
    (dict(fields=(Field("A", 30, 4, "a"),)), "outside"),
    (dict(fields=(Field("A", 0, 4, "a"), Field("B", 3, 2, "b"))), "overlaps"),
    (dict(fields=(Field("A", 0, 4, "a", reset=16),)), "reset"),
    (dict(access="W1C", width=64, fields=(Field("A", 0, 4, "a"),)), "64-bit"),
    (dict(access="RW", const=True), "constant"),
    (dict(fields=()), "no field"),
])
def test_bad_definitions_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        bad_map(**kw)


def test_overlapping_items_are_refused():
    a = Register("A", 0x10, "RW", "a", (Field("V", 0, 1, "v"),))
    w = Window("W", 0x0, 8, "w", (Word("X", "x"),))
    with pytest.raises(ValueError, match="overlaps"):
        RegisterMap([Section("s", "s", (a, w))])
    with pytest.raises(ValueError, match="twice"):
        RegisterMap([Section("s", "s", (a, a))])


def test_register_lists_match_the_units():
    """Counters and statistics are listed in the units' port order."""
    assert [n for n, _ in R.WALKER_COUNTERS] == list(WALKER_HDL_COUNTERS)
    assert [n for n, _ in R.EXIT_COUNTERS] == list(EXIT_HDL_COUNTERS)
    assert [n for n, _ in R.EXIT_COUNTERS] == list(ExitCounters.__dataclass_fields__)
    assert [w.name.lower() for w in REGMAP.windows["SCAN_STAT"].words] == list(STAT_NAMES)


def test_reset_values_are_the_model_defaults():
    """Configuration registers reset to the model's default configuration."""
    scan, lp, pf = ScanConfig(), LargePageConfig(), PrefetchConfig()
    r = REGMAP.registers
    cfg = r["SCAN_CONFIG"]
    assert cfg.field("LEVELS").reset == scan.levels
    assert (cfg.field("UP").reset, cfg.field("DOWN").reset) == (scan.up, scan.down)
    long = r["SCAN_LONG"]
    assert (long.field("EVERY").reset, long.field("LEVELS").reset,
            long.field("NEED").reset) == (scan.long_every, scan.long_levels, scan.long_need)
    lpc = r["LP_CONFIG"]
    assert (lpc.field("ENABLE").reset, lpc.field("SHIFT").reset, lpc.field("THRESHOLD").reset,
            lpc.field("TOP_K").reset) == (lp.enable, lp.shift, lp.threshold, lp.top_k)
    assert r["LP_WARMUP"].reset == lp.warmup
    assert r["LP_MAX_NONPRESENT"].reset == lp.max_nonpresent
    ic = IntervalConfig(period=r["INT_PERIOD"].reset)
    assert (r["INT_MIN_PERIOD"].reset, r["INT_MAX_PERIOD"].reset) == (ic.min_period,
                                                                       ic.max_period)
    ratio = r["INT_RATIO"]
    assert (ratio.field("TARGET").reset, ratio.field("HYSTERESIS").reset) == (ic.target,
                                                                              ic.hysteresis)
    assert r["INT_STEP"].field("SHIFT").reset == ic.step_shift
    pfc = r["PF_CONFIG"]
    assert pfc.field("WINDOW").reset == pf.window
    assert pfc.field("DIRECTION").values[pfc.field("DIRECTION").reset].lower() == pf.direction
    assert [v.lower() for _, v in sorted(pfc.field("DIRECTION").values.items())] == \
        list(DIRECTIONS)


def test_register_file_model():
    """The map's behavioural model: strobes, W1C, WO, RWU, 64-bit capture, errors."""
    rf = RegisterFile()
    unit = {"INT_PERIOD": 500, "INT_NOW": (7 << 32) | 9}.get
    ratio = REGMAP["INT_RATIO"]
    assert rf.write(ratio.offset, 0xAABBCCDD, 0b0010, unit) == OKAY
    assert rf.read(ratio.offset, unit, None) == ((ratio.reset & ~0xFF00) | 0xCC00, OKAY)
    assert rf.write(REGMAP["INT_PERIOD"].offset, 0x7, 0b0001, unit) == OKAY
    assert rf.events[-1] == ("INT_PERIOD", 0x7 | (500 & ~0xFF))
    now = REGMAP["INT_NOW"]
    assert rf.read(now.offset + 4, unit, None) == (0, OKAY)
    assert rf.read(now.offset, unit, None) == (9, OKAY)
    assert rf.read(now.offset + 4, unit, None) == (7, OKAY)
    assert rf.write(now.offset, 1, 0xF, unit) == SLVERR
    assert rf.read(0xFFC, unit, None) == (0, SLVERR)
    rf.set_bits("IRQ_CAUSE", 0xFF)
    rf.write(REGMAP["IRQ_CAUSE"].offset, 0b1, 0xF, unit)
    assert rf.values["IRQ_CAUSE"] == REGMAP["IRQ_CAUSE"].mask & ~1
    win = REGMAP.windows["LP_CAND"]
    assert rf.read(win.offset + 4 * 5, unit, lambda n, i: i * 3) == (15, OKAY)


def test_docs_up_to_date():
    path = ROOT / "docs" / "registers.md"
    assert path.read_text() == R.markdown(), (
        "docs/registers.md is out of date: run "
        "`python -m thermocline.regmap --markdown docs/registers.md`")


def test_command_line(tmp_path, capsys):
    header = tmp_path / "regs.h"
    assert R.main(["--c-header", str(header), "--markdown", str(tmp_path / "r.md")]) == 0
    assert header.read_text() == R.c_header()
    assert (tmp_path / "r.md").read_text() == R.markdown()
    assert R.main(["--c-header", str(tmp_path / "missing" / "x.h")]) == 1
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        R.main([])


CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_c_header_compiles_and_offsets_agree(tmp_path):
    (tmp_path / "thermocline_regs.h").write_text(R.c_header())
    program, expected = R.c_offsets_program("thermocline_regs.h")
    (tmp_path / "check.c").write_text(program)
    subprocess.run([CC, "-std=c99", "-Wall", "-Werror", "-pedantic", "-fsyntax-only",
                    "check.c"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([CC, "-std=c99", "-Wall", "-Werror", "-o", "check", "check.c"],
                   cwd=tmp_path, check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "check")], check=True, capture_output=True,
                         text=True).stdout
    assert out == expected
    # Spot checks against the Python constants.
    lines = dict(line.split() for line in out.splitlines())
    assert int(lines["TC_REG_INT_NOW_HI"]) == REGMAP["INT_NOW"].offset + 4
    assert int(lines["TC_WIN_LP_CAND_STRIDE"]) == 16
    assert int(lines["TC_INT_MODE_MODE_RATIO"]) == 2


def test_c_names_are_unique():
    names = [name for name, _, _ in R._c_defines(REGMAP)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
