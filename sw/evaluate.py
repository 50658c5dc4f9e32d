"""``xnorflow eval``: run the golden model on a data set and compare it with PyTorch.

The comparison is exact: every layer's integers, every hidden bit and the host scores of the
compiled model must equal the PyTorch model's eval-mode values; the counts of differences are
reported, never a tolerance.
"""
import json
import sys

import numpy as np

from xnorflow.sw import xnf
from xnorflow.sw.argtypes import output_file, positive_int
from xnorflow.sw.bits import unpack_bits
from xnorflow.sw.data import DATASETS, DatasetError, load_dataset, quantize_inputs
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.outputs import write_outputs
from xnorflow.sw.progress import progress_bar


def dataset_inputs(model, dataset, data_dir=None, limit=None):
    """(uint8 inputs [B, N] quantised for ``model``, labels [B]) of a data set's test split."""
    try:
        ds = load_dataset(dataset, data_dir)
    except DatasetError as e:
        raise XnorflowError(str(e)) from None
    if ds.in_features != model.input.features:
        raise XnorflowError(f"model '{model.name}' takes {model.input.features} inputs but "
                            f"{dataset} images have {ds.in_features}")
    x = quantize_inputs(ds.x_test, model.input.bits, model.input.max_value)
    y = ds.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


#: Images per forward pass: a trace holds every layer's outputs in float64, and a CNN's feature
#: maps for the 10,000 Fashion-MNIST test images at once took 21 GB (killed by the OOM killer).
CHUNK = 500


def _chunks(x):
    return [x[i:i + CHUNK] for i in range(0, len(x), CHUNK)] or [x]


def torch_predictions(torch_model, x):
    """PyTorch's eval-mode predictions (int [B]) for uint8 inputs ``x`` [B, N]."""
    import torch
    preds = []
    with torch.no_grad():
        for xb in _chunks(x):
            trace = torch_model.trace(torch.from_numpy(xb.astype(np.float32)))
            preds.append(trace[-1]["scores"].double().numpy().argmax(axis=1))
    return np.concatenate(preds)


def _compare_chunk(model, torch_model, x):
    """Per-layer mismatch counts, predictions agreeing and scores equal for one chunk."""
    import torch
    outs = model.forward(x)
    with torch.no_grad():
        trace = torch_model.trace(torch.from_numpy(x.astype(np.float32)))
    layers = []
    for layer, (acc, out), t in zip(model.layers, outs, trace):
        entry = {"name": layer.name, "integer_mismatches": 0}
        if t["dot"] is not None:  # a max-pool has no integers, only bits
            dot = t["dot"].double().numpy()
            entry["integer_mismatches"] = int((dot != acc).sum())
        if t["bits"] is not None:
            bits = unpack_bits(out, layer.out_features)
            entry["bit_mismatches"] = int((bits != t["bits"].numpy()).sum())
        layers.append(entry)
    scores = model.head.scores(outs[-1][0])
    torch_scores = trace[-1]["scores"].double().numpy()
    return layers, int((scores.argmax(1) == torch_scores.argmax(1)).sum()), bool((scores == torch_scores).all())


def compare_with_torch(model, torch_model, x):
    """Exact comparison of the golden model with a PyTorch model (eval mode) on inputs ``x``
    (in chunks of :data:`CHUNK` images)."""
    layers, agree, scores_equal = None, 0, True
    for xb in _chunks(x):
        part, n_agree, eq = _compare_chunk(model, torch_model, xb)
        if layers is None:
            layers = part
        else:
            for total, entry in zip(layers, part):
                for key in ("integer_mismatches", "bit_mismatches"):
                    if key in entry:
                        total[key] += entry[key]
        agree += n_agree
        scores_equal &= eq
    return {
        "agree_with_torch": agree / len(x) if len(x) else 0.0,
        "hidden_bits_equal": all(e.get("bit_mismatches", 0) == 0 for e in layers),
        "integers_equal": all(e["integer_mismatches"] == 0 for e in layers),
        "scores_equal": scores_equal,
        "layers": layers,
    }


