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
import math
import os
import pickle
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from xnorflow.sw.errors import XnorflowError

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


# IDX type codes: (name in the IDX description, numpy dtype; multi-byte values are big-endian).
_IDX_TYPES = {0x08: ("unsigned byte", np.uint8), 0x09: ("signed byte", np.int8), 0x0B: ("short", ">i2"),
              0x0C: ("int", ">i4"), 0x0D: ("float", ">f4"), 0x0E: ("double", ">f8")}
IDX_CLASSES = 10
"""MNIST and Fashion-MNIST have ten classes; the count is never read from the labels, where a
damaged label (200) would silently make a 201-class model."""
IDX_MAX_VALUE = 255


def _read_bytes(path):
    """The whole content of ``path`` (gunzipped when it ends in ``.gz``)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # EOFError, zlib.error: a truncated or corrupt .gz
        raise DatasetError(f"cannot read IDX file {path}: {e or type(e).__name__}") from None


def read_idx(path):
    """Read one IDX file (``.gz`` or plain) into a numpy array of its stored shape.

    The header is magic ``00 00 TYPE NDIM`` then NDIM big-endian uint32 dimensions; every
    inconsistency (truncated header, NDIM 0, a payload shorter or longer than the
    dimensions say) raises :class:`DatasetError` naming the file and the field."""
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if ndim == 0:
        raise DatasetError(f"{path}: header field ndim is 0 (an IDX array has at least one dimension)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: header truncated: ndim {ndim} needs a {header}-byte header, the file "
                           f"has {len(data)} bytes")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    type_name, dtype = _IDX_TYPES[code]
    dtype = np.dtype(dtype)
    expected = math.prod(dims) * dtype.itemsize
    body = data[header:]
    if len(body) != expected:
        raise DatasetError(f"{path}: expected {expected} data bytes for the header's dimensions "
                           f"{'x'.join(map(str, dims))} of {type_name}s, found {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _type_of(array):
    """``"float32 (IDX type code 0x0D)"``: how a message names an array's stored type."""
    code = next((c for c, (_, t) in _IDX_TYPES.items() if np.dtype(t).newbyteorder("=") == array.dtype), None)
    return f"{array.dtype}" + (f" (IDX type code 0x{code:02X})" if code is not None else "")


def _check_images(path, images):
    """An images file holds ``[count, rows, columns]`` integer pixels 0..255, at least one image."""
    if images.ndim != 3:
        raise DatasetError(f"{path}: header field ndim is {images.ndim}; an images file has 3 dimensions "
                           f"(count, rows, columns)")
    if not np.issubdtype(images.dtype, np.integer):
        raise DatasetError(f"{path}: data type {_type_of(images)}; images must be integer pixels "
                           f"(unsigned byte, type code 0x08)")
    count, rows, cols = images.shape
    if count == 0:
        raise DatasetError(f"{path}: header dimension 0 (the image count) is 0: no images")
    if rows == 0 or cols == 0:
        raise DatasetError(f"{path}: header dimensions give {rows}x{cols}-pixel images")
    low, high = int(images.min()), int(images.max())
    if low < 0 or high > IDX_MAX_VALUE:
        raise DatasetError(f"{path}: pixel values must be 0..{IDX_MAX_VALUE}, found {low}..{high}")


def _check_labels(path, labels, classes=IDX_CLASSES):
    """A labels file holds ``[count]`` integer labels in ``0..classes-1``."""
    if labels.ndim != 1:
        raise DatasetError(f"{path}: header field ndim is {labels.ndim}; a labels file has 1 dimension (count)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: data type {_type_of(labels)}; labels must be integers "
                           f"(unsigned byte, type code 0x08)")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise DatasetError(f"{path}: labels must be 0..{classes - 1} ({classes} classes), found "
                           f"{int(labels[bad[0]])} at index {int(bad[0])}")


def _find_idx(directory, stem):
    """Locate ``stem`` (e.g. ``train-images-idx3-ubyte``) in ``directory``, gz or plain, '-' or '.'."""
    variants = [stem, stem.replace("-idx", ".idx")]
    for v in variants:
        for suffix in (".gz", ""):
            p = os.path.join(directory, v + suffix)
            if os.path.isfile(p):
                return p
    return None


def _load_split(name, directory, split, hint):
    """``(images [n, rows, cols] uint8, labels [n] int64, images path)`` of one split, checked."""
    paths = {}
    for kind, idx in (("images", "idx3"), ("labels", "idx1")):
        stem = f"{split}-{kind}-{idx}-ubyte"
        paths[kind] = _find_idx(directory, stem)
        if paths[kind] is None:
            raise DatasetError(f"{name}: {stem}[.gz] not found in {directory}{hint}")
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    _check_images(paths["images"], images)
    _check_labels(paths["labels"], labels)
    if len(images) != len(labels):
        raise DatasetError(f"{name}: {paths['images']} holds {len(images)} images but {paths['labels']} "
                           f"{len(labels)} labels")
    return images.astype(np.uint8), labels.astype(np.int64), paths["images"]


def load_idx_dataset(name, data_dir=None):
    """Load an MNIST-format dataset (``train-``/``t10k-`` images and labels) from ``data_dir``."""
    directory = data_dir or DEFAULT_DIRS.get(name)
    pkg = DEBIAN_PACKAGES.get(name)
    hint = f" (install the Debian package `{pkg}` or pass --data-dir)" if pkg else " (pass --data-dir)"
    if not directory or not os.path.isdir(directory):
        raise DatasetError(f"{name}: data directory {directory} does not exist{hint}")
    xtr, ytr, train_path = _load_split(name, directory, "train", hint)
    xte, yte, test_path = _load_split(name, directory, "t10k", hint)
    if xtr.shape[1:] != xte.shape[1:]:
        raise DatasetError(f"{name}: {train_path} holds {xtr.shape[1]}x{xtr.shape[2]} images but {test_path} "
                           f"{xte.shape[1]}x{xte.shape[2]}: train and test images must have one size")
    image = (int(xtr.shape[1]), int(xtr.shape[2]), 1)
    return Dataset(name, xtr.reshape(len(xtr), -1), ytr, xte.reshape(len(xte), -1), yte, max_value=IDX_MAX_VALUE,
                   num_classes=IDX_CLASSES, image_shape=image)


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
    labels = np.asarray(entries["labels"])
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels) or labels.ndim != 1:
        raise DatasetError(f"cifar10: {path}: expected data [n, 3072] and n labels, got "
                           f"{list(data.shape)} and {len(labels)}")
    if len(data) == 0:
        raise DatasetError(f"cifar10: {path}: field 'data' holds no images")
    if not np.issubdtype(data.dtype, np.integer):
        raise DatasetError(f"cifar10: {path}: field 'data' has type {data.dtype}; images must be integer "
                           f"pixels (uint8)")
    if int(data.min()) < 0 or int(data.max()) > 255:
        raise DatasetError(f"cifar10: {path}: field 'data': pixel values must be 0..255, found "
                           f"{int(data.min())}..{int(data.max())}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"cifar10: {path}: field 'labels' has type {labels.dtype}; labels must be integers")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise DatasetError(f"cifar10: {path}: field 'labels': labels must be 0..9, found "
                           f"{int(labels[bad[0]])} at index {int(bad[0])}")
    labels = labels.astype(np.int64)
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
