"""The command line of a build-flow pass that rewrites one file in place (the board scripts run
them between tools: sw/synth.py, ``build_plan``)."""
import os
import sys

__all__ = ["run_file_pass"]


def run_file_pass(argv, name, file_kind, transform):
    """``python -m xnorflow.sw.<name> FILE``: ``transform(text)`` returns the new text and a
    summary; the file is replaced whole (never half written) and ``name: summary`` printed.
    Returns the exit status (2 for a wrong command line)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m xnorflow.sw.{name} {file_kind}", file=sys.stderr)
        return 2
    path = argv[0]
    with open(path) as f:
        text, summary = transform(f.read())
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(f"{name}: {summary}")
    return 0
