"""One pipeline register on a stream: cuts a long data path (a block RAM's clock-to-out and
its depth multiplexer) from whatever consumes it."""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core.pipeline import replica

__all__ = ["RegisterSlice", "CHUNK_BITS"]

#: Payload bits per pair of skid pointers (see :class:`RegisterSlice`).
CHUNK_BITS = 64


class RegisterSlice(wiring.Component):
    """A stream through one register: payload and valid are flip-flops; with ``skid`` a
    two-entry FIFO whose ``ready`` is a flip-flop.

    Parameters
    ----------
    width : int
        Payload bits.
    skid : bool
        Also cut ``ready``: two payload registers written alternately, ``i.ready`` "not
        both full" and ``o.valid`` "not both empty", both flip-flops loaded with their next
        values. A payload register loads on its own turn while the slice is not full
        (the entry at the write pointer is free then), never on ``o.ready`` or
        ``i.valid``: with the usual skid form (an output register that loads
        whenever ``o`` may take a beat) the consumer's ``ready`` was the clock enable of
        every payload bit, 0.8 ns late at 100 MHz across the first engine of the ECP5 SFC
        build 21. ``o.payload`` is the older register's, one multiplexer after them. For a
        slice whose producer's read enable spreads over many block RAMs and counters (the
        dataflow core's input FIFO on ECP5) behind a consumer whose ``ready`` is logic of
        its own.

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
    cycle as it would without (:class:`~xnorflow.hw.dataflow.timing.SkidSliceModel`: taking
    while fewer than two are held is the skid register's "spare empty"). Both the dataflow
    core's input slice and the engines' output slices are skid slices; the plain form is the
    cheaper one where ``ready`` is short. The plain form's payload register loads whenever a
    beat may enter, not only when one does, so its clock enable is ``ready`` alone, not the
    producer's ``valid`` (a register says whether it holds a beat).
    """

    def __init__(self, width, skid=False):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"RegisterSlice width must be a positive integer, got {width!r}")
        self.width, self.skid = width, bool(skid)
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        if not self.skid:
            payload = Signal.like(self.o.payload, name="held", reset_less=True)  # valid says
            free = ~self.o.valid | self.o.ready          # the output register may load
            m.d.comb += [self.o.payload.eq(payload), self.i.ready.eq(free)]
            with m.If(free):
                m.d.sync += [payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
            return m
        held = Signal(range(3), name="held")     # beats held: 0, 1 or 2
        full = Signal(name="full")               # held == 2, a flip-flop
        take = self.i.valid & ~full
        give = self.o.valid & self.o.ready
        after = held + take - give
        m.d.comb += self.i.ready.eq(~full)
        m.d.sync += [held.eq(after), full.eq(after == 2), self.o.valid.eq(after != 0)]
        # Each chunk of at most CHUNK_BITS bits has its own write and read pointers and its
        # own copy of `full` (replica registers, kept apart on ECP5): one read pointer
        # selecting all 256 bits of the dataflow core's input slice crossed the die, 9.7 ns
        # of route (ECP5 SFC build 28). The entry at the write pointer is free whenever the
        # slice is not full, so it loads the input then whether or not a beat is offered: its
        # clock enable is registers only, not the producer's valid (build 29: 5.5 ns of
        # route from the input gate to 256 enables).
        for c, lo in enumerate(range(0, self.width, CHUNK_BITS)):
            hi = min(lo + CHUNK_BITS, self.width)
            entries = [Signal(hi - lo, name=f"entry{n}_{c}", reset_less=True) for n in range(2)]
            write_at = Signal(name=replica(f"write_at{c}"))
            read_at = Signal(name=replica(f"read_at{c}"))
            chunk_full = Signal(name=replica(f"full{c}"))
            m.d.sync += chunk_full.eq(after == 2)
            m.d.comb += self.o.payload[lo:hi].eq(Mux(read_at, entries[1], entries[0]))
            with m.If(take):
                m.d.sync += write_at.eq(~write_at)
            with m.If(~chunk_full):
                for n, entry in enumerate(entries):
                    with m.If(write_at == n):
                        m.d.sync += entry.eq(self.i.payload[lo:hi])
            with m.If(give):
                m.d.sync += read_at.eq(~read_at)
        return m
