"""Bad values for ``train``, damaged data files and malicious ``.pt`` files (issue #23 items
1, 4, 5, 6 and 9). Every row must fail before any training, with exit status 2 and the text
(which never holds a placeholder).

``make_files(tmp)`` writes, under ``tmp``: one directory of IDX files per defect (``idx-…``,
gzipped and plain), ``.pt`` files whose pickle would create ``tmp/MARKER`` when loaded
unsafely, and output directories in the states the ``--out`` rows need.
"""
import gzip
import os
import pathlib
import struct

_TRAIN = ["train", "--method", "ste", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet"]


def _train(*extra, out="{tmp}/o"):
    return [*_TRAIN, *extra, "--out", out]


def _train_idx(name):
    """``train`` on the IDX files in ``{tmp}/idx-NAME``."""
    return ["train", "--method", "ste", "--dataset", "mnist", "--data-dir", "{tmp}/idx-" + name, "--epochs", "1",
            "--hidden", "16", "--quiet", "--out", "{tmp}/o-" + name]


def _eval_idx(name):
    """``eval`` of a compiled model on the IDX files in ``{tmp}/idx-NAME`` (the data is read first)."""
    return ["eval", "{model}", "--dataset", "mnist", "--data-dir", "{tmp}/idx-" + name]


# (directory under tmp, the damaged file, what the message says after naming it): one defect
# per directory (see damaged_idx_files); the file is gzipped when it is in GZIPPED.
DAMAGED_IDX = [
    ("truncated-header", "train-images-idx3-ubyte", ": header truncated: ndim 3 needs a 16-byte header"),
    ("ndim-0", "train-images-idx3-ubyte", ": header field ndim is 0"),
    ("ndim-2", "t10k-images-idx3-ubyte", ": header field ndim is 2; an images file has 3 dimensions"),
    ("zero-images", "train-images-idx3-ubyte", ": header dimension 0 (the image count) is 0"),
    ("payload-short", "train-images-idx3-ubyte", ": expected 2352 data bytes for the header's dimensions 3x28x28"),
    ("payload-long", "t10k-labels-idx1-ubyte", ": expected 2 data bytes for the header's dimensions 2"),
    ("float-images", "train-images-idx3-ubyte", ": data type float32 (IDX type code 0x0D)"),
    ("label-200", "train-labels-idx1-ubyte", ": labels must be 0..9 (10 classes), found 200 at index 1"),
    ("pixels-out-of-range", "t10k-images-idx3-ubyte", ": pixel values must be 0..255, found 300..300"),
    ("count-mismatch", "train-images-idx3-ubyte", " holds 3 images but"),
    ("train-test-sizes", "train-images-idx3-ubyte", " holds 28x28 images but"),
    ("bad-magic", "train-labels-idx1-ubyte", " is not an IDX file (bad magic number)"),
    ("corrupt-gz", "train-images-idx3-ubyte", ": Compressed file ended before the end-of-stream marker"),
]
# Which files the table's directories gzip: both forms of the loader are in the table.
GZIPPED = {"truncated-header": {"train-images-idx3-ubyte"}, "ndim-2": {"t10k-images-idx3-ubyte"},
           "payload-short": {"train-images-idx3-ubyte"}, "label-200": {"train-labels-idx1-ubyte"},
           "corrupt-gz": {"train-images-idx3-ubyte"}}


def idx_expected(name, stem, text, gzipped):
    """The text a damaged IDX row prints: the file's name (``.gz`` when gzipped), then the field."""
    return stem + (".gz" if stem in gzipped else "") + text


MALICIOUS = "not an xnorflow"

CASES = [
    # item 4: values refused by argparse, naming the option
    (_train("--lr", "inf"), "--lr"),
    (_train("--lr", "nan"), "--lr"),
    (_train("--lr", "-1"), "--lr"),
    (_train("--teacher-lr", "inf"), "--teacher-lr"),
    (_train("--distill-temperature", "nan"), "--distill-temperature"),
    (_train("--weight-decay", "inf"), "--weight-decay"),
    (_train("--state-every", "inf"), "--state-every"),
    (_train("--hidden", "1000000000"), "--hidden"),
    (_train("--teacher-hidden", "16,1000000000"), "--teacher-hidden"),
    (_train("--arch", "cnv:1000000000,p"), "--arch"),
    (_train("--augment-shift", "-1"), "--augment-shift"),
    (_train("--batch-size", "1"), "--batch-size"),
    (_train("--seed", "-1"), "--seed"),
    (_train("--threads", "100000"), "--threads"),
    (_train("--input-bits", "0"), "--input-bits"),
    (_train("--epochs", "0"), "--epochs"),
    # item 4: values only the data can refuse (before training)
    (_train("--augment-shift", "8"), "--augment-shift: must be less than the image side, 8 pixels"),
    # item 5: --out checked before any work
    (_train(out="{tmp}/afile"), "afile is a file, expected a directory"),
    (_train(out="/proc/xnorflow-out"), "--out"),
    (_train(out="{tmp}/model-is-dir"), "model.pt is a directory"),
    # item 9: a saved state is neither resumed nor discarded by accident
    (_train(out="{tmp}/with-state"), "--resume"),
    (_train(out="{tmp}/with-state"), "--overwrite"),
    (_train("--resume", "--overwrite"), "not allowed with argument"),
    # item 1: a .pt whose pickle runs code is refused without running it
    (["compile", "{tmp}/evil-touch.pt", "-o", "{tmp}/e.xnf"], "evil-touch.pt is " + MALICIOUS + " checkpoint"),
    (["compile", "{tmp}/evil-system.pt", "-o", "{tmp}/e.xnf"], "evil-system.pt is " + MALICIOUS + " checkpoint"),
    (["compile", "{tmp}/evil-raw-pickle.pt", "-o", "{tmp}/e.xnf"], MALICIOUS + " checkpoint"),
    (["eval", "{model}", "--dataset", "digits", "--checkpoint", "{tmp}/evil-touch.pt"], MALICIOUS + " checkpoint"),
    (_train("--init", "{tmp}/evil-touch.pt"), "--init: "),
    (_train("--distill", "{tmp}/evil-touch.pt"), "--distill: "),
    (_train("--resume", out="{tmp}/evil-state"), "train_state.pt is " + MALICIOUS + " training state"),
    # item 6: damaged data files, through train and eval
    *[(_train_idx(name), idx_expected(name, stem, text, GZIPPED.get(name, set())))
      for name, stem, text in DAMAGED_IDX],
    *[(_eval_idx(name), idx_expected(name, stem, text, GZIPPED.get(name, set())))
      for name, stem, text in DAMAGED_IDX],
]


def idx_bytes(array, type_code=0x08, dims=None):
    """An IDX file's bytes: magic, ``dims`` (default the array's shape), the big-endian payload."""
    import numpy as np
    dims = array.shape if dims is None else dims
    dtype = {0x08: np.uint8, 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    return (struct.pack(">BBBB", 0, 0, type_code, len(dims)) + struct.pack(">" + "I" * len(dims), *dims)
            + np.asarray(array).astype(dtype).tobytes())


def write_idx_dir(directory, files, gzipped=()):
    """Write ``{stem: bytes}`` into ``directory``; stems in ``gzipped`` are gzipped (``stem.gz``)."""
    os.makedirs(directory, exist_ok=True)
    for stem, blob in files.items():
        if stem in gzipped:
            pathlib.Path(directory, stem + ".gz").write_bytes(gzip.compress(blob))
        else:
            pathlib.Path(directory, stem).write_bytes(blob)


def good_idx_files(n_train=3, n_test=2, side=28):
    """``{stem: bytes}`` of a small valid MNIST-format data set."""
    import numpy as np
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, side, side))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_train)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, side, side))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_test)),
    }


