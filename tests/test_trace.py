"""Real workloads: lackey text -> page-level trace file -> slices, and the trace CLI."""

import bz2
import gzip
import io
import json
import lzma
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import trace as T
from model.workload import Slice
from tests.helpers import scale
from thermocline.cli import main

VALGRIND = shutil.which("valgrind")
needs_valgrind = pytest.mark.skipif(
    VALGRIND is None, reason="valgrind is not installed (make test installs Debian's valgrind)")

OPS = ("I  ", " L ", " S ", " M ")


# --------------------------------------------------------------------------------------------
# Independent references


def records(n: int, seed: int):
    """Random lackey records: (op index into OPS, address, size), with spanning accesses."""
    rng = np.random.default_rng(seed)
    op = rng.choice(4, n, p=[0.5, 0.25, 0.15, 0.1])
    region = rng.choice(4, n)
    base = np.array([0x0040_0000, 0x0480_0000, 0x1F_FEFF_0000, 0x7F12_3456_0000], np.int64)
    span = np.array([1 << 14, 1 << 20, 1 << 16, 1 << 22], np.int64)
    addr = base[region] + rng.integers(0, span[region])
    near_edge = rng.random(n) < 0.1                  # a few accesses end past a page boundary
    addr = np.where(near_edge, (addr | 0xFFF) - rng.integers(0, 6, n), addr)
    size = rng.choice(np.array([1, 2, 4, 8, 16, 32, 64]), n)
    size = np.where(op == 0, rng.integers(1, 16, n), size)
    return op, addr, size


def text_of(op, addr, size, *, banners=True) -> str:
    body = "".join(f"{OPS[o]}{a:08x},{s}\n" for o, a, s in zip(op.tolist(), addr.tolist(),
                                                                  size.tolist()))
    if not banners:
        return body
    return ("==77== Lackey, an example Valgrind tool\n==77== Command: prog\n==77== \n"
            + body + "==77== \n==77== Exit code:       0\n")


def numpy_reference(op, addr, size, *, n, clock="accesses", fetches=False, shift=12):
    """Per slice: (pages, reads, writes, accesses, instructions), computed directly."""
    op, addr, size = np.asarray(op), np.asarray(addr, np.int64), np.asarray(size, np.int64)
    is_i = op == 0
    touch = np.ones(len(op), bool) if fetches else ~is_i
    event = is_i if clock == "instructions" else touch
    sl = np.maximum(np.cumsum(event) - 1, 0) // n
    nslices = int(sl[-1]) + 1 if len(op) else 0
    first, last = addr >> shift, (addr + size - 1) >> shift
    out = []
    for s in range(nslices):
        m = (sl == s) & touch
        pages = np.concatenate([first[m], last[m][last[m] != first[m]]])
        rd = op[m] != 2                                # I (when touched), L, M
        wr = (op[m] == 2) | (op[m] == 3)               # S, M
        two = last[m] != first[m]
        rd = np.concatenate([rd, rd[two]])
        wr = np.concatenate([wr, wr[two]])
        up, inv = np.unique(pages, return_inverse=True)
        out.append((up, np.bincount(inv, rd, len(up)).astype(np.int64),
                    np.bincount(inv, wr, len(up)).astype(np.int64), int(m.sum()),
                    int(((sl == s) & is_i).sum())))
    return out


