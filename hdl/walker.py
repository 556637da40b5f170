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

Timing (a cycle is one clock): a full TLB hit answers two cycles after the request is
accepted (guest TLB, then nested TLB). Each memory reference costs its latency plus one
cycle; each host-dimension translation that misses the nested TLB costs one lookup cycle.

For the engine (SPEC §2, atomic A/D): the update phase's read and write of one entry must
not be split by another agent's write to that word; the engine's arbiter holds the memory
port from the update read to its write (``lock`` is high meanwhile).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from thermocline import layouts as L
from .axi import AxiParams, Burst, axi4_signature
from .layouts import pack, struct
from .walkcache import ARRAYS, GPWC, GTLB, HPWC, NTLB, CacheArray

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

#: Update-list record: an entry read in the walk phase that needs A and/or D.
UPD = data.StructLayout({"addr": 52, "old": 64, "host": 1, "set_a": 1, "set_d": 1,
                         "level": 3})
#: Fill-list record: a cache slot to write once the request succeeds.
FILL = data.StructLayout({"array": 4, "key": 52, "frame": 40, "rights": 4, "dirty": 1,
                          "memtype": 3})

LIST_DEPTH = 32        # at most 4 guest + 5 x 4 host entries per attempt, either list


def _mask(level):
    """Offset mask of a page mapped at ``level`` (1: 4K, 2: 2M, 3: 1G)."""
    return Mux(level == 3, (1 << 30) - 1, Mux(level == 2, (1 << 21) - 1, (1 << 12) - 1))


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

    # --- helpers ---------------------------------------------------------------------------

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
        ept = p["host"] == "ept"
        pa_bits = p["pa_bits"]
        pa_mask = (1 << pa_bits) - 1
        addr_mask = L.addr_mask(pa_bits)
        axi = self.m_axi
        cnt = self.counters

        def inc(name):
            field = getattr(cnt, name)
            m.d.sync += field.eq(field + 1)

        # --- cache arrays ------------------------------------------------------------------
        sizes = self._sizes()
        arrays = []
        for n, ((kind, level, shift), entries) in enumerate(zip(ARRAYS, sizes)):
            if entries:
                arr = CacheArray(kind=kind, level=level, entries=entries)
                m.submodules[f"{kind}{level}"] = arr
                arrays.append(arr)
            else:
                arrays.append(None)

        def rd_valid(n):
            return arrays[n].rd_data.valid if arrays[n] is not None else Const(0)

        def rd(n):
            return arrays[n].rd_data

        def present_index(n, key):
            if arrays[n] is not None:
                m.d.comb += arrays[n].rd_index.eq(arrays[n].index_of(key))

        # --- request registers -------------------------------------------------------------
        r_gva = Signal(64)
        r_cr3 = Signal(64)
        r_hroot = Signal(64)
        r_write = Signal()
        r_fetch = Signal()
        r_user = Signal()
        va = Signal(48)
        m.d.comb += va.eq(r_gva[:48])
        cr3_frame = r_cr3[12:52]
        ad = Signal()
        m.d.comb += ad.eq(1 if not ept else r_hroot[L.EPTP.AD.lsb])
        host_root = Cat(Const(0, 12), r_hroot[12:52])

        # --- fault / result registers ------------------------------------------------------
        f_kind = Signal(4)
        f_code = Signal(64)
        f_gpa = Signal(52)
        f_addr = Signal(52)
        f_level = Signal(3)
        f_resp = Signal(2)
        res_gpa = Signal(52)
        res_hpa = Signal(52)
        res_glevel = Signal(3)
        res_hlevel = Signal(3)
        res_grights = Signal(3)
        res_hrights = Signal(4)
        res_memtype = Signal(3)

        # --- walk state --------------------------------------------------------------------
        attempts = Signal(5)
        any_ref = Signal()
        g_level = Signal(3)
        g_table = Signal(52)
        g_rights = Signal(3)           # rw, us, xd
        g_egpa = Signal(52)
        ht_final = Signal()
        ht_gpa = Signal(52)
        ht_level = Signal(3)
        ht_table = Signal(52)
        ht_rights = Signal(4)          # EPT: r w x xu; NPT: rw us nx 0
        ht_addr = Signal(52)
        as_write = Signal()
        m.d.comb += as_write.eq(ad & (r_write | ~ht_final))
        rd_addr = Signal(52)           # address of the read in flight
        inv_cmd = Signal(struct(L.WALK_INV))
        sweep = Signal(13)
        max_depth = max(sizes + [1])

        # --- update and fill lists ---------------------------------------------------------
        m.submodules.upd = upd_mem = Memory(shape=UPD, depth=LIST_DEPTH, init=[])
        m.submodules.fill = fill_mem = Memory(shape=FILL, depth=LIST_DEPTH, init=[])
        upd_w = upd_mem.write_port()
        upd_r = upd_mem.read_port()
        fill_w = fill_mem.write_port()
        fill_r = fill_mem.read_port()
        upd_n = Signal(6)
        fill_n = Signal(6)
        upd_i = Signal(6)
        fill_i = Signal(6)
        fill_pending = Signal()
        upd_now = Signal(64)

        def push_update(addr, old, host, set_a, set_d, level):
            m.d.comb += [upd_w.en.eq(1), upd_w.addr.eq(upd_n),
                         upd_w.data.addr.eq(addr), upd_w.data.old.eq(old),
                         upd_w.data.host.eq(host), upd_w.data.set_a.eq(set_a),
                         upd_w.data.set_d.eq(set_d), upd_w.data.level.eq(level)]
            m.d.sync += upd_n.eq(upd_n + 1)

        def push_fill(array, key, frame, rights, dirty=0, memtype=0):
            m.d.comb += [fill_w.en.eq(1), fill_w.addr.eq(fill_n),
                         fill_w.data.array.eq(array), fill_w.data.key.eq(key),
                         fill_w.data.frame.eq(frame), fill_w.data.rights.eq(rights),
                         fill_w.data.dirty.eq(dirty), fill_w.data.memtype.eq(memtype)]
            m.d.sync += fill_n.eq(fill_n + 1)

        # --- AXI defaults: single 64-bit beats -----------------------------------------------
        m.d.comb += [
            axi.arlen.eq(0), axi.arsize.eq(3), axi.arburst.eq(Burst.INCR), axi.arid.eq(0),
            axi.awlen.eq(0), axi.awsize.eq(3), axi.awburst.eq(Burst.INCR), axi.awid.eq(0),
            axi.wstrb.eq(0xFF), axi.wlast.eq(1), axi.araddr.eq(rd_addr),
        ]
        rdata = axi.rdata
        r_err = axi.rresp[1]           # SLVERR or DECERR

        # --- entry decoding (combinational on rdata) ---------------------------------------
        e = rdata
        # Host entry at ht_level.
        h_present = Signal()
        h_leaf = Signal()
        h_bad = Signal()               # EPT misconfiguration / NPT reserved bit
        h_rights_new = Signal(4)
        h_addr = Signal(52)
        if ept:
            E = L.EPT_ENTRY
            m.d.comb += h_present.eq(e[0:3] != 0)
            m.d.comb += h_leaf.eq((ht_level == 1) | (((ht_level == 2) | (ht_level == 3))
                                                     & e[E.PS.lsb]))
            rsvd = Signal(64)
            with m.Switch(ht_level):
                for lvl in (1, 2, 3, 4):
                    with m.Case(lvl):
                        if lvl in (2, 3):
                            m.d.comb += rsvd.eq(Mux(
                                e[E.PS.lsb], L.ept_reserved_mask(lvl, True, pa_bits),
                                L.ept_reserved_mask(lvl, False, pa_bits)))
                        else:
                            m.d.comb += rsvd.eq(L.ept_reserved_mask(lvl, lvl == 1, pa_bits))
            memtype = e[E.MEMTYPE.lsb:E.MEMTYPE.lsb + 3]
            bad_mt = (memtype == 2) | (memtype == 3) | (memtype == 7)
            x_only = 0 if p["execute_only"] else (e[2] & ~e[0])
            m.d.comb += h_bad.eq((e[1] & ~e[0]) | x_only | ((e & rsvd) != 0)
                                 | (h_leaf & bad_mt))
            m.d.comb += h_rights_new.eq(ht_rights & Cat(e[0], e[1], e[2], e[E.XU.lsb]))
        else:
            X = L.X86_ENTRY
            m.d.comb += h_present.eq(e[0])
            m.d.comb += h_leaf.eq((ht_level == 1) | (((ht_level == 2) | (ht_level == 3))
                                                     & e[X.PS.lsb]))
            rsvd = Signal(64)
            with m.Switch(ht_level):
                for lvl in (1, 2, 3, 4):
                    with m.Case(lvl):
                        if lvl in (2, 3):
                            m.d.comb += rsvd.eq(Mux(
                                e[X.PS.lsb], L.x86_reserved_mask(lvl, True, pa_bits, True),
                                L.x86_reserved_mask(lvl, False, pa_bits, True)))
                        else:
                            m.d.comb += rsvd.eq(L.x86_reserved_mask(lvl, False, pa_bits, True))
            m.d.comb += h_bad.eq((e & rsvd) != 0)
            m.d.comb += h_rights_new.eq(Cat(ht_rights[0] & e[X.RW.lsb],
                                            ht_rights[1] & e[X.US.lsb],
                                            ht_rights[2] | e[X.XD.lsb], 0))
        h_low = Signal(52)
        m.d.comb += h_low.eq(Mux(h_leaf & (ht_level >= 2), _mask(ht_level), 0))
        m.d.comb += h_addr.eq((e & addr_mask) & ~h_low)
        hA = (L.EPT_ENTRY if ept else L.X86_ENTRY).A.mask
        hD = (L.EPT_ENTRY if ept else L.X86_ENTRY).D.mask
        h_need_a = Signal()
        h_need_d = Signal()
        m.d.comb += [h_need_a.eq(ad & ((e & hA) == 0)),
                     h_need_d.eq(ad & h_leaf & as_write & ((e & hD) == 0))]

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

        # Guest entry at g_level.
        X = L.X86_ENTRY
        g_present = e[0]
        g_leaf = Signal()
        m.d.comb += g_leaf.eq((g_level == 1) | (((g_level == 2) | (g_level == 3))
                                               & e[X.PS.lsb]))
        g_rsvd = Signal(64)
        with m.Switch(g_level):
            for lvl in (1, 2, 3, 4):
                with m.Case(lvl):
                    if lvl in (2, 3):
                        m.d.comb += g_rsvd.eq(Mux(
                            e[X.PS.lsb], L.x86_reserved_mask(lvl, True, pa_bits, p["nxe"]),
                            L.x86_reserved_mask(lvl, False, pa_bits, p["nxe"])))
                    else:
                        m.d.comb += g_rsvd.eq(L.x86_reserved_mask(lvl, False, pa_bits,
                                                                  p["nxe"]))
        g_bad = (e & g_rsvd) != 0
        g_rights_new = Signal(3)
        m.d.comb += g_rights_new.eq(Cat(g_rights[0] & e[X.RW.lsb], g_rights[1] & e[X.US.lsb],
                                        g_rights[2] | (e[X.XD.lsb] if p["nxe"] else 0)))
        g_addr = Signal(52)
        g_low = Signal(52)
        m.d.comb += g_low.eq(Mux(g_leaf & (g_level >= 2), _mask(g_level), 0))
        m.d.comb += g_addr.eq((e & addr_mask) & ~g_low)

        def guest_allows(rights):
            rw, us, xd = rights[0], rights[1], rights[2]
            user_bad = r_user & ~us
            write_bad = r_write & ~rw & (r_user | (1 if p["wp"] else 0))
            fetch_bad = r_fetch & xd
            return ~(user_bad | write_bad | fetch_bad)

        # --- fault helpers -----------------------------------------------------------------
        def fault(kind, code=0, gpa=0, addr=0, level=0, resp=0):
            m.d.sync += [f_kind.eq(FAULT[kind]), f_code.eq(code), f_gpa.eq(gpa),
                         f_addr.eq(addr), f_level.eq(level), f_resp.eq(resp)]
            m.next = "RESP"

        def pf_code(present, rsvd):
            return pack(L.PF_ERROR, P=present, W=r_write, US=r_user, RSVD=rsvd,
                        ID=r_fetch & (1 if p["nxe"] else 0))

        def host_violation(rights, present):
            if not ept:
                npf(present, 0)
                return
            q = pack(L.EPT_QUAL,
                     READABLE=rights[0], WRITABLE=rights[1], EXECUTABLE=rights[2],
                     USER_EXEC=rights[3] if p["mbec"] else 0, GLA_VALID=1,
                     GLA_XLAT=ht_final, RD=Mux(ht_final, ~r_write & ~r_fetch, 1),
                     WR=Mux(ht_final, r_write, ad), FETCH=ht_final & r_fetch,
                     GLA_RW=ht_final & res_grights[0], GLA_USER=ht_final & res_grights[1],
                     GLA_NX=ht_final & res_grights[2])
            fault("ept_violation", code=q, gpa=ht_gpa, level=ht_level)

        def npf(present, rsvd):
            q = pack(L.NPF_INFO, P=present, RW=r_write | ~ht_final, US=1, RSVD=rsvd,
                     ID=ht_final & r_fetch, FINAL=ht_final, TABLE=~ht_final)
            fault("npf", code=q, gpa=ht_gpa, level=ht_level)

        # --- root checks -------------------------------------------------------------------
        req = self.req.payload
        above = ((1 << 52) - 1) & ~pa_mask
        cr3_bad = (req.CR3[52:] != 0) | ((req.CR3 & above) != 0)
        if ept:
            P = L.EPTP
            hroot_bad = ((req.HROOT[P.WALK_LEN.lsb:P.WALK_LEN.lsb + 3] != 3)
                         | ((req.HROOT[0:3] != L.EPT_MEMTYPE_UC)
                            & (req.HROOT[0:3] != L.EPT_MEMTYPE_WB))
                         | ((req.HROOT & (P._rsvd8.mask | P._rsvd52.mask)) != 0)
                         | ((req.HROOT & above) != 0))
        else:
            hroot_bad = (req.HROOT[52:] != 0) | ((req.HROOT & above) != 0)
        top = req.GVA[47:]
        canonical = (top == 0) | (top == (1 << 17) - 1)

        # --- response ----------------------------------------------------------------------
        rp = self.resp.payload
        m.d.comb += [
            rp.FAULT.eq(f_kind),
            rp.CODE.eq(Mux(f_kind == 0, 0, f_code)),
            rp.ADDR.eq(Mux(f_kind == 0, 0, f_addr)),
            rp.LEVEL.eq(Mux(f_kind == 0, 0, f_level)),
            rp.RESP.eq(Mux(f_kind == 0, 0, f_resp)),
            rp.GPA.eq(Mux(f_kind == 0, res_gpa, f_gpa)),
            rp.HPA.eq(Mux(f_kind == 0, res_hpa, 0)),
            rp.GSIZE.eq(Mux(f_kind == 0, res_glevel - 1, 0)),
            rp.HSIZE.eq(Mux(f_kind == 0, res_hlevel - 1, 0)),
            rp.SIZE.eq(Mux(f_kind == 0, Mux(res_glevel < res_hlevel, res_glevel,
                                            res_hlevel) - 1, 0)),
            rp.GRIGHTS.eq(Mux(f_kind == 0, res_grights, 0)),
            rp.HRIGHTS.eq(Mux(f_kind == 0, res_hrights, 0)),
            rp.MEMTYPE.eq(Mux(f_kind == 0, res_memtype, 0)),
        ]

        def table_index(addr, level):
            """Entry offset (bytes) of ``addr`` in its table at ``level`` (a signal)."""
            return Mux(level == 4, addr[39:48], Mux(level == 3, addr[30:39],
                                                     Mux(level == 2, addr[21:30],
                                                         addr[12:21]))) << 3

        def present_guest(key):
            for n in (*GTLB.values(), *GPWC.values()):
                present_index(n, key)

        def start_attempt():
            m.d.sync += [upd_n.eq(0), fill_n.eq(0)]
            present_guest(va)
            m.next = "G_CHECK"

        def start_ht(gpa, final):
            """Translate ``gpa`` through the host dimension; the lookups start now."""
            nxt = Signal(52, name="ht_gpa_next")
            m.d.comb += nxt.eq(gpa)
            m.d.sync += [ht_gpa.eq(nxt), ht_final.eq(final)]
            for n in (*NTLB.values(), *HPWC.values()):
                present_index(n, nxt)
            m.next = "HT_CHECK"

        def start_guest_entry(table, level, rights):
            """Read the guest entry for ``va`` at ``level`` in the guest table ``table``."""
            egpa = Signal(52, name="egpa_next")
            m.d.comb += egpa.eq(table + table_index(va, level))
            m.d.sync += [g_level.eq(level), g_table.eq(table), g_rights.eq(rights),
                         g_egpa.eq(egpa)]
            start_ht(egpa, 0)

        def success():
            with m.If(any_ref):
                inc("walks")
            with m.Else():
                inc("tlb_hits")
            m.next = "RESP"

        def host_done(level, base, rights, memtype, shortcut=False):
            """The host dimension translated ``ht_gpa`` to the page ``base``."""
            with m.If(ht_final):
                m.d.sync += [res_hlevel.eq(level),
                             res_hpa.eq(base | (ht_gpa & _mask(level))),
                             res_hrights.eq(rights), res_memtype.eq(memtype), upd_i.eq(0)]
                if shortcut:
                    with m.If(upd_n == 0):
                        success()
                    with m.Else():
                        m.next = "UPD_FETCH"
                else:
                    m.next = "UPD_FETCH"
            with m.Else():
                m.d.sync += rd_addr.eq(base | (g_egpa & _mask(level)))
                m.next = "GW_AR"

        def choose(numbers, hits, prefix):
            """The first TLB array (4K, 2M, 1G) that hit: its level and payload."""
            level = Signal(3, name=f"{prefix}_hit_level")
            fields = {"frame": 40, "rights": 4, "dirty": 1}
            if prefix == "h":
                fields["memtype"] = 3
            chosen = Signal(data.StructLayout(fields), name=f"{prefix}_hit")
            first = True
            for lvl, hit in zip((1, 2, 3), hits):
                n = numbers[lvl]
                if arrays[n] is None:
                    continue
                s = rd(n)
                with (m.If(hit) if first else m.Elif(hit)):
                    m.d.comb += [level.eq(lvl), chosen.frame.eq(s.frame),
                                 chosen.rights.eq(s.rights), chosen.dirty.eq(s.dirty)]
                    if prefix == "g":
                        m.d.comb += chosen.rights[3].eq(0)
                    if arrays[n].kind == "ntlb":
                        m.d.comb += chosen.memtype.eq(s.memtype)
                first = False
            return level, chosen

        # Every array's write data comes from the fill record being written; the
        # invalidation states write only ``valid = 0`` (they override it below).
        rec = fill_r.data
        for arr in arrays:
            if arr is None:
                continue
            d = arr.wr_data
            m.d.comb += [d.valid.eq(1), d.hroot.eq(r_hroot[:52]), d.vpn.eq(arr.vpn_of(rec.key)),
                         d.frame.eq(rec.frame), d.rights.eq(rec.rights)]
            if arr.guest:
                m.d.comb += d.cr3.eq(cr3_frame)
            if arr.kind in ("gtlb", "ntlb"):
                m.d.comb += d.dirty.eq(rec.dirty)
            if arr.kind == "ntlb":
                m.d.comb += d.memtype.eq(rec.memtype)

        m.d.comb += self.busy.eq(1)

        # --- the machine -------------------------------------------------------------------
        # After reset the machine starts by sweeping every cache array (inv_cmd resets to
        # the "all" command), so no slot filled before the reset survives it.
        with m.FSM(init="INV"):
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(0)
                with m.If(self.inv.valid):
                    m.d.comb += self.inv.ready.eq(1)
                    m.d.sync += [inv_cmd.eq(self.inv.payload), sweep.eq(0)]
                    m.next = "INV"
                with m.Elif(self.req.valid):
                    m.d.comb += self.req.ready.eq(1)
                    inc("requests")
                    m.d.sync += [r_gva.eq(req.GVA), r_cr3.eq(req.CR3), r_hroot.eq(req.HROOT),
                                 r_write.eq(req.WRITE), r_fetch.eq(req.FETCH),
                                 r_user.eq(req.USER), attempts.eq(0), any_ref.eq(0),
                                 upd_n.eq(0), fill_n.eq(0), f_kind.eq(0)]
                    with m.If(~canonical):
                        m.d.sync += [f_kind.eq(FAULT["gp"]), f_code.eq(0), f_gpa.eq(0),
                                     f_addr.eq(0), f_level.eq(0), f_resp.eq(0)]
                        m.next = "RESP"
                    with m.Elif(cr3_bad | hroot_bad):
                        m.d.sync += [f_kind.eq(FAULT["bad_root"]), f_code.eq(0),
                                     f_gpa.eq(0), f_addr.eq(0), f_level.eq(0), f_resp.eq(0)]
                        m.next = "RESP"
                    with m.Else():
                        present_guest(req.GVA[:48])     # guest TLB and PWC, read together
                        m.next = "G_CHECK"

            with m.State("G_CHECK"):
                for lvl, n in GTLB.items():
                    present_index(n, va)
                for lvl, n in GPWC.items():
                    present_index(n, va)

                def gmatch(n):
                    if arrays[n] is None:
                        return Const(0)
                    s = rd(n)
                    return (s.valid & (s.cr3 == cr3_frame) & (s.hroot == r_hroot[:52])
                            & (s.vpn == arrays[n].vpn_of(va)))

                tlb_hit = [gmatch(GTLB[lvl]) for lvl in (1, 2, 3)]
                pwc_hit = {lvl: gmatch(GPWC[lvl]) for lvl in (2, 3, 4)}
                chosen_level, chosen = choose(GTLB, tlb_hit, "g")
                usable = ((chosen_level != 0) & guest_allows(chosen.rights)
                          & (chosen.dirty | ~r_write))
                with m.If(usable):
                    inc("gtlb_hits")
                    m.d.sync += [res_glevel.eq(chosen_level), res_grights.eq(chosen.rights[:3])]
                    gpa = Signal(52, name="gpa_hit")
                    m.d.comb += gpa.eq(Cat(Const(0, 12), chosen.frame)
                                       | (va & _mask(chosen_level)))
                    m.d.sync += res_gpa.eq(gpa)
                    start_ht(gpa, 1)
                with m.Else():
                    with m.If(pwc_hit[2]):
                        inc("gpwc_hits_2")
                        start_guest_entry(Cat(Const(0, 12), rd(GPWC[2]).frame), 1,
                                          rd(GPWC[2]).rights[:3])
                    with m.Elif(pwc_hit[3]):
                        inc("gpwc_hits_3")
                        start_guest_entry(Cat(Const(0, 12), rd(GPWC[3]).frame), 2,
                                          rd(GPWC[3]).rights[:3])
                    with m.Elif(pwc_hit[4]):
                        inc("gpwc_hits_4")
                        start_guest_entry(Cat(Const(0, 12), rd(GPWC[4]).frame), 3,
                                          rd(GPWC[4]).rights[:3])
                    with m.Else():
                        start_guest_entry(Cat(Const(0, 12), cr3_frame), 4, 0b011)

            # --- host dimension ---------------------------------------------------------------
            with m.State("HT_CHECK"):
                for lvl, n in NTLB.items():
                    present_index(n, ht_gpa)
                for lvl, n in HPWC.items():
                    present_index(n, ht_gpa)

                def hmatch(n):
                    if arrays[n] is None:
                        return Const(0)
                    s = rd(n)
                    return (s.valid & (s.hroot == r_hroot[:52])
                            & (s.vpn == arrays[n].vpn_of(ht_gpa)))

                tlb_hit = [hmatch(NTLB[lvl]) for lvl in (1, 2, 3)]
                pwc_hit = {lvl: hmatch(HPWC[lvl]) for lvl in (2, 3, 4)}
                chosen_level, chosen = choose(NTLB, tlb_hit, "h")
                usable = ((chosen_level != 0) & host_allows(chosen.rights, ht_final)
                          & (chosen.dirty | ~as_write))
                with m.If(usable):
                    inc("ntlb_hits")
                    host_done(chosen_level, Cat(Const(0, 12), chosen.frame), chosen.rights,
                              chosen.memtype, shortcut=True)
                with m.Else():
                    all_rights = 0b1111 if ept else 0b0011
                    start_level = Signal(3)
                    start_table = Signal(52)
                    start_rights = Signal(4)
                    with m.If(pwc_hit[2]):
                        inc("hpwc_hits_2")
                        m.d.comb += [start_level.eq(1),
                                     start_table.eq(Cat(Const(0, 12), rd(HPWC[2]).frame)),
                                     start_rights.eq(rd(HPWC[2]).rights)]
                    with m.Elif(pwc_hit[3]):
                        inc("hpwc_hits_3")
                        m.d.comb += [start_level.eq(2),
                                     start_table.eq(Cat(Const(0, 12), rd(HPWC[3]).frame)),
                                     start_rights.eq(rd(HPWC[3]).rights)]
                    with m.Elif(pwc_hit[4]):
                        inc("hpwc_hits_4")
                        m.d.comb += [start_level.eq(3),
                                     start_table.eq(Cat(Const(0, 12), rd(HPWC[4]).frame)),
                                     start_rights.eq(rd(HPWC[4]).rights)]
                    with m.Else():
                        m.d.comb += [start_level.eq(4), start_table.eq(host_root),
                                     start_rights.eq(all_rights)]
                    addr = start_table + table_index(ht_gpa, start_level)
                    m.d.sync += [ht_level.eq(start_level), ht_table.eq(start_table),
                                 ht_rights.eq(start_rights), ht_addr.eq(addr),
                                 rd_addr.eq(addr)]
                    m.next = "HT_AR"

            with m.State("HT_AR"):
                m.d.comb += axi.arvalid.eq(1)
                with m.If(axi.arready):
                    m.next = "HT_R"

            with m.State("HT_R"):
                m.d.comb += axi.rready.eq(1)
                with m.If(axi.rvalid):
                    with m.If(r_err):
                        fault("bus_error", addr=ht_addr, level=ht_level, resp=axi.rresp)
                    with m.Else():
                        inc("mem_reads")
                        m.d.sync += any_ref.eq(1)
                        with m.If(h_present & h_bad):
                            if ept:
                                fault("ept_misconfig", gpa=ht_gpa, addr=ht_addr,
                                      level=ht_level)
                            else:
                                npf(1, 1)
                        with m.Elif(~h_present):
                            host_violation(h_rights_new, 0)
                        with m.Elif(h_leaf & ~host_allows(h_rights_new, ht_final)):
                            host_violation(h_rights_new, 1)
                        with m.Else():
                            with m.If(h_need_a | h_need_d):
                                push_update(ht_addr, e, 1, h_need_a, h_need_d, ht_level)
                            with m.If(h_leaf):
                                mt = e[3:6] if ept else 0
                                dirty = Mux(ad, e[L.EPT_ENTRY.D.lsb if ept
                                                  else L.X86_ENTRY.D.lsb] | as_write, 1)
                                with m.Switch(ht_level):
                                    for lvl in (1, 2, 3):
                                        with m.Case(lvl):
                                            push_fill(NTLB[lvl], ht_gpa, h_addr[12:],
                                                      h_rights_new, dirty, mt)
                                host_done(ht_level, h_addr, h_rights_new, mt)
                            with m.Else():
                                with m.Switch(ht_level):
                                    for lvl in (4, 3, 2):
                                        with m.Case(lvl):
                                            push_fill(HPWC[lvl], ht_gpa, h_addr[12:],
                                                      h_rights_new)
                                nxt_level = ht_level - 1
                                addr = h_addr + table_index(ht_gpa, nxt_level)
                                m.d.sync += [ht_level.eq(nxt_level), ht_table.eq(h_addr),
                                             ht_rights.eq(h_rights_new), ht_addr.eq(addr),
                                             rd_addr.eq(addr)]
                                m.next = "HT_AR"

            # --- guest entry ------------------------------------------------------------------
            with m.State("GW_AR"):
                m.d.comb += axi.arvalid.eq(1)
                with m.If(axi.arready):
                    m.next = "GW_R"

            with m.State("GW_R"):
                m.d.comb += axi.rready.eq(1)
                with m.If(axi.rvalid):
                    with m.If(r_err):
                        fault("bus_error", addr=rd_addr, level=g_level, resp=axi.rresp)
                    with m.Else():
                        inc("mem_reads")
                        m.d.sync += any_ref.eq(1)
                        with m.If(~g_present):
                            fault("page_fault", code=pf_code(0, 0), level=g_level)
                        with m.Elif(g_bad):
                            fault("page_fault", code=pf_code(1, 1), level=g_level)
                        with m.Elif(g_leaf & ~guest_allows(g_rights_new)):
                            fault("page_fault", code=pf_code(1, 0), level=g_level)
                        with m.Else():
                            need_a = (e & X.A.mask) == 0
                            need_d = g_leaf & r_write & ((e & X.D.mask) == 0)
                            with m.If(need_a | need_d):
                                push_update(rd_addr, e, 0, need_a, need_d, g_level)
                            with m.If(g_leaf):
                                dirty = e[X.D.lsb] | r_write
                                with m.Switch(g_level):
                                    for lvl in (1, 2, 3):
                                        with m.Case(lvl):
                                            push_fill(GTLB[lvl], va, g_addr[12:],
                                                      g_rights_new, dirty)
                                gpa = Signal(52, name="gpa_walked")
                                m.d.comb += gpa.eq(g_addr | (va & _mask(g_level)))
                                m.d.sync += [res_glevel.eq(g_level), res_gpa.eq(gpa),
                                             res_grights.eq(g_rights_new)]
                                start_ht(gpa, 1)
                            with m.Else():
                                with m.Switch(g_level):
                                    for lvl in (4, 3, 2):
                                        with m.Case(lvl):
                                            push_fill(GPWC[lvl], va, g_addr[12:],
                                                      g_rights_new)
                                start_guest_entry(g_addr, g_level - 1, g_rights_new)

            # --- update phase: atomic read-compare-write of every entry lacking A/D ----------
            with m.State("UPD_FETCH"):
                m.d.comb += upd_r.addr.eq(upd_i)
                with m.If(upd_i == upd_n):
                    success()
                with m.Else():
                    m.next = "UPD_AR"

            with m.State("UPD_AR"):
                m.d.comb += [upd_r.addr.eq(upd_i), axi.araddr.eq(upd_r.data.addr),
                             axi.arvalid.eq(1)]
                m.d.sync += rd_addr.eq(upd_r.data.addr)
                with m.If(axi.arready):
                    m.next = "UPD_R"

            with m.State("UPD_R"):
                m.d.comb += [upd_r.addr.eq(upd_i), axi.rready.eq(1), self.lock.eq(1)]
                rec = upd_r.data
                host_ign = hA | hD | L.ENGINE_BITS[p["host"]].mask
                ign = Signal(64)
                m.d.comb += ign.eq(Mux(rec.host, host_ign, X.A.mask | X.D.mask))
                bits = Mux(rec.host,
                           Mux(rec.set_a, hA, 0) | Mux(rec.set_d, hD, 0),
                           Mux(rec.set_a, X.A.mask, 0) | Mux(rec.set_d, X.D.mask, 0))
                with m.If(axi.rvalid):
                    with m.If(r_err):
                        fault("bus_error", addr=rec.addr, level=rec.level, resp=axi.rresp)
                    with m.Else():
                        inc("mem_reads")
                        m.d.sync += any_ref.eq(1)
                        with m.If(((rdata ^ rec.old) & ~ign) != 0):
                            inc("restarts")
                            with m.If(attempts == p["max_restarts"]):
                                fault("conflict")
                            with m.Else():
                                m.d.sync += attempts.eq(attempts + 1)
                                start_attempt()
                        with m.Elif((rdata & bits) != bits):
                            m.d.sync += upd_now.eq(rdata | bits)
                            m.next = "UPD_AW"
                        with m.Else():
                            nxt = upd_i + 1
                            m.d.sync += upd_i.eq(nxt)
                            m.d.comb += upd_r.addr.eq(nxt)        # the next record, ready next cycle
                            with m.If(nxt == upd_n):
                                success()
                            with m.Else():
                                m.next = "UPD_AR"

            aw_done = Signal()
            w_done = Signal()
            with m.State("UPD_AW"):
                m.d.comb += [upd_r.addr.eq(upd_i), self.lock.eq(1),
                             axi.awaddr.eq(upd_r.data.addr), axi.wdata.eq(upd_now),
                             axi.awvalid.eq(~aw_done), axi.wvalid.eq(~w_done)]
                aw_now = aw_done | axi.awready
                w_now = w_done | axi.wready
                with m.If(aw_now & w_now):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "UPD_B"
                with m.Else():
                    m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]

            with m.State("UPD_B"):
                m.d.comb += [upd_r.addr.eq(upd_i), axi.bready.eq(1), self.lock.eq(1)]
                with m.If(axi.bvalid):
                    with m.If(axi.bresp[1]):
                        fault("bus_error", addr=upd_r.data.addr, level=upd_r.data.level,
                              resp=axi.bresp)
                    with m.Else():
                        inc("mem_writes")
                        nxt = upd_i + 1
                        m.d.sync += upd_i.eq(nxt)
                        m.d.comb += upd_r.addr.eq(nxt)        # the next record, ready next cycle
                        with m.If(nxt == upd_n):
                            success()
                        with m.Else():
                            m.next = "UPD_AR"

            # --- fills, in walk order ---------------------------------------------------------
            with m.State("FILL"):
                m.d.comb += fill_r.addr.eq(fill_i)
                m.d.sync += fill_pending.eq(fill_i != fill_n)
                with m.If(fill_i != fill_n):
                    m.d.sync += fill_i.eq(fill_i + 1)
                rec = fill_r.data
                for n, arr in enumerate(arrays):
                    if arr is not None:
                        m.d.comb += [arr.wr_index.eq(arr.index_of(rec.key)),
                                     arr.wr_en.eq(fill_pending & (rec.array == n))]
                with m.If((fill_i == fill_n) & ~fill_pending):
                    m.next = "IDLE"

            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    for i, kind in enumerate(L.FAULT_KINDS[1:], start=1):
                        with m.If(f_kind == i):
                            inc(f"fault_{kind}")
                    # A translation's cache fills follow its response; the walker takes
                    # no request or command before they are done.
                    m.d.sync += [fill_i.eq(0), fill_pending.eq(0)]
                    with m.If((f_kind == 0) & (fill_n != 0)):
                        m.next = "FILL"
                    with m.Else():
                        m.next = "IDLE"

            # --- invalidation -----------------------------------------------------------------
            with m.State("INV"):
                op = inv_cmd.OP
                sweeping = (op == INV["all"]) | (op == INV["root"])
                for n, arr in enumerate(arrays):
                    if arr is None:
                        continue
                    kind, level, shift = ARRAYS[n]
                    key = inv_cmd.ADDR[:52] if kind in ("ntlb", "hpwc") else inv_cmd.ADDR[:48]
                    m.d.comb += arr.rd_index.eq(Mux(sweeping, sweep[:len(arr.rd_index)],
                                                    arr.index_of(key)))
                m.next = "INV_WRITE"

            with m.State("INV_WRITE"):
                op = inv_cmd.OP
                sweeping = (op == INV["all"]) | (op == INV["root"])
                m_cr3 = inv_cmd.MATCH_CR3
                m_hr = inv_cmd.MATCH_HROOT
                for n, arr in enumerate(arrays):
                    if arr is None:
                        continue
                    kind, level, shift = ARRAYS[n]
                    guest = kind in ("gtlb", "gpwc")
                    key = inv_cmd.ADDR[:48] if guest else inv_cmd.ADDR[:52]
                    s = arr.rd_data
                    index = Mux(sweeping, sweep[:len(arr.rd_index)], arr.index_of(key))
                    m.d.comb += arr.rd_index.eq(index)
                    page = s.vpn == arr.vpn_of(key)
                    cr3_ok = (~m_cr3 | (s.cr3 == inv_cmd.CR3[12:52])) if guest else 1
                    same_root = (s.hroot == inv_cmd.HROOT[:52]) & (inv_cmd.HROOT[52:] == 0)
                    hr_ok = ~m_hr | same_root
                    if guest:
                        drop = Mux(op == INV["all"], 1,
                                   Mux(op == INV["gva"], page & cr3_ok & hr_ok,
                                       Mux(op == INV["root"], (m_cr3 | m_hr) & cr3_ok & hr_ok,
                                           0)))
                    else:
                        scan_hit = 0
                        if kind == "ntlb":
                            scan_hit = ((op == INV["scan_clear"]) & (inv_cmd.SIZE == level - 1)
                                        & page & same_root)
                        drop = Mux(op == INV["all"], 1,
                                   Mux(op == INV["gpa"], page & hr_ok,
                                       Mux(op == INV["root"], m_hr & ~m_cr3 & hr_ok,
                                           scan_hit)))
                    with m.If(s.valid & drop):
                        m.d.comb += [arr.wr_en.eq(1), arr.wr_index.eq(index),
                                     arr.wr_data.valid.eq(0)]
                with m.If(sweeping & (sweep != max_depth - 1)):
                    m.d.sync += sweep.eq(sweep + 1)
                    m.next = "INV"
                with m.Else():
                    m.next = "IDLE"

        return m


SYNTH_DESIGNS = {
    "walker": lambda: Walker(),
    "walker-npt": lambda: Walker(host="npt"),
}
