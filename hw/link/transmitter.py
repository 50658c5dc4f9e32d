"""Response transmitter: header + payload bytes in, framed response bytes out."""
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .crc import Crc16
from .defs import RSP_SYNC, ResponseHeader

__all__ = ["ResponseTransmitter"]


class ResponseTransmitter(wiring.Component):
    """Frames one response: ``5A | status | len (LE) | payload | crc (BE)``.

    Takes a header (status, length), then passes exactly ``length`` payload bytes from
    ``payload`` through to ``o`` (combinationally: ``o.valid = payload.valid``,
    ``payload.ready = o.ready``), running each byte after the sync through the CRC, then
    appends the CRC, most significant byte first.

    Ports
    -----
    header : In(stream.Signature(ResponseHeader))
        ``status`` and ``length`` of the next response; taken only while idle.
    payload : In(stream.Signature(8))
        The ``length`` payload bytes.
    o : Out(stream.Signature(8))
        Response bytes. ``valid`` never depends on ``ready``; ``payload`` is held while
        ``valid`` is high and ``ready`` low.
    idle : Out(1)
        No response in progress (the previous one has been completely sent).

    Latency and throughput: the sync byte is offered the cycle after the header is taken;
    one byte per cycle while ``o.ready`` (and, during the payload, ``payload.valid``) is
    high, and one idle cycle before the CRC (the CRC takes each byte a cycle after it is
    sent), so a response of ``n`` payload bytes takes ``n + 7`` cycles without stalls, and
    ``idle`` rises the cycle after its last byte.
    """

    def __init__(self):
        super().__init__({
            "header": In(stream.Signature(ResponseHeader)),
            "payload": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc16 = crc = Crc16()

        status = Signal(8)
        length = Signal(16)
        # Bytes still to send and "the next byte is the last", kept in registers: the
        # comparison count == length − 1 (a subtraction and a 16-bit carry chain) in front of
        # the state's enable was the critical path of the 98 %-full iCEBreaker dataflow build.
        left = Signal(16)
        last = Signal()
        xfer = Signal()
        # The CRC takes each sent byte from a register, a cycle later: the payload comes
        # straight from the link buffer's block RAM, whose clock-to-out (~5.8 ns on ECP5)
        # followed by the CRC update set the ECP5 8x8x32 build's Fmax.
        crc_en = Signal()
        crc_byte, crc_en_r = Signal(8), Signal()
        m.d.comb += xfer.eq(self.o.valid & self.o.ready)
        m.d.sync += [crc_byte.eq(self.o.payload), crc_en_r.eq(crc_en)]
        m.d.comb += [crc.data.eq(crc_byte), crc.en.eq(crc_en_r)]

        # "In IDLE" as a flip-flop of its own, loaded with the next state's: the executor's
        # next state depends on it (the header's ready, the response's end), and decoding it
        # from the state register put a LUT level and a route more on the SFC build 23's
        # critical path (tx state -> executor state, 0.1 ns late at 100 MHz).
        idle = Signal(init=1, name="idle_r")
        m.d.comb += [self.idle.eq(idle), self.header.ready.eq(idle)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.header.valid):
                    m.d.sync += [idle.eq(0), status.eq(self.header.payload.status),
                                 length.eq(self.header.payload.length)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(RSP_SYNC),
                             crc.clear.eq(1)]
                with m.If(xfer):
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(status), crc_en.eq(xfer)]
                with m.If(xfer):
                    m.next = "LEN0"
            with m.State("LEN0"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(length[:8]),
                             crc_en.eq(xfer)]
                with m.If(xfer):
                    m.next = "LEN1"
            with m.State("LEN1"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(length[8:]),
                             crc_en.eq(xfer)]
                with m.If(xfer):
                    m.d.sync += [left.eq(length), last.eq(length == 1)]
                    with m.If(length == 0):
                        m.next = "CRC_WAIT"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.o.valid.eq(self.payload.valid),
                             self.o.payload.eq(self.payload.payload),
                             self.payload.ready.eq(self.o.ready),
                             crc_en.eq(xfer)]
                with m.If(xfer):
                    m.d.sync += [left.eq(left - 1), last.eq(left == 2)]
                    with m.If(last):
                        m.next = "CRC_WAIT"
            with m.State("CRC_WAIT"):
                m.next = "CRC0"                 # the last byte's CRC update lands now
            with m.State("CRC0"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(crc.crc[8:])]
                with m.If(xfer):
                    m.next = "CRC1"
            with m.State("CRC1"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(crc.crc[:8])]
                with m.If(xfer):
                    m.d.sync += idle.eq(1)
                    m.next = "IDLE"
        return m