def python_reference(text: str, *, n, clock="accesses", fetches=False, shift=12):
    """The documented rules, one line at a time."""
    slices: dict[int, list] = {}
    events = 0
    for line in text.splitlines():
        if not line or line[:2] in ("==", "--", "**"):
            continue
        kind = OPS.index(line[:3])
        a, s = line[3:].split(",")
        a, s = int(a, 16), int(s)
        touch = kind != 0 or fetches
        events += (kind == 0) if clock == "instructions" else touch
        entry = slices.setdefault(max(events - 1, 0) // n, [{}, 0, 0])
        entry[2] += kind == 0
        if touch:
            entry[1] += 1
            for p in range(a >> shift, ((a + s - 1) >> shift) + 1):
                c = entry[0].setdefault(p, [0, 0])
                c[0] += kind in (0, 1, 3)
                c[1] += kind in (2, 3)
    out = []
    for k in range(max(slices) + 1 if slices else 0):
        pages, acc, ins = slices.get(k, [{}, 0, 0])
        keys = sorted(pages)
        out.append((np.array(keys, np.int64), np.array([pages[p][0] for p in keys], np.int64),
                    np.array([pages[p][1] for p in keys], np.int64), acc, ins))
    return out


def assert_matches(path, expected):
    got = list(T.TraceReader(path).counts())
    assert len(got) == len(expected)
    for c, (pages, reads, writes, acc, ins) in zip(got, expected):
        np.testing.assert_array_equal(c.pages, pages)
        np.testing.assert_array_equal(c.reads, reads)
        np.testing.assert_array_equal(c.writes, writes)
        assert (c.accesses, c.instructions) == (acc, ins), c.index
        s = c.slice
        assert isinstance(s, Slice) and s.pages.dtype == np.int64 and s.writes.dtype == bool
        np.testing.assert_array_equal(s.writes, writes > 0)


def convert_text(text, tmp_path, name="t.tct", **kw):
    out = tmp_path / name
    summary = T.convert([text], out, **kw)
    return out, summary


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("clock,fetches,n,chunk", [
    ("accesses", False, 1000, 1 << 22), ("accesses", False, 777, 4096),
    ("accesses", True, 2500, 10_000), ("instructions", False, 1500, 5000),
    ("instructions", True, 64, 1 << 16),
])
def test_round_trip_equals_numpy_reference(tmp_path, clock, fetches, n, chunk):
    op, addr, size = records(scale(30_000), seed=n)
    text = text_of(op, addr, size)
    out = tmp_path / "t.tct"
    s = T.convert(io.BytesIO(text.encode()), out, slice_length=n, clock=clock,
                  fetches=fetches, chunk_size=chunk)
    expected = numpy_reference(op, addr, size, n=n, clock=clock, fetches=fetches)
    assert_matches(out, expected)
    assert s["slices"] == len(expected) == len(T.TraceReader(out))
    assert s["lines"] == len(op) + 5 and s["banner_lines"] == 5
    assert s["accesses"] == sum(e[3] for e in expected)
    assert s["instructions"] == int((op == 0).sum())
    assert (s["loads"], s["stores"], s["modifies"]) == tuple(int((op == k).sum())
                                                             for k in (1, 2, 3))
    assert not (tmp_path / "t.tct.part").exists()


@settings(max_examples=scale(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**40), st.integers(1, 300)),
                max_size=200),
       st.integers(1, 40), st.sampled_from(T.CLOCKS), st.booleans(),
       st.sampled_from([64, 4096, 1 << 21]), st.integers(1, 400))
def test_round_trip_equals_line_by_line_reference(tmp_path, recs, n, clock, fetches,
                                                  page_size, chunk):
    text = "".join(f"{OPS[o]}{a:x},{s}\n" for o, a, s in recs)
    out = tmp_path / "h.tct"
    T.convert([text[i:i + 37] for i in range(0, len(text), 37)], out, slice_length=n,
              clock=clock, fetches=fetches, page_size=page_size, chunk_size=chunk)
    assert_matches(out, python_reference(text, n=n, clock=clock, fetches=fetches,
                                         shift=page_size.bit_length() - 1))


def test_access_spanning_pages_touches_each_once(tmp_path):
    text = " L 00000ffe,4\n S 1fff,2\n L 3000,8\n"
    out, s = convert_text(text, tmp_path)
    (c,) = T.TraceReader(out).counts()
    np.testing.assert_array_equal(c.pages, [0, 1, 2, 3])
    np.testing.assert_array_equal(c.reads, [1, 1, 0, 1])
    np.testing.assert_array_equal(c.writes, [0, 1, 1, 0])
    assert c.accesses == 3 and s["read_touches"] == 3 and s["write_touches"] == 2
    out, _ = convert_text(" L 40,200\n", tmp_path, page_size=64)   # bytes 0x40..0x107
    np.testing.assert_array_equal(next(T.TraceReader(out).counts()).pages, [1, 2, 3, 4])


