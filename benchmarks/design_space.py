"""Design space: the overlay's array shapes and the dataflow build's folds side by side on one
board: LUTs, FFs, block RAMs, Fmax, inferences/s, inferences/s per LUT, latency, and the rate a
host gets through the board's USB-UART.

The model is a random one of the board's reference shape (only its shape matters here): the
SFC, 784-256-256-256-10 with 1-bit input, on the ULX3S-85F; the digits MLP, 64-256-256-10 with
4-bit input, on the iCEBreaker (``--model-shape`` sets another). Each ``--arrays`` entry is one
synthesis point (post-route, nextpnr), either an overlay array ``PxQxK[,key=value...]`` or a
dataflow fold ``df:...`` (the text of ``xnorflow fold``); builds already done with the same
design and tools are reused (``xnorflow synth``'s hash), so re-running is cheap. ``--reports``
takes finished builds' ``report.json`` files instead (the tracked ``bitstreams/*/report.json``),
with no synthesis at all.

The figures come from the cycle models (equal to the hardware counters: tests/test_sim_*.py,
tests/test_dataflow_core.py), at the post-route Fmax:

* overlay: the cycles of one run of the largest batch its memories take
  (:func:`xnorflow.sw.program.predict_cycles`) over that batch; latency: a run of one image;
* dataflow: a run of the largest batch its FIFOs take
  (:func:`xnorflow.hw.dataflow.run_timing.run_cycles`), over that batch (a run fills and drains
  the pipeline once); latency: a run of one MMV group's first image. The steady-state rate of
  an endless stream (the slowest engine's interval, what ``xnorflow profile`` reports) is
  ``inferences_per_second_streaming``.

Beside each point, what the host gets end to end through the board's USB-UART bridge at the
fastest rate both the bridge and the board's UART make (``host_link``, :func:`uart_link`): the
driver's own bytes per run (``xnorflow.profile.host_link_numbers`` /
``dataflow_link_numbers``). On a board the UART, not the accelerator, bounds a run.

Each synthesis point (board x configuration x placer x seed) is one build: ``--jobs`` builds at
once on this machine, or, with ``--cluster``, one Dask task each on a cluster's workers
(docs/scale-out.md), each writing its ``<out-root>/<build>/report.json``; the table and the plot
come from the reports the builds return.

Prints ONE JSON document on stdout (progress on stderr) and writes a Pareto plot (LUTs vs
inferences/s, log axes, published FINN/BNN-PYNQ points as references) and, with ``--table``, the
Markdown table of docs/dataflow.md. Usage::

    .venv/bin/python benchmarks/design_space.py --jobs 1 \\
        --plot benchmarks/results/design_space.png > benchmarks/results/design_space.json
    .venv/bin/python benchmarks/design_space.py --board icebreaker \\
        --reports bitstreams/icebreaker-*/report.json --plot ... > ...
    .venv/bin/python benchmarks/design_space.py --cluster tcp://scheduler:8786 ...
"""
import argparse
import json
import math
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xnorflow.cluster import (TaskProgress, add_cluster_argument, completed,  # noqa: E402
                              open_client)
from xnorflow.hw.config import ArrayConfig  # noqa: E402
from xnorflow.hw.dataflow.config import DataflowConfig  # noqa: E402
from xnorflow.hw.dataflow.run_timing import run_cycles, steady_interval  # noqa: E402
from xnorflow.profile import dataflow_link_numbers, host_link_numbers  # noqa: E402
from xnorflow.sw.argtypes import check_writable_dir, nonnegative_int, positive_int  # noqa: E402
from xnorflow.sw.dataflow_program import check_model, engine_layers  # noqa: E402
from xnorflow.sw import resources  # noqa: E402
from xnorflow.sw.errors import XnorflowError  # noqa: E402
from xnorflow.sw.fold import fold_model  # noqa: E402
from xnorflow.sw.program import max_batch, predict_cycles  # noqa: E402
from xnorflow.sw.random_models import random_model  # noqa: E402
from xnorflow.sw.synth import (BOARD_DEFAULT_ARRAY, BOARDS, PLACERS,  # noqa: E402
                               accelerator_top, build_label, dataflow_top, synthesize, uart_rate)

from merge import merge_points  # noqa: E402  (benchmarks/merge.py, beside this script)