def evaluate(model, x, y, torch_model=None, progress=False, with_outputs=False):
    """Accuracy of the golden model, plus the exact comparison when a PyTorch model is given.

    ``progress``: a bar on stderr over the chunks of :data:`CHUNK` images (the Fashion-MNIST
    CNV takes minutes). ``with_outputs``: also return every image's predicted class and
    last-layer integers, ``(result, classes [B], scores [B, classes])``."""
    chunks = _chunks(x)
    bar = progress_bar(total=len(x), desc="eval", unit="img", disable=not progress)
    preds, accs, compared = [], [], []
    with bar:
        for xb in chunks:
            acc = model.forward(xb)[-1][0]  # what predict() computes, keeping the integers
            preds.append(model.head.scores(acc).argmax(axis=1))
            if with_outputs:
                accs.append(acc)
            if torch_model is not None:
                compared.append(compare_with_torch(model, torch_model, xb))
            bar.update(len(xb))
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    result = {"model": model.name, "images": int(len(x)),
              "accuracy": float((pred == y).mean()) if len(x) else 0.0}
    if torch_model is not None:
        result.update(_merge_comparisons(compared, [len(xb) for xb in chunks]))
    if not with_outputs:
        return result
    scores = np.concatenate(accs) if accs else np.zeros((0, model.num_classes), dtype=np.int64)
    return result, pred, scores


def _merge_comparisons(parts, sizes):
    """One :func:`compare_with_torch` result from the results of consecutive chunks."""
    layers = [dict(e) for e in parts[0]["layers"]]
    for part in parts[1:]:
        for total, entry in zip(layers, part["layers"]):
            for key in ("integer_mismatches", "bit_mismatches"):
                if key in entry:
                    total[key] += entry[key]
    agree = sum(p["agree_with_torch"] * n for p, n in zip(parts, sizes))
    return {
        "agree_with_torch": agree / sum(sizes) if sum(sizes) else 0.0,
        "hidden_bits_equal": all(e.get("bit_mismatches", 0) == 0 for e in layers),
        "integers_equal": all(e["integer_mismatches"] == 0 for e in layers),
        "scores_equal": all(p["scores_equal"] for p in parts),
        "layers": layers,
    }


def add_parser(sub):
    p = sub.add_parser("eval", help="run the golden model on a data set (and compare with PyTorch)",
                       description="Run the compiled model's golden (numpy) computation on a data "
                                   "set's test split and report its accuracy; with --checkpoint, "
                                   "also compare every layer's integers, every hidden bit and the "
                                   "scores with the PyTorch model, exactly. Exit 1 if they differ.")
    p.add_argument("model", help="a compiled model (.xnf)")
    p.add_argument("--dataset", required=True, choices=DATASETS, help="the test split to run")
    p.add_argument("--data-dir", default=None,
                   help="directory of the IDX files (fashion-mnist, mnist; default: the Debian "
                        "package's /usr/share/datasets/...) or of CIFAR-10's pickle batches")
    p.add_argument("--checkpoint", default=None,
                   help="the training checkpoint (model.pt) to compare with, exactly (default: none)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N test images (default: all)")
    p.add_argument("--outputs", type=output_file, default=None, metavar="FILE.npz",
                   help="write every image's predicted class ('classes') and last-layer "
                        "integers ('scores') in test-set order to this .npz file, for outside "
                        "comparisons (default: not written)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run_eval)


def run_eval(args):
    model = xnf.load(args.model)
    x, y = dataset_inputs(model, args.dataset, args.data_dir, args.limit)
    torch_model = None
    if args.checkpoint:
        from xnorflow.sw.train.checkpoint import load_checkpoint
        torch_model, _ = load_checkpoint(args.checkpoint)
    result = evaluate(model, x, y, torch_model, progress=not args.quiet,
                      with_outputs=args.outputs is not None)
    if args.outputs is not None:
        result, classes, scores = result
        write_outputs(args.outputs, classes, scores)
        result["outputs"] = args.outputs
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        line = f"{result['images']} images, accuracy {100 * result['accuracy']:.2f} %"
        if torch_model is not None:
            line += (f", agreement with PyTorch {100 * result['agree_with_torch']:.2f} %, hidden "
                     f"bits {'equal' if result['hidden_bits_equal'] else 'DIFFER'}, integers "
                     f"{'equal' if result['integers_equal'] else 'DIFFER'}")
        print(line)
    exact = torch_model is None or (result["hidden_bits_equal"] and result["integers_equal"]
                                    and result["agree_with_torch"] == 1.0)
    if not exact:
        print("xnorflow eval: the compiled model disagrees with PyTorch: this is a bug",
              file=sys.stderr)
    return 0 if exact else 1
