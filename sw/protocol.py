"""The host-link protocol: the one encoder/decoder shared by the RTL tests and the driver.

Pure Python (no Amaranth). The wire format is specified in ``docs/protocol.md``; in short:

request  (host -> device): ``A5 | cmd | len (u16 LE) | payload[len] | crc (u16 BE)``
response (device -> host): ``5A | status | len (u16 LE) | payload[len] | crc (u16 BE)``

The CRC is CRC-16/CCITT-FALSE (width 16, polynomial 0x1021, init 0xFFFF, not reflected,
no final XOR) over every byte after the sync byte up to the end of the payload, sent
most-significant byte first, so the CRC run over ``cmd .. crc`` of an intact frame is 0.

Contents
--------
- constants: :data:`REQ_SYNC`, :data:`RSP_SYNC`, :class:`Cmd`, :class:`Status`, ...
- CRC: :func:`crc16_bitwise` (table-free reference) and :func:`crc16` (table-driven).
- frames: :func:`encode_request`, :func:`decode_request`, :func:`encode_response`,
  :func:`decode_response`, and the builders :func:`ident_request`, :func:`write_request`,
  :func:`read_request`.
- :class:`StreamDecoder`: feed bytes as they arrive, get complete frames back (either
  direction), garbage before a sync byte skipped.
- :class:`Ident`: the identification block answered to IDENT.
- :class:`ReferenceLink`: a byte-exact, pure-Python model of the device side (the gateware
  in ``hw/link``), used as the tests' oracle and usable as a loopback transport.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from xnorflow.sw.errors import XnorflowError

__all__ = [
    "REQ_SYNC", "RSP_SYNC", "PROTOCOL_VERSION", "IDENT_MAGIC", "HEADER_BYTES", "CRC_BYTES",
    "OVERHEAD_BYTES", "ADDR_BYTES", "DEFAULT_MAX_PAYLOAD", "CRC16_POLY", "CRC16_INIT",
    "Cmd", "Status",
    "crc16_bitwise", "crc16",
    "ProtocolError", "FrameError", "SyncError", "TruncatedFrame", "LengthError",
    "OversizedFrame", "CrcError", "DeviceError",
    "Request", "Response", "Ident",
    "encode_request", "decode_request", "encode_response", "decode_response",
    "ident_request", "write_request", "read_request", "check_response",
    "StreamDecoder", "BusError", "ReferenceLink",
]

# --------------------------------------------------------------------------- constants

REQ_SYNC = 0xA5            #: first byte of every request (host -> device)
RSP_SYNC = 0x5A            #: first byte of every response (device -> host)
PROTOCOL_VERSION = 1       #: reported in the IDENT block
IDENT_MAGIC = b"XNFL"      #: first four bytes of the IDENT block
HEADER_BYTES = 4           #: sync, cmd/status, len lo, len hi
CRC_BYTES = 2
OVERHEAD_BYTES = HEADER_BYTES + CRC_BYTES
ADDR_BYTES = 4             #: WRITE/READ address field: u32 little-endian
COUNT_BYTES = 2            #: READ count field: u16 little-endian
DEFAULT_MAX_PAYLOAD = 256  #: the HostLink default; the real value is in the IDENT block
MAX_LEN_FIELD = 0xFFFF

CRC16_POLY = 0x1021
CRC16_INIT = 0xFFFF


class Cmd(enum.IntEnum):
    """Request command byte."""
    IDENT = 0x01  #: payload empty; answer: the identification block (:class:`Ident`)
    WRITE = 0x02  #: payload ``addr (u32 LE) | data[n]``; answer: empty payload
    READ = 0x03   #: payload ``addr (u32 LE) | count (u16 LE)``; answer: ``count`` bytes


class Status(enum.IntEnum):
    """Response status byte."""
    OK = 0x00
    BAD_CRC = 0x01          #: the request's CRC did not check; nothing was executed
    BAD_LENGTH = 0x02       #: the length does not fit the command (IDENT != 0, READ != 6, WRITE < 4)
    OVERSIZED = 0x03        #: length field (or READ count) above the device's max payload
    UNKNOWN_COMMAND = 0x04  #: CRC good, command byte unknown
    BUS_ERROR = 0x05        #: the bus target answered err; payload: failing offset (u16 LE)
    TIMEOUT = 0x06          #: a partial frame stayed idle longer than the device's timeout


# --------------------------------------------------------------------------- CRC

def crc16_bitwise(data, crc=CRC16_INIT):
    """CRC-16/CCITT-FALSE, one bit at a time (the reference; no table)."""
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ CRC16_POLY) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def _make_table():
    table = []
    for i in range(256):
        table.append(crc16_bitwise(bytes([i]), crc=0))
    return tuple(table)


_CRC_TABLE = _make_table()


def crc16(data, crc=CRC16_INIT):
    """CRC-16/CCITT-FALSE, table-driven (byte at a time); equal to :func:`crc16_bitwise`."""
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


# --------------------------------------------------------------------------- exceptions

class ProtocolError(XnorflowError):
    """Base class of everything this module raises about frames or device answers (an
    :class:`~xnorflow.sw.errors.XnorflowError`, so the command line reports it as one line)."""


class FrameError(ProtocolError):
    """A received frame is malformed. ``frames`` holds complete frames decoded before it
    (set by :meth:`StreamDecoder.feed`)."""
    frames: tuple = ()


class SyncError(FrameError):
    """The frame does not start with the expected sync byte."""


class TruncatedFrame(FrameError):
    """Fewer bytes than the header's length field announces."""


