"""Datasets: IDX parsing (gz and plain, files written here), digits split, the one input quantiser."""
import gzip
import struct

import numpy as np
import pytest

from xnorflow.sw import data


def _write_idx(path, arr, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    blob = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, 7, dtype=np.uint8)
    xte = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    yte = np.array([9, 0, 4], dtype=np.uint8)
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", ytr, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", xte, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", yte, gz)
    ds = data.load_dataset("fashion-mnist", str(tmp_path))
    np.testing.assert_array_equal(ds.x_train, xtr.reshape(7, -1))
    np.testing.assert_array_equal(ds.x_test, xte.reshape(3, -1))
    np.testing.assert_array_equal(ds.y_train, ytr)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert ds.max_value == 255 and ds.num_classes == 10 and ds.in_features == 784


def test_idx_errors(tmp_path):
    with pytest.raises(data.DatasetError, match="/definitely/missing.*dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist", "/definitely/missing")
    with pytest.raises(data.DatasetError, match="train-images-idx3-ubyte.*not found"):
        data.load_dataset("mnist", str(tmp_path))
    bad = tmp_path / "x"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(data.DatasetError, match="bad magic"):
        data.read_idx(str(bad))
    short = tmp_path / "y"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(data.DatasetError, match="expected 10 data bytes"):
        data.read_idx(str(short))


def test_digits_split_is_fixed_and_stratified():
    a, b = data.load_dataset("digits"), data.load_dataset("digits")
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    counts = np.bincount(a.y_test)
    assert counts.min() >= 35 and counts.max() <= 37
    assert a.max_value == 16 and a.x_train.max() <= 16


def test_quantize_inputs():
    raw = np.array([0, 1, 7, 8, 9, 16, 17, -3])
    np.testing.assert_array_equal(data.quantize_inputs(raw, 4, 16), [0, 1, 7, 8, 8, 15, 15, 0])
    # round half up: 8/16·15 = 7.5 → 8; 0.5 exactly at k=1: 8/16·1 = 0.5 → 1
    np.testing.assert_array_equal(data.quantize_inputs([8], 4, 16), [8])
    np.testing.assert_array_equal(data.quantize_inputs([7, 8], 1, 16), [0, 1])
    x = np.arange(256)
    np.testing.assert_array_equal(data.quantize_inputs(x, 8, 255), x)
    assert data.quantize_inputs(x, 3, 255).dtype == np.uint8
    with pytest.raises(ValueError, match="input_bits"):
        data.quantize_inputs(x, 9, 255)


def test_random_shift_moves_pixels_and_keeps_integers():
    import torch
    from xnorflow.sw.train.trainer import random_shift
    img = torch.zeros(50, 6, 6)
    img[:, 2, 3] = 7.0
    out = random_shift(6, 1)(img.reshape(50, 36), torch.Generator().manual_seed(0)).reshape(50, 6, 6)
    assert torch.equal(out.sum((1, 2)), torch.full((50,), 7.0))  # the pixel moved, never lost
    pos = out.reshape(50, -1).argmax(1)
    rows, cols = pos // 6, pos % 6
    assert ((rows - 2).abs() <= 1).all() and ((cols - 3).abs() <= 1).all()
    assert len(set(pos.tolist())) > 3  # different samples get different shifts


def test_random_flip_mirrors_about_half_the_batch_and_chains_with_shift():
    import torch
    from xnorflow.sw.train.trainer import chain, random_flip, random_shift
    img = torch.zeros(200, 6, 6)
    img[:, 2, 1] = 5.0
    out = random_flip(6)(img.reshape(200, 36), torch.Generator().manual_seed(0)).reshape(200, 6, 6)
    mirrored = out[:, 2, 4] == 5.0
    assert torch.equal(mirrored | (out[:, 2, 1] == 5.0), torch.ones(200, dtype=torch.bool))  # kept or mirrored
    assert 60 < int(mirrored.sum()) < 140
    assert chain(None, None) is None
    both = chain(random_shift(6, 1), random_flip(6))(img.reshape(200, 36), torch.Generator().manual_seed(1))
    cols = both.reshape(200, 6, 6).sum((0, 1)).nonzero().flatten().tolist()
    assert set(cols) == {0, 1, 2, 3, 4, 5}  # shifted around column 1 and mirrored around column 4
