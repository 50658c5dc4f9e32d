"""MatrixVectorUnit against the golden model (sw/layers/dense.py), and its cycle model.

Weights and channel constants reach the engine only through its write port, packed by
sw/layers/dataflow_pack.py; images stream in back to back; the scoreboard is a monitor on
the output wire. Shapes cover N and M that are not multiples of S and P, k = 1 and k = 4
(and a 1-bit unsigned first layer), thresholds of both directions including saturated ones,
raw outputs, random input gaps and output stalls, and garbage in the input's padding lanes;
with MMV (m = 2, 3, 4 images per weight read) the same, for both output stages, and the cycle
of every output beat of a group.
"""
import copy
import re

import numpy as np
import pytest

from xnorflow.hw.dataflow.mvu import MatrixVectorUnit
from xnorflow.hw.dataflow.shape import MvuShape
from xnorflow.hw.dataflow.testing import StreamMonitor, drive_ready, load, rejected, send, simulate
from xnorflow.hw.dataflow.timing import (LUT_RAM_DEPTH, OUTPUT_SLICES, mvu_cycles,
                                         mvu_fifo_depth, mvu_last_output_latency, mvu_latency,
                                         mvu_output_cycles, mvu_output_offsets)
from xnorflow.sw import bits as B
from xnorflow.sw.layers.dataflow_pack import (decode_mvu_output, encode_mvu_input, mvu_shape,
                                     pack_layer)
from xnorflow.sw.layers.dense import DenseLayer
from xnorflow.sw.random_models import random_thresholds


def random_layer(rng, n, m, k, output, kind=None):
    """A DenseLayer with random ±1 weights and (threshold layers) thresholds of both
    directions. Most thresholds are sums the layer really produces (so the output bits
    depend on the input: thresholds drawn over the whole range ±N·(2^k − 1) would saturate
    most channels, the sums of random inputs being near 0); about one in six is saturated at
    the range bounds (xnorflow.sw.random_models) or far beyond them."""
    kind = kind or ("binary" if k == 1 else "unsigned")
    layer = DenseLayer(name="fc", in_features=n, out_features=m, input_kind=kind, input_bits=k,
                       weights=B.pack_bits(rng.integers(0, 2, size=(m, n)).astype(bool)),
                       output=output)
    if output == "threshold":
        lo, hi = layer.acc_range()
        layer.threshold, layer.direction = random_thresholds(rng, lo, hi, m)
        sums = layer.dot(random_layer_inputs(rng, layer, 16))
        typical = rng.random(m) < 0.85
        picked = sums[rng.integers(0, len(sums), size=m), np.arange(m)] + rng.integers(-1, 2, m)
        layer.threshold[typical] = picked[typical]
        far = ~typical & (rng.random(m) < 0.5)
        layer.threshold[far] = rng.choice([lo - 1000, hi + 1000], size=int(far.sum()))
    return layer


def random_layer_inputs(rng, layer, batch):
    """A batch in the layer's input format (packed bits or k-bit integers)."""
    if layer.input_kind == "binary":
        return B.pack_bits(rng.integers(0, 2, size=(batch, layer.in_features)).astype(bool))
    return rng.integers(0, 1 << layer.input_bits, size=(batch, layer.in_features), dtype=np.uint8)


def with_padding_garbage(beats, shape, rng):
    """Set random bits in the padding lanes of every image's last beat: the engine must
    ignore them (it clears them when it stores the beat)."""
    pad_lo = shape.last_beat_elements * shape.input_bits
    width = shape.in_beat_bits
    if pad_lo == width:
        return beats
    out = []
    for image in beats:
        junk = int(rng.integers(1 << min(62, width - pad_lo))) << pad_lo
        out.append(image[:-1] + [image[-1] | junk])
    return out


def run_engine(dut, writes, beats, rng=None, gap=0.0, stall=0.0, name="mvu"):
    """Load ``writes`` through the write port, stream the images' ``beats``, collect every
    output beat; returns (input monitor, output monitor)."""
    mon_i, mon_o = StreamMonitor(dut.i), StreamMonitor(dut.o)
    total = len(beats) * dut.shape.neuron_folds

    async def source(ctx):
        await load(ctx, dut.wr, writes)
        await send(ctx, dut.i, [b for image in beats for b in image], rng, gap)

    async def sink(ctx):
        await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= total, rng, stall)

    simulate(dut, [source, sink], [mon_i.testbench, mon_o.testbench], name=name)
    return mon_i, mon_o


def per_image(payloads, nf):
    return [payloads[i:i + nf] for i in range(0, len(payloads), nf)]


def check_layer(layer, simd, pe, batch, seed, gap=0.3, stall=0.3, **options):
    """Stream ``batch`` random images through an engine built with ``options`` (keyword
    arguments of MatrixVectorUnit) with gaps and stalls; outputs must equal the golden."""
    rng = np.random.default_rng(seed)
    x = random_layer_inputs(rng, layer, batch)
    dut = MatrixVectorUnit(layer.in_features, layer.out_features, simd, pe, layer.input_bits,
                           layer.output, input_kind=layer.input_kind, **options)
    shape = dut.shape
    beats = with_padding_garbage(encode_mvu_input(x, shape), shape, rng)
    _, mon_o = run_engine(dut, pack_layer(layer, simd, pe), beats, rng, gap, stall)
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    want = layer.forward(x)[1]
    assert len(np.unique(want, axis=0)) > 1, "the images must not all give the same output"
    np.testing.assert_array_equal(got, want)


# (N, M, S, P, k, output, input kind): N, M multiples of S, P or not; SF = 1 and NF = 1.
CASES = [
    (16, 8, 8, 4, 1, "threshold", None),
    (37, 13, 8, 4, 1, "threshold", None),      # padding in inputs and channels
    (23, 9, 23, 3, 1, "threshold", None),      # SF = 1 (the whole vector in one beat)
    (20, 5, 6, 5, 1, "threshold", None),       # NF = 1
    (30, 11, 7, 2, 1, "raw", None),
    (64, 16, 16, 4, 4, "threshold", None),     # the digits first layer, small M
    (27, 10, 8, 3, 4, "threshold", None),
    (19, 7, 5, 2, 4, "raw", None),
    (33, 12, 16, 5, 1, "threshold", "unsigned"),  # a 1-bit unsigned first layer
    (29, 6, 9, 4, 1, "raw", "unsigned"),
    (12, 6, 4, 3, 8, "raw", None),             # the widest input
]


