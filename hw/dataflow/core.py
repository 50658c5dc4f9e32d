"""The dataflow core: the engine pipeline behind the register bus, with input and output FIFOs,
run control and cycle counters (docs/dataflow.md).

::

    bus ─► decode ─┬─► registers (CTRL, COUNT) ─► run control ─► gate
                   ├─► input bytes ─► word ─► input FIFO ─► gate ─► converter ─► Pipeline.i
                   ├─► weight bytes ─► word ───────────────────────────────────► Pipeline.wr
                   └─◄ output bytes ◄─ output FIFO ◄─ converter (one integer a word) ◄─ .o

A run: the host writes up to ``in_images`` images into the input port, COUNT, then START; the
gate lets exactly COUNT images' beats into the pipeline (back to back, as fast as the first
engine takes them), the run ends when COUNT results have entered the output FIFO, and the
host reads them from the output port. Images written while a run is going on queue behind it
(the host overlaps writing run n + 1 with run n); results may be read during the run.
Nothing waits on the host: a write to a full input FIFO or a read from an empty output FIFO is
answered with a bus error, and CTRL_ABORT empties everything at any time, so no byte sequence
can wedge the core.
"""
from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.bus import ADDR_WIDTH, BusSignature

from . import memory_map as mm
from .config import DataflowConfig
from .convert import WidthConverter
from .pipeline import Pipeline

__all__ = ["DataflowCore"]

_COUNTER_BITS = 32


