"""Nested (two-dimensional) page walker: guest IA-32e paging over EPT or NPT.

Contract
--------
:meth:`Walker.translate` takes a :class:`WalkRequest` and returns either a
:class:`Translation` or a :class:`Fault`. It never raises for anything found in memory.

Order of work for one request:

1. The GVA must be canonical (else ``GP``); the guest root and host root must be well formed
   (else ``BAD_ROOT``).
2. TLB: a guest-TLB hit gives the GPA, a nested-TLB hit the HPA. A hit is used only when the
   cached rights allow the access and, for a write, the cached leaf is already dirty;
   otherwise that dimension is walked (its paging-structure caches still help).
3. Walk phase (reads only). Guest levels from the deepest guest-PWC hit down to the leaf;
   every guest paging-structure entry is read at the HPA its GPA translates to, through
   the nested TLB, host PWC and host table. Then the guest rights are checked, then the
   final GPA is translated. The first fault in this order is the one reported; a faulting
   request changes nothing: no A/D bit, no cache fill.
4. Update phase: every entry read in the walk phase that needs A (or D) is updated in walk
   order by an atomic read-compare-write: read the word again; if anything but its A, D
   and engine-owned bits changed since the walk read it, the whole request restarts (at
   most ``max_restarts`` times, then ``CONFLICT``); if the bits are missing they are set.
5. Fills: every structure the walk phase read through is filled (direct-mapped).

A/D rules: guest A on every guest entry used, guest D on the guest leaf for writes. With
host A/D enabled (EPTP bit 6; always for NPT) host A on every host entry used, host D on
the host leaf when the access counts as a write: data writes, and every guest paging-
structure access (these also need host write permission, as on x86).

Every memory reference is logged (:attr:`Walker.log`, per request) and counted.
"""

import enum
from dataclasses import dataclass, field

from thermocline.layouts import (
    EPT_ENTRY as E, EPTP, CR3, PF_ERROR, EPT_QUAL, NPF_INFO, ENGINE_BITS,
    LEVEL_SHIFT, PAGE_SHIFT, EPT_MEMTYPE_UC, EPT_MEMTYPE_WB, is_canonical,
)
from .entries import EptFormat, X86Format
from .memory import BusError, PhysMem
from .walkcache import WalkCaches, TlbEntry, PwcEntry

__all__ = ["WalkerConfig", "WalkRequest", "Translation", "Fault", "FaultKind", "MemRef",
           "Walker", "WalkCounters"]


class FaultKind(enum.Enum):
    GP = "gp"                      # non-canonical guest-virtual address
    BAD_ROOT = "bad_root"          # reserved bits / unsupported values in CR3 or EPTP
    PAGE_FAULT = "page_fault"      # guest #PF, ``code`` = error code
    EPT_VIOLATION = "ept_violation"  # ``code`` = exit qualification, ``gpa`` = faulting GPA
    EPT_MISCONFIG = "ept_misconfig"  # ``gpa`` = GPA whose translation met the bad entry
    NPF = "npf"                    # AMD nested page fault, ``code`` = EXITINFO1
    BUS_ERROR = "bus_error"        # ``addr`` = HPA of the failed access, ``resp``
    CONFLICT = "conflict"          # entries kept changing under the update phase


@dataclass(frozen=True)
class WalkRequest:
    """One translation: ``gva`` under guest root ``cr3`` and host root ``hroot`` (an EPTP
    for EPT hosts, a nested CR3 for NPT hosts). ``write`` and ``fetch`` are exclusive;
    neither means a data read. ``user`` is the guest privilege of the access."""

    gva: int
    cr3: int
    hroot: int
    write: bool = False
    fetch: bool = False
    user: bool = False

    def __post_init__(self):
        if self.write and self.fetch:
            raise ValueError("an access is a read, a write or a fetch, not write and fetch")