@pytest.mark.parametrize("n, m, simd, pe, k, output, kind", CASES)
def test_mvu_matches_golden_with_gaps_and_stalls(n, m, simd, pe, k, output, kind):
    rng = np.random.default_rng(n * 1000 + m * 10 + k)
    layer = random_layer(rng, n, m, k, output, kind)
    check_layer(layer, simd, pe, batch=5, seed=n + m)


@pytest.mark.parametrize("n, m, simd, pe, k, words, output, options", [
    (64, 16, 16, 4, 4, 4, "threshold", {}),     # the digits first layer: 16-bit FIFO words
    (32, 9, 8, 3, 2, 2, "threshold", {}),
    (24, 5, 12, 5, 1, 3, "raw", {}),            # NF = 1, words of 4 bits
    (16, 6, 16, 2, 1, 16, "threshold", {}),     # SF = 1, one bit a word
    # ECP5 (ram_reg), a conv engine's window beats: the buffer written two cycles late in
    # chunks, none across two words' columns (96-bit words, 64-bit chunks)
    (384, 8, 192, 2, 1, 2, "threshold", {"ram_reg": True}),
    (384, 8, 192, 2, 1, 2, "threshold", {"ram_reg": True, "mmv": 2}),   # image after image
    (48, 12, 12, 3, 1, 3, "threshold", {"ram_reg": True, "mmv": 4}),    # lag 2 (SF = 4)
    (18, 8, 18, 4, 1, 9, "threshold", {"ram_reg": True}),     # SF = 1: no lag (CNV conv 1)
])
def test_mvu_taking_its_beats_as_words_matches_golden_with_gaps_and_stalls(n, m, simd, pe, k,
                                                                          words, output,
                                                                          options):
    """``in_words``: each word goes straight into its column of the input buffer (no
    gathering register in front of the engine); the outputs are the golden model's."""
    rng = np.random.default_rng([n, m, words])
    layer = random_layer(rng, n, m, k, output)
    x = random_layer_inputs(rng, layer, 4 * options.get("mmv", 1) + (options == {}))
    dut = MatrixVectorUnit(n, m, simd, pe, k, output, input_kind=layer.input_kind,
                           **{"ram_reg": False, **options}, in_words=words)
    shape, bits = dut.shape, len(dut.i.payload)
    assert bits * words == shape.in_beat_bits
    split = [[(beat >> (j * bits)) & ((1 << bits) - 1) for beat in image for j in range(words)]
             for image in encode_mvu_input(x, shape)]
    _, mon_o = run_engine(dut, pack_layer(layer, simd, pe), split, rng, gap=0.3, stall=0.3)
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])


def test_mvu_in_words_refuses_what_it_cannot_write_word_by_word():
    with pytest.raises(ValueError, match="S to divide n_in = 60"):
        MatrixVectorUnit(60, 16, 16, 4, 4, ram_reg=False, in_words=4)
    with pytest.raises(ValueError, match="must split every 64-bit beat"):
        MatrixVectorUnit(64, 16, 16, 4, 4, ram_reg=False, in_words=3)


# Shapes for the serial output stage (P ≤ SF), P = SF included.
SERIAL_CASES = [
    (37, 13, 8, 4, 1, "threshold", None),
    (27, 10, 8, 3, 4, "threshold", None),
    (64, 16, 16, 4, 4, "threshold", None),     # P = SF
    (30, 11, 7, 2, 1, "raw", None),
    (19, 7, 5, 2, 4, "raw", None),
    (33, 12, 8, 4, 1, "threshold", "unsigned"),
    (29, 6, 9, 4, 1, "raw", "unsigned"),        # P = SF, raw unsigned
    (24, 5, 8, 1, 1, "threshold", None),        # one PE
]


@pytest.mark.parametrize("ram_reg", [True, False])
@pytest.mark.parametrize("n, m, simd, pe, k, output, kind", SERIAL_CASES)
def test_mvu_serial_output_stage_matches_golden(n, m, simd, pe, k, output, kind, ram_reg):
    rng = np.random.default_rng(n * 1000 + m * 10 + k + 7)
    layer = random_layer(rng, n, m, k, output, kind)
    check_layer(layer, simd, pe, batch=4, seed=n + m + 1, output_stage="serial",
                ram_reg=ram_reg)


@pytest.mark.parametrize("stage, mmv, k", [("parallel", 1, 1), ("serial", 1, 1),
                                             ("parallel", 2, 4), ("serial", 2, 1)])
def test_mvu_flags_carry_each_channels_direction_beside_its_bit(stage, mmv, k):
    """``flags=True`` (a conv engine a 2×2 pool follows): beat ``nf``'s low P bits are the
    golden bits, its high P bits the channels' inv (1 for direction −1, 0 for padding
    channels), for every image of a group and both output stages."""
    rng = np.random.default_rng(31 + mmv + k)
    n, m_out, simd, pe = 36, 11, 6, 3          # SF = 6, NF = 4: padding channel 11
    layer = random_layer(rng, n, m_out, k, "threshold")
    x = random_layer_inputs(rng, layer, 4)
    dut = MatrixVectorUnit(n, m_out, simd, pe, k, "threshold", input_kind=layer.input_kind,
                           output_stage=stage, mmv=mmv, flags=True)
    shape = dut.shape
    assert shape.out_beat_bits == 2 * pe
    _, mon_o = run_engine(dut, pack_layer(layer, simd, pe), encode_mvu_input(x, shape),
                          rng, gap=0.3, stall=0.3)
    images = per_image(mon_o.payloads(), shape.neuron_folds)
    values = [[b & ((1 << pe) - 1) for b in image] for image in images]
    np.testing.assert_array_equal(decode_mvu_output(values, mvu_shape(layer, simd, pe)),
                                  layer.forward(x)[1])
    inv = [(b >> (pe + p)) & 1 for b in images[0] for p in range(pe)]
    assert inv == [int(d < 0) for d in layer.direction] + [0] * (len(inv) - m_out)
    assert all([b >> pe for b in image] == [b >> pe for b in images[0]] for image in images)


