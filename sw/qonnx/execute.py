"""Run pieces of an ONNX graph with qonnx's own executor, the reference of every proof here.

The importer never re-implements an op's arithmetic: a constant sub-expression (a weight's
``BipolarQuant``, a ``Transpose``), the input pre-processing and the chain of element-wise
nodes after each layer are cut out of the graph into a small model of their own and run
by :func:`qonnx.core.onnx_exec.execute_onnx` — onnxruntime for standard ops, qonnx's
Python implementations for ``Quant``, ``BipolarQuant`` and ``MultiThreshold`` — exactly as
the whole graph runs. Thresholds, input levels and head checks are read off those outputs.
"""
import numpy as np

QONNX_DOMAIN = "qonnx.custom_op.general"
#: qonnx's own ops; Brevitas writes them in QONNX_DOMAIN, older tools in "" or "finn.*".
CUSTOM_OPS = ("Quant", "BipolarQuant", "MultiThreshold", "Trunc", "IntQuant")


def normalised(node):
    """A copy of ``node`` whose qonnx custom op has a domain the executor resolves (older
    exports leave ``Quant`` in the default domain, which onnxruntime would be asked to run)."""
    copy = type(node)()
    copy.CopyFrom(node)
    if copy.op_type in CUSTOM_OPS and copy.domain in ("", "onnx.brevitas"):
        copy.domain = QONNX_DOMAIN
    return copy


def _opsets(opsets, nodes):
    """Opset imports for a sub-model: the source model's, plus the qonnx domain when used."""
    from onnx import helper
    have = dict(opsets)
    for node in nodes:
        if node.domain and node.domain not in have:
            have[node.domain] = 1
    have.setdefault("", 13)
    return [helper.make_opsetid(domain, version) for domain, version in have.items()]


def run_nodes(nodes, feeds, consts, outputs, opsets, datatypes=None):
    """Execute ``nodes`` (ONNX NodeProtos, topologically ordered) with qonnx's executor.

    feeds : ``{tensor: array}`` graph inputs of the sub-model (the data probes).
    consts : ``{tensor: array}`` the constant inputs the nodes read (initializers).
    outputs : tensor names to return, in order.
    opsets : ``{domain: version}`` of the source model.
    datatypes : ``{tensor: qonnx DataType name}`` annotations to carry over (the executor
        rounds annotated tensors, so a sub-model must see the same annotations).
    Returns a list of arrays, one per name in ``outputs``.
    """
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    nodes = [normalised(n) for n in nodes]
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype),
                                            list(a.shape)) for name, a in feeds.items()]
    inits = [numpy_helper.from_array(np.asarray(a), name) for name, a in consts.items()]
    # Graph outputs are the tensors no node reads; the others are read from the executor's
    # full context (an output that is also an intermediate would get two ValueInfos).
    read = {i for n in nodes for i in n.input}
    produced = [o for n in nodes for o in n.output if o]
    terminal = [o for o in produced if o not in read] or produced[-1:]
    # qonnx's shape inference keeps an output's declared type for its custom ops (which all
    # give float32) and infers it for standard ops from an UNDEFINED declaration.
    custom = {o for n in nodes if n.op_type in CUSTOM_OPS for o in n.output}
    graph = helper.make_graph(nodes, "xnorflow-probe", inputs,
                              [helper.make_tensor_value_info(
                                  o, TensorProto.FLOAT if o in custom else TensorProto.UNDEFINED,
                                  None) for o in terminal],
                              initializer=inits)
    proto = helper.make_model(graph, opset_imports=_opsets(opsets, nodes))
    proto.ir_version = min(proto.ir_version, 10)
    model = ModelWrapper(proto)
    for name, dt in (datatypes or {}).items():
        if model.get_tensor_valueinfo(name) is not None or name in feeds or name in outputs:
            model.set_tensor_datatype(name, DataType[dt])
    model = model.transform(InferShapes())
    context = execute_onnx(model, dict(feeds), return_full_exec_context=True)
    return [np.asarray(context[o]) for o in outputs]

