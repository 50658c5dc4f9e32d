"""Output-stationary P×Q systolic array of XNOR-popcount PEs with per-row drain."""
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.core.pe import PE, popcount_latency, popcount_pipeline

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """P×Q output-stationary systolic array.

    Row ``i`` accumulates output channel ``i`` of the current tile; column ``j`` holds input
    vector ``j``. Weight words enter at the left edge and move one PE to the right per cycle;
    activation words (with their mask, shift, valid and last-of-tile sideband) enter at the top
    and move one PE down per cycle. The *caller* applies the skew: row ``i``'s words must arrive
    ``i`` cycles after row 0's and column ``j``'s ``j`` cycles after column 0's (the core does it
    by delaying each bank's read address, which costs address bits instead of K-bit words).
    PE(i, j) then sees word ``n`` of both operands in cycle ``t0 + n + i + j``.

    Because the last-of-tile flag travels with the data, each PE hands its finished sum to the
    drain and restarts from zero with the next word: consecutive tiles stream back to back. A
    row's PEs finish in consecutive cycles (column order), so each row collects them through a
    registered OR-tree (a PE's result is zero unless valid) into one value per cycle.
    ``popcount(m)`` is computed once per column at the top edge and travels down with the
    words, so each PE holds one popcount tree, not two.

    Parameters
    ----------
    P, Q : int
        Rows (output channels) and columns (input vectors); Q a power of two.
    K : int
        Word width (8·2^n).
    acc_width : int
        Signed accumulator width.

    Ports
    -----
    w : In(K).array(P)
        Weight word of each row (skewed by row).
    x, m : In(K).array(Q)
        Activation word and mask word of each column (skewed by column); see :class:`PE`.
    s : In(3).array(Q)
        Shift of each column's term.
    valid, last : In(1).array(Q)
        Word is real / word is the last of the current output tile.
    out_valid : Out(1).array(P)
        Row ``i`` delivers a finished sum this cycle.
    out_acc : Out(signed(acc_width)).array(P)
        The sum; within a tile row ``i`` delivers columns 0..Q-1 in consecutive cycles.

    Latency and throughput
    ----------------------
    One word per row and column per cycle. If the last word of a tile enters column 0 / row 0
    in cycle ``c``, row ``i`` delivers column ``j`` in cycle
    ``c + i + j + pe_latency + log2(Q)``. Tiles must be at least Q words apart (start to
    start) so that a row's deliveries never overlap: the sequencer pads shorter tiles.
    """

    def __init__(self, P, Q, K, acc_width):
        assert Q & (Q - 1) == 0
        self.P, self.Q, self.K, self.acc_width = P, Q, K, acc_width
        self.pe_latency = popcount_latency(K) + 2
        self.drain_latency = Q.bit_length() - 1
        super().__init__({
            "w": In(K).array(P),
            "x": In(K).array(Q), "m": In(K).array(Q), "s": In(3).array(Q),
            "valid": In(1).array(Q), "last": In(1).array(Q),
            "out_valid": Out(1).array(P),
            "out_acc": Out(signed(acc_width)).array(P),
        })

    def elaborate(self, platform):
        m = Module()
        P, Q = self.P, self.Q
        pes = [[PE(self.K, self.acc_width) for j in range(Q)] for i in range(P)]
        # popcount(m) once per column: it is the same for every row. Its pipeline latency
        # equals the PE's own popcount latency, so it meets each PE's count on the way down.
        col_pm = [popcount_pipeline(m, self.m[j], f"col{j}_pm") for j in range(Q)]
        for i in range(P):
            for j in range(Q):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                left = self.w[i] if j == 0 else pes[i][j - 1].w_out
                m.d.comb += pe.w_in.eq(left)
                if i == 0:
                    m.d.comb += [pe.x_in.eq(self.x[j]), pe.m_in.eq(self.m[j]),
                                 pe.s_in.eq(self.s[j]), pe.valid_in.eq(self.valid[j]),
                                 pe.last_in.eq(self.last[j]), pe.pm_in.eq(col_pm[j])]
                else:
                    up = pes[i - 1][j]
                    m.d.comb += [pe.x_in.eq(up.x_out), pe.m_in.eq(up.m_out),
                                 pe.s_in.eq(up.s_out), pe.valid_in.eq(up.valid_out),
                                 pe.last_in.eq(up.last_out), pe.pm_in.eq(up.pm_out)]

            # Row drain: registered OR-tree; at most one PE of a row is valid per cycle.
            level = [(pe.out_valid, pe.out_acc) for pe in pes[i]]
            depth = 0
            while len(level) > 1:
                depth += 1
                nxt = []
                for k in range(0, len(level), 2):
                    v = Signal(name=f"drain_v_{i}_{depth}_{k // 2}")
                    a = Signal(signed(self.acc_width), name=f"drain_a_{i}_{depth}_{k // 2}")
                    m.d.sync += [v.eq(level[k][0] | level[k + 1][0]),
                                 a.eq(level[k][1] | level[k + 1][1])]
                    nxt.append((v, a))
                level = nxt
            m.d.comb += [self.out_valid[i].eq(level[0][0]), self.out_acc[i].eq(level[0][1])]
        return m
