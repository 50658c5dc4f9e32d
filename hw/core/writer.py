"""Activation writer: a threshold layer's output bits into the next layer's ping-pong half."""
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from xnorflow.hw.core.interfaces import LayerSignature, ThresholdBitsSignature, write_port

__all__ = ["ActivationWriter"]

#: A fused 2×2 pool window is four consecutive columns: the column index's low bits are the
#: pixel's place in its window.
_WINDOW_BITS = 2


class ActivationWriter(wiring.Component):
    """Writes the P bits of each (column ``j``, tile ``t``) as one P-bit lane of a word.

    The lane is ``t mod (K/P)`` (write granularity P). Dense: column ``j``'s own bank, word
    ``g·out_words + t div lanes``. Conv: every bank gets every pixel (the next conv's columns
    read any pixel), word ``u·out_words + t div lanes`` for output unit ``u = g·Q + j``;
    pooled, ``u = g·Q/4 + j div 4`` and the four columns of a window (consecutive cycles, same
    tile) are ORed/ANDed by each channel's direction before the one write. Units past
    ``out_units`` (the last group's spare columns) are not written. Layer ``l`` writes half
    ``l mod 2`` of each activation bank (the next layer reads it); a raw layer writes nothing
    here (:class:`ThresholdStage` writes its integers).

    Units per group and their words are powers of two: shifts, no multiplier.

    Parameters
    ----------
    config : ArrayConfig

    Ports
    -----
    layer : In(LayerSignature(K))
        ``start`` resets the write position; ``index`` (the half), ``raw``, ``m_tiles``,
        ``out_words``, ``bcast``, ``pool`` and ``out_units`` of the layer.
    bits : In(ThresholdBitsSignature(P))
        One column's output bits of a tile per cycle.
    act_write : write_port(2·act_depth, K, granularity=P).array(Q)
        Write port of each column's activation bank.

    Latency and throughput
    ----------------------
    One column per cycle; the write is combinational from ``bits`` (the bank registers it),
    so it lands in the cycle the bits arrive.
    """

    def __init__(self, config):
        self.config = config
        cfg = config
        super().__init__({
            "layer": In(LayerSignature(cfg.K)),
            "bits": In(ThresholdBitsSignature(cfg.P)),
            "act_write": write_port(2 * cfg.act_depth, cfg.K, granularity=cfg.P).array(cfg.Q),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, layer = self.config, self.layer
        Q = cfg.Q
        wen = Signal()
        m.d.comb += wen.eq(self.bits.valid & ~layer.raw)
        pos = self._position(m, wen)
        # Pool: the window's bits so far (per row), combined with the emitted column's.
        pooled = Signal(cfg.P)
        comb_bits = Signal(cfg.P)
        first_of_unit = ~layer.pool | (pos.wj[:_WINDOW_BITS] == 0) if Q >= 4 else 1
        for i in range(cfg.P):
            bit, down = self.bits.bits[i], self.bits.down[i]
            m.d.comb += comb_bits[i].eq(Mux(first_of_unit, bit,
                                            Mux(down, pooled[i] & bit, pooled[i] | bit)))
        with m.If(wen):
            m.d.sync += pooled.eq(comb_bits)
        conv_we = Signal()
        m.d.comb += conv_we.eq(wen & layer.bcast & pos.unit_done & (pos.unit < layer.out_units))
        # Ping-pong: layer l writes half l mod 2.
        wr_off = Signal(16)
        m.d.comb += wr_off.eq(Mux(layer.index[0], cfg.act_depth, 0))
        for j in range(Q):
            act_write = self.act_write[j]
            m.d.comb += [
                act_write.addr.eq(Mux(layer.bcast, pos.ubase + pos.tword, pos.word) + wr_off),
                act_write.data.eq(comb_bits.replicate(cfg.lanes)),
                act_write.en.eq(Mux(Mux(layer.bcast, conv_we, wen & (pos.wj == j)),
                                    1 << pos.lane, 0)),
            ]
        return m

    def _position(self, m, wen):
        """The write position of the column being emitted, advanced on every ``wen``."""
        cfg, layer = self.config, self.layer
        Q, lanes = cfg.Q, cfg.lanes
        pos = _Position(cfg)
        wj, wt, lane, word, gbase = pos.wj, pos.wt, pos.lane, pos.word, pos.gbase
        g_unit, g_ubase, unit, ubase, tword = (pos.g_unit, pos.g_ubase, pos.unit, pos.ubase,
                                               pos.tword)
        per_group = Mux(layer.pool, Q // 4, Q) if Q >= 4 else Const(Q, 16)
        group_words = Signal(16)
        m.d.comb += group_words.eq(Mux(layer.pool, layer.out_words << max(cfg.log2Q - 2, 0),
                                       layer.out_words << cfg.log2Q) if Q >= 4
                                   else layer.out_words << cfg.log2Q)
        last_in_window = (1 << _WINDOW_BITS) - 1
        m.d.comb += pos.unit_done.eq(~layer.pool | (wj[:_WINDOW_BITS] == last_in_window)
                                     if Q >= 4 else 1)
        with m.If(layer.start):
            m.d.sync += [wj.eq(0), wt.eq(0), lane.eq(0), word.eq(0), gbase.eq(0),
                         g_unit.eq(0), g_ubase.eq(0), unit.eq(0), ubase.eq(0), tword.eq(0)]
        with m.Elif(wen):
            m.d.sync += wj.eq(wj + 1)
            with m.If(wj == Q - 1):
                with m.If(wt == layer.m_tiles - 1):
                    m.d.sync += [wt.eq(0), lane.eq(0), gbase.eq(gbase + layer.out_words),
                                 word.eq(gbase + layer.out_words)]
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
            with m.Elif(pos.unit_done):
                m.d.sync += [unit.eq(unit + 1), ubase.eq(ubase + layer.out_words)]
        return pos


class _Position:
    """The writer's position registers: column ``wj`` and tile ``wt`` of the emitted value,
    its lane and word (dense), its group's base word, its unit and the unit's word (conv)."""

    def __init__(self, cfg):
        self.wj = Signal(range(cfg.Q), name="wj")
        self.wt, self.word, self.gbase = (Signal(16, name=n) for n in ("wt", "word", "gbase"))
        self.lane = Signal(range(cfg.lanes), name="lane")
        # the group's first unit and its word address; the emitted column's unit and address
        self.g_unit, self.g_ubase = Signal(16, name="g_unit"), Signal(16, name="g_ubase")
        self.unit, self.ubase = Signal(16, name="unit"), Signal(16, name="ubase")
        self.tword = Signal(16, name="tword")      # t div lanes
        self.unit_done = Signal(name="unit_done")  # the column completes its unit
