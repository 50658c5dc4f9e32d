"""The hardware targets a model can be simulated on: what differs between the overlay (one
array shared by every layer, a run-time program) and the dataflow build (one engine per
layer), behind one small interface that ``xnorflow sim`` and ``profile`` use.

A target knows its configuration, the top the simulators build (:class:`sim.build.TopSpec`),
the driver that runs it, whether a model fits (and how many images one run takes), and how
to compare the counters of a run with its cycle model.
"""
from __future__ import annotations

from sw.errors import XnorflowError

__all__ = ["OverlayTarget", "DataflowTarget", "NetlistTarget", "target_for"]


class OverlayTarget:
    """The overlay core (``hw/core``) of an :class:`hw.config.ArrayConfig`."""

    arch = "overlay"

    def __init__(self, config=None):
        from hw.config import ArrayConfig
        self.config = ArrayConfig() if config is None else ArrayConfig.parse(config)

    @property
    def name(self):
        return self.config.format()

    def spec(self):
        from sim.tops import accelerator_spec
        return accelerator_spec(self.config)

    def device(self, transport):
        from sw.driver import Accelerator
        return Accelerator(transport, self.config)

    def max_batch(self, model):
        """Images one run takes; XnorflowError naming the layer when the model does not fit."""
        from sw import program
        try:
            program.build_program(model.layers, self.config)
            return program.max_batch(model.layers, self.config)
        except program.ProgramError as e:
            raise XnorflowError(f"model '{model.name}' does not fit the {self.name} build: "
                                f"{e}") from None

    @staticmethod
    def counters_match(batch):
        """The counters of one run equal the cycle model (total and every layer)."""
        want = batch["predicted"]
        return batch["total"] == want["total"] and batch["by_layer"] == want["by_layer"]


class DataflowTarget:
    """The dataflow build (``hw/dataflow``) of a :class:`hw.dataflow.config.DataflowConfig`."""

    arch = "dataflow"

    def __init__(self, config):
        from hw.dataflow.config import DataflowConfig
        self.config = DataflowConfig.parse(config)

    @property
    def name(self):
        return self.config.format()

    def spec(self):
        from sim.tops import dataflow_spec
        return dataflow_spec(self.config)

    def device(self, transport):
        from sw.dataflow_driver import DataflowDevice
        return DataflowDevice(transport, self.config)

    def max_batch(self, model):
        from sw.dataflow_program import check_model
        check_model(model, self.config)
        return min(self.config.in_images, self.config.out_images)

    @staticmethod
    def counters_match(batch):
        """Total, latency, interval and every engine's busy cycles equal the cycle model."""
        want = batch["predicted"]
        return all(batch[k] == want[k] for k in ("total", "latency", "interval")) \
            and batch["by_layer"] == want["by_layer"]


class NetlistTarget:
    """Another target's build as Yosys synthesises it for ``family`` (``xnorflow sim
    --netlist``, :mod:`sim.netlist`): the same driver, batch limits and cycle model; the
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
        from sim.netlist import netlist_spec
        return netlist_spec(self.target.spec(), self.family, x_random=self.x_random,
                            seed=self.seed)

    def device(self, transport):
        return self.target.device(transport)

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
