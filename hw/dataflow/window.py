"""Sliding-window unit of the dataflow convolution: an HWC image stream → every output pixel's
im2col window, for the MatrixVectorUnit that follows it.

A conv layer is a :class:`SlidingWindowUnit` feeding a MatrixVectorUnit whose "vectors" are the
output pixels' windows (docs/conv.md): 3×3 kernel, stride 1, one pixel of padding on every side
(output ``H×W``). The window of output pixel ``(y, x)`` lists its nine taps in tap-major order,
element ``(ky·3 + kx)·C + c`` = input ``(y + ky − 1, x + kx − 1, c)``; a tap outside the image is
all-zero bits (PAD_BIT = 0: −1 in binary layers, the integer 0 in the unsigned k-bit first
layer). :func:`window_timing` is the unit's exact cycle model in pure Python with ``o`` always
ready; :class:`WindowModel` the same with backpressure, a stage of a chain's model
(:mod:`xnorflow.hw.dataflow.timing`, "stream models").
"""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .counters import counter, wrapped_next
from .timing import OnDemand

__all__ = ["KERNEL", "SlidingWindowUnit", "default_rows", "window_timing", "WindowModel"]

KERNEL = 3
"""Kernel side: the unit produces 3×3 windows (stride 1, one pixel of padding)."""

_RING_ROWS = 4
"""Default ring size: the writer fills row y + 2 while the reader walks output row y, which
reads rows y − 1 … y + 1, so the reader never waits for a row once the input keeps up."""


def default_rows(height):
    """Line buffers in the ring when none is asked for: ``min(height + 2, 4)``
    (:data:`_RING_ROWS`; an image of fewer than 4 rows gets two more, so the next image's
    first rows never wait for its last output row)."""
    return min(height + 2, _RING_ROWS)


def _min_rows(height):
    """The fewest line buffers that never deadlock: an output row reads up to three input rows
    (all of them when the image has fewer)."""
    return min(height, KERNEL)