@dataclass(frozen=True)
class Translation:
    """A successful translation.

    ``size`` is the page size a TLB may use for it (the smaller of the guest and host
    pages); ``guest_rights`` is (RW, US, XD) accumulated over the guest walk,
    ``host_rights`` is (R, W, X, XU) for EPT or (RW, US, NX) for NPT, accumulated over the
    host walk of the final GPA; ``memtype`` is the EPT leaf memory type (0 for NPT).
    """

    gva: int
    gpa: int
    hpa: int
    size: int
    guest_size: int
    host_size: int
    guest_rights: tuple
    host_rights: tuple
    memtype: int
    #: GPA of the guest leaf entry when this request walked the guest dimension (``None``
    #: on a guest-TLB hit); what the exit detector learns from. Not part of equality.
    pte_gpa: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Fault:
    """A precise fault. ``code`` is the #PF error code, the EPT exit qualification or the
    NPF EXITINFO1 (0 for other kinds); ``gpa`` the GPA being translated when a host-table
    fault happened; ``addr`` the HPA of a failed memory access; ``level`` the table level
    of the entry at fault (0 if none); ``resp`` the bus response of a bus error."""

    kind: FaultKind
    gva: int
    code: int = 0
    gpa: int = 0
    addr: int = 0
    level: int = 0
    resp: str = ""


@dataclass(frozen=True)
class MemRef:
    """One memory reference: ``op`` is "read" or "write"; ``dim`` "guest" or "host";
    ``phase`` "walk" or "update"; ``resp`` the bus error it met ("" if none, and then
    ``value`` is 0)."""

    op: str
    addr: int
    value: int
    dim: str
    level: int
    phase: str
    resp: str = ""


@dataclass
class WalkCounters:
    """Performance counters; the hardware has one register per field."""

    requests: int = 0
    walks: int = 0                 # requests that read memory
    mem_reads: int = 0
    mem_writes: int = 0
    restarts: int = 0
    tlb_hits: int = 0              # both dimensions hit: no memory reference
    gtlb_hits: int = 0
    ntlb_hits: int = 0
    gpwc_hits: dict = field(default_factory=lambda: {4: 0, 3: 0, 2: 0})
    hpwc_hits: dict = field(default_factory=lambda: {4: 0, 3: 0, 2: 0})
    faults: dict = field(default_factory=lambda: {k: 0 for k in FaultKind})


@dataclass(frozen=True)
class WalkerConfig:
    """Walker parameters (keyword-only, checked).

    host: "ept" or "npt"; pa_bits: physical-address width of both dimensions (reserved
    address bits above it); cache sizes: slots per array, powers of two or 0; wp/nxe:
    guest CR0.WP and EFER.NXE; mbec: EPT mode-based execute control (user fetches need
    XU); execute_only: EPT execute-only pages allowed; max_restarts: update-phase retries.
    """

    host: str = "ept"
    pa_bits: int = 52
    tlb_entries: int = 16
    tlb_large_entries: int = 4
    pwc_entries: int = 8
    wp: bool = True
    nxe: bool = True
    mbec: bool = False
    execute_only: bool = True
    max_restarts: int = 3

    def __post_init__(self):
        if self.host not in ("ept", "npt"):
            raise ValueError(f"host must be 'ept' or 'npt', got {self.host!r}")
        if not 32 <= self.pa_bits <= 52:
            raise ValueError(f"pa_bits must be 32..52, got {self.pa_bits}")
        for name in ("tlb_entries", "tlb_large_entries", "pwc_entries"):
            n = getattr(self, name)
            if not isinstance(n, int) or n < 0 or n & (n - 1) or n > 4096:
                raise ValueError(f"{name} must be 0 or a power of two up to 4096, got {n!r}")
        if not 0 <= self.max_restarts <= 15:
            raise ValueError(f"max_restarts must be 0..15, got {self.max_restarts}")


class _Fault(Exception):
    def __init__(self, fault: Fault):
        self.fault = fault


class _Restart(Exception):
    pass


@dataclass
class _Plan:
    """What the walk phase decided: A/D updates and cache fills, in walk order."""

    updates: list = field(default_factory=list)     # (addr, old, bits, dim, level)
    fills: list = field(default_factory=list)       # (array, ctx, key, make_value)


