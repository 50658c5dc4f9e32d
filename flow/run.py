"""``xnorflow run``: the whole flow on the embedded digits data, with one report at the end.

train (IR-Net MLP) → compile (thresholds proven by brute force) → golden model vs PyTorch →
Verilator over the whole test set on the overlay and on the dataflow build (bit-exact check) →
synthesize both for the iCEBreaker → profile, naming the architecture that serves the model
best → ``DIR/report.md``, ``DIR/report.json`` and the plots.

Every stage prints what it is doing on stderr; the command fails (exit status 1) if any
bit-exactness check fails, because that is a bug, not a result.
"""
import json
import sys
import time
from pathlib import Path

from xnorflow.profile import plot_profile, profile, profile_dataflow
from xnorflow.simulate import simulate
from xnorflow.sw import xnf
from xnorflow.sw.argtypes import output_dir, positive_int
from xnorflow.sw.build_records import resolve_dataflow_build
from xnorflow.sw.compile import check_fit, compile_checkpoint
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.evaluate import dataset_inputs, evaluate, torch_predictions
from xnorflow.sw.synth import board_config
from xnorflow.sw.train.cli import parse_hidden
from xnorflow.targets import DataflowTarget, OverlayTarget

DEFAULT_OUT = "runs/digits-irnet"
BOARD = "icebreaker"
# Hidden widths of the MLP the main job trains: the digits MLP 64-256-256-10, whose weights
# live in the iCEBreaker's SPRAM at its default array configuration (docs/core.md).
DEFAULT_HIDDEN = [256, 256]


def _log(msg):
    print(f"xnorflow run: {msg}", file=sys.stderr, flush=True)


class _Stages:
    """Times each stage and keeps what it reports."""

    def __init__(self, total):
        self.total = total
        self.seconds = {}

    def __call__(self, name, fn, *args, **kw):
        _log(f"[{len(self.seconds) + 1}/{self.total}] {name}")
        start = time.monotonic()
        result = fn(*args, **kw)
        self.seconds[name] = round(time.monotonic() - start, 1)
        return result


def _train(out, hidden, epochs, seed):
    import torch

    from xnorflow.sw.train import methods
    from xnorflow.sw.train.checkpoint import save_checkpoint
    from xnorflow.sw.train.plots import plot_history

    # A 64-128-128-10 MLP gains nothing from a second thread, and OpenMP workers spinning on a
    # busy 2-core machine slowed epochs from 0.6 s to 10 s (measured).
    torch.set_num_threads(1)
    model, meta, metrics = methods.train("irnet", "digits", hidden=hidden, epochs=epochs,
                                         seed=seed, progress=True)
    save_checkpoint(out / "model.pt", model, meta)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    plot_history(metrics["history"], out / "training.png",
                 f"IR-Net on digits: test {100 * metrics['test_accuracy']:.2f}%")
    return metrics


def _compile(out, config):
    compiled, torch_model, _ = compile_checkpoint(out / "model.pt")
    capacity = check_fit(compiled, config)
    xnf.save(compiled, out / "model.xnf")
    return compiled, torch_model, capacity


ARCHS = ("overlay", "dataflow")


def _simulate_all(targets, compiled, x, y, torch_pred):
    return {arch: simulate(compiled, x, y, engine="verilator", target=target,
                           torch_predictions=torch_pred)
            for arch, target in targets.items()}


def _profile_all(targets, compiled, out, dataflow_build=None):
    """Synthesize and profile every target on the board (the dataflow one as
    ``dataflow_build``, its clock, placer and seed); the overlay's chart is profile.png, the
    dataflow build's profile-dataflow.png."""
    results = {}
    for arch, target in targets.items():
        if arch == "overlay":
            results[arch] = profile(compiled, BOARD, target.config.format(), simulate=False,
                                    log=_log)
        else:
            b = dataflow_build
            results[arch] = profile_dataflow(compiled, BOARD, b.config, simulate=False,
                                             clock_mhz=b.clock_mhz, placer=b.placer, seed=b.seed)
        name = "profile.png" if arch == "overlay" else f"profile-{arch}.png"
        plot_profile(results[arch], out / name, f"{compiled.name} on {BOARD} ({arch})")
    return results


