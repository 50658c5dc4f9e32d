"""BWNH: binary weights via hashing (Hu, Wang, Cheng, AAAI 2018), layer by layer.

For one layer with float weights ``W`` (``S×M``: filter length × filters) and sampled inputs
``X`` (``S×n``), find codes ``B ∈ {±1}^{S×M}`` and scales ``α`` minimising
``‖XᵀW − XᵀB·diag(α)‖²_F = Σ_i (w_i − α_i b_i)ᵀ Z (w_i − α_i b_i)`` with ``Z = X Xᵀ``:

* A-step, closed form: ``α_i = b_iᵀ Z w_i / b_iᵀ Z b_i``;
* B-step, discrete cyclic coordinate descent over the rows ``j`` of ``B``:
  ``b_j ← sign(q_j − (Σ_{p≠j} Z_jp b_p) ⊙ α²)`` with ``Q = Z W diag(α)``.

Each step is an exact minimisation over its block, so the objective never increases.
"""
import torch

from .estimators import sign


def hashing_objective(w, b, alpha, z):
    """``Σ_i (w_i − α_i b_i)ᵀ Z (w_i − α_i b_i)`` for ``w, b`` of shape ``S×M``."""
    r = w - b * alpha.unsqueeze(0)
    return (r * (z @ r)).sum().item()


def hash_layer(weight, inputs, iterations=5):
    """Hash one layer.

    Parameters
    ----------
    weight : Tensor ``[M, S]`` (PyTorch layout: filters × filter length; conv weights flattened)
    inputs : Tensor ``[n, S]`` of sampled layer inputs (rows are samples)
    iterations : number of (A-step, B-step) alternations

    Returns
    -------
    codes ``[M, S]`` of ±1 (float), ``alpha [M]``, and the objective after the
    initialisation and after every A-step and B-step (a non-increasing list).
    """
    w = weight.detach().reshape(weight.shape[0], -1).double().t()  # S×M
    x = inputs.detach().reshape(inputs.shape[0], -1).double()
    z = x.t() @ x
    b = sign(w)
    alpha = w.abs().mean(0)
    history = [hashing_objective(w, b, alpha, z)]
    zw = z @ w
    diag = torch.diagonal(z)
    for _ in range(iterations):
        # A-step: closed form per filter (kept unchanged if b_iᵀZb_i vanishes).
        num = (b * zw).sum(0)
        den = (b * (z @ b)).sum(0)
        alpha = torch.where(den > 0, num / den.clamp(min=1e-300), alpha)
        history.append(hashing_objective(w, b, alpha, z))
        # B-step: one cyclic sweep over rows; each row is the exact minimiser given the others.
        qm = zw * alpha.unsqueeze(0)
        a2 = alpha * alpha
        zb = z @ b  # kept in sync with b row by row
        for j in range(b.shape[0]):
            rest = zb[j] - diag[j] * b[j]
            new = sign(qm[j] - rest * a2)
            delta = new - b[j]
            if torch.any(delta != 0):
                zb += z[:, j:j + 1] * delta.unsqueeze(0)
                b[j] = new
        history.append(hashing_objective(w, b, alpha, z))
    return b.t().float().contiguous(), alpha.float(), history
