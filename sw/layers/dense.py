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

    def binary_macs(self):
        """Binary multiply-accumulates per input (each bit-plane of a k-bit input counts)."""
        return self.in_features * self.out_features * self.input_bits

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

    # -- accelerator side (hw/core); the functions are defined below the class ---------------

    def hw_shape(self, config):
        """(in_words, last_bits, m_tiles, W, out_words) of this layer on ``config``."""
        return _hw_shape(self, config)

    def hw_weight_image(self, config):
        """Weight-bank bytes of this layer (see :func:`hw_weight_image`)."""
        return hw_weight_image(self, config)

    def hw_threshold_image(self, config):
        """Threshold-bank bytes of this layer (see :func:`hw_threshold_image`)."""
        return hw_threshold_image(self, config)

    def hw_descriptor(self, config, w_base, t_base, last):
        """Descriptor fields of this layer (see :func:`hw_descriptor`)."""
        return hw_descriptor(self, config, w_base, t_base, last)

    def cycles(self, config, batch, first=False):
        """Cycles on the core for ``batch`` samples, as its counter counts them (see below);
        ``first``: the layer is the first of its run (it also reads its descriptor)."""
        return dense_cycles(self, config, batch, first)

    def utilisation(self, config, batch):
        """Fraction of this layer's cycles in which the array consumes a word."""
        return dense_utilisation(self, config, batch)


# ---------------------------------------------------------------------------------------------
# Hardware side: packing for the accelerator core (hw/core) and its cycle model.
# Layout and formula: docs/core.md and docs/memory_map.md; address constants:
# hw.core.memory_map. The golden functions above are unchanged and remain the reference.
# ---------------------------------------------------------------------------------------------

def _hw_shape(layer, config):
    """(in_words, last_bits, m_tiles, W, out_words) of ``layer`` on ``config``."""
    K, P = config.K, config.P
    in_words = -(-layer.in_features // K)
    last_bits = layer.in_features - (in_words - 1) * K
    m_tiles = -(-layer.out_features // P)
    W = in_words * layer.input_bits
    out_words = -(-(m_tiles * P) // K)
    return in_words, last_bits, m_tiles, W, out_words


def hw_weight_image(layer, config):
    """Bytes of this layer's weights in the weight banks, from its first word address on.

    Word address ``a = t·in_words + w`` (relative to the layer's ``w_base``) holds, in row
    bank ``i``, word ``w`` of output channel ``t·P + i``; the byte address interleaves the P
    banks per word (``W_BASE + (a·P + i)·K/8``), so the image is one contiguous run of
    ``m_tiles·in_words·P·K/8`` bytes. Channels past ``out_features`` are zero.
    """
    in_words, _, m_tiles, _, _ = _hw_shape(layer, config)
    wb = config.K // 8
    rows = B.pack_bits(B.unpack_bits(layer.weights, layer.in_features), config.K)
    padded = np.zeros((m_tiles * config.P, in_words * wb), np.uint8)
    padded[:layer.out_features] = rows
    img = padded.reshape(m_tiles, config.P, in_words, wb).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(img).tobytes()


def hw_threshold_image(layer, config):
    """Bytes of this layer's threshold entries (threshold layers only), channel after channel.

    Entry of channel ``c = t·P + i`` is a 32-bit little-endian word: bits ``[acc_width-1:0]``
    the threshold (two's complement), bit 31 set for direction −1 (``acc ≤ T``). Thresholds
    past the reachable range are clamped to ``±(top+1)``: the same bits for every reachable
    ``acc`` (saturated channels stay saturated), and they fit ``acc_width``.
    """
    if layer.output != "threshold":
        raise ValueError(f"layer {layer.name!r} has raw output: no thresholds")
    _, _, m_tiles, _, _ = _hw_shape(layer, config)
    lo, hi = layer.acc_range()
    t = np.clip(np.asarray(layer.threshold, dtype=np.int64), lo - 1, hi + 1)
    words = np.zeros(m_tiles * config.P, np.uint32)
    words[:layer.out_features] = (t & ((1 << config.acc_width) - 1)).astype(np.uint32)
    down = np.asarray(layer.direction) < 0
    words[:layer.out_features] |= np.where(down, np.uint32(1 << 31), np.uint32(0))
    return words.astype("<u4").tobytes()


def hw_descriptor(layer, config, w_base, t_base, last):
    """Descriptor fields of this layer (see hw.core.memory_map.encode_descriptor)."""
    from hw.core import memory_map as mm
    in_words, last_bits, m_tiles, _, out_words = _hw_shape(layer, config)
    op = mm.OP_DENSE
    if layer.input_kind == "unsigned":
        op |= mm.FLAG_UNSIGNED
    if layer.output == "raw":
        op |= mm.FLAG_RAW
    if last:
        op |= mm.FLAG_LAST
    return dict(op=op, input_bits=layer.input_bits, in_words=in_words, last_bits=last_bits,
                m_tiles=m_tiles, w_base=w_base, t_base=t_base,
                out_words=0 if layer.output == "raw" else out_words)


def dense_cycles(self, config, batch, first=False):
    """Cycles this layer takes on the core for ``batch`` samples, exactly as its counter counts.

    ``1 + (G·m_tiles − 1)·max(W, Q) + W + write_delay`` where ``G = ceil(batch / Q)`` column
    groups, ``W = ceil(N / K)·input_bits`` words per output tile, and ``write_delay =
    P + Q + pe_latency + log2(Q) + 3`` (``ArrayConfig.write_delay``): 1 cycle to latch the
    descriptor, one tile every ``max(W, Q)`` cycles (a row drains one value per cycle), and the
    last tile's trip through the array, drain, threshold unit and writer. The first layer of a
    run adds ``ArrayConfig.desc_fetch`` (3) cycles to read its descriptor; later layers' are
    read during the previous layer's drain.
    """
    _, _, m_tiles, W, _ = _hw_shape(self, config)
    groups = -(-batch // config.Q)
    fetch = config.desc_fetch if first else 0
    return fetch + 1 + (groups * m_tiles - 1) * max(W, config.Q) + W + config.write_delay


def dense_utilisation(self, config, batch):
    """Fraction of this layer's cycles in which the array consumes a word (busy cycles)."""
    _, _, m_tiles, W, _ = _hw_shape(self, config)
    groups = -(-batch // config.Q)
    return groups * m_tiles * W / self.cycles(config, batch)   # as a hidden (not first) layer