SFC = [784, 256, 256, 256, 10]
DIGITS = [64, 256, 256, 10]
#: Each board's reference model: (layer widths, input bits). The SFC is the ECP5 target's
#: network; the digits MLP is what the UP5K runs (docs/dataflow.md, "Measured").
BOARD_MODEL = {"ulx3s-85f": (tuple(SFC), 1), "icebreaker": (tuple(DIGITS), 4)}
MODEL_NAMES = {tuple(SFC): "SFC", tuple(DIGITS): "digits MLP"}
#: The throughput each board's reference model is asked for (docs/synthesis.md, docs/dataflow.md).
BOARD_TARGET = {"ulx3s-85f": 1e6, "icebreaker": 1e5}

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
# The dataflow fold `xnorflow fold SFC --board ulx3s-85f --target-ips 3000000` picks, with
# 512-image FIFOs (docs/dataflow.md, "Fashion-MNIST SFC").
SFC_3M_FOLD = ("df:784u1>256:256x8m4,256>256:128x8m2,256>256:128x8m2,256>10r:128x1;"
               "in_images=512,out_images=512,in_word=256")

#: Published points drawn beside ours. Both are Xilinx Zynq builds counted in 6-input LUTs
#: (ours: 4-input LUTs, ECP5 TRELLIS_COMB / iCE40 logic cells), so per LUT they are not like
#: for like: a LUT6 does up to about twice a LUT4's logic.
REFERENCES = [
    {"name": "FINN SFC-max", "model": "SFC 784-256-256-256-10, binary input (MNIST)",
     "device": "Xilinx Zynq XC7Z045 (ZC706)", "lut_kind": "LUT6", "luts": 91_131,
     "inferences_per_second": 12.3e6, "latency_us": 0.31,
     # The rate and latency are the FINN paper's abstract; its LUT count is read from the
     # paper's results table as NeuraLUT's Table III reprints it (91,131 LUTs, 200 MHz): the
     # FINN PDF itself was not at hand when this was written.
     "source": "Umuroglu et al., 'FINN: A Framework for Fast, Scalable Binarized Neural "
               "Network Inference', FPGA 2017, arXiv:1612.07119 (abstract: 12.3 million "
               "classifications/s, 0.31 us latency, MNIST, ZC706); LUTs: the paper's SFC-max "
               "row as reprinted in Andronic & Constantinides, 'NeuraLUT', FPL 2024, "
               "arXiv:2403.00849, Table III (91,131 LUTs, 5 BRAM, 200 MHz)"},
    {"name": "BNN-PYNQ LFC-W1A1", "model": "LFC 784-1024-1024-1024-10, binary (MNIST)",
     "device": "Xilinx Zynq XC7Z020 (PYNQ-Z1/Z2)", "lut_kind": "LUT6", "luts": 28_360,
     "inferences_per_second": 356_633, "latency_us": None,
     # No single-image latency is published: the notebook's 2.80 us is 10,000 images' time
     # over 10,000, host and DMA included.
     "source": "github.com/Xilinx/BNN-PYNQ: bnn/src/network/lfcW1A1/README.md at d84f6e88 "
               "(Vivado 2018.2, PYNQ-Z1/Z2: 28,360 slice LUTs, 33,470 FFs, 110 block RAM "
               "tiles); notebooks/LFC-QNN_MNIST.ipynb at 10b2ab55 (hardware run: 10,000 MNIST "
               "test images in 28,040 us, 356,633.39 images/s, host included; the board is "
               "not named in the notebook)"},
]


@dataclass(frozen=True)
class Bridge:
    """A board's USB-UART bridge and the rates its baud generator makes: ``base / x`` for
    ``x`` = 1, 1.5, or ``n + k/8`` with ``n ≥ 2`` (FTDI AN_120, "Aliasing VCP Baud Rates":
    divisors 0 and 1 are the special cases base and 2/3 base, and "sub-integer divisors are
    not allowed" below 2)."""

    chip: str
    base: float        # its fastest rate, Bd

    def nearest(self, rate):
        """The rate of this bridge closest to ``rate``."""
        x = self.base / rate
        xs = [1.0, 1.5, 2.0]
        if x > 2:
            xs += [math.floor(x * 8) / 8, math.ceil(x * 8) / 8]
        return min((self.base / d for d in xs), key=lambda r: abs(r - rate))


