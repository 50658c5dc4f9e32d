"""``xnorflow profile``: where an inference's cycles go, and what that means on a board.

For a compiled model and an accelerator configuration: cycles per layer from the cycle model
(each layer type's ``overlay_cycles`` in :mod:`xnorflow.sw.layers`), confirmed equal to the hardware
counters by running the model in simulation; array utilisation (ideal binary MACs over
``P·Q·K·cycles``); latency and inferences per second at the clock the bitstream runs at (the
board's PLL output, below the post-route Fmax from ``xnorflow synth``; the figures at Fmax
itself are reported too); and what a board run costs end to end over the board's UART (the
bytes the driver moves per run, from the driver's own frames). Writes a table and a bar chart.
"""
import json
import sys
import textwrap
from pathlib import Path

import numpy as np

from xnorflow.hw.dataflow import memory_map as mm
from xnorflow.hw.dataflow.run_timing import run_cycles, steady_interval
from xnorflow.simulate import simulate
from xnorflow.sw import protocol as P
from xnorflow.sw import xnf
from xnorflow.sw.argtypes import int_range, nonnegative_int, output_file, positive_float
from xnorflow.sw.build_records import resolve_dataflow_build
from xnorflow.sw.dataflow_program import check_model, engine_layers
from xnorflow.sw.driver import read_frames, run_frames, write_frames
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.fold import load_fold
from xnorflow.sw.program import ProgramError, check_batch, check_fits, max_batch, predict_cycles
from xnorflow.sw.random_models import random_inputs
from xnorflow.sw.synth import (BOARDS, PLACERS, accelerator_top, board_clock, board_config,
                               build_label, dataflow_top, synthesize, uart_rate)
from xnorflow.targets import DataflowTarget


def ideal_macs(layer):
    """Binary multiply-accumulates one input needs in ``layer`` (bit-planes count separately;
    a conv counts every output pixel, a pool nothing)."""
    return layer.binary_macs()


def profile_numbers(model, config, cycles, batch, fmax_mhz, clock_mhz=None):
    """Utilisation, latency and throughput from per-layer cycles of one run of ``batch`` inputs.

    Latency and inferences/s are at ``clock_mhz`` (the clock the bitstream runs at) when given,
    else at ``fmax_mhz``; ``inferences_per_second_at_fmax`` is the ceiling of the same build.
    """
    peak = config.P * config.Q * config.K
    layers = []
    for layer in model.layers:
        c = cycles["by_layer"][layer.name]
        macs = ideal_macs(layer) * batch
        layers.append({"name": layer.name, "cycles": int(c), "binary_macs": macs,
                       "utilization": macs / (peak * c) if c else 0.0})
    total = int(cycles["total"])
    macs = sum(x["binary_macs"] for x in layers)
    out = {
        "batch": batch,
        "cycles_per_run": total,
        "cycles_per_inference": total / batch,
        "cycles_by_layer": {x["name"]: x["cycles"] for x in layers},
        "layers": layers,
        "utilization": macs / (peak * total) if total else 0.0,
        "peak_binary_macs_per_cycle": peak,
        "fmax_mhz": fmax_mhz,
        "clock_mhz": clock_mhz or fmax_mhz,
    }
    if out["clock_mhz"]:
        seconds = total / (out["clock_mhz"] * 1e6)
        out["latency_us"] = seconds * 1e6
        out["inferences_per_second"] = batch / seconds
    if fmax_mhz:
        out["inferences_per_second_at_fmax"] = batch * fmax_mhz * 1e6 / total
    return out


def host_link_numbers(model, config, batch, compute_seconds, baud):
    """One run of ``batch`` inputs seen from the host over a UART at ``baud`` (8N1: 10 bits
    per byte; the link is half duplex, one frame at a time, so every byte's time adds up).

    Bytes are those of the driver's frames for the run (:func:`xnorflow.sw.driver.run_frames`: inputs,
    start, one status poll, counters, outputs); the driver waits for the core between them,
    so a run takes the link time plus ``compute_seconds``.
    """

    x = np.zeros((batch, model.layers[0].in_features), np.uint8)
    traffic = run_frames(model.layers, config, x).traffic()
    link_seconds = 10 * (traffic["to_device"] + traffic["from_device"]) / baud
    return {"baud": baud, "bytes_to_device": traffic["to_device"],
            "bytes_from_device": traffic["from_device"],
            "link_seconds_per_run": link_seconds,
            "link_share": link_seconds / (link_seconds + compute_seconds),
            "inferences_per_second": batch / (link_seconds + compute_seconds)}


