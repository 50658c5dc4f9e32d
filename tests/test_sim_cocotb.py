"""``xnorflow sim --engine cocotb``: trained weights through the cocotb bench
(``sim/cocotb/tb_model.py``): the project's driver over a cycle-level driver with random idle
gaps and a monitor with random backpressure, a scoreboard on every output integer and counter,
the same JSON as the other engines."""
import json
import subprocess
import sys

import numpy as np
import pytest

from xnf_testing import ROOT

# The build of tests/test_sim_trained.py: holds the 64-256-256-10 digits models, 16 images per
# run of the core (batches keep the bench's Python per cycle to the link traffic).
CONFIG = "4x4x16,w_depth=2048,thr_depth=128,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("method", ["irnet", "rbnn"])
def test_trained_model_on_the_cocotb_bench_is_bit_exact_on_the_whole_test_set(method,
                                                                             digits_models):
    ckpt, compiled = digits_models(method)
    proc = subprocess.run(
        [sys.executable, "-m", "xnorflow.cli", "sim", str(compiled), "--dataset", "digits",
         "--engine", "cocotb", "--array", CONFIG, "--checkpoint", str(ckpt), "--json"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["engine"] == "cocotb" and result["netlist"] is None
    assert result["images"] == 360 and result["batch"] == 16
    assert result["mismatches"] == 0 and result["mismatched_images"] == 0
    assert result["agree_with_torch"] == 1.0
    assert result["predicted_cycles_match"] is True
    assert set(result["cycles_by_layer"]) == {"fc0", "fc1", "fc2"}
    assert result["simulated_cycles"] > 360 * result["cycles_per_inference"]
    assert result["simulator_cpu_seconds"] is not None


@pytest.mark.slow
@pytest.mark.verilator
def test_the_bench_stalls_the_streams_and_still_gets_every_integer(digits_models):
    """The same images with and without random gaps and backpressure: the same integers, every
    one scoreboarded, and the stalls cost cycles (they really happened)."""
    from xnorflow.sim.cocotb_runner import run_model
    from xnorflow.sim.tops import accelerator_spec
    from xnorflow.sw import xnf
    from xnorflow.sw.evaluate import dataset_inputs
    model = xnf.load(digits_models("irnet")[1])
    x, _ = dataset_inputs(model, "digits", None, 20)
    runs = {}
    for gap in (0.0, 0.3):
        runs[gap] = run_model(accelerator_spec(CONFIG), model, x, device="xnorflow.sw.driver:OverlayDevice",
                              config=CONFIG, batch=16, gap=gap, backpressure=gap,
                              run_id=f"test-gaps-{gap}")
    (ints0, batches0, cycles0, checks0), (ints1, batches1, cycles1, checks1) = runs.values()
    golden = model.forward(x)[-1][0]
    assert np.array_equal(ints0, golden) and np.array_equal(ints1, golden)
    assert [b["batch"] for b in batches1] == [16, 4]  # 20 images: two runs of the core
    for checks in (checks0, checks1):
        assert checks["scoreboard"]["integers_checked"] == golden.size
        assert checks["scoreboard"]["mismatches"] == 0 and checks["link_errors"] == []
    assert cycles1 - cycles0 > 1000, (cycles0, cycles1)


def test_output_scoreboard_reports_every_wrong_integer_and_counter():
    from xnorflow.sim.cocotb.tb_model import OutputScoreboard
    from xnorflow.sw.random_models import random_inputs, random_model
    rng = np.random.default_rng(29)
    model = random_model(rng, [40, 24, 10], 4)
    x = random_inputs(rng, model, 8)
    good = model.forward(x)[-1][0]
    board = OutputScoreboard(model)
    board.check_run(0, x, good, {"total": 5, "predicted": {"total": 5}})
    assert board.summary()["mismatches"] == 0
    board.result()  # nothing to report
    bad = good.copy()
    bad[3, 7] += 1
    bad[5, 0] -= 2
    board.check_run(8, x, bad, {"total": 6, "by_layer": {"fc0": 1},
                                "predicted": {"total": 5, "by_layer": {"fc0": 1}}})
    summary = board.summary()
    assert summary["integers_checked"] == 2 * good.size and summary["mismatches"] == 2
    assert "image 11 class 7" in summary["errors"][0]
    assert "'total': (6, 5)" in summary["counter_errors"][0]
    with pytest.raises(AssertionError, match="scoreboard findings"):
        board.result()


@pytest.mark.parametrize("args, message", [
    (["--engine", "cocotb", "--waves", "{tmp}/run.vcd"], "the cocotb engine writes no waveform"),
    (["--engine", "cocotb", "--netlist", "ice40"], "netlists run on the Verilator harness"),
])
def test_cocotb_engine_refuses_what_it_cannot_do_by_name(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "xnorflow.cli", "sim", str(tmp_path / "none.xnf"),
                           "--dataset", "digits", *args], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# ---- per-engine streams of a dataflow build (issue #25, item 6) -------------------------------

# The digits MLP (64-256-256-10) folded into three engines: 64, 32 and 10 output beats per image.
DIGITS_FOLD = "df:64u4>256:16x4,256>256:32x8,256>10r:16x1"
DIGITS_BEATS = {"fc0": 64, "fc1": 32, "fc2": 10}
DATAFLOW_DEVICE = "xnorflow.sw.dataflow_driver:DataflowDevice"


def _conv_model_and_config(mmv=2):
    """The conv case of the brief (tests/test_dataflow_conv.py's "window" fold: a pooling conv,
    a conv, two dense engines), its third engine MMV so runs are padded to whole pairs."""
    from xnorflow.sw.dataflow_program import fold_for
    from xnorflow.sw.random_models import balanced_cnn_model
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(16, 36), dtype=np.uint8)
    model = balanced_cnn_model(rng, (6, 6, 1), [4, "pool", 8], [12, 5], 2, x)
    for layer in model.layers:
        # its saturated channels (T = bound ± 3) at the bound ± 1, the same bits, as the .xnf
        # file the bench loads requires
        if getattr(layer, "output", None) == "threshold":
            lo, hi = layer.acc_range()
            layer.threshold = np.clip(layer.threshold, lo - 1, hi + 1).astype(np.int32)
    return model, fold_for(model, [(9, 2), (12, 4), (8, 4, mmv), (4, 5)]), x


def _encode_engine_outputs(values, fold):
    """Test-side inverse of the bench's decoder: an engine's beats from its outputs
    (int [images, F]: bits, or raw integers), padding lanes 0 (hw/dataflow/shape.py)."""
    from xnorflow.sim.cocotb.tb_model import beats_per_image
    per, lanes = beats_per_image(fold), fold.pe
    width = fold.shape.acc_width if fold.output == "raw" else 1
    beats = []
    for image in values:
        lane_values = list(image) + [0] * (per * lanes - len(image))
        for k in range(per):
            beats.append(sum((int(v) & ((1 << width) - 1)) << (p * width)
                             for p, v in enumerate(lane_values[k * lanes:(k + 1) * lanes])))
    return beats


def _golden_beats(model, config, x):
    """Every engine's beats as a correct design makes them for images ``x``."""
    from xnorflow.sw.bits import unpack_bits
    from xnorflow.sw.dataflow_program import engine_layers
    outputs = model.forward(x)
    where = {id(layer): i for i, layer in enumerate(model.layers)}
    beats = []
    for (layer, pooled), fold in zip(engine_layers(model), config.engines):
        out = outputs[where[id(layer)] + pooled][1]
        values = out if fold.output == "raw" else unpack_bits(out, fold.out_features)
        beats.append(_encode_engine_outputs(np.asarray(values, dtype=np.int64), fold))
    return beats


def test_engine_decoder_reads_dense_beats_as_the_packer_does():
    """On dense engines the bench's decoder and sw/layers/dataflow_pack.py's agree (threshold
    bits with padding channels, raw integers of both signs)."""
    from xnorflow.hw.dataflow.config import EngineFold
    from xnorflow.sim.cocotb.tb_model import beats_per_image, decode_engine_beats
    from xnorflow.sw.bits import unpack_bits
    from xnorflow.sw.layers.dataflow_pack import decode_mvu_output
    rng = np.random.default_rng(3)
    for fold in (EngineFold(40, 13, 8, 4), EngineFold(40, 7, 8, 3, output="raw")):
        width = fold.shape.acc_width if fold.output == "raw" else 1
        per = beats_per_image(fold)
        assert per == fold.shape.neuron_folds
        beats = [int(v) for v in rng.integers(0, 1 << (fold.pe * width), size=3 * per)]
        ours = decode_engine_beats(beats, fold, 3)
        theirs = decode_mvu_output([beats[i * per:(i + 1) * per] for i in range(3)],
                                   fold.shape)
        if fold.output == "raw":
            assert (ours == theirs).all() and ours.min() < 0 <= ours.max()
        else:
            assert (ours == unpack_bits(theirs, fold.n_out)).all()


def test_engine_scoreboard_names_engine_layer_image_and_element():
    """A correct stream of every engine (conv maps pooled and not, dense, raw) passes; one bit
    flipped in the second conv's map, a beat missing from a dense engine and a wrong integer
    are each reported by engine, layer, image and element."""
    from xnorflow.sim.cocotb.tb_model import EngineScoreboard, beats_per_image
    model, config, x = _conv_model_and_config()
    x = x[:4]
    good = _golden_beats(model, config, x)
    board = EngineScoreboard(model, config)
    found = board.check_run(0, x, good)
    assert found["mismatches"] == {"conv0": 0, "conv2": 0, "fc0": 0, "fc1": 0}
    assert found["beats"] == {name: 4 * beats_per_image(fold)
                              for name, fold in zip(found["beats"], config.engines)}
    assert found["errors"] == [] and board.errors == []
    board.result()
    bad = [list(b) for b in good]
    # conv2's map is 3×3×8, 4 channels per beat: beat 2·18 + 5 of image 2 holds pixel 2
    # (y 0, x 2), channels 4..7; bit 1 is channel 5
    bad[1][2 * 18 + 5] ^= 1 << 1
    del bad[2][-1]
    bad[3][3] += 1      # fc1's raw integers: one beat per image, class 0 in the low bits
    found = board.check_run(4, x, bad)
    assert found["mismatches"]["conv0"] == 0 and found["mismatches"]["conv2"] == 1
    assert ("engine 1 (layer 'conv2'): 1 outputs differ from the golden model in 1 images; "
            "first: image 6 element 21 (pixel y=0 x=2, channel 5)") in found["errors"][0]
    assert "engine 2 (layer 'fc0'): images 4..7: 11 output beats, expected 12" \
        in found["errors"][1]
    assert "engine 3 (layer 'fc1')" in found["errors"][2] and "image 7 class 0" \
        in found["errors"][2]
    assert board.summary()["engine_beats"]["fc0"] == 8 * 3 - 1
    with pytest.raises(AssertionError, match="engine stream findings"):
        board.result()


def test_the_synthesized_dataflow_top_has_no_taps():
    """Taps are off by default: the factory's top is the accelerator sw/synth.py builds, the
    same Verilog; with taps, every engine's stream is three more ports and nothing else
    changes in the accelerator (it is a submodule of the tapped top)."""
    from amaranth.back import verilog
    from xnorflow.hw.dataflow.top import DataflowAccelerator, dataflow_top
    from xnorflow.sim.tops import accelerator_spec, dataflow_spec, engine_taps_spec
    config = "df:16>8:4x2,8>3r:4x3"
    plain = dataflow_top(config)
    assert type(plain) is DataflowAccelerator
    assert (verilog.convert(plain, name="top", emit_src=False)
            == verilog.convert(DataflowAccelerator(config), name="top", emit_src=False))
    tapped = dataflow_top(config, taps=True)
    assert set(tapped.signature.members) == {"i", "o", "engine0_o", "engine1_o"}
    text = verilog.convert(tapped, name="top", emit_src=False)
    header = text[text.index("module top("):].split(";")[0]
    for port in ("engine0_o__valid", "engine0_o__ready", "engine1_o__payload"):
        assert port in header
    assert "output [5:0] engine0_o__payload" not in text and "output [1:0] engine0_o__payload" \
        in text   # P = 2 threshold bits per beat
    # the cocotb bench builds the tapped top in a directory of its own; nothing else changes
    spec = dataflow_spec(config)
    assert engine_taps_spec(spec).kwargs == {**spec.kwargs, "taps": True}
    assert engine_taps_spec(spec).name != spec.name and "taps" not in spec.kwargs
    assert engine_taps_spec(accelerator_spec("4x4x16")) == accelerator_spec("4x4x16")


@pytest.mark.slow
@pytest.mark.verilator
def test_every_engine_stream_of_the_digits_mlp_matches_the_golden_model(digits_models):
    """`xnorflow sim --engine cocotb --arch dataflow`: the monitors see every beat of every
    engine (images × beats per image) and each layer's outputs equal the golden model's."""
    _, compiled = digits_models("irnet")
    proc = subprocess.run(
        [sys.executable, "-m", "xnorflow.cli", "sim", str(compiled), "--dataset", "digits",
         "--engine", "cocotb", "--arch", "dataflow", "--fold", DIGITS_FOLD, "--limit", "20",
         "--batch", "8", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["engine"] == "cocotb" and result["arch"] == "dataflow"
    assert result["mismatches"] == 0 and result["predicted_cycles_match"] is True
    assert result["engine_beats"] == {name: 20 * n for name, n in DIGITS_BEATS.items()}
    assert result["engine_mismatches"] == {"fc0": 0, "fc1": 0, "fc2": 0}
    assert result["engine_errors"] == []


@pytest.mark.slow
@pytest.mark.verilator
def test_a_wrong_golden_for_one_layer_is_reported_by_engine_layer_and_image(digits_models):
    """The scoreboard compares the streams with a copy of the model whose fc1 channel 3 has
    the opposite direction: fc0 still matches, fc1's first wrong bit is named (engine, layer,
    image, channel), while the final integers (checked against the real model) all match."""
    from xnorflow.sim.cocotb_runner import run_model
    from xnorflow.sim.tops import dataflow_spec
    from xnorflow.sw import xnf
    from xnorflow.sw.bits import unpack_bits
    from xnorflow.sw.evaluate import dataset_inputs
    model = xnf.load(digits_models("irnet")[1])
    x, _ = dataset_inputs(model, "digits", None, 12)
    wrong = xnf.from_bytes(xnf.to_bytes(model))
    wrong.layers[1].direction[3] *= -1
    right_bits = unpack_bits(model.forward(x)[1][1], 256)
    wrong_bits = unpack_bits(wrong.forward(x)[1][1], 256)
    image, channel = np.argwhere(right_bits != wrong_bits)[0]
    ints, _, _, checks = run_model(dataflow_spec(DIGITS_FOLD), model, x, device=DATAFLOW_DEVICE,
                                   config=DIGITS_FOLD, batch=12, gap=0.1, backpressure=0.1,
                                   run_id="test-wrong-golden", reference=wrong)
    assert np.array_equal(ints, model.forward(x)[-1][0])
    assert checks["scoreboard"]["mismatches"] == 0
    engines = checks["engines"]
    assert engines["engine_beats"] == {name: 12 * n for name, n in DIGITS_BEATS.items()}
    assert engines["engine_mismatches"]["fc0"] == 0
    assert engines["engine_mismatches"]["fc1"] == int((right_bits != wrong_bits).sum()) > 0
    assert engines["engine_errors"][0].startswith("engine 1 (layer 'fc1'): ")
    assert f"first: image {image} channel {channel}: design 1, golden 0" in \
        engines["engine_errors"][0] or \
        f"first: image {image} channel {channel}: design 0, golden 1" in \
        engines["engine_errors"][0]


@pytest.mark.slow
@pytest.mark.verilator
def test_conv_engine_streams_pooled_and_not_match_the_golden_model():
    """A conv model (a pooling conv, a conv, an MMV dense engine, the raw last layer): every
    map in HWC order equals the golden model's; 5 images in runs of 3 are padded to whole MMV
    pairs (4 + 2 images) and the padding images' beats are checked too."""
    from xnorflow.sim.cocotb.tb_model import beats_per_image
    from xnorflow.sim.cocotb_runner import run_model
    from xnorflow.sim.tops import dataflow_spec
    model, config, x = _conv_model_and_config()
    x = x[:5]
    ints, batches, _, checks = run_model(dataflow_spec(config), model, x,
                                         device=DATAFLOW_DEVICE, config=config.format(),
                                         batch=3, run_id="test-conv-streams")
    assert np.array_equal(ints, model.forward(x)[-1][0])
    assert [b["batch"] for b in batches] == [4, 2]
    engines = checks["engines"]
    assert engines["engine_beats"] == {name: 6 * beats_per_image(fold) for name, fold in
                                       zip(("conv0", "conv2", "fc0", "fc1"), config.engines)}
    assert engines["engine_mismatches"] == {"conv0": 0, "conv2": 0, "fc0": 0, "fc1": 0}
    assert engines["engine_errors"] == []
    assert batches[0]["engines"]["beats"]["conv0"] == 4 * 18   # 3×3 pooled map, 2 ch per beat
