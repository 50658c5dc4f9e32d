"""Golden conv3x3 / maxpool2x2 (sw/layers/conv.py) against plain integer arithmetic.

The reference here is deliberately naive: ±1 (or k-bit integer) images as int64 arrays, an
explicitly padded copy, im2col by slicing and one integer matmul, then per-channel thresholds
and a max over 2×2 windows of the integers.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.sw import bits as B
from xnorflow.sw.layers import LAYER_TYPES
from xnorflow.sw.layers.conv import PAD_BIT, ConvLayer, ConvNotOnCoreError, MaxPoolLayer, pool_bits
from xnorflow.sw.layers.dense import threshold_bits
from xnorflow.sw.random_models import random_thresholds

EXAMPLES = settings(max_examples=60, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def ref_conv(x_int, w_int, pad):
    """x_int [B, H, W, C] int64, w_int [O, 3, 3, C] int64 → acc [B, H, W, O] (im2col + matmul)."""
    b, h, w, c = x_int.shape
    xp = np.full((b, h + 2, w + 2, c), pad, dtype=np.int64)
    xp[:, 1:-1, 1:-1] = x_int
    cols = np.stack([xp[:, ky:ky + h, kx:kx + w] for ky in range(3) for kx in range(3)], axis=3)
    return cols.reshape(b, h, w, 9 * c) @ w_int.reshape(w_int.shape[0], -1).T


def random_conv(rng, h, w, cin, cout, kind, k):
    w_pm1 = rng.choice([-1, 1], size=(cout, 3, 3, cin))
    layer = ConvLayer(name="c", height=h, width=w, in_channels=cin, out_channels=cout,
                      input_kind=kind, input_bits=k,
                      weights=B.pack_bits(w_pm1.reshape(cout, -1) > 0))
    layer.threshold, layer.direction = random_thresholds(rng, *layer.acc_range(), cout)
    return layer, w_pm1


@EXAMPLES
@given(seed=seeds, batch=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       cin=st.integers(1, 20), cout=st.integers(1, 9))
def test_binary_conv_equals_integer_reference(seed, batch, h, w, cin, cout):
    rng = np.random.default_rng(seed)
    layer, w_pm1 = random_conv(rng, h, w, cin, cout, "binary", 1)
    x_pm1 = rng.choice([-1, 1], size=(batch, h, w, cin))
    packed = B.pack_bits(x_pm1.reshape(batch, -1) > 0)
    acc, out = layer.forward(packed)
    want = ref_conv(x_pm1, w_pm1, pad=-1)                    # padding bit 0 is −1
    assert acc.shape == (batch, h * w * cout)
    np.testing.assert_array_equal(acc, want.reshape(batch, -1))
    lo, hi = layer.acc_range()
    assert lo <= acc.min() and acc.max() <= hi and hi == 9 * cin
    bits = threshold_bits(want, layer.threshold, layer.direction)
    np.testing.assert_array_equal(B.unpack_bits(out, layer.out_features), bits.reshape(batch, -1))
    layer.output = "raw"
    acc2, raw = layer.forward(packed)
    assert raw is acc2 and (acc2 == acc).all()


@EXAMPLES
@given(seed=seeds, batch=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       cin=st.integers(1, 4), cout=st.integers(1, 9), k=st.integers(1, 8))
def test_unsigned_conv_equals_zero_padded_integer_conv(seed, batch, h, w, cin, cout, k):
    rng = np.random.default_rng(seed)
    layer, w_pm1 = random_conv(rng, h, w, cin, cout, "unsigned", k)
    x = rng.integers(0, 1 << k, size=(batch, h, w, cin))
    acc, _ = layer.forward(x.reshape(batch, -1).astype(np.uint8))
    np.testing.assert_array_equal(acc, ref_conv(x, w_pm1, pad=0).reshape(batch, -1))
    assert layer.acc_range()[1] == 9 * cin * ((1 << k) - 1)


def test_padding_constant_is_bit_zero():
    """One documented constant: bit 0, i.e. −1 in binary layers, integer 0 in the first layer."""
    assert PAD_BIT == 0
    # A 1×1 image: eight of nine taps are padding. All-(+1) weights: acc = x − 8 (binary).
    layer = ConvLayer("c", 1, 1, 1, 1, "binary", 1, B.pack_bits(np.ones((1, 9), bool)))
    assert layer.dot(B.pack_bits(np.array([[True]])))[0, 0] == 1 - 8
    first = ConvLayer("c", 1, 1, 1, 1, "unsigned", 4, B.pack_bits(np.ones((1, 9), bool)))
    assert first.dot(np.array([[11]], np.uint8))[0, 0] == 11


@EXAMPLES
@given(seed=seeds, batch=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       c=st.integers(1, 12))
def test_pool_of_thresholded_bits_equals_threshold_of_pooled_integers(seed, batch, h, w, c):
    """The fold: OR (direction +1) / AND (−1) of the bits == threshold of the max integer."""
    rng = np.random.default_rng(seed)
    acc = rng.integers(-20, 21, size=(batch, h, w, c))
    thr, direction = random_thresholds(rng, -20, 20, c)
    bits = threshold_bits(acc, thr, direction)
    ho, wo = h // 2, w // 2                                      # odd last row/column dropped
    pooled_acc = acc[:, :2 * ho, :2 * wo].reshape(batch, ho, 2, wo, 2, c).max(axis=(2, 4))
    want = threshold_bits(pooled_acc, thr, direction)
    np.testing.assert_array_equal(pool_bits(bits, direction), want)
    layer = MaxPoolLayer("p", h, w, c, direction)
    none, out = layer.forward(B.pack_bits(bits.reshape(batch, -1)))
    assert none is None and layer.out_features == ho * wo * c
    np.testing.assert_array_equal(B.unpack_bits(out, layer.out_features), want.reshape(batch, -1))


def test_conv_then_pool_matches_pooling_before_the_threshold():
    rng = np.random.default_rng(7)
    layer, w_pm1 = random_conv(rng, 5, 6, 3, 8, "binary", 1)
    x = rng.choice([-1, 1], size=(4, 5, 6, 3))
    _, bits = layer.forward(B.pack_bits(x.reshape(4, -1) > 0))
    _, pooled = MaxPoolLayer("p", 5, 6, 8, layer.direction).forward(bits)
    acc = ref_conv(x, w_pm1, -1)[:, :4, :6].reshape(4, 2, 2, 3, 2, 8).max(axis=(2, 4))
    want = threshold_bits(acc, layer.threshold, layer.direction)
    np.testing.assert_array_equal(B.unpack_bits(pooled, 2 * 3 * 8), want.reshape(4, -1))


def test_layer_types_are_registered():
    assert LAYER_TYPES["conv3x3"] is ConvLayer and LAYER_TYPES["maxpool2x2"] is MaxPoolLayer


# ------------------------------------------------------------ hardware side (planned)

@pytest.mark.parametrize("cin,kind,K", [(64, "binary", 32), (20, "binary", 16), (1, "unsigned", 16),
                                        (3, "unsigned", 8)])
def test_weight_rows_are_tap_major_words(cin, kind, K):
    rng = np.random.default_rng(cin)
    layer, w_pm1 = random_conv(rng, 4, 4, cin, 5, kind, 1 if kind == "binary" else 4)
    rows = layer.overlay_weight_rows(K)
    in_words = layer.overlay_shape(ArrayConfig.parse(f"2x2x{K}")).in_words
    assert rows.shape == (5, in_words * K // 8)
    flat = w_pm1.reshape(5, -1) > 0                              # tap-major (ky, kx, c)
    if kind == "binary":
        per_tap = -(-cin // K)
        assert in_words == 9 * per_tap
        got = B.unpack_bits(rows, in_words * K).reshape(5, 9, per_tap * K)
        np.testing.assert_array_equal(got[:, :, :cin], flat.reshape(5, 9, cin))
        assert not got[:, :, cin:].any()                         # per-tap padding is 0
    else:
        assert in_words == -(-9 * cin // K)
        np.testing.assert_array_equal(B.unpack_bits(rows, 9 * cin), flat)


def test_weight_and_threshold_images_use_the_dense_addressing():
    cfg = ArrayConfig.parse("2x2x8")
    rng = np.random.default_rng(1)
    layer, _ = random_conv(rng, 3, 3, 8, 3, "binary", 1)         # in_words 9, m_tiles 2
    img = layer.overlay_weight_image(cfg)
    rows = layer.overlay_weight_rows(8)
    assert len(img) == 2 * 9 * 2
    for t in range(2):
        for w in range(9):
            for i in range(2):
                c = t * 2 + i
                assert img[(t * 9 + w) * 2 + i] == (rows[c, w] if c < 3 else 0)
    thr = np.frombuffer(layer.overlay_threshold_image(cfg), "<u4")
    assert len(thr) == 4 and all(bool(thr[c] >> 31) == (layer.direction[c] < 0) for c in range(3))


def test_cycle_model_is_the_dense_formula_over_output_pixels():
    cfg = ArrayConfig.parse("4x8x32")
    layer = ConvLayer("c", 28, 28, 64, 64, "binary", 1, np.zeros((64, 72), np.uint8))
    shape = layer.overlay_shape(cfg)
    assert shape == (18, 32, 16, 18, 2)
    assert shape.in_words == -(-9 * 64 // 32)                    # K | C_in: ceil(9·C_in/K)
    G = -(-2 * 28 * 28 // 8)
    assert layer.overlay_cycles(cfg, 2) == 1 + (G * 16 - 1) * 18 + 18 + cfg.write_delay
    assert 0.99 < layer.overlay_utilisation(cfg, 2) <= 1
    first = ConvLayer("c0", 28, 28, 1, 64, "unsigned", 8, np.zeros((64, 2), np.uint8))
    assert first.overlay_shape(cfg).tile_words == 8              # ceil(9/32) words × 8 planes
    assert first.overlay_cycles(cfg, 1, first=True) == cfg.desc_fetch + 1 + (98 * 16 - 1) * 8 + 8 + \
        cfg.write_delay
    pool = MaxPoolLayer("p", 28, 28, 64, np.ones(64, np.int8))
    assert pool.overlay_cycles(cfg, 2) == 0                              # fused into the conv's writer


def test_conv_descriptor_fields_are_the_walkers_products():
    cfg = ArrayConfig.parse("2x8x8")
    layer = ConvLayer("conv3", 6, 10, 9, 8, "binary", 1, np.zeros((8, 11), np.uint8))
    pool = MaxPoolLayer("pool4", 6, 10, 8, np.ones(8, np.int8))
    d = mm.decode_descriptor(mm.encode_descriptor(**layer.overlay_descriptor(cfg, 5, 7, False,
                                                                             fused=pool)))
    assert d["op"] == mm.OP_CONV3X3 | mm.FLAG_POOL
    assert (d["in_words"], d["last_bits"], d["m_tiles"], d["out_words"]) == (18, 1, 4, 1)
    assert (d["w_base"], d["t_base"], d["groups"], d["height"], d["width"]) == (5, 7, 8, 6, 10)
    # two words per pixel; a group moves Q/2 = 4 pixels along two rows
    assert (d["pix_words"], d["row_words"], d["out_units"]) == (2, 20, 15)
    assert (d["step_words"], d["wrap_words"]) == (8, (4 + 10) * 2)
    first = ConvLayer("c0", 6, 10, 1, 9, "unsigned", 3, np.zeros((9, 2), np.uint8))
    d = first.overlay_descriptor(cfg, 0, 0, False)
    assert d["op"] == mm.OP_CONV3X3 | mm.FLAG_UNSIGNED and d["out_units"] == 60
    assert d["step_words"] == d["wrap_words"] == 8                 # row-major: Q pixels
    with pytest.raises(ConvNotOnCoreError, match="pool1.*writer of the conv"):
        MaxPoolLayer("pool1", 4, 4, 2, np.ones(2, np.int8)).overlay_descriptor(cfg, 0, 0, False)