def test_mvu_weights_in_single_port_ram_style():
    """``ram_styles={"weights": "huge"}`` (UP5K SPRAM): one address for reads and writes;
    loading, computing and reloading still give the golden results."""
    rng = np.random.default_rng(21)
    layer = random_layer(rng, 40, 9, 4, "threshold")
    check_layer(layer, 16, 3, batch=3, seed=2, ram_styles={"weights": "huge"})


@pytest.mark.parametrize("ram_reg", [False, True])
def test_mvu_without_edge_registers_and_a_one_entry_fifo(ram_reg):
    """The iCE40 setting (no RAM edge register) and the smallest FIFO under heavy stalls:
    results depend on neither."""
    rng = np.random.default_rng(7)
    layer = random_layer(rng, 26, 9, 4, "threshold")
    check_layer(layer, 8, 2, batch=4, seed=3, gap=0.5, stall=0.8, ram_reg=ram_reg, fifo_depth=1)


def test_mvu_new_weights_of_the_same_shape_need_no_new_engine():
    """Two layers loaded one after the other into one engine, each run over the same images."""
    rng = np.random.default_rng(11)
    layers = [random_layer(rng, 24, 10, 1, "threshold") for _ in range(2)]
    x = random_layer_inputs(rng, layers[0], 3)
    dut = MatrixVectorUnit(24, 10, 8, 4)
    shape = dut.shape
    beats = [b for image in encode_mvu_input(x, shape) for b in image]
    mon_o = StreamMonitor(dut.o)
    total = 2 * len(x) * shape.neuron_folds

    async def source(ctx):
        for layer in layers:
            await load(ctx, dut.wr, pack_layer(layer, 8, 4))
            await send(ctx, dut.i, beats, rng, 0.2)
            # loading is allowed only while idle: wait for the last result
            while len(mon_o.beats) < (layers.index(layer) + 1) * len(x) * shape.neuron_folds:
                await ctx.tick()

    async def sink(ctx):
        await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= total, rng, 0.2)

    simulate(dut, [source, sink], [mon_o.testbench])
    got = per_image(mon_o.payloads(), shape.neuron_folds)
    for n, layer in enumerate(layers):
        want = layer.forward(x)[1]
        np.testing.assert_array_equal(decode_mvu_output(got[n * len(x):(n + 1) * len(x)], shape),
                                      want)
    assert not np.array_equal(layers[0].forward(x)[1], layers[1].forward(x)[1])


def _stage_options(stage):
    """MVU options of a test's stage text ``STAGE[:LEVELS[:noleaf]]``."""
    stage, _, rest = stage.partition(":")
    levels, _, leaf = rest.partition(":")
    return dict(output_stage=stage, levels_per_stage=int(levels or 1), leaf_reg=leaf != "noleaf")


# Timing: (N, M, S, P, k) incl. SF = 1, NF = 1 and II = 1 (where a fold starts every cycle).
TIMING = [(40, 12, 8, 4, 1), (64, 32, 16, 4, 4), (23, 9, 23, 3, 1), (20, 5, 6, 5, 1),
          (8, 4, 8, 4, 1), (50, 7, 16, 3, 2)]


TIMING_SERIAL = [(40, 12, 8, 4, 1), (64, 32, 16, 4, 4), (50, 7, 16, 3, 2)]


@pytest.mark.parametrize("n, m, simd, pe, k, ram_reg, stage",
                         [(*t, r, "parallel") for t in TIMING for r in (True, False)]
                         + [(*t, r, "serial") for t in TIMING_SERIAL for r in (True, False)]
                         + [(64, 32, 16, 4, 4, True, "parallel:2")]
                         + [(*t, r, "parallel:2:noleaf") for t in TIMING[:3] for r in (True, False)]
                         + [(40, 12, 8, 4, 1, True, "serial:1:noleaf")])
def test_mvu_latency_and_interval_equal_the_cycle_model(n, m, simd, pe, k, ram_reg, stage):
    """Input always offered, output always ready: first-result latency, last-result latency
    and the interval between images equal hw/dataflow/timing.py exactly, for every image
    (``parallel:2``: two adder levels per pipeline stage; ``:noleaf``: the popcounts' first
    level unregistered)."""
    options = dict(ram_reg=ram_reg, **_stage_options(stage))
    rng = np.random.default_rng(n + m)
    layer = random_layer(rng, n, m, k, "threshold")
    x = random_layer_inputs(rng, layer, 4)
    dut = MatrixVectorUnit(n, m, simd, pe, k, **options)
    shape = dut.shape
    mon_i, mon_o = run_engine(dut, pack_layer(layer, simd, pe), encode_mvu_input(x, shape))
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])

    sf, nf = shape.synapse_folds, shape.neuron_folds
    last_in = mon_i.cycles()[sf - 1::sf]              # last input beat of each image
    first_out = mon_o.cycles()[0::nf]                 # first output beat of each image
    last_out = mon_o.cycles()[nf - 1::nf]
    assert mon_o.valid_cycles == mon_o.cycles()       # ready was never low
    # the first image meets an idle engine
    assert first_out[0] - last_in[0] == mvu_latency(n, m, simd, pe, k, **options)
    assert last_out[0] - last_in[0] == mvu_last_output_latency(n, m, simd, pe, k, **options)
    assert np.diff(first_out).tolist() == [mvu_cycles(n, m, simd, pe, k)] * (len(x) - 1)
    assert dut.cycles_per_image == sf * nf and dut.latency == first_out[0] - last_in[0]