def test_modify_is_one_access_that_reads_and_writes(tmp_path):
    out, s = convert_text("I  1000,3\n M 5008,8\n M 5010,4\n S 6000,8\n", tmp_path,
                          slice_length=2)
    c0, c1 = T.TraceReader(out).counts()
    np.testing.assert_array_equal(c0.pages, [5])
    assert (c0.reads[0], c0.writes[0], c0.accesses, c0.instructions) == (2, 2, 2, 1)
    np.testing.assert_array_equal(c1.pages, [6])
    assert (c1.reads[0], c1.writes[0]) == (0, 1)
    assert s["modifies"] == 2 and s["accesses"] == 3
    assert next(iter(T.TraceReader(out))).writes.tolist() == [True]


def test_instruction_clock_keeps_slices_without_data(tmp_path):
    text = "I  1000,3\n L 9000,4\nI  1003,2\nI  1005,2\nI  1007,2\n S a000,4\n"
    out, s = convert_text(text, tmp_path, slice_length=1, clock="instructions")
    got = list(T.TraceReader(out).counts())
    assert [len(c.pages) for c in got] == [1, 0, 0, 1]
    assert [c.instructions for c in got] == [1, 1, 1, 1]
    assert s["slices"] == 4


def test_no_records_gives_an_empty_but_valid_trace(tmp_path):
    out, s = convert_text("==1== Lackey\n\n==1== \n", tmp_path)
    assert s["slices"] == 0 and len(T.TraceReader(out)) == 0
    assert list(T.read_slices(out)) == []
    assert T.info(out)["distinct_pages"] == 0


def test_tolerated_lines(tmp_path):
    text = ("==12== Lackey, an example Valgrind tool\r\n--12-- WARNING: something\n"
            "**12** internal note\n\n L 1000,4\r\nI  0401AbC0,3\n==12== \n S 2000,8")
    out, s = convert_text(text, tmp_path, fetches=True)
    (c,) = T.TraceReader(out).counts()
    np.testing.assert_array_equal(c.pages, [1, 2, 0x401A])
    assert s["banner_lines"] == 4 and s["lines"] == 8 and s["skipped_lines"] == 0


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (lzma.open, ".xz"),
                                            (bz2.open, ".bz2"), (open, ".txt")])
def test_compressed_inputs_convert_identically(tmp_path, opener, suffix):
    op, addr, size = records(5000, seed=4)
    text = text_of(op, addr, size).encode()
    src = tmp_path / f"trace{suffix}"
    with opener(src, "wb") as f:
        f.write(text)
    seen = []
    T.convert(src, tmp_path / "a.tct", slice_length=300, chunk_size=8192,
              progress=lambda done, total, acc: seen.append((done, total)))
    T.convert([text], tmp_path / "b.tct", slice_length=300)
    assert (tmp_path / "a.tct").read_bytes() == (tmp_path / "b.tct").read_bytes()
    assert seen and seen[-1][1] == src.stat().st_size
    assert all(0 <= d <= t for d, t in seen)


def test_text_file_objects_and_str_pieces(tmp_path):
    text = "I  1000,3\n L 2000,4\n"
    T.convert(io.StringIO(text), tmp_path / "a.tct")
    T.convert(iter(text.splitlines(keepends=True)), tmp_path / "b.tct")
    assert (tmp_path / "a.tct").read_bytes() == (tmp_path / "b.tct").read_bytes()


def test_truncated_compressed_input_is_an_error(tmp_path):
    src = tmp_path / "t.gz"
    src.write_bytes(gzip.compress(b" L 1000,4\n" * 20000)[:-40])
    with pytest.raises(T.TraceError, match="truncated or corrupt"):
        T.convert(src, tmp_path / "t.tct")
    assert not (tmp_path / "t.tct").exists() and not (tmp_path / "t.tct.part").exists()


# --------------------------------------------------------------------------------------------
# Malformed text


GOOD = "I  04010000,3\n L 1ffefff898,8\n"


