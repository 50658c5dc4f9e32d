"""Damaged data files (issue #23 item 6): every defect of an IDX or CIFAR-10 file is a
DatasetError naming the file and the field, for gzipped and plain IDX files alike; through
``xnorflow train``/``eval`` it is a one-line error with exit status 2 (the rows of
tests/bad_input_cases/train_data.py, run by tests/train/test_train_hardening.py)."""
import os
import pathlib
import pickle
import re
import sys

import numpy as np
import pytest

from xnorflow.sw import data

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bad_input_cases.train_data import (DAMAGED_IDX, good_idx_files, idx_bytes, write_damaged_idx,  # noqa: E402
                                        write_idx_dir)

STEMS = tuple(good_idx_files())


# Every row with all four files plain, then gzipped (only a gzipped file can be a corrupt gzip stream).
ROWS = [pytest.param(*row, gz, id=f"{row[0]}-{'gz' if gz else 'plain'}")
        for gz in (False, True) for row in DAMAGED_IDX if gz or row[0] != "corrupt-gz"]


@pytest.mark.parametrize("name,stem,text,gz", ROWS)
def test_damaged_idx_file_names_the_file_and_the_field(tmp_path, name, stem, text, gz):
    write_damaged_idx(tmp_path, name, STEMS if gz else ())
    with pytest.raises(data.DatasetError) as exc:
        data.load_dataset("mnist", str(tmp_path))
    message = str(exc.value)
    assert f"{tmp_path / stem}{'.gz' if gz else ''}{text}" in message
    assert "\n" not in message


def test_the_good_files_of_the_damaged_variants_load(tmp_path):
    """The rows differ from a loadable data set in one file only."""
    write_idx_dir(tmp_path, good_idx_files(), gzipped=STEMS[:2])
    ds = data.load_dataset("mnist", str(tmp_path))
    assert ds.x_train.shape == (3, 784) and ds.x_test.shape == (2, 784) and ds.image_shape == (28, 28, 1)


def test_the_class_count_is_ten_whatever_labels_occur(tmp_path):
    """Labels 0..4 only: still a 10-class data set (the count is never read from the labels)."""
    files = good_idx_files()
    files["train-labels-idx1-ubyte"] = idx_bytes(np.array([0, 4, 2]))
    files["t10k-labels-idx1-ubyte"] = idx_bytes(np.array([1, 3]))
    write_idx_dir(tmp_path, files)
    assert data.load_dataset("fashion-mnist", str(tmp_path)).num_classes == 10


def test_integer_images_of_another_type_load_when_their_values_fit(tmp_path):
    files = good_idx_files()
    pixels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    files["train-images-idx3-ubyte"] = idx_bytes(pixels, type_code=0x0C)
    write_idx_dir(tmp_path, files)
    ds = data.load_dataset("mnist", str(tmp_path))
    np.testing.assert_array_equal(ds.x_train, pixels.reshape(3, -1))
    assert ds.x_train.dtype == np.uint8


def _write_cifar(directory, n=2, data_of=None, labels_of=None):
    """Six CIFAR-10 batch files of ``n`` images; ``data_of(name)``/``labels_of(name)`` override one."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in data.CIFAR10_TRAIN_FILES + (data.CIFAR10_TEST_FILE,):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        x = data_of(name, x) if data_of else x
        y = labels_of(name, y) if labels_of else y
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump({b"data": x, b"labels": y}, f, protocol=pickle.HIGHEST_PROTOCOL)


@pytest.mark.parametrize("change,text", [
    (dict(data_of=lambda name, x: x.astype(np.float32) + 0.5 if name == "data_batch_2" else x),
     "data_batch_2: field 'data' has type float32"),
    (dict(data_of=lambda name, x: x.astype(np.int16) + 300 if name == "test_batch" else x),
     "test_batch: field 'data': pixel values must be 0..255"),
    (dict(data_of=lambda name, x: x[:0] if name == "data_batch_4" else x,
          labels_of=lambda name, y: [] if name == "data_batch_4" else y),
     "data_batch_4: field 'data' holds no images"),
    (dict(labels_of=lambda name, y: [y[0], 200] if name == "data_batch_1" else y),
     "data_batch_1: field 'labels': labels must be 0..9, found 200 at index 1"),
    (dict(labels_of=lambda name, y: [0.5, 1.0] if name == "data_batch_5" else y),
     "data_batch_5: field 'labels' has type float64"),
])
def test_damaged_cifar_batch_names_the_file_and_the_field(tmp_path, change, text):
    _write_cifar(tmp_path, **change)
    with pytest.raises(data.DatasetError, match=re.escape(f"cifar10: {tmp_path}/{text}")):
        data.load_dataset("cifar10", str(tmp_path))
