"""HostLink against xnorflow.sw.protocol's ReferenceLink, with a real bus target and random stalls."""
import os
import random

import pytest
from amaranth.sim import Simulator

from xnorflow.hw.link.testing import ByteStreamBench, LinkWithMemory
from xnorflow.sw import protocol as p

MAX_PAYLOAD = 48
TIMEOUT = 40
MEM = 96
ADDR_WIDTH = 16
CONFIG = b"\x04\x02\x20"


class Harness:
    """Runs ``script(h, ctx)`` against a LinkWithMemory and keeps a ReferenceLink in step."""

    def __init__(self, *, seed=1, p_gap=0.3, p_stall=0.3, wait_bits=2):
        self.dut = LinkWithMemory(mem_size=MEM, wait_bits=wait_bits, seed=seed * 7 + 1,
                                  max_payload=MAX_PAYLOAD, timeout=TIMEOUT,
                                  addr_width=ADDR_WIDTH, config=CONFIG)
        self.ref = p.ReferenceLink(max_payload=MAX_PAYLOAD, addr_width=ADDR_WIDTH,
                                   config=CONFIG, mem_size=MEM)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-6)
        self.bench = ByteStreamBench(self.sim, self.dut.i, self.dut.o, bus=self.dut.link.bus,
                                     rng=random.Random(seed), p_gap=p_gap, p_stall=p_stall)
        self.decoder = p.StreamDecoder("response")
        self.log = []

    def run(self, script):
        async def main(ctx):
            await script(self, ctx)
            # Nothing more may come out.
            for _ in range(TIMEOUT + 20):
                await ctx.tick()
            assert self.bench.take_received() == b""
        self.sim.add_testbench(main)
        if os.environ.get("XNF_VCD"):
            with self.sim.write_vcd("hostlink.vcd"):
                self.sim.run()
        else:
            self.sim.run()
        assert self.bench.errors == []

    async def exchange(self, ctx, data, *, limit=4000):
        """Send ``data``; return the decoded responses, checked byte-for-byte against the
        reference model (a partial frame at the end is timed out in both)."""
        expected = self.ref.feed(data)
        if self.ref.in_frame:
            expected += self.ref.idle()
        self.bench.send(data)
        got, start = [], self.bench.cycle
        while len(got) < len(expected) or not self.bench.idle:
            await ctx.tick()
            raw = self.bench.take_received()
            got += self.decoder.feed(raw)
            self.log.append(raw)
            assert self.bench.cycle - start < limit, f"no response after {limit} cycles"
        assert [r.encode() for r in got] == expected
        return got

    async def transact(self, ctx, request, status=p.Status.OK):
        (r,) = await self.exchange(ctx, request)
        assert r.status == status, (r.status, r.payload)
        return r.payload


def test_write_read_roundtrip_and_ident():
    rng = random.Random(3)

    async def script(h, ctx):
        ident = p.Ident.decode(await h.transact(ctx, p.ident_request()))
        assert ident == p.Ident(p.PROTOCOL_VERSION, MAX_PAYLOAD, ADDR_WIDTH, CONFIG)
        data = rng.randbytes(MAX_PAYLOAD - 4)
        await h.transact(ctx, p.write_request(5, data))
        await h.transact(ctx, p.write_request(0, b"\x99"))
        assert await h.transact(ctx, p.read_request(5, len(data))) == data
        assert await h.transact(ctx, p.read_request(0, 2)) == b"\x99\x00"
        assert await h.transact(ctx, p.read_request(1, 0)) == b""
        await h.transact(ctx, p.write_request(7, b""))
        assert await h.transact(ctx, p.read_request(0, MAX_PAYLOAD)) == h.ref.bus.mem[:MAX_PAYLOAD]
        # back-to-back requests in one burst: answered in order
        rs = await h.exchange(ctx, p.write_request(80, b"xyz") + p.read_request(79, 5))
        assert rs[1].payload == b"\x00xyz\x00"

    Harness(seed=3).run(script)


