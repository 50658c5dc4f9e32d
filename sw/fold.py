"""``xnorflow fold``: choose every layer's PE and SIMD for the dataflow target, and the
resource model that decides what fits (docs/dataflow.md, "Folding").

The search is FINN's idea with a resource model in the loop: start every engine at one
synapse and one channel per cycle, then repeatedly widen the slowest engine (more synapses
S or more channels P, whichever buys its cycles back for fewer logic cells) until the
pipeline reaches the target rate or the next step would not fit the board. Widths are powers
of two or the layer's whole size, so a producer's P and its consumer's S always divide one
another (the width converter between them needs that).

The model (:func:`estimate_dataflow`) counts every memory of the build exactly as Yosys maps
it (sw/resources.py: the weights, channel constants, input buffers, FIFOs, the link buffer)
and fits the logic: per engine ``a·S·P·k + b·P·u + c·P + d`` LUT4s (``u`` the accumulator
width), plus the host link, run control and UART; the coefficients and the builds they were
fitted on are in :data:`LOGIC`'s comments and benchmarks/results/dataflow_builds.json.
"""
import json
import math
import sys
from dataclasses import dataclass

from hw.dataflow.config import DataflowConfig, EngineFold
from hw.dataflow.run_timing import run_cycles
from sw import resources as R
from sw.errors import XnorflowError

__all__ = ["FoldError", "estimate_dataflow", "fold_model", "fold_report", "DATAFLOW_CLOCK_MHZ"]


class FoldError(XnorflowError):
    """No folding of the model fits the board (the message gives need against have)."""


#: The clock a dataflow build runs at by default on each board (post-route Fmax of the
#: measured builds with margin, docs/dataflow.md "Measured").
DATAFLOW_CLOCK_MHZ = {"icebreaker": 30.0, "ulx3s-85f": 100.0}

#: Logic model, LUT4s (placed cells on iCE40 after the family's packing factor):
#: per engine a·S·P·k + b·P·u + c·P + d, plus `fixed` for link, run control, FIFOs, UART.
LOGIC = {
    "ice40": {"a": 1.0, "b": 1.5, "c": 12.0, "d": 120.0, "fixed": 1100.0},
    "ecp5": {"a": 0.9, "b": 1.5, "c": 12.0, "d": 120.0, "fixed": 1100.0},
}

#: Share of the device's logic a fold may plan for (routing needs the rest).
LUT_BUDGET = {"ice40": 0.85, "ecp5": 0.80}


def _memories(config, max_payload=256):
    """Every memory of a dataflow board top (name, count, width, depth) as Yosys sees it."""
    mems = []
    for e, fold in enumerate(config.engines):
        s = fold.shape
        mems.append(R.MemorySpec(f"e{e}.weights", s.pe, s.simd, s.weight_depth,
                                 huge=fold.weights == "spram"))
        if s.has_channel_memory:
            mems.append(R.MemorySpec(f"e{e}.channels", s.pe, s.channel_word_width,
                                     s.neuron_folds))
        sf_bits = (s.synapse_folds - 1).bit_length()
        mems.append(R.MemorySpec(f"e{e}.buffer", 1, s.in_beat_bits, 2 << sf_bits))
    mems.append(R.MemorySpec("in_fifo", 1, config.in_word_bits,
                             config.in_images * config.in_words))
    mems.append(R.MemorySpec("out_fifo", 1, config.out_word_bits,
                             config.out_images * config.out_words))
    mems.append(R.MemorySpec("link_buf", 1, 8, max_payload))
    return mems


def engine_lut4(family, fold):
    """LUT4s of one engine's logic (see :data:`LOGIC`)."""
    c, s = LOGIC[family], fold.shape
    return c["a"] * s.simd * s.pe * s.input_bits + c["b"] * s.pe * s.u_width + c["c"] * s.pe \
        + c["d"]


def estimate_dataflow(device, config):
    """:class:`sw.resources.Estimate` of a :class:`DataflowConfig` on ``device``."""
    uses = []
    for mem in _memories(config):
        kind, blocks = R.map_memory(device.family, mem)
        uses.append(R.MemoryUse(mem.name, mem.count, mem.width, mem.depth, kind, blocks))
    count = {kind: sum(u.count * u.blocks_each for u in uses if u.kind == kind)
             for kind in ("bram", "spram")}
    logic_bits = sum(u.count * u.width * u.depth for u in uses if u.kind in ("logic", "lutram"))
    lut4 = LOGIC[device.family]["fixed"] + sum(engine_lut4(device.family, f)
                                               for f in config.engines)
    # memories left in logic: ECP5 distributed RAM holds 16 bits per LUT (DPR16X4 in 4 LUTs
    # + decode); iCE40 has none, a bit is a flip-flop in a logic cell
    lut4 += logic_bits / (4.0 if device.family == "ecp5" else 1.0)
    luts = round(lut4 * R.PACKING[device.family])
    return R.Estimate(luts=luts, brams=count["bram"], sprams=count["spram"], memories=tuple(uses))


