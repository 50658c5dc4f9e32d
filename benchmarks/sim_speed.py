"""Simulation speed: Verilator (C++ harness) vs Amaranth's simulator on the same model.

An SFC-shaped model (784-256-256-256-10, 8-bit inputs, random weights and thresholds: the
speed does not depend on what the weights are) runs Fashion-MNIST test images (random images
if the data set is not installed) through the whole accelerator RTL, link included, via
:func:`xnorflow.simulate.simulate`; every integer is checked against the golden model. Verilator runs the
whole test set by default, the Amaranth simulator a few batches (it is orders of magnitude
slower; its per-image figures are what matters).

Prints ONE JSON document on stdout (progress on stderr) and writes a PNG plot.

    python benchmarks/sim_speed.py [--images 10000] [--jobs 2] [--amaranth-seconds 30]
                                   [--small-images 8] [--array 8x8x32] [--plot PNG]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sfc_model(seed=0, input_bits=8):
    from xnorflow.sw.random_models import random_model
    return random_model(np.random.default_rng(seed), [784, 256, 256, 256, 10], input_bits,
                        name="sfc-random")


def inputs(model, images, seed=0):
    """Fashion-MNIST test images quantised for ``model`` (random ones if not installed)."""
    try:
        from xnorflow.sw.evaluate import dataset_inputs
        x, y = dataset_inputs(model, "fashion-mnist", None, images)
        source = "fashion-mnist"
    except Exception as e:  # noqa: BLE001 - any data problem: fall back, and say so
        print(f"[bench] Fashion-MNIST unavailable ({e}); using random images", file=sys.stderr)
        from xnorflow.sw.random_models import random_inputs
        x, y, source = random_inputs(np.random.default_rng(seed), model, images), None, "random"
    return x, y, source


def run(engine, model, x, array, jobs=1, batch=None):
    from xnorflow.simulate import simulate
    t0 = time.monotonic()
    r = simulate(model, x, None, engine=engine, config=array, progress=True, jobs=jobs,
                 batch=batch)
    r["total_seconds"] = round(time.monotonic() - t0, 3)
    for k in ("accuracy", "agree_with_torch"):
        r.pop(k, None)
    return r


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "simulated_cycles_per_second", "simulated cycles / s"),
                           (axes[1], "images_per_second", "verified images / s")):
        vals = [results[n][key] or 0 for n in names]
        labels = [n + (" (extrap.)" if key == "images_per_second" and
                       results[n].get("images_per_second_is_extrapolated") else "")
                  for n in names]
        bars = ax.bar(labels, vals, color=["tab:blue", "tab:orange"][:len(names)])
        ax.set_yscale("log")
        ax.set_ylabel(label)
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:,.0f}" if v >= 10 else f"{v:.3g}",
                        (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=8)
    fig.suptitle("xnorflow: whole-accelerator RTL simulation speed (SFC 784-256-256-256-10)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def amaranth_rate(model, array, seconds):
    """Simulated cycles/s of the Amaranth simulator on the same top, measured on a prefix of
    the same work (loading ``model``) for about ``seconds``: the whole SFC model would take
    it far too long (its load alone is ~0.4 M cycles)."""
    from xnorflow.sim.amaranth_transport import AmaranthTransport
    from xnorflow.sim.tops import accelerator_spec
    from xnorflow.sw import program
    from xnorflow.sw.driver import OverlayDevice
    t = AmaranthTransport(accelerator_spec(array).elaborate(), max_cycles=10**8)
    acc = OverlayDevice(t, array)
    acc.ident()
    frames = [f for addr, data in program.build_program(model.layers, acc.config)
              for f in acc.write_requests(addr, data)]
    c0, t0, sent = t.cycles, time.monotonic(), 0
    for f in frames:
        acc._exchange([f])
        sent += 1
        if time.monotonic() - t0 > seconds:
            break
    wall = time.monotonic() - t0
    t.close()
    return {"engine": "amaranth", "measured_on": f"{sent} of {len(frames)} model-load frames",
            "simulated_cycles": t.cycles - c0, "wall_seconds": round(wall, 3),
            "simulated_cycles_per_second": (t.cycles - c0) / wall}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10_000, help="images on Verilator")
    ap.add_argument("--array", default="8x8x32", help="accelerator build PxQxK[,key=value]")
    ap.add_argument("--input-bits", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2,
                    help="Verilator processes (one per core; the target machine has 2)")
    ap.add_argument("--amaranth-seconds", type=float, default=30.0,
                    help="time budget of the Amaranth simulator on the SFC model (0: skip)")
    ap.add_argument("--small-images", type=int, default=8,
                    help="images of the small model both engines run completely (0: skip)")
    ap.add_argument("--plot", default=str(REPO / "build" / "sim_speed.png"))
    args = ap.parse_args(argv)

    from xnorflow.sw.tools import ensure_tools_on_path
    ensure_tools_on_path()
    model = sfc_model(input_bits=args.input_bits)
    x, _, source = inputs(model, args.images)
    doc = {
        "benchmark": "sim_speed",
        "model": "sfc-random 784-256-256-256-10",
        "input_bits": args.input_bits,
        "inputs": source,
        "array": args.array,
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": os.getloadavg()[0],
    }
    sfc = {"verilator": run("verilator", model, x, args.array, jobs=args.jobs)}
    per_image = sfc["verilator"]["simulated_cycles"] / max(1, sfc["verilator"]["images"])
    if args.amaranth_seconds:
        print(f"[bench] Amaranth simulator on the same top for ~{args.amaranth_seconds:.0f} s",
              file=sys.stderr)
        a = amaranth_rate(model, args.array, args.amaranth_seconds)
        # Same RTL, same traffic: images/s follows from cycles/s and Verilator's exact
        # simulated cycles per image (link traffic included).
        a["images_per_second"] = a["simulated_cycles_per_second"] / per_image
        a["images_per_second_is_extrapolated"] = True
        sfc["amaranth"] = a
    doc["sfc"] = sfc
    if args.small_images:
        # A small model both engines verify completely (digits-sized, 4-bit inputs).
        from xnorflow.sw.random_models import random_inputs, random_model
        small = random_model(np.random.default_rng(1), [64, 32, 10], 4, name="small-random")
        xs = random_inputs(np.random.default_rng(2), small, args.small_images)
        doc["small"] = {"model": "small-random 64-32-10, 4-bit inputs",
                        "verilator": run("verilator", small, xs, args.array),
                        "amaranth": run("amaranth", small, xs, args.array)}
    doc["load_average_1min_after"] = os.getloadavg()[0]
    runs = [r for part in ("sfc", "small") for r in doc.get(part, {}).values()
            if isinstance(r, dict) and "mismatches" in r]
    doc["bit_exact"] = all(r["mismatches"] == 0 for r in runs)
    if "amaranth" in sfc:
        doc["speedup_cycles_per_second"] = (sfc["verilator"]["simulated_cycles_per_second"]
                                            / sfc["amaranth"]["simulated_cycles_per_second"])
    v = sfc["verilator"]
    if v.get("simulator_cpu_seconds"):
        # What the same work needs on idle cores: CPU seconds of the harness processes and of
        # the host process, spread over the cores (a lower bound; the machine is shared).
        cpu = v["simulator_cpu_seconds"] + v["host_cpu_seconds"]
        doc["cpu_seconds_total"] = round(cpu, 2)
        doc["projected_wall_seconds_on_idle_cores"] = round(
            max(cpu / (os.cpu_count() or 1), v["simulator_cpu_seconds"] / v["jobs"]), 2)
        doc["projected_wall_seconds_10000_images"] = round(
            doc["projected_wall_seconds_on_idle_cores"] * 10_000 / max(1, v["images"]), 1)
    doc["target_10000_images_in_120_s"] = (sfc["verilator"]["images"] >= 10_000
                                           and sfc["verilator"]["wall_seconds"] <= 120
                                           and sfc["verilator"]["mismatches"] == 0)
    plot(sfc, args.plot)
    doc["plot"] = str(args.plot)
    print(json.dumps(doc, indent=2))
    return 0 if doc["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
