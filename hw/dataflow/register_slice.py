"""One pipeline register on a stream: cuts a long data path (a block RAM's clock-to-out and
its depth multiplexer) from whatever consumes it."""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """A stream through one register: payload and valid are flip-flops; with ``skid`` ready
    is one too.

    Parameters
    ----------
    width : int
        Payload bits.
    skid : bool
        Also cut ``ready``: a second register takes the beat that arrives while the first
        waits, and ``i.ready`` is "the second is empty", a flip-flop. For a slice whose
        producer's read enable spreads over many block RAMs and counters (the dataflow core's
        input FIFO on ECP5) behind a consumer whose ``ready`` is logic of its own.

    Ports
    -----
    i : In(stream.Signature(width))
    o : Out(stream.Signature(width))

    Timing
    ------
    Latency 1 (a beat taken in cycle t is valid on ``o`` in cycle t + 1, or the cycle after
    the beat before it leaves); one beat per cycle. Without ``skid`` ``i.ready = ~o.valid |
    o.ready``, combinational (cycle model :class:`~xnorflow.hw.dataflow.timing.RegisterSliceModel`);
    with it a beat may be taken a cycle before the one ahead leaves, and leaves in the same
    cycle as it would without (:class:`~xnorflow.hw.dataflow.timing.SkidSliceModel`). Both the
    dataflow core's input slice and the engines' output slices are skid slices; the plain
    form is the cheaper one where ``ready`` is short. The payload registers load
    whenever a beat may enter, not only when one does, so their clock enable is ``ready``
    alone, not the producer's ``valid`` (a register says whether they hold a beat).
    """

    def __init__(self, width, skid=False):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"RegisterSlice width must be a positive integer, got {width!r}")
        self.width, self.skid = width, bool(skid)
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        payload = Signal.like(self.o.payload, name="held", reset_less=True)  # valid says when
        m.d.comb += self.o.payload.eq(payload)
        free = ~self.o.valid | self.o.ready          # the output register may load
        if not self.skid:
            m.d.comb += self.i.ready.eq(free)
            with m.If(free):
                m.d.sync += [payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
            return m
        spare = Signal.like(payload, name="spare", reset_less=True)
        spare_valid = Signal()
        m.d.comb += self.i.ready.eq(~spare_valid)
        with m.If(free):
            # the spare's beat came first; the input's, if any, was refused (spare full)
            m.d.sync += [payload.eq(Mux(spare_valid, spare, self.i.payload)),
                         self.o.valid.eq(spare_valid | self.i.valid), spare_valid.eq(0)]
        with m.Elif(~spare_valid):
            m.d.sync += [spare.eq(self.i.payload), spare_valid.eq(self.i.valid)]
        return m
