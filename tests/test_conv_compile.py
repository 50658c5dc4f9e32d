"""Conv and pool through the compiler, the .xnf file, the layer table and the capacity checks."""
import json

import numpy as np
import pytest

from xnorflow.sw import bits as B
from xnorflow.sw import xnf
from xnorflow.sw.compile import CompileError, check_fit, compile_layers, layer_scores
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.layer_table import format_table, layer_rows
from xnorflow.sw.program import ProgramError, build_program, predict_cycles
from xnorflow.sw.random_models import random_cnn_model, random_inputs


def _cnn(seed=0, k=3):
    rng = np.random.default_rng(seed)
    return random_cnn_model(rng, (7, 6, 2), [5, 4, "pool", 6, "pool"], [9, 4], k), rng


def test_xnf_round_trip_keeps_conv_and_pool(tmp_path):
    model, rng = _cnn()
    path = tmp_path / "cnn.xnf"
    xnf.save(model, path)
    back = xnf.load(path)
    assert [lyr.type for lyr in back.layers] == ["conv3x3", "conv3x3", "maxpool2x2", "conv3x3",
                                                  "maxpool2x2", "dense", "dense"]
    assert back.layers[3].height == 3 and back.layers[5].in_features == 1 * 1 * 6
    x = random_inputs(rng, model, 5)
    for (a0, o0), (a1, o1) in zip(model.forward(x), back.forward(x)):
        assert (a0 is None) == (a1 is None)
        if a0 is not None:
            np.testing.assert_array_equal(a0, a1)
        np.testing.assert_array_equal(o0, o1)
    np.testing.assert_array_equal(model.predict(x), back.predict(x))


def _bad(model, tmp_path, match):
    with pytest.raises(xnf.XnfError, match=match):
        xnf.save(model, tmp_path / "bad.xnf")


def test_xnf_refuses_inconsistent_conv_models(tmp_path):
    model, _ = _cnn()
    model.layers[2].direction = -model.layers[2].direction
    _bad(model, tmp_path, r"layer 'pool2', field 'direction'.*OR for \+1, AND for −1")
    model, _ = _cnn()
    model.layers[3].height = 4
    _bad(model, tmp_path, r"layer 'conv3'")
    model, _ = _cnn()
    model.layers[2].channels = 3
    model.layers[2].direction = model.layers[2].direction[:3]
    _bad(model, tmp_path, r"layer 'pool2'.*pools a 7×6×3 image")
    model, _ = _cnn()
    del model.layers[:2]
    _bad(model, tmp_path, r"layer 'pool2'")


def _deploy_dicts(rng, k):
    """Deploy-contract dicts of conv(1→4) → pool → dense(→3), with negative-direction channels."""
    def bn(m):
        return {"gamma": rng.normal(size=m) * np.where(rng.random(m) < 0.4, -1, 1),
                "beta": rng.normal(size=m), "mean": rng.normal(size=m) * 5,
                "var": rng.uniform(0.5, 4, size=m), "eps": 1e-5}
    conv = {"name": "conv0", "type": "conv3x3", "height": 5, "width": 5, "in_channels": 1,
            "out_channels": 4, "in_features": 25, "out_features": 100, "input_bits": k,
            "weight_sign": rng.choice([-1, 1], size=(4, 9)).astype(np.int8),
            "alpha": rng.uniform(-2, 2, 4), "bias": np.zeros(4), "bn": bn(4), "output": "threshold"}
    pool = {"name": "pool1", "type": "maxpool2x2", "height": 5, "width": 5, "channels": 4}
    fc = {"name": "fc2", "in_features": 16, "out_features": 3, "input_bits": 1,
          "weight_sign": rng.choice([-1, 1], size=(3, 16)).astype(np.int8),
          "alpha": np.ones(3), "bias": np.zeros(3), "bn": bn(3), "output": "raw"}
    return [conv, pool, fc]


def test_compiled_pool_equals_pooling_the_integers_before_batch_norm():
    rng = np.random.default_rng(3)
    k = 4
    dicts = _deploy_dicts(rng, k)
    model = compile_layers(dicts, k, 15.0)
    assert [lyr.type for lyr in model.layers] == ["conv3x3", "maxpool2x2", "dense"]
    assert (model.layers[0].direction < 0).any() and (model.layers[0].direction > 0).any()
    np.testing.assert_array_equal(model.layers[1].direction, model.layers[0].direction)
    x = rng.integers(0, 16, size=(200, 25))
    # The float64 model the way training computes it: conv, max-pool on the integer dot, BN, sign.
    w = dicts[0]["weight_sign"].astype(np.int64).reshape(4, 3, 3, 1)
    img = np.zeros((200, 7, 7), np.int64)
    img[:, 1:-1, 1:-1] = x.reshape(200, 5, 5)                        # unsigned padding: 0
    acc = np.zeros((200, 5, 5, 4), np.int64)
    for ky in range(3):
        for kx in range(3):
            acc += img[:, ky:ky + 5, kx:kx + 5, None] * w[:, ky, kx, 0]
    pooled = acc[:, :4, :4].reshape(200, 2, 2, 2, 2, 4).max(axis=(2, 4))
    bits = layer_scores(dicts[0], pooled) >= 0
    outs = model.forward(x.astype(np.uint8))
    np.testing.assert_array_equal(outs[0][0], acc.reshape(200, -1))
    np.testing.assert_array_equal(B.unpack_bits(outs[1][1], 16), bits.reshape(200, -1))
    h = np.where(bits.reshape(200, -1), 1, -1)
    np.testing.assert_array_equal(outs[2][0], h @ dicts[2]["weight_sign"].astype(np.int64).T)


