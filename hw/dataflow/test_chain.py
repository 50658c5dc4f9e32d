"""Three engines chained by streams (the digits MLP 64 (4-bit) → 256 → 256 → 10 raw, small
folds) equal the golden model image for image, with gaps on the input and stalls on the
output; with neither, images leave one slowest-engine interval apart. With MMV on the middle
engine (two images per weight read, half the PEs of the same rate) likewise, the images
leaving in pairs."""
import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from xnorflow.hw.dataflow.convert import WidthConverter
from xnorflow.hw.dataflow.mvu import MatrixVectorUnit
from xnorflow.hw.dataflow.testing import StreamMonitor, drive_ready, load, send, simulate
from xnorflow.hw.dataflow.timing import mvu_cycles
from xnorflow.sw import bits as B
from xnorflow.sw.layers.dataflow_pack import (decode_mvu_output, encode_mvu_input, mvu_shape,
                                     pack_layer)
from xnorflow.sw.random_models import random_inputs, random_model

# (simd, pe) per layer of 64-256-256-10: cycles per image 4·64, 8·32, 16·5 = 256, 256, 80
FOLDS = [(16, 4), (32, 8), (16, 2)]
# the middle engine with mmv = 2: 16·32 = 512 cycles per group of two, 256 per image, with
# half the weight bits per cycle of FOLDS' (16·8 instead of 32·8)
MMV_FOLDS = [(16, 4), (16, 8), (16, 2)]
MMV_OPTIONS = [{}, {"mmv": 2}, {}]
SIZES = [64, 256, 256, 10]


class Chain(wiring.Component):
    """Engines in a row: engine → FIFO → width converter → next engine (test fixture; the
    pipeline top with its host-link adapter is built on the same parts)."""

    def __init__(self, model, folds, fifo_depth=8, engine_options=None, **options):
        engine_options = engine_options or [{}] * len(folds)
        self.engines = [MatrixVectorUnit(layer.in_features, layer.out_features, s, p,
                                         layer.input_bits, layer.output,
                                         input_kind=layer.input_kind, **options, **extra)
                        for layer, (s, p), extra in zip(model.layers, folds, engine_options)]
        self.fifo_depth = fifo_depth
        first, last = self.engines[0].shape, self.engines[-1].shape
        super().__init__({"i": In(stream.Signature(first.in_beat_bits)),
                          "o": Out(stream.Signature(last.out_beat_bits))})

    def elaborate(self, platform):
        m = Module()
        for n, engine in enumerate(self.engines):
            m.submodules[f"mvu{n}"] = engine
        wiring.connect(m, wiring.flipped(self.i), self.engines[0].i)
        for n, (a, b) in enumerate(zip(self.engines, self.engines[1:])):
            fifo = m.submodules[f"fifo{n}"] = SyncFIFOBuffered(width=a.shape.out_beat_bits,
                                                               depth=self.fifo_depth)
            conv = m.submodules[f"conv{n}"] = WidthConverter(1, a.shape.pe, b.shape.simd,
                                                             a.shape.n_out)
            wiring.connect(m, a.o, fifo.w_stream)
            wiring.connect(m, fifo.r_stream, conv.i)
            wiring.connect(m, conv.o, b.i)
        wiring.connect(m, self.engines[-1].o, wiring.flipped(self.o))
        return m


def informative_model(rng):
    """A random digits-shaped model whose hidden thresholds are sums the layers really
    produce for random inputs (uniform thresholds over ±N·(2^k − 1) would make most hidden
    bits constant), with one channel in ten left saturated (xnorflow.sw.random_models' corner cases)."""
    model = random_model(rng, SIZES, 4)
    h = random_inputs(rng, model, 16)
    for layer in model.layers:
        acc, out = layer.forward(h)
        if layer.output == "threshold":
            m = layer.out_features
            typical = rng.random(m) < 0.9
            picked = acc[rng.integers(0, len(acc), size=m), np.arange(m)]
            layer.threshold[typical] = picked[typical]
            _, out = layer.forward(h)
        h = out
    return model


