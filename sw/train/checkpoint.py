"""Checkpoints: one ``torch.save``'d dict with everything needed to rebuild the model.

Format (version 1)::

    {"format": "xnorflow-checkpoint", "version": 1, "method", "dataset", "input_bits",
     "in_features", "hidden", "num_classes", "max_value", "method_config", "state_dict",
     "metrics"}

``max_value`` is the raw input value that :func:`sw.data.quantize_inputs` maps to full scale.
"""
import io
import os

import torch

from .models import build_model
from ..errors import XnorflowError
from ..xnf import atomic_write

FORMAT = "xnorflow-checkpoint"
VERSION = 1
_META_KEYS = ("method", "dataset", "input_bits", "in_features", "hidden", "num_classes", "max_value",
              "method_config", "metrics")


class CheckpointError(XnorflowError, RuntimeError):
    """A checkpoint file is missing, unreadable or not an xnorflow checkpoint (message names the file)."""


def save_checkpoint(path, model, meta):
    """Write ``model`` + ``meta`` to ``path`` atomically (temp file in the same dir, then ``os.replace``)."""
    missing = [k for k in _META_KEYS if k not in meta and k != "metrics"]
    if missing:
        raise ValueError(f"checkpoint meta lacks {', '.join(missing)}")
    blob = {"format": FORMAT, "version": VERSION}
    for k in _META_KEYS:
        blob[k] = meta.get(k, {} if k == "metrics" else None)
    blob["hidden"] = list(blob["hidden"])
    blob["state_dict"] = {k: v.detach().cpu() if torch.is_tensor(v) else v
                          for k, v in model.state_dict().items()}
    atomic_torch_save(blob, path)


def atomic_torch_save(obj, path):
    """``torch.save(obj)`` to ``path`` atomically (:func:`sw.xnf.atomic_write`), so an
    interrupted write never leaves a truncated file behind."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # e.g. a new teacher cache
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def load_tagged(path, fmt, version, kind, error):
    """``torch.load`` the dict at ``path`` and check its ``format`` and ``version`` tags; a
    failure raises ``error`` with a message naming the file as a ``kind`` (e.g. "checkpoint")."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many different types for corrupt files
        raise error(f"cannot read {kind} file {path}: {e}") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise error(f"{path} is not an xnorflow {kind}")
    if blob.get("version") != version:
        raise error(f"{path}: unsupported {kind} version {blob.get('version')} (expected {version})")
    return blob


def load_checkpoint(path):
    """Load ``path``; return ``(model, meta)`` with the model rebuilt, loaded and in eval mode."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path} does not exist")
    blob = load_tagged(path, FORMAT, VERSION, "checkpoint", CheckpointError)
    meta = {k: blob.get(k) for k in _META_KEYS}
    try:
        model = build_model(blob["in_features"], blob["hidden"], blob["num_classes"], blob["input_bits"],
                            blob["method_config"])
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the model: {e}") from None
    model.eval()
    return model, meta
