"""The host-link protocol as seen on the link's ports, for the formal proofs.

Written from docs/protocol.md, not from the gateware: a request tracker that frames the bytes
the link *takes* (sync, cmd, length, payload, CRC; a length above max_payload ends the frame
at once; ``timeout`` cycles without a byte inside a frame end it), a response tracker that
frames the bytes the link *sends*, a bus target that answers within a bounded latency, and
the stream and bus handshake rules as properties.
"""
import re

from amaranth.hdl import Signal, Value
from amaranth.lib import enum

from xnorflow.hw.link.defs import REQ_SYNC, Status
from tests.formal.harness import free

__all__ = ["Rq", "Rs", "RequestTracker", "ResponseTracker", "bus_target", "stream_rule",
           "assume_stream_rule", "bus_hold_rule", "ANY_STATUS"]

#: ``RequestTracker.expect`` when any status is a correct answer (a complete frame).
ANY_STATUS = 0xFF


class Rq(enum.Enum, shape=3):
    """Where the request stream is, by docs/protocol.md's framing."""
    HUNT = 0        # outside a frame: every byte but 0xA5 is skipped
    CMD = 1
    LEN0 = 2
    LEN1 = 3
    PAYLOAD = 4
    CRC0 = 5
    CRC1 = 6
    ANSWER = 7      # the frame has ended; its response has not been sent completely


class Rs(enum.Enum, shape=3):
    """Where the response stream is."""
    IDLE = 0        # no response in progress (the next byte sent starts one)
    STATUS = 1
    LEN0 = 2
    LEN1 = 3
    PAYLOAD = 4
    CRC0 = 5
    CRC1 = 6


class RequestTracker:
    """Frames the bytes the link takes from ``i`` (``valid & ready``).

    Signals: ``state`` (:class:`Rq`), ``in_frame``, ``idle`` (cycles without a byte inside
    the frame), ``length``, ``count`` (payload bytes taken), ``cmd``, ``expect`` (the status
    a truncated or oversized frame must be answered with, else :data:`ANY_STATUS`), ``ends``
    (the frame ends this cycle: the next is the first of ``ANSWER``).
    """

    def __init__(self, m, stream, *, max_payload, timeout, response_done):
        self.state = state = Signal(Rq)
        self.idle = idle = Signal(range(timeout + 1))
        self.length = length = Signal(16)
        self.count = count = Signal(range(max_payload + 1))
        self.cmd = cmd = Signal(8)
        self.expect = expect = Signal(8, init=ANY_STATUS)
        self.in_frame = in_frame = Signal()
        self.timed_out = timed_out = Signal()
        self.ends = ends = Signal()
        self.take = take = Signal()
        byte = stream.payload

        m.d.comb += [take.eq(stream.valid & stream.ready),
                     in_frame.eq((state != Rq.HUNT) & (state != Rq.ANSWER)),
                     timed_out.eq(in_frame & (idle == timeout))]
        with m.If(in_frame & ~take & ~timed_out):
            m.d.sync += idle.eq(idle + 1)
        with m.Else():
            m.d.sync += idle.eq(0)

        def end(status=ANY_STATUS):
            m.d.comb += ends.eq(1)
            m.d.sync += [state.eq(Rq.ANSWER), expect.eq(status)]

        with m.If(timed_out):
            end(Status.TIMEOUT)
        with m.Elif(take):
            with m.Switch(state):
                with m.Case(Rq.HUNT):
                    with m.If(byte == REQ_SYNC):
                        m.d.sync += state.eq(Rq.CMD)
                with m.Case(Rq.CMD):
                    m.d.sync += [cmd.eq(byte), state.eq(Rq.LEN0)]
                with m.Case(Rq.LEN0):
                    m.d.sync += [length[:8].eq(byte), state.eq(Rq.LEN1)]
                with m.Case(Rq.LEN1):
                    announced = byte.as_unsigned() << 8 | length[:8]
                    m.d.sync += [length[8:].eq(byte), count.eq(0)]
                    with m.If(announced > max_payload):
                        end(Status.OVERSIZED)
                    with m.Elif(announced == 0):
                        m.d.sync += state.eq(Rq.CRC0)
                    with m.Else():
                        m.d.sync += state.eq(Rq.PAYLOAD)
                with m.Case(Rq.PAYLOAD):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == length):
                        m.d.sync += state.eq(Rq.CRC0)
                with m.Case(Rq.CRC0):
                    m.d.sync += state.eq(Rq.CRC1)
                with m.Case(Rq.CRC1):
                    end()
        with m.If((state == Rq.ANSWER) & response_done):
            m.d.sync += [state.eq(Rq.HUNT), expect.eq(ANY_STATUS)]


