"""The host driver: one :class:`OverlayDevice` API over any :class:`Transport`.

As in Glasgow, the driver is written against an abstract transport with hardware and
simulation implementations, so the very same code runs against

* :class:`SerialTransport` - a board behind a UART (pyserial),
* the simulated boards of ``sim/`` (the Verilator C++ harness, Amaranth's simulator), which
  implement :class:`Transport` from the floor above; this module names none of them
  (``flow/transports.py`` opens one by name).

A transport moves whole frames: ``transact(request) -> response`` with the bytes encoded and
decoded by :mod:`xnorflow.sw.protocol` (the one protocol implementation). The accelerator's memory
layout, descriptors, input encoding and output decoding come from :mod:`xnorflow.sw.program`, its
address map and control registers from :mod:`xnorflow.hw.core.memory_map`.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass

import numpy as np

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.sw import program
from xnorflow.sw import protocol as P
from xnorflow.sw.errors import XnorflowError

__all__ = ["Transport", "TransportError", "TransportTimeout", "SerialTransport",
           "DriverError", "OverlayDevice", "write_frames", "read_frames"]


class TransportError(XnorflowError):
    """The transport failed: port gone, simulator process died, garbage on the line."""


class TransportTimeout(TransportError):
    """No complete response within the transport's bound (seconds on a port, cycles in a
    simulation)."""


class DriverError(XnorflowError):
    """The accelerator answered, but not what the driver expected (wrong ID, run error,
    model does not fit)."""


class Transport(abc.ABC):
    """Moves protocol frames to a device and back.

    Subclasses implement :meth:`transact` and :meth:`close`; :meth:`transact_many` may be
    overridden to pipeline several requests (the default sends them one by one). ``cycles`` is
    the simulated cycle count for simulators, ``None`` for hardware.
    """

    cycles = None

    @abc.abstractmethod
    def transact(self, request: bytes) -> bytes:
        """Send one request frame; return the one response frame (raw bytes)."""

    def transact_many(self, requests) -> list:
        """Send request frames in order; return their response frames in order."""
        return [self.transact(r) for r in requests]

    def wait(self, cycles):
        """Hint: nothing is expected from the device for about ``cycles`` clock cycles (a run
        is in progress). Simulators skip ahead; hardware ignores it (polling does the rest)."""

    @abc.abstractmethod
    def close(self):
        """Release the port or stop the simulator."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """A board on a serial port (the UART bridge of ``hw/board``).

    Parameters
    ----------
    port : str
        Port name (``/dev/ttyUSB1``, ``COM3``, or any pyserial URL such as ``loop://``).
    baudrate : int
        Line rate; must match the bitstream's UART.
    timeout : float
        Seconds to wait for a complete response frame (per transaction; a run waits longer,
        see ``OverlayDevice``'s ``run_timeout``).
    """

    def __init__(self, port, baudrate=115200, timeout=2.0):
        try:
            import serial
        except ImportError as e:  # pragma: no cover - pyserial is a dependency
            raise TransportError("pyserial is not installed") from e
        self.port_name = port
        self.timeout = timeout
        try:
            self._port = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, ValueError) as e:
            raise TransportError(f"cannot open serial port {port!r}: {e}") from None
        self._port.reset_input_buffer()
        self._decoder = P.StreamDecoder("response")

    def transact(self, request, timeout=None):
        """Write the frame; read until one response frame is complete or ``timeout`` s."""
        import serial
        timeout = self.timeout if timeout is None else timeout
        try:
            self._port.write(bytes(request))
            self._port.flush()
            deadline = time.monotonic() + timeout
            buf = bytearray()
            while time.monotonic() < deadline:
                chunk = self._port.read(max(1, self._port.in_waiting))
                if not chunk:
                    continue
                buf += chunk
                frame = _split_frame(buf)
                if frame is not None:
                    return frame
        except serial.SerialException as e:
            raise TransportError(f"serial port {self.port_name!r}: {e}") from None
        raise TransportTimeout(
            f"no complete response from {self.port_name!r} within {timeout:.1f} s "
            f"({len(buf)} bytes received): is the board programmed with an xnorflow bitstream, "
            f"and is the baud rate right?")

    def close(self):
        if self._port is not None:
            self._port.close()
            self._port = None


def _split_frame(buf):
    """The first complete response frame in ``buf`` (bytes before a sync byte dropped), or
    None. Only the length field is read here; decoding is xnorflow.sw.protocol's job."""
    start = buf.find(P.RSP_SYNC)
    if start < 0:
        buf.clear()
        return None
    del buf[:start]
    if len(buf) < P.HEADER_BYTES:
        return None
    total = P.OVERHEAD_BYTES + (buf[2] | buf[3] << 8)
    if len(buf) < total:
        return None
    frame = bytes(buf[:total])
    del buf[:total]
    return frame


# --------------------------------------------------------------------------- the accelerator

def write_frames(addr, data, max_payload=P.DEFAULT_MAX_PAYLOAD):
    """WRITE request frames putting ``data`` at bus addresses ``addr..``, each payload at most
    ``max_payload`` bytes (address included)."""
    data = bytes(data)
    step = max_payload - P.ADDR_BYTES
    return [P.write_request(addr + o, data[o:o + step]) for o in range(0, len(data), step)]


def read_frames(addr, count, max_payload=P.DEFAULT_MAX_PAYLOAD):
    """READ request frames for ``count`` bytes from ``addr..``, each answer at most
    ``max_payload`` bytes."""
    return [P.read_request(addr + o, min(max_payload, count - o))
            for o in range(0, count, max_payload)]


@dataclass
class RunFrames:
    """The request frames of one run, in the order the driver sends them.

    start : inputs, BATCH and CTRL=START writes. status : one poll of STATUS ERROR TOTAL
    LAYERS_DONE (16 bytes). counters : the per-descriptor cycle counters. outputs : the last
    layer's integers.
    """

    start: list
    status: list
    counters: list
    outputs: list

    def traffic(self, polls=1):
        """``{"to_device", "from_device"}``: bytes on the link for the run with ``polls`` STATUS
        polls (a WRITE is answered by an empty response, a READ by its bytes)."""
        reqs = self.start + self.status * polls + self.counters + self.outputs
        back = sum(P.OVERHEAD_BYTES + _read_count(r) for r in reqs)
        return {"to_device": sum(len(r) for r in reqs), "from_device": back}


def _read_count(frame):
    """Payload bytes the answer to an encoded request frame carries: a READ's ``count``, else 0."""
    req = P.decode_request(frame)
    if req.cmd != P.Cmd.READ:
        return 0
    return int.from_bytes(req.payload[P.ADDR_BYTES:P.ADDR_BYTES + 2], "little")


def run_frames(layers, config, x, max_payload=P.DEFAULT_MAX_PAYLOAD):
    """:class:`RunFrames` running inputs ``x`` (uint8 [B, N], one run) through loaded ``layers``."""
    n = len(x)
    start = [r for addr, data in program.encode_model_inputs(layers, x, config)
             for r in write_frames(addr, data, max_payload)]
    start += write_frames(mm.REG_BATCH, n.to_bytes(4, "little"), max_payload)
    start += write_frames(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]), max_payload)
    out_addr, out_len = program.output_region(layers, config, n)
    return RunFrames(
        start=start,
        status=read_frames(mm.REG_STATUS, 16, max_payload),
        counters=read_frames(mm.LAYER_CYCLES_BASE, 4 * len(program.hw_steps(layers)), max_payload),
        outputs=read_frames(out_addr, out_len, max_payload))


