"""An ONNX graph as the importer reads it: constants evaluated, one linear data path.

:func:`load_graph` walks the nodes in order. A node whose inputs are all constants
(initializers, ``Constant`` nodes, ``Shape`` of a tensor of known shape, or outputs of such
nodes: a weight's ``BipolarQuant``, a ``Transpose``, a ``Concat`` of pads) is evaluated once
with qonnx's executor and becomes a constant. Every other node must read exactly one tensor
of the data path — the previous data node's output — so the graph is one chain from the image
input to the scores; its output shape is computed from its attributes, which are checked here
against what xnorflow can run. Anything else is refused with :class:`UnsupportedModelError`,
whose message names the node, its op type and what would make it importable.
"""
from dataclasses import dataclass, field

import numpy as np

from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.qonnx.execute import CUSTOM_OPS, run_nodes

ELEMENTWISE = ("Identity", "Mul", "Add", "Sub", "Div", "BatchNormalization", "Quant",
               "BipolarQuant", "MultiThreshold", "Cast")
"""Per-element ops: the pre-processing, the chain after each layer and the head."""
WEIGHTED = ("MatMul", "Gemm", "Conv")
LAYOUT = ("Reshape", "Flatten")
SUPPORTED = ELEMENTWISE + WEIGHTED + LAYOUT + ("MaxPool", "Pad")

_ACTIVATION = ("xnorflow's hidden activations are binary: quantize them with BipolarQuant "
               "(Brevitas QuantIdentity with bit_width=1) or a one-threshold MultiThreshold")
_BRANCH = "xnorflow runs a linear chain of layers (no residual additions, concatenations or splits)"
REMEDIES = {
    "Relu": _ACTIVATION, "LeakyRelu": _ACTIVATION, "Sigmoid": _ACTIVATION, "Tanh": _ACTIVATION,
    "HardTanh": _ACTIVATION, "Clip": _ACTIVATION, "Sign": _ACTIVATION, "PRelu": _ACTIVATION,
    "Trunc": "Trunc (accumulator truncation) has no xnorflow equivalent: remove it before export",
    "AveragePool": "xnorflow pools with a 2×2 max-pool after a conv only",
    "GlobalAveragePool": "xnorflow pools with a 2×2 max-pool after a conv only",
    "GlobalMaxPool": "xnorflow pools with a 2×2 max-pool after a conv only",
    "QuantAvgPool2d": "xnorflow pools with a 2×2 max-pool after a conv only",
    "Softmax": "remove it from the graph: the host head gives the scores and the class is their "
               "argmax (xnorflow eval and sim)",
    "LogSoftmax": "remove it from the graph: the host head gives the scores and the class is "
                  "their argmax (xnorflow eval and sim)",
    "ArgMax": "remove it from the graph: xnorflow eval and sim take the argmax of the scores",
    "TopK": "remove it from the graph (e.g. do not apply FINN's InsertTopK): xnorflow eval and "
            "sim take the argmax of the scores",
    "Transpose": "xnorflow reads channels-first (NCHW) graphs: import the graph before any "
                 "channels-last conversion",
    "Concat": _BRANCH, "Split": _BRANCH,
    "Dropout": "export the model in eval mode (Dropout only acts in training)",
    "QuantizeLinear": "convert QCDQ graphs to QONNX first (qonnx's QCDQToQuant transformation)",
    "DequantizeLinear": "convert QCDQ graphs to QONNX first (qonnx's QCDQToQuant transformation)",
    "XnorPopcountMatMul": "import the graph before FINN's XNOR conversion (MatMul on BipolarQuant "
                          "values)",
}


class UnsupportedModelError(XnorflowError):
    """The ONNX model cannot be imported; the message names the file, the node and its op
    type, and what would make it importable."""