def run_chain(model, x, rng, gap, stall, folds=FOLDS, engine_options=None, **options):
    dut = Chain(model, folds, engine_options=engine_options, **options)
    shapes = [e.shape for e in dut.engines]
    beats = [b for image in encode_mvu_input(x, shapes[0]) for b in image]
    mon_o = StreamMonitor(dut.o)
    total = len(x) * shapes[-1].neuron_folds

    def loader(engine, layer, simd, pe):
        async def tb(ctx):
            await load(ctx, engine.wr, pack_layer(layer, simd, pe))
        return tb

    async def source(ctx):
        # every engine is loaded before the first image arrives (loaders run in parallel,
        # one write every other cycle, and a write takes a few registers to its memory)
        longest = max(len(pack_layer(layer, s, p))
                      for layer, (s, p) in zip(model.layers, folds))
        await ctx.tick().repeat(2 * longest + 4)
        await send(ctx, dut.i, beats, rng, gap)

    async def sink(ctx):
        await drive_ready(ctx, dut.o, lambda: len(mon_o.beats) >= total, rng, stall)

    loaders = [loader(e, layer, s, p)
               for e, layer, (s, p) in zip(dut.engines, model.layers, folds)]
    simulate(dut, [*loaders, source, sink], [mon_o.testbench], name="chain")
    nf = shapes[-1].neuron_folds
    outs = mon_o.payloads()
    got = decode_mvu_output([outs[i:i + nf] for i in range(0, len(outs), nf)], shapes[-1])
    return got, mon_o


@pytest.mark.slow
@pytest.mark.parametrize("seed, options", [
    (1, {}),
    # the iCE40 build: no edge registers, one channel memory and compare per engine
    (2, {"ram_reg": False, "output_stage": "serial"}),
])
def test_digits_mlp_chain_equals_golden(seed, options):
    rng = np.random.default_rng(seed)
    model = informative_model(rng)
    x = random_inputs(rng, model, 4)
    got, _ = run_chain(model, x, rng, gap=0.3, stall=0.3, **options)
    want = model.forward(x)
    for layer, (_, out) in zip(model.layers, want[:-1]):
        bits = B.unpack_bits(out, layer.out_features)
        varying = (bits.min(axis=0) != bits.max(axis=0)).mean()
        assert varying > 0.3, f"{layer.name}: only {varying:.0%} of the bits vary"
    np.testing.assert_array_equal(got, want[-1][0])


@pytest.mark.slow
def test_digits_mlp_chain_runs_at_the_slowest_engines_interval():
    rng = np.random.default_rng(3)
    model = informative_model(rng)
    x = random_inputs(rng, model, 4)
    got, mon_o = run_chain(model, x, rng, gap=0.0, stall=0.0)
    np.testing.assert_array_equal(got, model.forward(x)[-1][0])
    shapes = [mvu_shape(layer, s, p) for layer, (s, p) in zip(model.layers, FOLDS)]
    interval = max(mvu_cycles(sh.n_in, sh.n_out, sh.simd, sh.pe) for sh in shapes)
    first = mon_o.cycles()[0::shapes[-1].neuron_folds]
    assert np.diff(first).tolist() == [interval] * (len(x) - 1)


@pytest.mark.slow
def test_digits_mlp_chain_with_mmv_equals_golden():
    rng = np.random.default_rng(4)
    model = informative_model(rng)
    x = random_inputs(rng, model, 4)
    got, _ = run_chain(model, x, rng, gap=0.3, stall=0.3, folds=MMV_FOLDS,
                       engine_options=MMV_OPTIONS)
    np.testing.assert_array_equal(got, model.forward(x)[-1][0])


@pytest.mark.slow
def test_digits_mlp_chain_with_mmv_leaves_in_pairs_at_the_group_interval():
    """The MMV engine makes a pair every 512 cycles (256 per image, as fast as the others
    with half their weight bits per MAC); the last engine computes the pair's images one
    after the other, its own interval apart."""
    rng = np.random.default_rng(5)
    model = informative_model(rng)
    x = random_inputs(rng, model, 6)
    got, mon_o = run_chain(model, x, rng, gap=0.0, stall=0.0, folds=MMV_FOLDS,
                           engine_options=MMV_OPTIONS)
    np.testing.assert_array_equal(got, model.forward(x)[-1][0])
    shapes = [mvu_shape(layer, s, p) for layer, (s, p) in zip(model.layers, MMV_FOLDS)]
    group = mvu_cycles(shapes[1].n_in, shapes[1].n_out, shapes[1].simd, shapes[1].pe, mmv=2)
    last = shapes[-1]
    first = np.array(mon_o.cycles()[0::last.neuron_folds])
    assert np.diff(first[0::2]).tolist() == [group] * (len(x) // 2 - 1) == [512, 512]
    assert (first[1::2] - first[0::2]).tolist() == \
        [mvu_cycles(last.n_in, last.n_out, last.simd, last.pe)] * (len(x) // 2)
