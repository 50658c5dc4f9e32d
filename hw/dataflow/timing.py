"""Cycle model of the dataflow engines: pure functions of the shape, no Amaranth.

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

      latency = 1 (start) + (SF − 1) (rest of fold 0) + 1 (RAM read) + ram_reg
                + popcount_stages(S, L) + plane_stages(k, L) (datapath)
                + 3 (accumulate, compare/offset, output FIFO)
                [+ m·P + ram_reg with the serial output stage: the walk over the m·P sums]
                [+ (NF − 1)·SF + 1 with m > 1: the group's last fold, the buffer's read]

  with ``L = levels_per_stage``, the adder levels between two pipeline registers.
* **Beat times** :func:`mvu_output_offsets`, from the same cycle, ``o`` never stalling:

  - ``m = 1``: beat ``nf`` ``latency + nf·SF`` (each beat leaves as its fold ends);
  - ``m > 1``: image ``j``'s beat ``nf`` ``latency + j·NF + nf``: the group leaves in one
    burst of ``m·NF`` consecutive beats once its last fold has ended (the folds compute beat
    ``nf`` of all m images at once, the stream wants image 0's beats first; a burst keeps
    every group's schedule the same, since ``m·NF ≤ SF·NF`` cycles never overlap the next
    group's burst).

  :func:`mvu_last_output_latency` is the last of them.
* **A stream of groups** :func:`mvu_output_cycles`: group ``g``'s first fold starts at
  ``s_g = max(a_g + 1, s_{g−1} + SF·NF)`` (``a_g`` the cycle its last input beat is
  accepted: the reader waits for the whole group, and for the previous group's last fold),
  and its beats follow at ``s_g − 1 + mvu_output_offsets``; exact whenever ``o`` never
  stalls (the default buffer depth then never delays a fold).
"""
__all__ = ["adder_tree_stages", "popcount_stages", "plane_stages", "datapath_stages",
           "mvu_cycles", "mvu_latency", "mvu_output_offsets", "mvu_last_output_latency",
           "mvu_output_cycles", "mvu_fifo_depth", "converter_latency"]


def _ceil_div(a, b):
    return -(-a // b)


def adder_tree_stages(terms, levels_per_stage=1):
    """Register stages of a balanced adder tree over ``terms`` inputs that registers after
    every ``levels_per_stage``-th adder level and after the last."""
    levels = (terms - 1).bit_length()   # ⌈log2 terms⌉
    return _ceil_div(levels, levels_per_stage)


def popcount_stages(simd, levels_per_stage=1):
    """Register stages of an S-bit XNOR-popcount: a registered first level (one LUT4 per
    output bit sums two XNOR pairs into a 2-bit count) and an adder tree over ⌈S/2⌉ counts."""
    return 1 + adder_tree_stages(_ceil_div(simd, 2), levels_per_stage)


def plane_stages(input_bits, levels_per_stage=1):
    """Register stages that add the k plane counts, plane b weighted by 2^b."""
    return adder_tree_stages(input_bits, levels_per_stage)


def datapath_stages(simd, input_bits=1, levels_per_stage=1):
    """Cycles from the (registered) weight and input words to the per-cycle count U_t."""
    return (popcount_stages(simd, levels_per_stage)
            + plane_stages(input_bits, levels_per_stage))


def mvu_cycles(n_in, n_out, simd, pe, input_bits=1, mmv=1):
    """Initiation interval of one engine: ⌈N/S⌉·⌈M/P⌉ cycles per group of ``mmv`` images
    (per image when ``mmv`` = 1), for any k."""
    del input_bits, mmv  # all planes are read in parallel; the m images share a weight read
    return _ceil_div(n_in, simd) * _ceil_div(n_out, pe)


def mvu_latency(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                output_stage="parallel", mmv=1):
    """Cycles from accepting a group's last input beat to its first output beat valid."""
    sf, nf = _ceil_div(n_in, simd), _ceil_div(n_out, pe)
    latency = sf + 4 + int(ram_reg) + datapath_stages(simd, input_bits, levels_per_stage)
    if output_stage == "serial":
        latency += mmv * pe + int(ram_reg)   # the walk over the m·P sums, the word's edge
    if mmv > 1:
        latency += (nf - 1) * sf + 1         # every fold of the group, the buffer's read
    return latency


def mvu_output_offsets(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                       output_stage="parallel", mmv=1):
    """Cycle of every output beat of a group, counted from the cycle its last input beat is
    accepted, for an idle engine whose ``o`` never stalls: ``offsets[j][nf]`` for image ``j``
    of the group (``mmv`` lists of ``NF``)."""
    sf, nf = _ceil_div(n_in, simd), _ceil_div(n_out, pe)
    first = mvu_latency(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                        output_stage, mmv)
    if mmv == 1:
        return [[first + b * sf for b in range(nf)]]
    return [[first + j * nf + b for b in range(nf)] for j in range(mmv)]


def mvu_last_output_latency(n_in, n_out, simd, pe, input_bits=1, ram_reg=True,
                            levels_per_stage=1, output_stage="parallel", mmv=1):
    """Cycles from accepting a group's last input beat to its last output beat valid."""
    return mvu_output_offsets(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                              output_stage, mmv)[-1][-1]


def mvu_output_cycles(last_inputs, n_in, n_out, simd, pe, input_bits=1, ram_reg=True,
                      levels_per_stage=1, output_stage="parallel", mmv=1):
    """Cycle of every output beat, ``[group][image][nf]``, of groups whose last input beats
    are accepted in cycles ``last_inputs`` (increasing), for an engine idle before the first
    and whose ``o`` never stalls."""
    offsets = mvu_output_offsets(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                                 output_stage, mmv)
    period = mvu_cycles(n_in, n_out, simd, pe, input_bits, mmv)
    beats, start = [], None
    for accepted in last_inputs:
        start = accepted + 1 if start is None else max(accepted + 1, start + period)
        beats.append([[start - 1 + t for t in image] for image in offsets])
    return beats


def mvu_fifo_depth(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                   output_stage="parallel", mmv=1):
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
    latency = mvu_latency(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                          output_stage, mmv)
    if mmv == 1:
        return _ceil_div(latency, sf)
    # relative to the start of the group's fold 0 (one cycle after its last input beat), the
    # group's last image reads column nf at latency − 2 + (m − 1)·NF + nf; free a cycle later
    release = latency - 1 + (mmv - 1) * nf
    return 1 + _columns_held(sf, nf, release)


def _columns_held(sf, nf, release):
    """Most columns held when a fold starts, folds starting every ``sf`` cycles and fold
    ``nf`` of group ``g`` (started at ``g·sf·nf + nf·sf``) returning its column at
    ``g·sf·nf + release + nf``, in the steady state (earlier groups all exist)."""
    period = sf * nf
    groups = _ceil_div(release, period) + 1     # groups still holding a column
    worst = 0
    for start_fold in range(nf):
        now = groups * period + start_fold * sf
        held = sum(1 for g in range(groups + 1) for f in range(nf)
                   if g * period + f * sf < now < g * period + release + f)
        worst = max(worst, held)
    return worst


def converter_latency(in_lanes, out_lanes):
    """Cycles a :class:`~xnorflow.hw.dataflow.convert.WidthConverter` adds: 1 when it gathers several
    input beats into one output beat (registered), 0 when it splits or passes beats."""
    return 1 if out_lanes > in_lanes else 0
