"""Weight and activation quantizers: the pluggable parts of a binary layer.

A *weight quantizer* is an ``nn.Module`` built from a layer's initial weight tensor (so it can
own per-filter parameters such as RBNN's ``θ`` and ``λ``) and called as
``wq, alpha = quantizer(weight)``: ``wq`` has the weight's shape (exactly ``±1`` whenever the
quantizer is deployable and the model is in eval mode) and ``alpha`` is a per-filter scale
of shape ``[out]`` (or ``None`` for "1"). Every quantizer treats dim 0 as the filter (output
channel) and flattens the rest, so the same classes serve dense ``[out, in]`` and conv
``[out, c, kh, kw]`` weights.

An *activation quantizer* maps a batch-norm output to the next layer's input (``±1`` when
deployable). Both kinds report :attr:`not_deployable`: ``None`` when the eval forward is
exactly what the accelerator computes, else the reason it is not.

Estimator parameters (``k``, ``t``, ``ν``) live in plain :mod:`estimators` objects shared with
the schedules; they are serialised through ``get_extra_state`` so a checkpoint restores them.
"""
import math

import torch
from torch import nn

from . import estimators as est


def standardize(w):
    """Per-filter balance and standardise: ``(w_c − mean(w_c)) / std(w_c)`` over all dims but 0."""
    flat = w.reshape(w.shape[0], -1)
    mu = flat.mean(1, keepdim=True)
    sd = flat.std(1, keepdim=True)
    return ((flat - mu) / sd).reshape(w.shape)


def _per_filter(v, like):
    """Reshape a per-filter vector ``[out]`` to broadcast against a weight tensor ``like``."""
    return v.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


class _EstimatorState(nn.Module):
    """Mixin: save/restore the attached estimator's numeric state with the state_dict."""

    estimator = None

    def get_extra_state(self):
        return dict(vars(self.estimator)) if self.estimator is not None else {}

    def set_extra_state(self, state):
        if self.estimator is not None:
            for key, value in state.items():
                setattr(self.estimator, key, value)


class FloatWeight(_EstimatorState):
    """Full-precision weights (the ``fp`` baseline and BWNH's pre-training)."""

    not_deployable = "full-precision weights (train with a binary method, e.g. --method irnet)"

    def __init__(self, weight=None):
        super().__init__()

    def forward(self, w):
        return w, None


class SignWeight(_EstimatorState):
    """``sign(w)`` with a pluggable estimator and an optional fixed per-filter scale buffer.

    Used by the STE baseline (no scale) and by BWNH fine-tuning (scale ``α`` from hashing).
    ``clip`` (BinaryConnect) bounds the latent weights after each optimiser step.
    """

    not_deployable = None

    def __init__(self, weight, estimator=None, scale=False, clip=1.0):
        super().__init__()
        self.estimator = estimator or est.STE()
        self.clip = clip
        if scale:
            self.register_buffer("alpha", weight.detach().reshape(weight.shape[0], -1).abs().mean(1).clone())
        else:
            self.alpha = None

    def forward(self, w):
        return self.estimator.apply(w), self.alpha

    @torch.no_grad()
    def after_step(self, w):
        """Clip latent weights to ``[-clip, clip]`` (they carry no information beyond that)."""
        if self.clip is not None:
            w.clamp_(-self.clip, self.clip)


class IRNetWeight(_EstimatorState):
    """IR-Net Libra-PB: ``Q_w = 2^round(log2 mean|ŵ_c|) · sign(ŵ_c)``, ``ŵ`` balanced and standardised.

    The shift scale carries no gradient; ``sign`` is differentiated by the EDE estimator.
    """

    not_deployable = None

    def __init__(self, weight, estimator=None):
        super().__init__()
        self.estimator = estimator or est.EDE()

    def forward(self, w):
        wh = standardize(w)
        with torch.no_grad():
            s = torch.round(torch.log2(wh.reshape(w.shape[0], -1).abs().mean(1)))
            alpha = torch.pow(2.0, s)
        return self.estimator.apply(wh), alpha


def rbnn_shape(n):
    """RBNN reshape of a filter of ``n`` values: ``n1`` = largest divisor ``≤ √n``, ``n2 = n/n1``."""
    n1 = int(math.isqrt(n))
    while n % n1:
        n1 -= 1
    return n1, n // n1