@pytest.mark.parametrize("bad,message", [
    ("I  0401zz00,3", "bad hex digit"),
    (" L 1ffefff898", "missing ',SIZE'"),
    (" L 1ffefff898,", "missing size"),
    (" X 1000,4", "not a lackey trace line"),
    ("hello from the program", "program output"),
    (" S 1000,0", "size 0 out of range"),
    (" S 1000,99999", "out of range"),
    (" L 1000,4x", "size is not a decimal"),
    (" L 1000,12345678901", "size is not a decimal"),
    (" L 10000000000000000,4", "more than 16 hex digits"),
    (" L ,4", "missing address"),
    (" L 10,00,4", "more than one ','"),
    (" L ffffffffffffffff,2", "wraps"),
    ("I 04010000,3", "not a lackey trace line"),
    ("L 1000,4", "not a lackey trace line"),
])
@pytest.mark.parametrize("chunk", [1 << 22, 64])
def test_malformed_line_reports_its_line_number(tmp_path, bad, message, chunk):
    text = "==5== Lackey\n" + GOOD * 40 + bad + "\n" + GOOD
    line = 1 + 80 + 1
    with pytest.raises(T.TraceError, match=rf"^line {line}: .*{message}"):
        T.convert([text], tmp_path / "t.tct", chunk_size=chunk)
    assert not (tmp_path / "t.tct").exists() and not (tmp_path / "t.tct.part").exists()


def test_truncated_last_line_is_reported(tmp_path):
    with pytest.raises(T.TraceError, match="^line 3: missing ',SIZE'"):
        T.convert([GOOD + " L 1ffef"], tmp_path / "t.tct")


def test_lenient_skips_and_counts_bad_lines(tmp_path):
    text = GOOD + "program says hi\n" + GOOD + " L 12,zz\n"
    out, s = convert_text(text, tmp_path, lenient=True)
    assert s["skipped_lines"] == 2 and s["first_skipped"] == (3, "program says hi")
    assert T.TraceReader(out).totals["skipped"] == 2
    assert s["loads"] == 2


def test_a_trace_file_is_not_lackey_text(tmp_path):
    out, _ = convert_text(GOOD, tmp_path)
    with pytest.raises(T.TraceError, match="already a Thermocline trace"):
        T.convert(out, tmp_path / "again.tct")


def test_overlong_line_is_an_error(tmp_path):
    with pytest.raises(T.TraceError, match="line 2: longer than"):
        T.convert([GOOD[:14] + "x" * 100_000], tmp_path / "t.tct", chunk_size=1024)


def test_bad_options():
    with pytest.raises(ValueError, match="clock"):
        T.convert([GOOD], io.BytesIO(), clock="cycles")
    with pytest.raises(ValueError, match="slice length"):
        T.convert([GOOD], io.BytesIO(), slice_length=0)
    with pytest.raises(ValueError, match="power of two"):
        T.convert([GOOD], io.BytesIO(), page_size=3000)


# --------------------------------------------------------------------------------------------
# Damaged trace files


@pytest.fixture
def small_trace(tmp_path):
    op, addr, size = records(4000, seed=9)
    out, _ = convert_text(text_of(op, addr, size), tmp_path, slice_length=200)
    return out


def test_wrong_magic_and_version(small_trace, tmp_path):
    data = bytearray(small_trace.read_bytes())
    bad = tmp_path / "bad.tct"
    bad.write_bytes(b"NOTATRACE" + bytes(data[9:]))
    with pytest.raises(T.TraceError, match="not a Thermocline trace"):
        T.TraceReader(bad)
    data[8:10] = struct.pack("<H", 7)
    bad.write_bytes(bytes(data))
    with pytest.raises(T.TraceError, match="version 7 is not supported"):
        T.TraceReader(bad)
    bad.write_bytes(b"")
    with pytest.raises(T.TraceError, match="truncated header"):
        T.TraceReader(bad)


@pytest.mark.parametrize("keep", [20, 40, 0.5, 0.99])
def test_truncated_file(small_trace, tmp_path, keep):
    data = small_trace.read_bytes()
    bad = tmp_path / "cut.tct"
    bad.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(T.TraceError, match="truncated"):
        T.TraceReader(bad)


