"""Per-column pixel walker of a binary conv: which input pixel a column reads, and its borders."""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

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
        Load the state of group 0 (the sequencer's LOAD cycle). The parameters below are
        sampled in this cycle and kept for the layer.
    pool : In(1)
        Window-major pixel order (the layer's max-pool is fused).
    height, width : In(8)
        Image size H, W.
    pix_words, row_words : In(16)
        Words per pixel and per image row (``W·pix_words``).
    step_words, wrap_words : In(16)
        ``base`` increments per group without / with a row wrap (from the descriptor).
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
    ``base`` and the border flags are registers (valid the cycle after ``start``/
    ``advance``); ``pad`` is combinational from them and the tap. One step per cycle.
    """

    def __init__(self, column, Q):
        self.column, self.Q = column, Q
        super().__init__({
            "start": In(1), "pool": In(1), "height": In(8), "width": In(8),
            "pix_words": In(16), "row_words": In(16), "step_words": In(16),
            "wrap_words": In(16), "advance": In(1), "kx": In(2), "ky": In(2),
            "base": Out(16), "pad": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        j, Q = self.column, self.Q
        y, x = Signal(8), Signal(8)
        top, bottom, left, right = Signal(), Signal(), Signal(), Signal()
        # The layer's parameters, latched at start (the sequencer presents them only then).
        pool, height, width = Signal(), Signal(8), Signal(8)
        step_words, wrap_words = Signal(16), Signal(16)

        def set_flags(ny, nx):
            # Border flags registered with the coordinates: the pad decision is then a few
            # gates on the read address path.
            return [top.eq(ny == 0), bottom.eq(ny == h - 1),
                    left.eq(nx == 0), right.eq(nx == w - 1)]

        with m.If(self.start):
            # Group 0: pixel j (row-major) or pixel (j mod 4) of window j div 4 (pooled).
            # j < W is guaranteed by the program builder, so no wrap here.
            sub = j % 4
            py, px = sub >> 1, 2 * (j // 4) + (sub & 1)
            ny = Mux(self.pool, py, 0)
            nx = Mux(self.pool, px, j)
            h, w = self.height, self.width
            m.d.sync += [pool.eq(self.pool), height.eq(self.height), width.eq(self.width),
                         step_words.eq(self.step_words), wrap_words.eq(self.wrap_words),
                         y.eq(ny), x.eq(nx),
                         self.base.eq(Mux(self.pool, py * self.row_words + px * self.pix_words,
                                          j * self.pix_words)),
                         *set_flags(ny, nx)]
        with m.Elif(self.advance):
            h, w = height, width
            step_x = Mux(pool, Q // 2, Q)
            step_y = Mux(pool, 2, 1)
            xn = Signal(9)
            m.d.comb += xn.eq(x + step_x)
            wrap = xn >= width
            nx = Signal(8)
            ny = Signal(9)
            ny_w = Signal(8)
            m.d.comb += [nx.eq(Mux(wrap, xn - width, xn)),
                         ny.eq(y + Mux(wrap, step_y, 0)),
                         ny_w.eq(Mux(ny >= height, ny - height, ny))]
            m.d.sync += [x.eq(nx), y.eq(ny_w),
                         self.base.eq(self.base + Mux(wrap, wrap_words, step_words)),
                         *set_flags(ny_w, nx)]
        m.d.comb += self.pad.eq(((self.ky == 0) & top) | ((self.ky == 2) & bottom) |
                                ((self.kx == 0) & left) | ((self.kx == 2) & right))
        return m
