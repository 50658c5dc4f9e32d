"""Bus target: the core's registers and the host's side of its memories, on the byte bus."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.bus import BusSignature
from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core.interfaces import RunControlSignature, read_port, write_port

__all__ = ["BusTarget"]

#: Source of the read byte, registered in the request cycle (the read multiplexer's select).
_SRC_REG, _SRC_LC, _SRC_OUT, _SRC_DESC, _SRC_THR, _SRC_W, _SRC_IN = range(7)


def _log2(n):
    return n.bit_length() - 1


def _interleaved(offset, unit_bytes, banks):
    """``offset`` (bits of a byte address) viewed as ``byte`` within a unit, ``bank`` and
    ``word``: the interleave of docs/memory_map.md (:func:`memory_map.interleave`)."""
    byte_bits, bank_bits = _log2(unit_bytes), _log2(banks)
    layout = data.StructLayout({"byte": byte_bits, "bank": bank_bits,
                                "word": len(offset) - byte_bits - bank_bits})
    return data.View(layout, offset)


def _lane_onehot(byte):
    """Write enable of the byte lane ``byte`` selects (granularity-8 ports; one lane if the
    unit is a byte)."""
    return Const(1, 1 << len(byte)) << byte if len(byte) else Const(1, 1)


class _Decode:
    """The request's address decoded by :data:`memory_map.WINDOWS` alone: which region it hits
    (``hit[name]``, within the region's used size) and where (``at[name]``, an
    :func:`_interleaved` view of its offset in the window)."""

    def __init__(self, addr, config):
        used = {name: size for name, (_, size, _) in mm.regions(config).items()}
        self.in_window, self.hit, self.at = {}, {}, {}
        for name, (base, _) in mm.WINDOWS.items():
            bits = mm.window_bits(name)
            self.in_window[name] = addr[bits:] == base >> bits
            offset = addr[:bits]
            self.at[name] = _interleaved(offset, *mm.interleave(name, config))
            if name != "page0":
                self.hit[name] = self.in_window[name] & (offset < used[name])
        #: page 0's offset: the registers, then the layer-cycle counters
        self.page = page = self.at["page0"].as_value()
        self.hit["regs"] = self.in_window["page0"] & (page < mm.REG_END)
        lc_end = mm.LAYER_CYCLES_BASE + used["layer_cycles"]
        self.hit["layer_cycles"] = (self.in_window["page0"] & (page >= mm.LAYER_CYCLES_BASE)
                                    & (page < lc_end))
        self.at["layer_cycles"] = _interleaved(page - mm.LAYER_CYCLES_BASE,
                                               *mm.interleave("layer_cycles", config))
        self.mem_write = self.hit["desc"] | self.hit["thr"] | self.hit["in"] | self.hit["w"]

    def register_is(self, offset):
        """The request addresses (any byte of) the register at ``offset``."""
        return self.at["page0"].word == offset // mm.REG_BYTES


class BusTarget(wiring.Component):
    """Decodes the byte bus into the registers and the host's accesses to the memories.

    Registers (docs/memory_map.md) are read at any time; ``BATCH`` and ``CTRL`` (start) are
    written while idle. The memories are written and read back by the host only while idle:
    during a run the core (hw/core/core.py) hands their shared ports to the sequencer side, and
    a request to them is refused. The read-only layer-cycle counters may be read at any time.
    Every address is decoded from :mod:`xnorflow.hw.core.memory_map` (:data:`~memory_map.WINDOWS`,
    :func:`~memory_map.interleave`, :func:`~memory_map.regions`).

    Parameters
    ----------
    config : ArrayConfig

    Ports
    -----
    bus : In(BusSignature())
        Byte-wide register bus, target side (hw/bus.py). ``err`` is raised for unmapped
        addresses, writes to read-only locations, and, while a run is busy, for any memory
        access but the layer-cycle counters and for writes to ``BATCH`` or ``CTRL`` byte 0
        (nothing is written then).
    control : Out(RunControlSignature())
        ``start`` and ``batch`` to the sequencer; its status, error and counters back (the
        registers read them).
    desc_read, desc_write : read_port / write_port(DESC_WORDS·desc_depth, 32)
        The host's side of the descriptor table (the read port is shared with the sequencer).
    lc_read : read_port(desc_depth, 32)
        Read of the layer-cycle counters.
    w_read, w_write : read_port / write_port(w_depth, K).array(P)
        The host's side of the weight banks (one address for both: single-port banks).
    thr_read, thr_write : read_port / write_port(thr_depth + out_depth, 32).array(P)
        The host's side of the row banks: thresholds, and the output buffer above them.
    in_read, in_write : read_port / write_port(in_depth, K).array(Q)
        The host's side of the input banks.

    Every write port has granularity 8: the host writes one byte per request.

    Latency and throughput
    ----------------------
    A write is acknowledged in the cycle after ``stb`` rises and lands in that ack cycle (one
    byte per two cycles); a read is acknowledged three cycles later (each bank's byte, the
    bank's byte and the read byte are registered; one byte per five cycles).
    """

    def __init__(self, config):
        self.config = config
        cfg = config
        rows = cfg.thr_depth + cfg.out_depth
        desc_words = mm.DESC_WORDS * cfg.desc_depth
        super().__init__({
            "bus": In(BusSignature()),
            "control": Out(RunControlSignature()),
            "desc_read": read_port(desc_words, 32),
            "desc_write": write_port(desc_words, 32, granularity=8),
            "lc_read": read_port(cfg.desc_depth, 32),
            "w_read": read_port(cfg.w_depth, cfg.K).array(cfg.P),
            "w_write": write_port(cfg.w_depth, cfg.K, granularity=8).array(cfg.P),
            "thr_read": read_port(rows, 32).array(cfg.P),
            "thr_write": write_port(rows, 32, granularity=8).array(cfg.P),
            "in_read": read_port(cfg.in_depth, cfg.K).array(cfg.Q),
            "in_write": write_port(cfg.in_depth, cfg.K, granularity=8).array(cfg.Q),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        dec = _Decode(bus.addr, self.config)
        req, err_q = self._handshake(m)
        # Writes land in the ack cycle (registered enables, below), so the byte is registered
        # too: the host link's buffer is a block RAM whose clock-to-out plus the route to
        # every bank's data input set the ECP5 16x8x32 Fmax (52 MHz).
        w_byte = Signal(8)
        m.d.sync += w_byte.eq(bus.w_data)
        self._memory_addresses(m, dec)
        self._memory_writes(m, dec, req & bus.we & ~self.control.busy, w_byte)
        self._errors(m, dec, req, err_q)
        self._register_writes(m, dec, req, w_byte)
        self._read_data(m, dec)
        return m

    def _handshake(self, m):
        """Acknowledge writes in the cycle after the request, reads three cycles later; return
        the request (``stb`` of a request not yet answered) and its error register."""
        bus = self.bus
        # Each bank's byte is registered after its lane multiplexer, the bank's byte after the
        # bank multiplexer and the read byte after the region multiplexer (_read_data), so
        # block-RAM clock-to-out never meets a long multiplexer chain or the host link's
        # logic in one cycle (on ECP5 each set Fmax).
        req, rd_pend, rd_pend2, rd_pend3, ack_rd = (
            Signal(name=n) for n in ("req", "rd_pend", "rd_pend2", "rd_pend3", "ack_rd"))
        # the error of the request, one/two/three/four cycles on
        err_q, err_q2, err_q3, err_rd = (Signal(name=n)
                                         for n in ("err_q", "err_q2", "err_q3", "err_rd"))
        m.d.comb += req.eq(bus.stb & ~bus.ack & ~rd_pend & ~rd_pend2 & ~rd_pend3)
        m.d.sync += [rd_pend.eq(req & ~bus.we), rd_pend2.eq(rd_pend), rd_pend3.eq(rd_pend2),
                     bus.ack.eq((req & bus.we) | rd_pend3),
                     ack_rd.eq(rd_pend3), err_q2.eq(err_q), err_q3.eq(err_q2),
                     err_rd.eq(err_q3)]
        m.d.comb += bus.err.eq(Mux(ack_rd, err_rd, err_q))
        return req, err_q

    def _memory_addresses(self, m, dec):
        """The host's word address in every memory (the core muxes them in while idle)."""
        cfg, at = self.config, dec.at
        m.d.comb += [self.desc_read.addr.eq(at["desc"].word),
                     self.desc_write.addr.eq(at["desc"].word),
                     self.lc_read.addr.eq(at["layer_cycles"].word)]
        # A row bank holds the thresholds, then the output buffer from word thr_depth on.
        row = Mux(dec.in_window["out"], cfg.thr_depth + at["out"].word, at["thr"].word)
        for i in range(cfg.P):
            m.d.comb += [self.w_read[i].addr.eq(at["w"].word),
                         self.w_write[i].addr.eq(at["w"].word),
                         self.thr_read[i].addr.eq(row),
                         self.thr_write[i].addr.eq(at["thr"].word)]
        for j in range(cfg.Q):
            m.d.comb += [self.in_read[j].addr.eq(at["in"].word),
                         self.in_write[j].addr.eq(at["in"].word)]

    def _memory_writes(self, m, dec, can_write, w_byte):
        """Host writes into the memories (``can_write``: a write request while idle).

        The decoded byte enables are registered: the write lands in the ack cycle, with the
        address and byte the initiator still holds (the address decode feeding the RAMs'
        write enables was the iCE40 build's critical path)."""
        cfg, hit, at = self.config, dec.hit, dec.at

        def write(name, port, cond, lanes):
            en = Signal(len(port.en), name=f"host_en_{name}")
            m.d.sync += en.eq(Mux(cond, lanes, 0))
            # the written byte on every lane; the enable picks the lane
            m.d.comb += [port.en.eq(en), port.data.eq(w_byte.replicate(len(port.data) // 8))]

        write("desc", self.desc_write, can_write & hit["desc"], _lane_onehot(at["desc"].byte))
        for name, ports, banks in (("thr", self.thr_write, cfg.P), ("w", self.w_write, cfg.P),
                                   ("in", self.in_write, cfg.Q)):
            for bank in range(banks):
                write(f"{name}{bank}", ports[bank],
                      can_write & hit[name] & (at[name].bank == bank),
                      _lane_onehot(at[name].byte))

    def _errors(self, m, dec, req, err_q):
        """The request's ``err``, decoded from the address alone; ``req`` (which depends on
        the initiator's strobe, the end of the host link's longest path) gates only the last
        gate before the flip-flop."""
        bus, busy, hit = self.bus, self.control.busy, dec.hit
        writable_reg = dec.register_is(mm.REG_BATCH) | dec.register_is(mm.REG_CTRL)
        reserved_ctrl = hit["regs"] & dec.register_is(mm.REG_CTRL) & (dec.at["page0"].byte != 0)
        err_cond = Signal()
        with m.If(bus.we):
            with m.If(reserved_ctrl):
                # CTRL bytes 1-3 are reserved: accepted and ignored even while busy, so a
                # host may write CTRL as one 32-bit word.
                m.d.comb += err_cond.eq(0)
            with m.Elif((hit["regs"] & writable_reg) | dec.mem_write):
                m.d.comb += err_cond.eq(busy)
            with m.Else():
                m.d.comb += err_cond.eq(1)      # read-only or unmapped
        with m.Else():
            with m.If(dec.mem_write | hit["out"]):
                m.d.comb += err_cond.eq(busy)   # memories are read only while idle
            with m.Elif(~(hit["regs"] | hit["layer_cycles"])):
                m.d.comb += err_cond.eq(1)      # unmapped
        m.d.sync += err_q.eq(req & err_cond)

    def _register_writes(self, m, dec, req, w_byte):
        """BATCH and CTRL. Register writes, like memory writes, land in the ack cycle from
        registered enables (the strobe → decode → register enable path set the iCE40 build's
        Fmax)."""
        ctl = self.control
        reg_ok = Signal()
        m.d.comb += reg_ok.eq(self.bus.we & dec.hit["regs"] & ~ctl.busy)
        wr_batch_lo, wr_batch_hi, wr_ctrl = Signal(), Signal(), Signal()
        m.d.sync += [wr_batch_lo.eq(req & reg_ok & (dec.page == mm.REG_BATCH)),
                     wr_batch_hi.eq(req & reg_ok & (dec.page == mm.REG_BATCH + 1)),
                     wr_ctrl.eq(req & reg_ok & (dec.page == mm.REG_CTRL))]
        with m.If(wr_batch_lo):
            m.d.sync += ctl.batch[:8].eq(w_byte)
        with m.If(wr_batch_hi):
            m.d.sync += ctl.batch[8:].eq(w_byte)
        m.d.comb += ctl.start.eq(wr_ctrl & (w_byte & mm.CTRL_START).any())

    def _register_byte(self, m, dec):
        """The addressed byte of the registers (combinational)."""
        cfg, ctl = self.config, self.control
        status = Cat(ctl.busy, ctl.done, ctl.error != 0)     # STATUS_BUSY, _DONE, _ERROR
        regs = {mm.REG_ID: Const(mm.ID_VALUE, 32), mm.REG_CTRL: Const(0, 32),
                mm.REG_BATCH: ctl.batch, mm.REG_STATUS: status, mm.REG_ERROR: ctl.error,
                mm.REG_TOTAL_CYCLES: ctl.total_cycles, mm.REG_LAYERS_DONE: ctl.layers_done}
        regs.update({offset: Const(value, 32)
                     for offset, value in mm.config_registers(cfg).items()})
        reg_word = Signal(32)
        with m.Switch(dec.at["page0"].word):
            for offset, value in sorted(regs.items()):
                with m.Case(offset // mm.REG_BYTES):
                    m.d.comb += reg_word.eq(value)
        return reg_word.word_select(dec.at["page0"].byte, 8)

    def _read_data(self, m, dec):
        """The read byte, four registered stages.

        The request cycle registers the source, the address and the register byte; the next
        picks the addressed byte out of each bank's read data into a register beside that
        bank (block-RAM clock-to-out, ~5.6 ns on ECP5, then only a lane multiplexer: with the
        bank multiplexer in the same cycle, the route from the banks to one place set the ECP5
        8x8x32 Fmax at 80.8 MHz); the next picks the bank's byte; the last multiplexes the
        regions into the read byte the ack cycle presents. The initiator holds the address
        until the ack, so the registered address and source stay valid throughout."""
        cfg, hit = self.config, dec.hit
        src = Signal(3)
        with m.If(hit["layer_cycles"]):
            m.d.sync += src.eq(_SRC_LC)
        with m.Elif(hit["out"]):
            m.d.sync += src.eq(_SRC_OUT)
        with m.Elif(hit["desc"]):
            m.d.sync += src.eq(_SRC_DESC)
        with m.Elif(hit["thr"]):
            m.d.sync += src.eq(_SRC_THR)
        with m.Elif(hit["w"]):
            m.d.sync += src.eq(_SRC_W)
        with m.Elif(hit["in"]):
            m.d.sync += src.eq(_SRC_IN)
        with m.Else():
            m.d.sync += src.eq(_SRC_REG)
        # The address bits below the page select every byte and bank (the page offset).
        read_bits = max([len(dec.page)] + [_log2(unit * banks) for unit, banks in
                                           (mm.interleave(n, cfg) for n in ("thr", "w", "in"))])
        addr_r, reg_r = Signal(read_bits), Signal(8)
        m.d.sync += [addr_r.eq(self.bus.addr[:read_bits]), reg_r.eq(self._register_byte(m, dec))]

        def pick(name, ports, region):
            """Registered byte the request addressed among the banks' read data: each bank's
            byte in a register of its own, then the bank's, each a cycle."""
            at = _interleaved(addr_r, *mm.interleave(region, cfg))
            lane_bytes = []
            for idx, port in enumerate(ports):
                lane_byte = Signal(8, name=f"rb_{name}{idx}")
                m.d.sync += lane_byte.eq(port.data.word_select(at.byte, 8)
                                         if len(at.byte) else port.data[:8])
                lane_bytes.append(lane_byte)
            byte = Signal(8, name=f"rbyte_{name}")
            if len(at.bank):
                with m.Switch(at.bank):
                    for idx, lane_byte in enumerate(lane_bytes):
                        with m.Case(idx):
                            m.d.sync += byte.eq(lane_byte)
            else:
                m.d.sync += byte.eq(lane_bytes[0])
            return byte

        picked = {
            _SRC_REG: reg_r,
            _SRC_LC: pick("lc", [self.lc_read], "layer_cycles"),
            _SRC_OUT: pick("thr", self.thr_read, "thr"),    # out and thr share the row banks
            _SRC_DESC: pick("desc", [self.desc_read], "desc"),
            _SRC_W: pick("w", self.w_read, "w"),
            _SRC_IN: pick("in", self.in_read, "in"),
        }
        picked[_SRC_THR] = picked[_SRC_OUT]
        src_r = Signal(3)
        rd_byte, rd_byte_r = Signal(8), Signal(8)
        m.d.sync += [src_r.eq(src), rd_byte_r.eq(rd_byte)]
        m.d.comb += self.bus.r_data.eq(rd_byte_r)
        with m.Switch(src_r):
            for code, byte in picked.items():
                with m.Case(code):
                    m.d.comb += rd_byte.eq(byte)
