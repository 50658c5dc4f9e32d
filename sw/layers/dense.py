"""Fully connected layer: golden computation (numpy, bit-exact), packing and cycle model.

Arithmetic (docs/contracts.md, contracts 2-5):

* ``binary`` input (hidden layers): inputs and weights are ±1 bits, the integer output is
  ``acc = 2·popcount(XNOR(x, w)) − N`` over the N real bits; padding bits never count.
* ``unsigned`` input (first layer): inputs are unsigned k-bit integers (1 ≤ k ≤ 8), weights ±1,
  computed bit-serially over the k bit-planes:
  ``acc = Σ_b 2^b · (2·popcount(x_b AND w) − popcount(x_b))`` (= Σ_i x_i·w_i exactly).
* ``threshold`` output: per output channel an integer threshold ``T`` and a direction ``d``;
  bit = ``acc ≥ T`` when ``d = +1``, ``acc ≤ T`` when ``d = −1``. Thresholds outside the
  reachable range of ``acc`` give saturated channels (always 0 or always 1); they are legal.
* ``raw`` output (last layer): the integers ``acc`` leave as they are.

Data formats: binary activations are packed bits (:mod:`xnorflow.sw.bits`), ``uint8 [B, ceil(N/8)]``;
unsigned inputs are ``uint8 [B, N]`` integers; weights are packed bits ``uint8 [M, ceil(N/8)]``.
"""
from dataclasses import dataclass, field

import numpy as np

from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core import timing
from xnorflow.sw import bits as B
from xnorflow.sw.layers.base import OverlayShape, ProgramError
from xnorflow.sw.layers.weighted import WeightedLayer, binary_dot, threshold_bits, unsigned_dot


