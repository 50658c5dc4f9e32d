"""CNNs on the overlay and on the dataflow build: cycles, resources and images/s, proven on
Verilator.

Overlay points (docs/conv.md, "On the core"):

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

Every overlay run goes through the driver into the Verilator-simulated accelerator (link
included); the core's counters must equal the cycle model (``predicted_cycles_match``).
Images per second use ``--fmax-mhz``, by default the post-route Fmax of the model's array on
the ULX3S (the ``bitstreams/ulx3s-85f-…/report.json`` whose ``array`` is the model's, found by
``xnorflow.sw.build_records.find_builds``; the board clock when it was not built); that report also
gives the row's LUTs, FFs, block RAMs and the clock the build runs at.

Dataflow points (issue #26), beside them: ``--dataflow NAME=MODEL@FOLD[@BOARD]`` runs the
model's test set (the data set its ``.xnf`` names) through the dataflow build of the fold on
Verilator (``xnorflow sim --arch dataflow``), or takes a finished ``xnorflow sim --json``
result of it (``--sims NAME=SIM.json``: the CNV's 10,000 images take ~35 minutes). Its
resources, Fmax and clock come from the build's ``report.json`` (``--reports``, matched by
board and fold); a point without one gets the fold's resource estimate
(:func:`xnorflow.sw.fold.fold_report`) at the fold's planned clock and is marked
``"source": "estimate"``. Its rates are the pipeline's steady state (the slowest engine's
interval, :func:`xnorflow.profile.dataflow_numbers`), equal to the hardware counters wherever it
ran on Verilator.

Prints ONE JSON document on stdout (progress on stderr), every point a row of the same fields
(board, arch, configuration, LUTs, FFs, block RAMs, SPRAMs, Fmax, the build's clock, images/s
at that clock and at Fmax, one image's latency, images/s per LUT, the Verilator verification
and where each figure came from) with the published BNN-PYNQ and FINN CNV figures as
references; writes a plot of images/s against LUTs (``--plot``), and with ``--table`` the rows
as a Markdown table (``--cycles-plot`` draws the overlay points' cycles by layer, the chart
benchmarks/results/cnn_core.png)::

    .venv/bin/python benchmarks/cnn_core.py --methods rbnn --checkpoint D.pt --cnv-images 0 \\
        --dataflow digits-cnn-rbnn-df=D.pt@df:…@icebreaker --reports R.json \\
        --update benchmarks/results/cnn_core.json --table T.md > out.json

(docs/conv.md, "Overlay vs dataflow", has the whole command behind its table.)
"""
import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from xnorflow.hw.config import ArrayConfig  # noqa: E402
from xnorflow.hw.dataflow.config import DataflowConfig  # noqa: E402
from xnorflow.profile import dataflow_numbers  # noqa: E402
from xnorflow.simulate import simulate  # noqa: E402
from xnorflow.sw import resources, xnf  # noqa: E402
from xnorflow.sw.argtypes import nonnegative_int, positive_float, positive_int  # noqa: E402
from xnorflow.sw.compile import compile_checkpoint  # noqa: E402
from xnorflow.sw.data import load_dataset, quantize_inputs  # noqa: E402
from xnorflow.sw.dataflow_program import check_model  # noqa: E402
from xnorflow.sw.errors import XnorflowError  # noqa: E402
from xnorflow.sw.evaluate import dataset_inputs, torch_predictions  # noqa: E402
from xnorflow.sw.fold import DATAFLOW_CLOCK_MHZ, FoldResult, fold_report, load_fold  # noqa: E402
from xnorflow.sw.program import predict_cycles  # noqa: E402
from xnorflow.sw.random_models import balanced_cnn_model  # noqa: E402
from xnorflow.sw.synth import BOARDS, board_clock, find_builds  # noqa: E402
from xnorflow.targets import DataflowTarget  # noqa: E402

# beside this script: the --update merge, and design_space's output checks and report keys
import design_space  # noqa: E402
from design_space import REPORT_KEYS, output_path, repo_relative, writable  # noqa: E402
from merge import merge_points  # noqa: E402

# Q = 4 holds the CNV's feature maps in the ECP5-85F's block RAM (every column bank keeps the
# whole map); w_depth holds its 7,304 weight words per row bank. issue_reg=1: with 182 of the
# 208 block RAMs in use the weight-address route set Fmax at 41.6 MHz; registered, 59.1 MHz
# (53.3 MHz with the current core: docs/synthesis.md).
CNV_ARRAY = "8x4x32,w_depth=7424,thr_depth=128,in_depth=1600,act_depth=1600,out_depth=64,issue_reg=1"
DIGITS_ARRAY = "8x8x32"
#: The board every overlay point's build is looked up for.
OVERLAY_BOARD = "ulx3s-85f"

