"""Shared by the tests: the repository root and real trained digits models, trained once per
machine and reused (the fixtures in tests/conftest.py hand them out).

Test modules import from here, never from ``conftest``: with two conftest.py files in the
tree (tests/ and tests/qonnx/), which one the module name ``conftest`` means depends on the
order pytest loaded them.

Training every method for every test run would dominate the suite, so each (method, settings)
model is trained once per machine, compiled, and cached under ``~/.cache/xnorflow/test-models``
(``$XNORFLOW_CACHE`` overrides the root) keyed by a hash of the training and compiler sources
and the settings: any change to them retrains, and fresh clones on the same machine reuse it. A file lock makes
parallel pytest workers wait for one another instead of training twice.
"""
import fcntl
import hashlib
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XNORFLOW_CACHE", Path.home() / ".cache" / "xnorflow")) / "test-models"

# Short runs: enough for real, well-trained weights (≥ 95 % on digits), a few seconds each.
TEST_EPOCHS = {"irnet": 8, "rbnn": 8, "sbn": 15, "bwnh": 15, "ste": 8, "fp": 3}
DEPLOYABLE = ("irnet", "rbnn", "sbn", "bwnh", "ste")


def _source_hash():
    h = hashlib.sha256()
    files = sorted((ROOT / "sw" / "train").glob("*.py")) + [ROOT / "sw" / "data.py",
                                                             ROOT / "sw" / "compile.py"]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# The digits CNN the conv tests run on the core: conv16 → pool → conv32 → pool → 64 → 10
# (30 epochs: ~10 s, 93 % for IR-Net; the MLP's short runs leave a CNN under-trained).
CNN_ARCH, CNN_HIDDEN, CNN_EPOCHS = "cnv:16,p,32,p", [64], 30


def trained_digits_model(method, seed=0, cnn=False):
    """(checkpoint path, compiled .xnf path or None for the non-deployable fp) for ``method``;
    ``cnn``: the digits CNN above instead of the 64-256-256-10 MLP."""
    from xnorflow.sw import xnf
    from xnorflow.sw.compile import compile_checkpoint
    from xnorflow.sw.train.checkpoint import save_checkpoint
    from xnorflow.sw.train.methods import train

    epochs = CNN_EPOCHS if cnn else TEST_EPOCHS[method]
    arch = f"-{CNN_ARCH.replace(':', '_').replace(',', '_')}" if cnn else ""
    key = f"{method}{arch}-e{epochs}-s{seed}-{_source_hash()}"
    out = CACHE / key
    ckpt, compiled = out / "model.pt", out / "model.xnf"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "done").exists():
            import torch
            torch.set_num_threads(1)  # small MLPs: a second thread only spins on a busy machine
            out.mkdir(exist_ok=True)
            kw = {}
            if cnn:
                from xnorflow.sw.train.conv import cnn_overrides, parse_arch
                kw = dict(hidden=CNN_HIDDEN, method_overrides=cnn_overrides(
                    method, parse_arch(CNN_ARCH), (8, 8, 1)))
            model, meta, metrics = train(method, "digits", epochs=epochs, seed=seed,
                                         progress=False, **kw)
            save_checkpoint(ckpt, model, meta)
            (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
            if method in DEPLOYABLE:
                xnf.save(compile_checkpoint(ckpt)[0], compiled)
            (out / "done").write_text("ok")
    return ckpt, (compiled if compiled.exists() else None)




def installed_copy(dest, packages=("flow", "hw", "sw", "sim"), ignore=("__pycache__",)):
    """A copy of the checkout's ``packages`` at ``dest`` with its own virtual environment
    (``dest/.venv``) holding an editable install of the copy, as a second checkout set up by
    ``./xnorflow`` would have: ``xnorflow.*`` imports the copy's folders. The dependencies come
    from this environment's site-packages (a path line in a .pth file), so nothing is
    downloaded. Returns the copy's Python executable."""
    import shutil
    import subprocess
    import site
    import sys
    import venv
    dest.mkdir(parents=True, exist_ok=True)
    for name in packages:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns(*ignore))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    venv.EnvBuilder(with_pip=False).create(dest / ".venv")
    python = dest / ".venv" / "bin" / "python"
    own_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    (Path(own_site) / "xnorflow_test_deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--disable-pip-version-check", "-e", str(dest)],
                   capture_output=True, text=True, check=True, cwd=dest)
    return python
