"""``import_onnx``: a QONNX binary network folded into the contracts of ``xnorflow compile``.

The graph (:mod:`xnorflow.sw.qonnx.graph`) is one chain: pre-processing and input quantizer, then per
layer a ``MatMul``/``Gemm``/``Conv`` with binary weights followed by element-wise nodes
(``BatchNormalization``, ``Mul``/``Add``/``Sub``/``Div``, a 1-bit ``Quant``/``BipolarQuant``/
one-threshold ``MultiThreshold``), at most one 2×2 ``MaxPool`` after a conv, and the layout
nodes before the next layer (``Pad``, ``Reshape``/``Flatten``); the last layer's element-wise
nodes are the host head.

Nothing is emulated: every number is read off qonnx's executor (:mod:`xnorflow.sw.qonnx.execute`).

* **Input.** The pre-processing and input quantizer run on every raw value ``0..ceil(S)``
  (``x = raw/S``, :mod:`xnorflow.sw.qonnx.inputs`); their output must be equally spaced levels
  ``q = a + b·u``, and an ``M`` must exist with ``quantize_inputs(raw, k, M) = u`` for all.
* **Accumulators.** With weights ``±s_c`` and inputs ``a + b·u`` (first layer) or the two
  levels ``l0 < l1`` of the previous quantizer (``l0`` = bit 0 = xnorflow's −1), the ONNX
  accumulator is exactly ``G_c·acc + O_c`` for xnorflow's integer ``acc`` (``G = s·b``,
  ``O = s·a·ΣW`` or ``G = s(l1−l0)/2``, ``O = s(l1+l0)/2·ΣW``) — provided every partial sum
  is exact in float32, which is checked (power-of-two scales), and padding is the bit-0 value.
* **Thresholds, proven.** The element-wise chain runs on ``G_c·acc + O_c`` for every
  ``acc`` from one below to one above the accumulator's range and every channel; its output
  bits must be monotone in ``acc``: the first (or last) 1 is the threshold, the direction
  its slope. The derived ``(T, d)`` are then checked against those bits with the threshold
  unit itself (:func:`xnorflow.sw.layers.weighted.threshold_bits`). A max-pool is exact when the
  threshold is taken at the window's largest ``acc`` (xnorflow's pool); a channel whose
  part before the pool decreases is flipped (its weights negated) to make it so.
* **Head.** The last layer's element-wise nodes become :class:`xnorflow.sw.golden.Head` fields in
  their own order where they fit (``Mul, Add, Sub, Div, Mul, Add`` or a BatchNormalization),
  else one affine. Its float64 scores are compared with the executor's over every
  accumulator value: identical scores, or at least the same argmax for every pair of
  classes and values; otherwise the import reports the pairs where they differ.
"""
import json
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from xnorflow.sw import bits as B
from xnorflow.sw.golden import CompiledModel, Head, InputSpec
from xnorflow.sw.layers.base import CompileError
from xnorflow.sw.layers.conv import ConvLayer, MaxPoolLayer
from xnorflow.sw.layers.dense import DenseLayer
from xnorflow.sw.layers.weighted import threshold_bits
from xnorflow.sw.qonnx import require_extra
from xnorflow.sw.qonnx.graph import ELEMENTWISE, LAYOUT, WEIGHTED, UnsupportedModelError, load_graph
from xnorflow.sw.qonnx.inputs import DEFAULT_INPUT_SCALE, find_max_value, raw_domain, scaled

QUANTIZERS = ("Quant", "BipolarQuant", "MultiThreshold")
_FLOAT32_MANTISSA = 24


@dataclass(eq=False)
class LayerTrace:
    """Where an xnorflow layer's numbers are in the ONNX graph (for outside comparisons).

    acc_tensor : the weighted node's output, ``gain·acc + offset`` per channel (``acc``
        negated on ``flip`` channels), or None for a pool.
    bits_tensor : the tensor whose values are this layer's output bits (``high`` is bit 1),
        or None when the graph has no such tensor (a conv pooled before its quantizer).
    image : the ONNX tensors are NCHW images (xnorflow's are HWC).
    """

    layer: str
    acc_tensor: str | None = None
    gain: np.ndarray | None = None
    offset: np.ndarray | None = None
    flip: np.ndarray | None = None
    bits_tensor: str | None = None
    high: float | None = None
    image: bool = False


@dataclass(eq=False)
class Imported:
    """The result of an import: the model, where its numbers are in the graph, the input
    convention and the head's check."""

    model: CompiledModel
    trace: list
    input_name: str
    input_shape: tuple
    input_scale: float
    head_check: dict


def import_onnx(path, input_bits=None, input_scale=None):
    """Read a QONNX model into a :class:`~xnorflow.sw.golden.CompiledModel` (see the module docstring).

    input_bits : k of xnorflow's input (default: the input quantizer's bit width; required
        when the graph has no input quantizer).
    input_scale : S, the graph's input is ``raw / S`` (default: the exporter's recorded scale,
        else 255).
    Raises :class:`~xnorflow.sw.qonnx.graph.UnsupportedModelError` or CompileError naming the node.
    """
    return import_details(path, input_bits, input_scale).model


