"""BWNH hashing: the objective never increases and the closed-form scale is the least-squares one."""
import torch

from xnorflow.sw.train import bwnh


def test_hashing_objective_never_increases_on_real_inputs(digits_tensors):
    (x, _), _ = digits_tensors
    torch.manual_seed(0)
    w = torch.randn(48, x.shape[1]) * 0.1
    codes, alpha, hist = bwnh.hash_layer(w, x[:500], iterations=6)
    for a, b in zip(hist, hist[1:]):
        assert b <= a * (1 + 1e-12) + 1e-9, hist
    assert hist[-1] < hist[0]
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert codes.shape == w.shape and alpha.shape == (48,)


def test_hashing_beats_sign_and_mean_abs_in_output_space(digits_tensors):
    (x, _), _ = digits_tensors
    torch.manual_seed(1)
    w = torch.randn(32, x.shape[1])
    xs = x[:400].double()
    codes, alpha, _ = bwnh.hash_layer(w, xs, iterations=4)
    ref = xs @ w.double().t()
    naive = xs @ (torch.where(w >= 0, 1.0, -1.0) * w.abs().mean(1, keepdim=True)).double().t()
    hashed = xs @ (codes * alpha.unsqueeze(1)).double().t()
    assert (ref - hashed).pow(2).sum() < (ref - naive).pow(2).sum()


def test_b_step_rows_are_exact_minimisers():
    """After a B-step each row of B is the best of all 2^M sign patterns given the others (brute force)."""
    import itertools
    torch.manual_seed(2)
    x = torch.randn(200, 7, dtype=torch.float64)
    w = torch.randn(4, 7, dtype=torch.float64)
    codes, alpha, hist = bwnh.hash_layer(w, x, iterations=3)
    z = x.t() @ x
    wt, b = w.t(), codes.double().t().clone()  # S×M
    alpha = alpha.double()
    best = bwnh.hashing_objective(wt, b, alpha, z)
    assert abs(best - hist[-1]) <= 1e-6 * abs(best)
    for j in range(b.shape[0]):
        for pattern in itertools.product((-1.0, 1.0), repeat=b.shape[1]):
            trial = b.clone()
            trial[j] = torch.tensor(pattern, dtype=torch.float64)
            assert bwnh.hashing_objective(wt, trial, alpha, z) >= best - 1e-6 * abs(best)


def test_a_step_is_the_least_squares_scale():
    """α_i = b_iᵀZw_i / b_iᵀZb_i equals the least-squares fit of Xᵀw_i by α·Xᵀb_i."""
    torch.manual_seed(3)
    x = torch.randn(300, 12, dtype=torch.float64)
    w = torch.randn(5, 12, dtype=torch.float64)
    codes, alpha, _ = bwnh.hash_layer(w, x, iterations=0)
    assert torch.allclose(alpha.double(), w.abs().mean(1).double())  # initialisation
    _, alpha1, hist = bwnh.hash_layer(w, x, iterations=1)
    b = torch.where(w >= 0, 1.0, -1.0).double()  # codes the A-step of round 1 saw
    for i in range(5):
        ls = torch.linalg.lstsq((x @ b[i]).unsqueeze(1), (x @ w[i]).unsqueeze(1)).solution.item()
        assert abs(alpha1[i].item() - ls) < 1e-5 * max(1.0, abs(ls))
