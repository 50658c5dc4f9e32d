"""The tops the simulators build: the whole accelerator (host link + core) per array config,
and a host link in front of a test memory (for the harness's protocol fuzz test)."""
from __future__ import annotations

import dataclasses
import hashlib

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.hw.link.hostlink import HostLink
from xnorflow.hw.link.testing import BusMemory
from xnorflow.sim.build import TopSpec

__all__ = ["accelerator_spec", "dataflow_spec", "engine_taps_spec", "SIM_TIMEOUT",
           "link_memory_top", "link_memory_spec"]

#: What the accelerator top is made of (board tops and tests excluded from the cache digest).
ACCELERATOR_SOURCES = ("hw/top.py", "hw/bus.py", "hw/config.py", "hw/core/*.py", "hw/link/*.py")

#: The link's idle timeout in simulation builds (cycles). Boards use xnorflow.hw.top's default (about
#: 87 ms at 12 MHz, above a UART byte time); the simulated host never pauses inside a frame, so
#: a short timeout only makes truncated frames (fuzz tests) end quickly. Nothing else differs.
SIM_TIMEOUT = 4096


def accelerator_spec(config=None, **kw) -> TopSpec:
    """TopSpec of the accelerator (``xnorflow.hw.top``) for ``config`` (ArrayConfig, its string form,
    or None for the default); ``kw`` go to the top (``max_payload``, ``timeout``: the link's,
    :data:`SIM_TIMEOUT` unless given). The cache key holds the canonical config string."""
    kw.setdefault("timeout", SIM_TIMEOUT)
    cfg = ArrayConfig() if config is None else ArrayConfig.parse(config)
    text = cfg.format()
    name = "accel-" + text.replace(",", "_").replace("=", "")
    extra = {k: v for k, v in kw.items() if not (k == "timeout" and v == SIM_TIMEOUT)}
    if extra:
        name += "-" + "_".join(f"{k}{v}" for k, v in sorted(extra.items()))
    return TopSpec("xnorflow.hw.top:accelerator_top", {"config": text, **kw}, name=name,
                   sources=ACCELERATOR_SOURCES)


#: What the dataflow top is made of.
DATAFLOW_SOURCES = ("hw/top.py", "hw/bus.py", "hw/dataflow/*.py", "hw/link/*.py",
                    "hw/core/pipeline.py")


def dataflow_spec(config, **kw) -> TopSpec:
    """TopSpec of the dataflow accelerator (``xnorflow.hw.dataflow.top``) for a
    :class:`~xnorflow.hw.dataflow.config.DataflowConfig` or its text; ``kw`` as :func:`accelerator_spec`.
    The cache directory is named by a short hash of the configuration (it can be long)."""
    kw.setdefault("timeout", SIM_TIMEOUT)
    text = DataflowConfig.parse(config).format()
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    extra = {k: v for k, v in kw.items() if not (k == "timeout" and v == SIM_TIMEOUT)}
    name = f"dataflow-{len(DataflowConfig.parse(text).engines)}e-{digest}"
    if extra:
        name += "-" + "_".join(f"{k}{v}" for k, v in sorted(extra.items()))
    return TopSpec(DATAFLOW_FACTORY, {"config": text, **kw}, name=name,
                   sources=DATAFLOW_SOURCES)


#: The factory of the dataflow top (:func:`xnorflow.hw.dataflow.top.dataflow_top`).
DATAFLOW_FACTORY = "xnorflow.hw.dataflow.top:dataflow_top"


def engine_taps_spec(spec: TopSpec) -> TopSpec:
    """``spec`` as the cocotb bench builds it: a dataflow top (:func:`dataflow_spec`) with its
    engine taps on (``taps=True``: every engine's output stream as ports ``engine{e}_o__*``,
    :class:`xnorflow.hw.dataflow.top.TappedDataflowAccelerator`), in a cache directory of its
    own; any other spec (the overlay, a netlist, a test top) unchanged. The Verilator harness
    and synthesis build the untapped top."""
    if spec.factory != DATAFLOW_FACTORY or spec.netlist is not None or spec.kwargs.get("taps"):
        return spec
    return dataclasses.replace(spec, kwargs={**spec.kwargs, "taps": True},
                               name=spec.name + "-taps")


def link_memory_top(max_payload=64, timeout=400, size=512, wait_bits=2, config=""):
    """HostLink + the link engineer's test memory (``xnorflow.hw.link.testing.BusMemory``): a top with
    byte streams ``i``/``o`` whose exact behaviour is ``xnorflow.sw.protocol.ReferenceLink(mem_size=
    size)``, the oracle of the harness fuzz test. ``timeout`` is short so truncated frames are
    answered quickly in simulation."""

    class _Top(wiring.Component):
        def __init__(self):
            super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.link = link = HostLink(max_payload=max_payload, timeout=timeout,
                                                config=config.encode())
            m.submodules.mem = mem = BusMemory(size=size, wait_bits=wait_bits)
            wiring.connect(m, link.bus, mem.bus)
            wiring.connect(m, wiring.flipped(self.i), link.i)
            wiring.connect(m, link.o, wiring.flipped(self.o))
            return m

    return _Top()


def link_memory_spec(**kw) -> TopSpec:
    """TopSpec of :func:`link_memory_top` (depends on hw/link and hw/bus.py only)."""
    return TopSpec("xnorflow.sim.tops:link_memory_top", kw, name="linkmem",
                   sources=("hw/link/*.py", "hw/bus.py", "sim/tops.py"))
