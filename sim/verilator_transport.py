"""The fast Verilator transport: a C++ harness process driven over pipes.

Python sends one message per *transaction* (a batch of request bytes plus "how many response
frames to wait for" and a cycle bound); the harness clocks the design in C++ until the
responses are out or the bound is reached, then answers with the response bytes and the cycle
counts. Nothing in Python runs per clock cycle. The pipe protocol is documented in
``sim/harness/harness.cpp`` and ``docs/simulation.md``.
"""
from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from xnorflow.sim.build import (BUILD_ROOT, TopSpec, build_harness, trace_format, wave_suffix,
                                waves_requested)
from xnorflow.sw.driver import Transport, TransportError, TransportTimeout

__all__ = ["VerilatorTransport", "Exchange", "DEFAULT_MAX_CYCLES", "CYCLES_PER_BYTE"]

#: The cycle bound of a transaction is ``DEFAULT_MAX_CYCLES + CYCLES_PER_BYTE·len(request)``
#: unless the caller gives one: generous for a link taking a byte every two cycles, and small
#: enough that a wedged design is reported within a fraction of a second of simulation.
DEFAULT_MAX_CYCLES = 200_000
CYCLES_PER_BYTE = 16

_REPLY = struct.Struct("<BQQIII")


@dataclass
class Exchange:
    """What the harness reports for one op.

    status : 0 done, 1 the cycle bound was reached first.
    cycles : cycles this op ran; total_cycles : cycles since the harness started.
    consumed : request bytes the design accepted; frames : complete response frames (bytes);
    out : every byte the design sent during the op (frames and anything between them).
    """

    status: int
    cycles: int
    total_cycles: int
    consumed: int
    frames: list = field(default_factory=list)
    out: bytes = b""

    @property
    def timed_out(self):
        return self.status == 1


