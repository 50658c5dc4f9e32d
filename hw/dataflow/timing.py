"""Cycle model of the dataflow engines: pure functions of the shape, no Amaranth.

The gateware builds its pipelines with the same stage counts (:mod:`hw.dataflow.mvu` asserts
that its trees have exactly :func:`popcount_stages` and :func:`plane_stages` registers), and
``hw/dataflow/test_mvu.py`` measures both numbers below in simulation and requires equality.

Definitions (one engine, ``SF = ⌈N/S⌉``, ``NF = ⌈M/P⌉``):

* **Initiation interval** :func:`mvu_cycles`: with input available and the output ready, the
  first output beats of consecutive images are exactly ``SF·NF`` cycles apart. k-bit layers
  read all k bit-planes in the same cycle (the weight word is reused for every plane), so
  ``input_bits`` does not appear.
* **Latency** :func:`mvu_latency`: from the cycle in which an image's *last* input beat is
  accepted (``i.valid & i.ready``) to the first cycle in which its *first* output beat is valid
  on ``o``, for an engine that is idle with ``o`` ready::

      latency = 1 (start) + (SF − 1) (rest of fold 0) + 1 (RAM read) + ram_reg
                + popcount_stages(S, L) + plane_stages(k, L) (datapath)
                + 3 (accumulate, compare/offset, output FIFO)
                [+ P + ram_reg with the serial output stage: the walk over the P sums]

  with ``L = levels_per_stage``, the adder levels between two pipeline registers.

  Output beat ``nf`` follows ``nf·SF`` cycles after the first (:func:`mvu_last_output_latency`
  for the last one) when ``o`` does not stall.
"""
__all__ = ["adder_tree_stages", "popcount_stages", "plane_stages", "datapath_stages",
           "mvu_cycles", "mvu_latency", "mvu_last_output_latency", "mvu_fifo_depth",
           "converter_latency"]


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


def mvu_cycles(n_in, n_out, simd, pe, input_bits=1):
    """Initiation interval of one engine: ⌈N/S⌉·⌈M/P⌉ cycles per image (any k)."""
    del input_bits  # all planes are read in parallel
    return _ceil_div(n_in, simd) * _ceil_div(n_out, pe)


def mvu_latency(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                output_stage="parallel"):
    """Cycles from accepting an image's last input beat to its first output beat valid."""
    del n_out
    sf = _ceil_div(n_in, simd)
    latency = sf + 4 + int(ram_reg) + datapath_stages(simd, input_bits, levels_per_stage)
    if output_stage == "serial":
        latency += pe + int(ram_reg)     # the walk over the P sums, the word's edge register
    return latency


def mvu_last_output_latency(n_in, n_out, simd, pe, input_bits=1, ram_reg=True,
                            levels_per_stage=1, output_stage="parallel"):
    """Cycles from accepting an image's last input beat to its last output beat valid."""
    sf, nf = _ceil_div(n_in, simd), _ceil_div(n_out, pe)
    first = mvu_latency(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                        output_stage)
    return first + (nf - 1) * sf


def mvu_fifo_depth(n_in, n_out, simd, pe, input_bits=1, ram_reg=True, levels_per_stage=1,
                   output_stage="parallel"):
    """Output FIFO entries an engine needs to issue a fold every SF cycles without waiting
    while ``o`` is ready: a fold holds a credit for ``latency`` cycles (start to the cycle
    after its beat leaves), and folds start SF cycles apart."""
    sf = _ceil_div(n_in, simd)
    latency = mvu_latency(n_in, n_out, simd, pe, input_bits, ram_reg, levels_per_stage,
                          output_stage)
    return _ceil_div(latency, sf)


def converter_latency(in_lanes, out_lanes):
    """Cycles a :class:`~hw.dataflow.convert.WidthConverter` adds: 1 when it gathers several
    input beats into one output beat (registered), 0 when it splits or passes beats."""
    return 1 if out_lanes > in_lanes else 0
