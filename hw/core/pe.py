"""XNOR-popcount processing element (PE) and its pipelined popcount.

One formulation serves both layer kinds (docs/core.md, "PE arithmetic"). Per valid input word
the PE adds

    term = (2·popcount(XNOR(x, w) & m) − popcount(m)) << s

to its accumulator, where ``m`` is a mask word:

* binary layers: ``m`` is the valid-bit mask of the word (all ones except in the last word of a
  vector, where padding bits are 0), ``s = 0``: the sum over a vector's words is contract 2,
  ``2·popcount(XNOR(x, w)) − N``, and padding bits never count;
* the unsigned k-bit first layer: ``x = m = `` bit-plane ``b`` of the input word (masked) and
  ``s = b``: since ``XNOR(x, w) & x = x AND w`` the term is ``2^b·(2·popcount(x_b AND w) −
  popcount(x_b))``, and the sum over words and planes is contract 3.
"""
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PE", "popcount_pipeline", "popcount_latency"]


def popcount_latency(width):
    """Register stages of :func:`popcount_pipeline` for a ``width``-bit word (width = 8·2^n)."""
    levels = (width // 8).bit_length() - 1
    return 1 + (levels + 1) // 2


def popcount_pipeline(m, word, name):
    """Build a pipelined popcount of ``word`` (width a multiple of 8 and 8·2^n) in module ``m``.

    Stage 1 registers the popcounts of 8-bit chunks (a 6-input-LUT-sized function each); then a
    binary adder tree sums the chunk counts with a register after every second level (and
    after the last), so no path holds more than two adders: the popcount must not set Fmax.
    Returns the result signal; its latency is :func:`popcount_latency`.
    """
    width = len(word)
    assert width % 8 == 0 and ((width // 8) & (width // 8 - 1)) == 0, width
    counts = []
    for c in range(width // 8):
        r = Signal(4, name=f"{name}_c{c}")
        m.d.sync += r.eq(sum(word[c * 8 + b] for b in range(8)))
        counts.append(r)
    level = 0
    while len(counts) > 1:
        level += 1
        register = level % 2 == 0 or len(counts) == 2
        nxt = []
        for k in range(0, len(counts), 2):
            s = Signal(len(counts[k]) + 1, name=f"{name}_l{level}_{k // 2}")
            if register:
                m.d.sync += s.eq(counts[k] + counts[k + 1])
            else:
                m.d.comb += s.eq(counts[k] + counts[k + 1])
            nxt.append(s)
        counts = nxt
    return counts[0]


class PE(wiring.Component):
    """XNOR-popcount processing element with a pipelined popcount and an accumulator.

    Parameters
    ----------
    width : int
        K, the bits of each weight/activation word (8·2^n).
    acc_width : int
        Width of the signed accumulator; results wrap modulo 2^acc_width (the compiler checks
        that every layer's accumulator range fits).

    Ports (systolic pass-through)
    -----------------------------
    w_in : In(K)
        Weight word, from the PE on the left (or the row's weight bank).
    x_in, m_in : In(K)
        Activation word and its mask word, from the PE above (or the column's buffer).
    s_in : In(3)
        Left shift of this word's term (bit-plane index of an unsigned input; 0 otherwise).
    pm_in : In(ceil_log2(K + 1))
        ``popcount(m)`` of the word whose ``m_in`` arrived ``popcount_latency(K)`` cycles
        earlier. The array computes it once per column (one popcount tree per column instead
        of one per PE) and passes it down the column like the words.
    valid_in : In(1)
        The word is real (0 in idle cycles: nothing accumulates).
    last_in : In(1)
        Last word of the current output tile: the accumulator's final value leaves on
        ``out_acc`` and the accumulator restarts at 0 with the next word (no bubble).
    w_out : Out(K)
        ``w_in`` delayed by one cycle, to the PE on the right.
    x_out, m_out, s_out, valid_out, last_out, pm_out : Out
        The column inputs delayed by one cycle, to the PE below.

    Ports (result)
    --------------
    out_valid : Out(1)
        High for one cycle when a tile's final sum is on ``out_acc``.
    out_acc : Out(signed(acc_width))
        The final sum while ``out_valid``, 0 otherwise (so a row can OR its PEs' results).

    Latency and throughput
    ----------------------
    One word per cycle, every cycle. The pass-through outputs lag the inputs by 1 cycle.
    ``out_valid`` rises ``popcount_latency(K) + 2`` cycles after the ``last_in`` word is on the
    inputs (popcount, then the term register, then the accumulate register).
    """

    def __init__(self, width, acc_width):
        self.width = width
        self.acc_width = acc_width
        self.latency = popcount_latency(width) + 2
        pm_bits = width.bit_length()
        super().__init__({
            "w_in": In(width), "x_in": In(width), "m_in": In(width), "s_in": In(3),
            "valid_in": In(1), "last_in": In(1), "pm_in": In(pm_bits),
            "w_out": Out(width), "x_out": Out(width), "m_out": Out(width), "s_out": Out(3),
            "valid_out": Out(1), "last_out": Out(1), "pm_out": Out(pm_bits),
            "out_valid": Out(1), "out_acc": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        K = self.width

        # Systolic pass-through: one register per hop is what makes the array systolic.
        m.d.sync += [
            self.w_out.eq(self.w_in), self.x_out.eq(self.x_in), self.m_out.eq(self.m_in),
            self.s_out.eq(self.s_in), self.valid_out.eq(self.valid_in),
            self.last_out.eq(self.last_in), self.pm_out.eq(self.pm_in),
        ]

        agree = Signal(K)
        m.d.comb += agree.eq(~(self.x_in ^ self.w_in) & self.m_in)
        pc = popcount_pipeline(m, agree, "pc")
        pm = self.pm_in          # already aligned with pc (see the port description)

        # Delay the sideband by the popcount latency so it meets its counts.
        s, valid, last = self.s_in, self.valid_in, self.last_in
        for i in range(popcount_latency(K)):
            s_d, v_d, l_d = Signal(3, name=f"s_d{i}"), Signal(name=f"v_d{i}"), Signal(name=f"l_d{i}")
            m.d.sync += [s_d.eq(s), v_d.eq(valid), l_d.eq(last)]
            s, valid, last = s_d, v_d, l_d

        # Term register: keeps the subtract and the shifter out of the accumulate path.
        term_w = K.bit_length() + 1 + 7
        term = Signal(signed(term_w))
        diff = Signal(signed(K.bit_length() + 2))
        t_valid, t_last = Signal(), Signal()
        m.d.comb += diff.eq((pc << 1) - pm)
        m.d.sync += [term.eq(diff << s), t_valid.eq(valid), t_last.eq(last)]

        acc = Signal(signed(self.acc_width))
        total = Signal(signed(self.acc_width))
        m.d.comb += total.eq(acc + term)
        m.d.sync += [self.out_valid.eq(0), self.out_acc.eq(0)]
        with m.If(t_valid):
            with m.If(t_last):
                m.d.sync += [self.out_valid.eq(1), self.out_acc.eq(total), acc.eq(0)]
            with m.Else():
                m.d.sync += acc.eq(total)
        return m
