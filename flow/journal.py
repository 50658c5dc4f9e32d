"""The resumable record of a long simulation (``xnorflow sim --state FILE``).

A whole test set through a big model on Verilator takes hours (the full CNV: ~1 s per image per
core). The images are cut into chunks of whole batches; after every chunk the journal file is
rewritten atomically with everything the final result needs from it: the core's output
integers, the per-batch cycle counters, the simulated cycles and the time spent. A run that is
stopped (Ctrl-C, a killed process, a machine switched off) loses at most the chunks in flight,
and the same command continues with the chunks still missing. The result is the one an
uninterrupted run gives: the integers and counters are per image and per batch, and chunks are
whole batches, so the batches are the same.

A journal belongs to one simulation: the model's bytes, the inputs, the build, the engine and
the batch and chunk sizes are hashed into its key, and a journal made by another is refused
with the field that differs (never silently mixed).

The file is an ``.npz``: ``key`` (JSON), ``ints`` [images, classes] int64, ``done`` [chunks]
bool, ``batches`` (JSON: per chunk, the driver's counters of each batch), ``cycles`` [chunks]
int64 (simulated cycles, link included), and ``spent`` (JSON: wall, simulator CPU and host CPU
seconds summed over the sessions).
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.xnf import atomic_write

__all__ = ["Journal", "JournalError", "simulation_key"]

FORMAT = "xnorflow-sim-journal"
VERSION = 1


class JournalError(XnorflowError):
    """The journal file cannot be used for this simulation (names the file and the field)."""


def _plain(value):
    """numpy scalars in the driver's counters → JSON numbers."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _digest(data):
    return hashlib.sha256(data).hexdigest()


def simulation_key(model_bytes, x, *, engine, config, batch, chunk):
    """What makes two simulations the same one: every field a journal is checked against."""
    x = np.ascontiguousarray(x)
    return {"format": FORMAT, "version": VERSION, "model_sha256": _digest(model_bytes),
            "inputs_sha256": _digest(x.tobytes()), "inputs_shape": list(x.shape),
            "engine": engine, "array": config, "batch": int(batch), "chunk": int(chunk)}


class Journal:
    """Completed chunks of one simulation, kept in ``path`` (or in memory when ``path`` is None;
    ``key`` is then unused and may be None).

    ``chunks`` are the ``(start, stop)`` image ranges; ``record`` stores one chunk's results and
    rewrites the file atomically; ``pending`` lists the chunks still to run.
    """

    def __init__(self, path, key, chunks, classes):
        self.path = None if path is None else Path(path)
        self.key = key
        self.chunks = list(chunks)
        n = self.chunks[-1][1] if self.chunks else 0
        self.ints = np.zeros((n, classes), np.int64)
        self.done = np.zeros(len(self.chunks), bool)
        self.batches = [[] for _ in self.chunks]
        self.cycles = np.zeros(len(self.chunks), np.int64)
        # Wall and host CPU seconds are added with every chunk, so a killed session keeps
        # them; the simulators' CPU time is known only when their processes have exited, so
        # it is complete only when every session ended normally (see simulator_cpu_complete).
        self.spent = {"wall_seconds": 0.0, "host_cpu_seconds": 0.0,
                      "simulator_cpu_seconds": 0.0, "sessions": 0, "sessions_ended": 0}
        self.resumed_images = 0
        self._index = {c[0]: i for i, c in enumerate(self.chunks)}
        if self.path is not None and self.path.exists():
            self._load()

    # -- reading ---------------------------------------------------------------------------

    def _load(self):
        try:
            with np.load(self.path, allow_pickle=False) as f:
                saved = {name: f[name] for name in f.files}
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
            raise JournalError(f"{self.path}: not a simulation journal ({e})") from None
        if "key" not in saved:
            raise JournalError(f"{self.path}: not a simulation journal (no 'key')")
        key = json.loads(str(saved["key"]))
        for field in ("format", "version", "model_sha256", "inputs_sha256", "inputs_shape",
                      "engine", "array", "batch", "chunk"):
            if key.get(field) != self.key[field]:
                raise JournalError(
                    f"{self.path}: field '{field}' is {key.get(field)!r} in the journal but "
                    f"{self.key[field]!r} for this simulation; it belongs to another run "
                    f"(delete it, or give another --state file)")
        self.ints[...] = saved["ints"]
        self.done[...] = saved["done"]
        self.batches = json.loads(str(saved["batches"]))
        self.cycles[...] = saved["cycles"]
        self.spent.update(json.loads(str(saved["spent"])))
        self.resumed_images = self.images_done()

    # -- state -----------------------------------------------------------------------------

    def pending(self):
        """The ``(start, stop)`` chunks not yet done, in order."""
        return [c for c, ok in zip(self.chunks, self.done) if not ok]

    def images_done(self):
        return int(sum(stop - start for (start, stop), ok in zip(self.chunks, self.done) if ok))

    def record(self, start, ints, batches, cycles, **spent):
        """Store the chunk beginning at image ``start`` and the seconds ``spent`` since the
        last record; rewrite the file (atomically)."""
        i = self._index[start]
        stop = self.chunks[i][1]
        self.ints[start:stop] = ints
        self.batches[i] = batches
        self.cycles[i] = cycles
        self.done[i] = True
        self.add_spent(**spent)

    def add_spent(self, **spent):
        """Add to the running totals (``wall_seconds``, ``sessions``, ...) and save."""
        for name, value in spent.items():
            self.spent[name] += value
        self.save()

    def simulator_cpu_complete(self):
        """True when every session that ran chunks ended normally (its simulators' CPU time,
        read when they exit, was added)."""
        return self.spent["sessions"] == self.spent["sessions_ended"]

    def save(self):
        if self.path is None:
            return
        buf = io.BytesIO()
        np.savez(buf, key=np.array(json.dumps(self.key)), ints=self.ints, done=self.done,
                 batches=np.array(json.dumps(self.batches, default=_plain)), cycles=self.cycles,
                 spent=np.array(json.dumps(self.spent)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, buf.getvalue())

    def all_batches(self):
        return [b for chunk in self.batches for b in chunk]