class Walker:
    """The nested walker over ``mem`` (see the module docstring for the contract)."""

    def __init__(self, mem: PhysMem, config: WalkerConfig | None = None, **kwargs):
        if config is None:
            config = WalkerConfig(**kwargs)
        elif kwargs:
            raise TypeError("give either a WalkerConfig or keyword parameters, not both")
        self.mem = mem
        self.config = config
        self.guest = X86Format(config.pa_bits, nxe=config.nxe)
        if config.host == "ept":
            self.hfmt = EptFormat(config.pa_bits, execute_only=config.execute_only)
        else:
            self.hfmt = X86Format(config.pa_bits, nxe=True)
        self.caches = WalkCaches(config.tlb_entries, config.tlb_large_entries,
                                 config.pwc_entries)
        self.counters = WalkCounters()
        self.log: list[MemRef] = []
        self._host_ignore = self.hfmt.A | self.hfmt.D | ENGINE_BITS[config.host].mask
        self._guest_ignore = self.guest.A | self.guest.D

    # --- public --------------------------------------------------------------------------

    def translate(self, req: WalkRequest) -> Translation | Fault:
        """Translate one request (see the module docstring)."""
        c = self.counters
        c.requests += 1
        self.log = []
        try:
            result = self._translate(req)
        except _Fault as f:
            result = f.fault
        if isinstance(result, Fault):
            c.faults[result.kind] += 1
        return result

    def invalidate_all(self) -> int:
        """Drop every cached translation; returns the number of slots dropped."""
        return self.caches.clear()

    def invalidate_gva(self, gva: int, cr3: int | None = None,
                       hroot: int | None = None) -> int:
        """Drop guest-TLB and guest-PWC slots for ``gva`` (in one context, or in all)."""
        match = self._ctx_match(cr3, hroot)
        gva &= (1 << 48) - 1
        n = sum(a.drop(gva, match) for a in self.caches.gtlb.values())
        return n + sum(a.drop(gva, match) for a in self.caches.gpwc.values())

    def invalidate_gpa(self, gpa: int, hroot: int | None = None) -> int:
        """Drop nested-TLB and host-PWC slots for ``gpa`` (under one host root, or all)."""
        match = None if hroot is None else (lambda ctx: ctx[0] == hroot)
        gpa &= (1 << 52) - 1
        n = sum(a.drop(gpa, match) for a in self.caches.ntlb.values())
        return n + sum(a.drop(gpa, match) for a in self.caches.hpwc.values())

    def invalidate_root(self, cr3: int | None = None, hroot: int | None = None) -> int:
        """Drop every slot tagged with guest root ``cr3`` and/or host root ``hroot``."""
        if cr3 is None and hroot is None:
            raise ValueError("invalidate_root needs cr3, hroot or both")
        gmatch = self._ctx_match(cr3, hroot)
        n = sum(a.sweep(gmatch) for a in (*self.caches.gtlb.values(),
                                          *self.caches.gpwc.values()))
        if hroot is not None and cr3 is None:
            hmatch = lambda ctx: ctx[0] == hroot  # noqa: E731
            n += sum(a.sweep(hmatch) for a in (*self.caches.ntlb.values(),
                                               *self.caches.hpwc.values()))
        return n

    def scanner_cleared(self, hroot: int, base: int, size: int) -> int:
        """The scanner cleared the A bit of the host leaf mapping ``[base, base + size)``:
        drop the one nested-TLB slot that may hold a copy of that leaf."""
        level = {1 << 12: 1, 1 << 21: 2, 1 << 30: 3}[size]
        return self.caches.ntlb[level].drop(base & ((1 << 52) - 1),
                                            lambda ctx: ctx[0] == hroot)

    @staticmethod
    def _ctx_match(cr3, hroot):
        if cr3 is None and hroot is None:
            return None
        return lambda ctx: ((cr3 is None or ctx[0] == CR3.ADDR.get(cr3))
                            and (hroot is None or ctx[1] == hroot))

    # --- memory --------------------------------------------------------------------------

    def _read(self, addr: int, dim: str, level: int, phase: str) -> int:
        try:
            value = self.mem.read(addr)
        except BusError as e:
            self.log.append(MemRef("read", addr, 0, dim, level, phase, e.resp))
            raise _Fault(Fault(FaultKind.BUS_ERROR, self._gva, addr=e.addr, resp=e.resp,
                               level=level))
        self.counters.mem_reads += 1
        self.log.append(MemRef("read", addr, value, dim, level, phase))
        return value

    def _write(self, addr: int, value: int, dim: str, level: int):
        try:
            self.mem.write(addr, value)
        except BusError as e:
            self.log.append(MemRef("write", addr, value, dim, level, "update", e.resp))
            raise _Fault(Fault(FaultKind.BUS_ERROR, self._gva, addr=e.addr, resp=e.resp,
                               level=level))
        self.counters.mem_writes += 1
        self.log.append(MemRef("write", addr, value, dim, level, "update"))

    # --- request -------------------------------------------------------------------------

    def _translate(self, req: WalkRequest) -> Translation | Fault:
        self._gva = req.gva
        if not is_canonical(req.gva) or req.gva >= 1 << 64 or req.gva < 0:
            return Fault(FaultKind.GP, req.gva)
        self._check_roots(req)
        c = self.counters
        for _ in range(self.config.max_restarts + 1):
            plan = _Plan()
            result = self._walk(req, plan)
            try:
                self._update(plan)
            except _Restart:
                c.restarts += 1
                continue
            for array, ctx, key, value in plan.fills:
                array.fill(ctx, key, value)
            if any(not r.resp for r in self.log):
                c.walks += 1
            else:
                c.tlb_hits += 1
            return result
        return Fault(FaultKind.CONFLICT, req.gva)

    def _check_roots(self, req: WalkRequest):
        pa_mask = (1 << self.config.pa_bits) - 1
        bad = req.cr3 >> 52 or (CR3.ADDR.get(req.cr3) << 12) & ~pa_mask
        if self.config.host == "ept":
            h = req.hroot
            bad = bad or (EPTP.WALK_LEN.get(h) != 3
                          or EPTP.MEMTYPE.get(h) not in (EPT_MEMTYPE_UC, EPT_MEMTYPE_WB)
                          or h & (EPTP._rsvd8.mask | EPTP._rsvd52.mask)
                          or (EPTP.ADDR.get(h) << 12) & ~pa_mask)
        else:
            bad = bad or req.hroot >> 52 or (CR3.ADDR.get(req.hroot) << 12) & ~pa_mask
        if bad:
            raise _Fault(Fault(FaultKind.BAD_ROOT, req.gva))

    def _host_ad(self, hroot: int) -> bool:
        return self.config.host == "npt" or bool(EPTP.AD.get(hroot))

    def _host_table(self, hroot: int) -> int:
        if self.config.host == "ept":
            return EPTP.ADDR.get(hroot) << 12
        return CR3.ADDR.get(hroot) << 12

    # --- walk phase ----------------------------------------------------------------------

    def _walk(self, req: WalkRequest, plan: _Plan) -> Translation:
        caches, c = self.caches, self.counters
        gctx = (CR3.ADDR.get(req.cr3), req.hroot)
        va = req.gva & ((1 << 48) - 1)
        need_dirty = req.write

        # Guest TLB.
        hit = None
        for lvl in (1, 2, 3):
            entry = caches.gtlb[lvl].lookup(gctx, va)
            if entry is not None:
                hit = (lvl, entry)
                break
        pte_gpa = None
        if hit and self._guest_allows(req, hit[1].rights) and (hit[1].dirty or not need_dirty):
            c.gtlb_hits += 1
            glevel, entry = hit
            gpa_page, grights = entry.base, entry.rights
        else:
            glevel, gpa_page, grights, pte_gpa = self._guest_walk(req, gctx, va, plan)

        gshift = PAGE_SHIFT[glevel]
        gpa = gpa_page | (va & ((1 << gshift) - 1))
        hlevel, hpa_page, hrights, memtype = self._host_translate(req, gpa, final=True,
                                                                  plan=plan, grights=grights)
        hshift = PAGE_SHIFT[hlevel]
        hpa = hpa_page | (gpa & ((1 << hshift) - 1))
        return Translation(gva=req.gva, gpa=gpa, hpa=hpa, size=1 << min(gshift, hshift),
                           guest_size=1 << gshift, host_size=1 << hshift,
                           guest_rights=grights, host_rights=hrights, memtype=memtype,
                           pte_gpa=pte_gpa)

    def _guest_allows(self, req: WalkRequest, rights: tuple) -> bool:
        rw, us, xd = rights
        if req.user and not us:
            return False
        if req.write and not rw and (req.user or self.config.wp):
            return False
        if req.fetch and xd:
            return False
        return True

    def _guest_walk(self, req, gctx, va, plan) -> tuple[int, int, tuple, int]:
        caches, c, g = self.caches, self.counters, self.guest
        level, table, rights = 4, CR3.ADDR.get(req.cr3) << 12, (1, 1, 0)
        for lvl in (2, 3, 4):
            pwc = caches.gpwc[lvl].lookup(gctx, va)
            if pwc is not None:
                c.gpwc_hits[lvl] += 1
                level, table, rights = lvl - 1, pwc.table, pwc.rights
                break
        while True:
            egpa = table + 8 * ((va >> LEVEL_SHIFT[level]) & 511)
            hlevel, hbase, _, _ = self._host_translate(req, egpa, final=False, plan=plan)
            ehpa = hbase | (egpa & ((1 << PAGE_SHIFT[hlevel]) - 1))
            e = self._read(ehpa, "guest", level, "walk")
            if not g.present(e):
                raise _Fault(self._pf(req, present=False, level=level))
            if g.reserved(e, level):
                raise _Fault(self._pf(req, present=True, rsvd=True, level=level))
            rw, us, xd = g.rights(e)
            rights = (rights[0] & rw, rights[1] & us, rights[2] | xd)
            leaf = g.is_leaf(e, level)
            bits = g.A | (g.D if leaf and req.write else 0)
            if e & bits != bits:
                plan.updates.append((ehpa, e, bits, "guest", level))
            if leaf:
                break
            nxt = g.address(e, level)
            plan.fills.append((caches.gpwc[level], gctx, va, PwcEntry(nxt, rights)))
            table, level = nxt, level - 1
        if not self._guest_allows(req, rights):
            raise _Fault(self._pf(req, present=True, level=level))
        base = g.address(e, level)
        dirty = bool(e & g.D) or req.write
        plan.fills.append((caches.gtlb[level], gctx, va, TlbEntry(base, rights, dirty)))
        return level, base, rights, egpa

    def _pf(self, req, present, level, rsvd=False) -> Fault:
        code = PF_ERROR.pack(P=int(present), W=int(req.write), US=int(req.user),
                             RSVD=int(rsvd), ID=int(req.fetch and self.config.nxe))
        return Fault(FaultKind.PAGE_FAULT, req.gva, code=code, level=level)

    # --- host dimension ------------------------------------------------------------------

    def _host_allows(self, req, rights, final: bool) -> bool:
        if self.config.host == "ept":
            r, w, x, xu = rights
            if not final:
                return bool(r and (w or not self._host_ad(req.hroot)))
            if req.write:
                return bool(w)
            if req.fetch:
                return bool(xu if (self.config.mbec and req.user) else x)
            return bool(r)
        rw, us, nx = rights
        if not us:
            return False
        if not final or req.write:
            return bool(rw)
        return not (req.fetch and nx)

    def _host_translate(self, req, gpa, *, final, plan, grights=None):
        """Translate ``gpa`` through the host dimension.

        Returns (leaf level, HPA page base, rights, memtype). ``final`` is the data access;
        otherwise a guest paging-structure access.
        """
        caches, c, h = self.caches, self.counters, self.hfmt
        hroot = req.hroot
        hctx = (hroot,)
        ad = self._host_ad(hroot)
        as_write = ad and (req.write or not final)
        ept = self.config.host == "ept"
        gpa &= (1 << 52) - 1

        for lvl in (1, 2, 3):
            entry = caches.ntlb[lvl].lookup(hctx, gpa)
            if entry is not None:
                if self._host_allows(req, entry.rights, final) and (entry.dirty or not as_write):
                    c.ntlb_hits += 1
                    return lvl, entry.base, entry.rights, entry.extra
                break

        level, table = 4, self._host_table(hroot)
        rights = (1, 1, 1, 1) if ept else (1, 1, 0)
        for lvl in (2, 3, 4):
            pwc = caches.hpwc[lvl].lookup(hctx, gpa)
            if pwc is not None:
                c.hpwc_hits[lvl] += 1
                level, table, rights = lvl - 1, pwc.table, pwc.rights
                break
        while True:
            addr = table + 8 * ((gpa >> LEVEL_SHIFT[level]) & 511)
            e = self._read(addr, "host", level, "walk")
            present = h.present(e)
            if ept:
                if present and h.misconfigured(e, level):
                    raise _Fault(Fault(FaultKind.EPT_MISCONFIG, req.gva, gpa=gpa, addr=addr,
                                       level=level))
                r, w, x, xu = h.rights(e)
                rights = (rights[0] & r, rights[1] & w, rights[2] & x, rights[3] & xu)
            else:
                if present and h.reserved(e, level):
                    raise _Fault(self._npf(req, gpa, final, present=True, rsvd=True,
                                           level=level))
                rw, us, nx = h.rights(e)
                rights = (rights[0] & rw, rights[1] & us, rights[2] | nx)
            if not present:
                raise _Fault(self._host_violation(req, gpa, final, rights, False, level,
                                                  grights))
            leaf = h.is_leaf(e, level)
            if ad:
                bits = h.A | (h.D if leaf and as_write else 0)
                if e & bits != bits:
                    plan.updates.append((addr, e, bits, "host", level))
            if leaf:
                break
            nxt = h.address(e, level)
            plan.fills.append((caches.hpwc[level], hctx, gpa, PwcEntry(nxt, rights)))
            table, level = nxt, level - 1
        if not self._host_allows(req, rights, final):
            raise _Fault(self._host_violation(req, gpa, final, rights, True, level, grights))
        base = h.address(e, level)
        memtype = E.MEMTYPE.get(e) if ept else 0
        dirty = (bool(e & h.D) or as_write) if ad else True
        plan.fills.append((caches.ntlb[level], hctx, gpa, TlbEntry(base, rights, dirty,
                                                                    memtype)))
        return level, base, rights, memtype

    def _host_violation(self, req, gpa, final, rights, present, level, grights) -> Fault:
        if self.config.host == "npt":
            return self._npf(req, gpa, final, present=present, level=level)
        ad = self._host_ad(req.hroot)
        r, w, x, xu = rights
        fields = dict(READABLE=r, WRITABLE=w, EXECUTABLE=x,
                      USER_EXEC=xu if self.config.mbec else 0, GLA_VALID=1,
                      GLA_XLAT=int(final))
        if final:
            fields.update(RD=int(not req.write and not req.fetch), WR=int(req.write),
                          FETCH=int(req.fetch))
            if grights is not None:
                fields.update(GLA_RW=grights[0], GLA_USER=grights[1], GLA_NX=grights[2])
        else:
            fields.update(RD=1, WR=int(ad))
        return Fault(FaultKind.EPT_VIOLATION, req.gva, code=EPT_QUAL.pack(**fields), gpa=gpa,
                     level=level)

    def _npf(self, req, gpa, final, *, present, level, rsvd=False) -> Fault:
        code = NPF_INFO.pack(P=int(present), RW=int(req.write or not final), US=1,
                             RSVD=int(rsvd), ID=int(final and req.fetch),
                             FINAL=int(final), TABLE=int(not final))
        return Fault(FaultKind.NPF, req.gva, code=code, gpa=gpa, level=level)

    # --- update phase --------------------------------------------------------------------

    def _update(self, plan: _Plan):
        for addr, old, bits, dim, level in plan.updates:
            ignore = self._host_ignore if dim == "host" else self._guest_ignore
            now = self._read(addr, dim, level, "update")
            if (now ^ old) & ~ignore:
                raise _Restart()
            if now & bits != bits:
                self._write(addr, now | bits, dim, level)
