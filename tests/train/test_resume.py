"""Resumable training: an interrupted run continued with --resume ends bit for bit where an
uninterrupted one does; a state saved under other settings is refused by name."""
import json
import os

import pytest
import torch

from xnorflow.cli import main
from xnorflow.sw.train import methods, schedules
from xnorflow.sw.train.resume import ResumeError

# RBNN exercises every kind of state: Adam moments, the cosine schedule, the rotation buffers
# (updated by an epoch callback), the batch-order generator (with shift augmentation) and the
# global RNG (input dropout).
RUN = dict(hidden=[32, 32], input_bits=4, epochs=3, batch_size=64, lr=1e-2, augment_shift=1,
           input_dropout=0.1, distill=None, init=None, progress=False)


class _Interrupt(schedules.Callback):
    """Raises KeyboardInterrupt (a user's Ctrl-C) at the start of epoch ``at``."""

    def __init__(self, at):
        self.at = at

    def on_epoch_start(self, epoch, num_epochs, model):
        if epoch == self.at:
            raise KeyboardInterrupt
        return {}


def _interrupting(monkeypatch, at):
    original = methods._callbacks

    def callbacks(*args, **kwargs):
        return list(original(*args, **kwargs)) + [_Interrupt(at)]
    monkeypatch.setattr(methods, "_callbacks", callbacks)
    return original


def _same(x, y):
    """Tensors bit-equal; dicts (extra state) compared entry by entry; anything else by ==."""
    if torch.is_tensor(x):
        return torch.is_tensor(y) and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    return x == y


def _strip(history):
    """History without what only says when and where a process ran."""
    return [{k: v for k, v in e.items() if not k.startswith(("seconds", "resumed"))} for e in history]


def _assert_same_run(straight, m_straight, resumed, m_resumed):
    """Every tensor bit-equal, the same history and test accuracy."""
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert _same(a[k], b[k]), k
    assert _strip(m_resumed["history"]) == _strip(m_straight["history"])
    assert m_resumed["test_accuracy"] == m_straight["test_accuracy"]


def test_interrupted_run_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    straight, _, m_straight = methods.train("rbnn", "digits", **RUN)

    state = str(tmp_path / "train_state.pt")
    original = _interrupting(monkeypatch, at=2)
    with pytest.raises(KeyboardInterrupt):
        methods.train("rbnn", "digits", state_path=state, **RUN)
    assert torch.load(state, weights_only=True)["epochs_done"] == 2
    monkeypatch.setattr(methods, "_callbacks", original)
    resumed, _, m_resumed = methods.train("rbnn", "digits", state_path=state, resume=True, **RUN)
    _assert_same_run(straight, m_straight, resumed, m_resumed)
    assert m_resumed["resumed_at_epochs"] == [2] and m_straight["resumed_at_epochs"] == []
    assert [e.get("resumed", False) for e in m_resumed["history"]] == [False, False, True]


def test_a_run_killed_mid_epoch_resumes_from_the_step_it_saved(tmp_path, monkeypatch):
    """States written within an epoch (here after every step) hold its batch order, position
    and sums; stopped right after the one at step 5 of the second epoch, the run resumes there
    and still ends bit for bit as the uninterrupted one (RBNN: the rotation of that epoch is
    not applied twice, the (t, k) schedule is set again)."""
    from xnorflow.sw.train import trainer
    straight, _, m_straight = methods.train("rbnn", "digits", **RUN)
    state = str(tmp_path / "train_state.pt")
    save = trainer.save_fit_state

    def save_then_stop(*args, partial=None, **kw):
        save(*args, partial=partial, **kw)
        if partial is not None and args[3] == 1 and partial["step"] == 5:  # epochs_done = 1
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_fit_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        methods.train("rbnn", "digits", state_path=state, state_every=0.0, **RUN)
    saved = torch.load(state, weights_only=True)
    assert saved["epochs_done"] == 1 and saved["partial"]["step"] == 5
    monkeypatch.setattr(trainer, "save_fit_state", save)
    resumed, _, m_resumed = methods.train("rbnn", "digits", state_path=state, resume=True, **RUN)
    _assert_same_run(straight, m_straight, resumed, m_resumed)
    assert m_resumed["resumed_at_epochs"] == [1]
    assert m_resumed["history"][1]["resumed_at_step"] == 5