#: FT2232H (iCEBreaker; FTDI DS_FT2232H: UART "up to 12 Mbaud", 120 MHz reference, x10) and
#: FT231X (ULX3S; FTDI DS_FT231X: "up to 3 Mbaud", 48 MHz reference, x16).
BRIDGES = {"icebreaker": Bridge("FT2232H", 12e6), "ulx3s-85f": Bridge("FT231X", 3e6)}
#: How far apart the board's UART rate and the bridge's may be. The receiver (hw/board/uart.py)
#: samples each bit in its middle, timed from the start bit's edge seen to within one clock
#: cycle (1/divisor of a bit): the stop bit's sample, 9.5 bits on, stays inside it while the
#: rates differ by less than (0.5 − 1/divisor)/9.5, 2.6 % at the smallest divisor, 4.
RATE_TOLERANCE = 0.02


def log(msg):
    print(f"[design_space] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    """A user's mistake: one line on stderr, exit status 2, before anything is written."""
    print(f"design_space: error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def output_path(text):
    """argparse type of ``--plot`` and ``--table``: a file whose directory exists or can be
    made (the plot may go into ``--out-root``, made by the first build); checked at parse time,
    so a bad path fails before the builds."""
    if not text or Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"expected a file path, got {text!r}")
    check_writable_dir(str(Path(text).resolve().parent))
    return text


def writable(path):
    """``path``, its directory made if missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


# -- the model -----------------------------------------------------------------------------------

def model_shape(text):
    """argparse type of ``--model-shape``: ``N0,N1,...,Nk[:BITS]`` → (widths, input bits)."""
    widths, _, bits = text.partition(":")
    try:
        sizes = tuple(int(n) for n in widths.split(","))
        k = int(bits) if bits else 1
    except ValueError:
        sizes, k = (), 0
    if len(sizes) < 2 or min(sizes) < 1 or not 1 <= k <= 8:
        raise argparse.ArgumentTypeError(
            f"expected N0,N1,...,Nk[:BITS] (layer widths from the inputs to the classes, each "
            f"at least 1; BITS the input's bits, 1..8, default 1), e.g. 784,256,256,256,10:1, "
            f"got {text!r}")
    return sizes, k


def make_model(sizes, bits):
    """A random compiled model of that shape (the cycle models and the folds need only it)."""
    name = "sfc-1bit" if (list(sizes), bits) == (SFC, 1) else \
        f"mlp-{'-'.join(map(str, sizes))}-{bits}bit"
    return random_model(np.random.default_rng(0), list(sizes), input_bits=bits, name=name)


def model_label(sizes, bits):
    """``SFC 784-256-256-256-10, 1-bit input``: the JSON's ``model`` and the plot's title."""
    kind = MODEL_NAMES.get(tuple(sizes), "MLP")
    return f"{kind} {'-'.join(map(str, sizes))}, {bits}-bit input"


def default_entries(board, model, board_shape):
    """The points built when ``--arrays`` is not given: on the ULX3S-85F with the SFC the three
    overlay shapes of the ECP5 sweep and the 3 M/s dataflow fold; otherwise the board's default
    overlay array and the fastest dataflow fold of the model that fits the board."""
    if board == "ulx3s-85f" and board_shape:
        return DEFAULT_ARRAYS + [SFC_3M_FOLD]
    try:
        fold = fold_model(model, board).config.format()
    except XnorflowError as e:
        fail(f"no dataflow fold of the model fits the {board}: {e}")
    return [BOARD_DEFAULT_ARRAY[board], fold]


# -- the configurations --------------------------------------------------------------------------

def is_dataflow(text):
    return text.startswith("df:")


def split_placer(array, placer=None):
    """``PxQxK[,key=value...][:PLACER]`` or ``df:FOLD[:PLACER]`` → (configuration, placer); the
    suffix overrides ``placer``. Checked before any build starts (a bad third entry must not
    wait for two long builds)."""
    if is_dataflow(array):
        # a fold's engines hold colons of their own: only a known placer counts as the suffix
        head, _, own = array.rpartition(":")
        return (head, own) if own in PLACERS else (array, placer)
    array, _, own = array.partition(":")
    if own and own not in PLACERS:
        fail(f"--arrays {array}:{own}: unknown placer; choose one of {', '.join(PLACERS)}")
    return array, own or placer


def parse_config(text):
    """An ArrayConfig (overlay) or a DataflowConfig (``df:``) from its text; ValueError says
    what is wrong."""
    return DataflowConfig.parse(text) if is_dataflow(text) else ArrayConfig.parse(text)


def check_fits_board(config, board, where):
    """Refuse, before any build, a configuration the resource model says clearly does not fit
    ``board`` (the check ``xnorflow synth`` makes; a build would fail in nextpnr after
    minutes)."""
    over = resources.check_fits(board, resources.estimate(board, config))
    if over:
        fail(f"{where}: does not fit the {board}: it needs "
             f"{resources.describe_misfits(board, over)} (sw/resources.py's estimate)")


def check_config(text, model, where):
    """Refuse, before any build, a configuration that does not parse or cannot run ``model``:
    an overlay whose memories cannot take one image (its cycles per inference would be
    undefined), a fold made for another shape. ``where`` names the option or file."""
    try:
        config = parse_config(text)
    except ValueError as e:
        fail(f"{where}: {e}")
    if isinstance(config, DataflowConfig):
        try:
            check_model(model, config)
        except XnorflowError as e:
            fail(f"{where}: the fold is not of the model's shape: {e}")
    elif max_batch(model.layers, config) < 1:
        fail(f"{where}: its in_depth/act_depth/out_depth cannot hold one image of "
             f"{model.name} ({'-'.join(str(layer.in_features) for layer in model.layers)}-"
             f"{model.layers[-1].out_features})")
    return config


# -- builds and reports --------------------------------------------------------------------------

def build(array, board, out_root, placer=None, progress=True, seed=None):
    """Synthesize ``array`` (an overlay array or a ``df:`` fold) for ``board`` with nextpnr's
    ``placer`` and placement ``seed`` (or reuse the build in ``out_root`` made from the same
    design and tools): its report. One synthesis point; with ``--cluster`` one Dask task
    (``progress`` off there: the workers' stage bars would mix)."""
    config = parse_config(array)
    if isinstance(config, DataflowConfig):
        # the config makes the report say arch "dataflow" and the fold, as `xnorflow synth` does
        return synthesize(dataflow_top(config), board,
                          build_label(config, placer=placer, seed=seed), out_root=out_root,
                          log=log, placer=placer, progress=progress, seed=seed, config=config)
    return synthesize(accelerator_top(config), board,
                      build_label(config, placer=placer, seed=seed), out_root=out_root, log=log,
                      placer=placer, progress=progress, seed=seed)


#: What a report.json must hold to be a point (besides its configuration).
REPORT_KEYS = ("board", "luts", "brams", "fmax_mhz")


def read_json(option, path, fail=fail, what="a JSON object"):
    """The JSON object in ``path``, given by ``option``; a file that cannot be read, is not
    JSON or not an object is refused with ``fail`` (the calling script's one-line error)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        fail(f"{option} {path}: cannot read it ({e.strerror or e})")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{option} {path}: not a JSON file ({e})")
    if not isinstance(doc, dict):
        fail(f"{option} {path}: not {what}")
    return doc


def read_report(path, board):
    """A finished build's ``report.json`` for ``board``, and its configuration text; a file
    that is unreadable, not a build report, or for another board is refused naming it."""
    report = read_json("--reports", path, what="a build's report.json (a JSON object)")
    text = report.get("fold") if report.get("arch") == "dataflow" else report.get("array")
    missing = [k for k in REPORT_KEYS if report.get(k) is None] + ([] if text else
                                                                   ["array or fold"])
    if missing:
        fail(f"--reports {path}: not a build's report.json (no {', '.join(missing)})")
    if report["board"] != board:
        fail(f"--reports {path}: a build for {report['board']}, not for --board {board}")
    return report, text


def report_point(path, board, model):
    """The row of a finished build's report: no synthesis."""
    report, text = read_report(path, board)
    check_config(text, model, f"--reports {path}")
    row = figures(text, {**report, "skipped": True}, model, board)
    row["report"] = repo_relative(path)
    return row


# -- figures -------------------------------------------------------------------------------------

def overlay_cycles(config, model):
    """The overlay's run: the largest batch its input and activation banks take (a throughput
    user fills them; the array fills and drains once per layer whatever the batch), and a run
    of one image for the latency."""
    batch = max_batch(model.layers, config)
    cycles = predict_cycles(model.layers, config, batch)
    return {"batch": batch, "total": cycles["total"],
            "by_layer": {k: v / batch for k, v in cycles["by_layer"].items()},
            "latency": predict_cycles(model.layers, config, 1)["total"]}


def dataflow_cycles(config, model):
    """The dataflow build's run: the largest the FIFOs take (whole MMV groups; the model is
    exact while the results fit the output FIFO), and the first image's latency in a run of
    one group."""
    batch = min(config.in_images, config.out_images) // config.group * config.group
    run = run_cycles(config, batch)
    return {"batch": batch, "total": run["total"],
            "by_layer": {layer.name: busy / batch
                         for (layer, _), busy in zip(engine_layers(model), run["by_engine"])},
            "latency": run_cycles(config, config.group)["latency"],
            "interval": steady_interval(config)}


def uart_link(board, clock_mhz):
    """The fastest rate both the board's bridge and the board top's UART at ``clock_mhz``
    make (within :data:`RATE_TOLERANCE`): the UART divides the clock by a whole number of at
    least 4 (:func:`xnorflow.sw.synth.uart_rate`), the bridge makes :meth:`Bridge.nearest`."""
    bridge = BRIDGES[board]
    clock_hz = clock_mhz * 1e6
    divisor = max(4, math.ceil(clock_hz / (bridge.base * (1 + RATE_TOLERANCE))))
    while True:
        rate = uart_rate(clock_mhz, clock_hz / divisor)
        theirs = bridge.nearest(rate)
        if abs(theirs - rate) <= RATE_TOLERANCE * rate:
            return {"bridge": bridge.chip, "bridge_max_baud": bridge.base, "clock_mhz": clock_mhz,
                    "baud": rate, "bridge_baud": theirs}
        divisor += 1


def host_link(arch, config, model, cycles, fmax, board):
    """One run seen from the host through the board's USB-UART at its fastest rate, with the
    accelerator at ``fmax``: the driver's bytes (xnorflow profile's own functions), 10 bits
    a byte, half duplex, plus the run's compute time."""
    link = uart_link(board, fmax)
    run_seconds = cycles["total"] / (fmax * 1e6)
    if arch == "dataflow":
        numbers = dataflow_link_numbers(config, run_seconds / cycles["batch"], link["baud"],
                                        images=cycles["batch"])
    else:
        numbers = host_link_numbers(model, config, cycles["batch"], run_seconds, link["baud"])
    numbers["inferences_per_second_over_uart"] = numbers.pop("inferences_per_second")
    return {**link, **numbers}


def figures(array, report, model, board):
    """A point's row: the build's resources and Fmax (``report``) with the cycles of ``model``
    on ``array`` (an overlay array or a ``df:`` fold)."""
    config = parse_config(array)
    arch = "dataflow" if isinstance(config, DataflowConfig) else "overlay"
    cycles = (dataflow_cycles if arch == "dataflow" else overlay_cycles)(config, model)
    fmax, luts, batch = report["fmax_mhz"], report["luts"], cycles["batch"]
    per_inf = cycles["total"] / batch
    ips = fmax * 1e6 / per_inf
    row = {"arch": arch, "array": config.format(), "placer": report.get("placer", "heap"),
           **({"seed": report["seed"]} if "seed" in report else {}), "luts": luts,
           "ffs": report.get("ffs"), "brams": report["brams"], "sprams": report.get("sprams", 0),
           "fmax_mhz": fmax, "batch": batch, "cycles_per_inference": per_inf,
           "cycles_by_layer": cycles["by_layer"],
           "inferences_per_second": ips,
           "inferences_per_second_per_lut": ips / luts,
           "inferences_per_second_per_klut": ips / (luts / 1000),
           "latency_cycles": cycles["latency"], "latency_us": cycles["latency"] / fmax}
    if arch == "dataflow":
        row["interval_cycles"] = cycles["interval"]
        row["inferences_per_second_streaming"] = fmax * 1e6 / cycles["interval"]
    for key in ("target_clock_mhz", "timing_met"):
        if key in report:
            row[key] = report[key]
    row["host_link"] = host_link(arch, config, model, cycles, fmax, board)
    row["build_seconds"] = report.get("build_seconds")
    row["reused_build"] = report["skipped"]
    return row


def point(array, board, out_root, model, placer=None, seed=None):
    """One build of ``array`` with nextpnr's ``placer`` and ``seed`` in this process, and its
    figures."""
    return figures(array, build(array, board, out_root, placer, seed=seed), model, board)


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
                rows[i] = figures(builds[i][0], report, model, board)
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


# -- plot and table ------------------------------------------------------------------------------

def short_config(p):
    """The configuration in a few characters: an overlay's shape and the options that set it
    apart from the SFC depths; a fold's S x P (m MMV) per engine."""
    if p.get("arch") == "dataflow":
        body = p["array"][3:].partition(";")[0]
        return "dataflow " + "/".join(e.rpartition(":")[2] for e in body.split(","))
    shape, *opts = p["array"].split(",")
    extra = [o for o in opts if o.split("=")[0] in ("row_groups", "issue_reg")]
    return shape + (f" ({', '.join(extra)})" if extra else "")


def point_label(p):
    """Short plot label: the configuration, the placer and seed if set, Fmax, the rate."""
    extra = []
    if p.get("placer", "heap") != "heap":
        extra.append(f"{p['placer']} placer")
    if p.get("seed") is not None:
        extra.append(f"seed {p['seed']}")
    return (short_config(p) + (f" ({', '.join(extra)})" if extra else "")
            + f"\n{p['fmax_mhz']:.1f} MHz, {p['inferences_per_second'] / 1e3:,.0f}k/s")


def references_drawn(sizes):
    """Whether the plot draws the published points: both are MNIST networks (784 inputs), so
    they sit beside a model of that input size; beside another (the iCEBreaker's 64-input
    digits MLP) they would compare other networks and lie far off its points' scale, and the
    title names them instead (the JSON always carries them)."""
    return sizes[0] == 784


ARCH_STYLE = {"overlay": dict(marker="o", color="#4477aa", label="overlay (one array)"),
              "dataflow": dict(marker="s", color="#228833", label="dataflow (engine per layer)")}


def _draw_points(ax, points):
    """Our points, one marker and colour per architecture, each labelled; labels alternate
    above-left and below-right along the LUT axis so neighbours do not print over one another."""
    for arch, style in ARCH_STYLE.items():
        ours = [p for p in points if p.get("arch", "overlay") == arch]
        if ours:
            ax.scatter([p["luts"] for p in ours], [p["inferences_per_second"] for p in ours],
                       s=60, zorder=3, **style)
    for i, p in enumerate(sorted(points, key=lambda p: p["luts"])):
        above = i % 2 == 0
        ax.annotate(point_label(p), (p["luts"], p["inferences_per_second"]),
                    textcoords="offset points", xytext=(-6, 6) if above else (8, -20),
                    ha="right" if above else "left", fontsize=7)


def _draw_uart(ax, points):
    """Below each point, what a host gets through the board's USB-UART."""
    uart = [p["host_link"]["inferences_per_second_over_uart"] for p in points]
    for p, u in zip(points, uart):
        ax.plot([p["luts"]] * 2, [u, p["inferences_per_second"]], color="grey", ls=":", lw=0.8,
                zorder=1)
    link = points[0]["host_link"]
    ax.scatter([p["luts"] for p in points], uart, marker="v", s=30, color="grey", zorder=3,
               label=f"end to end over the {link['bridge']} USB-UART "
                     f"(≤ {link['bridge_max_baud'] / 1e6:g} MBd)")


def _draw_front(ax, points, front):
    """The Pareto front: a ring round each of its points and a line through them."""
    fr = sorted((p for p in points if p["array"] in front), key=lambda p: p["luts"])
    xs, ys = [p["luts"] for p in fr], [p["inferences_per_second"] for p in fr]
    ax.plot(xs, ys, color="#cc3311", lw=1, zorder=2, marker="o", mfc="none", ms=12,
            label="Pareto front")


def _draw_references(ax):
    """The published points, labelled (their LUTs are LUT6: see :data:`REFERENCES`)."""
    # (marker, label offset, alignment): FINN's label under its star, at the plot's right;
    # BNN-PYNQ's right of its cross, clear of the overlay labels around it
    looks = (("*", (0, -24), "center"), ("P", (10, -4), "left"))
    for ref, (marker, offset, align) in zip(REFERENCES, looks):
        xy = (ref["luts"], ref["inferences_per_second"])
        ax.scatter(*xy, marker=marker, s=110, color="black", zorder=3,
                   label=f"{ref['name']} ({ref['device']}, {ref['lut_kind']}), published")
        ax.annotate(f"{ref['name']}\n{ref['luts']:,} {ref['lut_kind']}, "
                    f"{ref['inferences_per_second'] / 1e3:,.0f}k/s", xy,
                    textcoords="offset points", xytext=offset, ha=align, fontsize=7)


def _lut_axis(ax, luts):
    """A log LUT axis with room round the points, its ticks written as plain counts: every
    1..9 of the decade when the points lie within one, else 1, 2, 3 and 5."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    lo, hi = min(luts) / 1.6, max(luts) * 1.6
    labelled = "123456789" if hi / lo < 10 else "1235"

    def count(x, _):
        return f"{x:,.0f}" if f"{x:.0e}"[0] in labelled else ""
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0,)))
    ax.xaxis.set_minor_locator(LogLocator(subs=tuple(float(d) for d in range(2, 10))))
    ax.xaxis.set_major_formatter(FuncFormatter(count))
    ax.xaxis.set_minor_formatter(FuncFormatter(count))
    ax.tick_params(axis="x", which="both", labelsize=7)


def plot(points, front, path, board, title, draw_references=True, target=None):
    """The Pareto plot: LUTs vs inferences/s, log axes, overlay and dataflow apart, the rate
    over the UART under each point, the published references if ``draw_references``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 6.2))
    luts = [p["luts"] for p in points]
    if points:
        _draw_points(ax, points)
        _draw_uart(ax, points)
        _draw_front(ax, points, front)
    if draw_references:
        _draw_references(ax)
        luts += [r["luts"] for r in REFERENCES]
    if target:
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:,.0f}/s")
    if luts:
        _lut_axis(ax, luts)
    ax.set_yscale("log")
    ax.margins(y=0.3)   # room for the labels above and below the points
    ax.set_xlabel(f"LUTs ({BOARDS[board].family.upper()} LUT4, {board}, post-route"
                  + ("; references: LUT6)" if draw_references else ")"))
    ax.set_ylabel("inferences / s (at Fmax; ▼ over the UART)")
    ax.set_title(title, fontsize=9)
    # below the axes: inside, it would cover one board's labels or the other's
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(writable(path), dpi=120)
    plt.close(fig)


