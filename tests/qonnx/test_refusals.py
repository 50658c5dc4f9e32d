"""Every unsupported node and attribute is refused by name: the message names the file, the
node, its op type and what would make it importable (and the CLI exits 2 without a traceback).

Each case edits a valid graph (the export of a small random MLP or CNN) into one thing
xnorflow cannot run exactly; the unedited graphs import (the first test), so each refusal is
caused by its edit.
"""
import argparse
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graph_edits as E
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.qonnx.exporter import export_onnx
from xnorflow.sw.qonnx.graph import UnsupportedModelError
from xnorflow.sw.qonnx.importer import import_details
from xnorflow.sw.random_models import random_cnn_model, random_model


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Exported ONNX protos of a random MLP (fc1..fc3, 2-bit input of raw/3) and CNN (conv0,
    pool1, conv2, fc0, fc1)."""
    rng = np.random.default_rng(0)
    out = {}
    for name, model in (("mlp", random_model(rng, [16, 12, 8, 4], 2)),
                        ("cnn", random_cnn_model(rng, (6, 6, 1), [4, "pool", 8], [6, 4], 2))):
        path = tmp_path_factory.mktemp("base") / f"{name}.onnx"
        export_onnx(model, path)
        out[name] = onnx.load(str(path))
    return out


def _import(proto, tmp_path, **kw):
    path = tmp_path / "edited.onnx"
    onnx.save(proto, str(path))
    return import_details(path, **kw)


def test_the_unedited_graphs_import(bases, tmp_path):
    for proto in bases.values():
        assert _import(proto, tmp_path).model.layers


# -- the edits --------------------------------------------------------------------------------

def relu_activation(p):
    E.replace(p, "fc1_threshold", "Relu")


def softmax_after_scores(p):
    E.insert_after(p, "scores", "Softmax", name="probabilities", axis=1)


def transpose_in_the_path(p):
    E.insert_after(p, "fc1_acc", "Transpose", name="to_channels_last", perm=[0, 1])


def residual_add(p):
    n = E.insert_after(p, "fc2_acc", "Add", name="residual")
    n.input.append(n.input[0])


def ternary_weights(p):
    w = E.node(p, "fc2_weight_quant")
    E.set_init(p, "fc2_w_zp", np.float32(0))
    E.set_init(p, "fc2_w_bits", np.float32(2))
    w.CopyFrom(helper.make_node("Quant", [w.input[0], w.input[1], "fc2_w_zp", "fc2_w_bits"],
                                list(w.output), name="fc2_weight_quant", domain=E.QONNX,
                                signed=1, narrow=1))
    weights = next(i for i in p.graph.initializer if i.name == "fc2_weights")
    arr = onnx.numpy_helper.to_array(weights).copy()
    arr[0, 0] = 0.0
    E.set_init(p, "fc2_weights", arr)


def two_bit_activation(p):
    t = onnx.numpy_helper.to_array(next(i for i in p.graph.initializer
                                        if i.name == "fc1_thresholds"))
    E.set_init(p, "fc1_thresholds", np.concatenate([t - 1, t, t + 1], axis=1))


def weight_scale_not_power_of_two(p):
    E.set_init(p, "fc2_wscale", np.float32(0.3))


def per_pixel_input_thresholds(p):
    t = onnx.numpy_helper.to_array(next(i for i in p.graph.initializer
                                        if i.name == "input_thresholds"))
    rows = np.repeat(t, 16, axis=0)
    rows[3] += 0.01
    E.set_init(p, "input_thresholds", rows)


def no_input_quantizer(p):
    E.bypass(p, "input_quant")


def gemm(p, **attrs):
    n = E.node(p, "fc2")
    weights = E.node(p, "fc2_weight_quant")
    inputs = list(n.input)
    if attrs.pop("bias", False):
        E.set_init(p, "fc2_bias", np.full(8, 0.5, np.float32))
        inputs.append("fc2_bias")
    n.CopyFrom(helper.make_node("Gemm", inputs, list(n.output), name="fc2", **attrs))
    assert weights


def gemm_trans_a(p):
    gemm(p, transA=1)


def gemm_alpha(p):
    gemm(p, alpha=2.0)


def gemm_bias(p):
    gemm(p, bias=True)


def two_outputs(p):
    p.graph.output.append(helper.make_tensor_value_info("fc1_acc", TensorProto.FLOAT, [1, 12]))


def hidden_layer_without_quantizer(p):
    E.bypass(p, "fc1_threshold")


def quantized_scores(p):
    E.set_init(p, "one", np.float32(1))
    E.insert_after(p, "fc3_acc", "BipolarQuant", ["one"], domain=E.QONNX, name="score_sign")


def cast_in_hidden_layer(p):
    E.insert_after(p, "fc1_acc", "Cast", name="to_float", to=TensorProto.FLOAT)


def channels_last_threshold(p):
    E.set_attr(E.node(p, "fc1_threshold"), "data_layout", "NHWC")


def reshape_not_flatten(p):
    E.set_init(p, "shape3", np.array([1, 3, 4], np.int64))
    E.insert_after(p, "fc1_bits", "Reshape", ["shape3"], name="to_3d")


def batchnorm_training_mode(p):
    for k, v in (("g", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0)):
        E.set_init(p, f"bn_{k}", np.full(12, v, np.float32))
    E.insert_after(p, "fc1_acc", "BatchNormalization", ["bn_g", "bn_b", "bn_m", "bn_v"],
                   name="bn", training_mode=1)


def dynamic_input(p):
    p.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"


def half_even_input(p):
    """BNN-PYNQ's 2-bit input (2x − 1, signed narrow Quant, round half to even) on raw/16:
    raw 4 and 12 are ties, rounded to the same level from opposite sides."""
    for k, v in (("two", 2.0), ("one", 1.0), ("s", 1.0), ("zp", 0.0), ("bw", 2.0)):
        E.set_init(p, f"in_{k}", np.float32(v))
    n = E.node(p, "input_quant")
    n.CopyFrom(helper.make_node("Quant", ["input_sub", "in_s", "in_zp", "in_bw"], list(n.output),
                                name="input_quant", domain=E.QONNX, signed=1, narrow=1,
                                rounding_mode="ROUND"))
    nodes = list(p.graph.node)
    nodes[0:0] = [helper.make_node("Mul", ["x", "in_two"], ["input_mul"], name="input_mul"),
                  helper.make_node("Sub", ["input_mul", "in_one"], ["input_sub"], name="input_sub")]
    del p.graph.node[:]
    p.graph.node.extend(nodes)


def hidden_conv_zero_padding(p):
    E.bypass(p, "conv2_pad")
    E.set_attr(E.node(p, "conv2"), "pads", [1, 1, 1, 1])


def conv_without_padding(p):
    E.set_attr(E.node(p, "conv0"), "pads", [0, 0, 0, 0])


def conv_padded_twice(p):
    E.set_attr(E.node(p, "conv2"), "pads", [1, 1, 1, 1])


def conv_attr(key, value):
    def edit(p):
        E.set_attr(E.node(p, "conv2"), key, value)
    edit.__name__ = f"conv_{key}"
    return edit


def pool_attr(key, value):
    def edit(p):
        E.set_attr(E.node(p, "pool1"), key, value)
    edit.__name__ = f"pool_{key}"
    return edit


def pool_after_dense(p):
    E.insert_after(p, "fc0_acc", "MaxPool", name="dense_pool", kernel_shape=[2, 2], strides=[2, 2])


def pad_reflect(p):
    E.set_attr(E.node(p, "conv2_pad"), "mode", "reflect")


def conv_is_last(p):
    """Cut the CNN after conv2's integers."""
    keep = []
    for n in p.graph.node:
        keep.append(n)
        if n.name == "conv2":
            break
    del p.graph.node[:]
    p.graph.node.extend(keep)
    del p.graph.output[:]
    p.graph.output.append(helper.make_tensor_value_info("conv2_acc", TensorProto.FLOAT,
                                                        [1, 8, 3, 3]))
    del p.graph.value_info[:]