def test_a_resumed_run_started_from_a_teacher_does_not_initialise_again(tmp_path, monkeypatch):
    """--init fp: the state keeps the initialised model's test accuracy, so resuming skips the
    initialisation (its weights would be replaced by the state's) and reports the same."""
    run = {**RUN, "init": "fp", "teacher_epochs": 1, "teacher_cache": str(tmp_path / "teachers")}
    straight, _, m_straight = methods.train("rbnn", "digits", **run)
    state = str(tmp_path / "train_state.pt")
    original = _interrupting(monkeypatch, at=1)
    with pytest.raises(KeyboardInterrupt):
        methods.train("rbnn", "digits", state_path=state, **run)
    monkeypatch.setattr(methods, "_callbacks", original)

    def no_init(*args, **kwargs):
        raise AssertionError("a resumed run initialised the student again")
    monkeypatch.setattr(methods, "init_from", no_init)
    resumed, _, m_resumed = methods.train("rbnn", "digits", state_path=state, resume=True, **run)
    _assert_same_run(straight, m_straight, resumed, m_resumed)
    assert m_resumed["init_test_accuracy"] == m_straight["init_test_accuracy"]


def test_resume_under_other_settings_names_the_field(tmp_path, monkeypatch):
    state = str(tmp_path / "train_state.pt")
    _interrupting(monkeypatch, at=1)
    with pytest.raises(KeyboardInterrupt):
        methods.train("irnet", "digits", state_path=state, **RUN)
    with pytest.raises(ResumeError, match=r"epochs = 3; this run has epochs = 4"):
        methods.train("irnet", "digits", state_path=state, resume=True, **{**RUN, "epochs": 4})
    with pytest.raises(ResumeError, match=r"method = 'irnet'; this run has method = 'ste'"):
        methods.train("ste", "digits", state_path=state, resume=True, **RUN)


def test_cli_resume_refuses_a_foreign_state_and_a_finished_run_removes_its_state(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "ste", "--dataset", "digits", "--hidden", "16", "--epochs", "1",
            "--distill", "none", "--init", "none", "--quiet", "--out", str(out)]
    out.mkdir()
    (out / "train_state.pt").write_bytes(b"not a state")
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "train_state.pt" in err
    assert not (out / "model.pt").exists()

    assert main(args) == 2  # without --resume a saved state is refused, naming both ways out
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert (out / "train_state.pt").read_bytes() == b"not a state"
    assert main(args + ["--overwrite"]) == 0  # --overwrite discards it and starts afresh
    assert (out / "model.pt").exists() and not (out / "train_state.pt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_at_epochs"] == []


def test_cli_resume_without_a_state_starts_afresh(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--method", "ste", "--dataset", "digits", "--hidden", "16", "--epochs", "1",
                 "--distill", "none", "--init", "none", "--resume", "--out", str(out)]) == 0
    assert "no saved state at" in capsys.readouterr().err
    assert (out / "model.pt").exists() and not (out / "train_state.pt").exists()


def test_bwnh_refuses_resume():
    with pytest.raises(ResumeError, match="bwnh"):
        methods.train("bwnh", "digits", resume=True, **{**RUN, "epochs": 1})


def test_a_cached_teacher_leaves_no_state_behind(tmp_path):
    from xnorflow.sw.data import load_dataset
    ds = load_dataset("digits")
    _, info = methods.load_or_train_teacher("fp", "digits", ds, [16], 4, 1, 0, 64, 2e-3, 0,
                                            cache_dir=str(tmp_path), progress=False)
    assert not info["teacher_cached"]
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(info["teacher_path"])]


def test_an_interrupted_cli_run_leaves_its_state_and_curves_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "irnet", "--dataset", "digits", "--hidden", "16", "--epochs", "3",
            "--distill", "none", "--init", "none", "--out", str(out)]
    original = _interrupting(monkeypatch, at=2)
    assert main(args) == 130  # Ctrl-C at the start of the third epoch
    err = capsys.readouterr().err
    assert "--resume" in err and "interrupted" in err
    assert (out / "train_state.pt").exists() and not (out / "model.pt").exists()
    assert (out / "training.png").stat().st_size > 10_000  # drawn after each finished epoch
    monkeypatch.setattr(methods, "_callbacks", original)
    assert main(args + ["--resume"]) == 0
    assert "resuming from" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_at_epochs"] == [2] and len(metrics["history"]) == 3
    assert not (out / "train_state.pt").exists()


def test_on_epoch_sees_the_history_after_every_epoch():
    seen = []
    methods.train("ste", "digits", on_epoch=lambda h: seen.append(len(h)), **{**RUN, "epochs": 2})
    assert seen == [1, 2]
