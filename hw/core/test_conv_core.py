"""Core-level conv tests: random CNNs (unsigned first conv, binary convs, fused max-pools,
dense classifier) through the bus, bit-exact against the golden model and cycle-exact."""
import numpy as np
import pytest

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core.test_core import run_core
from xnorflow.hw.core import memory_map as mm
from xnorflow.sw.program import counters_by_layer, decode_outputs, hw_steps, predict_cycles
from xnorflow.sw.random_models import balanced_cnn_model


CASES = {
    # Q = 4: a pooled unsigned first conv (window-order im2col), a binary conv whose
    # 6 input channels fill part of a 16-bit word, a pooled binary conv, dense after it.
    "pool-first": ("4x4x16", (8, 8, 2), [6, "pool", 16, 16, "pool"], [7, 3], 3),
    # Q = 8: unpooled first conv, 9 channels = two words per pixel (one valid bit in the
    # second), a pooled binary conv; 60 pixels and 15 windows leave spare columns.
    "spare-columns": ("2x8x8", (6, 10, 1), [9, 8, "pool"], [5], 2),
    # The issue registered once more before the memories (the CNV build's option): addresses,
    # taps, pixel-walker steps and sideband must all move by the same cycle.
    "issue-reg": ("4x4x16,issue_reg=1", (8, 8, 2), [6, "pool", 16, 16, "pool"], [7, 3], 3),
    # Row groups: each group's weights (tap-major) a cycle after the previous group's, the
    # fused pool and the writers seeing every row's sums in the same cycle again.
    "row-groups": ("4x4x16,row_groups=2", (8, 8, 2), [6, "pool", 16, 16, "pool"], [7, 3], 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_core_runs_random_cnn_bit_exact(case):
    shape, image, stack, dense, k = CASES[case]
    config = ArrayConfig.parse(shape).replace(w_depth=256, thr_depth=32, in_depth=128,
                                              act_depth=160, out_depth=32, desc_depth=8,
                                              acc_width=16)
    rng = np.random.default_rng(len(case))
    x = rng.integers(0, 1 << k, (1, image[0] * image[1] * image[2])).astype(np.uint8)
    model = balanced_cnn_model(rng, image, stack, dense, k, x)
    layers = model.layers
    res = run_core(config, layers, x, k, poke_while_busy=False, gap=0.0)
    assert res["status"] == mm.STATUS_DONE and res["error"] == mm.ERR_NONE
    steps = hw_steps(layers)
    assert res["layers"] == len(steps) == len(layers) - stack.count("pool")
    got = decode_outputs(res["out"], layers, config, 1)
    np.testing.assert_array_equal(got, model.forward(x)[-1][0])
    want = predict_cycles(layers, config, 1)
    assert counters_by_layer(layers, res["by_layer"]) == want["by_layer"]
    assert res["total"] == want["total"]
