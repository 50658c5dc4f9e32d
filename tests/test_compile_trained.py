"""Every training method compiles, and the compiled model equals PyTorch on the whole digits
test set: every layer's integers, every hidden bit, the scores and so every prediction."""
import json
import subprocess
import sys

import pytest

from xnf_testing import DEPLOYABLE, ROOT

pytestmark = pytest.mark.slow


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "xnorflow.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.parametrize("method", DEPLOYABLE)
def test_compiled_model_agrees_with_torch_on_every_test_image(method, digits_models):
    ckpt, compiled = digits_models(method)
    run = _cli("eval", compiled, "--dataset", "digits", "--checkpoint", ckpt, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["images"] == 360
    assert result["agree_with_torch"] == 1.0
    assert result["hidden_bits_equal"] and result["integers_equal"] and result["scores_equal"]
    assert result["accuracy"] >= 0.90, result


def test_compile_cli_writes_a_loadable_model_and_reports_capacity(digits_models, tmp_path):
    ckpt, _ = digits_models("irnet")
    out = tmp_path / "m.xnf"
    run = _cli("compile", ckpt, "-o", out, "--array", "8x8x32", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["capacity"]["config"] == "8x8x32"
    assert [r["weight_words"] for r in report["capacity"]["layers"]] == [2 * 32, 8 * 32, 8 * 2]
    from xnorflow.sw import xnf
    assert xnf.load(out).layers[0].input_bits == 4


def test_a_model_that_does_not_fit_is_refused_naming_the_layer(digits_models, tmp_path):
    ckpt, _ = digits_models("irnet")
    out = tmp_path / "m.xnf"
    run = _cli("compile", ckpt, "-o", out, "--array", "8x8x32,w_depth=100")
    assert run.returncode == 2
    assert "layer 'fc1'" in run.stderr and "w_depth=100" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


def test_full_precision_model_is_refused_with_what_would_make_it_deployable(digits_models,
                                                                            tmp_path):
    ckpt, compiled = digits_models("fp")
    assert compiled is None
    run = _cli("compile", ckpt, "-o", tmp_path / "fp.xnf")
    assert run.returncode == 2, run.stderr
    assert "not deployable" in run.stderr and "fc" in run.stderr
    assert "Traceback" not in run.stderr


def test_inspect_shows_layers_memory_and_cycles(digits_models):
    _, compiled = digits_models("rbnn")
    run = _cli("inspect", compiled, "--array", "8x8x32", "--batch", "8", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert [r["name"] for r in doc["layers"]] == ["fc0", "fc1", "fc2"]
    assert doc["layers"][0]["input"] == "unsigned 4-bit"
    assert all(r["cycles"] > 0 for r in doc["layers"])
    text = _cli("inspect", compiled).stdout
    assert "fc1" in text and "256→256" in text and "sat 0/1" in text


def test_corrupt_model_file_gets_one_line_error_not_a_traceback(digits_models, tmp_path):
    _, compiled = digits_models("irnet")
    bad = tmp_path / "bad.xnf"
    data = bytearray(compiled.read_bytes())
    data[100] ^= 1
    bad.write_bytes(bytes(data))
    run = _cli("inspect", bad)
    assert run.returncode == 2
    assert "checksum mismatch" in run.stderr and str(bad) in run.stderr
    assert "Traceback" not in run.stderr


def test_per_sample_activation_centring_is_refused(tmp_path):
    """RBNN's reference code centres activations per sample; that cannot fold into a fixed
    threshold, so the compiler must refuse it and say what to change."""
    import copy

    from xnorflow.sw.train.checkpoint import save_checkpoint
    from xnorflow.sw.train.methods import METHOD_CONFIGS
    from xnorflow.sw.train.models import build_model
    cfg = copy.deepcopy(METHOD_CONFIGS["rbnn"])
    cfg["act_centring"] = True
    model = build_model(64, [32], 10, 4, cfg)
    meta = {"method": "rbnn", "dataset": "digits", "input_bits": 4, "in_features": 64,
            "hidden": [32], "num_classes": 10, "max_value": 16, "method_config": cfg}
    save_checkpoint(tmp_path / "model.pt", model, meta)
    run = _cli("compile", tmp_path / "model.pt", "-o", tmp_path / "m.xnf")
    assert run.returncode == 2, run.stderr
    assert "centring" in run.stderr and "act_centring off" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "m.xnf").exists()