def plot_profile(result, path, title):
    """Bar chart of cycles per layer with each layer's utilisation written on its bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layers = result["layers"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [x["name"] for x in layers]
    bars = ax.bar(names, [x["cycles"] for x in layers], color="#4477aa")
    for bar, x in zip(bars, layers):
        ax.annotate(f"{100 * x['utilization']:.0f} %", (bar.get_x() + bar.get_width() / 2,
                                                       bar.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(f"cycles per run of {result['batch']}")
    sub = f"{result['cycles_per_inference']:.1f} cycles/inference, " \
          f"utilisation {100 * result['utilization']:.1f} %"
    if result.get("inferences_per_second"):
        sub += f", {result['inferences_per_second']:,.0f} inferences/s at {result['clock_mhz']:.1f} MHz"
    # long array configurations wrap at their commas instead of running off the figure
    ax.set_title("\n".join(textwrap.wrap(title.replace(",", ", "), 80)) + f"\n{sub}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def profile_batch(model, config, batch=None):
    """The batch to profile: ``batch`` if one run takes it (else XnorflowError naming the
    limit), by default one column group, or 1 for a conv model (one image per run)."""
    try:
        check_fits(model.layers, config)
    except ProgramError as e:
        raise XnorflowError(f"model '{model.name}' does not fit the {config.format()} build: "
                            f"{e}") from None
    try:
        batch = batch or min(config.Q, max_batch(model.layers, config))
        check_batch(model.layers, config, batch)
    except ProgramError as e:
        raise XnorflowError(f"--batch: {e}") from None
    return batch


#: What a profile keeps of a build's report.
SYNTHESIS_KEYS = ("luts", "luts_available", "ffs", "brams", "sprams", "dsps", "fmax_mhz",
                  "target_clock_mhz", "timing_met")


def synthesis_summary(report):
    """The figures of a build's ``report.json`` a profile reports."""
    return {k: report[k] for k in SYNTHESIS_KEYS}


def check_cycles_in_simulation(model, config, batch, engine="verilator"):
    """Run one batch in simulation; the core's counters must equal the cycle model exactly."""

    x = random_inputs(np.random.default_rng(0), model, batch)
    result = simulate(model, x, engine=engine, config=config.format(), batch=batch,
                      progress=False)
    if result["mismatches"]:
        raise XnorflowError(f"simulation of '{model.name}' on {config.format()} disagrees with "
                            f"the golden model in {result['mismatches']} integers: this is a bug")
    if not result["predicted_cycles_match"]:
        raise XnorflowError(f"the core's cycle counters differ from the cycle model "
                            f"({result['cycles_by_layer']}): this is a bug")
    return result


def profile(model, board, array=None, batch=None, simulate=True, log=None, clock_mhz=None,
            baud=None, placer=None, seed=None, out_root=None):
    """Profile ``model`` on ``board``: cycles (model, checked in simulation) and board figures
    (the build under ``out_root``, default ``bitstreams/``)."""
    config = board_config(board, array)
    clock = board_clock(board, clock_mhz)
    uart_rate(clock, baud)
    batch = profile_batch(model, config, batch)
    cycles = predict_cycles(model.layers, config, batch)
    sim = check_cycles_in_simulation(model, config, batch) if simulate else None
    report = synthesize(accelerator_top(config, clock, baud), board,
                        build_label(config, clock, baud, placer, seed), out_root=out_root,
                        log=log, placer=placer, seed=seed)
    result = profile_numbers(model, config, cycles, batch, report["fmax_mhz"],
                             report["target_clock_mhz"])
    result["host_link"] = host_link_numbers(model, config, batch, result["latency_us"] * 1e-6,
                                            uart_rate(report["target_clock_mhz"], baud))
    result.update({"model": model.name, "board": board, "array": config.format(),
                   "cycles_checked_in_simulation": sim is not None,
                   "synthesis": synthesis_summary(report)})
    return result


def _mac_units(engine):
    """An engine's binary MAC units: S synapses × P channels × k input planes × m MMV lanes."""
    return engine.simd * engine.pe * engine.input_bits * engine.mmv


