"""RBNN bi-rotation: the objective never decreases and the weight/sign angle shrinks on real layers."""
import torch

from xnorflow.sw.train import quantizers as q


def _real_layer_filters():
    """First-layer weights of a float MLP briefly trained on digits, standardised, as RBNN filters."""
    from tests.train.conftest import trained
    model, _, _ = trained("fp", 3)
    w = model.layers[1].weight.detach()  # 128×128 hidden layer
    n1, n2 = q.rbnn_shape(w.shape[1])
    return q.standardize(w).reshape(w.shape[0], n1, n2)


def test_rbnn_shape():
    assert q.rbnn_shape(784) == (28, 28)
    assert q.rbnn_shape(64) == (8, 8)
    assert q.rbnn_shape(27) == (3, 9)
    assert q.rbnn_shape(13) == (1, 13)


def test_rotation_step_never_lowers_objective():
    x = _real_layer_filters()
    g = torch.Generator().manual_seed(0)
    r1, r2 = q.random_orthogonal(x.shape[1], g), q.random_orthogonal(x.shape[2], g)
    values = [q.rotation_objective(x, r1, r2)]
    for _ in range(8):
        r1, r2 = q.rotation_step(x, r1, r2, iterations=1)
        values.append(q.rotation_objective(x, r1, r2))
        # the rotations stay orthogonal
        assert torch.allclose(r1.t() @ r1, torch.eye(r1.shape[0]), atol=1e-5)
        assert torch.allclose(r2 @ r2.t(), torch.eye(r2.shape[0]), atol=1e-5)
    for a, b in zip(values, values[1:]):
        assert b >= a * (1 - 1e-6), values
    assert values[-1] > values[0]


def test_rotation_reduces_angle_to_sign():
    x = _real_layer_filters()
    eye1, eye2 = torch.eye(x.shape[1]), torch.eye(x.shape[2])
    before = q.mean_sign_angle(x)
    r1, r2 = q.rotation_step(x, eye1, eye2, iterations=3)
    after3 = q.mean_sign_angle(r1.t() @ x @ r2)
    r1, r2 = q.rotation_step(x, r1, r2, iterations=27)
    after30 = q.mean_sign_angle(r1.t() @ x @ r2)
    assert after30 < after3 < before, (before, after3, after30)


def test_update_rotation_logs_flips_and_keeps_eval_consistent():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    qz = q.RBNNWeight(w)
    logs = qz.update_rotation(w)
    assert logs["objective_after"] >= logs["objective_before"]
    # A random initial rotation flips about half of the signs (the effect RBNN reports).
    assert 0.3 < logs["rot_flip"] < 0.7
    assert set(logs) >= {"rot_flip", "eff_flip", "angle_unrotated", "angle_rotated"}
    wq, lam = qz(w)
    assert torch.equal(wq.abs(), torch.ones_like(wq)) and lam.shape == (16,)
