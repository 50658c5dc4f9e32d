"""2×2 max-pool on a stream of bits behind a conv engine (issue #26).

Semantics (sw/layers/conv.py ``pool_bits``, docs/conv.md "Max-pool"): 2×2 windows, stride 2,
output ``⌊H/2⌋×⌊W/2⌋`` (an odd last row or column is dropped), per channel an OR of the four
bits for direction +1 and an AND for direction −1. The directions are run-time data (the host
writes them with the thresholds), so they travel in the stream: every input beat carries, beside
its P value bits, the P channels' AND flags (1 = direction −1), as a conv engine built with
``flags=True`` sends them (hw/dataflow/mvu.py).

One rule for both kinds of channel: ``AND_i b_i = ¬OR_i ¬b_i``, so the unit ORs ``v XOR f``
(value XOR flag) over the window and XORs the flag back at the end: one OR per bit, no
per-channel multiplexer.

Data flow (input beats in HWC order: pixel ``(y, x)``, fold ``cf`` = channels ``cf·P…cf·P+P−1``)::

    beat (y, x, cf) ─► v XOR f ─┬─ OR ◄── partial[X, cf] (row memory, prefetched)
                                ├──────► partial[X, cf]            (pixels 00, 01, 10 of a window)
                                └─ XOR f ─► output register ─► o   (pixel 11: window complete)

The row memory holds the partial results of the current row of windows, word ``X·CF + cf``
for window column ``X`` and fold ``cf`` (``⌊W/2⌋·C/P`` words of P bits): window row ``Y``
reads and writes it during input rows ``2Y`` and ``2Y+1``, window row ``Y+1`` starts over it
(its first pixel writes without reading).
"""
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .counters import counter, wrapped_next

__all__ = ["MaxPool2x2", "pool_timing", "PoolModel"]

POOL = 2


def check_pool_geometry(height, width, channels, lanes):
    """Refuse a geometry the pool cannot run: ValueError naming the parameter."""
    for name, v in (("height", height), ("width", width), ("channels", channels),
                    ("lanes", lanes)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"MaxPool2x2 {name} must be a positive integer, got {v!r}")
    for name, v in (("height", height), ("width", width)):
        if v < POOL:
            raise ValueError(f"MaxPool2x2 {name} must be at least {POOL} (one 2×2 window), "
                             f"got {v}")
    if channels % lanes:
        raise ValueError(f"MaxPool2x2 lanes ({lanes}) must divide channels ({channels})")


def _beat_kinds(height, width, folds):
    """For each input beat of one image, in stream order: ``"drop"`` (an odd last row or
    column), ``"emit"`` (pixel 11 of its window: completes an output beat) or ``"keep"``."""
    kinds = []
    for y in range(height):
        for x in range(width):
            if y >= height // POOL * POOL or x >= width // POOL * POOL:
                kind = "drop"
            elif y % POOL and x % POOL:
                kind = "emit"
            else:
                kind = "keep"
            kinds += [kind] * folds
    return kinds


