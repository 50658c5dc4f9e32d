"""The dataflow accelerator as the host sees it: byte streams in and out, host link + core."""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bus import ADDR_WIDTH
from hw.link import HostLink
from hw.top import DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT

from .config import DataflowConfig
from .core import DataflowCore

__all__ = ["DataflowAccelerator", "dataflow_top"]


class DataflowAccelerator(wiring.Component):
    """``HostLink`` joined to a :class:`~hw.dataflow.core.DataflowCore` over the register bus.

    The IDENT answer's configuration bytes are ``config.format()`` as ASCII (``df:…``), from
    which the driver recovers the build's :class:`~hw.dataflow.config.DataflowConfig`.

    Parameters
    ----------
    config : DataflowConfig or str
    max_payload, timeout : int
        The link's largest payload and idle timeout (as :class:`hw.top.Accelerator`).

    Ports
    -----
    i : In(stream.Signature(8))
        Request bytes (frames of docs/protocol.md).
    o : Out(stream.Signature(8))
        Response bytes.

    Latency: see ``HostLink``; the core acknowledges every bus request two cycles after
    ``stb`` (L = 2).
    """

    def __init__(self, config, *, max_payload=DEFAULT_MAX_PAYLOAD, timeout=DEFAULT_TIMEOUT):
        self.config = DataflowConfig.parse(config)
        self.core = DataflowCore(self.config)
        self.link = HostLink(max_payload=max_payload, timeout=timeout, addr_width=ADDR_WIDTH,
                             config=self.config.format().encode("ascii"))
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        m.submodules.core = self.core
        wiring.connect(m, wiring.flipped(self.i), self.link.i)
        wiring.connect(m, self.link.o, wiring.flipped(self.o))
        wiring.connect(m, self.link.bus, self.core.bus)
        return m


def dataflow_top(config, **kw):
    """Factory (``"hw.dataflow.top:dataflow_top"``) taking the config's string form."""
    return DataflowAccelerator(config, **kw)