class LengthError(FrameError):
    """Trailing bytes after a frame, or a payload of the wrong length for its command."""


class OversizedFrame(FrameError):
    """Length field above the maximum payload."""


class CrcError(FrameError):
    """The CRC does not match; ``expected`` and ``received`` carry both values."""

    def __init__(self, msg, expected=None, received=None):
        super().__init__(msg)
        self.expected = expected
        self.received = received


class DeviceError(ProtocolError):
    """The device answered a status other than OK (raised by :func:`check_response`)."""

    def __init__(self, status, payload=b"", msg=None):
        self.status = Status(status) if status in Status._value2member_map_ else status
        self.payload = bytes(payload)
        name = self.status.name if isinstance(self.status, Status) else f"0x{status:02x}"
        if msg is None:
            msg = f"device answered {name}"
            if self.status == Status.BUS_ERROR and len(self.payload) == 2:
                msg += f" at byte offset {int.from_bytes(self.payload, 'little')}"
        super().__init__(msg)

    @property
    def offset(self):
        """For BUS_ERROR: the offset (within the data) of the byte the bus refused."""
        if len(self.payload) == 2:
            return int.from_bytes(self.payload, "little")
        return None


# --------------------------------------------------------------------------- frames

@dataclass(frozen=True)
class Request:
    cmd: int
    payload: bytes = b""

    def encode(self):
        return encode_request(self.cmd, self.payload)


@dataclass(frozen=True)
class Response:
    status: int
    payload: bytes = b""

    def encode(self):
        return encode_response(self.status, self.payload)

    @property
    def ok(self):
        return self.status == Status.OK


def _check_byte(name, value):
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be a byte (0..255), got {value!r}")


def _encode(sync, code, payload, max_payload):
    payload = bytes(payload)
    limit = MAX_LEN_FIELD if max_payload is None else max_payload
    if len(payload) > limit:
        raise OversizedFrame(f"payload of {len(payload)} bytes exceeds the maximum of {limit}")
    body = struct.pack("<BH", code, len(payload)) + payload
    return bytes([sync]) + body + crc16(body).to_bytes(2, "big")