R.register(DataflowConfig, estimate_dataflow)


# ---------------------------------------------------------------- the search

def _widths(n):
    """Candidate S (or P) for a dimension of size ``n``: powers of two below it, and ``n``."""
    out, v = [], 1
    while v < n:
        out.append(v)
        v *= 2
    return out + [n]


def _fits(board, config, device):
    est = R.estimate(board, config)
    limit = LUT_BUDGET[device.family]
    return (est.luts <= limit * device.luts and est.brams <= device.brams
            and est.sprams <= device.sprams), est


@dataclass
class FoldResult:
    config: DataflowConfig
    estimate: object
    clock_mhz: float
    target_ips: float
    limited_by: str


def _layers(model):
    from sw.dataflow_program import model_folds
    return model_folds(model)


def _utilisation(est, device):
    """The fullest resource's share of what a fold may plan for (1.0 = the budget)."""
    shares = [est.luts / (LUT_BUDGET[device.family] * device.luts), est.brams / device.brams]
    if est.sprams:
        shares.append(est.sprams / device.sprams if device.sprams else math.inf)
    return max(shares)


def fold_model(model, board, target_ips=None, clock_mhz=None, **options):
    """The folding of ``model`` for ``board``: the smallest that reaches ``target_ips`` at
    ``clock_mhz`` (default :data:`DATAFLOW_CLOCK_MHZ`), or without a target the fastest that
    fits. FoldError when no folding fits.

    Widening an engine is not monotone in block RAMs (one-bit-wide weight memories waste half
    of every iCE40 block; wider ones fill them), so the search walks on while the logic still
    fits, and keeps the fastest folding met on the way that fits in every resource."""
    device = R.get_device(board)
    clock = clock_mhz or DATAFLOW_CLOCK_MHZ[board]
    layers = _layers(model)
    target_ii = math.floor(clock * 1e6 / target_ips) if target_ips else 1
    folds = [[1, 1] for _ in layers]

    def make(f):
        engines = tuple(EngineFold(n_in, n_out, s, p, k, kind, out)
                        for (n_in, n_out, k, kind, out), (s, p) in zip(layers, f))
        return DataflowConfig(engines, **options)

    config = make(folds)
    est = R.estimate(board, config)
    best = (config, est) if _utilisation(est, device) <= 1 else None
    limited = ""
    while config.interval > target_ii:
        slow = max(range(len(layers)), key=lambda e: config.engines[e].cycles)
        moves = []
        for axis in (0, 1):   # 0: S, 1: P
            n = layers[slow][0] if axis == 0 else layers[slow][1]
            bigger = [w for w in _widths(n) if w > folds[slow][axis]]
            if not bigger:
                continue
            trial = [list(f) for f in folds]
            trial[slow][axis] = bigger[0]
            try:
                cand = make(trial)
            except ValueError:
                continue      # S/P of neighbours no longer divide one another
            cand_est = R.estimate(board, cand)
            if cand_est.luts > LUT_BUDGET[device.family] * device.luts:
                continue      # logic only grows from here
            saved = config.engines[slow].cycles - cand.engines[slow].cycles
            grown = _utilisation(cand_est, device) - _utilisation(est, device)
            moves.append((saved / max(grown, 1e-6), trial, cand, cand_est))
        if not moves:
            limited = (f"layer {model.layers[slow].name!r} ({config.engines[slow].format()}) "
                       f"cannot be widened within the board's logic")
            break
        _, folds, config, est = max(moves, key=lambda m: m[0])
        if _utilisation(est, device) <= 1:
            best = (config, est)
    if best is None:
        raise FoldError(f"no folding of model '{model.name}' fits {board}: the smallest needs "
                        f"{R.describe_misfits(board, _over(est, device))}")
    config, est = best
    if config.interval > target_ii and not limited:
        limited = "the faster foldings met do not fit the board's block RAM"
    return FoldResult(config, est, clock, target_ips, limited)


def _over(est, device):
    return [(r, need, getattr(device, r)) for r, need in est.as_dict().items()
            if need > getattr(device, r)]


