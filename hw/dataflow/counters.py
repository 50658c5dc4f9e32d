"""Wrapping counters, the one helper every dataflow block's control uses."""
from amaranth.hdl import Mux, Signal

__all__ = ["counter", "wrapped_next"]


def counter(n, name=None):
    """A register for 0..n−1, at least one bit wide (a zero-width signal becomes an illegal
    ``[-1:0]`` range in the Verilog)."""
    return Signal(range(max(n, 2)), name=name)


def wrapped_next(value, n):
    """``value + 1``, wrapping to 0 after ``n − 1``."""
    return Mux(value == n - 1, 0, value + 1)