def pool_timing(height, width, channels, lanes, offered):
    """Cycle model of :class:`MaxPool2x2` with ``o`` always ready.

    ``offered[i]``: the first cycle input beat ``i`` is offered (the source holds it until it
    is taken), beats of consecutive images back to back. Returns ``(accepted, emitted)``: the
    cycle each input beat is taken, and the cycle each output beat is valid. With ``o``
    ready, ``i.ready`` is always high, so a beat is taken as soon as it is offered and after
    its predecessor (one per cycle); an output beat is valid the cycle after the input beat
    that completes its window (pixel ``(2Y+1, 2X+1)``, the same fold).
    """
    check_pool_geometry(height, width, channels, lanes)
    kinds = _beat_kinds(height, width, channels // lanes)
    accepted, emitted = [], []
    for i, cycle in enumerate(offered):
        taken = cycle if not accepted else max(cycle, accepted[-1] + 1)
        accepted.append(taken)
        if kinds[i % len(kinds)] == "emit":
            emitted.append(taken + 1)
    return accepted, emitted


class PoolModel:
    """Stage model of :class:`MaxPool2x2` in a chain with backpressure
    (:mod:`xnorflow.hw.dataflow.timing`, "stream models"): a beat that completes no window is
    taken as soon as it is offered; one that completes a window (pixel ``(2Y+1, 2X+1)``)
    only while the output register is empty or its beat leaves (``i.ready = ¬emits ∨
    ¬o.valid ∨ o.ready``); the window's output beat is valid the cycle after.
    """

    def __init__(self, height, width, channels, lanes):
        check_pool_geometry(height, width, channels, lanes)
        kinds = _beat_kinds(height, width, channels // lanes)
        self.in_beats = len(kinds)
        self.emitting = [b for b, kind in enumerate(kinds) if kind == "emit"]
        self.out_beats = len(self.emitting)
        self.output_of = {b: k for k, b in enumerate(self.emitting)}
        self.i = self.o = None

    def accept(self, n, valid):
        image, beat = divmod(n, self.in_beats)
        k = self.output_of.get(beat)
        if k is None or (image == 0 and k == 0):     # no window beat waiting before it
            return valid
        return max(valid, self.o.taken(image * self.out_beats + k - 1))

    def valid(self, n):
        image, k = divmod(n, self.out_beats)
        return self.i.taken(image * self.in_beats + self.emitting[k]) + 1


class MaxPool2x2(wiring.Component):
    """2×2, stride-2 max-pool of a bit stream, OR or AND per channel as its flag says.

    Parameters
    ----------
    height, width : int
        H and W of the input feature map, at least 2; the output is ``⌊H/2⌋×⌊W/2⌋`` (the
        beats of an odd last row or column are taken and produce nothing).
    channels : int
        C, channels per pixel.
    lanes : int
        P, channels per beat; must divide C (``CF = C/P`` beats per pixel).
    write_reg : bool
        Write the row memory from registers, a cycle after the beat is taken, so the memory
        (LUT RAM on ECP5) is not written by the producer's logic (ECP5 CNV build cnv10k: the
        row's LUT RAM written from the engine's output, 3.9 ns late at 100 MHz), and read it
        at an address register of its own. The timing is the same; the two words a read can
        then miss are forwarded (below).

    Ports
    -----
    i : In(stream.Signature(2·P))
        ``H·W·CF`` beats per image, HWC order, images back to back: bit ``p`` the value of
        channel ``cf·P + p`` of one pixel, bit ``P + p`` its AND flag (1: direction −1, AND
        over the window; 0: OR). The flags are the channels' directions, the same in every
        beat of a channel (the unit uses each beat's own flags; mixed flags within one
        window are not meaningful).
    o : Out(stream.Signature(P))
        ``⌊H/2⌋·⌊W/2⌋·CF`` beats per image, HWC order of the pooled map: bit ``p`` channel
        ``cf·P + p`` of window ``(Y, X)``.

    Timing
    ------
    Latency 1: the output beat of window ``(Y, X)``, fold ``cf`` is valid the cycle after
    input beat ``(2Y+1, 2X+1, cf)`` is taken (the output is a register, so ``o.valid``
    never depends on ``o.ready``). Throughput one input beat per cycle while ``o`` is ready:
    ``i.ready = ¬emits ∨ ¬o.valid ∨ o.ready``, where ``emits`` (this beat completes a window)
    comes from the position counters alone: a beat that completes no window is taken the
    cycle it is offered even while ``o`` stalls (:func:`pool_timing`).

    Why a synchronous read, prefetched
    ----------------------------------
    The row memory is read synchronously (an asynchronous Amaranth port followed by a
    register, which Yosys merges into the RAM and for which it honours ``no_rw_check``, as
    in hw/registered_read.py): iCE40 has no LUT RAM, so an asynchronous read would become
    ``⌊W/2⌋·C`` flip-flops and a multiplexer tree, while a synchronous one maps to an
    SB_RAM40_4K; on ECP5 it is LUT RAM (DPR16X4) plus a P-bit register, or an EBR when deep
    (Yosys 0.70, ``synth_ice40``/``synth_ecp5``, memory mapping: 32×32×64 at P = 8, 128
    words of 8 bits, one SB_RAM40_4K or 16 TRELLIS_DPR16X4; 16×16×64 at P = 64, 8 words of
    64 bits, four SB_RAM40_4K or 16 TRELLIS_DPR16X4).
    It costs no throughput: the address of the next beat depends only on the position
    counters, so the word the next beat needs is read when the current beat is taken and
    waits in the read register (the memory changes only when a beat is taken). The one word
    that read can miss is the one being written in the same cycle, which happens only when
    ``CF = 1`` (pixel 00 → 01 of a window, or a single window per row): then the written word
    is forwarded from a P-bit register instead. With ``write_reg`` a write lands a cycle
    later, so a read also misses the word the beat before wrote when that beat was taken in
    the cycle before (``CF = 2``, or ``CF = 1`` with one window per row): that word is
    forwarded from a second register.

    Registers besides the memory: the position counters (fold, column, row, word address),
    the P-bit read register, the output register (P + 1) and, when ``CF = 1``, the
    forwarding register (P + 1); with ``write_reg`` the write's (P + address + 1), the read
    address and two forwarding registers (2·P + 2) whatever ``CF``.
    """

    def __init__(self, height, width, channels, lanes, write_reg=False):
        check_pool_geometry(height, width, channels, lanes)
        self.height, self.width, self.channels, self.lanes = height, width, channels, lanes
        self.write_reg = bool(write_reg)
        self.folds = channels // lanes
        self.out_height, self.out_width = height // POOL, width // POOL
        self.row_words = self.out_width * self.folds
        self.in_beats = height * width * self.folds
        self.out_beats = self.out_height * self.out_width * self.folds
        super().__init__({"i": In(stream.Signature(2 * lanes)),
                          "o": Out(stream.Signature(lanes))})

    def elaborate(self, platform):
        m = Module()
        P, CF, H, W, D = self.lanes, self.folds, self.height, self.width, self.row_words

        # ---- position of the beat on `i`: counters only, never the payload ---------------
        cf, x, y, addr = counter(CF), counter(W), counter(H), counter(D)
        dx, dy = x[0], y[0]
        # An odd last column must not touch the row memory (its pixels would write over
        # window 0's partials). An odd last row needs no case of its own: it is a dy = 0 row,
        # whose partials the next image's first row overwrites before it reads any.
        dropped = (x == W - 1) if W % POOL else Const(0, 1)
        fold_end = cf == CF - 1
        reads = ~dropped & (dx | dy)           # pixels 01, 10, 11 add to a stored partial
        writes = ~dropped & ~(dx & dy)         # pixels 00, 01, 10 store the partial
        emits = ~dropped & dx & dy             # pixel 11 completes the window
        # word X·CF + cf: back to the window's first fold after pixel dx = 0, on to the next
        # window after dx = 1 (wrapping after the last: the dropped column and the next row
        # start at word 0)
        def word_after(addr, cf, x):
            return Mux(cf != CF - 1, addr + 1, Mux(x[0], wrapped_next(addr, D), addr - (CF - 1)))
        next_addr = word_after(addr, cf, x)

        take = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~emits | ~self.o.valid | self.o.ready)
        with m.If(take):
            m.d.sync += [addr.eq(next_addr), cf.eq(wrapped_next(cf, CF))]
            with m.If(fold_end):
                m.d.sync += x.eq(wrapped_next(x, W))
                with m.If(x == W - 1):
                    m.d.sync += y.eq(wrapped_next(y, H))

        # ---- row memory, read one beat ahead --------------------------------------------
        m.submodules.row = row = Memory(shape=P, depth=max(D, 2), init=[],
                                        attrs={"no_rw_check": 1})
        wr, rd = row.write_port(), row.read_port(domain="comb")
        read = Signal(P, name="read_partial", reset_less=True)
        if self.write_reg:
            # the read address from a register that always holds next_addr, loaded with the
            # word after it at a take: the LUT RAM's address then starts at a flip-flop, not
            # at the counters' adders (CNV build cnv9r: conv 2's read 0.6 ns late at 95 MHz)
            read_addr = Signal.like(rd.addr, name="read_addr", init=1 if CF > 1 else 0)
            with m.If(take):
                m.d.sync += read_addr.eq(word_after(
                    next_addr, wrapped_next(cf, CF), Mux(fold_end, wrapped_next(x, W), x)))
            m.d.comb += rd.addr.eq(read_addr)
        else:
            m.d.comb += rd.addr.eq(next_addr)
        with m.If(take):
            m.d.sync += read.eq(rd.data)

        values, flags = self.i.payload[:P], self.i.payload[P:]
        partial = Signal(P)                    # this beat's partial: OR of v XOR f so far
        stored = read
        if self.write_reg:
            stored = self._forward_registered(m, take, writes, addr, next_addr, partial, read,
                                              wr)
        elif CF == 1:
            stored = self._forward(m, take, writes & (next_addr == addr), partial, read)
        m.d.comb += partial.eq((values ^ flags) | Mux(reads, stored, 0))
        write = [wr.addr.eq(addr), wr.data.eq(partial), wr.en.eq(take & writes)]
        if self.write_reg:
            m.d.sync += write
        else:
            m.d.comb += write

        # ---- output register ------------------------------------------------------------
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take & emits):
            m.d.sync += [self.o.payload.eq(partial ^ flags), self.o.valid.eq(1)]
        return m

    @staticmethod
    def _forward_registered(m, take, writes, addr, next_addr, partial, read, wr):
        """With the write a cycle late (``wr``'s signals are registers): the word read for the
        next beat, or the newer one a read cannot have seen. At a take the memory lacks this
        beat's write (it lands two cycles on) and the write still in ``wr`` (the beat taken
        the cycle before, landing at this cycle's end); the newest matching one wins."""
        written = Signal.like(partial, name="forwarded_partial", reset_less=True)
        older = Signal.like(partial, name="forwarded_pending", reset_less=True)
        from_written, from_older = Signal(), Signal()
        with m.If(take):
            m.d.sync += [written.eq(partial), older.eq(wr.data),
                         from_written.eq(writes & (next_addr == addr)),
                         from_older.eq(wr.en & (next_addr == wr.addr))]
        return Mux(from_written, written, Mux(from_older, older, read))

    @staticmethod
    def _forward(m, take, same_word, partial, read):
        """The read register's word, or, when the beat taken wrote the very word read for
        the next one (``same_word``: the read saw the old word, ``no_rw_check``), the word
        it wrote. Both registers load only when a beat is taken, as the read register does."""
        written = Signal.like(partial, name="forwarded_partial", reset_less=True)
        forwarding = Signal()
        with m.If(take):
            m.d.sync += [written.eq(partial), forwarding.eq(same_word)]
        return Mux(forwarding, written, read)