def plot_title(board, label, draw_references):
    """The plot's title; when the references are not drawn, it names them."""
    title = f"Overlay vs dataflow: {label} on the {board}"
    if not draw_references:
        title += "\nreferences not drawn (other networks, MNIST; JSON): " + "; ".join(
            f"{r['name']} {r['luts']:,} {r['lut_kind']}, {r['inferences_per_second']:,.0f}/s"
            for r in REFERENCES)
    return "\n".join(line for part in title.split("\n") for line in textwrap.wrap(part, 95))


def markdown_table(doc):
    """The points and the references as the Markdown table of docs/dataflow.md."""
    lines = ["| board | arch | config | LUTs | FFs | BRAM | Fmax (MHz) | inf/s | inf/s per LUT "
             "| latency (µs) | over the UART (inf/s) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in doc["points"]:
        link = p["host_link"]
        brams = f"{p['brams']}" + (f" + {p['sprams']} SPRAM" if p.get("sprams") else "")
        ffs = f"{p['ffs']:,}" if p.get("ffs") is not None else "—"
        lines.append(
            f"| {doc['board']} | {p['arch']} | `{p['array']}` | {p['luts']:,} | {ffs} | {brams} "
            f"| {p['fmax_mhz']:.1f} | {p['inferences_per_second']:,.0f} "
            f"| {p['inferences_per_second_per_lut']:.1f} | {p['latency_us']:.2f} "
            f"| {link['inferences_per_second_over_uart']:,.0f} "
            f"({link['bridge']}, {link['baud'] / 1e6:.2f} MBd) |")
    for r in doc["references"]:
        latency = f"{r['latency_us']:.2f}" if r.get("latency_us") is not None else "—"
        lines.append(
            f"| {r['device']} | {r['name']} (published) | {r['model']} | {r['luts']:,} "
            f"{r['lut_kind']} | — | — | — | {r['inferences_per_second']:,.0f} "
            f"| {r['inferences_per_second'] / r['luts']:.1f} | {latency} | — |")
    return "\n".join(lines) + "\n"


def repo_relative(path):
    """``path`` relative to the repository when it lies inside it (results stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# -- command line --------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--arrays", nargs="+", default=None, metavar="CONFIG",
                    help="points to build, each an overlay array PxQxK[,key=value...][:PLACER] "
                         "or a dataflow fold df:...[:PLACER] (the text of `xnorflow fold`) "
                         "(space-separated; PLACER heap or static overrides --placer). "
                         "Default, without --reports: on ulx3s-85f with the SFC the three "
                         "overlay shapes 8x8x32, 16x8x32, 32x4x64 at SFC depths and the "
                         "3 M/s fold; otherwise the board's default overlay array and the "
                         "fastest dataflow fold of the model that fits the board (icebreaker: "
                         "2x4x16 and the fold `xnorflow fold` picks). With --reports, no "
                         "builds unless given")
    ap.add_argument("--reports", nargs="+", default=[], metavar="REPORT.json",
                    help="finished builds' report.json files (e.g. bitstreams/*/report.json, "
                         "for --board), each one point, with no synthesis (default: none)")
    ap.add_argument("--board", choices=tuple(BOARDS), default="ulx3s-85f",
                    help="the board every point is built for (default ulx3s-85f)")
    ap.add_argument("--model-shape", type=model_shape, default=None, metavar="N0,...,Nk[:BITS]",
                    help="the MLP whose cycles are counted: layer widths from the inputs to "
                         "the classes and the input's bits, e.g. 784,256,256,256,10:1 "
                         "(default: the board's, ulx3s-85f the SFC 784,256,256,256,10:1, "
                         "icebreaker the digits MLP 64,256,256,10:4)")
    ap.add_argument("--jobs", type=positive_int, default=2,
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
    ap.add_argument("--plot", type=output_path,
                    default=str(ROOT / "benchmarks" / "results" / "design_space.png"),
                    help="the Pareto plot written (default "
                         "benchmarks/results/design_space.png)")
    ap.add_argument("--table", type=output_path, default=None, metavar="TABLE.md",
                    help="also write the points and the references as a Markdown table "
                         "(default: none)")
    ap.add_argument("--update", default=None, metavar="JSON",
                    help="an earlier output of this benchmark: print its points with this run's "
                         "added (a point of the same array replaced), e.g. to add one new shape "
                         "without rebuilding the others (default: none)")
    return ap.parse_args(argv)


def run_builds(args, builds, model):
    """The rows of the synthesis points, built here or on the cluster."""
    if not builds:
        return []
    try:
        if args.cluster is not None:
            return points_on_cluster(args.cluster, builds, args.board, args.out_root, model)
        with ThreadPoolExecutor(args.jobs) as pool:
            return list(pool.map(
                lambda b: point(b[0], args.board, args.out_root, model, b[1], b[2]), builds))
    except XnorflowError as e:   # no Dask, no scheduler, a build refused or failed
        fail(str(e))


def main(argv=None):
    args = parse_args(argv)
    sizes, bits = args.model_shape or BOARD_MODEL[args.board]
    model = make_model(sizes, bits)
    arrays = args.arrays
    if arrays is None and not args.reports:
        arrays = default_entries(args.board, model, (sizes, bits) == BOARD_MODEL[args.board])
    builds = [(*split_placer(a, args.placer), seed) for a in arrays or [] for seed in args.seeds]
    for array, _, _ in builds:      # every entry checked before the first (long) build
        config = check_config(array, model, f"--arrays {array}")
        check_fits_board(config, args.board, f"--arrays {array}")
    points = [report_point(path, args.board, model) for path in args.reports]
    points += run_builds(args, builds, model)
    if args.update:
        points = merge_points(args.update, points, "array")
    front = pareto(points)
    label = model_label(sizes, bits)
    drawn = references_drawn(sizes)
    target = BOARD_TARGET[args.board] if (sizes, bits) == BOARD_MODEL[args.board] else None
    plot(points, front, args.plot, args.board, plot_title(args.board, label, drawn), drawn, target)
    doc = {"benchmark": "design_space", "board": args.board, "model": label,
           "model_shape": {"sizes": list(sizes), "input_bits": bits},
           "points": points, "pareto": front,
           "references": REFERENCES,
           "references_note": "published Xilinx Zynq builds counted in LUT6; ours are LUT4 "
                              "(ECP5 TRELLIS_COMB, iCE40 logic cells), so per LUT they are not "
                              "like for like" + ("" if drawn else "; not drawn on this plot: "
                                                 "other networks (MNIST, 784 inputs)"),
           "host_link_note": f"end to end through the board's {BRIDGES[args.board].chip} "
                             f"USB-UART at the fastest rate it and the board's UART make at "
                             f"each point's Fmax (8N1, half duplex, the driver's bytes per "
                             f"run): on a board the UART, not the accelerator, bounds a run",
           "plot": repo_relative(args.plot)}
    if args.table:
        Path(writable(args.table)).write_text(markdown_table(doc))
        doc["table"] = repo_relative(args.table)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
