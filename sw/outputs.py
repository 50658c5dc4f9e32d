"""Per-image outputs for outside checks (``eval --outputs``, ``sim --outputs``).

One ``.npz`` file: ``classes`` (int64 [images], the predicted class of every image) and
``scores`` (int64 [images, classes], the last layer's raw integers, before the host head), in
test-set order, so that any tool — qonnx's executor, FINN, a hardware run — can be compared
image by image without xnorflow. Written atomically: the file is complete or absent.
"""
import io

import numpy as np

from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.xnf import atomic_write


def write_outputs(path, classes, scores):
    """Write ``classes`` [N] and ``scores`` [N, C] (both integers) to the ``.npz`` ``path``."""
    classes = np.asarray(classes)
    scores = np.asarray(scores)
    if classes.ndim != 1 or scores.ndim != 2 or len(classes) != len(scores):
        raise XnorflowError(f"{path}: outputs need classes [N] and scores [N, C], got "
                            f"{list(classes.shape)} and {list(scores.shape)}")
    for name, a in (("classes", classes), ("scores", scores)):
        if a.size and not np.array_equal(a, np.round(a)):
            raise XnorflowError(f"{path}: {name} must be integers")
    buf = io.BytesIO()
    np.savez(buf, classes=classes.astype(np.int64), scores=scores.astype(np.int64))
    atomic_write(path, buf.getvalue())


def read_outputs(path):
    """(classes, scores) from a file :func:`write_outputs` wrote."""
    with np.load(path) as f:
        return f["classes"], f["scores"]
