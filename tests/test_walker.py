"""Nested walker: translations, A/D rules, precise faults, caches and invalidation."""

import random

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from thermocline.layouts import (
    EPT_ENTRY as E, X86_ENTRY as X, EPTP, PF_ERROR, EPT_QUAL, NPF_INFO,
)
from model.pagetable import SIZE_4K, SIZE_2M, SIZE_1G
from model.system import GuestSystem, pick, random_system
from model.walker import Walker, WalkerConfig, WalkRequest, FaultKind, Fault, Translation

from .helpers import scale

GVA = 0x7F12_3456_7000


def make(host="ept", ad=True, host_page=SIZE_4K, **kw):
    s = GuestSystem(guest_ram=16 << 20, host=host, host_page=host_page, ad=ad, shuffle=7)
    sp = s.new_space()
    return s, sp, Walker(s.mem, host=host, **kw)


def req(s, sp, gva=GVA, **kw):
    return WalkRequest(gva=gva, cr3=sp.root, hroot=s.hroot, **kw)


# --- translation and A/D ------------------------------------------------------------------

@pytest.mark.parametrize("host", ["ept", "npt"])
def test_cold_walk_is_24_reads_and_sets_ad(host):
    s, sp, w = make(host)
    data = s.alloc_data()
    sp.map(GVA, data)
    r = w.translate(req(s, sp, GVA + 0x123, write=True, user=True))
    assert isinstance(r, Translation)
    assert r.gpa == data + 0x123
    assert r.hpa == s.host.translate(data) + 0x123
    walk_reads = [m for m in w.log if m.phase == "walk"]
    assert len(walk_reads) == 24
    assert [m.dim for m in walk_reads[:5]] == ["host"] * 4 + ["guest"]
    # Guest: A on every level, D on the leaf only.
    for level in (4, 3, 2, 1):
        e = sp.read_entry(GVA, level)
        assert X.A.get(e) == 1
        assert X.D.get(e) == (level == 1)
    # Host: the leaves mapping guest table pages got A and D (table accesses are writes),
    # the leaf mapping the data page A and D (a data write).
    fmt = s.host.fmt
    for gpa in [sp.entry_addr(GVA, lvl) for lvl in (4, 3, 2, 1)] + [data]:
        e = s.host.read_entry(gpa, 1)
        assert e & fmt.A and e & fmt.D


def test_read_sets_no_dirty_on_data_and_ad_off_sets_nothing_on_host():
    s, sp, w = make("ept", ad=False)
    data = s.alloc_data()
    sp.map(GVA, data)
    before_host = s.host.read_entry(data, 1)
    assert isinstance(w.translate(req(s, sp)), Translation)
    assert s.host.read_entry(data, 1) == before_host        # host A/D disabled
    assert X.D.get(sp.read_entry(GVA, 1)) == 0
    assert X.A.get(sp.read_entry(GVA, 1)) == 1


def test_tlb_hit_has_no_memory_reference_and_write_to_clean_entry_walks():
    s, sp, w = make()
    sp.map(GVA, s.alloc_data())
    w.translate(req(s, sp))
    w.translate(req(s, sp))
    assert w.log == [] and w.counters.tlb_hits == 1
    w.translate(req(s, sp, write=True))                  # clean in the TLB: must set D
    assert any(m.op == "write" for m in w.log)
    assert X.D.get(sp.read_entry(GVA, 1)) == 1
    w.translate(req(s, sp, write=True))
    assert w.log == []


def test_neighbour_page_needs_two_references_with_warm_caches():
    s, sp, w = make()
    for i in range(4):
        sp.map(GVA + i * SIZE_4K, s.alloc_data(), A=1)
    w.translate(req(s, sp, GVA))
    w.translate(req(s, sp, GVA + SIZE_4K))
    reads = [m for m in w.log if m.op == "read" and m.phase == "walk"]
    # guest PTE (guest PWC + nested TLB for its table page) + host leaf of the data page.
    assert len(reads) == 2
    assert w.counters.gpwc_hits[2] == 1 and w.counters.hpwc_hits[2] >= 1


