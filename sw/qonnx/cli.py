"""``xnorflow import`` and ``xnorflow export``: QONNX in and out (docs/qonnx.md).

Both need the optional ONNX packages; without them they stop with
``install the onnx extra: pip install 'xnorflow[onnx]'`` (exit 2). Nothing is imported from
them until a command runs, so ``xnorflow --help`` works without the extra.
"""
import json
import sys

from xnorflow.sw import xnf
from xnorflow.sw.argtypes import bounded, int_range, output_file
from xnorflow.sw.compile import compile_checkpoint
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.qonnx import require_extra
from xnorflow.sw.qonnx.exporter import default_input_scale, export_onnx
from xnorflow.sw.qonnx.importer import import_details

#: The graph's input is raw/S; raw values are the integers 0..ceil(S) (sw/qonnx/inputs.py).
input_scale_type = bounded(float, lambda v: 1.0 <= v <= 65535.0, "a number in [1, 65535]")


def add_parser(sub):
    p = sub.add_parser(
        "import", help="read a QONNX binary network (Brevitas, FINN) into a model file (.xnf)",
        description="Fold a QONNX graph (BipolarQuant/Quant/MultiThreshold, MatMul/Gemm/Conv, "
                    "BatchNormalization, MaxPool, the last layer's affine) into xnorflow's "
                    "model contracts: input levels, integer thresholds proven against qonnx's "
                    "executor over every accumulator value, and the host head. Unsupported "
                    "nodes are refused by name (docs/qonnx.md).")
    p.add_argument("model", help="the QONNX model file (.onnx)")
    p.add_argument("-o", "--out", required=True, type=output_file,
                   help="the .xnf file to write (its directory must exist)")
    p.add_argument("--input-bits", type=int_range(1, 8), default=None, metavar="K",
                   help="bits k of xnorflow's input levels (default: the bit width of the "
                        "graph's input quantizer; required when the graph has none)")
    p.add_argument("--input-scale", type=input_scale_type, default=None, metavar="S",
                   help="the graph's input is raw/S, raw pixel values 0..S (default: the scale "
                        "an xnorflow export recorded, else 255: BNN-PYNQ's images in [0, 1]; "
                        "use 16 for scikit-learn's digits)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run_import)

    e = sub.add_parser(
        "export", help="write a model as QONNX (.onnx) for qonnx, FINN and other ONNX tools",
        description="Write a compiled model (or a checkpoint, compiled first) as a QONNX graph "
                    "that qonnx's executor runs with the golden model's integers and classes: "
                    "MultiThreshold input levels and thresholds, BipolarQuant weights, "
                    "MatMul/Conv/MaxPool, and the host head in float64 (docs/qonnx.md).")
    e.add_argument("model", help="a compiled model (.xnf) or a training checkpoint (model.pt)")
    e.add_argument("-o", "--out", required=True, type=output_file,
                   help="the .onnx file to write (its directory must exist)")
    e.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    e.set_defaults(func=run_export)


def layer_rows(model):
    """One JSON row per layer, as ``xnorflow compile --json`` reports them."""
    return [{"name": lyr.name, "type": lyr.type, "in": lyr.in_features, "out": lyr.out_features,
             "input": f"{lyr.input_kind}{lyr.input_bits}", "output": lyr.output}
            for lyr in model.layers]


def run_import(args):
    require_extra()
    imported = import_details(args.model, args.input_bits, args.input_scale)
    model = imported.model
    xnf.save(model, args.out)
    report = {"model": args.model, "out": args.out, "name": model.name,
              "input": {"features": model.input.features, "bits": model.input.bits,
                        "max_value": model.input.max_value, "input_scale": imported.input_scale},
              "layers": layer_rows(model), "head": imported.head_check}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"imported {args.model} → {args.out}: {len(model.layers)} layers, "
              f"{model.input.bits}-bit input (raw/{imported.input_scale:g}, max_value "
              f"{model.input.max_value:g}), every threshold checked against qonnx's executor",
              file=sys.stderr)
    if not imported.head_check["argmax_identical"]:
        ex = imported.head_check.get("example", {})
        print(f"xnorflow import: warning: the host head's float64 scores order classes "
              f"{ex.get('classes')} at accumulators {ex.get('acc')} differently from the graph's "
              f"float32 scores ({imported.head_check['disagreements']} such pairs): inputs "
              f"reaching a near-tie there may get another class than qonnx's executor gives",
              file=sys.stderr)
    return 0


def load_model(path):
    """A compiled model from a ``.xnf`` file, or compiled from a training checkpoint."""
    with open(path, "rb") as f:
        magic = f.read(len(xnf.MAGIC))
    if magic == xnf.MAGIC:
        return xnf.load(path)
    return compile_checkpoint(path)[0]


def run_export(args):
    require_extra()
    try:
        model = load_model(args.model)
    except OSError as e:
        raise XnorflowError(f"{args.model}: cannot read: {e.strerror or e}") from None
    proto = export_onnx(model, args.out)
    report = {"model": args.model, "out": args.out, "name": model.name,
              "input_scale": default_input_scale(model),
              "input_shape": [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim],
              "nodes": len(proto.graph.node), "layers": layer_rows(model)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"exported {args.model} → {args.out}: {len(proto.graph.node)} ONNX nodes, input "
              f"raw/{report['input_scale']:g} of shape {report['input_shape']}", file=sys.stderr)
    return 0
