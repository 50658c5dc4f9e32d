"""Board top-level: a byte-stream component (the accelerator) bridged to the board's UART.

The same top serves every supported board; what differs (clock, pins) comes from the
amaranth-boards platform it is built for.
"""
from amaranth.hdl import Cat, ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io, wiring

from amaranth.vendor import LatticeICE40Platform

from xnorflow.hw.board.clocking import PllClock
from xnorflow.hw.board.uart import UartRx, UartTx
from xnorflow.hw.register_slice import RegisterSlice

DEFAULT_BAUD = 115_200


def uart_divisor(clock_hz, baud):
    """Clock cycles per UART bit for ``baud`` at ``clock_hz`` (rounded; the UART needs ≥ 4)."""
    return int(round(clock_hz / baud))


class UartBridgeTop(Elaboratable):
    """Connects ``core.i``/``core.o`` (8-bit streams) to the platform's ``uart`` resource 0.

    Parameters
    ----------
    core : wiring.Component
        Has ``i: In(stream.Signature(8))`` and ``o: Out(stream.Signature(8))``; optionally a
        ``busy`` output shown on the green LED.
    baud : int
        Serial rate; the divisor is the platform's default clock over ``baud``.
    clock_hz : float or None
        Run the design at this frequency (or the closest lower one the FPGA's PLL makes,
        :class:`xnorflow.hw.board.clocking.PllClock`) instead of the board oscillator's. ``None``:
        the oscillator clocks the design directly.
    divisor : int or None
        Clock cycles per bit when elaborated *without* a platform (``platform is None``, e.g.
        for simulation). Then the UART lines and LEDs are the plain signals ``rx`` (in),
        ``tx`` (out) and ``led`` (out, ``[0]`` fault, ``[1]`` busy/heartbeat) instead of
        the platform's ``uart``/``led`` resources; everything else is the same logic.

    LEDs: red lights on a UART framing error or receive overrun (sticky until reset); green
    shows ``core.busy`` when the core has one, else a heartbeat (~1.4 Hz at 12 MHz).
    """

    def __init__(self, core, baud=DEFAULT_BAUD, *, clock_hz=None, divisor=None):
        self.core = core
        self.baud = baud
        self.clock_hz = clock_hz
        self.divisor = divisor
        # The board's pins as plain signals, used only when elaborated without a platform
        # (simulation, e.g. sim/pty_board.py): UART lines (idle high) and the two LEDs.
        self.rx = Signal(init=1)
        self.tx = Signal(init=1)
        self.led = Signal(2)  # [0] fault (red), [1] busy/heartbeat (green)

    def elaborate(self, platform):
        m = Module()
        if platform is None:
            if self.divisor is None:
                raise ValueError("UartBridgeTop without a platform needs divisor= "
                                 "(clock cycles per UART bit)")
            divisor = self.divisor
        elif self.clock_hz is not None:
            family = "ice40" if isinstance(platform, LatticeICE40Platform) else "ecp5"
            # ECP5: reset by the global set/reset until the PLL locks (PllClock)
            m.domains.sync = cd_sync = ClockDomain("sync", reset_less=family == "ecp5")
            m.submodules.clocking = pll = PllClock(cd_sync, self.clock_hz, family,
                                                   platform.default_clk_frequency)
            divisor = uart_divisor(pll.f_out_hz, self.baud)
        else:
            divisor = uart_divisor(platform.default_clk_frequency, self.baud)
        m.submodules.core = core = self.core
        m.submodules.rx = rx = UartRx(divisor)
        m.submodules.tx = tx = UartTx(divisor)
        if platform is None:
            m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        else:
            uart = platform.request("uart", 0, dir="-")  # every subsignal raw (the ULX3S adds rts, dtr)
            m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
            m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
            m.d.comb += [rx.rx.eq(uart_rx.i), uart_tx.o.eq(tx.tx)]
        wiring.connect(m, rx.o, core.i)
        # the core's response bytes pass a register before the transmitter: the host link
        # sends them from its buffer's block-RAM read through its framing multiplexer, and
        # the transmitter sits by the UART pin (ECP5 SFC build 21: 0.5 ns late at 100 MHz)
        m.submodules.tx_slice = tx_slice = RegisterSlice(8)
        wiring.connect(m, core.o, tx_slice.i)
        wiring.connect(m, tx_slice.o, tx.i)

        fault = Signal()
        with m.If(rx.frame_error | (rx.overruns != 0)):
            m.d.sync += fault.eq(1)
        beat = Signal(23)
        m.d.sync += beat.eq(beat + 1)
        busy = getattr(core, "busy", None)
        led_busy_value = busy if busy is not None else beat[-1]
        if platform is None:
            m.d.comb += self.led.eq(Cat(fault, led_busy_value))
            return m
        # The LEDs through the pins' own output registers: `fault` sits by the UART receiver,
        # and its route to the LED's pad was ECP5 SFC build 23's worst (0.8 ns late at 100 MHz).
        m.submodules.led_fault = led_fault = io.FFBuffer("o", platform.request("led", 0, dir="-"))
        m.submodules.led_busy = led_busy = io.FFBuffer("o", platform.request("led", 1, dir="-"))
        m.d.comb += [led_fault.o.eq(fault), led_busy.o.eq(led_busy_value)]
        return m
