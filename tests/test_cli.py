"""The command line: the demo and bench jobs, and clear errors for bad arguments."""

import json

import pytest

from thermocline.cli import main


def run(argv):
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv", [
    ["bogus"], [], ["demo", "--passes", "0"], ["demo", "--touches", "many"],
    ["demo", "--guest-mib", "-4"],
])
def test_bad_arguments_exit_2(argv, capsys):
    assert run(argv) == 2
    assert "error" in capsys.readouterr().err.lower()


def test_bad_values_found_later_exit_2_with_message(capsys, tmp_path):
    assert run(["demo", "--out", str(tmp_path), "--workload", "fractal"]) == 2
    assert "'fractal'" in capsys.readouterr().out
    assert run(["demo", "--out", str(tmp_path), "--guest-mib", "16",
                "--heap-pages", "4096"]) == 2
    assert "does not fit" in capsys.readouterr().out


def test_small_demo_writes_its_results(tmp_path):
    assert run(["demo", "--out", str(tmp_path), "--guest-mib", "16", "--heap-pages", "1024",
                "--touches", "400", "--passes", "3", "--workload", "shifting"]) == 0
    data = json.loads((tmp_path / "demo.json").read_text())
    assert len(data["passes"]) == 3
    for p in data["passes"]:
        assert sum(p["histogram"]) == sum(p["leaves_by_size"].values())
        assert p["accessed"] >= p["touched"]           # guest table pages are touched too
    assert data["exit"]["drops"] > 0
    assert (tmp_path / "demo.md").read_text().startswith("# demo")


def test_quick_bench_writes_json_and_table(tmp_path):
    assert run(["bench", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["scan"]["best_entries_per_s"] > 0 and "machine" in data
    assert "entries/s" in (tmp_path / "bench.md").read_text()
