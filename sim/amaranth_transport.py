"""A :class:`xnorflow.sw.driver.Transport` that runs the Amaranth (Python) simulation of the accelerator.

The same frames the driver would send over a serial port go into the simulated ``i`` byte
stream; the response bytes are collected from ``o`` and cut into frames with
:class:`xnorflow.sw.protocol.StreamDecoder`. Slower than the Verilator transport (``sim/
verilator_transport.py``) but needs no C++ build: good for small configurations and for
debugging with waveforms (``XNF_VCD=path.vcd`` or ``vcd=``).

Example::

    from xnorflow.sim.amaranth_transport import AmaranthTransport
    from xnorflow.sw.driver import OverlayDevice
    with AmaranthTransport(config="2x2x8,w_depth=64") as t:
        acc = OverlayDevice(t)
        print(acc.ident())
"""
from __future__ import annotations

import os
import random

from amaranth.sim import Simulator

from xnorflow.hw.link.testing import ByteStreamBench
from xnorflow.hw.top import OverlayAccelerator
from xnorflow.sw import protocol as P
from xnorflow.sw.driver import Transport, TransportError, TransportTimeout

__all__ = ["AmaranthTransport"]


class AmaranthTransport(Transport):
    """Frames in, frames out, through an Amaranth simulation.

    Parameters
    ----------
    top : wiring.Component, optional
        Any design with byte streams ``i: In(stream.Signature(8))`` and
        ``o: Out(stream.Signature(8))`` speaking the link protocol. Default: ``xnorflow.hw.top.
        OverlayAccelerator(config, max_payload=max_payload, timeout=timeout)``.
    config : ArrayConfig or str, optional
        The accelerator's configuration (when ``top`` is not given).
    max_payload, timeout : int
        The link's parameters (when ``top`` is not given). The timeout is short by default
        so that a truncated frame is answered quickly in simulation.
    p_gap, p_stall : float
        Probability of an idle cycle before each request byte, and of ``o.ready`` being low
        in a cycle (random stalls, seeded by ``seed``).
    max_cycles : int
        Cycles a :meth:`transact` may take before :class:`~xnorflow.sw.driver.TransportTimeout`.
    vcd : str, optional
        Write a waveform there (also taken from the ``XNF_VCD`` environment variable).
    """

    def __init__(self, top=None, *, config=None, max_payload=256, timeout=2000,
                 p_gap=0.0, p_stall=0.0, seed=1, max_cycles=200_000, vcd=None):
        if top is None:
            top = OverlayAccelerator(config, max_payload=max_payload, timeout=timeout)
        self.top = top
        self.max_cycles = max_cycles
        self.sim = Simulator(top)
        self.sim.add_clock(1e-6)
        self.bench = ByteStreamBench(self.sim, top.i, top.o, rng=random.Random(seed),
                                     p_gap=p_gap, p_stall=p_stall)
        self.decoder = P.StreamDecoder("response")
        self._vcd = None
        vcd = vcd or os.environ.get("XNF_VCD")
        if vcd:
            self._vcd = self.sim.write_vcd(vcd)
            self._vcd.__enter__()
        self._closed = False

    @property
    def cycles(self):
        """Clock cycles simulated so far."""
        return self.bench.cycle

    def _step(self):
        """Advance the simulation by one clock cycle."""
        if self._closed:
            raise TransportError("the transport is closed")
        start = self.bench.cycle
        while self.bench.cycle == start:
            self.sim.advance()

    def transact(self, request: bytes) -> bytes:
        (response,) = self.transact_many([request])
        return response

    def transact_many(self, requests) -> list:
        """Send all request frames back to back (the link answers them in order); return the
        response frames as raw bytes."""
        requests = list(requests)
        self.bench.send(b"".join(bytes(r) for r in requests))
        frames, start = [], self.cycles
        while len(frames) < len(requests):
            self._step()
            try:
                frames += self.decoder.feed(self.bench.take_received())
            except P.FrameError as e:
                self.decoder.reset()
                raise TransportError(f"malformed response from the simulated device: {e}") from e
            if self.cycles - start > self.max_cycles:
                raise TransportTimeout(f"{len(frames)} of {len(requests)} responses after "
                                       f"{self.max_cycles} cycles")
        if self.bench.errors:
            raise TransportError("; ".join(self.bench.errors))
        return [f.encode() for f in frames]

    def send_raw(self, data: bytes):
        """Queue arbitrary bytes (e.g. a damaged frame) without waiting for anything."""
        self.bench.send(data)

    def receive(self, cycles) -> list:
        """Run ``cycles`` cycles; return the response frames (raw bytes) completed meanwhile."""
        frames = []
        for _ in range(cycles):
            self._step()
            frames += self.decoder.feed(self.bench.take_received())
        return [f.encode() for f in frames]

    def wait(self, cycles):
        """Simulate ``cycles`` cycles (e.g. while the core runs)."""
        for _ in range(cycles):
            self._step()

    def close(self):
        if self._vcd is not None and not self._closed:
            self._vcd.__exit__(None, None, None)
        self._closed = True
