"""Accelerator core top: memories, sequencer, systolic array, threshold units, writers, bus."""
from amaranth.back import verilog as _verilog
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from hw.bus import BusSignature
from hw.config import ArrayConfig
from hw.core import memory_map as mm
from hw.core.array import SystolicArray
from hw.core.pipeline import delay
from hw.core.pixel_walker import PixelWalker
from hw.core.sequencer import Sequencer
from hw.core.threshold import ThresholdUnit

__all__ = ["Core", "verilog"]


class Core(wiring.Component):
    """The BNN accelerator core: an overlay that runs any dense model fitting its memories.

    The host loads descriptors, weights, thresholds and inputs through ``bus``, writes the
    batch size and starts a run; the sequencer executes the descriptor table layer by layer on
    the systolic array; the last layer's raw integers land in the output buffer, and the cycle
    counters record the run. docs/core.md has the block diagram and the dataflow;
    docs/memory_map.md (and :mod:`hw.core.memory_map`) the address map.

    Parameters
    ----------
    config : ArrayConfig or str
        Array shape (P, Q, K), memory depths and accumulator width.

    Ports
    -----
    bus : In(BusSignature())
        Byte-wide register bus, target side (hw/bus.py). A write is acknowledged in the
        cycle after ``stb`` rises (one byte per two cycles), a read three cycles later (the
        read word, its byte and the read byte are registered; one byte per five cycles). ``err`` is raised for unmapped
        addresses, writes to read-only locations, and, while a run is busy, for any memory
        access but the layer-cycle counters and for writes to ``BATCH`` or ``CTRL`` byte 0
        (nothing is written then).

    Latency and throughput
    ----------------------
    The array consumes one K-bit word per row and column per cycle while a layer issues; a
    layer takes ``1 + (G·m_tiles − 1)·max(W, Q) + W + config.write_delay`` cycles (plus
    ``config.desc_fetch`` for a run's first layer) with
    ``G = ceil(B / Q)`` and ``W = in_words·input_bits`` (``DenseLayer.cycles`` in
    sw/layers/dense.py is the same formula, and the counters count exactly this).
    """

    def __init__(self, config=None):
        self.config = ArrayConfig.parse(config) if config is not None else ArrayConfig()
        mm.check_fits(self.config)
        super().__init__({"bus": In(BusSignature())})
        cfg = self.config

        def mem(width, depth, **attrs):
            # no_rw_check: no port ever needs the value of a word written in the same cycle
            # (host writes happen only while idle, when the sequencer reads nothing; the
            # ping-pong halves keep activation reads and writes apart; outputs and counters
            # are defined only when idle). Without it Yosys adds read-first collision logic to
            # every memory: about 30-45 LUTs and 50-80 flip-flops each on ECP5 and iCE40.
            return Memory(shape=width, depth=depth, init=[], attrs={"no_rw_check": 1, **attrs})

        #: The memories by region (lists are banks); simulations may load them directly.
        self.memories = {
            # Eight 32-bit words per descriptor: narrow enough for small block RAMs.
            "desc": mem(32, mm.DESC_WORDS * cfg.desc_depth),
            "layer_cycles": mem(32, cfg.desc_depth),
            # Single-port use (one shared address, see elaborate): deep banks are asked to
            # be "huge" RAM, which Yosys maps to iCE40 UltraPlus SPRAM (synth_ice40 -spram
            # uses huge RAM only when asked by ram_style).
            "w": [mem(cfg.K, cfg.w_depth, **({"ram_style": "huge"} if cfg.w_huge else {}))
                  for _ in range(cfg.P)],
            # One bank per row holds the thresholds (words 0 .. thr_depth-1) and the raw
            # outputs (from word thr_depth on): a layer uses one or the other, never both,
            # and one bank instead of two per row is what block-RAM-poor FPGAs need.
            "thr": [mem(32, cfg.thr_depth + cfg.out_depth) for _ in range(cfg.P)],
            "in": [mem(cfg.K, cfg.in_depth) for _ in range(cfg.Q)],
            "act": [mem(cfg.K, 2 * cfg.act_depth) for _ in range(cfg.Q)],
        }
        # Ports are made here, once, so that elaborating the core twice (Verilog, then a
        # simulation) does not add ports. Host byte writes use granularity 8; the activation
        # banks use granularity P: one tile's P output bits fill one lane of a word.
        mems = self.memories

        def both(mem_, granularity=None):
            return mem_.read_port(), mem_.write_port(granularity=granularity)

        def banks(mems_, granularity=None):
            pairs = [both(x, granularity) for x in mems_]
            return [r for r, _ in pairs], [w for _, w in pairs]

        self._ports = {
            "desc": both(mems["desc"], 8), "layer_cycles": both(mems["layer_cycles"]),
            "w": banks(mems["w"], 8), "thr": banks(mems["thr"], 8), "in": banks(mems["in"], 8),
            "act": banks(mems["act"], cfg.P),
        }

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        P, Q, K, AW = cfg.P, cfg.Q, cfg.K, cfg.acc_width
        WB = K // 8
        lb = WB.bit_length() - 1        # byte-lane bits of a K-bit word

        m.submodules.seq = seq = Sequencer(cfg)
        m.submodules.array = arr = SystolicArray(P, Q, K, AW, cfg.row_groups)

        mems = self.memories
        for name, mem_ in mems.items():
            for idx, sub in enumerate(mem_ if isinstance(mem_, list) else [mem_]):
                m.submodules[f"{name}_{idx}" if isinstance(mem_, list) else name] = sub
        ports = self._ports
        desc_r, desc_w = ports["desc"]
        lc_r, lc_w = ports["layer_cycles"]
        (w_r, w_w), (t_r, t_w), (i_r, i_w) = ports["w"], ports["thr"], ports["in"]
        a_r, a_w = ports["act"]
        a = self.bus.addr

        batch = Signal(16)
        m.d.comb += [
            seq.batch.eq(batch),
            desc_r.addr.eq(Mux(seq.desc_owner, seq.desc_addr, self.bus.addr[2:12])),
            seq.desc_data.eq(desc_r.data),
            lc_w.en.eq(seq.lc_we), lc_w.addr.eq(seq.lc_addr), lc_w.data.eq(seq.lc_data),
        ]

        # ---- issue: column skew by delaying each column bank's read address (address bits,
        # not K-bit words); all weight banks are read in the issue cycle.
        from_input = Signal()
        rd_off, wr_off = Signal(16), Signal(16)
        m.d.comb += [
            from_input.eq(seq.layer == 0),
            # Ping-pong: layer l ≥ 1 reads half (l − 1) mod 2 and writes half l mod 2.
            rd_off.eq(Mux(seq.layer[0], 0, cfg.act_depth)),
            wr_off.eq(Mux(seq.layer[0], cfg.act_depth, 0)),
        ]
        ones = Const((1 << K) - 1, K)
        # The issue as the memories see it: the sequencer's outputs, registered once more when
        # issue_reg is set (the addresses then leave a register instead of the sequencer's
        # adders, with a whole cycle to reach banks spread over the device).
        iss = {name: delay(m, getattr(seq, name), cfg.issue_reg, name)
               for name in ("i_valid", "i_w_addr", "i_a_addr", "i_last_word", "i_double",
                            "i_tile_last", "i_kx", "i_ky", "g_next")}
        # Weights need no valid-bit mask: a padding bit never agrees whatever the bank holds
        # there, because the column clears x and zero_agrees in it (SystolicArray).
        # Row skew (row_groups > 1, see SystolicArray): group g's banks are read g cycles after
        # group 0's, by delaying the address bits (not K-bit words) one hop per group.
        w_addrs = [iss["i_w_addr"][:len(w_r[0].addr)]]
        for g in range(1, cfg.row_groups):
            w_addrs.append(delay(m, w_addrs[-1], 1, f"w_addr_g{g}"))
        host_w = self.bus.addr[lb + cfg.log2P:22]
        for i in range(P):
            w_addr = w_addrs[i // cfg.rows_per_group]
            # One address per weight bank for its read and its write port: the host writes
            # (and reads back) only while idle, the sequencer reads only while busy. A bank is
            # then a single-port RAM (iCE40 SPRAM: one address, registered read, no init),
            # with the same 1-cycle read as before, so the timing does not change.
            w_shared = Signal(len(w_r[i].addr), name=f"w_addr{i}")
            m.d.comb += [w_shared.eq(Mux(seq.busy, w_addr, host_w)),
                         w_r[i].addr.eq(w_shared), w_w[i].addr.eq(w_shared),
                         # Reads pause while the host writes (the read data is not used
                         # then): SPRAM keeps its output during a write ("no_change").
                         w_r[i].en.eq(~w_w[i].en.any())]
            # Edge register: block-RAM clock-to-out is slow (≈6 ns on ECP5); without it the
            # RAM output would feed the PE's XNOR and first popcount stage in one cycle.
            m.d.sync += arr.w[i].eq(w_r[i].data)
        sideband = Cat(iss["i_valid"], iss["i_last_word"], iss["i_double"], iss["i_tile_last"])
        for j in range(Q):
            a_bits = max(len(i_r[j].addr), len(a_r[j].addr))
            addr_j = delay(m, iss["i_a_addr"][:a_bits], j, f"aa{j}")
            host_i = self.bus.addr[lb + cfg.log2Q:21]
            m.d.comb += i_r[j].addr.eq(Mux(seq.busy, addr_j, host_i))
            pad = Signal(name=f"pad{j}")                # at the read data, like the sideband
            if cfg.conv:
                # Binary conv: the column reads its pixel's base plus the tap offset the
                # sequencer walks (both skewed like the address), and pads where the tap
                # leaves the image.
                walker = PixelWalker(j, Q)
                m.submodules[f"walker{j}"] = walker
                tap = delay(m, Cat(iss["i_kx"], iss["i_ky"]), j, f"tap{j}")
                m.d.comb += [
                    walker.start.eq(seq.layer_start), walker.pool.eq(seq.ld_pool),
                    walker.height.eq(seq.ld_height), walker.width.eq(seq.ld_width),
                    walker.pix_words.eq(seq.ld_pix_words),
                    walker.row_words.eq(seq.ld_row_words),
                    walker.step_words.eq(seq.ld_step_words),
                    walker.wrap_words.eq(seq.ld_wrap_words),
                    walker.advance.eq(delay(m, iss["g_next"], j, f"gn{j}")),
                    walker.kx.eq(tap[:2]), walker.ky.eq(tap[2:]),
                    a_r[j].addr.eq(Mux(seq.conv, walker.base + addr_j, addr_j) + rd_off),
                ]
                m.d.sync += pad.eq(seq.conv & walker.pad)
            else:
                m.d.comb += a_r[j].addr.eq(addr_j + rd_off)
            sb = delay(m, sideband, j + 1, f"sb{j}")    # +1: memory read latency
            # (plus the edge register below, common to the words and the sideband)
            valid, last_word, double, tile_last = sb[0], sb[1], sb[2], sb[3]
            x = Signal(K, name=f"x{j}")
            # The padding bit is 0 (sw/layers/conv.py: PAD_BIT) in every valid bit.
            m.d.comb += x.eq(Mux(from_input, i_r[j].data, Mux(pad, 0, a_r[j].data)))
            # Edge register (see the weights): the column enters the array one cycle after
            # the read, with its valid-bit mask.
            mask = Mux(last_word, seq.lastmask, ones)
            m.d.sync += [
                arr.x[j].eq(x), arr.m[j].eq(mask),
                # zero_agrees, registered here so that the mode stays out of the PEs' LUTs
                arr.z[j].eq(Mux(seq.unsigned, 0, mask)),
                arr.dbl[j].eq(double), arr.valid[j].eq(valid), arr.last[j].eq(tile_last),
            ]

        # ---- per row: threshold lookup and compare, raw writes. Every row delivers column j
        # of a tile in the same cycle, so one set of counters serves all rows.
        tj = Signal(range(Q))       # column of the value at the drain output
        tt = Signal(16)             # its tile within the column group
        with m.If(seq.layer_start):
            m.d.sync += [tj.eq(0), tt.eq(0)]
        with m.Elif(arr.out_valid[0]):
            m.d.sync += tj.eq(tj + 1)
            with m.If(tj == Q - 1):
                m.d.sync += tt.eq(Mux(tt == seq.m_tiles - 1, 0, tt + 1))
        # The threshold is addressed in the drain cycle and its read data registered
        # (block-RAM clock-to-out must not meet the comparator's carry chain in one cycle, it
        # set Fmax); the value waits two registers to meet it.
        val_r = delay(m, arr.out_valid[0], 2, "val")
        raddr = Signal(16)          # raw outputs: each row writes its own bank in arrival
        out_valid = Signal()        # order (g, t, j)
        with m.If(seq.layer_start):
            m.d.sync += raddr.eq(0)
        with m.Elif(out_valid & seq.raw):
            m.d.sync += raddr.eq(raddr + 1)
        bits, downs = [], []
        raw_we, raw_addr, raw_value = [], [], []
        host_row = Mux(a[23], cfg.thr_depth + a[2 + cfg.log2P:23], a[2 + cfg.log2P:20])
        for i in range(P):
            m.d.comb += t_r[i].addr.eq(Mux(seq.busy, seq.t_base + tt, host_row))
            thr_r = Signal(32, name=f"thr_r{i}")
            m.d.sync += thr_r.eq(t_r[i].data)
            acc_r = delay(m, arr.out_acc[i], 2, f"acc{i}")
            tu = ThresholdUnit(AW)
            m.submodules[f"thr_unit_{i}"] = tu
            m.d.comb += [tu.valid.eq(val_r), tu.acc.eq(acc_r),
                         tu.threshold.eq(thr_r[:AW].as_signed()),
                         tu.down.eq(thr_r[mm.THR_DOWN_BIT]), tu.raw.eq(seq.raw)]
            raw_we.append(tu.out_valid & seq.raw)
            raw_addr.append(cfg.thr_depth + raddr)
            raw_value.append(tu.out_value)
            bits.append(tu.out_bit)
            downs.append(tu.out_down)
            if i == 0:
                m.d.comb += out_valid.eq(tu.out_valid)

        # ---- binary writer: the P bits of (column j, tile t) go to lane t mod (K/P) of a word
        # Dense: to column j's own bank, word g·out_words + t div lanes. Conv: every bank gets
        # every pixel (the next conv's columns read any pixel), word u·out_words + t div
        # lanes for output unit u = g·Q + j; pooled, u = g·Q/4 + j div 4 and the four columns
        # of a window (consecutive cycles, same tile) are ORed/ANDed by each channel's
        # direction before the one write. Units past out_units (the last group's spare
        # columns) are not written.
        lanes = cfg.lanes
        wj = Signal(range(Q))
        wt, word, gbase = Signal(16), Signal(16), Signal(16)
        lane = Signal(range(lanes))
        wen = Signal()
        m.d.comb += wen.eq(out_valid & ~seq.raw)
        g_unit, g_ubase = Signal(16), Signal(16)    # group's first unit, its word address
        unit, ubase = Signal(16), Signal(16)        # the emitted column's unit and address
        tword = Signal(16)                          # t div lanes
        # units per group and their words (powers of two: shifts, no multiplier)
        per_group = Mux(seq.pool, Q // 4, Q) if Q >= 4 else Const(Q, 16)
        group_words = Signal(16)
        m.d.comb += group_words.eq(Mux(seq.pool, seq.out_words << max(cfg.log2Q - 2, 0),
                                       seq.out_words << cfg.log2Q) if Q >= 4
                                   else seq.out_words << cfg.log2Q)
        unit_done = Signal()
        m.d.comb += unit_done.eq(~seq.pool | (wj[:2] == 3) if Q >= 4 else 1)
        with m.If(seq.layer_start):
            m.d.sync += [wj.eq(0), wt.eq(0), lane.eq(0), word.eq(0), gbase.eq(0),
                         g_unit.eq(0), g_ubase.eq(0), unit.eq(0), ubase.eq(0), tword.eq(0)]
        with m.Elif(wen):
            m.d.sync += wj.eq(wj + 1)
            with m.If(wj == Q - 1):
                with m.If(wt == seq.m_tiles - 1):
                    m.d.sync += [wt.eq(0), lane.eq(0), gbase.eq(gbase + seq.out_words),
                                 word.eq(gbase + seq.out_words)]
                    # next group
                    m.d.sync += [g_unit.eq(g_unit + per_group),
                                 g_ubase.eq(g_ubase + group_words),
                                 unit.eq(g_unit + per_group),
                                 ubase.eq(g_ubase + group_words), tword.eq(0)]
                with m.Else():
                    m.d.sync += [unit.eq(g_unit), ubase.eq(g_ubase)]
                    with m.If(lane == lanes - 1):
                        m.d.sync += [wt.eq(wt + 1), lane.eq(0), word.eq(word + 1),
                                     tword.eq(tword + 1)]
                    with m.Else():
                        m.d.sync += [wt.eq(wt + 1), lane.eq(lane + 1)]
            with m.Elif(unit_done):
                m.d.sync += [unit.eq(unit + 1), ubase.eq(ubase + seq.out_words)]
        # Pool: the window's bits so far (per row), combined with the emitted column's.
        pooled = Signal(P)
        comb_bits = Signal(P)
        first_of_unit = ~seq.pool | (wj[:2] == 0) if Q >= 4 else 1
        for i in range(P):
            m.d.comb += comb_bits[i].eq(Mux(first_of_unit, bits[i],
                                            Mux(downs[i], pooled[i] & bits[i],
                                                pooled[i] | bits[i])))
        with m.If(wen):
            m.d.sync += pooled.eq(comb_bits)
        conv_we = Signal()
        m.d.comb += conv_we.eq(wen & seq.bcast & unit_done & (unit < seq.out_units))
        for j in range(Q):
            m.d.comb += [a_w[j].addr.eq(Mux(seq.bcast, ubase + tword, word) + wr_off),
                         a_w[j].data.eq(comb_bits.replicate(lanes)),
                         a_w[j].en.eq(Mux(Mux(seq.bcast, conv_we, wen & (wj == j)),
                                          1 << lane, 0))]

        # ---- bus target ---------------------------------------------------------------------
        bus = self.bus
        # Writes are acknowledged in the cycle after the request, reads three cycles later:
        # each bank's byte is registered after its lane multiplexer, the bank's byte after the
        # bank multiplexer and the read byte after the region multiplexer ("Read data" below),
        # so block-RAM clock-to-out never meets a long multiplexer chain or the host link's
        # logic in one cycle (on ECP5 each set Fmax).
        req, rd_pend, rd_pend2, rd_pend3, ack_rd = (Signal() for _ in range(5))
        # the error of the request, one/two/three/four cycles on
        err_q, err_q2, err_q3, err_rd = Signal(), Signal(), Signal(), Signal()
        m.d.comb += req.eq(bus.stb & ~bus.ack & ~rd_pend & ~rd_pend2 & ~rd_pend3)
        m.d.sync += [rd_pend.eq(req & ~bus.we), rd_pend2.eq(rd_pend), rd_pend3.eq(rd_pend2),
                     bus.ack.eq((req & bus.we) | rd_pend3),
                     ack_rd.eq(rd_pend3), err_q2.eq(err_q), err_q3.eq(err_q2),
                     err_rd.eq(err_q3)]
        m.d.comb += bus.err.eq(Mux(ack_rd, err_rd, err_q))
        busy = seq.busy
        wr = req & bus.we
        rsize = {k: v[1] for k, v in mm.regions(cfg).items()}

        low12 = a[:12]
        in_page0 = a[12:] == 0
        hit_reg = in_page0 & (low12 < mm.REG_END)
        hit_lc = in_page0 & (low12 >= mm.LAYER_CYCLES_BASE) & \
            (low12 < mm.LAYER_CYCLES_BASE + rsize["layer_cycles"])
        hit_desc = (a[12:] == 1) & (low12 < rsize["desc"])
        hit_thr = (a[20:] == 1) & (a[:20] < rsize["thr"])
        hit_in = (a[21:] == 1) & (a[:21] < rsize["in"])
        hit_w = (a[22:] == 1) & (a[:22] < rsize["w"])
        hit_out = a[23] & (a[:23] < rsize["out"])
        mem_write = hit_desc | hit_thr | hit_in | hit_w

        def lane_onehot(bits):
            """Write enable of the byte lane ``bits`` selects (granularity-8 ports)."""
            return Const(1, 1 << len(bits)) << bits

        # Writes land in the ack cycle (registered enables, below), so the byte is registered
        # too: the host link's buffer is a block RAM whose clock-to-out plus the route to
        # every bank's data input set the ECP5 16x8x32 Fmax (52 MHz).
        w_byte = Signal(8)
        m.d.sync += w_byte.eq(bus.w_data)

        def data_rep(width):
            """The written byte on every lane; the enable picks the lane."""
            return w_byte.replicate(width // 8)

        # Host writes into the memories (refused while busy: the sequencer owns them then).
        # The decoded byte enables are registered: the write lands in the ack cycle, with the
        # address and byte the initiator still holds (the address decode feeding the RAMs'
        # write enables was the iCE40 build's critical path).
        can_write = wr & ~busy

        def host_en(name, cond, lanes):
            en = Signal(len(lanes) if hasattr(lanes, "__len__") else 1, name=f"host_en_{name}")
            m.d.sync += en.eq(Mux(cond, lanes, 0))
            return en

        m.d.comb += [desc_w.addr.eq(low12[2:]), desc_w.data.eq(data_rep(32)),
                     desc_w.en.eq(host_en("desc", can_write & hit_desc, lane_onehot(a[:2])))]
        for i in range(P):
            m.d.comb += [
                # Row bank: host threshold writes while idle, raw outputs while busy.
                t_w[i].addr.eq(Mux(busy, raw_addr[i], a[2 + cfg.log2P:20])),
                t_w[i].data.eq(Mux(busy, raw_value[i], data_rep(32))),
                t_w[i].en.eq(Mux(busy, Mux(raw_we[i], 0b1111, 0),
                                 host_en(f"thr{i}", can_write & hit_thr &
                                         (a[2:2 + cfg.log2P] == i), lane_onehot(a[:2])))),
                w_w[i].data.eq(data_rep(K)),     # address: shared with the read port
                w_w[i].en.eq(host_en(f"w{i}", can_write & hit_w & (a[lb:lb + cfg.log2P] == i),
                                     lane_onehot(a[:lb]) if lb else Const(1, 1))),
            ]
        for j in range(Q):
            m.d.comb += [
                i_w[j].addr.eq(a[lb + cfg.log2Q:21]), i_w[j].data.eq(data_rep(K)),
                i_w[j].en.eq(host_en(f"in{j}", can_write & hit_in & (a[lb:lb + cfg.log2Q] == j),
                                     lane_onehot(a[:lb]) if lb else Const(1, 1))),
            ]
        m.d.comb += lc_r.addr.eq((low12 - mm.LAYER_CYCLES_BASE)[2:])

        # Registers.
        status = Cat(busy, seq.done, seq.error != 0)
        config_word = Const(P | Q << 8 | (K.bit_length() - 1) << 16 | AW << 24, 32)
        regs = {
            mm.REG_ID: Const(mm.ID_VALUE, 32), mm.REG_CONFIG: config_word,
            mm.REG_CTRL: Const(0, 32), mm.REG_BATCH: batch, mm.REG_STATUS: status,
            mm.REG_ERROR: seq.error, mm.REG_TOTAL_CYCLES: seq.total_cycles,
            mm.REG_LAYERS_DONE: seq.layers_done,
            mm.REG_DEPTHS_W_IN: Const(cfg.w_depth | cfg.in_depth << 16, 32),
            mm.REG_DEPTHS_ACT_OUT: Const(cfg.act_depth | cfg.out_depth << 16, 32),
            mm.REG_DEPTHS_THR_DESC: Const(cfg.thr_depth | cfg.desc_depth << 16 |
                                          (cfg.row_groups.bit_length() - 1) << 24 |
                                          cfg.issue_reg << 30 | cfg.conv << 31, 32),
        }
        reg_word = Signal(32)
        with m.Switch(a[2:12]):
            for off, val in regs.items():
                with m.Case(off >> 2):
                    m.d.comb += reg_word.eq(val)
        reg_byte = reg_word.word_select(a[:2], 8)
        writable_reg = (low12[2:] == mm.REG_BATCH >> 2) | (low12[2:] == mm.REG_CTRL >> 2)
        # The request is decoded from the address alone; ``req`` (which depends on the
        # initiator's strobe, the end of the host link's longest path) gates only the last
        # gate before a flip-flop. Register writes, like memory writes, land in the ack cycle
        # from registered enables (the strobe → decode → register enable path set the iCE40
        # build's Fmax).
        reserved_ctrl = hit_reg & (low12[2:] == mm.REG_CTRL >> 2) & (low12[:2] != 0)
        err_cond = Signal()
        with m.If(bus.we):
            with m.If(reserved_ctrl):
                # CTRL bytes 1-3 are reserved: accepted and ignored even while busy, so a
                # host may write CTRL as one 32-bit word.
                m.d.comb += err_cond.eq(0)
            with m.Elif((hit_reg & writable_reg) | mem_write):
                m.d.comb += err_cond.eq(busy)
            with m.Else():
                m.d.comb += err_cond.eq(1)      # read-only or unmapped
        with m.Else():
            with m.If(mem_write | hit_out):
                m.d.comb += err_cond.eq(busy)   # memories are read only while idle
            with m.Elif(~(hit_reg | hit_lc)):
                m.d.comb += err_cond.eq(1)      # unmapped
        m.d.sync += err_q.eq(req & err_cond)
        reg_ok = Signal()
        m.d.comb += reg_ok.eq(bus.we & hit_reg & ~busy)
        wr_batch_lo, wr_batch_hi, wr_ctrl = Signal(), Signal(), Signal()
        m.d.sync += [wr_batch_lo.eq(req & reg_ok & (low12 == mm.REG_BATCH)),
                     wr_batch_hi.eq(req & reg_ok & (low12 == mm.REG_BATCH + 1)),
                     wr_ctrl.eq(req & reg_ok & (low12 == mm.REG_CTRL))]
        with m.If(wr_batch_lo):
            m.d.sync += batch[:8].eq(w_byte)
        with m.If(wr_batch_hi):
            m.d.sync += batch[8:].eq(w_byte)
        m.d.comb += seq.start.eq(wr_ctrl & w_byte[0])

        # Read data, four registered stages: the request cycle registers the source, the
        # address and the register byte; the next picks the addressed byte out of each bank's
        # read data into a register beside that bank (block-RAM clock-to-out, ~5.6 ns on ECP5,
        # then only a lane multiplexer: with the bank multiplexer in the same cycle, the route
        # from the banks to one place set the ECP5 8x8x32 Fmax at 80.8 MHz); the next picks the
        # bank's byte; the last multiplexes the regions into the read byte the ack cycle
        # presents. The initiator holds the address until the ack, so the registered address
        # and source stay valid throughout.
        src = Signal(3)       # 0 register, 1 layer cycles, 2 out, 3 desc, 4 thr, 5 w, 6 in
        with m.If(hit_lc):
            m.d.sync += src.eq(1)
        with m.Elif(hit_out):
            m.d.sync += src.eq(2)
        with m.Elif(hit_desc):
            m.d.sync += src.eq(3)
        with m.Elif(hit_thr):
            m.d.sync += src.eq(4)
        with m.Elif(hit_w):
            m.d.sync += src.eq(5)
        with m.Elif(hit_in):
            m.d.sync += src.eq(6)
        with m.Else():
            m.d.sync += src.eq(0)
        addr_r, reg_r = Signal(12), Signal(8)
        m.d.sync += [addr_r.eq(a[:12]), reg_r.eq(reg_byte)]

        def pick(name, datas, shift, lane_bits, bank_bits):
            """Registered byte the request addressed among banks' read data: each bank's
            byte in a register of its own, then the bank's, each a cycle."""
            lane_bytes = []
            for idx, data in enumerate(datas):
                lane_byte = Signal(8, name=f"rb_{name}{idx}")
                m.d.sync += lane_byte.eq(data.word_select(addr_r[:lane_bits], 8)
                                         if lane_bits else data[:8])
                lane_bytes.append(lane_byte)
            byte = Signal(8, name=f"rbyte_{name}")
            if bank_bits:
                with m.Switch(addr_r[shift:shift + bank_bits]):
                    for idx, lane_byte in enumerate(lane_bytes):
                        with m.Case(idx):
                            m.d.sync += byte.eq(lane_byte)
            else:
                m.d.sync += byte.eq(lane_bytes[0])
            return byte

        picked = {
            0: reg_r,
            1: pick("lc", [lc_r.data], 0, 2, 0),
            2: pick("thr", [x.data for x in t_r], 2, 2, cfg.log2P),   # out and thr share
            3: pick("desc", [desc_r.data], 0, 2, 0),
            5: pick("w", [x.data for x in w_r], lb, lb, cfg.log2P),
            6: pick("in", [x.data for x in i_r], lb, lb, cfg.log2Q),
        }
        picked[4] = picked[2]
        src_r = Signal(3)
        rd_byte, rd_byte_r = Signal(8), Signal(8)
        m.d.sync += [src_r.eq(src), rd_byte_r.eq(rd_byte)]
        m.d.comb += bus.r_data.eq(rd_byte_r)
        with m.Switch(src_r):
            for code, byte in picked.items():
                with m.Case(code):
                    m.d.comb += rd_byte.eq(byte)
        return m


def verilog(config=None, name="xnorflow_core"):
    """Verilog text of the core for ``config`` (an :class:`ArrayConfig` or its string form)."""
    core = Core(config)
    return _verilog.convert(core, name=name)
