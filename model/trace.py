"""Real workloads: page-level memory traces recorded with valgrind's lackey tool.

``valgrind --tool=lackey --trace-mem=yes PROGRAM`` prints one line per memory access of
PROGRAM. This module reduces that text, while it is being produced, to the pages touched in
each time slice, in a compact binary file (``.tct``), and reads such files back as
:class:`model.workload.Slice` objects (with per-page read and write counts on request).

Lackey text
-----------
Lines are processed as bytes; every line is one of:

* an instruction fetch ``I  ADDR,SIZE`` (``I`` and two spaces);
* a data access `` L ADDR,SIZE`` (load), `` S ADDR,SIZE`` (store) or `` M ADDR,SIZE``
  (modify: a load and a store of the same bytes, one access);
* tolerated and skipped: valgrind's own lines, which start with ``==``, ``--`` or ``**``
  (``==1234== Lackey, an example Valgrind tool``, warnings, the final statistics), and empty
  lines. A trailing carriage return is ignored.

ADDR is 1 to 16 hexadecimal digits (either case), SIZE a decimal byte count from 1 to
:data:`MAX_ACCESS_SIZE` (lackey itself emits at most 512), and an access must not wrap past
the top of the 64-bit address space. Anything else -- an unknown record type, a bad hex
digit, a missing or malformed size, program output mixed into the text -- raises
:class:`TraceError` whose message starts with ``line N:`` (1-based, counting every line of
the text). With ``lenient=True`` such lines are skipped instead and counted. The last line
may lack its newline; a compressed input that ends early is an error.

An access of SIZE bytes at ADDR touches every page from ``ADDR >> s`` to
``(ADDR + SIZE - 1) >> s`` (``s`` = log2 page size): an access spanning two pages touches
both, and counts once on each.

Time slices
-----------
One clock is chosen at conversion and recorded in the header:

* ``clock="accesses"`` (default): a slice is ``slice_length`` consecutive accesses. The
  accesses are the data accesses (L, S, M, one each), plus the instruction fetches when
  ``fetches=True``. A line that is not an access (an instruction fetch when fetches are not
  recorded) belongs to the slice of the access before it (the first slice if none).
* ``clock="instructions"``: a slice is ``slice_length`` consecutive instructions (``I``
  lines); a data access belongs to the slice of the instruction before it (lackey prints an
  instruction before its data accesses). Slices without data accesses are kept (empty).

With E clock events in the text, there are ``ceil(E / slice_length)`` slices (one, if the
text has records but no clock event); only the last may be shorter.

Per slice the file keeps the distinct pages touched, ascending, each with a read count (L and
M touches, plus fetches when recorded) and a write count (S and M touches), and the numbers
of accesses and of instructions in the slice.

File format, version 1
----------------------
All integers are little-endian. A file is a header, zero or more blocks, and an end record.

Header, 32 bytes::

    0  magic         8 bytes  b"TCTRACE\\x1a"
    8  version       u16      1
    10 flags         u16      bit 0: instruction fetches were recorded as reads
    12 page_shift    u8       log2 of the page size (12 for 4 KiB)
    13 clock         u8       0 = accesses, 1 = instructions
    14 reserved      u16      0
    16 slice_length  u64      clock events per slice
    24 reserved      u64      0

Block (a run of whole slices), a 24-byte head then a zlib stream::

    0  tag           4 bytes  b"SLCS"
    4  slices        u32      S, slices in this block (>= 1)
    8  entries       u32      P, (slice, page) entries in this block
    12 raw_length    u32      length of the inflated payload: 20 * S + 16 * P
    16 length        u32      length of the zlib stream that follows
    20 crc32         u32      CRC-32 of that zlib stream

The inflated payload holds six arrays, each stored byte-shuffled (all first bytes of the
elements, then all second bytes, ...; this puts the mostly-zero high bytes together, where
zlib compresses them to almost nothing)::

    pages per slice      u32[S]
    accesses per slice   u64[S]
    instructions/slice   u64[S]
    page deltas          u64[P]  zigzag(page[i] - page[i-1]), page[-1] = 0, over the block's
                                 entries in order (slice by slice, pages ascending)
    read counts          u32[P]
    write counts         u32[P]

End record, 88 bytes, the last bytes of the file::

    0  tag           4 bytes  b"TEND"
    4  blocks        u32
    8  slices        u64
    16 instructions  u64      I lines
    24 loads         u64      L lines
    32 stores        u64      S lines
    40 modifies      u64      M lines
    48 accesses      u64      clock-independent: L + S + M (+ I when fetches are recorded)
    56 entries       u64      sum over slices of the distinct pages
    64 read_touches  u64      sum of the read counts
    72 write_touches u64      sum of the write counts
    80 skipped       u32      lines skipped in lenient mode
    84 crc32         u32      CRC-32 of bytes 0..83 of this record

Why this layout: on a recorded CPython start-up (152 slices, 21906 entries), byte-shuffled
arrays with zlib level 6 took 2.25 bytes per entry; unshuffled with zlib, 2.96; LEB128
varints, 3.66 raw and 2.06 with zlib (but several times slower to build with numpy); lzma,
1.99 at about twenty times the compression time. Shuffle + zlib is the balance kept.

A file without its end record (an interrupted conversion) is rejected. Conversion writes
``OUT.part`` and renames it to ``OUT`` only when complete.

Functions
---------
:func:`convert` (saved or streamed lackey text), :func:`record` (run a program under
valgrind and convert its trace on the fly), :class:`TraceReader` and :func:`read_slices`
(read), :func:`info` (summary), :func:`bundled_trace` (the traces shipped in
``model/traces/``), :func:`synthetic_lackey` and :func:`bench_convert` (conversion speed).
"""

from __future__ import annotations

import bz2
import collections
import fcntl
import gzip
import io
import lzma
import os
import shutil
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from .workload import Slice

__all__ = [
    "TraceError", "TraceReader", "SliceCounts", "convert", "record", "read_slices", "info",
    "bundled_trace", "bundled_traces", "synthetic_lackey", "bench_convert",
    "MAGIC", "VERSION", "CLOCKS", "DEFAULT_SLICE_LENGTH", "MAX_ACCESS_SIZE", "SUFFIX",
]

MAGIC = b"TCTRACE\x1a"
VERSION = 1
SUFFIX = ".tct"
CLOCKS = ("accesses", "instructions")
DEFAULT_SLICE_LENGTH = 100_000
MAX_SLICE_LENGTH = 1 << 30
MAX_ACCESS_SIZE = 1 << 16
MIN_PAGE_SHIFT, MAX_PAGE_SHIFT = 6, 30
FLAG_FETCHES = 1

_HEADER = struct.Struct("<8sHHBBHQQ")
_BLOCK = struct.Struct("<4sIIIII")
_END = struct.Struct("<4sIQQQQQQQQQI")
_END_CRC = struct.Struct("<I")
_BLOCK_TAG = b"SLCS"
_END_TAG = b"TEND"
_END_SIZE = _END.size + _END_CRC.size

