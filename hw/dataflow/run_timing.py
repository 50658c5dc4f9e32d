"""Cycle model of one run of the dataflow core (docs/dataflow.md, "Timing"); pure Python.

A run of ``B`` images written into the input FIFO before START:

* **latency** (REG_LATENCY): START to the first image's last integer entering the output
  FIFO. The gate passes one input-FIFO word per cycle from the first cycle of the run, and a
  converter turns the words into the first engine's beats (:func:`first_beat_in`); each
  engine then delivers
  its last output beat :func:`~xnorflow.hw.dataflow.timing.mvu_last_output_latency` cycles after its
  last input beat, and the next engine has its last input beat :func:`hand_over` cycles
  later (0 through wires, 1 through a gathering width converter, more where a splitting
  converter's one beat per cycle falls behind)::

      latency = first_beat_in + Σ_e last_output_latency(e) + Σ_e hand_over(e → e + 1)
                + hand_over(last engine → one integer per output-FIFO word)

* **interval** (REG_INTERVAL): between the last two images' completions, the slowest
  engine's ``SF·NF`` (:attr:`DataflowConfig.interval`); a run of one image reports its
  latency there.
* **total** (REG_TOTAL_CYCLES): ``latency + (B − 1)·interval``.
* **by_engine** (ENGINE_BUSY_BASE): cycles each engine read a weight word, ``B·SF·NF``
  (``B/m·SF·NF`` for an engine of ``mmv = m``; ``B·H·W·SF·NF`` for a conv engine).

With MMV engines the images do not leave evenly: an MMV engine starts a group when its last
image is in and makes the group's beats back to back, so :func:`run_cycles` follows every
image through the chain (:func:`completions`); the closed form above is its special case.

Exact for every run the core makes when the output FIFO does not fill up (``B ≤
out_images`` or the host reading during the run): ``tests/test_dataflow_core.py`` compares
every counter with this model over folds where each engine in turn is the slowest.
"""
from . import timing

__all__ = ["run_cycles", "completions", "pipeline_latency", "hand_over", "handed_over",
           "first_beat_in"]


def hand_over(producer, lanes):
    """Cycles from the producer engine's last output beat of an image to the last beat of it
    leaving a width converter that makes ``lanes``-lane beats (the next engine's S, or 1 into
    the output FIFO), when nothing downstream waits: 0 through wires, 1 through a gathering
    converter, and for a splitting one the time its one beat per cycle falls behind the
    producer's beats, which come ``SF`` cycles apart (beat ``i`` splits into ``n_i``)."""
    if producer.pe <= lanes:
        return timing.converter_latency(producer.pe, lanes)
    sf, nf = producer.shape.synapse_folds, producer.shape.neuron_folds
    beats = [min(producer.pe // lanes, -(-(producer.n_out - i * producer.pe) // lanes))
             for i in range(nf)]
    return max((i - (nf - 1)) * sf + sum(beats[i:]) - 1 for i in range(nf))


def first_beat_in(config):
    """Cycles from START to the cycle after the first engine takes an image's last input beat:
    the gate passes one input-FIFO word per cycle, through the register slice when
    ``ram_reg`` (one cycle), which the converter gathers (one register) or splits (one beat
    per cycle) into the engine's S-element beats."""
    first, slice_ = config.engines[0], int(config.ram_reg)
    if first.in_lanes > config.in_lanes:
        return config.in_words + 1 + slice_
    return first.in_beats + slice_


def pipeline_latency(config):
    """Cycles from START to the first image's last result entering the output FIFO."""
    engines = config.engines
    total = first_beat_in(config)
    for e in engines:
        total += timing.mvu_last_output_latency(**config.timing_args(e))
    for a, b in zip(engines, engines[1:]):
        total += hand_over(a, b.simd)
    return total + hand_over(engines[-1], 1)


def run_cycles(config, batch):
    """``{"total", "latency", "interval", "by_engine"}`` of a run of ``batch`` images (a
    multiple of ``config.group``): :func:`completions` gives each image's cycle."""
    done = completions(config, batch)
    latency = done[0] + 1
    return {"total": done[-1] + 1, "latency": latency,
            "interval": done[-1] - done[-2] if batch > 1 else latency,
            "by_engine": [batch // e.mmv * e.busy_cycles for e in config.engines]}


def completions(config, batch):
    """The cycle (from START, counted from 0) in which each image's last integer enters the
    output FIFO, image by image through the chain: the gate's words, each engine's groups
    (:func:`~xnorflow.hw.dataflow.timing.mvu_output_cycles`: a group starts when its last
    input beat is in and the engine has finished the group before), the converters between
    them (:func:`handed_over`). With every ``mmv = 1`` this is ``pipeline_latency − 1 +
    i·interval`` for image ``i`` (tests/test_dataflow_timing.py checks both forms agree)."""
    accepted = [first_beat_in(config) - 1 + i * config.gate_cycles for i in range(batch)]
    engines = config.engines
    for e, engine in enumerate(engines):
        m = engine.mmv
        groups = timing.mvu_output_cycles(
            [accepted[g * m + m - 1] for g in range(batch // m)], **config.timing_args(engine))
        beats = [image for group in groups for image in group]
        lanes = engines[e + 1].simd if e + 1 < len(engines) else 1
        accepted = handed_over(engine, lanes, beats)
    return accepted


def handed_over(producer, lanes, beats):
    """The cycle each image's last ``lanes``-lane beat leaves the width converter behind
    ``producer``, given the cycles of the producer's output beats (``beats[i][nf]``): a
    gathering converter adds its register, a splitting one passes one beat per cycle, so its
    queue carries over from beat to beat and image to image."""
    if producer.pe <= lanes:
        delay = timing.converter_latency(producer.pe, lanes)
        return [image[-1] + delay for image in beats]
    nf = producer.shape.neuron_folds
    split = [min(producer.pe // lanes, -(-(producer.n_out - i * producer.pe) // lanes))
             for i in range(nf)]
    free, out = None, []
    for image in beats:
        for t, n in zip(image, split):
            start = t if free is None else max(t, free + 1)
            free = start + n - 1
        out.append(free)
    return out
