"""Layer sequencer: walks the descriptor table and issues one word per cycle to the array."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.core import memory_map as mm

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Executes the layer descriptors of a run, layer after layer.

    The descriptor table is a 32-bit memory, eight words per descriptor (a 256-bit wide table
    would take 16 block RAMs on an iCE40). The first descriptor is read in the start cycle and
    seven FETCH cycles; every later one during the last eight cycles of the previous layer's
    DRAIN. Each layer then spends one cycle latching its descriptor (LOAD) and issues its
    words (ISSUE) in the order

        for g in column groups (ceil(B / Q)):
          for t in output tiles (m_tiles):
            for q in bit-planes, most significant first (input_bits):   # 1 if binary
              for w in input words (in_words):
                issue (weight word w_base + t·in_words + w, activation word g·W + q·in_words + w)

    with ``W = in_words · input_bits`` words per tile, tiles back to back, and ``max(0, Q − W)``
    idle cycles after each tile so a row's drain (one value per cycle) keeps up. After the last
    word it waits (DRAIN) until the array, threshold units and writers have written the last
    result, ``config.write_delay`` cycles, then records the layer's cycle count and moves on.
    Layer-major order keeps per-layer fill/drain to once per layer, whatever the batch.

    ``OP_CONV3X3`` runs the same loop nest with output pixels for samples (docs/conv.md):
    ``G`` comes from the descriptor (``groups``, one image), and a binary conv's activation
    address is not ``g·W + ct`` but each column's pixel base (:class:`PixelWalker`, in the
    core) plus the tap offset walked here: ``i_a_addr`` is then that offset, ``i_kx``/``i_ky``
    the tap and ``i_last_word`` marks each tap's last word. An unsigned conv (the first layer,
    whose im2col the host wrote) keeps the dense addressing. ``OP_MAXPOOL`` is never executed
    (pools are fused into the conv before them, ``FLAG_POOL``) and, like op 0, stops the run
    with ``ERR_OPCODE``.

    Parameters
    ----------
    config : ArrayConfig

    Ports
    -----
    start : In(1)
        Start a run (honoured in IDLE only; the core refuses it while busy).
    batch : In(16)
        Batch size B of the run (sampled at start).
    desc_addr : Out(10)
        Descriptor table word address, ``8·l + word`` (the memory has one cycle read latency).
    desc_owner : Out(1)
        The sequencer needs the descriptor read port (busy, or starting a run).
    desc_data : In(32)
        Descriptor table read data.
    busy, done : Out(1)
        Running / the last run finished (cleared by start).
    error : Out(2)
        ``ERR_*`` code of the last run (0 = none).
    total_cycles : Out(32)
        Cycles the current/last run has been busy.
    layers_done : Out(8)
        Layers finished in the current/last run.
    lc_we, lc_addr, lc_data : Out
        Write port for the per-layer cycle counter memory (one write per finished layer).
    layer : Out(8)
        Index of the layer being executed.
    layer_start : Out(1)
        One-cycle pulse (LOAD) that resets the back end's counters for the new layer.
    unsigned, raw : Out(1)
        The layer has unsigned k-bit input / raw integer output.
    lastmask : Out(K)
        Valid-bit mask of an input vector's last word.
    m_tiles, t_base, out_words : Out(16)
        Descriptor fields the back end needs.
    i_valid : Out(1)
        A word is issued this cycle.
    i_w_addr, i_a_addr : Out(16)
        Weight word address (same for every row bank) and activation word address (same for
        every column bank; relative to the layer's source buffer or half).
    i_last_word : Out(1)
        The word is the last word of its input vector (apply ``lastmask``).
    i_double : Out(1)
        The word starts a bit-plane after the first (``w = 0``, ``q > 0``): the PEs double
        their sum before adding it (Horner's rule over the planes, most significant first,
        so no PE needs a shifter).
    i_tile_last : Out(1)
        The word is the last of its output tile.
    conv, bcast, pool : Out(1)
        The layer is a binary conv (tap addressing) / any conv (output pixels broadcast to
        every column bank) / a conv with the 2×2 max-pool fused into the writer.
    out_units : Out(16)
        Conv: output pixels (or pooled windows) the writer writes; later ones are dropped.
    ld_pool, ld_height, ld_width, ld_pix_words, ld_row_words, ld_step_words, ld_wrap_words : Out
        The new layer's conv descriptor fields, valid in the ``layer_start`` cycle only (the
        column walkers latch them then: their first reads follow in the next cycle).
    i_kx, i_ky : Out(2)
        Tap of the issued word (binary conv).
    g_next : Out(1)
        The issued word is the last of a column group (the column walkers step after it).

    Latency and throughput
    ----------------------
    One word per cycle during ISSUE. Cycles of a layer (exactly what ``lc_data`` records):
    ``1 + (G·m_tiles − 1)·max(W, Q) + W + write_delay`` with ``G = ceil(B / Q)`` (conv: the
    descriptor's ``groups``), plus ``config.desc_fetch`` (7) for the first layer of a run.
    """

    def __init__(self, config):
        self.config = config
        K = config.K
        super().__init__({
            "start": In(1), "batch": In(16),
            "desc_addr": Out(10), "desc_data": In(32), "desc_owner": Out(1),
            "busy": Out(1), "done": Out(1), "error": Out(2),
            "total_cycles": Out(32), "layers_done": Out(8),
            "lc_we": Out(1), "lc_addr": Out(8), "lc_data": Out(32),
            "layer": Out(8), "layer_start": Out(1),
            "unsigned": Out(1), "raw": Out(1), "lastmask": Out(K),
            "m_tiles": Out(16), "t_base": Out(16), "out_words": Out(16),
            "i_valid": Out(1), "i_w_addr": Out(16), "i_a_addr": Out(16),
            "i_last_word": Out(1), "i_double": Out(1), "i_tile_last": Out(1),
            "conv": Out(1), "bcast": Out(1), "pool": Out(1),
            "out_units": Out(16), "ld_pool": Out(1), "ld_height": Out(8), "ld_width": Out(8),
            "ld_pix_words": Out(16), "ld_row_words": Out(16), "ld_step_words": Out(16),
            "ld_wrap_words": Out(16),
            "i_kx": Out(2), "i_ky": Out(2), "g_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        K, Q = cfg.K, cfg.Q
        nb = K.bit_length()          # bits of last_bits that the mask decode looks at

        # Loop bounds are kept as "bound − 1" registers, and every loop-end test the issue loop
        # branches on is a flag register computed one cycle ahead from the counter's next
        # value (16-bit compares feeding the loop's many clock enables were the critical
        # path of the iCE40 build, 33 ns).
        groups = Signal(16)          # G = ceil(B / Q)
        g_m1, mt_m1 = Signal(16), Signal(16)
        in_words, nw_m1 = Signal(16), Signal(16)
        W, W_m1 = Signal(16), Signal(16)   # words per tile = in_words · k
        w_base = Signal(16)
        last_flag = Signal()
        g, t, ct = Signal(16), Signal(16), Signal(16)   # group, tile, cycle within tile
        wi, q = Signal(16), Signal(3)                    # input word, plane (MSB first)
        a_gbase, w_tbase = Signal(16), Signal(16)        # g·W, w_base + t·in_words
        words_done = Signal()                            # this tile's W words are issued
        # Registered loop-end flags: ct == W − 1, ct ≥ Q − 1, t == m_tiles − 1,
        # g == G − 1, wi == in_words − 1; and the bounds equal to 1 they restart with.
        ct_last, ct_geq, t_last, g_last, wi_last = (Signal(name=n) for n in (
            "ct_last", "ct_geq", "t_last", "g_last", "wi_last"))
        W_is1, mt_is1, nw_is1 = Signal(), Signal(), Signal()
        drain = Signal(range(cfg.write_delay + 1))
        nd = Signal(32 * (mm.DESC_WORDS - 1))   # words 0-6 of the next descriptor; word 7 is
        fetch = Signal(3)                        # read straight from the memory in LOAD
        # W = in_words · k of the next descriptor, registered from its word 0 (fetched at
        # least five cycles before LOAD): a multiplier and the compares after it in the LOAD
        # cycle were the critical path of the ECP5 8x8x32 build.
        nwk, nwk_is1 = Signal(16), Signal()
        assert cfg.write_delay >= mm.DESC_WORDS and cfg.desc_fetch == mm.DESC_WORDS - 1
        # Tap walk of a binary conv (docs/conv.md, "Addressing"): word tw of tap (ky, kx) of
        # the 3×3 window sits at offset ((ky − 1)·W + kx − 1)·pix_words + tw from the column's
        # pixel; the three taps of a window row are consecutive words, so the offset steps by
        # 1 except between window rows (row_jump).
        tw, pw_m1 = Signal(16), Signal(16)
        kx, ky = Signal(2), Signal(2)
        off, off0, row_jump = Signal(16), Signal(16), Signal(16)
        tw_last, pw_is1 = Signal(), Signal()
        lcount = Signal(32)
        m.d.comb += self.desc_owner.eq(self.busy)
        m.d.sync += [nwk.eq((nd[16:32] * nd[8:12])[:16]), nwk_is1.eq(nwk == 1)]

        tile_last = Signal()
        m.d.comb += [
            tile_last.eq(~words_done & ct_last),
            self.i_w_addr.eq(w_tbase + wi),
            self.i_a_addr.eq(Mux(self.conv, off, a_gbase + ct)),
            self.i_last_word.eq(Mux(self.conv, tw_last, wi_last)),
            self.i_kx.eq(kx), self.i_ky.eq(ky),
            self.i_double.eq((wi == 0) & (q != 0)),
            self.i_tile_last.eq(tile_last),
        ]

        with m.FSM():
            with m.State("IDLE"):
                # Word 0 of descriptor 0 is addressed in the start cycle.
                m.d.comb += [self.desc_addr.eq(0), self.desc_owner.eq(self.start)]
                m.d.sync += [lcount.eq(1), groups.eq((self.batch + (Q - 1)) >> cfg.log2Q)]
                with m.If(self.start):
                    m.d.sync += [self.done.eq(0), self.error.eq(mm.ERR_NONE),
                                 self.total_cycles.eq(0), self.layers_done.eq(0),
                                 self.layer.eq(0)]
                    with m.If(self.batch == 0):
                        m.d.sync += [self.done.eq(1), self.error.eq(mm.ERR_BATCH)]
                    with m.Else():
                        m.d.sync += fetch.eq(1)
                        m.next = "FETCH"

            with m.State("FETCH"):
                # Address word `fetch` of descriptor 0, keep the word addressed before.
                m.d.comb += [self.busy.eq(1), self.desc_addr.eq(fetch)]
                m.d.sync += [lcount.eq(lcount + 1), fetch.eq(fetch + 1),
                             nd.word_select((fetch - 1)[:3], 32).eq(self.desc_data)]
                with m.If(fetch == mm.DESC_WORDS - 1):
                    m.next = "LOAD"

            with m.State("LOAD"):
                m.d.comb += [self.busy.eq(1), self.layer_start.eq(1)]
                d = Cat(nd, self.desc_data)
                op, nw = d[0:8], d[16:32]      # k (d[8:12]) only enters W = nwk
                # A dense-only build (config.conv = 0) refuses conv descriptors.
                is_conv = (op[0:2] == mm.OP_CONV3X3) if cfg.conv else Const(0)
                d_groups, pix_words, row_words = d[112:128], d[144:160], d[160:176]
                # The first word's tap offset and the step between window rows (mod 2^16).
                m.d.comb += [
                    self.ld_pool.eq(is_conv & op[5]),
                    self.ld_height.eq(d[128:136]), self.ld_width.eq(d[136:144]),
                    self.ld_pix_words.eq(pix_words), self.ld_row_words.eq(row_words),
                    self.ld_step_words.eq(d[192:208]), self.ld_wrap_words.eq(d[208:224]),
                ]
                m.d.sync += [
                    self.conv.eq(is_conv & ~op[2]), self.bcast.eq(is_conv),
                    self.pool.eq(is_conv & op[5]), self.out_units.eq(d[176:192]),
                    tw.eq(0), kx.eq(0), ky.eq(0), pw_m1.eq(pix_words - 1),
                    tw_last.eq(pix_words == 1), pw_is1.eq(pix_words == 1),
                    off.eq(-(row_words + pix_words)), off0.eq(-(row_words + pix_words)),
                    row_jump.eq(row_words - 3 * pix_words + 1),
                ]
                with m.If(is_conv):
                    m.d.sync += [g_m1.eq(d_groups - 1), g_last.eq(d_groups == 1)]
                with m.Else():
                    m.d.sync += [g_m1.eq(groups - 1), g_last.eq(groups == 1)]
                m.d.sync += [
                    lcount.eq(lcount + 1),
                    self.unsigned.eq(op[2]), self.raw.eq(op[3]), last_flag.eq(op[4]),
                    in_words.eq(nw), nw_m1.eq(nw - 1),
                    W.eq(nwk), W_m1.eq(nwk - 1),
                    self.m_tiles.eq(d[48:64]), mt_m1.eq(d[48:64] - 1),
                    w_base.eq(d[64:80]), w_tbase.eq(d[64:80]),
                    self.t_base.eq(d[80:96]), self.out_words.eq(d[96:112]),
                    # Thermometer code of last_bits (1..K): a compare of log2(K)+1 bits per
                    # mask bit; larger values (not from the compiler) give all ones.
                    self.lastmask.eq(Cat((Const(b, nb) < d[32:32 + nb]) | d[32 + nb:48].any()
                                         for b in range(K))),
                    g.eq(0), t.eq(0), ct.eq(0), wi.eq(0), q.eq(0), a_gbase.eq(0),
                    words_done.eq(0),
                    W_is1.eq(nwk_is1), mt_is1.eq(d[48:64] == 1), nw_is1.eq(nw == 1),
                    ct_last.eq(nwk_is1), ct_geq.eq(Q == 1), t_last.eq(d[48:64] == 1),
                    wi_last.eq(nw == 1),
                ]
                with m.If((op[0:2] != mm.OP_DENSE) & ~is_conv):
                    m.d.sync += [self.done.eq(1), self.error.eq(mm.ERR_OPCODE)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "ISSUE"

            with m.State("ISSUE"):
                m.d.comb += [self.busy.eq(1), self.i_valid.eq(~words_done)]
                m.d.sync += lcount.eq(lcount + 1)
                with m.If(~words_done):
                    with m.If(wi_last):
                        m.d.sync += [wi.eq(0), q.eq(q + 1), wi_last.eq(nw_is1)]
                    with m.Else():
                        m.d.sync += [wi.eq(wi + 1), wi_last.eq((wi + 1)[:16] == nw_m1)]
                    # tap walk (used by binary convs only)
                    with m.If(wi_last):
                        m.d.sync += [tw.eq(0), kx.eq(0), ky.eq(0), off.eq(off0),
                                     tw_last.eq(pw_is1)]
                    with m.Elif(tw_last):
                        m.d.sync += [tw.eq(0), tw_last.eq(pw_is1)]
                        with m.If(kx == 2):
                            m.d.sync += [kx.eq(0), ky.eq(ky + 1), off.eq(off + row_jump)]
                        with m.Else():
                            m.d.sync += [kx.eq(kx + 1), off.eq(off + 1)]
                    with m.Else():
                        m.d.sync += [tw.eq(tw + 1), off.eq(off + 1),
                                     tw_last.eq((tw + 1)[:16] == pw_m1)]
                # A tile lasts max(W, Q) cycles: W words, then idle until ct = Q − 1.
                tile_end = (words_done | tile_last) & ct_geq
                with m.If(tile_last & t_last & g_last):
                    # The trailing idle cycles of the last tile are not needed: only the
                    # drain remains.
                    m.d.sync += drain.eq(cfg.write_delay - 1)
                    m.next = "DRAIN"
                with m.Elif(tile_end):
                    m.d.sync += [ct.eq(0), wi.eq(0), q.eq(0), words_done.eq(0),
                                 ct_last.eq(W_is1), ct_geq.eq(Q == 1), wi_last.eq(nw_is1)]
                    with m.If(t_last):
                        m.d.comb += self.g_next.eq(1)
                        m.d.sync += [t.eq(0), t_last.eq(mt_is1), w_tbase.eq(w_base),
                                     g.eq(g + 1), g_last.eq((g + 1)[:16] == g_m1),
                                     a_gbase.eq(a_gbase + W)]
                    with m.Else():
                        m.d.sync += [t.eq(t + 1), t_last.eq((t + 1)[:16] == mt_m1),
                                     w_tbase.eq(w_tbase + in_words)]
                with m.Else():
                    m.d.sync += [ct.eq(ct + 1), words_done.eq(words_done | tile_last),
                                 ct_last.eq((ct + 1)[:16] == W_m1),
                                 ct_geq.eq((ct + 1)[:16] >= Q - 1)]

            with m.State("DRAIN"):
                # Prefetch the next descriptor in the last eight cycles: word 7 − drain is
                # addressed, the word addressed the cycle before is kept.
                m.d.comb += [self.busy.eq(1),
                             self.desc_addr.eq(Cat((7 - drain)[:3], self.layer + 1))]
                m.d.sync += [lcount.eq(lcount + 1), drain.eq(drain - 1)]
                with m.If(drain <= 6):
                    m.d.sync += nd.word_select((6 - drain)[:3], 32).eq(self.desc_data)
                with m.If(drain == 0):
                    # This is the cycle of the layer's last write: the layer ends here.
                    m.d.comb += [self.lc_we.eq(1), self.lc_addr.eq(self.layer),
                                 self.lc_data.eq(lcount)]
                    m.d.sync += [self.layers_done.eq(self.layers_done + 1),
                                 self.layer.eq(self.layer + 1)]
                    with m.If(last_flag):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Elif(self.layer == cfg.desc_depth - 1):
                        m.d.sync += [self.done.eq(1), self.error.eq(mm.ERR_NO_END)]
                        m.next = "IDLE"
                    with m.Else():
                        # Descriptor layer + 1 is on the address now: LOAD it next cycle.
                        m.d.sync += lcount.eq(1)
                        m.next = "LOAD"

        with m.If(self.busy):
            m.d.sync += self.total_cycles.eq(self.total_cycles + 1)
        return m
