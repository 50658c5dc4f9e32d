"""``xnorflow inspect``: the layer table of a compiled model.

Per layer: shape (``H×W×C→H×W×C`` for conv and pool), input encoding, threshold range,
negative directions ('neg'; for a max-pool its AND channels), saturated channels (always 0 /
always 1), memory (packed weights and thresholds) and, for an accelerator configuration,
predicted cycles.
"""
import json

from xnorflow.hw.config import ArrayConfig
from xnorflow.sw import xnf
from xnorflow.sw.argtypes import int_range
from xnorflow.sw.program import predict_cycles


def layer_rows(model, config=None, batch=1):
    """One dict per layer with everything the table shows (each layer type's
    ``table_row``, plus the cycle model's cycles on ``config``)."""
    cycles = None
    if config is not None:
        cycles = predict_cycles(model.layers, config, batch)["by_layer"]
    rows = []
    for layer in model.layers:
        row = layer.table_row()
        if cycles is not None:
            row["cycles"] = int(cycles[layer.name])
        rows.append(row)
    return rows


def format_table(model, rows):
    head = ["layer", "shape", "input", "out", "threshold range", "neg", "sat 0/1", "weights B",
            "thr B"]
    if rows and "cycles" in rows[0]:
        head.append("cycles")
    lines = [head]
    for r in rows:
        thr = "-" if r["threshold_min"] is None else f"{r['threshold_min']}..{r['threshold_max']}"
        shape = r.get("shape", f"{r['in_features']}→{r['out_features']}")
        line = [r["name"], shape, r["input"], r["output"], thr,
                str(r["negative_direction"]),
                f"{r['saturated_always_0']}/{r['saturated_always_1']}",
                str(r["weight_bytes"]), str(r["threshold_bytes"])]
        if "cycles" in r:
            line.append(str(r["cycles"]))
        lines.append(line)
    widths = [max(len(row[c]) for row in lines) for c in range(len(head))]
    text = [f"model '{model.name}': {model.input.features} inputs of {model.input.bits} bits "
            f"(raw {model.input.max_value:g} = full scale), {model.num_classes} classes"]
    for j, row in enumerate(lines):
        text.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if j == 0:
            text.append("  ".join("-" * w for w in widths))
    total_w = sum(r["weight_bytes"] + r["threshold_bytes"] for r in rows)
    text.append(f"total parameter memory: {total_w} bytes")
    if rows and "cycles" in rows[0]:
        text.append(f"predicted cycles per batch: {sum(r['cycles'] for r in rows)}")
        notes = dict.fromkeys(layer.table_note for layer in model.layers)
        text.extend(note for note in notes if note is not None)
    return "\n".join(text)


def add_parser(sub):
    p = sub.add_parser("inspect", help="print a compiled model's layer table",
                       description="Print a compiled model's layers: shapes, input and output "
                                   "kinds, parameter bytes and, with --array, the cycle model's "
                                   "cycles per layer on that configuration.")
    p.add_argument("model", help="a compiled model (.xnf)")
    p.add_argument("--array", default=None,
                   help="accelerator configuration PxQxK: adds predicted cycles per layer "
                        "(default: none, no cycles)")
    p.add_argument("--batch", type=int_range(1, 65535), default=1,
                   help="inputs per run for the cycle figures (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


def run(args):
    model = xnf.load(args.model)
    config = None
    if args.array:
        config = ArrayConfig.parse(args.array)
    rows = layer_rows(model, config, args.batch)
    if args.json:
        print(json.dumps({"model": model.name, "input_bits": model.input.bits,
                          "layers": rows, "meta": model.meta}, indent=2))
    else:
        print(format_table(model, rows))
    return 0
