"""Fixtures of the QONNX tests: Brevitas models trained on digits and exported, once per machine.

Like ``tests/conftest.py``'s trained models, each (model, exporter) is trained and exported
once and cached under ``~/.cache/xnorflow/test-models`` (``$XNORFLOW_CACHE`` overrides), keyed
by a hash of :mod:`brevitas_models` and the Brevitas and torch versions, behind a file lock.
The whole directory is skipped when the optional ONNX packages are not installed.
"""
import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("qonnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("brevitas")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # brevitas_models, graph_edits
# The cache of tests/conftest.py's trained models (same root, same override).
CACHE = Path(os.environ.get("XNORFLOW_CACHE", Path.home() / ".cache" / "xnorflow")) / "test-models"

#: (builder, negate half the batch norms, epochs) of each cached Brevitas model.
BREVITAS_MODELS = {
    "tfc": ("tfc", True, 10),
    "cnv": ("cnv", True, 20),
}


def _key(kind, dynamo):
    import brevitas
    import torch
    h = hashlib.sha256((HERE / "brevitas_models.py").read_bytes())
    h.update(f"{brevitas.__version__} {torch.__version__} {BREVITAS_MODELS[kind]}".encode())
    return f"brevitas-{kind}-{'dynamo' if dynamo else 'torchscript'}-{h.hexdigest()[:16]}"


def brevitas_model(kind, dynamo=True):
    """(path of the QONNX export, its test accuracy in PyTorch) of a Brevitas model trained
    on digits; both exporters export the same trained weights (seed 0)."""
    import brevitas_models as bm
    import torch
    from xnorflow.sw.data import load_dataset

    out = CACHE / _key(kind, dynamo)
    onnx_path, info = out / "model.onnx", out / "info.json"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not info.exists():
            torch.set_num_threads(1)
            builder, negate, epochs = BREVITAS_MODELS[kind]
            torch.manual_seed(0)
            model = getattr(bm, builder)()
            if negate:
                bm.negate_half_the_batch_norms(model)
            accuracy = bm.train(model, load_dataset("digits"), epochs=epochs)
            out.mkdir(exist_ok=True)
            bm.export(model, onnx_path, dynamo=dynamo)
            info.write_text(json.dumps({"accuracy": accuracy}))
    return onnx_path, json.loads(info.read_text())["accuracy"]


@pytest.fixture(scope="session")
def digits():
    from xnorflow.sw.data import load_dataset
    return load_dataset("digits")


@pytest.fixture(scope="session")
def brevitas_models():
    """``(kind, dynamo=True) -> (onnx path, PyTorch test accuracy)``."""
    return brevitas_model