def import_details(path, input_bits=None, input_scale=None):
    """:func:`import_onnx` with the trace and checks (:class:`Imported`)."""
    require_extra()
    graph = load_graph(path)
    if input_scale is None:
        recorded = graph.metadata.get("xnorflow.input_scale", DEFAULT_INPUT_SCALE)
        try:
            input_scale = float(recorded)
        except ValueError:
            input_scale = float("nan")
        if not 1.0 <= input_scale <= 65535.0:
            raise UnsupportedModelError(f"{path}: metadata 'xnorflow.input_scale' is "
                                        f"{recorded!r}, not a number in [1, 65535]; give "
                                        f"--input-scale")
    return _Importer(graph, input_bits, float(input_scale)).run()


# ---------------------------------------------------------------- small helpers

def _two_adic(value):
    """The exponent e of the lowest set bit of a dyadic ``value`` (value = odd · 2^e)."""
    f = Fraction(float(value))
    num, den = abs(f.numerator), f.denominator
    return (num & -num).bit_length() - 1 - (den.bit_length() - 1)


def _monotone(values):
    """Per column of ``values`` [V, C]: +1 nondecreasing, −1 nonincreasing (not constant),
    0 constant, None for neither."""
    diff = np.diff(values, axis=0)
    up = (diff >= 0).all(axis=0)
    down = (diff <= 0).all(axis=0)
    out = np.where(up & down, 0, np.where(up, 1, -1)).astype(object)
    out[~(up | down)] = None
    return out


def _unique_names(names):
    seen, out = {}, []
    for n in names:
        base = n or "layer"
        name, i = base, 1
        while name in seen:
            i += 1
            name = f"{base}_{i}"
        seen[name] = True
        out.append(name)
    return out


def _per_channel(value, channels):
    """A constant broadcast to float64 [channels] (per-tensor or per-channel)."""
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size not in (1, channels):
        raise ValueError(f"has {v.size} values for {channels} channels")
    return np.broadcast_to(v, (channels,)).copy()


def _all_equal(value):
    v = np.asarray(value).reshape(-1)
    return v.size == 0 or bool((v == v[0]).all())


