"""QONNX in and out over whole Fashion-MNIST test sets: xnorflow's golden model against qonnx's
executor, image by image (issue #27's done-when; docs/qonnx.md).

* **In:** Brevitas trains a TFC-style MLP (BNN-PYNQ's own ``FC`` class at 28×28, 1-bit input,
  weights and activations) and a small CNV-style CNN (tests/qonnx/brevitas_models.py) on
  Fashion-MNIST for a few epochs and exports them with its QONNX exporter; ``import_onnx``
  folds them; every test image runs through both.
* **Out:** xnorflow's own trained Fashion-MNIST models (``--xnf``, default the full CNV IR-Net
  and RBNN in benchmarks/results/fmnist_cnn/cnv) are exported and run through the executor.

Prints one JSON document: per model, images, class disagreements, last-layer integer
differences, hidden integer and bit differences, accuracies. Needs the onnx extra and the
Fashion-MNIST IDX files (the Debian package ``dataset-fashion-mnist``).

    .venv/bin/python benchmarks/qonnx_check.py [--epochs 2] [--limit N] [--out-dir DIR]
"""
import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "qonnx"))  # the Brevitas model builders

from xnorflow.sw.argtypes import nonnegative_int, output_dir, positive_int  # noqa: E402

DEFAULT_XNF = [ROOT / "benchmarks/results/fmnist_cnn/cnv/rbnn.xnf",
               ROOT / "benchmarks/results/fmnist_cnn/cnv/irnet_ft.xnf"]


def log(message):
    print(message, file=sys.stderr, flush=True)


def check(imported, onnx_path, ds, limit):
    """The comparison of :func:`xnorflow.sw.qonnx.check.compare` on the test set, with accuracies."""
    from xnorflow.sw.progress import progress_bar
    from xnorflow.sw.qonnx.check import Executor, compare
    raw = ds.x_test[:limit] if limit else ds.x_test
    labels = ds.y_test[:len(raw)]
    executor = Executor(onnx_path)
    start = time.monotonic()
    with progress_bar(total=len(raw), desc=imported.model.name, unit="img") as bar:
        result = compare(imported, onnx_path, raw, progress=bar, executor=executor)
    classes = result.pop("classes")
    result["executor"] = executor.mode
    result["accuracy"] = float((classes == labels).mean())
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def brevitas_model(kind, ds, epochs, out_dir):
    """Train, export and import one Brevitas model; returns (result entry, import)."""
    import brevitas_models as bm
    import torch

    from xnorflow.sw.qonnx.importer import import_details
    torch.manual_seed(0)
    model = bm.tfc(hidden=(64, 64, 64), image=(28, 28)) if kind == "tfc" else \
        bm.cnv(channels=(32, 64), hidden=128, image=(28, 28))
    bm.negate_half_the_batch_norms(model)
    start = time.monotonic()
    accuracy = bm.train(model, ds, epochs=epochs,
                        progress=lambda e: log(f"{kind}: epoch {e + 1}/{epochs}"))
    train_s = time.monotonic() - start
    path = Path(out_dir) / f"brevitas_{kind}_fmnist.onnx"
    with contextlib.redirect_stdout(sys.stderr):  # torch.onnx prints its progress on stdout
        bm.export(model, path, image=(28, 28))
    start = time.monotonic()
    imported = import_details(path, input_scale=255)
    entry = {"name": f"brevitas-{kind}", "source": "Brevitas export_qonnx", "onnx": str(path),
             "torch_accuracy": accuracy, "train_seconds": round(train_s, 1), "epochs": epochs,
             "import_seconds": round(time.monotonic() - start, 1),
             "input": {"bits": imported.model.input.bits,
                       "max_value": imported.model.input.max_value},
             "head": imported.head_check}
    return entry, imported


def exported_model(xnf_path, out_dir):
    """Export an xnorflow model and import the export (for the trace); returns (entry, import)."""
    from xnorflow.sw import xnf
    from xnorflow.sw.qonnx.exporter import export_onnx
    from xnorflow.sw.qonnx.importer import import_details
    model = xnf.load(xnf_path)
    path = Path(out_dir) / (Path(xnf_path).stem + ".onnx")
    export_onnx(model, path)
    imported = import_details(path)
    entry = {"name": model.name, "source": f"xnorflow export of {xnf_path}", "onnx": str(path),
             "round_trip_identical": xnf.to_bytes(imported.model) == xnf.to_bytes(model)}
    return entry, imported


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None,
                   help="Fashion-MNIST IDX directory (default: the Debian package's)")
    p.add_argument("--epochs", type=positive_int, default=2,
                   help="epochs of Brevitas training per model (default: 2)")
    p.add_argument("--limit", type=nonnegative_int, default=0,
                   help="only the first N test images (default: 0, all 10,000)")
    p.add_argument("--models", default="tfc,cnv",
                   help="Brevitas models to train, comma-separated from tfc, cnv, or '' "
                        "(default: tfc,cnv)")
    p.add_argument("--xnf", nargs="*", default=[str(x) for x in DEFAULT_XNF],
                   help="xnorflow models to export and check (default: the full-CNV IR-Net "
                        "and RBNN of benchmarks/results/fmnist_cnn/cnv)")
    p.add_argument("--out-dir", type=output_dir, default=None,
                   help="where the ONNX files go (default: a temporary directory)")
    args = p.parse_args(argv)

    import torch

    from xnorflow.sw.data import load_dataset
    torch.set_num_threads(1)
    ds = load_dataset("fashion-mnist", args.data_dir)
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="qonnx-check-")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    models = []
    for kind in [k for k in args.models.split(",") if k]:
        entry, imported = brevitas_model(kind, ds, args.epochs, out_dir)
        entry.update(check(imported, entry["onnx"], ds, args.limit))
        models.append(entry)
        log(json.dumps({k: entry[k] for k in ("name", "images", "class_disagreements")}))
    for path in args.xnf:
        entry, imported = exported_model(path, out_dir)
        entry.update(check(imported, entry["onnx"], ds, args.limit))
        models.append(entry)
        log(json.dumps({k: entry[k] for k in ("name", "images", "class_disagreements")}))
    keys = ("class_disagreements", "last_layer_integer_differences",
            "hidden_integer_differences", "hidden_bit_differences")
    print(json.dumps({"dataset": "fashion-mnist", "models": models,
                      "total": {k: sum(m[k] for m in models) for k in keys}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
