"""Training-only regularisers: dropout (--dropout, --input-dropout) acts in training mode only and
leaves the eval forward / deployed model unchanged; BN recalibration (--bn-recalibrate) replaces
the running statistics by their average over the training set (final weights, training-mode
forward without dropout) and keeps the export bit-exact."""
import json
import os
import sys

import numpy as np
import pytest
import torch

from xnorflow.cli import main
from xnorflow.sw.train import methods
from xnorflow.sw.train.conv import cnn_arch, parse_arch
from xnorflow.sw.train.methods import METHOD_CONFIGS
from xnorflow.sw.train.models import bn_eval64, build_model, reference_forward
from xnorflow.sw.train.trainer import recalibrate_bn


def _model(method, dropout=0.0, input_dropout=0.0, hidden=(32, 32), seed=0, arch=None):
    """A digits-shaped model: the MLP, or with ``arch`` (e.g. ``cnv:8,p``) a CNN on the 8×8×1 images."""
    torch.manual_seed(seed)
    cfg = dict(METHOD_CONFIGS[method])
    if arch:
        cfg["arch"] = cnn_arch(parse_arch(arch), (8, 8, 1))
    if dropout:
        cfg["dropout"] = dropout
    if input_dropout:
        cfg["input_dropout"] = input_dropout
    return build_model(64, list(hidden), 10, 4, cfg)


def _layer_inputs_train(model, x):
    """What each layer's dot product sees in one training-mode forward (forward pre-hooks can't see
    it: the dot is a static function), recorded by wrapping ``BinaryLinear.dot``."""
    seen = []
    for layer in model.layers:
        orig = layer.dot
        layer.dot = (lambda f: (lambda h, wq: (seen.append(h.detach().clone()), f(h, wq))[1]))(orig)
    try:
        model(x)
    finally:
        for layer in model.layers:
            del layer.dot
    return seen


@pytest.mark.parametrize("arch", [None, "cnv:8,p"])
@pytest.mark.parametrize("method", ["irnet", "rbnn"])
def test_dropout_acts_in_training_mode_only(method, arch, digits_tensors):
    (x, _), (xt, _) = digits_tensors
    x = x[:256]
    model = _model(method, dropout=0.5, input_dropout=0.3, arch=arch)
    model.train()
    seen = _layer_inputs_train(model, x)
    seen[0] = seen[0].reshape(x.shape)  # a conv sees NCHW; with one channel that flattens like HWC
    # Input pixels: about 30 % of the non-zero pixels are zeroed, the rest scaled by 1/(1 - 0.3).
    nz = x != 0
    dropped = (seen[0] == 0) & nz
    assert 0.2 < dropped.sum().item() / nz.sum().item() < 0.4
    kept = (seen[0] != 0)
    assert torch.allclose(seen[0][kept], x[kept] / 0.7)
    # Binary activations between layers: ±1 become 0 (p = 0.5) or ±2.
    for h in seen[1:]:
        vals = set(torch.unique(h).tolist())
        assert vals <= {-2.0, 0.0, 2.0} and 0.4 < (h == 0).float().mean().item() < 0.6
    # Eval mode: identity, exactly the model without dropout (same parameters and statistics).
    model.eval()
    plain = _model(method, arch=arch)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    assert torch.equal(model(xt), plain(xt))
    tr, tp = model.trace(xt), plain.trace(xt)
    for a, b in zip(tr, tp):
        assert (a["dot"] is None and b["dot"] is None) or torch.equal(a["dot"], b["dot"])
    for a, b in zip(model.deploy_layers(), plain.deploy_layers()):
        if "weight_sign" not in a:  # a pool: no weights, its directions come from the conv
            continue
        np.testing.assert_array_equal(a["weight_sign"], b["weight_sign"])
        for k in ("mean", "var", "gamma", "beta"):
            np.testing.assert_array_equal(a["bn"][k], b["bn"][k])
    # Without dropout a training-mode forward passes the inputs unchanged.
    plain.train()
    assert torch.equal(_layer_inputs_train(plain, x)[0].reshape(x.shape), x)