#: Published CNV points drawn beside ours. Both are Xilinx Zynq builds counted in 6-input LUTs
#: (ours: 4-input LUTs, ECP5 TRELLIS_COMB / iCE40 logic cells), so per LUT they are not like
#: for like, and both run the CIFAR-10 CNV (32×32×3 input, 64/128/256-channel convs, two
#: 512-wide dense layers), a larger network than our 28×28×1 Fashion-MNIST CNV.
REFERENCES = [
    {"name": "BNN-PYNQ CNV-W1A1", "device": "Xilinx Zynq XC7Z020 (PYNQ-Z1)", "lut_kind": "LUT6",
     "model": "CNV W1A1 (CIFAR-10 32×32×3; 6 conv, 3 max-pool, 3 dense layers)",
     "luts": 26_072, "ffs": 41_312, "brams": "124 block RAM tiles (36 Kb)",
     "inferences_per_second": 9_150, "latency_us": 527,
     "source": "rate and latency as issue #26 quotes them, from github.com/Xilinx/BNN-PYNQ: "
               "notebooks/CNV-QNN_Cifar10_Testset.ipynb at 10b2ab55 (W1A1 over the 10,000 "
               "CIFAR-10 test images: 9,149.98 images/s, 109.29 us per image, host included); "
               "notebooks/CNV-BNN_Cifar10.ipynb at 10b2ab55 prints 528.00 us for one image "
               "(host call included). LUTs: bnn/src/network/cnvW1A1/README.md at d84f6e88 "
               "(Vivado 2018.2, PYNQ-Z1/Z2: 26,072 slice LUTs, 41,312 flip-flops, 124 block "
               "RAM tiles, 24 DSPs, timing met)"},
    {"name": "FINN CNV-max", "device": "Xilinx Zynq XC7Z045 (ZC706)", "lut_kind": "LUT6",
     "model": "CNV (CIFAR-10 and SVHN, binary)", "luts": None, "ffs": None, "brams": None,
     "inferences_per_second": 21_906, "latency_us": 283,
     "source": "Umuroglu et al., 'FINN: A Framework for Fast, Scalable Binarized Neural "
               "Network Inference', FPGA 2017, arXiv:1612.07119, abstract (21,906 "
               "classifications/s, 283 us latency, CIFAR-10 80.1 %, SVHN 94.9 %, ZC706). LUTs: "
               "null: the paper's results table was not found in a public source at hand "
               "when this was written, so no LUT figure is given (the rate is drawn as a line)"},
]
REFERENCES_NOTE = ("published Xilinx Zynq builds counted in LUT6 (ours: LUT4, ECP5 TRELLIS_COMB "
                   "and iCE40 logic cells: per LUT not like for like); both run the CIFAR-10 "
                   "CNV, a larger network than our 28×28×1 Fashion-MNIST CNV; their rates are "
                   "measured on the board, BNN-PYNQ's with the host's time included")


