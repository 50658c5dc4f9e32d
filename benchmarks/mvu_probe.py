"""One dataflow engine (hw/dataflow/mvu.py) alone on the chip: LUTs, FFs, block RAM and
post-route Fmax per (SIMD, PE) point, to calibrate the folding's resource model.

Each point is synthesized for its board exactly as ``xnorflow synth`` builds (sw/synth.py: the
same Yosys options, board overrides and nextpnr), with the engine behind a PLL clock and a
small stimulus: a 32-bit LFSR drives every control input (valid, ready, write enable, select,
address), a shift register fed by the LFSR drives the input beat and the write data, and the
XOR of the output beat reaches an LED. The stimulus costs ``max(k·S, S)`` flip-flops for the
shift register, 32 for the LFSR and a few LUTs; on iCE40 those flip-flops take a logic cell
each (they cannot pack with a LUT), which the JSON reports beside the totals
(``probe_ffs``). LUTs are nextpnr's: logic cells on iCE40 (ICESTORM_LC), LUT4s on ECP5
(TRELLIS_COMB, which also counts LUT-RAM and carry cells).

Points: ``BOARD:N,M,S,P,K[,key=value...]`` with the engine's keyword arguments (``ram_reg=0``,
``levels_per_stage=2``, ``output_stage=serial``, ``output=raw``, ``mmv=2``) and its memories'
Yosys ``ram_style`` (``weights=block``, ``channels=…``, ``buffer=…``, ``output=…``). A MAC is
one binary multiply-accumulate: ``S·P·k·mmv`` per cycle. Builds done with the same
design and tools are reused (sw/synth.py's hash). Prints ONE JSON document on stdout (progress
on stderr) and writes a plot (LUTs per binary MAC and Fmax against MACs per cycle)::

    .venv/bin/python benchmarks/mvu_probe.py > benchmarks/results/mvu_probe.json
"""
import argparse
import json
import sys
from pathlib import Path

from amaranth.hdl import Cat, ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.vendor import LatticeICE40Platform

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xnorflow.hw.board.clocking import PllClock  # noqa: E402
from xnorflow.hw.dataflow.mvu import MatrixVectorUnit  # noqa: E402
from xnorflow.hw.dataflow.timing import mvu_cycles  # noqa: E402
from xnorflow.sw.synth import get_board, synthesize  # noqa: E402

from design_space import repo_relative  # noqa: E402  (benchmarks/design_space.py)

# Digits MLP layers on the iCEBreaker (256 binary MACs per cycle each: II = 256 for both
# 64·4·256 and 256·256 MACs), SFC layers on the ULX3S-85F.
# The iCE40 points use the UP5K settings (no RAM edge registers, two adder levels per
# pipeline stage, one channel memory per engine: EBRs bind first there); the ECP5 points the
# engine's defaults. 256,256,128,16 is an SFC hidden layer at II = 32 (3 M images/s at ~100 MHz);
# its weight memories are only 32 words deep, which Yosys puts in LUT RAM unless told
# ("weights=block"; measured without: 16,628 LUT4 and 0 EBR at 85.7 MHz).
# The mmv=2 points each have an mmv=1 twin above with the same MACs per cycle and the same
# cycles per image, and half its weight bits per cycle; the last is the SFC's first layer at
# 32 cycles per image (3.1 M images/s at 100 MHz).
_ICE40 = "ram_reg=0,levels_per_stage=2,output_stage=serial"
DEFAULT_POINTS = [
    f"icebreaker:256,256,32,8,1,{_ICE40}",
    f"icebreaker:64,256,16,4,4,{_ICE40}",
    f"icebreaker:256,256,64,4,1,{_ICE40}",
    "ulx3s-85f:256,256,32,8,1",
    "ulx3s-85f:784,256,64,16,1",
    "ulx3s-85f:256,256,128,16,1,weights=block",
    "ulx3s-85f:784,256,64,8,1,mmv=2",
    "ulx3s-85f:256,256,128,8,1,mmv=2,weights=block",
    "ulx3s-85f:784,256,392,8,1,mmv=2,weights=block",
]
# Clocks asked of the PLL: above what the engine reaches, so nextpnr optimises for speed
# and the report's Fmax is what the placement and routing achieved.
PROBE_CLOCK_MHZ = {"ice40": 48.0, "ecp5": 150.0}
_INT_KEYS = ("ram_reg", "levels_per_stage", "fifo_depth", "acc_width", "mmv")
# ``weights=block`` etc.: the engine's ram_styles (Yosys ram_style per memory kind)
_RAM_KINDS = MatrixVectorUnit.RAM_KINDS