def dataflow_numbers(model, config, fmax_mhz, clock_mhz, luts=None):
    """A dataflow build's figures from its cycle model: per layer the engine's cycles per
    image and utilisation (binary MACs over ``S·P·k·m`` MAC units × cycles: an MMV engine has
    m lanes of XNOR-popcount, one per image or pixel its weight word serves), the pipeline's
    interval (the slowest engine) and one image's latency, and the rates at the clock."""
    # the run model's steady state and one group's latency (the closed forms are lower bounds)
    interval, latency = steady_interval(config), run_cycles(config, config.group)["latency"]
    layers = []
    for (layer, _), engine in zip(engine_layers(model), config.engines):
        macs = layer.binary_macs()
        layers.append({"name": layer.name, "cycles": engine.cycles, "binary_macs": macs,
                       "simd": engine.simd, "pe": engine.pe, "mmv": engine.mmv,
                       "utilization": macs / (_mac_units(engine) * engine.cycles)})
    peak = sum(_mac_units(e) for e in config.engines)
    macs = sum(x["binary_macs"] for x in layers)
    out = {"arch": "dataflow", "fold": config.format(), "batch": 1,
           "cycles_per_run": interval, "cycles_per_inference": interval,
           "interval_cycles": interval, "latency_cycles": latency,
           "cycles_by_layer": {x["name"]: x["cycles"] for x in layers}, "layers": layers,
           # busy MAC units over all MAC units in steady state (the slowest engine at 100 %)
           "utilization": macs / (peak * interval), "peak_binary_macs_per_cycle": peak,
           "fmax_mhz": fmax_mhz, "clock_mhz": clock_mhz,
           "latency_us": latency / clock_mhz, "inferences_per_second": clock_mhz * 1e6 / interval}
    if fmax_mhz:
        out["inferences_per_second_at_fmax"] = fmax_mhz * 1e6 / interval
    if luts:
        out["luts"] = luts
        out["inferences_per_second_per_lut"] = out["inferences_per_second"] / luts
    return out


def dataflow_link_numbers(config, compute_seconds, baud, images=None):
    """Images streamed over a UART at ``baud`` (8N1): each run of ``images`` (the FIFOs'
    size by default) writes its inputs, COUNT and START, polls STATUS once and reads its
    integers (the driver's frames, sw/dataflow_driver.py)."""
    n = images or min(config.in_images, config.out_images)
    writes = (write_frames(mm.IN_BASE, bytes(n * config.in_words * config.in_word_bytes))
              + write_frames(mm.REG_COUNT, bytes(4)) + write_frames(mm.REG_CTRL, bytes(4)))
    reads = (read_frames(mm.REG_STATUS, 32)
             + read_frames(mm.ENGINE_BUSY_BASE, 4 * len(config.engines))
             + read_frames(mm.OUT_BASE, n * config.out_words * config.out_word_bytes))
    to_device = sum(len(f) for f in writes + reads)
    from_device = P.OVERHEAD_BYTES * len(writes + reads) + 32 + 4 * len(config.engines) \
        + n * config.out_words * config.out_word_bytes
    link = 10 * (to_device + from_device) / baud
    return {"baud": baud, "images_per_run": n, "bytes_to_device": to_device,
            "bytes_from_device": from_device, "link_seconds_per_run": link,
            "link_share": link / (link + n * compute_seconds),
            "inferences_per_second": n / (link + n * compute_seconds)}


def check_dataflow_in_simulation(model, config, images=8):
    """``images`` random inputs through the dataflow build on Verilator: every integer must
    equal the golden model and every counter the cycle model."""

    x = random_inputs(np.random.default_rng(0), model, images)
    result = simulate(model, x, target=DataflowTarget(config), progress=False)
    if result["mismatches"]:
        raise XnorflowError(f"simulation of '{model.name}' on {config.format()} disagrees with "
                            f"the golden model in {result['mismatches']} integers: this is a bug")
    if not result["predicted_cycles_match"]:
        raise XnorflowError(f"the dataflow core's counters differ from the cycle model: this is "
                            f"a bug")
    return result


def profile_dataflow(model, board, fold=None, simulate=True, clock_mhz=None, baud=None,
                     placer=None, seed=None, out_root=None):
    """Profile ``model`` on ``board``'s dataflow build (``fold``, a DataflowConfig, or without
    it the fastest recorded build that met its clock, else the fastest fold that fits:
    :func:`~xnorflow.sw.build_records.resolve_dataflow_build`): cycle model checked in
    simulation, then the build's figures (the build under ``out_root``, default
    ``bitstreams/``, where the records are read in either case)."""
    build = resolve_dataflow_build(model, board, fold, clock_mhz, seed, placer,
                                   log=lambda line: print(f"profile: {line}", file=sys.stderr))
    config, placer, seed = build.config, build.placer, build.seed
    check_model(model, config)
    clock = board_clock(board, build.clock_mhz)
    uart_rate(clock, baud)
    sim = check_dataflow_in_simulation(model, config) if simulate else None
    report = synthesize(dataflow_top(config, clock, baud), board,
                        build_label(config, clock, baud, placer, seed), out_root=out_root,
                        placer=placer, config=config, seed=seed)
    result = dataflow_numbers(model, config, report["fmax_mhz"], report["target_clock_mhz"],
                              report["luts"])
    result["host_link"] = dataflow_link_numbers(
        config, 1 / result["inferences_per_second"], uart_rate(report["target_clock_mhz"], baud))
    if fold is None:
        result["default_build"] = build.origin
    result.update({"model": model.name, "board": board, "array": config.format(),
                   "cycles_checked_in_simulation": sim is not None,
                   "synthesis": synthesis_summary(report)})
    return result