def encode_request(cmd, payload=b"", *, max_payload=None):
    """One request frame as bytes. ``cmd`` may be any byte (unknown ones are legal on the
    wire; the device answers UNKNOWN_COMMAND). Raises :class:`OversizedFrame` if the payload
    is longer than ``max_payload`` (default: what the 16-bit length field holds)."""
    _check_byte("cmd", cmd)
    return _encode(REQ_SYNC, int(cmd), payload, max_payload)


def encode_response(status, payload=b"", *, max_payload=None):
    """One response frame as bytes (what the device sends; used by models and tests)."""
    _check_byte("status", status)
    return _encode(RSP_SYNC, int(status), payload, max_payload)


def _decode(frame, sync, max_payload):
    frame = bytes(frame)
    if len(frame) < OVERHEAD_BYTES:
        raise TruncatedFrame(f"a frame has at least {OVERHEAD_BYTES} bytes, got {len(frame)}")
    if frame[0] != sync:
        raise SyncError(f"expected sync byte 0x{sync:02x}, got 0x{frame[0]:02x}")
    code, length = struct.unpack_from("<BH", frame, 1)
    if max_payload is not None and length > max_payload:
        raise OversizedFrame(f"length field {length} exceeds the maximum payload {max_payload}")
    total = OVERHEAD_BYTES + length
    if len(frame) < total:
        raise TruncatedFrame(f"length field announces {total} bytes, frame has {len(frame)}")
    if len(frame) > total:
        raise LengthError(f"{len(frame) - total} trailing bytes after a {total}-byte frame")
    expected = crc16(frame[1:HEADER_BYTES + length])
    received = int.from_bytes(frame[HEADER_BYTES + length:], "big")
    if expected != received:
        raise CrcError(f"CRC mismatch: computed 0x{expected:04x}, frame carries 0x{received:04x}",
                       expected, received)
    return code, frame[HEADER_BYTES:HEADER_BYTES + length]


def decode_request(frame, *, max_payload=None):
    """Parse exactly one request frame (bytes) into a :class:`Request`; raises a
    :class:`FrameError` subclass on anything malformed."""
    code, payload = _decode(frame, REQ_SYNC, max_payload)
    return Request(Cmd(code) if code in Cmd._value2member_map_ else code, payload)


def decode_response(frame, *, max_payload=None):
    """Parse exactly one response frame (bytes) into a :class:`Response`; raises a
    :class:`FrameError` subclass on anything malformed."""
    code, payload = _decode(frame, RSP_SYNC, max_payload)
    return Response(Status(code) if code in Status._value2member_map_ else code, payload)


def ident_request():
    return encode_request(Cmd.IDENT)


def write_request(addr, data, *, max_payload=None):
    """WRITE ``data`` to bus addresses ``addr, addr+1, ...``."""
    if not 0 <= addr <= 0xFFFFFFFF:
        raise ValueError(f"address {addr!r} does not fit 32 bits")
    return encode_request(Cmd.WRITE, addr.to_bytes(4, "little") + bytes(data),
                          max_payload=max_payload)


def read_request(addr, count):
    """READ ``count`` bytes from bus addresses ``addr, addr+1, ...``."""
    if not 0 <= addr <= 0xFFFFFFFF:
        raise ValueError(f"address {addr!r} does not fit 32 bits")
    if not 0 <= count <= 0xFFFF:
        raise ValueError(f"count {count!r} does not fit 16 bits")
    return encode_request(Cmd.READ, addr.to_bytes(4, "little") + count.to_bytes(2, "little"))


def check_response(response, expected_len=None):
    """Return the payload of an OK :class:`Response`; raise :class:`DeviceError` otherwise,
    or :class:`LengthError` if ``expected_len`` is given and does not match."""
    if response.status != Status.OK:
        raise DeviceError(response.status, response.payload)
    if expected_len is not None and len(response.payload) != expected_len:
        raise LengthError(f"expected {expected_len} payload bytes, got {len(response.payload)}")
    return response.payload


