"""Core-level conv tests: random CNNs (unsigned first conv, binary convs, fused max-pools,
dense classifier) through the bus, bit-exact against the golden model and cycle-exact."""
import numpy as np
import pytest

from hw.config import ArrayConfig
from hw.core.test_core import run_core
from hw.core import memory_map as mm
from sw.program import counters_by_layer, decode_outputs, hw_steps, predict_cycles
from sw.random_models import random_cnn_model


def balanced_cnn(rng, image, stack, dense, k, x):
    """random_cnn_model with each threshold drawn from the accumulators the test image gives
    (so output bits are mixed, not saturated), plus one saturated channel each way."""
    model = random_cnn_model(rng, image, stack, dense, k)
    act = x
    for idx, layer in enumerate(model.layers):
        if layer.type == "maxpool2x2":
            layer.direction = model.layers[idx - 1].direction.copy()
        elif layer.output == "threshold":
            channels = getattr(layer, "out_channels", layer.out_features)
            acc = layer.dot(act).reshape(-1, channels)
            pick = acc[rng.integers(0, len(acc), channels), np.arange(channels)]
            layer.threshold = (pick + rng.integers(-1, 2, channels)).astype(np.int32)
            lo, hi = layer.acc_range()
            layer.threshold[0], layer.threshold[-1] = hi + 3, lo - 3
            layer.direction = rng.choice([-1, 1], channels).astype(np.int8)
        act = layer.forward(act)[1]
    return model


CASES = {
    # Q = 4: a pooled unsigned first conv (window-order im2col), a binary conv whose
    # 6 input channels fill part of a 16-bit word, a pooled binary conv, dense after it.
    "pool-first": ("4x4x16", (8, 8, 2), [6, "pool", 16, 16, "pool"], [7, 3], 3),
    # Q = 8: unpooled first conv, 9 channels = two words per pixel (one valid bit in the
    # second), a pooled binary conv; 60 pixels and 15 windows leave spare columns.
    "spare-columns": ("2x8x8", (6, 10, 1), [9, 8, "pool"], [5], 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_core_runs_random_cnn_bit_exact(case):
    shape, image, stack, dense, k = CASES[case]
    config = ArrayConfig.parse(shape).replace(w_depth=256, thr_depth=32, in_depth=128,
                                              act_depth=160, out_depth=32, desc_depth=8,
                                              acc_width=16)
    rng = np.random.default_rng(len(case))
    x = rng.integers(0, 1 << k, (1, image[0] * image[1] * image[2])).astype(np.uint8)
    model = balanced_cnn(rng, image, stack, dense, k, x)
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