def refuse(path, node, problem, remedy=None):
    """Raise :class:`UnsupportedModelError` about ``node`` of the model at ``path``."""
    name = node.name or "(unnamed)"
    tail = f"; {remedy}" if remedy else ""
    raise UnsupportedModelError(f"{path}: node '{name}' ({node.op_type}): {problem}{tail}")


@dataclass(eq=False)
class DataNode:
    """A node on the data path: the ONNX node, the data tensor it reads and writes, their
    shapes, its constant inputs (by input position) and attributes."""

    proto: object
    data_input: str
    output: str
    in_shape: tuple
    out_shape: tuple
    consts: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    @property
    def op(self):
        return self.proto.op_type

    @property
    def name(self):
        return self.proto.name or f"{self.op}({self.output})"

    def const(self, index, default=None):
        """Constant input ``index`` (None or ``default`` when absent)."""
        return self.consts.get(index, default)


@dataclass(eq=False)
class Graph:
    """A loaded graph: the linear data path and what the importer needs around it."""

    path: str
    proto: object
    opsets: dict
    consts: dict
    datatypes: dict
    input_name: str
    input_shape: tuple
    nodes: list
    metadata: dict

    def refuse(self, node, problem, remedy=None):
        """Raise :class:`UnsupportedModelError` about ``node`` (a DataNode or NodeProto)."""
        refuse(self.path, getattr(node, "proto", node), problem, remedy)

    def run(self, nodes, feeds, outputs, consts=None):
        """Run ``nodes`` (NodeProtos) with qonnx's executor on ``feeds``; constants default to
        the graph's own."""
        names = {i for n in nodes for i in n.input if i}
        table = self.consts if consts is None else consts
        used = {k: v for k, v in table.items() if k in names and k not in feeds}
        types = {k: v for k, v in self.datatypes.items()
                 if k in names or any(k in n.output for n in nodes)}
        try:
            return run_nodes(nodes, feeds, used, outputs, self.opsets, types)
        except Exception as e:  # the executor's own failure: name the nodes, keep its message
            what = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            names = ", ".join(f"'{n.name}'" for n in nodes)
            refuse(self.path, nodes[0], f"qonnx's executor cannot run the nodes {names} "
                                        f"({type(e).__name__}: {what[:300]})")


def load_graph(path):
    """Read the ONNX file at ``path`` into a :class:`Graph`; refuses what it cannot run."""
    import onnx
    try:
        proto = onnx.load(str(path))
    except FileNotFoundError:
        raise UnsupportedModelError(f"{path}: no such file") from None
    except OSError as e:
        raise UnsupportedModelError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX model
        raise UnsupportedModelError(f"{path}: not an ONNX model ({type(e).__name__}: "
                                    f"{e})") from None
    return _Walker(str(path), proto).walk()


def _attrs(node):
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _datatypes(graph):
    """``{tensor: DataType name}`` from the graph's quantization annotations."""
    out = {}
    for ann in graph.quantization_annotation:
        for kv in ann.quant_parameter_tensor_names:
            if kv.key == "finn_datatype":
                out[ann.tensor_name] = kv.value
    return out


