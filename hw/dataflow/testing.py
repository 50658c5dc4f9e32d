"""Simulation helpers for the dataflow engines' tests (not gateware; imports nothing from sw/).

Stream drivers and a cycle-stamped monitor for Amaranth's simulator (async testbenches):

* :func:`load` writes ``(select, address, word)`` tuples through an engine's ``wr`` port;
* :func:`send` offers beats on a stream with random gaps (valid held until ready);
* :func:`drive_ready` toggles a stream's ``ready`` at random (stalls) until the test has
  its output (or fails after a cycle limit: a wedged design fails, not hangs);
* :class:`StreamMonitor` records every handshake and every valid cycle of a stream, with the
  cycle number, from one background testbench (the scoreboard's view of the wire).

Waveforms are written only when the environment asks: ``XNF_VCD=dir`` writes
``dir/<name>.vcd``.
"""
import gc
import os
import warnings
from contextlib import contextmanager

from amaranth.hdl import ClockDomain, Module
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

__all__ = ["simulate", "load", "send", "drive_ready", "record_ready", "offered_cycles",
           "StreamMonitor", "rejected"]


def simulate(dut, testbenches, background=(), name="dataflow"):
    """Run ``dut`` with a 1 MHz ``sync`` clock until every testbench in ``testbenches`` has
    returned (``background`` ones, e.g. monitors, are stopped then)."""
    top = Module()
    top.domains.sync = ClockDomain()   # also for purely combinational blocks (no sync logic)
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    vcd_dir = os.environ.get("XNF_VCD")
    if vcd_dir:
        os.makedirs(vcd_dir, exist_ok=True)
        with sim.write_vcd(os.path.join(vcd_dir, f"{name}.vcd")):
            sim.run()
    else:
        sim.run()


async def load(ctx, wr, writes):
    """Write every ``(select, address, word)`` through the write port ``wr``, one every other
    cycle (an engine's fastest: :class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit`'s ``wr``)."""
    for sel, addr, word in writes:
        ctx.set(wr.sel, sel)
        ctx.set(wr.addr, addr)
        ctx.set(wr.data, word)
        ctx.set(wr.en, 1)
        await ctx.tick()
        ctx.set(wr.en, 0)
        await ctx.tick()


async def send(ctx, stream, beats, rng=None, gap=0.0):
    """Offer ``beats`` in order on ``stream``; before each beat, idle cycles with probability
    ``gap`` each (``rng`` a numpy Generator). ``valid`` and the payload are held until the
    handshake, as the stream rules demand."""
    for beat in beats:
        while rng is not None and gap and rng.random() < gap:
            ctx.set(stream.valid, 0)
            ctx.set(stream.payload, int(rng.integers(1 << min(len(stream.payload), 62))))  # garbage
            await ctx.tick()
        ctx.set(stream.payload, beat)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def drive_ready(ctx, stream, done, rng=None, stall=0.0, max_cycles=100_000):
    """Hold ``stream.ready`` high except, with probability ``stall`` per cycle, low; return
    when ``done()`` is true. A design that stops producing fails the test (``TimeoutError``
    after ``max_cycles``) instead of hanging it."""
    for _ in range(max_cycles):
        if done():
            return
        ctx.set(stream.ready, int(rng is None or not stall or rng.random() >= stall))
        await ctx.tick()
    raise TimeoutError(f"drive_ready: {max_cycles} cycles without the expected output")


class StreamMonitor:
    """Cycle-stamped record of one stream: ``beats`` = [(cycle, payload)] of every handshake,
    ``valid_cycles`` = cycles in which ``valid`` was high. Cycle ``n`` is the clock period
    that ends with the n-th rising edge of the simulation (from 0)."""

    def __init__(self, stream):
        self.stream = stream
        self.beats = []
        self.valid_cycles = []

    async def testbench(self, ctx):
        s = self.stream
        cycle = 0
        async for _, _, valid, ready, payload in ctx.tick().sample(s.valid, s.ready, s.payload):
            if valid:
                self.valid_cycles.append(cycle)
                if ready:
                    self.beats.append((cycle, payload))
            cycle += 1

    def payloads(self):
        return [p for _, p in self.beats]

    def cycles(self):
        return [c for c, _ in self.beats]


@contextmanager
def rejected():
    """Silence the "created but never used" warning of a component whose constructor raises
    inside this block (Amaranth counts it as created before ``__init__`` runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            yield
        finally:
            gc.collect()


async def record_ready(ctx, stream, done, rng, stall, ready):
    """Drive ``stream.ready`` low with probability ``stall`` per cycle, appending each cycle's
    value to ``ready``, until ``done()`` (a wedged design fails, not hangs)."""
    while not done():
        ready.append(int(rng.random() >= stall))
        ctx.set(stream.ready, ready[-1])
        await ctx.tick()
        assert len(ready) < 100_000, "the design stopped producing"


def offered_cycles(mon):
    """The first cycle each beat a :class:`StreamMonitor` saw was offered (valid): the source
    holds a beat until it is taken."""
    valid, offered, after = mon.valid_cycles, [], -1
    for taken in mon.cycles():
        offered.append(next(c for c in valid if c > after))
        after = taken
    return offered
