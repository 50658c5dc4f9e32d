"""Small edits of an ONNX graph, to make the unsupported variants of a valid one."""
import numpy as np
from onnx import helper, numpy_helper

QONNX = "qonnx.custom_op.general"


def node(proto, name):
    return next(n for n in proto.graph.node if n.name == name)


def producer(proto, tensor):
    return next(n for n in proto.graph.node if tensor in n.output)


def set_attr(n, key, value):
    for a in list(n.attribute):
        if a.name == key:
            n.attribute.remove(a)
    n.attribute.append(helper.make_attribute(key, value))


def set_init(proto, name, value):
    for i in proto.graph.initializer:
        if i.name == name:
            i.CopyFrom(numpy_helper.from_array(np.asarray(value), name))
            return
    proto.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))


def insert_after(proto, tensor, op, extra_inputs=(), consts=None, domain="", name=None, **attrs):
    """Insert ``op(tensor, *extra_inputs)`` after ``tensor``; its readers read the new output."""
    new = f"{tensor}_{op.lower()}"
    for n in proto.graph.node:
        for i, t in enumerate(n.input):
            if t == tensor:
                n.input[i] = new
    for o in proto.graph.output:
        if o.name == tensor:
            o.name = new
    for k, v in (consts or {}).items():
        set_init(proto, k, v)
    made = helper.make_node(op, [tensor, *extra_inputs], [new], name=name or f"{tensor}_{op}",
                            domain=domain, **attrs)
    nodes = list(proto.graph.node)
    at = next(i for i, n in enumerate(nodes) if tensor in n.output) + 1
    nodes.insert(at, made)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    del proto.graph.value_info[:]
    return proto.graph.node[at]


def bypass(proto, name):
    """Remove node ``name``; its readers read its data input instead."""
    n = node(proto, name)
    src, out = n.input[0], n.output[0]
    for m in proto.graph.node:
        for i, t in enumerate(m.input):
            if t == out:
                m.input[i] = src
    proto.graph.node.remove(n)
    del proto.graph.value_info[:]


def replace(proto, name, op, inputs=None, domain="", **attrs):
    """Replace node ``name`` by ``op`` with the same output (and the same first input)."""
    n = node(proto, name)
    made = helper.make_node(op, inputs or [n.input[0]], list(n.output[:1]), name=name,
                            domain=domain, **attrs)
    n.CopyFrom(made)
    del proto.graph.value_info[:]
    return n
