"""Scale-out: ``xnorflow sim`` of the Fashion-MNIST SFC on Dask with 1 and 2 local workers.

The SFC model (784-256-256-256-10, 1-bit input): the trained IR-Net one at
``runs/sfc1/irnet.xnf`` when it is there (``--model`` names another), else random weights of
that shape (the simulation's speed does not depend on the weights; the output says which).
The Fashion-MNIST test images run through the overlay RTL on Verilator, sharded by
:func:`xnorflow.simulate.simulate` into chunks of ``--chunk`` images, one Dask task each, on a
``distributed.LocalCluster`` of 1 and then 2 worker processes (one thread each), and in this
process without Dask for reference; ``--repeat`` rounds of the three, the fastest run of each
counting (on a shared machine other work only slows a run down). The Verilator build is made
before any clock starts, and every worker has built or found it before its timing starts
(``wall_seconds`` of the result: submitting the chunks to the last result), so the figures are
the simulation's; the chunks are large so that scheduling is a small part of it. Every run's
integers must be the golden model's, and all runs must agree.

Prints ONE JSON document on stdout (progress on stderr) and writes a bar chart::

    .venv/bin/python benchmarks/scale_out.py > benchmarks/results/scale_out/scale_out.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xnorflow.cluster import open_client  # noqa: E402
from xnorflow.sim.build import build_harness  # noqa: E402
from xnorflow.simulate import simulate  # noqa: E402
from xnorflow.sw import xnf  # noqa: E402
from xnorflow.sw.argtypes import positive_int  # noqa: E402
from xnorflow.sw.evaluate import dataset_inputs  # noqa: E402
from xnorflow.sw.random_models import random_model  # noqa: E402
from xnorflow.targets import OverlayTarget  # noqa: E402

SFC = [784, 256, 256, 256, 10]
TRAINED = REPO / "runs" / "sfc1" / "irnet.xnf"
OUT = REPO / "benchmarks" / "results" / "scale_out"
#: What two runs of one simulation may differ in (docs/scale-out.md).
TIMING = {"build_seconds", "wall_seconds", "simulated_cycles_per_second", "images_per_second",
          "simulator_cpu_seconds", "host_cpu_seconds", "simulated_cycles_per_cpu_second",
          "jobs", "cpu_seconds"}


def log(msg):
    print(f"[scale_out] {msg}", file=sys.stderr, flush=True)


def sfc_model(path):
    """(model, what it is): the trained SFC at ``path`` if it exists, else random weights."""
    if path is not None and Path(path).exists():
        model = xnf.load(path)
        first = model.layers[0]
        sizes = [getattr(first, "in_features", None)] + [getattr(layer, "out_features", None)
                                                         for layer in model.layers]
        if sizes != SFC:
            raise SystemExit(f"scale_out: {path} is {'-'.join(map(str, sizes))}, not the SFC "
                             f"{'-'.join(map(str, SFC))}")
        return model, f"trained ({Path(path).resolve().relative_to(REPO)})" \
            if Path(path).resolve().is_relative_to(REPO) else f"trained ({path})"
    return (random_model(np.random.default_rng(0), SFC, input_bits=1, name="sfc-random"),
            "random weights of the SFC shape (xnorflow.sw.random_models), 1-bit input")


def cpu_seconds():
    """This process's CPU seconds and its waited-for children's (run on each Dask worker: the
    worker and the simulators it ran)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_run(model, x, y, target, chunk, workers=None):
    """One simulation: on a local Dask cluster of ``workers`` processes, or in this process
    (``workers`` None). Returns the result (``wall_seconds`` excludes cluster start-up and
    the workers' build check) with ``cpu_seconds``: what the simulation cost in CPU time (the
    workers and their simulators; in process: the simulators and this process), a figure
    that, unlike the wall seconds, does not depend on what else the machine runs."""
    if workers is None:
        r = simulate(model, x, y, target=target, progress=True)
        r["cpu_seconds"] = round(r["simulator_cpu_seconds"] + r["host_cpu_seconds"], 3)
        return r
    with open_client(f"local:{workers}") as client:
        before = client.run(cpu_seconds)
        r = simulate(model, x, y, target=target, client=client, chunk=chunk, progress=True)
        after = client.run(cpu_seconds)   # the simulators have been closed and waited for
    r["cpu_seconds"] = round(sum(after[w] - before.get(w, 0.0) for w in after)
                             + r["host_cpu_seconds"], 3)
    return r


