"""The command line: demo, bench, run and eval jobs, and clear errors for bad arguments and
bad files."""

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
    assert run(["demo", "--no-rtl", "--out", str(tmp_path), "--guest-mib", "16",
                "--heap-pages", "4096"]) == 2
    assert "does not fit" in capsys.readouterr().out
    bad = tmp_path / "bad.tct"
    bad.write_bytes(b"not a trace")
    assert run(["demo", "--out", str(tmp_path), "--trace", str(bad)]) == 2
    assert "error" in capsys.readouterr().err.lower()


def test_small_demo_writes_its_results(tmp_path):
    assert run(["demo", "--no-rtl", "--out", str(tmp_path), "--guest-mib", "16",
                "--heap-pages", "1024", "--touches", "400", "--passes", "3",
                "--workload", "shifting", "--no-eval"]) == 0
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


SYN = ["--workload", "zipf", "--pages", "1024", "--touches", "100", "--slices", "12"]


def test_demo_evaluation_summary_on_the_bundled_trace(tmp_path):
    from thermocline.demo import evaluation_summary
    res = evaluation_summary(out=tmp_path)
    assert {r["policy"] for r in res["migrate"]} == {"address", "activity"}
    assert {r["policy"] for r in res["prefetch"]} == {"engine", "readahead", "none"}
    for name in ("heatmap.png", "migration.png", "tlb.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_prints_passes_and_draws_the_heatmap(tmp_path, capsys):
    assert run(["run", *SYN, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "run.json").read_text())
    assert len(data["passes"]) == 12 and data["npages"] == 1024
    for p in data["passes"]:
        assert sum(p["histogram"]) == 1024 and p["accessed"] == p["touched"]
    assert (tmp_path / "run-heatmap.png").stat().st_size > 1000
    assert "classification passes" in capsys.readouterr().out


@pytest.mark.parametrize("what, extra, rows", [
    ("migrate", ["--bandwidths", "20,80"], 4),
    ("hugepage", ["--k", "0,2", "--tlb-4k", "16", "--tlb-2m", "4"], 6),
    ("prefetch", ["--memory", "64"], 3),
])
def test_eval_writes_json_markdown_and_plot(tmp_path, what, extra, rows):
    assert run(["eval", what, *SYN, "--out", str(tmp_path), *extra]) == 0
    data = json.loads((tmp_path / f"eval-{what}.json").read_text())
    assert len(data["results"]) == rows and "machine" in data
    md = (tmp_path / f"eval-{what}.md").read_text()
    assert md.startswith(f"# eval-{what}") and md.count("\n|") >= rows + 1
    assert (tmp_path / f"eval-{what}.png").exists() == (what != "prefetch")


def test_eval_defaults_to_the_bundled_trace(tmp_path):
    assert run(["eval", "hugepage", "--k", "0,4", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "eval-hugepage.json").read_text())
    assert data["workload"]["trace"].endswith("python-dict.tct")
    k4 = {r["policy"]: r["misses"] for r in data["results"] if r["k"] == 4}
    assert k4["hindsight"] <= k4["prioritizer"] < k4["first_come"]


@pytest.mark.parametrize("argv", [
    ["eval"], ["eval", "teleport"], ["eval", "migrate", "--bandwidths", "fast"],
    ["eval", "hugepage", "--k", "-1"], ["run", "--levels", "0"],
    ["run", "--trace", "a.tct", "--workload", "zipf"], ["eval", "prefetch", "--memory", "x"],
    ["run", "--workload", "fractal"], ["eval", "prefetch", "--direction", "up"],
])
def test_eval_bad_arguments_exit_2(argv, capsys):
    assert run(argv) == 2
    assert "error" in capsys.readouterr().err.lower()


@pytest.mark.parametrize("argv, message", [
    (["eval", "hugepage", "--k", "8", "--tlb-2m", "4"], "2 MiB TLB entries"),
    (["eval", "prefetch", "--memory", "4"], "memory_pages"),
    (["eval", "migrate", "--bandwidths", "0"], "bandwidth"),
    (["run", "--levels", "40"], "levels"),
    (["eval", "hugepage", "--threshold", "99"], "threshold"),
])
def test_eval_bad_values_exit_2_without_traceback(argv, message, tmp_path, capsys):
    assert run([*argv, *SYN, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"I  0040,4\n L 1000,8\n", "not a Thermocline trace"),
    ("half", "truncated"),
])
def test_bad_trace_files_exit_2_without_traceback(tmp_path, capsys, content, message):
    path = tmp_path / "bad.tct"
    if content == "half":
        from model.trace import bundled_trace
        content = bundled_trace().read_bytes()[:50_000]
    if content is not None:
        path.write_bytes(content)
    for argv in (["run"], ["eval", "migrate"], ["eval", "prefetch"]):
        assert run([*argv, "--trace", str(path), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
