"""Packing a dense layer for a dataflow engine (hw/dataflow/mvu.py): memory writes, input
beats, output decoding. Pure numpy; the layout itself is :class:`xnorflow.hw.dataflow.shape.MvuShape`
(one definition shared with the gateware), documented in hw/dataflow/shape.py.

A write is ``(select, address, word)`` for the engine's write port (``wr.sel``, ``wr.addr``,
``wr.data``): select ``p`` is PE ``p``'s weight memory, ``P + p`` its channel memory. Words are
Python ints (a weight word is S bits, up to hundreds).

Typical use::

    shape = mvu_shape(layer, simd=32, pe=8)
    writes = pack_layer(layer, simd=32, pe=8)       # weights, then channel constants
    beats = encode_mvu_input(x, shape)                    # [B][SF] input beats
    ... run the engine ...
    out = decode_mvu_output(out_beats, shape)             # layer.forward(x)[1]'s format
"""
import numpy as np

from xnorflow.hw.dataflow.shape import MvuShape
from xnorflow.sw import bits as B

__all__ = ["mvu_shape", "pack_mvu_weights", "weight_zeros", "pack_mvu_channels",
           "pack_layer", "encode_mvu_input", "decode_mvu_output"]


def mvu_shape(layer, simd, pe, acc_width=None):
    """The :class:`MvuShape` of a dense or conv layer folded to (simd, pe): its filters
    (``filter_len`` inputs: a conv's 9·C_in window) and ``out_channels``."""
    return MvuShape(layer.filter_len, layer.out_channels, simd, pe, layer.input_bits,
                    layer.input_kind, layer.output, acc_width)


def _weight_bits(w_packed, n_in, n_out):
    """bool [M, N] weight bits of packed rows, checked against the layer's shape."""
    w = np.asarray(w_packed, dtype=np.uint8)
    if w.ndim != 2 or w.shape[0] != n_out or w.shape[1] * 8 < n_in:
        raise ValueError(f"weights of shape {w.shape} do not hold {n_out} rows of {n_in} bits "
                         f"(expected uint8 [{n_out}, {-(-n_in // 8)}])")
    return B.unpack_bits(w, n_in)


def _words(bits):
    """Python ints of bool [..., S] words, bit j of a word = element j (LSB first)."""
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed.reshape(-1, packed.shape[-1])]


def pack_mvu_weights(w_packed, n_in, n_out, simd, pe):
    """Writes that load a layer's weights: one per (PE, word), padding bits 0.

    ``w_packed``: uint8 [M, ⌈N/8⌉] packed ±1 weights (bit 1 = +1, sw/bits.py). PE ``p``'s word
    ``nf·SF + sf`` holds, in bit ``j``, the weight of channel ``nf·P + p`` for input
    ``sf·S + j`` (:meth:`MvuShape.weight_location`).
    """
    shape = MvuShape(n_in, n_out, simd, pe)
    S, P, SF, NF = simd, pe, shape.synapse_folds, shape.neuron_folds
    bits = np.zeros((NF * P, SF * S), dtype=bool)
    bits[:n_out, :n_in] = _weight_bits(w_packed, n_in, n_out)
    # [NF, P, SF, S] → per PE p: [NF, SF, S], word nf·SF + sf
    per_pe = bits.reshape(NF, P, SF, S).transpose(1, 0, 2, 3)
    writes = []
    for p in range(P):
        for addr, word in enumerate(_words(per_pe[p].reshape(NF * SF, S))):
            writes.append((shape.weight_select(p), addr, word))
    return writes


def weight_zeros(w_packed, shape):
    """int64 [M]: zero bits of each channel's *stored* weight row (S·SF bits, padding 0)."""
    w = _weight_bits(w_packed, shape.n_in, shape.n_out)
    return shape.simd * shape.synapse_folds - w.sum(axis=1, dtype=np.int64)