#: A block is closed once it holds this many (slice, page) entries or slices.
_BLOCK_ENTRIES = 1 << 18
_BLOCK_SLICES = 1 << 14
_ZLIB_LEVEL = 6
#: Bytes of text parsed at once (whole lines).
_CHUNK = 1 << 22
#: Recording: pipe capacity asked for, bytes read at once, and the pause after a short read
#: (lackey writes a few hundred bytes at a time; waking up for each costs more than parsing).
_PIPE_SIZE = 1 << 20
_PIPE_READ = 1 << 20
_PIPE_NAP = 0.004
#: A line longer than this is not lackey output.
_MAX_LINE = 1 << 12

_OP_I, _OP_L, _OP_S, _OP_M = 0, 1, 2, 3
_PAD = 16
_ADDR_DIGITS = 16
_SIZE_DIGITS = 9


class TraceError(ValueError):
    """A malformed lackey text or trace file, or a recording that could not run.

    Errors in lackey text start with ``line N:`` (1-based line number in the text).
    """


_HEX_CHARS = frozenset(b"0123456789abcdefABCDEF")
_OP_LUT = np.full(256, 255, np.uint8)
_OP_LUT[ord("L")], _OP_LUT[ord("S")], _OP_LUT[ord("M")] = _OP_L, _OP_S, _OP_M


# --------------------------------------------------------------------------------------------
# Lackey text -> records


def _diagnose(line: bytes) -> str:
    """Why ``line`` (without its newline) is not a lackey trace line."""
    text = line.decode("utf-8", "replace")
    shown = text if len(text) <= 60 else text[:57] + "..."
    if line[:3] not in (b"I  ", b" L ", b" S ", b" M "):
        return (f"not a lackey trace line: {shown!r} (expected 'I  ADDR,SIZE' or ' L'/' S'/"
                f"' M ADDR,SIZE'; program output? record with valgrind --log-fd or "
                f"--log-file so it stays apart, or convert leniently)")
    body = line[3:]
    if b"," not in body:
        return f"missing ',SIZE' after the address: {shown!r}"
    if body.count(b",") > 1:
        return f"more than one ',' in the record: {shown!r}"
    addr, size = body.split(b",")
    if not addr:
        return f"missing address: {shown!r}"
    if len(addr) > _ADDR_DIGITS:
        return f"address has more than {_ADDR_DIGITS} hex digits: {shown!r}"
    if not set(addr) <= _HEX_CHARS:
        return f"bad hex digit in address {addr.decode('utf-8', 'replace')!r}: {shown!r}"
    if not size:
        return f"missing size after ',': {shown!r}"
    if len(size) > _SIZE_DIGITS or not size.isdigit():
        return f"size is not a decimal number: {size.decode('utf-8', 'replace')!r}"
    n = int(size)
    if not 1 <= n <= MAX_ACCESS_SIZE:
        return f"size {n} out of range 1..{MAX_ACCESS_SIZE}: {shown!r}"
    if int(addr, 16) + n > 1 << 64:
        return f"access wraps past the top of the address space: {shown!r}"
    return f"malformed trace line: {shown!r}"


@dataclass
class _Records:
    op: np.ndarray       # uint8, _OP_*
    addr: np.ndarray     # uint64
    size: np.ndarray     # int64


class _LineParser:
    """Vectorized parser of whole lines of lackey text; keeps the line count."""

    def __init__(self, *, lenient: bool):
        self.lenient = lenient
        self.lines = 0
        self.skipped = 0
        self.first_skipped: tuple[int, str] | None = None
        self.banners: collections.deque[str] = collections.deque(maxlen=64)
        self.banner_lines = 0

    def parse(self, data: bytes) -> _Records:
        """Parse ``data``: whole lines, the last one possibly without its newline."""
        buf = np.frombuffer(data, np.uint8)
        n = len(buf)
        ends = np.flatnonzero(buf == 10)
        if n and buf[-1] != 10:
            ends = np.append(ends, n)
        nlines = len(ends)
        if nlines == 0:
            return _Records(np.empty(0, np.uint8), np.empty(0, np.uint64),
                            np.empty(0, np.int64))
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        pb = np.zeros(n + 2 * _PAD, np.uint8)
        pb[_PAD:_PAD + n] = buf
        lens = ends - starts
        cr = (lens > 0) & (pb[ends - 1 + _PAD] == 13)
        ends = ends - cr
        lens = lens - cr
        c0 = pb[starts + _PAD]
        c1 = pb[starts + _PAD + 1]
        c2 = pb[starts + _PAD + 2]
        is_i = (c0 == 73) & (c1 == 32) & (c2 == 32)
        is_d = (c0 == 32) & (_OP_LUT[c1] != 255) & (c2 == 32)
        rec = (is_i | is_d) & (lens >= 3)
        banner = (lens >= 2) & (c0 == c1) & ((c0 == 61) | (c0 == 45) | (c0 == 42))
        blank = lens == 0
        unknown = ~(rec | banner | blank)

        ri = np.flatnonzero(rec)
        rs, re = starts[ri], ends[ri]
        # The comma is the last one within the final _SIZE_DIGITS + 1 bytes of the line; a
        # comma further left lands in the address field and fails the hex check.
        ls = np.full(len(ri), -1, np.int64)
        todo = np.arange(len(ri))
        for k in range(_SIZE_DIGITS + 1):
            hit = pb[re[todo] + (_PAD - 1 - k)] == 44
            ls[todo[hit]] = k
            todo = todo[~hit]
            if not len(todo):
                break
        comma = re - ls - 1
        la = comma - (rs + 3)
        shape_ok = (ls >= 1) & (la >= 1) & (la <= _ADDR_DIGITS)
        comma = np.where(shape_ok, comma, rs + 4)
        la = np.where(shape_ok, la, 1)
        ls = np.where(shape_ok, ls, 1)

        # Address: the 16 bytes ending at the comma, right-aligned, read as two unaligned
        # u64 per line; digits left of the field are masked off.
        u64 = np.ndarray((len(pb) - 7,), "<u8", pb, strides=(1,))
        at = comma + (_PAD - _ADDR_DIGITS)
        raw = np.empty((len(ri), 2), np.uint64)
        raw[:, 0] = u64[at]
        raw[:, 1] = u64[at + 8]
        b = raw.view(np.uint8)
        bad_byte = ~(((b - np.uint8(48)) < 10) | (((b | np.uint8(32)) - np.uint8(97)) < 6))
        val = (b & np.uint8(15)) + (b >> np.uint8(6)) * np.uint8(9)     # '0'-'9', 'a'/'A'-'f'
        w = bad_byte.view(np.uint8).view("<u8")
        ones = np.uint64(2**64 - 1)
        m1 = ones << (8 * (8 - np.minimum(la, 8))).astype(np.uint64)
        m0 = np.where(la > 8, ones << (8 * (16 - np.maximum(la, 9))).astype(np.uint64),
                      np.uint64(0))
        hex_ok = ((w[:, 0] & m0) | (w[:, 1] & m1)) == 0
        packed = np.ascontiguousarray((val[:, 0::2] << 4) | val[:, 1::2])
        addr = packed.view(">u8").ravel().astype(np.uint64)
        addr &= np.where(la >= _ADDR_DIGITS, ones,
                         (np.uint64(1) << (4 * np.minimum(la, 15)).astype(np.uint64))
                         - np.uint64(1))

        # Size: up to 4 digits in one unaligned u32 per line; longer fields (never from
        # lackey) are handled one by one.
        u32 = np.ndarray((len(pb) - 3,), "<u4", pb, strides=(1,))
        sb = (u32[comma + (1 + _PAD - 4) + np.minimum(ls, 4)].view(np.uint8)
              - np.uint8(48)).view("<u4")
        sb &= np.uint32(2**32 - 1) << (8 * (4 - np.minimum(ls, 4))).astype(np.uint32)
        dec_ok = (((sb + np.uint32(0x76767676)) | sb) & np.uint32(0x80808080)) == 0
        v = sb.astype(np.int64)
        size = (v & 255) * 1000 + (v >> 8 & 255) * 100 + (v >> 16 & 255) * 10 + (v >> 24)
        for k in np.flatnonzero(ls > 4):
            field = bytes(data[comma[k] + 1:re[k]])
            dec_ok[k] = field.isdigit()
            size[k] = int(field) if dec_ok[k] else 0
        size_ok = (size >= 1) & (size <= MAX_ACCESS_SIZE)
        wrap = addr > ones - (np.maximum(size, 1) - 1).astype(np.uint64)
        good = shape_ok & hex_ok & dec_ok & size_ok & ~wrap

        if not good.all() or unknown.any():
            bad = np.union1d(np.flatnonzero(unknown), ri[~good])
            if not self.lenient:
                k = int(bad[0])
                line = data[starts[k]:ends[k]]
                raise TraceError(f"line {self.lines + k + 1}: {_diagnose(bytes(line))}")
            if self.first_skipped is None:
                k = int(bad[0])
                self.first_skipped = (self.lines + k + 1,
                                      data[starts[k]:ends[k]].decode("utf-8", "replace"))
            self.skipped += len(bad)

        bi = np.flatnonzero(banner)
        self.banner_lines += len(bi)
        for k in bi[-self.banners.maxlen:]:
            self.banners.append(data[starts[k]:ends[k]].decode("utf-8", "replace"))
        self.lines += nlines
        op = np.where(is_i[ri], np.uint8(_OP_I), _OP_LUT[c1[ri]])
        return _Records(op[good], addr[good], size[good])


