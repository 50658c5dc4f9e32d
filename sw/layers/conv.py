"""3×3 convolution and 2×2 max-pool on bits: golden computation, packing and cycle model.

Geometry and layout (the conventions every part of xnorflow uses for conv; docs/conv.md):

* **Activations are HWC.** An image of ``H×W`` pixels and ``C`` channels is one flat vector of
  ``H·W·C`` elements, element ``(y·W + x)·C + c``: binary activations packed as bits
  (:mod:`xnorflow.sw.bits`, ``uint8 [B, ceil(H·W·C/8)]``), unsigned first-layer inputs as integers
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
* **Arithmetic** per output pixel and channel is the dense layer's (docs/contracts.md, contracts 2, 3):
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
  direction −1 (docs/contracts.md, "The fold"), applied to the bits of the conv that feeds it.
"""
from dataclasses import dataclass, field

import numpy as np

from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core import timing
from xnorflow.sw import bits as B
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.layers.base import CompileError, Layer, OverlayMemory, OverlayShape, ProgramError
from xnorflow.sw.layers.weighted import WeightedLayer, binary_dot, threshold_bits, unsigned_dot


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


def window_order(rows, height, width):
    """Reorder per-pixel rows (row-major, ``H·W`` of them) pool window by window: window
    ``(Y, X)`` row-major, its pixels ``dy·2 + dx`` consecutive (the order a pooled conv's
    columns compute pixels in)."""
    rows = np.asarray(rows)
    r = rows.reshape(height // 2, 2, width // 2, 2, *rows.shape[1:])
    return np.ascontiguousarray(np.moveaxis(r, 2, 1)).reshape(rows.shape)


@dataclass(eq=False)
class ConvLayer(WeightedLayer):
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
    overlay_one_image = True

    @property
    def in_features(self):
        """Elements of the input vector, ``H·W·C_in``."""
        return self.height * self.width * self.in_channels

    @property
    def out_features(self):
        """Elements of the output vector, ``H·W·C_out``."""
        return self.height * self.width * self.out_channels

    @property
    def out_image(self):
        """(H, W, C_out): stride 1 and one pixel of padding keep the image size."""
        return self.height, self.width, self.out_channels

    @property
    def dataflow_image(self):
        """The image the dataflow conv engine's window unit walks (hw/dataflow/window.py)."""
        return self.height, self.width, self.in_channels

    @property
    def filter_len(self):
        """N, the length of one filter (the im2col vector of a pixel): ``9·C_in``."""
        return TAPS * self.in_channels

    def binary_macs(self):
        """Binary multiply-accumulates per image: ``9·C_in·C_out`` per output pixel and
        input bit-plane (padding taps included)."""
        return self.height * self.width * self.filter_len * self.out_channels * self.input_bits

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

    # -- model file, compiler, tables ---------------------------------------------------------

    @classmethod
    def manifest_geometry(cls, reader, name, e, n, m):
        """The image fields; weights and thresholds are per filter: N = 9·C_in bits, one entry
        per C_out."""
        h, w, cin, cout = reader.positive_ints(name, e, ("height", "width", "in_channels",
                                                         "out_channels"))
        if (n, m) != (h * w * cin, h * w * cout):
            reader.fail(f"in/out_features {n}→{m} disagree with the geometry {h}×{w}×{cin}"
                        f"→{h}×{w}×{cout}", name, "in_features/out_features")
        return dict(height=h, width=w, in_channels=cin, out_channels=cout)

    @classmethod
    def deploy_geometry(cls, d):
        return dict(height=d["height"], width=d["width"], in_channels=d["in_channels"],
                    out_channels=d["out_channels"])

    def manifest_fields(self):
        return {**super().manifest_fields(), "height": self.height, "width": self.width,
                "in_channels": self.in_channels, "out_channels": self.out_channels}

    def check_follows(self, reader, prev):
        """A conv takes an image (the output of a conv or a pool) of its own height and width."""
        if prev.out_image is None:
            reader.fail(f"a {self.type} layer takes an image: it cannot follow {prev.type} "
                        f"'{prev.name}'", self.name, "type")
        height, width, _ = prev.out_image
        if (height, width) != (self.height, self.width):
            reader.fail(f"takes a {self.height}×{self.width} image but '{prev.name}' gives "
                        f"{height}×{width}", self.name, "height/width")

    def table_row(self):
        row = super().table_row()
        row["shape"] = (f"{self.height}×{self.width}×{self.in_channels}→"
                        f"{self.height}×{self.width}×{self.out_channels}")
        return row

    # -- overlay (docs/conv.md, "On the core"). Conv is the dense loop nest of docs/core.md with
    # columns = output pixels instead of samples: pixel p of the image (row-major, or pool window
    # by window when a max-pool follows) goes to column p mod Q of column group p div Q, and the
    # "input vector" of a column is that pixel's im2col vector: a binary conv reads it tap by tap
    # from the feature map every column bank holds (hw/core/pixel_walker.py), the border taps
    # forced to PAD_BIT; the unsigned first conv reads the im2col vectors the host wrote. --------

    def overlay_shape(self, config):
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
        if self.input_kind == "binary":
            per_tap = -(-self.in_channels // K)
            in_words = TAPS * per_tap
            last_bits = self.in_channels - (per_tap - 1) * K
        else:
            in_words = -(-self.filter_len // K)
            last_bits = self.filter_len - (in_words - 1) * K
        m_tiles = -(-self.out_channels // P)
        out_words = -(-(m_tiles * P) // K)
        return OverlayShape(in_words, last_bits, m_tiles, in_words * self.input_bits, out_words)

    def overlay_weight_rows(self, K):
        """Each filter as the bits the array consumes: uint8 [C_out, in_words·K/8].

        Binary: tap after tap, each tap's C_in bits zero-padded to whole K-bit words; unsigned:
        the tap-major vector packed contiguously (``pack_bits(…, K)``).
        """
        bits = B.unpack_bits(self.weights, self.filter_len)             # [C_out, 9·C_in]
        if self.input_kind != "binary":
            return B.pack_bits(bits, K)
        per_tap = B.pack_bits(bits.reshape(self.out_channels, TAPS, self.in_channels), K)
        return per_tap.reshape(self.out_channels, -1)

    def overlay_groups(self, config, batch):
        """Column groups of Q output pixels: ``ceil(batch·H·W / Q)``."""
        return -(-batch * self.height * self.width // config.Q)

    def overlay_fuses(self, layer):
        """The core fuses a max-pool right after a conv into the conv's writer."""
        return isinstance(layer, MaxPoolLayer)

    def overlay_check(self, index, fused, prev, config, last):
        """Conv/pool rules of the core (docs/conv.md, "On the core"); ``fused`` is the max-pool
        in this conv's writer, or None."""
        self._overlay_check_input(index, prev)
        self._overlay_check_conv(index, fused, prev, config)
        self._overlay_check_output(config, last)

    def _overlay_check_conv(self, index, pool, prev, config):
        where = f"layer {self.name!r}"
        Q = config.Q
        if not config.conv:
            raise ProgramError(f"{where}: the {config} build has no conv datapath (conv=0); "
                               f"use a build with conv=1 (the default)")
        if index > 0 and prev.out_image is None:
            raise ProgramError(f"{where}: a conv layer must be the first layer or follow a conv "
                               f"(the core's conv reads a feature map written by a conv)")
        if self.output != "threshold":
            raise ProgramError(f"{where}: a conv layer must have threshold output")
        if self.input_kind == "binary" and self.input_bits != 1:
            raise ProgramError(f"{where}: binary conv input has input_bits {self.input_bits}")
        if max(self.height, self.width) > 255:
            raise ProgramError(f"{where}: image {self.height}x{self.width} is larger than the "
                               f"core's 255x255")
        if pool is not None:
            if Q % 4:
                raise ProgramError(f"layer {pool.name!r}: a fused max-pool needs Q a multiple of "
                                   f"4 (the four pixels of a window in adjacent columns), {config} "
                                   f"has Q={Q}")
            if self.height % 2 or self.width % 2:
                raise ProgramError(f"layer {pool.name!r}: the core pools even images only, "
                                   f"{self.height}x{self.width} is odd")
        if self.input_kind == "binary":
            # The column walkers wrap to the next row (pair) at most once per group.
            step = Q // 2 if pool is not None else Q
            if step > self.width:
                raise ProgramError(f"{where}: the image is {self.width} pixels wide, a group of "
                                   f"{Q} columns covers {step} pixels of a row "
                                   f"({'pooled ' if pool is not None else ''}needs width ≥ {step})")
        shape = self.overlay_shape(config)
        units = self.height * self.width // (4 if pool is not None else 1)
        if units * shape.out_words > config.act_depth:
            raise ProgramError(f"{where}: its output feature map needs {units * shape.out_words} "
                               f"activation words (every column bank holds all of it), {config} "
                               f"has act_depth={config.act_depth}")
        groups = -(-self.height * self.width // Q)
        if index == 0 and groups * shape.tile_words > config.in_depth:
            raise ProgramError(f"{where}: the im2col input of one image needs "
                               f"{groups * shape.tile_words} words per input bank, {config} has "
                               f"in_depth={config.in_depth}")

    def overlay_descriptor(self, config, w_base, t_base, last, fused=None):
        """Descriptor fields (xnorflow.hw.core.memory_map.encode_descriptor) of a conv layer; ``pool``: the
        2×2 max-pool after it is fused into its writer.

        The compiler computes every product the column walkers need: ``pix_words`` words per input
        pixel, ``row_words`` per image row, and how far a column's pixel moves per group — ``Q``
        pixels along the row, or ``Q/2`` pixels and two rows pooled (``step_words``; ``wrap_words``
        when it wraps to the next row (pair): ``(step + (rows − 1)·W)·pix_words``).
        """
        shape = self.overlay_shape(config)
        pool = fused is not None
        op = mm.OP_CONV3X3
        if self.input_kind == "unsigned":
            op |= mm.FLAG_UNSIGNED
        if pool:
            op |= mm.FLAG_POOL
        if last:
            op |= mm.FLAG_LAST
        pix_words = -(-self.in_channels // config.K)
        step_px, rows = (config.Q // 2, 2) if pool else (config.Q, 1)
        mask = 0xFFFF
        units = self.height * self.width // (POOL * POOL if pool else 1)
        return dict(op=op, input_bits=self.input_bits, in_words=shape.in_words,
                    last_bits=shape.last_bits, m_tiles=shape.m_tiles, w_base=w_base,
                    t_base=t_base, out_words=shape.out_words,
                    groups=-(-self.height * self.width // config.Q), height=self.height,
                    width=self.width, pix_words=pix_words,
                    row_words=self.width * pix_words & mask, out_units=units,
                    step_words=step_px * pix_words & mask,
                    wrap_words=(step_px + (rows - 1) * self.width) * pix_words & mask)

    def overlay_input_rows(self, x, fused):
        """The image's im2col vectors (one image per run), each output pixel a column's
        vector, in the conv's pixel order: row-major, or pool window by window when a max-pool
        is fused (``fused``)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] != 1:
            raise ProgramError(f"a conv model runs one image per run, got inputs of shape "
                               f"{list(x.shape)}")
        cols = self.columns(x)                       # [H·W, 9·C] row-major pixels
        if fused is not None:
            cols = window_order(cols, self.height, self.width)
        return cols

    def overlay_cycles(self, config, batch, first=False):
        """Cycles of a conv layer for ``batch`` images (the core runs one image per run).

        ``fetch + 1 + (G·m_tiles − 1)·max(W, Q) + W + write_delay`` with ``G = ceil(batch·H·W/Q)``
        column groups of output pixels, ``m_tiles = ceil(C_out/P)``, ``W`` from
        :meth:`overlay_shape` and ``write_delay``/``desc_fetch`` of :mod:`xnorflow.hw.core.timing`: the
        dense formula (:func:`xnorflow.hw.core.timing.layer_cycles`) with pixels for samples. The tap
        walk issues one word per cycle with no bubbles (the border taps are injected, not
        skipped), and a fused max-pool costs nothing.
        """
        shape = self.overlay_shape(config)
        groups = self.overlay_groups(config, batch)
        return timing.layer_cycles(config, groups, shape.m_tiles, shape.tile_words, first)


@dataclass(eq=False)
class MaxPoolLayer(Layer):
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
    dataflow_pools = True
    input_kind = "binary"
    input_bits = 1
    output = "bits"
    table_note = ("a maxpool2x2 after a conv runs in that conv's writer: 0 cycles of its own "
                  "(docs/conv.md); a conv model runs one image per run")
    overlay_one_image = True

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

    @property
    def out_channels(self):
        return self.channels

    @property
    def out_image(self):
        return self.out_height, self.out_width, self.channels

    def binary_macs(self):
        """A pool multiplies nothing."""
        return 0

    def acc_range(self):
        """None: a pool has no accumulator."""
        return None

    def forward(self, x):
        """(None, out): a pool has no accumulator; out packed bits uint8 [B, ceil(H'·W'·C/8)]."""
        x = np.asarray(x)
        b = x.shape[0]
        img = B.unpack_bits(x, self.in_features).reshape(b, self.height, self.width, self.channels)
        return None, B.pack_bits(pool_bits(img, self.direction).reshape(b, -1))

    def derive_from(self, prev):
        """Pool by the directions of the conv before it."""
        self.direction = prev.direction.copy()

    # -- model file, compiler, tables ---------------------------------------------------------

    @classmethod
    def from_manifest(cls, reader, name, e, last):
        """Geometry (at least 2×2) and the ±1 ``direction`` array; that they are the feeding
        conv's is :meth:`check_follows`'."""
        h, w, c = reader.positive_ints(name, e, ("height", "width", "channels"))
        if h < 2 or w < 2:
            reader.fail(f"a 2×2 pool needs an image of at least 2×2, got {h}×{w}", name,
                        "height/width")
        names = reader.get(e, "arrays", dict, name)
        dirs = reader.array(reader.get(names, "direction", str, name, "arrays.direction"), "int8",
                            [c], name, "direction")
        bad = np.flatnonzero(np.abs(dirs) != 1)
        if bad.size:
            reader.fail(f"channel {int(bad[0])} direction {int(dirs[bad[0]])} is not ±1", name,
                        "direction")
        return cls(name=name, height=h, width=w, channels=c, direction=dirs,
                   extra=e.get("extra") or {})

    def check_follows(self, reader, prev):
        """A pool follows a conv of its geometry and pools by that conv's directions."""
        if not isinstance(prev, ConvLayer):
            reader.fail(f"a {self.type} must follow a {ConvLayer.type} layer, not {prev.type} "
                        f"'{prev.name}'", self.name, "type")
        if (prev.height, prev.width, prev.out_channels) != (self.height, self.width,
                                                            self.channels):
            reader.fail(f"pools a {self.height}×{self.width}×{self.channels} image but "
                        f"'{prev.name}' gives {prev.height}×{prev.width}×{prev.out_channels}",
                        self.name, "height/width/channels")
        bad = np.flatnonzero(self.direction != prev.direction)
        if bad.size:
            reader.fail(f"channel {int(bad[0])} direction {int(self.direction[bad[0]]):+d} differs "
                        f"from '{prev.name}' (OR for +1, AND for −1: pooling must follow the "
                        f"conv's threshold direction)", self.name, "direction")

    def manifest_fields(self):
        return {"height": self.height, "width": self.width, "channels": self.channels}

    def stored_arrays(self):
        return {"direction": np.asarray(self.direction, dtype=np.int8)}

    @classmethod
    def from_deploy(cls, d, prev, first, last, input_bits):
        """The pool after the folded conv ``prev``, pooling by its threshold directions: OR
        where +1, AND where −1 (exact because the model pools the integers before its
        monotone threshold)."""
        name = d["name"]
        if not isinstance(prev, ConvLayer):
            raise CompileError(f"layer '{name}': a {cls.type} must follow a {ConvLayer.type} "
                               f"layer with thresholded output")
        if (d["height"], d["width"], d["channels"]) != (prev.height, prev.width, prev.out_channels):
            raise CompileError(f"layer '{name}': pools {d['height']}×{d['width']}×{d['channels']} "
                               f"but '{prev.name}' gives {prev.height}×{prev.width}×"
                               f"{prev.out_channels}")
        return cls(name=name, height=prev.height, width=prev.width, channels=prev.out_channels,
                   direction=prev.direction.copy())

    def table_row(self):
        """No weights or thresholds; 'neg' counts its AND channels."""
        return {
            "name": self.name, "type": self.type,
            "in_features": self.in_features, "out_features": self.out_features,
            "shape": (f"{self.height}×{self.width}×{self.channels}→"
                      f"{self.out_height}×{self.out_width}×{self.channels}"),
            "input": "binary 1-bit", "output": "OR/AND 2×2", "acc_range": None,
            "threshold_min": None, "threshold_max": None,
            "negative_direction": int((self.direction < 0).sum()),
            "saturated_always_0": 0, "saturated_always_1": 0,
            "weight_bytes": 0, "threshold_bytes": 0, "binary_macs": 0,
        }

    # -- overlay: the core runs a pool only fused into the conv before it -----------------------

    def _not_on_core(self, what):
        return ConvNotOnCoreError(f"layer '{self.name}' ({self.type}): the core pools only in the "
                                  f"writer of the conv before it; {what}")

    def overlay_shape(self, config):
        """(words per pixel, 0, 0, 0, words per pixel): the pool reads and writes whole pixels."""
        words = -(-self.channels // config.K)
        return OverlayShape(words, 0, 0, 0, words)

    def overlay_memory(self, config):
        """Nothing of its own: its conv's writer pools."""
        return OverlayMemory(0, 0, 0)

    def overlay_check(self, index, fused, prev, config, last):
        """A pool is never a descriptor of its own (:func:`xnorflow.sw.program.hw_steps` fuses it into
        the conv before it)."""
        raise ProgramError(f"layer {self.name!r} ({self.type}): the core pools only right after "
                           f"a conv layer (the pool is fused into the conv's writer)")

    def overlay_descriptor(self, config, w_base, t_base, last, fused=None):
        """A pool has no descriptor: it is fused into the conv before it (``FLAG_POOL``)."""
        raise self._not_on_core("no descriptor of its own")

    def overlay_weight_image(self, config):
        """A pool has no weights."""
        raise self._not_on_core("no weights of its own")

    def overlay_threshold_image(self, config):
        """A pool has no thresholds (it pools by its conv's)."""
        raise self._not_on_core("no thresholds of its own")

    def overlay_input_rows(self, x, fused):
        """A pool is never a model's first layer."""
        raise self._not_on_core("it cannot take the model's inputs")

    def overlay_cycles(self, config, batch, first=False):
        """0: the core fuses a max-pool into the writer of the conv before it (the four pixels
        of a window leave the array in consecutive cycles and are ORed/ANDed by each channel's
        direction before the one write), so it takes no cycles of its own."""
        return 0

    def overlay_utilisation(self, config, batch):
        """The array does no work during a pool pass."""
        return 0.0