def format_profile(result):
    lines = [f"{result['model']} on {result['board']} ({result['array']}), batch {result['batch']}",
             f"{'layer':<8}{'cycles':>10}{'binary MACs':>14}{'utilisation':>13}"]
    for x in result["layers"]:
        lines.append(f"{x['name']:<8}{x['cycles']:>10}{x['binary_macs']:>14}"
                     f"{100 * x['utilization']:>12.1f}%")
    lines.append(f"{'total':<8}{result['cycles_per_run']:>10}{'':>14}"
                 f"{100 * result['utilization']:>12.1f}%")
    lines.append(f"cycles per inference {result['cycles_per_inference']:.1f}"
                 + (" (counters checked equal in simulation)"
                    if result["cycles_checked_in_simulation"] else ""))
    if result.get("clock_mhz"):
        lines.append(f"clock {result['clock_mhz']:.1f} MHz: latency "
                     f"{result['latency_us']:.2f} µs per run, "
                     f"{result['inferences_per_second']:,.0f} inferences/s")
    link = result.get("host_link")
    if link:
        lines.append(f"end to end over the UART ({link['baud']:,.0f} Bd 8N1): "
                     f"{link['bytes_to_device']:,} bytes in, {link['bytes_from_device']:,} out "
                     f"per run, {1e3 * link['link_seconds_per_run']:.1f} ms on the wire "
                     f"({100 * link['link_share']:.1f} % of the run): "
                     f"{link['inferences_per_second']:,.1f} inferences/s")
    if result.get("fmax_mhz"):
        lines.append(f"post-route Fmax {result['fmax_mhz']:.1f} MHz (ceiling: "
                     f"{result['inferences_per_second_at_fmax']:,.0f} inferences/s)")
    return "\n".join(lines)


def add_parser(sub):
    p = sub.add_parser("profile", help="cycles per layer, utilisation and inferences/s on a board",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("model", help="a compiled model (.xnf)")
    p.add_argument("--board", required=True, choices=sorted(BOARDS), help="the board to build for")
    p.add_argument("--arch", choices=("overlay", "dataflow"), default="overlay",
                   help="overlay: the array that runs any model that fits; dataflow: one "
                        "folded engine per layer (default overlay)")
    p.add_argument("--fold", default=None, metavar="FOLD.json|df:…",
                   help="with --arch dataflow: the fold to profile, a file of `xnorflow fold -o` "
                        "or its text form (default: the fastest build of the model's shapes in "
                        "bitstreams/ that met its clock, with its clock, placer and seed, "
                        "those given selecting among them; else the fastest fold that fits "
                        "the board)")
    p.add_argument("--array", default=None, help="configuration PxQxK (default: the board's)")
    p.add_argument("--batch", type=int_range(1, 65535), default=None,
                   help="inputs per run (default: Q, or 1 for a conv model)")
    p.add_argument("--clock-mhz", type=positive_float, default=None,
                   help="PLL clock of the build (default: the board's, see xnorflow synth)")
    p.add_argument("--baud", type=int_range(300, 12_000_000), default=None,
                   help="UART rate of the build (default 115200, as xnorflow synth)")
    p.add_argument("--placer", choices=PLACERS, default=None,
                   help="nextpnr placer of the build (default: nextpnr's, as xnorflow synth)")
    p.add_argument("--seed", type=nonnegative_int, default=None,
                   help="nextpnr's placement seed of the build (default: nextpnr's, as "
                        "xnorflow synth)")
    p.add_argument("--plot", type=output_file, default=None,
                   help="bar chart PNG (default: MODEL-BOARD-profile.png beside the model)")
    p.add_argument("--no-sim", action="store_true",
                   help="skip the simulation that checks the counters against the cycle model")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


def run(args):
    model = xnf.load(args.model)
    if args.arch == "dataflow":
        if args.array is not None or args.batch is not None:
            raise XnorflowError("--array and --batch are for --arch overlay; the dataflow build "
                                "takes --fold")
        result = profile_dataflow(model, args.board, load_fold(args.fold) if args.fold else None,
                                  simulate=not args.no_sim, clock_mhz=args.clock_mhz,
                                  baud=args.baud, placer=args.placer, seed=args.seed)
    else:
        if args.fold is not None:
            raise XnorflowError("--fold is for --arch dataflow; the overlay takes --array")
        result = profile(model, args.board, args.array, args.batch, simulate=not args.no_sim,
                         clock_mhz=args.clock_mhz, baud=args.baud, placer=args.placer,
                         seed=args.seed)
    plot = Path(args.plot) if args.plot else \
        Path(args.model).with_name(f"{Path(args.model).stem}-{args.board}-profile.png")
    plot_profile(result, plot, f"{model.name} on {args.board} ({result['array']})")
    result["plot"] = str(plot)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_profile(result))
        print(f"plot: {plot}", file=sys.stderr)
    return 0
