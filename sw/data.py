"""Datasets and the one input quantisation shared by training, compiler and simulator.

``load_dataset(name)`` returns raw pixel arrays (unquantised, as stored) plus labels, the
value that maps to full scale (``max_value``) and the class count. :func:`quantize_inputs`
turns raw pixels into the unsigned k-bit integers the accelerator's first layer consumes;
every part of xnorflow calls this one function so the integers agree everywhere.

* ``digits``: scikit-learn's 8×8 digits (ships with scikit-learn), pixel values 0..16, split
  80/20 stratified with a fixed seed (1437 train / 360 test).
* ``fashion-mnist``, ``mnist``: IDX files (``.gz`` or plain) in a directory, 28×28 pixels
  0..255, the official 60000/10000 split.
* ``cifar10``: the python-pickle batches of CIFAR-10 (``data_batch_1`` … ``data_batch_5``,
  ``test_batch``, as in ``cifar-10-python.tar.gz``) in a directory, 32×32×3 pixels 0..255,
  50000/10000. Images are returned HWC-flattened (``(y·32 + x)·3 + c``), the layout of the
  conv layers (docs/conv.md); the files store each image as three 1024-byte colour planes.

Images are flat ``[n, H·W·C]`` arrays; :attr:`Dataset.image_shape` is ``(H, W, C)``.
"""
import gzip
import os
import pickle
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
DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10")
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"


class DatasetError(XnorflowError, RuntimeError):
    """A dataset could not be found or parsed; the message names the path and the remedy."""


@dataclass
class Dataset:
    """Raw arrays of one dataset: ``x_*`` are ``[n, features]`` raw pixel values (uint8);
    ``image_shape`` is ``(H, W, C)`` of the HWC-flattened images (None: unknown)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    max_value: int
    num_classes: int
    image_shape: tuple | None = None

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
    shape = arrays[("train", "images")].shape
    image = (int(shape[1]), int(shape[2]), 1) if len(shape) == 3 else None
    return Dataset(name, xtr, ytr, xte, yte, max_value=255, num_classes=int(max(ytr.max(), yte.max()) + 1),
                   image_shape=image)


def load_digits_dataset():
    """scikit-learn digits, fixed stratified 80/20 split (seed ``DIGITS_SPLIT_SEED``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.uint8)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, stratify=y,
                                          random_state=DIGITS_SPLIT_SEED)
    return Dataset("digits", xtr, ytr, xte, yte, max_value=16, num_classes=10, image_shape=(8, 8, 1))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle can run any code it names,
    so a CIFAR batch file may name nothing but numpy's array reconstruction."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # how protocol-2 pickles written by Python 3 store bytes

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path):
    """(images uint8 [n, 3072] HWC-flattened, labels int64 [n]) of one CIFAR-10 batch file."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"cifar10: cannot read {path}: {e}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"cifar10: {path} is not a CIFAR-10 batch (not a dict)")
    # Files written by Python 2 (the official ones) have bytes keys; accept str keys too.
    entries = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in entries or "labels" not in entries:
        raise DatasetError(f"cifar10: {path} has no 'data'/'labels' entries (keys: "
                           f"{sorted(entries)})")
    data = np.asarray(entries["data"])
    labels = np.asarray(entries["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DatasetError(f"cifar10: {path}: expected data [n, 3072] and n labels, got "
                           f"{list(data.shape)} and {len(labels)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"cifar10: {path}: labels must be 0..9")
    n = len(data)
    # Stored per image as R, G, B planes of 32×32 (CHW); xnorflow's images are HWC.
    hwc = data.astype(np.uint8).reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).reshape(n, 3072)
    return np.ascontiguousarray(hwc), labels


def load_cifar10(data_dir):
    """CIFAR-10 from the python-pickle batch files in ``data_dir`` (or its
    ``cifar-10-batches-py`` subdirectory, as the official archive unpacks)."""
    hint = " (unpack cifar-10-python.tar.gz and pass its cifar-10-batches-py directory as --data-dir)"
    if not data_dir or not os.path.isdir(data_dir):
        raise DatasetError(f"cifar10: data directory {data_dir} does not exist{hint}")
    sub = os.path.join(data_dir, "cifar-10-batches-py")
    directory = sub if not os.path.isfile(os.path.join(data_dir, CIFAR10_TEST_FILE)) \
        and os.path.isdir(sub) else data_dir
    parts = {}
    for name in CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise DatasetError(f"cifar10: {name} not found in {directory}{hint}")
        parts[name] = _read_cifar_batch(path)
    xtr = np.concatenate([parts[n][0] for n in CIFAR10_TRAIN_FILES])
    ytr = np.concatenate([parts[n][1] for n in CIFAR10_TRAIN_FILES])
    xte, yte = parts[CIFAR10_TEST_FILE]
    return Dataset("cifar10", xtr, ytr, xte, yte, max_value=255, num_classes=10, image_shape=(32, 32, 3))


def load_dataset(name, data_dir=None):
    """Load ``digits``, ``fashion-mnist``, ``mnist`` or ``cifar10`` as a :class:`Dataset` of raw arrays."""
    if name == "digits":
        return load_digits_dataset()
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, data_dir)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
