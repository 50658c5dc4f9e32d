"""The deployable model family: MLPs whose every layer is binary, exactly as the accelerator runs them.

Layer ``l`` computes::

    dot = x @ sign(w_eff).T          # x: k-bit integers (first layer) or ±1 (later layers)
    y   = alpha * dot + bias         # per-output-channel alpha (may be negative), bias
    z   = (y - mean) / sqrt(var + eps) * gamma + beta      # batch norm
    out = sign(z) (sign(0) = +1)     # hidden layers;  z itself = class scores for the last

The dot product is an exact integer in float32 (``|dot| ≤ N·(2^k − 1) < 2^24``). In eval mode
everything after the dot is evaluated in float64 in exactly the operation order above, the same
order :func:`reference_forward` uses in numpy; the compiler's float64 threshold fold is
therefore checked against bit-identical values. Training stays in float32.

Which quantizers a model uses is data (``method_config["weight"]``, ``["act"]``) so that a
checkpoint can rebuild it; see :func:`build_model`.
"""
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import estimators as est
from . import quantizers as q
from ..errors import XnorflowError


class NotDeployableError(XnorflowError, RuntimeError):
    """Raised by :meth:`BinaryMLP.deploy_layers` when the model is not what the accelerator computes."""


class BinaryLinear(nn.Module):
    """A dense layer with a pluggable weight quantizer: returns the integer ``dot`` and ``alpha``.

    The dot product is the only dense-specific part (:meth:`dot`):
    :class:`~xnorflow.sw.train.conv.BinaryConv2d` subclasses this layer and overrides only that, with its
    weight flattened to ``[C_out, C_in·9]`` (quantizers treat dim 0 as the filter).
    """

    def __init__(self, in_features, out_features, make_quantizer, bias=False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.quantizer = make_quantizer(self.weight.detach())
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def quantized(self):
        """``(wq, alpha)`` from the weight quantizer (``alpha`` ones if it has none)."""
        wq, alpha = self.quantizer(self.weight)
        if alpha is None:
            alpha = torch.ones(self.out_features, device=self.weight.device)
        return wq, alpha

    def bias_or_zero(self):
        """The additive bias (zeros when the layer has none)."""
        if self.bias is None:
            return torch.zeros(self.out_features, device=self.weight.device)
        return self.bias

    @staticmethod
    def dot(x, wq):
        """``x @ wq.T`` (the binary dot product when ``wq`` is ±1)."""
        return F.linear(x, wq)


def bn_eval64(bn, y):
    """Batch norm with running statistics in float64, in the documented operation order."""
    mean = bn.running_mean.double()
    var = bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    return (y - mean) / torch.sqrt(var + bn.eps) * gamma + beta


_ACT_ESTIMATORS = {"ste": est.STE, "ede": est.EDE, "rbnn": est.TrainingAwareSign, "tanh": est.SoftSign}


def _make_weight_quantizer(kind, cfg):
    if kind == "float":
        return lambda w: q.FloatWeight(w)
    if kind == "ste":
        return lambda w: q.SignWeight(w, est.STE(), scale=False, clip=cfg.get("weight_clip", 1.0))
    if kind == "bwnh":
        return lambda w: q.SignWeight(w, est.STE(), scale=True, clip=cfg.get("weight_clip", None))
    if kind == "irnet":
        return lambda w: q.IRNetWeight(w, est.EDE())
    if kind == "rbnn":
        return lambda w: q.RBNNWeight(w, est.TrainingAwareSign(), theta_init=cfg.get("theta_init", math.pi / 2))
    if kind == "sbn":
        return lambda w: q.SBNWeight(w, est.SoftSign())
    raise ValueError(f"unknown weight quantizer {kind!r}")


def _make_act_quantizer(kind):
    if kind in _ACT_ESTIMATORS:
        return q.ActQuantizer("sign", _ACT_ESTIMATORS[kind]())
    return q.ActQuantizer(kind)


def training_dropouts(method_config, n_layers):
    """The training-only regularisers of a model with ``n_layers`` weight layers (identity in
    eval mode): drops[0] on the input pixels (``input_dropout``), drops[i] on the binary
    activations entering weight layer i (``dropout``)."""
    p_in = float(method_config.get("input_dropout", 0.0) or 0.0)
    p_h = float(method_config.get("dropout", 0.0) or 0.0)
    return nn.ModuleList(nn.Dropout(p_in if i == 0 else p_h) for i in range(n_layers))


class BinaryMLP(nn.Module):
    """An MLP of :class:`BinaryLinear` + ``BatchNorm1d`` layers with sign activations between them.

    Parameters
    ----------
    in_features, hidden, num_classes : int, list of int, int
        Layer widths; ``hidden`` may be empty (a single layer).
    input_bits : int
        ``k``: the first layer takes unsigned k-bit integers (0..2^k−1) as floats, unnormalised.
    method_config : dict
        ``"weight"``: one of ``float, ste, bwnh, irnet, rbnn, sbn``; ``"act"``: one of
        ``ste, ede, rbnn, tanh`` (sign with that estimator) or ``relu, hardtanh, identity``;
        optional ``"theta_init"`` (RBNN), ``"weight_clip"``, ``"act_centring"`` (RBNN's per-sample
        activation centring: off by default, and not deployable when on), ``"dropout"`` (p of
        training-only dropout on the binary activations between layers) and ``"input_dropout"``
        (the same on the first layer's input pixels). Dropout acts only in training mode
        (``nn.Dropout``: zero with probability p, scale the rest by 1/(1 − p)); the eval forward,
        ``trace`` and ``deploy_layers`` never apply it, so the deployed computation is unchanged.
    """

    def __init__(self, in_features, hidden, num_classes, input_bits, method_config):
        super().__init__()
        self.in_features = int(in_features)
        self.hidden = [int(h) for h in hidden]
        self.num_classes = int(num_classes)
        self.input_bits = int(input_bits)
        self.method_config = dict(method_config)
        widths = [self.in_features] + self.hidden + [self.num_classes]
        make_w = _make_weight_quantizer(self.method_config["weight"], self.method_config)
        self.layers = nn.ModuleList(BinaryLinear(a, b, make_w) for a, b in zip(widths[:-1], widths[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(b) for b in widths[1:])
        self.acts = nn.ModuleList(_make_act_quantizer(self.method_config["act"]) for _ in self.hidden)
        self.act_centring = bool(self.method_config.get("act_centring", False))
        self.drops = training_dropouts(self.method_config, len(self.layers))

    def _run(self, x, record=None):
        """Forward pass; when ``record`` is a list, append per-layer intermediate values to it."""
        h = x.float()
        scores = None
        n = len(self.layers)
        for i, (layer, bn) in enumerate(zip(self.layers, self.bns)):
            wq, alpha = layer.quantized()
            if self.training and self.drops[i].p > 0:
                h = self.drops[i](h)
            dot = layer.dot(h, wq)
            if self.training:
                z = bn(dot * alpha + layer.bias_or_zero())
            else:
                y = dot.double() * alpha.double() + layer.bias_or_zero().double()
                z = bn_eval64(bn, y)
            if record is not None:
                record.append({"dot": dot, "z": z})
            if i == n - 1:
                scores = z
                break
            if self.act_centring:
                z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True)
            h = self.acts[i](z).float()
            if record is not None:
                record[-1]["act"] = h
        return scores

    def forward(self, x):
        """Class scores (float32 in training mode, float64 in eval mode)."""
        return self._run(x)

    @torch.no_grad()
    def trace(self, x):
        """Per-layer ``{"dot", "bits", "scores"}`` of an eval-mode forward (see the deploy contract)."""
        was = self.training
        self.eval()
        rec = []
        self._run(x, rec)
        self.train(was)
        out = []
        for i, r in enumerate(rec):
            last = i == len(rec) - 1
            out.append({
                "dot": r["dot"],
                "bits": None if last else (r["z"] >= 0),
                "scores": r["z"] if last else None,
            })
        return out

    def not_deployable(self):
        """``None`` when the eval forward is exactly the accelerator's computation, else the reason."""
        if self.act_centring:
            return "layer fc1: per-sample activation centring (rebuild with act_centring off)"
        for i, layer in enumerate(self.layers):
            reason = layer.quantizer.not_deployable
            if reason:
                return f"layer fc{i}: {reason}"
        for i, act in enumerate(self.acts):
            reason = act.not_deployable
            if reason:
                return f"activation after layer fc{i}: {reason}"
        return None

    @torch.no_grad()
    def deploy_layers(self):
        """Export every layer for the compiler (the deploy contract); raises :class:`NotDeployableError`."""
        reason = self.not_deployable()
        if reason:
            raise NotDeployableError(f"model is not deployable: {reason}")
        was = self.training
        self.eval()
        try:
            last = len(self.layers) - 1
            return [export_weight_layer(layer, bn, f"fc{i}", self.input_bits if i == 0 else 1, i == last)
                    for i, (layer, bn) in enumerate(zip(self.layers, self.bns))]
        finally:
            self.train(was)

    def after_step(self):
        """Per-optimiser-step hooks of the quantizers (e.g. BinaryConnect weight clipping)."""
        quantizer_after_step(self.layers)


@torch.no_grad()
def export_weight_layer(layer, bn, name, input_bits, last):
    """The deploy-contract dict of one weight layer and its batch norm (model in eval mode).

    ``weight_sign`` is the effective ±1 weight as int8 ``[M, N]`` (a conv's keeps the layer's
    flattened ``(c, ky, kx)`` order; :meth:`BinaryCNN.deploy_layers` reorders it), ``alpha``,
    ``bias`` and the ``bn`` statistics float64; ``output`` is ``"raw"`` for the last layer.
    Raises :class:`NotDeployableError` naming ``name`` if a weight is not ±1.
    """
    wq, alpha = layer.quantized()
    ws = wq.detach().cpu().numpy()
    if not np.all(np.abs(ws) == 1):
        raise NotDeployableError(f"layer {name}: effective weights are not all ±1")
    m = layer.out_features
    gamma = bn.weight if bn.weight is not None else torch.ones(m)
    beta = bn.bias if bn.bias is not None else torch.zeros(m)
    return {
        "name": name,
        "in_features": layer.in_features,
        "out_features": m,
        "input_bits": input_bits,
        "weight_sign": ws.astype(np.int8),
        "alpha": alpha.detach().double().cpu().numpy(),
        "bias": layer.bias_or_zero().detach().double().cpu().numpy(),
        "bn": {
            "gamma": gamma.detach().double().cpu().numpy(),
            "beta": beta.detach().double().cpu().numpy(),
            "mean": bn.running_mean.double().cpu().numpy(),
            "var": bn.running_var.double().cpu().numpy(),
            "eps": float(bn.eps),
        },
        "output": "raw" if last else "threshold",
    }


def quantizer_after_step(layers):
    """Run each weight quantizer's per-optimiser-step hook (e.g. BinaryConnect weight clipping)."""
    for layer in layers:
        hook = getattr(layer.quantizer, "after_step", None)
        if hook is not None:
            hook(layer.weight)


def reference_forward(layers, x):
    """Evaluate exported :meth:`BinaryMLP.deploy_layers` dicts in numpy (int64 dots, float64 rest).

    Returns a list of per-layer ``{"dot", "bits", "scores"}`` like :meth:`BinaryMLP.trace`; it
    is the independent check that the export reproduces the model bit for bit.
    """
    h = np.asarray(x).astype(np.int64)
    out = []
    for i, layer in enumerate(layers):
        dot = h @ layer["weight_sign"].astype(np.int64).T
        y = dot.astype(np.float64) * layer["alpha"] + layer["bias"]
        bn = layer["bn"]
        # sqrt through torch, as bn_eval64 does: torch's float64 sqrt is not always correctly
        # rounded, and numpy's would differ from the model in the last bit for some channels.
        sigma = torch.sqrt(torch.as_tensor(bn["var"], dtype=torch.float64) + bn["eps"]).numpy()
        z = (y - bn["mean"]) / sigma * bn["gamma"] + bn["beta"]
        if layer["output"] == "raw":
            out.append({"dot": dot, "bits": None, "scores": z})
        else:
            bits = z >= 0
            out.append({"dot": dot, "bits": bits, "scores": None})
            h = np.where(bits, 1, -1).astype(np.int64)
    return out


def build_model(in_features, hidden, num_classes, input_bits, method_config):
    """Construct a :class:`BinaryMLP`, or a :class:`~xnorflow.sw.train.conv.BinaryCNN` (conv stack, then
    dense layers of widths ``hidden``) when ``method_config["arch"]`` describes one: the single
    constructor used by training and checkpoints, so a checkpoint rebuilds its architecture."""
    if (method_config.get("arch") or {}).get("kind") == "cnn":
        from .conv import BinaryCNN
        return BinaryCNN(in_features, hidden, num_classes, input_bits, method_config)
    return BinaryMLP(in_features, hidden, num_classes, input_bits, method_config)
