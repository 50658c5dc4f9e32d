"""CNNs on the accelerator core: cycles, utilisation and inferences/s, proven on Verilator.

Two models (docs/conv.md, "On the core"):

* ``digits-cnn``: the trained digits CNN (conv16 → pool → conv32 → pool → 64 → 10, IR-Net
  and RBNN, the checkpoints the test suite caches, or ``--checkpoint``) over the whole digits
  test set: accuracy, agreement with PyTorch, bit-exactness.
* ``fmnist-cnn-<method>``: trained Fashion-MNIST CNNs (``--fmnist-checkpoints
  irnet=A/model.pt,rbnn=B/model.pt``) over the whole Fashion-MNIST test set (or
  ``--fmnist-images``) on the CNV's array (below; the ULX3S default's 256-word activation
  banks do not hold a 28×28×32 map): accuracy, agreement with PyTorch, bit-exactness, cycles
  (docs/conv.md gives the training commands).
* ``fmnist-cnv``: the CNV topology on 28×28 Fashion-MNIST images (conv64 ×2 → pool →
  conv128 ×2 → pool → 256 → 10, 8-bit input) with random weights and data-balanced thresholds
  (training it takes ~10 CPU-hours here), over ``--cnv-images`` test images: bit-exactness and
  the cycle counters at full size. Weights do not change cycles.

Every run goes through the driver into the Verilator-simulated accelerator (link included);
the core's counters must equal the cycle model (``predicted_cycles_match``). Inferences per
second use ``--fmax-mhz``, by default the post-route Fmax of the model's array on the ULX3S
(the ``bitstreams/ulx3s-85f-…/report.json`` whose ``array`` is the model's, found by
``xnorflow.sw.synth.find_builds``; the board clock when it was not built).

Prints ONE JSON document on stdout (progress on stderr) and writes a bar chart of cycles per
layer::

    .venv/bin/python benchmarks/cnn_core.py --plot benchmarks/results/cnn_core.png \\
        > benchmarks/results/cnn_core.json
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from merge import merge_points  # noqa: E402  (benchmarks/merge.py, beside this script)

# Q = 4 holds the CNV's feature maps in the ECP5-85F's block RAM (every column bank keeps the
# whole map); w_depth holds its 7,304 weight words per row bank. issue_reg=1: with 182 of the
# 208 block RAMs in use the weight-address route set Fmax at 41.6 MHz; registered, 59.1 MHz
# (53.3 MHz with the current core: docs/synthesis.md).
CNV_ARRAY = "8x4x32,w_depth=7424,thr_depth=128,in_depth=1600,act_depth=1600,out_depth=64,issue_reg=1"
DIGITS_ARRAY = "8x8x32"


def log(msg):
    print(f"[cnn_core] {msg}", file=sys.stderr, flush=True)


def build_fmax(array):
    """(Fmax in MHz, where it came from): the post-route Fmax of the ULX3S build of ``array``
    (``xnorflow synth --board ulx3s-85f --array ARRAY`` writes its report.json), else the
    board's clock."""
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.sw.synth import board_clock, find_builds
    cfg = ArrayConfig.parse(array).format()
    for path, report in find_builds("ulx3s-85f", cfg, root=ROOT / "bitstreams"):
        return float(report["fmax_mhz"]), str(path.relative_to(ROOT))
    clock = board_clock("ulx3s-85f")
    log(f"no ULX3S build of {cfg}: using the board clock {clock} MHz")
    return clock, "board clock (no build)"


def summarise(name, result, model, config, fmax=None):
    from xnorflow.sw.program import predict_cycles
    from xnorflow.hw.config import ArrayConfig
    cfg = ArrayConfig.parse(config)
    cycles = predict_cycles(model.layers, cfg, 1)
    # The conv stack: the layers whose output is an image (its fused pools add 0 cycles, 0 MACs).
    conv = [lyr for lyr in model.layers if lyr.out_image is not None]
    conv_cycles = sum(cycles["by_layer"][lyr.name] for lyr in conv)
    words = sum(lyr.overlay_utilisation(cfg, 1) * cycles["by_layer"][lyr.name] for lyr in conv)
    macs = sum(lyr.binary_macs() for lyr in conv)
    per_inf = result["cycles_per_inference"]
    fmax, source = (fmax, "--fmax-mhz") if fmax else build_fmax(config)
    return {
        "model": name, "array": cfg.format(), "images": result["images"],
        "mismatches": result["mismatches"], "accuracy": result["accuracy"],
        "agree_with_torch": result["agree_with_torch"],
        "predicted_cycles_match": result["predicted_cycles_match"],
        "cycles_per_inference": per_inf, "cycles_by_layer": result["cycles_by_layer"],
        # words issued / cycles, and ideal bit-MACs / (P·Q·K·cycles), over the conv layers
        "conv_word_utilization": words / conv_cycles,
        "conv_bit_utilization": macs / (cfg.P * cfg.Q * cfg.K * conv_cycles),
        "fmax_mhz": fmax, "fmax_source": source,
        "inferences_per_second": fmax * 1e6 / per_inf,
        "sim_wall_seconds": result["wall_seconds"],
    }


def _state(state_dir, name):
    """The resumable simulation journal of point ``name`` under ``--state-dir`` (or None)."""
    return None if state_dir is None else Path(state_dir) / f"{name}.npz"