def random_orthogonal(n, generator=None):
    """A Haar-random ``n×n`` orthogonal matrix (QR of a Gaussian with the sign fix)."""
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.float()


def rotation_objective(x, r1, r2):
    """RBNN objective ``Σ_i tr(B_iᵀ R1ᵀ X_i R2)`` with ``B_i = sign(R1ᵀ X_i R2)``, i.e. ``‖R1ᵀ X R2‖₁``."""
    return (r1.t() @ x @ r2).abs().sum().item()


def rotation_step(x, r1, r2, iterations=3):
    """The RBNN bi-rotation alternation on filters ``x`` (``[M, n1, n2]``, detached).

    Each iteration: ``B = sign(R1ᵀ X R2)``; ``R1 = V Uᵀ`` from ``svd(Σ B R2ᵀ Xᵀ)``;
    ``R2 = U Vᵀ`` from ``svd(Σ Xᵀ R1 B)``. Every sub-step maximises the objective over one
    variable with the others fixed, so :func:`rotation_objective` never decreases.
    Computed in float64 for a clean orthogonal result. Returns the new ``(R1, R2)``.
    """
    x = x.double()
    r1 = r1.double()
    r2 = r2.double()
    for _ in range(iterations):
        b = est.sign(r1.t() @ x @ r2)
        d1 = (b @ r2.t() @ x.transpose(1, 2)).sum(0)
        u, _, vh = torch.linalg.svd(d1)
        r1 = vh.t() @ u.t()
        d2 = (x.transpose(1, 2) @ r1 @ b).sum(0)
        u, _, vh = torch.linalg.svd(d2)
        r2 = u @ vh
    return r1.float(), r2.float()


def mean_sign_angle(v):
    """Mean over filters of the angle (degrees) between a filter and its sign vector."""
    flat = v.reshape(v.shape[0], -1).double()
    cos = flat.abs().sum(1) / (flat.norm(dim=1) * math.sqrt(flat.shape[1]))
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1))).mean().item()


