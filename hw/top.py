"""The accelerator as the host sees it: byte streams in and out, host link + core."""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.bus import ADDR_WIDTH
from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core.core import Core
from xnorflow.hw.link import HostLink

__all__ = ["LinkedCore", "OverlayAccelerator", "accelerator_top", "DEFAULT_MAX_PAYLOAD",
           "DEFAULT_TIMEOUT"]

DEFAULT_MAX_PAYLOAD = 256
#: Idle cycles after which a partial request frame is dropped (answered TIMEOUT): about 87 ms
#: at 12 MHz, far above a UART byte time and ordinary host-side scheduling gaps.
DEFAULT_TIMEOUT = 1 << 20


class LinkedCore(wiring.Component):
    """A host link in front of a core that is a bus target: the shape both accelerators (the
    overlay's and the dataflow build's) share.

    Parameters
    ----------
    core : wiring.Component
        Any component with a ``bus : In(BusSignature(ADDR_WIDTH))`` port.
    ident_config : bytes
        The IDENT block's configuration bytes (the core's configuration text).
    max_payload, timeout : int
        The link's largest request/response payload and its idle timeout in cycles.

    Ports
    -----
    i : In(stream.Signature(8))
        Request bytes (frames of ``docs/protocol.md``).
    o : Out(stream.Signature(8))
        Response bytes.

    Attributes ``link`` and ``core``; latency: see ``HostLink`` and the core's bus timing.
    """

    def __init__(self, core, ident_config, *, max_payload=DEFAULT_MAX_PAYLOAD,
                 timeout=DEFAULT_TIMEOUT):
        self.core = core
        self.link = HostLink(max_payload=max_payload, timeout=timeout, addr_width=ADDR_WIDTH,
                             config=ident_config)
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        m.submodules.core = self.core
        wiring.connect(m, wiring.flipped(self.i), self.link.i)
        wiring.connect(m, self.link.o, wiring.flipped(self.o))
        wiring.connect(m, self.link.bus, self.core.bus)
        return m


class OverlayAccelerator(LinkedCore):
    """``HostLink`` joined to the ``Core`` over the register bus (``hw/bus.py``).

    The IDENT answer's configuration bytes are ``config.format()`` as ASCII (e.g.
    ``b"8x8x32"``), from which the driver recovers the build's :class:`ArrayConfig`.

    Parameters
    ----------
    config : ArrayConfig or str or None
        The core's array shape and memory sizes (None: the default).
    max_payload : int
        The link's largest request/response payload (its buffer depth).
    timeout : int
        The link's idle timeout in cycles for a partial frame.

    Ports
    -----
    i : In(stream.Signature(8))
        Request bytes (frames of ``docs/protocol.md``).
    o : Out(stream.Signature(8))
        Response bytes.

    Attributes
    ----------
    link : HostLink
    core : Core

    Latency: see ``HostLink`` (the core acks every bus request the cycle after ``stb``, so
    ``L = 1``: a WRITE of ``n`` bytes is answered within ``16 + 3n`` cycles of its last
    byte).
    """

    def __init__(self, config=None, *, max_payload=DEFAULT_MAX_PAYLOAD, timeout=DEFAULT_TIMEOUT):
        self.config = ArrayConfig() if config is None else ArrayConfig.parse(config)
        super().__init__(Core(self.config), self.config.format().encode("ascii"),
                         max_payload=max_payload, timeout=timeout)


def accelerator_top(config=None, **kw):
    """Factory (``"xnorflow.hw.top:accelerator_top"``) taking the config's string form."""
    return OverlayAccelerator(config, **kw)
