"""The fold is exact: compiled thresholds reproduce the float64 layer bit for bit."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from xnorflow.sw.compile import CompileError, check_fold, compile_layers, fold_thresholds
from xnorflow.sw.train.models import reference_forward


def exported_layer(rng, name, n, m, output, spread=1.0):
    """A layer dict in the training deploy contract, with the awkward cases mixed in."""
    alpha = rng.uniform(0.01, 2.0, m) * rng.choice([-1, 1], m)      # RBNN λ of either sign
    gamma = rng.normal(0, 1, m)
    gamma[rng.random(m) < 0.05] = 0.0                                  # dead channels: a = 0
    beta = rng.normal(0, 1, m) * spread
    beta[rng.random(m) < 0.05] *= 1e4                                  # saturated channels
    return {"name": name, "in_features": n, "out_features": m, "input_bits": 1,
            "weight_sign": rng.choice(np.array([-1, 1], dtype=np.int8), size=(m, n)),
            "alpha": alpha, "bias": rng.normal(0, 3, m),
            "bn": {"gamma": gamma, "beta": beta, "mean": rng.normal(0, 5, m),
                   "var": rng.uniform(0.01, 50, m), "eps": 1e-5},
            "output": output}


def exported_model(rng, sizes, k):
    layers = []
    for i, (n, m) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(exported_layer(rng, f"fc{i}", n, m, "raw" if last else "threshold"))
    layers[0]["input_bits"] = k
    return layers


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 8))
def test_compiled_model_equals_float64_reference(seed, k):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 70, size=4)]
    exported = exported_model(rng, sizes, k)
    model = compile_layers(exported, k, max_value=(1 << k) - 1)
    x = rng.integers(0, 1 << k, size=(32, sizes[0]), dtype=np.uint8)
    ref = reference_forward(exported, x)
    outs = model.forward(x)
    for layer, (acc, out), r in zip(model.layers, outs, ref):
        assert (acc == r["dot"]).all(), layer.name
        if r["bits"] is not None:
            from xnorflow.sw.bits import unpack_bits
            assert (unpack_bits(out, layer.out_features) == r["bits"]).all(), layer.name
    # host scores are bit-identical, not merely close
    assert (model.logits(x) == ref[-1]["scores"]).all()


def test_check_fold_names_layer_and_channel_of_a_wrong_threshold():
    rng = np.random.default_rng(5)
    d = exported_layer(rng, "fc7", 40, 16, "threshold", spread=0.1)
    d["bn"]["gamma"][:] = 1.0
    d["bn"]["beta"][:] = 0.0
    thr, direction = fold_thresholds(d, -40, 40)
    check_fold(d, thr, direction, -40, 40)  # the real fold passes
    inside = np.flatnonzero((thr > -40) & (thr < 40))
    c = int(inside[0])
    thr[c] += 1
    with pytest.raises(CompileError, match=rf"layer 'fc7' channel {c}:"):
        check_fold(d, thr, direction, -40, 40)


def test_saturated_and_dead_channels_fold_to_the_range_bounds():
    rng = np.random.default_rng(1)
    d = exported_layer(rng, "fc1", 10, 4, "threshold")
    d["alpha"][:] = 1.0
    d["bn"]["gamma"][:] = [0.0, 0.0, 1.0, 1.0]
    d["bn"]["beta"][:] = [1.0, -1.0, 1e6, -1e6]
    d["bn"]["mean"][:] = 0.0
    d["bias"][:] = 0.0
    thr, direction = fold_thresholds(d, -10, 10)
    assert list(thr) == [-11, 11, -11, 11] and list(direction) == [1, 1, 1, 1]
    check_fold(d, thr, direction, -10, 10)


def test_non_binary_weights_are_refused_with_the_layer_named():
    rng = np.random.default_rng(2)
    layers = exported_model(rng, [8, 6, 3], 2)
    layers[1]["weight_sign"] = layers[1]["weight_sign"].astype(np.float64) * 0.5
    with pytest.raises(CompileError, match="layer 'fc1'.*full-precision"):
        compile_layers(layers, 2, 3)


def test_nan_parameters_are_refused():
    rng = np.random.default_rng(3)
    layers = exported_model(rng, [8, 6, 3], 2)
    layers[0]["bn"]["var"][2] = np.nan
    with pytest.raises(CompileError, match="layer 'fc0' field 'bn.var'"):
        compile_layers(layers, 2, 3)
