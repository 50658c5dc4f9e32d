"""``xnorflow fold``: choose every layer's PE and SIMD for the dataflow target, and the
resource model that decides what fits (docs/dataflow.md, "Folding").

The search is FINN's idea with a resource model in the loop: start every engine at one
synapse and one channel per cycle, then repeatedly widen the slowest engine (more synapses
S or more channels P, whichever buys its cycles back for fewer logic cells) until the
pipeline reaches the target rate or the next step would not fit the board. Widths are powers
of two, the layer's whole size or that size over a power of two, and a producer's P and its
consumer's S always divide one another (the width converter between them needs that).

The model (:func:`estimate_dataflow`) counts every memory of the build exactly as Yosys maps
it (sw/resources.py: the weights, channel constants, input buffers, FIFOs, the link buffer)
and fits the logic: per engine ``a·S·P·k + b·P·u + c·P + d`` LUT4s (``u`` the accumulator
width), plus the host link, run control and UART; the coefficients and the builds they were
fitted on are in :data:`LOGIC`'s comments and benchmarks/results/dataflow_builds.json.
"""
import itertools
import json
import math
import sys
from dataclasses import dataclass, replace

from xnorflow.hw.dataflow import timing
from xnorflow.hw.dataflow.block_fifo import READ_AHEAD, chunk_widths, uses_block_fifo
from xnorflow.hw.dataflow.config import DataflowConfig, EngineFold, gate_cycles
from xnorflow.hw.dataflow.run_timing import run_cycles, steady_interval
from xnorflow.hw.dataflow.window import default_rows
from xnorflow.sw import resources as R
from xnorflow.sw import xnf
from xnorflow.sw.argtypes import output_file, positive_float
from xnorflow.sw.dataflow_program import engine_layers, model_folds
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.xnf import atomic_write

__all__ = ["FoldError", "estimate_dataflow", "fold_model", "fold_report", "DATAFLOW_CLOCK_MHZ"]


class FoldError(XnorflowError):
    """No folding of the model fits the board (the message gives need against have)."""


#: The clock a dataflow build runs at by default on each board (post-route Fmax of the
#: measured builds with margin, docs/dataflow.md "Measured").
DATAFLOW_CLOCK_MHZ = {"icebreaker": 32.25, "ulx3s-85f": 100.0}

#: Logic model, Yosys LUT4s: per engine ``mac·S·P·k + pe·P + engine`` (XNOR-popcount trees,
#: per-PE accumulator and compare, control), plus ``fixed`` (host link, UART, run control,
#: FIFOs, converters). Fitted on (Yosys -noflatten of the placed builds): iCE40 the digits
#: MLP build df:64u4>256:16x4s,256>256:32x8,256>10r:16x1 (engines 1,000 / 1,230 / 154 LUT4,
#: the rest 2,120); ECP5 benchmarks/results/mvu_probe.json (one engine alone: 32x8, 64x16,
#: 128x16; 1,500 to 8,300 LUT4). ``packing``: placed cells (iCE40 logic cells, ECP5 LUT4s)
#: per Yosys LUT4: 5,182 logic cells for 4,500 LUT4 in that iCE40 build. The iCE40 ``fixed``
#: was refitted in session 30 on that fold and the two input-first builds
#: (:data:`INPUT_FIRST_LOGIC`), all three placed on one RTL (4,933, 5,185 and 5,170 logic
#: cells), with the first engine taking the input words itself (``first_in_words``; a
#: gathering converter's beat register is counted apart: :func:`input_gather_lut4`).
LOGIC = {
    "ice40": {"mac": 2.81, "pe": 57.5, "engine": 52.0, "fixed": 1902.4, "packing": 1.15},
    "ecp5": {"mac": 3.52, "pe": 62.0, "engine": 103.0, "fixed": 2120.0, "packing": 1.0},
}

#: A conv engine's control besides its matrix-vector unit, Yosys LUT4s: the window unit's
#: row and tap counters and address arithmetic, the pool's counters (from the blocks' Yosys
#: statistics). Checked on a placed build: the digits CNN's iCEBreaker fold
#: df:8x8x1u4>16p:9x2s,4x4x16>32p:16x8,128>64:16x1s,64>10r:2x1 is estimated at 4,941 logic
#: cells and placed in 4,878 (4,684 on the RTL of session 28:
#: benchmarks/results/dataflow_cnn/icebreaker_digits_cnn_report.json).
CONV_LOGIC = {"window": 150.0, "pool": 60.0}

