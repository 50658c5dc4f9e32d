"""Frame receiver: byte stream in, checked frames (payload in the buffer) out."""
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .crc import Crc16
from .defs import REQ_SYNC, Status, FrameInfo, BufferWriteSignature

__all__ = ["FrameReceiver"]


class FrameReceiver(wiring.Component):
    """Parses request frames ``A5 | cmd | len (LE) | payload | crc (BE)``.

    Bytes are skipped until a sync byte 0xA5 (resynchronisation). The payload is written to
    the payload buffer at offsets ``0 .. len-1``; after the last CRC byte the frame is
    presented on ``frame`` with status OK or BAD_CRC. A length field above ``max_payload``
    ends the frame at once with OVERSIZED (the payload is not waited for: the receiver
    goes back to hunting for a sync byte, so the announced payload is skipped as garbage).
    A partial frame whose next byte does not come within ``timeout`` cycles ends with
    TIMEOUT. While a frame is presented (``frame.valid``), ``i.ready`` is low: the buffer
    belongs to the executor until it acknowledges the frame with ``frame.ready``, which it
    does after the response has been sent.

    Parameters
    ----------
    max_payload : int
        Largest accepted length field; the buffer depth.
    timeout : int
        Idle cycles tolerated between two bytes of a frame.

    Ports
    -----
    i : In(stream.Signature(8))
        Request bytes. ``ready`` is high except while a frame is presented, and in the one
        cycle the CRC verdict is formed; it comes from a flip-flop.
    frame : Out(stream.Signature(FrameInfo))
        ``status`` (OK, BAD_CRC, OVERSIZED, TIMEOUT), ``cmd``, ``length``. Held until
        ``ready``.
    buf : Out(BufferWriteSignature(max_payload))
        Payload writes, one per accepted payload byte.

    Latency and throughput: one byte per cycle; ``frame.valid`` rises 2 cycles after the
    last CRC byte is taken (1 cycle after an oversized length byte, ``timeout`` + 1 cycles
    after the last byte of a truncated frame).
    """

    def __init__(self, *, max_payload=256, timeout=1 << 20):
        if max_payload < 1 or max_payload > 0xFFFF:
            raise ValueError("max_payload must be within 1..65535")
        if timeout < 1:
            raise ValueError("timeout must be at least 1 cycle")
        self.max_payload = max_payload
        self.timeout = timeout
        super().__init__({
            "i": In(stream.Signature(8)),
            "frame": Out(stream.Signature(FrameInfo)),
            "buf": Out(BufferWriteSignature(max_payload)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc16 = crc = Crc16()

        byte = self.i.payload
        take = Signal()
        # `i.ready` is a register loaded with what it will be (`ready_next`, set in every
        # state below): decoded from the state, it put three logic levels in front of
        # `take`, and `take` is in front of every next state (iCEBreaker dataflow build at
        # 36.75 MHz: state → ready → take → next state, nine levels, 3.9 ns late)
        ready, ready_next = Signal(init=1, name="ready"), Signal(name="ready_next")
        m.d.sync += ready.eq(ready_next)
        m.d.comb += [self.i.ready.eq(ready), take.eq(self.i.valid & ready)]
        m.d.comb += crc.data.eq(byte)

        info = self.frame.payload
        count = Signal(range(self.max_payload + 1))
        idle = Signal(range(self.timeout + 1))
        # `idle == timeout` kept as a register of its own, loaded with what it will be: the
        # compare over the counter's bits sat before `i.ready`, and through it before every
        # clock enable of the frame (iCE40 at 40 MHz: 11 logic levels from `idle`).
        timed_out = Signal()
        in_frame = Signal()
        # What the length's high byte will be compared with, decided from its low byte a
        # byte earlier (registers): at LEN1 the FSM's next state then rests on the new byte
        # against constants only, not on a 16-bit compare (the iCEBreaker dataflow build at
        # 36 MHz: state → length compare → take → next state, 3.6 ns late).
        limit_hi, limit_lo = self.max_payload >> 8, self.max_payload & 0xFF
        low_over, low_zero = Signal(name="low_over"), Signal(name="low_zero")
        # the payload's last byte, a register loaded with `count + 1 == length - 1` as count
        # advances (the compare of count with length − 1 was in front of the next state)
        last_byte = Signal()
        counting = in_frame & ~take & ~timed_out      # another idle cycle inside a frame
        times_out = counting & (idle == self.timeout - 1)
        with m.If(counting):
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(times_out)]
        with m.Else():
            m.d.sync += [idle.eq(0), timed_out.eq(0)]

        m.d.comb += [
            self.buf.addr.eq(count),
            self.buf.data.eq(byte),
        ]

        def frame_state():
            # Common to the states inside a frame: accept unless timed out (a timed-out
            # frame ends: DONE next, not ready), also in the next cycle unless it times out
            # now (the states that end the frame on a byte say so after this).
            m.d.comb += in_frame.eq(1)
            m.d.comb += ready_next.eq(~timed_out & ~times_out)
            m.d.comb += crc.en.eq(take)
            with m.If(timed_out):
                m.d.sync += info.status.eq(Status.TIMEOUT)
                m.next = "DONE"

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += ready_next.eq(1)
                with m.If(take & (byte == REQ_SYNC)):
                    m.d.comb += crc.clear.eq(1)
                    m.d.sync += info.status.eq(Status.OK)
                    m.next = "CMD"
            with m.State("CMD"):
                frame_state()
                with m.If(take):
                    m.d.sync += info.cmd.eq(byte)
                    m.next = "LEN0"
            with m.State("LEN0"):
                frame_state()
                with m.If(take):
                    m.d.sync += [info.length[:8].eq(byte), low_over.eq(byte > limit_lo),
                                 low_zero.eq(byte == 0)]
                    m.next = "LEN1"
            with m.State("LEN1"):
                frame_state()
                # length > max_payload, length == 0 and length == 1, by bytes
                over = (byte > limit_hi) | ((byte == limit_hi) & low_over)
                high_zero = byte == 0
                with m.If(take):
                    m.d.sync += [info.length[8:].eq(byte), count.eq(0),
                                 last_byte.eq(high_zero & (info.length[:8] == 1))]
                    with m.If(over):
                        m.d.sync += info.status.eq(Status.OVERSIZED)
                        m.d.comb += ready_next.eq(0)
                        m.next = "DONE"
                    with m.Elif(high_zero & low_zero):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                frame_state()
                with m.If(take):
                    m.d.comb += self.buf.en.eq(1)
                    m.d.sync += [count.eq(count + 1),
                                 last_byte.eq(count + 2 == info.length)]
                    with m.If(last_byte):
                        m.next = "CRC0"
            with m.State("CRC0"):
                frame_state()
                with m.If(take):
                    m.next = "CRC1"
            with m.State("CRC1"):
                frame_state()
                with m.If(take):
                    m.d.comb += ready_next.eq(0)
                    m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(~crc.zero):
                    m.d.sync += info.status.eq(Status.BAD_CRC)
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    m.d.comb += ready_next.eq(1)
                    m.next = "HUNT"
        return m
