"""Scanner, classifier and prioritizer RTL (hdl/scanner.py, hdl/prioritizer.py) against the
golden model, on the Amaranth simulator.

A Python AXI4 slave serves a :class:`model.memory.PhysMem` to the design (read latency, random
ready/valid gaps, ``DECERR`` past the end of memory, the poisoned words' response on the beat
that carries them, narrow transfers answered per 8-byte word). After every pass the whole
memory image, every statistic, the candidate list and the cleared-leaf reports are compared
with :meth:`model.scanner.Scanner.scan_pass` run on a copy of the memory taken before the
pass; the snoop tests compare with :meth:`model.scanner.Scanner.iter_pass` replayed with the
interleaving the hardware saw. Every random case names its seed in the failure message.

:func:`measure_throughput` is the benchmark helper (entries per cycle of one pass).
"""

import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from hdl.axi import Burst, Resp
from hdl.prioritizer import CandidateList, lp_step
from hdl.scanner import STAT_NAMES, HostFormat, Scanner, stat_index
from model.memory import PhysMem
from model.pagetable import FrameAllocator, PageTable
from model.prioritizer import LargePageConfig, lp_step as model_lp_step, rank
from model.scanner import ScanConfig, drive
from model.scanner import Scanner as ModelScanner
from thermocline.layouts import EPT_ENTRY, LPCOUNT, X86_ENTRY

from .helpers import scale

SIZES = {1: 1 << 12, 2: 1 << 21, 3: 1 << 30}
FMT = {"ept": HostFormat.EPT, "npt": HostFormat.NPT, "ia32e": HostFormat.IA32E}


def layout(fmt):
    return EPT_ENTRY if fmt == "ept" else X86_ENTRY


def hw_config(cfg: ScanConfig) -> dict:
    """The register values of a model configuration."""
    lp = cfg.large_page
    return {
        "fmt": FMT[cfg.fmt], "levels": cfg.levels, "up": cfg.up, "down": cfg.down,
        "long_every": cfg.long_every, "long_levels": cfg.long_levels,
        "long_need": cfg.long_need, "lp_enable": int(lp.enable), "lp_shift": lp.shift,
        "lp_warmup": lp.warmup, "lp_threshold": lp.threshold, "lp_top_k": lp.top_k,
        "lp_max_nonpresent": lp.max_nonpresent,
    }


# --- AXI slave ----------------------------------------------------------------------------

@dataclass
class Traffic:
    """What the slave saw, by cycle (for the snoop tests' replay)."""

    reads: list = field(default_factory=list)      # (cycle, {word addr: value}) per R beat
    writes: list = field(default_factory=list)     # (aw cycle, [word addr, ...]) per write
    ar: list = field(default_factory=list)         # (cycle, addr, beats, size)


