"""sw/layers/dataflow_pack.py: the writes, beats and constants it makes, read back by a plain
Python model of what the engine (hw/dataflow/mvu.py) does with them, equal the golden model
over many random shapes (fast; the gateware itself is checked in hw/dataflow/test_mvu.py)."""
import numpy as np
import pytest

from xnorflow.hw.dataflow.shape import MvuShape
from xnorflow.sw import bits as B
from xnorflow.sw.layers.dataflow_pack import (decode_mvu_output, encode_mvu_input, mvu_shape,
                                     pack_layer, pack_mvu_channels, pack_mvu_weights)
from xnorflow.sw.layers.dense import DenseLayer
from xnorflow.sw.random_models import random_thresholds


def engine_model(shape, writes, beats):
    """The engine's arithmetic on its memories (filled by ``writes``) and input ``beats``:
    padding lanes cleared, U = Σ_b 2^b·popcount(XNOR(x_b, w)) per fold, then the channel
    word's compare or offset; returns the output beats per image."""
    S, P, k = shape.simd, shape.pe, shape.input_bits
    SF, NF = shape.synapse_folds, shape.neuron_folds
    mems = {}
    for sel, addr, word in writes:
        assert 0 <= sel < shape.selects and 0 <= addr < 1 << shape.write_addr_width
        assert 0 <= word < 1 << shape.write_data_width
        mems[sel, addr] = word
    out = []
    for image in beats:
        lanes = []
        for sf, beat in enumerate(image):
            real = S if sf < SF - 1 else shape.last_beat_elements
            lanes += [(beat >> (k * j)) & ((1 << k) - 1) if j < real else 0 for j in range(S)]
        image_out = []
        for nf in range(NF):
            beat = 0
            for p in range(P):
                u = 0
                for sf in range(SF):
                    w = mems[shape.weight_select(p), nf * SF + sf]
                    for j in range(S):
                        x = lanes[sf * S + j]
                        for b in range(k):
                            u += (((x >> b) & 1) == ((w >> j) & 1)) << b
                if shape.output == "threshold":
                    word = mems[shape.channel_select(p), nf]
                    value = int((u >= word % (1 << shape.threshold_width))
                                ^ (word >> shape.threshold_width))
                    beat |= value << p
                else:
                    if shape.input_kind == "binary":
                        value = 2 * u - shape.binary_offset
                    else:
                        value = u - mems[shape.channel_select(p), nf]
                    beat |= (value % (1 << shape.acc_width)) << (p * shape.acc_width)
            image_out.append(beat)
        out.append(image_out)
    return out


def random_case(rng):
    n, m = int(rng.integers(1, 40)), int(rng.integers(1, 12))
    kind = rng.choice(["binary", "unsigned"])
    k = 1 if kind == "binary" else int(rng.integers(1, 9))
    output = str(rng.choice(["threshold", "raw"]))
    layer = DenseLayer("fc", n, m, str(kind), k,
                       B.pack_bits(rng.integers(0, 2, size=(m, n)).astype(bool)), output)
    if output == "threshold":
        lo, hi = layer.acc_range()
        layer.threshold, layer.direction = random_thresholds(rng, lo, hi, m)
        sums = layer.dot(inputs(rng, layer, 8))
        typical = rng.random(m) < 0.8
        layer.threshold[typical] = sums[rng.integers(0, 8, size=m), np.arange(m)][typical]
    return layer, int(rng.integers(1, n + 1)), int(rng.integers(1, m + 1))


def inputs(rng, layer, batch):
    if layer.input_kind == "binary":
        return B.pack_bits(rng.integers(0, 2, size=(batch, layer.in_features)).astype(bool))
    return rng.integers(0, 1 << layer.input_bits, size=(batch, layer.in_features),
                        dtype=np.uint8)


def test_packed_layer_through_the_engine_model_equals_golden():
    rng = np.random.default_rng(0)
    for _ in range(150):
        layer, simd, pe = random_case(rng)
        shape = mvu_shape(layer, simd, pe)
        x = inputs(rng, layer, 3)
        beats = encode_mvu_input(x, shape)
        # garbage in the last beat's padding lanes: the engine ignores it
        pad_lo = shape.last_beat_elements * shape.input_bits
        beats = [b[:-1] + [b[-1] | (int(rng.integers(1 << 30)) << pad_lo)] for b in beats]
        got = decode_mvu_output(engine_model(shape, pack_layer(layer, simd, pe), beats),
                                shape)
        np.testing.assert_array_equal(got, layer.forward(x)[1], err_msg=str(shape))


def test_weight_writes_follow_the_documented_location():
    rng = np.random.default_rng(1)
    n, m, simd, pe = 21, 7, 5, 3
    w = rng.integers(0, 2, size=(m, n)).astype(bool)
    shape = MvuShape(n, m, simd, pe)
    words = {(sel, addr): word for sel, addr, word in
             pack_mvu_weights(B.pack_bits(w), n, m, simd, pe)}
    assert len(words) == pe * shape.weight_depth
    for c in range(m):
        for i in range(n):
            sel, addr, bit = shape.weight_location(c, i)
            assert (words[sel, addr] >> bit) & 1 == w[c, i]
    # padding (inputs past N, channels past M) is stored 0
    for (sel, addr), word in words.items():
        nf, sf = divmod(addr, shape.synapse_folds)
        for j in range(simd):
            if sf * simd + j >= n or nf * pe + sel >= m:
                assert not (word >> j) & 1


def test_padding_channels_are_always_zero_and_saturated_thresholds_stay_saturated():
    shape = MvuShape(10, 5, 4, 3)                       # channel 5 is padding
    w = B.pack_bits(np.ones((5, 10), dtype=bool))
    lo, hi = -10, 10
    writes = pack_mvu_channels(shape, w, np.array([lo - 1, hi + 1, lo - 500, hi + 500, 0]),
                               np.array([1, 1, -1, -1, 1]))
    table = {(sel, addr): word for sel, addr, word in writes}
    assert set(table) == {shape.channel_location(c) for c in range(6)}
    tw = shape.threshold_width
    for c, want in enumerate([1, 0, 0, 1, None, 0]):   # channel 4 (T = 0) is not saturated
        word = table[shape.channel_location(c)]
        t_star, inv = word % (1 << tw), word >> tw
        assert t_star <= shape.u_max + 1                  # clamped into the word
        if want is not None:                              # every reachable U (padding agrees)
            reachable = range(shape.padding_inputs, shape.simd * shape.synapse_folds + 1)
            assert {int((u >= t_star) ^ inv) for u in reachable} == {want}, c


@pytest.mark.parametrize("weights, message", [
    (np.zeros((4, 1), np.uint8), "do not hold 5 rows of 10 bits"),
    (np.zeros((5,), np.uint8), "do not hold 5 rows"),
])
def test_bad_weight_arrays_are_named(weights, message):
    with pytest.raises(ValueError, match=message):
        pack_mvu_weights(weights, 10, 5, 4, 2)


def test_bad_inputs_and_outputs_are_named():
    shape = MvuShape(6, 4, 3, 2, 2)
    with pytest.raises(ValueError, match="above 2 bits"):
        encode_mvu_input(np.full((1, 6), 4, np.uint8), shape)
    with pytest.raises(ValueError, match=r"expected \[B, 6\]"):
        encode_mvu_input(np.zeros((1, 5), np.uint8), shape)
    with pytest.raises(ValueError, match="2 output beats"):
        decode_mvu_output([[0]], shape)
    with pytest.raises(ValueError, match="thresholds and directions"):
        pack_mvu_channels(shape, np.zeros((4, 1), np.uint8))
