"""The dataflow core: the engine pipeline behind the register bus, with input and output FIFOs,
run control and cycle counters (docs/dataflow.md).

::

    bus ─► decode ─┬─► registers (CTRL, COUNT) ─► run control ─► gate
                   ├─► input bytes ─► word ─► input FIFO ─► gate ─► [slice] ─► [converter] ─► Pipeline.i
                   ├─► weight bytes ─► word ───────────────────────────────────► Pipeline.wr
                   └─◄ output bytes ◄─ output FIFO ◄─ converter (one integer a word) ◄─ .o

A run: the host writes up to ``in_images`` images into the input port, COUNT, then START; the
gate lets exactly COUNT images' beats into the pipeline (back to back, as fast as the first
engine takes them), the run ends when COUNT results have entered the output FIFO, and the
host reads them from the output port. Images written while a run is going on queue behind it
(the host overlaps writing run n + 1 with run n); results may be read during the run. No
converter stands before the pipeline where its first engine writes the input FIFO's words into
its buffer itself (``DataflowConfig.first_in_words``).
Nothing waits on the host: a write to a full input FIFO or a read from an empty output FIFO is
answered with a bus error, and CTRL_ABORT empties everything at any time, so no byte sequence
can wedge the core.
"""
import operator
from functools import reduce
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from xnorflow.hw.bus import ADDR_WIDTH, BusSignature
from xnorflow.hw.core.pipeline import delay, replica

from . import memory_map as mm
from .block_fifo import input_fifo
from .config import DataflowConfig
from .convert import WidthConverter
from .pipeline import Pipeline
from ..register_slice import RegisterSlice

__all__ = ["DataflowCore"]

_COUNTER_BITS = 32


def _handshake_count(m, abort, fifo, depth, name, free=False):
    """A register equal to ``fifo``'s level (``free``: ``depth`` minus it) in every cycle:
    counted from its write and read handshakes, set back with ``abort`` (which resets the
    FIFO in the same cycle)."""
    init = depth if free else 0
    count = Signal(range(depth + 1), init=init, name=name)
    written, read = fifo.w_en & fifo.w_rdy, fifo.r_en & fifo.r_rdy
    with m.If(abort):
        m.d.sync += count.eq(init)
    with m.Elif(written != read):
        m.d.sync += count.eq(Mux(written ^ int(free), count + 1, count - 1))
    return count