#: Images a conv model's FIFOs hold: a CNV image is thousands of cycles, so a run of 16 pays
#: its few-interval latency once at ~85 % of the interval's rate, while 512 images of 784
#: 4-bit pixels would take 88 of the ECP5's 208 block RAMs.
CONV_RUN_IMAGES = 16

#: Build options per FPGA family (DataflowConfig fields): iCE40 registers less (a flip-flop
#: costs a logic cell there; 2 adder levels per stage still close above 60 MHz), compares
#: serially (one channel block RAM per engine instead of P) and keeps the input FIFO one
#: block wide; ECP5 registers every level for 100 MHz and more, and takes runs of 512 images:
#: a run pays the pipeline's latency once (650 cycles for the SFC at 32 per image), so runs of
#: 16 would reach only 45 % of the interval's rate, runs of 512 reach 96 %, for ~25 block RAMs
#: of FIFO (the iCE40 has none to spare). Its input FIFO is 256 bits wide, so 512 images stay
#: one block deep: a 32-bit FIFO was 26 blocks deep, and their read multiplexer was the
#: critical path of the 3 M/s SFC build (benchmarks/results/dataflow_sfc/ecp5_builds.json).
FAMILY_OPTIONS = {
    "ice40": {"ram_reg": 0, "levels": 2, "serial": 1, "in_word": 16},
    "ecp5": {"ram_reg": 1, "levels": 1, "serial": 0, "in_word": 256, "in_images": 512,
             "out_images": 512},
}

#: Share of the device's logic a fold may plan for. The iCE40 model is calibrated on a build
#: that placed, routed and met 30 MHz at 98 % of the UP5K's logic cells (nextpnr packs iCE40
#: designs to the last cell); large ECP5 designs route worse when full (docs/synthesis.md):
#: the SFC builds place and route at 66 % of the LUT4 places (TRELLIS_COMB), the CNV's 10 k/s
#: fold, estimated at 80 %, was 87 % after packing and nextpnr's placer had not finished its
#: second HeAP iteration after 38 minutes. The model is up to ~9 % under the packed count
#: (it counts Yosys' LUT4s; packing adds route-through LUTs), so 75 % keeps a fold below ~82 %.
LUT_BUDGET = {"ice40": 0.99, "ecp5": 0.75}


