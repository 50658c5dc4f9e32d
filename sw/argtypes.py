"""argparse types shared by every command: a bad value is refused by argparse itself, with a
one-line message naming the option and exit status 2, before any work starts.

Each type returns the parsed value or raises ``argparse.ArgumentTypeError`` with what was
expected; argparse prefixes the option's name (``argument --lr: must be a positive finite
number, got inf``).
"""
import argparse
import math
import os
import tempfile


def bounded(kind, accept, expected):
    """An argparse type: ``kind(text)``, refused unless ``accept(value)``; errors say ``expected``.

    Floats must also be finite (``inf`` and ``nan`` parse as floats but are never a useful
    learning rate, fraction or size)."""
    def parse(text):
        try:
            v = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        if not accept(v):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        return v
    parse.__name__ = expected  # argparse names the type in "invalid <name> value" messages
    return parse


def positive(kind):
    """``kind`` (int or float) > 0."""
    return bounded(kind, lambda v: v > 0, f"a positive {'integer' if kind is int else 'number'}")


def nonnegative(kind):
    """``kind`` (int or float) ≥ 0."""
    return bounded(kind, lambda v: v >= 0, f"a non-negative {'integer' if kind is int else 'number'}")


def int_range(lo, hi):
    """An integer in ``lo..hi`` inclusive."""
    return bounded(int, lambda v: lo <= v <= hi, f"an integer in {lo}..{hi}")


positive_int = positive(int)
positive_float = positive(float)
nonnegative_int = nonnegative(int)
nonnegative_float = nonnegative(float)
fraction = bounded(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
probability = bounded(float, lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")


def output_file(text):
    """A file path to be written: its directory must exist and be writable, and the path must
    not be a directory. Checked at parse time so a bad ``-o`` fails before minutes of work."""
    check_writable_file(text)
    return text


def output_dir(text):
    """A directory to be created or written into: it, or its nearest existing parent, must be
    a writable directory."""
    check_writable_dir(text)
    return text


def check_writable_file(path):
    """Raise ``argparse.ArgumentTypeError`` unless ``path`` can be created or replaced."""
    if not path:
        raise argparse.ArgumentTypeError("expected a file path, got ''")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a directory, expected a file path")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{parent} is a file, not a directory")
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"directory {parent} does not exist")
    _probe_writable(parent)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path} is not writable")


def check_writable_dir(path):
    """Raise ``argparse.ArgumentTypeError`` unless ``path`` is, or can be made, a writable
    directory (its nearest existing ancestor must be a writable directory)."""
    if not path:
        raise argparse.ArgumentTypeError("expected a directory path, got ''")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise argparse.ArgumentTypeError(f"{probe} is a file, expected a directory")
    _probe_writable(probe)


def _probe_writable(directory):
    """Create and remove a file in ``directory``: permission bits alone do not tell (root
    ignores them; a read-only mount or /proc refuses anyway). Leaves nothing behind."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"directory {directory} is not writable "
                                         f"({e.strerror or e})") from None
