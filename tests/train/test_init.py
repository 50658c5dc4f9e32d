"""--init: a binary student starts from a trained network's latent weights and BN gamma/beta."""
import json

import pytest
import torch

from xnorflow.cli import main
from xnorflow.sw.train import methods
from xnorflow.sw.train.models import build_model
from xnorflow.sw.train.quantizers import standardize


def _pair(method, hidden=(24, 16), seed=0):
    torch.manual_seed(seed)
    src = build_model(64, list(hidden), 10, 4, methods.METHOD_CONFIGS["fp"])
    with torch.no_grad():
        for layer in src.layers:
            layer.weight.normal_(0.0, 0.3)
        for bn in src.bns:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    dst = build_model(64, list(hidden), 10, 4, methods.METHOD_CONFIGS[method])
    return src, dst


def _random_start_accuracy(method, hidden):
    """Digits test accuracy of a randomly initialised student, BN recalibrated as after --init."""
    from xnorflow.sw.data import load_dataset
    from xnorflow.sw.train.trainer import evaluate, recalibrate_bn
    ds = load_dataset("digits")
    train, test = methods.tensors(ds, 4)
    torch.manual_seed(0)
    model = build_model(ds.in_features, hidden, ds.num_classes, 4, methods.METHOD_CONFIGS[method])
    recalibrate_bn(model, train[0])
    return evaluate(model, *test)


@pytest.mark.parametrize("method", ["irnet", "rbnn", "ste", "sbn"])
def test_init_from_copies_weights_and_bn_affine(method):
    src, dst = _pair(method)
    methods.init_from(dst, src)
    for a, b in zip(dst.layers, src.layers):
        assert torch.equal(a.weight, b.weight)
    for a, b in zip(dst.bns, src.bns):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
        assert torch.equal(a.running_var, torch.ones_like(a.running_var))  # not copied: recalibrated by train()


def test_rbnn_init_starts_from_the_trained_signs():
    src, dst = _pair("rbnn")
    methods.init_from(dst, src)  # rotation "identity"
    for layer, s in zip(dst.layers, src.layers):
        qz = layer.quantizer
        assert torch.equal(qz.R1, torch.eye(qz.n1)) and torch.equal(qz.R2, torch.eye(qz.n2))
        assert torch.allclose(qz.lam, s.weight.abs().mean(1))
        wq, _ = layer.quantized()
        assert torch.equal(wq, torch.where(standardize(s.weight) >= 0, 1.0, -1.0))
    src, dst = _pair("rbnn")
    r1 = dst.layers[0].quantizer.R1.clone()
    methods.init_from(dst, src, rotation="random")
    assert torch.equal(dst.layers[0].quantizer.R1, r1)


def test_init_from_refuses_other_shapes():
    src, _ = _pair("irnet", hidden=(24, 16))
    _, dst = _pair("irnet", hidden=(24, 8))
    with pytest.raises(methods.InitError, match="fc1"):
        methods.init_from(dst, src)


