"""Nested page walker: guest x86-64 paging over EPT or NPT, in hardware.

The hardware twin of :mod:`model.walker`; the model's module docstring is the contract, and
co-simulation holds this unit to it: the same response for every request, the same memory
references in the same order, the same memory image and the same counters.

Streams (payloads are the shared layouts of :mod:`thermocline.layouts`):

* ``req`` (``WALK_REQ``): one translation request.
* ``resp`` (``WALK_RESP``): its translation or fault, in request order.
* ``inv`` (``WALK_INV``): invalidation commands and the scanner's A-bit clears. A command is
  accepted only between requests: one that arrives during a walk waits until that walk has
  answered, and it is carried out before the next request is accepted (commands first).

Memory: single-beat 64-bit reads and writes over ``m_axi``, one at a time (each reference of
a walk depends on the one before). A read or write answered SLVERR/DECERR ends the request
with a ``bus_error`` fault.

Timing (a cycle is one clock). Every cache lookup and every entry read is registered before
it is used, so no cycle holds more than one lookup or one decode:

* a request is accepted once its guest lookup and the nested lookup of the GPA its 4 KiB
  guest TLB slot gives are registered: after three cycles on offer, the last one idle (the
  offer overlaps the response and cache fills of the request before);
* a TLB hit in both dimensions then answers two cycles after acceptance (host decision,
  response) when the guest page is 4 KiB, four when it is larger (the nested lookup is
  repeated for the right slot);
* each memory reference costs its latency plus one cycle: its data (or write response) is
  registered, and the state that decodes it offers the next read at once;
* a host translation adds two cycles (decision, then its first read offered; or the guest
  entry's read, when the nested TLB hits); its lookup overlaps the decoding of the guest
  entry that leads to its GPA;
* the update phase starts as the last entry is decoded; each of its entries costs a read
  and, if A or D is missing, a write;
* an invalidation of one address takes six cycles from acceptance to the next acceptance,
  a sweep (``all``, ``root``) four per slot of the deepest array; the scanner's
  ``scan_clear`` commands, one nested-TLB slot each, follow each other every two cycles
  (read; compare, with the next one accepted; the drop is written as the next slot is
  read).

Atomic A/D (SPEC §2): the update phase's read and write of one entry must not be split by a
write of another agent that the A/D write would undo. The write sets only the byte that
holds A and D (``WSTRB``), so a write to the rest of the word in between survives it; an
integration whose other agents rewrite whole words can hold the memory port from the
update read to its write, while ``lock`` is high.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from thermocline import layouts as L
from thermocline.layouts import PAGE_SHIFT
from .axi import AxiParams, Burst, axi4_signature
from .layouts import pack, struct
from .walkcache import ARRAYS, GPWC, GTLB, HPWC, NTLB, CacheArray, root_tag, root_tag_width

__all__ = ["Walker", "COUNTERS", "SYNTH_DESIGNS"]

#: Performance counters, in the order of the ``counters`` port (32 bits each, wrapping).
COUNTERS = (
    ["requests", "walks", "mem_reads", "mem_writes", "restarts", "tlb_hits", "gtlb_hits",
     "ntlb_hits", "gpwc_hits_4", "gpwc_hits_3", "gpwc_hits_2", "hpwc_hits_4", "hpwc_hits_3",
     "hpwc_hits_2"]
    + [f"fault_{k}" for k in L.FAULT_KINDS[1:]]
)

FAULT = {name: i for i, name in enumerate(L.FAULT_KINDS)}
INV = {name: i for i, name in enumerate(L.INV_OPS)}

#: Most entries the walk phase of one attempt reads: 4 guest entries, and 5 host
#: translations (one per guest entry, one of the final GPA) of at most 4 reads each.
LIST_DEPTH = 24


def _upd_layout(pa_bits):
    """Update-list record: an entry read in the walk phase that needs A and/or D."""
    return data.StructLayout({"addr": pa_bits - 3, "old": 64, "host": 1, "set_a": 1,
                              "set_d": 1, "level": 3})


def _fill_layout(host, pa_bits):
    """Fill-list record: a cache slot to write once the request succeeds (``select``: the
    array, one-hot; ``key``: the page number of the GPA of a host slot, guest slots are keyed
    by the request's GVA)."""
    fields = {"select": len(ARRAYS), "key": pa_bits - 12, "frame": pa_bits - 12,
              "rights": 4 if host == "ept" else 3, "dirty": 1}
    if host == "ept":
        fields["memtype"] = 3
    return data.StructLayout(fields)


def _pick(code, level_1, level_2, level_3, level_4):
    """The value for the level ``code + 1`` (``code``: a 2-bit signal)."""
    return Mux(code[1], Mux(code[0], level_4, level_3), Mux(code[0], level_2, level_1))


def _byte_of(layout):
    """``WSTRB`` of the one byte holding ``layout``'s A and D bits: an update writes only
    that byte, so a write of another agent to the rest of the word (the scanner's level
    bits) between the update's read and its write is kept."""
    byte = layout.A.lsb // 8
    assert layout.D.lsb // 8 == byte
    return 1 << byte


def _or(values):
    """The OR of ``values`` (a one-hot choice when each is gated by its select)."""
    values = list(values)
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result


def _index(addr, code):
    """Entry number (9 bits) of ``addr`` in its table at level ``code + 1``."""
    a = addr.as_unsigned()
    if len(a) < 48:
        a = Cat(a, Const(0, 48 - len(a)))
    return _pick(code, a[12:21], a[21:30], a[30:39], a[39:48])


class Walker(wiring.Component):
    """The nested walker (see the module docstring).

    Parameters (keyword-only, the same names and meaning as ``model.walker.WalkerConfig``)
    ----------
    host : "ept" or "npt"
    pa_bits : int
        Physical-address width of both dimensions, 32..52.
    tlb_entries, tlb_large_entries, pwc_entries : int
        Slots per array (powers of two, or 0 to leave that cache out).
    wp, nxe, mbec, execute_only : bool
    max_restarts : int
        Update-phase retries before a ``conflict`` fault, 0..15.
    axi : AxiParams
        Memory port widths; ``data_width`` must be 64 and ``addr_width`` at least
        ``pa_bits``.

    Members
    -------
    req : In(stream of WALK_REQ)
    resp : Out(stream of WALK_RESP)
    inv : In(stream of WALK_INV)
    m_axi : Out(AXI4 master)
    lock : Out(1)
        High from an update-phase read to its write: the memory port must not be given to
        another agent's write meanwhile.
    busy : Out(1)
        A request or command is in progress.
    counters : Out(struct of 32-bit counters, see :data:`COUNTERS`)
    """

    def __init__(self, *, host: str = "ept", pa_bits: int = 52, tlb_entries: int = 16,
                 tlb_large_entries: int = 4, pwc_entries: int = 8, wp: bool = True,
                 nxe: bool = True, mbec: bool = False, execute_only: bool = True,
                 max_restarts: int = 3, axi: AxiParams | None = None):
        if host not in ("ept", "npt"):
            raise ValueError(f"host must be 'ept' or 'npt', got {host!r}")
        if not 32 <= pa_bits <= 52:
            raise ValueError(f"pa_bits must be 32..52, got {pa_bits}")
        for name, n in (("tlb_entries", tlb_entries), ("tlb_large_entries", tlb_large_entries),
                        ("pwc_entries", pwc_entries)):
            if not isinstance(n, int) or n < 0 or n & (n - 1) or n > 4096:
                raise ValueError(f"{name} must be 0 or a power of two up to 4096, got {n!r}")
        if not 0 <= max_restarts <= 15:
            raise ValueError(f"max_restarts must be 0..15, got {max_restarts}")
        axi = axi or AxiParams(addr_width=52, data_width=64, id_width=4)
        if axi.data_width != 64:
            raise ValueError(f"the walker's memory port is 64 bits wide, got {axi.data_width}")
        if axi.addr_width < pa_bits:
            raise ValueError(f"AXI address width {axi.addr_width} is below pa_bits {pa_bits}")
        self._p = dict(host=host, pa_bits=pa_bits, tlb_entries=tlb_entries,
                       tlb_large_entries=tlb_large_entries, pwc_entries=pwc_entries, wp=wp,
                       nxe=nxe, mbec=mbec, execute_only=execute_only,
                       max_restarts=max_restarts)
        self._axi = axi
        super().__init__({
            "req": In(stream.Signature(struct(L.WALK_REQ))),
            "resp": Out(stream.Signature(struct(L.WALK_RESP))),
            "inv": In(stream.Signature(struct(L.WALK_INV))),
            "m_axi": Out(axi4_signature(axi)),
            "lock": Out(1),
            "busy": Out(1),
            "counters": Out(data.StructLayout({c: 32 for c in COUNTERS})),
        })

    @property
    def params(self) -> dict:
        """The walker parameters (as ``model.walker.WalkerConfig`` keywords)."""
        return dict(self._p)

    @property
    def axi(self) -> AxiParams:
        return self._axi

    def _sizes(self):
        p = self._p
        out = []
        for kind, level, shift in ARRAYS:
            if kind in ("gtlb", "ntlb"):
                out.append(p["tlb_entries"] if level == 1 else p["tlb_large_entries"])
            else:
                out.append(p["pwc_entries"])
        return out

    def elaborate(self, platform):
        m = Module()
        p = self._p
        host = p["host"]
        ept = host == "ept"
        pa = p["pa_bits"]
        fw = pa - 12                               # frame (page number) width
        hrw = 4 if ept else 3                      # host rights: r w x xu / rw us nx
        above = ((1 << 52) - 1) & ~((1 << pa) - 1)
        X = L.X86_ENTRY
        H = L.EPT_ENTRY if ept else L.X86_ENTRY
        axi = self.m_axi
        cnt = self.counters

        # Counter increments are registered events, applied the cycle after (``busy`` stays
        # high until they are); ``direct`` increments come from registers already.
        events = Signal(len(COUNTERS))
        direct = {name: Const(0) for name in COUNTERS}
        m.d.sync += events.eq(0)

        def inc(name):
            m.d.sync += events[COUNTERS.index(name)].eq(1)

        # --- cache arrays ------------------------------------------------------------------
        sizes = self._sizes()
        arrays = []
        for (kind, level, _), entries in zip(ARRAYS, sizes):
            if entries:
                # Read at a registered index and compared with registers, two bits to one in
                # the lookup cycle (one LUT level after the read). Guest arrays reduce each
                # tag to one bit in the next cycle (a request is accepted once its guest
                # lookup is registered, so this costs no cycle).
                a = CacheArray(kind=kind, level=level, entries=entries, host=host, pa_bits=pa,
                               chunk=2 if kind in ("gtlb", "gpwc") else 8,
                               settle=kind in ("gtlb", "gpwc"))
                m.submodules[f"{kind}{level}"] = a
                arrays.append(a)
            else:
                arrays.append(None)

        def field_of(n, name, width):
            """Field ``name`` of array ``n``'s lookup register (0 if the array is left out)."""
            return getattr(arrays[n], name) if arrays[n] is not None else Const(0, width)


        def hit(n):
            """Array ``n``'s last lookup found the page in the request's context."""
            a = arrays[n]
            if a is None:
                return Const(0)
            match = a.valid & a.hroot_eq & a.page_matches
            return match & a.cr3_eq if a.guest else match

        # --- request and context -------------------------------------------------------------
        r_va = Signal(48, reset_less=True)        # GVA; an invalidation's address
        r_write = Signal(reset_less=True)
        r_fetch = Signal(reset_less=True)
        r_user = Signal(reset_less=True)
        k_cr3 = Signal(fw, reset_less=True)       # guest root frame (request or command)
        k_hroot = Signal(root_tag_width(host, pa), reset_less=True)  # host root tag (the same)
        ad = k_hroot[1] if ept else Const(1)       # host A/D enabled (EPTP bit 6)

        # --- walk state ----------------------------------------------------------------------
        attempts = Signal(4, reset_less=True)
        last_attempt = Signal(reset_less=True)    # attempts == max_restarts
        any_ref = Signal(reset_less=True)         # a memory reference succeeded
        spec = Signal(reset_less=True)            # the host lookup assumed the 4K guest slot
        spec_resp = Signal()                      # RESP entered before the nested TLB hit
        upd_empty = Signal(reset_less=True)       # no update record pushed this attempt
        g_use = Signal(3, reset_less=True)        # guest TLB slot used, one-hot by level
        g_start = Signal(2, reset_less=True)      # level a guest walk starts at, minus 1
        g_src = Signal(2, reset_less=True)        # the final GPA: walk, 2M/1G/4K TLB slot
        g_goto = Signal(7, reset_less=True)       # ... what ht_gpa becomes (one-hot): kept,
                                                  # a 2M or 1G slot's GPA, a walk's first
                                                  # entry's GPA (at level 1, 2, 3 or 4)
        g_level = Signal(3, reset_less=True)
        pte_ok = Signal(reset_less=True)          # this attempt read the guest leaf entry,
        pte_gpa = Signal(pa, reset_less=True)     # ... at this GPA (reported with a success)
        g_rights = Signal(3, reset_less=True)     # rw, us, xd
        ht_gpa = Signal(pa, reset_less=True)      # GPA being translated; a command's address
        ht_gpa_next = Signal(pa)                  # ... what it is next cycle
        m.d.comb += ht_gpa_next.eq(ht_gpa)
        m.d.sync += ht_gpa.eq(ht_gpa_next)
        ht_final = Signal(reset_less=True)        # ... is the data access (not an entry's)
        ht_level = Signal(3, reset_less=True)
        ht_rights = Signal(hrw, reset_less=True)
        hs_start = Signal(2, reset_less=True)     # level a host walk starts at, minus 1
        hd_use = Signal(3, reset_less=True)       # nested TLB slot used, one-hot by level
        hs_use = Signal(4, reset_less=True)       # the host walk's start (if no slot), one-hot
        hd_tlb = Signal(reset_less=True)          # host result: nested TLB (else the walk)
        hd_level = Signal(2, reset_less=True)     # host result: leaf level
        w_frame = Signal(fw, reset_less=True)     # host result of a walk: frame,
        w_rights = Signal(hrw, reset_less=True)   # rights,
        w_memtype = Signal(3, reset_less=True)    # memory type
        res_glevel = Signal(2, reset_less=True)   # guest result: leaf level, rights
        res_grights = Signal(3, reset_less=True)
        rd_addr = Signal(pa - 3, reset_less=True) # word address of the memory reference
        e_r = Signal(64, reset_less=True)         # the word read
        resp_r = Signal(2, reset_less=True)       # its response
        as_write = Signal()
        m.d.comb += as_write.eq(ad & (r_write | ~ht_final))

        # --- invalidation command ----------------------------------------------------------
        # Decoded when accepted; "all" and a sweep after reset.
        inv_all = Signal(init=1)                  # drop every slot
        inv_sweep = Signal(init=1)                # visit every slot ("all", "root")
        inv_gva = Signal(reset_less=True)         # guest slots of the address's page
        inv_gpa = Signal(reset_less=True)         # host slots of the address's page
        inv_groot = Signal(reset_less=True)       # guest slots of the roots ("root")
        inv_hroot = Signal(reset_less=True)       # host slots of the host root ("root")
        inv_scan = Signal(3, reset_less=True)     # the nested TLB slot (by level) of the page
        cr3_any = Signal(reset_less=True)         # no guest root to match
        hroot_any = Signal(reset_less=True)       # no host root to match
        k_cr3_ok = Signal(reset_less=True)        # the command's CR3 could be a request's,
        k_hroot_ok = Signal(reset_less=True)      # ... its host root too,
        key_ok = Signal(reset_less=True)          # ... its address a GPA
        max_depth = max(sizes + [1])
        sweep = Signal(max(1, ceil_log2(max_depth)))
        sweep_end = Signal()                       # the slot being dropped is the last
        # What the arrays look up, as flip-flops (not decoded from the state): the request
        # being offered (while idle), every slot in turn (while sweeping).
        primed = Signal()                          # the lookup is of the request on offer
        primed2 = Signal()                         # ... so is the host arrays' lookup (of
                                                   # the 4K guest TLB slot's GPA, loaded in
                                                   # IDLE with the host root and the flags)
        sel_sweep = Signal(init=1)

        # --- fault -----------------------------------------------------------------------------
        f_kind = Signal(4, reset_less=True)
        f_level = Signal(3, reset_less=True)
        f_resp = Signal(2, reset_less=True)
        f_p = Signal(reset_less=True)             # P of a #PF or NPF
        f_rsvd = Signal(reset_less=True)          # RSVD of a #PF or NPF
        f_rights = Signal(hrw, reset_less=True)   # host rights of an EPT violation

        # --- update and fill lists ---------------------------------------------------------
        m.submodules.upd = upd_mem = Memory(shape=_upd_layout(pa), depth=LIST_DEPTH, init=[])
        m.submodules.fill = fill_mem = Memory(shape=_fill_layout(host, pa), depth=LIST_DEPTH,
                                              init=[])
        upd_w = upd_mem.write_port()
        upd_r = upd_mem.read_port()
        fill_w = fill_mem.write_port()
        fill_r = fill_mem.read_port()
        upd_n = Signal(range(LIST_DEPTH + 1), reset_less=True)
        upd_count = Signal(range(LIST_DEPTH + 1), reset_less=True)  # ... counted when pushed
        fill_n = Signal(range(LIST_DEPTH + 1), reset_less=True)
        upd_i = Signal(range(LIST_DEPTH + 1), reset_less=True)
        upd_i1 = Signal(range(LIST_DEPTH + 2), reset_less=True)  # upd_i + 1
        upd_ra = Signal(range(LIST_DEPTH + 2), reset_less=True)  # record the list shows next
        fill_i = Signal(range(LIST_DEPTH + 1), reset_less=True)
        fill_pending = Signal()                   # the fill list shows a record to write
        m.d.comb += [upd_r.addr.eq(upd_ra), fill_r.addr.eq(fill_i)]
        rec = upd_r.data
        # Record upd_i is kept here (its address in rd_addr) once taken: the list moves on to
        # the next record meanwhile.
        u_old = Signal(64, reset_less=True)
        u_host = Signal(reset_less=True)
        u_set_a = Signal(reset_less=True)
        u_set_d = Signal(reset_less=True)
        u_level = Signal(3, reset_less=True)
        bits = Mux(u_host,                         # the A/D bits the record sets
                   Mux(u_set_a, H.A.mask, 0) | Mux(u_set_d, H.D.mask, 0),
                   Mux(u_set_a, X.A.mask, 0) | Mux(u_set_d, X.D.mask, 0))
        m.d.comb += axi.wdata.eq(e_r | bits)

        u_last = Signal(reset_less=True)           # ... and is the last one

        def take_record(following):
            """Take the record the list shows; the list is to show record ``following``."""
            m.d.sync += [rd_addr.eq(rec.addr), u_old.eq(rec.old), u_host.eq(rec.host),
                         u_set_a.eq(rec.set_a), u_set_d.eq(rec.set_d), u_level.eq(rec.level),
                         upd_ra.eq(following), u_last.eq(following == upd_count)]
        u_changed = Signal(reset_less=True)       # the entry changed since the walk read it
        u_need = Signal(reset_less=True)          # its A/D bits are still missing

        # A decoding state pushes the records of the entry it decodes; they are written the
        # cycle after, from registers (what the decoding state changes is kept here) and
        # from what stays (e_r, ht_gpa, the rights accumulated so far).
        p_upd = Signal()                           # write an update record,
        p_fill = Signal()                          # ... a fill record
        p_host = Signal(reset_less=True)           # ... of a host entry
        p_addr = Signal(pa - 3, reset_less=True)   # ... read at this address,
        p_level = Signal(3, reset_less=True)       # ... at this level
        p_set_a = Signal(reset_less=True)
        p_set_d = Signal(reset_less=True)
        p_select = Signal(len(ARRAYS), reset_less=True)
        m.d.sync += [p_upd.eq(0), p_fill.eq(0)]
        m.d.comb += [upd_w.en.eq(p_upd), upd_w.addr.eq(upd_n), fill_w.en.eq(p_fill),
                     fill_w.addr.eq(fill_n)]
        with m.If(p_upd):
            m.d.sync += [upd_n.eq(upd_n + 1), upd_empty.eq(0)]
        with m.If(p_fill):
            m.d.sync += fill_n.eq(fill_n + 1)

        def push(update):
            """Push the fill record (and, if ``update``, the update record) of the entry."""
            m.d.sync += [p_upd.eq(update), p_fill.eq(1), upd_count.eq(upd_count + update)]

        # --- AXI: single 64-bit beats; write address and data from registers ------------------
        m.d.comb += [
            axi.arlen.eq(0), axi.arsize.eq(3), axi.arburst.eq(Burst.INCR), axi.arid.eq(0),
            axi.awlen.eq(0), axi.awsize.eq(3), axi.awburst.eq(Burst.INCR), axi.awid.eq(0),
            axi.wstrb.eq(Mux(u_host, _byte_of(H), _byte_of(X))), axi.wlast.eq(1),
            axi.awaddr.eq(Cat(Const(0, 3), rd_addr)),
        ]

        # --- entry decoding --------------------------------------------------------------------
        # The deep parts of the decoding (reserved bits, rights) are computed from the read
        # data as it arrives and registered with the word; the rest from the registered word.
        def leaf_at(e, level):
            return (level == 1) | (((level == 2) | (level == 3)) & e[X.PS.lsb])

        def reserved(e, level, mask_of):
            """``e`` has a bit set that ``mask_of(level, leaf)`` reserves at ``level``."""
            ps = e[X.PS.lsb]
            mask = Mux(level == 1, mask_of(1, True),
                       Mux(level == 2, Mux(ps, mask_of(2, True), mask_of(2, False)),
                           Mux(level == 3, Mux(ps, mask_of(3, True), mask_of(3, False)),
                               mask_of(4, False))))
            return (e & mask) != 0

        def host_rights(e):
            """The host rights accumulated down to the entry ``e``."""
            if ept:
                return ht_rights & Cat(e[0], e[1], e[2], e[H.XU.lsb])
            return Cat(ht_rights[0] & e[X.RW.lsb], ht_rights[1] & e[X.US.lsb],
                       ht_rights[2] | e[X.XD.lsb])

        def host_bad(e):
            """``e`` (at ht_level) is a misconfigured EPT entry or has NPT reserved bits."""
            if ept:
                mt = e[H.MEMTYPE.lsb:H.MEMTYPE.lsb + 3]
                bad_mt = (mt == 2) | (mt == 3) | (mt == 7)
                x_only = 0 if p["execute_only"] else (e[2] & ~e[0])
                rsvd = reserved(e, ht_level, lambda lvl, leaf: L.ept_reserved_mask(lvl, leaf, pa))
                return (e[1] & ~e[0]) | x_only | rsvd | (leaf_at(e, ht_level) & bad_mt)
            return reserved(e, ht_level,
                            lambda lvl, leaf: L.x86_reserved_mask(lvl, leaf and lvl != 1, pa))

        def host_allows(rights, final):
            if ept:
                r, w, x, xu = rights[0], rights[1], rights[2], rights[3]
                fetch_right = Mux(r_user, xu, x) if p["mbec"] else x
                data_ok = Mux(r_write, w, Mux(r_fetch, fetch_right, r))
                table_ok = r & (w | ~ad)
                return Mux(final, data_ok, table_ok)
            rw, us, nx = rights[0], rights[1], rights[2]
            data_ok = us & Mux(r_write, rw, ~(r_fetch & nx))
            return Mux(final, data_ok, us & rw)

        def guest_rights(e):
            """The guest rights accumulated down to the entry ``e``."""
            return Cat(g_rights[0] & e[X.RW.lsb], g_rights[1] & e[X.US.lsb],
                       g_rights[2] | (e[X.XD.lsb] if p["nxe"] else 0))

        def guest_bad(e):
            """``e`` (at g_level) has reserved bits set."""
            return reserved(e, g_level, lambda lvl, leaf: L.x86_reserved_mask(
                lvl, leaf and lvl != 1, pa, p["nxe"]))

        def guest_allows(rights, write=r_write, fetch=r_fetch, user=r_user):
            rw, us, xd = rights[0], rights[1], rights[2]
            user_bad = user & ~us
            write_bad = write & ~rw & (user | (1 if p["wp"] else 0))
            fetch_bad = fetch & xd
            return ~(user_bad | write_bad | fetch_bad)

        h_bad_r = Signal(reset_less=True)         # registered with the word: host_bad,
        h_ok_r = Signal(reset_less=True)          # ... the host rights allow the access,
        g_bad_r = Signal(reset_less=True)         # ... guest_bad,
        g_ok_r = Signal(reset_less=True)          # ... the guest rights allow the access

        e = e_r
        h_leaf = Signal(reset_less=True)           # ... the host entry is a leaf,
        h_present = Signal(reset_less=True)        # ... present;
        g_leaf = Signal(reset_less=True)           # ... the guest entry is a leaf;
        h_next = Signal(pa - 3)                    # what the host entry arriving leads to
        g_next = Signal(pa)                        # (of the word arriving)
        rdata = axi.rdata
        d_leaf = leaf_at(rdata, ht_level)
        d_gleaf = leaf_at(rdata, g_level)
        m.d.comb += g_next.eq(Mux(
            d_gleaf,
            Cat(r_va[:12], Mux(g_level == 1, rdata[12:21], r_va[12:21]),
                Mux(g_level == 3, r_va[21:30], rdata[21:30]), rdata[30:pa]),
            Cat(Const(0, 3), _index(r_va, g_level - 2), rdata[12:pa])))

        h_rights_new = Signal(hrw)
        m.d.comb += h_rights_new.eq(host_rights(e))
        memtype = e[H.MEMTYPE.lsb:H.MEMTYPE.lsb + 3] if ept else Const(0, 3)
        h_need_a = ad & ~e[H.A.lsb]
        h_need_d = ad & h_leaf & as_write & ~e[H.D.lsb]
        g_rights_new = Signal(3)
        m.d.comb += g_rights_new.eq(guest_rights(e))
        g_need_a = ~e[X.A.lsb]
        g_need_d = g_leaf & r_write & ~e[X.D.lsb]

        def array_of(level, leaf, tlbs, pwcs):
            """The array (one-hot) a fill of an entry at ``level`` goes to."""
            return Mux(leaf, Mux(level == 1, 1 << tlbs[1],
                                 Mux(level == 2, 1 << tlbs[2], 1 << tlbs[3])),
                       Mux(level == 4, 1 << pwcs[4],
                           Mux(level == 3, 1 << pwcs[3], 1 << pwcs[2])))

        # --- host result: the nested TLB slot used, or the host walk's leaf --------------------
        nf = {lvl: field_of(NTLB[lvl], "frame", fw - (9 * (lvl - 1))) for lvl in (1, 2, 3)}
        hres_rights = Mux(hd_tlb, Mux(hd_level == 1, field_of(NTLB[1], "rights", hrw),
                                      Mux(hd_level == 2, field_of(NTLB[2], "rights", hrw),
                                          field_of(NTLB[3], "rights", hrw))), w_rights)
        if ept:
            hres_memtype = Mux(hd_tlb, Mux(hd_level == 1, field_of(NTLB[1], "memtype", 3),
                                           Mux(hd_level == 2, field_of(NTLB[2], "memtype", 3),
                                               field_of(NTLB[3], "memtype", 3))), w_memtype)
        else:
            hres_memtype = Const(0, 3)

        def host_addr(tlb):
            """The HPA ht_gpa translates to (``tlb``: by the nested TLB slot used; or else
            as hd_tlb says)."""
            def frame(lo, hi):
                """Frame bits ``lo:hi`` (counted from address bit 12) of the leaf."""
                one = nf[1][lo:hi]
                two = nf[2][lo - 9:hi - 9] if lo >= 9 else one
                three = nf[3][lo - 18:hi - 18] if lo >= 18 else two
                slot = Mux(hd_level == 1, one, Mux(hd_level == 2, two, three))
                return slot if tlb else Mux(hd_tlb, slot, w_frame[lo:hi])
            return Cat(ht_gpa[:12],
                       Mux(hd_level == 1, frame(0, 9), ht_gpa[12:21]),
                       Mux(hd_level == 3, ht_gpa[21:30], frame(9, 18)),
                       frame(18, fw))

        hres_addr = Signal(pa)                    # the HPA ht_gpa translates to
        m.d.comb += hres_addr.eq(host_addr(tlb=False))

        # --- root checks ---------------------------------------------------------------------
        def root_bad(h):
            if ept:
                P = L.EPTP
                return ((h[P.WALK_LEN.lsb:P.WALK_LEN.lsb + 3] != 3)
                        | ((h[0:3] != L.EPT_MEMTYPE_UC) & (h[0:3] != L.EPT_MEMTYPE_WB))
                        | ((h & (P._rsvd8.mask | P._rsvd52.mask)) != 0)
                        | ((h & above) != 0))
            return (h[52:] != 0) | ((h & above) != 0)

        req = self.req.payload
        cr3_bad = (req.CR3[52:] != 0) | ((req.CR3 & above) != 0)
        top = req.GVA[47:]
        canonical = (top == 0) | (top == (1 << 17) - 1)
        cmd = self.inv.payload

        # --- response ------------------------------------------------------------------------
        ok = f_kind == 0
        host_fault = ((f_kind == FAULT["ept_violation"]) | (f_kind == FAULT["ept_misconfig"])
                      | (f_kind == FAULT["npf"]))
        addr_fault = (f_kind == FAULT["bus_error"]) | (f_kind == FAULT["ept_misconfig"])
        final = ht_final
        pf_code = pack(L.PF_ERROR, P=f_p, W=r_write, US=r_user, RSVD=f_rsvd,
                       ID=r_fetch & (1 if p["nxe"] else 0))
        if ept:
            host_code = pack(
                L.EPT_QUAL, READABLE=f_rights[0], WRITABLE=f_rights[1], EXECUTABLE=f_rights[2],
                USER_EXEC=f_rights[3] if p["mbec"] else 0, GLA_VALID=1, GLA_XLAT=final,
                RD=Mux(final, ~r_write & ~r_fetch, 1), WR=Mux(final, r_write, ad),
                FETCH=final & r_fetch, GLA_RW=final & res_grights[0],
                GLA_USER=final & res_grights[1], GLA_NX=final & res_grights[2])
            host_kind = FAULT["ept_violation"]
        else:
            host_code = pack(L.NPF_INFO, P=f_p, RW=r_write | ~final, US=1, RSVD=f_rsvd,
                             ID=final & r_fetch, FINAL=final, TABLE=~final)
            host_kind = FAULT["npf"]
        rp = self.resp.payload
        m.d.comb += [
            rp.PTE_VALID.eq(ok & pte_ok),
            rp.PTE_GPA.eq(Mux(ok & pte_ok, pte_gpa, 0)),
            rp.FAULT.eq(f_kind),
            rp.CODE.eq(Mux(f_kind == FAULT["page_fault"], pf_code,
                           Mux(f_kind == host_kind, host_code, 0))),
            rp.ADDR.eq(Mux(addr_fault, Cat(Const(0, 3), p_addr), 0)),
            rp.LEVEL.eq(Mux(ok, 0, f_level)),
            rp.RESP.eq(Mux(ok, 0, f_resp)),
            rp.GPA.eq(Mux(ok | host_fault, ht_gpa, 0)),
            rp.HPA.eq(Mux(ok, hres_addr, 0)),
            rp.GSIZE.eq(Mux(ok, res_glevel - 1, 0)),
            rp.HSIZE.eq(Mux(ok, hd_level - 1, 0)),
            rp.SIZE.eq(Mux(ok, Mux(res_glevel < hd_level, res_glevel, hd_level) - 1, 0)),
            rp.GRIGHTS.eq(Mux(ok, res_grights, 0)),
            rp.HRIGHTS.eq(Mux(ok, hres_rights, 0)),
            rp.MEMTYPE.eq(Mux(ok, hres_memtype, 0)),
        ]

        # --- helpers of the machine ----------------------------------------------------------
        def restart():
            """Start another attempt: the guest decision next cycle, and meanwhile the host
            lookup of the GPA the 4K guest TLB slot gives."""
            m.d.sync += [upd_n.eq(0), upd_count.eq(0), fill_n.eq(0), upd_i.eq(0), upd_i1.eq(1),
                         upd_ra.eq(0), upd_empty.eq(1), ht_final.eq(1), pte_ok.eq(0)]
            m.d.comb += ht_gpa_next.eq(Cat(r_va[:12], field_of(GTLB[1], "frame", fw)))
            m.next = "G"

        def to_idle():
            m.next = "IDLE"

        def guest_decision():
            """Decide from the guest lookup registers: the guest TLB slot to use, else the
            level the guest walk starts at (the host decision uses and counts it)."""
            use = Signal(3, name="g_use_now")
            m.d.comb += use.eq(first_usable(t_hit, t_ok))
            walk = Cat(gp_hit[2], ~gp_hit[2] & gp_hit[3], ~gp_hit[2] & ~gp_hit[3] & gp_hit[4],
                       ~gp_hit[2] & ~gp_hit[3] & ~gp_hit[4])
            m.d.sync += [g_use.eq(use), spec.eq(1),
                         g_src.eq(Mux(use[0], 3, Mux(use[1], 1, Mux(use[2], 2, 0)))),
                         g_goto.eq(Cat(use, Mux(use != 0, 0, walk))),
                         g_start.eq(Mux(gp_hit[2], 0, Mux(gp_hit[3], 1, Mux(gp_hit[4], 2, 3))))]

        def issue(kind):
            """A read of ``kind`` is offered this cycle: wait for its data, or keep offering
            it (from rd_addr) until it is accepted."""
            with m.If(axi.arready):
                m.next = f"{kind}_R"
            with m.Else():
                m.next = f"{kind}_AR"

        def count_success():
            with m.If(any_ref):
                inc("walks")
            with m.Else():
                inc("tlb_hits")

        def success():
            count_success()
            m.next = "RESP"

        # Where the nested decision leads: the guest entry the nested TLB slot used locates
        # (levels 1, 2, 3), or the first entry of the host walk (starting at level 1, 2, 3
        # from a host PWC slot, or at the root). Every candidate is a wiring of registers.
        roots = [field_of(HPWC[lvl], "frame", fw) for lvl in (2, 3, 4)]
        roots.append(k_hroot[3:] if ept else k_hroot[12:])
        host_next = _or(
            [Mux(hd_use[lvl - 1], Cat(ht_gpa[3:PAGE_SHIFT[lvl]], nf[lvl]), 0)
             for lvl in (1, 2, 3)]
            + [Mux(hs_use[code] & ~hd_tlb, Cat(_index(ht_gpa, Const(code, 2)), roots[code]), 0)
               for code in range(4)])

        def start_host_walk():
            """Read the host entry for ht_gpa at the level the host PWC gives."""
            rights = _pick(hs_start, field_of(HPWC[2], "rights", hrw),
                           field_of(HPWC[3], "rights", hrw), field_of(HPWC[4], "rights", hrw),
                           Const(0b1111 if ept else 0b011, hrw))
            m.d.sync += [ht_level.eq(hs_start + 1), ht_rights.eq(rights),
                         rd_addr.eq(host_next)]
            m.d.comb += axi.arvalid.eq(1)
            issue("HT")

        def advance():
            """Take the next update-list record (the list shows it), unless the attempt ends
            meanwhile (then taking it is harmless)."""
            m.d.sync += [upd_i.eq(upd_i1), upd_i1.eq(upd_i1 + 1)]
            take_record(upd_i1 + 1)

        def next_record(offer=False):
            """The current record is done (with ``offer``: the next one's read is offered
            now, from the record the list shows)."""
            with m.If(u_last):
                success()
            with m.Else():
                if offer:
                    m.d.comb += axi.arvalid.eq(1)
                    issue("UPD")
                else:
                    m.next = "UPD_AR"

        t_hit = {lvl: hit(GTLB[lvl]) for lvl in (1, 2, 3)}
        gp_hit = {lvl: hit(GPWC[lvl]) for lvl in (4, 3, 2)}
        n_hit = {lvl: hit(NTLB[lvl]) for lvl in (1, 2, 3)}
        hp_hit = {lvl: hit(HPWC[lvl]) for lvl in (4, 3, 2)}

        def first_usable(hits, usable):
            """One-hot: the first array that hits, if its slot is usable."""
            return Cat(hits[1] & usable[1], ~hits[1] & hits[2] & usable[2],
                       ~hits[1] & ~hits[2] & hits[3] & usable[3])

        # Whether each TLB slot looked up could be used (rights, dirty state), registered with
        # the lookup: guest slots for the request on offer or accepted, host slots for the
        # GPA being translated.
        t_ok = {lvl: Signal(name=f"gtlb{lvl}_ok", reset_less=True) for lvl in (1, 2, 3)}
        n_ok = {lvl: Signal(name=f"ntlb{lvl}_ok", reset_less=True) for lvl in (1, 2, 3)}
        l_write = Signal(reset_less=True)          # the flags of the request looked up
        l_fetch = Signal(reset_less=True)
        l_user = Signal(reset_less=True)
        flags = [l_write, l_fetch, l_user]
        for lvl in (1, 2, 3):
            if arrays[GTLB[lvl]] is not None:
                slot = arrays[GTLB[lvl]].slot
                m.d.sync += t_ok[lvl].eq(guest_allows(slot.rights, *flags)
                                         & (slot.dirty | ~flags[0]))
            if arrays[NTLB[lvl]] is not None:
                slot = arrays[NTLB[lvl]].slot
                m.d.sync += n_ok[lvl].eq(host_allows(slot.rights, ht_final)
                                         & (slot.dirty | ~as_write))

        m.d.comb += self.busy.eq(1)

        def drop(n):
            """The slot array ``n`` looked up matches the invalidation command."""
            a = arrays[n]
            if a is None:
                return Const(0)
            kind, level, _ = ARRAYS[n]
            same_root = a.hroot_eq & k_hroot_ok
            hr_ok = hroot_any | same_root
            if a.guest:
                cr3_ok = cr3_any | (a.cr3_eq & k_cr3_ok)
                match = ((inv_gva & a.page_matches) | inv_groot) & cr3_ok & hr_ok
            else:
                page = a.page_matches & key_ok
                match = (inv_gpa & page & hr_ok) | (inv_hroot & same_root)
                if kind == "ntlb":
                    match |= inv_scan[level - 1] & page & same_root
            return a.valid & (inv_all | match)

        drops = Signal(len(ARRAYS))               # the slot looked up is to be dropped
        m.d.sync += drops.eq(0)                   # (for one cycle: the states that decide set it)

        m.d.sync += spec_resp.eq(0)

        # The nested decision is counted the cycle after, from its registers (it answers a
        # request the cycle after at the earliest; the events of success come later).
        checked = Signal()
        m.d.sync += checked.eq(0)
        answered = checked & hd_tlb & ht_final & upd_empty
        direct.update(ntlb_hits=checked & hd_tlb, walks=answered & any_ref,
                      tlb_hits=answered & ~any_ref)
        for start, lvl in ((0, 2), (1, 3), (2, 4)):
            direct[f"hpwc_hits_{lvl}"] = checked & ~hd_tlb & (hs_start == start)
        for i, name in enumerate(COUNTERS):
            with m.If(events[i] | direct[name]):
                m.d.sync += getattr(cnt, name).eq(getattr(cnt, name) + 1)

        m.d.sync += last_attempt.eq(attempts == p["max_restarts"])

        # --- the machine -------------------------------------------------------------------
        # After reset the machine starts by sweeping every cache array (inv_all resets to the
        # "all" command), so no slot filled before the reset survives it.
        # What the command on offer loads for a single-slot drop: taken by IDLE for every
        # command, and by SC_CMP for the scan_clear that follows the one it decides.
        def scan_clear_regs():
            return [
                k_hroot_ok.eq(~root_bad(cmd.HROOT)),
                key_ok.eq((cmd.ADDR & above) == 0),
                inv_scan.eq(Cat(*((cmd.OP == INV["scan_clear"]) & (cmd.SIZE == lvl - 1)
                                  for lvl in (1, 2, 3)))),
            ]

        with m.FSM(init="INV") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(events != 0)
                # Every cycle, the registers take the command or the request on offer (the
                # command if both are): whichever is accepted finds them loaded.
                m.d.sync += [
                    r_va.eq(Mux(self.inv.valid, cmd.ADDR[:48], req.GVA[:48])),
                    k_cr3.eq(Mux(self.inv.valid, cmd.CR3[12:pa], req.CR3[12:pa])),
                    k_hroot.eq(root_tag(Mux(self.inv.valid, cmd.HROOT, req.HROOT), host, pa)),
                    inv_all.eq(cmd.OP == INV["all"]),
                    inv_sweep.eq((cmd.OP == INV["all"]) | (cmd.OP == INV["root"])),
                    inv_gva.eq(cmd.OP == INV["gva"]), inv_gpa.eq(cmd.OP == INV["gpa"]),
                    inv_groot.eq((cmd.OP == INV["root"]) & (cmd.MATCH_CR3 | cmd.MATCH_HROOT)),
                    inv_hroot.eq((cmd.OP == INV["root"]) & cmd.MATCH_HROOT & ~cmd.MATCH_CR3),
                    *scan_clear_regs(),
                    cr3_any.eq(~cmd.MATCH_CR3), hroot_any.eq(~cmd.MATCH_HROOT),
                    k_cr3_ok.eq((cmd.CR3 & above) == 0),
                    r_write.eq(req.WRITE), r_fetch.eq(req.FETCH), r_user.eq(req.USER),
                    attempts.eq(0), any_ref.eq(0), ht_final.eq(1), pte_ok.eq(0),
                    upd_n.eq(0), upd_count.eq(0), fill_n.eq(0), upd_i.eq(0), upd_i1.eq(1),
                    upd_ra.eq(0), upd_empty.eq(1),
                    f_kind.eq(Mux(~canonical, FAULT["gp"],
                                  Mux(cr3_bad | root_bad(req.HROOT), FAULT["bad_root"], 0))),
                    f_level.eq(0), f_resp.eq(0),
                ]
                # The host arrays look up the GPA of the 4K guest TLB slot next.
                m.d.comb += ht_gpa_next.eq(Mux(self.inv.valid, cmd.ADDR[:pa],
                                               Cat(req.GVA[:12],
                                                   field_of(GTLB[1], "frame", fw))))
                # The guest decision is made for the request on offer every cycle: an
                # accepted request goes to the host decision at once.
                guest_decision()
                with m.If(self.inv.valid):
                    m.d.comb += self.inv.ready.eq(1)
                    m.d.sync += [sweep.eq(0),
                                 sel_sweep.eq((cmd.OP == INV["all"]) | (cmd.OP == INV["root"]))]
                    with m.If(cmd.OP == INV["scan_clear"]):
                        m.next = "SC_READ"
                    with m.Else():
                        m.next = "INV_START"
                with m.Elif(self.req.valid & primed2):
                    m.d.comb += self.req.ready.eq(1)
                    inc("requests")
                    m.next = "HT_CHECK"

            # --- guest decision after a restart (IDLE makes it for a request) ---------------
            with m.State("G"):                     # (after a restart)
                guest_decision()
                m.next = "HT_CHECK"

            # --- host decision -------------------------------------------------------------------
            with m.State("HT_LOOK"):
                m.next = "HT_CHECK"

            # The decision only loads registers; the next state depends on registers alone.
            # A final translation without pending updates goes straight to RESP, which
            # answers if the nested TLB hit and starts the host walk otherwise.
            with m.State("HT_CHECK"):
                use = Signal(3, name="n_use_now")
                m.d.comb += use.eq(first_usable(n_hit, n_ok))
                dispatch = spec & (g_src != 3)     # not translating the 4K slot's GPA
                m.d.sync += [spec.eq(0), hd_tlb.eq(use != 0),
                             hd_level.eq(Mux(use[0], 1, Mux(use[1], 2, 3))),
                             hd_use.eq(use),
                             hs_use.eq(Cat(hp_hit[2], ~hp_hit[2] & hp_hit[3],
                                           ~hp_hit[2] & ~hp_hit[3] & hp_hit[4],
                                           ~hp_hit[2] & ~hp_hit[3] & ~hp_hit[4])),
                             hs_start.eq(Mux(hp_hit[2], 0, Mux(hp_hit[3], 1,
                                                              Mux(hp_hit[4], 2, 3))))]
                # Right after acceptance, a non-canonical GVA or a bad root is answered.
                early = f_kind != 0
                with m.If(spec & ~early):          # the guest decision: count it, use it
                    with m.If(g_use != 0):
                        inc("gtlb_hits")
                    for start, lvl in ((0, 2), (1, 3), (2, 4)):
                        with m.If((g_use == 0) & (g_start == start)):
                            inc(f"gpwc_hits_{lvl}")
                    m.d.sync += [
                        res_glevel.eq(_pick(g_src, 1, 2, 3, 1)),
                        res_grights.eq(_pick(g_src, 0, field_of(GTLB[2], "rights", 3),
                                             field_of(GTLB[3], "rights", 3),
                                             field_of(GTLB[1], "rights", 3))),
                        g_level.eq(g_start + 1),
                        g_rights.eq(_pick(g_start, field_of(GPWC[2], "rights", 3),
                                          field_of(GPWC[3], "rights", 3),
                                          field_of(GPWC[4], "rights", 3), 0b011)),
                    ]
                m.d.sync += checked.eq(~dispatch & ~early)
                # Where the guest decision leads (then, until the next one: nowhere new).
                tables = [field_of(GPWC[lvl], "frame", fw) for lvl in (2, 3, 4)] + [k_cr3]
                m.d.comb += ht_gpa_next.eq(_or(
                    [Mux(g_goto[0], ht_gpa, 0),
                     Mux(g_goto[1], Cat(r_va[:21], field_of(GTLB[2], "frame", fw - 9)), 0),
                     Mux(g_goto[2], Cat(r_va[:30], field_of(GTLB[3], "frame", fw - 18)), 0)]
                    + [Mux(g_goto[3 + code],
                           Cat(Const(0, 3), _index(r_va, Const(code, 2)), tables[code]), 0)
                       for code in range(4)]))
                m.d.sync += g_goto.eq(1)
                with m.If(early):
                    m.next = "RESP"
                with m.Elif(dispatch):
                    m.d.sync += ht_final.eq(g_src != 0)
                    m.next = "HT_LOOK"
                with m.Elif(ht_final & upd_empty & ~p_upd):   # (p_upd: a record being pushed)
                    m.d.sync += spec_resp.eq(1)
                    m.next = "RESP"
                with m.Else():
                    m.next = "HT_NEXT"

            with m.State("HT_NEXT"):
                with m.If(~hd_tlb):
                    start_host_walk()
                with m.Elif(ht_final):
                    m.next = "UPD_FETCH"
                with m.Else():                     # read the guest entry
                    m.d.sync += rd_addr.eq(host_next)
                    m.d.comb += axi.arvalid.eq(1)
                    issue("GW")

            # --- memory reads: address, then the data registered, then decoded ---------------
            for kind in ("HT", "GW", "UPD"):
                with m.State(f"{kind}_AR"):
                    m.d.comb += axi.arvalid.eq(1)
                    with m.If(axi.arready):
                        m.next = f"{kind}_R"

                with m.State(f"{kind}_R"):
                    m.d.comb += axi.rready.eq(1)
                    if kind == "UPD":
                        m.d.comb += self.lock.eq(1)
                    with m.If(axi.rvalid):
                        # p_addr: the address of the word read (that ADDR reports, and its
                        # records'); rd_addr then takes the next read's (a host entry's).
                        m.d.sync += p_addr.eq(rd_addr)
                        if kind == "HT":
                            m.d.sync += rd_addr.eq(h_next)
                        with m.If(~axi.rresp[1]):
                            inc("mem_reads")
                            m.d.sync += any_ref.eq(1)
                        m.next = "UPD_ACT" if kind == "UPD" else f"{kind}_DEC"
                        if kind == "GW":
                            # What the entry leads to is the GPA to translate next: the
                            # host arrays look it up while the entry is decoded. (If the
                            # entry faults, the response does not report it.)
                            m.d.comb += ht_gpa_next.eq(g_next)
                            m.d.sync += ht_final.eq(d_gleaf)
                            # A leaf: the GPA just translated is its entry's (the exit
                            # detector learns where the page's PTE lives).
                            with m.If(d_gleaf):
                                m.d.sync += [pte_ok.eq(1), pte_gpa.eq(ht_gpa)]

            # The decoding states load their registers whatever the entry; only the next
            # state, the fault kind and the list writes depend on it.
            with m.State("HT_DEC"):
                misconfigured = h_present & h_bad_r
                usable = ~resp_r[1] & h_present & ~h_bad_r & (~h_leaf | h_ok_r)
                m.d.sync += [
                    f_kind.eq(Mux(resp_r[1], FAULT["bus_error"],
                                  Mux(misconfigured, FAULT["ept_misconfig" if ept else "npf"],
                                      Mux(usable, 0, host_kind)))),
                    f_level.eq(ht_level), f_resp.eq(resp_r), f_p.eq(h_present),
                    f_rsvd.eq(misconfigured), f_rights.eq(h_rights_new),
                    ht_level.eq(ht_level - 1), ht_rights.eq(h_rights_new),
                    hd_tlb.eq(0), hd_level.eq(ht_level), w_frame.eq(e[12:pa]),
                    w_rights.eq(h_rights_new), w_memtype.eq(memtype),
                ]
                # The next read (a host entry, or the guest entry a leaf locates) is offered
                # at once (rd_addr took its address with the word).
                m.d.comb += axi.arvalid.eq(usable & ~(h_leaf & ht_final))
                with m.If(~usable):
                    m.next = "RESP"
                with m.Else():
                    push(h_need_a | h_need_d)
                    with m.If(~h_leaf):
                        issue("HT")
                    with m.Elif(ht_final):
                        # Record 0 is shown by the list already if it was pushed before.
                        with m.If(upd_n != 0):
                            m.next = "UPD_FETCH"
                        with m.Elif(h_need_a | h_need_d):
                            m.next = "UPD_PUSH"
                        with m.Else():
                            success()
                    with m.Else():
                        issue("GW")

            with m.State("GW_DEC"):
                present = e[X.P.lsb]
                usable = ~resp_r[1] & present & ~g_bad_r & (~g_leaf | g_ok_r)
                m.d.sync += [
                    f_kind.eq(Mux(resp_r[1], FAULT["bus_error"],
                                  Mux(usable, 0, FAULT["page_fault"]))),
                    f_level.eq(g_level), f_resp.eq(resp_r), f_p.eq(present),
                    f_rsvd.eq(present & g_bad_r),
                    g_level.eq(g_level - 1), g_rights.eq(g_rights_new),
                    res_glevel.eq(g_level), res_grights.eq(g_rights_new),
                ]
                with m.If(~usable):
                    m.next = "RESP"
                with m.Else():
                    push(g_need_a | g_need_d)
                    m.next = "HT_CHECK"        # (the host arrays looked up g_next meanwhile)

            # --- update phase: atomic read-compare-write of every entry lacking A/D ----------
            # A record pushed by the last decoding is written, then read.
            with m.State("UPD_PUSH"):
                m.next = "UPD_WAIT"

            with m.State("UPD_WAIT"):
                m.next = "UPD_FETCH"

            with m.State("UPD_FETCH"):              # (the list shows record upd_i)
                take_record(upd_i1)
                with m.If(upd_i == upd_count):
                    success()
                with m.Else():
                    m.d.comb += axi.arvalid.eq(1)
                    issue("UPD")

            aw_done = Signal()
            w_done = Signal()
            with m.State("UPD_ACT"):
                m.d.comb += self.lock.eq(1)
                with m.If(~u_need):                # (rd_addr is the write's address)
                    advance()
                conflict = u_changed & last_attempt
                m.d.sync += [f_kind.eq(Mux(resp_r[1], FAULT["bus_error"],
                                           Mux(conflict, FAULT["conflict"], 0))),
                             f_level.eq(Mux(resp_r[1], u_level, 0)),
                             f_resp.eq(Mux(resp_r[1], resp_r, 0))]
                with m.If(resp_r[1]):
                    m.next = "RESP"
                with m.Elif(u_changed):
                    inc("restarts")
                    with m.If(conflict):
                        m.next = "RESP"
                    with m.Else():
                        m.d.sync += attempts.eq(attempts + 1)
                        m.next = "RESTART"
                with m.Elif(u_need):
                    m.d.comb += [axi.awvalid.eq(~aw_done), axi.wvalid.eq(~w_done)]
                    aw_now = aw_done | axi.awready
                    w_now = w_done | axi.wready
                    with m.If(aw_now & w_now):
                        m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                        m.next = "UPD_B"
                    with m.Else():
                        m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.Else():
                    next_record(offer=True)

            with m.State("UPD_B"):
                m.d.comb += [axi.bready.eq(1), self.lock.eq(1)]
                with m.If(axi.bvalid):
                    advance()
                    m.d.sync += [f_kind.eq(Mux(axi.bresp[1], FAULT["bus_error"], 0)),
                                 f_level.eq(u_level), f_resp.eq(axi.bresp)]
                    with m.If(axi.bresp[1]):
                        m.next = "RESP"
                    with m.Else():
                        inc("mem_writes")
                        next_record()

            with m.State("RESTART"):
                restart()

            # --- response, then the fills, in walk order ----------------------------------
            with m.State("RESP"):
                with m.If(spec_resp & ~hd_tlb):
                    start_host_walk()              # the nested TLB missed: no answer yet
                with m.Else():
                    m.d.comb += self.resp.valid.eq(1)
                    with m.If(self.resp.ready):
                        for i, kind in enumerate(L.FAULT_KINDS[1:], start=1):
                            with m.If(f_kind == i):
                                inc(f"fault_{kind}")
                        # A translation's cache fills follow its response; the walker takes
                        # no request or command before they are done.
                        m.d.sync += [fill_i.eq(0), fill_pending.eq(0)]
                        # (p_fill: the last record is being written)
                        with m.If(ok & ((fill_n != 0) | p_fill)):
                            m.next = "FILL"
                        with m.Else():
                            to_idle()

            with m.State("FILL"):
                m.d.sync += fill_pending.eq(fill_i != fill_n)
                with m.If(fill_i != fill_n):
                    m.d.sync += fill_i.eq(fill_i + 1)
                with m.If((fill_i == fill_n) & ~fill_pending):
                    to_idle()

            # --- the scanner's A-bit clears: read, then compare, write and take the next --
            # (One nested-TLB slot each; the index register took the slot at acceptance, and
            # takes the next one with the decision, which is written while the next slot is
            # read. The other command flags stay those of the scan_clear IDLE accepted, so a
            # clear taken here needs only its address, host root and size. A read that
            # misses the write before it sees the slot as it was: a second drop of a slot
            # already dropped, or none, leaves what the commands in order would.)
            with m.State("SC_READ"):
                m.next = "SC_CMP"

            with m.State("SC_CMP"):
                m.d.sync += drops.eq(Cat(drop(n) for n in range(len(ARRAYS))))
                with m.If(self.inv.valid & (cmd.OP == INV["scan_clear"])):
                    m.d.comb += [self.inv.ready.eq(1), ht_gpa_next.eq(cmd.ADDR[:pa])]
                    m.d.sync += [k_hroot.eq(root_tag(cmd.HROOT, host, pa)), *scan_clear_regs()]
                    m.next = "SC_READ"
                with m.Else():
                    to_idle()

            # --- invalidation: look a slot up, then drop it if it matches -----------------
            with m.State("INV_START"):
                m.next = "INV"                     # the index registers take the first slot

            with m.State("INV"):
                m.next = "INV_SETTLE"

            with m.State("INV_SETTLE"):             # (the guest arrays' tag matches settle)
                m.next = "INV_CMP"

            with m.State("INV_CMP"):
                m.d.sync += [drops.eq(Cat(drop(n) for n in range(len(ARRAYS)))),
                             sweep.eq(sweep + 1), sweep_end.eq(sweep == max_depth - 1)]
                m.next = "INV_WRITE"

            with m.State("INV_WRITE"):              # (the index registers take the next slot)
                with m.If(inv_sweep & ~sweep_end):
                    m.next = "INV"
                with m.Else():
                    m.d.sync += sel_sweep.eq(0)
                    to_idle()

        # One flip-flop per state: no state decoding in front of the datapath. (Synthesis
        # then ignores the state register's power-up value: the walker needs its reset.)
        fsm.state.attrs["fsm_encoding"] = "one-hot"

        # The read address: rd_addr, or the read a state offers at once (the next entry a
        # decoding leads to, the host walk's first entry or the guest entry, the update
        # record the list shows).
        m.d.comb += axi.araddr.eq(Cat(Const(0, 3), _or([
            Mux(fsm.ongoing("HT_NEXT") | fsm.ongoing("RESP"), host_next, 0),
            Mux(fsm.ongoing("UPD_FETCH") | fsm.ongoing("UPD_ACT"), rec.addr, 0),
            Mux(fsm.ongoing("HT_AR") | fsm.ongoing("GW_AR") | fsm.ongoing("UPD_AR")
                | fsm.ongoing("HT_DEC"), rd_addr, 0)])))

        # --- lookups: every array, every cycle ------------------------------------------------
        # Every array is read at an index register and compares with registers, loaded with
        # what it is to look up next cycle. Guest arrays look up the request on offer (while
        # idle, answering or filling), then keep looking up the one accepted (or the command's
        # address); host arrays look up ht_gpa. A lookup's result is used the cycle after its
        # operands were set, and while they stay. While idle, the host arrays look up the GPA
        # the 4K guest TLB slot gives for the request on offer. A request is accepted once
        # both lookups are registered (three cycles on offer, the last one idle): the guest
        # decision is registered with the acceptance, the host decision the cycle after. The
        # arrays' index registers reset with the sweep counter: the sweep after reset starts
        # at once.
        offering = fsm.ongoing("IDLE") | fsm.ongoing("RESP") | fsm.ongoing("FILL")
        l_va = Signal(36, reset_less=True)         # the guest arrays' operands
        l_cr3 = Signal(fw, reset_less=True)
        l_hroot = Signal(root_tag_width(host, pa), reset_less=True)
        with m.If(offering):
            m.d.sync += [l_va.eq(Mux(self.inv.valid, cmd.ADDR[12:48], req.GVA[12:48])),
                         l_cr3.eq(Mux(self.inv.valid, cmd.CR3[12:pa], req.CR3[12:pa])),
                         l_hroot.eq(root_tag(Mux(self.inv.valid, cmd.HROOT, req.HROOT),
                                             host, pa)),
                         l_write.eq(req.WRITE), l_fetch.eq(req.FETCH), l_user.eq(req.USER)]
        # The request on offer has been in the operand registers since the last clock edge
        # (offered), and was looked up in the cycle before (primed, if no slot was written).
        offered = Signal()
        on_offer = offering & self.req.valid & ~self.inv.valid
        m.d.sync += [offered.eq(on_offer), primed.eq(offered & on_offer & ~fill_pending),
                     primed2.eq(primed & on_offer & ~fill_pending & fsm.ongoing("IDLE"))]
        for a in arrays:
            if a is None:
                continue
            if a.guest:
                key_next = Mux(offering, Mux(self.inv.valid, cmd.ADDR[12:48], req.GVA[12:48]),
                               l_va)
                m.d.comb += [a.key.eq(l_va), a.cr3.eq(l_cr3), a.hroot.eq(l_hroot)]
            else:
                key_next = ht_gpa_next[12:]
                m.d.comb += [a.key.eq(ht_gpa[12:]), a.hroot.eq(k_hroot)]
            m.d.comb += a.index_next.eq(Mux(sel_sweep, sweep, a.index_of(key_next)))

        # --- the read data, registered with the deep parts of its decoding -------------------
        host_ign = H.A.mask | H.D.mask | L.ENGINE_BITS[host].mask
        guest_ign = X.A.mask | X.D.mask
        # (One read at a time, and rready is high while waiting for it: a beat is ours.)
        with m.If(axi.rvalid):
            m.d.sync += [
                e_r.eq(rdata), resp_r.eq(axi.rresp),
                # what a guest entry leads to: the final GPA (a leaf) or the GPA of the
                # entry at the next level (a table)
                h_leaf.eq(d_leaf), g_leaf.eq(d_gleaf),
                h_present.eq(rdata[0:3] != 0 if ept else rdata[X.P.lsb]),
                h_bad_r.eq(host_bad(rdata)), h_ok_r.eq(host_allows(host_rights(rdata), ht_final)),
                g_bad_r.eq(guest_bad(rdata)), g_ok_r.eq(guest_allows(guest_rights(rdata))),
                u_changed.eq(((rdata ^ u_old) & ~Mux(u_host, host_ign, guest_ign)) != 0),
                u_need.eq((rdata & bits) != bits),
            ]

        # --- list records of the entry decoded -----------------------------------------------
        host_dec = fsm.ongoing("HT_DEC")
        m.d.sync += [
            p_host.eq(host_dec),
            p_level.eq(Mux(host_dec, ht_level, g_level)),
            p_set_a.eq(Mux(host_dec, h_need_a, g_need_a)),
            p_set_d.eq(Mux(host_dec, h_need_d, g_need_d)),
            p_select.eq(Mux(host_dec, array_of(ht_level, h_leaf, NTLB, HPWC),
                            array_of(g_level, g_leaf, GTLB, GPWC))),
        ]
        # What a host entry leads to: a guest entry's address (a leaf translating its GPA) or
        # the entry at the next level (a table).
        m.d.comb += h_next.eq(Mux(d_leaf,
                                  Cat(ht_gpa[3:12],
                                      Mux(ht_level == 1, rdata[12:21], ht_gpa[12:21]),
                                      Mux(ht_level == 3, ht_gpa[21:30], rdata[21:30]),
                                      rdata[30:pa]),
                                  Cat(_index(ht_gpa, ht_level - 2), rdata[12:pa])))
        m.d.comb += [
            upd_w.data.addr.eq(p_addr), upd_w.data.old.eq(e_r), upd_w.data.host.eq(p_host),
            upd_w.data.set_a.eq(p_set_a), upd_w.data.set_d.eq(p_set_d),
            upd_w.data.level.eq(p_level),
            fill_w.data.select.eq(p_select), fill_w.data.key.eq(ht_gpa[12:]),
            fill_w.data.frame.eq(e_r[12:pa]),
            fill_w.data.rights.eq(Mux(p_host, ht_rights, g_rights)),
            fill_w.data.dirty.eq(Mux(p_host, Mux(ad, e[H.D.lsb] | as_write, 1),
                                     e[X.D.lsb] | r_write)),
        ]
        if ept:
            m.d.comb += fill_w.data.memtype.eq(memtype)

        # --- writes: fills, and drops by invalidation commands -----------------------------
        drop_index = []                           # the slot each array looked up last cycle
        for n, a in enumerate(arrays):
            r = None
            if a is not None:
                r = Signal.like(a.index, name=f"drop_index{n}")
                m.d.sync += r.eq(a.index)
            drop_index.append(r)
        # Write enables come from flip-flops: the fill record's select, the drop decisions. A
        # drop writes the slot it looked up (``drop_index``, taken with the decision: a
        # scan_clear's next command may have moved the index register on).
        fill = fill_r.data
        for n, a in enumerate(arrays):
            if a is None:
                continue
            key = r_va[12:] if a.guest else fill.key
            m.d.comb += [a.wr_key.eq(key), a.wr_hroot.eq(k_hroot), a.wr_frame.eq(fill.frame),
                         a.wr_rights.eq(fill.rights), a.wr_valid.eq(fill_pending),
                         a.wr_index.eq(Mux(fill_pending, a.index_of(key), drop_index[n]))]
            if a.guest:
                m.d.comb += a.wr_cr3.eq(k_cr3)
            if a.kind in ("gtlb", "ntlb"):
                m.d.comb += a.wr_dirty.eq(fill.dirty)
            if a.kind == "ntlb" and ept:
                m.d.comb += a.wr_memtype.eq(fill.memtype)
            m.d.comb += a.wr_en.eq((fill_pending & fill.select[n]) | drops[n])
        return m


SYNTH_DESIGNS = {
    "walker": lambda: Walker(),
    "walker-npt": lambda: Walker(host="npt"),
}
