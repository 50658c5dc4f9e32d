"""Output-stationary P×Q array of XNOR-popcount PEs: weights systolic along rows, activations
broadcast down columns, per-row drain."""
from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core import timing
from xnorflow.hw.core.interfaces import ArrayEdgeSignature, ArraySumsSignature
from xnorflow.hw.core.pe import PE, popcount_pipeline
from xnorflow.hw.core.pipeline import delay

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """P×Q output-stationary array: rows are output channels, columns are input vectors.

    Row ``i`` accumulates output channel ``i`` of the current tile; column ``j`` holds input
    vector ``j``. Weight words enter at the left edge and move one PE to the right per cycle
    (the systolic dimension). A column's activation word and its sideband reach all P PEs of
    the column on one net: no per-PE copy of them exists, which is what makes a PE small
    (about half its flip-flops were those copies). The caller applies the column skew:
    column ``j``'s words arrive ``j`` cycles after column 0's, so that PE(i, j) sees word
    ``n`` of both operands in cycle ``t0 + n + j`` for every row ``i``.

    Per column the array forms, once: the masked word (padding bits cleared),
    ``popcount(m)`` in binary layers or ``popcount(x)`` in unsigned ones (``popcount(x | z)``)
    through a popcount pipeline of the PE's latency, and the sideband delayed by that latency
    so that it meets each PE's count.

    Row groups (``row_groups`` = G > 1): the rows form G groups of P/G. Group 0's PEs take
    the column's signals as above; group g's take a registered copy of group g−1's, so each
    broadcast net reaches P/G PEs (plus the next copy) instead of P, and a placer can keep
    each copy beside its rows. The caller reads group g's weights g cycles after group 0's
    (the row skew), and each row's result waits G−1−g cycles after its drain, so every row
    still delivers in the same cycle, G−1 cycles later than with one group. The copies form
    a chain (each register's input differs), so synthesis cannot merge them back into one.

    Because the last-of-tile flag travels with the data, each PE hands its finished sum to the
    drain and restarts from zero with the next word: consecutive tiles stream back to back. A
    row's PEs finish in consecutive cycles (column order), so each row collects them through a
    registered OR-tree (a PE's result is zero unless valid) into one value per cycle; all rows
    deliver in the same cycles.

    Parameters
    ----------
    P, Q : int
        Rows (output channels) and columns (input vectors); Q a power of two.
    K : int
        Word width (8·2^n).
    acc_width : int
        Signed accumulator width.
    row_groups : int
        G, the number of row groups (a power of two ≤ P; default 1).

    Ports
    -----
    edge : In(ArrayEdgeSignature(P, Q, K))
        What enters the array each cycle:

        ``edge.w[i]``
            Weight word of row ``i``, those of row group g g cycles after group 0's (all rows
            in the same cycle when G = 1). Padding bits may hold anything: ``x`` and
            ``zero_agrees`` are 0 there, so they never agree.
        ``edge.x[j]``, ``edge.m[j]``
            Activation word and valid-bit mask word of column ``j`` (skewed by column).
        ``edge.z[j]``
            ``zero_agrees`` word of column ``j``, with ``x``: ``m`` in binary layers, 0 in
            unsigned ones (see :class:`PE`). The caller forms it in front of a register:
            formed here from ``m`` and the layer mode, synthesis folds it into every PE's LUTs
            and the mode bit is wired to all P·Q·K of them again (measured: that net set the
            ECP5 16x8x32 Fmax).
        ``edge.dbl[j]``
            The word starts a bit-plane after the first: the PEs double their sum first (see
            :class:`PE`; always 0 for binary layers).
        ``edge.valid[j]``, ``edge.last[j]``
            Word is real / word is the last of the current output tile.
    sums : Out(ArraySumsSignature(P, acc_width))
        ``sums.valid[i]``: row ``i`` delivers a finished sum this cycle (the same cycle for
        every row); ``sums.acc[i]``: the sum; within a tile every row delivers columns
        0..Q-1 in consecutive cycles.

    Latency and throughput
    ----------------------
    One word per row and column per cycle. If the last word of a tile enters column 0 of row
    group 0 in cycle ``c``, every row delivers column ``j`` in cycle
    ``c + j + (G − 1) + timing.pe_latency(K) + timing.drain_latency(Q)``. Tiles
    must be at least Q words apart (start to start) so that a row's deliveries never overlap:
    the sequencer pads shorter tiles.
    """

    def __init__(self, P, Q, K, acc_width, row_groups=1):
        assert Q & (Q - 1) == 0
        assert row_groups & (row_groups - 1) == 0 and row_groups <= P
        self.P, self.Q, self.K, self.acc_width = P, Q, K, acc_width
        self.row_groups = row_groups
        self.pe_latency = timing.pe_latency(K)
        self.drain_latency = timing.drain_latency(Q)
        self.group_latency = row_groups - 1
        super().__init__({
            "edge": In(ArrayEdgeSignature(P, Q, K)),
            "sums": Out(ArraySumsSignature(P, acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        P, Q, K, G = self.P, self.Q, self.K, self.row_groups
        rows = P // G
        lat = timing.popcount_latency(K)
        edge = self.edge
        pes = [[PE(K, self.acc_width) for j in range(Q)] for i in range(P)]
        for j in range(Q):
            x_col = Signal(K, name=f"x_col{j}")
            zero_agrees = edge.z[j]
            m.d.comb += x_col.eq(edge.x[j] & edge.m[j])
            # popcount of the real bits (binary) or of the plane (unsigned): same pipeline
            # latency as each PE's count, so it meets them.
            # (x_col | z is m in binary layers, where z = m, and x_col in unsigned ones, z = 0:
            # the mode arrives only through z.)
            pm = popcount_pipeline(m, x_col | zero_agrees, f"col{j}_pm")
            dbl = delay(m, edge.dbl[j], lat, f"col{j}_dbl")
            valid = delay(m, edge.valid[j], lat, f"col{j}_v")
            last = delay(m, edge.last[j], lat, f"col{j}_l")
            column = Cat(x_col, zero_agrees, pm, dbl, valid, last)
            for g in range(G):
                if g:       # the hop down to the next row group
                    column = delay(m, column, 1, f"col{j}_g{g}")
                x_g, zero_agrees_g = column[:K], column[K:2 * K]
                pm_g = column[2 * K:2 * K + len(pm)]
                dbl_g, valid_g, last_g = column[-3], column[-2], column[-1]
                for i in range(g * rows, (g + 1) * rows):
                    pe = pes[i][j]
                    m.submodules[f"pe_{i}_{j}"] = pe
                    m.d.comb += [pe.w_in.eq(edge.w[i] if j == 0 else pes[i][j - 1].w_out),
                                 pe.x_in.eq(x_g), pe.zero_agrees.eq(zero_agrees_g),
                                 pe.pm_in.eq(pm_g), pe.dbl_in.eq(dbl_g),
                                 pe.valid_in.eq(valid_g), pe.last_in.eq(last_g)]

        for i in range(P):
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
            # Rows of group g finished G−1−g cycles early: they wait to rejoin the last group.
            out = delay(m, Cat(level[0][0], level[0][1]), G - 1 - i // rows, f"rejoin{i}")
            m.d.comb += [self.sums.valid[i].eq(out[0]), self.sums.acc[i].eq(out[1:])]
        return m
