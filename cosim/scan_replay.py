"""Replaying another agent's writes in the model's order of reads.

A test that lets another agent (a walker setting A/D bits, software changing an entry) write
words while the scanner runs records what the memory saw: every read beat and every write,
by cycle (:class:`Traffic`), and every action of the agent, by cycle. :func:`replay_schedule`
places each action in the model's sequential order of reads, and :class:`HookMem` applies
them there while :meth:`model.scanner.Scanner.iter_pass` runs, so the model produces what the
hardware must have produced for that interleaving.
"""

import random
from dataclasses import dataclass, field

from model.memory import PhysMem
from model.scanner import ScanConfig, drive
from model.scanner import Scanner as ModelScanner

from .scan_trees import layout

__all__ = ["Traffic", "HookMem", "replay_schedule", "tree_shape", "revisited_tables", "Agent"]


@dataclass
class Traffic:
    """What the slave saw, by cycle (for the snoop tests' replay)."""

    reads: list = field(default_factory=list)      # (cycle, {word addr: value}) per R beat
    writes: list = field(default_factory=list)     # (aw cycle, [word addr, ...]) per write
    ar: list = field(default_factory=list)         # (cycle, addr, beats, size)


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


class _ShapeRecorder(ModelScanner):
    """The model's pass, counting how many times it walks each table and noting the
    level-2 parents whose ``LPCOUNT`` it updates."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.visits = {}
        self.levels = {}
        self.parents = set()

    def _walk(self, mem, table, level, va, acc, args):
        self.visits[table] = self.visits.get(table, 0) + 1
        self.levels[table] = level
        return (yield from super()._walk(mem, table, level, va, acc, args))

    def _parent(self, mem, addr, visited, va, t_acc, t_present, acc):
        self.parents.add(addr)
        return (yield from super()._parent(mem, addr, visited, va, t_acc, t_present, acc))


def _recorded(tree, pa_bits) -> _ShapeRecorder:
    """The model's pass over a copy of ``tree``, recorded."""
    recorder = _ShapeRecorder(ScanConfig(fmt=tree.fmt, pa_bits=pa_bits))
    drive(recorder.iter_pass(tree.mem.copy(), tree.root))
    return recorder


def tree_shape(tree, pa_bits=52):
    """``(pages of the tables a pass walks more than once, level-2 parent words)``. The
    tables' shape decides both, not the A bits or the levels an agent changes. Tables walked
    more than once are the aliased and self-referencing ones and every table below one."""
    recorder = _recorded(tree, pa_bits)
    return ({table >> 12 for table, n in recorder.visits.items() if n > 1},
            recorder.parents)


def upper_tables(tree, pa_bits=52) -> set:
    """Pages of the tables a pass walks at levels 4 to 2 (the root and the tables of table
    pointers)."""
    return {table >> 12 for table, level in _recorded(tree, pa_bits).levels.items()
            if level >= 2}


def revisited_tables(tree, pa_bits=52) -> set:
    """Pages of the tables a pass walks more than once (:func:`tree_shape`)."""
    return tree_shape(tree, pa_bits)[0]


