"""HostLink: framed commands on a byte stream <-> the accelerator's register bus."""
from amaranth.hdl import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from ..bus import BusSignature, ADDR_WIDTH
from ..registered_read import registered_read
from .defs import ident_block, payload_buffer_init
from .executor import CommandExecutor
from .receiver import FrameReceiver
from .transmitter import ResponseTransmitter

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """The device side of the host link (protocol: ``docs/protocol.md``).

    ``FrameReceiver`` -> payload buffer (``lib.memory``, ``max_payload`` bytes) ->
    ``CommandExecutor`` (bus initiator) -> ``ResponseTransmitter``. One request is handled
    at a time: ``i.ready`` stays low from the end of a frame until its response has been
    sent completely. Every frame that starts with a sync byte gets exactly one response;
    bytes outside frames are skipped; a bad CRC, oversized length, unknown command or
    truncated frame (after ``timeout`` idle cycles) only produces an error response and
    leaves the link hunting for the next sync byte. WRITE data reaches the bus only after
    the frame's CRC has checked (store and forward through the buffer).

    Parameters
    ----------
    max_payload : int
        Largest request/response payload in bytes (16..65535); the buffer depth.
    timeout : int
        A partial frame whose next byte takes longer than this many cycles is dropped and
        answered TIMEOUT. Pick it well above one byte time of the link (e.g. a UART at
        115200 Bd and 12 MHz moves a byte every 1042 cycles).
    addr_width : int
        Bus address width.
    config : bytes
        Up to 255 configuration bytes reported by IDENT (owned by the accelerator top).

    Ports
    -----
    i : In(stream.Signature(8))
        Request bytes.
    o : Out(stream.Signature(8))
        Response bytes; backpressure (``o.ready`` low) is respected at any point.
    bus : Out(BusSignature(addr_width))
        Register bus initiator.

    Throughput: one byte per cycle on ``i`` within a frame and on ``o`` within a response.

    Response time: with the bus target acknowledging at most ``L >= 1`` cycles after ``stb``
    rises, the first byte of the response is offered on ``o`` at most
    ``16 + n * (2 + L)`` cycles after the last byte of the request was accepted, where
    ``n`` is the number of bytes a WRITE writes or a READ reads (0 for other frames); a
    truncated frame is
    answered ``timeout + 6`` cycles after its last byte. The response then takes
    ``7 + payload`` cycles plus the cycles ``o.ready`` is low, and ``i.ready`` rises again
    within 3 cycles of its last byte being taken. With ``n <= max_payload`` every frame is
    answered within ``16 + max_payload * (2 + L)`` cycles, however malformed.
    """

    def __init__(self, *, max_payload=256, timeout=1 << 20, addr_width=ADDR_WIDTH,
                 config=b""):
        self.max_payload = max_payload
        self.timeout = timeout
        self.addr_width = addr_width
        self.config = bytes(config)
        self.ident = ident_block(max_payload, addr_width, self.config)
        if len(self.ident) > max_payload:
            raise ValueError(f"the IDENT block ({len(self.ident)} bytes with {len(self.config)} "
                             f"config bytes) does not fit max_payload={max_payload}")
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "bus": Out(BusSignature(addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = FrameReceiver(max_payload=self.max_payload,
                                             timeout=self.timeout)
        m.submodules.ex = ex = CommandExecutor(max_payload=self.max_payload, ident=self.ident,
                                               addr_width=self.addr_width)
        m.submodules.tx = tx = ResponseTransmitter()
        init = payload_buffer_init(self.max_payload, self.ident)
        # no_rw_check, honoured for a registered asynchronous read: the buffer is never read
        # and written in the same cycle (the receiver writes only before it presents a frame,
        # while the executor idles; the executor reads and writes in different states;
        # tests/formal/test_link_formal.py proves it). Without it Yosys adds a read-during-
        # write bypass, an address compare behind the executor's next-state logic (iCE40 at
        # 40 MHz: 6.3 ns late).
        m.submodules.buf = buf = Memory(shape=8, depth=len(init), init=init,
                                        attrs={"no_rw_check": 1})
        wr = buf.write_port()
        rd = buf.read_port(domain="comb")

        connect(m, wiring.flipped(self.i), rx.i)
        connect(m, rx.frame, ex.frame)
        connect(m, ex.header, tx.header)
        connect(m, ex.payload, tx.payload)
        connect(m, tx.o, wiring.flipped(self.o))
        connect(m, ex.bus, wiring.flipped(self.bus))
        m.d.comb += ex.tx_idle.eq(tx.idle)

        # The receiver owns the buffer's write port until it presents a frame; from then
        # until the frame is acknowledged, the executor does.
        own = rx.frame.valid
        m.d.comb += [
            wr.addr.eq(Mux(own, ex.buf_w.addr, rx.buf.addr)),
            wr.data.eq(Mux(own, ex.buf_w.data, rx.buf.data)),
            wr.en.eq(Mux(own, ex.buf_w.en, rx.buf.en)),
            rd.addr.eq(ex.buf_r.addr),
            ex.buf_r.data.eq(registered_read(m, rd.data, "buf_data", en=ex.buf_r.en)),
        ]
        return m
