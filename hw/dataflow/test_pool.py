"""MaxPool2x2: bit-exact against a numpy 2×2 pool (OR for direction +1 channels, AND for −1)
over several images under random gaps and stalls, the stream rules on ``o``, beats that
complete no window never waiting, and the cycle model :func:`pool_timing`."""
import bisect

import numpy as np
import pytest

from xnorflow.hw.dataflow.pool import MaxPool2x2, PoolModel, pool_timing
from xnorflow.hw.dataflow.testing import (StreamMonitor, drive_ready, offered_cycles, record_ready,
                                           rejected, send, simulate)
from xnorflow.hw.dataflow.timing import SinkModel, SourceModel, connect_chain


def pool_reference(bits, and_flags):
    """bits: bool [B, H, W, C]; and_flags: bool [C] (1: direction −1). The 2×2 stride-2 pool,
    odd last row/column dropped: bool [B, ⌊H/2⌋, ⌊W/2⌋, C]."""
    b, h, w, c = bits.shape
    ho, wo = h // 2, w // 2
    win = bits[:, :2 * ho, :2 * wo, :].reshape(b, ho, 2, wo, 2, c)
    return np.where(and_flags, win.all(axis=(2, 4)), win.any(axis=(2, 4)))


def encode_beats(bits, and_flags, lanes):
    """Input beats, HWC order, images back to back: P values, then their P flags."""
    weights = 1 << np.arange(lanes)
    b, h, w, c = bits.shape
    values = bits.reshape(-1, lanes).astype(np.int64) @ weights
    flags = np.tile(and_flags.reshape(-1, lanes).astype(np.int64) @ weights, b * h * w)
    return (values | (flags << lanes)).tolist()


