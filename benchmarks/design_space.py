"""Design space on the ECP5-85F: array shape vs LUTs, Fmax, cycles and inferences per second.

For the SFC-shaped Fashion-MNIST model (784-256-256-256-10, 1-bit input) each array shape is
synthesized for the ULX3S-85F (post-route, nextpnr; ``--board`` picks another board), and its
cycles per inference come from the cycle model (equal to the hardware counters:
tests/test_sim_*.py) at the largest batch one run takes. Builds already done with the same
design and tools are reused (``xnorflow synth``'s hash), so re-running is cheap.

Each synthesis point (board x array configuration x placer x seed) is one build: ``--jobs`` builds at
once on this machine, or, with ``--cluster``, one Dask task each on a cluster's workers
(docs/scale-out.md), each writing its ``<out-root>/<build>/report.json``; the table and the plot
come from the reports the builds return.

Prints ONE JSON document on stdout (progress on stderr) and writes a Pareto plot (LUTs vs
inferences/s). Usage::

    .venv/bin/python benchmarks/design_space.py --jobs 1 \\
        --plot benchmarks/results/design_space.png > benchmarks/results/design_space.json
    .venv/bin/python benchmarks/design_space.py --cluster tcp://scheduler:8786 ...
"""
import argparse
import json
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xnorflow.cluster import (TaskProgress, add_cluster_argument, completed,  # noqa: E402
                              open_client)
from xnorflow.hw.config import ArrayConfig  # noqa: E402
from xnorflow.sw.program import max_batch, predict_cycles  # noqa: E402
from xnorflow.sw.argtypes import nonnegative_int  # noqa: E402
from xnorflow.sw.errors import XnorflowError  # noqa: E402
from xnorflow.sw.random_models import random_model  # noqa: E402
from xnorflow.sw.synth import (BOARDS, PLACERS, accelerator_top, build_label,  # noqa: E402
                               synthesize)

from merge import merge_points  # noqa: E402  (benchmarks/merge.py, beside this script)

SFC = [784, 256, 256, 256, 10]
# Memory depths sized for the SFC model (weights, thresholds, inputs for batches up to 8·Q);
# the default depths would spend 234 of the 208 block RAMs at 32x8x32.
# Dense only (conv=0): the SFC model has no conv layer, so the conv datapath would only cost LUTs.
_SFC_DEPTHS = ("w_depth={w},thr_depth=64,in_depth=512,act_depth=256,out_depth=256,acc_width=16,"
               "conv=0")
# The 1 M/s shape, 32x4x64 (w_depth=256, 8,192 MACs per cycle, 43.5 cycles per inference), routes
# only with nextpnr's static placer (HeAP packs it too densely; docs/synthesis.md, "Design space
# on the ECP5-85F"), hence its ":static". Each build takes 6 (8x8x32) to 35 (32x4x64) minutes.
DEFAULT_ARRAYS = [f"8x8x32,{_SFC_DEPTHS.format(w=1024)}", f"16x8x32,{_SFC_DEPTHS.format(w=1024)}",
                  f"32x4x64,{_SFC_DEPTHS.format(w=256)},issue_reg=1,row_groups=4:static"]


def log(msg):
    print(f"[design_space] {msg}", file=sys.stderr, flush=True)


def split_placer(array, placer=None):
    """``PxQxK[,key=value...][:PLACER]`` → (array, placer); the suffix overrides ``placer``.
    Checked before any build starts (a bad third entry must not wait for two long builds)."""
    array, _, own = array.partition(":")
    if own and own not in PLACERS:
        raise SystemExit(f"design_space: {array}:{own}: unknown placer; choose one of "
                         f"{', '.join(PLACERS)}")
    return array, own or placer


def check_holds_an_image(array, model):
    """Refuse, before any build, an array whose memories cannot take one batch of ``model``
    (its cycles per inference would be undefined)."""
    if max_batch(model.layers, ArrayConfig.parse(array)) < 1:
        raise SystemExit(f"design_space: {array}: its in_depth/act_depth/out_depth cannot hold "
                         f"one image of {model.name} ({'-'.join(map(str, SFC))})")


