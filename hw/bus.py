"""The register bus between the host link and the accelerator core.

The host link turns framed commands into byte-wide reads and writes on this bus; the core
decodes the address into its memories and registers. Keeping the bus byte-wide makes the link
independent of the array's word width K: the core assembles K-bit words itself.

Signature (direction as seen from the bus *initiator*, i.e. the host link)
--------------------------------------------------------------------------
addr : Out(ADDR_WIDTH)
    Byte address of the access. Held stable while ``stb`` is high.
w_data : Out(8)
    Byte to write. Held stable while ``stb`` is high.
we : Out(1)
    1 for a write, 0 for a read. Held stable while ``stb`` is high.
stb : Out(1)
    Request strobe. The initiator raises it and holds it (with ``addr``, ``w_data``, ``we``)
    until ``ack`` is seen high; it drops ``stb`` (or presents the next request) in the cycle
    after the ``ack``. A target may therefore still use ``addr`` and ``w_data`` in its ack
    cycle (the core registers its decoded write enables and writes then).
ack : In(1)
    The target completes the request. High for exactly one cycle per request, in any cycle
    after ``stb`` rose (so a target may take as long as it needs, e.g. while the core runs).
r_data : In(8)
    The byte read; valid in the cycle ``ack`` is high for a read.
err : In(1)
    Valid with ``ack``: the address is not mapped, or the region is read-only for a write,
    or the region cannot be accessed now (e.g. writing weights while the core runs). The
    link reports it to the host as an error; nothing was written.

Timing: one request per ``ack``; a target that acks in the cycle after ``stb`` rises gives a
throughput of one byte every two cycles, acking combinationally is not allowed (it would
make the initiator's request-to-ack path a combinational loop risk across components).
"""
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

ADDR_WIDTH = 24


class BusSignature(wiring.Signature):
    """Byte-wide request/acknowledge bus; see the module docstring for the protocol."""

    def __init__(self, addr_width=ADDR_WIDTH):
        self.addr_width = addr_width
        super().__init__({
            "addr": Out(addr_width),
            "w_data": Out(8),
            "we": Out(1),
            "stb": Out(1),
            "ack": In(1),
            "r_data": In(8),
            "err": In(1),
        })

    def __eq__(self, other):
        return isinstance(other, BusSignature) and other.addr_width == self.addr_width

    def __repr__(self):
        return f"BusSignature({self.addr_width})"