def best_arch(profiles):
    """The architecture that serves the model best: the most inferences/s at its build's
    clock among the builds that met timing (any build when none did)."""
    met = {a: p for a, p in profiles.items() if p["synthesis"]["timing_met"]} or profiles
    return max(met, key=lambda a: met[a]["inferences_per_second"])


def run_flow(out, epochs=None, seed=0, array=None, synth=True, hidden=None, archs=ARCHS):
    """Run every stage into ``out``; returns the report dict (also written as report.json).

    ``archs``: the hardware targets to simulate (and build): the overlay of ``array`` (the
    board's default) and the dataflow build ``xnorflow profile`` makes without ``--fold``
    (:func:`~xnorflow.sw.build_records.default_dataflow_build`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = board_config(BOARD, array)
    stage = _Stages(4 + len(archs) if synth else 4)
    hidden = list(hidden or DEFAULT_HIDDEN)
    metrics = stage("train IR-Net on digits", _train, out, hidden, epochs, seed)
    compiled, torch_model, capacity = stage("compile and prove the thresholds", _compile, out,
                                            config)
    x, y = dataset_inputs(compiled, "digits")
    golden = stage("golden model vs PyTorch", evaluate, compiled, x, y, torch_model)
    torch_pred = torch_predictions(torch_model, x)
    targets = {}
    if "overlay" in archs:
        targets["overlay"] = OverlayTarget(config)
    dataflow_build = None
    if "dataflow" in archs:
        # as `xnorflow profile` without --fold: the fastest recorded build that met its clock
        dataflow_build = resolve_dataflow_build(compiled, BOARD, log=_log)
        targets["dataflow"] = DataflowTarget(dataflow_build.config)
    sims = stage(f"Verilator over all {len(x)} test images ({', '.join(targets)})",
                 _simulate_all, targets, compiled, x, y, torch_pred)
    profiles = {}
    if synth:
        for arch in targets:
            profiles.update(stage(f"synthesize the {arch} build for {BOARD} and profile",
                                  _profile_all, {arch: targets[arch]}, compiled, out,
                                  dataflow_build))
    exact = (golden["agree_with_torch"] == 1.0 and golden["hidden_bits_equal"]
             and golden["integers_equal"]
             and all(s["mismatches"] == 0 and s["agree_with_torch"] == 1.0
                     and s["predicted_cycles_match"] for s in sims.values()))
    report = {
        "bit_exact": exact,
        "training": {k: metrics[k] for k in ("method", "dataset", "test_accuracy", "epochs",
                                              "train_seconds", "input_bits", "hidden")},
        "compile": {"array": config.format(), "capacity": capacity},
        "golden_vs_torch": golden,
        "simulation": sims,
        "profile": profiles,
        "best_arch": best_arch(profiles) if profiles else None,
        "stage_seconds": stage.seconds,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text(format_report(report))
    return report


def format_report(r):
    t, g = r["training"], r["golden_vs_torch"]
    lines = [
        "# xnorflow run: IR-Net MLP on digits",
        "",
        f"**Bit-exact end to end: {'yes' if r['bit_exact'] else 'NO (a bug)'}**",
        "",
    ]
    if r["best_arch"]:
        best = r["profile"][r["best_arch"]]
        others = ", ".join(f"{a} {p['inferences_per_second']:,.0f}/s"
                           for a, p in r["profile"].items() if a != r["best_arch"])
        lines += [f"**Best architecture for this model on {BOARD}: {r['best_arch']}**, "
                  f"{best['inferences_per_second']:,.0f} inferences/s at "
                  f"{best['clock_mhz']:g} MHz" + (f" ({others})" if others else ""), ""]
    lines += [
        "| stage | result |",
        "| --- | --- |",
        f"| training | {t['method']} {t['dataset']}, {t['input_bits']}-bit inputs, hidden "
        f"{t['hidden']}, {t['epochs']} epochs: test accuracy {100 * t['test_accuracy']:.2f} % "
        f"({t['train_seconds']:.0f} s) |",
        f"| compile | {r['compile']['array']}: weights {r['compile']['capacity']['weight_words_used']}"
        f"/{r['compile']['capacity']['w_depth']} words per row bank; every threshold proven by "
        f"brute force |",
        f"| golden vs PyTorch | {g['images']} images: accuracy {100 * g['accuracy']:.2f} %, "
        f"agreement {100 * g['agree_with_torch']:.1f} %, hidden bits "
        f"{'equal' if g['hidden_bits_equal'] else 'DIFFER'}, integers "
        f"{'equal' if g['integers_equal'] else 'DIFFER'} |",
    ]
    for arch, s in r["simulation"].items():
        lines.append(
            f"| Verilator, {arch} ({s['array']}) | {s['images']} images: {s['mismatches']} integer "
            f"mismatches, agreement with PyTorch {100 * s['agree_with_torch']:.1f} %, accuracy "
            f"{100 * s['accuracy']:.2f} %, {s['cycles_per_inference']:.1f} cycles/inference "
            f"(counters = cycle model: {'yes' if s['predicted_cycles_match'] else 'NO'}) |")
    for arch, p in r["profile"].items():
        syn, link = p["synthesis"], p["host_link"]
        lines += [
            f"| iCEBreaker (UP5K), {arch} | {syn['luts']}/{syn['luts_available']} LUTs, "
            f"{syn['brams']} BRAMs, {syn['sprams']} SPRAMs, PLL clock "
            f"{syn['target_clock_mhz']:g} MHz, post-route Fmax {syn['fmax_mhz']:.1f} MHz"
            f"{'' if syn['timing_met'] else ' (TIMING NOT MET)'} |",
            f"| profile, {arch} | {p['cycles_per_inference']:.1f} cycles/inference, "
            f"utilisation {100 * p['utilization']:.1f} %, "
            f"{p['inferences_per_second']:,.0f} inferences/s at {p['clock_mhz']:g} MHz "
            f"({p['inferences_per_second_at_fmax']:,.0f} at Fmax)"
            + (f", latency {p['latency_us']:.1f} µs" if "latency_cycles" in p else "") + " |",
            f"| over the board's UART, {arch} | {link['baud']:,.0f} Bd 8N1: "
            f"{link['bytes_to_device']:,} bytes in, {link['bytes_from_device']:,} out per run, "
            f"{link['inferences_per_second']:,.0f} inferences/s end to end (the wire takes "
            f"{100 * link['link_share']:.1f} % of a run) |",
        ]
    for arch, s in r["simulation"].items():
        lines += ["", f"Cycles per layer, {arch} (per inference, from the core's counters):", ""]
        lines += [f"- {name}: {c:.1f}" for name, c in s["cycles_by_layer"].items()]
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in
                                                 r["stage_seconds"].items()), "",
              "Plots: training.png, profile.png"
              + (", profile-dataflow.png" if "dataflow" in r["profile"] else "")
              + ". Machine-readable: report.json.", ""]
    return "\n".join(lines)


def add_parser(sub):
    p = sub.add_parser("run", help="the whole flow on the digits data, with a report",
                       description=__doc__.split("\n\n")[0] + " Writes DIR/report.md, report.json, "
                       "training.png and profile.png.")
    p.add_argument("--out", type=output_dir, default=DEFAULT_OUT, metavar="DIR",
                   help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs (default: the digits recipe's, 60)")
    p.add_argument("--hidden", type=parse_hidden, default=list(DEFAULT_HIDDEN),
                   help="hidden layer widths (default " + ",".join(map(str, DEFAULT_HIDDEN)) + ")")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--array", default=None, help="accelerator configuration PxQxK[,key=value...] "
                                                 "(default: the iCEBreaker's)")
    p.add_argument("--arch", choices=("both",) + ARCHS, default="both",
                   help="the hardware to simulate and build: the overlay, the dataflow build "
                        "(the fastest recorded build of the model's shapes that met its clock, "
                        "else the fastest fold that fits), or both, the report naming the faster "
                        "(default both)")
    p.add_argument("--no-synth", action="store_true", help="skip synthesis and profiling")
    p.add_argument("--json", action="store_true", help="print report.json on stdout")
    p.set_defaults(func=run)


def run(args):
    report = run_flow(args.out, args.epochs, args.seed, args.array, synth=not args.no_synth,
                      hidden=args.hidden,
                      archs=ARCHS if args.arch == "both" else (args.arch,))
    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        print(Path(args.out, "report.md").read_text())
    if not report["bit_exact"]:
        raise XnorflowError("a bit-exactness check failed (see report.md): this is a bug")
    return 0
