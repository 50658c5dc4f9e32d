"""One pipeline register on a stream: cuts a long data path (a block RAM's clock-to-out and
its depth multiplexer) from whatever consumes it."""
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """A stream through one register: payload and valid are flip-flops, ready passes through.

    Parameters
    ----------
    width : int
        Payload bits.

    Ports
    -----
    i : In(stream.Signature(width))
    o : Out(stream.Signature(width))

    Timing
    ------
    Latency 1 (a beat taken in cycle t is valid on ``o`` in cycle t + 1); one beat per cycle
    (``i.ready = ~o.valid | o.ready``). Only the data path is cut: ``ready`` stays
    combinational, which is short here (a few gates from the consumer's credit register).
    """

    def __init__(self, width):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"RegisterSlice width must be a positive integer, got {width!r}")
        self.width = width
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        payload = Signal.like(self.o.payload, name="held", reset_less=True)  # valid says when
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready), self.o.payload.eq(payload)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [payload.eq(self.i.payload), self.o.valid.eq(1)]
        return m
