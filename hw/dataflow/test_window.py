"""SlidingWindowUnit: every output pixel's 3×3 window bit-exact against a numpy im2col (images
back to back, random input gaps and output stalls, a writer far ahead of the reader), its cycle
model (window_timing) equal to the simulated cycles, and bad parameters refused."""
import numpy as np
import pytest

from xnorflow.hw.dataflow.testing import (StreamMonitor, drive_ready, offered_cycles, record_ready,
                                           rejected, send, simulate)
from xnorflow.hw.dataflow.timing import SinkModel, SourceModel, connect_chain
from xnorflow.hw.dataflow.window import SlidingWindowUnit, WindowModel, window_timing


def im2col(img):
    """[H, W, C] → [H, W, 9·C]: tap-major windows of a 3×3, stride-1 conv, padding 0."""
    h, w, c = img.shape
    padded = np.zeros((h + 2, w + 2, c), dtype=img.dtype)
    padded[1:h + 1, 1:w + 1] = img
    return np.concatenate([padded[ky:ky + h, kx:kx + w] for ky in range(3) for kx in range(3)],
                          axis=-1)


def to_beats(elements, lanes, lane_bits):
    """A flat element vector as beats of ``lanes`` elements (lane j in bits j·lane_bits…)."""
    groups = np.asarray(elements, dtype=np.int64).reshape(-1, lanes)
    return [sum(int(v) << (j * lane_bits) for j, v in enumerate(g)) for g in groups]


def random_images(dut, count, rng):
    return [rng.integers(0, 1 << dut.lane_bits, size=(dut.height, dut.width, dut.channels))
            for _ in range(count)]


async def check_output_holds(ctx, o):
    """The stream rule on ``o``: a beat offered and not taken stays valid and unchanged."""
    held = None
    async for _, _, valid, ready, payload in ctx.tick().sample(o.valid, o.ready, o.payload):
        if held is not None:
            assert valid and payload == held, "o changed while valid & ~ready"
        held = payload if valid and not ready else None


def run(dut, images, rng, gap, stall, ready=None):
    """Stream ``images`` through ``dut``; returns the input and output monitors. With a list
    ``ready``, ``o.ready`` is recorded there cycle by cycle."""
    beats = [b for img in images for b in to_beats(img.ravel(), dut.lanes, dut.lane_bits)]
    mon_i, mon_o = StreamMonitor(dut.i), StreamMonitor(dut.o)

    async def rules(ctx):
        await check_output_holds(ctx, dut.o)
    total = len(images) * dut.out_beats

    async def source(ctx):
        await send(ctx, dut.i, beats, rng, gap)

    async def sink(ctx):
        if ready is None:
            await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= total, rng, stall)
        else:
            await record_ready(ctx, dut.o, lambda: len(mon_o.beats) >= total, rng, stall, ready)
        ctx.set(dut.o.ready, 1)
        for _ in range(2 * dut.row_beats + 5):     # nothing more may come out
            await ctx.tick()

    simulate(dut, [source, sink], [mon_i.testbench, mon_o.testbench, rules], name="window")
    return mon_i, mon_o


# (height, width, channels, lane_bits, lanes, rows)
GEOMETRIES = [
    (4, 4, 1, 4, 1, None),     # one-channel k-bit first layer, C = S = 1
    (5, 3, 8, 1, 4, None),     # 4 ring rows for 5 image rows: slots shift from image to image
    (8, 8, 16, 1, 16, None),   # C = S: one beat per tap
    (1, 1, 2, 1, 1, None),     # one pixel: every tap but the centre is padding
    (2, 5, 4, 1, 2, None),     # H < 3: every output row reads both rows
    (3, 2, 2, 2, 1, 3),        # W < 3, the smallest ring for H ≥ 3
    (6, 3, 4, 1, 2, 7),        # a ring larger than the image
    (7, 6, 64, 1, 32, None),   # medium
]


@pytest.mark.parametrize("height, width, channels, lane_bits, lanes, rows", GEOMETRIES)
@pytest.mark.parametrize("ram_reg", [False, True])   # the ECP5 ring's ports from registers
def test_windows_equal_im2col(height, width, channels, lane_bits, lanes, rows, ram_reg):
    rng = np.random.default_rng(height * 1000 + width * 100 + channels)
    dut = SlidingWindowUnit(height, width, channels, lane_bits, lanes, rows, ram_reg)
    images = random_images(dut, 3, rng)
    _, mon_o = run(dut, images, rng, gap=0.3, stall=0.3)
    expected = [b for img in images for b in to_beats(im2col(img).ravel(), lanes, lane_bits)]
    assert mon_o.payloads() == expected