def test_damaged_block_is_detected_while_reading(small_trace, tmp_path):
    data = bytearray(small_trace.read_bytes())
    data[60] ^= 0xFF                                   # inside the first block's payload
    bad = tmp_path / "bad.tct"
    bad.write_bytes(bytes(data))
    reader = T.TraceReader(bad)                        # header and end record are fine
    with pytest.raises(T.TraceError, match="checksum mismatch"):
        list(reader)


def test_unreadable_paths(tmp_path):
    with pytest.raises(T.TraceError, match="cannot read"):
        T.TraceReader(tmp_path / "missing.tct")
    with pytest.raises(T.TraceError, match="cannot read"):
        T.convert(tmp_path / "missing.txt", tmp_path / "o.tct")
    with pytest.raises(T.TraceError, match="cannot write"):
        T.convert([GOOD], tmp_path / "no" / "dir" / "o.tct")


# --------------------------------------------------------------------------------------------
# Reading helpers


def test_info_and_compact_slices(small_trace):
    i = T.info(small_trace, top=5)
    r = T.TraceReader(small_trace)
    counts = list(r.counts())
    everything = np.unique(np.concatenate([c.pages for c in counts]))
    assert i["distinct_pages"] == len(everything) == len(r.footprint())
    assert i["entries"] == sum(len(c.pages) for c in counts)
    assert i["slices"] == len(counts) and i["accesses"] == sum(c.accesses for c in counts)
    assert i["footprint_bytes"] == 4096 * len(everything)
    assert len(i["top_pages"]) == 5
    in_slices = [sum(int(p["page"] in set(c.pages.tolist())) for c in counts)
                 for p in i["top_pages"]]
    assert in_slices == [p["slices"] for p in i["top_pages"]]
    assert in_slices == sorted(in_slices, reverse=True)
    npages, slices = r.compact_slices()
    compact = list(slices)
    assert npages == 512 * i["regions_2m"]
    for c, s in zip(counts, compact):
        assert s.pages.min() >= 0 and s.pages.max() < npages
        np.testing.assert_array_equal(s.pages % 512, c.pages % 512)
        np.testing.assert_array_equal(s.writes, c.writes > 0)
        assert (np.diff(s.pages) > 0).all()


def test_bench_convert_reports_rates():
    b = T.bench_convert(20_000, repeat=1)
    assert b["accesses"] > 0 and b["best_accesses_per_s"] > 0 and b["slices"] >= 1
    assert b["lines"] >= 20_000


# --------------------------------------------------------------------------------------------
# Recording