class RBNNWeight(_EstimatorState):
    """RBNN: bi-rotated, adjustably mixed, signed weights with a learned per-channel scale ``λ``.

    ``ŵ`` = standardised weight; ``W_rot = R1ᵀ X R2`` (detached); ``w̃ = ŵ + |sin θ_c|·(W_rot − ŵ)``;
    forward ``sign(w̃)`` (training-aware estimator) and ``alpha = λ_c`` (may turn negative).
    ``R1, R2`` are buffers changed only by :meth:`update_rotation` (an epoch callback), so an
    eval forward and :meth:`BinaryMLP.deploy_layers` see the same rotation.
    """

    not_deployable = None

    def __init__(self, weight, estimator=None, theta_init=math.pi / 2):
        super().__init__()
        self.estimator = estimator or est.TrainingAwareSign()
        out = weight.shape[0]
        self.n1, self.n2 = rbnn_shape(weight[0].numel())
        self.register_buffer("R1", random_orthogonal(self.n1))
        self.register_buffer("R2", random_orthogonal(self.n2))
        if theta_init == "uniform":  # θ_c ~ U(0, π/2): xnorflow's default (docs/training.md, RBNN)
            theta = torch.rand(out) * (math.pi / 2)
        else:  # a constant: π/2, as the official RBNN code since May 2020 (docs/training.md)
            theta = torch.full((out,), float(theta_init))
        self.theta = nn.Parameter(theta)
        self.lam = nn.Parameter(weight.detach().reshape(out, -1).abs().mean(1).clone())

    def _filters(self, wh):
        return wh.reshape(wh.shape[0], self.n1, self.n2)

    @torch.no_grad()
    def reinit(self, w, rotation="identity"):
        """Re-initialise for latent weights ``w`` copied from a trained network (``--init``):
        ``λ_c = mean|w_c|`` and the rotations at the identity (``rotation="identity"``, so the first
        SVD alternation starts from the trained signs) or kept random (``"random"``)."""
        self.lam.copy_(w.reshape(w.shape[0], -1).abs().mean(1))
        if rotation == "identity":
            self.R1.copy_(torch.eye(self.n1))
            self.R2.copy_(torch.eye(self.n2))
        elif rotation != "random":
            raise ValueError(f"rotation must be 'identity' or 'random', got {rotation!r}")

    def rotated(self, w):
        """``R1ᵀ X R2`` of the standardised weights, reshaped like ``w`` (not detached)."""
        wh = standardize(w)
        return (self.R1.t() @ self._filters(wh) @ self.R2).reshape(w.shape)

    def effective(self, w):
        """The mixed weight ``w̃`` whose sign is the binary weight."""
        wh = standardize(w)
        wrot = (self.R1.t() @ self._filters(wh).detach() @ self.R2).reshape(w.shape)
        mix = _per_filter(torch.sin(self.theta).abs(), w)
        return wh + mix * (wrot - wh)

    def forward(self, w):
        return self.estimator.apply(self.effective(w)), self.lam

    @torch.no_grad()
    def update_rotation(self, w, iterations=3):
        """Run the SVD alternation on the current weights; return what it did (for the history).

        ``rot_flip``: fraction of standardised weights whose sign the new rotation flips
        (``sign(R1ᵀXR2) ≠ sign(X)``); ``eff_flip``: the same for the mixed weight ``w̃``;
        ``angle_*``: mean angle between filters and their signs; ``objective_*``: ``‖R1ᵀXR2‖₁``.
        """
        wh = standardize(w)
        x = self._filters(wh)
        before = rotation_objective(x, self.R1, self.R2)
        r1, r2 = rotation_step(x, self.R1, self.R2, iterations)
        self.R1.copy_(r1)
        self.R2.copy_(r2)
        wrot = self.R1.t() @ x @ self.R2
        eff = self.effective(w)
        return {
            "objective_before": before,
            "objective_after": rotation_objective(x, self.R1, self.R2),
            "rot_flip": (est.sign(wrot) != est.sign(x)).float().mean().item(),
            "eff_flip": (est.sign(eff) != est.sign(wh)).float().mean().item(),
            "angle_unrotated": mean_sign_angle(wh),
            "angle_rotated": mean_sign_angle(wrot),
            "mean_abs_sin_theta": torch.sin(self.theta).abs().mean().item(),
        }


class SBNWeight(_EstimatorState):
    """Self-Binarizing weights: ``tanh(ν·ŵ)`` of the standardised weight; ``sign(ŵ)`` after the swap.

    Standardising first (a documented choice) makes one ``ν`` schedule fit every layer's scale.
    """

    def __init__(self, weight, estimator=None):
        super().__init__()
        self.estimator = estimator or est.SoftSign()

    @property
    def not_deployable(self):
        if self.estimator.hard:
            return None
        return "soft tanh(nu*w) weights (Self-Binarizing before its hard sign swap)"

    def forward(self, w):
        return self.estimator.apply(standardize(w)), None

    def pre_activation(self, w):
        """The value ``u`` that goes through ``tanh(ν·u)`` (for saturation statistics)."""
        return standardize(w)


class ActQuantizer(_EstimatorState):
    """Activation between layers: an estimator's sign (deployable) or a float function.

    ``kind`` is ``"sign"`` (with ``estimator``) or one of ``"relu"``, ``"hardtanh"``, ``"identity"``.
    """

    _FLOAT = {"relu": torch.relu, "hardtanh": nn.functional.hardtanh, "identity": lambda z: z}

    def __init__(self, kind="sign", estimator=None):
        super().__init__()
        self.kind = kind
        self.estimator = estimator if kind == "sign" else None
        if kind != "sign" and kind not in self._FLOAT:
            raise ValueError(f"unknown activation kind {kind!r}")

    @property
    def not_deployable(self):
        if self.kind != "sign":
            return f"float activation {self.kind!r} between layers (the accelerator needs sign)"
        if isinstance(self.estimator, est.SoftSign) and not self.estimator.hard:
            return "soft tanh(nu*z) activations (Self-Binarizing before its hard sign swap)"
        return None

    def forward(self, z):
        if self.kind == "sign":
            return self.estimator.apply(z)
        return self._FLOAT[self.kind](z)