@pytest.mark.parametrize("height, width, channels, lanes, rows", [
    (6, 4, 2, 1, None),   # the default ring of 4
    (5, 2, 3, 3, 3),      # the smallest ring: the writer waits for every row
])
@pytest.mark.parametrize("ram_reg", [False, True])   # the ECP5 ring's ports from registers
def test_ring_never_overwrites_a_row_still_read(height, width, channels, lanes, rows, ram_reg):
    """The source never pauses and the sink mostly stalls, so the writer runs into the reader
    all the time: a slot released a row early would show up as a wrong window."""
    rng = np.random.default_rng(7)
    dut = SlidingWindowUnit(height, width, channels, 1, lanes, rows, ram_reg)
    images = random_images(dut, 3, rng)
    mon_i, mon_o = run(dut, images, rng, gap=0.0, stall=0.85)
    expected = [b for img in images for b in to_beats(im2col(img).ravel(), lanes, 1)]
    assert mon_o.payloads() == expected
    waited = len(mon_i.valid_cycles) - len(mon_i.beats)
    assert waited > dut.out_beats, "the writer never waited for the reader: nothing was tested"


@pytest.mark.parametrize("height, width, channels, lane_bits, lanes, rows, gap", [
    (4, 4, 1, 4, 1, None, 0.0),    # input one beat per cycle: the writer waits for the ring
    (4, 4, 1, 4, 1, None, 0.5),
    (5, 3, 8, 1, 4, None, 0.2),
    (5, 3, 8, 1, 4, 3, 0.0),       # the smallest ring: the reader waits W·C/S every row
    (2, 5, 4, 1, 2, None, 0.3),    # rows = H < 3: the reader waits for every image
    (1, 1, 2, 1, 1, None, 0.0),
    (6, 3, 4, 1, 2, 7, 0.1),
    (3, 4, 4, 1, 2, None, 0.9),    # input much slower than the reader
])
@pytest.mark.parametrize("ram_reg", [False, True])   # the ECP5 ring's ports from registers
def test_cycle_model_equals_the_hardware(height, width, channels, lane_bits, lanes, rows, gap, ram_reg):
    rng = np.random.default_rng(int(gap * 100) + height)
    dut = SlidingWindowUnit(height, width, channels, lane_bits, lanes, rows, ram_reg)
    images = random_images(dut, 3, rng)
    mon_i, mon_o = run(dut, images, rng, gap=gap, stall=0.0)
    accepted, emitted = window_timing(height, width, channels, lanes, rows,
                                      offered_cycles(mon_i), ram_reg)
    assert accepted == mon_i.cycles()
    assert emitted == mon_o.valid_cycles


def stream_model(stage, offered, ready, inputs, outputs):
    """``stage`` (a stage model) between a source offering beat n from ``offered[n]`` and a
    sink whose ready is ``ready[t]``: the cycles its input and output beats are taken."""
    connect_chain([SourceModel(offered), stage, SinkModel(ready)])
    return ([stage.i.taken(n) for n in range(inputs)],
            [stage.o.taken(n) for n in range(outputs)])


@pytest.mark.parametrize("height, width, channels, lanes, rows, gap, stall", [
    (4, 4, 1, 1, None, 0.3, 0.5),
    (5, 3, 8, 4, None, 0.0, 0.8),    # the writer runs into the reader all the time
    (5, 3, 8, 4, 3, 0.1, 0.3),       # the smallest ring
    (2, 5, 4, 2, None, 0.2, 0.5),    # rows = H < 3
    (1, 1, 2, 1, None, 0.0, 0.5),
    (1, 4, 2, 2, None, 0.0, 0.6),    # one row: its slot is released by its own last beat
    (6, 3, 4, 2, 7, 0.1, 0.4),
    (3, 4, 4, 2, None, 0.8, 0.2),    # input much slower than the reader
])
@pytest.mark.parametrize("ram_reg", [False, True])
def test_stream_model_equals_the_hardware_under_gaps_and_stalls(height, width, channels, lanes,
                                                                rows, gap, stall, ram_reg):
    """WindowModel with backpressure: every input and output handshake at the simulated
    cycle, whatever cycles ``o`` is ready in."""
    rng = np.random.default_rng(int(100 * (gap + stall)) + height)
    dut = SlidingWindowUnit(height, width, channels, 1, lanes, rows, ram_reg)
    images, ready = random_images(dut, 3, rng), []
    mon_i, mon_o = run(dut, images, rng, gap=gap, stall=stall, ready=ready)
    assert all(ready[c] for c in mon_o.cycles())          # the record is cycle-aligned
    model = WindowModel(height, width, channels, lanes, rows, ram_reg)
    accepted, taken = stream_model(model, offered_cycles(mon_i), ready, len(mon_i.beats),
                                   3 * dut.out_beats)
    assert accepted == mon_i.cycles()
    assert taken == mon_o.cycles()