class _Walker:
    """One pass over the nodes: constants folded, the data path followed and shaped."""

    def __init__(self, path, proto):
        from onnx import numpy_helper
        self.path, self.proto, self.graph = path, proto, proto.graph
        self.opsets = {imp.domain: imp.version for imp in proto.opset_import}
        self.consts = {init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        self.shapes = {}
        self.nodes = []

    def fail(self, message):
        raise UnsupportedModelError(f"{self.path}: {message}")

    def walk(self):
        name, shape = self.data_input()
        self.shapes[name] = shape
        current = name
        for node in self.graph.node:
            current = self.visit(node, current)
        outputs = [o.name for o in self.graph.output]
        if len(outputs) != 1:
            self.fail(f"the graph has {len(outputs)} outputs ({', '.join(outputs)}); xnorflow "
                      f"imports a classifier with one output, the class scores")
        if outputs[0] != current:
            self.fail(f"the graph output '{outputs[0]}' is not the end of the data path "
                      f"('{current}')")
        self.check_extra_outputs_unused()
        if not any(n.op in WEIGHTED for n in self.nodes):
            self.fail("the graph has no MatMul, Gemm or Conv: nothing to run on the accelerator")
        meta = {p.key: p.value for p in self.proto.metadata_props}
        return Graph(self.path, self.proto, self.opsets, self.consts, _datatypes(self.graph),
                     name, shape, self.nodes, meta)

    def data_input(self):
        """The one graph input that is not an initializer, and its static shape (a symbolic
        batch dimension counts as 1)."""
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            self.fail(f"the graph has {len(inputs)} data inputs "
                      f"({', '.join(i.name for i in inputs) or 'none'}); xnorflow models take "
                      f"one image tensor")
        vi = inputs[0]
        dims = vi.type.tensor_type.shape.dim
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(1)
            else:
                self.fail(f"input '{vi.name}' dimension {i} is not fixed ({d.dim_param or '?'}); "
                          f"export with a fixed input shape")
        if len(shape) not in (2, 4) or shape[0] != 1:
            self.fail(f"input '{vi.name}' has shape {shape}; xnorflow imports [1, N] vectors or "
                      f"[1, C, H, W] images (batch 1)")
        return vi.name, tuple(shape)

    # -- one node -------------------------------------------------------------------------------

    def visit(self, node, current):
        """Fold ``node`` into the constants or append it to the data path; returns the data
        path's current tensor."""
        ins = [i for i in node.input if i]
        if node.op_type == "Constant":
            self.consts[node.output[0]] = self.constant_value(node)
            return current
        if all(i in self.consts for i in ins) and (ins or node.op_type != "Shape"):
            self.fold(node, ins)
            return current
        if node.op_type == "Shape" and ins and ins[0] in self.shapes:
            a = _attrs(node)
            shape = self.shapes[ins[0]]
            part = shape[a.get("start", 0):a.get("end", len(shape))]
            self.consts[node.output[0]] = np.array(part, dtype=np.int64)
            return current
        return self.data_node(node, ins, current)

    def constant_value(self, node):
        from onnx import numpy_helper
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name in ("value_float", "value_int"):
                return np.array(a.f if a.name == "value_float" else a.i,
                                dtype=np.float32 if a.name == "value_float" else np.int64)
            if a.name in ("value_floats", "value_ints"):
                return np.array(list(a.floats) if a.name == "value_floats" else list(a.ints),
                                dtype=np.float32 if a.name == "value_floats" else np.int64)
        refuse(self.path, node, "a Constant without a tensor value",
               "write the constant as a tensor ('value') or an initializer")

    def fold(self, node, ins):
        """Evaluate a node of constants with qonnx's executor."""
        outs = [o for o in node.output if o]
        try:
            values = run_nodes([node], {}, {i: self.consts[i] for i in ins}, outs, self.opsets)
        except Exception as e:  # the executor's own failure: name the node, keep its message
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            refuse(self.path, node, f"cannot evaluate this constant expression "
                                    f"({type(e).__name__}: {first[:300]})")
        self.consts.update(zip(outs, values))

    def data_node(self, node, ins, current):
        """Append a node of the data path (it must read the current tensor and only it)."""
        data = [i for i in ins if i in self.shapes]
        unknown = [i for i in ins if i not in self.shapes and i not in self.consts]
        if unknown:
            refuse(self.path, node, f"reads '{unknown[0]}', which no earlier node writes",
                   "sort the graph topologically (qonnx's SortGraph)")
        if len(data) != 1:
            refuse(self.path, node, f"reads {len(data)} tensors of the data path", _BRANCH)
        if data[0] != current:
            refuse(self.path, node, f"reads '{data[0]}', an earlier tensor of the data path "
                                    f"(the graph branches)", _BRANCH)
        if node.op_type not in SUPPORTED:
            remedy = REMEDIES.get(node.op_type) or (
                f"xnorflow imports only {', '.join(SUPPORTED)} on the data path")
            refuse(self.path, node, "op type not supported", remedy)
        consts = {i: self.consts[name] for i, name in enumerate(node.input)
                  if name and name in self.consts}
        dn = DataNode(node, current, node.output[0], self.shapes[current], (), consts, _attrs(node))
        dn.out_shape = tuple(int(v) for v in _SHAPES[node.op_type](self, dn))
        self.shapes[dn.output] = dn.out_shape
        self.nodes.append(dn)
        return dn.output

    def check_extra_outputs_unused(self):
        """A data node's second output (MaxPool's indices, BatchNormalization's training
        statistics) must not feed anything: xnorflow computes only the first."""
        read = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        for dn in self.nodes:
            for extra in dn.proto.output[1:]:
                if extra and extra in read:
                    refuse(self.path, dn.proto, f"its output '{extra}' is used",
                           "only the first output of a node can be imported")

    # -- output shapes (each also checks the attributes it depends on) -------------------------

    def elementwise_shape(self, dn):
        """Same shape; a constant operand must not broadcast the data to a larger shape."""
        if dn.op in ("Mul", "Add", "Sub", "Div") and (len(dn.proto.input) != 2 or
                                                      len(dn.consts) != 1):
            refuse(self.path, dn.proto, "does not combine the data with one constant",
                   _BRANCH)
        if dn.op in CUSTOM_OPS and dn.op == "Quant":
            bits = dn.const(3)
            if bits is None or np.asarray(bits).size != 1:
                refuse(self.path, dn.proto, "the bit width (input 3) must be one constant",
                       "export with a constant, per-tensor bit width")
        for i, c in dn.consts.items():
            if (dn.op == "MultiThreshold" and i == 1) or dn.op == "BatchNormalization":
                continue  # per channel by definition ([C, T] thresholds, [C] statistics)
            try:
                full = np.broadcast_shapes(dn.in_shape, np.shape(c))
            except ValueError:
                full = None
            if full != tuple(dn.in_shape):
                refuse(self.path, dn.proto, f"constant input {i} of shape {list(np.shape(c))} "
                                            f"does not broadcast to the data shape "
                                            f"{list(dn.in_shape)}")
        if dn.op == "BatchNormalization" and dn.attrs.get("training_mode", 0):
            refuse(self.path, dn.proto, "attribute training_mode=1", "export in eval mode")
        if dn.op == "Cast":
            from onnx import TensorProto
            if dn.attrs.get("to") not in (TensorProto.FLOAT, TensorProto.DOUBLE):
                refuse(self.path, dn.proto, f"casts to ONNX type {dn.attrs.get('to')}",
                       "only casts to float or double (in the head) can be imported")
        return dn.in_shape

    def reshape_shape(self, dn):
        target = dn.const(1)
        if target is None:
            refuse(self.path, dn.proto, "the target shape is not a constant",
                   "export with static shapes")
        target = [int(v) for v in np.asarray(target).ravel()]
        shape = list(dn.in_shape)
        if not dn.attrs.get("allowzero", 0):
            target = [shape[i] if v == 0 and i < len(shape) else v for i, v in enumerate(target)]
        total = int(np.prod(shape))
        if target.count(-1) == 1:
            known = int(np.prod([v for v in target if v != -1]))
            target[target.index(-1)] = total // known if known else 0
        if int(np.prod(target)) != total or any(v <= 0 for v in target):
            refuse(self.path, dn.proto, f"cannot reshape {shape} to {target}")
        if tuple(target) != tuple(shape) and (len(target) != 2 or target[0] != shape[0]):
            refuse(self.path, dn.proto, f"reshapes {shape} to {target}",
                   "xnorflow imports a Reshape only as the flattening to [batch, features]")
        return target

    def flatten_shape(self, dn):
        axis = dn.attrs.get("axis", 1)
        shape = dn.in_shape
        axis = axis + len(shape) if axis < 0 else axis
        if axis != 1:
            refuse(self.path, dn.proto, f"attribute axis={dn.attrs.get('axis')}",
                   "xnorflow imports Flatten with axis=1 (to [batch, features])")
        return shape[0], int(np.prod(shape[1:]))

    def matmul_shape(self, dn):
        w = dn.const(1)
        if w is None or np.ndim(w) != 2:
            refuse(self.path, dn.proto, "the second operand is not a constant matrix",
                   "xnorflow imports MatMul(activations, weights) with constant weights")
        if len(dn.in_shape) != 2 or dn.in_shape[1] != w.shape[0]:
            refuse(self.path, dn.proto, f"multiplies data of shape {list(dn.in_shape)} by "
                                        f"{list(w.shape)}",
                   "flatten the activations to [batch, features] first")
        return dn.in_shape[0], w.shape[1]

    def gemm_shape(self, dn):
        a = dn.attrs
        if a.get("transA", 0):
            refuse(self.path, dn.proto, "attribute transA=1",
                   "export the activations as the first operand, untransposed")
        for key in ("alpha", "beta"):
            if key in a and float(a[key]) != 1.0 and (key == "alpha" or dn.const(2) is not None):
                refuse(self.path, dn.proto, f"attribute {key}={a[key]}",
                       "fold the factor into the weights (alpha) or the bias (beta)")
        w = dn.const(1)
        if w is None or np.ndim(w) != 2:
            refuse(self.path, dn.proto, "the weight operand B is not a constant matrix")
        if a.get("transB", 0):
            w = w.T
        if len(dn.in_shape) != 2 or dn.in_shape[1] != w.shape[0]:
            refuse(self.path, dn.proto, f"multiplies data of shape {list(dn.in_shape)} by "
                                        f"{list(w.shape)}")
        if len(dn.proto.input) > 2 and dn.proto.input[2] and dn.const(2) is None:
            refuse(self.path, dn.proto, "the bias operand C is not a constant")
        return dn.in_shape[0], w.shape[1]

    def conv_shape(self, dn):
        a = dn.attrs
        w = dn.const(1)
        if w is None or np.ndim(w) != 4:
            refuse(self.path, dn.proto, "the weights are not a constant [M, C, kh, kw] tensor")
        if len(dn.in_shape) != 4 or dn.in_shape[1] != w.shape[1]:
            refuse(self.path, dn.proto, f"convolves data of shape {list(dn.in_shape)} with "
                                        f"weights {list(w.shape)}")
        checks = [("group", a.get("group", 1), 1, "grouped and depthwise convolutions are not "
                                                    "supported"),
                  ("kernel_shape", list(a.get("kernel_shape", w.shape[2:])), [3, 3],
                   "xnorflow's convolution is 3×3"),
                  ("strides", list(a.get("strides", [1, 1])), [1, 1],
                   "xnorflow's convolution has stride 1"),
                  ("dilations", list(a.get("dilations", [1, 1])), [1, 1],
                   "xnorflow's convolution is not dilated"),
                  ("auto_pad", a.get("auto_pad", "NOTSET"), "NOTSET",
                   "export explicit pads (auto_pad=NOTSET)")]
        for key, got, want, why in checks:
            if got != want:
                refuse(self.path, dn.proto, f"attribute {key}={got}", why)
        if list(w.shape[2:]) != [3, 3]:
            refuse(self.path, dn.proto, f"weights of shape {list(w.shape)}",
                   "xnorflow's convolution is 3×3")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads not in ([0, 0, 0, 0], [1, 1, 1, 1]):
            refuse(self.path, dn.proto, f"attribute pads={pads}",
                   "xnorflow's 3×3 convolution keeps the image size: one pixel of padding on "
                   "every side (pads=[1,1,1,1], or a Pad node before a Conv with pads=0)")
        if len(dn.proto.input) > 2 and dn.proto.input[2] and dn.const(2) is None:
            refuse(self.path, dn.proto, "the bias input is not a constant")
        padded = bool(self.nodes) and self.nodes[-1].op == "Pad"
        if pads == [0, 0, 0, 0] and not padded:
            refuse(self.path, dn.proto, "has no padding (pads=[0,0,0,0]): its output is 2 pixels "
                                        "smaller than its input",
                   "xnorflow's 3×3 convolution keeps the image size: export it with one pixel "
                   "of padding of the bit-0 value (docs/qonnx.md); BNN-PYNQ's unpadded CNV "
                   "cannot be imported")
        if pads == [1, 1, 1, 1] and padded:
            refuse(self.path, dn.proto, "pads=[1,1,1,1] after a Pad node: the image is padded "
                                        "twice", "pad once")
        b, _, h, wd = dn.in_shape
        p = pads[0]
        return b, w.shape[0], h + 2 * p - 2, wd + 2 * p - 2

    def maxpool_shape(self, dn):
        a = dn.attrs
        checks = [("kernel_shape", list(a.get("kernel_shape", [])), [2, 2]),
                  ("strides", list(a.get("strides", [1, 1])), [2, 2]),
                  ("pads", list(a.get("pads", [0, 0, 0, 0])), [0, 0, 0, 0]),
                  ("dilations", list(a.get("dilations", [1, 1])), [1, 1]),
                  ("ceil_mode", a.get("ceil_mode", 0), 0),
                  ("auto_pad", a.get("auto_pad", "NOTSET"), "NOTSET")]
        for key, got, want in checks:
            if got != want:
                refuse(self.path, dn.proto, f"attribute {key}={got}",
                       "xnorflow pools 2×2 with stride 2, no padding, rounding down "
                       "(MaxPool kernel_shape=[2,2] strides=[2,2] ceil_mode=0)")
        if len(dn.in_shape) != 4:
            refuse(self.path, dn.proto, f"pools data of shape {list(dn.in_shape)}",
                   "xnorflow max-pools the image after a conv")
        b, c, h, w = dn.in_shape
        return b, c, h // 2, w // 2

    def pad_shape(self, dn):
        a = dn.attrs
        mode = a.get("mode", "constant")
        if mode != "constant":
            refuse(self.path, dn.proto, f"attribute mode={mode}",
                   "xnorflow pads with a constant (mode=constant)")
        pads = dn.const(1) if len(dn.proto.input) > 1 and dn.proto.input[1] else a.get("pads")
        if pads is None:
            refuse(self.path, dn.proto, "the pads are not a constant")
        if len(dn.proto.input) > 3 and dn.proto.input[3]:
            refuse(self.path, dn.proto, "has an axes input", "pad all four NCHW axes explicitly")
        pads = [int(v) for v in np.asarray(pads).ravel()]
        if len(dn.in_shape) != 4 or pads != [0, 0, 1, 1, 0, 0, 1, 1]:
            refuse(self.path, dn.proto, f"pads={pads} on data of shape {list(dn.in_shape)}",
                   "xnorflow pads an NCHW image by one pixel on every side, right before a "
                   "3×3 Conv (pads=[0,0,1,1,0,0,1,1])")
        b, c, h, w = dn.in_shape
        return b, c, h + 2, w + 2


_SHAPES = {op: _Walker.elementwise_shape for op in ELEMENTWISE}
_SHAPES.update({"Reshape": _Walker.reshape_shape, "Flatten": _Walker.flatten_shape,
                "MatMul": _Walker.matmul_shape, "Gemm": _Walker.gemm_shape,
                "Conv": _Walker.conv_shape, "MaxPool": _Walker.maxpool_shape,
                "Pad": _Walker.pad_shape})