#: A simulated run still busy after ``HUNG_RUN_FACTOR`` times its predicted cycles plus
#: ``HUNG_RUN_SLACK`` (the STATUS polls' own traffic on the link) is reported hung
#: (:meth:`OverlayDevice._wait_idle`).
HUNG_RUN_FACTOR = 2
HUNG_RUN_SLACK = 20_000


class OverlayDevice:
    """The accelerator behind a :class:`Transport`: identify, load a model, run inputs.

    Parameters
    ----------
    transport : Transport
    config : ArrayConfig, str or None
        The build's array configuration (memory sizes decide batch limits and layout). None:
        taken from the IDENT block's configuration bytes when they carry the ``PxQxK,...``
        text of :meth:`xnorflow.hw.config.ArrayConfig.format`, else from the core's CONFIG register
        (P, Q, K, acc_width) with default memory depths.
    poll_limit : int
        STATUS polls after the predicted run time before giving up on hardware (each poll is
        a full request/response round trip on the link). In a simulation (the transport
        counts ``cycles``) the bound is in simulated cycles instead: :data:`HUNG_RUN_FACTOR`
        times the cycle model's prediction plus :data:`HUNG_RUN_SLACK` (:meth:`_wait_idle`).

    Every response is decoded with :mod:`xnorflow.sw.protocol`; anything but an OK answer raises
    :class:`~xnorflow.sw.protocol.DeviceError` (a bus error, a CRC error on the way in, ...).
    """

    #: STATUS's busy bit in this core's memory map
    STATUS_BUSY = mm.STATUS_BUSY

    def __init__(self, transport, config=None, *, poll_limit=10_000):
        self.transport = transport
        self.poll_limit = poll_limit
        self._ident = None
        self._config = None if config is None else _parse_config(config)
        self.model = None
        self.layers = None
        self.last_counters = None
        self.batches = []  # per run() batch: {"batch", "total", "by_layer"}

    # -- frames --------------------------------------------------------------------------------

    def _exchange(self, requests):
        """Send request frames (pipelined when the transport can), return decoded payloads."""
        frames = self.transport.transact_many(list(requests))
        if len(frames) != len(requests):
            raise TransportError(f"{len(requests)} requests got {len(frames)} responses")
        return [P.check_response(P.decode_response(f)) for f in frames]

    def _wait_idle(self, status_req, predicted, what):
        """Poll the status registers (``status_req``, whose answer starts with STATUS) until
        the run is no longer busy; returns their bytes. Gives up with a DriverError after
        ``poll_limit`` polls on hardware, or, in a simulation, once the run has taken
        ``HUNG_RUN_FACTOR·predicted + HUNG_RUN_SLACK`` simulated cycles since the first poll:
        the cycle model is exact, so a run past twice its prediction is hung, and the
        simulator reports it in seconds instead of after 10,000 polls (~17 minutes of the
        Amaranth simulator)."""
        start = self.transport.cycles
        bound = None if start is None else HUNG_RUN_FACTOR * predicted + HUNG_RUN_SLACK
        polls = 0
        while True:
            regs = b"".join(self._exchange(status_req))
            if not int.from_bytes(regs[0:4], "little") & self.STATUS_BUSY:
                return regs
            polls += 1
            if bound is None and polls >= self.poll_limit:
                raise DriverError(f"the run of {what} is still busy after {self.poll_limit} "
                                  f"status polls (predicted {predicted} cycles)")
            if bound is not None and self.transport.cycles - start > bound:
                raise DriverError(f"the run of {what} is still busy after "
                                  f"{self.transport.cycles - start} simulated cycles (predicted "
                                  f"{predicted}; the bound is {bound})")
            self.transport.wait(max(64, predicted // 16))

    @property
    def max_payload(self):
        """Largest request/response payload of the link (from IDENT)."""
        return self.ident().max_payload

    def ident(self):
        """The link's :class:`~xnorflow.sw.protocol.Ident` block (read once, then cached)."""
        if self._ident is None:
            (payload,) = self._exchange([P.ident_request()])
            self._ident = P.Ident.decode(payload)
        return self._ident

    def write_requests(self, addr, data):
        """WRITE frames putting ``data`` at ``addr..``, split to fit the max payload."""
        return write_frames(addr, data, self.max_payload)

    def read_requests(self, addr, count):
        """READ frames for ``count`` bytes from ``addr..``, split to fit the max payload."""
        return read_frames(addr, count, self.max_payload)

    def write(self, addr, data):
        """Write bytes to the core's bus (split into as many frames as needed)."""
        self._exchange(self.write_requests(addr, data))

    def read(self, addr, count):
        """Read ``count`` bytes from the core's bus."""
        return b"".join(self._exchange(self.read_requests(addr, count)))

    def read32(self, addr):
        return int.from_bytes(self.read(addr, 4), "little")

    # -- configuration -------------------------------------------------------------------------

    @property
    def config(self):
        """The build's :class:`xnorflow.hw.config.ArrayConfig` (see the class parameters)."""
        if self._config is None:
            self._config = self._discover_config()
        return self._config

    def _discover_config(self):
        """The build's configuration: the IDENT block's text when it carries one, else the
        core's CONFIG and DEPTHS_* registers (:func:`xnorflow.hw.core.memory_map.config_from_registers`)."""
        text = self.ident().config
        try:
            return ArrayConfig.parse(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
        ident = self.read32(mm.REG_ID)
        if ident != mm.ID_VALUE:
            raise DriverError(f"the device does not identify as an xnorflow core (ID register "
                              f"0x{ident:08x})")
        depths = self.read(mm.REG_DEPTHS_W_IN, mm.REG_END - mm.REG_DEPTHS_W_IN)
        words = [int.from_bytes(depths[i:i + 4], "little") for i in range(0, len(depths), 4)]
        return mm.config_from_registers(self.read32(mm.REG_CONFIG), *words)

    # -- model ---------------------------------------------------------------------------------

    def load(self, model, writes=None):
        """Write ``model``'s descriptors, weights and thresholds (``xnorflow.sw.program.build_program``).

        ``model`` is a :class:`~xnorflow.sw.golden.CompiledModel`; raises
        ``xnorflow.sw.program.ProgramError`` naming the layer if it does not fit this build.
        ``writes``: the program already built for this model and build (several devices
        loading one model build it once).
        """
        if writes is None:
            writes = program.build_program(model.layers, self.config)
        reqs = [r for addr, data in writes for r in self.write_requests(addr, data)]
        self._exchange(reqs)
        self.model = model
        self.layers = list(model.layers)
        self.max_batch = program.max_batch(self.layers, self.config)
        self.batches = []

    def run(self, x, *, check=False, batch=None):
        """Run unsigned inputs ``x`` (uint8 [B, N]) through the loaded model.

        Returns ``(acc, predictions)``: the last layer's integers (int64 [B, C]) as the core
        computed them, and the host-side predictions (the head's argmax). Batches larger than
        the build's memories take several runs. With ``check``, every integer is compared with
        the golden model and a mismatch raises :class:`DriverError`.
        """
        if self.model is None:
            raise DriverError("no model loaded: call load(model) first")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.layers[0].in_features:
            raise DriverError(f"inputs must be [batch, {self.layers[0].in_features}], "
                              f"got {list(x.shape)}")
        step = min(batch or self.max_batch, self.max_batch)
        outs = [self._run_batch(x[s:s + step]) for s in range(0, len(x), step)]
        acc = np.concatenate(outs) if outs else np.zeros((0, self.layers[-1].out_features),
                                                          np.int64)
        if check:
            want = self.model.forward(x)[-1][0]
            bad = np.argwhere(acc != want)
            if bad.size:
                b, c = bad[0]
                raise DriverError(f"{len(bad)} integers differ from the golden model; first: "
                                  f"sample {b} class {c}: core {acc[b, c]}, golden {want[b, c]}")
        return acc, self.model.head.scores(acc).argmax(axis=1)

    def _run_batch(self, x):
        cfg, layers, n = self.config, self.layers, len(x)
        frames = run_frames(layers, cfg, x, self.max_payload)
        self._exchange(frames.start)
        # Let a simulator skip ahead to the predicted end of the run (a no-op on hardware),
        # so the status poll below normally succeeds the first time.
        predicted = program.predict_cycles(layers, cfg, n)
        self.transport.wait(predicted["total"])
        regs_req, lc_req, out_req = frames.status, frames.counters, frames.outputs
        n_desc = len(program.hw_steps(layers))
        # Poll the registers only (a UART would otherwise re-read the outputs every poll);
        # the first poll normally finds the run over thanks to wait() above.
        regs = self._wait_idle(regs_req, predicted["total"], f"{n} samples")
        status = int.from_bytes(regs[0:4], "little")
        error = int.from_bytes(regs[4:8], "little")
        if status & mm.STATUS_ERROR or error:
            raise DriverError(f"the core stopped with error {mm.ERROR_NAMES.get(error, error)} "
                              f"(status 0x{status:02x})")
        answers = self._exchange(lc_req + out_req)
        lc = b"".join(answers[:len(lc_req)])
        data = b"".join(answers[len(lc_req):])
        by_layer = program.counters_by_layer(
            layers, [int.from_bytes(lc[4 * k:4 * k + 4], "little") for k in range(n_desc)])
        self.last_counters = {"batch": n, "total": int.from_bytes(regs[8:12], "little"),
                              "layers_done": int.from_bytes(regs[12:16], "little"),
                              "by_layer": by_layer, "predicted": predicted}
        self.batches.append(self.last_counters)
        return program.decode_outputs(data, layers, cfg, n)

    # -- status ------------------------------------------------------------------------------

    def status(self):
        """``{"busy", "done", "error", "error_name"}`` from the STATUS and ERROR registers."""
        regs = self.read(mm.REG_STATUS, 8)
        status = int.from_bytes(regs[:4], "little")
        error = int.from_bytes(regs[4:], "little")
        return {"busy": bool(status & mm.STATUS_BUSY), "done": bool(status & mm.STATUS_DONE),
                "error": error, "error_name": mm.ERROR_NAMES.get(error, str(error))}

    def counters(self):
        """Cycle counters of the last run, read from the core:
        ``{"total", "layers_done", "by_layer": {layer name or index: cycles}}``."""
        total = self.read32(mm.REG_TOTAL_CYCLES)
        done = self.read32(mm.REG_LAYERS_DONE)
        n = len(program.hw_steps(self.layers)) if self.layers else done
        lc = self.read(mm.LAYER_CYCLES_BASE, 4 * n) if n else b""
        values = [int.from_bytes(lc[4 * k:4 * k + 4], "little") for k in range(n)]
        by_layer = (program.counters_by_layer(self.layers, values) if self.layers
                    else dict(enumerate(values)))
        return {"total": total, "layers_done": done, "by_layer": by_layer}


def _parse_config(config):
    return ArrayConfig.parse(config)
