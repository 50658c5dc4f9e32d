"""Distillation and label smoothing: the loss equals its formula, the teacher stays frozen, the
options reach metrics.json and the checkpoint, and a cached 'fp' teacher is reused."""
import json
import math

import pytest
import torch

from xnorflow.cli import main
from xnorflow.sw.train.losses import CrossEntropy, Distillation, distillation_kl


class _Fixed(torch.nn.Module):
    """A 'teacher' returning fixed scores, with one parameter to check it gets no gradient."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores
        self.p = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scores * self.p


def _formula(s, t, y, alpha, temp):
    """(1 − a)·CE + a·T²·mean_b Σ_c p log(p/q), written out element by element in float64."""
    s, t = s.double(), t.double()
    b, c = s.shape
    ce = kl = 0.0
    for i in range(b):
        ls = s[i] - torch.logsumexp(s[i], 0)
        ce -= ls[y[i]].item()
        p = torch.softmax(t[i] / temp, 0)
        q = torch.softmax(s[i] / temp, 0)
        kl += sum(p[j].item() * math.log(p[j].item() / q[j].item()) for j in range(c))
    return (1 - alpha) * ce / b + alpha * temp * temp * kl / b


@pytest.mark.parametrize("alpha,temp", [(0.9, 4.0), (0.5, 1.0), (1.0, 2.0), (0.0, 3.0)])
def test_distillation_loss_equals_its_formula(alpha, temp):
    g = torch.Generator().manual_seed(1)
    s = torch.randn(7, 10, generator=g, requires_grad=True)
    t = torch.randn(7, 10, generator=g) * 3
    y = torch.randint(0, 10, (7,), generator=g)
    teacher = _Fixed(t)
    loss = Distillation(teacher, alpha=alpha, temperature=temp)(s, torch.zeros(7, 4), y)
    assert loss.item() == pytest.approx(_formula(s.detach(), t, y, alpha, temp), rel=1e-5, abs=1e-6)
    loss.backward()
    assert s.grad is not None and teacher.p.grad is None and not teacher.p.requires_grad
    assert not teacher.training


def test_kl_is_zero_for_identical_scores_and_ce_matches_torch():
    s = torch.randn(5, 10)
    assert distillation_kl(s, s.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    y = torch.randint(0, 10, (5,))
    ls = CrossEntropy(0.1)(s, None, y)
    assert ls.item() == pytest.approx(torch.nn.functional.cross_entropy(s, y, label_smoothing=0.1).item())


def test_distill_option_round_trips_through_metrics_and_checkpoint(tmp_path):
    from xnorflow.sw.train.checkpoint import load_checkpoint
    cache = tmp_path / "cache"
    common = ["--dataset", "digits", "--epochs", "2", "--hidden", "32", "--quiet", "--teacher-epochs", "2",
              "--teacher-cache", str(cache), "--distill", "fp", "--distill-alpha", "0.7",
              "--distill-temperature", "3", "--label-smoothing", "0.05"]
    assert main(["train", "--method", "irnet", *common, "--out", str(tmp_path / "a")]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["distill"] == "fp" and m["distill_alpha"] == 0.7 and m["distill_temperature"] == 3.0
    assert m["label_smoothing"] == 0.05 and m["loss"] == "distillation" and m["teacher_cached"] is False
    assert 0.0 < m["teacher_test_accuracy"] <= 1.0 and m["deployable"] is True
    model, meta = load_checkpoint(str(tmp_path / "a" / "model.pt"))
    assert meta["metrics"]["distill"] == "fp" and meta["metrics"]["distill_alpha"] == 0.7
    assert model.not_deployable() is None  # distillation changes the loss only
    # The same teacher settings hit the cache; a checkpoint path works as a teacher too.
    assert main(["train", "--method", "ste", *common, "--out", str(tmp_path / "b")]) == 0
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert mb["teacher_cached"] is True and mb["teacher_seconds_in_this_run"] == 0.0
    assert mb["teacher_path"] == m["teacher_path"]
    assert main(["train", "--method", "sbn", "--dataset", "digits", "--epochs", "1", "--hidden", "32", "--quiet",
                 "--distill", m["teacher_path"], "--out", str(tmp_path / "c")]) == 0
    mc = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert mc["teacher"] == m["teacher_path"] and mc["distill_alpha"] == 0.9


def test_no_distill_is_plain_cross_entropy(tmp_path):
    assert main(["train", "--method", "ste", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet",
                 "--distill", "none", "--out", str(tmp_path / "a")]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["distill"] is None and m["loss"] == "cross_entropy" and "teacher_test_accuracy" not in m


@pytest.mark.parametrize("args,option", [
    (["--distill", "/no/such/teacher.pt"], "--distill"),
    (["--distill-alpha", "1.5"], "--distill-alpha"),
    (["--distill-temperature", "0"], "--distill-temperature"),
    (["--label-smoothing", "-0.1"], "--label-smoothing"),
])
def test_bad_distill_options_exit_2(args, option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["train", "--method", "ste", "--dataset", "digits", *args,
                               "--out", str(tmp_path / "o")]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


def test_teacher_with_other_input_bits_is_refused(tmp_path, capsys):
    assert main(["train", "--method", "fp", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                 "--input-bits", "3", "--quiet", "--out", str(tmp_path / "t")]) == 0
    rc = main(["train", "--method", "ste", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet",
               "--distill", str(tmp_path / "t" / "model.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "3-bit" in capsys.readouterr().err
