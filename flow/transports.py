"""Opening a transport by name: the board on a serial port, or one of the simulated boards.

The driver (``sw/driver.py``) is written against :class:`xnorflow.sw.driver.Transport` and names no
backend; this is the one place that knows them all.
"""
from xnorflow.sim.amaranth_transport import AmaranthTransport
from xnorflow.sim.verilator_transport import VerilatorTransport
from xnorflow.sw.driver import SerialTransport, TransportError

__all__ = ["open_transport", "ENGINES"]

#: The simulators ``xnorflow sim --engine`` offers.
ENGINES = ("verilator", "amaranth")


def open_transport(engine, top=None, **kw):
    """A transport by name: ``"verilator"`` or ``"amaranth"`` (simulating ``top``, a
    :class:`xnorflow.sim.build.TopSpec`), or ``"serial"`` (``port=``, ``baudrate=``)."""
    if engine == "serial":
        return SerialTransport(**kw)
    if engine == "verilator":
        return VerilatorTransport(top, **kw)
    if engine == "amaranth":
        return AmaranthTransport(top.elaborate(), **kw)
    raise TransportError(f"unknown engine {engine!r}: verilator, amaranth or serial")