@pytest.mark.parametrize("gsize,hsize", [(SIZE_2M, SIZE_4K), (SIZE_1G, SIZE_2M),
                                         (SIZE_4K, SIZE_2M)])
def test_large_pages_both_dimensions(gsize, hsize):
    s = GuestSystem(guest_ram=1 << 30 if gsize == SIZE_1G else 64 << 20, host_page=hsize,
                    host_tables=2 << 20)
    sp = s.new_space()
    gpa = 0 if gsize == SIZE_1G else s.alloc_data(gsize)
    gva = 0x40_0000_0000
    sp.map(gva, gpa, size=gsize)
    w = Walker(s.mem)
    off = gsize - 8
    r = w.translate(WalkRequest(gva=gva + off, cr3=sp.root, hroot=s.hroot))
    assert isinstance(r, Translation), r
    assert r.gpa == gpa + off
    assert r.hpa == s.host.translate(gpa + off)
    assert r.size == min(gsize, hsize) and r.guest_size == gsize and r.host_size == hsize


# --- faults -------------------------------------------------------------------------------

def fault_of(w, rq) -> Fault:
    r = w.translate(rq)
    assert isinstance(r, Fault), r
    return r


@pytest.mark.parametrize("fields,access,code", [
    ({}, dict(), None),                                          # not present
    (dict(RW=0), dict(write=True), dict(P=1, W=1)),
    (dict(US=0), dict(user=True), dict(P=1, US=1)),
    (dict(XD=1), dict(fetch=True), dict(P=1, ID=1)),
    (dict(RW=0), dict(write=True, user=True), dict(P=1, W=1, US=1)),
])
def test_guest_page_faults(fields, access, code):
    s, sp, w = make()
    if code is not None:
        sp.map(GVA, s.alloc_data(), **fields)
    else:
        sp.map(GVA + SIZE_4K, s.alloc_data())                    # leaf table exists
        code = {}
    snapshot = s.mem.copy()
    f = fault_of(w, req(s, sp, **access))
    assert f.kind is FaultKind.PAGE_FAULT
    expect = dict(W=int(access.get("write", False)), US=int(access.get("user", False)),
                  ID=int(access.get("fetch", False)))
    expect.update(code)
    assert f.code == PF_ERROR.pack(**expect)
    assert s.mem.diff(snapshot) == []                            # nothing set on a fault
    assert all(a.valid() == 0 for a in w.caches.arrays())        # nothing cached


def test_supervisor_write_to_readonly_page_with_wp_off_succeeds():
    s, sp, w = make(wp=False)
    sp.map(GVA, s.alloc_data(), RW=0)
    assert isinstance(w.translate(req(s, sp, write=True)), Translation)
    assert isinstance(w.translate(req(s, sp, write=True, user=True)), Fault)


@pytest.mark.parametrize("level,bit", [(1, 50), (2, 13), (3, 20), (4, 7)])
def test_guest_reserved_bits_fault_with_rsvd(level, bit):
    s = GuestSystem(guest_ram=16 << 20, pa_bits=46)
    sp = s.new_space()
    w = Walker(s.mem, pa_bits=46)
    if level in (2, 3):
        size = SIZE_2M if level == 2 else SIZE_1G
        entry = X.pack(P=1, RW=1, US=1, PS=1) | (1 << bit)
        sp.write_entry(GVA & ~(size - 1), level, entry)
    else:
        sp.map(GVA, s.alloc_data())
        e = sp.read_entry(GVA, level)
        sp.write_entry(GVA, level, e | (1 << bit))
    f = fault_of(w, req(s, sp))
    assert f.kind is FaultKind.PAGE_FAULT and f.level == level
    assert PF_ERROR.RSVD.get(f.code) == 1 and PF_ERROR.P.get(f.code) == 1