def log(msg):
    print(f"[mvu_probe] {msg}", file=sys.stderr, flush=True)


def parse_point(text):
    """``BOARD:N,M,S,P,K[,key=value...]`` → (board, MatrixVectorUnit keyword arguments)."""
    board, _, spec = text.partition(":")
    fields = spec.split(",")
    try:
        n_in, n_out, simd, pe, k = (int(f) for f in fields[:5])
        extra = dict(f.split("=", 1) for f in fields[5:])
        extra = {key: int(v) if key in _INT_KEYS else v for key, v in extra.items()}
    except ValueError:
        raise SystemExit(f"mvu_probe: point {text!r}: expected BOARD:N,M,S,P,K[,key=value...] "
                         f"with integer N, M, S, P, K") from None
    styles = {kind: extra.pop(kind) for kind in _RAM_KINDS if kind in extra}
    if styles:
        extra["ram_styles"] = styles
    get_board(board)
    return board, dict(n_in=n_in, n_out=n_out, simd=simd, pe=pe, input_bits=k, **extra)


class MvuProbeTop(Elaboratable):
    """The engine with a PLL clock and the stimulus described in the module docstring."""

    def __init__(self, mvu_args, clock_hz):
        self.clock_hz = clock_hz
        self.mvu = MatrixVectorUnit(**mvu_args)

    def elaborate(self, platform):
        m = Module()
        family = "ice40" if isinstance(platform, LatticeICE40Platform) else "ecp5"
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.submodules.clocking = PllClock(cd_sync, self.clock_hz, family,
                                         platform.default_clk_frequency)
        m.submodules.mvu = mvu = self.mvu
        # x^32 + x^22 + x^2 + x + 1: a maximal-length LFSR, one bit per control input
        lfsr = Signal(32, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[10] ^ lfsr[30] ^ lfsr[31]))
        shift = Signal(max(len(mvu.i.payload), len(mvu.wr.data)))
        m.d.sync += shift.eq(Cat(lfsr[0], shift[:-1]))
        m.d.comb += [
            mvu.i.payload.eq(shift), mvu.wr.data.eq(shift),
            mvu.i.valid.eq(lfsr[3]), mvu.o.ready.eq(lfsr[5] | lfsr[9]),
            mvu.wr.en.eq(lfsr[11] & lfsr[12]),
            mvu.wr.sel.eq(lfsr[13:13 + len(mvu.wr.sel)]),
            mvu.wr.addr.eq(Cat(lfsr[20:], lfsr[1:3], lfsr[4:20])),
        ]
        out = Signal()
        m.d.sync += out.eq(mvu.o.payload.xor() ^ mvu.o.valid ^ mvu.busy)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(out)
        return m


def label(args):
    """Build directory label: the shape and every non-default option."""
    base = "mvu-{n_in}x{n_out}-s{simd}-p{pe}-k{input_bits}".format(**args)
    flat = dict(args)
    flat.update(flat.pop("ram_styles", {}))
    extra = [f"{k}{v}" for k, v in sorted(flat.items())
             if k not in ("n_in", "n_out", "simd", "pe", "input_bits")]
    return "-".join([base, *extra])