# --------------------------------------------------------------------------- IDENT block

@dataclass(frozen=True)
class Ident:
    """The identification block, the payload of the answer to IDENT::

        0..3   magic b"XNFL"
        4      protocol version
        5..6   max payload (u16 LE)
        7      bus address width (bits)
        8      n = number of configuration bytes
        9..    configuration bytes (owned by the accelerator top: array P, Q, K, memory sizes)
    """
    version: int
    max_payload: int
    addr_width: int
    config: bytes = b""

    def encode(self):
        return (IDENT_MAGIC + bytes([self.version]) + self.max_payload.to_bytes(2, "little")
                + bytes([self.addr_width, len(self.config)]) + bytes(self.config))

    @classmethod
    def decode(cls, payload):
        payload = bytes(payload)
        if len(payload) < 9 or payload[:4] != IDENT_MAGIC:
            raise LengthError(f"not an xnorflow IDENT block: {payload[:9].hex()}")
        n = payload[8]
        if len(payload) != 9 + n:
            raise LengthError(f"IDENT block announces {n} config bytes, carries {len(payload) - 9}")
        return cls(payload[4], int.from_bytes(payload[5:7], "little"), payload[7], payload[9:])


# --------------------------------------------------------------------------- streaming

class StreamDecoder:
    """Incremental frame decoder for one direction of the link.

    ``feed(data)`` appends bytes and returns the list of complete frames (:class:`Request`
    for ``direction="request"``, :class:`Response` for ``"response"``). Bytes before a sync
    byte are skipped (counted in :attr:`skipped`). A malformed frame raises a
    :class:`FrameError` (its ``frames`` attribute holds the good frames of this call that came
    before it); the decoder has then consumed the bad frame — the whole frame for a CRC error,
    only the 4-byte header for an oversized length (it resynchronises on the next sync byte,
    like the device) — and the rest stays buffered: call ``feed(b"")`` to continue.
    """

    def __init__(self, direction="response", *, max_payload=None):
        if direction not in ("request", "response"):
            raise ValueError("direction is 'request' or 'response'")
        self.direction = direction
        self.sync = REQ_SYNC if direction == "request" else RSP_SYNC
        self.max_payload = MAX_LEN_FIELD if max_payload is None else max_payload
        self._buf = bytearray()
        self.skipped = 0

    @property
    def pending(self):
        """Bytes of a partial frame held (0: the decoder is between frames)."""
        return len(self._buf)

    def reset(self):
        """Drop a partial frame (e.g. after a timeout)."""
        self._buf.clear()

    def feed(self, data=b""):
        self._buf += bytes(data)
        frames = []
        while True:
            try:
                frame = self._next()
            except FrameError as e:
                e.frames = frames
                raise
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self):
        buf = self._buf
        start = buf.find(self.sync)
        if start < 0:
            self.skipped += len(buf)
            buf.clear()
            return None
        if start:
            self.skipped += start
            del buf[:start]
        if len(buf) < HEADER_BYTES:
            return None
        length = buf[2] | buf[3] << 8
        if length > self.max_payload:
            del buf[:HEADER_BYTES]
            raise OversizedFrame(f"length field {length} exceeds the maximum payload "
                                 f"{self.max_payload}")
        total = OVERHEAD_BYTES + length
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        if self.direction == "request":
            return decode_request(frame)
        return decode_response(frame)


# --------------------------------------------------------------------------- device model

class BusError(Exception):
    """Raised by a :class:`ReferenceLink` bus object for an access the target refuses."""


class _DictBus:
    """Default bus for :class:`ReferenceLink`: ``size`` bytes of memory, err above."""

    def __init__(self, size):
        self.mem = bytearray(size)

    def read(self, addr):
        if addr >= len(self.mem):
            raise BusError(addr)
        return self.mem[addr]

    def write(self, addr, value):
        if addr >= len(self.mem):
            raise BusError(addr)
        self.mem[addr] = value


