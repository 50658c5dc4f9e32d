"""The ``xnorflow`` command line: one console script, one subcommand per job.

Each subcommand lives in the module that does its job and registers itself through an
``add_parser(subparsers)`` function; this module only assembles them and turns user-facing
errors into a one-line message and exit status 2.
"""
import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.tools import ensure_tools_on_path

# (module, purpose) in the order they appear in --help.
SUBCOMMANDS = [
    "xnorflow.sw.info",
    "xnorflow.sw.train.cli",
    "xnorflow.sw.compile",
    "xnorflow.sw.evaluate",
    "xnorflow.sw.layer_table",
    "xnorflow.simulate",
    "xnorflow.sw.verilog",
    "xnorflow.sw.synth",
    "xnorflow.sw.fold",
    "xnorflow.profile",
    "xnorflow.sw.qonnx.cli",
    "xnorflow.run",
]


def _version():
    """The installed distribution's version (pyproject.toml's), or 'unknown' when run from a
    source tree that was never installed."""
    try:
        return version("xnorflow")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="xnorflow",
        description="Train, compile, simulate, synthesize and profile binary neural network "
                    "accelerators.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    ensure_tools_on_path()
    try:
        return args.func(args) or 0
    except XnorflowError as e:
        print(f"xnorflow {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xnorflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
