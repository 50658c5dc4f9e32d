"""Register-chain helper shared by the core's blocks."""
from amaranth.hdl import Signal

__all__ = ["delay"]


def delay(m, sig, n, name):
    """``sig`` delayed by ``n`` cycles through a register chain in ``m`` (n = 0: ``sig``)."""
    for k in range(n):
        d = Signal.like(sig, name=f"{name}_d{k + 1}")
        m.d.sync += d.eq(sig)
        sig = d
    return sig
