"""Threshold-compare unit: one per array row, turns accumulator values into output bits."""
from amaranth.hdl import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ThresholdUnit"]


class ThresholdUnit(wiring.Component):
    """Compare an accumulator against a per-channel threshold (design.md contract 4).

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
    One value per cycle; outputs are registered, latency 1 cycle.
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
