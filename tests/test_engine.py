"""The engine model: units wired together and kept coherent."""

import pytest

from model.engine import Engine, EngineConfig
from model.exit_detector import PteWrite
from model.pagetable import SIZE_4K
from model.prefetcher import PrefetchConfig
from model.scanner import ScanConfig
from model.system import GuestSystem
from model.walker import WalkerConfig, WalkRequest, Translation
from thermocline.layouts import EPT_ENTRY, X86_ENTRY

GVA = 0x1000_0000


@pytest.fixture
def sysx():
    s = GuestSystem(guest_ram=8 << 20)
    sp = s.new_space()
    data = [s.alloc_data() for _ in range(8)]
    for i, gpa in enumerate(data):
        sp.map(GVA + i * SIZE_4K, gpa)
    e = Engine(s.mem, hroot=s.hroot, scan_root=s.host.root)
    return s, sp, data, e


def touch(s, sp, e, i):
    return e.translate(WalkRequest(gva=GVA + i * SIZE_4K, cr3=sp.root, hroot=s.hroot,
                                   user=True))


def test_scan_keeps_walker_coherent(sysx):
    s, sp, data, e = sysx
    assert isinstance(touch(s, sp, e, 0), Translation)
    rep = e.scan()
    assert rep.invalidated >= 1                       # the data page's nested-TLB slot
    leaf = s.host.entry_addr(data[0], 1)
    assert not s.mem.read(leaf) & EPT_ENTRY.A.mask
    touch(s, sp, e, 0)                                # would be a TLB hit without coherence
    assert s.mem.read(leaf) & EPT_ENTRY.A.mask
    assert e.scan().stats.accessed >= 1


def test_untouched_pages_cool_down_and_touched_ones_warm_up(sysx):
    s, sp, data, e = sysx
    level = e.scanner.config.fields.level
    for _ in range(3):
        touch(s, sp, e, 1)
        e.scan()
    assert level.get(s.host.read_entry(data[1], 1)) == 3
    assert level.get(s.host.read_entry(data[2], 1)) == 0


def test_walks_feed_the_exit_detector(sysx):
    s, sp, data, e = sysx
    for i in range(8):
        touch(s, sp, e, i)
    addr = sp.entry_addr(GVA, 1)
    drops = e.pte_write(PteWrite(asid=sp.root, table_gpa=addr & ~0xFFF,
                                 index=(addr >> 3) & 511, old=sp.space.read(addr), new=0))
    assert [d.reason for d in drops] == ["exit"]


def test_interval_controller_sees_every_pass(sysx):
    s, sp, data, e = sysx
    t0 = e.scan().timing
    t1 = e.scan().timing
    assert t1.start == t0.next_start and t1.cycles >= 512


def test_mismatched_formats_are_refused():
    with pytest.raises(ValueError, match="'npt'"):
        EngineConfig(walker=WalkerConfig(host="ept"), scan=ScanConfig(fmt="npt"))
    with pytest.raises(ValueError, match="prefetcher"):
        EngineConfig(walker=WalkerConfig(host="ept"), scan=ScanConfig(fmt="ept"),
                     prefetch=PrefetchConfig(host="npt"))
    EngineConfig(walker=WalkerConfig(host="npt"), scan=ScanConfig(fmt="ia32e"),
                 prefetch=PrefetchConfig(host="npt"))


def test_mismatched_address_widths_are_refused():
    with pytest.raises(ValueError, match="pa_bits must agree.*'scanner': 52"):
        EngineConfig(walker=WalkerConfig(pa_bits=46), prefetch=PrefetchConfig(pa_bits=46))
    EngineConfig(walker=WalkerConfig(pa_bits=46), scan=ScanConfig(pa_bits=46),
                 prefetch=PrefetchConfig(pa_bits=46))


def test_guest_a_bits_are_set_by_walks(sysx):
    s, sp, data, e = sysx
    touch(s, sp, e, 3)
    assert sp.read_entry(GVA + 3 * SIZE_4K, 1) & X86_ENTRY.A.mask
