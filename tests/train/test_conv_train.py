"""Binary CNNs (sw/train/conv.py): what trains is exactly what compiles.

Tiny CNNs on a few hundred 8×8 digits (1-channel images), a few steps per method, then
deploy → compile → golden model: every integer, every hidden bit (the pooled ones included)
and every prediction must equal PyTorch's eval forward.
"""
import json

import numpy as np
import pytest
import torch

from xnorflow.sw import bits as B
from xnorflow.sw.compile import compile_checkpoint, compile_layers
from xnorflow.sw.data import Dataset, quantize_inputs
from xnorflow.sw.evaluate import compare_with_torch
from xnorflow.sw.layers.conv import ConvLayer
from xnorflow.sw.train import methods
from xnorflow.sw.train.checkpoint import load_checkpoint, save_checkpoint
from xnorflow.sw.train.conv import (CNV_STACK, BinaryCNN, BinaryConv2d, cnn_arch, pad_value,
                           parse_arch)
from xnorflow.sw.train.models import NotDeployableError, build_model

STACK = [6, "pool", 8, 8, "pool"]


@pytest.fixture(scope="module")
def small(digits):
    """300 training and 120 test digits (8×8×1)."""
    return Dataset("digits", digits.x_train[:300], digits.y_train[:300], digits.x_test[:120],
                   digits.y_test[:120], 16, 10, image_shape=(8, 8, 1))


def _train(method, small, epochs=2, stack=STACK):
    return methods.train(method, "digits", hidden=[16], epochs=epochs, progress=False, ds=small,
                         method_overrides={"arch": cnn_arch(stack, (8, 8, 1))})


@pytest.mark.parametrize("binary,k", [(True, 1), (False, 4)])
def test_torch_conv_equals_the_golden_conv_padding_included(binary, k):
    rng = np.random.default_rng(k)
    cin, cout, h, w = 3, 5, 5, 7
    layer = BinaryConv2d(cin, cout, lambda wt: None, pad_value(binary, k))
    wq = torch.from_numpy(rng.choice([-1.0, 1.0], size=(cout, cin * 9)).astype(np.float32))
    if binary:
        x = rng.choice([-1.0, 1.0], size=(2, h, w, cin))
        golden_in = B.pack_bits(x.reshape(2, -1) > 0)
    else:
        x = rng.integers(0, 1 << k, size=(2, h, w, cin)).astype(np.float64)
        golden_in = x.reshape(2, -1).astype(np.uint8)
    dot = layer.dot(torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2), wq)
    taps = wq.numpy().reshape(cout, cin, 3, 3).transpose(0, 2, 3, 1).reshape(cout, -1)
    golden = ConvLayer("c", h, w, cin, cout, "binary" if binary else "unsigned", k,
                       B.pack_bits(taps > 0))
    np.testing.assert_array_equal(dot.permute(0, 2, 3, 1).reshape(2, -1).numpy(),
                                  golden.dot(golden_in))


@pytest.mark.parametrize("method", ["irnet", "rbnn", "sbn", "ste", "bwnh"])
def test_trained_cnn_compiles_to_a_bit_exact_golden_model(method, small):
    torch.manual_seed(0)
    model, meta, metrics = _train(method, small)
    assert isinstance(model, BinaryCNN) and metrics["deployable"], metrics["not_deployable_reason"]
    compiled = compile_layers(model.deploy_layers(), meta["input_bits"], meta["max_value"])
    assert [lyr.type for lyr in compiled.layers] == ["conv3x3", "maxpool2x2", "conv3x3", "conv3x3",
                                                     "maxpool2x2", "dense", "dense"]
    x = quantize_inputs(small.x_test, meta["input_bits"], small.max_value)
    result = compare_with_torch(compiled, model, x)
    assert result["agree_with_torch"] == 1.0
    assert result["integers_equal"] and result["hidden_bits_equal"] and result["scores_equal"]
    assert all(e.get("bit_mismatches", 0) == 0 for e in result["layers"])


def test_fp_cnn_trains_and_is_refused_by_the_compiler(small):
    model, _, metrics = _train("fp", small, epochs=1)
    assert not metrics["deployable"] and "layer conv0" in metrics["not_deployable_reason"]
    with pytest.raises(NotDeployableError, match="conv0.*full-precision"):
        model.deploy_layers()


def test_checkpoint_rebuilds_the_cnn_and_compile_reads_it(small, tmp_path):
    model, meta, _ = _train("irnet", small, epochs=1)
    path = tmp_path / "model.pt"
    save_checkpoint(str(path), model, meta)
    back, meta2 = load_checkpoint(str(path))
    assert isinstance(back, BinaryCNN) and meta2["method_config"]["arch"]["conv"] == STACK
    compiled, torch_model, _ = compile_checkpoint(str(path))
    assert compiled.meta["arch"]["image"] == [8, 8, 1]
    x = quantize_inputs(small.x_test, meta["input_bits"], small.max_value)
    want = model.eval()(torch.from_numpy(x.astype(np.float32))).argmax(1).numpy()
    np.testing.assert_array_equal(compiled.predict(x), want)


