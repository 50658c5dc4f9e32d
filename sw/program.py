"""A compiled model as the accelerator core sees it: memory images, inputs, outputs, cycles.

``build_program`` turns a list of golden layers (:mod:`xnorflow.sw.layers`) into
``(byte address, bytes)`` writes for the core's bus (descriptors, weights, thresholds);
``encode_inputs`` does the same for a batch of inputs, ``decode_outputs`` turns the bytes read
from the output region back into the last layer's integers, and ``predict_cycles`` is the cycle
model the core's counters must match exactly. Layout: docs/memory_map.md and docs/core.md.

A program the core runs: layer 0 takes unsigned k-bit inputs (or binary inputs given as 0/1
with ``input_bits = 1``), hidden layers are binary with threshold outputs, the last layer has
raw outputs. A CNN's conv layers come first (docs/conv.md): each runs as one descriptor, a
max-pool after a conv is fused into that conv's descriptor (it has no descriptor and no cycles
of its own), and a model with conv layers runs one image per run.

What is particular to a layer type — its shape on the array, its rules, its descriptor, images
and cycles — is the layer's (the ``overlay_*`` methods of :class:`xnorflow.sw.layers.base.Layer`); this
module allocates the memories, places the writes on the bus and checks the whole program.
"""
import numpy as np

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.sw import bits as B
from xnorflow.sw.layers.base import OverlayStep, ProgramError

__all__ = ["build_program", "encode_inputs", "encode_model_inputs", "decode_outputs",
           "output_region", "predict_cycles", "max_batch", "check_batch", "hw_steps",
           "counters_by_layer", "ProgramError"]


def _cfg(config):
    return ArrayConfig.parse(config) if not isinstance(config, ArrayConfig) else config


def hw_steps(layers):
    """``[OverlayStep(layer, fused)]``: one entry per descriptor; ``fused`` is the layer the
    core runs inside ``layer``'s descriptor (a max-pool in its conv's writer), or None."""
    steps = []
    for layer in layers:
        if steps and steps[-1].fused is None and steps[-1].layer.overlay_fuses(layer):
            steps[-1] = OverlayStep(steps[-1].layer, layer)
        else:
            steps.append(OverlayStep(layer))
    return steps


def counters_by_layer(layers, counters):
    """``{layer name: cycles}`` from the per-descriptor counters (a fused pool counts 0)."""
    out = {}
    for k, (layer, fused) in enumerate(hw_steps(layers)):
        out[layer.name] = counters[k]
        if fused is not None:
            out[fused.name] = 0
    return out


def _check_layers(layers, config):
    layers = list(layers)
    if not layers:
        raise ProgramError("empty model: no layers")
    steps = hw_steps(layers)
    if len(steps) > config.desc_depth:
        raise ProgramError(f"the model needs {len(steps)} descriptors, the descriptor table of "
                           f"{config} holds {config.desc_depth}")
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ProgramError(f"layer names must be unique, got {names}")
    prev = None
    for idx, (layer, fused) in enumerate(steps):
        layer.overlay_check(idx, fused, prev, config, last=idx == len(steps) - 1)
        prev = fused if fused is not None else layer
    return layers


def check_fits(layers, config):
    """Raise ProgramError naming the layer and the limit when ``layers`` cannot run on
    ``config`` (descriptors, memories, accumulator width, layer order)."""
    _check_layers(layers, _cfg(config))


