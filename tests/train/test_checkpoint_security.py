"""Loading a ``.pt`` never runs code (issue #23 item 1): every loader reads with
``weights_only=True``, and every kind of file xnorflow writes still loads that way."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from xnorflow.sw.train import checkpoint as ck
from xnorflow.sw.train import methods
from xnorflow.sw.train.resume import ResumeError, load_fit_state

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bad_input_cases.train_data import write_malicious_pt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
XNORFLOW = [sys.executable, "-m", "xnorflow.cli"]
EVIL = ("evil-touch.pt", "evil-system.pt", "evil-raw-pickle.pt")


@pytest.fixture
def evil(tmp_path):
    """The malicious files (each would create ``tmp_path/MARKER`` if loaded unsafely)."""
    write_malicious_pt(tmp_path)
    return tmp_path


def test_the_malicious_files_really_run_code_when_loaded_unsafely(evil):
    """The other tests can fail: an unsafe load of the same files does create the marker."""
    for name in EVIL:
        try:
            torch.load(evil / name, weights_only=False)
        except RuntimeError:  # the bare pickle: its payload ran while torch read the "magic number"
            assert name == "evil-raw-pickle.pt"
        assert (evil / "MARKER").exists(), name
        os.remove(evil / "MARKER")


@pytest.mark.parametrize("name", EVIL)
def test_load_checkpoint_refuses_a_pickle_that_runs_code(evil, name):
    with pytest.raises(ck.CheckpointError) as exc:
        ck.load_checkpoint(str(evil / name))
    message = str(exc.value)
    assert f"{evil / name} is not an xnorflow checkpoint" in message and "refused without running it" in message
    assert "\n" not in message
    assert not (evil / "MARKER").exists()


def test_the_resume_loader_refuses_a_pickle_that_runs_code(evil):
    state = evil / "evil-state" / "train_state.pt"
    with pytest.raises(ResumeError, match=f"{state} is not an xnorflow training state"):
        load_fit_state(str(state), "ste", {})
    assert not (evil / "MARKER").exists()


def test_the_command_line_refuses_a_pickle_that_runs_code(evil):
    """The installed command, in its own process: nothing runs, one line, exit status 2."""
    r = subprocess.run([*XNORFLOW, "compile", str(evil / "evil-system.pt"), "-o", str(evil / "e.xnf")],
                       cwd=evil, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"xnorflow compile: error: {evil / 'evil-system.pt'} is not an xnorflow checkpoint: its "
                        f"pickle would call posix.system, which xnorflow never saves (refused without running it)\n")
    assert not (evil / "MARKER").exists() and not (evil / "e.xnf").exists()


def test_every_command_that_loads_a_pt_refuses_a_pickle_that_runs_code(evil, capsys):
    """eval --checkpoint, train --init/--distill/--resume: one line naming the option and the file."""
    from xnorflow.sw import xnf
    from xnorflow.cli import main
    from xnorflow.sw.random_models import random_model
    model = evil / "m.xnf"
    model.write_bytes(xnf.to_bytes(random_model(np.random.default_rng(0), [64, 16, 10], 4)))
    train = ["train", "--method", "ste", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet"]
    runs = [
        (["eval", str(model), "--dataset", "digits", "--checkpoint", str(evil / "evil-touch.pt")],
         f"xnorflow eval: error: {evil / 'evil-touch.pt'} is not an xnorflow checkpoint"),
        ([*train, "--init", str(evil / "evil-touch.pt"), "--out", str(evil / "o1")],
         f"xnorflow train: error: --init: {evil / 'evil-touch.pt'} is not an xnorflow checkpoint"),
        ([*train, "--distill", str(evil / "evil-raw-pickle.pt"), "--out", str(evil / "o2")],
         f"xnorflow train: error: --distill: {evil / 'evil-raw-pickle.pt'} is not an xnorflow checkpoint"),
        ([*train, "--resume", "--out", str(evil / "evil-state")],
         f"xnorflow train: error: --resume: {evil / 'evil-state' / 'train_state.pt'} is not an xnorflow "
         "training state"),
    ]
    for argv, start in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(start) and len(err.splitlines()) == 1, err
        assert not (evil / "MARKER").exists(), argv
    assert not (evil / "o1").exists() and not (evil / "o2").exists()


def test_damaged_files_get_one_line_naming_the_file(tmp_path):
    cases = {"empty.pt": b"", "text.pt": b"hello\n", "zip.pt": b"PK\x03\x04" + b"\x00" * 40}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ck.CheckpointError) as exc:
            ck.load_checkpoint(str(tmp_path / name))
        message = str(exc.value)
        assert message.startswith(f"cannot read checkpoint file {tmp_path / name}: ") and "\n" not in message
        assert "weights_only" not in message  # torch's advice to load unsafely is not passed on


def test_numpy_values_in_the_metadata_are_saved_as_plain_numbers(tmp_path, digits):
    """A metric that is a numpy scalar must not make the checkpoint unloadable."""
    model, meta, _ = methods.train("ste", "digits", hidden=[8], epochs=1, progress=False, ds=digits,
                                   distill="none", init="none")
    meta["metrics"].update(np_float=np.float64(0.5), np_int=np.int64(3), np_array=np.arange(3))
    ck.save_checkpoint(str(tmp_path / "model.pt"), model, meta)
    _, back = ck.load_checkpoint(str(tmp_path / "model.pt"))
    assert back["metrics"]["np_float"] == 0.5 and type(back["metrics"]["np_float"]) is float
    assert back["metrics"]["np_int"] == 3 and back["metrics"]["np_array"] == [0, 1, 2]


@pytest.mark.parametrize("method", methods.METHODS)
def test_every_kind_of_file_xnorflow_writes_loads_with_weights_only(tmp_path, digits, method):
    """model.pt of every method (MLP and CNN), the epoch-end training state, and the cached
    'fp'/'binact' networks --distill/--init train, all loaded with ``weights_only=True``."""
    from xnorflow.sw.train.conv import cnn_overrides, parse_arch
    for cnn in (False, True):
        kw = (dict(hidden=[8], method_overrides=cnn_overrides(method, parse_arch("cnv:4,p"), (8, 8, 1))) if cnn
              else dict(hidden=[16]))
        out = tmp_path / f"{method}-{cnn}"
        state = out / "train_state.pt"
        model, meta, _ = methods.train(method, "digits", epochs=3 if method == "bwnh" else 1, progress=False,
                                       ds=digits, distill="none", init="none", state_path=str(state), **kw)
        ck.save_checkpoint(str(out / "model.pt"), model, meta)
        ck.load_checkpoint(str(out / "model.pt"))
        if method != "bwnh":  # BWNH does not resume, so writes no state
            run_key = torch.load(state, weights_only=True)["run_key"]
            assert load_fit_state(str(state), method, run_key)["epochs_done"] == 1
    if method == "irnet":
        cache = tmp_path / "teachers"
        methods.train("irnet", "digits", hidden=[16], epochs=1, progress=False, ds=digits, distill="fp",
                      init="binact", teacher_epochs=1, teacher_cache=str(cache))
        cached = sorted(cache.glob("*.pt"))
        assert len(cached) == 2
        for path in cached:
            ck.load_checkpoint(str(path))

