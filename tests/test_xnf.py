"""The compiled-model file: round trip, atomic writes, and one clear message per kind of damage."""
import json
import struct

import numpy as np
import pytest

from xnorflow.sw import bits as B, xnf
from xnorflow.sw.random_models import random_inputs, random_model


@pytest.fixture
def model():
    return random_model(np.random.default_rng(7), [64, 40, 33, 10], input_bits=4, name="t")


@pytest.fixture
def good(tmp_path, model):
    path = tmp_path / "m.xnf"
    xnf.save(model, path)
    return path


def _reload_equal(a, b):
    x = random_inputs(np.random.default_rng(0), a, 16)
    for (acc_a, out_a), (acc_b, out_b) in zip(a.forward(x), b.forward(x)):
        assert (acc_a == acc_b).all() and (out_a == out_b).all()
    assert (a.logits(x) == b.logits(x)).all()


def test_roundtrip(good, model):
    loaded = xnf.load(good)
    assert [layer.name for layer in loaded.layers] == ["fc1", "fc2", "fc3"]
    assert loaded.input.bits == 4 and loaded.input.features == 64
    _reload_equal(model, loaded)


def test_manifest_is_self_describing(good):
    data = good.read_bytes()
    magic, version, mlen, plen = struct.unpack_from("<8sHIQ", data)
    manifest = json.loads(data[22:22 + mlen])
    assert magic == b"XNORFLOW" and version == 1
    assert manifest["arrays"]["layers.0.weights"]["shape"] == [40, 8]
    assert len(data) == 22 + mlen + plen + 32


def _expect(path, *fragments):
    with pytest.raises(xnf.XnfError) as info:
        xnf.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return info.value


def test_truncated_file(good):
    data = good.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 30):
        good.write_bytes(data[:cut])
        _expect(good, "truncated")
    good.write_bytes(data[:12])
    _expect(good, "truncated", "header")


def test_flipped_byte_is_a_checksum_error(good):
    data = bytearray(good.read_bytes())
    for pos in (60, len(data) // 2, len(data) - 40, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        good.write_bytes(bytes(bad))
        err = _expect(good, "checksum mismatch", "corrupted")
        assert err.field == "sha256"


def test_unknown_version(good):
    data = bytearray(good.read_bytes())
    struct.pack_into("<H", data, 8, 99)
    good.write_bytes(bytes(data))
    err = _expect(good, "unknown format version 99", "reads version 1")
    assert err.field == "version"


def test_not_a_model_file(tmp_path):
    p = tmp_path / "x.xnf"
    p.write_text("hello, world")
    _expect(p, "not an xnorflow model file")
    _expect(tmp_path / "missing.xnf", "no such file")


def test_inconsistent_layer_sizes(tmp_path, model):
    rng = np.random.default_rng(3)
    layer = model.layers[1]
    layer.in_features = 41  # previous layer has 40 outputs
    layer.weights = B.pack_bits(rng.integers(0, 2, size=(layer.out_features, 41)).astype(bool))
    layer.threshold, layer.direction = layer.threshold, layer.direction
    p = tmp_path / "bad.xnf"
    p.write_bytes(xnf.to_bytes(model))
    err = _expect(p, "layer 'fc2'", "field 'in_features'", "41", "'fc1'", "40")
    assert err.layer == "fc2"


def test_threshold_out_of_range(tmp_path, model):
    model.layers[0].threshold = model.layers[0].threshold.copy()
    model.layers[0].threshold[5] = 64 * 15 + 2  # accumulator range is ±960
    p = tmp_path / "bad.xnf"
    p.write_bytes(xnf.to_bytes(model))
    err = _expect(p, "layer 'fc1'", "field 'threshold'", "channel 5", "outside [-961, 961]")
    assert err.field == "threshold"


def test_bad_direction_and_padding_and_shape(tmp_path, model):
    p = tmp_path / "bad.xnf"
    m = model
    m.layers[1].direction = m.layers[1].direction.copy()
    m.layers[1].direction[2] = 0
    p.write_bytes(xnf.to_bytes(m))
    _expect(p, "layer 'fc2'", "field 'direction'", "channel 2")
    m.layers[1].direction[2] = 1
    m.layers[2].weights = m.layers[2].weights.copy()
    m.layers[2].weights[0, -1] |= 0x80  # 33 inputs: bit 39 is padding
    p.write_bytes(xnf.to_bytes(m))
    _expect(p, "layer 'fc3'", "field 'weights'", "padding")
    m.layers[2].weights = m.layers[2].weights[:, :-1]
    p.write_bytes(xnf.to_bytes(m))
    _expect(p, "layer 'fc3'", "field 'weights'", "shape")


def test_save_refuses_an_invalid_model_and_leaves_nothing(tmp_path, model):
    target = tmp_path / "m.xnf"
    xnf.save(model, target)
    before = target.read_bytes()
    model.layers[0].threshold = model.layers[0].threshold + 10_000
    with pytest.raises(xnf.XnfError):
        xnf.save(model, target)
    assert target.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.xnf"]  # no temporary left over