def test_non_canonical_and_bad_roots():
    s, sp, w = make()
    assert fault_of(w, req(s, sp, gva=0x0000_8000_0000_0000)).kind is FaultKind.GP
    bad_eptp = [s.hroot & ~EPTP.WALK_LEN.mask | EPTP.WALK_LEN.set(0, 2),
                s.hroot & ~EPTP.MEMTYPE.mask | 2, s.hroot | 1 << 9, s.hroot | 1 << 60]
    for h in bad_eptp:
        assert fault_of(w, WalkRequest(gva=GVA, cr3=sp.root, hroot=h)).kind \
            is FaultKind.BAD_ROOT
    assert fault_of(w, WalkRequest(gva=GVA, cr3=sp.root | 1 << 55, hroot=s.hroot)).kind \
        is FaultKind.BAD_ROOT


def test_ept_violation_on_data_page_qualification():
    s, sp, w = make()
    data = s.alloc_data()
    sp.map(GVA, data, RW=1, US=1)
    s.host.protect(data, W=0, X=0)
    f = fault_of(w, req(s, sp, GVA + 8, write=True, user=True))
    assert f.kind is FaultKind.EPT_VIOLATION and f.gpa == data + 8 and f.level == 1
    assert f.code == EPT_QUAL.pack(WR=1, READABLE=1, GLA_VALID=1, GLA_XLAT=1, GLA_USER=1,
                                   GLA_RW=1)
    s.host.unmap(data)
    f = fault_of(w, req(s, sp, GVA, fetch=True))
    assert f.code == EPT_QUAL.pack(FETCH=1, GLA_VALID=1, GLA_XLAT=1, GLA_USER=1, GLA_RW=1)


def test_guest_table_on_readonly_host_page_faults_only_with_ad():
    for ad in (True, False):
        s, sp, w = make(ad=ad)
        sp.map(GVA, s.alloc_data())
        pt = sp.entry_addr(GVA, 1) & ~0xFFF                 # GPA of the guest leaf table
        s.host.protect(pt, W=0)
        r = w.translate(req(s, sp))
        if ad:
            assert isinstance(r, Fault) and r.kind is FaultKind.EPT_VIOLATION
            assert r.gpa == sp.entry_addr(GVA, 1)
            assert r.code == EPT_QUAL.pack(RD=1, WR=1, READABLE=1, EXECUTABLE=1,
                                           GLA_VALID=1)
        else:
            assert isinstance(r, Translation)


@pytest.mark.parametrize("entry", [E.pack(W=1, MEMTYPE=6),                # W without R
                                   E.pack(R=1, MEMTYPE=2),                # bad memtype
                                   E.pack(R=1, MEMTYPE=6) | 1 << 50])     # reserved addr bit
def test_ept_misconfiguration(entry):
    s = GuestSystem(guest_ram=16 << 20, pa_bits=46)
    sp = s.new_space()
    w = Walker(s.mem, pa_bits=46)
    data = s.alloc_data()
    sp.map(GVA, data)
    s.host.write_entry(data, 1, entry | s.host.translate(data))
    f = fault_of(w, WalkRequest(gva=GVA, cr3=sp.root, hroot=s.hroot))
    assert f.kind is FaultKind.EPT_MISCONFIG and f.gpa == data and f.level == 1


def test_npt_faults():
    s, sp, w = make("npt")
    data = s.alloc_data()
    sp.map(GVA, data)
    s.host.protect(data, US=0)                             # nested accesses are user
    f = fault_of(w, req(s, sp))
    assert f.kind is FaultKind.NPF and f.gpa == data
    assert f.code == NPF_INFO.pack(P=1, US=1, FINAL=1)
    s.host.protect(data, US=1, RW=0)
    f = fault_of(w, req(s, sp, write=True))
    assert f.code == NPF_INFO.pack(P=1, RW=1, US=1, FINAL=1)
    pt = sp.entry_addr(GVA, 1) & ~0xFFF
    s.host.protect(pt, RW=0)                               # guest table accesses are writes
    f = fault_of(w, req(s, sp))
    assert f.code == NPF_INFO.pack(P=1, RW=1, US=1, TABLE=1) and f.gpa == pt + (
        sp.entry_addr(GVA, 1) & 0xFFF)
    s.host.protect(pt, RW=1)
    s.host.unmap(data)
    f = fault_of(w, req(s, sp))
    assert f.code == NPF_INFO.pack(US=1, FINAL=1)


