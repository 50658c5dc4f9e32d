"""PartialSumMVU (the input-first engine) against the golden model and its stream model.

Weights and channel words reach it only through its write port, packed by the same packer as
the output-first engine's (sw/layers/dataflow_pack.py); images stream in with random gaps,
the output stalls at random, and every output beat must equal the golden model's. The stream
model (hw/dataflow/timing.py, PsumMvuModel) must give every input and output handshake at
the simulated cycle.
"""
import numpy as np
import pytest

from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.hw.dataflow.psum_mvu import PartialSumMVU
from xnorflow.hw.dataflow.run_timing import run_cycles
from xnorflow.hw.dataflow.test_mvu import (per_image, random_layer, random_layer_inputs,
                                           run_engine, with_padding_garbage)
from xnorflow.hw.dataflow.test_stream_timing import check_model
from xnorflow.hw.dataflow.testing import rejected
from xnorflow.hw.dataflow.timing import (PsumMvuModel, SinkModel, SourceModel, connect_chain,
                                         psum_fifo_depth, psum_latency)
from xnorflow.sw.layers.dataflow_pack import decode_mvu_output, encode_mvu_input, pack_layer

#: The iCEBreaker's digits MLP fold (sw/fold.py's choice) and the same with layers 2 and 3
#: input-first.
ICE40 = ";ram_reg=0,in_word=16,levels=2,serial=1"
DIGITS_OUTPUT_FIRST = "df:64u4>256:16x4s,256>256:32x8,256>10r:16x1" + ICE40
DIGITS_OVERLAPPED = "df:64u4>256:16x4s,256>256:64x4i,256>10r:4x10i" + ICE40

# (N, M, S, P, k, output, input kind, options)
CASES = [
    (16, 8, 4, 2, 1, "threshold", None, {}),         # SF = 4, NF = 4
    (37, 13, 8, 4, 1, "threshold", None, {}),        # padding in inputs and channels
    (23, 9, 23, 3, 1, "threshold", None, {}),        # SF = 1: first and last pass at once
    (20, 5, 6, 5, 1, "threshold", None, {}),         # NF = 1: sums in registers
    (30, 11, 7, 2, 1, "raw", None, {}),
    (26, 10, 4, 10, 1, "raw", None, {}),             # NF = 1, raw (the digits last layer's kind)
    (64, 16, 16, 4, 4, "threshold", None, {}),       # the digits first layer, small M
    (27, 10, 8, 3, 4, "threshold", None, {"levels_per_stage": 2}),
    (33, 12, 16, 5, 1, "threshold", "unsigned", {}),  # a 1-bit unsigned first layer
    (40, 12, 8, 4, 1, "threshold", None, {"fifo_depth": 1}),   # one output credit
    (64, 16, 16, 4, 4, "threshold", None, {"ram_styles": {"weights": "huge"}}),  # SPRAM
    # NF = 1, the output beat held in the sums' registers: raw (the digits last layer's
    # kind) and threshold, SF = 1 (every pass first and last)
    (26, 10, 4, 10, 1, "raw", None, {"hold_output": True}),
    (20, 5, 6, 5, 1, "threshold", None, {"hold_output": True}),
    (12, 4, 12, 4, 1, "threshold", None, {"hold_output": True}),
]


@pytest.mark.parametrize("n, m, simd, pe, k, output, kind, options", CASES,
                         ids=[f"{c[0]}x{c[1]}_S{c[2]}P{c[3]}k{c[4]}_{c[5]}{c[7] or ''}"
                              for c in CASES])
def test_every_output_equals_the_golden_model(n, m, simd, pe, k, output, kind, options):
    rng = np.random.default_rng([n, m, simd, pe, k])
    layer = random_layer(rng, n, m, k, output, kind)
    x = random_layer_inputs(rng, layer, 6)
    dut = PartialSumMVU(n, m, simd, pe, k, output, input_kind=layer.input_kind, **options)
    s = dut.shape
    beats = with_padding_garbage(encode_mvu_input(x, s), s, rng)
    _, mon_o = run_engine(dut, pack_layer(layer, simd, pe), beats, rng, 0.3, 0.3, "psum_mvu")
    got = decode_mvu_output(per_image(mon_o.payloads(), s.neuron_folds), s)
    want = layer.forward(x)[1]
    assert len(np.unique(want, axis=0)) > 1, "the images must not all give the same output"
    np.testing.assert_array_equal(got, want)


def test_an_image_ends_nf_cycles_after_its_last_input_not_a_whole_interval():
    """Idle, ``o`` ready: the first output beat is valid psum_latency cycles after the last
    input beat is taken, the last NF − 1 after it; the output-first engine would take its
    whole SF·NF interval (here 4·16 = 64 cycles) after the last input."""
    rng = np.random.default_rng(3)
    layer = random_layer(rng, 64, 64, 1, "threshold")
    dut = PartialSumMVU(64, 64, 16, 4, 1, "threshold")
    s = dut.shape
    mon_i, mon_o = run_engine(dut, pack_layer(layer, 16, 4),
                              encode_mvu_input(random_layer_inputs(rng, layer, 1), s))
    last_in = mon_i.cycles()[-1]
    offsets = [c - last_in for c in mon_o.cycles()]
    latency = psum_latency(16, 1)
    assert offsets == list(range(latency, latency + s.neuron_folds))