@pytest.mark.parametrize("n, m, simd, pe, k, mmv", [(40, 12, 8, 4, 1, 1), (32, 16, 8, 4, 1, 2)])
def test_mvu_lut_ram_weights_skip_the_second_read_register(n, m, simd, pe, k, mmv):
    """ram_reg with a weight memory of at most LUT_RAM_DEPTH words: pinned to LUT RAM, its
    word (and the input word) pass one register fewer than from block RAM, one cycle less,
    and both equal the model and the golden; without ram_reg nothing is pinned."""
    rng = np.random.default_rng(n + m + mmv)
    layer = random_layer(rng, n, m, k, "threshold")
    x = random_layer_inputs(rng, layer, 2 * mmv)
    latencies = {}
    for style in (None, "block"):
        dut = MatrixVectorUnit(n, m, simd, pe, k, mmv=mmv,
                               ram_styles=None if style is None else {"weights": style})
        assert dut.shape.weight_depth <= LUT_RAM_DEPTH
        assert dut.ram_styles["weights"] == ("distributed" if style is None else "block")
        mon_i, mon_o = run_engine(dut, pack_layer(layer, simd, pe), encode_mvu_input(x, dut.shape))
        got = decode_mvu_output(per_image(mon_o.payloads(), dut.shape.neuron_folds), dut.shape)
        np.testing.assert_array_equal(got, layer.forward(x)[1])
        first = mon_o.cycles()[0] - mon_i.cycles()[mmv * dut.shape.synapse_folds - 1]
        assert first == dut.latency == mvu_latency(n, m, simd, pe, k, mmv=mmv, weight_style=style)
        latencies[style] = first
    assert latencies["block"] - latencies[None] == 1
    assert "weights" not in MatrixVectorUnit(n, m, simd, pe, k, ram_reg=False).ram_styles


@pytest.mark.parametrize("n, m, simd, pe, k", [(40, 12, 8, 4, 1), (64, 32, 16, 4, 4)])
def test_mvu_default_fifo_is_the_least_that_keeps_the_interval(n, m, simd, pe, k):
    """One entry fewer than timing.mvu_fifo_depth and the engine waits for credits although
    the output is always ready: the default is exact, not generous."""
    rng = np.random.default_rng(9)
    layer = random_layer(rng, n, m, k, "threshold")
    x = random_layer_inputs(rng, layer, 3)
    intervals = {}
    for less in (0, 1):
        depth = mvu_fifo_depth(n, m, simd, pe, k) - less
        dut = MatrixVectorUnit(n, m, simd, pe, k, fifo_depth=depth)
        _, mon_o = run_engine(dut, pack_layer(layer, simd, pe),
                              encode_mvu_input(x, dut.shape))
        intervals[less] = np.diff(mon_o.cycles()[0::dut.shape.neuron_folds]).tolist()
    assert intervals[0] == [mvu_cycles(n, m, simd, pe)] * 2
    assert min(intervals[1]) > mvu_cycles(n, m, simd, pe)


def test_mvu_stalled_output_holds_back_without_losing_a_beat():
    """``o`` not ready for a long time: the engine fills its FIFO, stops starting folds, and
    resumes; the payload stays stable while valid and not ready (the stream rule)."""
    rng = np.random.default_rng(5)
    layer = random_layer(rng, 16, 12, 1, "raw")
    x = random_layer_inputs(rng, layer, 3)
    dut = MatrixVectorUnit(16, 12, 8, 2, output="raw")
    shape = dut.shape
    mon_o = StreamMonitor(dut.o)
    held = []
    total = len(x) * shape.neuron_folds

    async def source(ctx):
        await load(ctx, dut.wr, pack_layer(layer, 8, 2))
        await send(ctx, dut.i, [b for image in encode_mvu_input(x, shape) for b in image])

    async def sink(ctx):
        last = None
        for cycle in range(450):
            ready = cycle > 200 and cycle % 3 == 0
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, busy = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                 dut.busy)
            if last is not None:
                held.append(payload == last)
            last = payload if valid and not ready else None
            if 120 < cycle < 200:   # (the load takes a write every other cycle)
                assert not busy         # FIFO full of credits: no fold starts
        assert len(mon_o.beats) == total

    simulate(dut, [source, sink], [mon_o.testbench])
    assert held and all(held)
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])


def test_mvu_shape_errors_name_the_parameter():
    with pytest.raises(ValueError, match="simd 9 exceeds n_in 8"):
        MvuShape(8, 4, 9, 2)
    with pytest.raises(ValueError, match="pe 5 exceeds n_out 4"):
        MvuShape(8, 4, 4, 5)
    with pytest.raises(ValueError, match="acc_width 5 cannot hold"):
        MvuShape(64, 4, 8, 2, 4, output="raw", acc_width=5)
    with pytest.raises(ValueError, match="binary .* has 1 bit"):
        MvuShape(8, 4, 4, 2, 2, input_kind="binary")
    with pytest.raises(ValueError, match="input_bits must be 1..8"):
        MvuShape(8, 4, 4, 2, 9)
    with pytest.raises(ValueError, match="output must be one of"):
        MvuShape(8, 4, 4, 2, output="bits")
    with rejected(), pytest.raises(ValueError, match="fifo_depth"):
        MatrixVectorUnit(8, 4, 4, 2, fifo_depth=0)
    with rejected(), pytest.raises(ValueError, match="needs pe ≤"):
        MatrixVectorUnit(16, 8, 8, 4, output_stage="serial")
    with rejected(), pytest.raises(ValueError, match="output_stage must be one of"):
        MatrixVectorUnit(16, 8, 8, 4, output_stage="wide")
    with rejected(), pytest.raises(ValueError, match="unknown memory kind"):
        MatrixVectorUnit(16, 8, 8, 4, ram_styles={"thresholds": "block"})


