"""8N1 UART receiver and transmitter with byte streams, for bridging a serial port to the host link.

Both take ``divisor`` = clock frequency / baud rate (≥ 4), fixed at elaboration.
"""
from amaranth.hdl import Signal, Module, Cat
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out
from amaranth.lib.cdc import FFSynchronizer


class UartRx(wiring.Component):
    """UART receiver, 8 data bits, no parity, 1 stop bit, LSB first.

    Ports
    -----
    rx : In(1)
        The serial line (idle high). Synchronised internally (2 flip-flops).
    o : Out(stream.Signature(8))
        Received bytes. The receiver cannot be stalled by the line, so a byte not taken
        before the next one completes is dropped and counted in ``overruns``.
    frame_error : Out(1)
        Pulses for one cycle when a stop bit is low; the byte is discarded.
    overruns : Out(8)
        Saturating count of bytes lost because ``o`` was not ready.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Timing: a byte is presented about 9.5 bit times after its start bit's falling edge.
    """

    def __init__(self, divisor):
        if divisor < 4:
            raise ValueError(f"UART divisor must be at least 4, got {divisor}")
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overruns": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(10))
        shreg = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += self.frame_error.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # Sample in the middle of data bit 0: 1.5 bit times after the falling edge.
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        with m.If(self.o.valid & ~self.o.ready):
                            with m.If(self.overruns != 0xff):
                                m.d.sync += self.overruns.eq(self.overruns + 1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                # Wait for the line to return high before looking for the next start bit.
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter, 8N1, LSB first.

    Ports
    -----
    i : In(stream.Signature(8))
        Bytes to send; one is accepted whenever the holding register is empty (``ready`` is
        a flip-flop): while the byte before it is on the line.
    tx : Out(1)
        The serial line (idle high).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Timing: a byte's start bit begins one cycle after it is accepted by an idle transmitter;
    10 bit times per byte; throughput one byte per ``10·divisor`` cycles.
    """

    def __init__(self, divisor):
        if divisor < 4:
            raise ValueError(f"UART divisor must be at least 4, got {divisor}")
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(10, init=0x3ff)  # start bit, 8 data bits, stop bit (sent LSB first)
        left = Signal(range(11))
        # The byte waits in a register of its own: the shift register's load never meets
        # its source's logic (the link's response multiplexer and CRC: ECP5 SFC build 19,
        # 0.6 ns late at 100 MHz), and the next byte is taken while this one is sent.
        held, held_valid = Signal(8, name="held"), Signal(name="held_valid")
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(~held_valid)]
        with m.If(self.i.valid & ~held_valid):
            m.d.sync += [held.eq(self.i.payload), held_valid.eq(1)]
        with m.If(held_valid & (left == 0)):
            m.d.sync += [shreg.eq(Cat(0, held, 1)), left.eq(10), held_valid.eq(0),
                         timer.eq(self.divisor - 1)]
        with m.Elif(left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), left.eq(left - 1),
                             timer.eq(self.divisor - 1)]
        return m
