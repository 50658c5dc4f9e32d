"""Sign functions and their gradient estimators.

Every binariser in xnorflow has the same forward, ``sign`` with ``sign(0) = +1`` (design
contract 1: bit 1 is +1, and a zero must map to the same bit in training and in hardware),
and differs only in the backward pass. An *estimator* is a small object that knows the
surrogate derivative ``d sign(u)/du`` it stands for; its parameters (``k``, ``t``) are plain
attributes that :mod:`xnorflow.sw.train.schedules` objects change at the start of each epoch.

Estimators act element-wise, so they work unchanged on dense weights ``[out, in]``, conv
weights ``[out, c, kh, kw]`` and activations of any shape.
"""
import math

import torch


def sign(x):
    """Return ``+1`` where ``x >= 0`` and ``-1`` elsewhere (so ``sign(0) = +1``), same dtype as ``x``."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class Estimator:
    """Base class: a surrogate derivative ``grad(u)`` for ``sign(u)``.

    Subclasses override :meth:`grad`. :meth:`apply` binarises ``u`` with :func:`sign` in
    the forward pass and multiplies the incoming gradient by ``grad(u)`` in the backward.
    """

    name = "estimator"

    def grad(self, u):
        """Surrogate derivative of ``sign`` at ``u`` (a tensor of the same shape)."""
        raise NotImplementedError

    def apply(self, u):
        """``sign(u)`` whose backward uses :meth:`grad`."""
        return _SignFunction.apply(u, self)

    def state(self):
        """The current schedule parameters, for logging."""
        return {}


class _SignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, estimator):
        ctx.save_for_backward(u)
        ctx.estimator = estimator
        return sign(u)

    @staticmethod
    def backward(ctx, grad_out):
        (u,) = ctx.saved_tensors
        return grad_out * ctx.estimator.grad(u), None


class STE(Estimator):
    """Straight-through estimator of BinaryConnect/BNN: gradient 1 where ``|u| <= clip``, else 0."""

    name = "ste"

    def __init__(self, clip=1.0):
        self.clip = float(clip)

    def grad(self, u):
        return (u.abs() <= self.clip).to(u.dtype)

    def state(self):
        return {"clip": self.clip}


class EDE(Estimator):
    """IR-Net's Error Decay Estimator: the derivative of ``k·tanh(t·u)``, i.e. ``k·t·(1 − tanh²(t·u))``.

    ``t`` and ``k`` are set each epoch by :class:`xnorflow.sw.train.schedules.TKSchedule`.
    """

    name = "ede"

    def __init__(self, t=0.1, k=10.0):
        self.t = float(t)
        self.k = float(k)

    def grad(self, u):
        th = torch.tanh(self.t * u)
        return self.k * self.t * (1.0 - th * th)

    def state(self):
        return {"t": self.t, "k": self.k}


class TrainingAwareSign(Estimator):
    """RBNN's training-aware approximation of sign.

    ``F(u) = k·(−sign(u)·t²u²/2 + √2·t·u)`` for ``|u| < √2/t``, else ``k·sign(u)``;
    its derivative ``F'(u) = k·max(√2·t − t²·|u|, 0)`` is what the backward uses.
    """

    name = "rbnn"

    def __init__(self, t=1e-2, k=100.0):
        self.t = float(t)
        self.k = float(k)

    def grad(self, u):
        return self.k * torch.clamp(math.sqrt(2.0) * self.t - self.t * self.t * u.abs(), min=0.0)

    def state(self):
        return {"t": self.t, "k": self.k}


def training_aware_F(u, k, t):
    """RBNN's forward approximation ``F(u)`` (used only by tests to check ``F' = grad``)."""
    s = sign(u)
    inner = k * (-s * t * t * u * u / 2.0 + math.sqrt(2.0) * t * u)
    return torch.where(u.abs() < math.sqrt(2.0) / t, inner, k * s)


class SoftSign(Estimator):
    """Self-Binarizing's ``tanh(ν·u)``: the forward *is* the smooth function (no STE).

    With ``hard = True`` the forward is :func:`sign` (the end-of-training swap); the backward
    is then the true derivative ``ν·(1 − tanh²(ν·u))`` of the soft function, which is only
    used if someone keeps training after the swap.
    """

    name = "tanh"

    def __init__(self, nu=1.0):
        self.nu = float(nu)
        self.hard = False

    def grad(self, u):
        th = torch.tanh(self.nu * u)
        return self.nu * (1.0 - th * th)

    def apply(self, u):
        if self.hard:
            return _SignFunction.apply(u, self)
        return torch.tanh(self.nu * u)

    def state(self):
        return {"nu": self.nu, "hard": self.hard}
