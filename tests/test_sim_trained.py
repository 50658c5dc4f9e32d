"""Real trained weights on the simulated RTL: every method's digits model (and the IR-Net and
RBNN digits CNNs), compiled, loaded by the driver into the Verilator-simulated accelerator and
run over the whole test set, must give the golden model's integers exactly and PyTorch's
predictions on every image."""
import json
import subprocess
import sys

import pytest

from xnf_testing import DEPLOYABLE, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.verilator]

# Holds the 64-256-256-10 digits models (1,328 weight words per row bank) and the digits CNN
# (Q = 4: the fused pools need a multiple of 4; feature maps of at most 16 words).
CONFIG = "4x4x16,w_depth=2048,thr_depth=128,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


def _sim_whole_test_set(ckpt, compiled):
    """``xnorflow sim --json`` of a trained digits model on Verilator, checked bit-exact."""
    proc = subprocess.run(
        [sys.executable, "-m", "xnorflow.cli", "sim", str(compiled), "--dataset", "digits", "--engine",
         "verilator", "--array", CONFIG, "--checkpoint", str(ckpt), "--json"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["images"] == 360
    assert result["mismatches"] == 0
    assert result["agree_with_torch"] == 1.0
    assert result["predicted_cycles_match"] is True
    return result


@pytest.mark.parametrize("method", DEPLOYABLE)
def test_trained_model_on_verilator_is_bit_exact_on_the_whole_test_set(method, digits_models):
    result = _sim_whole_test_set(*digits_models(method))
    assert set(result["cycles_by_layer"]) == {"fc0", "fc1", "fc2"}


@pytest.mark.parametrize("method", ["irnet", "rbnn"])
def test_trained_cnn_on_verilator_is_bit_exact_on_the_whole_test_set(method, digits_cnns):
    result = _sim_whole_test_set(*digits_cnns(method))
    assert result["batch"] == 1
    by_layer = result["cycles_by_layer"]
    assert list(by_layer) == ["conv0", "pool1", "conv2", "pool3", "fc4", "fc5"]
    assert by_layer["pool1"] == by_layer["pool3"] == 0 and by_layer["conv0"] > 0
    assert result["accuracy"] >= 0.85
