"""Cycle model of one run of the dataflow core (docs/dataflow.md, "A run, and the cycle model");
pure Python.

A run of ``B`` images written into the input FIFO before START:

* **latency** (REG_LATENCY): START to the first image's last integer entering the output
  FIFO, ``completions[0] + 1`` (the counter counts the cycles of the run);
* **interval** (REG_INTERVAL): between the last two images' completions (a run of one image
  reports its latency there);
* **total** (REG_TOTAL_CYCLES): ``completions[-1] + 1``;
* **by_engine** (ENGINE_BUSY_BASE): cycles each engine read a weight word, ``B·SF·NF``
  (``B/m·SF·NF`` for an engine of ``mmv = m``; ``B·H·W/m·SF·NF`` for a conv engine).

:func:`completions` gives each image's cycle by **the stream model**
(:func:`stream_completions`): every beat of every stream of the core, through the chain of
:func:`core_chain`: the gate (one input-FIFO word per cycle from the run's first cycle) →
[register slice, ``ram_reg``] → width converter → per engine a matrix-vector unit (dense) or a
window unit → converter → MVU (each output pixel one of its images) → [pool] (conv) →
[register slice behind a dense MMV engine, ``ram_reg``] → converters between engines → one
integer per cycle into the output FIFO. Each block is a stage model
(:mod:`xnorflow.hw.dataflow.timing`, "stream models";
:class:`~xnorflow.hw.dataflow.window.WindowModel`, :class:`~xnorflow.hw.dataflow.pool.PoolModel`):
every handshake is a max-plus recurrence over earlier handshakes on both sides of its stream,
so a slower block holds the faster ones before it back as the hardware does (a full window ring
stops its input, a busy buffer half the MVU's, a missing output credit delays a fold, a pool's
output register its window-completing beats). Once the run repeats itself (every stream's beats
of the last images those of ``q`` images before plus the same ``Δ``, over more images than any
recurrence reaches back: :meth:`CoreChain.repeats`), the other images follow the pattern, so a
run of hundreds of 28×28 conv images takes a fraction of a second.

For dense engines without MMV whose output beats are taken as soon as they are valid (no
splitting converter behind them) the model reduces to the closed form ``latency =
first_beat_in + Σ_e last_output_latency(e) + Σ_e hand_over(e → e + 1) + hand_over(last engine
→ 1)`` (:func:`pipeline_latency`) and ``interval = config.interval``; behind a splitting
converter an engine's credits come back late and it runs slower than that (an earlier
image-by-image model missed it: tests/test_dataflow_core.py keeps such folds).

Both assume the output FIFO never fills (``B ≤ out_images``, or the host reading during the
run). ``tests/test_dataflow_core.py`` (dense) and ``tests/test_dataflow_conv.py`` (conv, each
block in turn the bottleneck) compare every counter of the simulated core with this model.
"""
from fractions import Fraction

from . import timing
from .convert import gather_steps
from .pool import PoolModel
from .timing import (ConverterModel, MvuModel, PsumMvuModel, SinkModel, SkidSliceModel,
                     SourceModel, connect_chain)
from .window import WindowModel, default_rows

__all__ = ["run_cycles", "completions", "steady_interval", "stream_completions", "core_chain",
           "CoreChain", "pipeline_latency", "hand_over", "first_beat_in"]


