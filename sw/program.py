"""A compiled model as the accelerator core sees it: memory images, inputs, outputs, cycles.

``build_program`` turns a list of golden :class:`~sw.layers.dense.DenseLayer` objects into
``(byte address, bytes)`` writes for the core's bus (descriptors, weights, thresholds);
``encode_inputs`` does the same for a batch of inputs, ``decode_outputs`` turns the bytes read
from the output region back into the last layer's integers, and ``predict_cycles`` is the cycle
model the core's counters must match exactly. Layout: docs/memory_map.md and docs/core.md.

A program the core runs: layer 0 takes unsigned k-bit inputs (or binary inputs given as 0/1
with ``input_bits = 1``), hidden layers are binary with threshold outputs, the last layer has
raw outputs. A CNN's conv layers come first (docs/conv.md): each runs as one descriptor, a
max-pool after a conv is fused into that conv's descriptor (it has no descriptor and no cycles
of its own), and a model with conv layers runs one image per run.
"""
import numpy as np

from hw.config import ArrayConfig
from hw.core import memory_map as mm
from sw.errors import XnorflowError

__all__ = ["build_program", "encode_inputs", "encode_model_inputs", "decode_outputs",
           "output_region", "predict_cycles", "max_batch", "check_batch", "hw_steps",
           "counters_by_layer", "ProgramError"]


class ProgramError(XnorflowError, ValueError):
    """The model does not fit or does not suit the core; the message names the layer."""


def _cfg(config):
    return ArrayConfig.parse(config) if not isinstance(config, ArrayConfig) else config


def _kind(layer):
    return getattr(layer, "type", type(layer).__name__)


def hw_steps(layers):
    """``[(layer, pool)]``: one entry per descriptor; ``pool`` is the max-pool layer fused into
    the conv ``layer`` (or None)."""
    steps = []
    for layer in layers:
        if _kind(layer) == "maxpool2x2" and steps and _kind(steps[-1][0]) == "conv3x3" \
                and steps[-1][1] is None:
            steps[-1] = (steps[-1][0], layer)
        else:
            steps.append((layer, None))
    return steps


def counters_by_layer(layers, counters):
    """``{layer name: cycles}`` from the per-descriptor counters (a fused pool counts 0)."""
    out = {}
    for k, (layer, pool) in enumerate(hw_steps(layers)):
        out[layer.name] = counters[k]
        if pool is not None:
            out[pool.name] = 0
    return out


