"""Matrix-vector unit (MVU): one dense layer of the dataflow accelerator (issue #25).

FINN's MVAU with xnorflow's contracts: P processing elements (output channels in parallel) ×
S synapses per cycle, XNOR-popcount folded into one LUT level, a pipelined adder tree, one
unsigned accumulator per PE and a threshold compare (or a raw signed integer) per PE or, with
the serial output stage, one for the engine. With MMV (``mmv = m``, FINN's "multiple vectors
per weight read") each PE applies the weight word it reads to m images at once: m input
words, m popcount trees and accumulators per PE, one weight read. The shape, the arithmetic
and the memory layout are in :mod:`xnorflow.hw.dataflow.shape`; the cycle model in
:mod:`xnorflow.hw.dataflow.timing`; the software packer in ``sw/layers/dataflow_pack.py`` (the same
for every m: weights and streams do not change).

Block diagram (one engine)::

    i ──► mask padding ──► input buffer (ping-pong, 2 halves × SF words of m·k·S bits:
                                │          word sf of the m images of a group side by side)
                                │ word sf of the current group, every cycle
                 ┌──────────────┼──────────────┐            (x register if ram_reg)
                 ▼              ▼              ▼
    weights_0 ─► PE 0   weights_1 ─► PE 1  … PE P−1        one S-bit word per PE per cycle
                 │ per image (m lanes, one weight word):
                 │ k planes: LUT(x0,w0,x1,w1) → 2-bit counts, adder tree, Σ_b 2^b·pc_b
                 │ acc += U_t; a fold's sum → total register, acc cleared
                 ▼
    parallel: per PE, channel memory word (T*, inv) or C ──► m bits or m integers
    serial:   one channel memory, one compare walking the m·P totals, one per cycle
                 └──────────────┴──────► beat nf of the m images (m·P bits / integers)
                                              ──► m = 1: output FIFO ──► o
                                              ──► m > 1: group reorder buffer ──► o

Control: the writer fills one half of the buffer from ``i`` (a group: m images one after the
other, image j into slice j of the words) while the reader computes on the other; the reader
walks ``nf = 0..NF−1`` (neuron folds) × ``sf = 0..SF−1`` (synapse folds), one word per cycle,
with the weight address a single counter ``nf·SF + sf`` (no multiplier).
A fold is never interrupted once started: the reader starts fold ``nf`` only when the output
buffer has a free entry for its result counting every fold still in flight (credits: an
entry is a FIFO slot with m = 1, a column of the reorder buffer, beat nf of the m images,
with m > 1, free again once its last image has read it), so the datapath has no clock
enable and no stall net at all; backpressure on ``o`` only delays the start of the next fold.
The buffer's depth (:func:`~xnorflow.hw.dataflow.timing.mvu_fifo_depth`) covers the pipeline so a
ready ``o`` never delays anything.

Why these choices (measured or counted, not guessed):

* **XNOR for both input kinds**: ``2·popcount(x_b AND w) − popcount(x_b) =
  popcount(XNOR(x_b, w)) − zeros(w)``, so the unsigned first layer runs on the binary layer's
  datapath and the per-channel constant moves into the threshold (T*, computed by the packer)
  or, for a raw unsigned layer, into one subtract after the accumulator. No ``−pm`` per
  cycle, no signed accumulator, no per-image Σx.
* **All k planes in one cycle** (the weight word is reused by every plane): the 64-input
  4-bit digits layer reads 4× fewer weight bits per MAC than a bit-serial layer, i.e. 4× fewer
  EBRs for the same throughput; the LUTs per binary MAC are the same (k popcount trees of S
  bits instead of one tree read k times) plus ⌈log2 k⌉ adders per PE.
* **Credits instead of a stall**: a clock enable on the datapath would be one net to every
  pipeline register of every PE.
* **Padding**: input padding is forced to 0 when written into the buffer (``(S − r)·k`` AND
  gates on the last beat), weight padding is stored 0 by the packer; the padding bits then add
  a known constant that the packer folds into T*/C (contract 2, exact).
* **Memory reads as an asynchronous port plus a register** (hw/registered_read.py): Yosys
  then honours ``no_rw_check`` (477 → 82 LUT4 outside the PEs of a 256→256 S32·P8 engine on
  iCE40).
* **Replica registers for wide fan-out** (ECP5, ``ram_reg``): each PE's weight read address
  and each 64-bit chunk of the input buffer's write enable, write address and read address
  come from registers of their own (``replica`` names, which the ECP5 script keeps apart:
  Yosys merged the per-PE address registers of builds 5–7 back into one per engine). The
  buffer's write then lands one or two cycles after the accept (two: a shared register
  before the replicas, when ``SF ≥ 3``); the reader gives a half back as many cycles before
  its last read, so this costs latency and none of the interval
  (:func:`~xnorflow.hw.dataflow.timing.buffer_write_lag`).
* **Accumulator cleared by the flip-flops' synchronous reset** (:class:`XnorPE`), not by a
  multiplexer in front of the adder.
* **MMV: m images per weight read** (``mmv``). Block RAM ports, not LUTs, bind a fast ECP5
  build: the SFC at 3 M images/s reads ~10,100 weight bits per cycle, the ECP5-85F's 208
  EBRs give 7,488. With m images per group the same MACs per cycle read m× fewer weight
  bits, so m× fewer weight memories (or ports) for the same rate. Shared by the m images:
  the weight memory and its registers, all control (one reader, one credit counter, one
  ``done``/``clear`` sideband), the channel memory read (the same T* for every image), the
  serial stage's compare. Per image: the popcount trees, the accumulator, the total register
  and (parallel stage) the compare. Streams stay per image, so converters, FIFOs and the
  core see the same beats; the price is buffering: the input buffer holds two groups (the
  cheapest that lets a group arrive while the previous one computes), and since a fold makes
  beat nf of all m images at once while the stream wants image 0's NF beats first, the
  output is a reorder buffer (:class:`GroupReorderBuffer`) that plays a whole group out as
  one burst. A group's m·SF input beats and m·NF output beats must fit in its SF·NF cycles
  (one beat per cycle on each stream), hence ``mmv ≤ NF`` and ``mmv ≤ SF`` (serial stage:
  ``mmv·P ≤ SF``, the walk over the m·P totals fits in a fold).
* **Whole groups only**: the engine starts a group when its m-th image is in; a run whose
  image count is not a multiple of m leaves the last partial group waiting (as an engine
  with part of an image waits for the rest): whoever feeds a pipeline sends whole groups of
  every engine's m (the dataflow core pads a run with images whose results it drops). A
  flush would cost a count per buffer half and a shorter burst in every engine, and would
  have to travel down the chain behind the last image.

Measured (``benchmarks/mvu_probe.py`` → ``benchmarks/results/mvu_probe.json``; one engine
alone on the chip behind a PLL, an LFSR and a shift register for stimulus, whose flip-flops
(``probe_ffs``: 65–161) are included; Yosys 0.70 + nextpnr 0.11 as ``xnorflow synth`` runs
them; LUTs = logic cells on iCE40, LUT4 incl. LUT RAM and carries on ECP5)::

    board       N→M      k  S·P     options                 LUTs   FFs  EBR  Fmax MHz  LUT/MAC
    UP5K        256→256  1  32·8    serial, ram_reg=0, L=2  1413   733   19     59.4     5.52
    UP5K        64→256   4  16·4    serial, ram_reg=0, L=2  1320   764    9     65.8     5.16
    UP5K        256→256  1  64·4    serial, ram_reg=0, L=2  1319   711   21     59.6     5.15
    ECP5-85F    256→256  1  32·8    defaults                1603  1450    8    130.9     6.26
    ECP5-85F    784→256  1  64·16   defaults                4780  4915   32    112.9     4.67
    ECP5-85F    784→256  1  64·8    mmv=2                   5292  4407   16    120.7     5.17
    ECP5-85F    256→256  1  128·16  weights in block RAM    8408  9122   64    110.6     4.11
    ECP5-85F    256→256  1  128·8   mmv=2, weights block    8899  8240   32    117.8     4.35
    ECP5-85F    784→256  1  392·8   mmv=2, weights block   25434 24684   88     64.6     4.06

(MAC = one binary multiply-accumulate, S·P·k·mmv per cycle; L = ``levels_per_stage``;
the mmv = 1 rows re-measured with the MMV code: LUTs within 0.5 % of before it, where Yosys' ABC met a
reordered netlist, Fmax within ±6 %, which is placement.) MMV against its mmv = 1 twin (the row
above it: the same MACs and cycles per image, twice the PEs): half the block RAMs for +10.7 %
LUT4 (784→256, S64) and +5.8 % (256→256, S128), and 7 MHz more (fewer block RAMs to reach). The
accumulators and compares are as many as the twin's (P·m); the LUTs go to buffers in LUT RAM
(784→256: the input buffer twice as wide, +32 DPR16X4; the reorder buffer, 36 columns of 16
bits, 12; 8 channel memories of 32 words instead of 16 of 16) and +210 LUT4 (Yosys' count) of
their read multiplexers and the control. The SFC's first layer at 32 cycles per image (3.1 M
images/s at 100 MHz) fits in 88 EBRs with mmv = 2 (its mmv = 1 twin needs 176 of the 208) but
closes at 64.6 MHz: about 700 endpoints miss 100 MHz, on routing (the worst, the input
handshake into the 784-bit buffer's write enable: 1.2 ns of logic, 14.2 ns of routing; the
784-bit input word and the 392-bit weight words spread over 25k LUTs): at that width the fabric
sets the clock, and a fan-out register stage (the input word per PE) is the likely next step.
Also measured: UP5K 256→256 S32·P8 with the parallel output stage 26 EBR (8 channel memories)
instead of 19; with ``levels_per_stage`` 1/2/3/all 1475/1402/1385/1335 logic cells at
65.0/61.3/42.2/37.5 MHz; ECP5 256→256 S128·P16 with Yosys' own choice (32-word weight memories
in LUT RAM) 16,628 LUT4, 0 EBR, 85.7 MHz. Yosys alone (flattened, no stimulus): UP5K 256→256
S32·P8 (as above) 1,065 SB_LUT4 (4.2 per MAC; nextpnr adds a logic cell for each flip-flop it
cannot pack with a LUT and for each carry leaving a chain), 64→256 k4 S16·P4 982 (3.8); ECP5
784→256 S64·P16 3,880 LUT4 (3.8), 256→256 S32·P8 1,189 (4.6); ``synth_ecp5 -nowidelut`` changes
those by < 1 %.
"""
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core.pipeline import delay, replica