def build(array, board, out_root, placer=None, progress=True, seed=None):
    """Synthesize ``array`` for ``board`` with nextpnr's ``placer`` and placement ``seed`` (or
    reuse the build in ``out_root`` made from the same design and tools): its report. One
    synthesis point; with ``--cluster`` one Dask task (``progress`` off there: the workers'
    stage bars would mix)."""
    config = ArrayConfig.parse(array)
    return synthesize(accelerator_top(config), board,
                      build_label(config, placer=placer, seed=seed), out_root=out_root, log=log,
                      placer=placer, progress=progress, seed=seed)


def figures(array, report, model):
    """A synthesis point's row: the build's resources and Fmax (``report``) with the cycles of
    ``model`` on ``array``."""
    config = ArrayConfig.parse(array)
    # The largest batch the input and activation banks take: a throughput user fills them
    # (the array fills and drains once per layer whatever the batch).
    batch = max_batch(model.layers, config)
    cycles = predict_cycles(model.layers, config, batch)
    per_inf = cycles["total"] / batch
    fmax = report["fmax_mhz"]
    return {"array": config.format(), "placer": report["placer"],
            **({"seed": report["seed"]} if "seed" in report else {}), "luts": report["luts"],
            "ffs": report["ffs"],
            "brams": report["brams"], "fmax_mhz": fmax, "batch": batch,
            "cycles_per_inference": per_inf,
            "cycles_by_layer": {k: v / batch for k, v in cycles["by_layer"].items()},
            "inferences_per_second": fmax * 1e6 / per_inf,
            "inferences_per_second_per_klut": fmax * 1e6 / per_inf / (report["luts"] / 1000),
            "build_seconds": report.get("build_seconds"), "reused_build": report["skipped"]}


def point(array, board, out_root, model, placer=None, seed=None):
    """One build of ``array`` with nextpnr's ``placer`` and ``seed`` in this process, and its
    figures."""
    return figures(array, build(array, board, out_root, placer, seed=seed), model)


def points_on_cluster(spec, builds, board, out_root, model):
    """Every ``(array, placer, seed)`` of ``builds`` as one Dask task on the cluster ``spec``; the
    rows in the order of ``builds``. A failed build does not stop the others (their reports
    are kept); its error is raised once they are done."""
    token = uuid.uuid4().hex[:8]   # another client's tasks never share our keys
    with open_client(spec) as client:
        futures = [client.submit(build, array, board, out_root, placer, False, seed, pure=False,
                                 key=f"synth-{board}-{i}-{array}:{placer or 'heap'}:{seed}-{token}")
                   for i, (array, placer, seed) in enumerate(builds)]
        order = {f.key: i for i, f in enumerate(futures)}
        progress = TaskProgress(client, futures, desc="design_space builds", unit="build")
        finished = completed(futures, progress, keep_going=True)
        del futures   # only completed() holds them: a result is freed once read
        rows = {}
        try:
            for future, report in finished:
                i = order[future.key]
                rows[i] = figures(builds[i][0], report, model)
                log(f"{rows[i]['array']}: {report['luts']} LUTs, Fmax {report['fmax_mhz']:.1f} "
                    f"MHz{' (reused)' if report['skipped'] else ''}")
        finally:
            progress.close()
    return [rows[i] for i in sorted(rows)]


def pareto(points):
    """Points no other point beats on both fewer LUTs and more inferences/s."""
    return [p["array"] for p in points
            if not any(q["luts"] <= p["luts"] and q["inferences_per_second"] >
                       p["inferences_per_second"] for q in points if q is not p)]


def point_label(p):
    """Short plot label: the shape, the options that set it apart from the SFC depths, Fmax."""
    shape, *opts = p["array"].split(",")
    extra = [o for o in opts if o.split("=")[0] in ("row_groups", "issue_reg")]
    if p.get("placer", "heap") != "heap":
        extra.append(f"{p['placer']} placer")
    if p.get("seed") is not None:
        extra.append(f"seed {p['seed']}")
    return (shape + (f" ({', '.join(extra)})" if extra else "")
            + f"\n{p['fmax_mhz']:.1f} MHz, {p['inferences_per_second'] / 1e3:,.0f}k/s")