@needs_valgrind
def test_record_a_tiny_real_program(tmp_path):
    out = tmp_path / "true.tct"
    s = T.record(["true"], out, slice_length=5000)
    assert s["exit_status"] == 0 and s["accesses"] > 1000 and s["instructions"] > s["slices"]
    assert s["banner_lines"] > 0 and s["skipped_lines"] == 0
    r = T.TraceReader(out)
    assert len(r) == s["slices"] == -(-s["accesses"] // 5000)
    slices = list(r)
    assert all((np.diff(x.pages) > 0).all() for x in slices)
    assert any(x.writes.any() for x in slices)
    assert sum(c.accesses for c in r.counts()) == s["accesses"]


@needs_valgrind
def test_record_reports_status_and_start_failures(tmp_path):
    s = T.record(["sh", "-c", "exit 3"], tmp_path / "sh.tct", stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    assert s["exit_status"] == 3 and len(T.TraceReader(tmp_path / "sh.tct")) >= 1
    with pytest.raises(T.TraceError, match="not found on PATH"):
        T.record(["no-such-program-here"], tmp_path / "x.tct")
    with pytest.raises(T.TraceError, match="not executable"):
        T.record([str(tmp_path / "sh.tct")], tmp_path / "x.tct")
    assert not (tmp_path / "x.tct").exists() and not (tmp_path / "x.tct.part").exists()


def test_record_without_valgrind_says_how_to_install(tmp_path):
    with pytest.raises(T.TraceError, match="apt-get install valgrind"):
        T.record(["true"], tmp_path / "x.tct", valgrind="no-such-valgrind")


# --------------------------------------------------------------------------------------------
# The bundled trace


def test_bundled_trace_is_plausible():
    path = T.bundled_trace()
    assert path == T.bundled_trace("python-dict") == T.bundled_trace("python-dict.tct")
    assert "python-dict" in T.bundled_traces()
    assert path.stat().st_size < 1 << 20
    r = T.TraceReader(path)
    i = T.info(path)
    assert r.page_size == 4096 and r.clock == "accesses"
    assert i["slices"] >= 100
    assert i["distinct_pages"] > 1000                 # heap, 16 MiB buffer, code, stack
    assert 0 < i["written_pages"] < i["distinct_pages"]
    assert i["loads"] > i["stores"] > i["modifies"] > 0
    lo, mean, hi = i["pages_per_slice"]
    assert 0 < lo < mean < hi < i["distinct_pages"]
    assert i["top_pages"][0]["slices"] > i["slices"] // 2       # interpreter state: hot
    pages, seen = np.unique(np.concatenate([c.pages for c in r.counts()]),
                            return_counts=True)
    assert len(pages) == i["distinct_pages"]
    assert (seen <= 3).sum() > 2048 // 2           # the 8 MiB buffer: swept, rarely revisited
    with pytest.raises(ValueError, match="python-dict"):
        T.bundled_trace("nonesuch")


# --------------------------------------------------------------------------------------------
# Command line


def run(argv):
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv", [
    ["trace"], ["trace", "bogus"], ["trace", "record"], ["trace", "record", "--"],
    ["trace", "record", "--slice", "0", "--", "true"], ["trace", "convert"],
    ["trace", "convert", "-"], ["trace", "convert", "x.txt", "--clock", "cycles"],
    ["trace", "convert", "x.txt", "--page-size", "big"], ["trace", "info"],
    ["trace", "info", "x.tct", "--top", "-1"],
])
def test_trace_bad_arguments_exit_2(argv, capsys):
    assert run(argv) == 2
    assert "error" in capsys.readouterr().err.lower()


def test_trace_bad_files_exit_2_with_a_message(tmp_path, capsys):
    assert run(["trace", "convert", str(tmp_path / "missing.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text(GOOD + GOOD + " Q 12,4\n")
    assert run(["trace", "convert", str(bad), "--out", str(tmp_path / "b.tct")]) == 2
    err = capsys.readouterr().err
    assert "line 5:" in err and "Traceback" not in err
    assert run(["trace", "info", str(bad)]) == 2
    assert "not a Thermocline trace" in capsys.readouterr().err
    assert run(["trace", "convert", str(bad), "--page-size", "1000"]) == 2
    assert "power of two" in capsys.readouterr().err


def test_trace_convert_and_info(tmp_path, capsys, monkeypatch):
    op, addr, size = records(3000, seed=2)
    src = tmp_path / "prog.lackey.txt.gz"
    src.write_bytes(gzip.compress(text_of(op, addr, size).encode()))
    monkeypatch.chdir(tmp_path)
    assert run(["trace", "convert", str(src), "--slice", "250"]) == 0
    assert (tmp_path / "prog.tct").is_file()
    assert run(["trace", "info", "prog.tct", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "distinct pages" in out and "top 3 pages" in out
    assert run(["trace", "info", "prog.tct", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["slices"] == len(numpy_reference(op, addr, size, n=250))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.decompress(
        src.read_bytes()))))
    assert run(["trace", "convert", "-", "--out", "stdin.tct", "--slice", "250"]) == 0
    assert (tmp_path / "stdin.tct").read_bytes() == (tmp_path / "prog.tct").read_bytes()


@needs_valgrind
def test_trace_record_cli(tmp_path, capsys):
    out = tmp_path / "t.tct"
    assert run(["trace", "record", "--out", str(out), "--slice", "10000", "--quiet", "--",
                "sh", "-c", "exit 5"]) == 0
    text = capsys.readouterr().out
    assert "exited with status 5" in text and out.is_file()
    assert run(["trace", "record", "--out", str(out), "--", "no-such-program-here"]) == 2
    assert "not found on PATH" in capsys.readouterr().err