def pack_mvu_channels(shape, w_packed, threshold=None, direction=None):
    """Writes that load the channel memories of ``shape`` (none for a raw binary layer).

    Threshold layers: channel ``c``'s word is ``T* | inv << threshold_width`` with
    ``(T*, inv) = shape.channel_threshold(T_c, d_c, zeros_c)``; padding channels get
    ``T* = U_max + 1, inv = 0`` (bit always 0). Raw unsigned layers: ``C_c =
    (2^k − 1)·zeros_c`` (padding channels 0).
    """
    if not shape.has_channel_memory:
        return []
    zeros = weight_zeros(w_packed, shape)
    words = np.zeros(shape.neuron_folds * shape.pe, dtype=object)
    if shape.output == "threshold":
        if threshold is None or direction is None:
            raise ValueError("a threshold MVU needs thresholds and directions")
        threshold, direction = np.asarray(threshold), np.asarray(direction)
        if threshold.shape != (shape.n_out,) or direction.shape != (shape.n_out,):
            raise ValueError(f"thresholds {threshold.shape} and directions {direction.shape} "
                             f"must both have shape ({shape.n_out},)")
        words[:] = shape.u_max + 1
        for c in range(shape.n_out):
            t_star, inv = shape.channel_threshold(threshold[c], direction[c], zeros[c])
            words[c] = t_star | inv << shape.threshold_width
    else:
        words[:] = 0
        for c in range(shape.n_out):
            words[c] = shape.channel_offset(zeros[c])
    writes = []
    for c, word in enumerate(words):
        sel, addr = shape.channel_location(c)
        writes.append((sel, addr, int(word)))
    return writes


def pack_layer(layer, simd, pe, acc_width=None):
    """Every write that loads ``layer`` (a DenseLayer, or a ConvLayer: its tap-major filters
    are the window vectors' weights) into an engine folded to (simd, pe)."""
    shape = mvu_shape(layer, simd, pe, acc_width)
    return (pack_mvu_weights(layer.weights, shape.n_in, shape.n_out, simd, pe)
            + pack_mvu_channels(shape, layer.weights, layer.threshold, layer.direction))


def encode_mvu_input(x, shape):
    """Input beats ``[B][SF]`` (Python ints) of a batch in the layer's input format.

    Binary: ``x`` is uint8 [B, ⌈N/8⌉] packed bits. Unsigned: uint8 [B, N] integers below 2^k,
    element ``j`` of a beat in bits ``[k·j, k·j + k)``. Padding elements are 0.
    """
    S, k, SF = shape.simd, shape.input_bits, shape.synapse_folds
    x = np.asarray(x)
    if shape.input_kind == "binary":
        elems = B.unpack_bits(x, shape.n_in).astype(np.uint8)
    else:
        elems = x.astype(np.uint8)
        if elems.ndim != 2 or elems.shape[1] != shape.n_in:
            raise ValueError(f"unsigned input of shape {elems.shape}: expected [B, {shape.n_in}]")
        if elems.size and int(elems.max()) >> k:
            raise ValueError(f"unsigned input holds {int(elems.max())}, above {k} bits")
    padded = np.zeros((elems.shape[0], SF * S), dtype=np.uint8)
    padded[:, :shape.n_in] = elems
    # element j's k bits, LSB first, then the next element: [B, SF, S, k] bits
    planes = (padded[..., None] >> np.arange(k, dtype=np.uint8)) & 1
    flat = planes.reshape(elems.shape[0], SF, S * k).astype(bool)
    words = _words(flat)
    return [words[b * SF:(b + 1) * SF] for b in range(elems.shape[0])]


def decode_mvu_output(beats, shape):
    """The layer's outputs from its output beats ``[B][NF]``: packed bits uint8
    [B, ⌈M/8⌉] (threshold; ``DenseLayer.forward``'s format) or int64 [B, M] (raw)."""
    P, W, M = shape.pe, shape.acc_width, shape.n_out
    out = []
    for image in beats:
        if len(image) != shape.neuron_folds:
            raise ValueError(f"an image has {shape.neuron_folds} output beats, got {len(image)}")
        if shape.output == "threshold":
            out.append([(beat >> p) & 1 for beat in image for p in range(P)][:M])
        else:
            vals = [(beat >> (p * W)) & ((1 << W) - 1) for beat in image for p in range(P)][:M]
            out.append([v - (1 << W) if v >> (W - 1) else v for v in vals])
    if shape.output == "threshold":
        return B.pack_bits(np.array(out, dtype=bool).reshape(len(out), M))
    return np.array(out, dtype=np.int64).reshape(len(out), M)
