"""Stream width converter between engines: P-bit output beats → S-bit input beats.

An engine's output carries ``P`` channels per beat, the next engine's input takes ``S``
elements per beat; both streams list one image's lanes (channels, elements) in order, with the
last beat padded. :class:`WidthConverter` regroups the lanes per image, so padding never
shifts the next image's lanes.
"""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WidthConverter", "gather_steps"]


def _ceil_div(a, b):
    return -(-a // b)


def gather_steps(in_lanes, out_lanes, most_slots=None):
    """The lanes per beat after each step of a gathering converter that takes at most
    ``most_slots`` beats per output beat, from ``in_lanes`` to ``out_lanes``: ``[in_lanes,
    …, out_lanes]``. One step (``[in_lanes, out_lanes]``) when it gathers no more than
    ``most_slots`` beats, splits or passes beats, when ``most_slots`` is None, or when the
    ratio has no divisor in ``2 … most_slots`` (a prime ratio past ``most_slots``). Else the
    last step gathers the largest divisor of the ratio up to ``most_slots`` and the steps
    before it the rest, the same way (49 → 7·7, 32 → 4·8, 128 → 2·8·8)."""
    ratio = out_lanes // in_lanes
    if most_slots is None or out_lanes <= in_lanes or ratio <= most_slots:
        return [in_lanes, out_lanes]
    last = max(d for d in range(1, most_slots + 1) if ratio % d == 0)
    if last == 1:
        return [in_lanes, out_lanes]
    return gather_steps(in_lanes, out_lanes // last, most_slots) + [out_lanes]


class WidthConverter(wiring.Component):
    """Regroup a stream of ``in_lanes``-lane beats into ``out_lanes``-lane beats, per image.

    Parameters
    ----------
    lane_bits : int
        Bits per lane (1 for binary activations; k for k-bit elements).
    in_lanes, out_lanes : int
        Lanes per input and per output beat; one must divide the other (a fold makes the
        producer's P and the consumer's S so; powers of two always are).
    image_lanes : int
        Real lanes per image (N of the consumer = M of the producer). An image takes
        ``⌈image_lanes/in_lanes⌉`` input beats and gives ``⌈image_lanes/out_lanes⌉`` output
        beats; lanes past ``image_lanes`` are padding: a partial last output beat is sent as
        soon as the image's last input beat arrived (its padding lanes hold stale data, which
        the consuming engine ignores), and input lanes past the last output beat are dropped.
    eager : bool
        Gathering only: a slot's register loads whenever the converter may take a beat
        (``i.ready``) and the slot is next, not only when a beat comes (``i.valid``), so the
        registers' clock enable is the converter's own state and the consumer's ``ready``,
        never the producer's ``valid``: the slot keeps the value it had at the take, since it
        is next no more after it. The same cycles. For ECP5 builds (``ram_reg``): the CE of
        the converter in front of the CNV's fc 6 (49 slots) was 0.1-0.9 ns late at 95 MHz
        (CNV builds cnv9s, cnv9u); iCE40 builds keep their logic (a 98 %-full device).
    most_slots : int or None
        Gathering only: take at most this many beats into one register; a larger ratio is
        gathered in steps (:func:`gather_steps`), each a converter of its own with a register
        of its own, so a beat fans out to at most ``most_slots`` slots of the next register
        and the wide register's slots load from flip-flops a step before them, not from the
        producer across the die. For ECP5 links between engines: the 49 slots of the
        converter in front of the CNV's fc 6 took conv 4's beat through its end slice's
        multiplexer, 1.2-2.3 ns late at 95 MHz (CNV builds cnv9w, cnv9x). A cycle of latency
        per step more (:func:`xnorflow.hw.dataflow.timing.converter_latency`).

    Ports
    -----
    i : In(stream.Signature(lane_bits·in_lanes))
    o : Out(stream.Signature(lane_bits·out_lanes))
        Lane ``j`` of a beat in bits ``[j·lane_bits, (j+1)·lane_bits)``.

    Timing
    ------
    Gathering (``out_lanes > in_lanes``): the output beat is a register, valid the cycle after
    the input beat that completes it; one input beat per cycle (``i.ready = ~o.valid | o.ready``).
    In steps, a cycle per step and the same rate: each step is such a converter.
    Splitting (``out_lanes < in_lanes``): combinational, one output beat per cycle; the input
    beat is taken with its last output beat. Equal widths: wires.
    (:func:`xnorflow.hw.dataflow.timing.converter_latency`.)
    """

    def __init__(self, lane_bits, in_lanes, out_lanes, image_lanes, eager=False,
                 most_slots=None):
        for name, v in (("lane_bits", lane_bits), ("in_lanes", in_lanes),
                        ("out_lanes", out_lanes), ("image_lanes", image_lanes)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"WidthConverter {name} must be a positive integer, got {v!r}")
        if out_lanes % in_lanes and in_lanes % out_lanes:
            raise ValueError(f"WidthConverter: {in_lanes} input lanes and {out_lanes} output "
                             f"lanes per beat: one must divide the other")
        self.lane_bits, self.in_lanes, self.out_lanes = lane_bits, in_lanes, out_lanes
        self.image_lanes, self.eager = image_lanes, bool(eager)
        if most_slots is not None and (not isinstance(most_slots, int) or most_slots < 2):
            raise ValueError(f"WidthConverter most_slots must be an integer of at least 2 or "
                             f"None, got {most_slots!r}")
        self.steps = gather_steps(in_lanes, out_lanes, most_slots)
        self.in_beats = _ceil_div(image_lanes, in_lanes)
        self.out_beats = _ceil_div(image_lanes, out_lanes)
        super().__init__({"i": In(stream.Signature(lane_bits * in_lanes)),
                          "o": Out(stream.Signature(lane_bits * out_lanes))})

    def elaborate(self, platform):
        m = Module()
        if self.in_lanes == self.out_lanes:
            m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid),
                         self.i.ready.eq(self.o.ready)]
        elif len(self.steps) > 2:
            self._chain(m)
        elif self.out_lanes > self.in_lanes:
            self._gather(m)
        else:
            self._split(m)
        return m

    def _chain(self, m):
        """One single-step converter per step of ``self.steps``, in a row."""
        stages = [WidthConverter(self.lane_bits, a, b, self.image_lanes, eager=self.eager)
                  for a, b in zip(self.steps, self.steps[1:])]
        for n, stage in enumerate(stages):
            m.submodules[f"step{n}"] = stage
        wiring.connect(m, wiring.flipped(self.i), stages[0].i)
        for a, b in zip(stages, stages[1:]):
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, stages[-1].o, wiring.flipped(self.o))

    def _gather(self, m):
        ratio = self.out_lanes // self.in_lanes
        in_bits = self.lane_bits * self.in_lanes
        slot, beat = Signal(range(ratio)), Signal(range(self.in_beats))
        last_in = beat == self.in_beats - 1
        complete = (slot == ratio - 1) | last_in
        # the gathered beat has no reset: it matters only while valid (reset-less flip-flops
        # keep a wide beat off the reset net of an ECP5 build)
        payload = Signal.like(self.o.payload, name="gathered", reset_less=True)
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready), self.o.payload.eq(payload)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        load = self.i.ready if self.eager else self.i.valid & self.i.ready
        with m.If(load):
            for j in range(ratio):
                with m.If(slot == j):
                    m.d.sync += payload.word_select(j, in_bits).eq(self.i.payload)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [slot.eq(Mux(complete, 0, slot + 1)), beat.eq(Mux(last_in, 0, beat + 1))]
            with m.If(complete):
                m.d.sync += self.o.valid.eq(1)

    def _split(self, m):
        ratio = self.in_lanes // self.out_lanes
        out_bits = self.lane_bits * self.out_lanes
        sub, beat = Signal(range(ratio)), Signal(range(self.out_beats))
        last_out = beat == self.out_beats - 1
        consume = (sub == ratio - 1) | last_out
        m.d.comb += [self.o.valid.eq(self.i.valid),
                     self.o.payload.eq(self.i.payload.word_select(sub, out_bits)),
                     self.i.ready.eq(self.o.ready & consume)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [sub.eq(Mux(consume, 0, sub + 1)), beat.eq(Mux(last_out, 0, beat + 1))]