def plot(points, front, path, board="ulx3s-85f"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for p in points:
        on = p["array"] in front
        ax.scatter(p["luts"], p["inferences_per_second"], s=60,
                   color="#cc3311" if on else "#4477aa", zorder=3)
        ax.annotate(point_label(p), (p["luts"], p["inferences_per_second"]),
                    textcoords="offset points", xytext=(-6, 6), ha="right", fontsize=8)
    fr = sorted((p for p in points if p["array"] in front), key=lambda p: p["luts"])
    ax.plot([p["luts"] for p in fr], [p["inferences_per_second"] for p in fr], color="#cc3311",
            lw=1, zorder=2, label="Pareto front")
    ax.axhline(1e6, color="grey", ls="--", lw=1, label="target 1 M/s")
    ax.set_xlabel(f"LUTs ({BOARDS[board].family.upper()}, {board}, post-route)")
    ax.set_ylabel("inferences / s at Fmax")
    ax.set_yscale("log")
    ax.margins(x=0.15, y=0.25)   # room for the labels above and left of the points
    ax.set_title(f"SFC 784-256-256-256-10 (1-bit input) on the {board}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def repo_relative(path):
    """``path`` relative to the repository when it lies inside it (results stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrays", nargs="+", default=DEFAULT_ARRAYS,
                    help="array configurations, each PxQxK[,key=value...][:PLACER] "
                         "(space-separated; PLACER heap or static overrides --placer)")
    ap.add_argument("--board", choices=tuple(BOARDS), default="ulx3s-85f",
                    help="the board every point is built for (default ulx3s-85f)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="builds at once in this process, without --cluster (nextpnr is "
                         "single-threaded) (default 2)")
    ap.add_argument("--placer", choices=PLACERS, default=None,
                    help="nextpnr placer of the builds without their own (default: nextpnr's, "
                         "heap)")
    add_cluster_argument(ap, "each synthesis point is one build on a worker, reused when "
                             "its report exists in --out-root there")
    ap.add_argument("--seeds", nargs="+", type=nonnegative_int, default=[None],
                    metavar="SEED",
                    help="nextpnr placement seeds: each array is built once per seed, every "
                         "build a point of the table and the plot (default: nextpnr's seed)")
    ap.add_argument("--out-root", default=str(ROOT / "build" / "design-space"),
                    help="where the builds go, one directory each (default build/design-space)")
    ap.add_argument("--plot", default=str(ROOT / "benchmarks" / "results" / "design_space.png"),
                    help="the Pareto plot written (default "
                         "benchmarks/results/design_space.png)")
    ap.add_argument("--update", default=None, metavar="JSON",
                    help="an earlier output of this benchmark: print its points with this run's "
                         "added (a point of the same array replaced), e.g. to add one new shape "
                         "without rebuilding the others")
    args = ap.parse_args(argv)
    model = random_model(np.random.default_rng(0), SFC, input_bits=1, name="sfc-1bit")
    builds = [(*split_placer(a, args.placer), seed) for a in args.arrays for seed in args.seeds]
    for array, _, _ in builds:
        check_holds_an_image(array, model)
    if args.cluster is not None:
        try:
            points = points_on_cluster(args.cluster, builds, args.board, args.out_root, model)
        except XnorflowError as e:   # no Dask, no scheduler, a build that failed
            raise SystemExit(f"design_space: {e}") from None
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            points = list(pool.map(
                lambda b: point(b[0], args.board, args.out_root, model, b[1], b[2]), builds))
    if args.update:
        points = merge_points(args.update, points, "array")
    front = pareto(points)
    plot(points, front, args.plot, args.board)
    print(json.dumps({"benchmark": "design_space", "board": args.board,
                      "model": "SFC 784-256-256-256-10, 1-bit input", "points": points,
                      "pareto": front, "plot": repo_relative(args.plot)}, indent=2))


if __name__ == "__main__":
    main()
