"""The dataflow accelerator as the host sees it: byte streams in and out, host link + core.

With ``taps`` (simulation only: ``xnorflow.sim.tops.engine_taps_spec``, the cocotb bench), the
top also brings every engine's output stream out as ports, so a bench can watch each engine
(docs/verification.md, "Per-engine streams"); without them it is exactly the design synthesis
builds.
"""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.top import DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT, LinkedCore

from .config import DataflowConfig
from .core import DataflowCore

__all__ = ["DataflowAccelerator", "TappedDataflowAccelerator", "TapSignature", "dataflow_top",
           "tap_port"]


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
    ``stb`` (L = 2), three with ``ram_reg`` (L = 3).
    """

    def __init__(self, config, *, max_payload=DEFAULT_MAX_PAYLOAD, timeout=DEFAULT_TIMEOUT):
        self.config = DataflowConfig.parse(config)
        super().__init__(DataflowCore(self.config), self.config.format().encode("ascii"),
                         max_payload=max_payload, timeout=timeout)


class TapSignature(wiring.Signature):
    """A stream watched from outside: its ``valid``, ``ready`` and ``payload`` (``width``
    bits), all outputs of the top (a tap only looks: it drives nothing in the design)."""

    def __init__(self, width):
        super().__init__({"valid": Out(1), "ready": Out(1), "payload": Out(width)})


def tap_port(engine):
    """The name of engine ``engine``'s tap member: its Verilog ports are
    ``engine{e}_o__valid``, ``engine{e}_o__ready`` and ``engine{e}_o__payload``."""
    return f"engine{engine}_o"


class TappedDataflowAccelerator(wiring.Component):
    """A :class:`DataflowAccelerator` (submodule ``accelerator``, unchanged) with every
    engine's output stream brought out, for simulation benches.

    The wrapper adds ports and nothing else: the taps read the engines' ``o`` streams
    (``accelerator.core.pipeline.engines[e].o``; Amaranth routes the signals up through the
    hierarchy), so the accelerator's logic and timing are the untapped one's.

    Ports
    -----
    i, o : as :class:`DataflowAccelerator`
    engine{e}_o : Out(TapSignature(engine e's output beat width)), one per engine
        ``valid``, ``ready`` and ``payload`` of the engine's output stream: a beat passes on
        a rising edge where both are high (the format: :mod:`xnorflow.hw.dataflow.shape`,
        :class:`~xnorflow.hw.dataflow.conv_engine.ConvEngine`).
    """

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.engines = accelerator.core.pipeline.engines
        taps = {tap_port(e): Out(TapSignature(len(engine.o.payload)))
                for e, engine in enumerate(self.engines)}
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8)), **taps})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        wiring.connect(m, wiring.flipped(self.i), acc.i)
        wiring.connect(m, acc.o, wiring.flipped(self.o))
        for e, engine in enumerate(self.engines):
            tap = getattr(self, tap_port(e))
            m.d.comb += [tap.valid.eq(engine.o.valid), tap.ready.eq(engine.o.ready),
                         tap.payload.eq(engine.o.payload)]
        return m


def dataflow_top(config, *, taps=False, **kw):
    """Factory (``"xnorflow.hw.dataflow.top:dataflow_top"``) taking the config's string form;
    ``kw`` go to :class:`DataflowAccelerator`. ``taps`` (simulation only, default off): wrap it
    in a :class:`TappedDataflowAccelerator`; off, the top is the accelerator itself."""
    accelerator = DataflowAccelerator(config, **kw)
    return TappedDataflowAccelerator(accelerator) if taps else accelerator