# --------------------------------------------------------------------------------------------
# Records -> slices


def _aggregate(sl: np.ndarray, pages: np.ndarray, reads: np.ndarray, writes: np.ndarray):
    """Sum ``reads``/``writes`` per distinct (slice, page), sorted by slice then page."""
    if len(pages) == 0:
        return sl, pages, reads, writes
    page_bits = int(pages.max()).bit_length()
    slice_bits = int(sl.max()).bit_length()
    if page_bits + slice_bits <= 63:
        key = (sl << page_bits) | pages
        order = np.argsort(key, kind="stable")
        key = key[order]
    else:
        order = np.lexsort((pages, sl))
        key = None
    s, p, r, w = sl[order], pages[order], reads[order], writes[order]
    if key is not None:
        new = np.empty(len(key), bool)
        new[0] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
    else:
        new = np.empty(len(p), bool)
        new[0] = True
        new[1:] = (p[1:] != p[:-1]) | (s[1:] != s[:-1])
    idx = np.flatnonzero(new)
    return s[idx], p[idx], np.add.reduceat(r, idx), np.add.reduceat(w, idx)


class _Slicer:
    """Cuts a stream of records into slices and hands complete slices to a writer."""

    def __init__(self, writer: "_Writer", *, page_shift: int, clock: str, slice_length: int,
                 fetches: bool):
        self.writer = writer
        self.shift = page_shift
        self.by_instr = clock == "instructions"
        self.n = slice_length
        self.fetches = fetches
        self.events = 0
        self.cur = 0            # index of the pending (not yet emitted) slice
        self.seen = False
        self.pend = (np.empty(0, np.int64),) * 3
        self.pend_acc = 0
        self.pend_ins = 0
        self.counts = np.zeros(4, np.int64)      # I, L, S, M lines

    def add(self, r: _Records):
        if len(r.op) == 0:
            return
        self.seen = True
        op = r.op
        self.counts += np.bincount(op, minlength=4)
        is_i = op == _OP_I
        touch = np.ones(len(op), bool) if self.fetches else ~is_i
        event = is_i if self.by_instr else touch
        cnt = self.events + np.cumsum(event, dtype=np.int64)
        self.events = int(cnt[-1])
        rel = np.maximum(cnt - 1, 0) // self.n - self.cur
        last = int(rel[-1])

        t = np.flatnonzero(touch)
        tr = rel[t]
        acc = np.bincount(tr, minlength=last + 1)
        top = op[t]
        addr = r.addr[t]
        first = (addr >> np.uint64(self.shift)).astype(np.int64)
        lastp = ((addr + (r.size[t] - 1).astype(np.uint64)) >> np.uint64(self.shift)) \
            .astype(np.int64)
        rd = ((top == _OP_L) | (top == _OP_M) | (top == _OP_I)).astype(np.int64)
        wr = ((top == _OP_S) | (top == _OP_M)).astype(np.int64)
        span = lastp - first + 1
        if len(span) and span.max() > 1:
            k = np.repeat(np.arange(len(span)), span)
            base = np.cumsum(span) - span
            pages = first[k] + (np.arange(len(k)) - base[k])
            tr, rd, wr = tr[k], rd[k], wr[k]
        else:
            pages = first
        pp, prd, pwr = self.pend
        s, p, rr, ww = _aggregate(
            np.concatenate([np.zeros(len(pp), np.int64), tr]), np.concatenate([pp, pages]),
            np.concatenate([prd, rd]), np.concatenate([pwr, wr]))

        ins = np.bincount(rel[is_i], minlength=last + 1)
        acc[0] += self.pend_acc
        ins[0] += self.pend_ins
        if last > 0:
            done = int(np.searchsorted(s, last))
            npg = np.bincount(s[:done], minlength=last)
            self.writer.add(npg, acc[:last], ins[:last], p[:done], rr[:done], ww[:done])
            s, p, rr, ww = s[done:], p[done:], rr[done:], ww[done:]
        self.pend = (p, rr, ww)
        self.pend_acc = int(acc[last])
        self.pend_ins = int(ins[last])
        self.cur += last

    def finish(self):
        if self.seen:
            p, rr, ww = self.pend
            self.writer.add(np.array([len(p)]), np.array([self.pend_acc]),
                            np.array([self.pend_ins]), p, rr, ww)
            self.cur += 1
            self.pend = (np.empty(0, np.int64),) * 3


