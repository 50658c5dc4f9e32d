"""Binary convolutional networks: 3×3 conv with ±1 padding, 2×2 max-pool, the CNV topology.

What trains here is exactly what ``sw/layers/conv.py`` computes (docs/conv.md):

* :class:`BinaryConv2d` — 3×3, stride 1, one pixel of padding whose value is the golden
  model's ``PAD_BIT``: −1 for binary inputs, the integer 0 for the unsigned k-bit first layer.
  Its latent weight is stored **flattened**, ``[C_out, C_in·9]`` in PyTorch's ``(c, ky, kx)``
  order, so the weight quantizers, the schedules and BWNH's hashing see a 2-D ``[filters,
  filter length]`` tensor exactly as for :class:`~xnorflow.sw.train.models.BinaryLinear` (the
  quantizer API is unchanged); only :meth:`BinaryConv2d.dot` is conv-specific.
* A conv block is ``dot = conv(pad(x), sign(w))`` → optional 2×2 max-pool **of the integer
  dot** → ``alpha·dot + bias`` → batch norm → sign. Pooling the integers before the monotone
  threshold is what makes the hardware's OR/AND-by-direction pool on bits exact.
* :class:`BinaryCNN` — conv blocks, then the HWC-flattened image into dense blocks (the
  :class:`~xnorflow.sw.train.models.BinaryMLP` arithmetic, float64 after the dot in eval mode).

Inputs are the flat ``[B, H·W·C]`` k-bit integers of :func:`xnorflow.sw.data.quantize_inputs` in HWC
order (for one channel: the row-major image), the same vector the golden model takes.
The architecture lives in ``method_config["arch"]`` (``{"kind": "cnn", "image": [H, W, C],
"conv": [64, 64, "pool", …]}``), so a checkpoint rebuilds it through
:func:`xnorflow.sw.train.models.build_model` like any other model.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..layers.conv import KERNEL, PAD_BIT, POOL
from .defaults import MAX_LAYER_WIDTH
from .models import (BinaryLinear, NotDeployableError, _make_act_quantizer, _make_weight_quantizer, bn_eval64,
                     export_weight_layer, quantizer_after_step, training_dropouts)

CNV_STACK = [64, 64, "pool", 128, 128, "pool"]
"""The CNV-like conv stack for 28×28×1 inputs (then ``--hidden``, default 256, and the classes)."""
CNV_HIDDEN = [256]


def parse_arch(text):
    """``--arch`` value → ``None`` (the MLP) or a conv stack list.

    ``mlp``; ``cnv`` (:data:`CNV_STACK`); or ``cnv:16,16,p,32,32,p`` — conv output channel
    counts and ``p`` (or ``pool``) for a 2×2 max-pool after the conv before it.
    Raises ``ValueError`` with the reason.
    """
    t = text.strip().lower()
    if t == "mlp":
        return None
    if t == "cnv":
        return list(CNV_STACK)
    if not t.startswith("cnv:"):
        raise ValueError(f"expected mlp, cnv or cnv:16,16,p,32,32,p, got {text!r}")
    stack = []
    for part in t[4:].split(","):
        part = part.strip()
        if part in ("p", "pool"):
            if not stack or stack[-1] == "pool":
                raise ValueError(f"a pool must follow a conv layer: {text!r}")
            stack.append("pool")
        elif part.isdigit() and 0 < int(part) <= MAX_LAYER_WIDTH:
            stack.append(int(part))
        else:
            raise ValueError(f"{part!r} is neither a channel count in 1..{MAX_LAYER_WIDTH} nor p: {text!r}")
    if not stack or stack[0] == "pool":
        raise ValueError(f"the stack must start with a conv layer: {text!r}")
    return stack


def cnn_arch(stack, image):
    """The ``method_config["arch"]`` entry of a CNN with conv ``stack`` on ``image = (H, W, C)``."""
    h, w, c = (int(v) for v in image)
    if not stack or stack[0] == "pool" or any(a == b == "pool" for a, b in zip(stack, stack[1:])):
        raise ValueError(f"a conv stack starts with a conv and pools only after convs: {stack}")
    for item in stack:
        if item == "pool":
            if h < POOL or w < POOL:
                raise ValueError(f"the conv stack pools a {h}×{w} image: too small for {stack}")
            h, w = h // POOL, w // POOL
    return {"kind": "cnn", "image": [int(v) for v in image], "conv": list(stack)}


CNN_HASH_SAMPLES = 256
"""BWNH's sampled training images for a CNN (its ``hash_samples``; the MLP default is 10 000):
every layer's hashing runs the model forward on them and keeps each layer's activations, and
256 images of 28×28 already give 200 000 conv patches (:meth:`BinaryCNN.hash_inputs` keeps
20 000). 10 000 images through the CNV would take gigabytes."""


def cnn_overrides(method, stack, image):
    """``method_overrides`` for :func:`xnorflow.sw.train.methods.train` that make ``method`` train a CNN:
    the ``arch`` entry (:func:`cnn_arch`), and for BWNH a CNN-sized ``hash_samples``."""
    overrides = {"arch": cnn_arch(stack, image)}
    if method == "bwnh":
        overrides["hash_samples"] = CNN_HASH_SAMPLES
    return overrides


def pad_value(binary_input, input_bits=1):
    """The torch value of the padding bit: −1 / +1 (binary) or 0 / 2^k − 1 (unsigned k-bit)."""
    if binary_input:
        return 1.0 if PAD_BIT else -1.0
    return float((1 << input_bits) - 1) if PAD_BIT else 0.0


class BinaryConv2d(BinaryLinear):
    """3×3, stride-1 convolution with constant padding and a pluggable weight quantizer.

    Parameters
    ----------
    in_channels, out_channels : C_in, C_out.
    make_quantizer : as for :class:`~xnorflow.sw.train.models.BinaryLinear`; it receives the flattened
        ``[C_out, C_in·9]`` initial weight (dim 0 = filter).
    pad : the border value (:func:`pad_value`).

    ``dot(x, wq)`` takes NCHW activations and the quantized flattened weight and returns the
    NCHW integer dot products.
    """

    def __init__(self, in_channels, out_channels, make_quantizer, pad, bias=False):
        # Flattened like a dense weight ([C_out, C_in·9], dim 0 = filter): the quantizer, the
        # fan-in of the init (exactly nn.Conv2d's), ``quantized`` and ``bias_or_zero`` are the
        # dense layer's; only ``dot`` differs.
        super().__init__(int(in_channels) * KERNEL * KERNEL, int(out_channels), make_quantizer, bias)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.pad = float(pad)

    def kernel(self, wq):
        """The flattened weight as a conv kernel ``[C_out, C_in, 3, 3]``."""
        return wq.reshape(self.out_channels, self.in_channels, KERNEL, KERNEL)

    def dot(self, x, wq):
        """``conv2d(pad(x, self.pad), wq)``, NCHW, rounded to integers in the forward pass.

        With ±1 weights and integer inputs the exact result is an integer below 2^24; the
        straight-through rounding removes any last-bit error of a CPU conv algorithm (e.g.
        Winograd's fractional transforms) and leaves the gradient untouched.
        """
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), value=self.pad), self.kernel(wq))
        return y + (torch.round(y) - y).detach()


def _per_channel(v, like):
    return v.reshape((1, -1) + (1,) * (like.dim() - 2))


class BinaryCNN(nn.Module):
    """Conv blocks (:class:`BinaryConv2d` + ``BatchNorm2d``, optional 2×2 max-pool of the dot)
    followed by dense blocks (:class:`~xnorflow.sw.train.models.BinaryLinear` + ``BatchNorm1d``).

    Parameters
    ----------
    in_features : H·W·C of the flat HWC input.
    hidden : widths of the dense hidden layers after the conv stack.
    num_classes, input_bits, method_config : as :class:`~xnorflow.sw.train.models.BinaryMLP`;
        ``method_config["arch"]`` = :func:`cnn_arch` (image shape and conv stack).

    Attributes shared with :class:`~xnorflow.sw.train.models.BinaryMLP` (what schedules, the trainer
    and BWNH use): ``layers`` (every weight layer, input to output), ``bns``, ``acts`` (one
    per hidden layer), ``_run(x, record)``, ``trace``, ``deploy_layers``, ``after_step``.
    """

    def __init__(self, in_features, hidden, num_classes, input_bits, method_config):
        super().__init__()
        self.in_features = int(in_features)
        self.hidden = [int(h) for h in hidden]
        self.num_classes = int(num_classes)
        self.input_bits = int(input_bits)
        self.method_config = dict(method_config)
        arch = self.method_config["arch"]
        self.image = tuple(int(v) for v in arch["image"])
        h, w, c = self.image
        if h * w * c != self.in_features:
            raise ValueError(f"arch image {h}×{w}×{c} has {h * w * c} values, the inputs have "
                             f"{self.in_features}")
        make_w = _make_weight_quantizer(self.method_config["weight"], self.method_config)
        layers, bns, self.pool_after, self.geometry = [], [], [], []
        for item in arch["conv"]:
            if item == "pool":
                self.pool_after[-1] = True
                h, w = h // POOL, w // POOL
                continue
            first = not layers
            layers.append(BinaryConv2d(c, int(item), make_w, pad_value(not first, self.input_bits)))
            bns.append(nn.BatchNorm2d(int(item)))
            self.pool_after.append(False)
            self.geometry.append((h, w, c))
            c = int(item)
        self.n_conv = len(layers)
        widths = [h * w * c] + self.hidden + [self.num_classes]
        for a, b in zip(widths[:-1], widths[1:]):
            layers.append(BinaryLinear(a, b, make_w))
            bns.append(nn.BatchNorm1d(b))
        self.layers = nn.ModuleList(layers)
        self.bns = nn.ModuleList(bns)
        self.acts = nn.ModuleList(_make_act_quantizer(self.method_config["act"])
                                  for _ in range(len(layers) - 1))
        self.drops = training_dropouts(self.method_config, len(layers))

    def _affine_bn(self, i, dot, alpha, bias):
        """``z = BN(alpha·dot + bias)``: float32 in training, float64 in the documented order in eval."""
        layer, bn = self.layers[i], self.bns[i]
        if self.training:
            return bn(dot * _per_channel(alpha, dot) + _per_channel(bias, dot))
        if dot.dim() == 4:  # channels last so that bn_eval64's per-channel vectors broadcast
            y = dot.permute(0, 2, 3, 1).double() * alpha.double() + bias.double()
            return bn_eval64(bn, y).permute(0, 3, 1, 2)
        return bn_eval64(bn, dot.double() * alpha.double() + bias.double())

    def _run(self, x, record=None):
        """Forward pass; with ``record`` a list, append per weight layer ``{"dot", "z", "act"}``
        (conv: ``dot`` is the pooled integer dot, ``dot_full`` the one before pooling)."""
        b = x.shape[0]
        hh, ww, cc = self.image
        h = x.float().reshape(b, hh, ww, cc).permute(0, 3, 1, 2)
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            if i == self.n_conv:
                h = h.permute(0, 2, 3, 1).reshape(b, -1)            # HWC flattening
            wq, alpha = layer.quantized()
            if self.training and self.drops[i].p > 0:
                h = self.drops[i](h)
            dot = layer.dot(h, wq)
            full = dot
            if i < self.n_conv and self.pool_after[i]:
                dot = F.max_pool2d(dot, POOL)                        # max of the integers
            z = self._affine_bn(i, dot, alpha, layer.bias_or_zero())
            if record is not None:
                record.append({"dot": dot, "z": z, "dot_full": full, "alpha": alpha})
            if i == n - 1:
                return z
            h = self.acts[i](z).float()
            if record is not None:
                record[-1]["act"] = h

    def forward(self, x):
        """Class scores (float32 in training mode, float64 in eval mode)."""
        return self._run(x)

    @staticmethod
    def _hwc(t):
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)

    @torch.no_grad()
    def trace(self, x):
        """Per *compiled* layer ``{"dot", "bits", "scores"}`` (HWC-flattened), eval mode.

        A pooled conv gives two entries: the conv at full resolution (its integer dot and the
        bits its folded threshold would give there: BN in eval mode is per element) and the
        pool (``dot`` None, ``bits`` = the bits the model really passes on, i.e. the sign of
        the batch norm of the *pooled* integers). The golden model computes the second from
        the first by OR/AND, so comparing both checks the pool fold on every pixel.
        """
        was = self.training
        self.eval()
        rec = []
        self._run(x, rec)
        out = []
        for i, r in enumerate(rec):
            last = i == len(rec) - 1
            if i < self.n_conv:
                layer = self.layers[i]
                z_full = self._affine_bn(i, r["dot_full"], r["alpha"], layer.bias_or_zero())
                out.append({"dot": self._hwc(r["dot_full"]), "bits": self._hwc(z_full >= 0),
                            "scores": None})
                if self.pool_after[i]:
                    out.append({"dot": None, "bits": self._hwc(r["z"] >= 0), "scores": None})
            else:
                out.append({"dot": r["dot"], "bits": None if last else (r["z"] >= 0),
                            "scores": r["z"] if last else None})
        self.train(was)
        return out

    def layer_names(self):
        """Names of the compiled layers, input to output (convs, pools, fcs by position)."""
        names = []
        for i in range(len(self.layers)):
            if i < self.n_conv:
                names.append(f"conv{len(names)}")
                if self.pool_after[i]:
                    names.append(f"pool{len(names)}")
            else:
                names.append(f"fc{len(names)}")
        return names

    def _weight_names(self):
        names = self.layer_names()
        return [n for n in names if not n.startswith("pool")]

    def not_deployable(self):
        """``None`` when the eval forward is exactly the accelerator's computation, else the reason."""
        names = self._weight_names()
        for name, layer in zip(names, self.layers):
            if layer.quantizer.not_deployable:
                return f"layer {name}: {layer.quantizer.not_deployable}"
        for name, act in zip(names, self.acts):
            if act.not_deployable:
                return f"activation after layer {name}: {act.not_deployable}"
        return None

    @torch.no_grad()
    def deploy_layers(self):
        """Export every compiled layer for the compiler (the deploy contract, docs/conv.md).

        Conv dicts carry ``type: conv3x3``, the geometry and ``weight_sign`` ``[C_out, 9·C_in]``
        in the golden **tap-major** order ``(ky, kx, c)``; pools carry ``type: maxpool2x2`` and
        the geometry (their directions come from the folded conv); dense dicts are
        :func:`~xnorflow.sw.train.models.export_weight_layer`'s, as in :meth:`BinaryMLP.deploy_layers`.
        """
        reason = self.not_deployable()
        if reason:
            raise NotDeployableError(f"model is not deployable: {reason}")
        was = self.training
        self.eval()
        names = iter(self.layer_names())
        last = len(self.layers) - 1
        out = []
        try:
            for i, (layer, bn) in enumerate(zip(self.layers, self.bns)):
                d = export_weight_layer(layer, bn, next(names), self.input_bits if i == 0 else 1, i == last)
                out.append(d)
                if i < self.n_conv:
                    h, w, c = self.geometry[i]
                    m = layer.out_features
                    taps = d["weight_sign"].reshape(m, c, KERNEL, KERNEL).transpose(0, 2, 3, 1)  # (ky, kx, c)
                    d.update(type="conv3x3", height=h, width=w, in_channels=c, out_channels=m,
                             in_features=h * w * c, out_features=h * w * m,
                             weight_sign=np.ascontiguousarray(taps).reshape(m, -1))
                    if self.pool_after[i]:
                        out.append({"name": next(names), "type": "maxpool2x2", "height": h,
                                    "width": w, "channels": m})
        finally:
            self.train(was)
        return out

    def after_step(self):
        """Per-optimiser-step hooks of the quantizers (e.g. BinaryConnect weight clipping)."""
        quantizer_after_step(self.layers)

    @torch.no_grad()
    def hash_inputs(self, i, x, max_rows=20000, seed=0):
        """BWNH's sampled inputs of weight layer ``i`` as rows matching its flattened weight.

        ``x`` is that layer's input as the trainer's ``_layer_inputs`` gives it (the flat HWC
        model input for layer 0, else the previous layer's activation, NCHW after a conv).
        Conv layers give their im2col patches (:func:`conv_patches`, at most ``max_rows``
        of them, sampled with a fixed seed); the first dense layer the HWC flattening.
        """
        if i == 0:
            hh, ww, cc = self.image
            x = x.float().reshape(x.shape[0], hh, ww, cc).permute(0, 3, 1, 2)
        if i < self.n_conv:
            gen = torch.Generator().manual_seed(seed + i)
            # Only as many images as the row budget needs: im2col multiplies memory by 9·H·W.
            images = min(len(x), -(-max_rows // (x.shape[2] * x.shape[3])))
            x = x[torch.randperm(len(x), generator=gen)[:images]]
            rows = conv_patches(self.layers[i], x)
            if len(rows) > max_rows:
                rows = rows[torch.randperm(len(rows), generator=gen)[:max_rows]]
            return rows
        if x.dim() == 4:
            return self._hwc(x)
        return x


def conv_patches(layer, x):
    """im2col of a conv layer's NCHW input, ``[B·H·W, C_in·9]`` in the flattened weight's
    ``(c, ky, kx)`` order, padding included (BWNH's sampled layer inputs)."""
    cols = F.unfold(F.pad(x.float(), (1, 1, 1, 1), value=layer.pad), KERNEL)   # [B, C·9, H·W]
    return cols.transpose(1, 2).reshape(-1, layer.in_features)
