"""Wrapping counters, the one helper every dataflow block's control uses."""
from amaranth.hdl import Mux, Signal

__all__ = ["counter", "wrapped_next", "counter_at"]


def counter(n, name=None):
    """A register for 0..n−1, at least one bit wide (a zero-width signal becomes an illegal
    ``[-1:0]`` range in the Verilog)."""
    return Signal(range(max(n, 2)), name=name)


def wrapped_next(value, n):
    """``value + 1``, wrapping to 0 after ``n − 1``."""
    return Mux(value == n - 1, 0, value + 1)


def counter_at(m, value, n, advance, at, name, registered=True):
    """A flip-flop that equals ``value == at`` in every cycle, for a counter ``value`` over
    0..n−1 that starts at 0, resets with its domain and moves only to ``wrapped_next`` when
    ``advance``. The compare is made a cycle early (``value == at − 1``), so control logic
    that uses the flag starts at a register instead of a counter's comparator (the dense
    MVU's ``ready``: seven LUT levels in CNV build cnv9q, 1.8 ns late at 100 MHz). With
    ``registered=False`` it is the compare itself (iCE40, where a flip-flop costs a logic
    cell: the flags cost the iCEBreaker's overlapped SFC build 1.2 MHz, 36.5 < 37)."""
    if not registered:
        return value == at
    flag = Signal(init=int(at == 0), name=name)
    m.d.sync += flag.eq(Mux(advance, value == (at - 1) % n, flag))
    return flag
