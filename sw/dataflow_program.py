"""A compiled model on a dataflow build: the bus writes that load it, the bytes of its inputs
and outputs, and the cycle model of a run (docs/dataflow.md).

The overlay's counterpart is :mod:`xnorflow.sw.program`; the engine-level packing is
:mod:`xnorflow.sw.layers.dataflow_pack` and the address map :mod:`xnorflow.hw.dataflow.memory_map`.
"""
import functools

import numpy as np

from xnorflow.hw.dataflow import memory_map as mm
from xnorflow.hw.dataflow.config import DataflowConfig, EngineFold
from xnorflow.hw.dataflow.run_timing import run_cycles
from xnorflow.sw.bits import unpack_bits
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.layers.dataflow_pack import pack_layer

__all__ = ["DataflowProgramError", "ENGINE_FIELDS", "engine_layers", "check_model", "model_folds",
           "load_writes", "input_bytes",
           "decode_output_bytes", "predict_run"]


class DataflowProgramError(XnorflowError):
    """A model does not match a dataflow build (the message names the layer and the field)."""


#: The fields of an engine a build must match, in the order messages name them.
ENGINE_FIELDS = ("n_in", "n_out", "input_bits", "input_kind", "output", "image", "pool")


def engine_layers(model):
    """``[(layer, pooled)]``: the layers that are engines (dense, conv), each with whether the
    next layer is a 2×2 pool the engine runs after its threshold (a ``maxpool2x2`` has no
    engine of its own: hw/dataflow/pool.py)."""
    out = []
    for layer in model.layers:
        if layer.dataflow_pools:
            if not out or out[-1][1] or out[-1][0].dataflow_image is None:
                raise DataflowProgramError(f"layer {layer.name!r}: a {layer.type} layer runs "
                                           f"in the conv engine before it, and there is none")
            out[-1] = (out[-1][0], True)
        else:
            out.append((layer, False))
    return out


def model_folds(model):
    """Every engine's geometry (a dict of :data:`ENGINE_FIELDS`): what a build must match."""
    folds = []
    for layer, pooled in engine_layers(model):
        try:
            folds.append({**layer.dataflow_engine(), "pool": pooled})
        except XnorflowError as e:
            raise DataflowProgramError(str(e)) from None
    return folds


def check_model(model, config):
    """Raise DataflowProgramError unless ``model``'s layers have the shapes ``config`` was built
    for (sizes, input bits and kind, output kind, a conv's image and pool)."""
    config = DataflowConfig.parse(config)
    folds = model_folds(model)
    if len(folds) != len(config.engines):
        raise DataflowProgramError(f"model '{model.name}' has {len(folds)} engine layers, the "
                                   f"build {config.format()} has {len(config.engines)} engines")
    for (layer, _), got, engine in zip(engine_layers(model), folds, config.engines):
        # the layer's own names for the engine's sizes
        names = ({"n_in": "filter_len", "n_out": "out_channels"} if got["image"] is not None
                 else {"n_in": "in_features", "n_out": "out_features"})
        for field in ENGINE_FIELDS:
            g, w = got[field], getattr(engine, field)
            if g != w:
                raise DataflowProgramError(f"layer {layer.name!r}: field "
                                           f"'{names.get(field, field)}' is {g!r}, the build's "
                                           f"engine {engine.format()} has {w!r}")
        if layer.output == "raw":
            lo, hi = layer.acc_range()
            width = engine.shape.acc_width
            if lo < -(1 << (width - 1)) or hi > (1 << (width - 1)) - 1:
                raise DataflowProgramError(f"layer {layer.name!r}: its integers [{lo}, {hi}] do "
                                           f"not fit the engine's {width}-bit output")


def fold_for(model, folds, **options):
    """A :class:`DataflowConfig` for ``model`` with ``folds`` = [(simd, pe), (simd, pe, mmv)
    or (simd, pe, "i") (input-first), ...] per engine (a pool runs in the conv engine before
    it)."""
    def fold_options(fold):
        extra = fold[2] if len(fold) > 2 else 1
        return {"order": "input"} if extra == "i" else {"mmv": extra}

    engines = tuple(EngineFold(**geometry, simd=fold[0], pe=fold[1], **fold_options(fold))
                    for geometry, fold in zip(model_folds(model), folds))
    return DataflowConfig(engines, **options)


def load_writes(model, config):
    """``[(address, bytes)]`` that write every engine's weights and channel constants."""
    config = DataflowConfig.parse(config)
    check_model(model, config)
    lay = mm.layout(config)
    writes = []
    for e, ((layer, _), engine) in enumerate(zip(engine_layers(model), config.engines)):
        size = lay.word_bytes[e]
        by_memory = {}
        for sel, addr, word in pack_layer(layer, engine.simd, engine.pe,
                                                engine.shape.acc_width):
            by_memory.setdefault(sel, {})[addr] = word
        for sel in sorted(by_memory):
            words = by_memory[sel]
            data = b"".join(words.get(a, 0).to_bytes(size, "little")
                            for a in range(max(words) + 1))
            writes.append((lay.address(e, sel, 0), data))
    return writes


def input_bytes(x, config):
    """The bytes of inputs ``x`` (uint8 [B, N]: the model's input format) as the input port
    takes them: per image ``in_words`` words of ``in_lanes`` elements (element ``j`` of a word
    in bits ``[k·j, k·j + k)``, the last word padded with 0), each ``in_word_bytes``
    little-endian."""
    config = DataflowConfig.parse(config)
    first, lanes, words = config.first, config.in_lanes, config.in_words
    n = config.engines[0].in_features     # a conv's whole HWC image: the window unit walks it
    x = np.asarray(x)
    elems = unpack_bits(x, n) if first.input_kind == "binary" else x
    padded = np.zeros((len(x), words * lanes), dtype=np.uint8)
    padded[:, :n] = elems
    k = first.input_bits
    planes = (padded[..., None] >> np.arange(k, dtype=np.uint8)) & 1       # [B, W·L, k]
    bits = planes.reshape(len(x) * words, lanes * k).astype(np.uint8)
    packed = np.packbits(bits, axis=1, bitorder="little")                   # [B·W, bytes]
    size = config.in_word_bytes
    if packed.shape[1] < size:
        packed = np.pad(packed, ((0, 0), (0, size - packed.shape[1])))
    return packed[:, :size].tobytes()


def decode_output_bytes(data, config, batch):
    """The last layer's integers (int64 [batch, M]) from the output port's bytes."""
    config = DataflowConfig.parse(config)
    size, m, width = config.out_word_bytes, config.out_words, config.out_word_bits
    if len(data) != batch * m * size:
        raise DataflowProgramError(f"{len(data)} output bytes for {batch} images, expected "
                                   f"{batch * m * size}")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(batch * m, size).astype(np.int64)
    values = (raw << (8 * np.arange(size))).sum(axis=1) & ((1 << width) - 1)
    values = np.where(values >> (width - 1), values - (1 << width), values)
    return values.reshape(batch, m)


def predict_run(config, batch):
    """The cycle model of one run of ``batch`` images written before START:
    ``{"total", "latency", "interval", "by_engine"}`` as the core's counters report them
    (a new dict each call)."""
    run = _run_cycles(DataflowConfig.parse(config), batch)
    return {**run, "by_engine": list(run["by_engine"])}


@functools.lru_cache(maxsize=64)
def _run_cycles(config, batch):
    # A run's cycles depend on the build and the number of images only, not on their data,
    # and the beat-level stream model takes seconds for a CNV run of 16 images: a simulation
    # of 10,000 images asks for the same 625 runs, a third of its CPU time before this cache.
    return run_cycles(config, batch)
