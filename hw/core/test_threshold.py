"""Threshold-compare unit against threshold_bits, incl. saturated and d = −1 channels."""
import numpy as np

from xnorflow.hw.core.testing import run
from xnorflow.hw.core.threshold import ThresholdUnit
from xnorflow.sw.layers.dense import threshold_bits


def test_threshold_vs_golden():
    rng = np.random.default_rng(3)
    W, top = 12, 300                   # accumulator range [-top, top] fits 12 signed bits
    n = 400
    acc = rng.integers(-top, top + 1, n)
    thr = rng.integers(-top, top + 1, n)
    thr[::7] = top + 1                 # saturated: never ≥ (d=+1) / always ≤ (d=−1)
    thr[3::7] = -top - 1               # saturated the other way
    thr[5::11] = acc[5::11]            # equality sits exactly on the boundary
    direction = rng.choice([-1, 1], n)
    raw = rng.random(n) < 0.1
    want = threshold_bits(acc, thr, direction) & ~raw
    dut = ThresholdUnit(W)
    got = []

    async def tb(ctx):
        for i in range(n + 1):
            if i < n:
                ctx.set(dut.valid, 1); ctx.set(dut.acc, int(acc[i]))
                ctx.set(dut.threshold, int(thr[i])); ctx.set(dut.down, int(direction[i] < 0))
                ctx.set(dut.raw, int(raw[i]))
            else:
                ctx.set(dut.valid, 0)
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append((ctx.get(dut.out_bit), ctx.get(dut.out_value)))

    run(dut, tb, name="threshold")
    assert [g[0] for g in got] == [int(v) for v in want]
    assert [g[1] for g in got] == [int(v) for v in acc]
