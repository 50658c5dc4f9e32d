"""``xnorflow run``: the whole flow on the embedded digits data, with one report at the end.

train (IR-Net MLP) → compile (thresholds proven by brute force) → golden model vs PyTorch →
Verilator over the whole test set (bit-exact check) → synthesize for the iCEBreaker →
profile → ``DIR/report.md``, ``DIR/report.json`` and the plots.

Every stage prints what it is doing on stderr; the command fails (exit status 1) if any
bit-exactness check fails, because that is a bug, not a result.
"""
import json
import sys
import time
from pathlib import Path

from sw.errors import XnorflowError

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
    from sw.train import methods
    from sw.train.checkpoint import save_checkpoint
    from sw.train.plots import plot_history
    import torch
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
    from sw import xnf
    from sw.compile import check_fit, compile_checkpoint
    compiled, torch_model, _ = compile_checkpoint(out / "model.pt")
    capacity = check_fit(compiled, config)
    xnf.save(compiled, out / "model.xnf")
    return compiled, torch_model, capacity


def run_flow(out, epochs=None, seed=0, array=None, synth=True, hidden=None):
    """Run every stage into ``out``; returns the report dict (also written as report.json)."""
    from sw.evaluate import dataset_inputs, evaluate, torch_predictions
    from sw.synth import board_config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = board_config(BOARD, array)
    stage = _Stages(5 if synth else 4)
    hidden = list(hidden or DEFAULT_HIDDEN)
    metrics = stage("train IR-Net on digits", _train, out, hidden, epochs, seed)
    compiled, torch_model, capacity = stage("compile and prove the thresholds", _compile, out,
                                            config)
    x, y = dataset_inputs(compiled, "digits")
    golden = stage("golden model vs PyTorch", evaluate, compiled, x, y, torch_model)
    torch_pred = torch_predictions(torch_model, x)

    from flow.simulate import simulate
    sim = stage(f"Verilator over all {len(x)} test images", simulate, compiled, x, y,
                engine="verilator", config=config.format(), torch_predictions=torch_pred)
    profile_result = None
    if synth:
        from flow.profile import plot_profile, profile
        profile_result = stage(f"synthesize for {BOARD} and profile", profile, compiled, BOARD,
                               config.format(), simulate=False, log=_log)
        plot_profile(profile_result, out / "profile.png", f"{compiled.name} on {BOARD}")
    exact = (golden["agree_with_torch"] == 1.0 and golden["hidden_bits_equal"]
             and golden["integers_equal"] and sim["mismatches"] == 0
             and sim["agree_with_torch"] == 1.0 and sim["predicted_cycles_match"])
    report = {
        "bit_exact": exact,
        "training": {k: metrics[k] for k in ("method", "dataset", "test_accuracy", "epochs",
                                              "train_seconds", "input_bits", "hidden")},
        "compile": {"array": config.format(), "capacity": capacity},
        "golden_vs_torch": golden,
        "simulation": sim,
        "profile": profile_result,
        "stage_seconds": stage.seconds,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text(format_report(report))
    return report


def format_report(r):
    t, g, s, p = r["training"], r["golden_vs_torch"], r["simulation"], r["profile"]
    lines = [
        "# xnorflow run: IR-Net MLP on digits",
        "",
        f"**Bit-exact end to end: {'yes' if r['bit_exact'] else 'NO (a bug)'}**",
        "",
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
        f"| Verilator | {s['images']} images: {s['mismatches']} integer mismatches, agreement "
        f"with PyTorch {100 * s['agree_with_torch']:.1f} %, accuracy {100 * s['accuracy']:.2f} %, "
        f"{s['cycles_per_inference']:.1f} cycles/inference (counters = cycle model: "
        f"{'yes' if s['predicted_cycles_match'] else 'NO'}) |",
    ]
    if p:
        syn = p["synthesis"]
        lines += [
            f"| iCEBreaker (UP5K) | {syn['luts']}/{syn['luts_available']} LUTs, {syn['brams']} "
            f"BRAMs, {syn['sprams']} SPRAMs, PLL clock {syn['target_clock_mhz']:g} MHz, "
            f"post-route Fmax {syn['fmax_mhz']:.1f} MHz"
            f"{'' if syn['timing_met'] else ' (TIMING NOT MET)'} |",
            f"| profile | batch {p['batch']}: {p['cycles_per_inference']:.1f} cycles/inference, "
            f"utilisation {100 * p['utilization']:.1f} %, "
            f"{p['inferences_per_second']:,.0f} inferences/s at {p['clock_mhz']:g} MHz "
            f"({p['inferences_per_second_at_fmax']:,.0f} at Fmax) |",
            f"| over the board's UART | {p['host_link']['baud']:,.0f} Bd 8N1: "
            f"{p['host_link']['bytes_to_device']:,} bytes in, "
            f"{p['host_link']['bytes_from_device']:,} out per run of {p['batch']}, "
            f"{p['host_link']['inferences_per_second']:,.0f} inferences/s end to end "
            f"(the wire takes {100 * p['host_link']['link_share']:.1f} % of a run) |",
        ]
    lines += ["", "Cycles per layer (per inference, from the core's counters):", ""]
    lines += [f"- {name}: {c:.1f}" for name, c in s["cycles_by_layer"].items()]
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in
                                                 r["stage_seconds"].items()), "",
              "Plots: training.png, profile.png. Machine-readable: report.json.", ""]
    return "\n".join(lines)


def add_parser(sub):
    from sw.argtypes import output_dir, positive_int
    from sw.train.cli import parse_hidden
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
    p.add_argument("--no-synth", action="store_true", help="skip synthesis and profiling")
    p.add_argument("--json", action="store_true", help="print report.json on stdout")
    p.set_defaults(func=run)


def run(args):
    report = run_flow(args.out, args.epochs, args.seed, args.array, synth=not args.no_synth,
                      hidden=args.hidden)
    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        print(Path(args.out, "report.md").read_text())
    if not report["bit_exact"]:
        raise XnorflowError("a bit-exactness check failed (see report.md): this is a bug")
    return 0
