"""The hardware targets a model can be simulated on: what differs between the overlay (one
array shared by every layer, a run-time program) and the dataflow build (one engine per
layer), behind one small interface that ``xnorflow sim`` and ``profile`` use.

A target knows its configuration, the top the simulators build (:class:`xnorflow.sim.build.TopSpec`),
the driver that runs it, whether a model fits (and how many images one run takes), and how
to compare the counters of a run with its cycle model.
"""
from __future__ import annotations

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.sim.netlist import netlist_spec
from xnorflow.sim.tops import accelerator_spec, dataflow_spec
from xnorflow.sw import program
from xnorflow.sw.dataflow_driver import DataflowDevice
from xnorflow.sw.dataflow_program import check_model, load_writes
from xnorflow.sw.driver import OverlayDevice
from xnorflow.sw.errors import XnorflowError

__all__ = ["OverlayTarget", "DataflowTarget", "NetlistTarget", "target_for"]


class OverlayTarget:
    """The overlay core (``hw/core``) of an :class:`xnorflow.hw.config.ArrayConfig`."""

    arch = "overlay"

    def __init__(self, config=None):
        self.config = ArrayConfig() if config is None else ArrayConfig.parse(config)

    @property
    def name(self):
        return self.config.format()

    def spec(self):
        return accelerator_spec(self.config)

    def device(self, transport):
        return OverlayDevice(transport, self.config)

    def program(self, model):
        """The bus writes loading ``model`` (built once per simulation, shared by every
        device); XnorflowError naming the layer when the model does not fit."""
        try:
            return program.build_program(model.layers, self.config)
        except program.ProgramError as e:
            raise XnorflowError(f"model '{model.name}' does not fit the {self.name} build: "
                                f"{e}") from None

    def max_batch(self, model):
        """Images one run of ``model`` (which fits: :meth:`program`) takes."""
        return program.max_batch(model.layers, self.config)

    @staticmethod
    def counters_match(batch):
        """The counters of one run equal the cycle model (total and every layer)."""
        want = batch["predicted"]
        return batch["total"] == want["total"] and batch["by_layer"] == want["by_layer"]


class DataflowTarget:
    """The dataflow build (``hw/dataflow``) of a :class:`xnorflow.hw.dataflow.config.DataflowConfig`."""

    arch = "dataflow"

    def __init__(self, config):
        self.config = DataflowConfig.parse(config)

    @property
    def name(self):
        return self.config.format()

    def spec(self):
        return dataflow_spec(self.config)

    def device(self, transport):
        return DataflowDevice(transport, self.config)

    def program(self, model):
        """The bus writes loading ``model``; the error names the layer and field when the
        model is not of the shape the build was made for."""
        check_model(model, self.config)
        return load_writes(model, self.config)

    def max_batch(self, model):
        """Images one run takes: a run's images and results must fit the FIFOs."""
        return min(self.config.in_images, self.config.out_images)

    @staticmethod
    def counters_match(batch):
        """Total, latency, interval and every engine's busy cycles equal the cycle model."""
        want = batch["predicted"]
        return all(batch[k] == want[k] for k in ("total", "latency", "interval")) \
            and batch["by_layer"] == want["by_layer"]


class NetlistTarget:
    """Another target's build as Yosys synthesises it for ``family`` (``xnorflow sim
    --netlist``, :mod:`xnorflow.sim.netlist`): the same driver, batch limits and cycle model; the
    simulators build the netlist, its undefined values random (``x_random``, from ``seed``)
    or zero."""

    def __init__(self, target, family, *, x_random=True, seed=1):
        self.target = target
        self.family = family
        self.x_random = bool(x_random)
        self.seed = int(seed)

    arch = property(lambda self: self.target.arch)
    name = property(lambda self: self.target.name)
    config = property(lambda self: self.target.config)

    def spec(self):
        return netlist_spec(self.target.spec(), self.family, x_random=self.x_random,
                            seed=self.seed)

    def device(self, transport):
        return self.target.device(transport)

    def program(self, model):
        return self.target.program(model)

    def max_batch(self, model):
        return self.target.max_batch(model)

    def counters_match(self, batch):
        return self.target.counters_match(batch)


def target_for(arch="overlay", config=None):
    """The target of ``arch`` with ``config`` (overlay: an ArrayConfig or text, default the
    default build; dataflow: a DataflowConfig or its ``df:`` text, required)."""
    if arch == "overlay":
        return OverlayTarget(config)
    if arch == "dataflow":
        if config is None:
            raise XnorflowError("the dataflow target needs a fold (--fold FOLD.json, or --board "
                                "to fold the model for a board)")
        return DataflowTarget(config)
    raise XnorflowError(f"unknown architecture {arch!r}: overlay or dataflow")
