"""Array feed: the sequencer's issue, skewed into bank reads and registered into the array."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from xnorflow.hw.core import timing
from xnorflow.hw.core.interfaces import ArrayEdgeSignature, IssueSignature, LayerSignature, read_port
from xnorflow.hw.core.pipeline import delay
from xnorflow.hw.core.pixel_walker import PixelWalker

__all__ = ["ArrayFeed"]


class ArrayFeed(wiring.Component):
    """Turns each issued word into bank reads and the array's edge registers.

    All weight banks are read in the issue cycle (row group g's ``g`` cycles later, one
    address register per group: the row skew). Column ``j``'s input or activation bank sees
    the activation address ``j`` cycles late (registers of address width, not K-bit words: the
    column skew), and the column's sideband is delayed ``j + MEMORY_READ`` cycles to meet the
    read word. Every read word passes an edge register on its way into the array (block-RAM
    clock-to-out is ≈6 ns on ECP5; without it the RAM output would feed the PE's XNOR and
    first popcount stage in one cycle), the column's word with its valid-bit mask (the
    ``lastmask`` on a vector's last word, all ones otherwise) and ``zero_agrees`` (the mask in
    a binary layer, 0 in an unsigned one; registered here so that the mode stays out of the
    PEs' LUTs).

    Layer 0 reads the input banks; layer ``l ≥ 1`` reads activation half ``(l − 1) mod 2``
    (the ping-pong of docs/core.md). A binary conv (``conv`` builds) adds per column a
    :class:`PixelWalker`: the column reads its pixel's base plus the tap offset the sequencer
    walks, and the padding bit (0, sw/layers/conv.py: PAD_BIT) where the tap leaves the image.

    Weights need no valid-bit mask: a padding bit never agrees whatever the bank holds there,
    because the column clears ``x`` and ``zero_agrees`` in it (:class:`SystolicArray`).

    Parameters
    ----------
    config : ArrayConfig

    Ports
    -----
    issue : In(IssueSignature())
        The sequencer's issued word.
    layer : In(LayerSignature(K))
        The layer's source (``index``), mode (``unsigned``, ``conv``), ``lastmask``, and the
        conv geometry for the pixel walkers (``start``, ``walk``).
    w_read : read_port(w_depth, K).array(P)
        Read address of each weight bank (row ``i``), its word in. The core shares the
        address with the host while idle.
    in_read : read_port(in_depth, K).array(Q)
        Read address of each input bank (column ``j``), its word in; shared likewise.
    act_read : read_port(2·act_depth, K).array(Q)
        Read of each activation bank (both ping-pong halves).
    edge : Out(ArrayEdgeSignature(P, Q, K))
        The array's inputs, registered.

    Latency and throughput
    ----------------------
    One word per cycle. A word issued in cycle ``c`` reaches the array at ``c + issue_reg +
    MEMORY_READ + EDGE_REGISTER + j`` in column ``j`` (its weight at the same time as column
    0's, in row group g ``g`` cycles later); hw/core/timing.py counts these stages.
    """

    def __init__(self, config):
        self.config = config
        cfg = config
        super().__init__({
            "issue": In(IssueSignature()),
            "layer": In(LayerSignature(cfg.K)),
            "w_read": read_port(cfg.w_depth, cfg.K).array(cfg.P),
            "in_read": read_port(cfg.in_depth, cfg.K).array(cfg.Q),
            "act_read": read_port(2 * cfg.act_depth, cfg.K).array(cfg.Q),
            "edge": Out(ArrayEdgeSignature(cfg.P, cfg.Q, cfg.K)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        # The issue as the memories see it: the sequencer's outputs, registered once more when
        # issue_reg is set (the addresses then leave a register instead of the sequencer's
        # adders, with a whole cycle to reach banks spread over the device).
        issued = {name: delay(m, getattr(self.issue, name), cfg.issue_reg, f"i_{name}")
                  for name in IssueSignature().members}
        from_input, rd_off = Signal(), Signal(16)
        m.d.comb += [
            from_input.eq(self.layer.index == 0),
            # Ping-pong: layer l ≥ 1 reads half (l − 1) mod 2.
            rd_off.eq(Mux(self.layer.index[0], 0, cfg.act_depth)),
        ]
        self._weights(m, issued)
        for j in range(cfg.Q):
            self._column(m, issued, j, from_input, rd_off)
        return m

    def _weights(self, m, issued):
        """Weight bank reads (row skew by address) and the rows' edge registers."""
        cfg = self.config
        # Row skew (row_groups > 1, see SystolicArray): group g's banks are read g cycles after
        # group 0's, by delaying the address bits (not K-bit words) one hop per group.
        w_addrs = [issued["w_addr"][:len(self.w_read[0].addr)]]
        for g in range(1, cfg.row_groups):
            w_addrs.append(delay(m, w_addrs[-1], 1, f"w_addr_g{g}"))
        for i in range(cfg.P):
            m.d.comb += self.w_read[i].addr.eq(w_addrs[i // cfg.rows_per_group])
            m.d.sync += self.edge.w[i].eq(self.w_read[i].data)

    def _column(self, m, issued, j, from_input, rd_off):
        """Column ``j``: its skewed bank reads, the padding of a conv, its edge registers;
        ``from_input``: layer 0 reads the input banks, ``rd_off``: the activation half."""
        cfg, layer, edge = self.config, self.layer, self.edge
        in_read, act_read = self.in_read[j], self.act_read[j]
        a_bits = max(len(in_read.addr), len(act_read.addr))
        addr_j = delay(m, issued["a_addr"][:a_bits], j, f"aa{j}")
        m.d.comb += in_read.addr.eq(addr_j)
        pad = Signal(name=f"pad{j}")                # at the read data, like the sideband
        if cfg.conv:
            # Binary conv: the column reads its pixel's base plus the tap offset the sequencer
            # walks (both skewed like the address), and pads where the tap leaves the image.
            m.submodules[f"walker{j}"] = walker = PixelWalker(j, cfg.Q)
            tap = delay(m, Cat(issued["kx"], issued["ky"]), j, f"tap{j}")
            kx_bits = len(issued["kx"])
            connect(m, wiring.flipped(layer.walk), walker.geometry)
            m.d.comb += [
                walker.start.eq(layer.start),
                walker.advance.eq(delay(m, issued["g_next"], j, f"gn{j}")),
                walker.kx.eq(tap[:kx_bits]), walker.ky.eq(tap[kx_bits:]),
                act_read.addr.eq(Mux(layer.conv, walker.base + addr_j, addr_j) + rd_off),
            ]
            m.d.sync += pad.eq(layer.conv & walker.pad)
        else:
            m.d.comb += act_read.addr.eq(addr_j + rd_off)
        sideband = Cat(issued["valid"], issued["last_word"], issued["double"],
                       issued["tile_last"])
        # (the edge register below is common to the words and the sideband)
        sb = delay(m, sideband, j + timing.MEMORY_READ, f"sb{j}")
        valid, last_word, double, tile_last = sb[0], sb[1], sb[2], sb[3]
        x = Signal(cfg.K, name=f"x{j}")
        # The padding bit is 0 (sw/layers/conv.py: PAD_BIT) in every valid bit.
        m.d.comb += x.eq(Mux(from_input, in_read.data, Mux(pad, 0, act_read.data)))
        mask = Mux(last_word, layer.lastmask, Const((1 << cfg.K) - 1, cfg.K))
        m.d.sync += [
            edge.x[j].eq(x), edge.m[j].eq(mask),
            # zero_agrees, registered here so that the mode stays out of the PEs' LUTs
            edge.z[j].eq(Mux(layer.unsigned, 0, mask)),
            edge.dbl[j].eq(double), edge.valid[j].eq(valid), edge.last[j].eq(tile_last),
        ]
