"""The signatures that join the core's components, and the descriptor's layout.

Each signature is written from the side that drives most of it (its ``Out`` members); the other
side takes it ``In``. ``hw/core/core.py`` joins the components with ``wiring.connect``:

=======================  ==========================  ======================================
signature                driver (``Out``)            taken ``In`` by
=======================  ==========================  ======================================
RunControlSignature      BusTarget (start, batch)    Sequencer (answers busy, done, ...)
DescriptorReadSignature  Sequencer (address)         the descriptor table's read port
LayerSignature           Sequencer                   ArrayFeed, ThresholdStage, Writer
IssueSignature           Sequencer                   ArrayFeed
ArrayEdgeSignature       ArrayFeed                   SystolicArray
ArraySumsSignature       SystolicArray               ThresholdStage
ThresholdBitsSignature   ThresholdStage              ActivationWriter
=======================  ==========================  ======================================

Memory ports are ``amaranth.lib.memory`` port signatures, flipped by their user
(:func:`read_port`, :func:`write_port`), so a component's port connects straight to a bank
when nothing else shares the bank (hw/core/core.py shares the others with the host).
"""
from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from xnorflow.hw.core import memory_map as mm

__all__ = ["RunControlSignature", "DescriptorReadSignature", "IssueSignature",
           "ConvWalkSignature", "LayerSignature", "ArrayEdgeSignature", "ArraySumsSignature",
           "ThresholdBitsSignature", "read_port", "write_port", "OP_LAYOUT",
           "DESCRIPTOR_LAYOUT", "descriptor_addr_width"]


def read_port(depth, width):
    """``In`` member of a component that reads a bank of ``depth`` words of ``width`` bits:
    ``addr`` and ``en`` out, ``data`` in (the memory port's own signature, flipped)."""
    return In(ReadPort.Signature(addr_width=ceil_log2(depth), shape=width))


def write_port(depth, width, granularity=None):
    """``In`` member of a component that writes a bank: ``addr``, ``data`` and ``en`` out."""
    return In(WritePort.Signature(addr_width=ceil_log2(depth), shape=width,
                                  granularity=granularity))


def descriptor_addr_width(config):
    """Address bits of the descriptor table (DESC_WORDS 32-bit words per descriptor)."""
    return ceil_log2(mm.DESC_WORDS * config.desc_depth)


def _layout(fields, size):
    """StructLayout of ``fields`` ((name, bits or layout), least significant first), padded
    with a ``reserved`` field to ``size`` bits."""
    layout = dict(fields)
    used = sum(shape.size if isinstance(shape, data.Layout) else shape
               for shape in layout.values())
    if used < size:
        layout["reserved"] = size - used
    return data.StructLayout(layout)


#: The op byte (memory_map.OP_FIELDS): ``kind`` (OP_*), ``unsigned``, ``raw``, ``last``,
#: ``pool``.
OP_LAYOUT = _layout(mm.OP_FIELDS, 8)

#: A whole descriptor as the table holds it (memory_map.DESCRIPTOR_FIELDS, little-endian, the
#: first byte in the low bits of word 0).
DESCRIPTOR_LAYOUT = _layout([(name, OP_LAYOUT if name == "op" else 8 * size)
                             for name, size in mm.DESCRIPTOR_FIELDS], 8 * mm.DESC_BYTES)


class RunControlSignature(wiring.Signature):
    """Starting a run and watching it (from the bus target's side).

    Members
    -------
    start : Out(1)
        Start a run (a one-cycle pulse; the sequencer honours it only when idle).
    batch : Out(16)
        Batch size B of the run (sampled at start).
    busy, done : In(1)
        Running / the last run finished (cleared by start).
    error : In(2)
        ``ERR_*`` code of the last run (0 = none).
    total_cycles : In(32)
        Cycles the current/last run has been busy.
    layers_done : In(8)
        Layers finished in the current/last run.
    """

    def __init__(self):
        super().__init__({
            "start": Out(1), "batch": Out(16),
            "busy": In(1), "done": In(1), "error": In(2),
            "total_cycles": In(32), "layers_done": In(8),
        })


class DescriptorReadSignature(wiring.Signature):
    """The sequencer's read of the descriptor table (from the sequencer's side).

    Members
    -------
    addr : Out(descriptor_addr_width(config))
        Word address ``DESC_WORDS·layer + word``; the table answers in the next cycle.
    owner : Out(1)
        The sequencer needs the read port (busy, or in the start cycle); the host's reads
        get it otherwise.
    data : In(32)
        The word addressed in the cycle before.
    """

    def __init__(self, config):
        super().__init__({"addr": Out(descriptor_addr_width(config)), "owner": Out(1),
                          "data": In(32)})