def _check_geometry(owner, height, width, channels, lanes, rows, lane_bits=1):
    """The parameters both the component and its model accept; ``rows`` resolved (None → default)."""
    for name, v in (("height", height), ("width", width), ("channels", channels),
                    ("lane_bits", lane_bits), ("lanes", lanes)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{owner} {name} must be a positive integer, got {v!r}")
    if channels % lanes:
        raise ValueError(f"{owner} lanes must divide channels: {lanes} lanes per beat, "
                         f"{channels} channels")
    if rows is None:
        rows = default_rows(height)
    if not isinstance(rows, int) or rows < _min_rows(height):
        raise ValueError(f"{owner} rows must be an integer of at least {_min_rows(height)} "
                         f"(the input rows one output row reads) for height {height}, "
                         f"got {rows!r}")
    return rows




def _rows_needed(y, height):
    """Input rows output row ``y`` needs beyond those the previous output row of the same image
    needed: rows 0 and 1 for the first, row y + 1 for the middle ones, none for the last (a
    one-row image's only output row needs its only row)."""
    if y == 0:
        return min(2, height)
    return 1 if y + 1 < height else 0


def _rows_released(y, height):
    """Input rows no later output row reads once output row ``y`` is done: row y − 1, and at the
    image's last row also the last two (the next image reads none of them)."""
    if y == height - 1:
        return min(2, height)
    return 1 if y > 0 else 0


class SlidingWindowUnit(wiring.Component):
    """An HWC image stream in, the 3×3 window of every output pixel out (stride 1, pad 1).

    Parameters
    ----------
    height, width, channels : int
        The image: ``H×W`` pixels of ``C`` channels, element ``(y·W + x)·C + c``.
    lane_bits : int
        Bits per element (1 for binary activations; k for the k-bit first layer).
    lanes : int
        Elements per beat ``S`` on both streams; must divide ``channels`` (a tap is then whole
        beats, ``C/S`` of them).
    rows : int
        Line buffers in the ring, default ``min(height + 2, 4)``, at least
        ``min(height, 3)``. Why 4: the reader walks output row y, which reads input rows y − 1 … y + 1, and the writer
        fills row y + 2 at the same time, so row y + 1's walk starts as soon as row y's ends.
        With 3 the writer must wait for the end of row y to overwrite row y − 1 with row y + 2
        and the reader then waits for it (fewer than 3 would deadlock). An image of fewer
        than 4 rows gets two rows more than it has, so the next image's first rows never
        wait for its last output row ("Timing").
    ram_reg : bool
        The ring's ports from registers (ECP5 builds): the write lands a cycle after its beat
        is taken, the read address is a register loaded with the walk's next address
        whenever the walk moves on, and the read passes two registers, the block RAM's and
        one after it, both loaded whenever the output may move (one stall enable for the two
        stages). The second is the one the ECP5 flow moves into the block RAM's output
        register (sw/bram_output_registers.py, ``OCE`` its enable): the read's data then
        leaves the block RAM 1.0 ns after the clock instead of 5.6, which with the padding
        multiplexer after it was 1.4 ns late at 100 MHz (CNV build cnv9e, conv 3). Every
        output beat is then valid a cycle later; see "Timing".

    Ports
    -----
    i : In(stream.Signature(S·lane_bits))
        ``H·W·C/S`` beats per image in HWC order, images back to back.
    o : Out(stream.Signature(S·lane_bits))
        Per image, per output pixel (row-major), the nine taps in tap-major order, each tap
        ``C/S`` beats: ``9·H·W·C/S`` beats per image. Lane ``j`` of a beat is channel
        ``c0 + j`` in bits ``[j·lane_bits, (j+1)·lane_bits)``; a tap outside the image is all
        zeros.

    Memory
    ------
    One ring of ``rows·W·C/S`` words of ``S·lane_bits`` bits (block RAM; with ``ram_reg``
    marked ``ram_style = "block"``, so also when small), one write port
    and one registered read: input row ``r`` of the stream (counted over images) lives in
    slot ``r mod rows``. The read is an asynchronous port plus a register
    (hw/registered_read.py: Yosys then merges the register into the block RAM and honours
    ``no_rw_check``, which holds: the reader reads only whole rows the writer will not
    touch until they are released; a padding tap's read is discarded). The register is the
    output payload, with an enable for output stalls; padding taps are zeroed after it by a
    registered flag (no memory read needed), so the block RAM's output register stays a
    plain one.

    Timing
    ------
    Two counters of whole rows, between a writer that fills the ring in order and a reader
    that walks output rows:

    * **Input is accepted** (``i.ready``, a register: never waits on ``i.valid``) whenever the
      ring slot of the row being written is free: the reader has issued the last beat of every
      output row that reads the row that slot holds (output row ``min(q + 1, H − 1)`` of the
      same image is the last to read row ``q``). A slot freed in cycle t takes input from
      cycle t + 1, one beat per cycle.
    * **An output row starts** when the input rows it reads are all written (the last beat of
      row ``min(y + 1, H − 1)`` accepted in an earlier cycle), and then issues one beat per
      cycle with ``o`` ready: its ``9·W·C/S`` beats are consecutive, and the next row starts
      right after when its rows are in. ``o.valid`` is a register (the beat issued in cycle t is
      valid in t + 1; t + 2 with ``ram_reg``); a stall holds it and the payload. With
      ``ram_reg`` the two read stages move together: a beat is issued only in a cycle the
      output register is empty or leaves, and it moves on to the output in the first such
      cycle after its issue.
    * **Latency**: with the input arriving one beat per cycle into an idle unit, the first
      output beat is valid ``min(2, H)·W·C/S + 1`` cycles (``+ 2`` with ``ram_reg``) after the
      cycle the first input beat is accepted (output row 0 waits for input rows 0 and 1).
    * **Cycles per image**, the output never waiting and the input keeping up: exactly
      ``9·H·W·C/S`` when ``rows ≥ min(H + 2, 4)`` (images back to back without a gap: the
      next image's rows 0 and 1 are written while the reader finishes the previous one). With
      fewer rows the reader also waits for rows the ring could not take early, in the steady
      state ``(H − 2)·W·C/S`` more cycles per image with ``rows = 3`` and ``H ≥ 3`` (rows
      2 … H − 2 and the next image's row 1 each wait for a whole row of input), and
      ``H·W·C/S`` with the default ``rows = H ≤ 2``.

    :func:`window_timing` gives the exact cycle of every input and output beat for any input
    schedule with ``o`` always ready (``hw/dataflow/test_window.py`` requires equality with the
    simulated unit).
    """

    def __init__(self, height, width, channels, lane_bits=1, lanes=1, rows=None, ram_reg=False):
        rows = _check_geometry("SlidingWindowUnit", height, width, channels, lanes, rows,
                               lane_bits)
        self.ram_reg = bool(ram_reg)
        self.height, self.width, self.channels = height, width, channels
        self.lane_bits, self.lanes, self.rows = lane_bits, lanes, rows
        self.tap_beats = channels // lanes                 # beats per pixel (per tap)
        self.row_beats = width * self.tap_beats            # words per line buffer
        self.in_beats = height * self.row_beats            # per image
        self.out_beats = KERNEL * KERNEL * self.in_beats   # per image
        beat = stream.Signature(lanes * lane_bits)
        super().__init__({"i": In(beat), "o": Out(beat)})

    def elaborate(self, platform):
        m = Module()
        R, WB = self.rows, self.row_beats
        depth = R * WB
        # At least two words: a one-word memory has a zero-width address, which the Verilog
        # writer emits as an illegal [-1:0] range (a 1×1 image with C = S).
        # With ram_reg the ring is block RAM however small, so its read register can be the
        # block RAM's (conv 1's 448-bit ring in LUT RAM: the read multiplexer of its seven
        # LUT RAMs 0.9 ns late at 95 MHz, CNV build cnv9r)
        attrs = {"no_rw_check": 1, **({"ram_style": "block"} if self.ram_reg else {})}
        m.submodules.ring = ring = Memory(shape=self.lanes * self.lane_bits,
                                          depth=max(depth, 2), init=[], attrs=attrs)
        wr, rd = ring.write_port(), ring.read_port(domain="comb")

        # rows written but not yet claimed by an output row / ring slots free for writing
        have = Signal(range(R + 1))
        free = Signal(range(R + 1), init=R)
        wrote_row = self._writer(m, wr, free)
        claim, release = self._reader(m, rd, have)
        m.d.sync += [have.eq(have + wrote_row - claim), free.eq(free - wrote_row + release)]
        return m

    def _writer(self, m, wr, free):
        """Fill the ring in order, one beat per cycle while the slot being written is free;
        returns the signal that is high in the cycle a row's last beat is written."""
        R, WB = self.rows, self.row_beats
        addr, col = counter(R * WB), counter(WB)
        take = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(free != 0)
        write = [wr.en.eq(take), wr.addr.eq(addr), wr.data.eq(self.i.payload)]
        # ram_reg: the write lands a cycle after the beat is taken, from registers, so the
        # ring's memory is not written by the producer's logic (ECP5 CNV build cnv10k: the
        # ring's LUT RAM written from the converter, 3.8 ns late). No read can miss it: the
        # newest beat of a row is read three taps or more after its output row starts,
        # and that is a cycle after the row's last beat at the earliest.
        if self.ram_reg:
            m.d.sync += write
        else:
            m.d.comb += write
        with m.If(take):
            m.d.sync += [addr.eq(wrapped_next(addr, R * WB)), col.eq(wrapped_next(col, WB))]
        wrote_row = Signal()
        m.d.comb += wrote_row.eq(take & (col == WB - 1))
        return wrote_row

    def _reader(self, m, rd, have):
        """Walk every output pixel's taps (ky, kx) and beats b, one beat per cycle; returns the
        rows claimed (at an output row's first beat) and released (at its last) this cycle."""
        H, W, B, R = self.height, self.width, self.tap_beats, self.rows
        WB = self.row_beats
        b, kx, ky = counter(B), counter(KERNEL), counter(KERNEL)
        x, y = counter(W), counter(H)
        # x·B, and the column address (x + kx)·B + b of the tap's beat, offset by one pixel
        # so that the left padding column is 0 (the address read is col − B)
        pix, col = counter(W * B), counter((W + 2) * B)
        # ring addresses of the rows y − 1, y, y + 1 (the stream's rows: y − 1 of an image's
        # first row is the previous image's last, a padding tap that reads garbage it discards)
        base = [Signal(range(max(R * WB, 2)), name=f"base_{n}", init=init)
                for n, init in enumerate(((R - 1) * WB, 0, WB % (R * WB)))]

        row_start = (b == 0) & (kx == 0) & (ky == 0) & (x == 0)
        row_end = (b == B - 1) & (kx == KERNEL - 1) & (ky == KERNEL - 1) & (x == W - 1)
        need = Signal(range(3))
        released = Signal(range(3))
        m.d.comb += [need.eq(self._per_row(y, _rows_needed)),
                     released.eq(self._per_row(y, _rows_released))]
        pad = (((ky == 0) & (y == 0)) | ((ky == KERNEL - 1) & (y == H - 1))
               | ((kx == 0) & (x == 0)) | ((kx == KERNEL - 1) & (x == W - 1)))

        can = ~row_start | (have >= need)
        advance = ~self.o.valid | self.o.ready
        issue = advance & can
        # A padding column's address falls outside the row (before slot 0 or after the last
        # slot): its read is discarded, the zero comes from pad_q.
        def address(ky, col, base):
            return Mux(ky == 0, base[0], Mux(ky == 1, base[1], base[2])) + col - B

        # reset-less: o.valid says when it is real, and with ram_reg the ECP5 flow moves only
        # flip-flops without a reset into the block RAM's output register (CNV build cnv9q:
        # with one, every ring read left its block RAM 5.6 ns after the clock, 2.0 ns late)
        data = Signal.like(self.o.payload, name="data", reset_less=True)
        pad_q = Signal()
        m.d.comb += self.o.payload.eq(Mux(pad_q, 0, data))
        if self.ram_reg:
            # the block RAM's read register, then a plain one on the same enable (OUTREG)
            read = Signal.like(data, name="data_ram", reset_less=True)
            read_valid, read_pad = Signal(name="valid_ram"), Signal(name="pad_ram")
            with m.If(advance):
                m.d.sync += [read.eq(rd.data), read_valid.eq(can), read_pad.eq(pad),
                             data.eq(read), self.o.valid.eq(read_valid), pad_q.eq(read_pad)]
        else:
            with m.If(advance):
                m.d.sync += self.o.valid.eq(can)
            with m.If(issue):
                m.d.sync += [data.eq(rd.data), pad_q.eq(pad)]
        walk = (b, kx, ky, x, y, pix, col, *base)
        following = self._step(m, walk, row_end)
        with m.If(issue):
            m.d.sync += [now.eq(then) for now, then in zip(walk, following)]
        if self.ram_reg:
            # the address of the beat the walk stands on, loaded with the next one whenever
            # it moves: the ring's address pins then start at a register, not at the row
            # multiplexer and the adder (ECP5 CNV build cnv9a: 2.0 ns late at 100 MHz)
            _, _, ky_, _, _, _, col_, *base_ = following
            start = (base[0].init - B) % (1 << len(rd.addr))     # ky = 0, col = 0
            rd_addr = Signal.like(rd.addr, name="ring_rd_addr", init=start)
            with m.If(issue):
                m.d.sync += rd_addr.eq(address(ky_, col_, base_))
            m.d.comb += rd.addr.eq(rd_addr)
        else:
            m.d.comb += rd.addr.eq(address(ky, col, base))

        claim, release = Signal(range(3)), Signal(range(3))
        m.d.comb += [claim.eq(Mux(issue & row_start, need, 0)),
                     release.eq(Mux(issue & row_end, released, 0))]
        return claim, release

    def _per_row(self, y, rows_of):
        """``rows_of(y, H)`` for the current output row ``y``: a constant unless it differs
        between the first, middle and last rows."""
        H = self.height
        first, middle, last = rows_of(0, H), rows_of(min(1, H - 1), H), rows_of(H - 1, H)
        if H <= 2:
            return Mux(y == 0, first, last)
        return Mux(y == 0, first, Mux(y == H - 1, last, middle))

    def _step(self, m, walk, row_end):
        """The walk's next position (comb signals, in the order of ``walk``): b, then kx (the
        row's three taps are consecutive addresses), then ky (back to the pixel's first
        column), then x, then y (and the ring rows)."""
        H, W, B, R = self.height, self.width, self.tap_beats, self.rows
        WB = self.row_beats
        b, kx, ky, x, y, pix, col, *base = walk
        nb, nkx, nky, nx, ny, npix, ncol, *nbase = following = [
            Signal.like(v, name=f"{v.name}_next") for v in walk]
        m.d.comb += [n.eq(v) for n, v in zip(following, walk)]
        with m.If(b != B - 1):
            m.d.comb += [nb.eq(b + 1), ncol.eq(col + 1)]
        with m.Elif(kx != KERNEL - 1):
            m.d.comb += [nb.eq(0), nkx.eq(kx + 1), ncol.eq(col + 1)]
        with m.Elif(ky != KERNEL - 1):
            m.d.comb += [nb.eq(0), nkx.eq(0), nky.eq(ky + 1), ncol.eq(pix)]
        with m.Elif(x != W - 1):
            m.d.comb += [nb.eq(0), nkx.eq(0), nky.eq(0), nx.eq(x + 1),
                         npix.eq(pix + B), ncol.eq(pix + B)]
        with m.Else():
            m.d.comb += [nb.eq(0), nkx.eq(0), nky.eq(0), nx.eq(0), npix.eq(0), ncol.eq(0),
                         ny.eq(wrapped_next(y, H))]
        with m.If(row_end):   # the stream's next row: every ring row moves on by one slot
            m.d.comb += [nbase[0].eq(base[1]), nbase[1].eq(base[2]),
                         nbase[2].eq(Mux(base[2] == (R - 1) * WB, 0, base[2] + WB))]
        return following


def window_timing(height, width, channels, lanes, rows, offered, ram_reg=False):
    """Cycle model of :class:`SlidingWindowUnit` with ``o`` always ready.

    ``offered[i]`` is the first cycle input beat ``i`` is offered (nondecreasing; the source
    holds it until it is taken); ``len(offered)`` must be whole images (``H·W·C/S`` beats
    each); ``rows`` None means the default. Returns ``(accepted, emitted)``: the cycle each
    input beat is taken and the cycle each output beat (``9·H·W·C/S`` per image) is valid, in
    the cycle numbering of ``offered``. Row granularity, as the hardware's counters (the
    component's docstring, "Timing"):

    * row ``r`` of the stream (over images) may be written from the cycle after the last beat
      of the output row that releases the row ``r − rows`` held in its slot;
    * output row ``j`` issues its first beat at ``max(end of row j − 1 + 1, cycle after the
      last beat of its last input row is accepted)``, then one beat per cycle, each valid one
      cycle after it is issued (two with ``ram_reg``).
    """
    rows = _check_geometry("window_timing", height, width, channels, lanes, rows)
    row_beats = width * (channels // lanes)
    walk = KERNEL * KERNEL * row_beats          # output beats of one output row
    image_beats = height * row_beats
    if len(offered) % image_beats:
        raise ValueError(f"window_timing: {len(offered)} offered beats are not whole images "
                         f"of {image_beats} beats")
    total_rows = len(offered) // row_beats

    def next_row_clipped(n):
        # row n + 1 of the same image, or n at an image's last row (rows counted over the
        # stream). Both the last input row output row n reads and the last output row that
        # reads input row n.
        return n - n % height + min(n % height + 1, height - 1)

    accepted, written, starts = [], [], []   # written[r]: cycle of row r's last beat

    def start_reader_rows(upto):
        while len(starts) <= upto:
            j = len(starts)
            needed = next_row_clipped(j)
            assert needed < len(written), "ring too small for the image (validated above)"
            first = written[needed] + 1
            if starts:
                first = max(first, starts[-1] + walk)
            starts.append(first)

    for r in range(total_rows):
        slot_free = 0
        if r >= rows:
            freeing = next_row_clipped(r - rows)
            start_reader_rows(freeing)
            slot_free = starts[freeing] + walk       # last beat at start + walk − 1
        for i in range(r * row_beats, (r + 1) * row_beats):
            t = max(offered[i], slot_free, accepted[-1] + 1 if accepted else 0)
            accepted.append(t)
        written.append(accepted[-1])
    start_reader_rows(total_rows - 1)
    read = 2 if ram_reg else 1
    emitted = [s + read + k for s in starts for k in range(walk)]
    return accepted, emitted


class WindowModel:
    """Stage model of :class:`SlidingWindowUnit` in a chain with backpressure
    (:mod:`xnorflow.hw.dataflow.timing`, "stream models"): the cycle model of
    :func:`window_timing` with ``o`` taken whenever the stage after it takes it.

    * **input** beat of stream row ``r`` (rows counted over images) is taken once the slot of
      row ``r − rows`` is free: the cycle after the last beat of the output row that releases
      it (output row ``min(q + 1, H − 1)`` of the same image releases row ``q``) is *issued*;
    * output beat ``n`` is **issued** when the one before it has left (``advance``: the
      output register is empty or leaves in that cycle) and, at an output row's first beat,
      once the last input row it reads is written (the cycle after its last beat is taken);
      it is valid from the cycle after it is issued.
    * with ``ram_reg`` (two read stages on one enable, ``advance``): beat ``n`` is issued no
      earlier than the cycle after beat ``n − 1`` and only in a cycle neither beat ``n − 1``
      nor ``n − 2`` sits in the output register without leaving; it is valid from the cycle
      after the first ``advance`` after its issue: ``max(issue + 2, taken(n − 1) + 1)``.
    """

    def __init__(self, height, width, channels, lanes, rows=None, ram_reg=False):
        self.rows = _check_geometry("WindowModel", height, width, channels, lanes, rows)
        self.ram_reg = bool(ram_reg)
        self.height = height
        self.row_beats = width * (channels // lanes)
        self.walk = KERNEL * KERNEL * self.row_beats       # output beats per output row
        self.issues = OnDemand(self._issue)
        self.i = self.o = None

    def _clipped_next_row(self, n):
        """Stream row n + 1 of the same image, or n at its last row: the last input row output
        row n reads, and the last output row that reads input row n."""
        return n - n % self.height + min(n % self.height + 1, self.height - 1)

    def accept(self, n, valid):
        row, beat = divmod(n, self.row_beats)
        if beat or row < self.rows:     # the slot, once free, stays free for the whole row
            return valid
        releasing = self._clipped_next_row(row - self.rows)
        return max(valid, self.issues.at((releasing + 1) * self.walk - 1) + 1)

    def _issue(self, n, issues):
        if self.ram_reg:
            t = issues[n - 1] + 1 if n else 0
        else:
            t = self.o.taken(n - 1) if n else 0
        row, beat = divmod(n, self.walk)
        if beat == 0:
            last_read = self._clipped_next_row(row)
            t = max(t, self.i.taken((last_read + 1) * self.row_beats - 1) + 1)
        if self.ram_reg:
            for k in (n - 2, n - 1):    # a beat held in the output register stalls both stages
                if k >= 0 and self.valid(k) <= t < self.o.taken(k):
                    t = self.o.taken(k)
        return t

    def valid(self, n):
        if not self.ram_reg:
            return self.issues.at(n) + 1
        first = self.issues.at(n) + 2
        return max(first, self.o.taken(n - 1) + 1) if n else first
