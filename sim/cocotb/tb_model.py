"""cocotb bench running a compiled model's images through a simulated build, checked against
the golden model: ``xnorflow sim --engine cocotb`` (:func:`xnorflow.sim.cocotb_runner.run_model`).

The host side is the project's own driver (``xnorflow.sw.driver.OverlayDevice`` for the overlay,
``xnorflow.sw.dataflow_driver.DataflowDevice`` for a dataflow build: the class the job names), run in a
:func:`cocotb.task.bridge` thread over :class:`CocotbTransport`, whose every frame goes through
the cycle-level bench of :mod:`xnorflow.sim.testbench`: a driver feeding the request bytes with random
idle gaps, a monitor taking the response bytes with random backpressure and decoding them with
``xnorflow.sw.protocol``, a scoreboard checking each response is an OK answer. :class:`OutputScoreboard`
compares every output integer of every run with ``CompiledModel.forward`` (the golden model)
and every cycle counter with the cycle model the driver reports.

On a dataflow build (built with its engine taps: :func:`xnorflow.sim.tops.engine_taps_spec`) a
:class:`TapMonitor` per engine records every beat of that engine's output stream and
:class:`EngineScoreboard` decodes each run's beats into the engine's layer outputs (threshold
bits, a conv engine's map in HWC order, pooled when it pools, or the last engine's integers)
and compares them with the golden model's output of that layer (docs/verification.md,
"Per-engine streams").

Everything comes through files named by ``XNF_TB_JOB`` (a JSON job: the ``.xnf`` model, an
``.npz`` of the images, the device class and configuration, the batch, gaps, backpressure and
seed; ``taps``: the top has engine taps; ``reference``: the ``.xnf`` the engine scoreboard
compares with, default the model) and the results go back the same way (``result.json``: the
integers, the per-run counters, the simulated cycles, the scoreboards' findings, or the error
that stopped the run), written before the test passes or fails so the caller always learns
what happened.
"""
from __future__ import annotations

import importlib
import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import (ClockCycles, Event, FallingEdge, ReadOnly, RisingEdge,
                             SimTimeoutError, with_timeout)

from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.hw.dataflow.top import tap_port
from xnorflow.sim.testbench import ByteStreamDriver, ByteStreamMonitor, Scoreboard
from xnorflow.sw import xnf
from xnorflow.sw.bits import unpack_bits
from xnorflow.sw.dataflow_program import check_model, engine_layers
from xnorflow.sw.driver import Transport, TransportTimeout

JOB_ENV = "XNF_TB_JOB"
CLOCK_NS = 10

#: Cycles a transaction may take before the transport gives up (as the Verilator transport:
#: a base plus a bound per request byte), so a design that stops answering fails, never hangs.
BASE_CYCLES = 200_000
CYCLES_PER_BYTE = 16


class SleepingDriver(ByteStreamDriver):
    """:class:`~xnorflow.sim.testbench.ByteStreamDriver` that sleeps while it has nothing to send, so
    a core's run costs no Python per cycle (the same timing, gaps and stream rule)."""

    def __init__(self, *args, **kwargs):
        self._work = Event()
        super().__init__(*args, **kwargs)

    def send(self, data):
        super().send(data)
        self._work.set()

    async def _run(self):
        current = None
        while True:
            await FallingEdge(self.clk)
            if current is None and not self._pending:
                self.valid.value = 0
                self._work.clear()
                await self._work.wait()
                await FallingEdge(self.clk)
            if current is None and self._pending and not (self.gap and
                                                          self.rng.random() < self.gap):
                current = self._pending[0]
            self.valid.value = current is not None
            self.payload.value = current if current is not None else 0
            await ReadOnly()
            if current is not None and int(self.ready.value):
                self._pending.popleft()  # taken at the coming rising edge
                self.sent += 1
                current = None


class SleepingMonitor(ByteStreamMonitor):
    """:class:`~xnorflow.sim.testbench.ByteStreamMonitor` that sleeps while the design offers nothing
    (``o.valid`` low at a falling edge) instead of sampling every cycle, with ``ready`` low
    meanwhile so that no byte can pass unseen; random backpressure while it offers."""

    async def _run(self):
        await FallingEdge(self.clk)
        while True:
            if not int(self.valid.value):
                self.ready.value = 0
                await RisingEdge(self.valid)
                await FallingEdge(self.clk)
                continue
            take = not (self.backpressure and self.rng.random() < self.backpressure)
            self.ready.value = take
            await ReadOnly()
            if take and int(self.valid.value):
                byte = int(self.payload.value)
                self.received.append(byte)
                for resp in self.decoder.feed(bytes([byte])):
                    if self.callback:
                        self.callback(resp)
                    self.responses.put_nowait(resp)
            await FallingEdge(self.clk)