def fold_report(model, result, board):
    """The per-layer table of a fold as a JSON-able dict."""
    device = R.get_device(board)
    cfg, clock = result.config, result.clock_mhz
    rows = []
    for layer, fold in zip(model.layers, cfg.engines):
        s = fold.shape
        mems = [u for u in result.estimate.memories if u.name.startswith(f"e{len(rows)}.")]
        rows.append({"layer": layer.name, "n_in": fold.n_in, "n_out": fold.n_out,
                     "input_bits": fold.input_bits, "simd": s.simd, "pe": s.pe,
                     "cycles": fold.cycles, "binary_macs": fold.n_in * fold.n_out * fold.input_bits,
                     "luts": round(engine_lut4(device.family, fold) * R.PACKING[device.family]),
                     "brams": sum(u.count * u.blocks_each for u in mems if u.kind == "bram"),
                     "sprams": sum(u.count * u.blocks_each for u in mems if u.kind == "spram")})
    timing = run_cycles(cfg, 1)
    interval = cfg.interval
    return {"model": model.name, "board": board, "config": cfg.format(), "clock_mhz": clock,
            "interval_cycles": interval, "latency_cycles": timing["latency"],
            "inferences_per_second": clock * 1e6 / interval,
            "latency_us": timing["latency"] / clock,
            "target_ips": result.target_ips, "limited_by": result.limited_by,
            "estimate": result.estimate.as_dict(),
            "device": {"luts": device.luts, "brams": device.brams, "sprams": device.sprams},
            "layers": rows}


def load_fold(path):
    """The DataflowConfig of a FOLD.json written by ``xnorflow fold -o``."""
    try:
        with open(path) as f:
            doc = json.load(f)
        return DataflowConfig.parse(doc["config"])
    except OSError as e:
        raise XnorflowError(f"--fold {path}: cannot read it: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise XnorflowError(f"--fold {path}: not a fold file ({e})") from None


def format_fold(report):
    lines = [f"{report['model']} on {report['board']}: {report['config']}",
             f"{'layer':<8}{'N':>6}{'M':>6}{'k':>3}{'S':>6}{'P':>5}{'cycles':>9}{'LUTs':>8}"
             f"{'BRAM':>6}{'SPRAM':>6}"]
    for r in report["layers"]:
        lines.append(f"{r['layer']:<8}{r['n_in']:>6}{r['n_out']:>6}{r['input_bits']:>3}"
                     f"{r['simd']:>6}{r['pe']:>5}{r['cycles']:>9}{r['luts']:>8}{r['brams']:>6}"
                     f"{r['sprams']:>6}")
    est, dev = report["estimate"], report["device"]
    lines.append(f"estimate: {est['luts']:,}/{dev['luts']:,} LUTs, {est['brams']}/{dev['brams']} "
                 f"BRAM, {est['sprams']}/{dev['sprams']} SPRAM")
    lines.append(f"interval {report['interval_cycles']} cycles, latency "
                 f"{report['latency_cycles']} cycles: {report['inferences_per_second']:,.0f} "
                 f"inferences/s and {report['latency_us']:.2f} µs at {report['clock_mhz']:g} MHz"
                 + (f" ({report['limited_by']})" if report["limited_by"] else ""))
    return "\n".join(lines)


def add_parser(sub):
    from sw.argtypes import output_file, positive_float
    p = sub.add_parser("fold", help="choose PE and SIMD per layer for the dataflow target",
                       description="Pick every layer's PE (channels in parallel) and SIMD "
                                   "(synapses per cycle) for the dataflow target: balanced so "
                                   "the slowest layer sets the rate, within the board's logic "
                                   "and memories (a resource model calibrated on real builds). "
                                   "Prints per layer PE, SIMD, cycles per image, LUT and RAM "
                                   "estimates.")
    p.add_argument("model", help="a compiled model (.xnf)")
    p.add_argument("--board", required=True, choices=sorted(R.DEVICES), help="the board to fit")
    p.add_argument("--target-ips", type=positive_float, default=None, metavar="N",
                   help="the smallest folding that reaches N inferences/s (default: the "
                        "fastest that fits)")
    p.add_argument("--clock-mhz", type=positive_float, default=None,
                   help="clock of the build (default: icebreaker 30, ulx3s-85f 100)")
    p.add_argument("-o", "--out", type=output_file, default=None, metavar="FOLD.json",
                   help="write the fold there (default: print only)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run_fold)


def run_fold(args):
    from sw import xnf
    from sw.xnf import atomic_write
    model = xnf.load(args.model)
    result = fold_model(model, args.board, args.target_ips, args.clock_mhz)
    report = fold_report(model, result, args.board)
    if args.target_ips and report["inferences_per_second"] < args.target_ips:
        print(f"xnorflow fold: the target {args.target_ips:,.0f} inferences/s is not reached: "
              f"{result.limited_by}", file=sys.stderr)
    if args.out:
        atomic_write(args.out, (json.dumps(report, indent=2) + "\n").encode())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_fold(report))
    return 0
