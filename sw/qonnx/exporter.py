"""``export_onnx``: a compiled model as a QONNX graph that qonnx's executor runs exactly.

The graph computes what the golden model computes, in the ONNX ops FINN and qonnx know:

* input ``x = raw/S`` (float32, [1, N] or NCHW [1, C, H, W]; ``S`` the model's
  ``max_value``, or the input scale an imported model came with) → ``MultiThreshold`` with
  ``2^k − 1`` thresholds: the count is exactly :func:`xnorflow.sw.data.quantize_inputs`'s level for
  every raw value (:func:`xnorflow.sw.qonnx.inputs.input_thresholds`);
* per weighted layer, ``BipolarQuant``-quantized ±1 weights (scale 1) and ``MatMul`` or
  ``Conv`` (the first conv zero-pads: input level 0; later convs ``Pad`` with −1, bit 0, then
  an unpadded ``Conv``): the float32 accumulator equals xnorflow's integer exactly;
* thresholds as ``MultiThreshold`` (one threshold per channel, ``out_scale=2``,
  ``out_bias=−1``: bits as ±1), after a ``Mul`` by the channel directions when any is −1
  (``−acc ≥ −T`` is ``acc ≤ T``); a pooled conv is ``MaxPool`` on the integers before that:
  the threshold of the window's largest accumulator, xnorflow's OR/AND pool;
* a dense layer after the conv stack reads ``Flatten``'s CHW order (its weights reordered);
* the last layer's integers ``Cast`` to double, then the head's six operations in float64,
  ``((acc·alpha + bias) − mean) / sigma · gamma + beta``: the scores are bit-identical to
  :meth:`xnorflow.sw.golden.Head.scores`.

Names, metadata and input scale are kept as ``metadata_props`` (``xnorflow.*``), so that
importing the file gives back the same ``.xnf`` bytes.
"""
import json

import numpy as np

from xnorflow.sw import bits as B
from xnorflow.sw.layers.conv import ConvLayer, MaxPoolLayer
from xnorflow.sw.qonnx import require_extra
from xnorflow.sw.qonnx.execute import QONNX_DOMAIN
from xnorflow.sw.qonnx.inputs import input_thresholds
from xnorflow.sw.xnf import atomic_write

ONNX_OPSET = 13
IR_VERSION = 10  # what onnxruntime and qonnx read; newer onnx releases default higher
HEAD_ORDER = (("Mul", "alpha"), ("Add", "bias"), ("Sub", "mean"), ("Div", "sigma"),
              ("Mul", "gamma"), ("Add", "beta"))


def export_onnx(model, path, input_scale=None):
    """Write ``model`` (a :class:`~xnorflow.sw.golden.CompiledModel`) to ``path`` as QONNX (atomically).

    input_scale : S of the graph's input ``raw/S`` (default: the scale the model was imported
        with, else its ``max_value``). Returns the ONNX ModelProto.
    """
    require_extra()
    proto = build_model(model, input_scale)
    atomic_write(path, proto.SerializeToString())
    return proto


def default_input_scale(model):
    """The input scale of an export: an imported model's own, else ``max_value``."""
    scale = (model.meta or {}).get("input_scale")
    return float(scale) if isinstance(scale, (int, float)) else float(model.input.max_value)


