"""ResponseTransmitter alone: framing and CRC under random stalls on both sides."""
import random

from amaranth.sim import Simulator

from xnorflow.hw.link.testing import ByteStreamBench
from xnorflow.hw.link.transmitter import ResponseTransmitter
from xnorflow.sw import protocol as p


def test_transmitter_frames_responses():
    dut = ResponseTransmitter()
    rng = random.Random(4)
    responses = [(p.Status.OK, b""), (p.Status.OK, rng.randbytes(20)),
                 (p.Status.BUS_ERROR, b"\x05\x00"), (0xEE, b"\xa5\x5a")]
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    bench = ByteStreamBench(sim, None, dut.o, rng=rng, p_stall=0.4)

    async def source(ctx):
        for status, payload in responses:
            await ctx.tick().until(dut.idle)
            ctx.set(dut.header.valid, 1)
            ctx.set(dut.header.payload, {"status": status, "length": len(payload)})
            await ctx.tick().until(dut.header.ready)
            ctx.set(dut.header.valid, 0)
            for b in payload:
                while rng.random() < 0.4:
                    await ctx.tick()
                ctx.set(dut.payload.valid, 1)
                ctx.set(dut.payload.payload, b)
                await ctx.tick().until(dut.payload.ready)
                ctx.set(dut.payload.valid, 0)
        await ctx.tick().until(dut.idle)
        for _ in range(3):
            await ctx.tick()

    sim.add_testbench(source)
    sim.run()
    assert bench.errors == []
    want = b"".join(p.encode_response(s, d) for s, d in responses)
    assert bench.take_received() == want
