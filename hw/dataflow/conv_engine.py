"""A 3×3 convolution as a dataflow engine: window unit → matrix-vector unit → [2×2 pool]."""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core.pipeline import reset_by_replica

from .convert import WidthConverter
from .mvu import MatrixVectorUnit, WriteSignature
from .pool import MaxPool2x2
from ..register_slice import RegisterSlice
from .window import SlidingWindowUnit

__all__ = ["ConvEngine"]


class ConvEngine(wiring.Component):
    """One conv layer (an :class:`~xnorflow.hw.dataflow.config.EngineFold` with ``image``):
    the image stream in, the (pooled) feature map out, the same ports as a
    :class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit` so the pipeline chains either.

    ``i`` → :class:`SlidingWindowUnit` (``H×W×C``, ``fold.in_lanes`` elements per beat) →
    [skid slice] → :class:`WidthConverter` (window beats → the unit's ``S``; or none: ``in_words``) → :class:`MatrixVectorUnit`
    (``9·C`` inputs per output pixel, threshold output; with ``pool`` each beat also carries its
    channels' directions) → :class:`MaxPool2x2` (with ``pool``) → ``o``.

    Parameters
    ----------
    fold : EngineFold
        The layer and its folding (``image``, ``pool``, ``simd``, ``pe``, ``mmv``: output
        pixels per weight read, each window one of the unit's vectors; the unit's reorder
        buffer plays a group's outputs out pixel after pixel, so the map stays in HWC order).
    output_slice : bool
        The matrix-vector unit's ``output_slice`` (``mmv > 1``: skid slices around its
        reorder buffer's image multiplexer, :data:`~xnorflow.hw.dataflow.timing.OUTPUT_SLICES`
        cycles).
    window_slice : bool
        A skid :class:`~xnorflow.hw.register_slice.RegisterSlice` after the window unit, so
        the ring's block-RAM read lands in flip-flops beside it (one cycle;
        :meth:`DataflowConfig.window_slice`).
    input_slice : bool
        A skid :class:`~xnorflow.hw.register_slice.RegisterSlice` in front of the window
        unit (one cycle; :meth:`DataflowConfig.input_slice`).
    pool_slice : bool
        A skid :class:`~xnorflow.hw.register_slice.RegisterSlice` between the unit and the
        pool (one cycle; :meth:`DataflowConfig.pool_slice`).
    end_slice : bool
        A skid :class:`~xnorflow.hw.register_slice.RegisterSlice` at the end (after
        the pool): ``i.ready`` of the engine's last block comes from a flip-flop, not from the
        next engine (one cycle; :meth:`DataflowConfig.end_slice`).
    in_words : int
        The matrix-vector unit's ``in_words``: with ``W > 1`` the unit takes W window beats
        per beat of its own, each straight into its column of the input buffer, and no
        converter gathers them (a cycle less; :meth:`DataflowConfig.conv_in_words`). W
        window beats must make one of the unit's beats.
    **mvu_options
        Passed to the MatrixVectorUnit (``ram_reg``, ``levels_per_stage``, ``leaf_reg``,
        ``output_stage``, ``ram_styles``).

    Ports
    -----
    i : In(stream.Signature(k·lanes))
        ``H·W·C/lanes`` beats per image, HWC order (``lanes = fold.in_lanes``).
    o : Out(stream.Signature(P))
        The output map in HWC order, ``P`` channels per beat: ``H·W·M/P`` beats per image, or
        ``⌊H/2⌋·⌊W/2⌋·M/P`` pooled.
    wr : In(WriteSignature(shape))
        The matrix-vector unit's weight and channel memories (the dense layout, filters
        tap-major: sw/layers/dataflow_pack.py).
    busy : Out(1)
        The matrix-vector unit read a weight word in this cycle.
    abort : In(1)
        Reset the engine at the end of the next cycle: each block (window unit, converter,
        matrix-vector unit, pool) from a replica register of its own, so no one register
        resets the whole engine (ECP5 CNV build cnv10k: engine 1's one abort register as
        the reset of its pool and output FIFO, 4.1 ns late at 100 MHz). The pipeline drives
        it in place of a reset register per engine (the same cycle).

    Timing: per image ``H·W/m·max(SF·NF, m·9·C/lanes)`` cycles when neither side waits
    (:attr:`EngineFold.group_cycles`, ``m = mmv``): the window unit makes one beat per cycle,
    the unit takes ``SF·NF`` cycles per group of m pixels and plays the group's m·NF beats
    out in one burst, the pool takes one beat per cycle; latency: the window
    unit's (two input rows, :func:`~xnorflow.hw.dataflow.window.window_timing`) plus the
    unit's (:func:`~xnorflow.hw.dataflow.timing.mvu_latency`) plus one cycle of the pool,
    plus a cycle per slice (``input_slice``, ``window_slice``, ``output_slice``,
    ``pool_slice``, ``end_slice``).
    """

    def __init__(self, fold, output_slice=False, end_slice=False, window_slice=False,
                 pool_slice=False, input_slice=False, in_words=1, **mvu_options):
        if not fold.is_conv:
            raise ValueError(f"ConvEngine needs a conv fold (HxWxC>…), got {fold.format()}")
        self.fold = fold
        h, w, c = fold.image
        k, lanes = fold.input_bits, fold.in_lanes
        self.window = SlidingWindowUnit(h, w, c, lane_bits=k, lanes=lanes,
                                        ram_reg=mvu_options.get("ram_reg", True))
        self.gather = (WidthConverter(k, lanes, fold.simd, fold.n_in,
                                      eager=mvu_options.get("ram_reg", True))
                       if in_words == 1 else None)
        self.mvu = MatrixVectorUnit(fold.n_in, fold.n_out, fold.simd, fold.pe, k, "threshold",
                                    input_kind=fold.input_kind, flags=fold.pool,
                                    mmv=fold.mmv, output_slice=output_slice,
                                    in_words=in_words, **mvu_options)
        if in_words > 1 and len(self.mvu.i.payload) != k * lanes:
            raise ValueError(f"ConvEngine {fold.format()}: in_words {in_words} makes "
                             f"{len(self.mvu.i.payload)}-bit words, the window beats are "
                             f"{k * lanes} bits")
        self.pool = (MaxPool2x2(h, w, fold.n_out, fold.pe,
                                write_reg=mvu_options.get("ram_reg", True))
                     if fold.pool else None)
        self.end_slice = RegisterSlice(fold.pe, skid=True) if end_slice else None
        if pool_slice and self.pool is None:
            raise ValueError(f"ConvEngine {fold.format()}: pool_slice needs a pooled fold")
        self.pool_slice = (RegisterSlice(self.mvu.shape.out_beat_bits, skid=True)
                           if pool_slice else None)
        self.window_slice = RegisterSlice(k * lanes, skid=True) if window_slice else None
        self.input_slice = RegisterSlice(k * lanes, skid=True) if input_slice else None
        self.shape = self.mvu.shape
        super().__init__({"i": In(stream.Signature(k * lanes)),
                          "o": Out(stream.Signature(fold.pe)),
                          "wr": In(WriteSignature(self.shape)),
                          "busy": Out(1), "abort": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = reset_by_replica(m, self.window, self.abort, "window")
        m.submodules.mvu = reset_by_replica(m, self.mvu, self.abort, "mvu")
        if self.input_slice is not None:
            m.submodules.input_slice = reset_by_replica(m, self.input_slice, self.abort,
                                                        "input_slice")
            wiring.connect(m, wiring.flipped(self.i), self.input_slice.i)
            wiring.connect(m, self.input_slice.o, self.window.i)
        else:
            wiring.connect(m, wiring.flipped(self.i), self.window.i)
        windows = self.window.o
        if self.window_slice is not None:
            m.submodules.window_slice = reset_by_replica(m, self.window_slice, self.abort,
                                                         "window_slice")
            wiring.connect(m, windows, self.window_slice.i)
            windows = self.window_slice.o
        if self.gather is not None:
            m.submodules.gather = reset_by_replica(m, self.gather, self.abort, "gather")
            wiring.connect(m, windows, self.gather.i)
            windows = self.gather.o
        wiring.connect(m, windows, self.mvu.i)
        wiring.connect(m, wiring.flipped(self.wr), self.mvu.wr)
        m.d.comb += self.busy.eq(self.mvu.busy)
        out = self.mvu.o
        if self.pool_slice is not None:
            m.submodules.pool_slice = reset_by_replica(m, self.pool_slice, self.abort,
                                                       "pool_slice")
            wiring.connect(m, out, self.pool_slice.i)
            out = self.pool_slice.o
        if self.pool is not None:
            m.submodules.pool = reset_by_replica(m, self.pool, self.abort, "pool")
            wiring.connect(m, out, self.pool.i)
            out = self.pool.o
        if self.end_slice is not None:
            m.submodules.end_slice = reset_by_replica(m, self.end_slice, self.abort, "end_slice")
            wiring.connect(m, out, self.end_slice.i)
            out = self.end_slice.o
        wiring.connect(m, out, wiring.flipped(self.o))
        return m