def decode_beats(beats, images, height, width, channels, lanes):
    bits = [(beat >> p) & 1 for beat in beats for p in range(lanes)]
    return np.array(bits, dtype=bool).reshape(images, height // 2, width // 2, channels)


class StreamRules:
    """Checks, every cycle, that ``valid`` and the payload stay put while valid & ~ready."""

    def __init__(self, stream):
        self.stream = stream
        self.violations = []

    async def testbench(self, ctx):
        s, held, cycle = self.stream, None, 0
        async for _, _, valid, ready, payload in ctx.tick().sample(s.valid, s.ready, s.payload):
            if held is not None and (not valid or payload != held):
                self.violations.append((cycle, valid, payload, held))
            held = payload if valid and not ready else None
            cycle += 1


def run(dut, beats, rng, gap, stall, ready=None):
    """Stream ``beats`` through ``dut``; returns the monitors. With a list ``ready``,
    ``o.ready`` is recorded there cycle by cycle."""
    mon_i, mon_o, rules = StreamMonitor(dut.i), StreamMonitor(dut.o), StreamRules(dut.o)
    total = len(beats) // dut.in_beats * dut.out_beats

    async def source(ctx):
        await send(ctx, dut.i, beats, rng, gap)

    async def sink(ctx):
        def done():
            return len(mon_o.beats) >= total

        if ready is None:
            await drive_ready(ctx, dut.o, done, rng, stall)
        else:
            await record_ready(ctx, dut.o, done, rng, stall, ready)
        for _ in range(5):            # nothing more may come out
            await ctx.tick()

    simulate(dut, [source, sink], [mon_i.testbench, mon_o.testbench, rules.testbench],
             name="pool")
    assert rules.violations == []
    return mon_i, mon_o


def random_images(rng, images, height, width, channels):
    bits = rng.integers(0, 2, size=(images, height, width, channels)).astype(bool)
    and_flags = rng.integers(0, 2, size=channels).astype(bool)
    return bits, and_flags


def emitting_beats(dut, images):
    """Indices of the input beats that complete a window (pixel (2Y+1, 2X+1))."""
    per_image = [(y * dut.width + x) * dut.folds + cf
                 for y in range(1, 2 * dut.out_height, 2)
                 for x in range(1, 2 * dut.out_width, 2) for cf in range(dut.folds)]
    return {n * dut.in_beats + i for n in range(images) for i in per_image}


GEOMETRIES = [      # height, width, channels, lanes
    (4, 4, 8, 8),     # one fold per pixel: the written word forwarded to the next beat
    (5, 7, 4, 2),     # odd: last row and column dropped
    (2, 2, 1, 1),     # one window, one channel
    (6, 6, 32, 8),    # four folds
    (3, 2, 16, 16),   # one window per row, odd height
    (7, 5, 6, 3),     # non-power-of-two lanes and row length
    (2, 5, 12, 4),    # one window row, odd width
]


@pytest.mark.parametrize("write_reg", [False, True])
@pytest.mark.parametrize("height, width, channels, lanes", GEOMETRIES)
def test_pool_matches_the_reference_under_gaps_and_stalls(height, width, channels, lanes,
                                                          write_reg):
    """Both write forms (write_reg: the word a beat wrote the cycle before forwarded too)."""
    rng = np.random.default_rng([height, width, channels, lanes])
    images = 4
    bits, and_flags = random_images(rng, images, height, width, channels)
    dut = MaxPool2x2(height, width, channels, lanes, write_reg=write_reg)
    beats = encode_beats(bits, and_flags, lanes)
    assert len(beats) == images * dut.in_beats
    mon_i, mon_o = run(dut, beats, rng, gap=0.3, stall=0.4)
    outs = mon_o.payloads()
    assert len(outs) == images * dut.out_beats
    got = decode_beats(outs, images, height, width, channels, lanes)
    np.testing.assert_array_equal(got, pool_reference(bits, and_flags))
    # a beat that completes no window is taken the cycle it is offered, even with o stalled
    emitting = emitting_beats(dut, images)
    waited = [i for i, (off, acc) in enumerate(zip(offered_cycles(mon_i), mon_i.cycles()))
              if acc != off]
    assert set(waited) <= emitting


def test_pool_with_both_directions_in_one_beat_is_or_and_and():
    """One window by hand: channel 0 ORs (flag 0), channel 1 ANDs (flag 1)."""
    dut = MaxPool2x2(2, 2, 2, 2)
    pixels = [(1, 1), (0, 1), (0, 1), (0, 0)]        # (ch0, ch1) of pixels 00, 01, 10, 11
    beats = [v0 | v1 << 1 | 0b10 << 2 for v0, v1 in pixels]
    _, mon_o = run(dut, beats, np.random.default_rng(0), gap=0.0, stall=0.0)
    assert mon_o.payloads() == [0b01]                # ch0 = 1|0|0|0, ch1 = 1&1&1&0


def test_pool_takes_beats_that_complete_no_window_while_the_output_stalls():
    """``o`` never ready: the first window's output waits in the output register, the beats
    after it are taken until the one that completes the second window, then the input stops."""
    dut = MaxPool2x2(4, 4, 4, 4)
    rng = np.random.default_rng(5)
    bits, and_flags = random_images(rng, 1, 4, 4, 4)
    beats = encode_beats(bits, and_flags, 4)
    mon_i, mon_o = StreamMonitor(dut.i), StreamMonitor(dut.o)

    async def source(ctx):                 # offers the beats in order for a fixed time
        ctx.set(dut.i.valid, 1)
        taken = 0
        for _ in range(len(beats) + 20):
            ctx.set(dut.i.payload, beats[taken])
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            taken += ready

    simulate(dut, [source], [mon_i.testbench, mon_o.testbench], name="pool_stalled")
    first, second = sorted(emitting_beats(dut, 1))[:2]     # pixels (1, 1) and (1, 3): 5, 7
    assert mon_i.cycles() == list(range(second))
    assert mon_o.beats == [] and mon_o.valid_cycles[0] == first + 1
    assert mon_o.valid_cycles == list(range(first + 1, len(beats) + 20))


@pytest.mark.parametrize("write_reg", [False, True])
@pytest.mark.parametrize("height, width, channels, lanes, gap", [
    (4, 4, 8, 8, 0.0), (5, 7, 4, 2, 0.4), (6, 6, 32, 8, 0.2), (3, 2, 16, 16, 0.5),
    (4, 6, 8, 4, 0.0),           # CF = 2 back to back: a read misses the beat before's write
])
def test_pool_timing_equals_the_hardware(height, width, channels, lanes, gap, write_reg):
    rng = np.random.default_rng(int(gap * 10) + lanes)
    bits, and_flags = random_images(rng, 2, height, width, channels)
    dut = MaxPool2x2(height, width, channels, lanes, write_reg=write_reg)
    mon_i, mon_o = run(dut, encode_beats(bits, and_flags, lanes), rng, gap=gap, stall=0.0)
    got = decode_beats(mon_o.payloads(), 2, height, width, channels, lanes)
    np.testing.assert_array_equal(got, pool_reference(bits, and_flags))
    accepted, emitted = pool_timing(height, width, channels, lanes, offered_cycles(mon_i))
    assert accepted == mon_i.cycles()
    assert emitted == mon_o.valid_cycles == mon_o.cycles()
    if gap == 0.0:                                   # one beat per cycle, latency 1
        assert accepted == list(range(len(accepted)))
        assert emitted == [i + 1 for i in sorted(emitting_beats(dut, 2))]


@pytest.mark.parametrize("height, width, channels, lanes, gap, stall", [
    (4, 4, 8, 8, 0.0, 0.7),      # the input never waits: every window's beat meets a stall
    (5, 7, 4, 2, 0.3, 0.5),      # odd: dropped beats never wait
    (2, 2, 1, 1, 0.0, 0.9),
    (6, 6, 32, 8, 0.2, 0.4),
])
def test_stream_model_equals_the_hardware_under_gaps_and_stalls(height, width, channels, lanes,
                                                                gap, stall):
    """PoolModel with backpressure: every input and output handshake at the simulated cycle,
    whatever cycles ``o`` is ready in."""
    rng = np.random.default_rng([height, width, lanes, int(10 * stall)])
    bits, and_flags = random_images(rng, 3, height, width, channels)
    dut, ready = MaxPool2x2(height, width, channels, lanes), []
    mon_i, mon_o = run(dut, encode_beats(bits, and_flags, lanes), rng, gap, stall, ready)
    assert all(ready[c] for c in mon_o.cycles())          # the record is cycle-aligned
    pool = PoolModel(height, width, channels, lanes)
    connect_chain([SourceModel(offered_cycles(mon_i)), pool, SinkModel(ready)])
    assert [pool.i.taken(n) for n in range(3 * dut.in_beats)] == mon_i.cycles()
    assert [pool.o.taken(n) for n in range(3 * dut.out_beats)] == mon_o.cycles()


def test_stream_model_with_o_always_ready_is_pool_timing():
    offered = np.cumsum(np.random.default_rng(3).integers(0, 3, 2 * 5 * 7 * 2)).tolist()
    accepted, emitted = pool_timing(5, 7, 4, 2, offered)
    pool = PoolModel(5, 7, 4, 2)
    connect_chain([SourceModel(offered), pool, SinkModel()])
    assert [pool.i.taken(n) for n in range(len(offered))] == accepted
    assert [pool.o.taken(n) for n in range(len(emitted))] == emitted


def test_pool_timing_takes_one_beat_per_cycle_when_all_are_offered_at_once():
    accepted, emitted = pool_timing(2, 3, 2, 1, [0] * 12)
    assert accepted == list(range(12))
    assert emitted == [9, 10]                        # pixel (1, 1): beats 8 and 9, + 1


@pytest.mark.parametrize("args, message", [
    ((4, 4, 6, 4), r"lanes \(4\) must divide channels \(6\)"),
    ((1, 4, 8, 8), "height must be at least 2"),
    ((4, 1, 8, 8), "width must be at least 2"),
    ((4, 4, 0, 1), "channels must be a positive integer"),
    ((4, 4, 8, 2.0), "lanes must be a positive integer"),
])
def test_pool_refuses_bad_parameters(args, message):
    with rejected(), pytest.raises(ValueError, match=message):
        MaxPool2x2(*args)
    with pytest.raises(ValueError, match=message):
        pool_timing(*args, offered=[0])
