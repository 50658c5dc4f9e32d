"""The CRC unit against xnorflow.sw.protocol's bitwise reference."""
import random

from amaranth.sim import Simulator

from xnorflow.hw.link.crc import Crc16, crc16_next
from xnorflow.sw import protocol


def test_expression_matches_reference_on_ints():
    rng = random.Random(1)
    for _ in range(200):
        crc, byte = rng.randrange(1 << 16), rng.randrange(256)
        assert crc16_next(crc, byte) == protocol.crc16_bitwise(bytes([byte]), crc)


def test_crc_unit():
    dut = Crc16()
    rng = random.Random(2)
    messages = [b"123456789", b"", rng.randbytes(40), rng.randbytes(3)]

    async def bench(ctx):
        for msg in messages:
            ctx.set(dut.clear, 1)
            ctx.set(dut.en, 0)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            assert ctx.get(dut.crc) == protocol.CRC16_INIT
            for i, b in enumerate(msg):
                while rng.random() < 0.3:          # idle cycles keep the value
                    ctx.set(dut.en, 0)
                    await ctx.tick()
                ctx.set(dut.en, 1)
                ctx.set(dut.data, b)
                await ctx.tick()
                assert ctx.get(dut.crc) == protocol.crc16_bitwise(msg[:i + 1])
            ctx.set(dut.en, 0)
            crc = protocol.crc16_bitwise(msg)
            assert ctx.get(dut.crc) == crc
            for b in crc.to_bytes(2, "big"):       # residue check
                ctx.set(dut.en, 1)
                ctx.set(dut.data, b)
                await ctx.tick()
            ctx.set(dut.en, 0)
            assert ctx.get(dut.zero) == 1
        # clear together with en: the byte is the first of a new message
        ctx.set(dut.clear, 1)
        ctx.set(dut.en, 1)
        ctx.set(dut.data, 0x31)
        await ctx.tick()
        assert ctx.get(dut.crc) == protocol.crc16_bitwise(b"1")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
