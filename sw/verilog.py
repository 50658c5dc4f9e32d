"""``xnorflow verilog``: the accelerator as Verilog, for simulators and flows outside xnorflow.

``--top accelerator`` (default) is the host link and the core (``hw.top.Accelerator``): byte
streams in and out (``i__payload``, ``i__valid``, ``i__ready``, ``o__…``), the protocol of
``docs/protocol.md``. ``--top core`` is the core alone with its register bus (``hw/bus.py``).
The output passes ``verilator --lint-only -Wall`` with ``hw/core/verilator_lint.vlt``, whose
waivers each state why they belong to the Verilog writer rather than the design.
"""
import sys
from pathlib import Path

from sw.errors import XnorflowError

TOPS = ("accelerator", "core")
LINT_WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "core" / "verilator_lint.vlt"


def generate(config, top="accelerator"):
    """(module name, Verilog text) of ``top`` for an ArrayConfig or its string form."""
    from amaranth.back import verilog

    from hw.config import ArrayConfig
    try:
        config = config if isinstance(config, ArrayConfig) else ArrayConfig.parse(config or "")
    except ValueError as e:
        raise XnorflowError(f"--array {config!r}: {e}") from None
    if top == "core":
        from hw.core.core import verilog as core_verilog
        return "xnorflow_core", core_verilog(config)
    from hw.top import Accelerator
    return "xnorflow_accelerator", verilog.convert(Accelerator(config),
                                                   name="xnorflow_accelerator")


def add_parser(sub):
    p = sub.add_parser("verilog", help="write the accelerator (or the core) as Verilog")
    p.add_argument("--array", default="", help="configuration PxQxK[,key=value...] (default 8x8x32)")
    p.add_argument("--top", choices=TOPS, default="accelerator")
    p.add_argument("-o", "--out", required=True, help="the .v file to write")
    p.set_defaults(func=run)


def run(args):
    from sw.xnf import atomic_write
    name, text = generate(args.array, args.top)
    atomic_write(args.out, text.encode())
    print(f"wrote {args.out}: module {name} ({len(text.splitlines())} lines); lint with "
          f"verilator --lint-only -Wall {LINT_WAIVERS} {args.out}", file=sys.stderr)
    return 0
