"""Constants and interface signatures shared by the host-link components.

The numbers here are the wire protocol of ``docs/protocol.md``; ``sw/protocol.py`` holds the
same values for the host (gateware imports nothing from ``sw``); ``hw/link/test_defs.py``
checks that both agree.
"""
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["REQ_SYNC", "RSP_SYNC", "PROTOCOL_VERSION", "IDENT_MAGIC", "Cmd", "Status",
           "FrameInfo", "ResponseHeader", "BufferWriteSignature", "BufferReadSignature",
           "ident_block"]

REQ_SYNC = 0xA5
RSP_SYNC = 0x5A
PROTOCOL_VERSION = 1
IDENT_MAGIC = b"XNFL"


class Cmd:
    IDENT = 0x01
    WRITE = 0x02
    READ = 0x03


class Status:
    OK = 0x00
    BAD_CRC = 0x01
    BAD_LENGTH = 0x02
    OVERSIZED = 0x03
    UNKNOWN_COMMAND = 0x04
    BUS_ERROR = 0x05
    TIMEOUT = 0x06


#: What the receiver hands to the executor: the frame's command and payload length, and the
#: receiver's verdict (OK, BAD_CRC, OVERSIZED or TIMEOUT).
FrameInfo = data.StructLayout({"status": 8, "cmd": 8, "length": 16})

#: What the executor hands to the transmitter before the payload bytes.
ResponseHeader = data.StructLayout({"status": 8, "length": 16})


class BufferWriteSignature(wiring.Signature):
    """Write port of the payload buffer, seen from the writer: ``addr``, ``data``, ``en``."""

    def __init__(self, depth):
        self.depth = depth
        super().__init__({"addr": Out(range(depth)), "data": Out(8), "en": Out(1)})


class BufferReadSignature(wiring.Signature):
    """Synchronous read port of the payload buffer, seen from the reader: ``data`` holds
    ``mem[addr]`` of the last cycle ``en`` was high."""

    def __init__(self, depth):
        self.depth = depth
        super().__init__({"addr": Out(range(depth)), "en": Out(1), "data": In(8)})


def ident_base(max_payload):
    """Where the IDENT block lives in the payload buffer: the first power of two at or above
    ``max_payload``, so that a response read from it differs from a payload read only in one
    address bit (no adder before the buffer's read address)."""
    return 1 << (max_payload - 1).bit_length()


def payload_buffer_init(max_payload, ident):
    """The payload buffer's contents at reset: ``max_payload`` bytes of payload (and the
    unused words up to :func:`ident_base`), then the IDENT block, which nothing writes. Its
    length is the buffer's depth. The block is read from there, not copied into the payload
    area or built by a multiplexer over its bytes (which cost ~100 logic cells and the
    iCEBreaker build's critical path at 40 MHz)."""
    return [0] * ident_base(max_payload) + list(ident)


def ident_block(max_payload, addr_width, config=b""):
    """The IDENT answer: magic, version, max payload (u16 LE), address width, len(config),
    config bytes."""
    config = bytes(config)
    if len(config) > 255:
        raise ValueError("at most 255 configuration bytes")
    return (IDENT_MAGIC + bytes([PROTOCOL_VERSION]) + max_payload.to_bytes(2, "little")
            + bytes([addr_width, len(config)]) + config)
