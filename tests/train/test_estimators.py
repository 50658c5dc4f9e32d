"""Every estimator's backward equals its formula (checked with torch.autograd) at several schedule points."""
import math

import pytest
import torch

from xnorflow.sw.train import estimators as est
from xnorflow.sw.train import schedules

U = torch.linspace(-3, 3, 241, dtype=torch.float64)


def _grad(fn, u):
    u = u.clone().requires_grad_(True)
    fn(u).sum().backward()
    return u.grad


def test_sign_zero_is_plus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0])
    assert est.sign(x).tolist() == [-1, 1, 1, 1, -1, 1]
    for e in (est.STE(), est.EDE(), est.TrainingAwareSign()):
        assert e.apply(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]
    soft = est.SoftSign(10.0)
    soft.hard = True
    assert soft.apply(torch.zeros(2)).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("t,k", [(0.1, 10.0), (1.0, 1.0), (3.7, 1.0), (10.0, 1.0)])
def test_ede_backward_is_derivative_of_k_tanh(t, k):
    e = est.EDE(t, k)
    expected = _grad(lambda u: k * torch.tanh(t * u), U)
    assert torch.allclose(_grad(e.apply, U), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(e.apply(U), est.sign(U))


@pytest.mark.parametrize("t,k", [(1e-2, 100.0), (0.3, 1 / 0.3), (1.0, 1.0), (10.0, 1.0)])
def test_rbnn_backward_is_derivative_of_F(t, k):
    e = est.TrainingAwareSign(t, k)
    # Derivative of F by autograd, away from the kinks at 0 and ±√2/t where F' is one-sided.
    u = U[(U.abs() > 1e-6) & ((U.abs() - math.sqrt(2) / t).abs() > 1e-6)]
    expected = _grad(lambda v: est.training_aware_F(v, k, t), u)
    assert torch.allclose(_grad(e.apply, u), expected, rtol=1e-12, atol=1e-12)
    # ...and the closed form k·max(√2·t − t²|u|, 0).
    closed = k * torch.clamp(math.sqrt(2) * t - t * t * u.abs(), min=0)
    assert torch.allclose(_grad(e.apply, u), closed, rtol=1e-12, atol=1e-12)


def test_rbnn_F_is_continuous_and_saturates():
    t, k = 0.5, 2.0
    edge = math.sqrt(2) / t
    near = torch.tensor([edge - 1e-9, edge + 1e-9], dtype=torch.float64)
    f = est.training_aware_F(near, k, t)
    assert abs(f[0] - f[1]) < 1e-6 and abs(f[1] - k) < 1e-12


def test_ste_backward_passes_only_inside_clip():
    g = _grad(est.STE().apply, U)
    assert torch.equal(g, (U.abs() <= 1).double())


@pytest.mark.parametrize("nu", [1.0, 7.0, 300.0])
def test_softsign_forward_and_true_gradient(nu):
    e = est.SoftSign(nu)
    u = torch.linspace(-0.05, 0.05, 101, dtype=torch.float64)
    assert torch.allclose(e.apply(u), torch.tanh(nu * u))
    th = torch.tanh(nu * u)
    assert torch.allclose(_grad(e.apply, u), nu * (1 - th * th), rtol=1e-12)
    e.hard = True  # after the swap the forward is the sign, the backward stays the soft derivative
    assert torch.equal(e.apply(u), est.sign(u))
    assert torch.allclose(_grad(e.apply, u), nu * (1 - th * th), rtol=1e-12)


def test_tk_schedule_values():
    s = schedules.TKSchedule(0.1, 10.0, act_rule="same")
    t, k, ta, ka = s.values(0, 10)
    assert t == pytest.approx(0.1) and k == pytest.approx(10.0) and (ta, ka) == (t, k)
    t, k, _, _ = s.values(5, 10)
    assert t == pytest.approx(1.0) and k == pytest.approx(1.0)
    t, k, _, _ = s.values(9, 10)
    assert t == pytest.approx(10 ** 0.8) and k == 1.0
    r = schedules.TKSchedule(1e-2, 1e1, act_rule="rbnn")
    t, k, ta, ka = r.values(0, 30)
    assert (t, k, ta, ka) == (pytest.approx(1e-2), pytest.approx(100.0), 1.0, 1.0)
    t, k, ta, ka = r.values(25, 30)
    assert ta == pytest.approx(t) and ta > 1 and ka == 1.0


def test_schedules_drive_estimators_through_the_epoch_callback():
    from xnorflow.sw.train.methods import METHOD_CONFIGS
    from xnorflow.sw.train.models import build_model
    m = build_model(8, [6], 3, 2, METHOD_CONFIGS["irnet"])
    logs = schedules.TKSchedule(0.1, 10.0).on_epoch_start(3, 6, m)
    assert m.layers[0].quantizer.estimator.t == pytest.approx(logs["t"]) == pytest.approx(10 ** 0.0)
    assert m.acts[0].estimator.k == pytest.approx(logs["k"])
    m = build_model(8, [6], 3, 2, METHOD_CONFIGS["sbn"])
    nu = schedules.NuSchedule(1.0, 1000.0)
    assert nu.on_epoch_start(0, 4, m)["nu"] == pytest.approx(1.0)
    assert nu.on_epoch_start(3, 4, m)["nu"] == pytest.approx(1000.0)
    assert m.acts[0].estimator.nu == pytest.approx(1000.0)
    assert nu.value(1, 4) == pytest.approx(10.0)  # multiplicative: ×10 per epoch here
