"""The workload behind python-dict.tct: a moving hot set in a dict and a streamed buffer.

Run as ``PYTHONHASHSEED=0 python3 -s -S python-dict.py`` (see README.md beside this file):
with the fixed hash seed, int keys and a seeded generator, every run makes the same accesses.
Prints one checksum.

After the interpreter starts (tens of millions of accesses on their own):

1. build: a dict of 16384 keys, each mapped to a one-element list (a few MiB of heap), and an
   8 MiB buffer (zeroed: a sequential sweep of writes);
2. four phases of four rounds; in each round
   * stream: 256 KiB of the buffer are overwritten 16 KiB at a time, the window advancing
     round by round (each page written once, in address order);
   * hot set: 1000 lookups of keys drawn from a block of 2048 consecutive keys, skewed towards
     the start of the block; the block moves to fresh keys at every phase.
"""

import random

rng = random.Random(7)
N = 1 << 14
table = {k: [k] for k in range(N)}
buf = bytearray(8 << 20)
blk = bytes(range(256)) * 64
total = 0
for phase in range(4):
    lo = phase * 4096
    for r in range(4):
        base = (phase * 4 + r) << 18
        for off in range(base, base + (1 << 18), len(blk)):
            buf[off:off + len(blk)] = blk
        for _ in range(1000):
            total += table[lo + int(rng.random() ** 2 * 2048)][0]
print(total)