def _conv_memories(e, fold, ram_reg):
    """A conv engine's memories besides its matrix-vector unit's: the window unit's ring of
    line buffers (block RAM with ``ram_reg``) and the pool's row of partial results
    (hw/dataflow/window.py, pool.py)."""
    h, w, c = fold.image
    lanes = fold.in_lanes
    mems = [R.MemorySpec(f"e{e}.window", 1, lanes * fold.input_bits,
                         max(2, default_rows(h) * w * c // lanes), block=bool(ram_reg))]
    if fold.pool:
        mems.append(R.MemorySpec(f"e{e}.pool", 1, fold.pe,
                                 max(2, (w // 2) * fold.n_out // fold.pe)))
    return mems


def _engine_memories(e, fold, stage, ram_reg):
    """The memories of engine ``e`` (its weights, channel constants and input buffer; a conv
    engine's line buffers and pool row) as Yosys sees them; ``stage`` is its output stage
    (serial: one channel memory addressed {p, nf}), ``ram_reg`` the build's option."""
    s = fold.shape
    if fold.order == "input":
        return _psum_engine_memories(e, fold)
    mems = [R.MemorySpec(f"e{e}.weights", s.pe, s.simd, s.weight_depth,
                         huge=fold.weights == "spram")]
    if fold.is_conv:
        mems += _conv_memories(e, fold, ram_reg)
    if s.has_channel_memory:
        nf_bits = (s.neuron_folds - 1).bit_length()
        if stage == "serial":
            p_bits = (s.pe - 1).bit_length()
            mems.append(R.MemorySpec(f"e{e}.channels", 1, s.channel_word_width,
                                     1 << (nf_bits + p_bits)))
        else:
            mems.append(R.MemorySpec(f"e{e}.channels", s.pe, s.channel_word_width,
                                     max(2, s.neuron_folds)))
    sf_bits = (s.synapse_folds - 1).bit_length()
    # the ping-pong input buffer holds a group: m images' beats side by side in one word
    mems.append(R.MemorySpec(f"e{e}.buffer", 1, fold.mmv * s.in_beat_bits, 2 << sf_bits))
    if fold.mmv > 1:
        # the reorder buffer: a column (beat nf of each of the m images) per entry
        depth = timing.mvu_fifo_depth(fold.n_in, fold.n_out, fold.simd, fold.pe,
                                      fold.input_bits, output_stage=stage, mmv=fold.mmv)
        mems.append(R.MemorySpec(f"e{e}.reorder", 1, fold.mmv * s.out_beat_bits, depth))
    return mems


def _psum_engine_memories(e, fold):
    """An input-first engine's memories (hw/dataflow/psum_mvu.py): its weights (one memory of
    P lanes; one per PE in SPRAM) and, with ``NF ≥ 2``, its partial sums (P lanes, NF words,
    and NF more for a threshold engine's channel words); ``NF = 1`` keeps the sums in
    registers and the output FIFO (one wide beat) in flip-flops. No input buffer: the beat
    is a register."""
    s = fold.shape
    if fold.weights == "spram":
        mems = [R.MemorySpec(f"e{e}.weights", s.pe, s.simd, s.weight_depth, huge=True)]
    else:
        mems = [R.MemorySpec(f"e{e}.weights", 1, s.pe * s.simd, s.weight_depth)]
    if s.neuron_folds > 1:
        threshold = s.output == "threshold"
        lane = s.threshold_width + 2 if threshold else s.u_width
        mems.append(R.MemorySpec(f"e{e}.psums", 1, s.pe * lane,
                                 s.neuron_folds * (2 if threshold else 1)))
    return mems


def _input_fifo_memories(config):
    """The input FIFO's memories (hw/dataflow/block_fifo.py, :func:`input_fifo`): one, or a
    :class:`BlockFIFO`'s column chunks and its read-ahead words."""
    width, depth = config.in_word_bits, config.in_images * config.in_words
    if not uses_block_fifo(depth, config.ram_reg):
        return [R.MemorySpec("in_fifo", 1, width, depth)]
    chunks = [R.MemorySpec(f"in_fifo.{c}", 1, bits, depth)
              for c, bits in enumerate(chunk_widths(width))]
    return chunks + [R.MemorySpec("in_fifo.ahead", 1, width, READ_AHEAD)]


def _shared_memories(config, max_payload=256):
    """The memories outside the engines: the input and output FIFOs and the link's buffer."""
    return _input_fifo_memories(config) + [
            R.MemorySpec("out_fifo", 1, config.out_word_bits,
                         config.out_images * config.out_words),
            R.MemorySpec("link_buf", 1, 8, max_payload)]


def _memories(config, max_payload=256):
    """Every memory of a dataflow board top (name, count, width, depth) as Yosys sees it."""
    mems = []
    for e, fold in enumerate(config.engines):
        mems += _engine_memories(e, fold, config.output_stage(fold), config.ram_reg)
    return mems + _shared_memories(config, max_payload)


def _map_all(family, mems):
    """(uses, blocks by kind, LUT4s of the memories left in logic)."""
    uses = []
    for mem in mems:
        kind, blocks = R.map_memory(family, mem)
        uses.append(R.MemoryUse(mem.name, mem.count, mem.width, mem.depth, kind, blocks))
    count = {kind: sum(u.count * u.blocks_each for u in uses if u.kind == kind)
             for kind in ("bram", "spram")}
    return uses, count, sum(_memory_lut4(family, u) for u in uses)


def _memory_lut4(family, use):
    """LUT4s of a memory Yosys leaves out of the RAM blocks. ECP5 distributed RAM: a
    TRELLIS_DPR16X4 (16 words × 4 bits) takes a slice pair's 4 LUTs and half of a third
    slice's (the RAMW slice that drives its write port; no logic can use those LUTs): 6 LUT4
    places per 64 bits, as nextpnr counts them against the device ("RAM LUTs" + "RAMW
    LUTs": 14,660 + 7,330 for the 3,665 DPR16X4 of the CNV's 10 k/s fold; this model counted
    4 and underestimated that build by 7,330 LUT4), plus a 2:1 multiplexer per bit for every
    further 16 words of depth. Flip-flops: on
    iCE40 each bit takes a logic cell (its flip-flop cannot pair with an unrelated LUT), on
    ECP5 flip-flops are apart from the LUTs and only the read multiplexer (4 bits a LUT)
    counts."""
    bits = use.count * use.width * use.depth
    if use.kind == "lutram":
        dpr16x4 = use.count * -(-use.width // 4) * -(-use.depth // 16)
        return 6 * dpr16x4 + use.count * use.width * (-(-use.depth // 16) - 1)
    if use.kind == "logic":
        return bits if family == "ice40" else bits / 4
    return 0.0


#: An input-first engine's logic (hw/dataflow/psum_mvu.py), Yosys LUT4s besides the per-MAC
#: term of :data:`LOGIC`: per PE (its partial sum's adder, the result) and per engine (the
#: pass and fold counters, the partial sums' sideband and the channel words' write
#: multiplexer), and on iCE40 a logic cell per flip-flop of its input beat and its output
#: buffer (none where the sums' registers hold the beat). Fitted on the two iCEBreaker builds
#: of the digits MLP with input-first layers 2 and 3 and the output-first build (three builds,
#: three terms with ``LOGIC["ice40"]["fixed"]``: no check yet; session 30, docs/dataflow.md
#: "Latency: met with the overlapped fold"): layer 3 as ``4x10i`` 5,185 logic cells, as
#: ``32x1i`` (three adder levels) 5,170.
INPUT_FIRST_LOGIC = {"pe": 7.45, "engine": 292.7}


def engine_lut4(family, fold, holds=False):
    """Yosys LUT4s of one engine's logic (see :data:`LOGIC`): an MMV engine has a popcount
    tree, an accumulator and a compare per PE for each of its ``mmv`` images; a conv engine
    adds its window unit's and pool's control (:data:`CONV_LOGIC`, not yet fitted on a
    build) and, on iCE40, the flip-flops of the converter gathering window beats into S; an
    input-first engine has terms of its own (:data:`INPUT_FIRST_LOGIC`), and an output
    buffer unless it ``holds`` its beat in its sums' registers
    (:meth:`DataflowConfig.holds_output`, which the config decides)."""
    c, s, m = LOGIC[family], fold.shape, fold.mmv
    if fold.order == "input":
        lut4 = (c["mac"] * s.simd * s.pe * s.input_bits + INPUT_FIRST_LOGIC["pe"] * s.pe
                + INPUT_FIRST_LOGIC["engine"])
        if family == "ice40":        # flip-flops in cells of their own, as LUT4 equivalents
            depth = 0 if holds else timing.psum_fifo_depth(
                fold.n_in, fold.n_out, s.simd, s.pe, s.input_bits,
                FAMILY_OPTIONS[family]["levels"])
            lut4 += (s.in_beat_bits + depth * s.out_beat_bits) / c["packing"]
        return lut4
    lut4 = c["mac"] * s.simd * s.pe * s.input_bits * m + c["pe"] * s.pe * m + c["engine"]
    if fold.is_conv:
        lut4 += CONV_LOGIC["window"] + (CONV_LOGIC["pool"] + fold.pe if fold.pool else 0)
        if family == "ice40" and fold.in_lanes < s.simd:
            lut4 += s.simd * s.input_bits
    return lut4


def input_gather_lut4(family, config):
    """On iCE40 a converter gathering input-FIFO words into the first engine's beats holds a
    beat in flip-flops, a logic cell per bit, as LUT4 equivalents: none where the engine
    takes the words itself (:attr:`DataflowConfig.first_in_words`, which the fitted
    ``fixed`` term's builds do) or where no converter gathers."""
    first = config.engines[0]
    if family != "ice40" or config.first_in_words > 1 or first.in_lanes <= config.in_lanes:
        return 0.0
    return first.in_lanes * first.input_bits / LOGIC[family]["packing"]


def estimate_dataflow(device, config):
    """:class:`xnorflow.sw.resources.Estimate` of a :class:`DataflowConfig` on ``device``."""
    uses, count, memory_lut4 = _map_all(device.family, _memories(config))
    lut4 = (LOGIC[device.family]["fixed"] + memory_lut4 + input_gather_lut4(device.family, config)
            + sum(engine_lut4(device.family, f, config.holds_output(f))
                  for f in config.engines))
    luts = round(lut4 * LOGIC[device.family]["packing"])
    return R.Estimate(luts=luts, brams=count["bram"], sprams=count["spram"], memories=tuple(uses))


R.register(DataflowConfig, estimate_dataflow)


# ---------------------------------------------------------------- the search

def _widths(n):
    """Candidate S (or P) for a dimension of size ``n``: powers of two below it, ``n``, and
    ``n`` over a power of two where that divides it (784 → 392, 196, 98, 49: the SFC's
    first layer at S = 196 makes 4 folds of whole synapses where S = 256 pads 784 to 1,024,
    a quarter of its popcount trees counting zeros)."""
    out, v = set(), 1
    while v < n:
        out.add(v)
        v *= 2
    while n % 2 == 0 and n > 1:
        out.add(n)
        n //= 2
    return sorted(out | {n})


def _fits(board, config, device):
    est = R.estimate(board, config)
    limit = LUT_BUDGET[device.family]
    return (est.luts <= limit * device.luts and est.brams <= device.brams
            and est.sprams <= device.sprams), est


@dataclass
class FoldResult:
    config: DataflowConfig
    estimate: object
    clock_mhz: float
    target_ips: float
    limited_by: str


def _layers(model):
    """Every engine's geometry (:data:`xnorflow.sw.dataflow_program.ENGINE_FIELDS`)."""
    return model_folds(model)


def _utilisation(est, device):
    """The fullest resource's share of what a fold may plan for (1.0 = the budget)."""
    shares = [est.luts / (LUT_BUDGET[device.family] * device.luts), est.brams / device.brams]
    if est.sprams:
        shares.append(est.sprams / device.sprams if device.sprams else math.inf)
    return max(shares)


@dataclass(frozen=True)
class _Candidate:
    """One way to fold one engine: the fold and what it alone costs."""

    fold: EngineFold
    lut4: float
    brams: int
    sprams: int


#: Images per weight read the search tries (MMV): 2 and 4 halve and quarter the weight
#: bandwidth a rate needs, for m times the popcount trees (docs/dataflow.md, "MMV").
MMV_CHOICES = (1, 2, 4)


#: Pixels per weight read the search tries for a conv engine (MMV over an image's output
#: pixels): the CNV's fast folds keep their weights in block RAM only when each weight word
#: serves several windows (docs/dataflow.md, "Convolution").
CONV_MMV_CHOICES = (1, 2, 4, 8)


def _simd_choices(layer):
    """S candidates: powers of two and the whole size; a conv also its window's multiples of
    C (C, 3·C, 9·C: a window beat is then a whole tap, the converter into S wires or a
    gather of whole taps)."""
    widths = _widths(layer["n_in"])
    if layer["image"] is not None:
        c = layer["image"][2]
        widths = sorted(set(widths) | {c, 3 * c, 9 * c})
    return widths


def _pe_choices(layer):
    """P candidates: powers of two and the whole size; a conv's must divide its channels."""
    widths = _widths(layer["n_out"])
    if layer["image"] is not None:
        widths = [p for p in widths if layer["n_out"] % p == 0]
    return widths


def _candidates(device, layer, options, conv_mmv=CONV_MMV_CHOICES):
    """Every fold of one layer (S and P from :func:`_widths`, a conv's S also its window's
    multiples of C; MMV 1, 2 or 4 images where the fold allows it and the FIFOs hold
    whole groups, a conv's 1, 2, 4 or 8 pixels where they divide its image; weights in block
    RAM, and on an UltraPlus in SPRAM where they fit its four 16-bit blocks), with its cost."""
    n_in, n_out = layer["n_in"], layer["n_out"]
    family = device.family
    *images, ram_reg = [options.get(f, DataflowConfig.__dataclass_fields__[f].default)
                        for f in ("in_images", "out_images", "ram_reg")]
    conv = layer["image"] is not None
    mmvs = conv_mmv if conv else MMV_CHOICES
    found = []
    for simd in _simd_choices(layer):
        for pe in _pe_choices(layer):
            kinds = ["block"]
            if device.sprams and pe * -(-simd // 16) <= device.sprams \
                    and -(-n_in // simd) * -(-n_out // pe) <= 16384:
                kinds.append("spram")
            for weights, mmv in ((w, m) for w in kinds for m in mmvs):
                if not conv and any(n % mmv for n in images):
                    continue
                try:
                    fold = EngineFold(**layer, simd=simd, pe=pe, weights=weights, mmv=mmv)
                except ValueError:   # more images per read than the folds allow
                    continue
                s = fold.shape
                stage = ("serial" if options.get("serial") and mmv * s.pe <= s.synapse_folds
                         else "parallel")
                mems = _engine_memories(0, fold, stage, ram_reg)
                _, count, memory_lut4 = _map_all(family, mems)
                found.append(_Candidate(fold, engine_lut4(family, fold) + memory_lut4,
                                        count["bram"], count["spram"]))
    return found


def _pareto(cands):
    """The candidates no other beats on LUTs, block RAMs and SPRAMs at once."""
    cands = sorted(cands, key=lambda c: (c.lut4, c.brams, c.sprams))
    front = []
    for c in cands:
        if not any(f.lut4 <= c.lut4 and f.brams <= c.brams and f.sprams <= c.sprams
                   for f in front):
            front.append(c)
    return front


def _cheapest(device, fronts, fixed):
    """The combination of one candidate per engine (neighbours' P and S dividing one another)
    whose fullest resource is least used, with that share; (None, inf) when there is none.
    Branch and bound: a partial sum already over the best found is not continued."""
    lut_cap = LUT_BUDGET[device.family] * device.luts / LOGIC[device.family]["packing"]
    best = [None, math.inf]

    def share(lut4, brams, sprams):
        parts = [lut4 / lut_cap, brams / device.brams]
        if sprams:
            parts.append(sprams / device.sprams if device.sprams else math.inf)
        return max(parts)

    def walk(e, chosen, lut4, brams, sprams):
        if share(lut4, brams, sprams) >= best[1]:
            return
        if e == len(fronts):
            best[:] = [list(chosen), share(lut4, brams, sprams)]
            return
        for c in fronts[e]:
            if chosen:
                p, s = chosen[-1].fold.pe, c.fold.in_lanes
                if p % s and s % p or chosen[-1].fold.mmv > 1 and p > s:
                    continue
            walk(e + 1, chosen + [c], lut4 + c.lut4, brams + c.brams, sprams + c.sprams)

    walk(0, [], *fixed)
    return best


def fold_model(model, board, target_ips=None, clock_mhz=None, conv_mmv=CONV_MMV_CHOICES,
               overlap=False, **options):
    """The folding of ``model`` for ``board``: the cheapest that reaches ``target_ips`` at
    ``clock_mhz`` (default :data:`DATAFLOW_CLOCK_MHZ`), or without a target the fastest that
    fits. FoldError when no folding fits.

    The search is exact over its space: every engine's folds (S, P powers of two, the whole
    size or it over a power of two, weights in block RAM or SPRAM) are costed alone (logic,
    block RAMs, SPRAMs); for an
    interval T each engine keeps the Pareto-best folds that make T, and a branch-and-bound
    picks the combination whose fullest resource is least used. Feasibility only grows with
    T, so a bisection over the achievable intervals finds the fastest that fits.
    ``conv_mmv``: the pixels per weight read tried for conv engines (:data:`CONV_MMV_CHOICES`;
    ``(1,)`` searches without MMV over pixels). ``overlap``: then also the least latency at
    that interval, over input-first engines after the first (:func:`_overlapped`)."""
    device = R.get_device(board)
    clock = clock_mhz or DATAFLOW_CLOCK_MHZ[board]
    layers = _layers(model)
    defaults = dict(FAMILY_OPTIONS[device.family])
    if any(layer["image"] is not None for layer in layers):
        defaults.update(in_images=CONV_RUN_IMAGES, out_images=CONV_RUN_IMAGES)
    options = {**defaults, **options}
    cands = [_candidates(device, layer, options, conv_mmv) for layer in layers]
    # the memories and logic outside the engines, from the smallest fold's FIFOs and link
    smallest = DataflowConfig(tuple(min(c, key=lambda x: x.lut4).fold for c in cands), **options)
    _, count, memory_lut4 = _map_all(device.family, _shared_memories(smallest))
    fixed = (LOGIC[device.family]["fixed"] + memory_lut4, count["bram"], count["spram"])

    def runs_within(c, e, interval):
        # the first engine waits on the input gate, one FIFO word per cycle: a 32-cycle fold
        # fed 98 words per image runs at 98 (the SFC's 392-lane first engine, 256-bit words)
        return c.fold.cycles <= interval and (
            e or gate_cycles(c.fold, options["in_word"]) <= interval)

    def solve(interval):
        fronts = [_pareto([c for c in cs if runs_within(c, e, interval)])
                  for e, cs in enumerate(cands)]
        if not all(fronts):
            return None
        chosen, share = _cheapest(device, fronts, fixed)
        if chosen is None or share > 1:
            return None
        config = DataflowConfig(tuple(c.fold for c in chosen), **options)
        est = R.estimate(board, config)
        fits = _utilisation(est, device) <= 1 and config.interval <= interval
        return (config, est) if fits else None

    intervals = sorted({c.fold.cycles for cs in cands for c in cs})
    if target_ips:
        reachable = [t for t in intervals if t <= clock * 1e6 / target_ips]
        found = solve(reachable[-1]) if reachable else None
        if found is not None:
            # the cheapest fold that reaches the target: the largest interval within it
            if overlap:
                found = _overlapped(board, device, layers, *found)
            return FoldResult(*found, clock, target_ips, "target reached")
    lo, hi, best = 0, len(intervals) - 1, None
    while lo <= hi:                       # the smallest interval that fits
        mid = (lo + hi) // 2
        found = solve(intervals[mid])
        if found is not None:
            best, hi = found, mid - 1
        else:
            lo = mid + 1
    if best is None:
        raise FoldError(f"no folding of model '{model.name}' fits {board}, not even one synapse "
                        f"and one channel per cycle per layer")
    config, est = best
    if overlap:
        config, est = _overlapped(board, device, layers, config, est)
    binds = f"{_binding(est, device)} binds"
    limited = f"a faster fold does not fit the board ({binds})" if target_ips else binds
    return FoldResult(config, est, clock, target_ips, limited)


def _overlapped(board, device, layers, config, est):
    """``config``'s fold with the least latency (START to the first image's last result,
    :func:`~xnorflow.hw.dataflow.run_timing.run_cycles`) at no longer an interval, among
    those whose dense engines after the first are each kept or made input-first (fold
    suffix ``i``, any S and P: an input-first engine overlaps the one before it,
    docs/dataflow.md "Overlapped engines"), fewest LUTs among equals; that fits. Every
    combination is tried: the logic sum rules most out before the cycle model and the
    estimate see them (the digits MLP on the iCEBreaker: about 2,000, a few seconds).
    Input-first engines need builds without ``ram_reg`` (iCE40): FoldError otherwise."""
    if config.ram_reg:
        raise FoldError(f"--overlap: input-first engines need a build without ram_reg; "
                        f"{board}'s dataflow builds register their memories' reads")
    interval, family = config.interval, device.family
    budget = LUT_BUDGET[family] * device.luts / LOGIC[family]["packing"] - LOGIC[family]["fixed"]
    choices = [[config.engines[0]]]                # the first engine stays as it is
    for engine, layer in zip(config.engines[1:], layers[1:]):
        options = [engine]
        if not engine.is_conv:
            for simd, pe in itertools.product(_simd_choices(layer), _pe_choices(layer)):
                try:
                    fold = EngineFold(**layer, simd=simd, pe=pe, order="input")
                except ValueError:      # raw output of a k-bit input: not input-first
                    continue
                if fold.cycles <= interval:
                    options.append(fold)
        choices.append(options)
    ranked = []
    for engines in itertools.product(*choices):
        candidate = replace(config, engines=engines)
        lut4 = sum(engine_lut4(family, f, candidate.holds_output(f)) for f in engines)
        if lut4 > budget or candidate.interval > interval:
            continue
        ranked.append((run_cycles(candidate, candidate.group)["latency"], lut4, candidate))
    ranked.sort(key=lambda r: (r[0], r[1]))
    for _, _, candidate in ranked:
        found = R.estimate(board, candidate)
        if _utilisation(found, device) <= 1:
            return candidate, found
    return config, est


def _binding(est, device):
    """The resource closest to its budget, named for a person."""
    shares = {"logic": est.luts / (LUT_BUDGET[device.family] * device.luts),
              "block RAM": est.brams / device.brams}
    if device.sprams:
        shares["SPRAM"] = est.sprams / device.sprams
    return max(shares, key=shares.get)


def fold_report(model, result, board):
    """The per-layer table of a fold as a JSON-able dict."""
    device = R.get_device(board)
    cfg, clock = result.config, result.clock_mhz
    rows = []
    for (layer, _), fold in zip(engine_layers(model), cfg.engines):
        s = fold.shape
        mems = [u for u in result.estimate.memories if u.name.startswith(f"e{len(rows)}.")]
        rows.append({"layer": layer.name, "engine": fold.format(), "n_in": fold.n_in,
                     "n_out": fold.n_out, "pixels": fold.pixels,
                     "input_bits": fold.input_bits, "simd": s.simd, "pe": s.pe,
                     "mmv": fold.mmv, "cycles": fold.cycles,
                     "binary_macs": fold.pixels * fold.n_in * fold.n_out * fold.input_bits,
                     "luts": round(engine_lut4(device.family, fold, cfg.holds_output(fold))
                                   * LOGIC[device.family]["packing"]),
                     "brams": sum(u.count * u.blocks_each for u in mems if u.kind == "bram"),
                     "sprams": sum(u.count * u.blocks_each for u in mems if u.kind == "spram")})
    timing = run_cycles(cfg, cfg.group)   # the smallest run: one group of the MMV engines
    full = run_cycles(cfg, cfg.in_images)  # the largest run: every run pays the latency once
    interval = steady_interval(cfg)   # the run model's; the search's closed form bounds it
    return {"model": model.name, "board": board, "config": cfg.format(), "clock_mhz": clock,
            "interval_cycles": interval, "latency_cycles": timing["latency"],
            "inferences_per_second": clock * 1e6 / interval,
            "run_images": cfg.in_images,
            "run_inferences_per_second": clock * 1e6 * cfg.in_images / full["total"],
            "latency_us": timing["latency"] / clock,
            "target_ips": result.target_ips, "limited_by": result.limited_by,
            "estimate": result.estimate.as_dict(),
            "device": {"luts": device.luts, "brams": device.brams, "sprams": device.sprams},
            "layers": rows}


def load_fold(path):
    """The DataflowConfig of a FOLD.json written by ``xnorflow fold -o``, or of a fold's text
    form itself (``df:…``, :meth:`DataflowConfig.format`)."""
    if str(path).startswith("df:"):
        try:
            return DataflowConfig.parse(path)
        except ValueError as e:
            raise XnorflowError(f"--fold {path}: {e}") from None
    try:
        with open(path) as f:
            doc = json.load(f)
        return DataflowConfig.parse(doc["config"])
    except OSError as e:
        raise XnorflowError(f"--fold {path}: cannot read it: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise XnorflowError(f"--fold {path}: not a fold file ({e})") from None


def format_fold(report):
    lines = [f"{report['model']} on {report['board']}: {report['config']}",
             f"{'layer':<8}{'N':>6}{'M':>6}{'k':>3}{'S':>6}{'P':>5}{'MMV':>4}{'cycles':>9}"
             f"{'LUTs':>8}"
             f"{'BRAM':>6}{'SPRAM':>6}"]
    for r in report["layers"]:
        lines.append(f"{r['layer']:<8}{r['n_in']:>6}{r['n_out']:>6}{r['input_bits']:>3}"
                     f"{r['simd']:>6}{r['pe']:>5}{r['mmv']:>4}{r['cycles']:>9g}{r['luts']:>8}"
                     f"{r['brams']:>6}"
                     f"{r['sprams']:>6}")
    est, dev = report["estimate"], report["device"]
    lines.append(f"estimate: {est['luts']:,}/{dev['luts']:,} LUTs, {est['brams']}/{dev['brams']} "
                 f"BRAM, {est['sprams']}/{dev['sprams']} SPRAM")
    lines.append(f"interval {report['interval_cycles']} cycles, latency "
                 f"{report['latency_cycles']} cycles: {report['inferences_per_second']:,.0f} "
                 f"inferences/s and {report['latency_us']:.2f} µs at {report['clock_mhz']:g} MHz"
                 + (f" ({report['limited_by']})" if report["limited_by"] else ""))
    lines.append(f"runs of {report['run_images']} images (latency paid once a run): "
                 f"{report['run_inferences_per_second']:,.0f} inferences/s")
    return "\n".join(lines)


def add_parser(sub):
    p = sub.add_parser("fold", help="choose PE and SIMD per layer for the dataflow target",
                       description="Pick every layer's PE (channels in parallel) and SIMD "
                                   "(synapses per cycle) for the dataflow target: balanced so "
                                   "the slowest layer sets the rate, within the board's logic "
                                   "and memories (a resource model calibrated on real builds). "
                                   "Prints per layer PE, SIMD, cycles per image, LUT and RAM "
                                   "estimates. (profile, synth --model and sim without --fold "
                                   "take the fastest recorded build of the model's shapes that "
                                   "met its clock first: docs/dataflow.md.)")
    p.add_argument("model", help="a compiled model (.xnf)")
    p.add_argument("--board", required=True, choices=sorted(R.DEVICES), help="the board to fit")
    p.add_argument("--target-ips", type=positive_float, default=None, metavar="N",
                   help="the smallest folding that reaches N inferences/s (default: the "
                        "fastest that fits)")
    p.add_argument("--clock-mhz", type=positive_float, default=None,
                   help="clock of the build (default: icebreaker "
                        f"{DATAFLOW_CLOCK_MHZ['icebreaker']:g}, ulx3s-85f "
                        f"{DATAFLOW_CLOCK_MHZ['ulx3s-85f']:g})")
    p.add_argument("--overlap", action="store_true",
                   help="at the fold's interval, also the least latency: layers after the "
                        "first may become input-first engines (fold suffix i), which overlap "
                        "the layer before them; builds without ram_reg (icebreaker)")
    p.add_argument("-o", "--out", type=output_file, default=None, metavar="FOLD.json",
                   help="write the fold there (default: print only)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run_fold)


def run_fold(args):
    model = xnf.load(args.model)
    result = fold_model(model, args.board, args.target_ips, args.clock_mhz,
                        overlap=args.overlap)
    report = fold_report(model, result, args.board)
    if args.target_ips and report["inferences_per_second"] < args.target_ips:
        print(f"xnorflow fold: the target {args.target_ips:,.0f} inferences/s is not reached: "
              f"{result.limited_by}", file=sys.stderr)
    if args.out:
        atomic_write(args.out, (json.dumps(report, indent=2) + "\n").encode())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_fold(report))
    return 0
