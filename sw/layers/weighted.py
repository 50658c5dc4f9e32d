"""What the layer types with ±1 weights and per-channel thresholds (dense, conv3x3) share: the
core's integer arithmetic, and the parts of their file entry, deploy dict, table row, memory
images and core rules that do not depend on how the input vectors are formed.

Arithmetic (docs/contracts.md, contracts 2-5), per input vector of N bits and output channel:

* ``binary`` input: ``acc = 2·popcount(XNOR(x, w)) − N`` over the N real bits (padding bits
  never count); ``unsigned`` k-bit input, bit-serially over the planes:
  ``acc = Σ_b 2^b·(2·popcount(x_b AND w) − popcount(x_b))`` (= Σ_i x_i·w_i exactly).
* ``threshold`` output: bit = ``acc ≥ T`` when the direction is +1, ``acc ≤ T`` when −1.

A subclass says how its input vectors are formed (``filter_len``, ``out_channels``,
``overlay_shape``, ``overlay_weight_rows``, ``overlay_groups``) and what its own geometry is.
"""
from abc import abstractmethod

import numpy as np

from xnorflow.sw import bits as B
from xnorflow.sw.layers.base import CompileError, Layer, OverlayMemory, ProgramError

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


class WeightedLayer(Layer):
    """Base of the layer types with packed ±1 weights ``[out_channels, ceil(filter_len/8)]``
    and, for threshold output, a threshold and a direction per output channel."""

    #: ``(H, W, C_in)`` of the image a conv engine walks; None: one vector per image.
    dataflow_image = None

    def dataflow_engine(self):
        """A matrix-vector unit over the filters (``filter_len`` inputs, a conv's window)."""
        return {"n_in": self.filter_len, "n_out": self.out_channels,
                "input_bits": self.input_bits, "input_kind": self.input_kind,
                "output": self.output, "image": self.dataflow_image}

    # -- hooks of a subclass (besides the Layer interface's per-type methods) -----------------

    @classmethod
    @abstractmethod
    def manifest_geometry(cls, reader, name, entry, n, m):
        """Constructor fields of this type from a manifest ``entry`` whose (already checked,
        positive) ``in_features``/``out_features`` are ``n``/``m``."""

    @classmethod
    @abstractmethod
    def deploy_geometry(cls, d):
        """Constructor fields of this type from a deploy dict ``d``."""

    @abstractmethod
    def overlay_weight_rows(self, K):
        """Each filter as the bits the array consumes: uint8 [out_channels, in_words·K/8]."""

    @abstractmethod
    def overlay_groups(self, config, batch):
        """Column groups of Q input vectors one run of ``batch`` inputs takes."""

    # -- golden model ---------------------------------------------------------------------------

    def acc_range(self):
        """(lowest, highest) value the integer accumulator can take for this layer."""
        top = self.filter_len * ((1 << self.input_bits) - 1 if self.input_kind == "unsigned" else 1)
        return -top, top

    def saturated_channels(self):
        """(always-0 count, always-1 count) of a threshold layer over its accumulator range."""
        if self.output != "threshold":
            return 0, 0
        lo, hi = self.acc_range()
        channels = len(self.threshold)
        at_lo = threshold_bits(np.full(channels, lo), self.threshold, self.direction)
        at_hi = threshold_bits(np.full(channels, hi), self.threshold, self.direction)
        # The unit is monotone in acc, so a channel that agrees at both ends is constant.
        constant = at_lo == at_hi
        return int((constant & ~at_lo).sum()), int((constant & at_lo).sum())

    # -- model file -------------------------------------------------------------------------------

    @classmethod
    def from_manifest(cls, reader, name, e, last):
        """Sizes, geometry, input and output kinds, weights (padding bits 0), thresholds within
        the accumulator range ±1 and directions ±1, in that order."""
        n = reader.get(e, "in_features", int, name)
        mo = reader.get(e, "out_features", int, name)
        if n <= 0 or mo <= 0:
            reader.fail(f"sizes must be positive, got {n}→{mo}", name, "in_features/out_features")
        geometry = cls.manifest_geometry(reader, name, e, n, mo)
        kind = reader.get(e, "input_kind", str, name)
        if kind not in INPUT_KINDS:
            reader.fail(f"must be one of {INPUT_KINDS}, got {kind!r}", name, "input_kind")
        k = reader.get(e, "input_bits", int, name)
        if kind == "binary" and k != 1 or not 1 <= k <= 8:
            reader.fail(f"{kind} input takes {'1' if kind == 'binary' else '1..8'} bits, got {k}",
                        name, "input_bits")
        output = reader.get(e, "output", str, name)
        if output not in OUTPUT_KINDS:
            reader.fail(f"must be one of {OUTPUT_KINDS}, got {output!r}", name, "output")
        if (output == "raw") != last:
            reader.fail("only the last layer has raw output; every other layer thresholds",
                        name, "output")
        if not cls.classifier and output != "threshold":
            reader.fail(f"{cls.type} layers threshold (the classifier is a dense layer)", name,
                        "output")
        layer = cls(name=name, **geometry, input_kind=kind, input_bits=k, weights=None,
                    output=output, extra=e.get("extra") or {})
        names = reader.get(e, "arrays", dict, name)
        n, m = layer.filter_len, layer.out_channels
        weights = reader.array(reader.get(names, "weights", str, name, "arrays.weights"), "uint8",
                               [m, B.packed_len(n)], name, "weights")
        if (weights & ~B.valid_mask(n)).any():
            reader.fail("padding bits past in_features must be 0", name, "weights")
        layer.weights = weights
        if output == "threshold":
            layer.threshold, layer.direction = layer._read_thresholds(reader, names)
        return layer

    def _read_thresholds(self, reader, names):
        name, m = self.name, self.out_channels
        thr = reader.array(reader.get(names, "threshold", str, name, "arrays.threshold"),
                           "int32", [m], name, "threshold")
        dirs = reader.array(reader.get(names, "direction", str, name, "arrays.direction"),
                            "int8", [m], name, "direction")
        lo, hi = self.acc_range()
        bad = np.flatnonzero((thr < lo - 1) | (thr > hi + 1))
        if bad.size:
            c = int(bad[0])
            reader.fail(f"channel {c} threshold {int(thr[c])} is outside [{lo - 1}, {hi + 1}] "
                        f"(the accumulator range ±1; saturate to the bound instead)",
                        name, "threshold")
        bad = np.flatnonzero(np.abs(dirs) != 1)
        if bad.size:
            reader.fail(f"channel {int(bad[0])} direction {int(dirs[bad[0]])} is not ±1",
                        name, "direction")
        return thr, dirs

    def manifest_fields(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "input_kind": self.input_kind, "input_bits": self.input_bits,
                "output": self.output}

    def stored_arrays(self):
        arrays = {"weights": np.asarray(self.weights, dtype=np.uint8)}
        if self.output == "threshold":
            arrays["threshold"] = np.asarray(self.threshold, dtype=np.int32)
            arrays["direction"] = np.asarray(self.direction, dtype=np.int8)
        return arrays

    # -- compiler -------------------------------------------------------------------------------

    @classmethod
    def from_deploy(cls, d, prev, first, last, input_bits):
        """The layer of a deploy dict: ``weight_sign`` ±1 of shape [out_channels, filter_len],
        raw output only for the last layer, which must be a classifier type."""
        name = d["name"]
        layer = cls(name=name, **cls.deploy_geometry(d),
                    input_kind="unsigned" if first else "binary",
                    input_bits=input_bits if first else 1, weights=None, output=d["output"])
        ws = np.asarray(d["weight_sign"])
        rows, cols = layer.out_channels, layer.filter_len
        if ws.shape != (rows, cols) or not np.all(np.abs(ws) == 1):
            raise CompileError(f"layer '{name}' field 'weight_sign': must be ±1 of shape "
                               f"[{rows}, {cols}] (a binary-weight layer); "
                               f"full-precision layers cannot run on the accelerator")
        if (d["output"] == "raw") != last:
            raise CompileError(f"layer '{name}': only the last layer may have raw output")
        if last and not cls.classifier:
            raise CompileError(f"layer '{name}': a {cls.type} layer cannot be the last layer (the "
                               f"classifier must be dense)")
        layer.weights = B.pack_bits(ws > 0)
        return layer

    # -- tables ---------------------------------------------------------------------------------

    def table_row(self):
        zero, one = self.saturated_channels()
        thresholds = self.output == "threshold"
        return {
            "name": self.name, "type": self.type,
            "in_features": self.in_features, "out_features": self.out_features,
            "input": f"{self.input_kind} {self.input_bits}-bit",
            "output": self.output,
            "acc_range": list(self.acc_range()),
            "threshold_min": int(self.threshold.min()) if thresholds else None,
            "threshold_max": int(self.threshold.max()) if thresholds else None,
            "negative_direction": int((self.direction < 0).sum()) if thresholds else 0,
            "saturated_always_0": zero, "saturated_always_1": one,
            "weight_bytes": int(self.weights.size),
            "threshold_bytes": 4 * len(self.threshold) if thresholds else 0,
            "binary_macs": self.binary_macs(),
        }

    # -- overlay --------------------------------------------------------------------------------

    def overlay_memory(self, config):
        shape = self.overlay_shape(config)
        thresholds = self.output == "threshold"
        return OverlayMemory(weight_words=shape.m_tiles * shape.in_words,
                             threshold_entries=shape.m_tiles if thresholds else 0,
                             activation_words=shape.out_words if thresholds else 0)

    def overlay_weight_image(self, config):
        """Bytes of this layer's weights in the weight banks, from its first word address on.

        Word address ``a = t·in_words + w`` (relative to the layer's ``w_base``) holds, in row
        bank ``i``, word ``w`` of output channel ``t·P + i`` (the words of a filter are those of
        :meth:`overlay_weight_rows`); the byte address interleaves the P banks per word
        (``W_BASE + (a·P + i)·K/8``), so the image is one contiguous run of
        ``m_tiles·in_words·P·K/8`` bytes. Channels past ``out_channels`` are zero.
        """
        shape = self.overlay_shape(config)
        wb = config.K // 8
        padded = np.zeros((shape.m_tiles * config.P, shape.in_words * wb), np.uint8)
        padded[:self.out_channels] = self.overlay_weight_rows(config.K)
        img = padded.reshape(shape.m_tiles, config.P, shape.in_words, wb).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(img).tobytes()

    def overlay_threshold_image(self, config):
        """Bytes of this layer's threshold entries (threshold layers only), channel after channel.

        Entry of channel ``c = t·P + i`` is a 32-bit little-endian word: bits ``[acc_width-1:0]``
        the threshold (two's complement), bit 31 set for direction −1 (``acc ≤ T``). Thresholds
        past the reachable range are clamped to ``±(top+1)``: the same bits for every reachable
        ``acc`` (saturated channels stay saturated), and they fit ``acc_width``.
        """
        if self.output != "threshold":
            raise ValueError(f"layer {self.name!r} has raw output: no thresholds")
        lo, hi = self.acc_range()
        t = np.clip(np.asarray(self.threshold, dtype=np.int64), lo - 1, hi + 1)
        words = np.zeros(self.overlay_shape(config).m_tiles * config.P, np.uint32)
        words[:self.out_channels] = (t & ((1 << config.acc_width) - 1)).astype(np.uint32)
        down = np.asarray(self.direction) < 0
        words[:self.out_channels] |= np.where(down, np.uint32(1 << 31), np.uint32(0))
        return words.astype("<u4").tobytes()

    def overlay_utilisation(self, config, batch):
        """Fraction of this layer's cycles in which the array consumes a word (busy cycles),
        as a hidden (not first) layer."""
        shape = self.overlay_shape(config)
        busy = self.overlay_groups(config, batch) * shape.m_tiles * shape.tile_words
        return busy / self.overlay_cycles(config, batch)

    def _overlay_check_input(self, index, prev):
        """The core's rules on what a weighted layer reads (every type's first checks)."""
        where = f"layer {self.name!r}"
        if index > 0 and self.input_kind != "binary":
            raise ProgramError(f"{where}: only the first layer may take unsigned inputs")
        if index > 0 and self.in_features != prev.out_features:
            raise ProgramError(f"{where}: needs {self.in_features} inputs but the previous "
                               f"layer {prev.name!r} has {prev.out_features} outputs")
        if not 1 <= self.input_bits <= 8:
            raise ProgramError(f"{where}: input_bits {self.input_bits} is outside 1..8")

    def _overlay_check_output(self, config, last):
        """The core's rules on what a weighted layer writes and its accumulator width."""
        where = f"layer {self.name!r}"
        if last and self.output != "raw":
            raise ProgramError(f"{where}: the last layer must have raw output (it has "
                               f"{self.output!r}); its integers leave through the output buffer")
        if not last and self.output != "threshold":
            raise ProgramError(f"{where}: only the last layer may have raw output")
        lo, hi = self.acc_range()
        if hi + 1 > (1 << (config.acc_width - 1)) - 1:
            raise ProgramError(f"{where}: accumulator range [{lo}, {hi}] needs "
                               f"{(hi + 1).bit_length() + 1} bits, {config} has acc_width="
                               f"{config.acc_width}")