from . import timing
from .block_fifo import chunk_widths
from .counters import counter, counter_at, wrapped_next
from ..register_slice import RegisterSlice
from ..registered_read import registered_read
from .shape import MvuShape

__all__ = ["MatrixVectorUnit", "XnorPE", "GroupReorderBuffer", "WriteSignature",
           "channel_result", "fold_count", "xnor_popcount", "adder_tree"]


class WriteSignature(wiring.Signature):
    """Run-time memory write port of an engine, seen from the side that drives it.

    Members
    -------
    sel : Out(max(1, ⌈log2 selects⌉))
        Which memory: ``p`` = PE ``p``'s weight memory, ``P + p`` = its channel memory
        (:meth:`MvuShape.weight_select`, :meth:`MvuShape.channel_select`).
    addr : Out(write_addr_width)
        Word address in that memory.
    data : Out(write_data_width)
        The word (LSB-aligned; bits above the memory's width are ignored).
    en : Out(1)
        Write ``data`` at ``addr`` of ``sel`` in this cycle.
    """

    def __init__(self, shape):
        self.mvu_shape = shape
        sel_bits = max(1, (shape.selects - 1).bit_length())
        super().__init__({"sel": Out(sel_bits), "addr": Out(shape.write_addr_width),
                          "data": Out(shape.write_data_width), "en": Out(1)})


def _add_weighted(a, sa, b, sb):
    """``a·2^sa + b·2^sb`` as (value, min(sa, sb)): the low bits of the less shifted term
    pass by the adder instead of meeting constant zeros in it."""
    if sa > sb:
        a, sa, b, sb = b, sb, a, sa
    d = sb - sa
    if d == 0:
        return a + b, sa
    if len(a) <= d:
        return Cat(a, Const(0, d - len(a)), b), sa
    return Cat(a[:d], a[d:] + b), sa


def adder_tree(m, terms, name, levels_per_stage=1):
    """Sum ``terms`` (a list of (value, shift) meaning value·2^shift) in a balanced tree that
    registers after every ``levels_per_stage``-th level and after the last
    (:func:`timing.adder_tree_stages`). Returns ((sum, shift), register stages)."""
    levels = (len(terms) - 1).bit_length()
    stages = 0
    for level in range(1, levels + 1):
        register = level % levels_per_stage == 0 or level == levels
        domain = m.d.sync if register else m.d.comb
        nxt = []
        for n, idx in enumerate(range(0, len(terms), 2)):
            if idx + 1 < len(terms):
                value, shift = _add_weighted(*terms[idx], *terms[idx + 1])
            else:
                value, shift = terms[idx]
            reg = Signal(len(value), name=f"{name}_l{level}_{n}", reset_less=True)
            domain += reg.eq(value)
            nxt.append((reg, shift))
        terms = nxt
        stages += register
    return terms[0], stages


def xnor_popcount(m, x, w, name, levels_per_stage=1, leaf_reg=True):
    """popcount(XNOR(x, w)) of two equal-width values, pipelined; returns (count, stages).

    The first level is one 4-input function per output bit: two XNOR pairs summed into a
    2-bit count (``e0 XOR e1``, ``e0 AND e1``), so the XNOR costs no LUT of its own;
    registered if ``leaf_reg``, else part of the first adder level's stage (one flip-flop
    per synapse fewer: the CNV's three big conv engines held 7,680 of them, paired with
    their LUTs, at 82 % of the ECP5's flip-flops); then :func:`adder_tree` (carry chains)
    over the ⌈S/2⌉ counts.
    """
    domain = m.d.sync if leaf_reg else m.d.comb
    leaves = []
    for g in range(0, len(x), 2):
        e0 = ~(x[g] ^ w[g])
        if g + 1 < len(x):
            e1 = ~(x[g + 1] ^ w[g + 1])
            reg = Signal(2, name=f"{name}_g{g // 2}", reset_less=True)
            domain += reg.eq(Cat(e0 ^ e1, e0 & e1))
        else:
            reg = Signal(1, name=f"{name}_g{g // 2}", reset_less=True)
            domain += reg.eq(e0)
        leaves.append((reg, 0))
    (count, _), stages = adder_tree(m, leaves, name, levels_per_stage)
    return count, int(leaf_reg) + stages




def fold_count(m, shape, x, w, levels_per_stage=1, leaf_reg=True):
    """``U_t = Σ_b 2^b·popcount(XNOR(x_b, w))`` of one input word ``x`` (k planes of S lanes,
    element ``j`` in bits ``[k·j, k·j + k)``) and weight word ``w``, through
    :func:`xnor_popcount` per plane and an :func:`adder_tree` over the planes; valid
    :func:`~xnorflow.hw.dataflow.timing.datapath_stages` cycles after ``x`` and ``w``."""
    S, k = shape.simd, shape.input_bits
    counts = []
    for b in range(k):
        plane = Cat(x[j * k + b] for j in range(S))
        count, stages = xnor_popcount(m, plane, w, f"b{b}", levels_per_stage, leaf_reg)
        assert stages == timing.popcount_stages(S, levels_per_stage, leaf_reg)
        counts.append((count, b))
    (u_t, shift), stages = adder_tree(m, counts, "planes", levels_per_stage)
    assert shift == 0 and stages == timing.plane_stages(k, levels_per_stage)
    return u_t


#: Most bits of one input-buffer memory with ``ram_reg``: each such chunk has its own replica
#: address and enable registers (:meth:`MatrixVectorUnit._input_buffer`); 64 bits of a
#: 16-word buffer are 16 ECP5 LUT RAM blocks. 16-bit chunks (CNV build cnv9j) cost 1,800
#: LUTs and 1,200 flip-flops more, placed at an estimated 59 MHz (cnv9e 78.7) and did not
#: route: kept at 64, though two builds put one replica 15 ns from a block (cnv9f, cnv9i).
BUFFER_CHUNK_BITS = 64

#: Most block RAMs one weight-memory chunk spans with ``ram_reg``. Each chunk has its own
#: read-address, write-enable, write-address and write-data registers
#: (:meth:`MatrixVectorUnit._weights`), so a register reaches at most this many block RAMs:
#: one write-enable register reaching the 88 block RAMs of the CNV's dense layer took 14.0 ns
#: of route (ECP5 CNV build cnv10h's critical path), and a chunk's write address reaching
#: conv 4's 11 block RAMs (384 × 96 words, 512 × 36 each) was 2.5 ns late at 100 MHz (cnv9e).
WEIGHT_CHUNK_BRAMS = 4

#: PEs whose memories share one write-data register after the engine's write stage with
#: ``ram_reg`` (:meth:`MatrixVectorUnit._group_write_data`): conv 2 of the CNV (16 PEs) then
#: has four, each bit of the stage reaching four registers and each of those four PEs'. Their
#: (unbanked) weight memories share a first read-address register likewise
#: (:meth:`MatrixVectorUnit._group_read_address`).
WRITE_GROUP_PES = 4

#: Most words of one weight-memory bank with ``ram_reg``: a 2,048 × 9 block RAM's depth. A
#: deeper block-RAM weight memory is split into banks, each read into a register of its own
#: beside its block RAMs before the multiplexer over the banks (:meth:`MatrixVectorUnit._weights`):
#: Yosys' own depth cascade multiplexes the blocks' unregistered outputs (5.8 ns clock-to-out)
#: and then routes them across the die to one register, 14.2 ns for the CNV's dense layer
#: 6272 → 256 on one PE (8,192 × 196 in 95 block RAMs, ECP5 CNV build cnv9a's critical path).
WEIGHT_BANK_WORDS = 2048

#: Most bits of one LUT-RAM weight-memory chunk with ``ram_reg``: 16 ECP5 DPR16X4, as the
#: input buffer's (:data:`BUFFER_CHUNK_BITS`). A LUT RAM's write address reaches every one of
#: its blocks: one register for conv 2's 192-bit memories (48 blocks a PE) was 3.7 ns late
#: at 100 MHz (ECP5 CNV build cnv10k).
LUT_WEIGHT_CHUNK_BITS = 64


def _bank_bits():
    """The address bits inside one weight bank (:data:`WEIGHT_BANK_WORDS`, a power of two)."""
    return (WEIGHT_BANK_WORDS - 1).bit_length()


def _bram_columns(depth):
    """Columns of the widest DP16KD configuration holding ``depth`` words (512 × 36, 1,024 ×
    18, 2,048 × 9); a deeper memory is banks of :data:`WEIGHT_BANK_WORDS` × 9."""
    for columns, words in ((36, 512), (18, 1024)):
        if depth <= words:
            return columns
    return 9