def _check_conv(idx, layer, pool, prev, config):
    """Conv/pool rules of the core (docs/conv.md, "On the core"); raises ProgramError."""
    where = f"layer {layer.name!r}"
    Q = config.Q
    if not config.conv:
        raise ProgramError(f"{where}: the {config} build has no conv datapath (conv=0); "
                           f"use a build with conv=1 (the default)")
    if idx > 0 and _kind(prev) not in ("conv3x3", "maxpool2x2"):
        raise ProgramError(f"{where}: a conv layer must be the first layer or follow a conv "
                           f"(the core's conv reads a feature map written by a conv)")
    if layer.output != "threshold":
        raise ProgramError(f"{where}: a conv layer must have threshold output")
    if layer.input_kind == "binary" and layer.input_bits != 1:
        raise ProgramError(f"{where}: binary conv input has input_bits {layer.input_bits}")
    if max(layer.height, layer.width) > 255:
        raise ProgramError(f"{where}: image {layer.height}x{layer.width} is larger than the "
                           f"core's 255x255")
    if pool is not None:
        if Q % 4:
            raise ProgramError(f"layer {pool.name!r}: a fused max-pool needs Q a multiple of "
                               f"4 (the four pixels of a window in adjacent columns), {config} "
                               f"has Q={Q}")
        if layer.height % 2 or layer.width % 2:
            raise ProgramError(f"layer {pool.name!r}: the core pools even images only, "
                               f"{layer.height}x{layer.width} is odd")
    if layer.input_kind == "binary":
        # The column walkers wrap to the next row (pair) at most once per group.
        step = Q // 2 if pool is not None else Q
        if step > layer.width:
            raise ProgramError(f"{where}: the image is {layer.width} pixels wide, a group of "
                               f"{Q} columns covers {step} pixels of a row "
                               f"({'pooled ' if pool is not None else ''}needs width ≥ {step})")
    _, _, _, W, out_words = layer.hw_shape(config)
    units = layer.height * layer.width // (4 if pool is not None else 1)
    if units * out_words > config.act_depth:
        raise ProgramError(f"{where}: its output feature map needs {units * out_words} "
                           f"activation words (every column bank holds all of it), {config} "
                           f"has act_depth={config.act_depth}")
    groups = -(-layer.height * layer.width // Q)
    if idx == 0 and groups * W > config.in_depth:
        raise ProgramError(f"{where}: the im2col input of one image needs {groups * W} words "
                           f"per input bank, {config} has in_depth={config.in_depth}")


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
    for idx, (layer, pool) in enumerate(steps):
        where = f"layer {layer.name!r}"
        kind = _kind(layer)
        if kind == "maxpool2x2":
            raise ProgramError(f"{where} (maxpool2x2): the core pools only right after a conv "
                               f"layer (the pool is fused into the conv's writer)")
        if kind not in ("dense", "conv3x3"):
            raise ProgramError(f"{where}: only dense and conv3x3 layers run on the core, "
                               f"got {kind!r}")
        if idx > 0 and layer.input_kind != "binary":
            raise ProgramError(f"{where}: only the first layer may take unsigned inputs")
        if idx > 0 and layer.in_features != prev.out_features:
            raise ProgramError(f"{where}: needs {layer.in_features} inputs but the previous "
                               f"layer {prev.name!r} has {prev.out_features} outputs")
        if not 1 <= layer.input_bits <= 8:
            raise ProgramError(f"{where}: input_bits {layer.input_bits} is outside 1..8")
        if kind == "conv3x3":
            _check_conv(idx, layer, pool, prev, config)
        elif idx > 0 and _kind(prev) in ("conv3x3", "maxpool2x2"):
            channels = getattr(prev, "out_channels", getattr(prev, "channels", None))
            if channels % config.K:
                raise ProgramError(f"{where}: a dense layer reads the feature map before it "
                                   f"as one vector, which needs its {channels} channels to be "
                                   f"a multiple of K={config.K}")
        last = idx == len(steps) - 1
        if last and layer.output != "raw":
            raise ProgramError(f"{where}: the last layer must have raw output (it has "
                               f"{layer.output!r}); its integers leave through the output buffer")
        if not last and layer.output != "threshold":
            raise ProgramError(f"{where}: only the last layer may have raw output")
        lo, hi = layer.acc_range()
        if hi + 1 > (1 << (config.acc_width - 1)) - 1:
            raise ProgramError(f"{where}: accumulator range [{lo}, {hi}] needs "
                               f"{(hi + 1).bit_length() + 1} bits, {config} has acc_width="
                               f"{config.acc_width}")
        _, _, m_tiles, _, out_words = layer.hw_shape(config)
        if kind == "dense" and layer.output == "threshold" and out_words > config.act_depth:
            raise ProgramError(f"{where}: needs {out_words} activation words per sample, "
                               f"{config} has act_depth={config.act_depth}")
        prev = pool if pool is not None else layer
    return layers


def check_fits(layers, config):
    """Raise ProgramError naming the layer and the limit when ``layers`` cannot run on
    ``config`` (descriptors, memories, accumulator width, layer order)."""
    _check_layers(layers, _cfg(config))


def _has_conv(layers):
    return any(_kind(layer) == "conv3x3" for layer in layers)


def max_batch(layers, config):
    """Largest batch one run of ``layers`` takes on ``config`` (a multiple of Q; 1 for a
    model with conv layers, whose columns are the pixels of one image)."""
    config = _cfg(config)
    layers = list(layers)
    if _has_conv(layers):
        return 1
    W0 = layers[0].hw_shape(config)[3]
    limits = [config.in_depth // W0]
    for layer in layers:
        _, _, m_tiles, _, out_words = layer.hw_shape(config)
        if layer.output == "raw":
            limits.append(config.out_depth // (m_tiles * config.Q))
        else:
            limits.append(config.act_depth // out_words)
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
    for idx, (layer, pool) in enumerate(steps):
        in_words, _, m_tiles, _, _ = layer.hw_shape(config)
        w_words = m_tiles * in_words
        if w_base + w_words > config.w_depth:
            raise ProgramError(f"layer {layer.name!r}: weights need words {w_base}.."
                               f"{w_base + w_words - 1} of each row bank, {config} has "
                               f"w_depth={config.w_depth}")
        if layer.output == "threshold" and t_base + m_tiles > config.thr_depth:
            raise ProgramError(f"layer {layer.name!r}: thresholds need entries {t_base}.."
                               f"{t_base + m_tiles - 1} of each row bank, {config} has "
                               f"thr_depth={config.thr_depth}")
        last = idx == len(steps) - 1
        fields = (layer.hw_descriptor(config, w_base, t_base, last=last, pool=pool is not None)
                  if _kind(layer) == "conv3x3" else
                  layer.hw_descriptor(config, w_base, t_base, last=last))
        writes.append((mm.DESC_BASE + mm.DESC_BYTES * idx, mm.encode_descriptor(**fields)))
        writes.append((mm.W_BASE + w_base * config.P * config.word_bytes,
                       layer.hw_weight_image(config)))
        if layer.output == "threshold":
            writes.append((mm.THR_BASE + 4 * t_base * config.P,
                           layer.hw_threshold_image(config)))
            t_base += m_tiles
        w_base += w_words
    if _kind(layers[-1]) != "dense":
        raise ProgramError(f"layer {layers[-1].name!r}: the last layer must be dense (raw "
                           f"integers for the host's head)")
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
    from sw import bits as B
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

    Dense: :func:`encode_inputs`. Conv (one image, B = 1): the host writes the image's im2col
    vectors (sw/layers/conv.py) as if each output pixel were a sample, in the conv's pixel
    order (row-major, or pool window by window when the conv's max-pool is fused).
    """
    config = _cfg(config)
    layers = list(layers)
    first = layers[0]
    if _kind(first) != "conv3x3":
        return encode_inputs(x, first.input_bits, config)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != 1:
        raise ProgramError(f"a conv model runs one image per run, got inputs of shape "
                           f"{list(x.shape)}")
    pooled = hw_steps(layers)[0][1] is not None
    cols = first.columns(x)                       # [H·W, 9·C] row-major pixels
    if pooled:
        cols = window_order(cols, first.height, first.width)
    return encode_inputs(cols, first.input_bits, config)


def window_order(rows, height, width):
    """Reorder per-pixel rows (row-major, ``H·W`` of them) pool window by window: window
    ``(Y, X)`` row-major, its pixels ``dy·2 + dx`` consecutive (the order a pooled conv's
    columns compute pixels in)."""
    rows = np.asarray(rows)
    r = rows.reshape(height // 2, 2, width // 2, 2, *rows.shape[1:])
    return np.ascontiguousarray(np.moveaxis(r, 2, 1)).reshape(rows.shape)


def output_region(layers, config, batch):
    """(address, length) of the bytes holding the last layer's outputs for ``batch``."""
    config = _cfg(config)
    check_batch(layers, config, batch)
    last = list(layers)[-1]
    m_tiles = last.hw_shape(config)[2]
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
    m_tiles = last.hw_shape(config)[2]
    groups = -(-batch // config.Q)
    vals = np.frombuffer(bytes(data), dtype="<i4").astype(np.int64)
    vals = vals.reshape(groups, m_tiles, config.Q, config.P)      # g, t, j, i
    vals = vals.transpose(0, 2, 1, 3).reshape(groups * config.Q, m_tiles * config.P)
    return vals[:batch, :last.out_features]


def predict_cycles(layers, config, batch):
    """``{"total": cycles, "by_layer": {name: cycles}}`` exactly as the core's counters count
    (a max-pool fused into its conv counts 0: its work is in the conv's writer)."""
    config = _cfg(config)
    by_layer = {layer.name: layer.cycles(config, batch, first=idx == 0)
                for idx, layer in enumerate(layers)}
    return {"total": sum(by_layer.values()), "by_layer": by_layer}