def test_mvu_shape_of_a_dense_layer_follows_its_kind():
    rng = np.random.default_rng(0)
    layer = random_layer(rng, 64, 16, 4, "threshold")
    shape = mvu_shape(layer, 16, 4)
    assert (shape.synapse_folds, shape.neuron_folds, shape.in_beat_bits) == (4, 4, 64)
    raw = copy.copy(layer)
    raw.output, raw.input_kind, raw.input_bits = "raw", "binary", 1
    assert not mvu_shape(raw, 16, 4).has_channel_memory


# ---- MMV: m images per weight read -----------------------------------------------------------

# (N, M, S, P, k, output, input kind, mmv): mmv ≤ NF and mmv ≤ SF; N, M multiples of S, P or
# not; SF = mmv and NF = mmv (a stream busy in every cycle of a group).
MMV_CASES = [
    (37, 13, 8, 4, 1, "threshold", None, 2),   # padding in inputs and channels
    (37, 13, 8, 4, 1, "threshold", None, 4),   # NF = mmv: the input stream never rests
    (27, 10, 8, 3, 4, "threshold", None, 3),
    (64, 16, 16, 4, 4, "threshold", None, 4),  # SF = NF = mmv: neither stream rests
    (30, 11, 7, 2, 1, "raw", None, 3),
    (19, 7, 5, 2, 4, "raw", None, 2),
    (33, 12, 8, 4, 1, "threshold", "unsigned", 3),
    (29, 6, 9, 4, 1, "raw", "unsigned", 2),
    (12, 6, 4, 3, 8, "raw", None, 2),          # the widest input
]


@pytest.mark.parametrize("n, m, simd, pe, k, output, kind, mmv", MMV_CASES)
def test_mvu_mmv_matches_golden_with_gaps_and_stalls(n, m, simd, pe, k, output, kind, mmv):
    rng = np.random.default_rng(n * 1000 + m * 10 + k + 100 * mmv)
    layer = random_layer(rng, n, m, k, output, kind)
    check_layer(layer, simd, pe, batch=3 * mmv, seed=n + m + mmv, mmv=mmv)


# Serial output stage with MMV: mmv·P ≤ SF (mmv·P = SF included), one PE.
MMV_SERIAL_CASES = [
    (40, 12, 4, 2, 1, "threshold", None, 3),
    (40, 12, 4, 2, 1, "threshold", None, 4),   # walk 8 of 10 cycles
    (50, 9, 5, 3, 2, "raw", None, 3),          # walk 9 of 10
    (64, 32, 16, 2, 4, "threshold", None, 2),  # walk 4 = SF
    (45, 8, 5, 1, 4, "raw", "unsigned", 4),    # one PE
]


@pytest.mark.parametrize("ram_reg", [True, False])
@pytest.mark.parametrize("n, m, simd, pe, k, output, kind, mmv", MMV_SERIAL_CASES)
def test_mvu_mmv_serial_output_stage_matches_golden(n, m, simd, pe, k, output, kind, mmv,
                                                    ram_reg):
    rng = np.random.default_rng(n * 1000 + m * 10 + k + 100 * mmv + 7)
    layer = random_layer(rng, n, m, k, output, kind)
    check_layer(layer, simd, pe, batch=2 * mmv, seed=n + m + 1, output_stage="serial",
                ram_reg=ram_reg, mmv=mmv)


@pytest.mark.parametrize("output_stage", ["parallel", "serial"])
def test_mvu_mmv_smallest_buffer_and_heavy_stalls(output_stage):
    """The fewest columns the reorder buffer may have (NF: a group holds all of them before
    its first beat leaves), the iCE40 settings and an output stalled 80 % of the time,
    weights in SPRAM style: results depend on none of it."""
    rng = np.random.default_rng(17)
    layer = random_layer(rng, 26, 9, 4, "threshold")
    check_layer(layer, 4, 3, batch=6, seed=4, gap=0.5, stall=0.8, ram_reg=False,
                levels_per_stage=2, fifo_depth=3, mmv=2, output_stage=output_stage,
                ram_styles={"weights": "huge", "output": "block"})


@pytest.mark.parametrize("n, m, simd, pe, k, output, kind, mmv", [
    MMV_CASES[1], MMV_CASES[3], (24, 12, 4, 3, 1, "raw", None, 2)])
def test_mvu_output_slice_matches_golden_with_gaps_and_stalls(n, m, simd, pe, k, output, kind,
                                                              mmv):
    """The reorder buffer with its skid slice between the read and the image multiplexer:
    results depend on no gap or stall (the slice holds the whole column and the image)."""
    rng = np.random.default_rng(n + m + 5 * mmv)
    layer = random_layer(rng, n, m, k, output, kind)
    check_layer(layer, simd, pe, batch=3 * mmv, seed=n + mmv, gap=0.4, stall=0.6, mmv=mmv,
                output_slice=True)


def test_mvu_output_slices_are_a_cycle_each_on_every_beat():
    """Output always ready: with the slices every beat comes exactly OUTPUT_SLICES cycles
    after it would without (the cycles the pipeline's model adds, SkidSliceModel), group
    after group."""
    rng = np.random.default_rng(8)
    n, m, simd, pe, k, mmv = 32, 8, 8, 2, 1, 4
    layer = random_layer(rng, n, m, k, "threshold")
    x = random_layer_inputs(rng, layer, 3 * mmv)
    times = []
    for output_slice in (False, True):
        dut = MatrixVectorUnit(n, m, simd, pe, k, mmv=mmv, output_slice=output_slice)
        _, mon_o = run_engine(dut, pack_layer(layer, simd, pe), encode_mvu_input(x, dut.shape))
        got = decode_mvu_output(per_image(mon_o.payloads(), dut.shape.neuron_folds), dut.shape)
        np.testing.assert_array_equal(got, layer.forward(x)[1])
        times.append(np.array(mon_o.cycles()))
    assert OUTPUT_SLICES == 2 and (times[1] - times[0] == OUTPUT_SLICES).all()
    with pytest.raises(ValueError, match="output_slice"):
        MatrixVectorUnit(n, m, simd, pe, k, mmv=1, output_slice=True)