class VerilatorTransport(Transport):
    """:class:`~xnorflow.sw.driver.Transport` over the Verilator harness of a top.

    Parameters
    ----------
    spec : TopSpec or path
        The top to simulate (built and cached by :func:`xnorflow.sim.build.build_harness`), or the path
        of an already built harness executable.
    gaps : (in_permille, out_permille)
        Probability (per mille) of an idle cycle on ``i.valid`` after each accepted byte and of
        ``o.ready`` being low in a cycle: random idle gaps and backpressure, deterministic for a
        given ``seed``. ``(0, 0)`` (default) streams at full speed.
    max_cycles : int or None
        Default cycle bound per transaction (see :data:`DEFAULT_MAX_CYCLES`).
    trace : path or None
        Write a waveform there, FST or VCD by its suffix (:func:`xnorflow.sim.build.trace_format`;
        default: ``build/sim/waves/<name>-<pid>.fst`` when ``XNORFLOW_WAVES=1``, else none;
        ``.vcd`` where the FST writer cannot be built, see :func:`xnorflow.sim.build.fst_available`).
        Needs a tracing build, made on demand.
    """

    def __init__(self, spec, *, gaps=(0, 0), seed=1, max_cycles=None, trace=None):
        if isinstance(spec, TopSpec):
            if trace is None and waves_requested():
                trace = BUILD_ROOT / "waves" / f"{spec.name}-{os.getpid()}{wave_suffix()}"
            exe = build_harness(spec, waves=False if trace is None else trace_format(trace))
        else:
            exe = Path(spec)
        cmd = [str(exe)]
        if trace is not None:
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--trace", str(trace)]
        self.trace = trace
        self.max_cycles = max_cycles
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      bufsize=0)
        self._in = self._proc.stdin
        self._out = self._proc.stdout
        self.total_cycles = 0
        self.last = None
        self.set_gaps(*gaps, seed=seed)
        self.reset()  # also learns the cycle count (the harness resets once at start, too)

    # -- low level ---------------------------------------------------------------------------

    def _send(self, data):
        try:
            self._in.write(data)
        except (BrokenPipeError, ValueError, OSError) as e:
            raise TransportError(f"the Verilator harness is gone ({self._exit_text()})") from e

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self._out.read(n - len(buf))
            if not chunk:
                raise TransportError(f"the Verilator harness stopped answering "
                                     f"({self._exit_text()})")
            buf += chunk
        return bytes(buf)

    def _exit_text(self):
        rc = self._proc.poll()
        return "still running" if rc is None else f"exit status {rc}"

    def _reply(self):
        status, cycles, total, consumed, nframes, nout = _REPLY.unpack(self._recv(_REPLY.size))
        bounds = struct.unpack(f"<{2 * nframes}I", self._recv(8 * nframes)) if nframes else ()
        out = self._recv(nout) if nout else b""
        frames = [out[bounds[2 * k]:bounds[2 * k + 1]] for k in range(nframes)]
        self.total_cycles = total
        self.last = Exchange(status, cycles, total, consumed, frames, out)
        return self.last

    def exchange(self, data=b"", frames=1, max_cycles=None, *, exact=False):
        """Feed ``data`` and clock until ``frames`` complete response frames are out (or, with
        ``exact``, for exactly ``max_cycles`` cycles). Returns an :class:`Exchange`; never runs
        more than ``max_cycles`` (default: :attr:`max_cycles` or the byte-count formula)."""
        data = bytes(data)
        if max_cycles is None:
            max_cycles = self.max_cycles or DEFAULT_MAX_CYCLES + CYCLES_PER_BYTE * len(data)
        self._send(b"X" + struct.pack("<BIIQ", 1 if exact else 0, len(data), frames,
                                      int(max_cycles)) + data)
        return self._reply()

    def idle(self, cycles):
        """Clock ``cycles`` cycles with no input; returns the :class:`Exchange` (any frames
        the design sent meanwhile, e.g. a link's TIMEOUT answer)."""
        return self.exchange(b"", 0, cycles, exact=True)

    def reset(self, cycles=4):
        """Hold ``rst`` for ``cycles`` cycles (the harness also resets once at start)."""
        self._send(b"R" + struct.pack("<I", cycles))
        return self._reply()

    def set_gaps(self, in_permille=0, out_permille=0, seed=1):
        """Random idle gaps on ``i.valid`` and backpressure on ``o.ready`` (per mille)."""
        self._send(b"G" + struct.pack("<HHQ", int(in_permille), int(out_permille),
                                      int(seed) & (2**64 - 1)))

    # -- Transport API -----------------------------------------------------------------------

    @property
    def cycles(self):
        """Simulated clock cycles since the harness started."""
        return self.total_cycles

    def transact(self, request, max_cycles=None):
        """Send one request frame, return its response frame (bytes). Raises
        :class:`~xnorflow.sw.driver.TransportTimeout` if no complete frame came within the bound."""
        return self.transact_many([request], max_cycles=max_cycles)[0]

    def transact_many(self, requests, max_cycles=None):
        """Send several request frames back to back in one harness op (the link takes the
        next request while answering the previous one) and return their response frames."""
        data = b"".join(bytes(r) for r in requests)
        ex = self.exchange(data, len(requests), max_cycles)
        if ex.timed_out:
            raise TransportTimeout(
                f"{len(ex.frames)} of {len(requests)} response frames after {ex.cycles} cycles "
                f"({ex.consumed} of {len(data)} request bytes taken): the design did not "
                f"answer within the cycle bound")
        return ex.frames

    def wait(self, cycles):
        """Skip ``cycles`` idle cycles in C++ (a run is in progress); frames that arrive
        meanwhile would be unexpected and raise :class:`~xnorflow.sw.driver.TransportError`."""
        if cycles > 0:
            ex = self.idle(int(cycles))
            if ex.out:
                raise TransportError(f"unsolicited bytes from the design while waiting: "
                                     f"{ex.out[:32].hex()}")

    def close(self):
        """Stop the harness (flushes the waveform, if any)."""
        if self._proc is None:
            return
        try:
            self._in.write(b"Q")
            self._in.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
        self._proc = None