class ResponseTracker:
    """Frames the bytes the link sends on ``o`` (``valid & ready``).

    Signals: ``state`` (:class:`Rs`), ``length`` (its low byte only until LEN1 is sent),
    ``count`` (payload bytes sent), ``send``, ``done`` (the last CRC byte is sent this cycle),
    ``announced`` (the length being sent in LEN1).
    """

    def __init__(self, m, stream):
        self.state = state = Signal(Rs)
        self.length = length = Signal(16)
        self.count = count = Signal(16)
        self.send = send = Signal()
        self.done = done = Signal()
        self.announced = announced = Signal(16)
        byte = stream.payload

        m.d.comb += [send.eq(stream.valid & stream.ready),
                     announced.eq(byte.as_unsigned() << 8 | length[:8])]
        with m.If(send):
            with m.Switch(state):
                with m.Case(Rs.IDLE):
                    m.d.sync += state.eq(Rs.STATUS)
                with m.Case(Rs.STATUS):
                    m.d.sync += state.eq(Rs.LEN0)
                with m.Case(Rs.LEN0):
                    m.d.sync += [length[:8].eq(byte), state.eq(Rs.LEN1)]
                with m.Case(Rs.LEN1):
                    m.d.sync += [length[8:].eq(byte), count.eq(0)]
                    with m.If(announced == 0):
                        m.d.sync += state.eq(Rs.CRC0)
                    with m.Else():
                        m.d.sync += state.eq(Rs.PAYLOAD)
                with m.Case(Rs.PAYLOAD):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == length):
                        m.d.sync += state.eq(Rs.CRC0)
                with m.Case(Rs.CRC0):
                    m.d.sync += state.eq(Rs.CRC1)
                with m.Case(Rs.CRC1):
                    m.d.comb += done.eq(1)
                    m.d.sync += state.eq(Rs.IDLE)


def bus_target(m, bus, *, latency=None):
    """A bus target (hw/bus.py) that reads and errs freely: ``r_data`` and ``err`` are free,
    ``ack`` comes in a free cycle after the one ``stb`` rose in, at the latest ``latency``
    cycles after it (None: any cycle, or never). Returns ``age``: cycles the current request
    has waited (0 in the cycle ``stb`` rises)."""
    age = Signal(range((latency or 1) + 1))
    m.d.comb += [bus.r_data.eq(free(8)), bus.err.eq(free(1))]
    forced = (age == latency) if latency else 0
    m.d.comb += bus.ack.eq(bus.stb & (age != 0) & (free(1) | forced))
    with m.If(bus.stb & ~bus.ack):
        m.d.sync += age.eq(age + 1 if latency else 1)
    with m.Else():
        m.d.sync += age.eq(0)
    return age


def _identifier(text):
    return re.sub(r"\W+", "_", text).strip("_")


def stream_rule(harness, m, stream, name):
    """Amaranth's stream rule for the transmitter of ``stream``: once ``valid`` is high it
    stays high, with the same payload, until the cycle ``ready`` is high."""
    payload = Value.cast(stream.payload)
    tag = _identifier(name)
    stalled, held = Signal(name=f"{tag}_stalled"), Signal(len(payload), name=f"{tag}_held")
    m.d.sync += [stalled.eq(stream.valid & ~stream.ready), held.eq(payload)]
    harness.check(m, ~stalled | (stream.valid & (payload == held)),
                  f"{name}: valid stays high and the payload stable until ready", src_loc_at=1)


def assume_stream_rule(harness, m, stream, name):
    """The environment's side of the rule: a source outside the proof follows it too."""
    payload = Value.cast(stream.payload)
    tag = _identifier(name)
    stalled, held = Signal(name=f"{tag}_stalled"), Signal(len(payload), name=f"{tag}_held")
    m.d.sync += [stalled.eq(stream.valid & ~stream.ready), held.eq(payload)]
    harness.assume(m, ~stalled | (stream.valid & (payload == held)))


def bus_hold_rule(harness, m, bus, name):
    """hw/bus.py's initiator rule: ``stb`` stays high with ``addr``, ``we`` and ``w_data``
    unchanged until ``ack``."""
    fields = [bus.addr, bus.we, bus.w_data]
    tag = _identifier(name)
    waiting = Signal(name=f"{tag}_waiting")
    held = [Signal(len(f), name=f"{tag}_held{k}") for k, f in enumerate(fields)]
    m.d.sync += [waiting.eq(bus.stb & ~bus.ack)] + [h.eq(f) for h, f in zip(held, fields)]
    same = 1
    for h, f in zip(held, fields):
        same = same & (h == f)
    harness.check(m, ~waiting | (bus.stb & same),
                  f"{name}: stb stays high with addr, we and w_data unchanged until ack",
                  src_loc_at=1)