def max_batch(layers, config):
    """Largest batch one run of ``layers`` takes on ``config`` (a multiple of Q; 1 for a
    model with conv layers, whose columns are the pixels of one image)."""
    config = _cfg(config)
    layers = list(layers)
    if any(layer.overlay_one_image for layer in layers):
        return 1
    limits = [config.in_depth // layers[0].overlay_shape(config).tile_words]
    for layer in layers:
        shape = layer.overlay_shape(config)
        if layer.output == "raw":
            limits.append(config.out_depth // (shape.m_tiles * config.Q))
        else:
            limits.append(config.act_depth // shape.out_words)
    return min(limits) * config.Q


def build_program(layers, config):
    """``[(address, bytes)]`` writing descriptors, weights and thresholds of ``layers``.

    Raises :class:`ProgramError` naming the layer when it does not fit, with what it needs and
    what the config has.
    """
    config = _cfg(config)
    layers = _check_layers(layers, config)
    writes = []
    w_base = t_base = 0
    steps = hw_steps(layers)
    for idx, (layer, fused) in enumerate(steps):
        memory = layer.overlay_memory(config)
        w_words, t_entries = memory.weight_words, memory.threshold_entries
        if w_base + w_words > config.w_depth:
            raise ProgramError(f"layer {layer.name!r}: weights need words {w_base}.."
                               f"{w_base + w_words - 1} of each row bank, {config} has "
                               f"w_depth={config.w_depth}")
        if t_entries and t_base + t_entries > config.thr_depth:
            raise ProgramError(f"layer {layer.name!r}: thresholds need entries {t_base}.."
                               f"{t_base + t_entries - 1} of each row bank, {config} has "
                               f"thr_depth={config.thr_depth}")
        fields = layer.overlay_descriptor(config, w_base, t_base, last=idx == len(steps) - 1,
                                          fused=fused)
        writes.append((mm.DESC_BASE + mm.DESC_BYTES * idx, mm.encode_descriptor(**fields)))
        writes.append((mm.W_BASE + w_base * config.P * config.word_bytes,
                       layer.overlay_weight_image(config)))
        if layer.output == "threshold":
            writes.append((mm.THR_BASE + 4 * t_base * config.P,
                           layer.overlay_threshold_image(config)))
        t_base += t_entries
        w_base += w_words
    if max_batch(layers, config) < 1:
        raise ProgramError(f"not even one column group of {config.Q} samples fits {config}")
    return writes


def encode_inputs(x, input_bits, config):
    """``[(address, bytes)]`` writing a batch of unsigned inputs ``x`` (uint8 [B, N]).

    Sample ``b`` sits in column bank ``j = b mod Q`` of group ``g = b div Q``; word address
    ``g·W + q·in_words + w`` holds bit-plane ``p = k − 1 − q`` of its K-bit word ``w``
    (``W = in_words·k``, ``in_words = ceil(N/K)``): planes most significant first, the order
    the sequencer issues them in (Horner's rule in the PEs).
    """
    config = _cfg(config)
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"inputs must be [batch, features], got shape {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= 1 << input_bits):
        raise ValueError(f"inputs must be unsigned {input_bits}-bit integers")
    batch, n = x.shape
    K, Q, wb = config.K, config.Q, config.word_bytes
    in_words = -(-n // K)
    W = in_words * input_bits
    groups = -(-batch // Q)
    if groups * W > config.in_depth:
        raise ValueError(f"a batch of {batch} needs {groups * W} words per input bank, "
                         f"{config} has in_depth={config.in_depth}")
    img = np.zeros((groups * Q, input_bits, in_words, wb), np.uint8)
    xs = x.astype(np.uint8)
    for q in range(input_bits):
        planes = B.pack_bits((xs >> (input_bits - 1 - q)) & 1, K)     # [B, in_words·wb]
        img[:batch, q, :, :] = planes.reshape(batch, in_words, wb)
    # [g, j, q, w, byte] → address order (g, q, w, j, byte)
    img = img.reshape(groups, Q, input_bits, in_words, wb).transpose(0, 2, 3, 1, 4)
    return [(mm.IN_BASE, np.ascontiguousarray(img).tobytes())]


def encode_model_inputs(layers, x, config):
    """``[(address, bytes)]`` writing the inputs ``x`` (uint8 [B, N]) of ``layers``' first layer.

    The first layer says what the columns take (``overlay_input_rows``): a dense layer the
    samples themselves; a conv (one image, B = 1) the image's im2col vectors
    (sw/layers/conv.py) as if each output pixel were a sample, in the conv's pixel order
    (row-major, or pool window by window when the conv's max-pool is fused). Then
    :func:`encode_inputs`.
    """
    config = _cfg(config)
    first, fused = hw_steps(list(layers))[0]
    return encode_inputs(first.overlay_input_rows(x, fused), first.input_bits, config)


def output_region(layers, config, batch):
    """(address, length) of the bytes holding the last layer's outputs for ``batch``."""
    config = _cfg(config)
    check_batch(layers, config, batch)
    m_tiles = list(layers)[-1].overlay_shape(config).m_tiles
    groups = -(-batch // config.Q)
    return mm.OUT_BASE, groups * m_tiles * config.Q * config.P * 4


def check_batch(layers, config, batch):
    """Raise ProgramError when one run of ``layers`` cannot take ``batch`` samples."""
    config = _cfg(config)
    if not 1 <= batch < 1 << 16:
        raise ProgramError(f"batch {batch} is outside 1..65535")
    most = max_batch(layers, config)
    if batch > most:
        raise ProgramError(f"a batch of {batch} does not fit {config}: at most {most} samples "
                           f"per run (input, activation and output buffers); split the batch")


def decode_outputs(data, layers, config, batch):
    """The last layer's integers (int64 [batch, M]) from the bytes of :func:`output_region`.

    Row bank ``i`` holds, at word ``(g·m_tiles + t)·Q + j``, channel ``t·P + i`` of sample
    ``g·Q + j`` (the order the row produces them); values are sign-extended 32-bit words.
    """
    config = _cfg(config)
    last = list(layers)[-1]
    m_tiles = last.overlay_shape(config).m_tiles
    groups = -(-batch // config.Q)
    vals = np.frombuffer(bytes(data), dtype="<i4").astype(np.int64)
    vals = vals.reshape(groups, m_tiles, config.Q, config.P)      # g, t, j, i
    vals = vals.transpose(0, 2, 1, 3).reshape(groups * config.Q, m_tiles * config.P)
    return vals[:batch, :last.out_features]


def predict_cycles(layers, config, batch):
    """``{"total": cycles, "by_layer": {name: cycles}}`` exactly as the core's counters count
    (a max-pool fused into its conv counts 0: its work is in the conv's writer)."""
    config = _cfg(config)
    by_layer = {layer.name: layer.overlay_cycles(config, batch, first=idx == 0)
                for idx, layer in enumerate(layers)}
    return {"total": sum(by_layer.values()), "by_layer": by_layer}