def group_beats(mon_o, shape, mmv):
    """Output beat cycles per group: ``[group][image][nf]``."""
    nf = shape.neuron_folds
    cycles = mon_o.cycles()
    per_group = mmv * nf
    return [[cycles[g + j * nf:g + (j + 1) * nf] for j in range(mmv)]
            for g in range(0, len(cycles), per_group)]


# (N, M, S, P, k, stage, mmv): SF = NF = mmv (both streams busy in every cycle), SF > mmv,
# mmv·P = SF for the serial stage.
MMV_TIMING = [
    (40, 12, 8, 4, 1, "parallel", 2),
    (40, 12, 8, 4, 1, "parallel", 3),
    (32, 8, 8, 2, 1, "parallel", 4),           # SF = NF = mmv
    (64, 32, 16, 4, 4, "parallel", 4),
    (50, 7, 16, 3, 2, "parallel:2", 3),        # two adder levels per stage
    (50, 7, 16, 3, 2, "parallel:2:noleaf", 3),  # ... and the first level unregistered
    (40, 12, 4, 2, 1, "serial", 3),
    (64, 32, 16, 2, 4, "serial", 2),           # the walk fills the fold
]


@pytest.mark.parametrize("ram_reg", [True, False])
@pytest.mark.parametrize("n, m, simd, pe, k, stage, mmv", MMV_TIMING)
def test_mvu_mmv_beat_times_equal_the_cycle_model(n, m, simd, pe, k, stage, mmv, ram_reg):
    """Input always offered, output always ready: every output beat of the first group (an
    idle engine) comes exactly timing.mvu_output_offsets after the group's last input beat,
    and every later group's beats exactly mvu_cycles = SF·NF later than the previous
    group's, beat for beat."""
    options = dict(ram_reg=ram_reg, mmv=mmv, **_stage_options(stage))
    rng = np.random.default_rng(n + m + mmv)
    layer = random_layer(rng, n, m, k, "threshold")
    groups = 4
    x = random_layer_inputs(rng, layer, groups * mmv)
    dut = MatrixVectorUnit(n, m, simd, pe, k, **options)
    shape = dut.shape
    mon_i, mon_o = run_engine(dut, pack_layer(layer, simd, pe), encode_mvu_input(x, shape))
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])
    assert mon_o.valid_cycles == mon_o.cycles()       # ready was never low

    sf = shape.synapse_folds
    last_in = mon_i.cycles()[mmv * sf - 1]            # last input beat of the first group
    beats = group_beats(mon_o, shape, mmv)
    offsets = [[c - last_in for c in image] for image in beats[0]]
    assert offsets == mvu_output_offsets(n, m, simd, pe, k, **options)
    assert offsets[0][0] == mvu_latency(n, m, simd, pe, k, **options) == dut.latency
    assert offsets[-1][-1] == mvu_last_output_latency(n, m, simd, pe, k, **options)
    interval = mvu_cycles(n, m, simd, pe, k, mmv)
    for g in range(1, groups):
        assert (np.array(beats[g]) - np.array(beats[g - 1]) == interval).all(), g
    assert dut.cycles_per_group == interval and dut.cycles_per_image * mmv == interval


@pytest.mark.parametrize("n, m, simd, pe, k, stage, mmv", [
    (40, 12, 8, 4, 1, "parallel", 1), (40, 12, 8, 4, 1, "serial", 1),
    (40, 12, 8, 4, 1, "parallel", 2), (32, 8, 8, 2, 1, "parallel", 4),
    (40, 12, 4, 2, 1, "serial", 3)])
def test_mvu_beat_times_of_groups_arriving_early_and_late(n, m, simd, pe, k, stage, mmv):
    """Groups whose input comes back to back (they wait for the previous group) and groups
    whose input comes slowly (the engine waits for them), output always ready: every beat
    of every group at timing.mvu_output_cycles of the groups' last input beats."""
    rng = np.random.default_rng(23)
    layer = random_layer(rng, n, m, k, "threshold")
    gaps = [0.0, 0.9, 0.0, 0.0, 0.8, 0.3]
    x = random_layer_inputs(rng, layer, len(gaps) * mmv)
    dut = MatrixVectorUnit(n, m, simd, pe, k, output_stage=stage, mmv=mmv)
    shape = dut.shape
    beats = encode_mvu_input(x, shape)
    mon_i, mon_o = StreamMonitor(dut.i), StreamMonitor(dut.o)
    total = len(x) * shape.neuron_folds

    async def source(ctx):
        await load(ctx, dut.wr, pack_layer(layer, simd, pe))
        for g, gap in enumerate(gaps):
            group = beats[g * mmv:(g + 1) * mmv]
            await send(ctx, dut.i, [b for image in group for b in image], rng, gap)

    async def sink(ctx):
        await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= total)

    simulate(dut, [source, sink], [mon_i.testbench, mon_o.testbench])
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])
    group_in = mmv * shape.synapse_folds
    last_inputs = mon_i.cycles()[group_in - 1::group_in]
    want = mvu_output_cycles(last_inputs, n, m, simd, pe, k, output_stage=stage, mmv=mmv)
    assert group_beats(mon_o, shape, mmv) == want
    # both regimes happened: a group that waited for the previous one, one the engine waited for
    period = mvu_cycles(n, m, simd, pe)
    starts = [g[0][0] for g in want]
    waits = [b - a == period for a, b in zip(starts, starts[1:])]
    assert any(waits) and not all(waits)


@pytest.mark.parametrize("n, m, simd, pe, k, stage, mmv", [
    (40, 12, 8, 4, 1, "parallel", 2), (32, 8, 8, 2, 1, "parallel", 4),
    (40, 12, 4, 2, 1, "serial", 3)])
