"""Command executor: checked frames in, bus accesses, response header and payload out."""
from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..bus import BusSignature, ADDR_WIDTH
from .defs import (Cmd, Status, FrameInfo, ResponseHeader, BufferWriteSignature,
                   BufferReadSignature, ident_base, payload_buffer_init)

__all__ = ["CommandExecutor"]


class CommandExecutor(wiring.Component):
    """Executes one checked frame at a time as a bus initiator (``hw/bus.py``).

    The receiver has already stored the payload in the buffer and checked the CRC, so a
    frame that failed its CRC never reaches this unit's bus side: WRITE data is read from the
    buffer and written to the bus only after the whole frame checked (store and forward).

    - receiver verdict other than OK: answer that status, empty payload.
    - IDENT (length 0): answer the identification block, which the buffer holds from
      ``ident_base(max_payload)`` on (:func:`~xnorflow.hw.link.defs.payload_buffer_init`).
    - WRITE (length >= 4: ``addr u32 LE | data``): one bus write per data byte at ``addr``,
      ``addr+1``, ...; answer OK with an empty payload.
    - READ (length 6: ``addr u32 LE | count u16 LE``, ``count <= max_payload``): one bus
      read per byte into the buffer; answer OK with the ``count`` bytes.
    - a bus ``err`` (or an address at or above ``2**addr_width``, which is refused without
      a bus access) stops the command: answer BUS_ERROR with the failing byte's offset
      (u16 LE). Bytes of a WRITE before the failing one have been written.
    - wrong length for the command: BAD_LENGTH; READ count above ``max_payload``:
      OVERSIZED; any other command byte: UNKNOWN_COMMAND.

    After the header and every payload byte have gone to the transmitter and the
    transmitter is idle again, ``frame.ready`` is pulsed, releasing the receiver.

    Parameters
    ----------
    max_payload : int
        Buffer depth (>= 16, and large enough for ``ident``).
    ident : bytes
        The identification block answered to IDENT; the buffer must hold it at
        ``ident_base(max_payload)`` (its depth ``buffer_depth``).
    addr_width : int
        Bus address width.

    Ports
    -----
    frame : In(stream.Signature(FrameInfo))
        From the receiver; ``ready`` pulses once the response is completely sent.
    buf_w : Out(BufferWriteSignature(max_payload))
        Buffer writes (READ data, BUS_ERROR offset); owned by the executor while
        ``frame.valid``.
    buf_r : Out(BufferReadSignature(buffer_depth))
        Buffer reads (request payload, response payload, the IDENT block).
    header : Out(stream.Signature(ResponseHeader))
        To the transmitter.
    payload : Out(stream.Signature(8))
        To the transmitter; ``valid`` and ``payload`` are registers (independent of
        ``ready``), full rate.
    tx_idle : In(1)
        From the transmitter.
    bus : Out(BusSignature(addr_width))
        One request at a time: ``stb`` held with ``addr``/``we``/``w_data`` until ``ack``.

    Latency (from ``frame.valid``): the header is offered 2 cycles later for a receiver
    verdict, an unknown command or IDENT (one cycle decodes the frame's fields into
    registers), 10 for a BAD_LENGTH or OVERSIZED WRITE/READ (the address/count fields are
    read from the buffer first), and ``10 + n * (2 + L)`` (WRITE) or ``10 + n * (1 + L)``
    (READ) after ``n`` bus accesses, ``L`` being the target's ack latency (>= 1). The buffer
    streams to the transmitter at one byte per cycle.
    """

    def __init__(self, *, max_payload=256, ident=b"", addr_width=ADDR_WIDTH):
        if max_payload < 16:
            raise ValueError("max_payload must be at least 16")
        if len(ident) > max_payload or not ident:
            raise ValueError("the ident block must have 1..max_payload bytes")
        self.max_payload = max_payload
        self.ident = bytes(ident)
        self.addr_width = addr_width
        self.buffer_depth = len(payload_buffer_init(max_payload, self.ident))
        super().__init__({
            "frame": In(stream.Signature(FrameInfo)),
            "buf_w": Out(BufferWriteSignature(max_payload)),
            "buf_r": Out(BufferReadSignature(self.buffer_depth)),
            "header": Out(stream.Signature(ResponseHeader)),
            "payload": Out(stream.Signature(8)),
            "tx_idle": In(1),
            "bus": Out(BusSignature(addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        info = self.frame.payload

        idx = Signal(range(self.max_payload + 2))     # byte index / offset
        # data bytes of the command still to go (the count, then counted down beside idx):
        # its end is `left == 1` before a step, a compare with a constant, where the end as
        # `idx + 1 == n` was an adder and a 16-bit compare of two registers in front of
        # `at_end` and the strobe (the iCEBreaker dataflow build's critical path at 36.75 MHz)
        left = Signal(16)
        addr = Signal(33)                             # 32-bit address + offset, no wrap
        status = Signal(8)
        rlen = Signal(16)
        pvalid = Signal()                             # payload stream register: full
        pdata = Signal(8)                             # ... and its byte
        bvalid = Signal()                             # the buffer's read port holds a byte
        # Registered flags for the bus states: the strobe is decoded from them and the state
        # alone (the address and byte-count compares feeding it combinationally were the
        # start of the iCE40 build's critical path). Each is set from the next value of what
        # it tests wherever that changes.
        oor = Signal()                                # addr is outside the bus's range
        # idx == the bytes to go through: n (WRITE, READ) or rlen (STREAM). Kept as a register
        # beside idx: the compare sat in front of the FSM's clock enable (iCE40 at 40 MHz).
        at_end = Signal()
        # The bus strobe, a register loaded with what the states below would decode: it is
        # the clock enable of the target's request registers (the core's ~40).
        stb = Signal()

        m.d.comb += [
            self.header.payload.status.eq(status),
            self.header.payload.length.eq(rlen),
            self.payload.valid.eq(pvalid),
            self.payload.payload.eq(pdata),
            self.bus.addr.eq(addr[:self.addr_width]),
            self.bus.stb.eq(stb),
            self.bus.w_data.eq(self.buf_r.data),
        ]

        from_ident = Signal()                         # the response is the IDENT block

        def answer(code, length=0):
            m.d.sync += [status.eq(code), rlen.eq(length)]
            m.next = "SEND"

        d = self._frame_decode(m, info)
        r = SimpleNamespace(idx=idx, left=left, addr=addr, oor=oor, at_end=at_end, stb=stb)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.frame.valid):
                    # FIELDS loads addr[:32]: clear only the carry bit (ECP5 SFC build 20)
                    m.d.sync += [idx.eq(0), addr[32].eq(0), oor.eq(0), from_ident.eq(0)]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(d.failed):
                    answer(info.status)
                with m.Elif(d.is_ident):
                    with m.If(~d.empty):
                        answer(Status.BAD_LENGTH)
                    with m.Else():
                        m.d.sync += from_ident.eq(1)
                        answer(Status.OK, len(self.ident))
                with m.Elif(d.write_or_read):
                    m.next = "FIELDS"
                with m.Else():
                    answer(Status.UNKNOWN_COMMAND)

            with m.State("FIELDS"):
                # Read buffer bytes 0..5 (addr u32, count u16) into addr[:32] and left; the
                # data of index idx-1 arrives while idx is presented, shifted in from the top.
                fields = Cat(addr[:32], left)
                m.d.comb += [self.buf_r.addr.eq(idx), self.buf_r.en.eq(1)]
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx != 0):
                    m.d.sync += fields.eq(Cat(fields[8:], self.buf_r.data))
                with m.If(idx == 6):
                    m.next = "DECODE"
            with m.State("DECODE"):
                in_range = addr[self.addr_width:] == 0
                m.d.sync += [idx.eq(0), oor.eq(~in_range)]
                with m.If(d.is_write):
                    m.d.sync += [left.eq(info.length - 4), at_end.eq(d.address_only)]
                    with m.If(d.short):
                        answer(Status.BAD_LENGTH)
                    with m.Else():
                        m.next = "W_READ"
                with m.Else():
                    m.d.sync += at_end.eq(left == 0)
                    with m.If(~d.read_length):
                        answer(Status.BAD_LENGTH)
                    with m.Elif(left > self.max_payload):
                        answer(Status.OVERSIZED)
                    with m.Else():
                        m.d.sync += stb.eq((left != 0) & in_range)
                        m.next = "R_BUS"

            self._bus_states(m, r, answer)

            with m.State("SEND"):
                m.d.comb += self.header.valid.eq(1)
                with m.If(self.header.ready):
                    m.d.sync += [idx.eq(0), left.eq(rlen), pvalid.eq(0), bvalid.eq(0),
                                 at_end.eq(rlen == 0)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                with m.If(self._stream(m, idx, left, at_end, pvalid, pdata, bvalid,
                                       from_ident)):
                    m.next = "WAIT_TX"
            with m.State("WAIT_TX"):
                with m.If(self.tx_idle):
                    m.d.comb += self.frame.ready.eq(1)
                    m.next = "IDLE"
        return m

    def _frame_decode(self, m, info):
        """The frame's fields decoded into registers, loaded every cycle: the fields hold
        still while ``frame.valid``, so DISPATCH (the cycle after IDLE took the frame) and
        every state after it see them decoded. Decoding in IDLE put the receiver's valid
        logic, these compares and the clock enable of the response header's 24 registers on
        one path (iCE40 at 40 MHz: 7.5 ns late); decoding the length in DECODE, the compares
        before the header's data (3.8 ns late)."""
        failed = Signal()                             # the receiver's verdict is not OK
        is_ident = Signal()
        empty = Signal()                              # length 0
        write_or_read = Signal()
        is_write = Signal()
        short = Signal()                              # length < 4: no whole address
        address_only = Signal()                       # length 4: a WRITE of no data
        read_length = Signal()                        # length 6: address and count
        m.d.sync += [failed.eq(info.status != Status.OK), is_ident.eq(info.cmd == Cmd.IDENT),
                     empty.eq(info.length == 0),
                     write_or_read.eq((info.cmd == Cmd.WRITE) | (info.cmd == Cmd.READ)),
                     is_write.eq(info.cmd == Cmd.WRITE), short.eq(info.length < 4),
                     address_only.eq(info.length == 4), read_length.eq(info.length == 6)]
        return SimpleNamespace(failed=failed, is_ident=is_ident, empty=empty,
                               write_or_read=write_or_read, is_write=is_write, short=short,
                               address_only=address_only, read_length=read_length)

    def _bus_states(self, m, r, answer):
        """WRITE and READ on the bus, and a bus error's answer (states of ``elaborate``'s
        FSM): ``r`` holds the byte index, the bytes left, address and the registered flags.
        In W_BUS and R_BUS ``oor`` is low, so the next address is out of range exactly when
        this one's bits below ``addr_width`` are all ones (no carry chain)."""
        last_in_range = r.addr[:self.addr_width].all()
        with m.State("W_READ"):
            with m.If(r.at_end):
                answer(Status.OK)
            with m.Else():
                m.d.comb += [self.buf_r.addr.eq(r.idx + 4), self.buf_r.en.eq(1)]
                m.d.sync += r.stb.eq(~r.oor)
                m.next = "W_BUS"
        with m.State("W_BUS"):
            # buf_r.data holds the byte (en is low here) while stb is held.
            with m.If(r.oor):
                m.next = "ERR0"
            with m.Else():
                m.d.comb += self.bus.we.eq(1)
                with m.If(self.bus.ack):
                    m.d.sync += r.stb.eq(0)
                    with m.If(self.bus.err):
                        m.next = "ERR0"
                    with m.Else():
                        m.d.sync += [r.idx.eq(r.idx + 1), r.left.eq(r.left - 1),
                                     r.addr.eq(r.addr + 1), r.oor.eq(last_in_range),
                                     r.at_end.eq(r.left == 1)]
                        m.next = "W_READ"

        with m.State("R_BUS"):
            with m.If(r.at_end):
                answer(Status.OK, r.idx)               # every byte read: idx is the count
            with m.Elif(r.oor):
                m.next = "ERR0"
            with m.Else():
                with m.If(self.bus.ack):
                    m.d.sync += r.stb.eq(0)
                    with m.If(self.bus.err):
                        m.next = "ERR0"
                    with m.Else():
                        m.d.comb += [self.buf_w.en.eq(1), self.buf_w.addr.eq(r.idx),
                                     self.buf_w.data.eq(self.bus.r_data)]
                        m.d.sync += [r.idx.eq(r.idx + 1), r.left.eq(r.left - 1),
                                     r.addr.eq(r.addr + 1), r.oor.eq(last_in_range),
                                     r.at_end.eq(r.left == 1),
                                     r.stb.eq((r.left != 1) & ~last_in_range)]

        with m.State("ERR0"):
            m.d.comb += [self.buf_w.en.eq(1), self.buf_w.addr.eq(0),
                         self.buf_w.data.eq(r.idx[:8])]
            m.next = "ERR1"
        with m.State("ERR1"):
            m.d.comb += [self.buf_w.en.eq(1), self.buf_w.addr.eq(1),
                         self.buf_w.data.eq(r.idx >> 8)]
            answer(Status.BUS_ERROR, 2)

    def _stream(self, m, idx, left, at_end, pvalid, pdata, bvalid, from_ident):
        """Buffer -> payload stream at full rate through two stages: the buffer's read port
        (``bvalid``) and the payload register (``pvalid``, ``pdata``). The register keeps the
        block RAM's clock-to-out (~5.6 ns on ECP5) away from the transmitter's framing
        multiplexer and the UART's slice (ECP5 SFC build 22: 0.9 ns late); the header's 4
        cycles fill both stages before the first payload byte is taken. Returns "every byte
        has been taken". The IDENT block is read from ``ident_base`` on: one address bit set
        (``idx`` stays below it). ``left`` counts the bytes still to fetch (from the
        response's length), so the end is ``left == 1`` before a fetch."""
        ident_bit = ident_base(self.max_payload).bit_length() - 1   # the block's address bit
        take = Signal()                                   # the payload register loads
        fetch = Signal()                                  # the read port reads idx
        m.d.comb += [take.eq(~pvalid | self.payload.ready), fetch.eq(~bvalid | take),
                     self.buf_r.addr.eq(idx | (from_ident << ident_bit)),
                     self.buf_r.en.eq(fetch)]
        with m.If(take):
            m.d.sync += [pvalid.eq(bvalid), pdata.eq(self.buf_r.data)]
        with m.If(fetch):
            m.d.sync += bvalid.eq(~at_end)                # at_end: left == 0
            with m.If(~at_end):
                m.d.sync += [idx.eq(idx + 1), left.eq(left - 1), at_end.eq(left == 1)]
        return at_end & ~bvalid & ~pvalid
