"""3×3 convolution and 2×2 max-pool on bits: golden computation, packing and cycle model.

Geometry and layout (the conventions every part of xnorflow uses for conv; docs/conv.md):

* **Activations are HWC.** An image of ``H×W`` pixels and ``C`` channels is one flat vector of
  ``H·W·C`` elements, element ``(y·W + x)·C + c``: binary activations packed as bits
  (:mod:`sw.bits`, ``uint8 [B, ceil(H·W·C/8)]``), unsigned first-layer inputs as integers
  (``uint8 [B, H·W·C]``; for one channel this is the plain row-major image). A dense layer
  after a conv stack therefore takes the HWC flattening, and layers chain on ``in_features``
  / ``out_features`` exactly like dense ones.
* **Conv:** 3×3 kernel, stride 1, one pixel of padding on every side (output ``H×W`` =
  input ``H×W``). The filter of output channel ``o`` is the vector of ``N = 9·C_in`` weights in
  **tap-major** order: element ``(ky·3 + kx)·C_in + c`` multiplies input channel ``c`` at
  pixel ``(y + ky − 1, x + kx − 1)``. This is the im2col vector of one output pixel: with HWC
  activations each tap is one contiguous run of ``C_in`` bits of one input pixel, so "a column
  holds an output pixel" (docs/core.md) is nine pixel reads per vector.
* **Padding is bit 0** (``PAD_BIT``): −1 in a binary layer, the integer 0 in the unsigned
  first layer (0 in every bit-plane). Zero padding cannot be written with ±1 bits; −1 keeps
  ``N = 9·C_in`` at every pixel (border pixels count their padding taps like any other), so one
  threshold per channel is exact everywhere. The same bit in the unsigned layer is the pixel
  value 0 ("black", the background of MNIST-like images and the value shift augmentation fills
  in), which contributes nothing to ``Σ x·w``: the first layer is ordinary zero-padded conv.
* **Arithmetic** per output pixel and channel is the dense layer's (design.md contracts 2, 3):
  binary ``acc = 2·popcount(XNOR(x, w)) − 9·C_in``; unsigned k-bit
  ``acc = Σ_b 2^b·(2·popcount(x_b AND w) − popcount(x_b))``. Outputs are thresholded bits
  (``threshold``/``direction`` per output channel, the same at every pixel) or, like dense,
  the raw integers. In a compiled model a conv always thresholds: the last (raw) layer is the
  dense classifier, whose per-class head a feature map does not have (the compiler and the
  ``.xnf`` loader refuse a raw conv).
* **Max-pool 2×2, stride 2, on bits**, output ``⌊H/2⌋×⌊W/2⌋`` (an odd last row/column is
  dropped, as ``torch.nn.functional.max_pool2d`` does). Training pools the *integer* ``acc``
  before batch norm and sign; since the threshold unit is monotone in ``acc`` with the
  channel's direction ``d``::

      d = +1:  [max_i acc_i ≥ T] = OR_i [acc_i ≥ T]      d = −1:  [max_i acc_i ≤ T] = AND_i [acc_i ≤ T]

  so the pool layer is an OR of the four bits for channels with direction +1 and an AND for
  direction −1 (methods.md), applied to the bits of the conv that feeds it.
"""
from dataclasses import dataclass, field

import numpy as np

from sw import bits as B
from sw.errors import XnorflowError
from sw.layers.dense import binary_dot, threshold_bits, unsigned_dot

KERNEL = 3
TAPS = KERNEL * KERNEL
POOL = 2
PAD_BIT = 0
"""The padding bit injected at the borders: −1 in binary layers, integer 0 in the unsigned first layer."""

# Golden conv works on at most this many images at once (bounds the im2col buffers).
_IMAGES_PER_CHUNK = 64


class ConvNotOnCoreError(XnorflowError):
    """A layer the core does not run as a descriptor of its own (a max-pool: it is fused into
    the conv before it)."""


