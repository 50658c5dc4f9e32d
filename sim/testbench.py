"""cocotb test-bench classes for a byte-stream top (driver, monitor, scoreboard), in the style
of cocotb's ``examples/matrix_multiplier``: small classes with one job each, random idle gaps
on the inputs, random backpressure on the outputs, a scoreboard that owns the checking.

Timing convention (why the falling edge): every process writes its inputs right after the
falling edge and then waits for ``ReadOnly`` of that time step, when the combinational outputs
(``i.ready``, ``o.valid``, ``o.payload``) have settled for those inputs. Nothing changes until
the next rising edge, so a byte is transferred at that rising edge exactly when the values
seen at ``ReadOnly`` say valid and ready are both high: the amaranth.lib.stream rule, with no
race between the test bench and the design's registers.

Only imported inside a cocotb simulation (it imports ``cocotb``).
"""
from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from xnorflow.sw import protocol as P

__all__ = ["ByteStreamDriver", "ByteStreamMonitor", "Scoreboard", "TopBench"]


class ByteStreamDriver:
    """Drives ``<prefix>__payload``/``__valid`` of a stream into the design, honouring
    ``__ready``; after each accepted byte an idle gap follows with probability ``gap``.

    ``send(data)`` queues bytes (frames or garbage alike) and returns at once;
    ``await idle()`` returns when every queued byte has been taken.
    """

    def __init__(self, dut, clk, prefix="i", *, gap=0.0, rng=None):
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.clk = clk
        self.gap = gap
        self.rng = rng or random.Random(1)
        self._pending = deque()
        self.sent = 0
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, data):
        self._pending.extend(bytes(data))

    async def idle(self):
        while self._pending:
            await RisingEdge(self.clk)
        await RisingEdge(self.clk)

    async def _run(self):
        current = None
        while True:
            await FallingEdge(self.clk)
            if current is None and self._pending and not (self.gap and
                                                          self.rng.random() < self.gap):
                current = self._pending[0]
            self.valid.value = current is not None
            self.payload.value = current if current is not None else 0
            await ReadOnly()
            if current is not None and int(self.ready.value):
                self._pending.popleft()  # taken at the coming rising edge
                self.sent += 1
                current = None


class ByteStreamMonitor:
    """Takes bytes from ``<prefix>__payload``/``__valid`` (``__ready`` low with probability
    ``backpressure`` in each cycle), decodes response frames with :mod:`xnorflow.sw.protocol` and hands
    each :class:`~xnorflow.sw.protocol.Response` to ``callback`` and to the ``responses`` queue."""

    def __init__(self, dut, clk, prefix="o", *, backpressure=0.0, rng=None, callback=None):
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.clk = clk
        self.backpressure = backpressure
        self.rng = rng or random.Random(2)
        self.callback = callback
        self.decoder = P.StreamDecoder("response")
        self.responses = Queue()
        self.received = bytearray()
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await FallingEdge(self.clk)
            take = not (self.backpressure and self.rng.random() < self.backpressure)
            self.ready.value = take
            await ReadOnly()
            if take and int(self.valid.value):
                byte = int(self.payload.value)
                self.received.append(byte)
                for resp in self.decoder.feed(bytes([byte])):
                    if self.callback:
                        self.callback(resp)
                    self.responses.put_nowait(resp)


class Scoreboard:
    """Checks every response against the expectation queued for its request, in order.

    An expectation is a :class:`~xnorflow.sw.protocol.Response` (compared exactly), a callable
    ``check(response)`` returning an error message or None, or None (anything goes: e.g. a
    status poll). Errors are collected (:attr:`errors`) so one run reports them all; the test
    asserts :meth:`result` at the end.
    """

    def __init__(self, log=None):
        self.expected = deque()
        self.errors = []
        self.checked = 0
        self.log = log

    def expect(self, expectation):
        self.expected.append(expectation)

    def on_response(self, resp):
        if not self.expected:
            self.errors.append(f"unexpected response {resp}")
            return
        exp = self.expected.popleft()
        self.checked += 1
        if exp is None:
            return
        if isinstance(exp, P.Response):
            msg = None if exp == resp else f"expected {exp}, got {resp}"
        else:
            msg = exp(resp)
        if msg:
            self.errors.append(msg)
            if self.log:
                self.log.error(msg)

    def result(self):
        """Raise AssertionError listing the first errors, or if expectations are left over."""
        if self.expected:
            self.errors.append(f"{len(self.expected)} expected responses never came")
        assert not self.errors, f"{len(self.errors)} scoreboard errors: {self.errors[:5]}"
        return self.checked


class TopBench:
    """Driver + monitor + scoreboard around a top with byte streams ``i`` and ``o``.

    ``await transact(frame, expect)`` sends one request frame, registers its expectation with
    the scoreboard and returns the decoded response (for flows that branch on answers, such as
    polling a status register); ``send(frame, expect)`` only queues (pipelined traffic).
    """

    def __init__(self, dut, *, gap=0.0, backpressure=0.0, seed=1):
        self.dut = dut
        self.clk = dut.clk
        rng = random.Random(seed)
        self.scoreboard = Scoreboard(dut._log)
        self.driver = ByteStreamDriver(dut, self.clk, gap=gap, rng=random.Random(rng.random()))
        self.monitor = ByteStreamMonitor(dut, self.clk, backpressure=backpressure,
                                         rng=random.Random(rng.random()),
                                         callback=self.scoreboard.on_response)

    async def reset(self, cycles=4):
        self.dut.rst.value = 1
        await ClockCycles(self.clk, cycles)
        await FallingEdge(self.clk)
        self.dut.rst.value = 0

    def send(self, frame, expect=None):
        self.scoreboard.expect(expect)
        self.driver.send(frame)

    async def transact(self, frame, expect=None, timeout_cycles=100_000):
        """Send ``frame`` and wait for its response (fails after ``timeout_cycles``)."""
        self.send(frame, expect)
        for _ in range(timeout_cycles):
            if not self.monitor.responses.empty():
                return self.monitor.responses.get_nowait()
            await RisingEdge(self.clk)
        raise AssertionError(f"no response to {bytes(frame[:8]).hex()}... within "
                             f"{timeout_cycles} cycles")

    async def drain(self, count, timeout_cycles=1_000_000):
        """Wait for ``count`` responses (of pipelined ``send`` calls); returns them."""
        out = []
        for _ in range(timeout_cycles):
            while not self.monitor.responses.empty():
                out.append(self.monitor.responses.get_nowait())
            if len(out) >= count:
                return out
            await RisingEdge(self.clk)
        raise AssertionError(f"{len(out)} of {count} responses within {timeout_cycles} cycles")
