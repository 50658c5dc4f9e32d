"""The golden model: a compiled network's forward pass in numpy, bit-exact.

This is the single reference (docs/contracts.md, contract 6) for the compiler's checks, the RTL tests,
the cocotb scoreboards and the driver's self-checks. Each layer type computes itself
(:mod:`xnorflow.sw.layers`); this module only chains layers and applies the host-side head.
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class InputSpec:
    """How raw inputs become the first layer's unsigned integers.

    features : number of inputs N of the first layer.
    bits : k, the inputs are unsigned k-bit integers (1 ≤ k ≤ 8).
    max_value : the raw value that maps to ``2**k − 1`` (16 for digits, 255 for 8-bit images).
    """

    features: int
    bits: int
    max_value: float


HEAD_FIELDS = ("alpha", "bias", "mean", "sigma", "gamma", "beta")


@dataclass(eq=False)
class Head:
    """The last layer's per-class affine, applied on the host to the raw integers::

        score = ((acc · alpha + bias) − mean) / sigma · gamma + beta

    It is one affine map, kept as the trained layer's own sequence of float64 operations
    (scale and bias, then batch norm) so that host scores are bit-identical to the PyTorch
    model's eval-mode scores and predictions agree even when two classes nearly tie.
    All fields are float64 [classes].
    """

    alpha: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    sigma: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray

    @classmethod
    def affine(cls, scale, bias):
        """A head computing exactly ``scale·acc + bias``."""
        scale = np.asarray(scale, dtype=np.float64)
        ones, zeros = np.ones_like(scale), np.zeros_like(scale)
        return cls(scale, np.asarray(bias, dtype=np.float64), zeros, ones, ones, zeros.copy())

    def scores(self, acc):
        """float64 [B, classes] scores from the last layer's raw integers."""
        y = np.asarray(acc, dtype=np.float64) * self.alpha + self.bias
        return (y - self.mean) / self.sigma * self.gamma + self.beta


@dataclass(eq=False)
class CompiledModel:
    """A deployable network: input spec, layers (input to output) and the host-side head."""

    name: str
    input: InputSpec
    layers: list  # xnorflow.sw.layers.base.Layer objects, each of a type in xnorflow.sw.layers.LAYER_TYPES
    head: Head
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self):
        return self.layers[-1].out_features

    def forward(self, x):
        """Run a batch of unsigned k-bit inputs (uint8 [B, N]) through every layer.

        Returns one ``(acc, out)`` pair per layer: ``acc`` the integer outputs (int64 [B, M];
        conv: [B, H·W·C_out] in HWC order; ``None`` for a max-pool, which has no accumulator),
        ``out`` the packed output bits for threshold and pool layers and ``acc`` again for the last.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input.features:
            raise ValueError(
                f"model '{self.name}' takes inputs of shape [batch, {self.input.features}], "
                f"got {list(x.shape)}")
        if x.size and int(x.max()) >= 1 << self.input.bits:
            raise ValueError(
                f"model '{self.name}' takes {self.input.bits}-bit inputs, got a value {int(x.max())}")
        outputs = []
        h = x.astype(np.uint8)
        for layer in self.layers:
            acc, h = layer.forward(h)
            outputs.append((acc, h))
        return outputs

    def outputs(self, x, chunk=256):
        """The last layer's integers (int64 [B, M]) of a batch, ``chunk`` inputs at a time.

        :meth:`forward` keeps every layer's integers for the whole batch: the Fashion-MNIST
        CNV's first two convs alone are 28·28·64 int64 per image, 8 GB for its 10,000 test
        images (a ``sim`` of the whole test set grew past 11 GB after its last image). Here
        only one chunk's intermediates exist at a time."""
        x = np.asarray(x)
        if len(x) <= chunk:
            return self.forward(x)[-1][0]
        return np.concatenate([self.forward(x[i:i + chunk])[-1][0]
                               for i in range(0, len(x), chunk)])

    def logits(self, x):
        """Host-side class scores (float64 [B, classes])."""
        return self.head.scores(self.outputs(x))

    def predict(self, x):
        """Predicted class per input (argmax of the scores; the lowest index wins a tie)."""
        return self.logits(x).argmax(axis=1)
