"""AXI4 signature, parameters and AxiReader on the Amaranth simulator (fast, no Verilator)."""

import random
from collections import deque

import pytest
from amaranth.hdl import Fragment, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow
from amaranth.sim import Simulator

from hdl.axi import BOUNDARY, AxiParams, Burst, Resp, axi4_signature
from hdl.axi_reader import AxiReader, read_request_layout, read_response_layout


def expected_members(addr, data, ids):
    out, inp = Flow.Out, Flow.In
    return {
        "awvalid": (out, 1), "awready": (inp, 1), "awaddr": (out, addr), "awlen": (out, 8),
        "awsize": (out, 3), "awburst": (out, 2), "awid": (out, ids),
        "wvalid": (out, 1), "wready": (inp, 1), "wdata": (out, data),
        "wstrb": (out, data // 8), "wlast": (out, 1),
        "bvalid": (inp, 1), "bready": (out, 1), "bresp": (inp, 2), "bid": (inp, ids),
        "arvalid": (out, 1), "arready": (inp, 1), "araddr": (out, addr), "arlen": (out, 8),
        "arsize": (out, 3), "arburst": (out, 2), "arid": (out, ids),
        "rvalid": (inp, 1), "rready": (out, 1), "rdata": (inp, data), "rresp": (inp, 2),
        "rlast": (inp, 1), "rid": (inp, ids),
    }


@pytest.mark.parametrize("addr,data,ids", [(48, 64, 4), (32, 128, 1), (64, 256, 16)])
def test_signature_members_and_widths(addr, data, ids):
    sig = axi4_signature(AxiParams(addr_width=addr, data_width=data, id_width=ids))
    got = {name: (member.flow, Shape.cast(member.shape).width)
           for name, member in sig.members.items()}
    assert got == expected_members(addr, data, ids)


def test_constants():
    assert [(r.name, r.value) for r in Resp] == [
        ("OKAY", 0), ("EXOKAY", 1), ("SLVERR", 2), ("DECERR", 3)]
    assert (Burst.FIXED, Burst.INCR, Burst.WRAP) == (0, 1, 2)
    assert Shape.cast(Resp).width == 2 and Shape.cast(Burst).width == 2


def test_params_defaults_and_derived():
    p = AxiParams()
    assert (p.addr_width, p.data_width, p.id_width) == (48, 64, 4)
    assert (p.beat_bytes, p.size, p.strb_width) == (8, 3, 8)
    assert AxiParams(data_width=256).size == 5


@pytest.mark.parametrize("kwargs,words", [
    ({"data_width": 32}, ["data_width", "32"]),
    ({"data_width": 512}, ["data_width", "512"]),
    ({"addr_width": 11}, ["addr_width", "11"]),
    ({"addr_width": 65}, ["addr_width", "65"]),
    ({"id_width": 0}, ["id_width", "0"]),
    ({"id_width": 17}, ["id_width", "17"]),
])
def test_params_reject_bad_widths(kwargs, words):
    with pytest.raises(ValueError) as info:
        AxiParams(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_params_reject_non_integers_and_positional_use():
    with pytest.raises(TypeError, match=r"data_width.*'64'"):
        AxiParams(data_width="64")
    with pytest.raises(TypeError):
        AxiParams(48, 64, 4)
    with pytest.raises(TypeError, match="AxiParams"):
        axi4_signature({"data_width": 64})


@pytest.mark.parametrize("kwargs,pattern", [
    ({"max_outstanding": 0}, r"max_outstanding.*got 0"),
    ({"max_outstanding": 65}, r"max_outstanding.*got 65"),
    ({"arid": 16}, r"arid.*id_width=4.*got 16"),
    ({"arid": -1}, r"arid.*got -1"),
])
def test_reader_rejects_bad_parameters(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        AxiReader(**kwargs)


def test_reader_ports_flatten_to_m_axi_names():
    from cosim.runner import to_verilog

    text = to_verilog(AxiReader(), "axi_reader")
    header = text[text.index("module axi_reader("):text.index(");")]
    ports = {p.strip() for p in header.split("(", 1)[1].split(",")}
    axi = {f"m_axi__{name}" for name in expected_members(48, 64, 4)}
    assert axi <= ports
    assert {"clk", "rst", "req__valid", "req__ready", "req__payload", "resp__valid",
            "resp__ready", "resp__payload"} <= ports
    assert ports - axi - {"clk", "rst"} == {"req__valid", "req__ready", "req__payload",
                                            "resp__valid", "resp__ready", "resp__payload"}


def test_layouts_put_fields_in_order():
    p = AxiParams(addr_width=40, data_width=128)
    req = read_request_layout(p)
    assert [(n, f.offset, f.width) for n, f in req] == [("addr", 0, 40), ("count", 40, 9)]
    resp = read_response_layout(p)
    assert [(n, f.offset, f.width) for n, f in resp] == [
        ("data", 0, 128), ("resp", 128, 2), ("last", 130, 1)]


# --- AxiReader on the Amaranth simulator --------------------------------------------------

def split(addr, count, lanes):
    """Reference AXI split: <= 256 beats, never across a 4 KiB boundary."""
    addr &= ~(lanes - 1)
    out = []
    while count:
        beats = min(count, (BOUNDARY - addr % BOUNDARY) // lanes, 256)
        out.append((addr, beats))
        addr += beats * lanes
        count -= beats
    return out


def run_reader(params, requests, *, seed=0, max_outstanding=4, r_delay=0, errors=(),
               max_cycles=20000):
    """Simulate an AxiReader against a Python AXI slave.

    The slave answers beat ``n`` of a burst at address ``a`` with data ``a + n * lanes`` and
    ``OKAY``, except ``(burst, beat)`` pairs in ``errors`` (``SLVERR``); it waits ``r_delay``
    cycles before each burst's data. Returns the ARs, the beats and the most bursts in
    flight.
    """
    dut = AxiReader(params=params, max_outstanding=max_outstanding)
    axi = dut.m_axi
    lanes = params.beat_bytes
    rng = random.Random(seed)
    total = sum(count for _, count in requests if count)
    ars, beats, accepted = [], [], deque()
    state = {"in_flight": 0, "peak": 0, "done": False}

    async def producer(ctx):
        for addr, count in requests:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.req.payload, {"addr": addr, "count": count})
            ctx.set(dut.req.valid, 1)
            await ctx.tick().until(dut.req.ready)
            ctx.set(dut.req.valid, 0)

    async def ar_slave(ctx):
        while True:
            ctx.set(axi.arready, rng.random() < 0.7)
            _, _, valid, ready, addr, length, size, burst, arid = await ctx.tick().sample(
                axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.arsize, axi.arburst,
                axi.arid)
            if valid and ready:
                ars.append((addr, length + 1, size, burst, arid))
                accepted.append((len(ars) - 1, addr, length + 1))
                state["in_flight"] += 1
                state["peak"] = max(state["peak"], state["in_flight"])

    async def r_slave(ctx):
        current, n, wait = None, 0, 0
        while True:
            if current is None and accepted:
                current, n, wait = accepted.popleft(), 0, r_delay
            if current is not None and wait == 0 and rng.random() < 0.8:
                index, addr, count = current
                ctx.set(axi.rvalid, 1)
                ctx.set(axi.rdata, addr + n * lanes)
                ctx.set(axi.rresp, Resp.SLVERR if (index, n) in errors else Resp.OKAY)
                ctx.set(axi.rlast, n == count - 1)
            else:
                ctx.set(axi.rvalid, 0)
            wait = max(0, wait - 1)
            _, _, valid, ready = await ctx.tick().sample(axi.rvalid, axi.rready)
            if valid and ready:
                n += 1
                if n == current[2]:
                    current = None
                    state["in_flight"] -= 1

    async def consumer(ctx):
        for _ in range(max_cycles):
            if len(beats) == total:
                break
            ctx.set(dut.resp.ready, rng.random() < 0.7)
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.resp.valid, dut.resp.ready, dut.resp.payload)
            if valid and ready:
                beats.append((payload.data, int(payload.resp), payload.last))
        # Nothing more may come out once every expected beat is in.
        ctx.set(dut.resp.ready, 1)
        for _ in range(30):
            _, _, valid = await ctx.tick().sample(dut.resp.valid)
            assert not valid, "beat after the last expected one"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(ar_slave, background=True)
    sim.add_testbench(r_slave, background=True)
    sim.run()
    return ars, beats, state["peak"]


@pytest.mark.parametrize("data_width", [64, 256])
def test_reader_splits_at_4k_and_streams_every_beat(data_width):
    params = AxiParams(addr_width=32, data_width=data_width)
    lanes = params.beat_bytes
    rng = random.Random(data_width)
    requests = [(0x1000 - lanes, 2), (0x3000 - 3 * lanes, 256), (0x20000, 256),
                (0x5008 + 3, 5), (0x7000, 1)]
    requests += [(rng.randrange(1 << 20) & ~(lanes - 1) | (BOUNDARY - lanes * rng.randint(1, 8))
                  % BOUNDARY, rng.randint(1, 256)) for _ in range(6)]
    ars, beats, _ = run_reader(params, requests, seed=data_width)

    want_ars = [(a, n, params.size, Burst.INCR, 0) for addr, count in requests
                for a, n in split(addr, count, lanes)]
    assert ars == want_ars
    for addr, n, *_ in ars:
        assert addr // BOUNDARY == (addr + n * lanes - 1) // BOUNDARY
        assert 1 <= n <= 256
    want_beats = []
    for addr, count in requests:
        base = addr & ~(lanes - 1)
        want_beats += [(base + k * lanes, Resp.OKAY, int(k == count - 1)) for k in range(count)]
    assert beats == want_beats
    if data_width == 256:
        assert len(split(0x3000 - 3 * lanes, 256, lanes)) == 3


def test_reader_passes_error_on_its_beat():
    params = AxiParams()
    requests = [(0x4000, 8), (0x8000 - 16, 6)]
    errors = {(0, 0), (0, 5), (1, 1), (2, 0), (2, 3)}
    _, beats, _ = run_reader(params, requests, errors=errors)
    resps = [resp for _, resp, _ in beats]
    assert resps == [2, 0, 0, 0, 0, 2, 0, 0] + [0, 2] + [2, 0, 0, 2]
    assert [last for *_, last in beats] == [0] * 7 + [1] + [0] * 5 + [1]


@pytest.mark.parametrize("max_outstanding", [1, 3])
def test_reader_limits_bursts_in_flight(max_outstanding):
    requests = [(0x1000 * i, 2) for i in range(12)]
    _, beats, peak = run_reader(AxiParams(), requests, max_outstanding=max_outstanding,
                                r_delay=12)
    assert len(beats) == 24
    assert peak == max_outstanding


def test_reader_ignores_zero_count_requests():
    ars, beats, _ = run_reader(AxiParams(), [(0x100, 0), (0x200, 3), (0x300, 0), (0x400, 1)])
    assert [(a, n) for a, n, *_ in ars] == [(0x200, 3), (0x400, 1)]
    assert [last for *_, last in beats] == [0, 0, 1, 1]


def test_reader_is_a_component_with_role_named_ports():
    dut = AxiReader(params=AxiParams(data_width=128), max_outstanding=2, arid=5)
    Fragment.get(dut, None)
    assert isinstance(dut, wiring.Component)
    assert set(dut.signature.members) == {"req", "resp", "m_axi"}
    assert (dut.params.data_width, dut.max_outstanding, dut.arid) == (128, 2, 5)
