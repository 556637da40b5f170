"""Memory image and page-table builder."""

import numpy as np
import pytest

from model.memory import PhysMem, BusError
from model.pagetable import FrameAllocator, PageTable, OutOfFrames, SIZE_4K, SIZE_2M, SIZE_1G


def test_sparse_reads_zero_and_writes_allocate():
    m = PhysMem(1 << 36)                               # 64 GiB, nothing allocated
    assert m.read(0x1234_5678) == 0 and len(m.pages()) == 0
    m.write(0xF_0000_0008, 0xDEAD)
    assert m.read(0xF_0000_0008) == 0xDEAD and len(m.pages()) == 1


def test_bus_errors_and_bad_accesses():
    m = PhysMem(1 << 20)
    with pytest.raises(BusError) as e:
        m.read(1 << 20)
    assert e.value.resp == "DECERR"
    m.poison(0x100)
    with pytest.raises(BusError) as e:
        m.write(0x100, 1)
    assert e.value.resp == "SLVERR"
    with pytest.raises(ValueError, match="unaligned"):
        m.read(0x101)
    with pytest.raises(ValueError, match="64 bits"):
        m.write(0x200, 1 << 64)
    with pytest.raises(ValueError, match="0x1001"):
        PhysMem(0x1001)


def test_vector_access_diff_copy_save(tmp_path):
    m = PhysMem(1 << 30)
    addrs = np.arange(0, 1 << 24, 4096 + 8, dtype=np.uint64) & ~np.uint64(7)
    m.write_many(addrs, addrs + np.uint64(1))
    assert (m.read_many(addrs) == addrs + np.uint64(1)).all()
    c = m.copy()
    assert c == m
    c.write(8, 5)
    assert m.diff(c) == [(8, 0, 5)]
    m.save(tmp_path / "img.npz")
    assert PhysMem.load(tmp_path / "img.npz") == m


def test_frame_allocator_alignment_and_exhaustion():
    a = FrameAllocator(0x1000, 1 << 22)
    assert a.alloc() == 0x1000
    assert a.alloc(SIZE_2M) == SIZE_2M
    with pytest.raises(OutOfFrames):
        a.alloc(SIZE_2M)
    with pytest.raises(ValueError, match="0x3000"):
        a.alloc(0x3000)


@pytest.mark.parametrize("fmt", ["ept", "npt"])
def test_builder_maps_unmaps_and_refuses_overlaps(fmt):
    m = PhysMem(1 << 32)
    t = PageTable(m, FrameAllocator(0, 1 << 24), fmt)
    t.map(0x4000_0000, 0x8000_0000, SIZE_1G)
    t.map(0x20_0000, 0x30_0000 & ~(SIZE_2M - 1), SIZE_2M)
    t.map(0x1000, 0x5000)
    assert t.translate(0x4000_1234) == 0x8000_1234
    assert t.translate(0x1ABC) == 0x5ABC
    with pytest.raises(ValueError, match="already mapped"):
        t.map(0x4000_1000, 0)
    with pytest.raises(ValueError, match="in the way"):
        t.map(0, 0, SIZE_2M)
    with pytest.raises(ValueError, match="aligned"):
        t.map(0x1000, 0, SIZE_2M)
    t.unmap(0x1000)
    assert t.translate(0x1000) is None and t.read_entry(0x1000, 1) == 0
    with pytest.raises(KeyError):
        t.unmap(0x1000)


def test_bulk_map_range_equals_single_maps():
    m1, m2 = PhysMem(1 << 32), PhysMem(1 << 32)
    t1 = PageTable(m1, FrameAllocator(0, 1 << 24), "ept")
    t2 = PageTable(m2, FrameAllocator(0, 1 << 24), "ept")
    t1.map_range(0x1F_F000, 0x1000_0000, 700, A=1)
    for i in range(700):
        t2.map(0x1F_F000 + i * SIZE_4K, 0x1000_0000 + i * SIZE_4K, A=1)
    assert m1.diff(m2) == []
    assert t1.translate(0x1F_F000 + 699 * SIZE_4K + 5) == 0x1000_0000 + 699 * SIZE_4K + 5