def test_compiler_refuses_a_pool_without_a_conv_before_it():
    rng = np.random.default_rng(0)
    dicts = _deploy_dicts(rng, 2)
    with pytest.raises(CompileError, match="pool1.*must follow a conv3x3"):
        compile_layers([dicts[1], dicts[2]], 2, 3.0)
    dicts[0]["weight_sign"] = dicts[0]["weight_sign"][:, :8]
    with pytest.raises(CompileError, match=r"conv0.*weight_sign.*\[4, 9\]"):
        compile_layers(dicts, 2, 3.0)


def test_capacity_checks_refuse_conv_models_naming_the_layer():
    model, _ = _cnn()
    with pytest.raises(ProgramError, match=r"layer 'pool2'.*Q a multiple of 4") as e:
        build_program(model.layers, "2x2x16")
    assert isinstance(e.value, XnorflowError)
    with pytest.raises(CompileError, match="does not fit.*'pool2'.*Q a multiple of 4"):
        check_fit(model, "2x2x16")
    # 7x6 cannot pool evenly; a binary conv needs rows at least as wide as a group
    with pytest.raises(ProgramError, match=r"layer 'pool2'.*odd"):
        build_program(model.layers, "2x4x16")
    model, _ = _cnn()
    del model.layers[2:5]                        # conv0 → conv1 (7x6, binary) → dense
    model.layers[2].in_features = model.layers[1].out_features
    with pytest.raises(ProgramError, match=r"layer 'conv1'.*6 pixels wide.*width ≥ 8"):
        build_program(model.layers, "2x8x16")
    with pytest.raises(ProgramError, match=r"layer 'fc0'.*4 channels.*multiple of K=16"):
        build_program(model.layers, "2x4x16")
    with pytest.raises(ProgramError, match=r"layer 'conv0'.*act_depth=4"):
        build_program(model.layers, "2x4x16,act_depth=4")
    with pytest.raises(ProgramError, match=r"layer 'conv0'.*no conv datapath \(conv=0\)"):
        build_program(model.layers, "2x4x16,conv=0")


def test_layer_table_shows_conv_and_pool(tmp_path, capsys):
    model, _ = _cnn()
    rows = layer_rows(model, "2x2x16", batch=2)
    conv, pool = rows[1], rows[2]
    assert conv["shape"] == "7×6×5→7×6×4" and conv["threshold_bytes"] == 16
    assert conv["binary_macs"] == 7 * 6 * 45 * 4 and conv["acc_range"] == [-45, 45]
    assert pool["shape"] == "7×6×4→3×3×4" and pool["weight_bytes"] == 0
    assert pool["cycles"] == predict_cycles(model.layers, "2x2x16", 2)["by_layer"]["pool2"]
    text = format_table(model, rows)
    assert "OR/AND 2×2" in text and "0 cycles of its own" in text
    from xnorflow.cli import main
    path = tmp_path / "m.xnf"
    xnf.save(model, path)
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["type"] for r in doc["layers"]][:3] == ["conv3x3", "conv3x3", "maxpool2x2"]


def test_profile_counts_conv_macs_per_pixel_and_runs_one_image():
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.profile import profile_batch, profile_numbers
    model, _ = _cnn()
    from xnorflow.sw.program import max_batch
    cfg = ArrayConfig.parse("4x4x16")
    assert max_batch(model.layers, cfg) == 1
    # this model's pool sees a 7x6 map, which the core does not pool: profile names that
    # instead of a batch it could never run
    with pytest.raises(XnorflowError, match="does not fit the 4x4x16 build: .*7x6 is odd"):
        profile_batch(model, cfg)
    out = profile_numbers(model, cfg, predict_cycles(model.layers, cfg, 1), 1, 50.0)
    conv = out["layers"][1]
    assert conv["binary_macs"] == 7 * 6 * 9 * 5 * 4 and out["layers"][2]["binary_macs"] == 0
    assert 0 < out["utilization"] < 1 and out["inferences_per_second"] > 0
