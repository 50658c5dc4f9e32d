"""counter_at: the registered flag equals ``value == at`` in every cycle of a wrapping counter
advanced at random, from reset on, for every position ``at`` (including 0 and the last) and
for the one-position counter; unregistered, the compare itself."""
import random

import pytest
from amaranth.hdl import Elaboratable, Module, Signal

from xnorflow.hw.dataflow.counters import counter, counter_at, wrapped_next
from xnorflow.hw.dataflow.testing import simulate


class _Counted(Elaboratable):
    """A counter over 0..n−1 that moves with ``advance``, and a flag for each position."""

    def __init__(self, n, registered=True):
        self.n, self.registered = n, registered
        self.advance = Signal()
        self.value = counter(n, "value")
        self.flags = []

    def elaborate(self, platform):
        m = Module()
        self.flags[:] = [counter_at(m, self.value, self.n, self.advance, at, f"at{at}",
                                         registered=self.registered)
                         for at in range(self.n)]
        with m.If(self.advance):
            m.d.sync += self.value.eq(wrapped_next(self.value, self.n))
        return m


@pytest.mark.parametrize("registered", [True, False])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_counter_at_flags_equal_the_compare_every_cycle(n, registered):
    dut = _Counted(n, registered)
    rng = random.Random(n)
    seen = []

    async def bench(ctx):
        for _ in range(6 * n + 20):
            ctx.set(dut.advance, rng.random() < 0.6)
            value = ctx.get(dut.value)
            seen.append(value)
            assert [ctx.get(f) for f in dut.flags] == [value == at for at in range(n)]
            await ctx.tick()

    simulate(dut, [bench], name="counter_at")
    assert set(seen) == set(range(n))      # every position was visited