def first_conv_zero_pad_off_level(p):
    """A signed input quantizer (level 0 is −1) before the zero-padded first conv."""
    half_even_input(p)


CASES = [
    # (base, edit, import kwargs, the node named, words of the message)
    ("mlp", relu_activation, {}, "'fc1_threshold' (Relu)", "hidden activations are binary"),
    ("mlp", softmax_after_scores, {}, "'probabilities' (Softmax)", "argmax"),
    ("mlp", transpose_in_the_path, {}, "'to_channels_last' (Transpose)", "channels-first"),
    ("mlp", residual_add, {}, "'residual' (Add)", "linear chain"),
    ("mlp", ternary_weights, {}, "'fc2' (MatMul)", "not binary"),
    ("mlp", two_bit_activation, {}, "'fc1_threshold' (MultiThreshold)", "has 4 output levels"),
    ("mlp", weight_scale_not_power_of_two, {}, "'fc2' (MatMul)", "power-of-two"),
    ("mlp", per_pixel_input_thresholds, {}, "'input_quant' (MultiThreshold)",
     "every input pixel alike"),
    ("mlp", no_input_quantizer, {}, "(MatMul)", "--input-bits"),
    ("mlp", gemm_trans_a, {}, "'fc2' (Gemm)", "transA=1"),
    ("mlp", gemm_alpha, {}, "'fc2' (Gemm)", "alpha=2.0"),
    ("mlp", gemm_bias, {}, "'fc2' (Gemm)", "separate Add"),
    ("mlp", hidden_layer_without_quantizer, {}, "'fc1_direction' (Mul)", "1-bit quantizer"),
    ("mlp", quantized_scores, {}, "'score_sign' (BipolarQuant)", "unquantized"),
    ("mlp", cast_in_hidden_layer, {}, "'to_float' (Cast)", "only imported in the head"),
    ("mlp", channels_last_threshold, {}, "'fc1_threshold' (MultiThreshold)", "data_layout=NHWC"),
    ("mlp", reshape_not_flatten, {}, "'to_3d' (Reshape)", "flattening"),
    ("mlp", batchnorm_training_mode, {}, "'bn' (BatchNormalization)", "training_mode=1"),
    ("mlp", half_even_input, {"input_scale": 16}, "'input_quant' (Quant)", "for any M"),
    ("cnn", hidden_conv_zero_padding, {}, "'conv2' (Conv)", "pads with 0.0"),
    ("cnn", conv_without_padding, {}, "'conv0' (Conv)", "keeps the image size"),
    ("cnn", conv_padded_twice, {}, "'conv2' (Conv)", "padded twice"),
    ("cnn", first_conv_zero_pad_off_level, {"input_scale": 15}, "'conv0' (Conv)", "input level 0"),
    ("cnn", conv_attr("strides", [2, 2]), {}, "'conv2' (Conv)", "attribute strides=[2, 2]"),
    ("cnn", conv_attr("dilations", [2, 2]), {}, "'conv2' (Conv)", "attribute dilations=[2, 2]"),
    ("cnn", conv_attr("group", 2), {}, "'conv2' (Conv)", "attribute group=2"),
    ("cnn", conv_attr("auto_pad", "SAME_UPPER"), {}, "'conv2' (Conv)", "auto_pad=SAME_UPPER"),
    ("cnn", pool_attr("kernel_shape", [3, 3]), {}, "'pool1' (MaxPool)", "kernel_shape=[3, 3]"),
    ("cnn", pool_attr("strides", [1, 1]), {}, "'pool1' (MaxPool)", "strides=[1, 1]"),
    ("cnn", pool_attr("ceil_mode", 1), {}, "'pool1' (MaxPool)", "ceil_mode=1"),
    ("cnn", pool_after_dense, {}, "'dense_pool' (MaxPool)", "after a conv"),
    ("cnn", pad_reflect, {}, "'conv2_pad' (Pad)", "mode=reflect"),
    ("cnn", conv_is_last, {}, "'conv2' (Conv)", "classifier is a dense layer"),
]


