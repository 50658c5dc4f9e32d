"""FrameReceiver alone: verdicts, buffer writes, resynchronisation, timeout."""
import random

from amaranth.sim import Simulator

from xnorflow.hw.link.receiver import FrameReceiver
from xnorflow.sw import protocol as p

MAX, TIMEOUT = 16, 12


def run(chunks, seed=0):
    """Send each chunk (then idle); return [(status, cmd, length, buffer bytes)]."""
    dut = FrameReceiver(max_payload=MAX, timeout=TIMEOUT)
    rng = random.Random(seed)
    frames, buf = [], {}

    async def executor(ctx):
        while True:
            _, _, valid, en, addr, data = await ctx.tick().sample(
                dut.frame.valid, dut.buf.en, dut.buf.addr, dut.buf.data)
            if en:
                buf[addr] = data
            if valid and not ctx.get(dut.frame.ready):
                info = ctx.get(dut.frame.payload)
                assert ctx.get(dut.i.ready) == 0          # input held off while presented
                frames.append((info.status, info.cmd, info.length,
                               bytes(buf.get(a, 0) for a in range(min(info.length, MAX)))))
                buf.clear()
                for _ in range(rng.randrange(3)):
                    await ctx.tick()
                ctx.set(dut.frame.ready, 1)
            else:
                ctx.set(dut.frame.ready, 0)

    async def driver(ctx):
        for chunk in chunks:
            for b in chunk:
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, b)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
            for _ in range(TIMEOUT + 8):
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(executor, background=True)
    sim.add_testbench(driver)
    sim.run()
    return frames


def test_receiver_verdicts():
    good = p.write_request(0x10, b"\x01\x02\x03")
    bad = bytearray(good)
    bad[5] ^= 0x80
    frames = run([
        b"\x00\x13" + good,                              # garbage, then a good frame
        bytes(bad),                                      # bad CRC
        bytes([p.REQ_SYNC, 0x02, MAX + 1, 0]),           # oversized: answered at once
        good[:6],                                        # truncated -> timeout
        p.encode_request(0x33, bytes(range(MAX))),       # full-size payload
        p.ident_request(),                               # empty payload
    ])
    S = p.Status
    assert frames == [
        (S.OK, 2, 7, good[4:11]),
        (S.BAD_CRC, 2, 7, bytes(bad[4:11])),
        (S.OVERSIZED, 2, MAX + 1, bytes(MAX)),
        (S.TIMEOUT, 2, 7, good[4:6] + bytes(5)),
        (S.OK, 0x33, MAX, bytes(range(MAX))),
        (S.OK, 1, 0, b""),
    ]