@dataclass(eq=False)
class DenseLayer(WeightedLayer):
    """One fully connected layer of a compiled model (golden semantics in the module docstring).

    Parameters
    ----------
    name : layer name, used in every message about it.
    in_features, out_features : N and M.
    input_kind : ``"binary"`` (±1 packed bits) or ``"unsigned"`` (k-bit integers).
    input_bits : k (1 for binary input).
    weights : uint8 [M, ceil(N/8)] packed ±1 weights.
    output : ``"threshold"`` (bits out) or ``"raw"`` (integers out).
    threshold : int32 [M] (threshold output only).
    direction : int8 [M] of ±1 (threshold output only).
    """

    name: str
    in_features: int
    out_features: int
    input_kind: str
    input_bits: int
    weights: np.ndarray
    output: str
    threshold: np.ndarray | None = None
    direction: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    type = "dense"
    classifier = True

    @property
    def filter_len(self):
        """N, the length of one filter (the whole input vector)."""
        return self.in_features

    @property
    def out_channels(self):
        """M: the output is one vector of channels."""
        return self.out_features

    def binary_macs(self):
        """Binary multiply-accumulates per input (each bit-plane of a k-bit input counts)."""
        return self.in_features * self.out_features * self.input_bits

    def dot(self, x):
        """Integer outputs ``acc`` (int64 [B, M]) for a batch of inputs in this layer's format."""
        if self.input_kind == "binary":
            return binary_dot(x, self.weights, self.in_features)
        return unsigned_dot(x, self.weights, self.in_features, self.input_bits)

    def forward(self, x):
        """(acc, out): out is packed bits uint8 [B, ceil(M/8)] for threshold layers, acc for raw."""
        acc = self.dot(x)
        if self.output == "raw":
            return acc, acc
        return acc, B.pack_bits(threshold_bits(acc, self.threshold[None, :], self.direction[None, :]))

    # -- model file and compiler -------------------------------------------------------------

    @classmethod
    def manifest_geometry(cls, reader, name, entry, n, m):
        return {"in_features": n, "out_features": m}

    @classmethod
    def deploy_geometry(cls, d):
        return {"in_features": d["in_features"], "out_features": d["out_features"]}

    def check_follows(self, reader, prev):
        """A dense layer reads any vector (an image as its HWC flattening): the loader's size
        check is all it needs."""

    # -- overlay: the core (hw/core). Layout and formula: docs/core.md and docs/memory_map.md;
    # address constants: xnorflow.hw.core.memory_map. The golden methods above remain the reference. --

    def overlay_shape(self, config):
        """:class:`OverlayShape` of this layer on ``config``: ``in_words = ceil(N/K)``, the
        valid bits of the last word, ``m_tiles = ceil(M/P)``, ``W = in_words·input_bits`` and
        ``out_words = ceil(m_tiles·P/K)`` per sample."""
        K, P = config.K, config.P
        in_words = -(-self.in_features // K)
        last_bits = self.in_features - (in_words - 1) * K
        m_tiles = -(-self.out_features // P)
        out_words = -(-(m_tiles * P) // K)
        return OverlayShape(in_words, last_bits, m_tiles, in_words * self.input_bits, out_words)

    def overlay_weight_rows(self, K):
        """Each channel's weights zero-padded to whole K-bit words."""
        return B.pack_bits(B.unpack_bits(self.weights, self.in_features), K)

    def overlay_groups(self, config, batch):
        """Column groups of Q samples: ``ceil(batch / Q)``."""
        return -(-batch // config.Q)

    def overlay_check(self, index, fused, prev, config, last):
        """The core's rules for a dense layer: what it reads (after a feature map, whole
        words per pixel), what it writes, its accumulator width and activation words."""
        where = f"layer {self.name!r}"
        self._overlay_check_input(index, prev)
        if index > 0 and prev.out_image is not None and prev.out_channels % config.K:
            raise ProgramError(f"{where}: a dense layer reads the feature map before it "
                               f"as one vector, which needs its {prev.out_channels} channels "
                               f"to be a multiple of K={config.K}")
        self._overlay_check_output(config, last)
        out_words = self.overlay_shape(config).out_words
        if self.output == "threshold" and out_words > config.act_depth:
            raise ProgramError(f"{where}: needs {out_words} activation words per sample, "
                               f"{config} has act_depth={config.act_depth}")

    def overlay_descriptor(self, config, w_base, t_base, last, fused=None):
        """Descriptor fields of this layer (see xnorflow.hw.core.memory_map.encode_descriptor); a dense
        layer fuses nothing (``fused`` is None)."""
        shape = self.overlay_shape(config)
        op = mm.OP_DENSE
        if self.input_kind == "unsigned":
            op |= mm.FLAG_UNSIGNED
        if self.output == "raw":
            op |= mm.FLAG_RAW
        if last:
            op |= mm.FLAG_LAST
        return dict(op=op, input_bits=self.input_bits, in_words=shape.in_words,
                    last_bits=shape.last_bits, m_tiles=shape.m_tiles, w_base=w_base,
                    t_base=t_base, out_words=0 if self.output == "raw" else shape.out_words)

    def overlay_input_rows(self, x, fused):
        """The samples themselves, one per column."""
        return x

    def overlay_cycles(self, config, batch, first=False):
        """Cycles this layer takes on the core for ``batch`` samples, exactly as its counter counts.

        ``1 + (G·m_tiles − 1)·max(W, Q) + W + write_delay`` where ``G = ceil(batch / Q)`` column
        groups, ``W = ceil(N / K)·input_bits`` words per output tile, and ``write_delay`` is
        :func:`xnorflow.hw.core.timing.write_delay` (``ArrayConfig.write_delay``): 1 cycle to latch the
        descriptor, one tile every ``max(W, Q)`` cycles (a row drains one value per cycle), and the
        last tile's trip through the array, drain, threshold unit and writer. The first layer of a
        run adds ``ArrayConfig.desc_fetch`` (7) cycles to read its descriptor; later layers' are
        read during the previous layer's drain. (:func:`xnorflow.hw.core.timing.layer_cycles`.)
        """
        shape = self.overlay_shape(config)
        groups = self.overlay_groups(config, batch)
        return timing.layer_cycles(config, groups, shape.m_tiles, shape.tile_words, first)
