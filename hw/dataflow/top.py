"""The dataflow accelerator as the host sees it: byte streams in and out, host link + core."""
from xnorflow.hw.top import DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT, LinkedCore

from .config import DataflowConfig
from .core import DataflowCore

__all__ = ["DataflowAccelerator", "dataflow_top"]


class DataflowAccelerator(LinkedCore):
    """:class:`xnorflow.hw.top.LinkedCore` around a :class:`~xnorflow.hw.dataflow.core.DataflowCore`.

    The IDENT answer's configuration bytes are ``config.format()`` as ASCII (``df:…``), from
    which the driver recovers the build's :class:`~xnorflow.hw.dataflow.config.DataflowConfig`.

    Parameters
    ----------
    config : DataflowConfig or str
    max_payload, timeout : int
        The link's largest payload and idle timeout (as :class:`xnorflow.hw.top.OverlayAccelerator`).

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
        super().__init__(DataflowCore(self.config), self.config.format().encode("ascii"),
                         max_payload=max_payload, timeout=timeout)


def dataflow_top(config, **kw):
    """Factory (``"xnorflow.hw.dataflow.top:dataflow_top"``) taking the config's string form."""
    return DataflowAccelerator(config, **kw)
