"""Compiler: a trained checkpoint becomes a :class:`~xnorflow.sw.golden.CompiledModel` (an ``.xnf`` file).

Per hidden layer and output channel, scale, bias, batch norm and sign fold into one integer
threshold ``T`` and a direction ``d`` on the integer dot product ``acc`` (docs/contracts.md,
"The fold")::

    z(acc) = ((acc·α + b) − μ) / σ · γ + β  =  a·acc + c,   a = αγ/σ,  c = γ(b − μ)/σ + β
    a > 0:  bit = acc ≥ ⌈−c/a⌉      a < 0:  bit = acc ≤ ⌊−c/a⌋      a = 0:  bit = (c ≥ 0)

Thresholds beyond the accumulator's range are clamped to one past it (saturated channels).

The proof: every channel is then evaluated by brute force over every integer its accumulator
can hold, in float64 and in exactly the operation order the PyTorch model uses in eval mode;
a single disagreement with the folded (T, d) stops the compile, naming layer, channel and value.

Conv layers (``type: conv3x3`` in the deploy contract) fold exactly like dense ones, per output
channel over their accumulator range ``±9·C_in·(2^k − 1)``. A ``maxpool2x2`` after a conv
becomes an OR of bits for the conv's channels with direction +1 and an AND for direction −1:
training pools the integers before batch norm and sign, and the folded threshold is monotone
in ``acc`` with that direction (:mod:`xnorflow.sw.layers.conv`).

The last layer keeps its raw integers; its scale, bias and batch norm become the host-side
:class:`~xnorflow.sw.golden.Head`, evaluated in the same operation order as the PyTorch model.
"""
import json
import sys

import numpy as np

from xnorflow.hw.config import ArrayConfig
from xnorflow.sw import xnf
from xnorflow.sw.argtypes import output_file
from xnorflow.sw.golden import CompiledModel, Head, InputSpec
from xnorflow.sw.layers import LAYER_TYPES, layer_class
from xnorflow.sw.layers.base import CompileError
from xnorflow.sw.layers.dense import DenseLayer
from xnorflow.sw.layers.weighted import WeightedLayer, threshold_bits
from xnorflow.sw.program import ProgramError, build_program, max_batch

# Brute-force check in blocks of about this many (channel, value) pairs.
_CHECK_BLOCK = 1 << 22

def bn_sigma(bn):
    """``σ = sqrt(var + eps)`` computed exactly as the PyTorch model computes it.

    PyTorch's float64 ``sqrt`` on CPU is not always correctly rounded (seen: one channel of ten
    one ulp away from numpy's), so σ must come from the same torch call the model makes, or
    host scores and fold checks could differ from the model in the last bit.
    """
    import torch
    return (torch.as_tensor(np.asarray(bn["var"], dtype=np.float64)) + bn["eps"]).sqrt().numpy()


def layer_scores(d, acc):
    """float64 ``z`` for integer ``acc`` [..., M] in the PyTorch eval-mode operation order."""
    bn = d["bn"]
    sigma = bn["sigma"] if "sigma" in bn else bn_sigma(bn)
    y = np.asarray(acc, dtype=np.float64) * d["alpha"] + d["bias"]
    return (y - bn["mean"]) / sigma * bn["gamma"] + bn["beta"]


def fold_thresholds(d, lo, hi):
    """Closed-form (threshold int32 [M], direction int8 [M]) for an exported layer ``d``."""
    bn = d["bn"]
    sigma = bn_sigma(bn)
    a = d["alpha"] * bn["gamma"] / sigma
    c = bn["gamma"] * (d["bias"] - bn["mean"]) / sigma + bn["beta"]
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = -c / a
        thr = np.where(a > 0, np.ceil(edge), np.floor(edge))
    direction = np.where(a < 0, -1, 1).astype(np.int8)
    # a = 0: the output does not depend on acc; saturate to always-1 (c ≥ 0) or always-0.
    thr = np.where(a == 0, np.where(c >= 0, lo - 1, hi + 1), thr)
    thr = np.clip(thr, lo - 1, hi + 1)
    return thr.astype(np.int32), direction