class ReferenceLink:
    """Byte-exact model of the device side of the link (what ``xnorflow.hw.link.HostLink`` does).

    ``feed(data)`` consumes request bytes and returns the response frames (bytes) they
    complete; ``idle()`` models the link staying idle past its timeout (a partial frame is
    dropped and answered TIMEOUT). ``bus`` has ``read(addr) -> int`` and
    ``write(addr, byte)``, both raising :class:`BusError` on a refused access; by default a
    memory of ``mem_size`` bytes refusing every address above.
    """

    def __init__(self, *, max_payload=DEFAULT_MAX_PAYLOAD, addr_width=24, config=b"",
                 bus=None, mem_size=256):
        self.max_payload = max_payload
        self.addr_width = addr_width
        self.ident = Ident(PROTOCOL_VERSION, max_payload, addr_width, bytes(config))
        if len(self.ident.encode()) > max_payload:
            raise ValueError("the IDENT block does not fit the max payload")
        self.bus = _DictBus(mem_size) if bus is None else bus
        self._frame = None  # None: hunting; else bytearray of the frame so far (after sync)

    @property
    def in_frame(self):
        return self._frame is not None

    def feed(self, data):
        out = []
        for b in bytes(data):
            r = self._byte(b)
            if r is not None:
                out.append(r)
        return out

    def idle(self):
        """The timeout fires: a partial frame gets TIMEOUT; returns the responses (0 or 1)."""
        if self._frame is None:
            return []
        self._frame = None
        return [encode_response(Status.TIMEOUT)]

    def _byte(self, b):
        f = self._frame
        if f is None:
            if b == REQ_SYNC:
                self._frame = bytearray()
            return None
        f.append(b)
        if len(f) == 3:
            length = f[1] | f[2] << 8
            if length > self.max_payload:
                self._frame = None
                return encode_response(Status.OVERSIZED)
        if len(f) >= 3 and len(f) == 5 + (f[1] | f[2] << 8):
            self._frame = None
            if crc16(f) != 0:
                return encode_response(Status.BAD_CRC)
            return self.execute(f[0], bytes(f[3:-2]))
        return None

    def execute(self, cmd, payload):
        """Execute one request whose CRC checked; returns the response frame."""
        if cmd == Cmd.IDENT:
            if payload:
                return encode_response(Status.BAD_LENGTH)
            return encode_response(Status.OK, self.ident.encode())
        if cmd == Cmd.WRITE:
            if len(payload) < ADDR_BYTES:
                return encode_response(Status.BAD_LENGTH)
            addr = int.from_bytes(payload[:4], "little")
            for i, byte in enumerate(payload[4:]):
                if not self._access(addr + i, byte):
                    return encode_response(Status.BUS_ERROR, i.to_bytes(2, "little"))
            return encode_response(Status.OK)
        if cmd == Cmd.READ:
            if len(payload) != ADDR_BYTES + COUNT_BYTES:
                return encode_response(Status.BAD_LENGTH)
            addr = int.from_bytes(payload[:4], "little")
            count = int.from_bytes(payload[4:], "little")
            if count > self.max_payload:
                return encode_response(Status.OVERSIZED)
            data = bytearray()
            for i in range(count):
                value = self._access(addr + i, None)
                if value is None:
                    return encode_response(Status.BUS_ERROR, i.to_bytes(2, "little"))
                data.append(value)
            return encode_response(Status.OK, bytes(data))
        return encode_response(Status.UNKNOWN_COMMAND)

    def _access(self, addr, byte):
        # Addresses past the bus width never reach the bus: refused like an err.
        if addr >> self.addr_width:
            return None if byte is None else False
        try:
            if byte is None:
                return self.bus.read(addr)
            self.bus.write(addr, byte)
            return True
        except BusError:
            return None if byte is None else False
