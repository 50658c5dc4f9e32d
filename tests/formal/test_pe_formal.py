"""Formal proof: the PE (hw/core/pe.py) accumulates the dot product of every word sequence.

The harness plays the PE's column (hw/core/array.py): it clears ``x``'s padding bits with the
word's valid-bit mask ``m``, sets ``zero_agrees`` to ``m`` (binary) or 0 (unsigned k-bit
plane), forms ``pm`` and delays the sideband by the popcount latency. Everything else is free
in every cycle: ``x``, ``w`` (padding bits included), ``m``, the mode, ``dbl``, ``valid``,
``last``, and all the inputs of invalid words. Against that, the PE's finished sums must equal

    Σ over the tile's valid words, with acc ← 2·acc first on a ``dbl`` word, of
        binary:    Σ_{i: m_i = 1} (+1 if x_i = w_i else −1)     (the ±1 dot product)
        unsigned:  Σ_i x_i · (+1 if w_i else −1)                 (plane bits times ±1 weights)

modulo 2^acc_width, which is ``Σ 2·popcount(agree) − pm`` (docs/core.md, "PE arithmetic")
written as the signed dot product it stands for, bit by bit, not through a popcount.
"""
import pytest
from amaranth.hdl import Cat, Const, Mux, Signal, signed

from xnorflow.hw.core import pe as pe_module
from xnorflow.hw.core.pe import PE, popcount_latency
from tests.formal.harness import Harness, Internals, free, run_proof

pytestmark = pytest.mark.formal

ACC_WIDTH = 24      # the accelerator's default ArrayConfig.acc_width


def proof_depth(width):
    """Induction length: the lemmas pin the popcount tree, the term register and the running
    sum; what is left free in the induction's first state (the sideband delay registers) is
    flushed after the popcount latency, plus one step to reach the term register (measured:
    one step less is not inductive)."""
    return popcount_latency(width) + 1


def delay(m, value, cycles, name):
    """``value`` delayed by ``cycles`` registers."""
    for k in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{k}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def pairwise_sum(values):
    """Sum as a balanced binary tree (the grouping of the PE's popcount tree, so that the
    solver meets the same partial sums on both sides)."""
    while len(values) > 1:
        values = [a + b for a, b in zip(values[0::2], values[1::2])]
    return values[0]