def _byte_of(value, index):
    """Byte ``index`` (a signal) of ``value``, zero-extended to a multiple of 8 bits."""
    nbytes = -(-len(value) // 8)
    padded = Cat(value, Const(0, 8 * nbytes - len(value)))
    return padded.word_select(index, 8) if nbytes > 1 else padded


def _named(**signals):
    """A namespace of ``signals``, each named after its field (the waveform and netlist
    names; a keyword argument gives the tracer no name to find)."""
    for name, value in signals.items():
        if isinstance(value, Signal):
            value.name = name
    return SimpleNamespace(**signals)


class DataflowCore(wiring.Component):
    """The pipeline of a :class:`~xnorflow.hw.dataflow.config.DataflowConfig` as a bus target.

    Parameters
    ----------
    config : DataflowConfig or str

    Ports
    -----
    bus : In(BusSignature(ADDR_WIDTH))
        Target side of the register bus (hw/bus.py). Every request is acknowledged two cycles
        after ``stb`` rises (decode registered, action, ``ack`` with ``r_data``/``err``), so the
        bus decode never sets Fmax; three with ``ram_reg``, whose bus inputs pass a register
        first (:meth:`_decode`). Address map: :mod:`xnorflow.hw.dataflow.memory_map`.
    busy : Out(1)
        A run is in progress.

    Timing
    ------
    A run of B images written before START completes in ``latency + (B − 1)·interval``
    cycles (REG_TOTAL_CYCLES), ``interval = config.interval``; the latency is
    :func:`xnorflow.hw.dataflow.run_timing.run_cycles` (docs/dataflow.md, "Timing").
    """

    def __init__(self, config):
        self.config = DataflowConfig.parse(config)
        self.layout = mm.layout(self.config)
        self.pipeline = Pipeline(self.config)
        super().__init__({"bus": In(BusSignature(ADDR_WIDTH)), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # CTRL_ABORT: a synchronous reset of the pipeline and both FIFOs, from a register one
        # cycle after the request's action (it fans out to every register of the engines:
        # tens of thousands on a large ECP5 build, whose route alone takes most of a cycle)
        abort = Signal(name="abort_reset")
        io = self._datapath(m, abort)
        req = self._decode(m)
        run = self._run_control(m, io)
        reg_read, reg_mapped = self._register_file(m, req, run, io)
        out_byte, out_head, out_ready = self._output_port(m, req, io)
        in_byte = self._input_port(m, req, io)
        w_known = self._weight_window(m, req, run)
        self._control(m, req, run, abort, resets=(in_byte, out_byte))
        self._answer(m, req, run, io, reg_read, reg_mapped, (out_byte, out_head, out_ready),
                     w_known)
        return m

    def _datapath(self, m, abort):
        """The pipeline between the FIFOs: the FIFOs are narrow (a few elements, one integer);
        converters regroup the lanes into the first engine's beats and out of the last
        engine's. Everything here is reset by ``abort``."""
        cfg = self.config
        io = SimpleNamespace(
            pipe=self.pipeline,
            in_depth=cfg.in_images * cfg.in_words,
            # ram_reg: the FIFO's block-RAM read (and, when the FIFO is deeper than a block,
            # its depth multiplexer) gets a cycle of its own before the converter; a skid
            # slice, so the FIFO's read enable starts at registers (the gate's and the
            # slice's), not at the converter's ready (ECP5 CNV build cnv10k: the converter's
            # beat count → ready → gate → the FIFO's level and read address, 256 late
            # endpoints, 15.5 ns)
            in_slice=RegisterSlice(cfg.in_word_bits, skid=True) if cfg.ram_reg else None,
            # none where the first engine writes the FIFO's words into its buffer itself
            to_first=(WidthConverter(cfg.first.input_bits, cfg.in_lanes,
                                     cfg.engines[0].in_lanes, cfg.engines[0].in_features)
                      if cfg.first_in_words == 1 else None),
            from_last=WidthConverter(cfg.last.acc_width, cfg.last.pe, 1, cfg.last.n_out))
        io.in_fifo = input_fifo(cfg.in_word_bits, io.in_depth, cfg.ram_reg)
        io.out_fifo = SyncFIFOBuffered(width=cfg.out_word_bits,
                                       depth=cfg.out_images * cfg.out_words)
        # the pipeline resets its engines from replicas of the same register (Pipeline.abort)
        m.submodules.pipeline = io.pipe
        for name in ("in_fifo", "out_fifo", "in_slice", "to_first", "from_last"):
            if getattr(io, name) is not None:
                m.submodules[name] = ResetInserter(abort)(getattr(io, name))
        # the gate (run control) feeds `gated`: the slice when there is one, else the
        # converter, else the pipeline
        io.gated = io.pipe.i
        if io.to_first is not None:
            wiring.connect(m, io.to_first.o, io.pipe.i)
            io.gated = io.to_first.i
        if io.in_slice is not None:
            wiring.connect(m, io.in_slice.o, io.gated)
            io.gated = io.in_slice.i
        wiring.connect(m, io.pipe.o, io.from_last.i)
        # REG_IN_FREE and REG_OUT_LEVEL read registers of their own, counted from the FIFOs'
        # handshakes: SyncFIFOBuffered's level is an adder over its inner level, and the free
        # space a subtraction after it, two carry chains in front of the register file's word
        # (the iCEBreaker overlapped digits build's critical path at 36.75 MHz)
        io.in_free = _handshake_count(m, abort, io.in_fifo, io.in_depth, "in_free", free=True)
        io.out_level = _handshake_count(m, abort, io.out_fifo, io.out_fifo.depth, "out_level")
        return io

    def _decode(self, m):
        """Bus request, stage 0: address, data, the window hit and the control register's
        predicates into registers; ``act`` is stage 1 (the action), ``ack`` stage 2.

        The CTRL/COUNT predicates and CTRL's START/ABORT bits are decoded here, from the bus,
        not in stage 1 from the registered address: ABORT resets both FIFOs and the pipeline,
        and decoding it from ``a`` put eight logic levels before those resets, the iCE40
        build's critical path (29.1 MHz); registered, ABORT is one gate of ``act``.

        With ``ram_reg`` (ECP5) the bus's address, data, ``we`` and ``stb`` pass a register
        first, and a request starts from those (``ack`` three cycles after ``stb`` rises,
        within the link's proven four): on the CNV build cnv10o the link's address register
        reached this decode and the register file's through 4.2 + 5.2 ns of route across a
        full die (its critical path, 13.8 ns). The cycle after an ack is then blocked too:
        the registered ``stb`` still shows the request just answered."""
        bus = self._registered_bus(m) if self.config.ram_reg else self.bus
        req = _named(act=Signal(), a=Signal(ADDR_WIDTH), we=Signal(), data=Signal(8),
                     hit_reg=Signal(), hit_in=Signal(), hit_out=Signal(), hit_w=Signal(),
                     ctrl_reg=Signal(), count_reg=Signal(), ctrl_write=Signal(),
                     start_bit=Signal(), abort_bit=Signal())
        ack = Signal(name="ack")
        start = bus.stb & ~req.act & ~ack
        if self.config.ram_reg:
            answered = Signal(name="answered")      # the cycle after an ack
            m.d.sync += answered.eq(ack)
            start = start & ~answered
        req.start, req.bus = start, bus
        m.d.sync += [req.act.eq(start), ack.eq(req.act)]
        with m.If(start):
            m.d.sync += [req.a.eq(bus.addr), req.we.eq(bus.we), req.data.eq(bus.w_data),
                         req.hit_reg.eq(bus.addr < mm.IN_BASE),
                         req.hit_in.eq((bus.addr >= mm.IN_BASE)
                                       & (bus.addr < mm.IN_BASE + mm.PORT_WINDOW)),
                         req.hit_out.eq((bus.addr >= mm.OUT_BASE)
                                        & (bus.addr < mm.OUT_BASE + mm.PORT_WINDOW)),
                         req.hit_w.eq(bus.addr >= mm.W_BASE),
                         req.ctrl_reg.eq(bus.addr >> 2 == mm.REG_CTRL >> 2),
                         req.count_reg.eq(bus.addr >> 2 == mm.REG_COUNT >> 2),
                         req.ctrl_write.eq(bus.we & (bus.addr == mm.REG_CTRL)),
                         req.start_bit.eq((bus.w_data & mm.CTRL_START).any()),
                         req.abort_bit.eq((bus.w_data & mm.CTRL_ABORT).any())]
        m.d.comb += self.bus.ack.eq(ack)
        req.reg_byte = req.a[:2]
        return req

    def _registered_bus(self, m):
        """The initiator's side of the bus (address, data, ``we``, ``stb``) a cycle late."""
        bus = SimpleNamespace(addr=Signal(ADDR_WIDTH, name="bus_addr_q"),
                              we=Signal(name="bus_we_q"), w_data=Signal(8, name="bus_w_data_q"),
                              stb=Signal(name="bus_stb_q"))
        m.d.sync += [bus.addr.eq(self.bus.addr), bus.we.eq(self.bus.we),
                     bus.w_data.eq(self.bus.w_data), bus.stb.eq(self.bus.stb)]
        return bus

    @property
    def _reg_index_bits(self):
        """Bits of a register's word index: enough for the last engine's busy counter."""
        last = mm.ENGINE_BUSY_BASE + 4 * (len(self.config.engines) - 1)
        return (last >> 2).bit_length()

    def _run_control(self, m, io):
        """The gate (exactly COUNT images' words enter the pipeline), the results (every
        integer into the output FIFO; an image is done with its last one) and the counters."""
        cfg = self.config
        run = _named(
            busy=Signal(), done=Signal(), error=Signal(2), count=Signal(16),
            in_left=Signal(range(cfg.in_words * (1 << 16) + 1)),
            # busy & (in_left != 0), kept as a register beside in_left: the gate drives the
            # input FIFO's read enable, and through it the enables of its block RAMs spread
            # over the die; the 17-bit compare in front of it was a third of the ECP5 SFC
            # build's critical path (build 9)
            in_open=Signal(),
            word_in_image=Signal(range(cfg.out_words)), images_done=Signal(16),
            # images_done + 1 == count, a register loaded with what it will be: the adder and
            # compare sat before the clock enable of `done` and `busy` (iCEBreaker at 40 MHz)
            last_image=Signal(),
            # since_done counts the cycles since the previous image completed, from 1 (from
            # START: cycles + 1), so the interval and the latency are register loads, not a
            # 32-bit subtraction or increment (the increment into `latency` was the
            # iCEBreaker overlapped digits build's critical path at 36.75 MHz)
            cycles=Signal(_COUNTER_BITS), latency=Signal(_COUNTER_BITS),
            interval=Signal(_COUNTER_BITS), since_done=Signal(_COUNTER_BITS),
            engine_busy=[Signal(_COUNTER_BITS, name=f"engine{e}_busy")
                         for e in range(len(cfg.engines))])
        m.d.comb += self.busy.eq(run.busy)

        gate_open = run.in_open
        gated, in_fifo = io.gated, io.in_fifo
        m.d.comb += [gated.payload.eq(in_fifo.r_data),
                     gated.valid.eq(in_fifo.r_rdy & gate_open),
                     in_fifo.r_en.eq(gated.ready & gate_open)]
        with m.If(gated.valid & gated.ready):
            m.d.sync += [run.in_left.eq(run.in_left - 1), run.in_open.eq(run.in_left != 1)]

        from_last, out_fifo = io.from_last, io.out_fifo
        m.d.comb += [out_fifo.w_data.eq(from_last.o.payload),
                     out_fifo.w_en.eq(from_last.o.valid),
                     from_last.o.ready.eq(out_fifo.w_rdy)]
        image_done = Signal()
        last_word = run.word_in_image == cfg.out_words - 1
        with m.If(from_last.o.valid & from_last.o.ready):
            m.d.sync += run.word_in_image.eq(Mux(last_word, 0, run.word_in_image + 1))
            m.d.comb += image_done.eq(last_word)
        with m.If(run.busy):
            m.d.sync += [run.cycles.eq(run.cycles + 1), run.since_done.eq(run.since_done + 1)]
        # An engine's busy cycle is counted a cycle later, from a register: its busy comes
        # from the engine's reader, anywhere on the die, and was the clock enable of the
        # 32-bit counter's carry chain (ECP5 SFC build 17: 32 late endpoints). The count is
        # the same (START clears it after the last late increment; COUNT's and the status
        # reads are bus requests, three or more cycles after the run's end).
        for e, (busy, counter) in enumerate(zip(io.pipe.busy, run.engine_busy)):
            counted = Signal(name=f"engine{e}_busy_counted")
            m.d.sync += counted.eq(busy & run.busy)
            with m.If(counted):
                m.d.sync += counter.eq(counter + 1)
        with m.If(image_done & run.busy):
            m.d.sync += [run.images_done.eq(run.images_done + 1), run.since_done.eq(1),
                         run.interval.eq(run.since_done),
                         run.last_image.eq(run.images_done + 2 == run.count)]
            with m.If(run.images_done == 0):
                m.d.sync += run.latency.eq(run.since_done)     # = cycles + 1 here
            with m.If(run.last_image):
                m.d.sync += [run.busy.eq(0), run.done.eq(1), run.in_open.eq(0)]
        return run

    def _register_file(self, m, req, run, io):
        """The 32-bit word of the register addressed and whether it exists, registered in
        stage 0 from the bus's address: the values of the cycle before the action. Stage 1
        then only picks the byte (the whole read in stage 1 was ECP5 SFC build 19's
        1.4 ns late register read). A register written by the request before is already
        new here: a request starts at the earliest the cycle after the previous ack, and a
        write lands by the end of its ack cycle.

        The run's counters are read through shadow copies a cycle old, which the placer can
        put by the multiplexer: the counters themselves sit by their own logic across the
        core (CNV build cnv10n: the read 2.1 ns late at 100 MHz). They change only while a
        run is busy, where a read is a snapshot anyway; after it they are still. COUNT,
        STATUS and the FIFOs' levels are read directly: the host acts on them at once.
        ECP5 builds (``ram_reg``) only: on the iCE40 a copy is a logic cell per bit (~220
        of the digits MLP build's, which then no longer fit the UP5K's 5,280)."""
        def shadow(value, name):
            if not self.config.ram_reg:
                return value
            copy = Signal.like(value, name=f"{name}_shadow", reset_less=True)
            m.d.sync += copy.eq(value)
            return copy
        regs = {
            mm.REG_ID: Const(mm.ID_VALUE, 32), mm.REG_COUNT: run.count,
            mm.REG_STATUS: Cat(run.busy, run.done, run.error != 0), mm.REG_ERROR: run.error,
            mm.REG_TOTAL_CYCLES: shadow(run.cycles, "cycles"),
            mm.REG_LATENCY: shadow(run.latency, "latency"),
            mm.REG_INTERVAL: shadow(run.interval, "interval"),
            mm.REG_IMAGES_DONE: shadow(run.images_done, "images_done"),
            mm.REG_ENGINES: Const(len(self.config.engines), 8),
            mm.REG_IN_FREE: io.in_free, mm.REG_OUT_LEVEL: io.out_level,
        }
        regs.update({mm.ENGINE_BUSY_BASE + 4 * e: shadow(c, f"engine{e}_busy")
                     for e, c in enumerate(run.engine_busy)})
        word, mapped = (self._selected_word(m, req, regs) if self.config.ram_reg
                        else self._decoded_word(m, req, regs))
        reg_read = Signal(32, name="reg_read", reset_less=True)   # loaded before any use
        reg_mapped = Signal(name="reg_mapped")
        with m.If(req.start):
            m.d.sync += [reg_read.eq(word), reg_mapped.eq(mapped)]
        if self.config.ram_reg:
            return reg_read, reg_mapped
        # iCE40: whether the address's bits above the register index are zero is asked in
        # stage 1, of the request's address register: in stage 0 that compare over the bus's
        # address (a carry chain) sat in front of reg_read (the iCEBreaker dataflow build's
        # critical path, 28.5 ns)
        return reg_read, reg_mapped & ~req.a[2 + self._reg_index_bits:].any()

    def _decoded_word(self, m, req, regs):
        """The addressed register's word and whether its index is a register's, decoded
        from the bus's address bits of the register index (iCE40: the fewest cells); the
        caller asks in stage 1 whether the bits above are zero."""
        word, mapped = Signal(32, name="reg_word"), Signal(name="reg_word_mapped")
        # An unmapped address reads a don't-care word (its request errs), not 0: a constant
        # default became a synchronous reset of reg_read, decoded from the bus's address
        # through LUTs into the flip-flops' LSR (ECP5 SFC build 22: 0.5 ns late).
        m.d.comb += word.eq(regs[mm.REG_COUNT])
        # only the index bits the registers use are decoded (a 22-bit compare per register
        # was a critical path)
        with m.Switch(req.bus.addr[2:2 + self._reg_index_bits]):
            for addr, value in regs.items():
                with m.Case(addr >> 2):
                    m.d.comb += [word.eq(value), mapped.eq(1)]
            with m.Case(mm.REG_CTRL >> 2):
                m.d.comb += [word.eq(0), mapped.eq(1)]
        return word, mapped

    def _selected_word(self, m, req, regs):
        """:meth:`_decoded_word` for ECP5 builds, whose request address is the bus's a cycle
        late (:meth:`_registered_bus`): the per-register selects are decoded from the bus's
        own address into registers in that same cycle, so the word is an AND-OR of values
        and one-hot selects (SFC build 26: the decode and the 14-way multiplexer from the
        registered address into reg_read were 1.7 ns late at 100 MHz). CTRL reads 0, an
        unmapped address 0 and ``mapped`` low."""
        bits = self._reg_index_bits
        index, near = self.bus.addr[2:2 + bits], self.bus.addr < 4 << bits
        terms, selects = [], []
        for addr, value in [*regs.items(), (mm.REG_CTRL, Const(0, 32))]:
            select = Signal(name=f"reg_select_{addr:02x}")
            m.d.sync += select.eq(near & (index == addr >> 2))
            selects.append(select)
            terms.append(value & select.replicate(len(value)))
        word, mapped = Signal(32, name="reg_word"), Signal(name="reg_word_mapped")
        m.d.comb += [word.eq(reduce(operator.or_, terms)), mapped.eq(Cat(*selects).any())]
        return word, mapped

    def _output_port(self, m, req, io):
        """Reads of the output port: the head beat of the output FIFO, one byte at a time,
        popped after its last byte. The head word and whether there is one are taken in
        stage 0, as the register file's word: the FIFO's block-RAM read (5.8 ns clock-to-out)
        then meets a register, not the byte multiplexer in front of the read byte (ECP5 SFC
        build 20's critical path, 11.9 ns). The head cannot change in between: only this
        port pops, and a request starts the cycle after the previous ack at the earliest.
        Returns the byte counter and the head word and its ready, registered."""
        cfg = self.config
        out_byte = Signal(range(max(2, cfg.out_word_bytes)))
        out_last = out_byte == cfg.out_word_bytes - 1
        head = Signal.like(io.out_fifo.r_data, name="out_head", reset_less=True)
        head_ready = Signal(name="out_head_ready")
        with m.If(req.start):
            m.d.sync += [head.eq(io.out_fifo.r_data), head_ready.eq(io.out_fifo.r_rdy)]
        pop = req.act & req.hit_out & ~req.we & head_ready
        m.d.comb += io.out_fifo.r_en.eq(pop & out_last)
        with m.If(pop):
            m.d.sync += out_byte.eq(Mux(out_last, 0, out_byte + 1))
        return out_byte, head, head_ready

    def _input_port(self, m, req, io):
        """Writes to the input port: bytes gathered into a beat, pushed when its last byte
        arrives. Returns the byte counter; sets ``io.in_ready`` (the port takes a byte).

        ECP5 builds (``ram_reg``) keep the FIFO's level compare and the word's clock enable
        apart from the bus decode, as the weight window does: ``in_ready`` is the FIFO's
        ``w_rdy`` a cycle old, and the byte enters the word (and a whole word the FIFO) a cycle
        after the request's action, from registers. The CNV 10 k/s build's critical path ran
        from the FIFO's level through ``w_rdy`` and the decode to the level's adder and the
        256-bit word's enables (12.8 ns of route). Both are exact because requests are at
        least three cycles apart: a word written a cycle after action t is in the level at
        t + 2, which ``in_ready`` shows at t + 3, the next action's earliest cycle; between
        them only reads change the level, which frees room."""
        cfg = self.config
        in_byte = Signal(range(max(2, cfg.in_word_bytes)))
        in_last = in_byte == cfg.in_word_bytes - 1
        io.in_ready = io.in_fifo.w_rdy
        if cfg.ram_reg:
            io.in_ready = Signal(name="in_ready")
            m.d.sync += io.in_ready.eq(io.in_fifo.w_rdy)
        push = req.act & req.hit_in & req.we & io.in_ready
        shift, byte, last = push, req.data, in_last
        if cfg.ram_reg:
            shift, last = Signal(name="in_shift"), Signal(name="in_last_d")
            byte = Signal(8, name="in_data", reset_less=True)
            m.d.sync += shift.eq(push)
            with m.If(push):
                m.d.sync += [byte.eq(req.data), last.eq(in_last)]
        # Bytes arrive lowest first: shifting each in at the top leaves the whole word in place
        # after the last one, with no byte multiplexer.
        in_word = Signal(8 * cfg.in_word_bytes, reset_less=True)
        shifted = Cat(in_word[8:], byte)
        m.d.comb += [io.in_fifo.w_data.eq(shifted), io.in_fifo.w_en.eq(shift & last)]
        with m.If(shift):
            m.d.sync += in_word.eq(shifted)
        with m.If(push):
            m.d.sync += in_byte.eq(Mux(in_last, 0, in_byte + 1))
        return in_byte

    def _weight_window(self, m, req, run):
        """Writes to the weight window: bytes gathered into a word, written into the addressed
        engine's memory (``pipeline.wr``) when its last byte arrives. Returns ``w_known``: the
        address is a mapped word (a select of its engine and an address inside that memory;
        anything else is a bus error, never a stray write)."""
        cfg, lay, pipe = self.config, self.layout, self.pipeline
        # The address decoded in stage 0 into registers for the action and the error (as `a`
        # is, so they are its decode): from `a` in stage 1 it reached the ack's error flag 2.7
        # ns late at 100 MHz (CNV build cnv9a), the word's enable 4.0 ns late at 40 MHz (iCE40:
        # a register per decode's last LUT). ECP5: loaded every cycle, reset-less (the address
        # holds through a request): `start` as their enable became their reset logic, 0.5 ns
        # late at 95 MHz from the link's `answered` across the die (CNV build cnvb5).
        decoded = self._weight_address(m, req.bus.addr)
        w_engine, w_addr, w_sel, w_last, w_known = (
            Signal.like(v, name=f"{v.name}_q", reset_less=bool(cfg.ram_reg)) for v in decoded)
        with m.If(1 if cfg.ram_reg else req.start):
            m.d.sync += [r.eq(v) for r, v in zip((w_engine, w_addr, w_sel, w_last, w_known),
                                                 decoded)]
        # data registers without reset (here and below): a reset only reaches flip-flops
        # whose value matters after it, and the reset net (every engine's registers on a
        # large ECP5 build) was the CNV 7 k/s pixel-MMV build's critical path
        w_word = Signal(8 * max(lay.word_bytes), reset_less=True)
        w_write = req.act & req.hit_w & req.we & w_known & ~run.busy
        # The byte enters the word a cycle after the request's action, from registers: the
        # word's clock enable (one net to each of its flip-flops, as wide as the widest
        # weight word) then starts at a register, not at the end of the address decode (the
        # CNV 7 k/s ECP5 build's critical path, 20.9 ns, 8 of them that enable's route).
        # Requests are at least three cycles apart, so a word is whole before the next byte.
        # ECP5 builds only (ram_reg): on the iCE40 the registers cost ~56 logic cells of a
        # full UP5K and its 28 MHz design does not need them.
        shift, byte, last, engine, sel, addr = w_write, req.data, w_last, w_engine, w_sel, w_addr
        if cfg.ram_reg:
            shift = Signal(name="w_shift")
            byte = Signal(8, name="w_byte", reset_less=True)
            last, engine = Signal(name="w_last_d"), Signal.like(w_engine, name="w_engine_d")
            sel, addr = Signal.like(w_sel, name="w_sel_d"), Signal.like(w_addr, name="w_addr_d")
            # the byte and its decode load every cycle, used only after a write (`shift`):
            # the write's condition (the address decode, `w_known`, `busy`) as their clock
            # enable was 1.3 ns late at 100 MHz (ECP5 SFC build 20); a request's address and
            # data hold through its action, so the cycle after it they are the write's
            m.d.sync += [shift.eq(w_write), byte.eq(req.data), last.eq(w_last),
                         engine.eq(w_engine), sel.eq(w_sel), addr.eq(w_addr)]
        if cfg.ram_reg:
            # a copy of `shift` per 64 bits of the word: one register enabling all of the
            # CNV's 384 was 0.02-0.44 ns late at 95 MHz (CNV builds cnv9v, cnv9x)
            shifts = [shift] + [Signal(name=replica(f"w_shift{c}"))
                                for c in range(1, -(-len(w_word) // 64))]
            m.d.sync += [copy.eq(w_write) for copy in shifts[1:]]
        else:
            shifts = [shift]
        w_full = self._shift_in(m, w_word, shifts, byte, w_engine)
        fields = (("en", pipe.wr.en), ("engine", pipe.wr.engine), ("sel", pipe.wr.sel),
                  ("addr", pipe.wr.addr), ("data", pipe.wr.data))
        held = [Signal.like(port, name=f"pipe_wr_{name}", reset_less=name != "en")
                for name, port in fields]
        m.d.sync += [r.eq(v) for r, v in zip(held, (shift & last, engine, sel, addr, w_full))]
        if cfg.ram_reg:
            # Once more, with no logic in front: the first copy stays by the word's shift
            # register and its entry multiplexers, the second goes toward the engines (one copy
            # was pulled away from the multiplexer, 51 of its bits late: ECP5 SFC build 17).
            held = [delay(m, r, 1, f"pipe_wr_{name}_far") for r, (name, _) in zip(held, fields)]
        m.d.comb += [port.eq(r) for r, (_, port) in zip(held, fields)]
        return w_known

    def _shift_in(self, m, w_word, shifts, byte, w_engine):
        """Gather a weight word's bytes (lowest first) in ``w_word`` with ``shifts`` (copies
        of one enable, each for its 64 bits of the word; the last for the rest); returns the
        word with this cycle's byte in, at bit 0 whatever its engine.

        A byte enters at the top byte of its engine's word (``word_bytes[e] − 1``) and moves
        down a byte with each byte after it: a two-way multiplexer at each word length's
        entry, selected by a flag decoded from ``w_engine`` (registered on ECP5, like the
        core's other write registers). Shifted in at the top of the widest word instead, the
        word needed a multiplexer over the engines on every bit (ECP5 CNV build cnv9a: it
        took the write's data register 2.3 ns late at 100 MHz)."""
        lay, top = self.layout, max(self.layout.word_bytes)
        entry = {}      # the widest word's entry is the top byte, which only ever takes bytes
        for n in sorted(set(lay.word_bytes) - {top}):
            entry[n] = Cat(*(w_engine == e for e, b in enumerate(lay.word_bytes) if b == n)).any()
            if self.config.ram_reg:
                hit, entry[n] = entry[n], Signal(name=f"w_entry{n}")
                m.d.sync += entry[n].eq(hit)
        bytes_ = []
        for k in range(top):
            above = w_word[8 * (k + 1):8 * (k + 2)] if k + 1 < top else byte
            bytes_.append(Mux(entry[k + 1], byte, above) if k + 1 in entry else above)
        w_next = Signal.like(w_word, name="w_next")
        m.d.comb += w_next.eq(Cat(*bytes_))
        for c, enable in enumerate(shifts):
            hi = len(w_word) if c == len(shifts) - 1 else 64 * (c + 1)
            with m.If(enable):
                m.d.sync += w_word[64 * c:hi].eq(w_next[64 * c:hi])
        return w_next

    def _weight_address(self, m, a):
        """Weight-window address ``a`` decoded: its engine, the word's address and select in
        that engine's memories, whether it is the word's last byte, and whether it is mapped
        (a word of a memory that exists; every byte of a word's slot is mapped, the slot
        being the word rounded up to a power of two of bytes)."""
        cfg, lay = self.config, self.layout
        offset = (a - mm.W_BASE) >> lay.engine_shift     # negative below the window
        engine = Signal(offset.shape(), name="w_engine")
        m.d.comb += engine.eq(offset)
        addr = Signal(max(1, max(lay.select_shifts)), name="w_addr")
        sel = Signal(max(1, lay.engine_shift - min(lay.select_shifts)), name="w_sel")
        last, known = Signal(name="w_last"), Signal(name="w_known")
        with m.Switch(engine):
            for e, fold in enumerate(cfg.engines):
                shape, shift, sel_shift = fold.shape, lay.word_shifts[e], lay.select_shifts[e]
                byte = a & ((1 << shift) - 1)
                word = (a >> shift) & ((1 << (sel_shift - shift)) - 1)
                select = (a >> sel_shift) & ((1 << (lay.engine_shift - sel_shift)) - 1)
                depth = Mux(select < shape.pe, shape.weight_depth, shape.neuron_folds)
                with m.Case(e):
                    m.d.comb += [addr.eq(word), sel.eq(select),
                                 last.eq(byte == lay.word_bytes[e] - 1),
                                 known.eq((select < shape.selects) & (word < depth))]
        return engine, addr, sel, last, known

    def _control(self, m, req, run, abort_reset, resets):
        """CTRL starts or aborts a run; COUNT is written while idle. ``resets``: the port byte
        counters, cleared by an abort with the run state."""
        ctrl = req.act & req.ctrl_write
        abort = ctrl & req.abort_bit
        # the datapath's reset follows a cycle later; the run state is cleared now, so the
        # gate is shut and the next bus request (three cycles away) finds everything empty
        m.d.sync += abort_reset.eq(abort)
        m.d.comb += self.pipeline.abort.eq(abort)     # its replicas load with abort_reset
        start = ctrl & req.start_bit & ~run.busy & ~req.abort_bit
        with m.If(req.act & req.we & req.count_reg & ~run.busy):
            with m.Switch(req.reg_byte):
                for b in range(2):
                    with m.Case(b):
                        m.d.sync += run.count.word_select(b, 8).eq(req.data)
        # a run is whole groups of the MMV engines (G a power of two: a mask, no divider)
        group = self.config.group
        bad_count = (run.count == 0) | ((run.count & (group - 1)) != 0) if group > 1 \
            else run.count == 0
        # START takes effect a cycle after its action, from registers: the decision (the
        # bus decode, `busy`, the count's check) and the words to let in. As a clock enable
        # and clear of every run counter (hundreds of flip-flops) the decode was 1.3-2.3 ns
        # late on the CNV build cnv10n. The whole run moves by that cycle, so what the
        # counters count is the same; the next request is three cycles away.
        start_good, start_bad = Signal(name="start_good"), Signal(name="start_bad")
        words = Signal.like(run.in_left, name="in_words_of_count")
        # COUNT is written while idle, at least three cycles before START's action, so the
        # product may take two: COUNT's copy, then the multiplier into `words` (one cycle
        # from COUNT through the multiplier was 2.5 ns late at 100 MHz: ECP5 CNV build cnv9e)
        count_q = Signal.like(run.count, name="count_q")
        m.d.sync += [start_good.eq(start & ~bad_count), start_bad.eq(start & bad_count),
                     count_q.eq(run.count), words.eq(count_q * self.config.in_words)]
        with m.If(start_bad):
            m.d.sync += [run.error.eq(mm.ERR_COUNT), run.done.eq(1)]
        with m.If(start_good):
            m.d.sync += [run.busy.eq(1), run.done.eq(0), run.error.eq(mm.ERR_NONE),
                         run.in_left.eq(words),
                         run.in_open.eq(1),       # count ≠ 0 here (bad_count)
                         run.images_done.eq(0), run.last_image.eq(count_q == 1),
                         run.cycles.eq(0), run.latency.eq(0),
                         run.interval.eq(0), run.since_done.eq(1)]
            m.d.sync += [c.eq(0) for c in run.engine_busy]
        with m.If(abort | abort_reset):
            # word_in_image also in the reset cycle: a beat leaving the pipeline then is dropped
            m.d.sync += run.word_in_image.eq(0)
        with m.If(abort):
            m.d.sync += [run.busy.eq(0), run.done.eq(0), run.in_left.eq(0), run.in_open.eq(0)]
            m.d.sync += [r.eq(0) for r in resets]
            with m.If(run.busy):
                m.d.sync += run.error.eq(mm.ERR_ABORTED)

    def _answer(self, m, req, run, io, reg_read, reg_mapped, out_port, w_known):
        """The read byte and the error of the request in stage 1, registered for the ack."""
        out_byte, out_head, out_ready = out_port
        r_byte, err = Signal(8, name="r_byte"), Signal(name="err")
        m.d.comb += [self.bus.r_data.eq(r_byte), self.bus.err.eq(err)]
        writable = req.ctrl_reg | (req.count_reg & ~run.busy)
        bad = Signal()
        with m.If(req.hit_reg):
            m.d.comb += bad.eq(~reg_mapped | (req.we & ~writable))
        with m.Elif(req.hit_in):
            m.d.comb += bad.eq(~req.we | ~io.in_ready)
        with m.Elif(req.hit_out):
            m.d.comb += bad.eq(req.we | ~out_ready)
        with m.Elif(req.hit_w):
            m.d.comb += bad.eq(~req.we | ~w_known | run.busy)
        with m.Else():
            m.d.comb += bad.eq(1)
        with m.If(req.act):
            m.d.sync += [err.eq(bad),
                         r_byte.eq(Mux(req.hit_out, _byte_of(out_head, out_byte),
                                       _byte_of(reg_read, req.reg_byte)))]
