"""Checkpoints: one ``torch.save``'d dict with everything needed to rebuild the model.

Format (version 1)::

    {"format": "xnorflow-checkpoint", "version": 1, "method", "dataset", "input_bits",
     "in_features", "hidden", "num_classes", "max_value", "method_config", "state_dict",
     "metrics"}

``max_value`` is the raw input value that :func:`xnorflow.sw.data.quantize_inputs` maps to full scale.

Every ``.pt`` xnorflow writes (checkpoints, training states, cached teachers) holds only
tensors and plain Python values (dict, list, tuple, str, int, float, bool, None), so it is read
with ``torch.load(weights_only=True)``: a pickle can name any function to call while it is
read, and a ``.pt`` file from elsewhere must never run code. :func:`atomic_torch_save`
converts numpy scalars to Python ones so every file it writes stays loadable that way.
"""
import io
import os
import pickle
import re
from collections import OrderedDict

import numpy as np
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
    """``torch.save(obj)`` to ``path`` atomically (:func:`xnorflow.sw.xnf.atomic_write`), so an
    interrupted write never leaves a truncated file behind."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # e.g. a new teacher cache
    buffer = io.BytesIO()
    torch.save(plain(obj), buffer)
    atomic_write(path, buffer.getvalue())


def plain(value):
    """``value`` with numpy scalars and arrays turned into Python numbers and lists, recursively
    through dicts, lists and tuples. A container with nothing to convert is returned as it is
    (a state dict keeps its type and its ``_metadata``; tensors are never touched).

    ``torch.load(weights_only=True)`` refuses numpy objects (unpickling them needs numpy's
    functions), so a metric that happened to be a ``np.float64`` would make the file unreadable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        items = [(k, plain(v)) for k, v in value.items()]
        if all(new is old for (_, new), old in zip(items, value.values())):
            return value
        return type(value)(items) if type(value) in (dict, OrderedDict) else dict(items)
    if isinstance(value, (list, tuple)):
        items = [plain(v) for v in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        return list(items) if isinstance(value, list) else tuple(items)
    return value


def _refused_global(error):
    """The function or class a pickle named that ``weights_only`` loading refused, or None.

    torch words this differently by case ("Unsupported global: GLOBAL builtins.getattr was
    not an allowed global", "unsupported GLOBAL posix.system whose module posix is blocked")."""
    found = re.search(r"GLOBAL\s+([\w.]+)", str(error))
    return found.group(1) if found else None


def _first_line(error):
    """The first sentence of an exception's message (torch's are often a page long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].split(". ")[0] if lines else type(error).__name__


def load_tagged(path, fmt, version, kind, error):
    """``torch.load`` the dict at ``path`` and check its ``format`` and ``version`` tags; a
    failure raises ``error`` with a message naming the file as a ``kind`` (e.g. "checkpoint").

    ``weights_only=True``: only tensors and plain values are unpickled, so a file whose pickle
    names a function (``os.system``, ``pathlib.Path.touch`` …) is refused before it can run."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise error(f"cannot read {kind} file {path}: {_first_line(e)}") from None
        refused = _refused_global(e)
        if refused is None:
            raise error(f"cannot read {kind} file {path}: not a file torch.save wrote with tensors and "
                        f"plain values only") from None
        raise error(f"{path} is not an xnorflow {kind}: its pickle would call {refused}, which xnorflow "
                    f"never saves (refused without running it)") from None
    except EOFError:
        raise error(f"cannot read {kind} file {path}: it ends early (empty or truncated)") from None
    except Exception as e:  # torch raises many different types for corrupt files
        raise error(f"cannot read {kind} file {path}: {_first_line(e)}") from None
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
