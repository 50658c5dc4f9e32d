"""Schedules and epoch callbacks: everything that changes *between* epochs lives here.

A callback has ``on_epoch_start(epoch, num_epochs, model)`` and
``on_epoch_end(epoch, num_epochs, model)``; each returns a dict of values that the trainer
stores in that epoch's history entry. Training loops never contain method-specific code: they
call the callbacks and the optimiser, nothing else.
"""
import math

import torch

from . import estimators as est
from . import quantizers as q


class Callback:
    """Base class with no-op hooks."""

    def on_epoch_start(self, epoch, num_epochs, model):
        """Called before the first batch of ``epoch`` (0-based); returns values to log."""
        return {}

    def on_epoch_end(self, epoch, num_epochs, model):
        """Called after the epoch's test evaluation; returns values to log."""
        return {}

    def on_epoch_resume(self, epoch, num_epochs, model):
        """Called instead of :meth:`on_epoch_start` when training resumes in the middle of
        ``epoch`` (:func:`xnorflow.sw.train.trainer.fit`): restore what ``on_epoch_start`` sets outside
        the model's ``state_dict`` (the training state restores the rest; its logs too). The
        default repeats ``on_epoch_start``, right for schedules that only set values."""
        self.on_epoch_start(epoch, num_epochs, model)


def log_t(epoch, num_epochs, t_min, t_max):
    """``t = 10^(log10 T_min + (log10 T_max − log10 T_min)·e/E)`` (IR-Net and RBNN)."""
    lo, hi = math.log10(t_min), math.log10(t_max)
    return 10.0 ** (lo + (hi - lo) * epoch / num_epochs)


def weight_estimators(model):
    """The estimator objects of all weight quantizers of ``model`` (those that have one)."""
    return [layer.quantizer.estimator for layer in model.layers if getattr(layer.quantizer, "estimator", None)]


def act_estimators(model):
    """The estimator objects of all sign activations of ``model``."""
    return [a.estimator for a in model.acts if a.estimator is not None]


class TKSchedule(Callback):
    """The ``(t, k)`` schedule of IR-Net's EDE and RBNN's training-aware sign.

    Weights get ``t`` from :func:`log_t` and ``k = max(1/t, 1)``. Activations get the same
    (``act_rule="same"``, IR-Net) or ``k = 1``, ``t_a = max(t, 1)`` (``act_rule="rbnn"``).
    """

    def __init__(self, t_min, t_max, act_rule="same"):
        self.t_min, self.t_max, self.act_rule = float(t_min), float(t_max), act_rule

    def values(self, epoch, num_epochs):
        """``(t, k, t_act, k_act)`` for ``epoch`` of ``num_epochs``."""
        t = log_t(epoch, num_epochs, self.t_min, self.t_max)
        k = max(1.0 / t, 1.0)
        if self.act_rule == "rbnn":
            return t, k, max(t, 1.0), 1.0
        return t, k, t, k

    def on_epoch_start(self, epoch, num_epochs, model):
        t, k, ta, ka = self.values(epoch, num_epochs)
        for e in weight_estimators(model):
            e.t, e.k = t, k
        for e in act_estimators(model):
            e.t, e.k = ta, ka
        return {"t": t, "k": k, "t_act": ta, "k_act": ka}


class NuSchedule(Callback):
    """Self-Binarizing's growing slope: ``ν_e = ν_0·(ν_end/ν_0)^(e/(E−1))`` (geometric, i.e.
    multiplied by a constant factor every epoch, reaching ``ν_end`` in the last epoch)."""

    def __init__(self, nu_start=1.0, nu_end=1000.0):
        self.nu_start, self.nu_end = float(nu_start), float(nu_end)

    def value(self, epoch, num_epochs):
        """``ν`` for ``epoch`` of ``num_epochs``."""
        if num_epochs <= 1:
            return self.nu_end
        return self.nu_start * (self.nu_end / self.nu_start) ** (epoch / (num_epochs - 1))

    def on_epoch_start(self, epoch, num_epochs, model):
        nu = self.value(epoch, num_epochs)
        for e in weight_estimators(model) + act_estimators(model):
            if isinstance(e, est.SoftSign):
                e.nu = nu
        return {"nu": nu}


class RotationUpdate(Callback):
    """RBNN: run the SVD bi-rotation alternation of every RBNN layer at the start of each epoch.

    Logs per layer the fraction of weight signs the rotation flips, the angles between filters
    and their signs before/after rotation, and the objective before/after (all into history).
    """

    def __init__(self, iterations=3):
        self.iterations = iterations

    def on_epoch_resume(self, epoch, num_epochs, model):
        """Nothing: this epoch's rotation already happened, and R1/R2 are model buffers that
        the training state restored (rotating again would not be the uninterrupted run)."""

    def on_epoch_start(self, epoch, num_epochs, model):
        logs = {}
        flips = []
        for i, layer in enumerate(model.layers):
            if isinstance(layer.quantizer, q.RBNNWeight):
                r = layer.quantizer.update_rotation(layer.weight, self.iterations)
                logs[f"rotation_fc{i}"] = r
                flips.append(r["rot_flip"])
        if flips:
            logs["rot_flip_mean"] = sum(flips) / len(flips)
        return logs


def saturation(model, x_probe):
    """Fractions of weights and of hidden activations with ``|tanh(ν·u)| > 0.99`` (SBN).

    Activations are measured on ``x_probe`` in eval mode (pre-sign BN outputs of hidden layers).
    """
    w_num = w_den = 0
    for layer in model.layers:
        qz = layer.quantizer
        if isinstance(qz, q.SBNWeight):
            u = qz.pre_activation(layer.weight.detach())
            w_num += (torch.tanh(qz.estimator.nu * u).abs() > 0.99).sum().item()
            w_den += u.numel()
    a_num = a_den = 0
    rec = []
    was = model.training
    model.eval()
    with torch.no_grad():
        model._run(x_probe, rec)
    model.train(was)
    for i, act in enumerate(model.acts):
        if isinstance(act.estimator, est.SoftSign):
            z = rec[i]["z"]
            a_num += (torch.tanh(act.estimator.nu * z).abs() > 0.99).sum().item()
            a_den += z.numel()
    return {"sat_weights": w_num / max(w_den, 1), "sat_acts": a_num / max(a_den, 1)}


class SaturationProbe(Callback):
    """Self-Binarizing: log the saturated fractions (see :func:`saturation`) after every epoch."""

    def __init__(self, x_probe):
        self.x_probe = x_probe

    def on_epoch_end(self, epoch, num_epochs, model):
        return saturation(model, self.x_probe)