class Agent:
    """A walker-like agent writing memory between the scanner's reads and writes.

    Each cycle, with probability ``rate``, it picks a word among the leaves and parents of
    the tables being read and proposes an action on it (:meth:`propose`); the harness shows
    the address on ``snoop``, the cycle after the new word with ``valid`` (while ``ready``
    is high), and, when the transfer happens, calls :meth:`fired`, which
    writes memory in that cycle. Actions: set A and/or D (the walker), and on 4 KiB leaves
    also unmap (write 0) or rewrite the engine-owned bits (another agent changing the level).
    Each applied action is recorded in :attr:`log` as ``(cycle, addr, action)`` with
    ``action = (kind, arg)``.

    The agent leaves alone the words of tables that a pass walks more than once
    (:func:`revisited_tables`): :func:`replay_schedule` places an action by the word's last
    read and its write in the pass, which name one visit of the word only. With
    ``revisited`` it writes those too (for checks that need no replay). ``pa_bits`` is the
    physical-address width the tables are read with.
    """

    def __init__(self, tree, seed, rate=0.05, generic=True, revisited=False, pa_bits=52,
                 upper=False):
        self.tree = tree
        self.rng = random.Random(seed ^ 0xA9E7)
        self.rate = rate
        self.generic = generic
        self.lay = layout(tree.fmt)
        revisited = set() if revisited else revisited_tables(tree, pa_bits)
        self.leaves = [(addr, level) for addr, level in tree.leaves
                       if addr >> 12 not in revisited]
        self.leaf1 = {}
        self.level = {}
        for addr, level in self.leaves:
            self.leaf1.setdefault(addr >> 12, []).append((addr, level))
            self.level[addr] = level
        self.parents = {table >> 12: parent for table, parent in tree.leaf_tables
                        if parent >> 12 not in revisited}
        # ``upper``: every word of the root and the other tables of table pointers instead
        # (their writes land while the walk moves between those tables).
        self.upper = [((page << 12) + 8 * i, 0) for page in sorted(upper_tables(tree, pa_bits))
                      for i in range(512)] if upper else None
        self.log = []
        self.pending = None
        self.held = None                     # (addr, action) on offer since the cycle before

    def _pick(self, cycle, traffic):
        rng = self.rng
        if self.upper is not None:
            return rng.choice(self.upper)
        roll = rng.random()
        reads = traffic.reads
        if roll < 0.35:
            # a word the scanner has just received (held, or about to be written back) or
            # is about to receive (the start of its last read burst): its write lands a
            # cycle or more after it is offered
            words = []
            if reads and cycle - reads[-1][0] < 4:
                got = reads[-1][1]
                words += [a for a in got if a in self.level]
                # the beat after it, arriving about now
                words += [a + 8 * len(got) for a in got if a + 8 * len(got) in self.level]
            if traffic.ar and cycle - traffic.ar[-1][0] < 8:
                _, start, beats, size = traffic.ar[-1]
                words += [a for a in range(start, start + min(beats, 2) * (1 << size), 8)
                          if a in self.level]
            if words:
                addr = rng.choice(words)
                return addr, self.level[addr]
        pages = [addr >> 12 for c, addr, *_ in traffic.ar[-8:] if cycle - c < 200]
        if pages and roll < 0.7:
            page = rng.choice(pages)
            if page in self.leaf1:
                return rng.choice(self.leaf1[page])
        if pages and roll < 0.85:
            page = rng.choice(pages)
            if page in self.parents:
                return self.parents[page], 0
        return rng.choice(self.leaves) if self.leaves else None

    def _action(self, level):
        rng = self.rng
        a, dbit = self.lay.A.mask, self.lay.D.mask
        if self.generic and level == 1 and rng.random() < 0.3:
            if rng.random() < 0.5:
                return ("set", 0)
            return ("sw", rng.randrange(1 << self.lay.SW.width))
        return ("or", rng.choice([a, dbit, a | dbit]))

    def apply(self, action, word):
        """``word`` after ``action``."""
        kind, arg = action
        if kind == "or":
            return word | arg
        if kind == "set":
            return arg
        return self.lay.SW.set(word, arg)

    def propose(self, cycle, mem, traffic, write_pending):
        """The write to show on ``snoop`` this cycle, ``(addr, new word, action, ripe)``, or
        None.

        An address is offered for a cycle before its write may land (the scanner's ``ready``
        answers for the address offered the cycle before): a new proposal is shown with
        ``ripe`` false; the cycle after, the same address comes back ``ripe``, its word
        recomputed from memory as it is then, and stays on offer until :meth:`fired` (or
        until it no longer makes sense, or, now and then, the agent changes its mind).
        ``mem`` is the memory as it is now (``read`` and ``poisoned``), ``traffic`` what the
        scanner did so far this pass, ``write_pending(addr)`` whether a write of the scanner
        to that word has its address accepted and is not yet done (the agent leaves such a
        word alone, as the walker's compare-and-set would wait for it).
        """
        held, self.held = self.held, None
        if held is not None and self.rng.random() >= 0.05:
            write = self._write(mem, write_pending, *held)
            if write is not None:
                self.held = held
                return (*write, True)
        if self.rng.random() >= self.rate:
            return None
        pick = self._pick(cycle, traffic)
        if pick is None:
            return None
        addr, level = pick
        write = self._write(mem, write_pending, addr, self._action(level))
        if write is None:
            return None
        self.held = write[0], write[2]
        return (*write, False)

    def _write(self, mem, write_pending, addr, action):
        """``(addr, new word, action)`` as memory is now, or None if it changes nothing or
        may not be made."""
        if addr in mem.poisoned or write_pending(addr):
            return None
        old = mem.read(addr)
        if action[0] == "or" and not self.tree.pt.fmt.present(old):
            return None                      # the walker faults on an absent entry
        new = self.apply(action, old)
        if new == old:
            return None
        return addr, new, action

    def fired(self, cycle, mem):
        """The offered write (:attr:`pending`) happened in ``cycle``: perform it."""
        addr, new, action = self.pending
        self.held = None
        mem.write(addr, new)
        self.log.append((cycle, addr, action))
