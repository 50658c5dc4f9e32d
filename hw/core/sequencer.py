"""Layer sequencer: walks the descriptor table and issues one word per cycle to the array."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core import timing
from xnorflow.hw.core.interfaces import (DESCRIPTOR_LAYOUT, DescriptorReadSignature, IssueSignature,
                                LayerSignature, RunControlSignature)

__all__ = ["Sequencer"]

#: Bits of a word's index within its descriptor.
_WORD_BITS = ceil_log2(mm.DESC_WORDS)
#: Bits of input_bits that matter (k = 1..8).
_K_BITS = 4


class _Registers:
    """The sequencer's state, shared by the handlers of its FSM states.

    Loop bounds are kept as "bound − 1" registers, and every loop-end test the issue loop
    branches on is a flag register computed one cycle ahead from the counter's next value
    (16-bit compares feeding the loop's many clock enables were the critical path of the
    iCE40 build, 33 ns).
    """

    def __init__(self, cfg):
        self.groups = Signal(16, name="groups")          # G = ceil(B / Q)
        self.g_m1, self.mt_m1 = Signal(16, name="g_m1"), Signal(16, name="mt_m1")
        self.in_words, self.nw_m1 = Signal(16, name="in_words"), Signal(16, name="nw_m1")
        # words per tile = in_words · k
        self.W, self.W_m1 = Signal(16, name="W"), Signal(16, name="W_m1")
        self.w_base = Signal(16, name="w_base")
        self.last_flag = Signal(name="last_flag")
        # group, tile, cycle within tile; input word, plane (most significant first)
        self.g, self.t, self.ct = (Signal(16, name=n) for n in ("g", "t", "ct"))
        self.wi, self.q = Signal(16, name="wi"), Signal(3, name="q")
        # g·W, w_base + t·in_words
        self.a_gbase, self.w_tbase = Signal(16, name="a_gbase"), Signal(16, name="w_tbase")
        self.words_done = Signal(name="words_done")     # this tile's W words are issued
        # Registered loop-end flags: ct == W − 1, ct ≥ Q − 1, t == m_tiles − 1,
        # g == G − 1, wi == in_words − 1; and the bounds equal to 1 they restart with.
        self.ct_last, self.ct_geq, self.t_last, self.g_last, self.wi_last = (
            Signal(name=n) for n in ("ct_last", "ct_geq", "t_last", "g_last", "wi_last"))
        self.W_is1, self.mt_is1, self.nw_is1 = (Signal(name=n)
                                                for n in ("W_is1", "mt_is1", "nw_is1"))
        self.drain = Signal(range(cfg.write_delay + 1), name="drain")
        # Words 0 .. DESC_WORDS-2 of the next descriptor; the last word is read straight from
        # the memory in LOAD.
        self.nd = Signal(32 * (mm.DESC_WORDS - 1), name="nd")
        self.fetch = Signal(_WORD_BITS, name="fetch")
        # W = in_words · k of the next descriptor, registered from its word 0 (fetched at
        # least five cycles before LOAD): a multiplier and the compares after it in the LOAD
        # cycle were the critical path of the ECP5 8x8x32 build.
        self.nwk, self.nwk_is1 = Signal(16, name="nwk"), Signal(name="nwk_is1")
        # Tap walk of a binary conv (docs/conv.md, "Addressing"): word tw of tap (ky, kx) of
        # the 3×3 window sits at offset ((ky − 1)·W + kx − 1)·pix_words + tw from the column's
        # pixel; the three taps of a window row are consecutive words, so the offset steps by
        # 1 except between window rows (row_jump).
        self.tw, self.pw_m1 = Signal(16, name="tw"), Signal(16, name="pw_m1")
        self.kx, self.ky = Signal(2, name="kx"), Signal(2, name="ky")
        self.off, self.off0, self.row_jump = (Signal(16, name=n)
                                              for n in ("off", "off0", "row_jump"))
        self.tw_last, self.pw_is1 = Signal(name="tw_last"), Signal(name="pw_is1")
        self.lcount = Signal(32, name="lcount")
        self.tile_last = Signal(name="tile_last")


class Sequencer(wiring.Component):
    """Executes the layer descriptors of a run, layer after layer.

    The descriptor table is a 32-bit memory, ``DESC_WORDS`` (8) words per descriptor (a
    256-bit wide table would take 16 block RAMs on an iCE40). The first descriptor is read in
    the start cycle and ``timing.DESC_FETCH`` (7) FETCH cycles; every later one during the
    last eight cycles of the previous layer's DRAIN. Each layer then spends one cycle latching
    its descriptor (LOAD, decoded through ``interfaces.DESCRIPTOR_LAYOUT``) and issues its
    words (ISSUE) in the order

        for g in column groups (ceil(B / Q)):
          for t in output tiles (m_tiles):
            for q in bit-planes, most significant first (input_bits):   # 1 if binary
              for w in input words (in_words):
                issue (weight word w_base + t·in_words + w, activation word g·W + q·in_words + w)

    with ``W = in_words · input_bits`` words per tile, tiles back to back, and ``max(0, Q − W)``
    idle cycles after each tile so a row's drain (one value per cycle) keeps up. After the last
    word it waits (DRAIN) until the array, threshold units and writers have written the last
    result, ``timing.write_delay(config)`` cycles, then records the layer's cycle count and
    moves on. Layer-major order keeps per-layer fill/drain to once per layer, whatever the
    batch.

    ``OP_CONV3X3`` runs the same loop nest with output pixels for samples (docs/conv.md):
    ``G`` comes from the descriptor (``groups``, one image), and a binary conv's activation
    address is not ``g·W + ct`` but each column's pixel base (:class:`PixelWalker`, in the
    array feed) plus the tap offset walked here: ``issue.a_addr`` is then that offset,
    ``issue.kx``/``issue.ky`` the tap and ``issue.last_word`` marks each tap's last word. An
    unsigned conv (the first layer, whose im2col the host wrote) keeps the dense addressing.
    ``OP_MAXPOOL`` is never executed (pools are fused into the conv before them,
    ``FLAG_POOL``) and, like op 0, stops the run with ``ERR_OPCODE``.

    Parameters
    ----------
    config : ArrayConfig

    Ports
    -----
    control : In(RunControlSignature())
        Start (honoured in IDLE only; the bus target refuses it while busy) and batch size in;
        busy, done, error code, cycle and layer counters out.
    desc : Out(DescriptorReadSignature(config))
        Read of the descriptor table: word address ``DESC_WORDS·l + word`` and ``owner``
        out, the word (one cycle read latency) in.
    layer_cycles : In(WritePort.Signature(...))
        Write port of the per-layer cycle counter memory (one write per finished layer).
    layer : Out(LayerSignature(K))
        The layer being executed: its index, the LOAD pulse (``start``) that resets the back
        end's counters, the descriptor fields the back end needs, and the conv geometry
        (``walk``) in the LOAD cycle for the pixel walkers.
    issue : Out(IssueSignature())
        The issued word: weight and activation addresses and their sideband.

    Latency and throughput
    ----------------------
    One word per cycle during ISSUE. Cycles of a layer (exactly what ``layer_cycles`` records)
    are :func:`xnorflow.hw.core.timing.layer_cycles`: ``1 + (G·m_tiles − 1)·max(W, Q) + W +
    write_delay`` with ``G = ceil(B / Q)`` (conv: the descriptor's ``groups``), plus
    ``DESC_FETCH`` (7) for the first layer of a run.
    """

    def __init__(self, config):
        self.config = config
        super().__init__({
            "control": In(RunControlSignature()),
            "desc": Out(DescriptorReadSignature(config)),
            "layer_cycles": In(WritePort.Signature(addr_width=ceil_log2(config.desc_depth),
                                                   shape=32)),
            "layer": Out(LayerSignature(config.K)),
            "issue": Out(IssueSignature()),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        r = _Registers(cfg)
        assert cfg.write_delay >= mm.DESC_WORDS and timing.DESC_FETCH == mm.DESC_WORDS - 1
        m.d.comb += self.desc.owner.eq(self.control.busy)
        # The next descriptor as far as fetched (its last word is on the read data in LOAD).
        following = data.View(DESCRIPTOR_LAYOUT, Cat(r.nd, self.desc.data))
        m.d.sync += [r.nwk.eq((following.in_words * following.input_bits[:_K_BITS])[:16]),
                     r.nwk_is1.eq(r.nwk == 1)]
        issue = self.issue
        m.d.comb += [
            r.tile_last.eq(~r.words_done & r.ct_last),
            issue.w_addr.eq(r.w_tbase + r.wi),
            issue.a_addr.eq(Mux(self.layer.conv, r.off, r.a_gbase + r.ct)),
            issue.last_word.eq(Mux(self.layer.conv, r.tw_last, r.wi_last)),
            issue.kx.eq(r.kx), issue.ky.eq(r.ky),
            issue.double.eq((r.wi == 0) & (r.q != 0)),
            issue.tile_last.eq(r.tile_last),
        ]
        with m.FSM():
            with m.State("IDLE"):
                self._idle(m, r)
            with m.State("FETCH"):
                self._fetch(m, r)
            with m.State("LOAD"):
                self._load(m, r, following)
            with m.State("ISSUE"):
                self._issue(m, r)
            with m.State("DRAIN"):
                self._drain(m, r)
        with m.If(self.control.busy):
            m.d.sync += self.control.total_cycles.eq(self.control.total_cycles + 1)
        return m

    def _idle(self, m, r):
        """IDLE: wait for start; word 0 of descriptor 0 is addressed in the start cycle."""
        cfg, ctl = self.config, self.control
        m.d.comb += [self.desc.addr.eq(0), self.desc.owner.eq(ctl.start)]
        m.d.sync += [r.lcount.eq(1), r.groups.eq((ctl.batch + (cfg.Q - 1)) >> cfg.log2Q)]
        with m.If(ctl.start):
            m.d.sync += [ctl.done.eq(0), ctl.error.eq(mm.ERR_NONE),
                         ctl.total_cycles.eq(0), ctl.layers_done.eq(0),
                         self.layer.index.eq(0)]
            with m.If(ctl.batch == 0):
                m.d.sync += [ctl.done.eq(1), ctl.error.eq(mm.ERR_BATCH)]
            with m.Else():
                m.d.sync += r.fetch.eq(1)
                m.next = "FETCH"

    def _fetch(self, m, r):
        """FETCH: address word ``fetch`` of descriptor 0, keep the word addressed before."""
        m.d.comb += [self.control.busy.eq(1), self.desc.addr.eq(r.fetch)]
        m.d.sync += [r.lcount.eq(r.lcount + 1), r.fetch.eq(r.fetch + 1),
                     r.nd.word_select((r.fetch - 1)[:_WORD_BITS], 32).eq(self.desc.data)]
        with m.If(r.fetch == mm.DESC_WORDS - 1):
            m.next = "LOAD"

    def _load(self, m, r, desc):
        """LOAD: latch descriptor ``desc`` (a DESCRIPTOR_LAYOUT view) for the layer."""
        cfg, ctl, layer = self.config, self.control, self.layer
        nb = cfg.K.bit_length()          # bits of last_bits that the mask decode looks at
        m.d.comb += [ctl.busy.eq(1), layer.start.eq(1)]
        op, nw = desc.op, desc.in_words    # k only enters W = nwk
        # A dense-only build (config.conv = 0) refuses conv descriptors.
        is_conv = (op.kind == mm.OP_CONV3X3) if cfg.conv else Const(0)
        walk = layer.walk
        m.d.comb += [
            walk.pool.eq(is_conv & op.pool),
            walk.height.eq(desc.height), walk.width.eq(desc.width),
            walk.pix_words.eq(desc.pix_words), walk.row_words.eq(desc.row_words),
            walk.step_words.eq(desc.step_words), walk.wrap_words.eq(desc.wrap_words),
        ]
        # The first word's tap offset and the step between window rows (mod 2^16).
        start_off = -(desc.row_words + desc.pix_words)
        m.d.sync += [
            layer.conv.eq(is_conv & ~op.unsigned), layer.bcast.eq(is_conv),
            layer.pool.eq(is_conv & op.pool), layer.out_units.eq(desc.out_units),
            r.tw.eq(0), r.kx.eq(0), r.ky.eq(0), r.pw_m1.eq(desc.pix_words - 1),
            r.tw_last.eq(desc.pix_words == 1), r.pw_is1.eq(desc.pix_words == 1),
            r.off.eq(start_off), r.off0.eq(start_off),
            r.row_jump.eq(desc.row_words - 3 * desc.pix_words + 1),
        ]
        with m.If(is_conv):
            m.d.sync += [r.g_m1.eq(desc.groups - 1), r.g_last.eq(desc.groups == 1)]
        with m.Else():
            m.d.sync += [r.g_m1.eq(r.groups - 1), r.g_last.eq(r.groups == 1)]
        m.d.sync += [
            r.lcount.eq(r.lcount + 1),
            layer.unsigned.eq(op.unsigned), layer.raw.eq(op.raw), r.last_flag.eq(op.last),
            r.in_words.eq(nw), r.nw_m1.eq(nw - 1),
            r.W.eq(r.nwk), r.W_m1.eq(r.nwk - 1),
            layer.m_tiles.eq(desc.m_tiles), r.mt_m1.eq(desc.m_tiles - 1),
            r.w_base.eq(desc.w_base), r.w_tbase.eq(desc.w_base),
            layer.t_base.eq(desc.t_base), layer.out_words.eq(desc.out_words),
            # Thermometer code of last_bits (1..K): a compare of log2(K)+1 bits per
            # mask bit; larger values (not from the compiler) give all ones.
            layer.lastmask.eq(Cat((Const(b, nb) < desc.last_bits[:nb]) |
                                  desc.last_bits[nb:].any() for b in range(cfg.K))),
            r.g.eq(0), r.t.eq(0), r.ct.eq(0), r.wi.eq(0), r.q.eq(0), r.a_gbase.eq(0),
            r.words_done.eq(0),
            r.W_is1.eq(r.nwk_is1), r.mt_is1.eq(desc.m_tiles == 1), r.nw_is1.eq(nw == 1),
            r.ct_last.eq(r.nwk_is1), r.ct_geq.eq(cfg.Q == 1), r.t_last.eq(desc.m_tiles == 1),
            r.wi_last.eq(nw == 1),
        ]
        with m.If((op.kind != mm.OP_DENSE) & ~is_conv):
            m.d.sync += [ctl.done.eq(1), ctl.error.eq(mm.ERR_OPCODE)]
            m.next = "IDLE"
        with m.Else():
            m.next = "ISSUE"

    def _issue(self, m, r):
        """ISSUE: one word per cycle through the loop nest, then DRAIN."""
        cfg = self.config
        m.d.comb += [self.control.busy.eq(1), self.issue.valid.eq(~r.words_done)]
        m.d.sync += r.lcount.eq(r.lcount + 1)
        with m.If(~r.words_done):
            with m.If(r.wi_last):
                m.d.sync += [r.wi.eq(0), r.q.eq(r.q + 1), r.wi_last.eq(r.nw_is1)]
            with m.Else():
                m.d.sync += [r.wi.eq(r.wi + 1), r.wi_last.eq((r.wi + 1)[:16] == r.nw_m1)]
            self._walk_taps(m, r)
        # A tile lasts max(W, Q) cycles: W words, then idle until ct = Q − 1.
        tile_end = (r.words_done | r.tile_last) & r.ct_geq
        with m.If(r.tile_last & r.t_last & r.g_last):
            # The trailing idle cycles of the last tile are not needed: only the drain remains.
            m.d.sync += r.drain.eq(cfg.write_delay - 1)
            m.next = "DRAIN"
        with m.Elif(tile_end):
            m.d.sync += [r.ct.eq(0), r.wi.eq(0), r.q.eq(0), r.words_done.eq(0),
                         r.ct_last.eq(r.W_is1), r.ct_geq.eq(cfg.Q == 1), r.wi_last.eq(r.nw_is1)]
            with m.If(r.t_last):
                m.d.comb += self.issue.g_next.eq(1)
                m.d.sync += [r.t.eq(0), r.t_last.eq(r.mt_is1), r.w_tbase.eq(r.w_base),
                             r.g.eq(r.g + 1), r.g_last.eq((r.g + 1)[:16] == r.g_m1),
                             r.a_gbase.eq(r.a_gbase + r.W)]
            with m.Else():
                m.d.sync += [r.t.eq(r.t + 1), r.t_last.eq((r.t + 1)[:16] == r.mt_m1),
                             r.w_tbase.eq(r.w_tbase + r.in_words)]
        with m.Else():
            m.d.sync += [r.ct.eq(r.ct + 1), r.words_done.eq(r.words_done | r.tile_last),
                         r.ct_last.eq((r.ct + 1)[:16] == r.W_m1),
                         r.ct_geq.eq((r.ct + 1)[:16] >= cfg.Q - 1)]

    def _walk_taps(self, m, r):
        """The tap walk of an issued word (used by binary convs only)."""
        with m.If(r.wi_last):
            m.d.sync += [r.tw.eq(0), r.kx.eq(0), r.ky.eq(0), r.off.eq(r.off0),
                         r.tw_last.eq(r.pw_is1)]
        with m.Elif(r.tw_last):
            m.d.sync += [r.tw.eq(0), r.tw_last.eq(r.pw_is1)]
            with m.If(r.kx == 2):
                m.d.sync += [r.kx.eq(0), r.ky.eq(r.ky + 1), r.off.eq(r.off + r.row_jump)]
            with m.Else():
                m.d.sync += [r.kx.eq(r.kx + 1), r.off.eq(r.off + 1)]
        with m.Else():
            m.d.sync += [r.tw.eq(r.tw + 1), r.off.eq(r.off + 1),
                         r.tw_last.eq((r.tw + 1)[:16] == r.pw_m1)]

    def _drain(self, m, r):
        """DRAIN: wait for the last write, prefetching the next descriptor; end the layer."""
        cfg, ctl, layer = self.config, self.control, self.layer
        last_word = mm.DESC_WORDS - 1
        # Prefetch the next descriptor in the last DESC_WORDS cycles: word
        # DESC_WORDS − 1 − drain is addressed, the word addressed the cycle before is kept.
        m.d.comb += [ctl.busy.eq(1),
                     self.desc.addr.eq(Cat((last_word - r.drain)[:_WORD_BITS], layer.index + 1))]
        m.d.sync += [r.lcount.eq(r.lcount + 1), r.drain.eq(r.drain - 1)]
        with m.If(r.drain <= last_word - 1):
            m.d.sync += r.nd.word_select((last_word - 1 - r.drain)[:_WORD_BITS], 32).eq(
                self.desc.data)
        with m.If(r.drain == 0):
            # This is the cycle of the layer's last write: the layer ends here.
            m.d.comb += [self.layer_cycles.en.eq(1), self.layer_cycles.addr.eq(layer.index),
                         self.layer_cycles.data.eq(r.lcount)]
            m.d.sync += [ctl.layers_done.eq(ctl.layers_done + 1),
                         layer.index.eq(layer.index + 1)]
            with m.If(r.last_flag):
                m.d.sync += ctl.done.eq(1)
                m.next = "IDLE"
            with m.Elif(layer.index == cfg.desc_depth - 1):
                m.d.sync += [ctl.done.eq(1), ctl.error.eq(mm.ERR_NO_END)]
                m.next = "IDLE"
            with m.Else():
                # Descriptor layer + 1 is on the address now: LOAD it next cycle.
                m.d.sync += r.lcount.eq(1)
                m.next = "LOAD"