@pytest.mark.parametrize("height, width, channels, lanes, rows", [
    (4, 4, 1, 1, None), (5, 3, 8, 4, 3), (2, 5, 4, 2, None), (1, 1, 2, 1, None)])
@pytest.mark.parametrize("ram_reg", [False, True])
def test_stream_model_with_o_always_ready_is_window_timing(height, width, channels, lanes, rows,
                                                           ram_reg):
    rng = np.random.default_rng(height)
    in_beats = 4 * height * width * channels // lanes
    offered = np.cumsum(rng.integers(0, 3, in_beats)).tolist()
    accepted, emitted = window_timing(height, width, channels, lanes, rows, offered, ram_reg)
    got_in, got_out = stream_model(WindowModel(height, width, channels, lanes, rows, ram_reg),
                                   offered, None, in_beats, 9 * in_beats)
    assert got_in == accepted and got_out == emitted


@pytest.mark.parametrize("height, width, channels, lanes", [
    (4, 4, 1, 1), (8, 8, 16, 16), (7, 6, 64, 32), (1, 3, 4, 2), (2, 2, 4, 4)])
def test_model_latency_and_cycles_per_image(height, width, channels, lanes):
    """The docstring's numbers (the model equals the hardware, above): latency
    min(2, H)·W·C/S + 1, exactly 9·H·W·C/S cycles per image with 4 ring rows."""
    row_beats = width * channels // lanes
    images = 4
    offered = list(range(images * height * row_beats))     # the input never waits
    accepted, emitted = window_timing(height, width, channels, lanes, 4, offered)
    assert emitted[0] - accepted[0] == min(2, height) * row_beats + 1
    per_image = 9 * height * row_beats
    firsts = emitted[::per_image]
    assert np.diff(firsts).tolist() == [per_image] * (images - 1)
    assert np.diff(emitted).tolist() == [1] * (len(emitted) - 1)   # no bubble at all


@pytest.mark.parametrize("height, rows, extra_rows", [
    (6, 3, 4), (4, 3, 2), (3, 3, 1),            # rows = 3: (H − 2) rows of input per image
    (2, 2, 2), (1, 1, 1),                       # the default rows = H ≤ 2: H rows
    (1, 3, 0), (2, 4, 0), (3, 4, 0), (9, 4, 0), (5, 7, 0),   # rows ≥ min(H + 2, 4): none
])
def test_model_cycles_per_image_with_small_rings(height, rows, extra_rows):
    """The docstring's steady state when the ring cannot take the next rows early."""
    width, channels, lanes = 4, 6, 3
    row_beats = width * channels // lanes
    images = 5
    offered = list(range(images * height * row_beats))
    _, emitted = window_timing(height, width, channels, lanes, rows, offered)
    per_image = 9 * height * row_beats
    firsts = emitted[::per_image]
    assert np.diff(firsts)[1:].tolist() == [per_image + extra_rows * row_beats] * (images - 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(height=4, width=4, channels=6, lanes=4), "lanes must divide channels"),
    (dict(height=5, width=4, channels=2, rows=2), "rows must be an integer of at least 3"),
    (dict(height=2, width=4, channels=2, rows=1), "rows must be an integer of at least 2"),
    (dict(height=0, width=4, channels=2), "height must be a positive integer"),
    (dict(height=3, width=4, channels=2, lane_bits=0), "lane_bits must be a positive integer"),
    (dict(height=3, width=4.0, channels=2), "width must be a positive integer"),
])
def test_bad_parameters_refused(kwargs, message):
    with rejected(), pytest.raises(ValueError, match=message):
        SlidingWindowUnit(**kwargs)


def test_model_refuses_partial_images():
    with pytest.raises(ValueError, match="not whole images"):
        window_timing(2, 2, 2, 1, None, list(range(7)))
