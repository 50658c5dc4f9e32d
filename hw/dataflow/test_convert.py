"""WidthConverter: lanes regrouped per image (padding never shifts the next image), stream
rules under random gaps and stalls, and its latency (hw/dataflow/timing.py); the same with
``eager`` slot loads, and gathering in steps (``most_slots``)."""
import numpy as np
import pytest

from xnorflow.hw.dataflow.convert import WidthConverter, gather_steps
from xnorflow.hw.dataflow.testing import StreamMonitor, drive_ready, rejected, send, simulate
from xnorflow.hw.dataflow.timing import converter_latency


def lanes_to_beats(lanes, per_beat, lane_bits, rng):
    """One image's lanes as beats; padding lanes of the last beat hold random garbage."""
    beats = []
    for start in range(0, len(lanes), per_beat):
        chunk = list(lanes[start:start + per_beat])
        chunk += [int(rng.integers(1 << lane_bits)) for _ in range(per_beat - len(chunk))]
        beats.append(sum(v << (j * lane_bits) for j, v in enumerate(chunk)))
    return beats


def beats_to_lanes(beats, per_beat, lane_bits):
    mask = (1 << lane_bits) - 1
    return [(b >> (j * lane_bits)) & mask for b in beats for j in range(per_beat)]


def run(dut, images, rng, gap, stall):
    beats = [b for img in images
             for b in lanes_to_beats(img, dut.in_lanes, dut.lane_bits, rng)]
    mon_i, mon_o = StreamMonitor(dut.i), StreamMonitor(dut.o)
    total = len(images) * dut.out_beats

    async def source(ctx):
        await send(ctx, dut.i, beats, rng, gap)

    async def sink(ctx):
        await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= total, rng, stall)
        for _ in range(5):            # nothing more may come out
            await ctx.tick()

    simulate(dut, [source, sink], [mon_i.testbench, mon_o.testbench], name="convert")
    return mon_i, mon_o


def check_regrouped(dut, images, rng):
    """Every image's lanes leave ``dut`` in order, whatever the gaps and stalls."""
    _, mon_o = run(dut, images, rng, gap=0.3, stall=0.3)
    outs, per = mon_o.payloads(), dut.out_beats
    assert len(outs) == len(images) * per
    for n, img in enumerate(images):
        got = beats_to_lanes(outs[n * per:(n + 1) * per], dut.out_lanes, dut.lane_bits)
        assert got[:dut.image_lanes] == img


@pytest.mark.parametrize("lane_bits, in_lanes, out_lanes, image_lanes", [
    (1, 4, 32, 70),     # gather, partial last output beat
    (1, 8, 8, 20),      # equal widths
    (1, 32, 8, 70),     # split, input lanes past the last output beat dropped
    (1, 6, 3, 10),      # split by a non-power of two
    (4, 2, 16, 64),     # k-bit lanes (two pixels per byte → S = 16 elements)
    (1, 3, 12, 13),     # gather by a non-power of two
    (1, 1, 5, 5),       # one lane at a time, exact
])
@pytest.mark.parametrize("eager", [False, True])
def test_converter_regroups_lanes_per_image(lane_bits, in_lanes, out_lanes, image_lanes, eager):
    rng = np.random.default_rng(in_lanes * 100 + out_lanes)
    images = [rng.integers(0, 1 << lane_bits, size=image_lanes).tolist() for _ in range(4)]
    dut = WidthConverter(lane_bits, in_lanes, out_lanes, image_lanes, eager=eager)
    check_regrouped(dut, images, rng)


@pytest.mark.parametrize("eager", [False, True])
@pytest.mark.parametrize("in_lanes, out_lanes", [(4, 16), (16, 4), (8, 8)])
def test_converter_latency_equals_the_model(in_lanes, out_lanes, eager):
    rng = np.random.default_rng(0)
    image_lanes = 64
    images = [rng.integers(0, 2, size=image_lanes).tolist() for _ in range(2)]
    dut = WidthConverter(1, in_lanes, out_lanes, image_lanes, eager=eager)
    mon_i, mon_o = run(dut, images, rng, gap=0.0, stall=0.0)
    lat = converter_latency(in_lanes, out_lanes)
    if out_lanes >= in_lanes:
        # output beat n is valid `lat` cycles after the input beat that completes it
        ratio = out_lanes // in_lanes
        completing = mon_i.cycles()[ratio - 1::ratio]
        assert [c + lat for c in completing] == mon_o.valid_cycles
    else:
        # the input beat is taken together with its last output beat, the others come
        # one per cycle before it
        ratio = in_lanes // out_lanes
        assert mon_o.valid_cycles[ratio - 1::ratio] == [c + lat for c in mon_i.cycles()]
        assert np.diff(mon_o.valid_cycles[:ratio]).tolist() == [1] * (ratio - 1)


@pytest.mark.parametrize("in_lanes, out_lanes, most_slots, steps", [
    (4, 196, 8, [4, 28, 196]),       # the CNV's conv 4 → fc 6: 49 = 7 · 7
    (4, 128, 8, [4, 16, 128]),       # conv 3 → conv 4: 32 = 4 · 8, the last step the larger
    (1, 128, 8, [1, 2, 16, 128]),    # 128 = 2 · 8 · 8
    (8, 64, 8, [8, 64]),             # 8 slots: one step
    (1, 11, 8, [1, 11]),             # a prime ratio past 8: one step, there is no other
    (4, 196, None, [4, 196]),        # no bound
    (64, 8, 8, [64, 8]),             # a split is one step
])
def test_gather_steps(in_lanes, out_lanes, most_slots, steps):
    assert gather_steps(in_lanes, out_lanes, most_slots) == steps


@pytest.mark.parametrize("lane_bits, in_lanes, out_lanes, image_lanes, most_slots", [
    (1, 2, 98, 200, 8),     # two steps of 7 slots, a partial last output beat
    (1, 1, 12, 13, 3),      # three steps
    (4, 2, 32, 64, 4),      # k-bit lanes, two steps of 4
])
def test_stepped_converter_regroups_lanes_and_adds_a_cycle_per_step(
        lane_bits, in_lanes, out_lanes, image_lanes, most_slots):
    rng = np.random.default_rng(image_lanes)
    images = [rng.integers(0, 1 << lane_bits, size=image_lanes).tolist() for _ in range(4)]
    dut = WidthConverter(lane_bits, in_lanes, out_lanes, image_lanes, eager=True,
                         most_slots=most_slots)
    check_regrouped(dut, images, rng)
    # with nothing waiting, an output beat is valid a cycle per step after the input beat
    # that completes it
    lat = converter_latency(in_lanes, out_lanes, most_slots)
    assert lat == len(dut.steps) - 1 > 1
    mon_i, mon_o = run(dut, images[:2], rng, gap=0.0, stall=0.0)
    ratio, in_beats = out_lanes // in_lanes, dut.in_beats
    # the beats that complete an output beat: every ratio-th, and an image's last
    ends = sorted(set(range(ratio - 1, in_beats, ratio)) | {in_beats - 1})
    completing = [mon_i.cycles()[image * in_beats + b] for image in range(2) for b in ends]
    assert [c + lat for c in completing] == mon_o.valid_cycles


def test_converter_rejects_widths_that_do_not_divide():
    with rejected(), pytest.raises(ValueError, match="one must divide the other"):
        WidthConverter(1, 6, 4, 12)