def test_cnn_learns_digits(digits):
    """A sanity figure, not a target: IR-Net CNN, 6 epochs on the full 8×8 digits split."""
    torch.manual_seed(0)
    _, _, metrics = methods.train("irnet", "digits", hidden=[32], epochs=6, progress=False, ds=digits,
                                  method_overrides={"arch": cnn_arch([16, "pool", 32, "pool"], (8, 8, 1))})
    assert metrics["test_accuracy"] > 0.8, metrics["test_accuracy"]


def test_quantizers_see_the_conv_weight_as_filters():
    cfg = dict(methods.METHOD_CONFIGS["rbnn"], arch=cnn_arch([4, "pool"], (4, 4, 1)))
    model = build_model(16, [], 3, 2, cfg)
    conv = model.layers[0]
    assert conv.weight.shape == (4, 9) and conv.quantizer.n1 * conv.quantizer.n2 == 9
    cfg = dict(methods.METHOD_CONFIGS["rbnn"], arch=cnn_arch([4, 6], (4, 4, 2)))
    conv = build_model(32, [], 3, 2, cfg).layers[1]
    assert conv.weight.shape == (6, 36) and (conv.quantizer.n1, conv.quantizer.n2) == (6, 6)


def test_bwnh_hashes_a_bounded_sample_of_conv_patches():
    cfg = dict(methods.METHOD_CONFIGS["bwnh"], arch=cnn_arch([4, "pool", 6], (8, 8, 1)))
    model = build_model(64, [5], 3, 2, cfg)
    x = torch.randint(0, 4, (300, 64)).float()
    rows = model.hash_inputs(0, x, max_rows=500)
    assert rows.shape == (500, 9)                              # 8 images' patches, then 500 rows
    act = torch.ones(300, 4, 4, 4)
    assert model.hash_inputs(1, act, max_rows=100).shape == (100, 36)
    flat = model.hash_inputs(2, torch.arange(2 * 6 * 16.).reshape(2, 6, 4, 4))
    assert flat.shape == (2, 96) and flat[0, 1] == 16          # HWC: channel 1 of pixel 0
    assert methods.METHOD_CONFIGS["bwnh"]["hash_samples"] == 10000
    from xnorflow.sw.train.conv import CNN_HASH_SAMPLES, cnn_overrides
    assert cnn_overrides("bwnh", [4], (8, 8, 1))["hash_samples"] == CNN_HASH_SAMPLES
    assert "hash_samples" not in cnn_overrides("irnet", [4], (8, 8, 1))


def test_parse_arch():
    assert parse_arch("mlp") is None and parse_arch("cnv") == CNV_STACK
    assert parse_arch("cnv:16,16,p,32,pool") == [16, 16, "pool", 32, "pool"]
    for bad in ("cnn", "cnv:p,16", "cnv:16,p,p", "cnv:16,x", "cnv:0"):
        with pytest.raises(ValueError):
            parse_arch(bad)
    with pytest.raises(ValueError, match="too small"):
        cnn_arch([4, "pool", 4, "pool", 4, "pool", 4, "pool"], (8, 8, 1))


def test_cli_trains_compiles_and_evaluates_a_cnn(tmp_path, capsys):
    from xnorflow.cli import main
    out = tmp_path / "run"
    assert main(["train", "--method", "ste", "--dataset", "digits", "--arch", "cnv:4,p,8,p",
                 "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["hidden"] == [256]                                   # the CNV default dense width
    xnf_path = tmp_path / "m.xnf"
    assert main(["compile", str(out / "model.pt"), "-o", str(xnf_path)]) == 0
    capsys.readouterr()
    assert main(["eval", str(xnf_path), "--dataset", "digits", "--checkpoint",
                 str(out / "model.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agree_with_torch"] == 1.0 and result["integers_equal"]
    assert main(["train", "--method", "ste", "--dataset", "digits", "--arch", "cnv:4,p,4,p,4,p,4,p",
                 "--quiet", "--out", str(out)]) == 2
    assert "--arch" in capsys.readouterr().err


def test_cnn_distils_from_and_starts_at_a_cnn_of_its_own_arch(small, tmp_path):
    """--distill fp / --init fp on a CNN train (and cache) a float CNN of the student's arch,
    keyed by the arch: before, the teacher was an MLP and the init failed on the shapes."""
    cache = tmp_path / "cache"

    def run(stack):
        return methods.train("irnet", "digits", hidden=[16], epochs=1, progress=False, ds=small,
                             method_overrides={"arch": cnn_arch(stack, (8, 8, 1))},
                             distill="fp", init="fp", teacher_epochs=1, teacher_cache=str(cache))

    _, _, m = run(STACK)
    teachers = sorted(cache.iterdir())
    assert len(teachers) == 1 and not m["teacher_cached"] and m["init_cached"]  # one CNN for both
    teacher, meta = load_checkpoint(str(teachers[0]))
    assert isinstance(teacher, BinaryCNN) and meta["method"] == "fp"
    assert meta["method_config"]["arch"]["conv"] == STACK
    _, _, m2 = run([4, "pool", 8, "pool"])                        # another arch: another teacher
    assert len(list(cache.iterdir())) == 2 and not m2["teacher_cached"]