def test_every_error_class_then_recovery():
    async def script(h, ctx):
        writes = h.dut.target.writes
        follow = p.read_request(0, 4)

        # bad CRC on a WRITE: answered BAD_CRC, nothing reaches the bus
        bad = bytearray(p.write_request(0, b"\x11\x22\x33\x44"))
        bad[6] ^= 0x10
        before = ctx.get(writes)
        await h.transact(ctx, bytes(bad), p.Status.BAD_CRC)
        assert ctx.get(writes) == before
        assert await h.transact(ctx, follow) == b"\0\0\0\0"
        bad = bytearray(p.write_request(0, b"\x11\x22"))
        bad[-1] ^= 0x01                                  # the CRC byte itself
        await h.transact(ctx, bytes(bad), p.Status.BAD_CRC)
        assert ctx.get(writes) == before

        # truncated, then timeout
        await h.transact(ctx, p.write_request(0, b"abc")[:-3], p.Status.TIMEOUT)
        await h.transact(ctx, p.ident_request()[:1], p.Status.TIMEOUT)   # sync byte only
        assert ctx.get(writes) == before
        assert await h.transact(ctx, follow) == b"\0\0\0\0"

        # oversized length field: answered at once, not waiting for the payload
        await h.transact(ctx, bytes([p.REQ_SYNC, p.Cmd.WRITE, MAX_PAYLOAD + 1, 0]),
                         p.Status.OVERSIZED)
        await h.transact(ctx, bytes([p.REQ_SYNC, p.Cmd.READ, 0xFF, 0xFF]), p.Status.OVERSIZED)
        await h.transact(ctx, p.read_request(0, MAX_PAYLOAD + 1), p.Status.OVERSIZED)
        await h.transact(ctx, follow)

        # wrong length for the command, unknown command
        await h.transact(ctx, p.encode_request(p.Cmd.WRITE, b"\x00\x01"), p.Status.BAD_LENGTH)
        await h.transact(ctx, p.encode_request(p.Cmd.READ, bytes(7)), p.Status.BAD_LENGTH)
        await h.transact(ctx, p.encode_request(p.Cmd.IDENT, b"\x00"), p.Status.BAD_LENGTH)
        await h.transact(ctx, p.encode_request(0x42, b"\x01\x02"), p.Status.UNKNOWN_COMMAND)
        await h.transact(ctx, p.encode_request(0x00), p.Status.UNKNOWN_COMMAND)
        await h.transact(ctx, follow)

        # bus errors: target err, and addresses beyond the bus width (never on the bus)
        off = await h.transact(ctx, p.write_request(MEM - 2, b"ABCD"), p.Status.BUS_ERROR)
        assert off == (2).to_bytes(2, "little")
        off = await h.transact(ctx, p.read_request(MEM - 1, 3), p.Status.BUS_ERROR)
        assert off == (1).to_bytes(2, "little")
        await h.transact(ctx, p.read_request((1 << ADDR_WIDTH) - 1, 2), p.Status.BUS_ERROR)
        await h.transact(ctx, p.write_request(0xFFFFFFFF, b"\x01\x02"), p.Status.BUS_ERROR)
        assert await h.transact(ctx, p.read_request(MEM - 3, 3)) == b"\0AB"

        # garbage between frames (including a lone response sync and zeros) is skipped
        rs = await h.exchange(ctx, b"\x00\x5a\xff\x13" + p.ident_request() + b"\x00\x00"
                              + follow)
        assert [r.status for r in rs] == [p.Status.OK, p.Status.OK]

    Harness(seed=11).run(script)


@pytest.mark.parametrize("wait_bits,latency", [(0, 1), (2, 4)])
def test_response_time_bound_without_stalls(wait_bits, latency):
    """The first response byte comes within the documented bound (docs/protocol.md), ``latency``
    being the bus target's largest ack latency."""
    async def script(h, ctx):
        b = h.bench
        ident_len = len(p.Ident(1, MAX_PAYLOAD, ADDR_WIDTH, CONFIG).encode())
        cases = [
            (p.ident_request(), ident_len),
            (p.encode_request(0x33), 0),
            (p.write_request(0, bytes(20)), 20),
            (p.read_request(0, 30), 30),
            (p.write_request(MEM - 1, b"\x01\x02"), 2),
        ]
        for request, n in cases:
            (r,) = await h.exchange(ctx, request)
            first = min(c for c in b.offer_cycles if c > b.sent_cycle)
            bound = (ident_len if request[1] == p.Cmd.IDENT else 0) + 16 + (2 + latency) * n
            assert first - b.sent_cycle <= bound, (request[1], first - b.sent_cycle, bound)
        start = b.cycle
        await h.exchange(ctx, p.ident_request()[:3])          # truncated -> TIMEOUT
        first = min(c for c in b.offer_cycles if c > b.sent_cycle)
        assert first - b.sent_cycle <= TIMEOUT + 6

    Harness(seed=5, p_gap=0, p_stall=0, wait_bits=wait_bits).run(script)


def random_frames(rng, n):
    """Valid requests, each possibly damaged: bit flips, truncation, garbage, bad lengths."""
    out = []
    for _ in range(n):
        kind = rng.randrange(3)
        if kind == 0:
            f = p.write_request(rng.randrange(MEM + 8), rng.randbytes(rng.randrange(12)))
        elif kind == 1:
            f = p.read_request(rng.randrange(MEM + 8), rng.randrange(12))
        else:
            f = p.ident_request()
        f = bytearray(f)
        damage = rng.randrange(8)
        if damage == 0:
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
        elif damage == 1:
            del f[rng.randrange(1, len(f)):]
        elif damage == 2:
            f[0:0] = rng.randbytes(rng.randrange(1, 5))
        elif damage == 3:
            f[2:4] = rng.randrange(MAX_PAYLOAD + 1, 0x10000).to_bytes(2, "little")
        elif damage == 4:
            f[1] = rng.choice([0, 4, 0x80, 0xFF])
            body = bytes(f[1:-2])
            f[-2:] = p.crc16(body).to_bytes(2, "big")
        out.append(bytes(f))
    return out


@pytest.mark.parametrize("seed", [21, 22])
def test_fuzz_against_reference(seed):
    rng = random.Random(seed)
    frames = random_frames(rng, 25)

    async def script(h, ctx):
        for f in frames:
            await h.exchange(ctx, f)
            # The link still works after whatever came before.
            assert (await h.exchange(ctx, p.read_request(rng.randrange(MEM - 8), 8)))[0].ok

    Harness(seed=seed).run(script)


def test_random_byte_soup_never_wedges():
    """Arbitrary bytes (many of them sync bytes) are answered as the reference says, and a
    valid frame after each burst still works."""
    rng = random.Random(31)
    bursts = [bytes(rng.choice([p.REQ_SYNC, rng.randrange(256), rng.randrange(8)])
                    for _ in range(rng.randrange(5, 30))) for _ in range(6)]

    async def script(h, ctx):
        for burst in bursts:
            await h.exchange(ctx, burst)
            assert await h.transact(ctx, p.read_request(0, 2)) is not None

    Harness(seed=31).run(script)
