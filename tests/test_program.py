"""sw/program.py and the hardware side of DenseLayer: config strings, images, errors, cycles."""
import numpy as np
import pytest

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.sw import bits as B
from xnorflow.sw.layers.dense import DenseLayer
from xnorflow.sw.program import ProgramError, build_program, decode_outputs, encode_inputs, \
    max_batch, predict_cycles


def dense(name, n, m, kind="binary", k=1, output="threshold", rng=None):
    rng = rng or np.random.default_rng(0)
    layer = DenseLayer(name=name, in_features=n, out_features=m, input_kind=kind,
                       input_bits=k, weights=B.pack_bits(rng.integers(0, 2, (m, n))),
                       output=output)
    if output == "threshold":
        layer.threshold = rng.integers(-n, n, m).astype(np.int32)
        layer.direction = rng.choice([-1, 1], m).astype(np.int8)
    return layer


def test_config_string_round_trip():
    assert ArrayConfig.parse("8x8x32") == ArrayConfig()
    assert ArrayConfig().format() == "8x8x32"
    c = ArrayConfig.parse("4x2x16,w_depth=256,acc_width=20")
    assert (c.P, c.Q, c.K, c.w_depth, c.acc_width) == (4, 2, 16, 256, 20)
    assert ArrayConfig.parse(c.format()) == c
    for bad in ["8x8", "3x8x32", "8x8x12", "16x8x8", "8x8x32,foo=1", ""]:
        with pytest.raises(ValueError):
            ArrayConfig.parse(bad)


def test_256_wide_dense_layer_keeps_the_array_busy():
    """Throughput target: a 256→256 binary layer on the default array is ≥ 90 % busy."""
    cfg = ArrayConfig()
    layer = dense("fc", 256, 256)
    # 32 tiles of 8 words, back to back, plus 1 descriptor cycle and the 19-cycle drain.
    assert layer.overlay_cycles(cfg, 8) == 1 + 31 * 8 + 8 + cfg.write_delay == 276
    assert layer.overlay_utilisation(cfg, 8) >= 0.90
    assert layer.overlay_utilisation(cfg, 64) >= 0.98


def test_images_follow_the_address_map():
    cfg = ArrayConfig.parse("2x2x8")
    rng = np.random.default_rng(1)
    layer = dense("fc", 11, 3, rng=rng)                # 2 words, 2 tiles (one padded channel)
    img = layer.overlay_weight_image(cfg)
    assert len(img) == 2 * 2 * 2 * 1
    bits = B.unpack_bits(layer.weights, 11)
    # word address a = t·in_words + w, then row bank i: byte (a·P + i)
    for t in range(2):
        for w in range(2):
            for i in range(2):
                c = t * 2 + i
                want = B.pack_bits(bits[c], 8)[w] if c < 3 else 0
                assert img[(t * 2 + w) * 2 + i] == want
    thr = np.frombuffer(layer.overlay_threshold_image(cfg), "<u4")
    assert len(thr) == 4
    for c in range(3):
        value = np.int64(thr[c] & 0xFFFFFF) - ((thr[c] >> 23 & 1) << 24)
        lo, hi = layer.acc_range()
        assert value == np.clip(layer.threshold[c], lo - 1, hi + 1)
        assert bool(thr[c] >> 31) == (layer.direction[c] < 0)


def test_inputs_and_outputs_layout():
    cfg = ArrayConfig.parse("2x2x8")
    x = np.arange(3 * 9, dtype=np.uint8).reshape(3, 9) % 8
    [(addr, data)] = encode_inputs(x, 3, cfg)
    assert addr == mm.IN_BASE
    # 2 groups × (2 words × 3 planes) × 2 columns × 1 byte
    assert len(data) == 2 * 6 * 2
    # sample 2 = group 1, column 0; plane 1 (q = 3 − 1 − 1 = 1, planes most significant
    # first) of word 1 (element 8) at address 1·6 + 1·2 + 1
    a = 6 + 2 + 1
    assert data[a * 2 + 0] == ((x[2, 8] >> 1) & 1)
    last = dense("out", 4, 3, output="raw")
    vals = np.arange(2 * 2 * 2 * 2, dtype="<i4") - 5     # g, t, j, i
    got = decode_outputs(vals.tobytes(), [last], cfg, 3)
    # sample b = g·Q + j, channel c = t·P + i
    assert got[2, 1] == vals[((1 * 2 + 0) * 2 + 0) * 2 + 1]
    assert got.shape == (3, 3)


def test_program_errors_name_the_layer():
    cfg = ArrayConfig.parse("2x2x8,w_depth=8,thr_depth=4")
    ok = [dense("in", 8, 4, "unsigned", 8), dense("h", 4, 4), dense("out", 4, 2, output="raw")]
    writes = build_program(ok, cfg)
    assert writes[0][0] == mm.DESC_BASE
    assert mm.decode_descriptor(writes[0][1])["op"] == mm.OP_DENSE | mm.FLAG_UNSIGNED
    big = [dense("in", 8, 4, "unsigned", 8), dense("huge", 4, 40),
           dense("out", 40, 2, output="raw")]
    with pytest.raises(ProgramError, match=r"'huge'.*w_depth=8"):
        build_program(big, cfg)
    with pytest.raises(ProgramError, match=r"'h'.*raw output"):
        build_program(ok[:2], cfg)
    with pytest.raises(ProgramError, match=r"'in'.*acc_width"):
        build_program([dense("in", 2000, 2, "unsigned", 8, output="raw")],
                      cfg.replace(acc_width=16, w_depth=4096))
    with pytest.raises(ProgramError, match=r"'h'.*needs 5 inputs"):
        build_program([ok[0], dense("h", 5, 4), ok[2]], cfg)
    assert max_batch(ok, cfg) >= cfg.Q
    cycles = predict_cycles(ok, cfg, 5)
    assert cycles["total"] == sum(cycles["by_layer"].values())
    assert list(cycles["by_layer"]) == ["in", "h", "out"]


def test_digits_mlp_fits_the_icebreaker_default():
    """64-256-256-10 with 4-bit inputs (the digits MLP) loads on the iCEBreaker's default
    build: 1328 weight words per row bank at P = 4 (2640 at P = 2), in SPRAM-sized
    (w_depth ≥ 4096) banks."""
    from xnorflow.sw.synth import BOARD_DEFAULT_ARRAY
    config = ArrayConfig.parse(BOARD_DEFAULT_ARRAY["icebreaker"])
    rng = np.random.default_rng(64)
    layers = [dense("fc0", 64, 256, kind="unsigned", k=4, rng=rng),
              dense("fc1", 256, 256, rng=rng), dense("fc2", 256, 10, output="raw", rng=rng)]
    words = sum(layer.overlay_memory(config).weight_words for layer in layers)
    assert words == {4: 1328, 2: 2640}.get(config.P, words) <= config.w_depth
    assert config.w_huge
    build_program(layers, config)
    assert max_batch(layers, config) >= config.Q