def check_fold(d, thr, direction, lo, hi):
    """Brute force: the folded bits equal the float64 layer for every acc in [lo, hi]."""
    values = np.arange(lo, hi + 1, dtype=np.int64)
    m = len(thr)
    # σ over the whole layer at once, as the model computes it (not per block: see bn_sigma).
    d = {**d, "bn": {**d["bn"], "sigma": bn_sigma(d["bn"])}}
    step = max(1, _CHECK_BLOCK // len(values))
    for start in range(0, m, step):
        ch = slice(start, min(m, start + step))
        sub = {"alpha": d["alpha"][ch], "bias": d["bias"][ch],
               "bn": {k: (v[ch] if isinstance(v, np.ndarray) else v) for k, v in d["bn"].items()}}
        want = layer_scores(sub, values[:, None]) >= 0            # [values, channels]
        got = threshold_bits(values[:, None], thr[None, ch], direction[None, ch])
        bad = np.argwhere(want != got)
        if bad.size:
            v, c = bad[0]
            channel = start + int(c)
            z = layer_scores(sub, values[v])[c]
            raise CompileError(
                f"layer '{d['name']}' channel {channel}: the folded threshold (T={int(thr[channel])}, "
                f"direction {int(direction[channel]):+d}) gives {bool(got[v, c]):d} at acc="
                f"{int(values[v])} but the float64 layer gives z={z!r}; the fold is wrong")


def _check_finite(d):
    for key, value in [("alpha", d["alpha"]), ("bias", d["bias"])] + \
            [(f"bn.{k}", v) for k, v in d["bn"].items()]:
        if not np.all(np.isfinite(value)):
            raise CompileError(f"layer '{d['name']}' field '{key}': holds NaN or infinity; "
                               f"the trained model is broken (retrain it)")
    if np.any(d["bn"]["var"] + d["bn"]["eps"] <= 0):
        raise CompileError(f"layer '{d['name']}' field 'bn.var': variance plus eps must be "
                           f"positive")


def deploy_class(d):
    """The layer type of deploy dict ``d`` (a dict without ``type`` is a dense layer)."""
    ltype = d.get("type", DenseLayer.type)
    cls = layer_class(ltype)
    if cls is None:
        raise CompileError(f"layer '{d.get('name')}' field 'type': unknown layer type {ltype!r} "
                           f"(known: {', '.join(LAYER_TYPES)})")
    return cls


def fold_layer(d, prev, position, count, input_bits):
    """One exported layer dict (the training deploy contract) after the folded layer ``prev``
    → its golden layer, thresholds folded and proven (its type builds it: ``from_deploy``)."""
    cls = deploy_class(d)
    if issubclass(cls, WeightedLayer):
        _check_finite(d)
    layer = cls.from_deploy(d, prev, first=position == 0, last=position == count - 1,
                            input_bits=input_bits)
    if layer.output == "threshold":
        lo, hi = layer.acc_range()
        layer.threshold, layer.direction = fold_thresholds(d, lo, hi)
        check_fold(d, layer.threshold, layer.direction, lo, hi)
    return layer


def head_from(d):
    """The host-side head of the raw last layer, in the model's own operation order."""
    bn = d["bn"]
    return Head(alpha=d["alpha"].astype(np.float64), bias=d["bias"].astype(np.float64),
                mean=bn["mean"].astype(np.float64), sigma=bn_sigma(bn),
                gamma=bn["gamma"].astype(np.float64), beta=bn["beta"].astype(np.float64))


def compile_layers(exported, input_bits, max_value, name="model", meta=None):
    """Fold a list of exported layer dicts (input to output) into a :class:`CompiledModel`."""
    if not exported:
        raise CompileError("the model has no layers")
    if not 1 <= input_bits <= 8:
        raise CompileError(f"input bits must be 1..8, got {input_bits}")
    layers = []
    for i, d in enumerate(exported):
        layers.append(fold_layer(d, layers[-1] if layers else None, i, len(exported), input_bits))
    for prev, layer in zip(layers, layers[1:]):
        if layer.in_features != prev.out_features:
            raise CompileError(f"layer '{layer.name}' takes {layer.in_features} inputs but "
                               f"'{prev.name}' gives {prev.out_features}")
    return CompiledModel(name=name, input=InputSpec(layers[0].in_features, input_bits,
                                                    float(max_value)),
                         layers=layers, head=head_from(exported[-1]), meta=meta or {})


def compile_checkpoint(path):
    """Load a training checkpoint (``model.pt``) and compile it. Returns (CompiledModel, torch model, meta)."""
    from xnorflow.sw.train.checkpoint import load_checkpoint
    from xnorflow.sw.train.models import NotDeployableError

    model, meta = load_checkpoint(path)
    try:
        exported = model.deploy_layers()
    except NotDeployableError as e:
        raise CompileError(f"{path}: {e}") from None
    info = {k: meta.get(k) for k in ("method", "dataset", "hidden", "input_bits")}
    if (meta.get("method_config") or {}).get("arch"):
        info["arch"] = meta["method_config"]["arch"]
    info["checkpoint"] = str(path)
    compiled = compile_layers(exported, int(meta["input_bits"]), float(meta["max_value"]),
                              name=f"{meta.get('method')}-{meta.get('dataset')}", meta=info)
    return compiled, model, meta


def check_fit(model, array):
    """Memory use per layer on an accelerator configuration; CompileError when it does not fit.

    Returns ``{"config", "layers": [{name, weight_words, threshold_entries, activation_words}],
    "max_batch"}``; words are per row bank (weights, thresholds) or per column bank and sample
    (activations), the units the configuration's depths are given in.
    """
    try:
        config = array if isinstance(array, ArrayConfig) else ArrayConfig.parse(array)
    except ValueError as e:
        raise CompileError(f"--array {array!r}: {e}") from None
    try:
        build_program(model.layers, config)
        batch = max_batch(model.layers, config)
    except ProgramError as e:
        raise CompileError(f"the model does not fit {config.format()}: {e}") from None
    rows = [{"name": layer.name, **layer.overlay_memory(config)._asdict()}
            for layer in model.layers]
    return {"config": config.format(), "layers": rows,
            "weight_words_used": sum(r["weight_words"] for r in rows), "w_depth": config.w_depth,
            "threshold_entries_used": sum(r["threshold_entries"] for r in rows),
            "thr_depth": config.thr_depth, "max_batch": batch}


# ---------------------------------------------------------------- command line

def add_parser(sub):
    p = sub.add_parser("compile", help="fold a trained checkpoint into an accelerator model (.xnf)",
                       description="Fold batch norm, scales and sign into integer thresholds, "
                                   "pack the weights, prove the fold exact by brute force and "
                                   "write the model file.")
    p.add_argument("checkpoint", help="a checkpoint written by `xnorflow train` (DIR/model.pt)")
    p.add_argument("-o", "--out", required=True, type=output_file,
                   help="the .xnf file to write (its directory must exist)")
    p.add_argument("--array", default=None,
                   help="accelerator configuration PxQxK to check the model fits (and report "
                        "memory use per layer; default: no check)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run_compile)


def run_compile(args):

    compiled, _, _ = compile_checkpoint(args.checkpoint)
    report = {"out": args.out, "name": compiled.name,
              "layers": [{"name": lyr.name, "in": lyr.in_features, "out": lyr.out_features,
                          "input": f"{lyr.input_kind}{lyr.input_bits}", "output": lyr.output}
                         for lyr in compiled.layers]}
    if args.array:
        report["capacity"] = check_fit(compiled, args.array)
    xnf.save(compiled, args.out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"compiled {args.checkpoint} → {args.out}: {len(compiled.layers)} layers, every "
              f"threshold checked by brute force", file=sys.stderr)
        if args.array:
            cap = report["capacity"]
            print(f"fits {cap['config']}: weights {cap['weight_words_used']}/{cap['w_depth']} "
                  f"words per row bank, thresholds {cap['threshold_entries_used']}/"
                  f"{cap['thr_depth']} entries, up to {cap['max_batch']} inputs per run",
                  file=sys.stderr)
    return 0