def build_model(model, input_scale=None):
    """The ONNX ModelProto of ``model`` (shapes inferred, ready for the executor)."""
    from onnx import helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    scale = default_input_scale(model) if input_scale is None else float(input_scale)
    b = _Builder(model)
    b.graph_input(scale)
    layers = model.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, MaxPoolLayer):
            continue  # emitted with its conv
        pool = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], MaxPoolLayer) \
            else None
        b.weighted(layer, first=i == 0)
        if layer.output == "raw":
            b.head(layer, model.head)
        else:
            b.threshold(layer, pool)
    graph = helper.make_graph(b.nodes, model.name or "xnorflow", [b.input_info],
                              [b.output_info], initializer=b.inits)
    proto = helper.make_model(graph, producer_name="xnorflow",
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                             helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = IR_VERSION
    meta = {"xnorflow.name": model.name, "xnorflow.meta": json.dumps(model.meta, sort_keys=True),
            "xnorflow.input_scale": repr(scale)}
    if any(layer.extra for layer in layers):
        meta["xnorflow.layer_extra"] = json.dumps([layer.extra for layer in layers])
    helper.set_model_props(proto, meta)
    return ModelWrapper(proto).transform(InferShapes()).model


class _Builder:
    """Accumulates nodes and initializers; ``h`` is the current data tensor."""

    def __init__(self, model):
        self.model = model
        self.nodes, self.inits = [], []
        self.h, self.image = None, None  # image: (C, H, W) while the data is NCHW

    def const(self, name, value, dtype=np.float32):
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op, inputs, output, name, domain="", **attrs):
        from onnx import helper
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, domain=domain,
                                           **attrs))
        self.h = output
        return output

    def graph_input(self, scale):
        """``x`` (raw/S) and the input MultiThreshold giving xnorflow's k-bit levels."""
        from onnx import TensorProto, helper
        spec, first = self.model.input, self.model.layers[0]
        if isinstance(first, ConvLayer):
            self.image = (first.in_channels, first.height, first.width)
            shape = [1, *self.image]
        else:
            shape = [1, spec.features]
        self.input_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
        self.h = "x"
        thr = input_thresholds(spec.bits, spec.max_value, scale).reshape(1, -1)
        dtype = "BINARY" if spec.bits == 1 else f"UINT{spec.bits}"
        self.node("MultiThreshold", ["x", self.const("input_thresholds", thr)], "input_levels",
                  "input_quant", domain=QONNX_DOMAIN, out_dtype=dtype)

    def weighted(self, layer, first):
        """Binary weights and the MatMul or Conv of ``layer``; the output is its integers."""
        signs = np.where(B.unpack_bits(layer.weights, layer.filter_len), 1.0, -1.0)
        name = layer.name
        if isinstance(layer, ConvLayer):
            c = layer.in_channels
            w = signs.reshape(layer.out_channels, 3, 3, c).transpose(0, 3, 1, 2)
            wq = self.quantized_weights(name, w)
            pads = [1, 1, 1, 1] if first else [0, 0, 0, 0]
            data = self.h
            if not first:  # bit 0 is −1: pad with it, then an unpadded conv
                data = self.node("Pad", [self.h, self.const(f"{name}_pads",
                                                            [0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                                         self.const(f"{name}_pad_value", -1.0)],
                                 f"{name}_padded", f"{name}_pad", mode="constant")
            self.node("Conv", [data, wq], f"{name}_acc", name, kernel_shape=[3, 3],
                      pads=pads, strides=[1, 1])
            self.image = (layer.out_channels, layer.height, layer.width)
            return
        if self.image is not None:  # Flatten gives CHW order: reorder the weights to it
            ch, hh, ww = self.image
            hwc_from_chw = np.arange(ch * hh * ww).reshape(ch, hh, ww).transpose(1, 2, 0).ravel()
            chw = np.empty_like(signs)
            chw[:, hwc_from_chw] = signs
            signs = chw
            self.node("Flatten", [self.h], f"{name}_flat", f"{name}_flatten", axis=1)
            self.image = None
        wq = self.quantized_weights(name, signs.T)
        self.node("MatMul", [self.h, wq], f"{name}_acc", name)

    def quantized_weights(self, name, w):
        """``BipolarQuant`` of the ±1 weights (scale 1): binary weights qonnx tools see."""
        from onnx import helper
        out = f"{name}_weights_q"
        self.nodes.append(helper.make_node(
            "BipolarQuant", [self.const(f"{name}_weights", w), self.const(f"{name}_wscale", 1.0)],
            [out], name=f"{name}_weight_quant", domain=QONNX_DOMAIN))
        return out

    def threshold(self, layer, pool):
        """(MaxPool) → (Mul by directions) → MultiThreshold to ±1 bits."""
        name = layer.name
        if pool is not None:
            self.node("MaxPool", [self.h], f"{pool.name}_acc", pool.name, kernel_shape=[2, 2],
                      strides=[2, 2])
            c, h, w = self.image
            self.image = (c, h // 2, w // 2)
        d = np.asarray(layer.direction, dtype=np.float32)
        if (d < 0).any():
            shape = (-1, 1, 1) if self.image is not None else (-1,)
            self.node("Mul", [self.h, self.const(f"{name}_directions", d.reshape(shape))],
                      f"{name}_signed_acc", f"{name}_direction")
        thr = (d * np.asarray(layer.threshold, dtype=np.float32)).reshape(-1, 1)
        out = f"{pool.name if pool is not None else name}_bits"
        self.node("MultiThreshold", [self.h, self.const(f"{name}_thresholds", thr)], out,
                  f"{name}_threshold", domain=QONNX_DOMAIN, out_dtype="BIPOLAR", out_scale=2.0,
                  out_bias=-1.0)

    def head(self, layer, head):
        """The last layer's integers as double, then the head's operations in its order."""
        from onnx import TensorProto, helper
        name = layer.name
        self.node("Cast", [self.h], f"{name}_acc_f64", f"{name}_cast", to=TensorProto.DOUBLE)
        for i, (op, field) in enumerate(HEAD_ORDER):
            value = np.asarray(getattr(head, field), dtype=np.float64)
            out = "scores" if i == len(HEAD_ORDER) - 1 else f"head_{field}"
            self.node(op, [self.h, self.const(f"head_{field}_value", value, np.float64)], out,
                      f"head_{field}")
        self.output_info = helper.make_tensor_value_info("scores", TensorProto.DOUBLE,
                                                         [1, layer.out_features])