def test_npt_reserved_bit_is_npf_with_rsvd():
    s = GuestSystem(guest_ram=16 << 20, host="npt", pa_bits=46)
    sp = s.new_space()
    w = Walker(s.mem, host="npt", pa_bits=46)
    data = s.alloc_data()
    sp.map(GVA, data)
    s.host.write_entry(data, 1, s.host.read_entry(data, 1) | 1 << 47)
    f = fault_of(w, WalkRequest(gva=GVA, cr3=sp.root, hroot=s.hroot))
    assert f.kind is FaultKind.NPF and NPF_INFO.RSVD.get(f.code) == 1


def test_bus_errors_past_memory_and_poisoned():
    s, sp, w = make()
    data = s.alloc_data()
    sp.map(GVA, data)
    leaf_table = s.host.entry_addr(data, 1)
    s.mem.poison(leaf_table)
    f = fault_of(w, req(s, sp))
    assert f.kind is FaultKind.BUS_ERROR and f.addr == leaf_table and f.resp == "SLVERR"
    s.mem.unpoison()
    # A host entry pointing past the end of memory.
    e = s.host.read_entry(data, 2)
    s.host.write_entry(data, 2, (e & ~E.ADDR.mask) | (s.mem.size + (1 << 30)))
    f = fault_of(w, req(s, sp))
    assert f.kind is FaultKind.BUS_ERROR and f.resp == "DECERR" and f.addr >= s.mem.size


def test_self_referencing_guest_table_terminates():
    s, sp, w = make()
    # Recursive PML4 slot 510: the GVA with all indices 510 maps the PML4 page itself.
    sp.write_entry(0, 4, 0)                                   # make sure the table exists
    slot = 510
    pml4_gpa = sp.root
    sp.space.write(pml4_gpa + 8 * slot, X.pack(P=1, RW=1, US=1) | pml4_gpa)
    gva = 0xFFFF_0000_0000_0000 | slot << 39 | slot << 30 | slot << 21 | slot << 12
    r = w.translate(WalkRequest(gva=gva, cr3=sp.root, hroot=s.hroot))
    assert isinstance(r, Translation) and r.gpa == pml4_gpa


def test_faulting_walk_changes_no_memory_and_no_cache():
    s, sp, w = make()
    sp.map(GVA, s.alloc_data(), US=0)
    snap = s.mem.copy()
    fault_of(w, req(s, sp, user=True))
    assert s.mem.diff(snap) == []
    assert sum(a.valid() for a in w.caches.arrays()) == 0


# --- atomic update phase ------------------------------------------------------------------

def test_entry_changed_between_walk_and_update_restarts(monkeypatch):
    s, sp, w = make()
    data = s.alloc_data()
    sp.map(GVA, data)
    other = s.alloc_data()
    original = w._update
    calls = []

    def racing_update(plan):
        if not calls:          # another agent remaps the guest PTE once, mid-request
            sp.space.write(sp.entry_addr(GVA, 1), X.pack(P=1, RW=1, US=1) | other)
        calls.append(1)
        return original(plan)

    monkeypatch.setattr(w, "_update", racing_update)
    r = w.translate(req(s, sp))
    assert w.counters.restarts == 1
    assert isinstance(r, Translation) and r.gpa == other


def test_unchanging_conflict_gives_conflict_fault(monkeypatch):
    s, sp, w = make(max_restarts=2)
    sp.map(GVA, s.alloc_data())
    original = w._update
    flip = [0]

    def always_racing(plan):
        flip[0] ^= 1
        addr = sp.entry_addr(GVA, 1)
        sp.space.write(addr, sp.space.read(addr) ^ X.G.mask)
        return original(plan)

    monkeypatch.setattr(w, "_update", always_racing)
    f = fault_of(w, req(s, sp))
    assert f.kind is FaultKind.CONFLICT and w.counters.restarts == 3


