"""BlockFIFO: every word once and in order under random write gaps and read stalls, its level
and w_rdy as SyncFIFOBuffered's, one word per cycle out of a filled FIFO, and a word written
into an empty one readable five cycles later."""
from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from xnorflow.hw.dataflow.block_fifo import READ_AHEAD, BlockFIFO
from xnorflow.hw.dataflow.testing import rejected


def _run(fifo, testbench):
    sim = Simulator(fifo)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("width, depth, chunk, p_write, p_read", [
    (20, 9, 8, 0.7, 0.7),        # three chunks, a shallow memory: fills and drains often
    (20, 9, 8, 1.0, 0.3),        # mostly full
    (7, 16, 72, 0.3, 1.0),       # mostly empty: words fall through one at a time
    (36, 40, 36, 0.9, 0.9)])
def test_every_word_once_in_order_with_the_level_of_a_fifo(width, depth, chunk, p_write, p_read):
    rng = np.random.default_rng(depth * 7 + width)
    fifo = BlockFIFO(width, depth, chunk_bits=chunk)
    words = rng.integers(0, 1 << width, size=300).tolist()
    got = []

    async def testbench(ctx):
        model = deque()
        sent = 0
        for _ in range(3000):
            w_en = int(sent < len(words) and rng.random() < p_write)
            r_en = int(rng.random() < p_read)
            ctx.set(fifo.w_en, w_en)
            ctx.set(fifo.w_data, words[sent] if w_en else 0)
            ctx.set(fifo.r_en, r_en)
            level, w_rdy, r_rdy = ctx.get(fifo.level), ctx.get(fifo.w_rdy), ctx.get(fifo.r_rdy)
            assert level == len(model) and w_rdy == (level < depth)
            if r_rdy:
                assert ctx.get(fifo.r_data) == model[0]
            await ctx.tick()
            if r_en and r_rdy:
                got.append(model.popleft())
            if w_en and w_rdy:
                model.append(words[sent])
                sent += 1
            if len(got) == len(words):
                break

    _run(fifo, testbench)
    assert got == words


def test_a_filled_fifo_gives_one_word_per_cycle_and_an_empty_one_a_word_six_cycles_on():
    fifo = BlockFIFO(12, 32, chunk_bits=5)

    async def testbench(ctx):
        ctx.set(fifo.w_en, 1)
        for v in range(20):
            ctx.set(fifo.w_data, v + 1)
            await ctx.tick()
        ctx.set(fifo.w_en, 0)
        await ctx.tick().repeat(8)
        assert ctx.get(fifo.level) == 20 and ctx.get(fifo.r_rdy)
        ctx.set(fifo.r_en, 1)
        for v in range(20):              # no gap: the read-ahead stage keeps up
            assert ctx.get(fifo.r_rdy) and ctx.get(fifo.r_data) == v + 1
            await ctx.tick()
        assert not ctx.get(fifo.r_rdy) and ctx.get(fifo.level) == 0
        ctx.set(fifo.w_en, 1)
        ctx.set(fifo.w_data, 99)
        await ctx.tick()                 # written in cycle t
        ctx.set(fifo.w_en, 0)
        for _ in range(5):
            assert not ctx.get(fifo.r_rdy)
            await ctx.tick()
        assert ctx.get(fifo.r_rdy) and ctx.get(fifo.r_data) == 99      # t + 6

    _run(fifo, testbench)


def test_a_fifo_too_shallow_for_its_read_ahead_is_refused():
    with rejected(), pytest.raises(ValueError, match="depth > 8"):
        BlockFIFO(8, READ_AHEAD)
