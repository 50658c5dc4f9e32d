"""XNOR-popcount processing element (PE) and its pipelined popcount.

One formulation serves both layer kinds (docs/core.md, "PE arithmetic"). Per valid input word
the PE computes

    acc = (2·acc if dbl else acc) + 2·popcount(agree) − pm:

* binary layers: ``agree = XNOR(x, w)``, ``pm`` the number of real bits in the word (K except
  in a vector's last word), ``dbl = 0``. Padding bits never agree (``x = 0``, ``w = 0`` and
  no agreement of zeros there), so the sum over a vector's words is contract 2,
  ``2·popcount(XNOR(x, w)) − N``;
* the unsigned k-bit first layer: ``x`` = bit-plane ``b`` of the input word (padding 0),
  ``agree = x AND w``, ``pm = popcount(x)``; the planes come most significant first and
  ``dbl = 1`` on the first word of every plane after the first, so the accumulator ends at
  ``Σ_b 2^b·(2·popcount(x_b AND w) − popcount(x_b))`` (Horner's rule), contract 3. Doubling
  the accumulator costs one 2:1 mux per bit; shifting each term by ``b`` would cost a barrel
  shifter (about a fifth of the PE's LUTs).

Both cases are one function of three bits, ``agree = (x AND w) OR (z AND NOT x AND NOT w)``,
where the column's word ``z`` marks the bits in which two zeros agree: the valid bits of a
binary layer, none of an unsigned one. The layer mode thus reaches the PE as a K-bit word per
column (each bit fanning out to the column's P PEs) instead of one mode bit feeding every
bit of every PE: that single net (P·Q·K sinks, 8,192 at 32x4x64) was the most congested net
of the 32-row ECP5 builds that did not route (docs/synthesis.md).
"""
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core.timing import pe_latency, popcount_latency

__all__ = ["PE", "popcount_pipeline", "popcount_latency"]


def popcount_pipeline(m, word, name):
    """Build a pipelined popcount of ``word`` (width a multiple of 8 and 8·2^n) in module ``m``.

    Stage 1 registers the popcounts of 8-bit chunks (a 6-input-LUT-sized function each); then a
    binary adder tree sums the chunk counts with a register after every second level (and
    after the last), so no path holds more than two adders: the popcount must not set Fmax.
    Returns the result signal; its latency is :func:`xnorflow.hw.core.timing.popcount_latency`.
    """
    width = len(word)
    assert width % 8 == 0 and ((width // 8) & (width // 8 - 1)) == 0, width
    counts = []
    for c in range(width // 8):
        r = Signal(4, name=f"{name}_c{c}")
        m.d.sync += r.eq(sum(word[c * 8 + b] for b in range(8)))
        counts.append(r)
    level, stages = 0, 1
    while len(counts) > 1:
        level += 1
        register = level % 2 == 0 or len(counts) == 2
        stages += register
        nxt = []
        for k in range(0, len(counts), 2):
            s = Signal(len(counts[k]) + 1, name=f"{name}_l{level}_{k // 2}")
            if register:
                m.d.sync += s.eq(counts[k] + counts[k + 1])
            else:
                m.d.comb += s.eq(counts[k] + counts[k + 1])
            nxt.append(s)
        counts = nxt
    assert stages == popcount_latency(width), (width, stages)    # the one latency formula
    return counts[0]


class PE(wiring.Component):
    """XNOR-popcount processing element with a pipelined popcount and an accumulator.

    The PE holds only what differs per row: the weight word passing right and the
    accumulator. Everything a column shares (the masked activation word, the mode, the
    sideband delayed to meet the popcount, ``popcount(m)``) is formed once per column by the
    array and reaches every PE of the column on the same net (see :class:`SystolicArray`).

    Parameters
    ----------
    width : int
        K, the bits of each weight/activation word (8·2^n).
    acc_width : int
        Width of the signed accumulator; results wrap modulo 2^acc_width (the compiler checks
        that every layer's accumulator range fits).

    Ports
    -----
    w_in : In(K)
        Weight word, from the PE on the left (or the row's weight bank).
    w_out : Out(K)
        ``w_in`` delayed by one cycle, to the PE on the right (the systolic hop).
    x_in : In(K)
        Activation word of the column, its padding bits cleared by the array.
    zero_agrees : In(K)
        The column's bits in which ``x = 0`` meeting ``w = 0`` agrees: the valid bits in a
        binary layer (``agree = XNOR(x, w)``), none in an unsigned one (``agree = x AND w``).
    pm_in, dbl_in, valid_in, last_in : In
        ``popcount(m)`` (ceil_log2(K + 1) bits), the double-first flag, the word-is-real flag
        and the last-word-of-tile flag of the word whose ``x_in``/``w_in`` arrived
        ``timing.popcount_latency(K)`` cycles earlier (the array delays them once per column).
    out_valid : Out(1)
        High for one cycle when a tile's final sum is on ``out_acc``.
    out_acc : Out(signed(acc_width))
        The final sum while ``out_valid``, 0 otherwise (so a row can OR its PEs' results).

    Per valid word ``acc = (2·acc if dbl else acc) + 2·popcount(agree) − pm`` where ``agree``
    is ``XNOR(x, w)`` (binary) or ``x AND w`` (unsigned); docs/core.md, "PE arithmetic".

    Latency and throughput
    ----------------------
    One word per cycle, every cycle; ``w_out`` lags ``w_in`` by 1 cycle. ``out_valid`` rises
    ``timing.pe_latency(K)`` = ``popcount_latency(K) + PE_REGISTERS`` cycles after the
    ``last`` word's ``x_in``/``w_in`` (popcount, then the term register, then the accumulate
    register).
    """

    def __init__(self, width, acc_width):
        self.width = width
        self.acc_width = acc_width
        self.latency = pe_latency(width)
        pm_bits = width.bit_length()
        super().__init__({
            "w_in": In(width), "w_out": Out(width), "x_in": In(width),
            "zero_agrees": In(width),
            "pm_in": In(pm_bits), "dbl_in": In(1), "valid_in": In(1), "last_in": In(1),
            "out_valid": Out(1), "out_acc": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        K = self.width

        # The systolic hop: one register per PE along the row.
        m.d.sync += self.w_out.eq(self.w_in)

        # One 3-input function per bit (x, w and the column's zero_agrees bit).
        agree = Signal(K)
        x, w = self.x_in, self.w_in
        m.d.comb += agree.eq((x & w) | (self.zero_agrees & ~(x | w)))
        pc = popcount_pipeline(m, agree, "pc")

        # Term register: keeps the subtract out of the accumulate path.
        term = Signal(signed(K.bit_length() + 2))
        t_valid, t_last, t_dbl = Signal(), Signal(), Signal()
        m.d.sync += [term.eq((pc << 1) - self.pm_in), t_valid.eq(self.valid_in),
                     t_last.eq(self.last_in), t_dbl.eq(self.dbl_in)]

        acc = Signal(signed(self.acc_width))
        total = Signal(signed(self.acc_width))
        m.d.comb += total.eq(Mux(t_dbl, acc << 1, acc) + term)
        m.d.sync += [self.out_valid.eq(0), self.out_acc.eq(0)]
        with m.If(t_valid):
            with m.If(t_last):
                m.d.sync += [self.out_valid.eq(1), self.out_acc.eq(total), acc.eq(0)]
            with m.Else():
                m.d.sync += acc.eq(total)
        return m