def plot(seconds, ratio, images, load, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = list(seconds)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bars = ax.bar(labels, [seconds[k] for k in labels], color=["#999999", "#4477aa", "#cc3311"])
    for bar, k in zip(bars, labels):
        ax.annotate(f"{seconds[k]:.1f} s\n{images / seconds[k]:.0f} img/s",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_ylabel("simulation wall seconds")
    ax.set_title(f"xnorflow sim, SFC on Fashion-MNIST ({images} images), Verilator\n"
                 f"2 Dask workers vs 1: {ratio:.2f}x ({os.cpu_count()} cores, load average "
                 f"{load:.1f} before)", fontsize=9)
    ax.margins(y=0.25)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(TRAINED),
                    help="the SFC model (.xnf) (default runs/sfc1/irnet.xnf, random weights of "
                         "the SFC shape if it is missing)")
    ap.add_argument("--images", type=positive_int, default=None,
                    help="only the first N test images (default: all 10,000)")
    ap.add_argument("--chunk", type=positive_int, default=1000,
                    help="images per Dask task (default 1000: 10 tasks for the test set)")
    ap.add_argument("--repeat", type=positive_int, default=2,
                    help="runs of each configuration, alternating; the fastest counts (other "
                         "work on a shared machine only ever slows a run down) (default 2)")
    ap.add_argument("--array", default=None,
                    help="the overlay build simulated (default: 8x8x32 with default depths)")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST's IDX files (default: the "
                                                     "Debian package's)")
    ap.add_argument("--plot", type=Path, default=OUT / "scale_out.png",
                    help="the bar chart written (default "
                         "benchmarks/results/scale_out/scale_out.png)")
    args = ap.parse_args(argv)
    model, source = sfc_model(args.model)
    x, y = dataset_inputs(model, "fashion-mnist", args.data_dir, args.images)
    target = OverlayTarget(args.array)
    log(f"model: {source}; {len(x)} Fashion-MNIST test images on the {target.name} overlay")
    t0 = time.monotonic()
    build_harness(target.spec(), waves=False)     # warm cache: no run below builds
    log(f"Verilator build ready ({time.monotonic() - t0:.1f} s)")
    load_before = os.getloadavg()[0]
    setups = {"in process (no Dask)": None, "1 Dask worker": 1, "2 Dask workers": 2}
    tries = {name: [] for name in setups}
    for _ in range(args.repeat):
        for name, workers in setups.items():
            tries[name].append(timed_run(model, x, y, target, args.chunk, workers))
            log(f"{name}: {tries[name][-1]['wall_seconds']:.1f} s")
    load_after = os.getloadavg()[0]
    runs = {name: min(rs, key=lambda r: r["wall_seconds"]) for name, rs in tries.items()}
    reference = {k: v for k, v in runs["in process (no Dask)"].items() if k not in TIMING}
    agree = all({k: v for k, v in r.items() if k not in TIMING} == reference
                for rs in tries.values() for r in rs)
    seconds = {name: r["wall_seconds"] for name, r in runs.items()}
    ratio = seconds["1 Dask worker"] / seconds["2 Dask workers"]
    plot(seconds, ratio, len(x), load_before, args.plot)
    print(json.dumps({
        "benchmark": "scale_out",
        "command": "python benchmarks/scale_out.py " + " ".join(argv or sys.argv[1:]),
        "model": model.name, "model_source": source, "array": target.name,
        "images": int(len(x)), "chunk": args.chunk, "batch": runs["1 Dask worker"]["batch"],
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_after": round(load_after, 2),
        "repeat": args.repeat,
        "seconds": seconds,
        "seconds_of_every_run": {name: [r["wall_seconds"] for r in rs]
                                 for name, rs in tries.items()},
        "cpu_seconds": {name: r["cpu_seconds"] for name, r in runs.items()},
        "seconds_1_worker": seconds["1 Dask worker"],
        "seconds_2_workers": seconds["2 Dask workers"],
        "speedup_2_vs_1_worker": round(ratio, 3),
        "target_speedup": 1.7, "target_met": ratio >= 1.7,
        "mismatches": sum(r["mismatches"] for rs in tries.values() for r in rs),
        "accuracy": runs["1 Dask worker"]["accuracy"],
        "runs_agree": agree,
        "plot": str(args.plot.resolve().relative_to(REPO))
        if args.plot.resolve().is_relative_to(REPO) else str(args.plot),
    }, indent=2))
    return 0 if agree and not any(r["mismatches"] for rs in tries.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