# --------------------------------------------------------------------------------------------
# Binary format


def _shuffle(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.itemsize).T).tobytes()


def _unshuffle(b: memoryview, n: int, dtype) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(b, np.uint8, n * size).reshape(size, n)
    return np.ascontiguousarray(planes.T).view(dtype).ravel()


def _zigzag(d: np.ndarray) -> np.ndarray:
    return ((d << 1) ^ (d >> 63)).view(np.uint64)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)


def _check_u32(name: str, a: np.ndarray):
    if len(a) and int(a.max()) > 0xFFFFFFFF:
        raise TraceError(f"{name} {int(a.max())} does not fit the format (u32); "
                         f"use a shorter slice")


class _Writer:
    """Writes the header, blocks of slices and the end record to a binary file object."""

    def __init__(self, f: BinaryIO, *, page_shift: int, clock: str, slice_length: int,
                 fetches: bool):
        self.f = f
        self.bytes = 0
        self.blocks = 0
        self.slices = 0
        self.entries = 0
        self.reads = 0
        self.writes = 0
        self._parts: list[tuple] = []
        self._pending_entries = 0
        self._pending_slices = 0
        self._write(_HEADER.pack(MAGIC, VERSION, FLAG_FETCHES if fetches else 0, page_shift,
                                 CLOCKS.index(clock), 0, slice_length, 0))

    def _write(self, b: bytes):
        self.f.write(b)
        self.bytes += len(b)

    def add(self, npages, acc, ins, pages, reads, writes):
        self._parts.append((npages, acc, ins, pages, reads, writes))
        self._pending_entries += len(pages)
        self._pending_slices += len(npages)
        if self._pending_entries >= _BLOCK_ENTRIES or self._pending_slices >= _BLOCK_SLICES:
            self.flush()

    def flush(self):
        if not self._parts:
            return
        npages, acc, ins, pages, reads, writes = (np.concatenate(x) for x in zip(*self._parts))
        self._parts = []
        self._pending_entries = self._pending_slices = 0
        _check_u32("read count", reads)
        _check_u32("write count", writes)
        deltas = np.diff(pages.astype(np.int64), prepend=np.int64(0))
        raw = b"".join([_shuffle(npages.astype("<u4")), _shuffle(acc.astype("<u8")),
                        _shuffle(ins.astype("<u8")), _shuffle(_zigzag(deltas)),
                        _shuffle(reads.astype("<u4")), _shuffle(writes.astype("<u4"))])
        comp = zlib.compress(raw, _ZLIB_LEVEL)
        self._write(_BLOCK.pack(_BLOCK_TAG, len(npages), len(pages), len(raw), len(comp),
                                zlib.crc32(comp)))
        self._write(comp)
        self.blocks += 1
        self.slices += len(npages)
        self.entries += len(pages)
        self.reads += int(reads.sum())
        self.writes += int(writes.sum())

    def close(self, counts: np.ndarray, accesses: int, skipped: int):
        self.flush()
        i, ld, st, md = (int(x) for x in counts)
        end = _END.pack(_END_TAG, self.blocks, self.slices, i, ld, st, md, accesses,
                        self.entries, self.reads, self.writes, min(skipped, 0xFFFFFFFF))
        self._write(end + _END_CRC.pack(zlib.crc32(end)))


@dataclass(frozen=True)
class SliceCounts:
    """One time slice with its per-page counts.

    Attributes
    ----------
    index : int
        Slice number, from 0.
    pages : numpy.ndarray
        Distinct page numbers touched (int64, ascending); page = address >> page_shift.
    reads, writes : numpy.ndarray
        Read and write touches of each page (int64, same length as ``pages``); a page in
        ``pages`` has at least one of them non-zero.
    accesses : int
        Accesses in the slice (see the module docstring for which records count).
    instructions : int
        Instruction fetches (``I`` lines) in the slice.
    """

    index: int
    pages: np.ndarray
    reads: np.ndarray
    writes: np.ndarray
    accesses: int
    instructions: int

    @property
    def slice(self) -> Slice:
        """The :class:`~model.workload.Slice`: pages, and whether each was written."""
        return Slice(self.pages, self.writes > 0)


