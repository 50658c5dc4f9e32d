"""``xnorflow verilog``: the accelerator as Verilog, for simulators and flows outside xnorflow.

``--top accelerator`` (default) is the host link and the core (``xnorflow.hw.top.OverlayAccelerator``): byte
streams in and out (``i__payload``, ``i__valid``, ``i__ready``, ``o__…``), the protocol of
``docs/protocol.md``. ``--top core`` is the core alone with its register bus (``hw/bus.py``).
The output passes ``verilator --lint-only -Wall`` with ``hw/core/verilator_lint.vlt``, whose
waivers each state why they belong to the Verilog writer rather than the design.
"""
import argparse
import sys
from pathlib import Path

from amaranth.back import verilog

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core.core import verilog as core_verilog
from xnorflow.hw.top import OverlayAccelerator
from xnorflow.sw.argtypes import output_file
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.xnf import atomic_write

TOPS = ("accelerator", "core")
LINT_WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "core" / "verilator_lint.vlt"


def array_config(text):
    """argparse type of ``--array``: an :class:`xnorflow.hw.config.ArrayConfig` from ``PxQxK[,key=value
    ...]``; a malformed or inconsistent one is refused by argparse, naming the option."""

    try:
        return ArrayConfig.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def generate(config=None, top="accelerator"):
    """(module name, Verilog text) of ``top`` for an ArrayConfig, its string form, or None (the
    default build, 8x8x32)."""

    try:
        config = ArrayConfig() if config is None else ArrayConfig.parse(config)
    except ValueError as e:
        raise XnorflowError(f"--array {config!r}: {e}") from None
    if top == "core":
        return "xnorflow_core", core_verilog(config)
    return "xnorflow_accelerator", verilog.convert(OverlayAccelerator(config),
                                                   name="xnorflow_accelerator")


def add_parser(sub):
    p = sub.add_parser(
        "verilog", help="write the accelerator (or the core) as Verilog",
        description="Write one accelerator build as a single Verilog file for simulators and "
                    "flows outside xnorflow: the host link and the core (byte streams in and "
                    "out, the protocol of docs/protocol.md), or the core alone with its register "
                    "bus. The output passes verilator --lint-only -Wall with the waivers in "
                    "hw/core/verilator_lint.vlt.")
    p.add_argument("--array", type=array_config, default=None, metavar="PxQxK[,key=value...]",
                   help="the build: array shape, then optional fields of hw/config.py's "
                        "ArrayConfig such as w_depth=N (default 8x8x32 with default depths)")
    p.add_argument("--top", choices=TOPS, default="accelerator",
                   help="accelerator: host link + core, module xnorflow_accelerator; core: the "
                        "core and its register bus, module xnorflow_core (default accelerator)")
    p.add_argument("-o", "--out", required=True, type=output_file, metavar="FILE.v",
                   help="the Verilog file to write (required; replaced atomically, its "
                        "directory must exist)")
    p.set_defaults(func=run)


def run(args):
    name, text = generate(args.array, args.top)
    atomic_write(args.out, text.encode())
    print(f"wrote {args.out}: module {name} ({len(text.splitlines())} lines); lint with "
          f"verilator --lint-only -Wall {LINT_WAIVERS} {args.out}", file=sys.stderr)
    return 0