@pytest.mark.parametrize("base, edit, kw, named, words", CASES,
                         ids=[c[1].__name__ for c in CASES])
def test_refused_by_name(base, edit, kw, named, words, bases, tmp_path):
    proto = onnx.ModelProto()
    proto.CopyFrom(bases[base])
    edit(proto)
    with pytest.raises(UnsupportedModelError) as e:
        _import(proto, tmp_path, **kw)
    message = str(e.value)
    assert message.startswith(str(tmp_path / "edited.onnx"))
    assert named in message and words in message, message
    assert "\n" not in message


def test_graph_level_refusals(bases, tmp_path):
    """Whole-graph problems name the file and what is wrong."""
    cases = [(two_outputs, "has 2 outputs"), (dynamic_input, "is not fixed")]
    for edit, words in cases:
        proto = onnx.ModelProto()
        proto.CopyFrom(bases["mlp"])
        edit(proto)
        with pytest.raises(UnsupportedModelError, match=words):
            _import(proto, tmp_path)
    with pytest.raises(UnsupportedModelError, match="no such file"):
        import_details(tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(UnsupportedModelError, match="not an ONNX model"):
        import_details(tmp_path / "text.onnx")
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Mul", ["x", "c"], ["y"], name="scale")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[onnx.numpy_helper.from_array(np.float32(2), "c")]))
    with pytest.raises(UnsupportedModelError, match="no MatMul, Gemm or Conv"):
        _import(proto, tmp_path)


def test_a_signed_input_quantizer_without_ties_imports_exactly(bases, tmp_path):
    """The same 2-bit BNN-PYNQ input on raw/15 has no ties: levels of raw/M for M in (22, 24]."""
    from xnorflow.sw.qonnx.check import compare
    proto = onnx.ModelProto()
    proto.CopyFrom(bases["mlp"])
    half_even_input(proto)
    imported = _import(proto, tmp_path, input_scale=15)
    assert imported.model.input.bits == 2 and 22 < imported.model.input.max_value <= 24
    raw = np.random.default_rng(1).integers(0, 16, size=(50, 16))
    result = compare(imported, tmp_path / "edited.onnx", raw)
    assert result["class_disagreements"] == 0 and result["last_layer_integer_differences"] == 0


def _cli(argv, tmp_path):
    """Run the import/export commands the way sw/cli.py does (its parser and error handling)."""
    code = ("import sys, argparse\n"
            "from xnorflow.sw.errors import XnorflowError\n"
            "from xnorflow.sw.qonnx.cli import add_parser\n"
            "p = argparse.ArgumentParser(prog='xnorflow')\n"
            "sub = p.add_subparsers(dest='command', required=True)\n"
            "add_parser(sub)\n"
            "a = p.parse_args(sys.argv[1:])\n"
            "try:\n    sys.exit(a.func(a) or 0)\n"
            "except XnorflowError as e:\n"
            "    print(f'xnorflow {a.command}: error: {e}', file=sys.stderr); sys.exit(2)\n")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          cwd=tmp_path)


