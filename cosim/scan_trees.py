"""Scanner workloads for the tests and benchmarks: random host trees, configurations, and
the comparison of one hardware pass with the model's.

:func:`random_tree` builds small trees with every shape the scanner must handle (2M and 1G
leaves, consecutive leaf tables, malformed entries, tables past the end of memory, poisoned
words, aliased and self-referencing tables); :func:`bench_tree` builds full leaf tables with a
chosen fraction of changing entries; :func:`compare` checks one pass's statistics, candidate
list and cleared-leaf reports against :class:`model.scanner.PassStats`. Simulator-agnostic:
used by the Amaranth-simulator tests and the Verilator testbench alike.
"""

import random
from dataclasses import dataclass, field

from hdl.scanner import HostFormat
from model.memory import PhysMem
from model.pagetable import FrameAllocator, PageTable
from model.prioritizer import LargePageConfig
from model.scanner import ScanConfig
from thermocline.layouts import EPT_ENTRY, LPCOUNT, X86_ENTRY

__all__ = ["SIZES", "MEM", "Tree", "layout", "hw_config", "compare", "random_tree",
           "random_config", "freshen", "bench_tree", "leaf_word", "malformed_word"]

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
