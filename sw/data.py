"""Datasets and the one input quantisation shared by training, compiler and simulator.

``load_dataset(name)`` returns raw pixel arrays (unquantised, as stored) plus labels, the
value that maps to full scale (``max_value``) and the class count. :func:`quantize_inputs`
turns raw pixels into the unsigned k-bit integers the accelerator's first layer consumes;
every part of xnorflow calls this one function so the integers agree everywhere.

* ``digits``: scikit-learn's 8×8 digits (ships with scikit-learn), pixel values 0..16, split
  80/20 stratified with a fixed seed (1437 train / 360 test).
* ``fashion-mnist``, ``mnist``: IDX files (``.gz`` or plain) in a directory, 28×28 pixels
  0..255, the official 60000/10000 split.
"""
import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np
from sw.errors import XnorflowError

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

DEFAULT_DIRS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist", "mnist": "dataset-mnist"}
DATASETS = ("digits", "fashion-mnist", "mnist")


class DatasetError(XnorflowError, RuntimeError):
    """A dataset could not be found or parsed; the message names the path and the remedy."""


@dataclass
class Dataset:
    """Raw arrays of one dataset: ``x_*`` are ``[n, features]`` raw pixel values (uint8)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    max_value: int
    num_classes: int

    @property
    def in_features(self):
        """Number of input features (pixels) per example."""
        return int(self.x_train.shape[1])


def quantize_inputs(raw, input_bits, max_value):
    """Raw pixel values → unsigned ``input_bits``-bit integers (uint8).

    ``clip(floor(raw / max_value · (2^k − 1) + 0.5), 0, 2^k − 1)``: round half up, computed in
    float64 so the result does not depend on the caller's dtype.
    """
    k = int(input_bits)
    if not 1 <= k <= 8:
        raise ValueError(f"input_bits must be in 1..8, got {input_bits}")
    top = (1 << k) - 1
    v = np.floor(np.asarray(raw, dtype=np.float64) / float(max_value) * top + 0.5)
    return np.clip(v, 0, top).astype(np.uint8)


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read one IDX file (``.gz`` or plain) into a numpy array of its stored shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    body = data[4 + 4 * ndim:]
    if len(body) != count * dtype.itemsize:
        raise DatasetError(f"{path}: expected {count * dtype.itemsize} data bytes for shape {dims}, "
                           f"found {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(directory, stem):
    """Locate ``stem`` (e.g. ``train-images-idx3-ubyte``) in ``directory``, gz or plain, '-' or '.'."""
    variants = [stem, stem.replace("-idx", ".idx")]
    for v in variants:
        for suffix in (".gz", ""):
            p = os.path.join(directory, v + suffix)
            if os.path.isfile(p):
                return p
    return None


def load_idx_dataset(name, data_dir=None):
    """Load an MNIST-format dataset (``train-``/``t10k-`` images and labels) from ``data_dir``."""
    directory = data_dir or DEFAULT_DIRS.get(name)
    pkg = DEBIAN_PACKAGES.get(name)
    hint = f" (install the Debian package `{pkg}` or pass --data-dir)" if pkg else " (pass --data-dir)"
    if not directory or not os.path.isdir(directory):
        raise DatasetError(f"{name}: data directory {directory} does not exist{hint}")
    arrays = {}
    for split in ("train", "t10k"):
        for kind, idx in (("images", "idx3"), ("labels", "idx1")):
            stem = f"{split}-{kind}-{idx}-ubyte"
            path = _find_idx(directory, stem)
            if path is None:
                raise DatasetError(f"{name}: {stem}[.gz] not found in {directory}{hint}")
            arrays[(split, kind)] = read_idx(path)
    xtr = arrays[("train", "images")].reshape(len(arrays[("train", "images")]), -1).astype(np.uint8)
    xte = arrays[("t10k", "images")].reshape(len(arrays[("t10k", "images")]), -1).astype(np.uint8)
    ytr = arrays[("train", "labels")].astype(np.int64)
    yte = arrays[("t10k", "labels")].astype(np.int64)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise DatasetError(f"{name}: image and label counts differ in {directory}")
    return Dataset(name, xtr, ytr, xte, yte, max_value=255, num_classes=int(max(ytr.max(), yte.max()) + 1))


def load_digits_dataset():
    """scikit-learn digits, fixed stratified 80/20 split (seed ``DIGITS_SPLIT_SEED``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.uint8)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, stratify=y,
                                          random_state=DIGITS_SPLIT_SEED)
    return Dataset("digits", xtr, ytr, xte, yte, max_value=16, num_classes=10)


def load_dataset(name, data_dir=None):
    """Load ``digits``, ``fashion-mnist`` or ``mnist`` as a :class:`Dataset` of raw arrays."""
    if name == "digits":
        return load_digits_dataset()
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, data_dir)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
