"""Fully connected layer: golden computation (numpy, bit-exact), packing and cycle model.

Arithmetic (design.md contracts 2-5):

* ``binary`` input (hidden layers): inputs and weights are ±1 bits, the integer output is
  ``acc = 2·popcount(XNOR(x, w)) − N`` over the N real bits; padding bits never count.
* ``unsigned`` input (first layer): inputs are unsigned k-bit integers (1 ≤ k ≤ 8), weights ±1,
  computed bit-serially over the k bit-planes:
  ``acc = Σ_b 2^b · (2·popcount(x_b AND w) − popcount(x_b))`` (= Σ_i x_i·w_i exactly).
* ``threshold`` output: per output channel an integer threshold ``T`` and a direction ``d``;
  bit = ``acc ≥ T`` when ``d = +1``, ``acc ≤ T`` when ``d = −1``. Thresholds outside the
  reachable range of ``acc`` give saturated channels (always 0 or always 1); they are legal.
* ``raw`` output (last layer): the integers ``acc`` leave as they are.

Data formats: binary activations are packed bits (:mod:`sw.bits`), ``uint8 [B, ceil(N/8)]``;
unsigned inputs are ``uint8 [B, N]`` integers; weights are packed bits ``uint8 [M, ceil(N/8)]``.
"""
from dataclasses import dataclass, field

import numpy as np

from sw import bits as B

INPUT_KINDS = ("binary", "unsigned")
OUTPUT_KINDS = ("threshold", "raw")

# Work on at most this many XNOR bytes at once: bounds memory for big batches.
_CHUNK_BYTES = 1 << 25


def _as_u64_words(packed):
    """View packed bytes as uint64 words (zero-padding the byte count to a multiple of 8)."""
    nb = packed.shape[-1]
    pad = (-nb) % 8
    if pad:
        packed = np.pad(packed, [(0, 0)] * (packed.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(packed).view(np.uint64)


def _batched(n_rows, bytes_per_row):
    step = max(1, _CHUNK_BYTES // max(1, bytes_per_row))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def binary_dot(x_packed, w_packed, n):
    """``2·popcount(XNOR(x, w)) − n`` for every (sample, output channel) pair.

    x_packed: uint8 [B, nb] packed ±1 activations; w_packed: uint8 [M, nb] packed ±1 weights;
    n: number of real bits. Returns int64 [B, M].
    """
    x = _as_u64_words(np.asarray(x_packed, dtype=np.uint8))
    w = _as_u64_words(np.asarray(w_packed, dtype=np.uint8))
    mask = _as_u64_words(B.valid_mask(n, word_bits=8)[: x_packed.shape[-1]][None, :])[0]
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.int64)
    for rows in _batched(x.shape[0], w.size * 8):
        xnor = ~(x[rows, None, :] ^ w[None, :, :]) & mask
        out[rows] = 2 * B.popcount(xnor) - n
    return out


def unsigned_dot(x_int, w_packed, n, input_bits):
    """``Σ_b 2^b·(2·popcount(x_b AND w) − popcount(x_b))`` over the k bit-planes of x.

    x_int: uint8 [B, n] unsigned integers below 2**input_bits; w_packed: uint8 [M, nb].
    Returns int64 [B, M], equal to the plain integer dot product with ±1 weights.
    """
    x_int = np.asarray(x_int)
    w = _as_u64_words(np.asarray(w_packed, dtype=np.uint8))
    out = np.zeros((x_int.shape[0], w.shape[0]), dtype=np.int64)
    for b in range(input_bits):
        plane = _as_u64_words(B.pack_bits((x_int >> b) & 1))
        ones = B.popcount(plane)
        for rows in _batched(plane.shape[0], w.size * 8):
            both = B.popcount(plane[rows, None, :] & w[None, :, :])
            out[rows] += (2 * both - ones[rows, None]) << b
    return out


def threshold_bits(acc, threshold, direction):
    """The threshold-compare unit: bool [B, M], ``acc ≥ T`` (d = +1) or ``acc ≤ T`` (d = −1)."""
    acc = np.asarray(acc)
    up = np.asarray(direction) > 0
    return np.where(up, acc >= threshold, acc <= threshold)


@dataclass(eq=False)
class DenseLayer:
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

    def acc_range(self):
        """(lowest, highest) value the integer accumulator can take for this layer."""
        top = self.in_features * ((1 << self.input_bits) - 1 if self.input_kind == "unsigned" else 1)
        return -top, top

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
