"""A first-word-fall-through FIFO in block RAM whose memories see only registers: every
address, enable and data pin of every block comes straight from a flip-flop, so a FIFO
spread over many block RAMs across the die costs route, not logic, in front of them."""
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core.pipeline import replica

from .counters import wrapped_next

__all__ = ["BlockFIFO", "READ_AHEAD", "CHUNK_BITS", "chunk_widths", "input_fifo",
           "uses_block_fifo"]

#: Most memory columns behind one set of address and enable registers: 72 = eight 2048 × 9
#: block RAMs on ECP5, which Yosys picks for a FIFO of 2,048 words without a multiplexer.
CHUNK_BITS = 72

#: Words the output stage holds: a word decided in cycle t is in it at t + 4 (the decision's
#: register, the block RAM's read, a register after it, the push), so 5 keep one word per
#: cycle flowing; 8, a power of two (the pointers wrap), in LUT RAM as cheap as 5.
READ_AHEAD = 8


class BlockFIFO(wiring.Component):
    """FIFO of ``depth`` words of ``width`` bits: block RAM behind an 8-word read-ahead stage.

    The same ports and behaviour as Amaranth's ``SyncFIFOBuffered`` (first word fall
    through, ``level`` every word written and not yet read) for a reader that takes at most
    one word per cycle, with the block RAMs' pins driven by registers only: the ECP5 SFC
    build's critical path ran from the reader's ready through ``SyncFIFOBuffered``'s read
    enable to the clock enables of 26 block RAMs spread over the die (build 9).

    * The memory is chunks of at most ``chunk_bits`` columns, each with registers of its own
      (replicas, kept apart on ECP5, each next to its own block RAMs): the write enable and
      address (an accepted word is written the cycle after, its data registered every cycle) and
      the read address. It reads every cycle (no clock enable); the read address steps when
      a read *issued* in the cycle before says so.
    * Whether to read is decided from registers (words in memory, words in flight, words in
      the output stage) and registered; the word lands in the output stage four cycles after
      the decision. The output stage (LUT RAM) holds :data:`READ_AHEAD` words, so a reader
      taking one word per cycle from a filled FIFO never waits.

    Parameters
    ----------
    width, depth : int
        Word width and capacity (``level ≤ depth``: the memory and the output stage together).
    chunk_bits : int
        Most memory columns behind one set of address and enable registers.

    Ports
    -----
    w_en, w_data, w_rdy : In(1), In(width), Out(1)
        Write ``w_data`` when ``w_en & w_rdy``; ``w_rdy = level < depth``.
    r_en, r_data, r_rdy : In(1), Out(width), Out(1)
        ``r_data`` is the oldest word while ``r_rdy``; ``r_en & r_rdy`` takes it.
    level : Out(range(depth + 1))

    Timing
    ------
    A word written into an empty FIFO in cycle t is readable at t + 6 (``SyncFIFOBuffered``:
    t + 2); one word per cycle in and out; a full output stage is ready as soon as its words
    are (a run whose words were written before it starts sees no difference).
    """

    def __init__(self, width, depth, chunk_bits=CHUNK_BITS):
        if width < 1 or depth < READ_AHEAD + 1:
            raise ValueError(f"BlockFIFO needs width ≥ 1 and depth > {READ_AHEAD}, got "
                             f"width={width}, depth={depth}")
        self.width, self.depth, self.chunk_bits = width, depth, chunk_bits
        super().__init__({
            "w_en": In(1), "w_data": In(width), "w_rdy": Out(1),
            "r_en": In(1), "r_data": Out(width), "r_rdy": Out(1),
            "level": Out(range(depth + 1))})

    def elaborate(self, platform):
        m = Module()
        W, D = self.width, self.depth
        level = Signal(range(D + 1))           # words written and not yet read
        pending = Signal()                     # a word accepted last cycle: written now
        stored = Signal(range(D + 1))          # words in memory not yet decided
        issue = Signal()                       # a read decided last cycle: step the address
        arriving = Signal()                    # the memory's output is a decided word
        held = Signal(range(READ_AHEAD + 1))   # words in the output stage

        do_write = self.w_en & self.w_rdy
        do_read = self.r_en & self.r_rdy
        landing = Signal()                     # the register after the read holds a word
        decide = (stored != 0) & (held + issue + arriving + landing < READ_AHEAD)
        m.d.comb += [self.w_rdy.eq(level != D), self.r_rdy.eq(held != 0),
                     self.level.eq(level)]
        m.d.sync += [level.eq(level + do_write - do_read), pending.eq(do_write),
                     issue.eq(decide), arriving.eq(issue),
                     stored.eq(stored + pending - decide),
                     held.eq(held + landing - do_read)]
        # the data is taken every cycle, written only when `pending` says so: a clock enable
        # from `do_write` would give the level's one-cycle loop (level → w_rdy → do_write →
        # level) a net to every data flip-flop, which pulled its logic 40 columns away (ECP5
        # SFC build 15's critical path, 11.7 ns)
        pending_data = Signal(W, reset_less=True)
        m.d.sync += pending_data.eq(self.w_data)

        # the memory, in chunks of columns: each writes from and reads at registers of its own
        words = []
        lo = 0
        for c, bits in enumerate(chunk_widths(W, self.chunk_bits)):
            hi = lo + bits
            m.submodules[f"storage{c}"] = mem = Memory(
                shape=bits, depth=D, init=[], attrs={"no_rw_check": 1})
            wr, rd = mem.write_port(), mem.read_port(domain="comb")
            write = Signal(name=replica(f"write{c}"))
            produce = Signal(range(D), name=replica(f"produce{c}"))
            consume = Signal(range(D), name=replica(f"consume{c}"))
            m.d.sync += write.eq(do_write)
            with m.If(write):
                m.d.sync += produce.eq(wrapped_next(produce, D))
            with m.If(issue):
                m.d.sync += consume.eq(wrapped_next(consume, D))
            data = Signal(bits, name=f"read{c}", reset_less=True)   # the block's register
            m.d.sync += data.eq(rd.data)
            m.d.comb += [wr.en.eq(write), wr.addr.eq(produce), wr.data.eq(pending_data[lo:hi]),
                         rd.addr.eq(consume)]
            words.append(data)
            lo = hi
        # the block RAMs' read (5.8 ns clock-to-out, no output register) meets a register
        # before the output stage's LUT-RAM write port (ECP5 SFC build 20: 0.6 ns late)
        read = Signal(W, name="read_far", reset_less=True)
        m.d.sync += [read.eq(Cat(*words)), landing.eq(arriving)]

        # the output stage: READ_AHEAD words in LUT RAM (a few LUTs per 4 bits, where
        # registers and their multiplexers would cost one LUT or more per bit), written at its
        # own pointer as words arrive and read at another by the reader
        m.submodules.ahead = ahead = Memory(shape=W, depth=READ_AHEAD, init=[],
                                            attrs={"no_rw_check": 1})
        put, get = ahead.write_port(), ahead.read_port(domain="comb")
        put_at = Signal(range(READ_AHEAD))
        get_at = Signal(range(READ_AHEAD))
        m.d.comb += [put.en.eq(landing), put.addr.eq(put_at), put.data.eq(read),
                     get.addr.eq(get_at), self.r_data.eq(get.data)]
        with m.If(landing):
            m.d.sync += put_at.eq(put_at + 1)       # READ_AHEAD is a power of two: it wraps
        with m.If(do_read):
            m.d.sync += get_at.eq(get_at + 1)
        return m


def chunk_widths(width, chunk_bits=CHUNK_BITS):
    """The column widths of a :class:`BlockFIFO`'s memories, lowest bits first."""
    full, rest = divmod(width, chunk_bits)
    return [chunk_bits] * full + ([rest] if rest else [])


def uses_block_fifo(depth, ram_reg):
    """Whether the dataflow core's input FIFO is a :class:`BlockFIFO`: on builds with
    ``ram_reg`` (ECP5; a run's words are written before it starts, so its reads see no
    difference) and deeper than the read-ahead. Otherwise Amaranth's ``SyncFIFOBuffered``
    (iCE40, where the registers would cost logic cells)."""
    return bool(ram_reg) and depth > READ_AHEAD


def input_fifo(width, depth, ram_reg):
    """The dataflow core's input FIFO (:func:`uses_block_fifo` says which)."""
    if uses_block_fifo(depth, ram_reg):
        return BlockFIFO(width, depth)
    return SyncFIFOBuffered(width=width, depth=depth)