def trained_cnn(dataset, method, checkpoint, fmax, images=None, jobs=1, array=DIGITS_ARRAY,
                state_dir=None):
    """A trained CNN over ``dataset``'s test set (the first ``images``) on Verilator.

    ``checkpoint`` is a training checkpoint (``model.pt``: the point also reports agreement with
    PyTorch) or a compiled ``.xnf`` (the RTL checked against the golden model only, for models
    whose checkpoint is not kept, such as the committed ones under ``benchmarks/results``)."""
    from xnorflow.simulate import simulate
    from xnorflow.sw.evaluate import dataset_inputs, torch_predictions
    if str(checkpoint).endswith(".xnf"):
        from xnorflow.sw import xnf
        model, torch_model = xnf.load(checkpoint), None
    else:
        from xnorflow.sw.compile import compile_checkpoint
        model, torch_model, _ = compile_checkpoint(checkpoint)
    x, y = dataset_inputs(model, dataset, None, images)
    torch_pred = None if torch_model is None else torch_predictions(torch_model, x)
    name = f"{'digits' if dataset == 'digits' else 'fmnist'}-cnn-{method}"
    log(f"{dataset} CNN ({method}, {checkpoint}): {len(x)} images on Verilator, {array}")
    result = simulate(model, x, y, config=array, torch_predictions=torch_pred, jobs=jobs,
                      state=_state(state_dir, name))
    point = summarise(name, result, model, array, fmax)
    point["checkpoint"] = str(checkpoint)
    return point


def digits_cnn(method, checkpoint, fmax):
    if checkpoint is None:
        from xnf_testing import trained_digits_model
        checkpoint, _ = trained_digits_model(method, cnn=True)
    return trained_cnn("digits", method, checkpoint, fmax)


def _named_paths(text):
    """``irnet=a/model.pt,rbnn=b/model.pt`` → [(name, path)]."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--fmnist-checkpoints: expected method=path, got {item!r}")
        if not Path(path).is_file():
            raise SystemExit(f"--fmnist-checkpoints: {path} (method {name}) does not exist")
        out.append((name, path))
    return out


def fmnist_cnv(images, fmax):
    from xnorflow.simulate import simulate
    from xnorflow.sw.data import load_dataset, quantize_inputs
    from xnorflow.sw.random_models import balanced_cnn_model
    ds = load_dataset("fashion-mnist")
    x = quantize_inputs(ds.x_test[:images], 8, ds.max_value)
    rng = np.random.default_rng(28)
    model = balanced_cnn_model(rng, (28, 28, 1), [64, 64, "pool", 128, 128, "pool"], [256, 10],
                               8, x[:16], name="cnv-random")
    log(f"Fashion-MNIST CNV (random weights): {images} images on Verilator, {CNV_ARRAY}")
    result = simulate(model, x, ds.y_test[:images], config=CNV_ARRAY)
    return summarise("fmnist-cnv-random", result, model, CNV_ARRAY, fmax)


def plot(points, path, columns=4):
    """Cycles by layer, one panel per model, ``columns`` panels per row (titles: the Verilator
    verdict and the rate)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = -(-len(points) // columns)
    cols = min(columns, len(points))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat[len(points):]:
        ax.set_visible(False)
    for ax, p in zip(axes.flat, points):
        names = list(p["cycles_by_layer"])
        ax.bar(names, [p["cycles_by_layer"][n] for n in names], color="#4477aa")
        accuracy = "" if p["accuracy"] is None else f", {100 * p['accuracy']:.2f} %"
        ax.set_title(f"{p['model']} on {p['array'].split(',')[0]}\n"
                     f"{p['images']:,} images, {p['mismatches']} mismatches{accuracy}\n"
                     f"{p['cycles_per_inference']:,.0f} cycles, "
                     f"{p['inferences_per_second']:,.0f} inf/s at {p['fmax_mhz']:.0f} MHz",
                     fontsize=8.5)
        ax.set_ylabel("cycles per inference")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="irnet,rbnn", help="digits CNN methods")
    ap.add_argument("--checkpoint", default=None, help="a digits CNN checkpoint instead")
    ap.add_argument("--fmnist-checkpoints", default="", metavar="M=PATH,...",
                    help="trained Fashion-MNIST CNN checkpoints (model.pt) or compiled models "
                         "(.xnf), e.g. irnet=a/model.pt,rbnn=b/model.xnf")
    ap.add_argument("--fmnist-images", type=int, default=None,
                    help="Fashion-MNIST test images per trained CNN (default: all 10,000)")
    ap.add_argument("--jobs", type=int, default=1, help="Verilator processes for the trained CNNs")
    ap.add_argument("--cnv-images", type=int, default=100,
                    help="Fashion-MNIST test images through the CNV (0 = skip)")
    ap.add_argument("--state-dir", default=None, metavar="DIR",
                    help="keep each Fashion-MNIST model's simulation resumable in DIR/<model>.npz "
                         "(xnorflow sim --state): a stopped run continues where it stopped")
    ap.add_argument("--fmax-mhz", type=float, default=None)
    ap.add_argument("--plot", default=str(ROOT / "benchmarks" / "results" / "cnn_core.png"))
    ap.add_argument("--update", default=None, metavar="JSON",
                    help="an earlier output of this benchmark: print its points with this run's "
                         "points added (a point of the same model replaced), so models measured "
                         "at different times share one table and chart")
    args = ap.parse_args(argv)
    fmax = args.fmax_mhz
    fmnist = _named_paths(args.fmnist_checkpoints)
    points = [digits_cnn(m, args.checkpoint, fmax) for m in args.methods.split(",") if m]
    points += [trained_cnn("fashion-mnist", m, path, fmax, args.fmnist_images, args.jobs, CNV_ARRAY,
                           args.state_dir)
               for m, path in fmnist]
    if args.cnv_images:
        points.append(fmnist_cnv(args.cnv_images, fmax))
    if args.update:
        points = merge_points(args.update, points, "model")
    plot(points, args.plot)
    print(json.dumps({"benchmark": "cnn_core", "points": points, "plot": args.plot}, indent=1))
    bad = [p["model"] for p in points if p["mismatches"] or not p["predicted_cycles_match"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
