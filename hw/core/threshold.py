"""Threshold compare: one unit per array row turns accumulator values into output bits; the
stage around the units looks up each row's threshold and writes a raw layer's integers."""
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core import timing
from xnorflow.hw.core.interfaces import (ArraySumsSignature, LayerSignature, ThresholdBitsSignature,
                                read_port, write_port)
from xnorflow.hw.core.pipeline import delay

__all__ = ["ThresholdUnit", "ThresholdStage"]


class ThresholdUnit(wiring.Component):
    """Compare an accumulator against a per-channel threshold (docs/contracts.md, contract 4).

    The output bit is ``acc ≥ T`` for direction d = +1 (``down = 0``) and ``acc ≤ T`` for
    d = −1 (``down = 1``); this is the folded ``sign(BN(scale·acc + bias))``. A threshold outside
    the accumulator's reachable range gives a saturated channel (always 0 or always 1): legal,
    and nothing special in hardware. The compiler clamps such thresholds into
    ``[-top-1, top+1]`` so they fit ``acc_width`` bits without changing any output.

    Parameters
    ----------
    acc_width : int
        Width of the signed accumulator and threshold.

    Ports
    -----
    valid : In(1)
        ``acc`` holds a finished sum this cycle.
    acc : In(signed(acc_width))
        The sum.
    threshold : In(signed(acc_width))
        T of the sum's output channel (same cycle as ``acc``).
    down : In(1)
        Direction: 0 for d = +1 (``acc ≥ T``), 1 for d = −1 (``acc ≤ T``).
    raw : In(1)
        Raw mode (last layer): ``bit`` is forced to 0 and only ``value`` matters.
    out_valid : Out(1)
        ``valid`` delayed by one cycle.
    out_bit : Out(1)
        The threshold output bit.
    out_value : Out(signed(acc_width))
        ``acc`` passed through (the raw integer of the last layer).
    out_down : Out(1)
        ``down`` passed through (a fused max-pool combines a channel's bits by it).

    Latency and throughput
    ----------------------
    One value per cycle; outputs are registered, latency ``timing.THRESHOLD_COMPARE`` (1)
    cycle.
    """

    def __init__(self, acc_width):
        self.acc_width = acc_width
        super().__init__({
            "valid": In(1), "acc": In(signed(acc_width)), "threshold": In(signed(acc_width)),
            "down": In(1), "raw": In(1),
            "out_valid": Out(1), "out_bit": Out(1), "out_value": Out(signed(acc_width)),
            "out_down": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # Direction picks between the two comparisons; both are plain signed compares.
        bit = Mux(self.down, self.acc <= self.threshold, self.acc >= self.threshold)
        m.d.sync += [
            self.out_valid.eq(self.valid),
            self.out_bit.eq(~self.raw & bit),
            self.out_value.eq(self.acc),
            self.out_down.eq(self.down),
        ]
        return m


class ThresholdStage(wiring.Component):
    """Per row: the threshold lookup and compare, and the raw writes of the last layer.

    Every row delivers column ``j`` of a tile in the same cycle, so one pair of counters
    (column, tile) serves all rows. Each row addresses its threshold entry ``t_base + tile``
    in the drain cycle and registers the read word (block-RAM clock-to-out must not meet the
    comparator's carry chain in one cycle: it set Fmax); the drained sum waits as long
    (``timing.THRESHOLD_READ``) to meet it in the row's :class:`ThresholdUnit`. A raw layer
    reads no thresholds: each row writes its sums to its own row bank instead, above the
    thresholds, at a running address in arrival order (g, t, j): ``thr_depth + (g·m_tiles +
    t)·Q + j``.

    Parameters
    ----------
    config : ArrayConfig

    Ports
    -----
    layer : In(LayerSignature(K))
        ``start`` resets the counters; ``m_tiles``, ``t_base`` and ``raw`` of the layer.
    sums : In(ArraySumsSignature(P, acc_width))
        The array's drained sums.
    thr_read : read_port(thr_depth + out_depth, 32).array(P)
        Read of each row bank (the thresholds); the core shares the address with the host.
    thr_write : write_port(thr_depth + out_depth, 32, granularity=8).array(P)
        Raw writes to each row bank (all four bytes at once); shared with the host likewise.
    bits : Out(ThresholdBitsSignature(P))
        The rows' output bits and directions, one column of a tile per cycle.

    Latency and throughput
    ----------------------
    One column per cycle; ``bits`` and the raw writes come ``THRESHOLD_READ +
    THRESHOLD_COMPARE`` (3) cycles after the sums (hw/core/timing.py).
    """

    def __init__(self, config):
        self.config = config
        cfg = config
        banks = cfg.thr_depth + cfg.out_depth
        super().__init__({
            "layer": In(LayerSignature(cfg.K)),
            "sums": In(ArraySumsSignature(cfg.P, cfg.acc_width)),
            "thr_read": read_port(banks, 32).array(cfg.P),
            "thr_write": write_port(banks, 32, granularity=8).array(cfg.P),
            "bits": Out(ThresholdBitsSignature(cfg.P)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, layer, sums = self.config, self.layer, self.sums
        AW = cfg.acc_width
        tj = Signal(range(cfg.Q))   # column of the value at the drain output
        tt = Signal(16)             # its tile within the column group
        with m.If(layer.start):
            m.d.sync += [tj.eq(0), tt.eq(0)]
        with m.Elif(sums.valid[0]):
            m.d.sync += tj.eq(tj + 1)
            with m.If(tj == cfg.Q - 1):
                m.d.sync += tt.eq(Mux(tt == layer.m_tiles - 1, 0, tt + 1))
        val_r = delay(m, sums.valid[0], timing.THRESHOLD_READ, "val")
        raddr = Signal(16)          # raw outputs: each row writes its own bank in arrival
        out_valid = Signal()        # order (g, t, j)
        with m.If(layer.start):
            m.d.sync += raddr.eq(0)
        with m.Elif(out_valid & layer.raw):
            m.d.sync += raddr.eq(raddr + 1)
        for i in range(cfg.P):
            thr_read, thr_write = self.thr_read[i], self.thr_write[i]
            m.d.comb += thr_read.addr.eq(layer.t_base + tt)
            thr_r = Signal(32, name=f"thr_r{i}")
            m.d.sync += thr_r.eq(thr_read.data)
            acc_r = delay(m, sums.acc[i], timing.THRESHOLD_READ, f"acc{i}")
            m.submodules[f"thr_unit_{i}"] = tu = ThresholdUnit(AW)
            m.d.comb += [tu.valid.eq(val_r), tu.acc.eq(acc_r),
                         tu.threshold.eq(thr_r[:AW].as_signed()),
                         tu.down.eq(thr_r[mm.THR_DOWN_BIT]), tu.raw.eq(layer.raw)]
            all_bytes = (1 << len(thr_write.en)) - 1
            m.d.comb += [thr_write.addr.eq(cfg.thr_depth + raddr),
                         thr_write.data.eq(tu.out_value),
                         thr_write.en.eq(Mux(tu.out_valid & layer.raw, all_bytes, 0)),
                         self.bits.bits[i].eq(tu.out_bit), self.bits.down[i].eq(tu.out_down)]
            if i == 0:
                m.d.comb += out_valid.eq(tu.out_valid)
        m.d.comb += self.bits.valid.eq(out_valid)
        return m