class IssueSignature(wiring.Signature):
    """One issued word per cycle (from the sequencer's side); see :class:`Sequencer`.

    Members
    -------
    valid : Out(1)
        A word is issued this cycle.
    w_addr, a_addr : Out(16)
        Weight word address (the same for every row bank) and activation word address (the
        same for every column bank; relative to the layer's source buffer or half; a binary
        conv's tap offset from each column's pixel).
    last_word : Out(1)
        The word is the last of its input vector (or tap): apply ``lastmask``.
    double : Out(1)
        The word starts a bit-plane after the first: the PEs double their sum first.
    tile_last : Out(1)
        The word is the last of its output tile.
    kx, ky : Out(2)
        Tap of the word (binary conv).
    g_next : Out(1)
        The word is the last of a column group (the pixel walkers step after it).
    """

    def __init__(self):
        super().__init__({
            "valid": Out(1), "w_addr": Out(16), "a_addr": Out(16),
            "last_word": Out(1), "double": Out(1), "tile_last": Out(1),
            "kx": Out(2), "ky": Out(2), "g_next": Out(1),
        })


class ConvWalkSignature(wiring.Signature):
    """A conv layer's geometry for the pixel walkers, valid in the layer's start cycle only
    (descriptor fields, docs/memory_map.md; zero outside it).

    Members
    -------
    pool : Out(1)
        Window-major pixel order (a 2×2 max-pool is fused into the writer).
    height, width : Out(8)
        Image size H, W.
    pix_words, row_words, step_words, wrap_words : Out(16)
        Words per pixel and per image row; a pixel's word-address step per column group
        without and with a row wrap.
    """

    def __init__(self):
        super().__init__({
            "pool": Out(1), "height": Out(8), "width": Out(8),
            "pix_words": Out(16), "row_words": Out(16), "step_words": Out(16),
            "wrap_words": Out(16),
        })


class LayerSignature(wiring.Signature):
    """The layer being executed (from the sequencer's side): what the back end needs of its
    descriptor, latched in its LOAD cycle and held until the next layer's.

    Members
    -------
    index : Out(8)
        Index of the layer (layer 0 reads the input banks; the ping-pong half is its bit 0).
    start : Out(1)
        One-cycle pulse (LOAD) that resets the back end's counters for the new layer.
    unsigned, raw : Out(1)
        The layer has unsigned k-bit input / raw integer output.
    lastmask : Out(K)
        Valid-bit mask of an input vector's (or tap's) last word.
    m_tiles, t_base, out_words : Out(16)
        Output tiles, first threshold entry, words per output vector.
    conv, bcast, pool : Out(1)
        A binary conv (tap addressing) / any conv (output pixels go to every column bank) /
        a conv with the 2×2 max-pool fused into the writer.
    out_units : Out(16)
        Conv: output pixels (or pooled windows) the writer writes; later ones are dropped.
    walk : Out(ConvWalkSignature())
        The conv geometry, in the ``start`` cycle only.
    """

    def __init__(self, K):
        super().__init__({
            "index": Out(8), "start": Out(1),
            "unsigned": Out(1), "raw": Out(1), "lastmask": Out(K),
            "m_tiles": Out(16), "t_base": Out(16), "out_words": Out(16),
            "conv": Out(1), "bcast": Out(1), "pool": Out(1), "out_units": Out(16),
            "walk": Out(ConvWalkSignature()),
        })


class ArrayEdgeSignature(wiring.Signature):
    """What enters the systolic array each cycle (from the feeding side); see
    :class:`SystolicArray` for the meaning and timing of each member.

    Members
    -------
    w : Out(K).array(P)
        Weight word of each row.
    x, m, z : Out(K).array(Q)
        Activation word, valid-bit mask and ``zero_agrees`` word of each column.
    dbl, valid, last : Out(1).array(Q)
        Per column: double first / the word is real / the word is the last of its tile.
    """

    def __init__(self, P, Q, K):
        super().__init__({
            "w": Out(K).array(P),
            "x": Out(K).array(Q), "m": Out(K).array(Q), "z": Out(K).array(Q),
            "dbl": Out(1).array(Q), "valid": Out(1).array(Q), "last": Out(1).array(Q),
        })


class ArraySumsSignature(wiring.Signature):
    """The finished sums the array's rows deliver (from the array's side).

    Members
    -------
    valid : Out(1).array(P)
        Row ``i`` delivers a sum this cycle (every row in the same cycle).
    acc : Out(signed(acc_width)).array(P)
        The sum; within a tile every row delivers columns 0..Q-1 in consecutive cycles.
    """

    def __init__(self, P, acc_width):
        super().__init__({"valid": Out(1).array(P), "acc": Out(signed(acc_width)).array(P)})


class ThresholdBitsSignature(wiring.Signature):
    """One column's thresholded outputs of a tile, all rows at once (from the threshold
    stage's side).

    Members
    -------
    valid : Out(1)
        The rows' results are out this cycle (a raw layer's too: the writer ignores those).
    bits : Out(P)
        Output bit of each row's channel.
    down : Out(P)
        Direction of each row's channel (a fused max-pool ANDs ``down`` channels, ORs the
        others).
    """

    def __init__(self, P):
        super().__init__({"valid": Out(1), "bits": Out(P), "down": Out(P)})
