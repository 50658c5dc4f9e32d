"""Binary networks built, trained and exported by the real tools (Brevitas → QONNX).

* :func:`tfc` — BNN-PYNQ's TFC/SFC/LFC family as ``brevitas_examples.bnn_pynq`` defines it
  (its ``FC`` class: ``2x − 1``, a 1-bit input ``QuantIdentity``, ``QuantLinear`` without
  bias, ``BatchNorm1d``, 1-bit activations, ``TensorNorm`` on the scores), small for 8×8 digits.
* :func:`cnv` — a small CNV-style CNN from the same parts (BNN-PYNQ's ``CommonWeightQuant``,
  ``CommonActQuant``, its Q1.7 input quantizer, ``TensorNorm``): conv 3×3, batch norm, 1-bit
  activation, max-pool 2×2 after the activation as in ``CNV``. BNN-PYNQ's own ``CNV`` does not
  pad (its 3×3 convolutions shrink the image, which xnorflow's conv contract does not), so
  this one pads explicitly with the bit-0 value, ``F.pad(x, (1,1,1,1), value=-1.0)``, before
  each conv: −1 is both the Q1.7 input's level 0 and binary bit 0 (docs/qonnx.md).

:func:`train` fits them on digits for a few epochs (BNN-PYNQ's weight clipping to [−1, 1]
after each step); :func:`export` writes QONNX with Brevitas' ``export_qonnx``. The inputs are
BNN-PYNQ's convention: images scaled to [0, 1] (raw / 16 for digits, raw / 255 for
Fashion-MNIST), NCHW. ``benchmarks/qonnx_check.py`` uses the same builders at 28×28.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

EPOCHS = 10


def tfc(hidden=(64, 64), image=(8, 8)):
    """BNN-PYNQ's FC (the TFC/SFC/LFC class) with 1-bit weights, activations and input."""
    from brevitas_examples.bnn_pynq.models.FC import FC
    return FC(num_classes=10, weight_bit_width=1, act_bit_width=1, in_bit_width=1,
              in_channels=1, out_features=list(hidden), in_features=image)


class SmallCNV(nn.Module):
    """CNV-style: Q1.7 input, [pad −1, conv 3×3, BN, 1-bit act, max-pool] × 2, FC,
    TensorNorm."""

    def __init__(self, channels=(16, 32), hidden=64, image=(8, 8), pad=True):
        super().__init__()
        from brevitas.core.restrict_val import RestrictValueType
        from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
        from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant
        from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm

        self.pad = pad
        # BNN-PYNQ CNV's input quantizer: Q1.7 of 2x − 1.
        self.inq = QuantIdentity(act_quant=CommonActQuant, bit_width=8, min_val=-1.0,
                                 max_val=1.0 - 2.0 ** (-7), narrow_range=False,
                                 restrict_scaling_type=RestrictValueType.POWER_OF_TWO)
        convs, bns, acts = [], [], []
        c_in = 1
        for c in channels:
            convs.append(QuantConv2d(c_in, c, 3, bias=False, weight_quant=CommonWeightQuant,
                                     weight_bit_width=1))
            bns.append(nn.BatchNorm2d(c, eps=1e-4))
            acts.append(QuantIdentity(act_quant=CommonActQuant, bit_width=1))
            c_in = c
        self.convs, self.bns = nn.ModuleList(convs), nn.ModuleList(bns)
        self.acts = nn.ModuleList(acts)
        h, w = image
        for _ in channels:
            h, w = (h if pad else h - 2) // 2, (w if pad else w - 2) // 2
        self.fc0 = QuantLinear(c_in * h * w, hidden, bias=False, weight_quant=CommonWeightQuant,
                               weight_bit_width=1)
        self.bn0 = nn.BatchNorm1d(hidden, eps=1e-4)
        self.act0 = QuantIdentity(act_quant=CommonActQuant, bit_width=1)
        self.fc1 = QuantLinear(hidden, 10, bias=False, weight_quant=CommonWeightQuant,
                               weight_bit_width=1)
        self.tn = TensorNorm()
        for m in self.modules():
            if isinstance(m, (QuantConv2d, QuantLinear)):
                torch.nn.init.uniform_(m.weight.data, -1, 1)

    def clip_weights(self, lo, hi):
        for m in list(self.convs) + [self.fc0, self.fc1]:
            m.weight.data.clamp_(lo, hi)

    def forward(self, x):
        x = self.inq(2.0 * x - torch.tensor([1.0], device=x.device))
        for conv, bn, act in zip(self.convs, self.bns, self.acts):
            if self.pad:
                x = F.pad(x, (1, 1, 1, 1), value=-1.0)
            x = F.max_pool2d(act(bn(conv(x))), 2)
        x = x.reshape(x.shape[0], -1)
        return self.tn(self.fc1(self.act0(self.bn0(self.fc0(x)))))


def cnv(**kw):
    return SmallCNV(**kw)


def image_tensors(ds, split="train"):
    """(x [B, C, H, W] = raw / max_value in [0, 1], labels) of an xnorflow data set (digits:
    scikit-learn's 8×8 as xnorflow splits it; Fashion-MNIST: 28×28)."""
    x = ds.x_train if split == "train" else ds.x_test
    y = ds.y_train if split == "train" else ds.y_test
    h, w, c = ds.image_shape
    x = torch.from_numpy(np.asarray(x, dtype=np.float32) / np.float32(ds.max_value))
    x = x.reshape(-1, h, w, c).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.asarray(y, dtype=np.int64))


def negate_half_the_batch_norms(model):
    """Start every other channel's batch-norm scale at −1: trained on, those channels keep a
    falling threshold (direction −1), and a pooled conv's such channels must be flipped."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.weight[::2] = -1.0
    return model


def train(model, ds, epochs=EPOCHS, seed=0, lr=0.01, progress=None):
    """A few epochs of Adam, weights clipped to [−1, 1] after each step (BNN-PYNQ's trainer);
    returns the eval-mode test accuracy. ``progress``: called with the epoch after each."""
    torch.manual_seed(seed)
    x, y = image_tensors(ds)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            model.clip_weights(-1.0, 1.0)
        if progress is not None:
            progress(epoch)
    model.eval()
    xt, yt = image_tensors(ds, "test")
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in xt.split(1000)])
    return float((pred == yt).double().mean())


def export(model, path, dynamo=True, image=(8, 8)):
    """Brevitas' QONNX export of ``model`` (eval mode) for one grey ``image`` (H, W)."""
    from brevitas.export import export_qonnx
    model.eval()
    export_qonnx(model, torch.rand(1, 1, *image), export_path=str(path), dynamo=dynamo)
    return path
