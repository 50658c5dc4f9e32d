"""A byte-stream loopback top: the harness's own test device, independent of the accelerator.

It lets the harness, the transport framing and the cycle accounting be tested without the host
link or the core (which other people are changing at the same time).
"""
from amaranth.hdl import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Loopback", "loopback"]


class Loopback(wiring.Component):
    """Every byte taken from ``i`` comes out of ``o``, in order, through a ``depth``-byte FIFO.

    Ports
    -----
    i : In(stream.Signature(8))
        Bytes in; ``i.ready`` is low while the FIFO is full (backpressure from ``o``).
    o : Out(stream.Signature(8))
        Bytes out; ``o.valid`` is high while the FIFO holds a byte.

    Timing: a byte accepted at a rising edge is offered on ``o`` two cycles later (the
    buffered FIFO's read latency), so an ``n``-byte frame is back ``n + 2`` cycles after its
    first byte went in when neither side pauses.
    """

    def __init__(self, depth=16):
        self.depth = depth
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = f = fifo.SyncFIFOBuffered(width=8, depth=self.depth)
        m.d.comb += [
            f.w_data.eq(self.i.payload), f.w_en.eq(self.i.valid), self.i.ready.eq(f.w_rdy),
            self.o.payload.eq(f.r_data), self.o.valid.eq(f.r_rdy), f.r_en.eq(self.o.ready),
        ]
        return m


def loopback(depth=16):
    """Factory for :class:`xnorflow.sim.build.TopSpec` (``"xnorflow.sim.loopback:loopback"``)."""
    return Loopback(depth)