def test_cli_refusal_is_one_line_and_writes_nothing(bases, tmp_path):
    proto = onnx.ModelProto()
    proto.CopyFrom(bases["mlp"])
    relu_activation(proto)
    onnx.save(proto, str(tmp_path / "relu.onnx"))
    out = tmp_path / "relu.xnf"
    r = _cli(["import", str(tmp_path / "relu.onnx"), "-o", str(out)], tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("xnorflow import: error: ") and r.stderr.count("\n") == 1
    assert "'fc1_threshold' (Relu)" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_without_the_extra_the_commands_say_which_to_install(tmp_path, monkeypatch):
    """With onnx unimportable, import and export stop before any work with the extra's name."""
    from xnorflow.sw.qonnx import cli
    monkeypatch.setitem(sys.modules, "onnx", None)
    parser = argparse.ArgumentParser(prog="xnorflow")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    for argv in (["import", "m.onnx", "-o", str(tmp_path / "m.xnf")],
                 ["export", "m.xnf", "-o", str(tmp_path / "m.onnx")]):
        args = parser.parse_args(argv)
        with pytest.raises(XnorflowError) as e:
            args.func(args)
        assert str(e.value).startswith("install the onnx extra: pip install 'xnorflow[onnx]'")
    assert not list(tmp_path.iterdir())


def test_zero_one_activations_import_exactly(bases, tmp_path):
    """A hidden quantizer with levels {0, 1} (out_scale 1, out_bias 0): the next layer's
    accumulator is (acc + ΣW)/2, a per-channel offset folded into its thresholds."""
    from xnorflow.sw.qonnx.check import compare
    proto = onnx.ModelProto()
    proto.CopyFrom(bases["mlp"])
    mt = E.node(proto, "fc1_threshold")
    E.set_attr(mt, "out_scale", 1.0)
    E.set_attr(mt, "out_bias", 0.0)
    E.set_attr(mt, "out_dtype", "BINARY")
    imported = _import(proto, tmp_path)
    fc2 = next(t for t in imported.trace if t.layer == "fc2")
    assert (fc2.gain == 0.5).all() and (fc2.offset != 0).any()
    raw = np.random.default_rng(2).integers(0, 4, size=(200, 16))
    result = compare(imported, tmp_path / "edited.onnx", raw)
    assert result["class_disagreements"] == result["hidden_bit_differences"] == 0
    assert result["last_layer_integer_differences"] == result["hidden_integer_differences"] == 0


def _float32_head(p, ops):
    """Replace the exported float64 head (Cast … Add) by float32 ``ops`` [(op, value)]."""
    head = [n for n in p.graph.node if n.name.startswith("head_") or n.name == "fc3_cast"]
    for n in head:
        p.graph.node.remove(n)
    tensor = "fc3_acc"
    for i, (op, value) in enumerate(ops):
        E.set_init(p, f"h{i}", np.asarray(value, np.float32))
        out = "scores" if i == len(ops) - 1 else f"h{i}_out"
        p.graph.node.append(helper.make_node(op, [tensor, f"h{i}"], [out], name=f"h{i}"))
        tensor = out
    p.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    del p.graph.value_info[:]


@pytest.mark.parametrize("order", ["tensornorm", "composed"])
def test_float32_heads_keep_the_executors_classes(order, bases, tmp_path):
    """BNN-PYNQ's TensorNorm order (Sub, Div, Mul, Add) fills the head's own fields; another
    order becomes one affine map; both give the executor's class on every input."""
    from xnorflow.sw.qonnx.check import compare
    rng = np.random.default_rng(5)
    proto = onnx.ModelProto()
    proto.CopyFrom(bases["mlp"])
    ops = [("Sub", rng.normal(size=4)), ("Div", rng.uniform(1, 2, size=4)),
           ("Mul", rng.uniform(0.5, 2, size=4)), ("Add", rng.normal(size=4))]
    if order == "composed":  # Add before Mul, then Sub: not the head's own order
        ops = [ops[3], ops[2], ops[0], ops[1]]
    _float32_head(proto, ops)
    imported = _import(proto, tmp_path)
    head = imported.model.head
    if order == "tensornorm":
        assert np.array_equal(head.mean, np.float32(ops[0][1]).astype(np.float64))
        assert np.array_equal(head.sigma, np.float32(ops[1][1]).astype(np.float64))
    else:
        assert (head.mean == 0).all() and (head.sigma == 1).all() and (head.gamma == 1).all()
    assert imported.head_check["argmax_identical"]  # every pair of classes and accumulators
    raw = rng.integers(0, 4, size=(200, 16))
    result = compare(imported, tmp_path / "edited.onnx", raw)
    assert result["class_disagreements"] == 0 and result["last_layer_integer_differences"] == 0


def test_a_float32_tie_the_float64_head_breaks_is_reported(bases, tmp_path):
    """Scores acc and acc + 1e-9: equal in the graph's float32 (class 0 wins the tie), not in
    the host head's float64 (class 1 wins). The import says so, and the CLI warns."""
    proto = onnx.ModelProto()
    proto.CopyFrom(bases["mlp"])
    _float32_head(proto, [("Add", [0.0, 1e-9, 0.0, 0.0])])
    imported = _import(proto, tmp_path)
    check = imported.head_check
    assert not check["argmax_identical"] and check["disagreements"] > 0
    assert check["example"]["classes"] == [0, 1]
    r = _cli(["import", str(tmp_path / "edited.onnx"), "-o", str(tmp_path / "m.xnf")], tmp_path)
    assert r.returncode == 0 and "warning: the host head's float64 scores order classes [0, 1]" \
        in r.stderr


def test_damaged_xnorflow_metadata_is_refused_by_key(bases, tmp_path):
    for key, value, words in (("xnorflow.meta", "{oops", "'xnorflow.meta' is not a JSON dict"),
                              ("xnorflow.input_scale", "inf", "'xnorflow.input_scale' is 'inf'")):
        proto = onnx.ModelProto()
        proto.CopyFrom(bases["mlp"])
        next(p for p in proto.metadata_props if p.key == key).value = value
        with pytest.raises(UnsupportedModelError, match=words):
            _import(proto, tmp_path)