class _Importer:
    """One import: walks the graph's segments and builds the layers."""

    def __init__(self, graph, input_bits, input_scale):
        self.g, self.input_bits, self.S = graph, input_bits, input_scale
        self.layers, self.trace = [], []

    # -- the whole graph --------------------------------------------------------------------

    def run(self):
        nodes = self.g.nodes
        weighted = [i for i, n in enumerate(nodes) if n.op in WEIGHTED]
        named = [n for n in nodes if n.op in WEIGHTED or n.op == "MaxPool"]
        self.names = dict(zip(map(id, named), _unique_names(
            [n.proto.name.replace("/", "_").strip("_") or f"{n.op.lower()}{j}"
             for j, n in enumerate(named)])))
        state = self.input_segment(nodes[:weighted[0]])
        for j, i in enumerate(weighted):
            end = weighted[j + 1] if j + 1 < len(weighted) else len(nodes)
            last = j == len(weighted) - 1
            state = self.layer(nodes[i], nodes[i + 1:end], self.names[id(nodes[i])], state, last)
        head, check = state
        model = self.model(head)
        return Imported(model, self.trace, self.g.input_name, self.g.input_shape, self.S, check)

    def metadata(self, key, kind):
        """JSON metadata an xnorflow export wrote (``kind``: its type), or None."""
        text = self.g.metadata.get(key)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, kind):
            raise UnsupportedModelError(f"{self.g.path}: metadata '{key}' is not a JSON "
                                        f"{kind.__name__}; remove it or export again")
        return value

    def model(self, head):
        meta = self.metadata("xnorflow.meta", dict)
        name = self.g.metadata.get("xnorflow.name") or \
            os.path.splitext(os.path.basename(self.g.path))[0]
        if meta is None:
            meta = {"imported_from": os.path.basename(self.g.path), "input_scale": self.S}
            if self.g.proto.producer_name:
                meta["producer"] = " ".join(filter(None, (self.g.proto.producer_name,
                                                           self.g.proto.producer_version)))
        extras = self.metadata("xnorflow.layer_extra", list)
        if extras is not None:
            for layer, extra in zip(self.layers, extras):
                layer.extra = extra if isinstance(extra, dict) else {}
        first = self.layers[0]
        spec = InputSpec(first.in_features, self.input_k, float(self.max_value))
        return CompiledModel(name=name, input=spec, layers=self.layers, head=head, meta=meta)

    # -- input: pre-processing and input quantizer --------------------------------------------

    def input_segment(self, nodes):
        """Levels of the first layer's inputs from the pre-processing; returns the state the
        first layer starts from."""
        value = []
        pad = None
        for dn in nodes:
            if dn.op in ("Identity",):
                continue
            if pad is not None:
                self.g.refuse(dn, "follows the input padding",
                              "a Pad must come right before the first Conv")
            if dn.op in ELEMENTWISE:
                if dn.op in ("BatchNormalization", "Cast"):
                    self.g.refuse(dn, "in the input pre-processing",
                                  "xnorflow's input pre-processing is scalar Mul/Add/Sub/Div and "
                                  "an input quantizer")
                self.check_scalar_constants(dn)
                value.append(dn)
            elif dn.op == "Pad":
                pad = dn
            elif dn.op == "MaxPool":
                self.g.refuse(dn, "before the first layer", "a max-pool must follow a conv")
        raw = raw_domain(self.S)
        x = scaled(raw, self.S).reshape(-1, 1)
        q = self.run_reduced(value, x) if value else x
        levels, k = self.input_levels(value, q)
        u = self.level_index(q.reshape(-1), levels, value[-1] if value else None)
        self.input_k = k
        m = find_max_value(u, k, self.S)
        if m is None:
            where = f"node '{value[-1].name}' ({value[-1].op})" if value else "the graph input"
            self.g.refuse(value[-1] if value else self.g.nodes[0],
                          f"the input quantisation (levels {self.level_sample(raw, u)} for raw "
                          f"values 0..{raw[-1]}, x = raw/{self.S:g}) is not xnorflow's k-bit "
                          f"input quantisation clip(floor(raw/M·{(1 << k) - 1} + 0.5)) for any "
                          f"M (set at {where})",
                          "quantize the input with round-half-up levels of raw/max_value "
                          "(e.g. MultiThreshold), or give --input-scale if the input is not "
                          f"raw/{self.S:g}")
        self.max_value = m
        a = float(levels[0])
        b = float(levels[1]) - a if len(levels) > 1 else 1.0
        if not all(a + b * i == float(lv) for i, lv in enumerate(levels)):
            self.g.refuse(value[-1], f"its levels {levels[:4].tolist()}… are not equally spaced",
                          "xnorflow's first layer multiplies by integer levels")
        return {"kind": "unsigned", "a": a, "b": b, "values": levels, "bits": k,
                "layout": self.input_layout(nodes), "pad": pad, "next": None}

    def input_layout(self, nodes):
        """The data layout the first layer reads: ``("image", C, H, W)`` or ``("vector", N,
        (C, H, W) or None)`` (a vector flattened from an NCHW image, CHW order)."""
        shape = self.g.input_shape
        image = tuple(shape[1:]) if len(shape) == 4 else None
        flattened = any(dn.op in LAYOUT and len(dn.out_shape) == 2 and len(dn.in_shape) == 4
                        for dn in nodes)
        if image is not None and not flattened:
            return ("image",) + image
        n = int(np.prod(shape[1:]))
        return ("vector", n, image)

    def check_scalar_constants(self, dn):
        for i, c in dn.consts.items():
            if dn.op == "MultiThreshold" and i == 1:
                ok = all(_all_equal(c[:, t]) for t in range(c.shape[1])) if np.ndim(c) == 2 \
                    else False
            else:
                ok = _all_equal(c)
            if not ok:
                self.g.refuse(dn, f"constant input {i} differs between pixels or channels",
                              "xnorflow quantizes every input pixel alike: the pre-processing "
                              "constants must be scalars")

    def run_reduced(self, nodes, x):
        """Run pre-processing ``nodes`` on the probe column ``x`` [V, 1] with their constants
        reduced to scalars (they are all-equal, checked)."""
        consts = {}
        for dn in nodes:
            for i, c in dn.consts.items():
                name = dn.proto.input[i]
                c = np.asarray(c)
                if dn.op == "MultiThreshold" and i == 1:
                    consts[name] = c[:1].reshape(1, -1)
                else:
                    consts[name] = c.reshape(-1)[:1].reshape(())
        feed = nodes[0].data_input
        return self.g.run([dn.proto for dn in nodes], {feed: x.astype(np.float32)},
                          [nodes[-1].output], consts=consts)[0]

    def input_levels(self, value, q):
        """(levels float32 [L] indexed by xnorflow's u, k) of the input quantizer."""
        quant = next((dn for dn in reversed(value) if dn.op in QUANTIZERS), None)
        if quant is None:
            return self.levels_without_quantizer(q)
        levels = self.quantizer_levels(quant)
        after = value[value.index(quant) + 1:]
        if after:  # element-wise nodes after the quantizer map its levels on
            levels = self.run_reduced(after, levels.reshape(-1, 1)).reshape(-1)
        if len(np.unique(levels)) != len(levels):
            self.g.refuse(quant, "two input levels coincide after the pre-processing")
        natural = max(1, int(np.ceil(np.log2(len(levels)))))
        k = natural if self.input_bits is None else self.input_bits
        if k < natural:
            self.g.refuse(quant, f"has {len(levels)} levels, more than --input-bits {k} hold")
        if k > 8:
            self.g.refuse(quant, f"has {len(levels)} levels ({k} bits)",
                          "xnorflow's input is at most 8 bits")
        return levels, k

    def levels_without_quantizer(self, q):
        """Levels of a graph whose first layer reads the pre-processed input directly: the
        values must already be ``a + b·u`` for integers ``u < 2^k`` (k from --input-bits)."""
        node = self.g.nodes[0]
        if self.input_bits is None:
            self.g.refuse(node, "the graph has no input quantizer before its first layer",
                          "give --input-bits K (the input must then be K-bit integer levels "
                          "of raw/S)")
        k = self.input_bits
        values = np.unique(q.reshape(-1).astype(np.float64))
        a = values[0]
        b = float(np.diff(values).min()) if len(values) > 1 else 1.0
        u = (values - a) / b
        if not np.array_equal(u, np.round(u)) or u.max() > (1 << k) - 1:
            self.g.refuse(node, f"the input values {values[:4].tolist()}… are not {k}-bit "
                                f"integer levels", "quantize the input in the graph")
        levels = (a + b * np.arange(1 << k)).astype(np.float32)
        return levels, k

    def level_index(self, q, levels, node):
        """u for every value of ``q`` (its index in ``levels``)."""
        index = {float(v): i for i, v in enumerate(levels)}
        out = np.empty(len(q), dtype=np.int64)
        for i, v in enumerate(q.tolist()):
            if v not in index:
                self.g.refuse(node or self.g.nodes[0], f"gives {v!r}, which is none of its "
                                                       f"levels")
            out[i] = index[v]
        return out

    @staticmethod
    def level_sample(raw, u):
        steps = [f"{int(r)}→{int(v)}" for r, v in zip(raw[:6], u[:6])]
        return ", ".join(steps) + ("…" if len(raw) > 6 else "")

    def quantizer_levels(self, dn):
        """float32 levels of a quantizer node, in the order of its integer output (per-tensor
        parameters; the arithmetic of qonnx's implementations)."""
        from qonnx.custom_op.general.quant import max_int, min_int
        for i, c in dn.consts.items():
            if not (dn.op == "MultiThreshold" and i == 1) and not _all_equal(c):
                self.g.refuse(dn, f"input {i} differs between channels",
                              "xnorflow needs one quantizer for every channel (per-tensor "
                              "scale and zero point)")
        if dn.op == "BipolarQuant":
            s = np.float32(np.asarray(dn.const(1)).reshape(-1)[0])
            return np.array([-1, 1], dtype=np.float32) * s
        if dn.op == "Quant":
            s, zp, bits = (np.asarray(dn.const(i)).reshape(-1)[0] for i in (1, 2, 3))
            signed, narrow = int(dn.attrs.get("signed", 1)), int(dn.attrs.get("narrow", 0))
            if bits == 1 and signed:
                ints = np.array([-1, 1], dtype=np.float32)
            else:
                ints = np.arange(min_int(signed, narrow, int(bits)),
                                 max_int(signed, narrow, int(bits)) + 1).astype(np.float32)
            return ((ints - np.float32(zp)) * np.float32(s)).astype(np.float32)
        t = np.asarray(dn.const(1))
        if t.ndim != 2:
            self.g.refuse(dn, f"thresholds of shape {list(t.shape)}",
                          "MultiThreshold thresholds are [channels, steps]")
        layout = dn.attrs.get("data_layout", "")
        if layout not in ("", "NC", "NCHW"):
            self.g.refuse(dn, f"attribute data_layout={layout}",
                          "xnorflow reads channels-first (NC, NCHW) tensors")
        scale, bias = float(dn.attrs.get("out_scale", 1.0)), float(dn.attrs.get("out_bias", 0.0))
        count = np.arange(t.shape[1] + 1, dtype=np.float32)
        return (scale * count + bias).astype(np.float32)

    # -- one layer --------------------------------------------------------------------------

    def layer(self, node, post, name, state, last):
        """Fold weighted ``node`` and its ``post`` nodes; returns the next layer's state (or
        ``(head, head_check)`` after the last)."""
        first = state["kind"] == "unsigned"
        geometry = self.geometry(node, state)
        signs, scales = self.binary_weights(node, geometry)
        self.check_bias(node)
        inputs = state["values"]
        self.check_exact_sum(node, scales, inputs, signs.shape[1])
        total = signs.sum(axis=1).astype(np.int64)
        gain, offset = self.acc_map(state, scales, total)
        kind = "unsigned" if first else "binary"
        k = state["bits"] if first else 1
        value, pool, tail = self.split_post(node, post, geometry, last)
        if last:
            if geometry["conv"]:
                self.g.refuse(node, "the last weighted layer is a Conv",
                              "xnorflow's classifier is a dense layer (MatMul or Gemm) whose "
                              "raw integers go to the host head")
            layer = DenseLayer(name=name, in_features=geometry["n"], out_features=len(signs),
                               input_kind=kind, input_bits=k, weights=B.pack_bits(signs > 0),
                               output="raw")
            self.layers.append(layer)
            self.trace.append(LayerTrace(name, node.output, gain.astype(np.float64),
                                         offset.astype(np.float64), np.zeros(len(signs), bool)))
            return self.head(node, value, layer, gain, offset)
        return self.hidden(node, value, pool, tail, name, geometry, signs, gain, offset, kind, k,
                           state)

    def geometry(self, node, state):
        """Shape of the layer: dense ``n`` (and the CHW→HWC order of a flattened image) or conv
        (C, H, W); checks padding against xnorflow's conv contract."""
        layout = state["layout"]
        pad = state["pad"]
        if node.op != "Conv":
            if pad is not None:
                self.g.refuse(pad, "pads the input of a dense layer",
                              "a Pad must come right before a Conv")
            if layout[0] == "image":
                self.g.refuse(node, "reads an image", "flatten it first (Reshape/Flatten)")
            return {"conv": False, "n": layout[1], "chw": layout[2]}
        if layout[0] != "image":
            self.g.refuse(node, "a Conv reads a flattened vector",
                          "xnorflow's convolutions read the image of the layer before")
        _, c, h, w = (None,) + layout[1:]
        # One pixel of padding, by a Pad node or the Conv's pads (the graph walker checked
        # which); the Conv's own padding is the value 0.
        value = self.pad_value(pad) if pad is not None else np.float32(0.0)
        bit0 = np.float32(state["values"][0])
        if np.float32(value) != bit0:
            what = "input level 0" if state["kind"] == "unsigned" else "the bit-0 level (−1)"
            where = pad if pad is not None else node
            self.g.refuse(where, f"pads with {float(value)!r}, but {what} of this layer's input "
                                 f"is {float(bit0)!r}",
                          "xnorflow pads the first conv with input level 0 and later convs with "
                          "bit 0 (−1): pad with that value (e.g. torch.nn.functional.pad(x, "
                          "(1,1,1,1), value=-1.0) before a conv with padding=0)")
        return {"conv": True, "c": c, "h": h, "w": w, "n": c * h * w}

    def pad_value(self, pad):
        if len(pad.proto.input) > 2 and pad.proto.input[2]:
            v = pad.const(2)
            if v is None:
                self.g.refuse(pad, "the padding value is not a constant")
            return np.float32(np.asarray(v).reshape(-1)[0])
        return np.float32(pad.attrs.get("value", 0.0))

    def binary_weights(self, node, geometry):
        """(signs int8 [M, N] in xnorflow's order, scales float64 [M]); refuses non-binary
        weights."""
        w = np.asarray(node.const(1), dtype=np.float32)
        if node.op == "MatMul":
            w = w.T
        elif node.op == "Gemm" and not node.attrs.get("transB", 0):
            w = w.T
        if node.op == "Conv":
            w = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)  # tap-major (ky, kx, c)
        elif geometry.get("chw") is not None:
            c, h, wd = geometry["chw"]
            hwc_from_chw = np.arange(c * h * wd).reshape(c, h, wd).transpose(1, 2, 0).reshape(-1)
            w = w[:, hwc_from_chw]
        mag = np.abs(w)
        scales = mag[:, 0].astype(np.float64)
        bad = np.flatnonzero((mag != mag[:, :1]).any(axis=1) | (scales == 0))
        if bad.size:
            c = int(bad[0])
            seen = np.unique(w[c])[:4].tolist()
            self.g.refuse(node, f"its weights are not binary: output channel {c} has values "
                                f"{seen}{'…' if len(np.unique(w[c])) > 4 else ''}",
                          "quantize the weights to ±scale (BipolarQuant, Brevitas "
                          "weight_bit_width=1)")
        return np.where(w > 0, 1, -1).astype(np.int8), scales

    def check_bias(self, node):
        index = 2
        if len(node.proto.input) > index and node.proto.input[index]:
            if np.any(np.asarray(node.const(index)) != 0):
                self.g.refuse(node, "has a non-zero bias input",
                              "onnxruntime adds a Gemm/Conv bias in an order it does not fix; "
                              "export the bias as a separate Add node (or fold it into a "
                              "BatchNormalization)")

    def check_exact_sum(self, node, scales, inputs, n):
        """Every partial sum of the float32 dot product must be exact: then the ONNX
        accumulator is an exact function of xnorflow's integer, whatever order onnxruntime
        sums in. True when all terms are multiples of one power of two and the largest sum
        stays below 2^24 of them."""
        terms = [float(s) * float(v) for s in np.unique(scales) for v in np.unique(inputs)
                 if v != 0]
        if not terms:
            return
        low = min(_two_adic(t) for t in terms)
        bound = n * max(abs(t) for t in terms)
        if bound >= 2.0 ** (_FLOAT32_MANTISSA + low):
            self.g.refuse(node, f"its float32 dot product is not exact integer arithmetic (weight "
                                f"scales {np.unique(scales)[:3].tolist()}, input levels "
                                f"{np.unique(inputs)[:3].tolist()}: sums of {n} terms need more "
                                f"than 24 bits)",
                          "use power-of-two weight and activation scales (Brevitas "
                          "scaling_const=1 or restrict_scaling_type=POWER_OF_TWO)")

    @staticmethod
    def acc_map(state, scales, total):
        """(gain, offset) per channel as exact fractions: ONNX accumulator = gain·acc + offset."""
        if state["kind"] == "unsigned":
            g = Fraction(state["b"])
            o = Fraction(state["a"])
        else:
            l0, l1 = (Fraction(float(v)) for v in state["values"])
            g, o = (l1 - l0) / 2, (l1 + l0) / 2
        gain = np.array([Fraction(float(s)) * g for s in scales], dtype=object)
        offset = np.array([Fraction(float(s)) * o * int(t) for s, t in zip(scales, total)],
                          dtype=object)
        return gain, offset

    def split_post(self, node, post, geometry, last):
        """(element-wise nodes, (pool node, its position among them) or None, layout tail)."""
        value, pool, tail = [], None, []
        for dn in post:
            if dn.op == "Identity":
                continue
            if dn.op in ELEMENTWISE:
                if tail:
                    self.g.refuse(dn, f"follows the layout node '{tail[-1].name}'",
                                  "put element-wise nodes before Reshape/Flatten/Pad")
                if dn.op == "Cast" and not last:
                    self.g.refuse(dn, "casts inside a hidden layer",
                                  "Cast is only imported in the head after the last layer")
                value.append(dn)
            elif dn.op == "MaxPool":
                if not geometry["conv"] or last:
                    self.g.refuse(dn, "does not follow a conv",
                                  "xnorflow max-pools the output of a conv")
                if pool is not None:
                    self.g.refuse(dn, "a second max-pool after one conv",
                                  "xnorflow pools a conv's output once")
                if tail:
                    self.g.refuse(dn, f"follows the layout node '{tail[-1].name}'",
                                  "pool before padding or flattening")
                pool = (dn, len(value))
            else:
                if last:
                    self.g.refuse(dn, "after the last layer",
                                  "the last layer's scores leave the graph as they are")
                tail.append(dn)
        return value, pool, tail

    # -- hidden layer: thresholds -------------------------------------------------------------

    def hidden(self, node, value, pool, tail, name, geometry, signs, gain, offset, kind, k, state):
        if not value or value[-1].op not in QUANTIZERS:
            where = value[-1] if value else node
            self.g.refuse(where, "a hidden layer must end in a 1-bit quantizer",
                          "quantize the activations with BipolarQuant, a 1-bit Quant or a "
                          "one-threshold MultiThreshold after the layer's BatchNormalization")
        quant = value[-1]
        levels = self.quantizer_levels(quant)
        if len(levels) != 2:
            self.g.refuse(quant, f"has {len(levels)} output levels",
                          "xnorflow's hidden activations are 1 bit (BipolarQuant, a 1-bit Quant, "
                          "a one-threshold MultiThreshold)")
        low, high = sorted(float(v) for v in levels)
        for dn in value[:-1]:
            self.check_channel_constants(dn, len(signs))
        lo, hi = (-signs.shape[1] * ((1 << k) - 1), signs.shape[1] * ((1 << k) - 1))
        acc = np.arange(lo - 1, hi + 2, dtype=np.int64)
        probe = self.acc_probe(node, gain, offset, acc, geometry["conv"])
        out, before_quant, flip = self.run_chain(value, pool, probe)
        bits = self.bits_of(quant, out, low, high)
        falling = quant.op == "MultiThreshold" and float(quant.attrs.get("out_scale", 1.0)) < 0
        orient = -1 if falling else 1
        flipped_bits = np.where(flip[None, :], bits[::-1], bits)
        flipped_pre = np.where(flip[None, :], before_quant[::-1], before_quant)
        threshold, direction = self.fold(quant, acc, flipped_bits, flipped_pre, orient)
        self.prove(name, acc, flipped_bits, threshold, direction)
        signs = np.where(flip[:, None], -signs, signs)
        layer = self.weighted_layer(node, name, geometry, signs, kind, k, threshold, direction)
        self.layers.append(layer)
        trace = LayerTrace(name, node.output, gain.astype(np.float64), offset.astype(np.float64),
                           flip, None, high, geometry["conv"])
        self.trace.append(trace)
        bits_tensor = quant.output
        if pool is not None:
            pool_node, position = pool
            pool_name = self.names[id(pool_node)]
            if position == len(value):   # pooled after the quantizer: the conv's bits exist
                trace.bits_tensor = quant.output
                bits_tensor = pool_node.output
            self.layers.append(MaxPoolLayer(name=pool_name, height=geometry["h"],
                                            width=geometry["w"], channels=len(signs),
                                            direction=direction.copy()))
            self.trace.append(LayerTrace(pool_name, bits_tensor=bits_tensor, high=high, image=True))
        else:
            trace.bits_tensor = bits_tensor
        return self.next_state(low, high, layer, pool, tail)

    def check_channel_constants(self, dn, channels):
        """Constants of a hidden chain must be per channel (one value per output channel)."""
        rank = len(dn.in_shape)
        for i, c in dn.consts.items():
            if dn.op == "MultiThreshold" and i == 1:
                continue
            shape = (1,) * (rank - np.ndim(c)) + tuple(np.shape(c))
            if dn.op == "BatchNormalization":
                continue
            if any(d != 1 for j, d in enumerate(shape) if j != 1):
                self.g.refuse(dn, f"constant input {i} of shape {list(np.shape(c))} varies over "
                                  f"pixels", "xnorflow's thresholds are per output channel")

    def acc_probe(self, node, gain, offset, acc, image):
        """float32 probe [V, C(, 1, 1)]: ``gain_c·acc_v + offset_c``, exact (checked)."""
        den = max([g.denominator for g in gain] + [o.denominator for o in offset])  # a power of 2
        g_int = [int(g * den) for g in gain]
        o_int = [int(o * den) for o in offset]
        bound = int(np.abs(acc).max()) * max(map(abs, g_int)) + max(map(abs, o_int))
        if bound >= 1 << 53:
            self.g.refuse(node, "its accumulator values need more than 53 bits",
                          "use power-of-two scales of moderate size")
        # exact: integers below 2^53 in float64, scaled by a power of two
        exact = acc[:, None].astype(np.int64) * np.array(g_int, dtype=np.int64)[None, :] + \
            np.array(o_int, dtype=np.int64)[None, :]
        values = exact.astype(np.float64) * (1.0 / den)
        as32 = values.astype(np.float32)
        if not np.array_equal(as32.astype(np.float64), values):
            self.g.refuse(node, "its accumulator values are not exact in float32",
                          "use power-of-two scales")
        return as32.reshape(*as32.shape, 1, 1) if image else as32

    def run_chain(self, value, pool, probe):
        """Run the element-wise chain (split at the pool) on the probe.

        Returns (output [V, C], the quantizer's input [V, C], flip [C] bool): a channel is
        flipped when the part before the pool decreases in acc, so that the pooled bit is the
        threshold at the window's largest (flipped) accumulator, xnorflow's pool.
        """
        nodes = [dn.proto for dn in value]
        quant_in = value[-1].data_input
        channels = probe.shape[1]
        flip = np.zeros(channels, dtype=bool)
        if pool is None:
            feeds = {value[0].data_input: probe}
            out, before = self.g.run(nodes, feeds, [value[-1].output, quant_in]) \
                if len(value) > 1 else (self.g.run(nodes, feeds, [value[-1].output])[0], probe)
            return self._flat(out), self._flat(before), flip
        pool_node, position = pool
        part1, part2 = nodes[:position], nodes[position:]
        if part1:
            wanted = [value[position - 1].output]
            if position == len(value):
                wanted.append(quant_in)
            got = self.g.run(part1, {value[0].data_input: probe}, wanted)
            pre_pool = got[0]
            before = got[1] if len(got) > 1 else None
        else:
            pre_pool, before = probe, None
        mono = _monotone(self._flat(pre_pool))
        bad = [c for c, m in enumerate(mono) if m is None]
        if bad:
            self.g.refuse(pool_node, f"channel {bad[0]}: the values it pools are not monotone in "
                                     f"the accumulator", "pool after a monotone chain")
        flip = np.array([m == -1 for m in mono])
        if part2:
            # the node after the pool reads the pool's output: feed it the pooled values
            feed = {value[position].data_input: pre_pool}
            wanted = [value[-1].output] + ([quant_in] if len(part2) > 1 else [])
            got = self.g.run(part2, feed, wanted)
            out = got[0]
            before = got[1] if len(got) > 1 else pre_pool
        else:
            out = pre_pool
        return self._flat(out), self._flat(before), flip

    @staticmethod
    def _flat(a):
        a = np.asarray(a)
        return a.reshape(a.shape[0], a.shape[1])

    def bits_of(self, quant, out, low, high):
        bad = ~np.isin(out, np.array([low, high], dtype=out.dtype))
        if bad.any():
            v, c = np.argwhere(bad)[0]
            self.g.refuse(quant, f"channel {c} gives {float(out[v, c])!r}, neither of its levels "
                                 f"{low!r}, {high!r}")
        return out == high

    def fold(self, quant, acc, bits, before, orient):
        """(threshold int32 [C], direction int8 [C]) from the bits over ``acc`` (extended by one
        value past each end of the range); a constant channel takes its direction from the
        quantizer's input, as the compiler's fold does."""
        lo, hi = int(acc[0]), int(acc[-1])
        mono_bits = _monotone(bits.astype(np.int8))
        mono_pre = _monotone(before)
        thr = np.empty(bits.shape[1], dtype=np.int64)
        direction = np.empty(bits.shape[1], dtype=np.int8)
        for c, m in enumerate(mono_bits):
            if m is None:
                v = int(acc[np.flatnonzero(np.diff(bits[:, c].astype(np.int8)))[0] + 1])
                self.g.refuse(quant, f"output channel {c} is not a threshold of the integer "
                                     f"accumulator (its bit changes more than once, e.g. at "
                                     f"acc={v})", "use a monotone activation chain")
            if m == 0:
                d = (mono_pre[c] if mono_pre[c] not in (None, 0) else 1) * orient
                ones = bool(bits[0, c])
                t = (lo if d > 0 else hi) if ones else (hi if d > 0 else lo)
            else:
                d = m
                ones_at = np.flatnonzero(bits[:, c])
                t = acc[ones_at[0]] if d > 0 else acc[ones_at[-1]]
            thr[c], direction[c] = t, d
        return thr.astype(np.int32), direction

    def prove(self, name, acc, bits, threshold, direction):
        """The threshold unit gives the executor's bit for every reachable accumulator value."""
        reach = slice(1, -1)
        got = threshold_bits(acc[reach, None], threshold[None, :], direction[None, :])
        bad = np.argwhere(got != bits[reach])
        if bad.size:
            v, c = bad[0]
            raise CompileError(f"layer '{name}' channel {c}: the folded threshold (T="
                               f"{int(threshold[c])}, direction {int(direction[c]):+d}) gives "
                               f"{bool(got[v, c]):d} at acc={int(acc[reach][v])} but the ONNX "
                               f"executor gives {bool(bits[reach][v, c]):d}")

    def weighted_layer(self, node, name, geometry, signs, kind, k, threshold, direction):
        packed = B.pack_bits(signs > 0)
        if geometry["conv"]:
            return ConvLayer(name=name, height=geometry["h"], width=geometry["w"],
                             in_channels=geometry["c"], out_channels=len(signs), input_kind=kind,
                             input_bits=k, weights=packed, output="threshold",
                             threshold=threshold, direction=direction)
        return DenseLayer(name=name, in_features=geometry["n"], out_features=len(signs),
                          input_kind=kind, input_bits=k, weights=packed, output="threshold",
                          threshold=threshold, direction=direction)

    def next_state(self, low, high, layer, pool, tail):
        """The state the next layer starts from: binary levels, layout, pending Pad."""
        values = np.array([low, high], dtype=np.float32)
        if layer.out_image is not None:
            h, w, c = layer.out_image
            if pool is not None:
                h, w = h // 2, w // 2
            layout = ("image", c, h, w)
        else:
            layout = ("vector", layer.out_features, None)
        pad = None
        for dn in tail:
            if dn.op == "Pad":
                if pad is not None or layout[0] != "image":
                    self.g.refuse(dn, "pads twice or pads a vector",
                                  "one Pad right before each Conv")
                pad = dn
            elif dn.op in LAYOUT:
                if pad is not None:
                    self.g.refuse(dn, "flattens a padded image", "pad only before a Conv")
                if layout[0] == "image" and len(dn.out_shape) == 2:
                    layout = ("vector", int(np.prod(layout[1:])), layout[1:])
        return {"kind": "binary", "values": values, "bits": 1, "layout": layout, "pad": pad}

    # -- last layer: the host head --------------------------------------------------------------

    def head(self, node, value, layer, gain, offset):
        """The host head from the last layer's element-wise nodes, and its check against the
        executor over every accumulator value."""
        classes = layer.out_features
        for dn in value:
            if dn.op in QUANTIZERS:
                self.g.refuse(dn, "quantizes the scores after the last layer",
                              "the last layer's integers go to the host head unquantized")
            self.check_channel_constants(dn, classes)
        ops = []
        g = np.array([float(v) for v in gain])
        o = np.array([float(v) for v in offset])
        if (g != 1).any():
            ops.append(("mul", g))
        if (o != 0).any():
            ops.append(("add", o))
        for dn in value:
            ops.extend(self.head_ops(dn, classes))
        head = self.head_in_order(ops, classes)
        lo, hi = layer.acc_range()
        acc = np.arange(lo, hi + 1, dtype=np.int64)
        probe = self.acc_probe(node, gain, offset, acc, False)
        if value:
            executor = self._flat(self.g.run([dn.proto for dn in value],
                                             {value[0].data_input: probe}, [value[-1].output])[0])
        else:
            executor = probe
        return head, head_check(head, acc, executor)

    def head_ops(self, dn, classes):
        """(kind, float64 [classes]) operations of one head node."""
        try:
            return self._head_ops(dn, classes)
        except ValueError as e:  # a constant of neither one value nor one per class
            self.g.refuse(dn, f"a constant {e}", "use per-tensor or per-class constants")

    def _head_ops(self, dn, classes):
        def const():
            i = next(i for i in dn.consts)
            return _per_channel(dn.consts[i], classes), i
        if dn.op in ("Identity", "Cast"):
            return []
        if dn.op == "BatchNormalization":
            scale, bias, mean, var = (_per_channel(dn.const(i), classes) for i in (1, 2, 3, 4))
            eps = float(np.float32(dn.attrs.get("epsilon", 1e-5)))
            return [("bn", (mean, np.sqrt(var + eps), scale, bias))]
        c, i = const()
        data_first = dn.proto.input[0] == dn.data_input
        if dn.op in ("Mul", "Add"):
            return [(dn.op.lower(), c)]
        if dn.op == "Sub":
            return [("sub", c)] if data_first else [("mul", -np.ones(classes)), ("add", c)]
        if dn.op == "Div" and data_first:
            return [("div", c)]
        self.g.refuse(dn, "divides a constant by the scores",
                      "the head must be an affine map of the last layer's integers")

    @staticmethod
    def head_in_order(ops, classes):
        """A Head holding ``ops`` in its own order where they fit (bit-identical float64),
        else one composed affine map."""
        slots = [("mul", "alpha"), ("add", "bias"), ("sub", "mean"), ("div", "sigma"),
                 ("mul", "gamma"), ("add", "beta")]
        fields = {"alpha": np.ones(classes), "bias": np.zeros(classes), "mean": np.zeros(classes),
                  "sigma": np.ones(classes), "gamma": np.ones(classes), "beta": np.zeros(classes)}
        at = 0
        for kind, v in ops:
            if kind == "bn":
                if at > 2:
                    break
                fields["mean"], fields["sigma"], fields["gamma"], fields["beta"] = v
                at = 6
                continue
            j = next((j for j in range(at, 6) if slots[j][0] == kind), None)
            if j is None:
                break
            fields[slots[j][1]] = v
            at = j + 1
        else:
            return Head(**fields)
        zero, one = _apply(ops, np.zeros(classes)), _apply(ops, np.ones(classes))
        return Head.affine(one - zero, zero)