def test_mvu_mmv_default_buffer_is_the_least_that_keeps_the_interval(n, m, simd, pe, k, stage,
                                                                     mmv):
    """One column fewer than timing.mvu_fifo_depth and a fold waits for a credit although
    the output is always ready: the default is exact, not generous."""
    rng = np.random.default_rng(19)
    layer = random_layer(rng, n, m, k, "threshold")
    x = random_layer_inputs(rng, layer, 4 * mmv)
    intervals = {}
    for less in (0, 1):
        depth = mvu_fifo_depth(n, m, simd, pe, k, output_stage=stage, mmv=mmv) - less
        dut = MatrixVectorUnit(n, m, simd, pe, k, output_stage=stage, fifo_depth=depth, mmv=mmv)
        _, mon_o = run_engine(dut, pack_layer(layer, simd, pe),
                              encode_mvu_input(x, dut.shape))
        first = [group[0][0] for group in group_beats(mon_o, dut.shape, mmv)]
        intervals[less] = np.diff(first).tolist()
    assert intervals[0] == [mvu_cycles(n, m, simd, pe)] * 3
    assert max(intervals[1]) > mvu_cycles(n, m, simd, pe)


def test_mvu_mmv_stalled_output_holds_back_without_losing_a_beat():
    """``o`` not ready for a long time with mmv = 2: the reorder buffer fills, folds stop
    (no credit), and everything resumes; the payload stays stable while valid and not
    ready."""
    rng = np.random.default_rng(6)
    layer = random_layer(rng, 32, 12, 1, "raw")
    x = random_layer_inputs(rng, layer, 6)
    dut = MatrixVectorUnit(32, 12, 8, 2, output="raw", mmv=2)
    shape = dut.shape
    mon_o = StreamMonitor(dut.o)
    held = []
    total = len(x) * shape.neuron_folds

    async def source(ctx):
        await load(ctx, dut.wr, pack_layer(layer, 8, 2))
        await send(ctx, dut.i, [b for image in encode_mvu_input(x, shape) for b in image])

    async def sink(ctx):
        last = None
        for cycle in range(700):
            ready = cycle > 300 and cycle % 3 == 0
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, busy = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                 dut.busy)
            if last is not None:
                held.append(payload == last)
            last = payload if valid and not ready else None
            busy_stalled.append(busy and cycle <= 300)
        assert len(mon_o.beats) == total

    busy_stalled = []
    simulate(dut, [source, sink], [mon_o.testbench])
    assert held and all(held)
    # while o is stalled exactly fifo_depth folds start (one column each), then none
    assert sum(busy_stalled) == dut.fifo_depth * shape.synapse_folds \
        < len(x) // 2 * dut.cycles_per_group
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])


def test_mvu_mmv_partial_group_waits_for_its_last_image():
    """A group starts only with its m-th image (whole groups only): with one image of a
    group of 2 in, the engine stays idle and emits nothing; the second image completes the
    group and both results come out, image 0's first."""
    rng = np.random.default_rng(8)
    layer = random_layer(rng, 24, 10, 1, "threshold")
    x = random_layer_inputs(rng, layer, 2)
    dut = MatrixVectorUnit(24, 10, 8, 4, mmv=2)
    shape = dut.shape
    mon_o = StreamMonitor(dut.o)
    beats = encode_mvu_input(x, shape)
    busy_before = []

    async def source(ctx):
        await load(ctx, dut.wr, pack_layer(layer, 8, 4))
        await send(ctx, dut.i, beats[0])
        for _ in range(100):
            _, _, busy = await ctx.tick().sample(dut.busy)
            busy_before.append(busy)
        assert not mon_o.valid_cycles
        await send(ctx, dut.i, beats[1])

    async def sink(ctx):
        await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= 2 * shape.neuron_folds)

    simulate(dut, [source, sink], [mon_o.testbench])
    assert not any(busy_before)
    got = decode_mvu_output(per_image(mon_o.payloads(), shape.neuron_folds), shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])


def test_mvu_mmv_errors_name_the_bound():
    with rejected(), pytest.raises(ValueError, match="mmv must be a positive integer"):
        MatrixVectorUnit(16, 8, 4, 2, mmv=0)
    with rejected(), pytest.raises(ValueError, match="mmv must be a positive integer"):
        MatrixVectorUnit(16, 8, 4, 2, mmv=True)
    with rejected(), pytest.raises(ValueError, match="mmv 3 exceeds the 2 neuron folds"):
        MatrixVectorUnit(16, 8, 4, 4, mmv=3)
    with rejected(), pytest.raises(ValueError, match="mmv 3 exceeds the 2 synapse folds"):
        MatrixVectorUnit(16, 8, 8, 2, mmv=3)
    with rejected(), pytest.raises(ValueError, match="needs mmv·pe ≤"):
        MatrixVectorUnit(32, 8, 8, 2, output_stage="serial", mmv=3)
    with rejected(), pytest.raises(ValueError, match="fifo_depth 3 is below the 4 neuron folds"):
        MatrixVectorUnit(32, 8, 8, 2, fifo_depth=3, mmv=2)
    with rejected(), pytest.raises(ValueError, match="'output' is the reorder buffer"):
        MatrixVectorUnit(32, 8, 8, 2, ram_styles={"output": "block"})


@pytest.mark.parametrize("ram_reg", [False, True])
def test_mvu_each_pe_has_its_own_input_word_and_sideband_registers_with_ram_reg(ram_reg):
    """With ``ram_reg`` (ECP5) every PE takes its input word, ``last`` and ``clear`` from
    replica registers of its own (the synthesis script keeps them apart); without it (iCE40,
    a flip-flop a logic cell) the PEs share one set."""
    from amaranth.back import rtlil
    from xnorflow.hw.core.pipeline import REPLICA_MARK
    mvu = MatrixVectorUnit(32, 12, 8, 3, ram_reg=ram_reg)
    text = rtlil.convert(mvu, name="mvu")
    for p in range(3):
        for name in (f"x{p}_late", f"done{p}", f"valid{p}"):
            assert (f"\\{name}{REPLICA_MARK}" in text) == ram_reg, name


