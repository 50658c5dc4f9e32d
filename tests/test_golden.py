"""Golden model properties against plain ±1 / integer arithmetic (hypothesis, ≥200 examples)."""
import numpy as np
from hypothesis import given, settings, strategies as st

from xnorflow.sw import bits as B
from xnorflow.sw.layers.dense import binary_dot, threshold_bits, unsigned_dot
from xnorflow.sw.random_models import random_inputs, random_model

EXAMPLES = settings(max_examples=200, deadline=None)
seeds = st.integers(0, 2**32 - 1)


@EXAMPLES
@given(seed=seeds, batch=st.integers(1, 6), n=st.integers(1, 300))
def test_pack_roundtrip_and_padding_is_zero(seed, batch, n):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(batch, n)).astype(bool)
    for word in (8, 16, 32, 64):
        packed = B.pack_bits(bits, word)
        assert packed.shape == (batch, B.packed_len(n, word))
        assert packed.shape[-1] % (word // 8) == 0
        assert (B.unpack_bits(packed, n) == bits).all()
        # padding bits are zero
        assert (np.unpackbits(packed, axis=-1, bitorder="little")[:, n:] == 0).all()


@EXAMPLES
@given(seed=seeds, batch=st.integers(1, 5), m=st.integers(1, 40), n=st.integers(1, 300))
def test_binary_dot_equals_pm1_arithmetic(seed, batch, m, n):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(batch, n))
    w = rng.choice([-1.0, 1.0], size=(m, n))
    got = binary_dot(B.pack_bits(B.pm1_to_bits(x)), B.pack_bits(B.pm1_to_bits(w)), n)
    assert got.dtype == np.int64
    assert (got == (x @ w.T).astype(np.int64)).all()


@EXAMPLES
@given(seed=seeds, batch=st.integers(1, 5), m=st.integers(1, 40), n=st.integers(1, 300))
def test_binary_dot_ignores_padding_garbage_in_activations(seed, batch, m, n):
    """Contract 2: whatever sits in the padding bits never changes the result."""
    rng = np.random.default_rng(seed)
    x = B.pack_bits(rng.integers(0, 2, size=(batch, n)).astype(bool))
    w = B.pack_bits(rng.integers(0, 2, size=(m, n)).astype(bool))
    dirty = x | (~B.valid_mask(n) & rng.integers(0, 256, size=x.shape, dtype=np.uint8))
    assert (binary_dot(dirty, w, n) == binary_dot(x, w, n)).all()


@EXAMPLES
@given(seed=seeds, k=st.integers(1, 8), batch=st.integers(1, 5), m=st.integers(1, 30),
       n=st.integers(1, 200))
def test_unsigned_dot_equals_integer_arithmetic(seed, k, batch, m, n):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << k, size=(batch, n), dtype=np.uint8)
    w = rng.choice([-1, 1], size=(m, n))
    got = unsigned_dot(x, B.pack_bits(B.pm1_to_bits(w)), n, k)
    assert (got == x.astype(np.int64) @ w.T).all()


def test_every_input_width_is_exercised():
    rng = np.random.default_rng(1)
    for k in range(1, 9):
        x = np.full((1, 70), (1 << k) - 1, dtype=np.uint8)
        w = np.ones((1, 70))
        assert unsigned_dot(x, B.pack_bits(B.pm1_to_bits(w)), 70, k)[0, 0] == 70 * ((1 << k) - 1)
        x = rng.integers(0, 1 << k, size=(3, 70), dtype=np.uint8)
        assert (unsigned_dot(x, B.pack_bits(B.pm1_to_bits(-w)), 70, k)[:, 0]
                == -x.astype(int).sum(1)).all()


@EXAMPLES
@given(seed=seeds, n=st.integers(1, 100), m=st.integers(1, 30))
def test_threshold_matches_float_comparison_incl_saturated(seed, n, m):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-n, n + 1, size=(8, m))
    thr = rng.integers(-n - 1, n + 2, size=m)
    thr[: m // 3] = rng.choice([-n - 1, n + 1], size=m // 3)  # saturated channels
    d = rng.choice([-1, 1], size=m)
    got = threshold_bits(acc, thr[None], d[None])
    want = np.where(d > 0, acc.astype(float) - thr >= 0, thr - acc.astype(float) >= 0)
    assert (got == want).all()
    # saturation means what it says over the whole range
    for c in range(m):
        full = threshold_bits(np.arange(-n, n + 1)[:, None], thr[c], d[c])[:, 0]
        if (d[c] > 0 and thr[c] > n) or (d[c] < 0 and thr[c] < -n):
            assert not full.any()
        if (d[c] > 0 and thr[c] <= -n) or (d[c] < 0 and thr[c] >= n):
            assert full.all()


@EXAMPLES
@given(seed=seeds, k=st.integers(1, 8), depth=st.integers(2, 4))
def test_model_forward_equals_float_reference(seed, k, depth):
    """Whole-model forward vs float ±1 arithmetic written from the contracts alone."""
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 90, size=depth + 1)]
    model = random_model(rng, sizes, k)
    x = random_inputs(rng, model, 4)
    outs = model.forward(x)
    h = x.astype(np.float64)
    for layer, (acc, out) in zip(model.layers, outs):
        w = B.bits_to_pm1(B.unpack_bits(layer.weights, layer.in_features)).astype(np.float64)
        dot = h @ w.T
        assert (acc == dot).all(), layer.name
        if layer.output == "raw":
            assert out is acc
            break
        z = np.where(layer.direction > 0, dot - layer.threshold, layer.threshold - dot)
        bits = z >= 0
        assert (B.unpack_bits(out, layer.out_features) == bits).all(), layer.name
        h = np.where(bits, 1.0, -1.0)
    assert (model.logits(x) == acc * model.head.alpha + model.head.bias).all()
    assert (model.predict(x) == model.logits(x).argmax(1)).all()


def test_outputs_in_chunks_equal_the_whole_batch_forward():
    """Model.outputs (what ``sim`` compares the hardware with) computes a batch a chunk at a
    time so a CNN's intermediates never exist for the whole test set at once: chunks of
    every size, including a last partial one, give exactly forward()'s last integers."""
    from xnorflow.sw.random_models import random_cnn_model
    rng = np.random.default_rng(7)
    cnn = random_cnn_model(rng, (6, 6, 2), [4, "pool", 8], [5], 3)
    mlp = random_model(rng, [20, 16, 7], 2)
    for model in (cnn, mlp):
        x = random_inputs(rng, model, 37)
        whole = model.forward(x)[-1][0]
        for chunk in (1, 8, 36, 37, 256):
            got = model.outputs(x, chunk=chunk)
            assert got.dtype == whole.dtype and np.array_equal(got, whole), (model.name, chunk)
        assert np.array_equal(model.predict(x), model.head.scores(whole).argmax(axis=1))