class TraceReader:
    """A Thermocline trace file (``.tct``), checked on opening, read block by block.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Its header and end record are checked here: a wrong magic number, an
        unsupported version or a missing end record (truncated file) raises
        :class:`TraceError`. Blocks are checked (CRC, lengths, totals) while iterating.

    Attributes
    ----------
    version, page_shift, page_size, clock, slice_length, fetches
        From the header (see the module docstring).
    totals : dict
        The end record: ``slices``, ``instructions``, ``loads``, ``stores``, ``modifies``,
        ``accesses``, ``entries``, ``read_touches``, ``write_touches``, ``skipped``,
        ``blocks``.
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(_HEADER.size)
                if len(head) < _HEADER.size or head[:8] != MAGIC:
                    if len(head) < len(MAGIC) and MAGIC.startswith(head):
                        raise TraceError(f"{self.path}: truncated header ({size} bytes)")
                    hint = ""
                    if head and all(32 <= c < 127 or c in b"\t\r\n" for c in head):
                        hint = ("; it looks like text: convert lackey output with "
                                "`thermocline trace convert`")
                    raise TraceError(f"{self.path}: not a Thermocline trace (it starts with "
                                     f"{head[:8]!r}, not {MAGIC!r}){hint}")
                (_, self.version, flags, self.page_shift, clock, _, self.slice_length,
                 _) = _HEADER.unpack(head)
                if self.version != VERSION:
                    raise TraceError(f"{self.path}: trace format version {self.version} is "
                                     f"not supported (this reader reads version {VERSION})")
                if not MIN_PAGE_SHIFT <= self.page_shift <= MAX_PAGE_SHIFT \
                        or clock >= len(CLOCKS) or not 1 <= self.slice_length \
                        <= MAX_SLICE_LENGTH or flags & ~FLAG_FETCHES:
                    raise TraceError(f"{self.path}: corrupt header")
                if size < _HEADER.size + _END_SIZE:
                    raise TraceError(f"{self.path}: truncated: no end record ({size} bytes); "
                                     f"was the conversion interrupted?")
                f.seek(size - _END_SIZE)
                tail = f.read(_END_SIZE)
        except OSError as e:
            raise TraceError(f"cannot read trace {self.path}: {e.strerror or e}") from None
        end, (crc,) = tail[:_END.size], _END_CRC.unpack(tail[_END.size:])
        if end[:4] != _END_TAG or zlib.crc32(end) != crc:
            raise TraceError(f"{self.path}: truncated or damaged: no valid end record; "
                             f"was the conversion interrupted?")
        fields = _END.unpack(end)[1:]
        names = ("blocks", "slices", "instructions", "loads", "stores", "modifies",
                 "accesses", "entries", "read_touches", "write_touches", "skipped")
        self.totals = dict(zip(names, (int(x) for x in fields)))
        self.clock = CLOCKS[clock]
        self.fetches = bool(flags & FLAG_FETCHES)
        self.page_size = 1 << self.page_shift
        self._end_offset = size - _END_SIZE

    def __len__(self) -> int:
        return self.totals["slices"]

    def __repr__(self) -> str:
        return (f"TraceReader({str(self.path)!r}, slices={len(self)}, "
                f"page_size={self.page_size}, clock={self.clock!r}, "
                f"slice_length={self.slice_length})")

    def blocks(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Decoded blocks: ``(npages, accesses, instructions, pages, reads, writes)``.

        ``npages`` etc. are per slice of the block; ``pages``, ``reads``, ``writes`` are the
        block's entries, slice after slice (int64 arrays).
        """
        seen = collections.Counter()
        with open(self.path, "rb") as f:
            f.seek(_HEADER.size)
            pos = _HEADER.size
            while pos < self._end_offset:
                head = f.read(_BLOCK.size)
                if len(head) < _BLOCK.size or pos + _BLOCK.size > self._end_offset:
                    raise TraceError(f"{self.path}: truncated block at byte {pos}")
                tag, ns, ne, raw_len, length, crc = _BLOCK.unpack(head)
                if tag != _BLOCK_TAG or raw_len != 20 * ns + 16 * ne or ns == 0:
                    raise TraceError(f"{self.path}: damaged block header at byte {pos}")
                comp = f.read(length)
                if len(comp) < length or pos + _BLOCK.size + length > self._end_offset:
                    raise TraceError(f"{self.path}: truncated block at byte {pos}")
                if zlib.crc32(comp) != crc:
                    raise TraceError(f"{self.path}: checksum mismatch in block at byte {pos}")
                try:
                    raw = memoryview(zlib.decompress(comp))
                except zlib.error as e:
                    raise TraceError(f"{self.path}: block at byte {pos}: {e}") from None
                if len(raw) != raw_len:
                    raise TraceError(f"{self.path}: block at byte {pos} has the wrong length")
                o = 0
                out = []
                for n, dt in ((ns, "<u4"), (ns, "<u8"), (ns, "<u8"), (ne, "<u8"), (ne, "<u4"),
                              (ne, "<u4")):
                    size = n * np.dtype(dt).itemsize
                    out.append(_unshuffle(raw[o:o + size], n, dt))
                    o += size
                npages, acc, ins, z, reads, writes = out
                pages = np.cumsum(_unzigzag(z))
                npages = npages.astype(np.int64)
                if int(npages.sum()) != ne:
                    raise TraceError(f"{self.path}: block at byte {pos}: slice sizes do not "
                                     f"add up to its entries")
                seen.update(blocks=1, slices=ns, entries=ne, read_touches=int(reads.sum()),
                            write_touches=int(writes.sum()))
                yield (npages, acc.astype(np.int64), ins.astype(np.int64), pages,
                       reads.astype(np.int64), writes.astype(np.int64))
                pos += _BLOCK.size + length
        for k, v in seen.items():
            if self.totals[k] != v:
                raise TraceError(f"{self.path}: end record says {self.totals[k]} {k}, "
                                 f"the blocks hold {v}")
        if not seen and self.totals["slices"]:
            raise TraceError(f"{self.path}: end record says {self.totals['slices']} slices, "
                             f"the file holds none")

    def counts(self) -> Iterator[SliceCounts]:
        """Every slice with its per-page read and write counts, in order."""
        index = 0
        for npages, acc, ins, pages, reads, writes in self.blocks():
            bounds = np.concatenate([[0], np.cumsum(npages)])
            for k in range(len(npages)):
                a, b = bounds[k], bounds[k + 1]
                yield SliceCounts(index, pages[a:b], reads[a:b], writes[a:b], int(acc[k]),
                                  int(ins[k]))
                index += 1

    def __iter__(self) -> Iterator[Slice]:
        """Every slice as a :class:`~model.workload.Slice` (pages ascending, any write)."""
        for c in self.counts():
            yield c.slice

    def region_pages(self) -> int:
        """Pages per 2 MiB region at this page size (at least 1)."""
        return max(1, (2 << 20) >> self.page_shift)

    def footprint(self) -> np.ndarray:
        """Distinct pages touched anywhere in the trace (int64, ascending)."""
        seen = np.empty(0, np.int64)
        for _, _, _, pages, _, _ in self.blocks():
            seen = np.union1d(seen, pages)
        return seen

    def compact_slices(self) -> tuple[int, Iterator[Slice]]:
        """The slices renumbered into a dense range, keeping the 2 MiB region structure.

        Each 2 MiB-aligned region that the trace touches is given the next region index in
        address order; a page keeps its offset inside its region. Returns ``(npages,
        slices)`` where every page of every slice lies in ``range(npages)`` -- the form the
        synthetic workloads of :mod:`model.workload` have.
        """
        rp = self.region_pages()
        regions = np.unique(self.footprint() // rp)

        def gen():
            for c in self.counts():
                pages = np.searchsorted(regions, c.pages // rp) * rp + c.pages % rp
                yield Slice(pages.astype(np.int64), c.writes > 0)

        return len(regions) * rp, gen()


def read_slices(path) -> Iterator[Slice]:
    """The slices of the trace file at ``path`` (see :class:`TraceReader`)."""
    return iter(TraceReader(path))


# --------------------------------------------------------------------------------------------
# Conversion


def _check_options(slice_length, clock, page_size) -> int:
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if not isinstance(slice_length, (int, np.integer)) or not 1 <= slice_length \
            <= MAX_SLICE_LENGTH:
        raise ValueError(f"slice length must be an integer from 1 to {MAX_SLICE_LENGTH}, "
                         f"got {slice_length!r}")
    if not isinstance(page_size, (int, np.integer)) or page_size < 1 \
            or page_size & (page_size - 1) \
            or not MIN_PAGE_SHIFT <= int(page_size).bit_length() - 1 <= MAX_PAGE_SHIFT:
        raise ValueError(f"page size must be a power of two from {1 << MIN_PAGE_SHIFT} to "
                         f"{1 << MAX_PAGE_SHIFT}, got {page_size!r}")
    return int(page_size).bit_length() - 1


class _Converter:
    """Feeds byte chunks of lackey text through the parser and slicer into a writer."""

    def __init__(self, f: BinaryIO, *, slice_length: int, clock: str, fetches: bool,
                 page_size: int, lenient: bool, chunk_size: int):
        shift = _check_options(slice_length, clock, page_size)
        self.writer = _Writer(f, page_shift=shift, clock=clock, slice_length=slice_length,
                              fetches=fetches)
        self.parser = _LineParser(lenient=lenient)
        self.slicer = _Slicer(self.writer, page_shift=shift, clock=clock,
                              slice_length=slice_length, fetches=fetches)
        self.fetches = fetches
        self.chunk = max(int(chunk_size), 1)
        self.buf = bytearray()
        self.text_bytes = 0
        self.first = True

    @property
    def accesses(self) -> int:
        c = self.slicer.counts
        return int(c[1:].sum() + (c[0] if self.fetches else 0))

    def feed(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if self.first and data:
            self.first = False
            if bytes(data[:len(MAGIC)]) == MAGIC[:len(data)] and len(data) >= 4:
                raise TraceError("line 1: this is already a Thermocline trace (.tct), not "
                                 "lackey text; use `thermocline trace info` on it")
        self.text_bytes += len(data)
        self.buf += data
        while len(self.buf) >= self.chunk:
            cut = self.buf.rfind(b"\n", 0, self.chunk)
            if cut < 0:
                cut = self.buf.find(b"\n", self.chunk)
            if cut < 0:
                if len(self.buf) > _MAX_LINE:
                    raise TraceError(f"line {self.parser.lines + 1}: longer than {_MAX_LINE} "
                                     f"bytes: not lackey text")
                break
            self._parse(bytes(self.buf[:cut + 1]))
            del self.buf[:cut + 1]

    def _parse(self, data: bytes):
        self.slicer.add(self.parser.parse(data))

    def drain(self):
        """Parse the text held back (the last, possibly incomplete, line)."""
        if self.buf:
            self._parse(bytes(self.buf))
            self.buf = bytearray()

    def finish(self) -> dict:
        self.drain()
        self.slicer.finish()
        self.writer.close(self.slicer.counts, self.accesses, self.parser.skipped)
        c = self.slicer.counts
        p = self.parser
        return {"lines": p.lines, "banner_lines": p.banner_lines, "skipped_lines": p.skipped,
                "first_skipped": p.first_skipped, "text_bytes": self.text_bytes,
                "instructions": int(c[0]), "loads": int(c[1]), "stores": int(c[2]),
                "modifies": int(c[3]), "accesses": self.accesses,
                "slices": self.writer.slices, "entries": self.writer.entries,
                "read_touches": self.writer.reads, "write_touches": self.writer.writes,
                "bytes": self.writer.bytes}


def _open_text(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, raw file) for a plain, gzip, xz or bzip2 file (by content)."""
    raw = open(path, "rb")
    head = raw.read(6)
    raw.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw), raw
    if head == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw), raw
    if head[:3] == b"BZh":
        return bz2.BZ2File(raw), raw
    return raw, raw


def _chunks(source, chunk: int, raw_box: list) -> Iterator[bytes | str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            stream, raw = _open_text(path)
        except OSError as e:
            raise TraceError(f"cannot read {path}: {e.strerror or e}") from None
        raw_box.append((raw, os.fstat(raw.fileno()).st_size))
        with raw, stream:
            yield from _read_all(stream, chunk, str(path))
    elif hasattr(source, "read"):
        yield from _read_all(source, chunk, getattr(source, "name", "input"))
    else:
        for piece in source:
            if not isinstance(piece, (bytes, bytearray, memoryview, str)):
                raise TypeError(f"lackey text pieces must be bytes or str, got "
                                f"{type(piece).__name__}")
            yield bytes(piece) if isinstance(piece, memoryview) else piece


def _read_all(stream, chunk: int, name) -> Iterator[bytes | str]:
    while True:
        try:
            data = stream.read(chunk)
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as e:
            raise TraceError(f"{name}: compressed input is truncated or corrupt ({e})") \
                from None
        if not data:
            return
        yield data


def _open_out(out) -> tuple[BinaryIO, Callable[[bool], None]]:
    if hasattr(out, "write"):
        return out, lambda ok: None
    path = Path(out)
    part = path.with_name(path.name + ".part")
    try:
        f = open(part, "wb")
    except OSError as e:
        raise TraceError(f"cannot write {path}: {e.strerror or e}") from None

    def done(ok: bool):
        f.close()
        if ok:
            os.replace(part, path)
        else:
            part.unlink(missing_ok=True)

    return f, done


def convert(source, out, *, slice_length: int = DEFAULT_SLICE_LENGTH, clock: str = "accesses",
            fetches: bool = False, page_size: int = 4096, lenient: bool = False,
            chunk_size: int = _CHUNK,
            progress: Callable[[int, int | None, int], None] | None = None) -> dict:
    """Convert lackey text to a trace file, streaming: the text is never held whole.

    Parameters
    ----------
    source : str, os.PathLike, binary or text file object, or iterable of bytes or str
        A path names a saved text, plain or compressed with gzip, xz or bzip2 (recognized by
        content, not by name). A file object is read in chunks. The pieces of an iterable are
        concatenated as they come (lines must keep their newlines, as file iteration gives).
    out : str, os.PathLike or binary file object
        The trace file. A path is written as ``OUT.part`` and renamed when complete; on an
        error the partial file is removed.
    slice_length : int
        Clock events per time slice, 1 to 2**30.
    clock : {"accesses", "instructions"}
        What a slice counts (module docstring, *Time slices*).
    fetches : bool
        Record instruction fetches as read touches of code pages (and as accesses).
    page_size : int
        Page size in bytes, a power of two from 64 to 1 GiB.
    lenient : bool
        Skip malformed lines (counted in the result) instead of raising.
    chunk_size : int
        Bytes of text parsed at once; bounds the memory used (about 20 bytes per byte).
    progress : callable, optional
        Called after each chunk as ``progress(done, total, accesses)``: bytes of the file
        read so far and its size when ``source`` is a path (compressed bytes for compressed
        files), else bytes of text consumed and ``None``.

    Returns
    -------
    dict
        ``lines``, ``banner_lines``, ``skipped_lines``, ``first_skipped`` (``(line, text)``
        or ``None``), ``text_bytes``, ``instructions``, ``loads``, ``stores``, ``modifies``,
        ``accesses``, ``slices``, ``entries``, ``read_touches``, ``write_touches``,
        ``bytes`` (trace size), ``seconds``, ``accesses_per_s``.

    Raises
    ------
    TraceError
        Malformed text (``line N: ...``), an unreadable or truncated input, an unwritable
        output.
    ValueError
        Bad options.
    """
    _check_options(slice_length, clock, page_size)
    t0 = time.perf_counter()
    f, done = _open_out(out)
    ok = False
    try:
        conv = _Converter(f, slice_length=slice_length, clock=clock, fetches=fetches,
                          page_size=page_size, lenient=lenient, chunk_size=chunk_size)
        raw_box: list = []
        for piece in _chunks(source, chunk_size, raw_box):
            conv.feed(piece)
            if progress is not None:
                if raw_box:
                    raw, total = raw_box[0]
                    progress(raw.tell() if not raw.closed else total, total, conv.accesses)
                else:
                    progress(conv.text_bytes, None, conv.accesses)
        summary = conv.finish()
        ok = True
    finally:
        done(ok)
    summary["seconds"] = time.perf_counter() - t0
    summary["accesses_per_s"] = summary["accesses"] / max(summary["seconds"], 1e-9)
    return summary


def _valgrind(valgrind: str | None) -> str:
    exe = shutil.which(valgrind or "valgrind")
    if exe is None:
        raise TraceError(f"valgrind not found ({valgrind or 'valgrind'!r} is not on PATH): "
                         f"install it (Debian/Ubuntu: apt-get install valgrind) to record "
                         f"traces")
    return exe


def _die_with_parent():
    """In the child before exec: be killed if the recording process dies (Linux)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def record(argv: list[str], out, *, slice_length: int = DEFAULT_SLICE_LENGTH,
           clock: str = "accesses", fetches: bool = False, page_size: int = 4096,
           valgrind: str | None = None, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
           env: dict | None = None, cwd=None,
           progress: Callable[[int, int], None] | None = None) -> dict:
    """Run ``argv`` under valgrind's lackey and convert its trace as it is produced.

    Lackey writes to a pipe of its own (``--log-fd``), so the program's standard output and
    error never mix with the trace; no raw text is stored.

    Parameters
    ----------
    argv : list of str
        The program and its arguments (the program is looked up on PATH).
    out : str or os.PathLike
        The trace file (written as ``OUT.part``, renamed when complete).
    slice_length, clock, fetches, page_size
        As for :func:`convert`.
    valgrind : str, optional
        The valgrind executable (default: ``valgrind`` on PATH).
    stdin, stdout, stderr, env, cwd
        Passed to :class:`subprocess.Popen` for the program (stdin defaults to
        ``/dev/null``; stdout and stderr to this process's).
    progress : callable, optional
        Called as ``progress(accesses, slices)`` after each chunk of trace.

    Returns
    -------
    dict
        The :func:`convert` summary plus ``argv``, ``exit_status`` (the program's, as valgrind
        returns it), ``valgrind`` and ``messages`` (valgrind's last ``==pid==`` lines).

    Raises
    ------
    TraceError
        valgrind is missing, the program cannot be found or started, or lackey's output
        cannot be converted. A program that runs and exits with a non-zero status is not an
        error: its status is in the result.
    """
    _check_options(slice_length, clock, page_size)
    argv = [str(a) for a in argv]
    if not argv or not argv[0]:
        raise TraceError("no program given to record")
    exe = _valgrind(valgrind)
    prog = argv[0]
    if os.sep in prog:
        if not os.path.isfile(prog) or not os.access(prog, os.X_OK):
            raise TraceError(f"program {prog!r} does not exist or is not executable")
    elif shutil.which(prog, path=(env or os.environ).get("PATH")) is None:
        raise TraceError(f"program {prog!r} not found on PATH")
    t0 = time.perf_counter()
    f, done = _open_out(out)
    ok = False
    rfd, wfd = os.pipe()
    proc = None
    try:
        try:
            fcntl.fcntl(rfd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
        except OSError:
            pass
        conv = _Converter(f, slice_length=slice_length, clock=clock, fetches=fetches,
                          page_size=page_size, lenient=False, chunk_size=_CHUNK)
        cmd = [exe, "--tool=lackey", "--trace-mem=yes", f"--log-fd={wfd}", "--", *argv]
        try:
            proc = subprocess.Popen(cmd, pass_fds=(wfd,), stdin=stdin, stdout=stdout,
                                    stderr=stderr, env=env, cwd=cwd,
                                    preexec_fn=_die_with_parent)
        except OSError as e:
            raise TraceError(f"cannot start valgrind ({exe}): {e.strerror or e}") from None
        os.close(wfd)
        wfd = -1
        with io.FileIO(rfd, "rb", closefd=True) as pipe:
            rfd = -1
            pending = bytearray()
            while True:
                data = pipe.read(_PIPE_READ)
                if data:
                    pending += data
                    if len(data) < _PIPE_READ // 4:
                        time.sleep(_PIPE_NAP)     # let lackey's many small writes pile up
                if pending and (not data or len(pending) >= _CHUNK):
                    conv.feed(bytes(pending))
                    pending.clear()
                    if progress is not None:
                        progress(conv.accesses, conv.slicer.cur)
                if not data:
                    break
        status = proc.wait()
        conv.drain()
        messages = list(conv.parser.banners)
        if conv.parser.lines - conv.parser.banner_lines == 0:
            why = {126: "cannot execute it", 127: "not found"}.get(status, f"status {status}")
            raise TraceError(f"valgrind did not run {prog!r} ({why}); its messages: "
                             + (" | ".join(m for m in messages[-5:]) or "none on the log fd"))
        summary = conv.finish()
        ok = True
    finally:
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        done(ok)
    summary.update(argv=argv, exit_status=status, valgrind=exe, messages=messages,
                   seconds=time.perf_counter() - t0)
    summary["accesses_per_s"] = summary["accesses"] / max(summary["seconds"], 1e-9)
    return summary


# --------------------------------------------------------------------------------------------
# Summary


def info(path, *, top: int = 10) -> dict:
    """Summary of a trace file, read in one pass.

    Returns
    -------
    dict
        ``path``, ``file_bytes``, ``version``, ``page_size``, ``clock``, ``slice_length``,
        ``fetches``; the end record's totals (``slices``, ``instructions``, ``loads``,
        ``stores``, ``modifies``, ``accesses``, ``entries``, ``read_touches``,
        ``write_touches``, ``skipped``, ``blocks``); ``distinct_pages`` and
        ``footprint_bytes`` over the whole trace, ``regions_2m`` (2 MiB regions touched),
        ``written_pages``; ``pages_per_slice`` (min, mean, max); ``bytes_per_entry``;
        ``top_pages``: the ``top`` pages touched in the most slices, each a dict with
        ``page``, ``address`` (hex), ``slices``, ``reads``, ``writes``.
    """
    r = TraceReader(path)
    agg_p = np.empty(0, np.int64)
    agg = np.empty((0, 3), np.int64)
    per_slice = []
    for npages, _, _, pages, reads, writes in r.blocks():
        per_slice.append(npages)
        p = np.concatenate([agg_p, pages])
        v = np.concatenate([agg, np.stack([np.ones_like(pages), reads, writes], axis=1)])
        order = np.argsort(p, kind="stable")
        p, v = p[order], v[order]
        if len(p):
            idx = np.flatnonzero(np.concatenate([[True], p[1:] != p[:-1]]))
            agg_p, agg = p[idx], np.add.reduceat(v, idx, axis=0)
    per = np.concatenate(per_slice) if per_slice else np.zeros(0, np.int64)
    rank = np.lexsort((agg_p, -(agg[:, 1] + agg[:, 2]), -agg[:, 0]))[:top]
    size = r.path.stat().st_size
    return {
        "path": str(r.path), "file_bytes": size, "version": r.version,
        "page_size": r.page_size, "clock": r.clock, "slice_length": r.slice_length,
        "fetches": r.fetches, **r.totals,
        "distinct_pages": len(agg_p), "footprint_bytes": len(agg_p) * r.page_size,
        "regions_2m": len(np.unique(agg_p // r.region_pages())),
        "written_pages": int((agg[:, 2] > 0).sum()),
        "pages_per_slice": ((int(per.min()), float(per.mean()), int(per.max()))
                            if len(per) else (0, 0.0, 0)),
        "bytes_per_entry": size / max(r.totals["entries"], 1),
        "top_pages": [{"page": int(agg_p[i]), "address": f"{int(agg_p[i]) << r.page_shift:#x}",
                       "slices": int(agg[i, 0]), "reads": int(agg[i, 1]),
                       "writes": int(agg[i, 2])} for i in rank],
    }


# --------------------------------------------------------------------------------------------
# Bundled traces


_TRACES = Path(__file__).parent / "traces"
DEFAULT_TRACE = "python-dict"


def bundled_traces() -> list[str]:
    """Names of the traces shipped in ``model/traces/`` (without the suffix)."""
    return sorted(p.stem for p in _TRACES.glob(f"*{SUFFIX}"))


def bundled_trace(name: str | None = None) -> Path:
    """Path of a bundled trace: ``name`` with or without ``.tct``; the default if ``None``.

    Raises
    ------
    ValueError
        No such bundled trace (the message lists those there are).
    """
    name = DEFAULT_TRACE if name is None else str(name)
    if name.endswith(SUFFIX):
        name = name[:-len(SUFFIX)]
    path = _TRACES / f"{name}{SUFFIX}"
    if not path.is_file():
        raise ValueError(f"no bundled trace {name!r}; there are {bundled_traces()}")
    return path


# --------------------------------------------------------------------------------------------
# Speed


def synthetic_lackey(lines: int, *, seed: int = 0) -> bytes:
    """Lackey-like text of about ``lines`` lines, for measuring the converter.

    A mix resembling real programs: about 55 % instruction fetches walking a few code pages,
    and data accesses split between a hot stack, a Zipf-popular heap of 4096 pages and a
    sequential stream; 2-, 4-, 8- and 16-byte accesses, a few spanning two pages; loads,
    stores and modifies about 6:3:1; valgrind banner lines at both ends.
    Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    n = max(int(lines), 1)
    kind = rng.choice(4, n, p=[0.55, 0.2, 0.15, 0.1])       # I, stack, heap, stream
    dop = rng.choice(np.array([b"L", b"S", b"M"]).view(np.uint8), n, p=[0.6, 0.3, 0.1])
    size = rng.choice(np.array([2, 4, 8, 16]), n, p=[0.1, 0.3, 0.5, 0.1]).astype(np.uint64)
    code = np.uint64(0x0401_0000) + np.cumsum(rng.integers(1, 8, n)).astype(np.uint64) \
        % np.uint64(0x8000)
    stack = np.uint64(0x1F_FEFF_F000) - rng.integers(0, 0x3000, n).astype(np.uint64)
    heap_page = np.minimum(rng.zipf(1.3, n) - 1, 4095).astype(np.uint64)
    heap = np.uint64(0x0500_0000) + (heap_page << np.uint64(12)) \
        + rng.integers(0, 4096, n).astype(np.uint64)
    stream = np.uint64(0x0600_0000) + np.arange(n, dtype=np.uint64) * np.uint64(8)
    addr = np.select([kind == 0, kind == 1, kind == 2], [code, stack, heap], stream)
    size = np.where(kind == 0, np.uint64(3), size)
    width = np.where(addr >= np.uint64(1 << 32), 10, 8)
    nib = (addr[:, None] >> (np.uint64(4) * np.arange(9, -1, -1, dtype=np.uint64))) \
        & np.uint64(15)
    hexd = np.frombuffer(b"0123456789abcdef", np.uint8)[nib.astype(np.intp)]
    row = np.zeros((n, 17), np.uint8)
    row[:, 0] = np.where(kind == 0, ord("I"), ord(" "))
    row[:, 1] = np.where(kind == 0, ord(" "), dop)
    row[:, 2] = ord(" ")
    row[:, 3:13] = hexd
    row[:, 13] = ord(",")
    sz = size.astype(np.intp)
    row[:, 14] = np.where(sz >= 10, ord("0") + sz // 10, ord("0") + sz % 10)
    row[:, 15] = np.where(sz >= 10, ord("0") + sz % 10, 10)
    row[:, 16] = 10
    keep = np.ones((n, 17), bool)
    keep[:, 3:5] = (width == 10)[:, None]
    keep[:, 16] = sz >= 10
    body = row[keep].tobytes()
    head = (b"==4242== Lackey, an example Valgrind tool\n"
            b"==4242== Command: synthetic\n==4242== \n")
    tail = b"==4242== \n==4242== Exit code:       0\n"
    return head + body + tail


def bench_convert(lines: int = 2_000_000, *, repeat: int = 3, seed: int = 0) -> dict:
    """Conversion speed on :func:`synthetic_lackey` text held in memory.

    The text is converted ``repeat`` times into an in-memory file with the default options.

    Returns
    -------
    dict
        ``lines``, ``accesses``, ``text_bytes``, ``trace_bytes``, ``slices``,
        ``best_seconds``, ``best_accesses_per_s``, ``best_lines_per_s``,
        ``median_accesses_per_s``, ``text_mb_per_s`` (best), ``bytes_per_access`` (trace
        size per access) and ``bytes_per_entry``.
    """
    text = synthetic_lackey(lines, seed=seed)
    times = []
    for _ in range(max(int(repeat), 1)):
        sink = io.BytesIO()
        t0 = time.perf_counter()
        s = convert([text[i:i + (1 << 22)] for i in range(0, len(text), 1 << 22)], sink)
        times.append(time.perf_counter() - t0)
    best = min(times)
    med = float(np.median(times))
    return {"lines": s["lines"], "accesses": s["accesses"], "text_bytes": len(text),
            "trace_bytes": s["bytes"], "slices": s["slices"], "best_seconds": best,
            "best_accesses_per_s": s["accesses"] / best,
            "best_lines_per_s": s["lines"] / best,
            "median_accesses_per_s": s["accesses"] / med,
            "text_mb_per_s": len(text) / best / 1e6,
            "bytes_per_access": s["bytes"] / max(s["accesses"], 1),
            "bytes_per_entry": s["bytes"] / max(s["entries"], 1)}