def damaged_idx_files(name):
    """``{stem: bytes}`` of the data set of row ``name`` of :data:`DAMAGED_IDX`: the good one
    with one file replaced (``corrupt-gz``: see :func:`write_damaged_idx`)."""
    import numpy as np
    images = np.zeros((3, 28, 28))
    replaced = {
        "truncated-header": ("train-images-idx3-ubyte", struct.pack(">BBBBI", 0, 0, 8, 3, 3)),
        "ndim-0": ("train-images-idx3-ubyte", struct.pack(">BBBB", 0, 0, 8, 0)),
        "ndim-2": ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((2, 784)))),
        "zero-images": ("train-images-idx3-ubyte", idx_bytes(np.zeros((0, 28, 28)))),
        "payload-short": ("train-images-idx3-ubyte", idx_bytes(images)[:-10]),
        "payload-long": ("t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 2])) + b"\x00"),
        "float-images": ("train-images-idx3-ubyte", idx_bytes(images + 0.5, type_code=0x0D)),
        "label-200": ("train-labels-idx1-ubyte", idx_bytes(np.array([1, 200, 3]))),
        "pixels-out-of-range": ("t10k-images-idx3-ubyte", idx_bytes(np.full((2, 28, 28), 300), type_code=0x0C)),
        "count-mismatch": ("train-labels-idx1-ubyte", idx_bytes(np.array([1, 2]))),
        "train-test-sizes": ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((2, 14, 14)))),
        "bad-magic": ("train-labels-idx1-ubyte", b"\x01\x02 not an IDX file"),
    }.get(name)
    return {**good_idx_files(), **dict([replaced] if replaced else [])}


