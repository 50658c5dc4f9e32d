"""Cycle model of the dataflow engines: pure Python, no Amaranth.

The gateware builds its pipelines with the same stage counts (:mod:`xnorflow.hw.dataflow.mvu` asserts
that its trees have exactly :func:`popcount_stages` and :func:`plane_stages` registers), and
``hw/dataflow/test_mvu.py`` measures every number below in simulation and requires equality.

Definitions (one engine, ``SF = ⌈N/S⌉``, ``NF = ⌈M/P⌉``, ``m = mmv`` images per group; an
engine with ``mmv = 1`` computes groups of one image):

* **Initiation interval** :func:`mvu_cycles`: with input available and the output ready, the
  first output beats of consecutive groups are exactly ``SF·NF`` cycles apart, i.e.
  ``SF·NF/m`` cycles per image. k-bit layers read all k bit-planes in the same cycle (the
  weight word is reused for every plane), so ``input_bits`` does not appear, and with MMV
  the weight word is reused for the m images of a group, so ``mmv`` does not either.
* **Latency** :func:`mvu_latency`: from the cycle in which a group's *last* input beat (the
  last beat of its last image) is accepted (``i.valid & i.ready``) to the first cycle in
  which the group's *first* output beat (beat 0 of image 0) is valid on ``o``, for an
  engine that is idle with ``o`` ready::

      latency = 1 (start) + buffer_write_lag (ram_reg: min(2, SF − 1), the buffer's write)
                + (SF − 1) (rest of fold 0) + 1 (RAM read)
                + ram_reg_stages (ram_reg: two read-address registers of each
                             memory's own, two registers after the read; one with
                             LUT-RAM weights)
                + popcount_stages(S, L, leaf) + plane_stages(k, L) (datapath)
                + 3 (accumulate, compare/offset, output FIFO)
                [+ m·P + ram_reg with the serial output stage: the walk over the m·P sums]
                [+ (NF − 1)·SF + 1 with m > 1: the group's last fold, the buffer's read]

  with ``L = levels_per_stage``, the adder levels between two pipeline registers, and
  ``leaf = leaf_reg``, whether the XNOR pairs' 2-bit counts are registered.
* **Beat times** :func:`mvu_output_offsets`, from the same cycle, ``o`` never stalling:

  - ``m = 1``: beat ``nf`` ``latency + nf·SF`` (each beat leaves as its fold ends);
  - ``m > 1``: image ``j``'s beat ``nf`` ``latency + j·NF + nf``: the group leaves in one
    burst of ``m·NF`` consecutive beats once its last fold has ended (the folds compute beat
    ``nf`` of all m images at once, the stream wants image 0's beats first; a burst keeps
    every group's schedule the same, since ``m·NF ≤ SF·NF`` cycles never overlap the next
    group's burst).

  :func:`mvu_last_output_latency` is the last of them.
* **A stream of groups** :func:`mvu_output_cycles`: group ``g``'s first fold starts at
  ``s_g = max(a_g + 1 + lag, s_{g−1} + SF·NF)`` (``a_g`` the cycle its last input beat is
  accepted, ``lag`` :func:`buffer_write_lag`: the reader waits for the whole group in the
  buffer, and for the previous group's last fold), and its beats follow at
  ``s_g − 1 − lag + mvu_output_offsets``; exact whenever ``o`` never stalls (the default
  buffer depth then never delays a fold).
* **With backpressure** (a block after the engine that does not take every beat at once):
  the stream models at the end of this module (:class:`MvuModel`, :class:`ConverterModel`,
  :class:`RegisterSliceModel`; the window unit's and the pool's in their modules) give the
  cycle of every handshake of a chain of blocks (``hw/dataflow/test_stream_timing.py``
  requires equality with the simulated blocks under random stalls;
  :mod:`xnorflow.hw.dataflow.run_timing` chains them into a whole core).
"""
__all__ = ["adder_tree_stages", "popcount_stages", "plane_stages", "datapath_stages",
           "OUTPUT_SLICES", "mvu_cycles", "buffer_write_lag", "weights_in_lut_ram", "ram_reg_stages", "mvu_latency", "mvu_output_offsets",
           "mvu_last_output_latency", "mvu_output_cycles", "mvu_fifo_depth", "converter_latency",
           "OnDemand", "Handshakes", "connect_chain", "SourceModel", "SinkModel",
           "RegisterSliceModel", "SkidSliceModel", "ConverterModel", "MvuModel",
           "psum_stage", "psum_latency", "psum_credit_cycles", "psum_fifo_depth", "PsumMvuModel"]