def weight_chunk_widths(width, depth, lut_ram=False):
    """The column widths of a weight memory of ``width`` × ``depth`` split into chunks,
    lowest bits first. Block RAM: chunks of at most :data:`WEIGHT_CHUNK_BRAMS` block RAMs over
    all of the memory's banks, whole block-RAM columns (36, 18 or 9 by the depth), so
    splitting never adds a block RAM. LUT RAM (``lut_ram``): chunks of at most
    :data:`LUT_WEIGHT_CHUNK_BITS` columns (multiples of 4, a DPR16X4's width)."""
    if lut_ram:
        return chunk_widths(width, LUT_WEIGHT_CHUNK_BITS)
    banks = -(-max(depth, 1) // WEIGHT_BANK_WORDS)
    columns = _bram_columns(min(depth, WEIGHT_BANK_WORDS))
    return chunk_widths(width, max(1, WEIGHT_CHUNK_BRAMS // banks) * columns)


def _memory(width, depth, ram_style=None):
    """A run-time written memory of at least two words.

    init=[]: written before use (by the host, or by the engine ahead of its reads).
    no_rw_check: no read ever needs a word written in the same cycle (weights and constants
    are written while idle; the reader never reads the buffer half or the output column being
    written), so Yosys adds no collision logic. At least two words: a one-word memory has a
    zero-width address, which the Verilog writer emits as an illegal [-1:0] range (only fully
    unfolded shapes have one)."""
    attrs = {"no_rw_check": 1}
    if ram_style is not None:
        attrs["ram_style"] = ram_style
    return Memory(shape=width, depth=max(depth, 2), init=[], attrs=attrs)


def _table(entries, bits):
    """``entries`` padded to ``2**bits`` with the last one repeated: every index value is a
    case, so the Verilog's case statement for ``Array(...)[index]`` is complete."""
    return Array(entries + [entries[-1]] * ((1 << bits) - len(entries)))


def _nonneg_signed(value):
    """An unsigned value as a signed one of one more bit (so subtraction stays signed)."""
    return Cat(value, Const(0, 1)).as_signed()


def channel_result(shape, total, word):
    """A channel's output from its fold sum ``total`` (U) and its channel word: the
    threshold bit ``(U ≥ T*) XOR inv``, or the raw integer ``2·U − (2·S·SF − N)`` (binary
    input) or ``U − C`` (unsigned input) as a signed value (hw/dataflow/shape.py)."""
    if shape.output == "threshold":
        t_star, inv = word[:shape.threshold_width], word[shape.threshold_width]
        return (total >= t_star) ^ inv
    if shape.input_kind == "binary":
        return _nonneg_signed(Cat(Const(0, 1), total)) - shape.binary_offset
    return _nonneg_signed(total) - word


class GroupReorderBuffer(wiring.Component):
    """Output buffer of an MMV engine: columns in fold order in, beats in image order out.

    A fold of a group of m images makes beat ``nf`` of all m images at once (a *column*); the
    output stream carries image 0's NF beats, then image 1's, and so on. This buffer stores
    columns as they come and, once a group's last column is in, plays the group out as one
    burst of ``m·NF`` beats, one per cycle while ``o`` is ready. A burst keeps every group's
    schedule identical (:func:`~xnorflow.hw.dataflow.timing.mvu_output_offsets`); sending image 0's
    beats as their folds end would only make image 0 earlier, never the group's last beat,
    and would collide with the previous group's tail whenever ``(m − 1)·NF ≥ SF``.

    Parameters
    ----------
    beat_bits : int
        Bits of one output beat (P or P·acc_width).
    mmv : int
        Images per group, m ≥ 1.
    neuron_folds : int
        NF, columns (beats per image) per group.
    columns : int
        Column entries, at least NF (a group's columns are all held before its first beat
        leaves); :func:`~xnorflow.hw.dataflow.timing.mvu_fifo_depth` gives the least that never delays
        the engine's folds while ``o`` is ready.
    ram_style : str or None
        Yosys ``ram_style`` of the column memory (``columns`` × ``m·beat_bits``); its read is
        registered, so block RAM, LUT RAM and flip-flops all fit.
    out_slice : bool
        Put skid :class:`~xnorflow.hw.register_slice.RegisterSlice` s on both sides
        of the image multiplexer (:data:`~xnorflow.hw.dataflow.timing.OUTPUT_SLICES`): the
        first carries the whole column and the image's index, so the read (a block RAM's
        ≈ 5.6 ns clock-to-out on ECP5, Yosys maps DP16KD without its output register) meets
        only a register (ECP5 SFC build 19: read and multiplexer into one slice behind them,
        2.1 ns late); the second carries the beat, so the next converter's gathering
        registers, spread over the next engine, are reached by route alone (build 20: the
        multiplexer and that route, 0.9 ns late). Their timing is the slices': one cycle
        more each, ``SkidSliceModel``.

    Ports
    -----
    w_en : In(1)
        Store ``w_data`` as the next column (columns arrive in order, NF per group). The
        writer must hold a credit for it: at most ``columns`` columns written and not yet
        released.
    w_data : In(m·beat_bits)
        The column: image ``j``'s beat in bits ``[j·beat_bits, (j + 1)·beat_bits)``.
    o : Out(stream.Signature(beat_bits))
        The beats, image after image; ``valid`` and ``payload`` come from registers.
    release : Out(1)
        A column was read for the last time in this cycle (by the group's last image): it may
        be written again from the next cycle on (the writer's credit comes back).

    Timing: a group's first beat is valid two cycles after the cycle its last column was
    written (the count of whole groups, then the memory's registered read), four with
    ``out_slice``; the others follow one per cycle while ``o`` is ready.
    """

    def __init__(self, beat_bits, mmv, neuron_folds, columns, ram_style=None, out_slice=False):
        if columns < neuron_folds:
            raise ValueError(f"GroupReorderBuffer: {columns} columns cannot hold a group's "
                             f"{neuron_folds}")
        self.beat_bits, self.mmv, self.neuron_folds = beat_bits, mmv, neuron_folds
        self.columns, self.ram_style, self.out_slice = columns, ram_style, bool(out_slice)
        super().__init__({"w_en": In(1), "w_data": In(mmv * beat_bits),
                          "o": Out(stream.Signature(beat_bits)), "release": Out(1)})

    def elaborate(self, platform):
        m = Module()
        B, M, NF, C = self.beat_bits, self.mmv, self.neuron_folds, self.columns
        m.submodules.columns = mem = _memory(M * B, C, self.ram_style)
        wr, rd = mem.write_port(), mem.read_port(domain="comb")

        # ---- write side: the next column, in order ---------------------------------------
        wr_col, wr_nf = counter(C), counter(NF)
        m.d.comb += [wr.en.eq(self.w_en), wr.addr.eq(wr_col), wr.data.eq(self.w_data)]
        with m.If(self.w_en):
            m.d.sync += [wr_col.eq(wrapped_next(wr_col, C)), wr_nf.eq(wrapped_next(wr_nf, NF))]
        group_in = self.w_en & (wr_nf == NF - 1)

        # ---- read side: the group's columns once per image --------------------------------
        # base = the group's first column; col walks base, base + 1, … (mod C) for each image
        base, col = counter(C), counter(C)
        nf, image = counter(NF), counter(M)
        groups = Signal(range(C // NF + 2))     # whole groups in, not yet fully loaded
        valid = Signal()
        taken = Signal()                        # the registered beat may be replaced
        load = (groups != 0) & (~valid | taken)
        image_end = nf == NF - 1
        group_end = image_end & (image == M - 1)
        with m.If(load):
            m.d.sync += [valid.eq(1), nf.eq(wrapped_next(nf, NF))]
            with m.If(group_end):
                m.d.sync += [base.eq(wrapped_next(col, C)), col.eq(wrapped_next(col, C)), image.eq(0)]
            with m.Elif(image_end):
                m.d.sync += [col.eq(base), image.eq(image + 1)]
            with m.Else():
                m.d.sync += col.eq(wrapped_next(col, C))
        with m.Elif(taken):
            m.d.sync += valid.eq(0)
        m.d.sync += groups.eq(groups + group_in - (load & group_end))
        m.d.comb += [rd.addr.eq(col), self.release.eq(load & (image == M - 1))]

        # the whole column is registered (the memory's read register), the image's beat picked
        # after it: a multiplexer before the register would keep it out of a block RAM
        word = registered_read(m, rd.data, "column", en=load)
        picked = Signal.like(image, name="picked_image")
        with m.If(load):
            m.d.sync += picked.eq(image)
        if self.out_slice:
            m.submodules.out_slice = out = RegisterSlice(len(word) + len(picked), skid=True)
            m.d.comb += [out.i.valid.eq(valid), out.i.payload.eq(Cat(word, picked)),
                         taken.eq(out.i.ready)]
            word, picked = out.o.payload[:len(word)], out.o.payload[len(word):]
            beats = [word[j * B:(j + 1) * B] for j in range(M)]
            m.submodules.beat_slice = beat = RegisterSlice(B, skid=True)
            m.d.comb += [beat.i.valid.eq(out.o.valid), out.o.ready.eq(beat.i.ready),
                         beat.i.payload.eq(_table(beats, len(picked))[picked])]
            wiring.connect(m, beat.o, wiring.flipped(self.o))
            return m
        m.d.comb += taken.eq(self.o.ready)
        beats = [word[j * B:(j + 1) * B] for j in range(M)]
        m.d.comb += [self.o.valid.eq(valid),
                     self.o.payload.eq(_table(beats, len(picked))[picked])]
        return m


class XnorPE(wiring.Component):
    """One processing element: k planes × S synapses per cycle into one fold sum.

    Datapath only (the engine owns the memories, the control and the output stage): per
    cycle ``U_t = Σ_b 2^b·popcount(XNOR(x_b, w))`` through :func:`xnor_popcount` per plane and
    an :func:`adder_tree` over the planes, then ``acc += U_t``; with the fold's last count the
    sum goes to ``total`` instead and ``acc`` restarts from 0.

    Parameters
    ----------
    shape : MvuShape
    levels_per_stage : int
        Adder levels between two registers in the trees (and a register after the last).
    leaf_reg : bool
        Register the popcounts' first level, the XNOR pairs' 2-bit counts
        (:func:`xnor_popcount`).

    Ports
    -----
    x : In(k·S)
        The input word, element ``j`` in bits ``[k·j, k·j + k)``, padding cleared.
    w : In(S)
        The weight word of the same synapse fold.
    last : In(1)
        The count that reaches the accumulator this cycle (``datapath_stages`` cycles after
        its ``x``/``w``) is the last of its fold: ``acc + U_t`` goes to ``total``.
    clear : In(1)
        Restart the accumulator from 0 after this cycle: ``last``, or no count this cycle.
        (A synchronous reset, the flip-flops' own reset input: no multiplexer per bit, which
        a ``first ? 0 : acc`` formulation costs in front of the adder: 10 LUT4 per PE on
        ECP5 at S = 64.)
    total : Out(u_width)
        The last fold's sum U, from the cycle after its ``last`` until the next ``last``.

    All registers are reset-less: the control's sideband says which sums are real.
    """

    def __init__(self, shape, levels_per_stage=1, leaf_reg=True):
        self.mvu_shape = shape
        self.levels_per_stage = levels_per_stage
        self.leaf_reg = leaf_reg
        super().__init__({"x": In(shape.in_beat_bits), "w": In(shape.simd), "last": In(1),
                          "clear": In(1), "total": Out(shape.u_width)})

    def elaborate(self, platform):
        m = Module()
        s = self.mvu_shape
        u_t = fold_count(m, s, self.x, self.w, self.levels_per_stage, self.leaf_reg)
        acc = Signal(s.u_width, reset_less=True)
        total = Signal(s.u_width, reset_less=True)
        m.d.sync += acc.eq(Mux(self.clear, 0, (acc + u_t)[:s.u_width]))
        with m.If(self.last):
            m.d.sync += total.eq(acc + u_t)
        m.d.comb += self.total.eq(total)
        return m


class MatrixVectorUnit(wiring.Component):
    """One dense layer as a streaming engine: P channels × S synapses per cycle, for m images.

    Parameters
    ----------
    n_in, n_out, simd, pe, input_bits, input_kind, output, acc_width
        The layer and its folding: :class:`~xnorflow.hw.dataflow.shape.MvuShape` (validated there;
        ``simd ≤ n_in``, ``pe ≤ n_out``, any N and M: padding is exact).
    ram_reg : bool
        Register the weight, input-buffer and channel-memory read data in the fabric before
        use, and give every weight memory read-address registers of its own
        (:func:`~xnorflow.hw.dataflow.timing.ram_reg_stages` cycles of latency: 4, 3 with
        LUT-RAM weights, which ``ram_reg`` pins on memories of at most
        :data:`~xnorflow.hw.dataflow.timing.LUT_RAM_DEPTH` words; the write port likewise,
        :meth:`_write`). On ECP5 the block RAM's clock-to-out (≈ 6 ns,
        Yosys maps DP16KD without its output register) otherwise meets the first popcount
        LUT in the same cycle; on iCE40 the register costs a logic cell per bit (an iCE40
        flip-flop cannot pack with an unrelated LUT), and the UP5K's targets are slow
        enough without it.
    levels_per_stage : int
        Adder levels between two pipeline registers in the popcount and plane trees (1: a
        register after every adder; ECP5 LUT4s are fewest so, since Yosys builds adders of
        ≤ 4 result bits from LUTs there; on iCE40 2 saves 5 % of the logic cells at 61 MHz
        instead of 65, 3 saves 6 % at 42 MHz: ``benchmarks/mvu_probe.py``).
    leaf_reg : bool
        Register the popcounts' first level (:func:`xnor_popcount`); False: one cycle of
        latency and one flip-flop per synapse and image lane fewer.
    output_stage : ``"parallel"`` or ``"serial"``
        ``"parallel"``: one compare (or subtract) per PE and image and one channel memory per
        PE, NF words deep. ``"serial"``: one compare for the engine, walking the m·P fold
        sums one per cycle, and one channel memory for all PEs (P·NF words): P − 1 block RAMs
        fewer, for the iCE40 whose 30 EBRs bind before its logic; needs
        ``mmv·pe ≤ ⌈n_in/simd⌉`` (a walk must end before the next fold's sums arrive) and
        adds ``mmv·P + ram_reg`` cycles of latency. The write port's layout is the same for
        both.
    fifo_depth : int or None
        Output buffer entries: beats of the output FIFO (``mmv = 1``) or columns of the
        :class:`GroupReorderBuffer` (``mmv > 1``; one column = one beat of each of the m
        images, at least NF of them); default :func:`~xnorflow.hw.dataflow.timing.mvu_fifo_depth`, the
        least that never delays a fold while ``o`` is ready. More entries absorb longer
        stalls of ``o``.
    ram_styles : dict or None
        Yosys ``ram_style`` per memory kind: keys ``"weights"``, ``"channels"``, ``"buffer"``
        and, with ``mmv > 1``, ``"output"`` (the reorder buffer's columns); default: Yosys
        decides (block RAM, LUT RAM on ECP5, or flip-flops). ``{"weights": "huge"}`` puts the
        weights in the UP5K's SPRAM (16 bits wide each, single-ported: the weight memories
        then share one address, the write port's while ``wr.en``). ``{"weights": "block"}``
        keeps shallow weight memories in block RAM on ECP5, where Yosys would otherwise put
        a 32-word memory in LUT RAM (measured: twice the LUTs; "Measured" above).
    mmv : int
        m, images per group (FINN's MMV): every weight word read is applied to the m images
        of a group, with m popcount trees and accumulators per PE; ``1 ≤ mmv ≤
        min(⌈n_in/simd⌉, ⌈n_out/pe⌉)`` (a group's m·SF input beats and m·NF output beats
        must fit in its SF·NF cycles, one beat per cycle each).
    flags : bool
        Threshold output only: every beat carries its P channels' ``inv`` bits (1: direction
        −1) above their P result bits, for a 2×2 max-pool behind a conv engine
        (hw/dataflow/pool.py: OR for +1, AND for −1). One register per PE (parallel) or one
        shift register (serial); no change to the timing.
    output_slice : bool
        ``mmv > 1`` only: skid register slices before and after the reorder buffer's image
        multiplexer (:class:`GroupReorderBuffer` ``out_slice``), a cycle more each after
        the engine's own timing (``SkidSliceModel``; the timing functions of
        :mod:`~xnorflow.hw.dataflow.timing` leave it out, as the pipeline's cycle model adds
        it: :meth:`DataflowConfig.output_slice`). ``o.ready`` then reaches no credit logic
        in the same cycle.
    in_words : int
        W, words per input beat (default 1). With ``W > 1`` the engine takes each beat as W
        words of ``k·S/W`` bits, word after word, each written straight into its column of
        the input buffer (a write enable per column; with ``mmv > 1`` image after image, W
        words each), so no converter in front of it gathers them into a beat register (on
        the UP5K a logic cell per bit:
        :attr:`~xnorflow.hw.dataflow.config.DataflowConfig.first_in_words`; on ECP5 a wide
        register whose slots' enables reached across the engine: a conv engine's window
        beats, :attr:`~xnorflow.hw.dataflow.config.DataflowConfig.conv_in_words`). Needs
        whole beats (W divides ``k·S`` and S divides ``n_in``); the timing counts from a
        beat's last word as from a beat.

    Ports
    -----
    i : In(stream.Signature(k·S/W))
        Input beats (W words each with ``in_words``, the first word the beat's low bits),
        ``SF`` per image, element ``j`` of beat ``sf`` (input ``sf·S + j``) in bits
        ``[k·j, k·j + k)``; padding elements are ignored. A group's m images follow one
        another (image 0's SF beats, then image 1's, …). Accepted whenever a buffer half is
        free (``ready`` depends on no other input). A group is computed once its m-th image
        is in: send whole groups.
    o : Out(stream.Signature(P, 2·P with flags, or P·acc_width))
        Output beats, ``NF`` per image, image after image: channel ``nf·P + p`` in bit ``p``
        (threshold) or in bits ``[p·W, p·W + W)``, two's complement, ``W = acc_width``
        (raw); with ``flags`` channel ``nf·P + p``'s inv in bit ``P + p``. ``valid`` comes
        from registers (the FIFO level, or the reorder buffer's state); ``payload`` is
        stable while ``valid`` and not ``ready``.
    wr : In(WriteSignature(shape))
        Run-time loading of the weight and channel memories (layout in
        :mod:`xnorflow.hw.dataflow.shape`; ``sw/layers/dataflow_pack.py`` makes the writes, the same
        for every ``mmv``). Write only while the engine is idle (no image in flight): reads do
        not wait for writes. At most one write every other cycle: with ``ram_reg`` a memory
        holds a write's data in one register while its enable and address take two (the
        dataflow core's writes are three or more cycles apart).
    busy : Out(1)
        High in every cycle in which the engine consumes a weight word (utilisation counters):
        ``SF·NF`` cycles per group.

    Timing (:mod:`xnorflow.hw.dataflow.timing`)
    -----------------------------------
    * initiation interval ``⌈N/S⌉·⌈M/P⌉`` cycles per group of m images
      (:func:`~timing.mvu_cycles`), for every k: group n + 1 is written into the other buffer
      half while group n computes, so with input available and ``o`` ready consecutive
      groups follow without a bubble;
    * latency from the cycle the last input beat of a group is accepted to the cycle its
      first output beat is valid: ``SF + 4 + ram_reg_stages + popcount_stages(S) + plane_stages(k)``
      (+ ``m·P + ram_reg`` with the serial output stage, + ``(NF − 1)·SF + 1`` with
      ``mmv > 1``; :func:`~timing.mvu_latency`); with ``mmv = 1`` beat ``nf`` follows ``nf·SF``
      cycles later, with ``mmv > 1`` image ``j``'s beat ``nf`` ``j·NF + nf`` cycles later
      (:func:`~timing.mvu_output_offsets`).
    """

    OUTPUT_STAGES = ("parallel", "serial")
    RAM_KINDS = ("weights", "channels", "buffer", "output")

    def __init__(self, n_in, n_out, simd, pe, input_bits=1, output="threshold", acc_width=None,
                 *, input_kind=None, ram_reg=True, levels_per_stage=1, output_stage="parallel",
                 fifo_depth=None, ram_styles=None, mmv=1, flags=False, output_slice=False,
                 in_words=1, leaf_reg=True):
        self.shape = s = MvuShape(n_in, n_out, simd, pe, input_bits, input_kind, output,
                                  acc_width, flags)
        self.ram_reg = bool(ram_reg)
        if not isinstance(levels_per_stage, int) or levels_per_stage < 1:
            raise ValueError(f"MVU levels_per_stage must be a positive integer, "
                             f"got {levels_per_stage!r}")
        self.levels_per_stage = levels_per_stage
        self.leaf_reg = bool(leaf_reg)
        if output_stage not in self.OUTPUT_STAGES:
            raise ValueError(f"MVU output_stage must be one of {self.OUTPUT_STAGES}, "
                             f"got {output_stage!r}")
        self.output_stage = output_stage
        self.mmv = self._checked_mmv(mmv)
        if fifo_depth is not None and (not isinstance(fifo_depth, int) or fifo_depth < 1):
            raise ValueError(f"MVU fifo_depth must be a positive integer, got {fifo_depth!r}")
        if fifo_depth is not None and self.mmv > 1 and fifo_depth < s.neuron_folds:
            raise ValueError(f"MVU fifo_depth {fifo_depth} is below the {s.neuron_folds} neuron "
                             f"folds: with mmv > 1 it counts columns, and a group's are all "
                             f"held before its first beat leaves")
        self.ram_styles = dict(ram_styles or {})
        unknown = set(self.ram_styles) - set(self.RAM_KINDS)
        if unknown:
            raise ValueError(f"MVU ram_styles: unknown memory kind(s) {sorted(unknown)}")
        # a shallow weight memory is LUT RAM on ram_reg builds, pinned so: the registers after
        # its read (timing.ram_reg_stages) must not rest on Yosys' choice
        self.lut_weights = self.ram_reg and timing.weights_in_lut_ram(
            n_in, n_out, simd, pe, self.ram_styles.get("weights"))
        if self.lut_weights:
            self.ram_styles["weights"] = "distributed"
        if "output" in self.ram_styles and self.mmv == 1:
            raise ValueError("MVU ram_styles 'output' is the reorder buffer of mmv > 1; with "
                             "mmv = 1 the output FIFO has no memory style")
        if output_slice and self.mmv == 1:
            raise ValueError("MVU output_slice cuts the reorder buffer's read (mmv > 1); with "
                             "mmv = 1 the output FIFO has none")
        self.output_slice = bool(output_slice)
        self.in_words = self._checked_in_words(in_words)
        self.fifo_depth = fifo_depth or timing.mvu_fifo_depth(**self._timing_args())
        super().__init__({
            "i": In(stream.Signature(s.in_beat_bits // self.in_words)),
            "o": Out(stream.Signature(s.out_beat_bits)),
            "wr": In(WriteSignature(s)),
            "busy": Out(1),
        })

    def _checked_in_words(self, words):
        """``in_words`` validated (a ValueError naming what it needs)."""
        s = self.shape
        if not isinstance(words, int) or isinstance(words, bool) or words < 1:
            raise ValueError(f"MVU in_words must be a positive integer, got {words!r}")
        if words == 1:
            return 1
        if s.in_beat_bits % words or s.last_beat_elements != s.simd:
            raise ValueError(f"MVU in_words {words} must split every {s.in_beat_bits}-bit beat "
                             f"into whole words: needs it to divide k·S and S to divide "
                             f"n_in = {s.n_in}")
        return words

    def _checked_mmv(self, mmv):
        """``mmv`` validated against the folding (a ValueError naming the bound)."""
        s = self.shape
        if not isinstance(mmv, int) or isinstance(mmv, bool) or mmv < 1:
            raise ValueError(f"MVU mmv must be a positive integer, got {mmv!r}")
        SF, NF, P = s.synapse_folds, s.neuron_folds, s.pe
        if mmv > NF:
            raise ValueError(f"MVU mmv {mmv} exceeds the {NF} neuron folds ⌈n_out/pe⌉: a group's "
                             f"{mmv}·{SF} input beats would not arrive in its {SF}·{NF} cycles")
        if self.output_stage == "serial":
            if mmv * P > SF:
                sums, bound = (f"{P} PEs' sums", "pe") if mmv == 1 else \
                    (f"mmv·pe = {mmv * P} sums", "mmv·pe")
                raise ValueError(f"MVU output_stage 'serial' walks the {sums} in one fold of "
                                 f"{SF} cycles: needs {bound} ≤ ⌈n_in/simd⌉")
        elif mmv > SF:
            raise ValueError(f"MVU mmv {mmv} exceeds the {SF} synapse folds ⌈n_in/simd⌉: a "
                             f"group's {mmv}·{NF} output beats would not leave in its "
                             f"{SF}·{NF} cycles")
        return mmv

    # -- cycle model of this instance ------------------------------------------------------

    def _timing_args(self):
        s = self.shape
        return dict(n_in=s.n_in, n_out=s.n_out, simd=s.simd, pe=s.pe, input_bits=s.input_bits,
                    ram_reg=self.ram_reg, levels_per_stage=self.levels_per_stage,
                    output_stage=self.output_stage, mmv=self.mmv,
                    weight_style=self.ram_styles.get("weights"), leaf_reg=self.leaf_reg)

    @property
    def cycles_per_group(self):
        """Initiation interval: cycles per group of ``mmv`` images (:func:`timing.mvu_cycles`)."""
        s = self.shape
        return timing.mvu_cycles(s.n_in, s.n_out, s.simd, s.pe, s.input_bits, self.mmv)

    @property
    def cycles_per_image(self):
        """Cycles per image on average: ``cycles_per_group / mmv`` (an int when it divides)."""
        group = self.cycles_per_group
        return group // self.mmv if group % self.mmv == 0 else group / self.mmv

    @property
    def buffer_write_lag(self):
        """Cycles from accepting an input beat to its word in the input buffer: with
        ``ram_reg`` ``min(2, SF − 1)`` (the write's registers, :meth:`_input_buffer`), else
        0 (:func:`~xnorflow.hw.dataflow.timing.buffer_write_lag`)."""
        return timing.buffer_write_lag(self.ram_reg, self.shape.synapse_folds)

    @property
    def latency(self):
        """Cycles from accepting a group's last input beat to its first output beat."""
        return timing.mvu_latency(**self._timing_args())

    # -- gateware ---------------------------------------------------------------------------

    def _memory(self, kind, width, depth):
        """A memory of ``kind`` (a key of ``ram_styles``), with its Yosys ``ram_style``."""
        return _memory(width, depth, self.ram_styles.get(kind))

    def _edge(self, m, value, name):
        """``value`` registered once more if ``ram_reg``."""
        if not self.ram_reg:
            return value
        reg = Signal.like(value, name=name, reset_less=True)
        m.d.sync += reg.eq(value)
        return reg

    def _near(self, m, value, name):
        """``value`` registered once more by the memory it was read from, if ``ram_reg`` and
        the weights are in block RAM (:func:`~xnorflow.hw.dataflow.timing.ram_reg_stages`):
        the weight word and the input word pass it alike, so they stay aligned."""
        return value if self.lut_weights else self._edge(m, value, name)

    def _selected(self, select, wr=None):
        """The write port (``wr``, default the engine's own) writes the memory with this
        select in this cycle."""
        wr = self.wr if wr is None else wr
        return wr.en & (wr.sel == select)

    def _write(self, m, port, select, name, pe, lo=0, bank=None, chunk=None):
        """Drive memory write port ``port`` from ``wr`` for PE ``pe``'s memory with ``select`` (its
        data from bit ``lo`` of the written word: a column chunk starts there). ``bank`` and
        ``chunk``: a bank of a banked chunk (:meth:`_banked_chunk`), its number and its
        chunk's name.

        With ``ram_reg`` (the ECP5 builds) a write passes a copy of ``wr`` per engine
        (:meth:`_write_stage`), then replica registers of each memory's own for its enable,
        address and data (so Yosys cannot merge them back into one), the enable and address
        twice. The stages let the placer put the first near the engine's middle and the last
        beside the block RAMs: with one stage
        a memory's enable register sat by the engine's decode, 11.8 ns of route from a block
        RAM 39 columns away (ECP5 SFC build 13's critical path), and one address net to every
        block RAM of an engine took 22.1 ns (the 3 M/s SFC build's first). Writes happen only
        while no image is in flight, so the cycles change nothing else (a write reaches its
        memory eight cycles after its bus action; START is a bus action of its own, three or
        more cycles after the last write's, and a run's first weight read is more than five
        cycles after START: tests/test_dataflow_core.py writes a weight word just before
        START and checks the run used it)."""
        if not self.ram_reg:
            hit = self._selected(select)
            m.d.comb += [port.en.eq(hit), port.addr.eq(self.wr.addr),
                         port.data.eq(self.wr.data[lo:])]
            return
        wr = self._write_stage(m)
        hit = self._selected(select, wr)
        if bank is not None:     # a bank of :meth:`_banked_chunk`: its words' addresses only
            hit &= wr.addr[_bank_bits():] == bank
        # replicas: a PE's column chunks load the same enable and address, which Yosys would
        # merge back into one register for all their block RAMs (it did: ECP5 CNV build cnv10i,
        # one write address to the 88 block RAMs of dense layer 6, 15.0 ns of route)
        # The address and data copy the stage every cycle: the stage holds a write's until
        # the next write, two or more cycles later (``wr``'s contract), so no clock enable
        # from the memory's decode reaches their flip-flops (ECP5 CNV build cnv10k: the
        # decode's LUT as the enable of 48 data bits, 3.1 ns late).
        en_early = Signal(name=replica(f"{name}_wr_en_early"))
        data = Signal(len(port.data), name=replica(f"{name}_wr_data"), reset_less=True)
        m.d.sync += [en_early.eq(hit), data.eq(self._group_write_data(m, wr, pe)[lo:])]
        # a banked chunk's banks share a first address register of their own chunk: fc6's one
        # PE register reaching its 22 chunks' 88 bank registers across the die was 13.4 ns
        # of route (CNV build cnv9k's critical path)
        addr_early = self._pe_write_address(m, wr, pe, chunk)
        # The enable and address go through one register more, which the placer can put by
        # the block RAMs (the enable's one register sat 44 columns from them, 12.8 ns of
        # route: ECP5 SFC build 17); the data is still the write's then (above).
        en = self._edge(m, en_early, replica(f"{name}_wr_en"))
        addr = self._edge(m, addr_early, replica(f"{name}_wr_addr"))
        m.d.comb += [port.en.eq(en), port.addr.eq(addr), port.data.eq(data)]

    def _group_write_data(self, m, wr, pe):
        """The write data's register for PE ``pe``'s group of :data:`WRITE_GROUP_PES` PEs,
        between the engine's write stage and each memory's own: a bit of the stage then
        reaches a few group registers, and each of those its group's memories, instead of one
        register per memory across the engine (ECP5 CNV build cnv9m: one bit of conv 2's
        write stage to 16 PEs' data registers, 13.2 ns of route). It costs no cycle: the
        stage holds a write's data until the next write, two or more cycles later, so the
        memories' data registers still hold it when the enable's second register writes."""
        group = pe // WRITE_GROUP_PES
        if group not in self._wr_data_group:
            data = Signal.like(wr.data, name=replica(f"group{group}_wr_data"), reset_less=True)
            m.d.sync += data.eq(wr.data)
            self._wr_data_group[group] = data
        return self._wr_data_group[group]

    def _pe_write_address(self, m, wr, pe, chunk=None):
        """The first write-address register of PE ``pe``'s memories, shared by them: the
        engine's write-stage address then reaches P registers, one by each PE's memories,
        instead of one per memory (ECP5 CNV build cnv9e: conv 2's 64 memories' replicas, about
        30 of them 1.2-2.5 ns late at 100 MHz). The same cycle as a register per memory.
        ``chunk`` (a banked chunk's name): one of that chunk's own, shared by its banks."""
        key = pe if chunk is None else (pe, chunk)
        if key not in self._wr_addr_early:
            name = f"pe{pe}_wr_addr_early" if chunk is None else f"{chunk}_wr_addr_early"
            early = Signal.like(wr.addr, name=replica(name), reset_less=True)
            m.d.sync += early.eq(wr.addr)
            self._wr_addr_early[key] = early
        return self._wr_addr_early[key]

    def _write_stage(self, m):
        """``wr`` registered once per engine (with ``ram_reg``): the first of :meth:`_write`'s
        stages; ``en`` every cycle, the rest loaded on writes (and held until the next, which
        the memories' own registers rely on)."""
        if self._wr_stage is None:
            wr = self.wr
            self._wr_stage = stage = SimpleNamespace(
                en=Signal(name="wr_en_d"),
                sel=Signal.like(wr.sel, name="wr_sel_d", reset_less=True),
                addr=Signal.like(wr.addr, name="wr_addr_d", reset_less=True),
                data=Signal.like(wr.data, name="wr_data_d", reset_less=True))
            m.d.sync += stage.en.eq(wr.en)
            with m.If(wr.en):
                m.d.sync += [stage.sel.eq(wr.sel), stage.addr.eq(wr.addr),
                             stage.data.eq(wr.data)]
        return self._wr_stage

    def _new_shared_registers(self):
        """Forget the registers memories share: each elaboration makes its own, on first use
        (PartialSumMVU's elaborate calls this too)."""
        self._wr_stage = None          # made by the first memory that needs it (_write_stage)
        self._wr_addr_early = {}       # per PE or chunk, made likewise (_pe_write_address)
        self._wr_data_group = {}       # per group of PEs, likewise (_group_write_data)
        self._rd_addr_group = {}       # per group of PEs, likewise (_group_read_address)

    def elaborate(self, platform):
        m = Module()
        s = self.shape
        M, width = self.mmv, s.in_beat_bits
        self._new_shared_registers()
        release = Signal()             # an output entry came free: the reader's credit
        control = self._control(m, release)
        # With ram_reg a weight memory reads at two read-address registers of its own and its
        # word passes two registers after the read (_weights): one by the block RAM, one by
        # the PE (with one, the PEs' weight registers were 2.5 ns late: ECP5 SFC build 17); a
        # LUT-RAM one passes its read register and the PE's. The input buffer's chunks read
        # at three address registers (_input_buffer), so the input word passes x_ram (and
        # x_near with block-RAM weights) and the PEs' copies: a register the narrow address
        # takes is one the wide word does not need. (LUT-RAM weights read at three and
        # straight into the PE's register, CNV build cnv9o: that read 1.4 ns late at 100 MHz,
        # the register by the PE and the LUT RAM apart.)
        x = self._near(m, registered_read(m, control["x"], "x_ram"), "x_near")
        totals = [[] for _ in range(M)]    # totals[j][p]: image j's fold sum in PE p
        for p in range(s.pe):
            w = None
            x_p, last, clear = self._pe_inputs(m, p, x, control)
            for j in range(M):
                name = f"pe{p}" if M == 1 else f"pe{p}_{j}"
                m.submodules[name] = pe = XnorPE(s, self.levels_per_stage, self.leaf_reg)
                if w is None:           # one weight memory and register per PE, m lanes
                    w = self._weights(m, p, control["w_addr"])
                m.d.comb += [pe.x.eq(x_p[j * width:(j + 1) * width]), pe.w.eq(w),
                             pe.last.eq(last), pe.clear.eq(clear)]
                totals[j].append(pe.total)
        if self.output_stage == "parallel":
            w_en, w_data = self._parallel_output(m, totals, control)
        else:
            w_en, w_data = self._serial_output(m, totals, control)

        if M == 1:
            m.submodules.fifo = fifo = SyncFIFO(width=s.out_beat_bits, depth=self.fifo_depth)
            m.d.comb += [fifo.w_en.eq(w_en), fifo.w_data.eq(w_data),
                         self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                         fifo.r_en.eq(self.o.ready),
                         release.eq(self.o.valid & self.o.ready)]
        else:
            m.submodules.reorder = reorder = GroupReorderBuffer(
                s.out_beat_bits, M, s.neuron_folds, self.fifo_depth, self.ram_styles.get("output"),
                out_slice=self.output_slice)
            m.d.comb += [reorder.w_en.eq(w_en), reorder.w_data.eq(w_data),
                         release.eq(reorder.release)]
            wiring.connect(m, reorder.o, wiring.flipped(self.o))
        return m

    def _pe_inputs(self, m, p, x, control):
        """PE ``p``'s input word, ``last`` and ``clear``. With ``ram_reg`` (the ECP5 builds)
        each comes from replica registers of the PE's own (the input word's last register
        stage, the accumulators' sideband's last), kept apart by the synthesis script: one
        register per bit driving all P PEs spread over an engine of 25 k LUTs was a net of
        several nanoseconds of route in the cycle of the first popcount level, and one
        ``clear`` register the synchronous reset of P·m accumulators. The copies take the
        place of the shared stage, so the timing is unchanged. Without ``ram_reg`` (iCE40,
        where a flip-flop costs a logic cell) the PEs share them."""
        if not self.ram_reg:
            return x, control["done"], control["clear"]
        x_p = Signal.like(x, name=replica(f"x{p}_late"), reset_less=True)
        done_p = Signal(name=replica(f"done{p}"))
        valid_p = Signal(name=replica(f"valid{p}"))
        m.d.sync += [x_p.eq(x), done_p.eq(control["done_early"]),
                     valid_p.eq(control["valid_early"])]
        return x_p, done_p, done_p | ~valid_p

    def _control(self, m, release):
        """Input buffer, reader and credits (one per output entry, back with ``release``).
        Returns a dict: ``x`` the buffer's read data (before its read register: word sf of
        the m images), ``w_addr`` the weight address, and the sideband at the accumulators:
        ``done`` (a fold's last count arrives), ``clear`` (restart them), ``done_early``
        (``done`` ``ram_reg`` cycles earlier, to read channel words in time, and what the
        PEs' own ``done`` copies load) and ``valid_early`` (likewise for ``valid``)."""
        s = self.shape
        S, k, SF, NF, M = s.simd, s.input_bits, s.synapse_folds, s.neuron_folds, self.mmv

        # ---- input buffer: two halves of SF words of m images; address = {half, sf} -------
        sf_bits = (SF - 1).bit_length()
        full = Signal(2)                       # half h holds a whole group not yet computed
        wr_half, wr_sf = Signal(), counter(SF)
        wr_image = counter(M) if M > 1 else Const(0, 1)   # which image of the group
        W = self.in_words
        wr_word = counter(W) if W > 1 else Const(0, 1)    # which word of the beat
        rd_half, sf = Signal(), counter(SF)
        w_addr = counter(NF * SF)             # nf·SF + sf, the weight word of every PE
        inflight = Signal(range(self.fifo_depth + 1))  # entries taken by folds, not yet free

        accept = self.i.valid & self.i.ready
        # With ram_reg the counters' compares come from flags (counter_at): ready's logic
        # below is then a few LUTs deep (seven, 1.8 ns late at 100 MHz in CNV build cnv9q's
        # fc 7).
        def at(value, n, advance, position, name):
            return counter_at(m, value, n, advance, position, name, registered=self.ram_reg)
        word_last = at(wr_word, W, accept, W - 1, "word_last") if W > 1 else 1
        wr_last = at(wr_sf, SF, accept & word_last, SF - 1, "wr_last")
        image_last = at(wr_image, M, accept & word_last & wr_last, M - 1,
                        "image_last") if M > 1 else 1
        group_in = wr_last & image_last & word_last
        # Padding elements of the last beat are cleared, so they always agree with the
        # (zero) padding weights, whatever the producer put there.
        keep = Cat(Const(-1, k) if j < s.last_beat_elements else (~wr_last).replicate(k)
                   for j in range(S))
        # a write enable per column: image j's word w in column j·W + w
        en = Cat(accept & (wr_image == j) & (wr_word == w) for j in range(M) for w in range(W))
        if W > 1:
            with m.If(accept):
                m.d.sync += wr_word.eq(wrapped_next(wr_word, W))
        with m.If(accept & word_last):
            m.d.sync += wr_sf.eq(Mux(wr_last, 0, wr_sf + 1))
            if M > 1:
                with m.If(wr_last):
                    m.d.sync += wr_image.eq(wrapped_next(wr_image, M))
            with m.If(group_in):
                m.d.sync += wr_half.eq(~wr_half)

        # ---- reader: one word per cycle; a fold starts only with a free output credit -----
        go = Signal()
        fold_start = at(sf, SF, go, 0, "fold_start")
        fold_end = at(sf, SF, go, SF - 1, "fold_end")
        w_addr_last = at(w_addr, NF * SF, go, NF * SF - 1, "w_addr_last")
        # inflight never exceeds the depth: with ram_reg != (LUTs) instead of < (a carry
        # chain that started the engine's busy flag's path: cnv9r, conv 3's busy count
        # 0.9 ns late at 95 MHz); iCE40 builds keep their logic (a 98 %-full device)
        credit = (inflight != self.fifo_depth) if self.ram_reg else (inflight < self.fifo_depth)
        can_start = full.bit_select(rd_half, 1) & credit
        m.d.comb += go.eq(Mux(fold_start, can_start, 1))
        group_end = go & w_addr_last
        with m.If(go):
            m.d.sync += [sf.eq(Mux(fold_end, 0, sf + 1)),
                         w_addr.eq(Mux(w_addr_last, 0, w_addr + 1))]
        with m.If(group_end):
            m.d.sync += rd_half.eq(~rd_half)
        # The writer completes half wr_half and the reader frees half rd_half, never the same
        # half in one cycle (the writer writes only a free half, the reader reads a full one).
        # A half is full once its last word is in the memory: buffer_write_lag cycles after
        # the last beat's accept (the writer, on the other half by then, never looks at it
        # before: it comes back to a half at the earliest two beats later).
        set_full = delay(m, Mux(accept & group_in, Mux(wr_half, 0b10, 0b01), 0),
                         self.buffer_write_lag, "set_full")
        # With the write's lag the half goes back to the writer a cycle before its last read
        # (inside a fold: surely next, timing.buffer_write_lag); its first word lands after.
        if self.buffer_write_lag:
            free = go & at(w_addr, NF * SF, go, NF * SF - 1 - self.buffer_write_lag,
                           "w_addr_free")
        else:
            free = group_end
        clr_full = Mux(free, Mux(rd_half, 0b10, 0b01), 0)
        full_next = (full | set_full) & ~clr_full
        m.d.sync += full.eq(full_next)
        # ready = ~full[wr_half], from a flip-flop loaded with the next cycle's value: the
        # producer's ready logic (converter, then the upstream skid slice's register enables)
        # starts at a register (ECP5 SFC build 19: that path was 1.2 ns late at 100 MHz)
        ready = Signal(init=1, name="in_ready")
        m.d.sync += ready.eq(~full_next.bit_select(Mux(accept & group_in, ~wr_half, wr_half), 1))
        m.d.comb += self.i.ready.eq(ready)
        m.d.sync += inflight.eq(inflight + (go & fold_start) - release)
        m.d.comb += self.busy.eq(go)
        rd_next = Cat(Mux(go, Mux(fold_end, 0, sf + 1), sf)[:sf_bits],
                      Mux(group_end, ~rd_half, rd_half))
        data = self.i.payload if W > 1 else self.i.payload & keep   # W > 1: no padding
        x = self._input_buffer(m, en, Cat(wr_sf[:sf_bits], wr_half), data,
                               Cat(sf[:sf_bits], rd_half), rd_next)

        # ---- sideband at the accumulators -------------------------------------------------
        to_acc = (1 + timing.ram_reg_stages(self.ram_reg, self.lut_weights)
                  + timing.datapath_stages(S, k, self.levels_per_stage, self.leaf_reg))
        issue_valid, issue_done = Signal(), Signal()
        m.d.comb += [issue_valid.eq(go), issue_done.eq(go & fold_end)]
        early = delay(m, issue_done, to_acc - int(self.ram_reg), "done_early")
        done = delay(m, early, int(self.ram_reg), "done")
        valid_early = delay(m, issue_valid, to_acc - int(self.ram_reg), "valid_early")
        valid = delay(m, valid_early, int(self.ram_reg), "valid")
        clear = Signal()
        m.d.comb += clear.eq(done | ~valid)
        return {"x": x, "w_addr": w_addr, "done": done, "clear": clear,
                "done_early": early, "valid_early": valid_early}

    def _input_buffer(self, m, en, wr_addr, data, rd_addr, rd_next):
        """The input buffer's memory: ``m·k·S`` bits wide (image ``j``'s beat in slice ``j``,
        its word ``w`` of ``W`` (``in_words``) in column ``j·W + w``, written with
        ``en[j·W + w]``), ``2·2^sf_bits`` words. Returns the word at ``rd_addr``
        (asynchronous; the caller registers it).

        Without ``ram_reg`` (or with ``SF = 1``): one memory written in the cycle of ``en``.
        With ``ram_reg`` (the ECP5 builds) the memory is split into chunks of at most
        :data:`BUFFER_CHUNK_BITS`, and every chunk takes its write enable and address from
        replica registers of its own (:attr:`buffer_write_lag` cycles later: with two, a
        shared register of each comes first) and its read address from three replica
        registers (the first loaded with the reader's next address: the read is two cycles
        after the reader's), so one can sit by the reader, one between and one by the chunk
        (with two, placements put one 15 ns of route from its LUT RAM: conv 4 of CNV builds
        cnv9f and cnv9i). One address net to a 1,024-bit buffer reached 256 LUT RAM blocks
        spread over the die (20.1 ns of route, the critical path of ECP5 SFC build 7); a
        replica reaches one chunk's 16. The data (one input beat or word) is delayed as long
        in shared registers: each bit goes only to its own place in the m·W columns' chunks,
        and no chunk straddles two columns."""
        s, M = self.shape, self.mmv
        width, depth = s.in_beat_bits, len(rd_addr)
        if not self.buffer_write_lag:
            lanes = len(en)                         # m images' slices, or W words' columns
            m.submodules.buffer = buf = self._memory("buffer", M * width, 1 << depth)
            wr = buf.write_port(granularity=len(data)) if lanes > 1 else buf.write_port()
            rd = buf.read_port(domain="comb")
            m.d.comb += [wr.en.eq(en if lanes > 1 else en[0]), wr.addr.eq(wr_addr),
                         wr.data.eq(data.replicate(lanes)), rd.addr.eq(rd_addr)]
            if self.ram_reg:      # the chunks' later address registers, as data registers
                return registered_read(m, registered_read(m, rd.data, "buffer_rd_late"),
                                       "buffer_rd_later")
            return rd.data
        data_reg = data
        for name in ["buffer_wr_data_early", "buffer_wr_data"][-self.buffer_write_lag:]:
            held = Signal(len(data), name=name, reset_less=True)   # only the enable matters
            m.d.sync += held.eq(data_reg)
            data_reg = held
        if self.buffer_write_lag == 2:     # the shared first register of the enable and address
            en = [delay(m, en[j], 1, f"buffer_wr_en{j}_early") for j in range(len(en))]
            wr_addr = delay(m, wr_addr, 1, "buffer_wr_addr_early")
        words, column = [], len(data)      # a column: one image's beat, or one of its words
        for j in range(M):
            lo = 0
            while lo < width:
                c = len(words)
                # a chunk never straddles two columns (each has its own enable)
                hi = min(lo + BUFFER_CHUNK_BITS, width, (lo // column + 1) * column)
                w_col, d_lo = j * (width // column) + lo // column, lo % column
                m.submodules[f"buffer{c}"] = buf = self._memory("buffer", hi - lo, 1 << depth)
                wr, rd = buf.write_port(), buf.read_port(domain="comb")
                w_en = Signal(name=replica(f"buffer{c}_wr_en"))
                w_addr = Signal.like(wr_addr, name=replica(f"buffer{c}_wr_addr"),
                                     reset_less=True)
                r_early = Signal.like(rd_addr, name=replica(f"buffer{c}_rd_addr_early"))
                r_mid = Signal.like(rd_addr, name=replica(f"buffer{c}_rd_addr_mid"))
                r_addr = Signal.like(rd_addr, name=replica(f"buffer{c}_rd_addr"))
                m.d.sync += [w_en.eq(en[w_col]), w_addr.eq(wr_addr), r_early.eq(rd_next),
                             r_mid.eq(r_early), r_addr.eq(r_mid)]
                m.d.comb += [wr.en.eq(w_en), wr.addr.eq(w_addr),
                             wr.data.eq(data_reg[d_lo:d_lo + hi - lo]), rd.addr.eq(r_addr)]
                words.append(rd.data)
                lo = hi
        return Cat(*words)

    def _weights(self, m, p, w_addr):
        """PE ``p``'s weight memory; returns the weight word (registered as the input word).

        With ``ram_reg`` a deep memory is split into column chunks
        (:func:`weight_chunk_widths`), each with its own registers (the read address, and
        :meth:`_write`'s per-memory ones): a register then drives at most four block RAMs.
        One chunk is exactly the unsplit memory."""
        s = self.shape
        if self.ram_styles.get("weights") == "huge":
            m.submodules[f"weights{p}"] = mem = self._memory("weights", s.simd, s.weight_depth)
            rd, wr = mem.read_port(domain="comb"), mem.write_port()
            # SPRAM has one address for reading and writing; the read pauses while writing
            addr = Mux(self.wr.en, self.wr.addr, self._read_address(m, w_addr, f"w{p}_addr"))
            m.d.comb += [wr.en.eq(self._selected(s.weight_select(p))), wr.data.eq(self.wr.data),
                         rd.addr.eq(addr), wr.addr.eq(addr)]
            word = registered_read(m, rd.data, f"w{p}_ram", en=~self.wr.en)
            return self._edge(m, self._near(m, word, f"w{p}_near"), f"w{p}")
        widths = (weight_chunk_widths(s.simd, s.weight_depth, self.lut_weights)
                  if self.ram_reg else [s.simd])
        banked = self.ram_reg and not self.lut_weights and s.weight_depth > WEIGHT_BANK_WORDS
        words, lo = [], 0
        for c, bits in enumerate(widths):
            suffix = "" if len(widths) == 1 else f"_{c}"
            name = f"weights{p}{suffix}"
            if banked:     # each bank takes the address's last register of its own
                early = self._read_address(m, w_addr, f"w{p}{suffix}_addr", last=False)
                words.append(self._banked_chunk(m, p, name, bits, lo, early))
            else:
                addr = self._read_address(m, w_addr, f"w{p}{suffix}_addr",
                                          early=self._group_read_address(m, w_addr, p))
                m.submodules[name] = mem = self._memory("weights", bits, s.weight_depth)
                rd, wr = mem.read_port(domain="comb"), mem.write_port()
                self._write(m, wr, s.weight_select(p), name, p, lo)
                m.d.comb += rd.addr.eq(addr)
                words.append(registered_read(m, rd.data, f"w{p}{suffix}_ram"))
            lo += bits
        word = Cat(*words) if banked else self._near(m, Cat(*words), f"w{p}_near")
        return self._edge(m, word, f"w{p}")

    def _banked_chunk(self, m, p, name, bits, lo, early):
        """A column chunk of PE ``p``'s weight memory deeper than :data:`WEIGHT_BANK_WORDS`,
        as banks of that many words (``ram_reg``, block RAM). Each bank's read passes a near
        register of its own (``{name}_b{b}_near``, which the placer puts by that bank's block
        RAMs) and only then the multiplexer over the banks, at the bank bits of the read
        address registered as often; the chunk's word leaves as the unbanked chunk's
        ``_near`` register would, so the latency is unchanged
        (:func:`~xnorflow.hw.dataflow.timing.ram_reg_stages`). ``early`` is the read
        address's first register (:meth:`_read_address` with ``last=False``); its second is
        one per bank (``{name}_b{b}_addr``), by that bank's block RAMs: one for the chunk's
        four banks left their address pins 1.4-3.3 ns late at 100 MHz (CNV build cnv9f,
        fc6). A write reaches only the bank
        its address falls in (:meth:`_write`). Returns the chunk's word, a multiplexer's
        output for the caller's register."""
        s = self.shape
        low = _bank_bits()
        nears = []
        for b in range(-(-s.weight_depth // WEIGHT_BANK_WORDS)):
            bank = f"{name}_b{b}"
            words = min(WEIGHT_BANK_WORDS, s.weight_depth - b * WEIGHT_BANK_WORDS)
            m.submodules[bank] = mem = self._memory("weights", bits, words)
            rd, wr = mem.read_port(domain="comb"), mem.write_port()
            self._write(m, wr, s.weight_select(p), bank, p, lo, bank=b, chunk=name)
            m.d.comb += rd.addr.eq(self._edge(m, early[:low], replica(f"{bank}_addr")))
            nears.append(self._edge(m, registered_read(m, rd.data, f"{bank}_ram"),
                                    f"{bank}_near"))
        # the bank bits wait with the read (the block RAM's register, then the near ones)
        addr = self._edge(m, early[low:], replica(f"{name}_bank_addr"))
        select = self._edge(m, self._edge(m, addr, f"{name}_bank_ram"), f"{name}_bank")
        word = nears[-1]
        for b in reversed(range(len(nears) - 1)):
            word = Mux(select == b, nears[b], word)
        return word

    def _read_address(self, m, addr, name, last=True, early=None):
        """A weight memory's read address: with ``ram_reg`` two replica registers of the
        memory's (chunk's) own, ``name_early`` then ``name``, so the placer can put one by the
        reader and one by the block RAMs (one register was placed by the reader, 12.4 ns of
        route from the input buffer's LUT RAM it addressed: ECP5 SFC build 14). The input
        buffer's chunks take three (:meth:`_input_buffer`) and the input word one register
        fewer after its read, so the words stay aligned. ``last=False``: the
        first register only (a banked chunk gives each bank a second of its own).
        ``early``: a shared first register in place of the memory's own
        (:meth:`_group_read_address`)."""
        if not self.ram_reg:
            return addr
        if early is None:
            early = self._edge(m, addr, replica(f"{name}_early"))
        return self._edge(m, early, replica(name)) if last else early

    def _group_read_address(self, m, addr, pe):
        """The first read-address register of PE ``pe``'s group of :data:`WRITE_GROUP_PES`
        PEs, shared by their memories (without ``ram_reg`` none: None): the reader's address
        counter then reaches a few group registers, and each of those its group's memories'
        second registers, instead of a first register per memory across the engine (ECP5 CNV
        build cnv9t: bit 0 of conv 2's counter to its 16 PEs' LUT-RAM chunks, 2.3 ns late at
        95 MHz). The same cycle as a register per memory."""
        if not self.ram_reg:
            return None
        group = pe // WRITE_GROUP_PES
        if group not in self._rd_addr_group:
            self._rd_addr_group[group] = self._edge(m, addr, replica(f"group{group}_rd_addr"))
        return self._rd_addr_group[group]

    def _channel_word(self, m, mem, addr, name):
        """A channel memory's word at ``addr``, ready ``1 + ram_reg`` cycles later."""
        rd = mem.read_port(domain="comb")
        m.d.comb += rd.addr.eq(addr)
        return self._edge(m, registered_read(m, rd.data, f"{name}_ram"), name)

    def _result_signal(self, name):
        s = self.shape
        return Signal(1 if s.output == "threshold" else signed(s.acc_width), name=name,
                      reset_less=True)

    def _parallel_output(self, m, totals, control):
        """One result per PE and image in the cycle after the fold's last add (``done``), each
        PE's from its own channel memory of NF words (one read for the m images); returns
        the output buffer's (write enable, data): beat nf of image j in slice j."""
        s = self.shape
        NF, M = s.neuron_folds, self.mmv
        # read ram_reg cycles before `done` so the word is ready (registered) with the total
        read = control["done_early"]
        t_addr = counter(NF)
        with m.If(read):
            m.d.sync += t_addr.eq(Mux(t_addr == NF - 1, 0, t_addr + 1))
        results = [[] for _ in range(M)]
        flags = []
        for p in range(s.pe):
            word = None
            if s.has_channel_memory:
                m.submodules[f"channels{p}"] = mem = self._memory(
                    "channels", s.channel_word_width, NF)
                self._write(m, mem.write_port(), s.channel_select(p), f"channels{p}", p)
                word = self._channel_word(m, mem, t_addr, f"cw{p}")
            for j in range(M):
                result = self._result_signal(f"result{p}" if M == 1 else f"result{p}_{j}")
                m.d.sync += result.eq(channel_result(s, totals[j][p], word))
                results[j].append(result)
            if s.flags:    # the channel's inv, the same for the m images
                flag = Signal(name=f"flag{p}", reset_less=True)
                m.d.sync += flag.eq(word[s.threshold_width])
                flags.append(flag)
        beats = [Cat(*r, *flags) for r in results]
        return delay(m, control["done"], 2, "out_valid"), Cat(*beats)

    def _serial_output(self, m, totals, control):
        """One compare for the engine: from the cycle after ``done`` it walks the m·P fold
        sums (image 0's P, then image 1's, …), one per cycle, each with its channel word from
        one memory addressed {p, nf} (the write port's select P + p and address nf,
        concatenated); the results shift into the m output beats, written to the output
        buffer with the last. Returns (write enable, data)."""
        s = self.shape
        P, NF, M = s.pe, s.neuron_folds, self.mmv
        nf_bits, p_bits = (NF - 1).bit_length(), (P - 1).bit_length()
        start = delay(m, control["done"], 1, "walk_start")    # the totals are valid
        step, stepping = counter(P), Signal()
        index = Signal(range(max(P, 2)))
        m.d.comb += index.eq(Mux(stepping, step, 0))
        active = start | stepping
        pe_last = index == P - 1
        if M == 1:
            image = Const(0, 1)
            last = active & pe_last
        else:
            image_step = counter(M)
            image = Signal(range(M), name="walk_image")
            m.d.comb += image.eq(Mux(stepping, image_step, 0))
            last = active & pe_last & (image == M - 1)
            with m.If(active):
                m.d.sync += image_step.eq(Mux(pe_last, Mux(last, 0, image + 1), image))
        with m.If(active):
            m.d.sync += [stepping.eq(~last), step.eq(Mux(pe_last, 0, index + 1))]
        nf = counter(NF)
        with m.If(last):
            m.d.sync += nf.eq(Mux(nf == NF - 1, 0, nf + 1))

        picked = Signal(s.u_width, name="picked", reset_less=True)
        if M * P == 1:
            m.d.sync += picked.eq(totals[0][0])
        elif M == 1:
            m.d.sync += picked.eq(_table(totals[0], len(index))[index])
        else:
            # entry {image, p}: a full power-of-two table (see _table)
            table = [totals[min(j, M - 1)][min(p, P - 1)]
                     for j in range(1 << len(image)) for p in range(1 << len(index))]
            m.d.sync += picked.eq(Array(table)[Cat(index, image)])
        picked = self._edge(m, picked, "picked_edge")   # waits for the word's edge register
        word = None
        if s.has_channel_memory:
            m.submodules.channels = mem = self._memory("channels", s.channel_word_width,
                                                       1 << (nf_bits + p_bits))
            wr = mem.write_port()
            m.d.comb += [wr.en.eq(self.wr.en & (self.wr.sel >= P)),
                         wr.addr.eq(Cat(self.wr.addr[:nf_bits], (self.wr.sel - P)[:p_bits])),
                         wr.data.eq(self.wr.data)]
            word = self._channel_word(m, mem, Cat(nf[:nf_bits], index[:p_bits]), "cw")
        result = self._result_signal("result")
        m.d.sync += result.eq(channel_result(s, picked, word))

        lag = 2 + int(self.ram_reg)                   # step → result register
        result_valid = delay(m, active, lag, "result_valid")
        result_last = delay(m, last, lag, "result_last")
        width = len(result)
        beat = Signal(M * P * width, name="beat", reset_less=True)
        with m.If(result_valid):
            m.d.sync += beat.eq(Cat(beat[width:], result))
        values = Cat(beat[width:], result)
        if not s.flags:
            return result_last, values
        # the channel's inv walks beside its bit; each image's beat is its P bits, then
        # their P flags
        flag = Signal(name="flag", reset_less=True)
        m.d.sync += flag.eq(word[s.threshold_width])
        flag_beat = Signal(M * P, name="flag_beat", reset_less=True)
        with m.If(result_valid):
            m.d.sync += flag_beat.eq(Cat(flag_beat[1:], flag))
        flag_values = Cat(flag_beat[1:], flag)
        return result_last, Cat(*(Cat(values[j * P:(j + 1) * P], flag_values[j * P:(j + 1) * P])
                                  for j in range(M)))