def test_init_fp_beats_random_start_and_is_recorded(tmp_path):
    cache = tmp_path / "cache"
    common = ["--dataset", "digits", "--hidden", "64,64", "--quiet", "--teacher-epochs", "15",
              "--teacher-cache", str(cache), "--distill", "none"]
    assert main(["train", "--method", "irnet", "--epochs", "1", "--init", "fp", *common, "--out", str(tmp_path / "a")]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["init"] == "fp" and m["init_cached"] is False and m["deployable"] is True
    assert m["init_source_test_accuracy"] > 0.9
    # The binarised float network already classifies far better than the random start measured
    # the same way (BN recalibrated, no training), which is at chance level.
    random_start = _random_start_accuracy("irnet", [64, 64])
    assert random_start < 0.2 and m["init_test_accuracy"] > random_start + 0.2
    # A checkpoint path works as --init too, and its accuracy is recorded.
    assert main(["train", "--method", "rbnn", "--epochs", "1", "--init", m["init_path"], *common,
                 "--out", str(tmp_path / "b")]) == 0
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert mb["init_cached"] is True and mb["init_seconds_in_this_run"] == 0.0
    assert mb["init_source_test_accuracy"] == m["init_source_test_accuracy"]
    assert mb["init_test_accuracy"] > _random_start_accuracy("rbnn", [64, 64]) + 0.2
    assert main(["train", "--method", "ste", "--epochs", "1", "--init", "none", *common,
                 "--out", str(tmp_path / "c")]) == 0
    mc = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert mc["init"] is None and "init_test_accuracy" not in mc


@pytest.mark.parametrize("extra,needle", [
    (["--init", "/no/such/model.pt"], "does not exist"),
    (["--method", "bwnh", "--init", "fp"], "bwnh"),
])
def test_bad_init_exits_2_naming_the_option(extra, needle, tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet", "--out", str(tmp_path / "o")]
    if "--method" not in extra:
        args += ["--method", "irnet"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert "--init" in err and needle in err and "Traceback" not in err


def test_init_with_another_shape_exits_2(tmp_path, capsys):
    assert main(["train", "--method", "fp", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet",
                 "--out", str(tmp_path / "t")]) == 0
    rc = main(["train", "--method", "irnet", "--dataset", "digits", "--epochs", "1", "--hidden", "32", "--quiet",
               "--init", str(tmp_path / "t" / "model.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "--init" in capsys.readouterr().err


def test_init_binact_is_a_cached_float_weight_binary_activation_stage(tmp_path):
    from xnorflow.sw.train.checkpoint import load_checkpoint
    common = ["--dataset", "digits", "--hidden", "64,64", "--quiet", "--teacher-epochs", "15",
              "--teacher-cache", str(tmp_path / "cache"), "--distill", "none", "--epochs", "1"]
    assert main(["train", "--method", "irnet", "--init", "binact", *common, "--out", str(tmp_path / "a")]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["init"] == "binact" and m["init_cached"] is False and m["deployable"] is True
    assert m["init_path"].split("/")[-1].startswith("binact-digits-")
    stage1, meta = load_checkpoint(m["init_path"])
    assert meta["method_config"]["weight"] == "float" and meta["method_config"]["act"] == "ede"
    assert "full-precision weights" in stage1.not_deployable()
    assert m["init_source_test_accuracy"] > 0.9
    assert m["init_test_accuracy"] > _random_start_accuracy("irnet", [64, 64]) + 0.2
    # The fp teacher of the same settings is a different cache entry.
    assert main(["train", "--method", "irnet", "--init", "fp", *common, "--out", str(tmp_path / "b")]) == 0
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert mb["init_cached"] is False and mb["init_path"] != m["init_path"]


def test_fashion_mnist_default_recipe_is_the_measured_one():
    # docs/training.md, Fashion-MNIST: distilled, no augmentation, random init, 80 epochs, input dropout
    # (IR-Net 0.1, RBNN 0.2) and BN recalibration.
    for method in ("irnet", "rbnn"):
        d = methods.resolve_defaults(method, "fashion-mnist")
        assert (d["epochs"], d["batch_size"], d["lr"], d["augment_shift"], d["distill"]) == (80, 256, 6e-3, 0, "fp")
        assert d.get("init") is None and d["hidden"] == [256, 256, 256] and d["input_bits"] == 8
        assert d["bn_recalibrate"] is True and d.get("dropout", 0.0) == 0.0
    assert methods.resolve_defaults("irnet", "fashion-mnist")["input_dropout"] == 0.1
    assert methods.resolve_defaults("rbnn", "fashion-mnist")["input_dropout"] == 0.2
    for other in ("digits", "mnist"):  # the regularisers stay off elsewhere (not measured there)
        d = methods.resolve_defaults("irnet", other)
        assert d.get("input_dropout", 0.0) == 0.0 and not d.get("bn_recalibrate", False)
