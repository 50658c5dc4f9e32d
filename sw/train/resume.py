"""Resumable training: the state :func:`xnorflow.sw.train.trainer.fit` writes after every epoch.

A Fashion-MNIST CNV epoch takes ~20 minutes on one core here, so a run outlives a working
session; after an interruption (Ctrl-C, a killed process, a reboot) ``xnorflow train … --resume``
continues from the last saved point and ends with the same weights, bit for bit, as an
uninterrupted run (tests/train/test_resume.py).

The file (``OUT/train_state.pt``; a cached teacher's beside it as ``<key>.state.pt``) is one
``torch.save``'d dict::

    {"format": "xnorflow-train-state", "version": 1, "stage", "run_key", "epochs_done",
     "model", "optimizer", "scheduler", "generator", "torch_rng", "history", "partial", "notes"}

``partial`` is None after a finished epoch; a state written in the middle of an epoch (every
10 minutes by default: ``xnorflow train --state-every``) holds the epoch's position there, so
a killed run loses minutes, not an epoch. (States written before ``partial`` existed load as
epoch-end states.)

``run_key`` holds every setting that shapes the run (method, data, widths, epochs, learning
rate, seed, recipe, method configuration); resuming under different settings is refused with
the first field that differs, since the cosine schedule and the batch order depend on them.
"""
import json

import torch

from ..errors import XnorflowError
from .checkpoint import atomic_torch_save, load_tagged

FORMAT = "xnorflow-train-state"
VERSION = 1


class ResumeError(XnorflowError, ValueError):
    """A training state file cannot be resumed (message names the file and the field)."""


def _canonical(value):
    """JSON round trip, so tuples/lists and int/float keys compare as they would when saved."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def save_fit_state(path, stage, run_key, epochs_done, model, optimizer, scheduler, generator, history,
                   partial=None, notes=None):
    """Write the state after ``epochs_done`` finished epochs of ``stage`` to ``path`` (atomically).

    ``partial``: the position inside epoch ``epochs_done + 1`` when saved mid-epoch (``step``
    steps done, the epoch's batch order ``perm``, the running ``loss_sum`` and ``correct``,
    the callbacks' ``epoch_logs`` and the ``epoch_seconds`` so far); None at an epoch's end.
    ``notes``: what the caller measured before training and wants back on resuming (e.g. the
    initialised model's test accuracy, which a resumed run need not measure again)."""
    atomic_torch_save({
        "format": FORMAT, "version": VERSION, "stage": stage, "run_key": _canonical(run_key or {}),
        "epochs_done": int(epochs_done), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(), "history": list(history), "partial": partial,
        "notes": dict(notes or {}),
    }, path)


def load_fit_state(path, stage, run_key):
    """Read ``path`` and check that it continues ``stage`` of a run with ``run_key``; return the dict."""
    state = load_tagged(path, FORMAT, VERSION, "training state", ResumeError)
    saved, wanted = state["run_key"], _canonical(run_key or {})
    for field in sorted(set(saved) | set(wanted)):
        if saved.get(field) != wanted.get(field):
            raise ResumeError(f"{path} was saved by a run with {field} = {saved.get(field)!r}; this run has "
                              f"{field} = {wanted.get(field)!r} (resume with the same settings, or use another --out)")
    if state["stage"] != stage:
        raise ResumeError(f"{path} continues stage {state['stage']!r}, not {stage!r}")
    return state