def chunk_terms(m, x, w, mask, unsigned):
    """The reference term of one word, per 8-bit chunk: a sum of per-bit ±1/0 contributions
    (binary: ±1 on the real bits; unsigned: the plane bit times the weight's ±1)."""
    terms = []
    for c in range(len(x) // 8):
        bits = []
        for i in range(8 * c, 8 * c + 8):
            binary_bit = Mux(mask[i], Mux(x[i] == w[i], 1, -1), 0)
            unsigned_bit = Mux(x[i], Mux(w[i], 1, -1), 0)
            bits.append(Mux(unsigned, unsigned_bit, binary_bit).as_signed())
        t = Signal(signed(5), name=f"ref_t{c}")
        m.d.comb += t.eq(pairwise_sum(bits))
        terms.append(t)
    return terms


def chunk_counts(m, word):
    """Per-8-bit-chunk bit counts of ``word`` (the column's popcount of the mask or plane)."""
    counts = []
    for c in range(len(word) // 8):
        n = Signal(4, name=f"ref_pm{c}")
        m.d.comb += n.eq(pairwise_sum([word[i] for i in range(8 * c, 8 * c + 8)]))
        counts.append(n)
    return counts


class PEAccumulatesDotProduct(Harness):
    title = "the PE's sum is the tile's dot product (2*popcount(agree) - pm, doubled per plane)"

    def __init__(self, width, acc_width=ACC_WIDTH, lemmas=True):
        super().__init__()
        self.width, self.acc_width, self.lemmas = width, acc_width, lemmas

    def build(self, m):
        K, aw = self.width, self.acc_width
        pe = PE(K, aw)
        inside = Internals(pe)
        m.submodules.pe = inside.fragment
        lat = popcount_latency(K)

        # The column: free words, the array's masking and popcount of the mask/plane.
        x_raw, w, mask = free(K), free(K), free(K)
        unsigned, dbl, valid, last = free(1), free(1), free(1), free(1)
        x = Signal(K)
        m.d.comb += x.eq(x_raw & mask)
        counted = Signal(K)
        m.d.comb += counted.eq(Mux(unsigned, x, mask))
        pm_chunks = chunk_counts(m, counted)
        pm = Signal(range(K + 1))
        m.d.comb += pm.eq(pairwise_sum(pm_chunks))
        m.d.comb += [pe.x_in.eq(x), pe.w_in.eq(w),
                     pe.zero_agrees.eq(Mux(unsigned, 0, mask))]
        # The sideband meets the popcount lat cycles later; an invalid word's pm is garbage.
        side_pm = delay(m, Mux(valid, pm, free(range(K + 1))), lat, "side_pm")
        side = delay(m, Cat(dbl, valid, last), lat, "side")
        m.d.comb += [pe.pm_in.eq(side_pm), pe.dbl_in.eq(side[0]), pe.valid_in.eq(side[1]),
                     pe.last_in.eq(side[2])]

        # Reference: the word's signed dot product, taken to the PE's accumulate stage.
        t_chunks = chunk_terms(m, x, w, mask, unsigned)
        term = Signal(signed(K.bit_length() + 1))
        m.d.comb += term.eq(pairwise_sum(t_chunks))
        r_term = delay(m, term, lat + 1, "ref_term")
        r_side = delay(m, Cat(dbl, valid, last), lat + 1, "ref_side")
        r_dbl, r_valid, r_last = r_side[0], r_side[1], r_side[2]
        r_acc = Signal(signed(aw))
        r_total = Signal(signed(aw))
        r_out_valid, r_out = Signal(), Signal(signed(aw))
        m.d.comb += r_total.eq(Mux(r_dbl, r_acc * 2, r_acc) + r_term)
        m.d.sync += [r_out_valid.eq(r_valid & r_last),
                     r_out.eq(Mux(r_valid & r_last, r_total, 0))]
        with m.If(r_valid):
            m.d.sync += r_acc.eq(Mux(r_last, 0, r_total))

        past_w = delay(m, w, 1, "past_w")
        primed = delay(m, Const(1), 1, "primed")

        self.check(m, pe.out_valid == r_out_valid,
                   "out_valid rises exactly once per tile, latency cycles after its last word")
        self.check(m, pe.out_acc == r_out,
                   "out_acc is the tile's dot product (2*popcount(agree) - pm per word, "
                   "doubled on dbl words), 0 when out_valid is low")
        self.check(m, ~primed | (pe.w_out == past_w), "w_out is last cycle's w_in")
        if self.lemmas:
            self.popcount_tree_lemmas(m, inside, t_chunks, pm_chunks)
            self.lemma(m, ~r_valid | (inside.signal("term") == r_term),
                       "the term register holds the word's reference term")
            self.lemma(m, inside.signal("acc") == r_acc,
                       "the running sum equals the reference's running sum")

    def popcount_tree_lemmas(self, m, inside, t_chunks, pm_chunks):
        """Every node of the PE's popcount tree holds 2·count − pm = the reference term of its
        bits, for the word that entered as many registers ago as lie on its path.

        An SMT solver cannot equate a 64-bit popcount tree with a bitwise sum at once (it ran
        out of 10 minutes); node by node each step is a small local identity. The register
        placement mirrors popcount_pipeline's: chunk counts registered, then a register after
        every second adder level and after the last.
        """
        nodes = [(f"pc_c{c}", t, p, 1) for c, (t, p) in enumerate(zip(t_chunks, pm_chunks))]
        level = 0
        while True:
            for name, t, p, age in nodes:
                count = inside.signal(name)
                past_pm, past_t = delay(m, p, age, f"{name}_pm"), delay(m, t, age, name)
                self.lemma(m, count * 2 - past_pm == past_t,
                           "each popcount-tree node holds 2*popcount(agree) - pm of its bits")
            if len(nodes) == 1:
                return
            level += 1
            registered = level % 2 == 0 or len(nodes) == 2
            pairs = zip(nodes[0::2], nodes[1::2])
            nodes = [(f"pc_l{level}_{k}", ta + tb, pa + pb, age + registered)
                     for k, ((_, ta, pa, age), (_, tb, pb, _)) in enumerate(pairs)]


@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_pe_accumulator_equals_dot_product_for_all_words(tmp_path, width):
    result = run_proof(PEAccumulatesDotProduct(width), tmp_path, depth=proof_depth(width))
    print(result.explain())
    assert result.status == "PASS", result.explain()


def _bmc_of_broken_pe(tmp_path):
    # Without the lemmas (a bounded check needs none), so that the main property itself
    # must catch the bug.
    # Deep enough for a two-word tile to come out: 2 words + the PE's latency + 1.
    depth = 2 + popcount_latency(16) + 2 + 1
    result = run_proof(PEAccumulatesDotProduct(16, lemmas=False), tmp_path, mode="bmc",
                       depth=depth)
    print(result.explain())
    assert result.status == "FAIL", result.explain()
    assert any(msg.startswith("out_acc is the tile's dot product") for msg in result.failed), \
        result.explain()


def test_pe_proof_catches_a_popcount_that_misses_the_top_bit(tmp_path, monkeypatch):
    real = pe_module.popcount_pipeline
    monkeypatch.setattr(pe_module, "popcount_pipeline",
                        lambda m, word, name: real(m, Cat(word[:-1], Const(0, 1)), name))
    _bmc_of_broken_pe(tmp_path)


def test_pe_proof_catches_an_ignored_plane_doubling(tmp_path, monkeypatch):
    # The PE's only Mux picks 2·acc on a dbl word: make it always pick acc.
    monkeypatch.setattr(pe_module, "Mux", lambda sel, doubled, acc: acc)
    _bmc_of_broken_pe(tmp_path)