class ModelBench:
    """Driver + monitor + scoreboard around the top (:class:`~xnorflow.sim.testbench.TopBench`'s
    parts, sleeping while idle): random idle gaps on ``i``, random backpressure on ``o``."""

    def __init__(self, dut, *, gap, backpressure, seed):
        self.dut, self.clk = dut, dut.clk
        rng = random.Random(seed)
        self.scoreboard = Scoreboard(dut._log)
        self.driver = SleepingDriver(dut, self.clk, gap=gap, rng=random.Random(rng.random()))
        self.monitor = SleepingMonitor(dut, self.clk, backpressure=backpressure,
                                       rng=random.Random(rng.random()),
                                       callback=self.scoreboard.on_response)

    async def reset(self, cycles=4):
        self.dut.rst.value = 1
        await ClockCycles(self.clk, cycles)
        await FallingEdge(self.clk)
        self.dut.rst.value = 0

    def send(self, frame, expect=None):
        self.scoreboard.expect(expect)
        self.driver.send(frame)

    async def responses(self, count):
        return [await self.monitor.responses.get() for _ in range(count)]


class TapMonitor:
    """Every beat of one tapped stream (``<prefix>__valid``/``__ready``/``__payload``, all
    outputs of the top): a beat passes at a rising edge where valid and ready are both high,
    sampled at ``ReadOnly`` after the falling edge (:mod:`xnorflow.sim.testbench`'s timing
    convention). It sleeps while ``valid`` is low, so an idle engine costs no Python."""

    def __init__(self, dut, clk, prefix):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.beats = []
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        await FallingEdge(self.clk)
        while True:
            await ReadOnly()
            if not int(self.valid.value):
                await RisingEdge(self.valid)   # valid only rises after a clock edge
                await FallingEdge(self.clk)
                continue
            if int(self.ready.value):
                self.beats.append(int(self.payload.value))
            await FallingEdge(self.clk)

    def take(self):
        """The beats recorded since the last call (Python ints, in order)."""
        beats, self.beats = self.beats, []
        return beats