def write_damaged_idx(directory, name, gzipped):
    """Write row ``name``'s data set into ``directory``, gzipping the stems in ``gzipped``
    (``corrupt-gz``: its train images are a gzip stream cut in half, whatever ``gzipped`` says)."""
    write_idx_dir(directory, damaged_idx_files(name), gzipped)
    if name == "corrupt-gz":
        stem = "train-images-idx3-ubyte"
        for old in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(directory, old)):
                os.remove(os.path.join(directory, old))
        whole = gzip.compress(good_idx_files()[stem])
        pathlib.Path(directory, stem + ".gz").write_bytes(whole[:len(whole) // 2])


class TouchOnLoad:
    """Pickles as a call of ``pathlib.Path.touch(marker)``: loading it unsafely creates the marker."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


class SystemOnLoad:
    """Pickles as a call of ``os.system("touch marker")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def write_malicious_pt(tmp):
    """``evil-touch.pt``, ``evil-system.pt`` (torch.save zip files), ``evil-raw-pickle.pt`` (a bare
    pickle, torch's legacy format) and ``evil-state/train_state.pt``: all tagged like real xnorflow
    files so that only the pickle's payload is wrong; each would create ``tmp/MARKER``."""
    import pickle

    import torch
    marker = pathlib.Path(tmp, "MARKER")
    checkpoint = {"format": "xnorflow-checkpoint", "version": 1}
    torch.save({**checkpoint, "metrics": TouchOnLoad(marker)}, pathlib.Path(tmp, "evil-touch.pt"))
    torch.save({**checkpoint, "metrics": SystemOnLoad(marker)}, pathlib.Path(tmp, "evil-system.pt"))
    with open(pathlib.Path(tmp, "evil-raw-pickle.pt"), "wb") as f:
        pickle.dump({**checkpoint, "metrics": SystemOnLoad(marker)}, f, protocol=2)
    os.makedirs(pathlib.Path(tmp, "evil-state"), exist_ok=True)
    torch.save({"format": "xnorflow-train-state", "version": 1, "history": TouchOnLoad(marker)},
               pathlib.Path(tmp, "evil-state", "train_state.pt"))


def make_files(tmp):
    """Write every file the rows above name, under ``tmp``."""
    tmp = pathlib.Path(tmp)
    for name, _, _ in DAMAGED_IDX:
        write_damaged_idx(tmp / f"idx-{name}", name, GZIPPED.get(name, set()))
    write_malicious_pt(tmp)
    (tmp / "afile").write_text("not a directory")
    (tmp / "model-is-dir" / "model.pt").mkdir(parents=True)
    (tmp / "with-state").mkdir()
    (tmp / "with-state" / "train_state.pt").write_bytes(b"an interrupted run's state")
