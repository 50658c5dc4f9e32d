"""The deploy contract: exported layers reproduce the eval forward bit for bit; checkpoints round-trip."""
import numpy as np
import pytest
import torch

from xnorflow.sw.train import checkpoint as ck
from xnorflow.sw.train.methods import METHOD_CONFIGS
from xnorflow.sw.train.models import NotDeployableError, build_model, reference_forward
from tests.train.conftest import trained

DEPLOYABLE = ["irnet", "rbnn", "ste", "bwnh", "sbn"]


def _check_export_matches_trace(model, x):
    model.eval()
    layers = model.deploy_layers()
    tr = model.trace(x)
    ref = reference_forward(layers, x.numpy().astype(np.int64))
    assert len(layers) == len(tr) == len(ref)
    for lay, t, r in zip(layers, tr, ref):
        assert lay["weight_sign"].dtype == np.int8 and set(np.unique(lay["weight_sign"])) <= {-1, 1}
        for key in ("alpha", "bias"):
            assert lay[key].dtype == np.float64 and lay[key].shape == (lay["out_features"],)
        np.testing.assert_array_equal(t["dot"].numpy().astype(np.int64), r["dot"])
        if lay["output"] == "threshold":
            np.testing.assert_array_equal(t["bits"].numpy(), r["bits"])
        else:
            assert t["scores"].dtype == torch.float64
            np.testing.assert_array_equal(t["scores"].numpy(), r["scores"])  # exactly, not approximately
    assert layers[0]["input_bits"] == model.input_bits and all(l["input_bits"] == 1 for l in layers[1:])
    assert [l["output"] for l in layers] == ["threshold"] * (len(layers) - 1) + ["raw"]
    preds = model(x).argmax(1)
    assert torch.equal(preds, tr[-1]["scores"].argmax(1))
    return layers


@pytest.mark.parametrize("method", DEPLOYABLE)
def test_deploy_layers_reproduce_trace(method, digits_tensors):
    model, meta, metrics = trained(method, 2)
    assert metrics["deployable"], metrics["not_deployable_reason"]
    _, (x, _) = digits_tensors
    _check_export_matches_trace(model, x)


def test_negative_alpha_rbnn_layer_is_exported_consistently(digits_tensors):
    model, _, _ = trained("rbnn", 2)
    model = build_model(model.in_features, model.hidden, model.num_classes, model.input_bits, model.method_config)
    model.load_state_dict(trained("rbnn", 2)[0].state_dict())
    with torch.no_grad():
        model.layers[1].quantizer.lam[::2] *= -1  # λ may turn negative: the threshold direction flips
        model.bns[1].running_mean.normal_()
    _, (x, _) = digits_tensors
    layers = _check_export_matches_trace(model, x)
    assert (layers[1]["alpha"] < 0).any()


def test_non_deployable_models_raise():
    with pytest.raises(NotDeployableError, match="fc0.*full-precision"):
        build_model(8, [4], 3, 2, METHOD_CONFIGS["fp"]).deploy_layers()
    sbn = build_model(8, [4], 3, 2, METHOD_CONFIGS["sbn"])
    with pytest.raises(NotDeployableError, match="Self-Binarizing"):
        sbn.deploy_layers()
    with pytest.raises(NotDeployableError, match="centring"):
        build_model(8, [4], 3, 2, dict(METHOD_CONFIGS["rbnn"], act_centring=True)).deploy_layers()


def test_eval_forward_is_float64_and_sign_of_zero_is_plus_one():
    m = build_model(4, [3], 2, 2, METHOD_CONFIGS["ste"]).eval()
    with torch.no_grad():
        for layer in m.layers:
            layer.weight.fill_(0.5)
        m.bns[0].running_mean.fill_(12.0)  # dot of x=[3,3,3,3] with +1 weights is 12 → z = 0
        m.bns[0].bias.zero_()
    x = torch.full((1, 4), 3.0)
    tr = m.trace(x)
    assert tr[0]["dot"].tolist() == [[12.0, 12.0, 12.0]]
    assert tr[0]["bits"].tolist() == [[True, True, True]]  # z = 0 → +1
    assert m(x).dtype == torch.float64


@pytest.mark.parametrize("method", ["irnet", "rbnn", "bwnh", "sbn", "fp"])
def test_checkpoint_round_trip(method, tmp_path, digits_tensors):
    model, meta, _ = trained(method, 2)
    path = tmp_path / "model.pt"
    ck.save_checkpoint(str(path), model, meta)
    loaded, meta2 = ck.load_checkpoint(str(path))
    assert not loaded.training
    assert meta2["input_bits"] == meta["input_bits"] and meta2["max_value"] == meta["max_value"]
    assert meta2["hidden"] == meta["hidden"] and meta2["method"] == method
    _, (x, _) = digits_tensors
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    if method != "fp":
        for a, b in zip(model.deploy_layers(), loaded.deploy_layers()):
            np.testing.assert_array_equal(a["weight_sign"], b["weight_sign"])
    if method == "sbn":  # the hard swap and ν survive the round trip
        assert all(e.hard for e in [l.quantizer.estimator for l in loaded.layers])


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ck.CheckpointError, match="nope.pt"):
        ck.load_checkpoint(str(missing))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ck.CheckpointError, match="bad.pt"):
        ck.load_checkpoint(str(bad))
    other = tmp_path / "other.pt"
    torch.save({"hello": 1}, other)
    with pytest.raises(ck.CheckpointError, match="other.pt.*not an xnorflow checkpoint"):
        ck.load_checkpoint(str(other))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    model, meta, _ = trained("ste", 2)
    ck.save_checkpoint(str(tmp_path / "m.pt"), model, meta)
    ck.save_checkpoint(str(tmp_path / "m.pt"), model, meta)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