def log(msg):
    print(f"[cnn_core] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    """A user's mistake: one line on stderr, exit status 2, before anything is written."""
    print(f"cnn_core: error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(2)


# -- overlay points ------------------------------------------------------------------------------

def overlay_build(array):
    """(report path relative to the checkout, report) of the ULX3S build of ``array``
    (``xnorflow synth --board ulx3s-85f --array ARRAY`` writes it), or (None, None)."""
    cfg = ArrayConfig.parse(array).format()
    for path, report in find_builds(OVERLAY_BOARD, cfg, root=ROOT / "bitstreams"):
        return repo_relative(path), report
    return None, None


def build_fmax(array):
    """(Fmax in MHz, where it came from): the post-route Fmax of the ULX3S build of ``array``,
    else the board's clock."""
    path, report = overlay_build(array)
    if report is not None:
        return float(report["fmax_mhz"]), path
    clock = board_clock(OVERLAY_BOARD)
    log(f"no ULX3S build of {array}: using the board clock {clock} MHz")
    return clock, "board clock (no build)"


def summarise(name, result, model, config, fmax=None):
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
        "model": name, "network": model.name, "array": cfg.format(), "images": result["images"],
        "mismatches": result["mismatches"], "accuracy": result["accuracy"],
        "agree_with_torch": result["agree_with_torch"],
        "predicted_cycles_match": result["predicted_cycles_match"],
        "cycles_per_inference": per_inf, "cycles_by_layer": result["cycles_by_layer"],
        # a CNN runs one image per overlay run: its latency is one run's cycles
        "latency_cycles": cycles["total"],
        # words issued / cycles, and ideal bit-MACs / (P·Q·K·cycles), over the conv layers
        "conv_word_utilization": words / conv_cycles,
        "conv_bit_utilization": macs / (cfg.P * cfg.Q * cfg.K * conv_cycles),
        "fmax_mhz": fmax, "fmax_source": source,
        "inferences_per_second": fmax * 1e6 / per_inf,
        "sim_wall_seconds": result["wall_seconds"],
        "sim": "simulated by this run (Verilator)",
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
    model, torch_model = load_model(checkpoint)
    x, y = dataset_inputs(model, dataset, None, images)
    torch_pred = None if torch_model is None else torch_predictions(torch_model, x)
    name = overlay_name(dataset, method)
    log(f"{dataset} CNN ({method}, {checkpoint}): {len(x)} images on Verilator, {array}")
    result = simulate(model, x, y, config=array, torch_predictions=torch_pred, jobs=jobs,
                      state=_state(state_dir, name))
    point = summarise(name, result, model, array, fmax)
    point["checkpoint"] = str(checkpoint)
    return point


def overlay_name(dataset, method):
    """The JSON's ``model`` of a trained CNN's overlay point."""
    return f"{'digits' if dataset == 'digits' else 'fmnist'}-cnn-{method}"


def load_model(path):
    """(compiled model, PyTorch model or None): a ``.xnf`` is loaded, a checkpoint
    (``model.pt``) compiled."""
    if str(path).endswith(".xnf"):
        return xnf.load(path), None
    model, torch_model, _ = compile_checkpoint(path)
    return model, torch_model


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
            fail(f"--fmnist-checkpoints: expected method=path, got {item!r}")
        if not Path(path).is_file():
            fail(f"--fmnist-checkpoints: {path} (method {name}) does not exist")
        out.append((name, path))
    return out


def fmnist_cnv(images, fmax):
    ds = load_dataset("fashion-mnist")
    x = quantize_inputs(ds.x_test[:images], 8, ds.max_value)
    rng = np.random.default_rng(28)
    model = balanced_cnn_model(rng, (28, 28, 1), [64, 64, "pool", 128, 128, "pool"], [256, 10],
                               8, x[:16], name="cnv-random")
    log(f"Fashion-MNIST CNV (random weights): {images} images on Verilator, {CNV_ARRAY}")
    result = simulate(model, x, ds.y_test[:images], config=CNV_ARRAY)
    return summarise("fmnist-cnv-random", result, model, CNV_ARRAY, fmax)


def overlay_row(p):
    """An overlay point with its build's figures: resources, Fmax and clock from the ULX3S
    report of its array (found again, so points of an earlier run get the current build's
    figures), the rates at both, one image's latency at the clock."""
    path, report = overlay_build(p["array"])
    clock = report["target_clock_mhz"] if report else board_clock(OVERLAY_BOARD)
    if p.get("fmax_source") == "--fmax-mhz":
        fmax, source = p["fmax_mhz"], "--fmax-mhz"
    else:
        fmax, source = (report["fmax_mhz"], path) if report else (clock, "board clock (no build)")
    per_inf = p["cycles_per_inference"]
    # every point here is a CNN, one image per overlay run: a run is one image's latency
    latency = p.get("latency_cycles", per_inf)
    at_clock = clock * 1e6 / per_inf
    luts = report["luts"] if report else None
    return {**p, "board": OVERLAY_BOARD, "arch": "overlay", "config": p["array"],
            "source": "build" if report else "no build", "report": path,
            "luts": luts, "ffs": report.get("ffs") if report else None,
            "brams": report["brams"] if report else None,
            "sprams": report.get("sprams", 0) if report else None,
            "fmax_mhz": fmax, "fmax_source": source, "clock_mhz": clock,
            "timing_met": report.get("timing_met") if report else None,
            "latency_cycles": latency, "latency_us": latency / clock,
            "inferences_per_second": fmax * 1e6 / per_inf,
            "inferences_per_second_at_fmax": fmax * 1e6 / per_inf,
            "inferences_per_second_at_clock": at_clock,
            "inferences_per_second_per_lut": at_clock / luts if luts else None,
            "sim_json": p.get("sim_json")}


# -- dataflow points -----------------------------------------------------------------------------

@dataclass
class DataflowEntry:
    """One ``--dataflow NAME=MODEL@FOLD[@BOARD]`` as written."""

    name: str
    model: str
    fold: str
    board: str | None
    text: str


def dataflow_entry(text):
    """argparse type of ``--dataflow``: ``NAME=MODEL@FOLD[@BOARD]``, MODEL an existing ``.xnf``
    (or a ``.pt`` checkpoint, compiled, for the agreement with PyTorch), FOLD a ``df:…`` text
    or an existing FOLD.json of ``xnorflow fold -o``, BOARD one of the boards."""
    usage = ("expected NAME=MODEL.xnf@FOLD[@BOARD] (FOLD a df:… text or a FOLD.json of "
             f"`xnorflow fold -o`, BOARD one of {', '.join(BOARDS)})")
    name, eq, rest = text.partition("=")
    model, at, fold = rest.partition("@")
    if not (eq and at and name and model and fold):
        raise argparse.ArgumentTypeError(f"{usage}, got {text!r}")
    head, at, board = fold.rpartition("@")
    if at and board not in BOARDS:
        raise argparse.ArgumentTypeError(
            f"{text}: unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    fold, board = (head, board) if at else (fold, None)
    if not model.endswith((".xnf", ".pt")):
        raise argparse.ArgumentTypeError(f"{text}: {model} is not a compiled model (.xnf) or a "
                                         f"checkpoint (.pt)")
    if not Path(model).is_file():
        raise argparse.ArgumentTypeError(f"{text}: the model {model} does not exist")
    if not fold.startswith("df:") and not Path(fold).is_file():
        raise argparse.ArgumentTypeError(f"{text}: the fold file {fold} does not exist "
                                         f"(a fold is a df:… text or a FOLD.json)")
    return DataflowEntry(name, model, fold, board, text)


def named_file(text):
    """argparse type of ``--sims``: ``NAME=FILE``, FILE existing."""
    name, eq, path = text.partition("=")
    if not (eq and name and path):
        raise argparse.ArgumentTypeError(f"expected NAME=SIM.json, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{text}: {path} does not exist")
    return name, path


@dataclass
class DataflowPoint:
    """A dataflow point, checked: its model, fold and board, and what it reuses."""

    entry: DataflowEntry
    model: object
    torch_model: object
    config: DataflowConfig
    board: str | None
    planned_clock: float | None          # a FOLD.json's clock, else the board's fold clock
    sim: dict | None = None
    sim_path: str | None = None
    report: dict | None = None
    report_path: str | None = None
    skip_sim: bool = False
    inputs: tuple = field(default=None, repr=False)   # (x, y) of the test set, to simulate

    @property
    def name(self):
        return self.entry.name


def read_fold(entry):
    """(DataflowConfig, board or None, planned clock or None) of an entry's FOLD: a ``df:``
    text, or a FOLD.json (which names its board and clock)."""
    try:
        config = load_fold(entry.fold)
    except XnorflowError as e:
        fail(f"--dataflow {entry.text}: {str(e).removeprefix('--fold ')}")
    if entry.fold.startswith("df:"):
        return config, None, None
    doc = json.loads(Path(entry.fold).read_text())   # load_fold has read it as a fold file
    board = doc.get("board") if doc.get("board") in BOARDS else None
    if entry.board and board and entry.board != board:
        fail(f"--dataflow {entry.text}: the fold file {entry.fold} was folded for {board}, "
             f"not {entry.board}")
    return config, board, doc.get("clock_mhz")


def load_point(entry):
    """A ``--dataflow`` entry's model and fold, checked to belong together."""
    try:
        model, torch_model = load_model(entry.model)
    except XnorflowError as e:
        fail(f"--dataflow {entry.text}: {e}")
    config, fold_board, clock = read_fold(entry)
    try:
        check_model(model, config)
    except XnorflowError as e:
        fail(f"--dataflow {entry.text}: the fold is not of the model '{model.name}': {e}")
    return DataflowPoint(entry, model, torch_model, config, entry.board or fold_board, clock)


def read_json(option, path):
    """A JSON object from ``path``, or a one-line error naming ``option`` and the file."""
    return design_space.read_json(option, path, fail)


#: What an ``xnorflow sim --json`` result must hold to stand for a point's simulation.
SIM_KEYS = ("model", "array", "images", "mismatches", "predicted_cycles_match")


def attach_sim(point, path):
    """A finished ``xnorflow sim --json`` of ``point``: its ``array`` must be the point's fold
    and its ``model`` the point's model."""
    where = f"--sims {point.name}={path}"
    sim = read_json("--sims", path)
    missing = [k for k in SIM_KEYS if k not in sim]
    if missing:
        fail(f"{where}: not an `xnorflow sim --json` result (no {', '.join(missing)})")
    try:
        fold = DataflowConfig.parse(sim["array"]).format()
    except ValueError:
        fold = sim["array"]
    if fold != point.config.format():
        fail(f"{where}: it simulated {sim['array']}, not the fold of --dataflow {point.name} "
             f"({point.config.format()})")
    if sim["model"] != point.model.name:
        fail(f"{where}: it simulated model '{sim['model']}', not '{point.model.name}' "
             f"({point.entry.model})")
    point.sim, point.sim_path = sim, repo_relative(path)


def read_dataflow_report(path):
    """(report, DataflowConfig) of a dataflow build's ``report.json``; anything else is
    refused naming the file."""
    report = read_json("--reports", path)
    fold = report.get("fold") if report.get("arch") == "dataflow" else None
    missing = [k for k in REPORT_KEYS if report.get(k) is None] + ([] if fold else ["fold"])
    if missing:
        fail(f"--reports {path}: not a dataflow build's report.json (no "
             f"{', '.join(missing)})")
    try:
        return report, DataflowConfig.parse(fold)
    except ValueError as e:
        fail(f"--reports {path}: its fold does not parse: {e}")


def attach_report(points, path):
    """Give ``path`` (a dataflow build's report) to the point of its fold and board; a report
    of no point's fold, or of another board than its point's, is refused."""
    report, config = read_dataflow_report(path)
    same_fold = [p for p in points if p.config.format() == config.format()]
    if not same_fold:
        fail(f"--reports {path}: its fold {config.format()} is no --dataflow point's")
    mine = [p for p in same_fold if p.board in (None, report["board"])]
    if not mine:
        p = same_fold[0]
        fail(f"--reports {path}: a build for {report['board']}, but --dataflow {p.name} is "
             f"for {p.board}")
    for p in mine:
        if p.report is not None:
            fail(f"--reports {path}: --dataflow {p.name} already has the build "
                 f"{p.report_path}")
        p.report, p.report_path, p.board = report, repo_relative(path), report["board"]


def dataflow_points(args):
    """Every ``--dataflow`` point, checked with its ``--sims``, ``--skip-sim`` and ``--reports``
    before any simulation starts."""
    points = [load_point(e) for e in args.dataflow]
    names = [p.name for p in points]
    if len(set(names)) < len(names):
        fail(f"--dataflow: the name {next(n for n in names if names.count(n) > 1)} is given "
             f"twice")
    by_name = {p.name: p for p in points}
    for name, path in args.sims:
        if name not in by_name:
            fail(f"--sims {name}={path}: no --dataflow point is named {name}")
        attach_sim(by_name[name], path)
    for name in args.skip_sim:
        if name not in by_name:
            fail(f"--skip-sim {name}: no --dataflow point is named {name}")
        if by_name[name].sim is not None:
            fail(f"--skip-sim {name}: --sims gives its simulation already")
        by_name[name].skip_sim = True
    for path in args.reports:
        attach_report(points, path)
    for p in points:
        if p.board is None:
            fail(f"--dataflow {p.entry.text}: which board? add @BOARD ({', '.join(BOARDS)}), "
                 f"or give its build's --reports or a FOLD.json")
        if p.sim is None and not p.skip_sim:
            p.inputs = test_set(p)
    return points


def test_set(point):
    """(inputs, labels) of the test set of the data set the point's model was trained on."""
    dataset = (point.model.meta or {}).get("dataset")
    if not dataset:
        fail(f"--dataflow {point.entry.text}: {point.entry.model} names no data set: give its "
             f"--sims or --skip-sim")
    try:
        return dataset_inputs(point.model, dataset)
    except XnorflowError as e:
        fail(f"--dataflow {point.entry.text}: {e}")


def simulate_dataflow(point, jobs=1, state_dir=None):
    """The point's test set through its dataflow build on Verilator (``xnorflow sim --arch
    dataflow``): the result ``xnorflow sim --json`` prints."""
    x, y = point.inputs
    torch_pred = (None if point.torch_model is None
                  else torch_predictions(point.torch_model, x))
    log(f"{point.name} ({point.model.name}): {len(x)} images on Verilator, "
        f"{point.config.format()}")
    return simulate(point.model, x, y, target=DataflowTarget(point.config), jobs=jobs,
                    torch_predictions=torch_pred, state=_state(state_dir, point.name))


def dataflow_resources(point):
    """(resource figures, Fmax or None, clock, source) of a point: its build's report, else
    the fold's resource estimate at the fold's planned clock."""
    if point.report is not None:
        r = point.report
        figures = {k: r.get(k) for k in ("luts", "ffs", "brams", "sprams", "timing_met")}
        figures["clock_source"] = point.report_path
        return figures, r["fmax_mhz"], r["target_clock_mhz"], "build"
    clock = point.planned_clock or DATAFLOW_CLOCK_MHZ[point.board]
    estimate = resources.estimate(point.board, point.config)
    fold = fold_report(point.model, FoldResult(point.config, estimate, clock, None, None),
                       point.board)
    figures = {"luts": estimate.luts, "ffs": None, "brams": estimate.brams,
               "sprams": estimate.sprams, "timing_met": None,
               "clock_source": "the fold's planned clock (no build; sw/fold.py)",
               "estimate": {**fold["estimate"], "layers": fold["layers"]}}
    return figures, None, clock, "estimate"


def verification(point, sim):
    """The Verilator evidence behind a point (none when it was not simulated)."""
    if sim is None:
        return {"images": 0, "mismatches": None, "accuracy": None, "agree_with_torch": None,
                "predicted_cycles_match": None, "sim": "not simulated (--skip-sim)",
                "sim_json": None}
    return {"images": sim["images"], "mismatches": sim["mismatches"],
            "accuracy": sim.get("accuracy"), "agree_with_torch": sim.get("agree_with_torch"),
            "predicted_cycles_match": sim["predicted_cycles_match"],
            "simulated_cycles_per_inference": sim.get("cycles_per_inference"),
            "simulated_interval_cycles": sim.get("interval_cycles"),
            "sim_wall_seconds": sim.get("wall_seconds"),
            "sim": point.sim_path or "simulated by this run (Verilator)",
            "sim_json": point.sim_path}


def dataflow_row(point, sim):
    """A dataflow point's row: resources (build or estimate), the cycle model's rates at the
    clock and Fmax (:func:`xnorflow.profile.dataflow_numbers`), the simulation behind it."""
    figures, fmax, clock, source = dataflow_resources(point)
    numbers = dataflow_numbers(point.model, point.config, fmax, clock, figures["luts"])
    at_fmax = numbers.get("inferences_per_second_at_fmax")
    fold = point.config.format()
    return {"model": point.name, "network": point.model.name, "board": point.board,
            "arch": "dataflow", "array": fold, "config": fold, "source": source,
            "report": point.report_path, "model_file": repo_relative(point.entry.model),
            **figures, "fmax_mhz": fmax, "clock_mhz": clock,
            "interval_cycles": numbers["interval_cycles"],
            "cycles_per_inference": numbers["cycles_per_inference"],
            "cycles_by_layer": numbers["cycles_by_layer"],
            "utilization": numbers["utilization"],
            "latency_cycles": numbers["latency_cycles"], "latency_us": numbers["latency_us"],
            "inferences_per_second": at_fmax,
            "inferences_per_second_at_fmax": at_fmax,
            "inferences_per_second_at_clock": numbers["inferences_per_second"],
            "inferences_per_second_per_lut": numbers.get("inferences_per_second_per_lut"),
            **verification(point, sim)}


def run_dataflow(point, jobs=1, state_dir=None):
    """A dataflow point's row, simulating it unless its result is given or skipped."""
    sim = point.sim
    if sim is None and not point.skip_sim:
        sim = simulate_dataflow(point, jobs, state_dir)
    return dataflow_row(point, sim)


# -- plots and table -----------------------------------------------------------------------------

def plot_cycles(points, path, columns=4):
    """Cycles by layer of the overlay points, one panel per model, ``columns`` panels per row
    (titles: the Verilator verdict and the rate)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    points = [p for p in points if p.get("arch", "overlay") == "overlay"]
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
    fig.savefig(writable(path), dpi=110)
    plt.close(fig)


ARCH_STYLE = {"overlay": dict(marker="o", color="#4477aa"),
              "dataflow": dict(marker="s", color="#228833")}


def plotted_rate(p):
    """``(images/s, where)`` a point is drawn at: at its build's clock, or at its Fmax when the
    build did not meet the clock it asked for (that rate is not one the bitstream runs at)."""
    if p.get("timing_met") is False and p.get("inferences_per_second_at_fmax"):
        return p["inferences_per_second_at_fmax"], f"at Fmax {p['fmax_mhz']:.1f} MHz"
    return p["inferences_per_second_at_clock"], f"at {p['clock_mhz']:g} MHz"


def point_label(p):
    """A point's label on the rate plot: name, board, rate at its clock (or Fmax), and
    'estimate'."""
    tag = " (estimate)" if p["source"] == "estimate" else ""
    rate, where = plotted_rate(p)
    return f"{p['model']} ({p['board']}){tag}\n{rate:,.0f}/s {where}"


def _draw_points(ax, points):
    """Our points: one marker per architecture, hollow for a resource estimate."""
    for arch, style in ARCH_STYLE.items():
        for measured in (True, False):
            ours = [p for p in points if p["arch"] == arch
                    and (p["source"] != "estimate") == measured]
            if not ours:
                continue
            label = f"{arch}" + ("" if measured else " (resource estimate, not built)")
            ax.scatter([p["luts"] for p in ours],
                       [plotted_rate(p)[0] for p in ours], s=60, zorder=3,
                       marker=style["marker"], edgecolors=style["color"], linewidths=1.5,
                       facecolors=style["color"] if measured else "none", label=label)
    for i, p in enumerate(sorted(points, key=lambda p: p["luts"])):
        # right of the point (the smallest sits at the axis' left edge), above or below it
        # in turn so neighbours do not print over one another
        ax.annotate(point_label(p), (p["luts"], plotted_rate(p)[0]),
                    textcoords="offset points", xytext=(9, 4 if i % 2 == 0 else -20),
                    ha="left", fontsize=7)


def _draw_references(ax):
    """The published CNV rates as lines, and BNN-PYNQ's LUT count as a point on its line."""
    for ref, style in zip(REFERENCES, ("--", ":")):
        rate = ref["inferences_per_second"]
        luts = (f", {ref['luts']:,} {ref['lut_kind']}" if ref["luts"]
                else ", LUTs not published here")
        ax.axhline(rate, color="black", ls=style, lw=1,
                   label=f"{ref['name']} ({ref['device']}): {rate:,}/s{luts}")
        ax.text(0.01, rate, f"{ref['name']}, {rate:,}/s (published)", fontsize=7,
                va="bottom", transform=ax.get_yaxis_transform())
        if ref["luts"]:
            ax.scatter(ref["luts"], rate, marker="*", s=110, color="black", zorder=3)


def plot_rates(points, path):
    """Images/s at each build's clock against LUTs, log axes: overlay and dataflow markers,
    the published CNV rates as reference lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    drawn = [p for p in points if p.get("luts") and p.get("inferences_per_second_at_clock")]
    for p in points:
        if p not in drawn:
            log(f"{p['model']}: no LUT count (no build), not on the plot")
    fig, ax = plt.subplots(figsize=(8.5, 6.2))
    if drawn:
        _draw_points(ax, drawn)
    _draw_references(ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.35, y=0.3)
    # 20,000 rather than 2×10⁴, and only 1, 2 and 5 of each decade
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if f"{v:.0e}"[0] in "125" else "")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    ax.tick_params(which="both", labelsize=7)
    ax.set_xlabel("LUTs (ours: LUT4, post-route, or the fold's estimate; references: LUT6)")
    ax.set_ylabel("images / s at the build's clock (at Fmax where it missed the clock)")
    ax.set_title("CNNs on the overlay and the dataflow build (Verilator-checked cycle models)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(writable(path), dpi=120)
    plt.close(fig)


def _num(value, fmt):
    return "—" if value is None else format(value, fmt)


def _verification_cells(p):
    """(Verilator images and mismatches, PyTorch agreement, counters = model) of a row."""
    if not p.get("images"):
        return "not simulated", "—", "—"
    agree = "—" if p.get("agree_with_torch") is None else f"{100 * p['agree_with_torch']:.2f} %"
    accuracy = "" if p.get("accuracy") is None else f", accuracy {100 * p['accuracy']:.2f} %"
    return (f"{p['images']:,} images, {p['mismatches']} mismatches{accuracy}", agree,
            "yes" if p["predicted_cycles_match"] else "**no**")


def table_row(p):
    """One point as a Markdown table row."""
    clock = _num(p.get("clock_mhz"), ".2f") + (" (not met)" if p.get("timing_met") is False
                                                else "")
    resources_from = {"build": f"`{p.get('report')}`",
                      "estimate": "**estimate** (sw/fold.py)"}.get(p["source"], "no build")
    sim = p.get("sim_json") or p.get("sim", "")
    sim = f"`{sim}`" if p.get("sim_json") else sim
    return (f"| {p['model']} | {p['board']} | {p['arch']} | `{p['config']}` "
            f"| {_num(p.get('luts'), ',')} | {_num(p.get('ffs'), ',')} "
            f"| {_num(p.get('brams'), '')} | {_num(p.get('sprams'), '')} "
            f"| {_num(p.get('fmax_mhz'), '.1f')} | {clock} "
            f"| {_num(p.get('inferences_per_second_at_clock'), ',.0f')} "
            f"| {_num(p.get('inferences_per_second_at_fmax'), ',.0f')} "
            f"| {_num(p.get('latency_us'), ',.1f')} "
            f"| {_num(p.get('inferences_per_second_per_lut'), '.3g')} "
            f"| {' | '.join(_verification_cells(p))} | {resources_from} | {sim} |")


def markdown_table(doc):
    """The points and the references as one Markdown table."""
    lines = ["| model | board | arch | config | LUTs | FFs | BRAM (EBR) | SPRAM | Fmax (MHz) "
             "| clock (MHz) | images/s at clock | images/s at Fmax | latency (µs) "
             "| images/s per LUT | Verilator | PyTorch agreement | counters = cycle model "
             "| resources from | verification from |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: | --- | ---: | --- | --- | --- |"]
    lines += [table_row(p) for p in doc["points"]]
    for r in doc["references"]:
        luts = f"{r['luts']:,} {r['lut_kind']}" if r["luts"] else "—"
        per_lut = _num(r["inferences_per_second"] / r["luts"] if r["luts"] else None, ".3g")
        lines.append(f"| {r['name']} (published) | {r['device']} | — | {r['model']} | {luts} "
                     f"| {_num(r['ffs'], ',')} | {r['brams'] or '—'} | — | — | — "
                     f"| {r['inferences_per_second']:,} | — | {_num(r['latency_us'], ',')} "
                     f"| {per_lut} | — | — | — | published | published |")
    return "\n".join(lines) + "\n"


# -- command line --------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--methods", default="irnet,rbnn",
                    help="digits CNN methods run on the overlay, comma-separated; '' for none "
                         "(default irnet,rbnn)")
    ap.add_argument("--checkpoint", default=None,
                    help="a digits CNN checkpoint (.pt) or compiled model (.xnf) for every "
                         "--methods entry (default: the test suite's cached trained CNNs)")
    ap.add_argument("--fmnist-checkpoints", default="", metavar="M=PATH,...",
                    help="trained Fashion-MNIST CNN checkpoints (model.pt) or compiled models "
                         "(.xnf) run on the overlay, e.g. irnet=a/model.pt,rbnn=b/model.xnf "
                         "(default: none)")
    ap.add_argument("--fmnist-images", type=positive_int, default=None,
                    help="Fashion-MNIST test images per trained CNN (default: all 10,000)")
    ap.add_argument("--jobs", type=positive_int, default=1,
                    help="Verilator processes per simulated point (default 1)")
    ap.add_argument("--cnv-images", type=nonnegative_int, default=100,
                    help="Fashion-MNIST test images through the random-weight CNV on the "
                         "overlay (0 = skip) (default 100)")
    ap.add_argument("--state-dir", default=None, metavar="DIR",
                    help="keep each Fashion-MNIST or dataflow point's simulation resumable in "
                         "DIR/<model>.npz (xnorflow sim --state): a stopped run continues where "
                         "it stopped (default: not resumable)")
    ap.add_argument("--fmax-mhz", type=positive_float, default=None,
                    help="the Fmax of this run's overlay points instead of their ULX3S build's "
                         "post-route Fmax (default: the build's, or the board clock without one)")
    ap.add_argument("--dataflow", type=dataflow_entry, action="append", default=[],
                    metavar="NAME=MODEL@FOLD[@BOARD]",
                    help="a dataflow point (repeatable): NAME its name in the JSON (apart from "
                         "the overlay points'), MODEL a compiled .xnf (or a .pt checkpoint, "
                         "compiled, to also report the agreement with PyTorch), FOLD the "
                         "dataflow build, a df:… text or a FOLD.json of `xnorflow fold -o`, "
                         "BOARD the board it is for (default: the FOLD.json's, or its build's "
                         "--reports'). Simulated on Verilator over the whole test set of the "
                         "model's data set unless --sims or --skip-sim (default: none)")
    ap.add_argument("--sims", type=named_file, action="append", default=[],
                    metavar="NAME=SIM.json",
                    help="a finished `xnorflow sim --arch dataflow --json` result for the "
                         "--dataflow point NAME, used instead of simulating it; its array must "
                         "be the point's fold and its model the point's (repeatable; default: "
                         "none)")
    ap.add_argument("--skip-sim", action="append", default=[], metavar="NAME",
                    help="report the --dataflow point NAME from its cycle model without a "
                         "simulation (its verification columns stay empty) (repeatable; "
                         "default: every point is simulated or given by --sims)")
    ap.add_argument("--reports", nargs="+", default=[], metavar="REPORT.json",
                    help="finished dataflow builds' report.json files (xnorflow synth / "
                         "profile), each matched to the --dataflow point of its board and fold; "
                         "a point without one gets the fold's resource estimate, marked "
                         "'estimate' (default: none)")
    ap.add_argument("--plot", type=output_path,
                    default=str(ROOT / "benchmarks" / "results" / "cnn_core_dataflow.png"),
                    help="the plot of images/s against LUTs written (default "
                         "benchmarks/results/cnn_core_dataflow.png)")
    ap.add_argument("--cycles-plot", type=output_path, default=None, metavar="PNG",
                    help="also write the overlay points' cycles by layer as a bar chart, e.g. "
                         "benchmarks/results/cnn_core.png (default: none)")
    ap.add_argument("--table", type=output_path, default=None, metavar="TABLE.md",
                    help="also write the points and the references as a Markdown table "
                         "(default: none)")
    ap.add_argument("--update", default=None, metavar="JSON",
                    help="an earlier output of this benchmark: print its points with this run's "
                         "points added (a point of the same model replaced), so models measured "
                         "at different times share one table and chart (default: none)")
    ap.add_argument("--only", default=None, metavar="NAME,...",
                    help="keep only these points (their JSON 'model') in the output, the plot "
                         "and the table, after --update's merge (default: every point)")
    return ap.parse_args(argv)


def earlier_points(path):
    """The points of ``--update``'s file, checked before any work."""
    if path is None:
        return []
    points = read_json("--update", path).get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) and "model" in p
                                               for p in points):
        fail(f"--update {path}: not an output of this benchmark (no list of points with a "
             f"'model')")
    return points


def overlay_names(args, fmnist):
    """The ``model`` of every overlay point this run makes."""
    names = [overlay_name("digits", m) for m in args.methods.split(",") if m]
    names += [overlay_name("fashion-mnist", m) for m, _ in fmnist]
    return names + (["fmnist-cnv-random"] if args.cnv_images else [])


def check_names(args, overlay, dataflow, earlier):
    """A dataflow point's name must not replace an overlay point's (``--update`` replaces
    points by name); ``--only`` must name points there are."""
    earlier_overlay = {p["model"] for p in earlier if p.get("arch", "overlay") == "overlay"}
    for p in dataflow:
        if p.name in overlay or p.name in earlier_overlay:
            fail(f"--dataflow {p.entry.text}: {p.name} is an overlay point's name; give the "
                 f"dataflow point its own")
    if args.only is None:
        return None
    only = [n for n in args.only.split(",") if n]
    known = set(overlay) | {p.name for p in dataflow} | {p["model"] for p in earlier}
    unknown = [n for n in only if n not in known]
    if unknown or not only:
        fail(f"--only {args.only}: no point named {', '.join(unknown) or 'at all'} "
             f"(points: {', '.join(sorted(known))})")
    return only


def earlier_run(p, path):
    """A point of ``--update``'s file says where its simulation came from."""
    return p if "sim" in p else {**p, "sim": f"an earlier run of this benchmark "
                                                f"({repo_relative(path)})"}


def as_row(p):
    """Any point as a comparison row: an overlay point gets its build's figures; a dataflow
    point is one already."""
    return p if p.get("arch") == "dataflow" else overlay_row(p)


def main(argv=None):
    args = parse_args(argv)
    fmnist = _named_paths(args.fmnist_checkpoints)
    earlier = earlier_points(args.update)
    dataflow = dataflow_points(args)   # every check before the first simulation
    only = check_names(args, overlay_names(args, fmnist), dataflow, earlier)
    fmax = args.fmax_mhz
    points = [digits_cnn(m, args.checkpoint, fmax) for m in args.methods.split(",") if m]
    points += [trained_cnn("fashion-mnist", m, path, fmax, args.fmnist_images, args.jobs, CNV_ARRAY,
                           args.state_dir)
               for m, path in fmnist]
    if args.cnv_images:
        points.append(fmnist_cnv(args.cnv_images, fmax))
    points += [run_dataflow(p, args.jobs, args.state_dir) for p in dataflow]
    if args.update:
        points = [earlier_run(p, args.update) for p in merge_points(args.update, points, "model")]
    if only is not None:
        points = [p for p in points if p["model"] in only]
    points = [as_row(p) for p in points]
    plot_rates(points, args.plot)
    doc = {"benchmark": "cnn_core", "points": points, "references": REFERENCES,
           "references_note": REFERENCES_NOTE, "plot": repo_relative(args.plot)}
    if args.cycles_plot:
        plot_cycles(points, args.cycles_plot)
        doc["cycles_plot"] = repo_relative(args.cycles_plot)
    if args.table:
        Path(writable(args.table)).write_text(markdown_table(doc))
        doc["table"] = repo_relative(args.table)
    print(json.dumps(doc, indent=1))
    bad = [p["model"] for p in points if p["mismatches"] or p["predicted_cycles_match"] is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