def im2col(img, pad_value):
    """Per-output-pixel input vectors of a 3×3, stride-1, pad-1 convolution.

    img : [B, H, W, C] (any dtype); pad_value : the value of the border taps.
    Returns [B, H, W, 9·C] in tap-major order ``(ky·3 + kx)·C + c``.
    """
    b, h, w, c = img.shape
    padded = np.full((b, h + 2, w + 2, c), pad_value, dtype=img.dtype)
    padded[:, 1:h + 1, 1:w + 1, :] = img
    taps = [padded[:, ky:ky + h, kx:kx + w, :] for ky in range(KERNEL) for kx in range(KERNEL)]
    return np.concatenate(taps, axis=-1)


def pool_bits(bits, direction):
    """2×2 stride-2 pool of bits per channel: OR where ``direction > 0``, AND where ``< 0``.

    bits : bool [B, H, W, C]; direction : [C] of ±1. Returns bool [B, ⌊H/2⌋, ⌊W/2⌋, C].
    """
    b, h, w, c = bits.shape
    ho, wo = h // POOL, w // POOL
    win = bits[:, :ho * POOL, :wo * POOL, :].reshape(b, ho, POOL, wo, POOL, c)
    return np.where(np.asarray(direction) > 0, win.any(axis=(2, 4)), win.all(axis=(2, 4)))