from .convert import gather_steps


def _ceil_div(a, b):
    return -(-a // b)


def adder_tree_stages(terms, levels_per_stage=1):
    """Register stages of a balanced adder tree over ``terms`` inputs that registers after
    every ``levels_per_stage``-th adder level and after the last."""
    levels = (terms - 1).bit_length()   # ⌈log2 terms⌉
    return _ceil_div(levels, levels_per_stage)


def popcount_stages(simd, levels_per_stage=1, leaf_reg=True):
    """Register stages of an S-bit XNOR-popcount: a first level (one LUT4 per output bit sums
    two XNOR pairs into a 2-bit count), registered if ``leaf_reg`` (else it is the first
    adder level's stage), and an adder tree over ⌈S/2⌉ counts."""
    return int(leaf_reg) + adder_tree_stages(_ceil_div(simd, 2), levels_per_stage)


def plane_stages(input_bits, levels_per_stage=1):
    """Register stages that add the k plane counts, plane b weighted by 2^b."""
    return adder_tree_stages(input_bits, levels_per_stage)


def datapath_stages(simd, input_bits=1, levels_per_stage=1, leaf_reg=True):
    """Cycles from the (registered) weight and input words to the per-cycle count U_t."""
    return (popcount_stages(simd, levels_per_stage, leaf_reg)
            + plane_stages(input_bits, levels_per_stage))


def mvu_cycles(n_in, n_out, simd, pe, input_bits=1, mmv=1):
    """Initiation interval of one engine: ⌈N/S⌉·⌈M/P⌉ cycles per group of ``mmv`` images
    (per image when ``mmv`` = 1), for any k."""
    del input_bits, mmv  # all planes are read in parallel; the m images share a weight read
    return _ceil_div(n_in, simd) * _ceil_div(n_out, pe)


def buffer_write_lag(ram_reg, synapse_folds):
    """Cycles from accepting an input beat to its word being in the engine's input buffer
    (the ECP5 builds, ``ram_reg``: :meth:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit._input_buffer`):
    ``min(2, SF − 1)``, else 0. With one cycle the buffer's chunks are written from replica
    registers of their own; with two a shared register comes before the replicas, since one
    write enable reaching an m-image buffer's chunks across the engine in one cycle was
    1.8 ns late at 100 MHz (ECP5 SFC build 20: 11.8 ns of route to the farthest chunk). A
    group's first fold then starts ``1 + lag`` cycles after its last beat, and the reader
    gives a half back to the writer ``lag`` cycles before its last read (those reads are
    inside the half's last fold, so surely next; the writer's first word lands after them):
    the lag costs latency, never a cycle of the interval. With ``SF = 1`` (each word a fold
    of its own, whose start may wait) there are no such cycles, and the fully unfolded engine
    keeps one image per cycle: its buffer is written directly (two words deep, its address
    one bit)."""
    return min(2, synapse_folds - 1) if ram_reg else 0


#: Skid register slices at the end of an output-sliced engine (a dense MMV engine with
#: ``ram_reg``: :meth:`~xnorflow.hw.dataflow.config.DataflowConfig.output_slice`), one on each
#: side of its reorder buffer's image multiplexer (:class:`~xnorflow.hw.dataflow.mvu.GroupReorderBuffer`).
OUTPUT_SLICES = 2

#: Registers a ``ram_reg`` (ECP5) engine adds between its reader and its PEs when its weights
#: are in block RAM: two read-address registers of each memory's own and two after the read
#: (the weight word by its block RAM, then by its PE; the input word as many).
RAM_REG_STAGES = 4

#: Weight memories at most this deep are LUT RAM on ``ram_reg`` builds (an ECP5 DPR16X4 holds
#: 16 words): the engine pins ``ram_style = "distributed"`` on them, so the count of registers
#: after the read (:func:`ram_reg_stages`) never rests on a guess of Yosys' choice.
LUT_RAM_DEPTH = 16


def weights_in_lut_ram(n_in, n_out, simd, pe, weight_style=None):
    """Whether an engine's weight memories are LUT RAM: ``weight_style`` ``"distributed"``,
    or no style and at most :data:`LUT_RAM_DEPTH` words (``SF·NF``)."""
    depth = _ceil_div(n_in, simd) * _ceil_div(n_out, pe)
    return weight_style == "distributed" or (weight_style is None and depth <= LUT_RAM_DEPTH)


def ram_reg_stages(ram_reg, lut_weights=False):
    """Registers between the reader and the PEs beyond the read register: none without
    ``ram_reg``; :data:`RAM_REG_STAGES` with it; one fewer with LUT-RAM weights, whose read is
    a LUT's delay from its address register, not a block RAM's 5.6 ns clock-to-out, so the
    word needs no second register on its way to the PEs (CNV build cnv10l: that register
    cost 3,072 flip-flops behind conv 2's LUT-RAM weights alone, at 90 % of the device's)."""
    if not ram_reg:
        return 0
    return RAM_REG_STAGES - int(bool(lut_weights))


def mvu_latency(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                output_stage="parallel", mmv=1, weight_style=None, leaf_reg=True):
    """Cycles from accepting a group's last input beat to its first output beat valid."""
    sf, nf = _ceil_div(n_in, simd), _ceil_div(n_out, pe)
    lut_weights = weights_in_lut_ram(n_in, n_out, simd, pe, weight_style)
    latency = (sf + 4 + ram_reg_stages(ram_reg, lut_weights) + buffer_write_lag(ram_reg, sf)
               + datapath_stages(simd, input_bits, levels_per_stage, leaf_reg))
    if output_stage == "serial":
        latency += mmv * pe + int(ram_reg)   # the walk over the m·P sums, the word's edge
    if mmv > 1:
        latency += (nf - 1) * sf + 1         # every fold of the group, the buffer's read
    return latency


def mvu_output_offsets(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                       output_stage="parallel", mmv=1, weight_style=None, leaf_reg=True):
    """Cycle of every output beat of a group, counted from the cycle its last input beat is
    accepted, for an idle engine whose ``o`` never stalls: ``offsets[j][nf]`` for image ``j``
    of the group (``mmv`` lists of ``NF``)."""
    sf, nf = _ceil_div(n_in, simd), _ceil_div(n_out, pe)
    first = mvu_latency(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                        output_stage, mmv, weight_style, leaf_reg)
    if mmv == 1:
        return [[first + b * sf for b in range(nf)]]
    return [[first + j * nf + b for b in range(nf)] for j in range(mmv)]


def mvu_last_output_latency(n_in, n_out, simd, pe, input_bits=1, ram_reg=True,
                            levels_per_stage=1, output_stage="parallel", mmv=1,
                            weight_style=None, leaf_reg=True):
    """Cycles from accepting a group's last input beat to its last output beat valid."""
    return mvu_output_offsets(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                              output_stage, mmv, weight_style, leaf_reg)[-1][-1]


def mvu_output_cycles(last_inputs, n_in, n_out, simd, pe, input_bits=1, ram_reg=True,
                      levels_per_stage=1, output_stage="parallel", mmv=1, weight_style=None,
                      leaf_reg=True):
    """Cycle of every output beat, ``[group][image][nf]``, of groups whose last input beats
    are accepted in cycles ``last_inputs`` (increasing), for an engine idle before the first
    and whose ``o`` never stalls."""
    offsets = mvu_output_offsets(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                                 output_stage, mmv, weight_style, leaf_reg)
    period = mvu_cycles(n_in, n_out, simd, pe, input_bits, mmv)
    lag = 1 + buffer_write_lag(ram_reg, _ceil_div(n_in, simd))   # last beat → first fold
    beats, start = [], None
    for accepted in last_inputs:
        start = accepted + lag if start is None else max(accepted + lag, start + period)
        beats.append([[start - lag + t for t in image] for image in offsets])
    return beats


def mvu_fifo_depth(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                   output_stage="parallel", mmv=1, weight_style=None, leaf_reg=True):
    """Output buffer entries an engine needs to start a fold every SF cycles without waiting
    while ``o`` is ready.

    ``mmv = 1``: FIFO beats; a fold holds a credit for ``latency`` cycles (start to the cycle
    after its beat leaves), and folds start SF cycles apart.

    ``mmv > 1``: columns (one entry = beat ``nf`` of each of the m images). A fold takes a
    column when it starts; the column comes back in the cycle after the group's last image
    has read its beat from it. The most columns held at any fold start in the steady state
    (:func:`_columns_held`), plus the one that fold takes.
    """
    sf, nf = _ceil_div(n_in, simd), _ceil_div(n_out, pe)
    # a fold's credit is held from its start, buffer_write_lag cycles after the accept
    latency = mvu_latency(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                          output_stage, mmv, weight_style, leaf_reg) - buffer_write_lag(ram_reg, sf)
    if mmv == 1:
        return _ceil_div(latency, sf)
    # relative to the start of the group's fold 0 (one cycle after its last input beat), the
    # group's last image reads column nf at latency − 2 + (m − 1)·NF + nf; free a cycle later
    release = latency - 1 + (mmv - 1) * nf
    return 1 + _columns_held(sf, nf, release)


def psum_stage(simd, input_bits=1, levels_per_stage=1):
    """A :class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU`'s cycles from a fold's issue to
    its count ``U_t`` (the weight read's register, then the datapath)."""
    return 1 + datapath_stages(simd, input_bits, levels_per_stage)


def psum_latency(simd, input_bits=1, levels_per_stage=1):
    """A :class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU`'s cycles from a fold's issue to
    its output beat valid: the count (:func:`psum_stage`), then the result into the FIFO.
    A pass starts in the cycle its input beat is taken, so this is also the cycles from
    accepting an image's last input beat to its first output beat, the others following one
    per cycle (``NF − 1`` more to the last) when ``o`` is ready."""
    return psum_stage(simd, input_bits, levels_per_stage) + 1


def psum_credit_cycles(simd, input_bits=1, levels_per_stage=1):
    """Cycles a :class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU` fold holds its output
    credit when ``o`` is ready: from its issue to the cycle after its beat leaves."""
    return psum_latency(simd, input_bits, levels_per_stage) + 1


def psum_fifo_depth(n_in, n_out, simd, pe, input_bits=1, levels_per_stage=1, holds=False):
    """Output entries of a :class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU`: 1 when it
    ``holds`` its beat in its sums' registers, else the FIFO beats with which it issues a
    last-pass fold every cycle while ``o`` is ready. A credit is held
    ``H =`` :func:`psum_credit_cycles`; a last pass issues ``NF`` folds in a row, and the
    next image's last pass comes ``SF·NF`` cycles later. So ``min(H, NF)`` entries suffice
    when ``SF·NF ≥ H`` (fold j's credit is back before the next image's fold j), else
    ``H``."""
    if holds:
        return 1
    held = psum_credit_cycles(simd, input_bits, levels_per_stage)
    sf, nf = _ceil_div(n_in, simd), _ceil_div(n_out, pe)
    return min(held, nf) if sf * nf >= held else held


def _columns_held(sf, nf, release):
    """Most columns held when a fold starts, folds starting every ``sf`` cycles and fold
    ``nf`` of group ``g`` (started at ``g·sf·nf + nf·sf``) returning its column at
    ``g·sf·nf + release + nf``, in the steady state (earlier groups all exist)."""
    period = sf * nf
    groups = _ceil_div(release, period) + 1     # groups still holding a column
    worst = 0
    for start_fold in range(nf):
        now = groups * period + start_fold * sf
        held = 0
        for g in range(groups + 1):
            # folds f of group g started (f·sf < x) and not yet returned (f > x − release),
            # x = now − g·period: a range of f, counted without walking it
            x = now - g * period
            lo, hi = max(0, x - release + 1), min(nf - 1, _ceil_div(x, sf) - 1)
            held += max(0, hi - lo + 1)
        worst = max(worst, held)
    return worst


def converter_latency(in_lanes, out_lanes, most_slots=None):
    """Cycles a :class:`~xnorflow.hw.dataflow.convert.WidthConverter` adds: 1 per step when it
    gathers several input beats into one output beat (a register per step,
    :func:`~xnorflow.hw.dataflow.convert.gather_steps`), 0 when it splits or passes beats."""
    if out_lanes <= in_lanes:
        return 0
    return len(gather_steps(in_lanes, out_lanes, most_slots)) - 1


# ---- stream models: every handshake of a chain of blocks, with backpressure -----------------
#
# The functions above time one engine whose output is always taken. In a chain a slower block
# downstream holds the faster ones before it back (a full ring, a busy buffer half, no output
# credit), so the cycle of each beat depends on both sides of its stream. The classes below
# model a chain beat by beat: every block is a *stage model* with
#
# * ``valid(n)``: the first cycle its output beat ``n`` is valid (``o.valid`` high), and
# * ``accept(n, valid)``: the cycle it takes input beat ``n`` offered from cycle ``valid`` on,
#
# and a :class:`Handshakes` between two stages is ``accept(n, valid(n))`` of its consumer and
# producer: the cycle beat ``n`` crosses (``valid & ready``). Each is a max-plus recurrence
# over *earlier* beats of the same or of neighbouring streams (a ready that is a register,
# or that is combinational only from a ready downstream), so every value is computed on
# demand, when first asked for, in causal order: a circular request is a modelling error
# and raises. Cycles are counted from 0 in the stream's clock, as the simulator's monitors
# count them.


class OnDemand:
    """A sequence whose element ``n`` is ``element(n, values)``, computed when first asked
    for (``values`` then holds elements ``0 … n − 1``)."""

    __slots__ = ("values", "element", "_filling")

    def __init__(self, element):
        self.values, self.element, self._filling = [], element, False

    def at(self, n):
        values = self.values
        if n < len(values):
            return values[n]
        if self._filling:
            raise RuntimeError(f"cycle model: element {n} of a sequence still being computed "
                               f"depends on itself (a causality error in the model)")
        self._filling = True
        try:
            element = self.element
            for k in range(len(values), n + 1):
                values.append(element(k, values))
        finally:
            self._filling = False
        return values[n]


class Handshakes(OnDemand):
    """The stream from ``producer`` to ``consumer`` (stage models): :meth:`taken` is the
    cycle beat ``n`` is transferred, ``consumer.accept(n, producer.valid(n))``. Connecting
    sets ``producer.o`` and ``consumer.i`` to this object."""

    __slots__ = ("producer", "consumer")

    def __init__(self, producer, consumer):
        super().__init__(lambda n, _: consumer.accept(n, producer.valid(n)))
        self.producer, self.consumer = producer, consumer
        producer.o, consumer.i = self, self

    taken = OnDemand.at


def connect_chain(stages):
    """Connect consecutive stage models by :class:`Handshakes`; returns the streams."""
    return [Handshakes(a, b) for a, b in zip(stages, stages[1:])]


class SourceModel:
    """A source that offers beat ``n`` from cycle ``offered[n]`` on (all from cycle 0 when
    ``offered`` is None: a FIFO holding the whole run) and holds it until taken, after beat
    ``n − 1`` has gone; ``count`` beats at most (asking for more is a modelling error: a beat
    of an image that is not in the run)."""

    def __init__(self, offered=None, count=None):
        self.offered = offered
        self.count = len(offered) if count is None and offered is not None else count
        self.o = None

    def valid(self, n):
        if self.count is not None and n >= self.count:
            raise RuntimeError(f"cycle model: beat {n} asked of a source of {self.count}")
        first = 0 if self.offered is None else self.offered[n]
        return max(first, self.o.taken(n - 1) + 1) if n else first


class SinkModel:
    """A consumer whose ``ready`` is ``ready[t]`` in cycle ``t`` (high for ever after the
    list; always high when None): it takes beat ``n`` the first ready cycle from its valid."""

    def __init__(self, ready=None):
        self.ready, self.i = ready, None
        if ready is not None:
            self._ready_cycles = [t for t, r in enumerate(ready) if r]

    def accept(self, n, valid):
        if self.ready is None or valid >= len(self.ready):
            return valid
        cycles = self._ready_cycles
        k = _first_at_least(cycles, valid)
        return cycles[k] if k < len(cycles) else max(valid, len(self.ready))


def _first_at_least(sorted_values, value):
    """Index of the first element ``≥ value`` of an increasing list (bisect_left)."""
    lo, hi = 0, len(sorted_values)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


class RegisterSliceModel:
    """:class:`~xnorflow.hw.register_slice.RegisterSlice`: a beat taken in cycle t is
    valid from t + 1; it takes a beat when empty or while its beat leaves
    (``i.ready = ~o.valid | o.ready``)."""

    def __init__(self):
        self.i = self.o = None

    def accept(self, n, valid):
        return max(valid, self.o.taken(n - 1)) if n else valid

    def valid(self, n):
        return self.i.taken(n) + 1


class SkidSliceModel:
    """:class:`~xnorflow.hw.register_slice.RegisterSlice` with ``skid``: two registers,
    ``i.ready`` = "the second is empty". A beat is taken once the beat two ahead of it has
    left (the slice holds at most two), and is valid the cycle after it was taken or after
    the beat ahead of it left, whichever is later."""

    def __init__(self):
        self.i = self.o = None

    def accept(self, n, valid):
        return max(valid, self.o.taken(n - 2) + 1) if n >= 2 else valid

    def valid(self, n):
        taken = self.i.taken(n)
        return max(taken, self.o.taken(n - 1)) + 1 if n else taken + 1


class ConverterModel:
    """:class:`~xnorflow.hw.dataflow.convert.WidthConverter` from ``in_lanes`` to
    ``out_lanes`` lanes per beat, per image of ``image_lanes`` lanes.

    Gathering: an output beat is a register, valid the cycle after the input beat that
    completes it (the ``ratio``-th, or the image's last); an input is taken while no
    completed beat waits or while it leaves (``i.ready = ~o.valid | o.ready``). Splitting:
    combinational, output beat ``s`` of an input beat valid with it (``s = 0``) or the cycle
    after beat ``s − 1`` left; the input is taken with its last output beat (a whole ratio,
    or fewer for the image's last). Equal widths: wires (a split by one)."""

    def __init__(self, in_lanes, out_lanes, image_lanes):
        self.gather = out_lanes > in_lanes
        self.ratio = out_lanes // in_lanes if self.gather else in_lanes // out_lanes
        self.in_beats = _ceil_div(image_lanes, in_lanes)
        self.out_beats = _ceil_div(image_lanes, out_lanes)
        self.i = self.o = None

    def accept(self, n, valid):
        image, beat = divmod(n, self.in_beats)
        r = self.ratio
        if self.gather:
            # the input after one that completed an output beat waits for that beat to leave
            if beat % r == 0 and n:
                return max(valid, self.o.taken(image * self.out_beats + beat // r - 1))
            return valid
        last = min(beat * r + r - 1, self.out_beats - 1)
        return self.o.taken(image * self.out_beats + last)

    def valid(self, n):
        image, beat = divmod(n, self.out_beats)
        r = self.ratio
        if self.gather:
            completing = min(beat * r + r - 1, self.in_beats - 1)
            return self.i.taken(image * self.in_beats + completing) + 1
        source, part = divmod(beat, r)
        if part == 0:
            return self.i.producer.valid(image * self.in_beats + source)
        return self.o.taken(n - 1) + 1


class MvuModel:
    """:class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit` of ``SF`` synapse and ``NF``
    neuron folds, ``mmv`` images per group, whose first output beat of a group is valid
    ``latency`` cycles (:func:`mvu_latency`) after its last input beat when nothing waits,
    with ``depth`` output entries (:func:`mvu_fifo_depth`). With backpressure
    (``hw/dataflow/mvu.py``, ``_control``):

    * **input**: a beat is taken whenever the buffer half its group goes to is free: the
      group two before it has ended its last fold (the half is free the cycle after; with a
      write lag, :func:`buffer_write_lag`, from its last fold's last cycle);
    * **fold f** starts (``go`` with ``sf = 0``) ``SF`` cycles after fold f − 1 started, not
      before ``1 + write_lag`` cycles after its group's last input beat (fold 0; the
      buffer's write lag, :func:`buffer_write_lag`) and only with a credit:
      the output entry of fold ``f − depth`` released in an earlier cycle;
    * **mmv = 1**: fold f's beat enters the output FIFO ``latency − 2`` cycles after it
      starts, valid the next cycle (behind the beat before it); its entry is released when
      it leaves;
    * **mmv > 1**: the group's last column enters the reorder buffer ``latency − (NF −
      1)·SF − 3`` cycles after its fold started; the buffer loads a beat (valid the cycle
      after) once the group is in, one per cycle while ``o`` takes them; a column is
      released when the group's last image loads its beat;
    * **words** per input beat (``in_words``, mmv = 1): the beats arrive as that many words
      each, and a group's last word counts as its last beat.
    """

    def __init__(self, synapse_folds, neuron_folds, latency, depth, mmv=1, write_lag=0,
                 words=1):
        # from here on `latency` counts from the cycle before the group's first fold starts
        # (the accept of its last beat when the buffer is written in the same cycle)
        latency -= write_lag
        self.sf, self.nf, self.mmv, self.latency, self.depth = \
            synapse_folds, neuron_folds, mmv, latency, depth
        self.write_lag, self.words = write_lag, words
        # fold start → its column written into the reorder buffer (mmv > 1)
        self.column_lag = latency - (neuron_folds - 1) * synapse_folds - 3
        self.starts = OnDemand(self._start)
        self.loads = OnDemand(self._load)
        self.i = self.o = None

    def accept(self, n, valid):
        per_group = self.mmv * self.sf * self.words
        # a group's first beat waits for its half; the rest of the group finds it still free
        if n % per_group == 0 and n >= 2 * per_group:
            group = n // per_group - 2
            last_fold_end = self.starts.at(group * self.nf + self.nf - 1) + self.sf - 1
            return max(valid, last_fold_end + 1 - self.write_lag)
        return valid

    def _start(self, f, starts):
        sf, nf = self.sf, self.nf
        t = starts[f - 1] + sf if f else 0
        if f % nf == 0:
            last_beat = (f // nf + 1) * self.mmv * sf * self.words - 1
            t = max(t, self.i.taken(last_beat) + 1 + self.write_lag)
        if f >= self.depth:
            t = max(t, self._released(f - self.depth) + 1)
        return t

    def _released(self, column):
        if self.mmv == 1:
            return self.o.taken(column)
        group, nf = divmod(column, self.nf)
        return self.loads.at((group * self.mmv + self.mmv - 1) * self.nf + nf)

    def _load(self, n, loads):
        t = self.o.taken(n - 1) if n else 0
        group, beat = divmod(n, self.mmv * self.nf)
        if beat == 0:
            written = self.starts.at(group * self.nf + self.nf - 1) + self.column_lag
            t = max(t, written + 1)
        return t

    def valid(self, n):
        if self.mmv > 1:
            return self.loads.at(n) + 1
        t = self.starts.at(n) + self.latency - 1
        return max(t, self.o.taken(n - 1) + 1) if n else t


class PsumMvuModel:
    """:class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU` of ``SF`` passes (input beats) and
    ``NF`` folds per pass, a fold's beat valid ``latency`` (:func:`psum_latency`) cycles after
    its issue, ``depth`` output entries (:func:`psum_fifo_depth`). With backpressure
    (``hw/dataflow/psum_mvu.py``):

    * **input beat n** (pass n) is taken once valid, from the cycle after the previous pass's
      last fold issued; a last pass's beat also needs an output credit for its first fold;
    * **fold k** of a pass issues the cycle its beat is taken (k = 0) or the cycle after fold
      k − 1, in a last pass not before the cycle after output beat ``f − depth`` left
      (``f`` the fold's output beat);
    * **output beat f** is valid ``latency`` cycles after its fold issued, behind beat f − 1;
    * **held output** (``holds``: ``NF = 1``, one entry, the sums' registers are the beat): a
      first pass's beat needs the credit too (the previous image's beat gone).
    """

    def __init__(self, synapse_folds, neuron_folds, latency, depth, holds=False):
        self.sf, self.nf, self.latency, self.depth = \
            synapse_folds, neuron_folds, latency, depth
        self.holds = holds
        self.issues = OnDemand(self._issue)
        self.i = self.o = None

    def _credit(self, beat):
        """The earliest cycle output beat ``beat`` may issue for want of an entry."""
        return self.o.taken(beat - self.depth) + 1 if beat >= self.depth else 0

    def _output_beat(self, fold):
        """The output beat of fold index ``fold`` (``pass·NF + k``) if its pass is a last one."""
        p, k = divmod(fold, self.nf)
        image, s = divmod(p, self.sf)
        return image * self.nf + k if s == self.sf - 1 else None

    def accept(self, n, valid):
        t = valid
        if n:
            t = max(t, self.issues.at(n * self.nf - 1) + 1)
        beat = self._output_beat(n * self.nf)
        if beat is None and self.holds and n % self.sf == 0:
            beat = n // self.sf                 # a first pass restarts the held beat's sums
        return t if beat is None else max(t, self._credit(beat))

    def _issue(self, fold, issues):
        p, k = divmod(fold, self.nf)
        if k == 0:
            return self.i.taken(p)
        t = issues[fold - 1] + 1
        beat = self._output_beat(fold)
        return t if beat is None else max(t, self._credit(beat))

    def valid(self, n):
        image, k = divmod(n, self.nf)
        t = self.issues.at((image * self.sf + self.sf - 1) * self.nf + k) + self.latency
        return max(t, self.o.taken(n - 1) + 1) if n else t
