"""RegisterSlice (and its skid form): every beat once and in order under random gaps and
stalls, one cycle late, one per cycle when nothing waits; with ``skid`` ``i.ready`` is a
flip-flop."""
import numpy as np
import pytest

from xnorflow.hw.register_slice import RegisterSlice
from xnorflow.hw.dataflow.testing import StreamMonitor, drive_ready, rejected, send, simulate


def run(dut, beats, rng, gap, stall):
    mon_i, mon_o = StreamMonitor(dut.i), StreamMonitor(dut.o)

    async def source(ctx):
        await send(ctx, dut.i, beats, rng, gap)

    async def sink(ctx):
        await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= len(beats), rng, stall)
        for _ in range(5):            # nothing more may come out
            await ctx.tick()

    simulate(dut, [source, sink], [mon_i.testbench, mon_o.testbench], name="register_slice")
    return mon_i, mon_o


@pytest.mark.parametrize("skid", [False, True])
@pytest.mark.parametrize("gap, stall", [(0.0, 0.0), (0.4, 0.0), (0.0, 0.5), (0.3, 0.6)])
def test_register_slice_passes_every_beat_once_in_order(gap, stall, skid):
    rng = np.random.default_rng(int(gap * 10 + stall * 100))
    beats = rng.integers(0, 1 << 20, size=60).tolist()
    _, mon_o = run(RegisterSlice(20, skid=skid), beats, rng, gap, stall)
    assert mon_o.payloads() == beats


@pytest.mark.parametrize("gap, stall", [(0.0, 0.0), (0.3, 0.6)])
def test_a_wide_skid_slice_keeps_its_chunks_together(gap, stall):
    # 200 bits: four chunks, each with pointers of its own (CHUNK_BITS), one beat
    rng = np.random.default_rng(int(gap * 10 + stall * 100) + 7)
    beats = [int.from_bytes(rng.bytes(25), "little") for _ in range(60)]
    _, mon_o = run(RegisterSlice(200, skid=True), beats, rng, gap, stall)
    assert mon_o.payloads() == beats


@pytest.mark.parametrize("skid", [False, True])
def test_register_slice_is_one_cycle_late_at_one_beat_per_cycle(skid):
    rng = np.random.default_rng(1)
    beats = list(range(1, 17))
    mon_i, mon_o = run(RegisterSlice(8, skid=skid), beats, rng, gap=0.0, stall=0.0)
    assert mon_o.valid_cycles == [c + 1 for c in mon_i.cycles()]
    assert np.diff(mon_o.valid_cycles).tolist() == [1] * (len(beats) - 1)


def test_register_slice_refuses_a_width_that_is_not_a_positive_integer():
    with rejected(), pytest.raises(ValueError, match="width must be a positive integer"):
        RegisterSlice(0)


@pytest.mark.parametrize("skid", [False, True])
def test_only_the_skid_slice_keeps_ready_when_the_consumer_stalls_in_that_cycle(skid):
    """With a beat waiting on ``o``: the plain slice's ``i.ready`` follows ``o.ready`` in the
    same cycle; the skid slice's stays up (its spare is empty), whatever ``o.ready`` does."""
    dut = RegisterSlice(8, skid=skid)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.payload, 5)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()                  # the beat is in: o.valid
        ctx.set(dut.i.valid, 0)
        for ready in (0, 1, 0):
            ctx.set(dut.o.ready, ready)
            seen.append((ctx.get(dut.o.valid), ctx.get(dut.i.ready)))

    simulate(dut, [bench], name="register_slice_ready")
    assert seen == ([(1, 1)] * 3 if skid else [(1, 0), (1, 1), (1, 0)])


def test_the_skid_slice_loads_its_free_entry_whatever_the_producer_offers():
    """The entry at the write pointer loads every cycle the slice is not full, valid or not:
    its clock enable is registers only (ECP5 SFC build 29 had the producer's valid there,
    5.5 ns of route to 256 enables). A full slice's entries never change: every chunk of a
    wide slice follows both rules."""
    dut = RegisterSlice(200, skid=True)
    first, second, offered = (1 << 199) | 7, (1 << 130) | 9, (1 << 70) | 11
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.payload, first)      # no beat offered: the empty slice's free entry,
        await ctx.tick()                   # which o shows, takes it anyway
        seen.append((ctx.get(dut.o.valid), ctx.get(dut.o.payload)))
        for beat in (first, second):       # two beats fill it
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
        ctx.set(dut.i.payload, offered)    # refused (full): nothing moves
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(2):
            seen.append((ctx.get(dut.o.valid), ctx.get(dut.o.payload)))
            await ctx.tick()

    simulate(dut, [bench], name="register_slice_free_entry")
    assert seen == [(0, first), (1, first), (1, second)]