def beats_per_image(fold):
    """Output beats of one image of an engine (``EngineFold``): ``⌈out_features / P⌉``
    (a dense engine's ``NF``; a conv engine's ``H·W·M/P``, pooled ``⌊H/2⌋·⌊W/2⌋·M/P``)."""
    return -(-fold.out_features // fold.pe)


def decode_engine_beats(beats, fold, images):
    """An engine's outputs from its output beats of ``images`` images: bool [images, F]
    (threshold: channel ``p`` of a beat in bit ``p``) or int64 [images, F] (raw: in bits
    ``[p·W, p·W + W)``, two's complement), ``F = fold.out_features`` in the layer's order
    (a conv map in HWC order: beats run over pixels, ``P`` channels each); the padding
    channels of a dense engine's last beat are dropped (hw/dataflow/shape.py, "Stream
    formats")."""
    per_image, lanes, features = beats_per_image(fold), fold.pe, fold.out_features
    width = fold.shape.acc_width if fold.output == "raw" else 1
    if len(beats) != images * per_image:
        raise ValueError(f"{len(beats)} beats for {images} images of {per_image} beats")
    mask = (1 << width) - 1
    values = [(beat >> (p * width)) & mask for beat in beats for p in range(lanes)]
    out = np.array(values, dtype=np.int64).reshape(images, per_image * lanes)[:, :features]
    if fold.output == "raw":
        return np.where(out >> (width - 1), out - (1 << width), out)
    return out.astype(bool)


def _element_name(fold, index):
    """Where element ``index`` of an engine's output sits: a conv map's pixel and channel,
    a dense layer's channel (or class, for the raw last layer)."""
    if fold.is_conv:
        _, w, m = fold.out_image
        pixel, channel = divmod(index, m)
        return f"element {index} (pixel y={pixel // w} x={pixel % w}, channel {channel})"
    return f"{'class' if fold.output == 'raw' else 'channel'} {index}"


class EngineScoreboard:
    """Every engine's output stream against the golden model's output of its layer.

    ``reference`` is the compiled model the design's outputs are compared with (normally the
    model the design runs; another one only to prove that a wrong golden is caught), ``config``
    the build's :class:`DataflowConfig`. The engines are ``engine_layers(reference)``: engine
    ``e`` computes one dense or conv layer, and a 2×2 pool after a conv runs in that conv's
    engine, so a pooling engine's stream is the pool layer's output."""

    def __init__(self, reference, config):
        self.model = reference
        self.config = DataflowConfig.parse(config)
        check_model(reference, self.config)
        index = {id(layer): i for i, layer in enumerate(reference.layers)}
        # the model output each engine makes: its layer's, or the pool layer's after it
        self.outputs = [index[id(layer)] + pooled for layer, pooled in engine_layers(reference)]
        self.names = [layer.name for layer, _ in engine_layers(reference)]
        self.beats = [0] * len(self.names)
        self.mismatches = [0] * len(self.names)
        self.errors = []

    def _label(self, e):
        return f"engine {e} (layer '{self.names[e]}')"

    def check_run(self, start, x, beats):
        """One run of the core: images ``start..`` (``x``, as the run took them, padding
        images included) made ``beats[e]`` on engine ``e``'s stream. Returns this run's
        ``{"beats", "mismatches", "errors"}`` (per engine, keyed by layer name)."""
        golden = self.model.forward(x)
        found = {"beats": {}, "mismatches": {}, "errors": []}
        for e, (fold, got) in enumerate(zip(self.config.engines, beats)):
            self.beats[e] += len(got)
            found["beats"][self.names[e]] = len(got)
            error, bad = self._compare(e, fold, start, x, got, golden[self.outputs[e]])
            self.mismatches[e] += bad
            found["mismatches"][self.names[e]] = bad
            if error:
                found["errors"].append(error)
                if len(self.errors) < 5:
                    self.errors.append(error)
        return found

    def _compare(self, e, fold, start, x, got, layer_output):
        """``(error or None, differing elements)`` of engine ``e``'s beats ``got``."""
        want_beats = len(x) * beats_per_image(fold)
        if len(got) != want_beats:
            return (f"{self._label(e)}: images {start}..{start + len(x) - 1}: {len(got)} "
                    f"output beats, expected {want_beats} ({beats_per_image(fold)} per "
                    f"image)", max(1, abs(len(got) - want_beats)))
        design = decode_engine_beats(got, fold, len(x))
        acc, out = layer_output
        want = out if fold.output == "raw" else unpack_bits(out, fold.out_features)
        bad = np.argwhere(design != want)
        if not len(bad):
            return None, 0
        b, i = bad[0]
        images = len(np.unique(bad[:, 0]))
        value = (lambda v: int(v)) if fold.output == "raw" else (lambda v: int(bool(v)))
        return (f"{self._label(e)}: {len(bad)} outputs differ from the golden model in "
                f"{images} images; first: image {start + b} {_element_name(fold, i)}: design "
                f"{value(design[b, i])}, golden {value(want[b, i])}", len(bad))

    def summary(self):
        return {"engine_beats": dict(zip(self.names, self.beats)),
                "engine_mismatches": dict(zip(self.names, self.mismatches)),
                "engine_errors": self.errors}

    def result(self):
        """Raise AssertionError with the first findings, if any."""
        assert not self.errors, f"{len(self.errors)} engine stream findings: {self.errors[:3]}"


def _ok(response):
    """The link scoreboard's expectation for every request of a run: an OK answer."""
    return None if response.ok else f"answer {response}"


class CocotbTransport(Transport):
    """:class:`xnorflow.sw.driver.Transport` over a :class:`ModelBench`, for a driver
    running in a :func:`cocotb.task.bridge` thread: each call resumes the simulation until the
    answers are in (the simulation does not advance while the driver computes)."""

    def __init__(self, bench):
        self.bench = bench
        self._transact_many = resume(self._exchange)
        self._wait = resume(self._idle)

    async def _exchange(self, requests):
        for frame in requests:
            self.bench.send(frame, _ok)
        bound = BASE_CYCLES + CYCLES_PER_BYTE * sum(len(f) for f in requests)
        try:
            answers = await with_timeout(self.bench.responses(len(requests)), bound * CLOCK_NS,
                                         "ns")
        except SimTimeoutError:
            raise TransportTimeout(f"cocotb bench: {len(requests)} requests not all answered "
                                   f"within {bound} cycles") from None
        return [a.encode() for a in answers]

    async def _idle(self, cycles):
        await ClockCycles(self.bench.clk, int(cycles))

    def transact(self, request):
        return self.transact_many([request])[0]

    def transact_many(self, requests):
        return self._transact_many(list(requests))

    def wait(self, cycles):
        if cycles > 0:
            self._wait(cycles)

    def close(self):
        pass


class OutputScoreboard:
    """Every output integer of every run against the golden model, every counter against the
    cycle model; findings are collected so one run reports them all."""

    def __init__(self, model):
        self.model = model
        self.integers = 0
        self.mismatches = 0
        self.counter_errors = []
        self.errors = []

    def check_run(self, start, x, ints, counters):
        """Images ``start..`` (``x``) came back as ``ints`` with ``counters`` (the driver's
        record of the run, holding the cycle model's ``predicted`` values)."""
        golden = self.model.outputs(x)
        bad = np.argwhere(ints != golden)
        self.integers += ints.size
        self.mismatches += len(bad)
        if len(bad) and len(self.errors) < 5:
            b, c = bad[0]
            self.errors.append(f"images {start}..{start + len(x) - 1}: {len(bad)} integers "
                               f"differ from the golden model; first: image {start + b} class "
                               f"{c}: design {ints[b, c]}, golden {golden[b, c]}")
        predicted = counters.get("predicted", {})
        wrong = {k: (counters[k], v) for k, v in predicted.items()
                 if k in counters and counters[k] != v}
        if wrong:
            self.counter_errors.append(f"images {start}..: counters (design, model) {wrong}")

    def summary(self):
        return {"integers_checked": self.integers, "mismatches": self.mismatches,
                "errors": self.errors, "counter_errors": self.counter_errors[:5]}

    def result(self):
        """Raise AssertionError with the first findings, if any."""
        problems = self.errors + self.counter_errors
        assert not problems, f"{len(problems)} scoreboard findings: {problems[:3]}"


def _device_class(path):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _check_engines(engines, monitors, device, start, chunk, first):
    """Each run the driver made for ``chunk`` (``device.batches[first:]``) against the
    engine scoreboard: the run's images (the chunk's next ``max_batch`` at most, padded with
    zero images to the run's ``batch``, as the driver pads a run to whole MMV groups) and the
    beats every engine made meanwhile (the run is over: every beat has passed). Each run's
    record gets its per-engine findings (``engines``), so they travel with the counters."""
    step = min(len(chunk), device.max_batch) or 1
    for k, record in enumerate(device.batches[first:]):
        images = chunk[k * step:(k + 1) * step]
        padded = np.zeros((record["batch"], *images.shape[1:]), images.dtype)
        padded[:len(images)] = images
        record["engines"] = engines.check_run(start + k * step, padded,
                                              [m.take() for m in monitors])


def _run_images(job, transport, model, x, scoreboard, engines=None, monitors=()):
    """In the bridge thread: the driver loads the model and runs ``x`` batch by batch;
    with ``engines`` (an :class:`EngineScoreboard`), every run's engine streams (the
    ``monitors``) are checked too."""
    device = _device_class(job["device"])(transport, job["config"])
    device.load(model)
    for m in monitors:   # loading makes no beat; a leftover would misalign the first run
        m.take()
    step, outs = job["batch"], []
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        first = len(device.batches)
        ints, _ = device.run(chunk, batch=step)
        scoreboard.check_run(start, chunk, ints, device.batches[-1])
        if engines is not None:
            _check_engines(engines, monitors, device, start, chunk, first)
        outs.append(ints)
    ints = np.concatenate(outs) if outs else np.zeros((0, model.num_classes), np.int64)
    return ints, device.batches


def _write(path, result):
    """The result file, atomically: the caller never reads half of it."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(result, default=_json_default))
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@cocotb.test()
async def run_images(dut):
    """The job's images through the driver and the bench; every integer and counter checked."""
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    model = xnf.load(job["model"])
    x = np.load(job["inputs"])["x"]
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    bench = ModelBench(dut, gap=job["gap"], backpressure=job["backpressure"], seed=job["seed"])
    await bench.reset()
    scoreboard = OutputScoreboard(model)
    result = {"images": int(len(x)), "ints": None, "batches": [], "cycles": None,
              "error": None, "engines": None}
    engines, monitors = None, []
    try:
        if job.get("taps"):
            reference = xnf.load(job["reference"]) if job.get("reference") else model
            engines = EngineScoreboard(reference, job["config"])
            monitors = [TapMonitor(dut, dut.clk, tap_port(e))
                        for e in range(len(engines.config.engines))]
        ints, batches = await bridge(_run_images)(job, CocotbTransport(bench), model, x,
                                                  scoreboard, engines, monitors)
        result.update(ints=ints, batches=batches)
    except Exception as e:  # noqa: BLE001 - reported to the caller, then re-raised
        result["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        result["cycles"] = int(get_sim_time("ns") // CLOCK_NS)
        result["scoreboard"] = scoreboard.summary()
        result["link_errors"] = bench.scoreboard.errors[:5]
        if engines is not None:
            result["engines"] = engines.summary()
        _write(job["result"], result)
    bench.scoreboard.result()
    scoreboard.result()
    if engines is not None:
        engines.result()
    dut._log.info(f"{len(x)} images, {scoreboard.integers} integers checked, "
                  f"{result['cycles']} cycles"
                  + (f", engine beats {engines.beats}" if engines is not None else ""))
