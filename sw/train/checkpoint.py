"""Checkpoints: one ``torch.save``'d dict with everything needed to rebuild the model.

Format (version 1)::

    {"format": "xnorflow-checkpoint", "version": 1, "method", "dataset", "input_bits",
     "in_features", "hidden", "num_classes", "max_value", "method_config", "state_dict",
     "metrics"}

``max_value`` is the raw input value that :func:`sw.data.quantize_inputs` maps to full scale.
"""
import os
import tempfile

import torch

from .models import build_model
from ..errors import XnorflowError

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
    """``torch.save(obj)`` to ``path`` atomically: a temp file in the same directory, then
    ``os.replace``, so an interrupted write never leaves a truncated file behind."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path):
    """Load ``path``; return ``(model, meta)`` with the model rebuilt, loaded and in eval mode."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many different types for corrupt files
        raise CheckpointError(f"cannot read checkpoint file {path}: {e}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an xnorflow checkpoint")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {blob.get('version')} (expected {VERSION})")
    meta = {k: blob.get(k) for k in _META_KEYS}
    try:
        model = build_model(blob["in_features"], blob["hidden"], blob["num_classes"], blob["input_bits"],
                            blob["method_config"])
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the model: {e}") from None
    model.eval()
    return model, meta