def test_update_tolerates_concurrent_ad_and_engine_bits(monkeypatch):
    s, sp, w = make()
    data = s.alloc_data()
    sp.map(GVA, data)
    original = w._update

    def scanner_meanwhile(plan):     # the scanner writes its level bits into the host leaf
        addr = s.host.entry_addr(data, 1)
        s.mem.write(addr, s.mem.read(addr) | (3 << 52))
        return original(plan)

    monkeypatch.setattr(w, "_update", scanner_meanwhile)
    assert isinstance(w.translate(req(s, sp, write=True)), Translation)
    assert w.counters.restarts == 0
    e = s.host.read_entry(data, 1)
    assert e >> 52 & 3 == 3 and e & E.A.mask and e & E.D.mask


# --- invalidation and scanner coherence ---------------------------------------------------

def test_stale_tlb_until_invalidate_gva():
    s, sp, w = make()
    a, b = s.alloc_data(), s.alloc_data()
    sp.map(GVA, a)
    assert w.translate(req(s, sp)).gpa == a
    sp.space.write(sp.entry_addr(GVA, 1), X.pack(P=1, RW=1, US=1, A=1) | b)
    assert w.translate(req(s, sp)).gpa == a                 # stale, as on x86
    assert w.invalidate_gva(GVA + 0x10) >= 1
    assert w.translate(req(s, sp)).gpa == b


def test_invalidate_root_and_all():
    s, sp, w = make()
    sp.map(GVA, s.alloc_data())
    w.translate(req(s, sp))
    assert w.invalidate_root(cr3=sp.root + 0x1000) == 0      # another space: untouched
    assert w.invalidate_root(hroot=s.hroot) > 0
    assert sum(a.valid() for a in w.caches.arrays()) == 0
    w.translate(req(s, sp))
    assert w.invalidate_all() > 0
    with pytest.raises(ValueError):
        w.invalidate_root()


def test_scanner_clear_drops_nested_tlb_so_next_access_sets_a_again():
    s, sp, w = make()
    data = s.alloc_data()
    sp.map(GVA, data)
    w.translate(req(s, sp))
    addr = s.host.entry_addr(data, 1)
    s.mem.write(addr, s.mem.read(addr) & ~E.A.mask)           # the scanner's test-and-clear
    w.translate(req(s, sp))
    assert not s.mem.read(addr) & E.A.mask                    # cached: A not seen cleared
    assert w.scanner_cleared(s.hroot, data, SIZE_4K) == 1
    w.translate(req(s, sp))
    assert s.mem.read(addr) & E.A.mask


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="'vmx'"):
        WalkerConfig(host="vmx")
    with pytest.raises(ValueError, match="12"):
        WalkerConfig(tlb_entries=12)
    with pytest.raises(ValueError, match="99"):
        WalkerConfig(pa_bits=99)
    with pytest.raises(ValueError):
        WalkRequest(gva=0, cr3=0, hroot=0, write=True, fetch=True)


# --- properties against a brute-force reference -------------------------------------------

def reference(s, sp, rq, wp=True):
    """Brute force from the builders' own records: result kind and GPA/HPA."""
    gm = sp.lookup(rq.gva & ((1 << 48) - 1))
    if gm is None:
        return "page_fault", None
    rw, us, xd = X.RW.get(gm.entry), X.US.get(gm.entry), X.XD.get(gm.entry)
    if (rq.user and not us) or (rq.write and not rw and (rq.user or wp)) or (rq.fetch and xd):
        return "page_fault", None
    gpa = gm.pa + (rq.gva & (gm.size - 1))
    hm = s.host.lookup(gpa)
    if hm is None:
        return "host", None
    if s.host.kind == "ept":
        r, w, x = E.R.get(hm.entry), E.W.get(hm.entry), E.X.get(hm.entry)
        ok = w if rq.write else (x if rq.fetch else r)
    else:
        ok = X.P.get(hm.entry) and X.US.get(hm.entry) and (X.RW.get(hm.entry) if rq.write else
                                     not (rq.fetch and X.XD.get(hm.entry)))
    if not ok:
        return "host", None
    return "ok", (gpa, hm.pa + (gpa & (hm.size - 1)))