def _byte_of(value, index):
    """Byte ``index`` (a signal) of ``value``, zero-extended to a multiple of 8 bits."""
    nbytes = -(-len(value) // 8)
    padded = Cat(value, Const(0, 8 * nbytes - len(value)))
    return padded.word_select(index, 8) if nbytes > 1 else padded


class DataflowCore(wiring.Component):
    """The pipeline of a :class:`~hw.dataflow.config.DataflowConfig` as a bus target.

    Parameters
    ----------
    config : DataflowConfig or str

    Ports
    -----
    bus : In(BusSignature(ADDR_WIDTH))
        Target side of the register bus (hw/bus.py). Every request is acknowledged two cycles
        after ``stb`` rises (decode registered, action, ``ack`` with ``r_data``/``err``), so the
        bus decode never sets Fmax. Address map: :mod:`hw.dataflow.memory_map`.
    busy : Out(1)
        A run is in progress.

    Timing
    ------
    A run of B images written before START completes in ``latency + (B − 1)·interval``
    cycles (REG_TOTAL_CYCLES), ``interval = config.interval``; the latency is
    :func:`sw.layers.dataflow_timing.run_latency` (docs/dataflow.md, "Timing").
    """

    def __init__(self, config):
        self.config = DataflowConfig.parse(config)
        self.layout = mm.layout(self.config)
        self.pipeline = Pipeline(self.config)
        super().__init__({"bus": In(BusSignature(ADDR_WIDTH)), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.layout
        n_eng = len(cfg.engines)
        bus = self.bus

        # CTRL_ABORT resets the pipeline and both FIFOs (a synchronous reset of their state)
        abort = Signal()
        pipe = self.pipeline
        in_depth = cfg.in_images * cfg.in_words
        out_depth = cfg.out_images * cfg.out_words
        in_fifo = SyncFIFOBuffered(width=cfg.in_word_bits, depth=in_depth)
        out_fifo = SyncFIFOBuffered(width=cfg.out_word_bits, depth=out_depth)
        # the FIFOs are narrow (a few elements, one integer); converters regroup the lanes
        # into the first engine's beats and out of the last engine's
        to_first = WidthConverter(cfg.first.input_bits, cfg.in_lanes, cfg.first.simd,
                                  cfg.first.n_in)
        from_last = WidthConverter(cfg.last.acc_width, cfg.last.pe, 1, cfg.last.n_out)
        for name, block in (("pipeline", pipe), ("in_fifo", in_fifo), ("out_fifo", out_fifo),
                            ("to_first", to_first), ("from_last", from_last)):
            m.submodules[name] = ResetInserter(abort)(block)
        wiring.connect(m, to_first.o, pipe.i)
        wiring.connect(m, pipe.o, from_last.i)

        # ---- bus request, stage 0: decode into registers ----------------------------------
        stage1, ack = Signal(), Signal()
        req = bus.stb & ~stage1 & ~ack
        a = Signal(ADDR_WIDTH)
        we, data = Signal(), Signal(8)
        hit_reg, hit_in, hit_out, hit_w = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [stage1.eq(req), ack.eq(stage1)]
        with m.If(req):
            m.d.sync += [a.eq(bus.addr), we.eq(bus.we), data.eq(bus.w_data),
                         hit_reg.eq(bus.addr < mm.IN_BASE),
                         hit_in.eq((bus.addr >= mm.IN_BASE)
                                   & (bus.addr < mm.IN_BASE + mm.PORT_WINDOW)),
                         hit_out.eq((bus.addr >= mm.OUT_BASE)
                                    & (bus.addr < mm.OUT_BASE + mm.PORT_WINDOW)),
                         hit_w.eq(bus.addr >= mm.W_BASE)]
        m.d.comb += bus.ack.eq(ack)

        # ---- run control ------------------------------------------------------------------
        busy, done, error = Signal(), Signal(), Signal(2)
        count = Signal(16)
        in_left = Signal(range(cfg.in_words * (1 << 16) + 1))
        word_in_image = Signal(range(cfg.out_words))
        images_done = Signal(16)
        # since_done counts the cycles since the previous image completed, so the interval is
        # a register load, not a 32-bit subtraction
        cycles, latency, interval, since_done = (Signal(_COUNTER_BITS) for _ in range(4))
        engine_busy = [Signal(_COUNTER_BITS, name=f"engine{e}_busy") for e in range(n_eng)]
        m.d.comb += self.busy.eq(busy)

        # gate: exactly COUNT images' words enter the pipeline
        gate_open = busy & (in_left != 0)
        m.d.comb += [to_first.i.payload.eq(in_fifo.r_data),
                     to_first.i.valid.eq(in_fifo.r_rdy & gate_open),
                     in_fifo.r_en.eq(to_first.i.ready & gate_open)]
        with m.If(to_first.i.valid & to_first.i.ready):
            m.d.sync += in_left.eq(in_left - 1)

        # results: every integer into the output FIFO; an image is done with its last one
        m.d.comb += [out_fifo.w_data.eq(from_last.o.payload), out_fifo.w_en.eq(from_last.o.valid),
                     from_last.o.ready.eq(out_fifo.w_rdy)]
        image_done = Signal()
        with m.If(from_last.o.valid & from_last.o.ready):
            m.d.sync += word_in_image.eq(Mux(word_in_image == cfg.out_words - 1, 0,
                                             word_in_image + 1))
            m.d.comb += image_done.eq(word_in_image == cfg.out_words - 1)
        with m.If(busy):
            m.d.sync += [cycles.eq(cycles + 1), since_done.eq(since_done + 1)]
            for e in range(n_eng):
                with m.If(pipe.busy[e]):
                    m.d.sync += engine_busy[e].eq(engine_busy[e] + 1)
        with m.If(image_done & busy):
            m.d.sync += [images_done.eq(images_done + 1), since_done.eq(0),
                         interval.eq(since_done + 1)]
            with m.If(images_done == 0):
                m.d.sync += latency.eq(cycles + 1)
            with m.If(images_done + 1 == count):
                m.d.sync += [busy.eq(0), done.eq(1)]

        # ---- stage 1: the action ----------------------------------------------------------
        act = stage1
        r_byte, err = Signal(8), Signal()
        m.d.comb += [bus.r_data.eq(r_byte), bus.err.eq(err)]

        reg_index = a >> 2
        reg_byte = a & 3
        regs = {
            mm.REG_ID: Const(mm.ID_VALUE, 32), mm.REG_COUNT: count,
            mm.REG_STATUS: Cat(busy, done, error != 0), mm.REG_ERROR: error,
            mm.REG_TOTAL_CYCLES: cycles, mm.REG_LATENCY: latency, mm.REG_INTERVAL: interval,
            mm.REG_IMAGES_DONE: images_done, mm.REG_ENGINES: Const(n_eng, 8),
            mm.REG_IN_FREE: in_depth - in_fifo.level, mm.REG_OUT_LEVEL: out_fifo.level,
        }
        regs.update({mm.ENGINE_BUSY_BASE + 4 * e: c for e, c in enumerate(engine_busy)})
        reg_read = Signal(32)
        reg_mapped = Signal()
        with m.Switch(reg_index):
            for addr, value in regs.items():
                with m.Case(addr >> 2):
                    m.d.comb += [reg_read.eq(value), reg_mapped.eq(1)]
            with m.Case(mm.REG_CTRL >> 2):
                m.d.comb += reg_mapped.eq(1)

        # output port: the head beat of the output FIFO, one byte at a time
        out_byte = Signal(range(max(2, cfg.out_word_bytes)))
        out_last = out_byte == cfg.out_word_bytes - 1
        pop = act & hit_out & ~we & out_fifo.r_rdy
        m.d.comb += out_fifo.r_en.eq(pop & out_last)
        with m.If(pop):
            m.d.sync += out_byte.eq(Mux(out_last, 0, out_byte + 1))

        # input port: bytes gathered into a beat, pushed when its last byte arrives
        in_byte = Signal(range(max(2, cfg.in_word_bytes)))
        in_last = in_byte == cfg.in_word_bytes - 1
        # Bytes arrive lowest first: shifting each in at the top leaves the whole word in place
        # after the last one, with no byte multiplexer.
        in_word = Signal(8 * cfg.in_word_bytes)
        push = act & hit_in & we & in_fifo.w_rdy
        shifted = Cat(in_word[8:], data)
        m.d.comb += [in_fifo.w_data.eq(shifted), in_fifo.w_en.eq(push & in_last)]
        with m.If(push):
            m.d.sync += [in_word.eq(shifted), in_byte.eq(Mux(in_last, 0, in_byte + 1))]

        # weight window: bytes gathered into a word, written when its last byte arrives
        w_engine = (a - mm.W_BASE) >> lay.engine_shift
        w_sel = (a >> lay.select_shift) & ((1 << (lay.engine_shift - lay.select_shift)) - 1)
        # Word bytes arrive lowest first and are shifted in at the top: after engine e's last
        # byte its word is the top word_bytes[e] bytes (one multiplexer over the engines).
        w_word = Signal(8 * max(lay.word_bytes))
        w_shifted = Cat(w_word[8:], data)
        w_full = Signal.like(w_word)
        w_addr = Signal(max(1, lay.select_shift))
        w_last, w_known = Signal(), Signal()
        with m.Switch(w_engine):
            for e, fold in enumerate(cfg.engines):
                shape, shift = fold.shape, lay.word_shifts[e]
                byte = a & ((1 << shift) - 1)
                word = (a >> shift) & ((1 << (lay.select_shift - shift)) - 1)
                # a mapped word: a select of this engine and an address inside that memory
                # (anything else is a bus error, never a stray write); every byte of a word's
                # slot is mapped, the slot being the word rounded up to a power of two of bytes
                depth = Mux(w_sel < shape.pe, shape.weight_depth, shape.neuron_folds)
                with m.Case(e):
                    m.d.comb += [w_full.eq(w_shifted[len(w_word) - 8 * lay.word_bytes[e]:]),
                                 w_addr.eq(word),
                                 w_last.eq(byte == lay.word_bytes[e] - 1),
                                 w_known.eq((w_sel < shape.selects) & (word < depth))]
        w_write = act & hit_w & we & w_known & ~busy
        with m.If(w_write):
            m.d.sync += w_word.eq(w_shifted)
        m.d.sync += [pipe.wr.en.eq(w_write & w_last), pipe.wr.engine.eq(w_engine),
                     pipe.wr.sel.eq(w_sel), pipe.wr.addr.eq(w_addr), pipe.wr.data.eq(w_full)]

        # registers: CTRL starts or aborts, COUNT is written while idle
        ctrl = act & hit_reg & we & (reg_index == mm.REG_CTRL >> 2) & (reg_byte == 0)
        m.d.comb += abort.eq(ctrl & (data & mm.CTRL_ABORT).any())
        start = ctrl & (data & mm.CTRL_START).any() & ~busy & ~abort
        with m.If(act & hit_reg & we & (reg_index == mm.REG_COUNT >> 2) & ~busy):
            with m.Switch(reg_byte):
                for b in range(2):
                    with m.Case(b):
                        m.d.sync += count.word_select(b, 8).eq(data)
        with m.If(start):
            with m.If(count == 0):
                m.d.sync += [error.eq(mm.ERR_COUNT), done.eq(1)]
            with m.Else():
                m.d.sync += [busy.eq(1), done.eq(0), error.eq(mm.ERR_NONE),
                             in_left.eq(count * cfg.in_words), images_done.eq(0),
                             cycles.eq(0), latency.eq(0), interval.eq(0), since_done.eq(0)]
                m.d.sync += [c.eq(0) for c in engine_busy]
        with m.If(abort):
            m.d.sync += [busy.eq(0), done.eq(0), in_left.eq(0), word_in_image.eq(0),
                         in_byte.eq(0), out_byte.eq(0)]
            with m.If(busy):
                m.d.sync += error.eq(mm.ERR_ABORTED)

        # the answer: read byte and error, registered for the ack cycle
        bad = Signal()
        with m.If(hit_reg):
            m.d.comb += bad.eq(~reg_mapped | (we & ~((reg_index == mm.REG_CTRL >> 2)
                                                     | ((reg_index == mm.REG_COUNT >> 2)
                                                        & ~busy))))
        with m.Elif(hit_in):
            m.d.comb += bad.eq(~we | ~in_fifo.w_rdy)
        with m.Elif(hit_out):
            m.d.comb += bad.eq(we | ~out_fifo.r_rdy)
        with m.Elif(hit_w):
            m.d.comb += bad.eq(~we | ~w_known | busy)
        with m.Else():
            m.d.comb += bad.eq(1)
        with m.If(act):
            m.d.sync += [err.eq(bad),
                         r_byte.eq(Mux(hit_out, _byte_of(out_fifo.r_data, out_byte),
                                       _byte_of(reg_read, reg_byte)))]
        return m