@dataclass(eq=False)
class ConvLayer:
    """A 3×3, stride-1, pad-1 binary convolution of a compiled model (semantics: module docstring).

    Parameters
    ----------
    name : layer name, used in every message about it.
    height, width : H and W of the input (and output) image.
    in_channels, out_channels : C_in and C_out.
    input_kind : ``"binary"`` (packed ±1 bits, HWC) or ``"unsigned"`` (k-bit integers, HWC).
    input_bits : k (1 for binary input).
    weights : uint8 [C_out, ceil(9·C_in/8)] packed ±1 filters, tap-major.
    output : ``"threshold"`` (bits out) or ``"raw"`` (integers out; golden model only).
    threshold : int32 [C_out]; direction : int8 [C_out] of ±1 (per output channel).
    """

    name: str
    height: int
    width: int
    in_channels: int
    out_channels: int
    input_kind: str
    input_bits: int
    weights: np.ndarray
    output: str = "threshold"
    threshold: np.ndarray | None = None
    direction: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    type = "conv3x3"

    @property
    def in_features(self):
        """Elements of the input vector, ``H·W·C_in``."""
        return self.height * self.width * self.in_channels

    @property
    def out_features(self):
        """Elements of the output vector, ``H·W·C_out``."""
        return self.height * self.width * self.out_channels

    @property
    def filter_len(self):
        """N, the length of one filter (the im2col vector of a pixel): ``9·C_in``."""
        return TAPS * self.in_channels

    def binary_macs(self):
        """Binary multiply-accumulates per image: ``9·C_in·C_out`` per output pixel and
        input bit-plane (padding taps included)."""
        return self.height * self.width * self.filter_len * self.out_channels * self.input_bits

    def acc_range(self):
        """(lowest, highest) value of the accumulator (padding taps included: N is constant)."""
        top = self.filter_len * ((1 << self.input_bits) - 1 if self.input_kind == "unsigned" else 1)
        return -top, top

    def columns(self, x):
        """im2col of a batch in this layer's input format → per-pixel vectors for the dot.

        Binary: packed bits uint8 [B·H·W, ceil(N/8)]; unsigned: uint8 [B·H·W, N].
        """
        x = np.asarray(x)
        b = x.shape[0]
        shape = (b, self.height, self.width, self.in_channels)
        if self.input_kind == "binary":
            img = B.unpack_bits(x, self.in_features).reshape(shape)
            return B.pack_bits(im2col(img, bool(PAD_BIT)).reshape(-1, self.filter_len))
        img = x.astype(np.uint8).reshape(shape)
        return im2col(img, np.uint8(PAD_BIT)).reshape(-1, self.filter_len)

    def dot(self, x):
        """Integer outputs ``acc``: int64 [B, H·W·C_out] (HWC), for inputs in this layer's format."""
        x = np.asarray(x)
        out = np.empty((x.shape[0], self.out_features), dtype=np.int64)
        for start in range(0, x.shape[0], _IMAGES_PER_CHUNK):
            rows = slice(start, start + _IMAGES_PER_CHUNK)
            cols = self.columns(x[rows])
            if self.input_kind == "binary":
                acc = binary_dot(cols, self.weights, self.filter_len)
            else:
                acc = unsigned_dot(cols, self.weights, self.filter_len, self.input_bits)
            out[rows] = acc.reshape(-1, self.out_features)
        return out

    def forward(self, x):
        """(acc, out): acc int64 [B, H·W·C_out]; out packed bits uint8 [B, ceil(H·W·C_out/8)]
        for threshold output, ``acc`` again for raw output."""
        acc = self.dot(x)
        if self.output == "raw":
            return acc, acc
        per_pixel = acc.reshape(acc.shape[0], -1, self.out_channels)
        bits = threshold_bits(per_pixel, self.threshold[None, None, :], self.direction[None, None, :])
        return acc, B.pack_bits(bits.reshape(acc.shape[0], -1))

    # -- accelerator side (see the section below) ----------------------------------------------

    def hw_shape(self, config):
        """(in_words, last_bits, m_tiles, W, out_words) of this layer on ``config``."""
        return conv_hw_shape(self, config)

    def hw_weight_image(self, config):
        """Weight-bank bytes of this layer (see :func:`conv_weight_image`)."""
        return conv_weight_image(self, config)

    def hw_threshold_image(self, config):
        """Threshold-bank bytes of this layer (see :func:`conv_threshold_image`)."""
        return conv_threshold_image(self, config)

    def hw_descriptor(self, config, w_base, t_base, last, pool=False):
        """Descriptor fields (see :func:`conv_descriptor`)."""
        return conv_descriptor(self, config, w_base, t_base, last, pool)

    def cycles(self, config, batch, first=False):
        """Cycles for ``batch`` images (see :func:`conv_cycles`)."""
        return conv_cycles(self, config, batch, first)

    def utilisation(self, config, batch):
        """Fraction of cycles in which the array consumes a word."""
        _, _, m_tiles, W, _ = conv_hw_shape(self, config)
        groups = -(-batch * self.height * self.width // config.Q)
        return groups * m_tiles * W / self.cycles(config, batch)


@dataclass(eq=False)
class MaxPoolLayer:
    """A 2×2, stride-2 max-pool on the bits of the conv layer before it.

    Parameters
    ----------
    name : layer name.
    height, width, channels : the input image (the feeding conv's H, W, C_out).
    direction : int8 [channels]: the feeding conv's threshold directions; +1 pools by OR,
        −1 by AND (the max of the integer accumulators, seen through the threshold).
    """

    name: str
    height: int
    width: int
    channels: int
    direction: np.ndarray
    extra: dict = field(default_factory=dict)

    type = "maxpool2x2"
    input_kind = "binary"
    input_bits = 1
    output = "bits"

    @property
    def out_height(self):
        return self.height // POOL

    @property
    def out_width(self):
        return self.width // POOL

    @property
    def in_features(self):
        return self.height * self.width * self.channels

    @property
    def out_features(self):
        return self.out_height * self.out_width * self.channels

    def binary_macs(self):
        """A pool multiplies nothing."""
        return 0

    def forward(self, x):
        """(None, out): a pool has no accumulator; out packed bits uint8 [B, ceil(H'·W'·C/8)]."""
        x = np.asarray(x)
        b = x.shape[0]
        img = B.unpack_bits(x, self.in_features).reshape(b, self.height, self.width, self.channels)
        return None, B.pack_bits(pool_bits(img, self.direction).reshape(b, -1))

    def hw_shape(self, config):
        """(words per pixel, 0, 0, 0, words per pixel): the pool reads and writes whole pixels."""
        words = -(-self.channels // config.K)
        return words, 0, 0, 0, words

    def hw_descriptor(self, config, w_base, t_base, last):
        """A pool has no descriptor: it is fused into the conv before it (``FLAG_POOL``)."""
        raise ConvNotOnCoreError(f"layer '{self.name}' (maxpool2x2): the core pools only in the "
                                 f"writer of the conv before it; no descriptor of its own")

    def cycles(self, config, batch, first=False):
        """0: the pool is fused into the conv before it (see :func:`pool_cycles`)."""
        return pool_cycles(self, config, batch, first)

    def utilisation(self, config, batch):
        """The array does no work during a pool pass."""
        return 0.0


# ---------------------------------------------------------------------------------------------
# Hardware side (docs/conv.md, "On the core"). Conv is the dense loop nest of docs/core.md with
# columns = output pixels instead of samples: pixel p of the image (row-major, or pool window by
# window when a max-pool follows) goes to column p mod Q of column group p div Q, and the
# "input vector" of a column is that pixel's im2col vector: a binary conv reads it tap by tap
# from the feature map every column bank holds (hw/core/pixel_walker.py), the border taps
# forced to PAD_BIT; the unsigned first conv reads the im2col vectors the host wrote.
# ---------------------------------------------------------------------------------------------

def conv_hw_shape(layer, config):
    """(in_words, last_bits, m_tiles, W, out_words) of a conv layer on ``config``.

    Binary input: each tap is its own ``ceil(C_in/K)`` words (a tap is one input pixel's
    channel vector, read from where that pixel is stored), so ``in_words = 9·ceil(C_in/K)``
    and ``last_bits`` are the valid bits of a tap's last word (the mask applies per tap).
    When K divides C_in — every hidden layer of the CNV topology — this is ``ceil(9·C_in/K)``.
    Unsigned first layer: the host writes the im2col vectors (it writes the inputs anyway),
    packed contiguously: ``in_words = ceil(9·C_in/K)`` per bit-plane. ``W = in_words·k``.
    ``out_words = ceil(m_tiles·P/K)`` per output pixel, as dense.
    """
    K, P = config.K, config.P
    if layer.input_kind == "binary":
        per_tap = -(-layer.in_channels // K)
        in_words = TAPS * per_tap
        last_bits = layer.in_channels - (per_tap - 1) * K
    else:
        in_words = -(-layer.filter_len // K)
        last_bits = layer.filter_len - (in_words - 1) * K
    m_tiles = -(-layer.out_channels // P)
    W = in_words * layer.input_bits
    out_words = -(-(m_tiles * P) // K)
    return in_words, last_bits, m_tiles, W, out_words


def conv_weight_rows(layer, K):
    """Each filter as the bits the array consumes: uint8 [C_out, in_words·K/8].

    Binary: tap after tap, each tap's C_in bits zero-padded to whole K-bit words; unsigned:
    the tap-major vector packed contiguously (``pack_bits(…, K)``).
    """
    bits = B.unpack_bits(layer.weights, layer.filter_len)             # [C_out, 9·C_in]
    if layer.input_kind != "binary":
        return B.pack_bits(bits, K)
    per_tap = B.pack_bits(bits.reshape(layer.out_channels, TAPS, layer.in_channels), K)
    return per_tap.reshape(layer.out_channels, -1)


def conv_weight_image(layer, config):
    """Bytes of a conv layer's weights in the weight banks, from its first word address on.

    Same addressing as dense (:func:`sw.layers.dense.hw_weight_image`): word ``a = t·in_words +
    w`` of row bank ``i`` holds word ``w`` of output channel ``t·P + i``, the P banks interleaved
    per word; the words of a filter are those of :func:`conv_weight_rows`.
    """
    in_words, _, m_tiles, _, _ = conv_hw_shape(layer, config)
    wb = config.K // 8
    padded = np.zeros((m_tiles * config.P, in_words * wb), np.uint8)
    padded[:layer.out_channels] = conv_weight_rows(layer, config.K)
    img = padded.reshape(m_tiles, config.P, in_words, wb).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(img).tobytes()


def conv_threshold_image(layer, config):
    """Threshold-bank bytes, one 32-bit entry per output channel (the dense entry format:
    threshold in bits ``[acc_width-1:0]``, clamped to ``±(top+1)``; bit 31 for direction −1)."""
    if layer.output != "threshold":
        raise ValueError(f"layer {layer.name!r} has raw output: no thresholds")
    _, _, m_tiles, _, _ = conv_hw_shape(layer, config)
    lo, hi = layer.acc_range()
    t = np.clip(np.asarray(layer.threshold, dtype=np.int64), lo - 1, hi + 1)
    words = np.zeros(m_tiles * config.P, np.uint32)
    words[:layer.out_channels] = (t & ((1 << config.acc_width) - 1)).astype(np.uint32)
    down = np.asarray(layer.direction) < 0
    words[:layer.out_channels] |= np.where(down, np.uint32(1 << 31), np.uint32(0))
    return words.astype("<u4").tobytes()


def conv_descriptor(layer, config, w_base, t_base, last, pool=False):
    """Descriptor fields (hw.core.memory_map.encode_descriptor) of a conv layer; ``pool``: the
    2×2 max-pool after it is fused into its writer.

    The compiler computes every product the column walkers need: ``pix_words`` words per input
    pixel, ``row_words`` per image row, and how far a column's pixel moves per group — ``Q``
    pixels along the row, or ``Q/2`` pixels and two rows pooled (``step_words``; ``wrap_words``
    when it wraps to the next row (pair): ``(step + (rows − 1)·W)·pix_words``).
    """
    from hw.core import memory_map as mm
    in_words, last_bits, m_tiles, _, out_words = conv_hw_shape(layer, config)
    op = mm.OP_CONV3X3
    if layer.input_kind == "unsigned":
        op |= mm.FLAG_UNSIGNED
    if pool:
        op |= mm.FLAG_POOL
    if last:
        op |= mm.FLAG_LAST
    pix_words = -(-layer.in_channels // config.K)
    step_px, rows = (config.Q // 2, 2) if pool else (config.Q, 1)
    mask = 0xFFFF
    units = layer.height * layer.width // (POOL * POOL if pool else 1)
    return dict(op=op, input_bits=layer.input_bits, in_words=in_words, last_bits=last_bits,
                m_tiles=m_tiles, w_base=w_base, t_base=t_base, out_words=out_words,
                groups=-(-layer.height * layer.width // config.Q), height=layer.height,
                width=layer.width, pix_words=pix_words,
                row_words=layer.width * pix_words & mask, out_units=units,
                step_words=step_px * pix_words & mask,
                wrap_words=(step_px + (rows - 1) * layer.width) * pix_words & mask)


def conv_cycles(layer, config, batch, first=False):
    """Cycles of a conv layer for ``batch`` images (the core runs one image per run).

    ``fetch + 1 + (G·m_tiles − 1)·max(W, Q) + W + write_delay`` with ``G = ceil(batch·H·W/Q)``
    column groups of output pixels, ``m_tiles = ceil(C_out/P)``, ``W`` from
    :func:`conv_hw_shape` and ``write_delay``/``desc_fetch`` of the configuration: the dense
    formula with pixels for samples. The tap walk issues one word per cycle with no bubbles (the
    border taps are injected, not skipped), and a fused max-pool costs nothing.
    """
    _, _, m_tiles, W, _ = conv_hw_shape(layer, config)
    groups = -(-batch * layer.height * layer.width // config.Q)
    fetch = config.desc_fetch if first else 0
    return fetch + 1 + (groups * m_tiles - 1) * max(W, config.Q) + W + config.write_delay


def pool_cycles(layer, config, batch, first=False):
    """0: the core fuses a max-pool into the writer of the conv before it (the four pixels
    of a window leave the array in consecutive cycles and are ORed/ANDed by each channel's
    direction before the one write), so it takes no cycles of its own."""
    return 0