@pytest.mark.parametrize("n, m, simd, pe, k, options, gap, stall", [
    (16, 12, 4, 2, 1, {}, 0.2, 0.5),
    (16, 12, 4, 2, 2, {}, 0.0, 0.8),                         # the output mostly stalls
    (16, 12, 4, 2, 1, {}, 0.8, 0.1),                         # the input mostly waits
    (16, 12, 4, 2, 1, {"fifo_depth": 1}, 0.0, 0.3),          # one credit
    (12, 5, 12, 5, 1, {}, 0.0, 0.5),                         # SF = NF = 1
    (24, 3, 4, 3, 1, {"levels_per_stage": 2}, 0.3, 0.3),     # NF = 1
    (8, 16, 8, 2, 1, {}, 0.1, 0.6),                          # SF = 1: every pass the last
    (24, 3, 4, 3, 1, {"hold_output": True}, 0.2, 0.5),       # the beat in the registers
    (6, 3, 6, 3, 1, {"hold_output": True}, 0.0, 0.3),        # ... and SF = 1
])
def test_stream_model_equals_the_hardware(n, m, simd, pe, k, options, gap, stall):
    rng = np.random.default_rng([n, m, simd, pe, k, int(10 * gap), int(10 * stall)])
    dut = PartialSumMVU(n, m, simd, pe, k, "threshold", **options)
    s, images = dut.shape, 4
    model = PsumMvuModel(s.synapse_folds, s.neuron_folds, dut.latency, dut.fifo_depth,
                         dut.holds_output)
    check_model(dut, model, images * s.synapse_folds, images * s.neuron_folds, rng, gap, stall)


@pytest.mark.parametrize("n, m, simd, pe, k", [(256, 256, 64, 4, 1), (256, 10, 4, 10, 1),
                                                (16, 12, 4, 2, 2), (12, 5, 12, 5, 1),
                                                (64, 256, 16, 4, 4)])
def test_the_default_fifo_never_delays_a_fold_while_o_is_ready(n, m, simd, pe, k):
    """psum_fifo_depth (fewer entries than a fold's credit cycles when NF is small) gives the
    same handshakes, images back to back and ``o`` always ready, as an unbounded FIFO."""
    latency = psum_latency(simd, k, 2)
    depth = psum_fifo_depth(n, m, simd, pe, k, 2)
    sf, nf = -(-n // simd), -(-m // pe)
    times = []
    for entries in (depth, 10 ** 9):
        model = PsumMvuModel(sf, nf, latency, entries)
        connect_chain([SourceModel(), model, SinkModel()])
        times.append([model.o.taken(b) for b in range(8 * nf)])
    assert times[0] == times[1]


def test_a_raw_unsigned_layer_is_refused_with_the_reason():
    with rejected(), pytest.raises(ValueError, match="raw output needs binary input"):
        PartialSumMVU(16, 4, 4, 2, 4, "raw")


def test_a_held_output_needs_one_neuron_fold():
    with rejected(), pytest.raises(ValueError, match="needs one neuron fold"):
        PartialSumMVU(16, 8, 4, 4, hold_output=True)


def test_the_pipeline_holds_a_last_layers_beat_only_where_its_interval_has_the_slack():
    """The digits fold's layer 3 (64 cycles an image behind a 256-cycle interval) keeps its
    beat in its registers; alone at the pipeline's rate it would not."""
    overlapped = DataflowConfig.parse(DIGITS_OVERLAPPED)
    assert overlapped.holds_output(overlapped.engines[2])
    assert not overlapped.holds_output(overlapped.engines[1])          # NF = 64
    tight = DataflowConfig.parse("df:64>4r:16x4i;ram_reg=0")           # 4 cycles an image
    assert not tight.holds_output(tight.engines[0])


def test_the_fold_text_names_the_loop_order_and_round_trips():
    cfg = DataflowConfig.parse(DIGITS_OVERLAPPED)
    assert [e.order for e in cfg.engines] == ["output", "input", "input"]
    assert DataflowConfig.parse(cfg.format()) == cfg
    assert cfg.to_json()["engines"][1]["order"] == "input"


@pytest.mark.parametrize("text, reason", [
    ("df:8x8x1>4:9x4i,256>10r:4x10;ram_reg=0", "is dense"),
    ("df:64>32:16x4m2i,32>10r:4x10;ram_reg=0", "one image at a time"),
    ("df:64u4>10r:16x2i;ram_reg=0", "raw output needs binary input"),
    ("df:64>32:16x4i,32>10r:4x10", "no ram_reg register stages"),
])
def test_an_input_first_engine_it_cannot_build_is_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        DataflowConfig.parse(text)


def test_overlapped_engines_halve_the_digits_mlp_latency_in_the_cycle_model():
    """The iCEBreaker digits fold, output-first: 725 cycles from START to the last integer;
    with layers 2 and 3 input-first (the cycle model the core's counters equal,
    tests/test_dataflow_core.py): 367, at the same 256-cycle interval. (726 and 368 while a
    converter gathered the input words into the first engine's beats.)"""
    before = run_cycles(DataflowConfig.parse(DIGITS_OUTPUT_FIRST), 16)
    after = run_cycles(DataflowConfig.parse(DIGITS_OVERLAPPED), 16)
    assert (before["latency"], before["interval"]) == (725, 256)
    assert (after["latency"], after["interval"]) == (367, 256)