def test_weight_chunks_are_whole_block_ram_columns_of_at_most_four_blocks():
    """Chunks of at most four block RAMs over all banks, in whole columns of the depth's
    configuration, so as many blocks as unsplit: the SFC's first layer (196 × 128 words, six
    512 × 36 blocks) is four and two; the CNV's conv 4 (384 × 96) four, four and three; its
    dense layer 6272 → 256 on one PE (196 × 8,192: four banks of 2,048 × 9) one column of each
    bank a chunk."""
    from xnorflow.hw.dataflow.mvu import weight_chunk_widths
    assert weight_chunk_widths(196, 128) == [144, 52]
    assert weight_chunk_widths(128, 64) == [128]
    assert weight_chunk_widths(384, 96) == [144, 144, 96]
    assert weight_chunk_widths(500, 1024) == [72] * 6 + [68]
    assert weight_chunk_widths(196, 8192) == [9] * 21 + [7]
    assert weight_chunk_widths(392, 4096) == [18] * 21 + [14]
    assert weight_chunk_widths(5, 100_000) == [5]
    # LUT RAM (the CNV's conv 2: 192 bits × 12 words a PE): 16 DPR16X4 a chunk
    assert weight_chunk_widths(192, 12, lut_ram=True) == [64] * 3
    assert weight_chunk_widths(9, 8, lut_ram=True) == [9]


def test_mvu_split_weight_memory_matches_golden(monkeypatch):
    """Weight memories split into column chunks of their own registers (here a 36-bit and a
    12-bit block-RAM chunk or 8-bit LUT-RAM chunks of a 48-bit word, by shrinking the chunks'
    budgets) load and compute as one memory."""
    from xnorflow.hw.dataflow import mvu as mvu_module
    monkeypatch.setattr(mvu_module, "WEIGHT_CHUNK_BRAMS", 1)
    assert mvu_module.weight_chunk_widths(48, 9) == [36, 12]
    monkeypatch.setattr(mvu_module, "LUT_WEIGHT_CHUNK_BITS", 8)
    assert mvu_module.weight_chunk_widths(48, 9, lut_ram=True) == [8] * 6
    rng = np.random.default_rng(5)
    layer = random_layer(rng, 120, 6, 4, "threshold")     # S = 48, SF = 3, NF = 3: 9 words
    from amaranth.back import rtlil
    from xnorflow.hw.core.pipeline import REPLICA_MARK
    for style in ("block", None):                         # None: 9 words, pinned LUT RAM
        styles = {"weights": style} if style else None
        check_layer(layer, 48, 2, batch=3, seed=6, gap=0.3, stall=0.3, ram_reg=True,
                    ram_styles=styles)
        dut = MatrixVectorUnit(120, 6, 48, 2, input_bits=4, ram_reg=True, ram_styles=styles)
        assert dut.lut_weights == (style is None)
        text = rtlil.convert(dut, name="mvu")
        for c in range(2):   # each chunk's own registers, kept apart by the synthesis script
            for name in (f"w0_{c}_addr", f"weights0_{c}_wr_en", f"weights0_{c}_wr_addr"):
                assert f"\\{name}{REPLICA_MARK}" in text, name
            # one write-data register per group of PEs, between the stage and the memories',
            # and one first read-address register (the chunks' own come second)
            assert f"\\group0_wr_data{REPLICA_MARK}" in text
            assert f"\\group0_rd_addr{REPLICA_MARK}" in text
            assert f"\\w0_{c}_addr_early{REPLICA_MARK}" not in text
        # the whole word's register by the PE, after the chunks' read registers
        assert re.search(r"wire width \d+ \\w0\n", text)


@pytest.mark.parametrize("mmv", [1, 2])
def test_mvu_banked_weight_memory_matches_golden_at_the_same_latency(monkeypatch, mmv):
    """A block-RAM weight memory deeper than a bank (here banks of 4 words, by shrinking
    ``WEIGHT_BANK_WORDS``: 25 words are six full banks and one of one word) is written bank
    by bank, read through a near register per bank and a multiplexer after them, and
    computes as one memory with gaps and stalls; unstalled, its first result comes at the
    cycle model's latency, the unbanked one."""
    from amaranth.back import rtlil
    from xnorflow.hw.core.pipeline import REPLICA_MARK
    from xnorflow.hw.dataflow import mvu as mvu_module
    monkeypatch.setattr(mvu_module, "WEIGHT_BANK_WORDS", 4)
    rng = np.random.default_rng(11 + mmv)
    layer = random_layer(rng, 40, 10, 4, "threshold")     # S = 8, P = 2: SF = 5, NF = 5
    options = dict(ram_reg=True, ram_styles={"weights": "block"}, mmv=mmv)
    check_layer(layer, 8, 2, batch=2 * mmv, seed=12, gap=0.3, stall=0.3, **options)

    dut = MatrixVectorUnit(40, 10, 8, 2, input_bits=4, **options)
    assert dut.shape.weight_depth == 25 and not dut.lut_weights
    text = rtlil.convert(dut, name="mvu")
    for p in range(2):
        assert [b for b in range(8) if f"\\weights{p}_b{b}_near" in text] == list(range(7))
        assert f"\\w{p}_near" not in text     # the one register after the whole word is gone
        # the banks' write addresses from a first register of their chunk's own (the PE's
        # first register then serves its channel memory only)
        assert f"\\weights{p}_wr_addr_early{REPLICA_MARK}" in text
    x = random_layer_inputs(rng, layer, mmv)
    mon_i, mon_o = run_engine(dut, pack_layer(layer, 8, 2), encode_mvu_input(x, dut.shape))
    got = decode_mvu_output(per_image(mon_o.payloads(), dut.shape.neuron_folds), dut.shape)
    np.testing.assert_array_equal(got, layer.forward(x)[1])
    first = mon_o.cycles()[0] - mon_i.cycles()[mmv * dut.shape.synapse_folds - 1]
    assert first == mvu_latency(40, 10, 8, 2, 4, mmv=mmv, weight_style="block")
