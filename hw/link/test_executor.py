"""CommandExecutor alone (with the transmitter, a buffer and a bus target): every command's
answer equals ReferenceLink.execute, and receiver verdicts are passed through."""
import random

from amaranth.hdl import Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from xnorflow.hw.link.defs import ident_block, payload_buffer_init
from xnorflow.hw.link.executor import CommandExecutor
from xnorflow.hw.link.testing import BusMemory, ByteStreamBench
from xnorflow.hw.link.transmitter import ResponseTransmitter
from xnorflow.sw import protocol as p

MAX, MEM, AW = 24, 40, 12


def test_executor_against_reference():
    rng = random.Random(9)
    m = Module()
    m.submodules.ex = ex = CommandExecutor(max_payload=MAX, ident=ident_block(MAX, AW, b"\x07"),
                                           addr_width=AW)
    m.submodules.tx = tx = ResponseTransmitter()
    m.submodules.target = target = BusMemory(size=MEM, addr_width=AW, wait_bits=2)
    init = payload_buffer_init(MAX, ex.ident)
    m.submodules.buf = buf = Memory(shape=8, depth=len(init), init=init)
    wr, rd = buf.write_port(), buf.read_port(domain="sync")
    m.d.comb += [wr.addr.eq(ex.buf_w.addr), wr.data.eq(ex.buf_w.data), wr.en.eq(ex.buf_w.en),
                 rd.addr.eq(ex.buf_r.addr), rd.en.eq(ex.buf_r.en), ex.buf_r.data.eq(rd.data),
                 ex.tx_idle.eq(tx.idle)]
    from amaranth.lib.wiring import connect
    connect(m, ex.header, tx.header)
    connect(m, ex.payload, tx.payload)
    connect(m, ex.bus, target.bus)

    ref = p.ReferenceLink(max_payload=MAX, addr_width=AW, config=b"\x07", mem_size=MEM)
    frames = [  # (verdict, cmd, payload)
        (p.Status.OK, p.Cmd.IDENT, b""),
        (p.Status.OK, p.Cmd.WRITE, (5).to_bytes(4, "little") + rng.randbytes(MAX - 4)),
        (p.Status.OK, p.Cmd.READ, (4).to_bytes(4, "little") + (MAX).to_bytes(2, "little")),
        (p.Status.OK, p.Cmd.READ, (38).to_bytes(4, "little") + (4).to_bytes(2, "little")),
        (p.Status.OK, p.Cmd.WRITE, (1 << AW).to_bytes(4, "little") + b"\x01"),
        (p.Status.OK, p.Cmd.READ, (0).to_bytes(4, "little") + (MAX + 1).to_bytes(2, "little")),
        (p.Status.OK, p.Cmd.WRITE, b"\x00\x00\x00"),
        (p.Status.OK, 0x99, b""),
        (p.Status.BAD_CRC, p.Cmd.WRITE, (0).to_bytes(4, "little") + b"\xff"),
        (p.Status.TIMEOUT, p.Cmd.READ, b""),
        (p.Status.OK, p.Cmd.READ, (0).to_bytes(4, "little") + (8).to_bytes(2, "little")),
    ]
    expected = [ref.execute(c, d) if v == p.Status.OK else p.encode_response(v)
                for v, c, d in frames]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    bench = ByteStreamBench(sim, None, tx.o, bus=ex.bus, rng=rng, p_stall=0.3)

    async def receiver(ctx):
        for verdict, cmd, payload in frames:
            for i, b in enumerate(payload):
                ctx.set(buf.data[i], b)
            ctx.set(ex.frame.payload, {"status": verdict, "cmd": cmd, "length": len(payload)})
            ctx.set(ex.frame.valid, 1)
            await ctx.tick().until(ex.frame.ready)
            ctx.set(ex.frame.valid, 0)
            await ctx.tick()

    sim.add_testbench(receiver)
    sim.run()
    assert bench.errors == []
    got = bench.take_received()
    assert got == b"".join(expected)