@pytest.mark.parametrize("method", ["irnet", "rbnn"])
def test_recalibration_averages_training_statistics_without_dropout_and_stays_deployable(method, digits_tensors):
    (x, _), (xt, _) = digits_tensors
    x = x[:1000]
    model = _model(method, dropout=0.3, input_dropout=0.2)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics of dropout-perturbed training forwards
            model(x[:200])
        for bn in model.bns:  # trained-looking affine parameters (beta = 0 makes ties at sign(0) likely)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    before = [bn.running_var.clone() for bn in model.bns]
    recalibrate_bn(model, x, batch_size=250)
    assert all(not torch.allclose(b, bn.running_var) for b, bn in zip(before, model.bns))
    assert model.training and all(d.training for d in model.drops)  # mode restored
    # Expected: the training-mode forward without dropout, batch by batch (4 batches of 250): each
    # batch norm's statistics are the average of the batch means / unbiased batch variances, and
    # the next layer sees the signs of the batch-normalised values.
    model.eval()
    with torch.no_grad():
        hs = list(x.split(250))
        for i, (layer, bn) in enumerate(zip(model.layers, model.bns)):
            wq, alpha = layer.quantized()
            ys = [layer.dot(h, wq) * alpha + layer.bias_or_zero() for h in hs]
            mean = torch.stack([y.mean(0) for y in ys]).mean(0)
            var = torch.stack([y.var(0, unbiased=True) for y in ys]).mean(0)
            assert torch.allclose(bn.running_mean, mean, rtol=1e-5, atol=1e-5), i
            assert torch.allclose(bn.running_var, var, rtol=1e-5, atol=1e-5), i
            hs = [torch.where(torch.nn.functional.batch_norm(y, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
                              >= 0, 1.0, -1.0) for y in ys]
    # The deploy path stays exact after recalibration.
    layers = model.deploy_layers()
    ref = reference_forward(layers, xt.numpy().astype(np.int64))
    tr = model.trace(xt)
    for lay, t, r in zip(layers, tr, ref):
        np.testing.assert_array_equal(t["dot"].numpy().astype(np.int64), r["dot"])
        if lay["output"] == "threshold":
            np.testing.assert_array_equal(t["bits"].numpy(), r["bits"])
        else:
            np.testing.assert_array_equal(t["scores"].numpy(), r["scores"])


def test_options_round_trip_and_teacher_has_no_dropout(tmp_path):
    from xnorflow.sw.train.checkpoint import load_checkpoint
    out = tmp_path / "a"
    assert main(["train", "--method", "rbnn", "--dataset", "digits", "--epochs", "2", "--hidden", "32", "--quiet",
                 "--dropout", "0.2", "--input-dropout", "0.1", "--bn-recalibrate", "--distill", "fp",
                 "--teacher-epochs", "1", "--teacher-cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dropout"] == 0.2 and m["input_dropout"] == 0.1 and m["bn_recalibrate"] is True
    assert 0.0 < m["test_accuracy_before_recalibration"] <= 1.0 and m["deployable"] is True
    model, meta = load_checkpoint(str(out / "model.pt"))
    assert meta["metrics"]["dropout"] == 0.2 and meta["method_config"]["dropout"] == 0.2
    assert model.not_deployable() is None and not model.training
    _, tmeta = load_checkpoint(m["teacher_path"])
    assert "dropout" not in tmeta["method_config"] and "input_dropout" not in tmeta["method_config"]
    assert tmeta["metrics"]["dropout"] == 0.0 and tmeta["metrics"]["bn_recalibrate"] is False
    # Off by default: no dropout entries in method_config, no recalibration.
    assert main(["train", "--method", "irnet", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet",
                 "--out", str(tmp_path / "b")]) == 0
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert mb["dropout"] == 0.0 and mb["bn_recalibrate"] is False and "test_accuracy_before_recalibration" not in mb
    _, bmeta = load_checkpoint(str(tmp_path / "b" / "model.pt"))
    assert "dropout" not in bmeta["method_config"]


@pytest.mark.parametrize("extra,option", [
    (["--dropout", "1.0"], "--dropout"),
    (["--dropout", "-0.1"], "--dropout"),
    (["--input-dropout", "x"], "--input-dropout"),
])
def test_bad_dropout_exits_2_naming_the_option(extra, option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        rc = main(["train", "--method", "irnet", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                   "--quiet", *extra, "--out", str(tmp_path / "o")])
        raise SystemExit(rc)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


def test_benchmark_passes_the_options_through(monkeypatch, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    import train_methods
    seen = {}

    def fake_train(method, dataset, **kw):
        seen.update(kw)
        raise RuntimeError("stop")
    monkeypatch.setattr(methods, "train", fake_train)
    with pytest.raises(RuntimeError, match="stop"):
        train_methods.main(["--datasets", "digits", "--methods", "irnet", "--seeds", "0", "--dropout", "0.25",
                            "--input-dropout", "0.05", "--bn-recalibrate", "--png", str(tmp_path / "x.png")])
    assert seen["dropout"] == 0.25 and seen["input_dropout"] == 0.05 and seen["bn_recalibrate"] is True
    assert "bnrecal" in train_methods.recipe_label({"batch_size": 256, "lr": 6e-3, "bn_recalibrate": True,
                                                    "dropout": 0.25})