@pytest.mark.parametrize("host", ["ept", "npt"])
@settings(max_examples=scale(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_walks_agree_with_brute_force(host, seed):
    rnd = random.Random(seed)
    s, sp, gvas = random_system(rnd, host)
    w = Walker(s.mem, host=host, tlb_entries=4, tlb_large_entries=2, pwc_entries=2)
    kinds = set()
    for _ in range(60):
        gva = pick(rnd, gvas) if rnd.random() < 0.9 else rnd.randrange(1 << 47)
        acc = rnd.choice([{}, {"write": True}, {"fetch": True}])
        rq = WalkRequest(gva=gva, cr3=sp.root, hroot=s.hroot, user=rnd.random() < 0.5, **acc)
        kind, addrs = reference(s, sp, rq)
        r = w.translate(rq)
        if kind == "ok":
            assert isinstance(r, Translation), (seed, rq, r)
            assert (r.gpa, r.hpa) == addrs
            leaf = sp.read_entry(rq.gva & ~(r.guest_size - 1) & ((1 << 48) - 1),
                                 {SIZE_4K: 1, SIZE_2M: 2, SIZE_1G: 3}[r.guest_size])
            assert X.A.get(leaf) and (X.D.get(leaf) or not rq.write)
        elif kind == "page_fault":
            assert isinstance(r, Fault) and r.kind is FaultKind.PAGE_FAULT, (seed, rq, r)
        else:
            assert isinstance(r, Fault), (seed, rq, r)
            assert r.kind is (FaultKind.EPT_VIOLATION if host == "ept" else FaultKind.NPF)
        kinds.add(kind)
    assert "ok" in kinds, seed


@pytest.mark.parametrize("host", ["ept", "npt"])
@settings(max_examples=scale(10), deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_caches_are_transparent(host, seed):
    """With nobody else writing the tables, a walker with caches and one without give the
    same answers and leave the same memory image."""
    rnd = random.Random(seed)
    s, sp, gvas = random_system(rnd, host)
    mem2 = s.mem.copy()
    cached = Walker(s.mem, host=host, tlb_entries=8, tlb_large_entries=2, pwc_entries=4)
    plain = Walker(mem2, host=host, tlb_entries=0, tlb_large_entries=0, pwc_entries=0)
    for _ in range(80):
        gva = pick(rnd, gvas)
        acc = rnd.choice([{}, {"write": True}, {"fetch": True}])
        rq = WalkRequest(gva=gva, cr3=sp.root, hroot=s.hroot, user=rnd.random() < 0.5, **acc)
        assert cached.translate(rq) == plain.translate(rq), (seed, rq)
    assert s.mem.diff(mem2) == []
    assert cached.counters.mem_reads < plain.counters.mem_reads


@settings(max_examples=scale(10), deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_isolation_whatever_the_guest_writes(seed):
    """Random guest writes into its own tables never make the walker touch host memory
    that the host table does not map for the guest, other than host-table pages."""
    rnd = random.Random(seed)
    s, sp, gvas = random_system(rnd, "ept")
    w = Walker(s.mem)
    host_tables_end = s.data_base
    table_pages = [sp.entry_addr(g & ((1 << 48) - 1), lvl) for g, _ in gvas for lvl in (1, 2)]
    table_pages = [a & ~0xFFF for a in table_pages if a is not None]
    for _ in range(40):
        page = rnd.choice(table_pages)
        sp.space.write(page + 8 * rnd.randrange(512), rnd.getrandbits(64))
        rq = WalkRequest(gva=pick(rnd, gvas), cr3=sp.root,
                         hroot=s.hroot, write=rnd.random() < 0.5)
        w.translate(rq)
        for m in w.log:
            if m.dim == "host":
                assert m.addr < host_tables_end, (seed, m)
            else:
                assert s.data_base <= m.addr < s.data_base + s.guest_ram, (seed, m)


def test_invalidate_gva_of_a_kernel_address():
    s, sp, w = make()
    kva = 0xFFFF_8880_0000_0000
    sp.map(kva & ((1 << 48) - 1), s.alloc_data())
    assert isinstance(w.translate(req(s, sp, kva)), Translation)
    assert w.invalidate_gva(kva) >= 1