def hand_over(producer, lanes, most_slots=None):
    """Cycles from the producer engine's last output beat of an image to the last beat of it
    leaving a width converter that makes ``lanes``-lane beats (the next engine's S, or 1 into
    the output FIFO), when nothing downstream waits: 0 through wires, 1 per step of a
    gathering converter (``most_slots``: the config's ``gather_slots``), and for a splitting
    one the time its one beat per cycle falls behind the producer's beats, which come ``SF``
    cycles apart (beat ``i`` splits into ``n_i``).
    Dense engines without MMV (the closed form)."""
    if producer.pe <= lanes:
        return timing.converter_latency(producer.pe, lanes, most_slots)
    sf, nf = producer.shape.synapse_folds, producer.shape.neuron_folds
    beats = [min(producer.pe // lanes, -(-(producer.n_out - i * producer.pe) // lanes))
             for i in range(nf)]
    return max((i - (nf - 1)) * sf + sum(beats[i:]) - 1 for i in range(nf))


def first_beat_in(config):
    """Cycles from START to the cycle after the first engine takes an image's last input beat:
    the gate passes one input-FIFO word per cycle, through the register slice when
    ``ram_reg`` (one cycle), which the converter gathers (one register) or splits (one beat
    per cycle) into the engine's S-element beats, or which the engine writes into its
    buffer itself (``config.first_in_words``)."""
    first, slice_ = config.engines[0], int(config.ram_reg)
    if config.first_in_words > 1:           # the words go straight into its buffer
        return config.in_words
    if first.in_lanes > config.in_lanes:
        return config.in_words + 1 + slice_
    return first.in_beats + slice_


def pipeline_latency(config):
    """Cycles from START to the first image's last result entering the output FIFO: the
    closed form for output-first dense engines without MMV (:func:`completions` is exact for
    all)."""
    engines = config.engines
    if any(e.order == "input" for e in engines):
        raise ValueError("pipeline_latency: the closed form is for output-first engines; an "
                         "input-first engine overlaps the one before it (use completions)")
    total = first_beat_in(config)
    for e in engines:
        total += timing.mvu_last_output_latency(**config.timing_args(e))
    for a, b in zip(engines, engines[1:]):
        total += hand_over(a, b.simd, config.gather_slots)
    return total + hand_over(engines[-1], 1)


def run_cycles(config, batch):
    """``{"total", "latency", "interval", "by_engine"}`` of a run of ``batch`` images (a
    multiple of ``config.group``): :func:`completions` gives each image's cycle."""
    done = completions(config, batch)
    latency = done[0] + 1
    return {"total": done[-1] + 1, "latency": latency,
            "interval": done[-1] - done[-2] if batch > 1 else latency,
            "by_engine": [batch // e.images_per_group * e.busy_cycles
                          for e in config.engines]}


def completions(config, batch):
    """The cycle (from START, counted from 0) in which each image's last integer enters the
    output FIFO, for a run of ``batch`` images (whole groups of the MMV engines), by the
    stream model (module docstring)."""
    return stream_completions(config, batch)


def steady_interval(config):
    """Cycles per image of an endless stream: the period the stream model settles into, over
    its images (a float when a group's cycles do not divide by its images). The closed form
    :attr:`DataflowConfig.interval` (the slowest stage alone) is a lower bound: an engine
    whose credits come back late (a splitting converter behind it) runs slower."""
    batch = max(64, 8 * config.group) // config.group * config.group
    done = stream_completions(config, batch)
    span = 4 * config.group
    cycles = done[-1] - done[-1 - span]
    return cycles // span if cycles % span == 0 else cycles / span


def stream_completions(config, batch, extrapolate=True):
    """:func:`completions` by the stream model (:func:`core_chain`), for any config; with
    ``extrapolate``, the images after the run has settled into a repeating pattern follow
    it (:meth:`CoreChain.repeats`) rather than being computed beat by beat."""
    if batch < 1 or batch % config.group:
        raise ValueError(f"a run is whole groups of {config.group} images, got {batch}")
    chain = core_chain(config, batch)
    block = config.group
    done = []
    for first in range(0, batch, block):
        done += [chain.completion(i) for i in range(first, first + block)]
        period = chain.repeats(len(done) // block - 1) if extrapolate else None
        if period is not None:
            images, delta = period
            for i in range(len(done), batch):
                done.append(done[i - images] + delta)
            break
    return done


class CoreChain:
    """The stage models of a core's datapath for one run, connected (:func:`core_chain`).

    ``sequences``: every sequence of the model (each stream's handshakes, the window units'
    issues, the MVUs' fold starts and buffer loads) with its elements per image, for
    :meth:`repeats`; ``lookback``: images any recurrence reaches back, at most."""

    def __init__(self, config, stages, sequences, lookback):
        self.config, self.stages, self.sequences, self.lookback = \
            config, stages, sequences, lookback
        self.out = stages[-1].i
        self.out_words = config.out_words

    def completion(self, image):
        """The cycle image ``image``'s last integer enters the output FIFO."""
        return self.out.taken((image + 1) * self.out_words - 1)

    def repeats(self, block):
        """``(q·G, Δ)`` when the model repeats itself with a period of ``q`` blocks of
        ``G = config.group`` images: in every sequence, each element of the last ``lookback``
        images up to block ``block`` (inclusive) is the element ``q`` blocks before plus
        ``Δ``. Every recurrence reads elements at most ``lookback`` images back and every
        block of G images has the same recurrences, so the pattern then holds for every
        later image (induction). None when it does not (yet) repeat."""
        group = self.config.group
        span = -(-self.lookback // group) + 1          # blocks compared
        done = [self.completion(i) for i in range((block + 1) * group)]
        for q in range(1, _MAX_PERIOD_BLOCKS + 1):
            first = block - span + 1
            if first - q < 1:                           # leave the first block's start out
                break
            lo, hi = first * group, (block + 1) * group
            delta = done[lo] - done[lo - q * group]
            if delta <= 0 or any(done[i] - done[i - q * group] != delta for i in range(lo, hi)):
                continue
            if all(self._shifted(seq, per_image * group, first, block, q, delta)
                   for seq, per_image in self.sequences):
                return q * group, delta
        return None

    @staticmethod
    def _shifted(seq, per_block, first, last, q, delta):
        """Elements of blocks ``first … last`` of ``seq`` equal those ``q`` blocks before
        plus ``delta`` (computing them if needed)."""
        per_block = int(per_block)
        if per_block == 0:
            return True
        lo, hi = first * per_block, (last + 1) * per_block
        seq.at(hi - 1)
        values, back = seq.values, q * per_block
        return values[lo:hi] == [v + delta for v in values[lo - back:hi - back]]


#: Longest period looked for, in blocks of ``config.group`` images (a run's steady state
#: repeats every image, or every group behind an MMV engine, in every fold seen so far).
_MAX_PERIOD_BLOCKS = 16


def core_chain(config, batch):
    """The stage models of ``config``'s core for a run of ``batch`` images, connected
    (:class:`CoreChain`): gate → [slice] → converter → engines and the converters between
    them → converter → output FIFO (always ready: the run fits in it). Equal widths are
    wires, no stage; a conv engine is its window unit → [gather] → MVU → [pool]
    (hw/dataflow/conv_engine.py), the MVU's images its output pixels."""
    chain = _ChainBuilder(SourceModel(count=batch * config.in_words), config.in_words)
    if config.ram_reg:
        chain.add(SkidSliceModel(), config.in_words)
    first = config.engines[0]
    if config.first_in_words == 1:           # else the words go straight into its buffer
        chain.convert(config.in_lanes, first.in_lanes, first.in_features)
    for e, engine in enumerate(config.engines):
        if engine.is_conv:
            _conv_stages(chain, config, engine)
        else:
            chain.mvu(config, engine, words=config.first_in_words if e == 0 else 1)
            if config.output_slice(engine):
                for _ in range(timing.OUTPUT_SLICES):
                    chain.add(SkidSliceModel(), engine.shape.neuron_folds)
        if e + 1 < len(config.engines):
            chain.convert(engine.pe, config.engines[e + 1].in_lanes, engine.out_features,
                          most_slots=config.gather_slots)
    chain.convert(config.engines[-1].pe, 1, config.out_words)
    chain.add(SinkModel(), 0)
    streams = connect_chain(chain.stages)
    sequences = chain.sequences + [(s, Fraction(n)) for s, n in zip(streams, chain.beats)]
    return CoreChain(config, chain.stages, sequences, chain.lookback + 1)


class _ChainBuilder:
    """Stage models in order, with each one's output beats per image, the model's other
    sequences (elements per image) and the images its recurrences reach back."""

    def __init__(self, source, beats):
        self.stages, self.beats, self.sequences, self.lookback = [source], [beats], [], 2

    def add(self, model, beats):
        self.stages.append(model)
        self.beats.append(beats)

    def convert(self, in_lanes, out_lanes, image_lanes, pixels=1, most_slots=None):
        """A width converter (none for equal widths: wires) regrouping ``pixels`` groups of
        ``image_lanes`` lanes per image (a conv engine's converter regroups every window),
        a stage per gathering step (``most_slots``, :func:`~xnorflow.hw.dataflow.convert.gather_steps`)."""
        if in_lanes == out_lanes:
            return
        steps = gather_steps(in_lanes, out_lanes, most_slots)
        for a, b in zip(steps, steps[1:]):
            converter = ConverterModel(a, b, image_lanes)
            self.add(converter, converter.out_beats * pixels)

    def mvu(self, config, engine, pixels=1, words=1):
        """An engine's matrix-vector unit (``pixels`` MVU images per image; ``words`` per
        input beat)."""
        if engine.order == "input":
            return self.psum_mvu(config, engine)
        args = config.timing_args(engine)
        sf, nf, m = engine.shape.synapse_folds, engine.shape.neuron_folds, engine.mmv
        depth = timing.mvu_fifo_depth(**args)
        mvu = MvuModel(sf, nf, timing.mvu_latency(**args), depth, m,
                       timing.buffer_write_lag(config.ram_reg, sf), words)
        self.add(mvu, nf * pixels)
        self.sequences += [(mvu.starts, Fraction(nf * pixels, m)),
                           (mvu.loads, Fraction(nf * pixels if m > 1 else 0))]
        # a group's input waits for the group two before; a fold for the output entry
        # `depth` folds (columns) before, released when the group's last image reads it
        groups_back = max(2, -(-(depth + nf) // nf))
        self.lookback = max(self.lookback, -(-(groups_back + 1) * m // pixels) + 1)

    def psum_mvu(self, config, engine):
        """An input-first engine (:class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU`)."""
        sf, nf = engine.shape.synapse_folds, engine.shape.neuron_folds
        holds = config.holds_output(engine)
        depth = timing.psum_fifo_depth(engine.n_in, engine.n_out, engine.simd, engine.pe,
                                       engine.input_bits, config.levels, holds)
        latency = timing.psum_latency(engine.simd, engine.input_bits, config.levels)
        mvu = PsumMvuModel(sf, nf, latency, depth, holds)
        self.add(mvu, nf)
        self.sequences.append((mvu.issues, Fraction(sf * nf)))
        # a pass waits for the previous one; a last-pass fold for the beat `depth` before
        self.lookback = max(self.lookback, -(-depth // nf) + 2)


def _conv_stages(chain, config, engine):
    """[Input slice] → window unit → [window slice] → [gather, or the beats as the MVU's
    words] → MVU (one image per output pixel) → [its output slices] → [pool slice] → [pool] → [end slice]."""
    h, w, c = engine.image
    pixels = engine.pixels
    if config.input_slice(engine):
        chain.add(SkidSliceModel(), engine.in_beats)
    window = WindowModel(h, w, c, engine.in_lanes, ram_reg=config.ram_reg)
    chain.add(window, engine.window_beats * pixels)
    chain.sequences.append((window.issues, Fraction(engine.window_beats * pixels)))
    # an input row waits for the output row that frees the ring slot `rows` rows before
    chain.lookback = max(chain.lookback, -(-default_rows(h) // h) + 2)
    if config.window_slice(engine):
        chain.add(SkidSliceModel(), engine.window_beats * pixels)
    words = config.conv_in_words(engine)
    if words == 1:
        chain.convert(engine.in_lanes, engine.simd, engine.n_in, pixels)
    chain.mvu(config, engine, pixels, words=words)
    beats = engine.shape.neuron_folds * pixels
    if config.output_slice(engine):
        for _ in range(timing.OUTPUT_SLICES):
            chain.add(SkidSliceModel(), beats)
    if config.pool_slice(engine):
        chain.add(SkidSliceModel(), beats)
    if engine.pool:
        pool = PoolModel(h, w, engine.n_out, engine.pe)
        chain.add(pool, pool.out_beats)
        beats = pool.out_beats
    if config.end_slice(engine):
        chain.add(SkidSliceModel(), beats)
