"""Formal proof: the threshold unit (hw/core/threshold.py) compares correctly for all values.

For every accumulator value, threshold and direction (all 2^(2·24+3) input combinations of
the accelerator's default 24-bit accumulator, in every cycle) the unit's output bit is
``acc ≥ T`` (d = +1) or ``acc ≤ T`` (d = −1), forced to 0 in raw mode, one cycle later. The
reference is the sign of the exact difference ``acc − T`` (one bit wider than the operands,
so it cannot overflow), not a comparator.
"""
import pytest
from amaranth.hdl import Mux, Signal, signed

from xnorflow.hw.core import threshold as threshold_module
from xnorflow.hw.core.threshold import ThresholdUnit
from tests.formal.harness import Harness, free, run_proof

pytestmark = pytest.mark.formal

ACC_WIDTH = 24          # the accelerator's default ArrayConfig.acc_width
DEPTH = 2               # one register stage: a 2-step induction covers it


class ThresholdCompares(Harness):
    title = "the threshold unit outputs acc >= T (d=+1) / acc <= T (d=-1) for all values"

    def __init__(self, unit=None, acc_width=ACC_WIDTH):
        super().__init__()
        self.unit = unit if unit is not None else ThresholdUnit(acc_width)
        self.acc_width = acc_width

    def build(self, m):
        m.submodules.unit = unit = self.unit
        w = self.acc_width
        valid, down, raw = free(1), free(1), free(1)
        acc, thr = free(signed(w)), free(signed(w))
        m.d.comb += [unit.valid.eq(valid), unit.acc.eq(acc), unit.threshold.eq(thr),
                     unit.down.eq(down), unit.raw.eq(raw)]

        # Reference: the sign bit of the exact (w+1)-bit difference.
        diff = Signal(signed(w + 1))
        m.d.comb += diff.eq(acc - thr)
        negative, zero = diff[w], diff == 0
        at_least = ~negative                    # acc - T >= 0
        at_most = negative | zero               # acc - T <= 0
        expect_bit = Signal()
        m.d.comb += expect_bit.eq(~raw & Mux(down, at_most, at_least))

        # The unit's outputs are registered: compare them with last cycle's inputs.
        past_bit, past_valid, past_down = Signal(), Signal(), Signal()
        past_acc = Signal(signed(w))
        primed = Signal()
        m.d.sync += [past_bit.eq(expect_bit), past_valid.eq(valid), past_down.eq(down),
                     past_acc.eq(acc), primed.eq(1)]

        self.check(m, ~primed | (unit.out_bit == past_bit),
                   "out_bit is acc >= T when down=0, acc <= T when down=1, 0 in raw mode "
                   "(inputs of the previous cycle)")
        self.check(m, ~primed | ((unit.out_value == past_acc) & (unit.out_valid == past_valid)
                                 & (unit.out_down == past_down)),
                   "out_value, out_valid and out_down are last cycle's acc, valid and down")


class TieCountsAsBelow(ThresholdUnit):
    """Broken on purpose: ``acc == T`` gives 0, i.e. ``>`` / ``<`` instead of ``>=`` / ``<=``."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.acc == self.threshold):
            m.d.sync += self.out_bit.eq(0)
        return m


def test_threshold_unit_outputs_acc_ge_or_le_threshold_for_all_values(tmp_path):
    result = run_proof(ThresholdCompares(), tmp_path, depth=DEPTH)
    print(result.explain())
    assert result.status == "PASS", result.explain()


def test_threshold_proof_catches_a_tie_compared_strictly(tmp_path):
    result = run_proof(ThresholdCompares(TieCountsAsBelow(ACC_WIDTH)), tmp_path, mode="bmc",
                       depth=DEPTH)
    print(result.explain())
    assert result.status == "FAIL", result.explain()
    assert any(msg.startswith("out_bit is acc >= T") for msg in result.failed), result.explain()


def test_threshold_proof_catches_an_ignored_direction(tmp_path, monkeypatch):
    # Broken on purpose: the direction multiplexer always picks acc >= T.
    monkeypatch.setattr(threshold_module, "Mux", lambda sel, down, up: up)
    result = run_proof(ThresholdCompares(), tmp_path, mode="bmc", depth=DEPTH)
    print(result.explain())
    assert result.status == "FAIL", result.explain()
    assert any(msg.startswith("out_bit is acc >= T") for msg in result.failed), result.explain()