def _apply(ops, x):
    """The head's operations in float64 on ``x``."""
    for kind, v in ops:
        if kind == "mul":
            x = x * v
        elif kind == "add":
            x = x + v
        elif kind == "sub":
            x = x - v
        elif kind == "div":
            x = x / v
        else:
            mean, sigma, gamma, beta = v
            x = (x - mean) / sigma * gamma + beta
    return x


def head_check(head, acc, executor):
    """Compare the host head's float64 scores with the executor's over every accumulator
    value [V] (``executor`` [V, classes]): identical scores, else whether every pair of
    classes orders every pair of values alike (then the argmax, ties to the lowest class,
    agrees for every input). Returns a JSON-able dict."""
    ours = head.scores(np.repeat(acc[:, None], executor.shape[1], axis=1))
    theirs = np.asarray(executor, dtype=np.float64)
    if np.array_equal(ours, theirs):
        return {"scores_identical": True, "argmax_identical": True, "disagreements": 0}
    disagreements, example = 0, None
    classes = executor.shape[1]
    for c1 in range(classes):
        for c2 in range(c1 + 1, classes):
            a = ours[:, c1][:, None] >= ours[:, c2][None, :]
            b = theirs[:, c1][:, None] >= theirs[:, c2][None, :]
            diff = a != b
            n = int(diff.sum())
            if n and example is None:
                v1, v2 = np.argwhere(diff)[0]
                example = {"classes": [c1, c2], "acc": [int(acc[v1]), int(acc[v2])]}
            disagreements += n
    out = {"scores_identical": False, "argmax_identical": disagreements == 0,
           "disagreements": disagreements}
    if example:
        out["example"] = example
    return out
