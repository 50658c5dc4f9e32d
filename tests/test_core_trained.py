"""The core in the Amaranth simulator runs a really trained digits model (IR-Net, compiled by
`xnorflow compile`) on real test images: integers equal the golden model, predictions equal
PyTorch's, counters equal the cycle model."""
import numpy as np
import pytest
import torch

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core.test_core import check, run_core
from xnorflow.sw import xnf
from xnorflow.sw.evaluate import dataset_inputs
from xnorflow.sw.program import decode_outputs
from xnorflow.sw.train.checkpoint import load_checkpoint

# Small array, memories deep enough for 64-256-256-10 with 4-bit inputs and 4 images.
CONFIG = ArrayConfig.parse("2x2x8,w_depth=8192,thr_depth=256,in_depth=64,act_depth=64,"
                           "out_depth=64,desc_depth=4,acc_width=16")


@pytest.mark.slow
def test_core_runs_a_trained_model_on_test_images(digits_models):
    ckpt, compiled = digits_models("irnet")
    model = xnf.load(compiled)
    x, _ = dataset_inputs(model, "digits", limit=4)
    res = run_core(CONFIG, model.layers, x, model.input.bits, poke_while_busy=False,
                   backdoor=True)
    check(CONFIG, model.layers, x, model.input.bits, res)
    ints = decode_outputs(res["out"], model.layers, CONFIG, len(x))
    torch_model, _ = load_checkpoint(ckpt)
    want = torch_model.trace(torch.from_numpy(x.astype(np.float32)))[-1]["scores"].argmax(1)
    assert (model.head.scores(ints).argmax(1) == want.numpy()).all()
