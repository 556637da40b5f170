"""Words on the walker's streams, to and from the model's objects.

Requests, responses and invalidation commands travel as packed words of the shared layouts
``WALK_REQ``, ``WALK_RESP`` and ``WALK_INV``; this module converts the model's
:class:`~model.walker.WalkRequest`, :class:`~model.walker.Translation` /
:class:`~model.walker.Fault` and invalidation calls to those words, so a scoreboard compares
the hardware's response word with the model's, bit for bit.
"""

from dataclasses import dataclass

from model.walker import Fault, Translation, Walker, WalkRequest
from thermocline.layouts import (
    FAULT_KINDS, INV_OPS, RESP_CODES, SIZE_CODES, WALK_INV, WALK_REQ, WALK_RESP,
)

__all__ = ["encode_request", "encode_result", "describe_response", "Invalidate",
           "encode_inv", "apply_inv", "model_counters"]


def encode_request(req: WalkRequest) -> int:
    return WALK_REQ.pack(GVA=req.gva, CR3=req.cr3, HROOT=req.hroot, WRITE=int(req.write),
                         FETCH=int(req.fetch), USER=int(req.user))


def _bits(flags) -> int:
    return sum(int(b) << i for i, b in enumerate(flags))


def encode_result(result: Translation | Fault) -> int:
    """The response word the hardware must produce for the model's ``result``."""
    if isinstance(result, Translation):
        return WALK_RESP.pack(
            FAULT=0, GPA=result.gpa, HPA=result.hpa, SIZE=SIZE_CODES[result.size],
            GSIZE=SIZE_CODES[result.guest_size], HSIZE=SIZE_CODES[result.host_size],
            GRIGHTS=_bits(result.guest_rights), HRIGHTS=_bits(result.host_rights),
            MEMTYPE=result.memtype, PTE_VALID=int(result.pte_gpa is not None),
            PTE_GPA=result.pte_gpa or 0)
    return WALK_RESP.pack(FAULT=FAULT_KINDS.index(result.kind.value), CODE=result.code,
                          GPA=result.gpa, ADDR=result.addr, LEVEL=result.level,
                          RESP=RESP_CODES[result.resp])


def describe_response(word: int) -> str:
    """A readable account of every field of a response word (for failure messages)."""
    f = WALK_RESP.unpack(word)
    kind = FAULT_KINDS[f["FAULT"]] if f["FAULT"] < len(FAULT_KINDS) else f"?{f['FAULT']}"
    rest = " ".join(f"{k.lower()}={v:#x}" for k, v in f.items() if k != "FAULT")
    return f"{kind}: {rest}"


@dataclass(frozen=True)
class Invalidate:
    """An invalidation command: ``op`` one of ``INV_OPS``; ``cr3``/``hroot`` None = any."""

    op: str
    addr: int = 0
    cr3: int | None = None
    hroot: int | None = None
    size: int = 4096

    def __post_init__(self):
        if self.op not in INV_OPS:
            raise ValueError(f"invalidation op must be one of {INV_OPS}, got {self.op!r}")


def encode_inv(cmd: Invalidate) -> int:
    return WALK_INV.pack(OP=INV_OPS.index(cmd.op), MATCH_CR3=int(cmd.cr3 is not None),
                         MATCH_HROOT=int(cmd.hroot is not None),
                         SIZE=SIZE_CODES.get(cmd.size, 3), ADDR=cmd.addr, CR3=cmd.cr3 or 0,
                         HROOT=cmd.hroot or 0)


def apply_inv(walker: Walker, cmd: Invalidate) -> int:
    """Carry ``cmd`` out on the model walker."""
    if cmd.op == "all":
        return walker.invalidate_all()
    if cmd.op == "gva":
        return walker.invalidate_gva(cmd.addr, cmd.cr3, cmd.hroot)
    if cmd.op == "gpa":
        return walker.invalidate_gpa(cmd.addr, cmd.hroot)
    if cmd.op == "root":
        if cmd.cr3 is None and cmd.hroot is None:
            return 0                     # the hardware ignores a root command matching nothing
        return walker.invalidate_root(cmd.cr3, cmd.hroot)
    if cmd.size not in SIZE_CODES:
        return 0
    return walker.scanner_cleared(cmd.hroot or 0, cmd.addr, cmd.size)



def model_counters(walker: Walker) -> dict[str, int]:
    """The model's counters under the names of the hardware's ``counters`` port (32-bit)."""
    c = walker.counters
    out = dict(requests=c.requests, walks=c.walks, mem_reads=c.mem_reads,
               mem_writes=c.mem_writes, restarts=c.restarts, tlb_hits=c.tlb_hits,
               gtlb_hits=c.gtlb_hits, ntlb_hits=c.ntlb_hits)
    for lvl in (4, 3, 2):
        out[f"gpwc_hits_{lvl}"] = c.gpwc_hits[lvl]
        out[f"hpwc_hits_{lvl}"] = c.hpwc_hits[lvl]
    for kind, n in c.faults.items():
        out[f"fault_{kind.value}"] = n
    return {k: v & 0xFFFF_FFFF for k, v in out.items()}