def point(board_name, args, out_root):
    board = get_board(board_name)
    top = MvuProbeTop(args, PROBE_CLOCK_MHZ[board.family] * 1e6)
    log(f"{board.name}: {label(args)}")
    report = synthesize(top, board.name, label(args), out_root=out_root, log=log)
    shape, mmv = top.mvu.shape, top.mvu.mmv
    macs = shape.simd * shape.pe * shape.input_bits * mmv
    shift_ffs = max(len(top.mvu.i.payload), len(top.mvu.wr.data))
    return {
        "board": board.name, "family": board.family, "device": report["device"],
        "n_in": shape.n_in, "n_out": shape.n_out, "simd": shape.simd, "pe": shape.pe,
        "input_bits": shape.input_bits, "output": shape.output,
        "ram_reg": top.mvu.ram_reg, "levels_per_stage": top.mvu.levels_per_stage,
        "output_stage": top.mvu.output_stage, "ram_styles": top.mvu.ram_styles,
        "mmv": mmv, "binary_macs_per_cycle": macs,
        "weight_bits_per_cycle": shape.simd * shape.pe,
        "cycles_per_group": mvu_cycles(shape.n_in, shape.n_out, shape.simd, shape.pe,
                                       shape.input_bits, mmv),
        "cycles_per_image": top.mvu.cycles_per_image,
        "luts": report["luts"], "ffs": report["ffs"], "brams": report["brams"],
        "sprams": report.get("sprams", 0),
        "fmax_mhz": report["fmax_mhz"], "target_clock_mhz": report["target_clock_mhz"],
        "luts_per_mac": round(report["luts"] / macs, 2),
        "probe_ffs": shift_ffs + 32 + 1,   # shift register, LFSR, LED
        "build_dir": repo_relative(report.get("build_dir", Path(out_root) / label(args))),
        "build_seconds": report["build_seconds"],
    }


def plot(points, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_lut, ax_f) = plt.subplots(1, 2, figsize=(10, 4))
    for family, marker in (("ice40", "o"), ("ecp5", "s")):
        pts = [p for p in points if p["family"] == family]
        if not pts:
            continue
        x = [p["binary_macs_per_cycle"] for p in pts]
        name = {"ice40": "iCE40 UP5K (logic cells)", "ecp5": "ECP5-85F (LUT4)"}[family]
        ax_lut.scatter(x, [p["luts_per_mac"] for p in pts], marker=marker, label=name)
        ax_f.scatter(x, [p["fmax_mhz"] for p in pts], marker=marker, label=name)
        for n, (p, xi) in enumerate(zip(pts, x)):
            tag = f"S{p['simd']}·P{p['pe']}"
            tag += f"·k{p['input_bits']}" if p["input_bits"] > 1 else ""
            tag += f"·m{p['mmv']}" if p.get("mmv", 1) > 1 else ""
            # points of one family often share x: stack their labels
            offset = (4, 3 + 9 * sum(1 for q in x[:n] if q == xi))
            ax_lut.annotate(tag, (xi, p["luts_per_mac"]), fontsize=7, xytext=offset,
                            textcoords="offset points")
            ax_f.annotate(tag, (xi, p["fmax_mhz"]), fontsize=7, xytext=offset,
                          textcoords="offset points")
    for ax in (ax_lut, ax_f):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("binary MACs per cycle (S·P·k·mmv)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_lut.set_ylabel("LUTs per binary MAC (whole probe)")
    ax_f.set_ylabel("post-route Fmax (MHz)")
    fig.suptitle("One matrix-vector unit alone on the chip (benchmarks/mvu_probe.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", default=DEFAULT_POINTS,
                    help="BOARD:N,M,S,P,K[,key=value...] engines to build (default: three "
                         "iCEBreaker and six ULX3S-85F points, see DEFAULT_POINTS)")
    ap.add_argument("--out-root", default=str(ROOT / "build" / "mvu-probe"),
                    help="build directories (default build/mvu-probe)")
    ap.add_argument("--plot", default=str(ROOT / "benchmarks" / "results" / "mvu_probe.png"),
                    help="plot file (default benchmarks/results/mvu_probe.png)")
    ap.add_argument("--replot", metavar="JSON",
                    help="plot the points of an earlier output of this script instead of "
                         "building (default: build)")
    args = ap.parse_args(argv)
    if args.replot:
        points = json.loads(Path(args.replot).read_text())["points"]
    else:
        builds = [parse_point(p) for p in args.points]   # all checked before any build
        points = [point(board, mvu_args, args.out_root) for board, mvu_args in builds]
    plot(points, args.plot)
    print(json.dumps({"benchmark": "mvu_probe", "points": points,
                      "plot": repo_relative(args.plot)}, indent=2))


if __name__ == "__main__":
    main()