class AxiSlave:
    """AXI4 slave serving ``mem`` to ``axi`` (the design's ``m_axi``).

    Reads: a burst accepted in cycle ``t`` may start its data in cycle ``t + latency``; beat
    data is taken from memory when the beat is first presented. Writes are performed when
    both address and data are in, in address order; the response follows ``b_latency``
    cycles later. ``gaps`` is the probability of a low ``READY``/``VALID`` in any cycle.
    Responses per 8-byte word: ``DECERR`` at or past ``mem.size``, the poisoned response of a
    poisoned word; a beat answers the worst response of the words it carries (a narrow beat
    carries one word).
    """

    def __init__(self, mem: PhysMem, axi, lanes: int, *, latency=1, b_latency=2, gaps=0.0,
                 seed=0, snoop=None, cleared=None, cleared_gaps=0.0):
        self.mem, self.axi, self.lanes = mem, axi, lanes
        self.snoop = snoop
        self.agent = None
        self.cleared_port, self.cleared_gaps = cleared, cleared_gaps
        self.cleared = []                # (base, size) of every reported leaf
        self._driven = {}
        self.latency, self.b_latency, self.gaps = latency, b_latency, gaps
        self.rng = random.Random(seed)
        self.traffic = Traffic()
        self.reset()

    def reset(self):
        self.bursts = deque()        # [ready cycle, addr, beats, size, next beat]
        self.beat = None             # (data, resp, last, words) being presented
        self.aw = deque()            # (cycle, addr)
        self.w = deque()             # (data, strb)
        self.b = deque()             # (ready cycle, resp)
        self.pending_words = set()   # word addresses of writes with address but no data yet

    def _resp(self, words):
        worst = Resp.OKAY
        poisoned = self.mem.poisoned
        for a in words:
            r = Resp.DECERR if a >= self.mem.size else \
                {"SLVERR": Resp.SLVERR, "DECERR": Resp.DECERR}.get(poisoned.get(a), Resp.OKAY)
            if r == Resp.DECERR or (r == Resp.SLVERR and worst == Resp.OKAY):
                worst = r
        return worst

    def _make_beat(self, burst):
        _, addr, beats, size, n = burst
        nbytes = 1 << size
        beat_addr = (addr & ~(nbytes - 1)) + n * nbytes
        bus = beat_addr & ~(8 * self.lanes - 1)
        if nbytes == 8:
            words = [beat_addr]
        else:
            words = [bus + 8 * i for i in range(self.lanes)]
        resp = self._resp(words)
        data = 0
        if resp == Resp.OKAY:
            for a in words:
                data |= self.mem.read(a) << (64 * ((a - bus) // 8))
        else:
            data = self.rng.getrandbits(64 * self.lanes)
        return data, resp, n == beats - 1, words

    def perform_writes(self, cycle):
        while self.aw and self.w:
            aw_cycle, addr = self.aw.popleft()
            data, strb = self.w.popleft()
            resp = Resp.OKAY
            words = []
            for i in range(self.lanes):
                if (strb >> (8 * i)) & 0xFF:
                    assert (strb >> (8 * i)) & 0xFF == 0xFF, "partial word strobe"
                    words.append(addr + 8 * i)
            r = self._resp(words)
            if r != Resp.OKAY:
                resp = r
            else:
                for a in words:
                    self.mem.write(a, (data >> (64 * ((a - addr) // 8))) & (2**64 - 1))
            for a in words:
                self.pending_words.discard(a)
            self.traffic.writes.append((aw_cycle, words))
            self.b.append((cycle + self.b_latency, resp))

    def write_pending(self, addr):
        return (addr & ~7) in self.pending_words

    def gap(self):
        return self.gaps and self.rng.random() < self.gaps

    def _put(self, ctx, sig, value):
        """Drive ``sig`` only when its value changes (each change costs a settle)."""
        value = int(value)
        key = id(sig)
        if self._driven.get(key) != value:
            self._driven[key] = value
            ctx.set(sig, value)

    async def serve(self, ctx, cycle_ref):
        axi = self.axi
        put = self._put
        self._driven = {}
        sink = self.cleared_port
        while True:
            cycle = cycle_ref[0]
            put(ctx, axi.arready, not self.gap())
            if self.beat is None and self.bursts and self.bursts[0][0] <= cycle:
                self.beat = self._make_beat(self.bursts[0])
            if self.beat is not None and not self.gap():
                data, resp, last, _ = self.beat
                put(ctx, axi.rvalid, 1)
                put(ctx, axi.rdata, data)
                put(ctx, axi.rresp, resp)
                put(ctx, axi.rlast, last)
            else:
                put(ctx, axi.rvalid, 0)
            put(ctx, axi.awready, not self.gap())
            put(ctx, axi.wready, not self.gap())
            if self.b and self.b[0][0] <= cycle and not self.gap():
                put(ctx, axi.bvalid, 1)
                put(ctx, axi.bresp, self.b[0][1])
            else:
                put(ctx, axi.bvalid, 0)
            if sink is not None:
                put(ctx, sink.ready, not (self.cleared_gaps
                                          and self.rng.random() < self.cleared_gaps))
            if self.agent is not None:
                self.agent.drive(ctx, cycle)
            (_, rst, arv, arr, araddr, arlen, arsize, arburst, rv, rr, awv, awr, awaddr,
             awlen, awsize, wv, wr, wdata, wstrb, wlast, bv, br, snv, snr, cv, cr, cp) = \
                await ctx.tick().sample(
                    axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.arsize, axi.arburst,
                    axi.rvalid, axi.rready, axi.awvalid, axi.awready, axi.awaddr, axi.awlen,
                    axi.awsize, axi.wvalid, axi.wready, axi.wdata, axi.wstrb, axi.wlast,
                    axi.bvalid, axi.bready, self.snoop.valid, self.snoop.ready,
                    sink.valid, sink.ready, sink.payload)
            if cv and cr and not rst:
                size = SIZES[cp.level]
                for i in range(self.lanes):
                    if cp.mask >> i & 1:
                        self.cleared.append((cp.base + i * size, size))
            if rst:
                self.reset()
                cycle_ref[0] += 1
                continue
            if arv and arr:
                beats = arlen + 1
                assert arburst == Burst.INCR
                nbytes = 1 << arsize
                assert nbytes in (8, 8 * self.lanes), f"AR size {arsize}"
                start = araddr & ~(nbytes - 1)
                assert start // 4096 == (start + beats * nbytes - 1) // 4096, \
                    f"read burst {araddr:#x}+{beats} crosses 4 KiB"
                self.bursts.append([cycle + self.latency, araddr, beats, arsize, 0])
                self.traffic.ar.append((cycle, araddr, beats, arsize))
            if rv and rr:
                data, resp, last, words = self.beat
                bus = words[0] & ~(8 * self.lanes - 1)
                self.traffic.reads.append((cycle, {
                    a: (data >> (64 * ((a - bus) // 8))) & (2**64 - 1) for a in words}))
                self.beat = None
                self.bursts[0][4] += 1
                if last:
                    self.bursts.popleft()
            if awv and awr:
                assert awlen == 0 and awsize == (8 * self.lanes).bit_length() - 1
                self.aw.append((cycle, awaddr))
                for i in range(self.lanes):
                    self.pending_words.add(awaddr + 8 * i)
            if wv and wr:
                assert wlast
                self.w.append((wdata, wstrb))
            if bv and br:
                self.b.popleft()
            if snv and snr:
                self.agent.fired(cycle)
            self.perform_writes(cycle)
            cycle_ref[0] += 1


# --- harness ------------------------------------------------------------------------------

class Rig:
    """A scanner, its memory and the processes around it on one simulator."""

    def __init__(self, mem: PhysMem, *, data_width=64, latency=1, gaps=0.0, seed=0,
                 cleared_gaps=0.0, **params):
        self.dut = Scanner(data_width=data_width, **params)
        self.lanes = data_width // 64
        self.mem = mem
        m = Module()
        m.domains.sync = self.cd = ClockDomain()
        m.submodules.dut = self.dut
        self.timer = Signal(32)                  # cycles since the start (simulation only)
        m.d.sync += self.timer.eq(self.timer + 1)
        self.sim = Simulator(m)
        self.sim.add_clock(1e-8)
        self.cycle = [0]
        self.slave = AxiSlave(mem, self.dut.m_axi, self.lanes, latency=latency, gaps=gaps,
                              seed=seed, snoop=self.dut.snoop, cleared=self.dut.cleared,
                              cleared_gaps=cleared_gaps)
        self.sim.add_testbench(self._serve, background=True)

    @property
    def cleared(self):
        """Leaves reported on ``cleared``, as ``(base, size)``, since the last clear."""
        return self.slave.cleared

    async def _serve(self, ctx):
        await self.slave.serve(ctx, self.cycle)

    async def run_pass(self, ctx, cfg: ScanConfig, root: int, pass_index=None,
                       max_cycles=200_000):
        """Start a pass and wait for its end; returns the statistics as a dict."""
        dut = self.dut
        ctx.set(dut.config, hw_config(cfg))
        ctx.set(dut.start.payload, {"root": root, "pass_index": pass_index or 0,
                                    "set_index": int(pass_index is not None)})
        ctx.set(dut.start.valid, 1)
        await ctx.tick().until(dut.start.ready)
        ctx.set(dut.start.valid, 0)
        deadline = ctx.get(self.timer) + max_cycles
        await ctx.tick().until(dut.done.valid | (self.timer >= deadline))
        assert ctx.get(dut.done.valid), f"pass does not end within {max_cycles} cycles"
        payload = ctx.get(dut.done.payload)
        stats = {"pass_index": int(payload.pass_index), "candidates": int(payload.candidates)}
        where = stat_index(dut.max_levels)
        values = []
        for addr in range(len(STAT_NAMES) + 2 * dut.max_levels):
            ctx.set(dut.stats_addr, addr)
            await ctx.tick()
            values.append(ctx.get(dut.stats_data))
        for name in STAT_NAMES:
            stats[name] = values[where[name]]
        for name in ("histogram", "long_histogram"):
            stats[name] = values[where[name]:where[name] + dut.max_levels]
        cands = []
        for i in range(stats["candidates"]):
            ctx.set(dut.cand_addr, i)
            await ctx.tick()
            c = ctx.get(dut.cand_data)
            cands.append((int(c.region), int(c.entry_addr), int(c.value)))
        stats["cand_list"] = cands
        ctx.set(dut.done.ready, 1)
        await ctx.tick()
        ctx.set(dut.done.ready, 0)
        return stats

    def run(self, bench):
        self.sim.add_testbench(bench)
        self.sim.run()


def compare(hw: dict, ref, cfg: ScanConfig, cleared, context: str, top_k_max: int = 64):
    """Every statistic of a hardware pass against the model's (the hardware keeps at most
    ``top_k_max`` candidates: a larger ``top_k`` acts as ``top_k_max``)."""
    hist = list(ref.histogram) + [0] * (len(hw["histogram"]) - cfg.levels)
    assert hw["histogram"] == hist, f"{context}: histogram {hw['histogram']} != {hist}"
    if cfg.multi:
        lh = list(ref.long_histogram) + [0] * (len(hw["long_histogram"]) - cfg.long_levels)
    else:
        lh = [0] * len(hw["long_histogram"])
    assert hw["long_histogram"] == lh, f"{context}: long histogram {hw['long_histogram']} != {lh}"
    want = {
        "pass_index": ref.pass_index, "accessed": ref.accessed,
        "leaves_4k": ref.leaves_by_size[4096], "leaves_2m": ref.leaves_by_size[1 << 21],
        "leaves_1g": ref.leaves_by_size[1 << 30], "entries_read": ref.entries_read,
        "candidates": min(len(ref.candidates), top_k_max),
        "tables_read": ref.tables_read, "writes": ref.writes, "malformed": ref.malformed,
        "bus_errors": ref.bus_errors, "retries": ref.retries,
    }
    got = {k: hw[k] for k in want}
    assert got == want, f"{context}: statistics differ: hw {got}\nmodel {want}"
    cands = [tuple(c) for c in ref.candidates][:top_k_max]
    assert hw["cand_list"] == cands, f"{context}: candidates {hw['cand_list']} != {cands}"
    if ref.cleared_base is not None:
        want_clr = list(zip(ref.cleared_base.tolist(), ref.cleared_size.tolist()))
        assert cleared == want_clr, f"{context}: cleared reports differ " \
                                    f"(hw {len(cleared)}, model {len(want_clr)})"


# --- random trees -------------------------------------------------------------------------

MEM = 1 << 20                                   # 256 pages; tables past it answer DECERR


@dataclass
class Tree:
    fmt: str
    mem: PhysMem
    pt: PageTable
    leaves: list = field(default_factory=list)   # (addr, level) of well-formed leaves
    leaf_tables: list = field(default_factory=list)   # (table address, parent entry address)
    l3: int = 0                                  # the level-3 table

    @property
    def root(self):
        return self.pt.root


def leaf_word(rng, fmt, f, level, pa_bits):
    """A well-formed leaf with random rights, flags, A, D and engine bits."""
    pa = rng.randrange(1 << (pa_bits - 12 - 9 * (level - 1))) << (12 + 9 * (level - 1))
    if fmt == "ept":
        fields = dict(R=1, W=rng.randint(0, 1), X=rng.randint(0, 1),
                      MEMTYPE=rng.choice([0, 1, 4, 5, 6]), IPAT=rng.randint(0, 1),
                      A=rng.randint(0, 1), D=rng.randint(0, 1), XU=rng.randint(0, 1),
                      SW=rng.randrange(32), _hw57=rng.randrange(128))
    else:
        fields = dict(P=1, RW=rng.randint(0, 1), US=rng.randint(0, 1), A=rng.randint(0, 1),
                      D=rng.randint(0, 1), G=rng.randint(0, 1), AVL=rng.randrange(8),
                      SW=rng.randrange(128), PKEY=rng.randrange(16), XD=rng.randint(0, 1))
    return f.make(level, pa, leaf=True, **fields)


def malformed_word(rng, fmt, f, level, pa_bits, leaf):
    """A present entry the model calls malformed at ``level``."""
    base = f.make(level, 0x3000, leaf=leaf) if level != 4 else f.make(4, 0x3000, leaf=False)
    choices = []
    if pa_bits < 52:
        choices.append(base | 1 << rng.randrange(pa_bits, 52))
    if level == 4:
        choices.append(base | 1 << 7)
    if fmt == "ept":
        choices.append((base & ~1) | 2)                                  # W without R
        if leaf:
            choices.append(EPT_ENTRY.MEMTYPE.set(base, rng.choice([2, 3, 7])))
        elif level in (2, 3):
            choices.append(base | rng.randrange(1, 16) << 3)
    if leaf and level in (2, 3):
        choices.append(base | 1 << rng.randrange(13, 12 + 9 * (level - 1)))
    return rng.choice(choices) if choices else None


def random_tree(seed, fmt, pa_bits=52, *, leaf_tables=2, bad=False, alias=False,
                dense=None, self_ref=None):
    """A small random tree: one level-3 table, one or two level-2 tables, ``leaf_tables``
    leaf tables (some consecutive), 2 MiB and 1 GiB leaves; optionally malformed entries,
    tables past the end of memory and poisoned words (``bad``), and aliased or
    self-referencing tables (``alias``)."""
    rng = random.Random(seed)
    mem = PhysMem(MEM)
    pt = PageTable(mem, FrameAllocator(0, MEM), fmt, pa_bits=pa_bits)
    f = pt.fmt
    tree = Tree(fmt, mem, pt)
    i4 = rng.randrange(512)
    i3s = sorted(rng.sample(range(512), 2))
    va3 = [i4 << 39 | i3 << 30 for i3 in i3s]
    # leaf tables, under one or two level-2 tables, some consecutive
    first = rng.randrange(500)
    spots = []
    for k in range(leaf_tables):
        if k and rng.random() < 0.6:
            va = spots[-1] + (1 << 21)
        else:
            va = rng.choice(va3[:1 if leaf_tables < 3 else 2]) | (first + 3 * k) << 21
        spots.append(va)
    for k, va in enumerate(spots):
        full = dense if dense is not None else rng.random() < 0.4
        count = 512 if full else rng.choice([1, 5, 40, 200])
        for i1 in sorted(rng.sample(range(512), count)):
            e = leaf_word(rng, fmt, f, 1, pa_bits)
            pt.write_entry(va | i1 << 12, 1, e)
            tree.leaves.append((pt.entry_addr(va | i1 << 12, 1), 1))
        parent = pt.entry_addr(va, 2)
        e = mem.read(parent)
        e = LPCOUNT.set(e, rng.randrange(32))
        mem.write(parent, layout(fmt).A.set(e, rng.randint(0, 1)))
        tree.leaf_tables.append((pt.entry_addr(va, 1) & ~0xFFF, parent))
    # a 2 MiB leaf next to the leaf tables and a 1 GiB leaf in the level-3 table
    va2 = (spots[0] & ~((1 << 30) - 1)) | (rng.choice([i for i in range(512)
                                                       if (spots[0] >> 21) & 511 != i])) << 21
    if pt.entry_addr(va2, 2) is None or not f.present(mem.read(pt.entry_addr(va2, 2))):
        pt.write_entry(va2, 2, leaf_word(rng, fmt, f, 2, pa_bits))
        tree.leaves.append((pt.entry_addr(va2, 2), 2))
    tree.l3 = pt.entry_addr(i4 << 39, 3) & ~0xFFF
    i3g = rng.choice([i for i in range(512) if i not in i3s])
    pt.write_entry(i4 << 39 | i3g << 30, 3, leaf_word(rng, fmt, f, 3, pa_bits))
    tree.leaves.append((pt.entry_addr(i4 << 39 | i3g << 30, 3), 3))
    if bad:
        plant_bad(rng, tree, pa_bits, i4, i3s)
    if alias:
        plant_aliases(rng, tree, self_ref)
    return tree


def plant_bad(rng, tree, pa_bits, i4, i3s):
    fmt, pt, mem = tree.fmt, tree.pt, tree.mem
    f = pt.fmt
    table, parent = tree.leaf_tables[0]
    # malformed leaves in a leaf table and malformed upper entries
    for _ in range(3):
        i1 = rng.randrange(512)
        word = malformed_word(rng, fmt, f, 1, pa_bits, True)
        if word is not None:                 # (an x86 4 KiB leaf has no reserved bit at 52)
            mem.write(table + 8 * i1, word)
    l3 = pt.entry_addr(i4 << 39 | i3s[0] << 30, 3) & ~0xFFF
    l2 = parent & ~0xFFF
    used3 = {i for i in range(512) if mem.read(l3 + 8 * i)}
    used2 = {i for i in range(512) if mem.read(l2 + 8 * i)}
    free3 = [i for i in range(512) if i not in used3]
    free2 = [i for i in range(512) if i not in used2]
    picks2 = rng.sample(free2, 4)
    picks3 = rng.sample(free3, 3)
    mem.write(l2 + 8 * picks2[0], malformed_word(rng, fmt, f, 2, pa_bits, True))
    word = malformed_word(rng, fmt, f, 2, pa_bits, False)
    if word is not None:
        mem.write(l2 + 8 * picks2[1], word)
    mem.write(l3 + 8 * picks3[0], malformed_word(rng, fmt, f, 3, pa_bits, True))
    free4 = [i for i in range(512) if not mem.read(tree.root + 8 * i)]
    mem.write(tree.root + 8 * rng.choice(free4), malformed_word(rng, fmt, f, 4, pa_bits, False))
    # a leaf table and a level-2 table past the end of memory
    mem.write(l2 + 8 * picks2[2], f.make(2, MEM + 4096 * rng.randrange(8), leaf=False))
    mem.write(l3 + 8 * picks3[1], f.make(3, MEM + 4096 * rng.randrange(8), leaf=False))
    # poisoned words: a leaf, an absent leaf-table word, an absent level-3 word, a
    # level-2 pointer to a leaf table (which is then never walked)
    present = [i for i in range(512) if f.present(mem.read(table + 8 * i))]
    absent = [i for i in range(512) if not mem.read(table + 8 * i)]
    if present:
        mem.poison(table + 8 * rng.choice(present), rng.choice(["SLVERR", "DECERR"]))
    if absent:
        mem.poison(table + 8 * rng.choice(absent))
    mem.poison(l3 + 8 * picks3[2])
    if len(tree.leaf_tables) > 2:
        mem.poison(tree.leaf_tables[-1][1])


def plant_aliases(rng, tree, self_ref=None):
    """A second pointer to a leaf table (next to the first), a leaf table that is its own
    level-2 table, a level-3 pointer to a level-2 table already walked, and (``self_ref``,
    or at random) a self-referencing root entry."""
    mem, f = tree.mem, tree.pt.fmt
    table, parent = tree.leaf_tables[0]
    l2 = parent & ~0xFFF

    def peek(addr):
        if addr in mem.poisoned:
            return -1                        # neither free nor an entry to follow
        page = mem.page(addr >> 12)
        return 0 if page is None else int(page[(addr >> 3) & 511])

    i2 = (parent & 0xFFF) // 8
    for j in (i2 + 1, i2 - 1):
        if 0 <= j < 512 and not peek(l2 + 8 * j):
            mem.write(l2 + 8 * j, f.make(2, table, leaf=False, A=1))
            break
    free2 = [i for i in range(512) if not peek(l2 + 8 * i)]
    mem.write(l2 + 8 * rng.choice(free2), f.make(2, l2, leaf=False))
    l3 = tree.l3
    free3 = [i for i in range(512) if not peek(l3 + 8 * i)]
    mem.write(l3 + 8 * rng.choice(free3), f.make(3, l2, leaf=False))
    if self_ref if self_ref is not None else rng.random() < 0.5:
        free4 = [i for i in range(512) if not peek(tree.root + 8 * i)]
        mem.write(tree.root + 8 * rng.choice(free4), f.make(4, tree.root, leaf=False))


def freshen(rng, tree, p_set=0.5):
    """New random A bits on every well-formed leaf (both memories see the same words)."""
    a_mask = layout(tree.fmt).A.mask
    for addr, _ in tree.leaves:
        if addr in tree.mem.poisoned:
            continue
        e = tree.mem.read(addr)
        if rng.random() < p_set:
            tree.mem.write(addr, e | a_mask)
        else:
            tree.mem.write(addr, e & ~a_mask)


def run_against_model(tree, cfg, *, seed, passes=2, first=0, data_width=64, latency=1,
                      gaps=0.0, cleared_gaps=0.0, p_set=0.5, set_index=True, **params):
    """Passes on the RTL and on the model; everything compared after every pass."""
    rig = Rig(tree.mem, data_width=data_width, latency=latency, gaps=gaps, seed=seed,
              cleared_gaps=cleared_gaps, **params)
    model = ModelScanner(cfg, pass_index=first)
    rng = random.Random(seed ^ 0x77)
    results = []

    async def bench(ctx):
        for p in range(first, first + passes):
            ctx_msg = f"seed={seed} fmt={tree.fmt} width={data_width} pass={p}"
            ref_mem = tree.mem.copy()
            rig.cleared.clear()
            hw = await rig.run_pass(ctx, cfg, tree.root, p if set_index or p == first else None)
            ref = model.scan_pass(ref_mem, tree.root)
            diff = tree.mem.diff(ref_mem)
            assert not diff, f"{ctx_msg}: memory differs (addr, rtl, model): " \
                             f"{[(hex(a), hex(x), hex(y)) for a, x, y in diff[:4]]}"
            compare(hw, ref, cfg, rig.cleared, ctx_msg, rig.dut.top_k_max)
            results.append((hw, ref))
            freshen(rng, tree, p_set)

    rig.run(bench)
    return results


# --- another agent: snoop and replay -------------------------------------------------------

class Agent:
    """A walker-like agent writing memory between the scanner's reads and writes.

    Each cycle, with probability ``rate``, it picks a word among the leaves and parents of
    the tables being read and applies an action to it, shown on ``snoop`` in the cycle the
    write lands in memory (only when ``snoop.ready`` is high, as the engine's arbiter would).
    Actions: set A and/or D (the walker), and on 4 KiB leaves also unmap (write 0) or rewrite
    the engine-owned bits (another agent changing the level). Each applied action is recorded
    as ``(cycle, addr, action)`` with ``action = (kind, arg)``.
    """

    def __init__(self, rig, tree, seed, rate=0.05, generic=True):
        self.rig, self.tree = rig, tree
        self.rng = random.Random(seed ^ 0xA9E7)
        self.rate = rate
        self.generic = generic
        self.lay = layout(tree.fmt)
        self.leaf1 = {}
        self.level = {}
        for addr, level in tree.leaves:
            self.leaf1.setdefault(addr >> 12, []).append((addr, level))
            self.level[addr] = level
        self.parents = {table >> 12: parent for table, parent in tree.leaf_tables}
        self.log = []
        self.pending = None

    def _active_pages(self, cycle):
        return [addr >> 12 for c, addr, *_ in self.rig.slave.traffic.ar[-8:]
                if cycle - c < 200]

    def _pick(self, cycle):
        rng = self.rng
        roll = rng.random()
        reads = self.rig.slave.traffic.reads
        if reads and roll < 0.35 and cycle - reads[-1][0] < 4:
            # a word the scanner has just received: held, or about to be written back
            words = [a for a in reads[-1][1] if a in self.level]
            if words:
                addr = rng.choice(words)
                return addr, self.level[addr]
        pages = self._active_pages(cycle)
        if pages and roll < 0.7:
            page = rng.choice(pages)
            if page in self.leaf1:
                return rng.choice(self.leaf1[page])
        if pages and roll < 0.85:
            page = rng.choice(pages)
            if page in self.parents:
                return self.parents[page], 0
        return rng.choice(self.tree.leaves)

    def _action(self, level):
        rng = self.rng
        a, dbit = self.lay.A.mask, self.lay.D.mask
        if self.generic and level == 1 and rng.random() < 0.3:
            if rng.random() < 0.5:
                return ("set", 0)
            return ("sw", rng.randrange(1 << self.lay.SW.width))
        return ("or", rng.choice([a, dbit, a | dbit]))

    def apply(self, action, word):
        kind, arg = action
        if kind == "or":
            return word | arg
        if kind == "set":
            return arg
        return self.lay.SW.set(word, arg)

    def drive(self, ctx, cycle):
        port = self.rig.dut.snoop
        self.pending = None
        ctx.set(port.valid, 0)
        if self.rng.random() >= self.rate:
            return
        addr, level = self._pick(cycle)
        mem = self.rig.mem
        if addr in mem.poisoned or self.rig.slave.write_pending(addr):
            return
        old = mem.read(addr)
        action = self._action(level)
        if action[0] == "or" and not self.tree.pt.fmt.present(old):
            return                           # the walker faults on an absent entry
        new = self.apply(action, old)
        if new == old:
            return
        ctx.set(port.payload, {"addr": addr, "data": new})
        if not ctx.get(port.ready):
            return
        ctx.set(port.valid, 1)
        self.pending = (addr, new, action)

    def fired(self, cycle):
        addr, new, action = self.pending
        self.rig.mem.write(addr, new)
        self.log.append((cycle, addr, action))


class HookMem(PhysMem):
    """A memory that lets scheduled agent actions land just before a given read of a word
    (the ``n``-th read of that word in the pass, from 1)."""

    @classmethod
    def of(cls, src: PhysMem, hooks, apply):
        mem = cls.__new__(cls)
        mem.__dict__.update(src.copy().__dict__)
        mem.hooks, mem.apply_action, mem.count = hooks, apply, {}
        return mem

    def read(self, addr):
        n = self.count[addr] = self.count.get(addr, 0) + 1
        for _, action in self.hooks.pop((addr, n), []):
            super().write(addr, self.apply_action(action, super().read(addr)))
        return super().read(addr)

    def leftovers(self):
        """Actions never reached, in the order they happened."""
        out = [(s, addr, action) for (addr, _), acts in self.hooks.items()
               for s, action in acts]
        self.hooks = {}
        return sorted(out)


def replay_schedule(traffic: Traffic, log):
    """Where each agent action falls in the model's order of reads.

    ``r``: the last beat that brought the word to the scanner (the read it used); ``w``: the
    write of the word. Before ``r``: the action precedes the scanner's read (read 1 of the
    model); after ``w``: it follows the scanner's write (end of the pass); otherwise it fell
    between the read and the write-back: just before the model's compare-and-set re-read
    (read 2), or at the end if the model never re-reads the word.
    """
    last_read = {}
    for cycle, words in traffic.reads:
        for a in words:
            last_read[a] = cycle
    write = {}
    for cycle, words in traffic.writes:
        for a in words:
            write[a] = cycle
    hooks, end, kinds = {}, [], []
    for s, addr, action in log:
        r, w = last_read.get(addr), write.get(addr)
        if r is not None and s < r:
            hooks.setdefault((addr, 1), []).append((s, action))
            kinds.append("before")
        elif w is not None and s > w:
            end.append((s, addr, action))
            kinds.append("after")
        else:
            hooks.setdefault((addr, 2), []).append((s, action))
            kinds.append("between")
    return hooks, end, kinds


def run_with_agent(tree, cfg, *, seed, data_width=64, latency=1, gaps=0.0, rate=0.05,
                   generic=True, passes=1, **params):
    """Passes with the agent on the RTL; each against ``iter_pass`` replayed with the
    interleaving the RTL saw. Returns the per-pass (hw, model stats, kinds, agent log)."""
    rig = Rig(tree.mem, data_width=data_width, latency=latency, gaps=gaps, seed=seed,
              **params)
    agent = Agent(rig, tree, seed, rate=rate, generic=generic)
    rig.slave.agent = agent
    out = []

    async def bench(ctx):
        for p in range(passes):
            msg = f"seed={seed} fmt={tree.fmt} width={data_width} pass={p}"
            before = tree.mem.copy()
            rig.cleared.clear()
            rig.slave.traffic = Traffic()
            agent.log = []
            hw = await rig.run_pass(ctx, cfg, tree.root, p)
            hooks, end, kinds = replay_schedule(rig.slave.traffic, agent.log)
            ref_mem = HookMem.of(before, hooks, agent.apply)
            ref = drive(ModelScanner(cfg, pass_index=p).iter_pass(ref_mem, tree.root))
            for s, addr, action in sorted(ref_mem.leftovers() + end):
                PhysMem.write(ref_mem, addr, agent.apply(action, PhysMem.read(ref_mem, addr)))
            diff = tree.mem.diff(ref_mem)
            assert not diff, f"{msg}: memory differs (addr, rtl, model): " \
                             f"{[(hex(a), hex(x), hex(y)) for a, x, y in diff[:4]]}"
            compare(hw, ref, cfg, rig.cleared, msg, rig.dut.top_k_max)
            out.append((hw, ref, kinds, list(agent.log), rig.slave.traffic))

    rig.run(bench)
    return out


# --- benchmark helper ------------------------------------------------------------------

def bench_tree(fmt="ept", *, tables=4, changing=0.5, seed=0):
    """``tables`` full leaf tables (512 leaves each) under consecutive level-2 entries; a
    fraction ``changing`` of the leaves has A set (so the pass writes them back), the others
    have A clear at level 0 (so the pass leaves them as they are)."""
    rng = random.Random(seed)
    mem = PhysMem(MEM)
    pt = PageTable(mem, FrameAllocator(0, MEM), fmt)
    tree = Tree(fmt, mem, pt)
    base = 5 << 39 | 7 << 30 | 100 << 21
    for t in range(tables):
        va = base + (t << 21)
        pt.map_range(va, 0x4000_0000 + (t << 21), 512, A=0)
        table = pt.entry_addr(va, 1) & ~0xFFF
        tree.leaf_tables.append((table, pt.entry_addr(va, 2)))
        for i in range(512):
            tree.leaves.append((table + 8 * i, 1))
    a_mask = layout(fmt).A.mask
    for addr, _ in tree.leaves:
        if rng.random() < changing:
            mem.write(addr, mem.read(addr) | a_mask)
    return tree


def measure_throughput(*, data_width=64, latency=1, changing=0.5, tables=4, fmt="ept",
                       **params) -> dict:
    """Entries per cycle of one pass over :func:`bench_tree` (no backpressure; the memory
    accepts a request and a beat per cycle and answers after ``latency`` cycles).

    The pass is also checked against the model. Returns a dict: ``cycles`` and
    ``entries_read`` of the pass and their ratio ``entries_per_cycle``; ``leaf_cycles``, the
    cycles from the first leaf-table beat to the last leaf-table write (or beat) accepted,
    and ``leaf_entries_per_cycle`` (leaf-table entries over those cycles); ``writes``.
    """
    tree = bench_tree(fmt, tables=tables, changing=changing)
    cfg = ScanConfig(fmt=fmt, report_cleared=True)
    rig = Rig(tree.mem, data_width=data_width, latency=latency, **params)
    pages = {table >> 12 for table, _ in tree.leaf_tables}
    out = {}

    async def bench(ctx):
        ref_mem = tree.mem.copy()
        hw = await rig.run_pass(ctx, cfg, tree.root, 0)
        ref = ModelScanner(cfg).scan_pass(ref_mem, tree.root)
        assert not tree.mem.diff(ref_mem), "benchmark pass differs from the model"
        compare(hw, ref, cfg, rig.cleared, f"benchmark width={data_width}")
        tr = rig.slave.traffic
        leaf_reads = [c for c, words in tr.reads if next(iter(words)) >> 12 in pages]
        leaf_writes = [c for c, words in tr.writes if words and words[0] >> 12 in pages]
        first = min(leaf_reads)
        last = max(leaf_reads + leaf_writes)
        out.update(cycles=hw["cycles"], entries_read=hw["entries_read"], writes=hw["writes"],
                   entries_per_cycle=hw["entries_read"] / hw["cycles"],
                   leaf_cycles=last - first + 1,
                   leaf_entries_per_cycle=512 * tables / (last - first + 1))

    rig.run(bench)
    return out


# --- the tests -----------------------------------------------------------------------------

def random_config(rng, fmt, pa_bits=52, *, multi=None, top_k=None):
    """A random configuration the default unit supports (levels <= 8, top_k <= 8)."""
    multi = rng.random() < 0.5 if multi is None else multi
    while True:
        levels = rng.randint(2, 8)
        kw = dict(fmt=fmt, pa_bits=pa_bits, levels=levels, up=rng.randint(1, levels - 1),
                  down=rng.randint(1, levels - 1), report_cleared=True)
        if multi:
            period = rng.randint(2, 4)
            kw.update(long_every=period, long_levels=rng.randint(2, 4),
                      long_need=rng.randint(1, period))
        kw["large_page"] = LargePageConfig(
            enable=rng.random() < 0.85, shift=rng.randint(0, 4), warmup=rng.randint(0, 2),
            threshold=rng.randint(0, 8), top_k=rng.randint(1, 8) if top_k is None else top_k,
            max_nonpresent=rng.choice([0, 17, 300, 512]))
        try:
            return ScanConfig(**kw)
        except ValueError:
            continue


@pytest.mark.parametrize("fmt,width,seed,latency,gaps", [
    ("ept", 64, 11, 10, 0.2),
    ("npt", 128, 12, 1, 0.0),
    ("ia32e", 64, 13, 30, 0.1),
])
def test_random_trees_with_bad_entries(fmt, width, seed, latency, gaps):
    """Malformed entries at every level, tables past the end of memory, poisoned words, 2M
    and 1G leaves; two passes, everything compared after each."""
    rng = random.Random(seed)
    pa_bits = 52 if fmt == "ept" else 46
    cfg = random_config(rng, fmt, pa_bits)
    tree = random_tree(seed, fmt, pa_bits, leaf_tables=2, bad=True)
    results = run_against_model(tree, cfg, seed=seed, data_width=width, latency=latency,
                                gaps=gaps, cleared_gaps=gaps, pa_bits=pa_bits,
                                first=rng.randint(0, 3))
    hw, ref = results[0]
    assert ref.bus_errors > 512 and ref.malformed > 0, f"seed={seed}: tree lacks bad entries"
    assert hw["writes"] > 0 and ref.leaves_by_size[1 << 21] and ref.leaves_by_size[1 << 30]


def test_aliased_and_self_referencing_tables():
    """A leaf table reached twice in a row, a leaf table that is its own level-2 table, a
    level-2 table reached from two level-3 entries and a root entry pointing at the root:
    the read-ahead must see every earlier write of the pass."""
    seed = 22
    rng = random.Random(seed)
    cfg = random_config(rng, "ept", top_k=8)
    tree = random_tree(seed, "ept", leaf_tables=1, alias=True, dense=False, self_ref=True)
    hw, ref = run_against_model(tree, cfg, seed=seed, data_width=128, latency=10,
                                gaps=0.2, passes=1)[0]
    assert ref.tables_read >= 10 and ref.writes > 0, f"seed={seed}: no aliasing walked"


@pytest.mark.parametrize("seed", range(100, 100 + 3 * (scale(1) - 1)))
def test_random_sweep(seed):
    """Random formats, widths, parameters, configurations and trees (``make regress``)."""
    rng = random.Random(seed)
    fmt = rng.choice(["ept", "npt", "ia32e"])
    pa_bits = rng.choice([52, 46, 40])
    width = rng.choice([64, 128, 256])
    cfg = random_config(rng, fmt, pa_bits)
    params = dict(max_reads=rng.choice([2, 4, 8]), burst_beats=rng.choice([4, 16, 32]),
                  max_writes=rng.choice([2, 8, 32]), window=rng.choice([4, 8, 32]))
    tree = random_tree(seed, fmt, pa_bits, leaf_tables=rng.randint(1, 3),
                       bad=rng.random() < 0.5, alias=rng.random() < 0.3)
    run_against_model(tree, cfg, seed=seed, data_width=width, pa_bits=pa_bits,
                      latency=rng.choice([1, 3, 10, 30]), gaps=rng.choice([0.0, 0.2, 0.5]),
                      cleared_gaps=rng.choice([0.0, 0.3]), first=rng.randint(0, 3),
                      set_index=rng.random() < 0.5, **params)


def test_long_period_and_warmup():
    """Multi-granularity on over three passes (the second ends a long period); the
    prioritizer proposes nothing during its warm-up and ranks the full leaf tables after."""
    seed = 31
    cfg = ScanConfig(fmt="ept", levels=4, up=1, down=1, long_every=2, long_levels=3,
                     long_need=1, report_cleared=True,
                     large_page=LargePageConfig(shift=1, warmup=1, threshold=0, top_k=4,
                                                max_nonpresent=0))
    tree = random_tree(seed, "ept", leaf_tables=2, dense=True)
    results = run_against_model(tree, cfg, seed=seed, passes=3, data_width=128, latency=3,
                                set_index=False, p_set=0.7)
    counts = [hw["candidates"] for hw, _ in results]
    assert counts[0] == 0 and all(c > 0 for c in counts[1:]), counts
    assert [hw["pass_index"] for hw, _ in results] == [0, 1, 2]
    # the end of the first long period moved leaves between long levels
    assert results[1][0]["long_histogram"] != results[0][0]["long_histogram"]


@pytest.mark.parametrize("width,seed,tables", [(64, 41, 2), (128, 42, 1)])
def test_snoop_interleavings(width, seed, tables):
    """Another agent writes leaves and parents while the scanner reads them: before its
    read, between read and write-back, after the write-back. The result equals iter_pass
    replayed with the same interleaving; D is never lost, an A set after the read survives."""
    tree = random_tree(seed, "ept" if width == 64 else "npt", leaf_tables=tables, dense=True)
    cfg = ScanConfig(fmt=tree.fmt, report_cleared=True, long_every=2, long_levels=2,
                     long_need=1, large_page=LargePageConfig(warmup=0, threshold=0, top_k=8,
                                                            max_nonpresent=512))
    before = tree.mem.copy()
    (hw, ref, kinds, log, traffic), = run_with_agent(
        tree, cfg, seed=seed, data_width=width, latency=5, gaps=0.3, rate=0.05)
    assert {"before", "between", "after"} <= set(kinds), f"seed={seed}: {set(kinds)}"
    assert hw["retries"] > 0, f"seed={seed}: no compare-and-set retry happened"
    # Explicit checks on words only the walker touched: D kept, a late A survives.
    lay = layout(tree.fmt)
    read_value = {}
    for cycle, words in traffic.reads:
        read_value.update(words)
    acted = {}
    for (s, addr, action), kind in zip(log, kinds):
        acted.setdefault(addr, []).append((kind, action))
    late_a = 0
    for addr, acts in acted.items():
        if any(a[0] != "or" for _, a in acts) or addr not in read_value:
            continue
        final = tree.mem.read(addr)
        bits = 0
        for _, a in acts:
            bits |= a[1]
        d_set = (before.read(addr) | bits) & lay.D.mask
        assert final & lay.D.mask == d_set, f"seed={seed}: D lost at {addr:#x}"
        if any(k == "between" and a[1] & lay.A.mask for k, a in acts) \
                and not read_value[addr] & lay.A.mask:
            assert final & lay.A.mask, f"seed={seed}: late A cleared at {addr:#x}"
            late_a += 1
    assert late_a, f"seed={seed}: no late A bit to check"


def test_reset_mid_pass_then_a_correct_pass():
    """Reset in the middle of a pass (writes in flight are lost with the interconnect);
    the unit is idle afterwards and the next pass matches the model on the memory as the
    interrupted pass left it."""
    seed = 51
    tree = random_tree(seed, "npt", leaf_tables=2, dense=True)
    cfg = ScanConfig(fmt="npt", report_cleared=True)
    rig = Rig(tree.mem, data_width=64, latency=5, gaps=0.2, seed=seed)
    out = {}

    async def bench(ctx):
        dut = rig.dut
        ctx.set(dut.config, hw_config(cfg))
        ctx.set(dut.start.payload, {"root": tree.root, "pass_index": 7, "set_index": 1})
        ctx.set(dut.start.valid, 1)
        await ctx.tick().until(dut.start.ready)
        ctx.set(dut.start.valid, 0)
        # into the second leaf table, with writes in flight
        await ctx.tick().until(rig.dut.m_axi.awvalid & (rig.timer > 2600))
        ctx.set(rig.cd.rst, 1)
        await ctx.tick()
        ctx.set(rig.cd.rst, 0)
        await ctx.tick()
        assert not ctx.get(dut.busy) and ctx.get(dut.start.ready)
        assert not ctx.get(dut.m_axi.arvalid) and not ctx.get(dut.m_axi.awvalid)
        out["partial"] = tree.mem.copy()
        rig.cleared.clear()
        hw = await rig.run_pass(ctx, cfg, tree.root, 3)
        ref = ModelScanner(cfg, pass_index=3).scan_pass(out["partial"], tree.root)
        assert not tree.mem.diff(out["partial"]), "memory differs after the reset pass"
        compare(hw, ref, cfg, rig.cleared, "after reset", dut.top_k_max)
        out["hw"] = hw

    rig.run(bench)
    assert out["hw"]["writes"] > 0


def test_write_error_counts_as_bus_error():
    """A write answered with SLVERR (the model's memory cannot produce one): one bus error
    per entry it carried, no write counted, no cleared report; the leaves still count."""
    mem = PhysMem(MEM)
    pt = PageTable(mem, FrameAllocator(0, MEM), "ept")
    for i in range(3):
        pt.map(i << 12, 0x100000 * (i + 1), A=1)
    bad = pt.entry_addr(1 << 12, 1)
    cfg = ScanConfig(report_cleared=True)
    rig = Rig(mem, data_width=64, latency=2)
    orig = mem.read(bad)
    ref_mem = mem.copy()
    ref = ModelScanner(cfg).scan_pass(ref_mem, pt.root)
    got = {}
    perform = rig.slave.perform_writes

    def failing(cycle):          # the word answers SLVERR to writes only
        if rig.slave.aw and rig.slave.aw[0][1] == bad and rig.slave.w:
            mem.poison(bad)
            perform(cycle)
            mem.unpoison(bad)
        else:
            perform(cycle)

    rig.slave.perform_writes = failing

    async def bench(ctx):
        got["hw"] = await rig.run_pass(ctx, cfg, pt.root, 0)

    rig.run(bench)
    hw = got["hw"]
    assert hw["bus_errors"] == ref.bus_errors + 1 and hw["writes"] == ref.writes - 1
    assert hw["accessed"] == ref.accessed == 3 and hw["leaves_4k"] == 3
    assert rig.cleared == [(0, 4096), (2 << 12, 4096)]
    assert mem.read(bad) == orig                     # the failed write changed nothing


def test_throughput_helper_runs_and_checks():
    """The benchmark helper on one leaf table (a real pass, compared with the model)."""
    out = measure_throughput(data_width=128, latency=10, changing=1.0, tables=1)
    assert out["entries_read"] == 4 * 512 and out["writes"] == 512 + 1
    assert 0 < out["leaf_entries_per_cycle"] <= 2 and 0 < out["entries_per_cycle"]


# --- pieces --------------------------------------------------------------------------------

class _LpStep(Elaboratable):
    def __init__(self):
        self.v, self.count, self.shift = Signal(5), Signal(10), Signal(3)
        self.out = Signal(5)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(lp_step(m, self.v, self.count, self.shift))
        return m


def test_lp_step_matches_the_model():
    dut = _LpStep()
    rng = random.Random(61)
    counts = sorted({0, 1, 15, 16, 17, 31, 32, 255, 495, 496, 497, 511, 512}
                    | {rng.randrange(513) for _ in range(12)})
    cases = [(v, c, k) for v in range(32) for c in counts for k in range(5)]

    async def bench(ctx):
        for v, c, k in cases:
            ctx.set(dut.v, v)
            ctx.set(dut.count, c)
            ctx.set(dut.shift, k)
            want = int(model_lp_step(v, c, k))
            assert ctx.get(dut.out) == want, f"lp_step({v}, {c}, {k})"

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("top_k_max,seed", [(8, 71), (3, 72)])
def test_candidate_list_ranks_like_the_model(top_k_max, seed):
    """Random candidates with equal values and equal regions, several top_k, clear."""
    rng = random.Random(seed)
    dut = CandidateList(top_k_max=top_k_max, pa_bits=40)

    async def bench(ctx):
        for top_k in (0, 1, top_k_max, top_k_max + 5, 64):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.top_k, top_k)
            cands = [(rng.randrange(8) << 21, rng.randrange(1 << 12) * 8, rng.randrange(4))
                     for _ in range(rng.randint(0, 12))]
            for region, addr, value in cands:
                ctx.set(dut.insert.payload, {"region": region, "entry_addr": addr,
                                             "value": value})
                ctx.set(dut.insert.valid, 1)
                await ctx.tick().until(dut.insert.ready)
                ctx.set(dut.insert.valid, 0)
                while rng.random() < 0.3:
                    await ctx.tick()
            await ctx.tick().until(dut.insert.ready)
            want = [tuple(c) for c in rank([c[0] for c in cands], [c[1] for c in cands],
                                           [c[2] for c in cands], min(top_k, top_k_max))]
            assert ctx.get(dut.count) == len(want), f"seed={seed} top_k={top_k}"
            got = []
            for i in range(len(want)):
                ctx.set(dut.read_addr, i)
                await ctx.tick()
                c = ctx.get(dut.read_data)
                got.append((int(c.region), int(c.entry_addr), int(c.value)))
            assert got == want, f"seed={seed} top_k={top_k}: {got} != {want}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kwargs,words", [
    ({"data_width": 32}, ["data_width", "32"]),
    ({"pa_bits": 31}, ["pa_bits", "31"]),
    ({"max_levels": 33}, ["max_levels", "33"]),
    ({"top_k_max": 0}, ["top_k_max", "0"]),
    ({"max_reads": 1}, ["max_reads", "1"]),
    ({"burst_beats": 24}, ["burst_beats", "24"]),
    ({"data_width": 256, "burst_beats": 256}, ["burst_beats", "256"]),
    ({"max_writes": 1}, ["max_writes", "1"]),
    ({"window": 48}, ["window", "48"]),
    ({"id_width": 0}, ["id_width", "0"]),
])
def test_parameters_are_checked(kwargs, words):
    with pytest.raises(ValueError) as info:
        Scanner(**kwargs)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(TypeError):
        Scanner(64)


def test_ports_and_layouts():
    dut = Scanner(data_width=128, pa_bits=40, max_levels=6, top_k_max=5)
    members = dut.signature.members
    assert set(members) == {"start", "config", "done", "stats_addr", "stats_data", "cleared",
                            "snoop", "cand_addr", "cand_data", "busy", "m_axi"}
    assert members["m_axi"].signature.members["araddr"].shape == 40
    assert members["m_axi"].signature.members["wdata"].shape == 128
    assert [(n, f.offset, f.width) for n, f in dut.cleared.payload.shape()] == [
        ("base", 0, 48), ("level", 48, 2), ("mask", 50, 2)]
    assert [n for n, _ in dut.snoop.payload.shape()] == ["addr", "data"]
    where = stat_index(6)
    assert where["histogram"] == len(STAT_NAMES) and where["long_histogram"] == \
        len(STAT_NAMES) + 6
    assert (dut.lanes, dut.max_levels, dut.top_k_max) == (2, 6, 5)
    from hdl.scanner import SYNTH_DESIGNS
    assert isinstance(SYNTH_DESIGNS["scanner"](), Scanner)
