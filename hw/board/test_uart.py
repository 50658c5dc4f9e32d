"""UART loopback: bytes through UartTx → line → UartRx arrive intact, with stalls on both sides."""
import random

from amaranth.hdl import Module
from amaranth.sim import Simulator

from xnorflow.hw.board.uart import UartRx, UartTx


def test_uart_loopback_with_random_stalls():
    divisor = 5
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(1)
    data = [rng.randrange(256) for _ in range(40)] + [0x00, 0xff, 0x55, 0xaa]
    got = []

    async def send(ctx):
        for byte in data:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            await ctx.tick()
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))
        assert ctx.get(rx.overruns) == 0

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run_until(1e-6 * divisor * 10 * (len(data) + 10) * 2)
    assert got == data
