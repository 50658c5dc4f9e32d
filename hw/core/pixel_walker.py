"""Per-column pixel walker of a binary conv: which input pixel a column reads, and its borders."""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core.interfaces import ConvWalkSignature

__all__ = ["PixelWalker"]


class PixelWalker(wiring.Component):
    """Tracks the output pixel of one array column through a conv layer (docs/conv.md).

    Column ``j`` of column group ``g`` computes output unit ``g·Q + j`` in the layer's pixel
    order: row-major pixels, or — when the layer's 2×2 max-pool is fused into the writer —
    pool windows in row-major order with the four pixels of a window in consecutive columns
    (``j mod 4`` = ``dy·2 + dx``), so the writer can combine them. The walker keeps that
    pixel's ``(y, x)`` and the word address of its first channel word, ``base = (y·W + x)·
    pix_words``; the column reads tap word ``base + offset`` (the sequencer walks the offset)
    and injects the padding bit where the tap falls outside the image (``pad``).

    Per group the pixel moves ``Q`` pixels along its row (``Q/2`` columns and two rows when
    pooled) and wraps to the next row (pair) at most once: the program builder requires
    ``Q ≤ W`` (``Q/2 ≤ W`` pooled). Moving past the last row goes to the next image, whose
    reads only the unused columns of the last group make (their writes are suppressed).

    Parameters
    ----------
    column : int
        Index ``j`` of the column.
    Q : int
        Columns of the array (a multiple of 4 for pooled layers).

    Ports
    -----
    start : In(1)
        Load the state of group 0 (the sequencer's LOAD cycle). ``geometry`` is sampled in
        this cycle and kept for the layer.
    geometry : In(ConvWalkSignature())
        ``pool``: window-major pixel order (the layer's max-pool is fused); ``height``,
        ``width``: image size H, W; ``pix_words``, ``row_words``: words per pixel and per
        image row (``W·pix_words``); ``step_words``, ``wrap_words``: ``base`` increments per
        group without / with a row wrap (from the descriptor).
    advance : In(1)
        Step to the next group (the cycle after the column read its last word of the group).
    kx, ky : In(2)
        Tap of the word the column reads this cycle.
    base : Out(16)
        Word address of the pixel's first channel word.
    pad : Out(1)
        The tap lies outside the image: the word must be replaced by the padding bit.

    Latency and throughput
    ----------------------
    ``base`` is valid from the cycle after ``advance``, and two cycles after ``start`` (0,
    the right value for column 0, one cycle after): column ``j`` first reads ``j`` cycles
    after start. ``advance`` must not come in the two cycles after ``start`` (a group lasts at
    least ``Q`` ≥ 2, or nine words). ``pad`` is combinational from the registered
    coordinates and the tap. One step per cycle.
    """

    def __init__(self, column, Q):
        self.column, self.Q = column, Q
        super().__init__({
            "start": In(1), "geometry": In(ConvWalkSignature()),
            "advance": In(1), "kx": In(2), "ky": In(2),
            "base": Out(16), "pad": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        j, Q = self.column, self.Q
        y, x = Signal(8), Signal(8)
        # The layer's parameters, latched at start (the sequencer presents them only then),
        # and the bounds derived from them in the cycle after (``init``).
        pool, height, width = Signal(), Signal(8), Signal(8)
        pix_words, row_words = Signal(16), Signal(16)
        step_words, wrap_words = Signal(16), Signal(16)
        x_lim, y_lim, x_last, y_last = Signal(8), Signal(8), Signal(8), Signal(8)
        init = Signal()
        geo = self.geometry

        # Group 0: pixel j (row-major) or pixel j mod 4 of window j div 4 (pooled); j < W is
        # guaranteed by the program builder, so no wrap here.
        sub = j % 4
        py, px = sub >> 1, 2 * (j // 4) + (sub & 1)
        m.d.sync += init.eq(self.start)
        with m.If(self.start):
            # Only loads here: the start cycle's parameters come from the descriptor decode,
            # and arithmetic on them set the ECP5 build's Fmax (51 MHz).
            m.d.sync += [pool.eq(geo.pool), height.eq(geo.height), width.eq(geo.width),
                         pix_words.eq(geo.pix_words), row_words.eq(geo.row_words),
                         step_words.eq(geo.step_words), wrap_words.eq(geo.wrap_words),
                         y.eq(Mux(geo.pool, py, 0)), x.eq(Mux(geo.pool, px, j)),
                         self.base.eq(0)]
        with m.Elif(init):
            # The first pixel's base, and the wrap bounds: x wraps once x + step ≥ W, i.e.
            # x ≥ W − step. Column 0 (pixel (0, 0), base 0) reads in this cycle, column j ≥ 1
            # from j cycles after start on, when its base is ready.
            first = Signal(16)
            m.d.comb += first.eq(Mux(pool, (row_words if py else 0) + pix_words * px,
                                     pix_words * j))
            m.d.sync += [self.base.eq(first),
                         x_lim.eq(width - Mux(pool, Q // 2, Q)),
                         y_lim.eq(height - Mux(pool, 2, 1)),
                         x_last.eq(width - 1), y_last.eq(height - 1)]
        with m.Elif(self.advance):
            # Per group: Q pixels along the row (Q/2 and two rows pooled), wrapping to the
            # next row (pair) at most once and past the last row to the next image. Every sum
            # and the two compares are side by side, then a mux: a short path.
            wrap = x >= x_lim
            y_wrap = y >= y_lim
            m.d.sync += [
                x.eq(Mux(wrap, x - x_lim, x + Mux(pool, Q // 2, Q))),
                y.eq(Mux(wrap, Mux(y_wrap, y - y_lim, y + Mux(pool, 2, 1)), y)),
                self.base.eq(self.base + Mux(wrap, wrap_words, step_words)),
            ]
        # Border flags from the registered coordinates: a few gates before the pad register.
        top, bottom = y == 0, y == y_last
        left, right = x == 0, x == x_last
        m.d.comb += self.pad.eq(((self.ky == 0) & top) | ((self.ky == 2) & bottom) |
                                ((self.kx == 0) & left) | ((self.kx == 2) & right))
        return m
