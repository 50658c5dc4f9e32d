"""The host driver of a dataflow build: identify it, load a model's weights, stream images.

The same frames, transports and error handling as the overlay's driver (:mod:`xnorflow.sw.driver`);
what differs is the address map (:mod:`xnorflow.hw.dataflow.memory_map`) and the run: images go into
the input port, START lets COUNT of them through the pipeline back to back, the results come
out of the output port, and the core's counters give the run's cycles, the first image's
latency and the steady-state interval.
"""

import numpy as np

from xnorflow.hw.dataflow import memory_map as mm
from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.sw import dataflow_program as dp
from xnorflow.sw.driver import DriverError, OverlayDevice

__all__ = ["DataflowDevice"]



class DataflowDevice(OverlayDevice):
    """A dataflow build behind a :class:`~xnorflow.sw.driver.Transport`.

    Parameters
    ----------
    transport : Transport
    config : DataflowConfig, str or None
        The build's configuration; None: read from the IDENT block (``df:…``).
    poll_limit : int
        STATUS polls after the predicted end of a run before giving up on hardware (a
        simulation bounds the run in cycles: :meth:`OverlayDevice._wait_idle`).
    """

    STATUS_BUSY = mm.STATUS_BUSY

    def __init__(self, transport, config=None, *, poll_limit=10_000):
        super().__init__(transport, None, poll_limit=poll_limit)
        self._config = None if config is None else DataflowConfig.parse(config)
        self.runs = []

    def _discover_config(self):
        text = self.ident().config
        try:
            return DataflowConfig.parse(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as e:
            raise DriverError(f"the device is not a dataflow build (IDENT configuration "
                              f"{text!r}: {e})") from None

    def load(self, model, writes=None):
        """Write every engine's weights and channel constants; DataflowProgramError (naming
        the layer and field) when ``model`` is not of the shape the build was made for.
        ``writes``: :func:`~xnorflow.sw.dataflow_program.load_writes` already computed."""
        if self.read32(mm.REG_ID) != mm.ID_VALUE:
            raise DriverError(f"the device does not identify as an xnorflow dataflow core "
                              f"(ID register 0x{self.read32(mm.REG_ID):08x})")
        if writes is None:
            writes = dp.load_writes(model, self.config)
        reqs = [r for addr, data in writes for r in self.write_requests(addr, data)]
        self._exchange(reqs)
        self.model = model
        # one counter per engine: a conv's pool runs in its engine
        self.layers = [layer for layer, _ in dp.engine_layers(model)]
        # a run must fit both FIFOs: the results are read after the run ends
        self.max_batch = min(self.config.in_images, self.config.out_images)
        self.runs = []

    # run(x, check=, batch=) is the overlay driver's: runs of at most max_batch images through
    # _run_batch below, the integers checked against the golden model on request.

    def _run_batch(self, x):
        cfg, images = self.config, len(x)
        # A run is whole groups of the MMV engines: zero images fill the last group and
        # their results are dropped (the counters are those of the run the core made).
        n = -(-images // cfg.group) * cfg.group
        if n > images:
            x = np.concatenate([x, np.zeros((n - images, *x.shape[1:]), x.dtype)])
        start = self.write_requests(mm.IN_BASE, dp.input_bytes(x, cfg))
        start += self.write_requests(mm.REG_COUNT, n.to_bytes(4, "little"))
        start += self.write_requests(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]))
        self._exchange(start)
        model_cycles = dp.predict_run(cfg, n)
        predicted = {"total": model_cycles["total"], "latency": model_cycles["latency"],
                     "interval": model_cycles["interval"],
                     "by_layer": {layer.name: c for layer, c in
                                  zip(self.layers, model_cycles["by_engine"])}}
        self.transport.wait(predicted["total"])
        status_req = self.read_requests(mm.REG_STATUS, 4 * 8)
        regs = self._wait_idle(status_req, predicted["total"], f"{n} images")
        status = int.from_bytes(regs[0:4], "little")
        word = lambda reg: int.from_bytes(regs[reg - mm.REG_STATUS:reg - mm.REG_STATUS + 4],
                                          "little")
        error = word(mm.REG_ERROR)
        if status & mm.STATUS_ERROR or error:
            raise DriverError(f"the core stopped with error {mm.ERROR_NAMES.get(error, error)} "
                              f"(status 0x{status:02x})")
        n_eng = len(cfg.engines)
        answers = self._exchange(
            self.read_requests(mm.ENGINE_BUSY_BASE, 4 * n_eng)
            + self.read_requests(mm.OUT_BASE, n * cfg.out_words * cfg.out_word_bytes))
        busy = b"".join(answers[:len(self.read_requests(mm.ENGINE_BUSY_BASE, 4 * n_eng))])
        data = b"".join(answers[len(self.read_requests(mm.ENGINE_BUSY_BASE, 4 * n_eng)):])
        counters = {
            "batch": n, "total": word(mm.REG_TOTAL_CYCLES), "latency": word(mm.REG_LATENCY),
            "interval": word(mm.REG_INTERVAL), "images_done": word(mm.REG_IMAGES_DONE),
            "by_layer": {layer.name: int.from_bytes(busy[4 * e:4 * e + 4], "little")
                         for e, layer in enumerate(self.layers)},
            "predicted": predicted}
        self.last_counters = counters
        self.runs.append(counters)
        self.batches.append(counters)
        return dp.decode_output_bytes(data, cfg, n)[:images]

    def abort(self):
        """Empty the pipeline and both FIFOs (CTRL_ABORT); a running run ends with ERR_ABORTED."""
        self.write(mm.REG_CTRL, bytes([mm.CTRL_ABORT, 0, 0, 0]))

    def status(self):
        regs = self.read(mm.REG_STATUS, 8)
        status, error = int.from_bytes(regs[:4], "little"), int.from_bytes(regs[4:], "little")
        return {"busy": bool(status & mm.STATUS_BUSY), "done": bool(status & mm.STATUS_DONE),
                "error": error, "error_name": mm.ERROR_NAMES.get(error, str(error))}
