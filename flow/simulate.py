"""``xnorflow sim``: run a compiled model on the simulated accelerator, check it bit-exactly.

Every image goes through the RTL (Verilator's C++ harness, the cocotb bench or Amaranth's
simulator) or, with ``--netlist``, through what Yosys synthesises of it (:mod:`xnorflow.sim.netlist`), via
the same :class:`xnorflow.sw.driver.OverlayDevice` code a board uses; the integers that come back are
compared with the golden model (:mod:`xnorflow.sw.golden`), all of them, and the predictions with
PyTorch when a checkpoint is given. One JSON document on stdout with ``--json``; progress on
stderr.

The images go in chunks of whole batches: to simulator processes of this machine (``--jobs``)
or, with ``--cluster``, as Dask tasks to the workers of a cluster (:mod:`xnorflow.cluster`,
docs/scale-out.md). Either way one function runs a chunk on a loaded simulator
(:func:`_run_chunk`), and the chunks' results go through the journal
(:mod:`xnorflow.journal`), so the merged result is the same however the chunks were spread.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import resource
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xnorflow.cluster import (TaskProgress, add_cluster_argument, completed, open_client,
                              require_dask, worker_count)
from xnorflow.journal import Journal, simulation_key
from xnorflow.sim.build import build_harness, fst_available, trace_format
from xnorflow.sim.cocotb_runner import build_cocotb, run_model
from xnorflow.sim.netlist import FAMILIES as NETLIST_FAMILIES
from xnorflow.sw import fold as folding
from xnorflow.sw import xnf
from xnorflow.sw.argtypes import check_writable_file, output_file, positive_int
from xnorflow.sw.build_records import resolve_dataflow_build
from xnorflow.sw.data import DATASETS
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.evaluate import dataset_inputs, torch_predictions
from xnorflow.sw.outputs import write_outputs
from xnorflow.sw.progress import progress_bar
from xnorflow.sw.verilog import array_config
from xnorflow.targets import DataflowTarget, NetlistTarget, OverlayTarget
from xnorflow.transports import open_transport

__all__ = ["simulate", "add_parser", "run_sim"]


def _open(engine, target, waves=None):
    """A transport simulating ``target``'s build on ``engine``, writing a waveform to ``waves``
    when given (Verilator: VCD or FST by the suffix; Amaranth: VCD)."""
    if engine == "amaranth":
        # The Amaranth simulator moves a whole batch in one transact_many: allow for it.
        kw = {"max_cycles": 50_000_000, **({"vcd": str(waves)} if waves else {})}
    else:
        kw = {"trace": waves} if waves else {}
    return open_transport(engine, target.spec(), **kw)


def check_waves(waves, engine, jobs, cluster=None):
    """Refuse a waveform request the run cannot honour (before any work): one simulator
    process writes one file (so no ``jobs`` > 1 and no ``cluster``), and Amaranth's simulator
    writes VCD only."""
    if waves is None:
        return
    if cluster is not None:
        raise XnorflowError(f"--waves {waves}: one simulator process writes the waveform; "
                            f"run without --cluster")
    if engine == "cocotb":
        raise XnorflowError(f"--waves {waves}: the cocotb engine writes no waveform file; use "
                            f"--engine verilator (or XNORFLOW_WAVES=1 for cocotb's own dump)")
    if jobs > 1:
        raise XnorflowError(f"--waves {waves}: one simulator process writes the waveform; "
                            f"run with --jobs 1 (the default), not {jobs}")
    if engine == "amaranth" and Path(waves).suffix.lower() != ".vcd":
        raise XnorflowError(f"--waves {waves}: the Amaranth engine writes VCD only; name a "
                            f".vcd file")


def _run_chunk(acc, transport, x, step, bar=None):
    """One chunk: images ``x`` through the loaded device ``acc`` (on ``transport``), ``step``
    per run of the core. Returns ``(ints, batch counters, simulated cycles)`` of the chunk.
    The in-process workers and the Dask tasks both run their chunks here."""
    first, cycles0, outs = len(acc.batches), transport.cycles or 0, []
    for s in range(0, len(x), step):
        ints, _ = acc.run(x[s:s + step], batch=step)
        outs.append(ints)
        if bar is not None:
            bar.update(len(ints))
    return np.concatenate(outs), acc.batches[first:], (transport.cycles or 0) - cycles0


def _worker(model, x, engine, target, step, transport, todo, done, bar, waves=None, writes=None):
    """One simulator instance: load ``model`` (its bus ``writes``, built once for all workers), then run chunks ``(start, stop)`` of ``x`` taken
    from the queue ``todo`` until it is empty, putting ``(start, ints, batch counters, cycles)``
    on ``done`` after each; an exception is put there instead, and ``None`` when finished."""
    own = transport is None
    try:
        if own:
            transport = _open(engine, target, waves)
        acc = target.device(transport)
        acc.load(model, writes)
        while True:
            try:
                start, stop = todo.get_nowait()
            except queue.Empty:
                break
            done.put((start, *_run_chunk(acc, transport, x[start:stop], step, bar)))
    except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
        done.put(e)
    finally:
        if own and transport is not None:
            transport.close()
        done.put(None)


def _cocotb_worker(model, x, engine, target, step, transport, todo, done, bar, waves=None,
                   writes=None):
    """The cocotb engine's worker (the arguments of :func:`_worker`; ``transport``, ``waves`` and
    ``writes`` unused: the bench loads the model itself): each chunk ``(start, stop)`` of ``x``
    is one run of the cocotb bench (``sim/cocotb/tb_model.py``) in its own simulator process,
    the project's driver running ``step`` images per run of the core, every integer
    scoreboarded against the golden model."""
    try:
        while True:
            try:
                start, stop = todo.get_nowait()
            except queue.Empty:
                break
            result = _cocotb_chunk(model, x[start:stop], start, target, step)
            if bar is not None:
                bar.update(stop - start)
            done.put((start, *result))
    except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
        done.put(e)
    finally:
        done.put(None)


def _cocotb_chunk(model, x, start, target, step):
    """One chunk (images ``x``, the first being image ``start``) as one run of the cocotb
    bench: ``(ints, batch counters, simulated cycles)``."""
    device = type(target.device(None))  # the driver class, built inside the bench
    ints, batches, cycles, _ = run_model(
        target.spec(), model, x, config=target.name, batch=step,
        device=f"{device.__module__}:{device.__qualname__}", run_id=f"{os.getpid()}-{start}")
    return ints, batches, cycles


def _thread_results(workers, todo, done):
    """Start the in-process ``workers`` and yield each chunk's ``(start, ints, batch counters,
    cycles)`` as they put it on ``done``; a worker's exception stops the others after their
    chunk and is raised here."""
    for w in workers:
        w.start()
    running = len(workers)
    while running:
        item = done.get()
        if item is None:
            running -= 1
        elif isinstance(item, BaseException):
            while not todo.empty():  # the other workers stop after their chunk
                todo.get_nowait()
            raise item
        else:
            yield item


# -- Dask: chunks as tasks on the workers of a cluster (--cluster) ------------------------------

class _ShardJob(NamedTuple):
    """What every chunk task of one simulation shares: the model and its bus writes, the
    engine and build, and ``key``, naming the simulation (a worker keeps the simulator it
    loaded for it between chunks)."""
    model: object
    writes: list
    engine: str
    target: object
    key: str


def _shard_job(model_bytes, writes, engine, target, key):
    """Dask task: the shared :class:`_ShardJob`, from the model file's bytes (its task holds
    them, so Dask can recompute it if the worker holding the result dies)."""
    return _ShardJob(xnf.from_bytes(model_bytes), writes, engine, target, key)


# Per worker thread: (job key, transport, loaded device). Loading a model costs as much as
# simulating a few hundred images, so a worker loads it once per simulation, as --jobs does.
_LOADED = {}
_LOADED_LOCK = threading.Lock()


def _loaded_device(job):
    """This thread's simulator with ``job``'s model loaded: kept from its previous chunk of
    the same simulation, else a new one (the build is cached: :mod:`xnorflow.sim.build`)."""
    thread = threading.get_ident()
    with _LOADED_LOCK:
        held = _LOADED.pop(thread, None)
    if held is not None and held[0] == job.key:
        transport, acc = held[1], held[2]
    else:
        if held is not None:
            held[1].close()
        transport = _open(job.engine, job.target)
        try:
            acc = job.target.device(transport)
            acc.load(job.model, job.writes)
        except BaseException:
            transport.close()
            raise
    with _LOADED_LOCK:
        _LOADED[thread] = (job.key, transport, acc)
    return transport, acc


def close_shard_simulators():
    """Close the simulators this process's Dask tasks kept loaded (run on every worker when a
    simulation ends)."""
    with _LOADED_LOCK:
        held = list(_LOADED.values())
        _LOADED.clear()
    for _, transport, _ in held:
        transport.close()


def simulate_shard(job, x, start, step):
    """Dask task: the chunk of images ``x`` (the first being image ``start``) on this
    worker's simulator, as an in-process worker runs a chunk. Returns ``(start, ints, batch
    counters, cycles)``, what the journal records."""
    if job.engine == "cocotb":
        return (start, *_cocotb_chunk(job.model, x, start, job.target, step))
    transport, acc = _loaded_device(job)
    try:
        return (start, *_run_chunk(acc, transport, x, step))
    except BaseException:
        # The simulator's state is unknown after a failure: the next chunk starts afresh.
        with _LOADED_LOCK:
            _LOADED.pop(threading.get_ident(), None)
        transport.close()
        raise


def _prepare_worker(engine, target):
    """Dask task: build (or find cached) the simulator of ``target`` on this worker."""
    if engine == "verilator":
        build_harness(target.spec(), waves=False)
    elif engine == "cocotb":
        build_cocotb(target.spec(), False)


def _prepare_workers(client, engine, target, token):
    """Each worker builds or reuses its simulator before the clock starts (workers sharing a
    checkout share the cached build; its file lock lets one of them build it)."""
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
    futures = [client.submit(_prepare_worker, engine, target, key=f"sim-build-{i}-{token}",
                             workers=[w], allow_other_workers=True, pure=False)
               for i, w in enumerate(workers)]
    for _ in completed(futures):
        pass


def _cluster_results(client, model_bytes, writes, x, engine, target, step, pending, bar,
                     token):
    """Submit each pending chunk ``(start, stop)`` of ``x`` as a Dask task and yield the
    chunks' ``(start, ints, batch counters, cycles)`` as they arrive. A task whose worker
    died is rerun by Dask elsewhere; an error stops the run (the other tasks are cancelled)."""
    job = client.submit(_shard_job, model_bytes, writes, engine, target, token,
                        key=f"sim-model-{token}", pure=False)
    futures = [client.submit(simulate_shard, job, x[start:stop], start, step,
                             key=f"sim-chunk-{start}-{stop}-{token}", pure=False)
               for start, stop in pending]
    images = {f.key: stop - start for f, (start, stop) in zip(futures, pending)}
    progress = TaskProgress(client, futures, desc=f"sim {engine}", unit="img",
                            amount=lambda f: images[f.key], bar=bar, disable=bar is None)
    finished = completed(futures, progress)
    del futures   # a result is freed on its worker once the journal has it
    try:
        for _, result in finished:
            yield result
    finally:
        job.cancel()
        with contextlib.suppress(Exception):   # workers that died have nothing open
            client.run(close_shard_simulators, on_error="ignore")


def _run_label(engine, target):
    """What a journal records as the engine: the netlist family and X mode included."""
    family = getattr(target, "family", None)
    if family is None:
        return engine
    return f"{engine}:netlist-{family}:" + (f"x-random-{target.seed}" if target.x_random
                                              else "x-zero")


def _netlist_fields(target):
    """``netlist`` (the family, or None for the RTL), ``x_random`` and ``x_seed`` of a run."""
    family = getattr(target, "family", None)
    return {"netlist": family,
            "x_random": None if family is None else target.x_random,
            "x_seed": target.seed if family is not None and target.x_random else None}


def _chunks(n, step, jobs, chunk):
    """``(start, stop)`` ranges of whole batches: ``chunk`` images each (rounded up to whole
    batches) when given, else one contiguous share per job (the batches are the same either
    way: a chunk boundary is a batch boundary)."""
    if chunk is None:
        batches = -(-n // step)
        size = -(-batches // jobs) * step
    else:
        size = -(-max(1, chunk) // step) * step
    return [(k, min(k + size, n)) for k in range(0, n, size)]


def simulate(model, x, y=None, *, engine="verilator", config=None, batch=None, progress=True,
             transport=None, torch_predictions=None, jobs=1, state=None, chunk=None,
             waves=None, target=None, outputs=None, client=None):
    """Run ``x`` (uint8 [B, N]) through ``model`` on the simulated accelerator.

    ``target`` (:mod:`xnorflow.targets`): the build to simulate, overlay or dataflow, or its
    netlist (:class:`xnorflow.targets.NetlistTarget`); default the overlay of ``config`` (an
    ArrayConfig or its text; None: the default build).

    ``engine``: ``"verilator"`` (the pipe harness), ``"cocotb"`` (the cocotb bench: random
    idle gaps and backpressure, a scoreboard on every integer; one simulator process per
    chunk) or ``"amaranth"``.

    ``outputs`` (a path): also write every image's predicted class and last-layer integers as
    the simulated core computed them (:func:`xnorflow.sw.outputs.write_outputs`), for outside checks.

    ``jobs`` > 1 splits the images over that many simulator processes (Verilator), one per
    core: each loads the model and runs its share; the counters and cycles add up.

    ``client`` (a :class:`distributed.Client`, :func:`xnorflow.cluster.open_client`) runs the
    chunks (``chunk`` images each, default 256) as Dask tasks on the cluster's workers
    instead (``jobs`` and ``transport`` do not apply): each worker builds or reuses the
    simulator, loads the model once and runs the chunks it is given; the results go through
    the journal as they arrive, so ``state`` resumes such a run too, and a chunk whose worker
    died is rerun by Dask. The result is the in-process one except for the timings, ``jobs``
    (the workers at the start) and ``simulator_cpu_seconds`` (None: the simulators are not
    this process's children).

    ``state`` (a path) makes the run resumable (:mod:`xnorflow.journal`): the images go in chunks of
    ``chunk`` images (default 256, rounded up to whole batches), each recorded in the file when
    done, and a run given an existing file continues after the chunks it holds. The result is
    the same as an uninterrupted run's; ``wall_seconds`` and the CPU seconds are summed over
    the sessions, ``resumed_images`` says how many images came from the file.

    ``waves`` (a path ending in ``.vcd`` or ``.fst``) writes the simulation's waveform there
    (one simulator process, so ``jobs`` must be 1; Amaranth writes VCD only; with ``state``,
    the waveform covers the chunks simulated in this call). Ignored when ``transport`` is
    given: the caller's transport decides.

    Returns the result dict of ``xnorflow sim --json``: ``images``, ``mismatches`` (integers
    differing from the golden model), ``mismatched_images``, ``accuracy`` (None without
    labels), ``agree_with_torch`` (None without ``torch_predictions``), ``cycles_per_inference``
    (the core's own counters, mean over images), ``cycles_by_layer`` (per inference),
    ``predicted_cycles_match`` (the counters equal ``xnorflow.sw.program.predict_cycles``),
    ``simulated_cycles`` (every clock cycle, link traffic included, all jobs),
    ``wall_seconds``, ``simulated_cycles_per_second``, ``images_per_second`` and ``waves``
    (the waveform file written, or None); a dataflow build on the cocotb bench adds
    ``engine_beats``, ``engine_mismatches`` and ``engine_errors`` (:func:`_engine_figures`).
    """
    target = target or OverlayTarget(config)
    check_waves(waves, engine, jobs, client)
    if client is not None and transport is not None:
        raise ValueError("a cluster run opens its simulators on the workers: no transport")
    x = np.asarray(x)
    n = len(x)
    writes = target.program(model)    # XnorflowError naming the layer if it does not fit
    limit = target.max_batch(model)
    step = min(batch or limit, limit)
    jobs = max(1, min(jobs, -(-n // step) if n else 1))
    own_all = transport is None and client is None
    if transport is not None:
        jobs = 1
    if (state is not None or client is not None) and chunk is None:
        chunk = 256
    chunks = _chunks(n, step, jobs, chunk)
    model_bytes = xnf.to_bytes(model) if state is not None or client is not None else None
    # Hashing the model and the inputs is only needed to check a journal file.
    key = None if state is None else simulation_key(
        model_bytes, x, engine=_run_label(engine, target), config=target.name,
        batch=step,
        chunk=chunks[0][1] - chunks[0][0] if chunks else 0)
    journal = Journal(state, key, chunks, model.num_classes)
    pending = journal.pending()
    if journal.resumed_images:
        print(f"xnorflow sim: resuming from {state}: {journal.resumed_images} of {n} images "
              f"done", file=sys.stderr)
    jobs = max(1, min(jobs, len(pending)))
    if client is not None:
        jobs = worker_count(client)
    if transport is not None:
        waves = None
    token = uuid.uuid4().hex[:12]   # names this simulation's Dask tasks
    t0 = time.monotonic()
    # Builds happen before the clock starts (the cached harness is shared by the jobs).
    if client is not None and pending:
        _prepare_workers(client, engine, target, token)
    elif engine == "verilator" and transport is None and pending:
        build_harness(target.spec(), waves=trace_format(waves) if waves else False)
    elif engine == "cocotb" and pending:
        build_cocotb(target.spec(), False)
    t_build = time.monotonic() - t0
    bar = None
    if progress:  # after the build, so its rate is the simulation's
        bar = progress_bar(total=n, initial=journal.resumed_images, unit="img",
                           desc=f"sim {engine}")
    # CPU time is the load-independent figure on a shared machine: the simulator processes
    # (children, counted once they have exited) and this process (framing, golden model).
    ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    t1 = time.monotonic()
    todo, done = queue.Queue(), queue.Queue()
    for c in pending:
        todo.put(c)
    # Daemon threads (the simulators run in their own processes): on Ctrl-C this thread stops
    # waiting at once, and the harnesses end when their pipes close with the process.
    workers = [threading.Thread(target=_cocotb_worker if engine == "cocotb" else _worker,
                                daemon=True,
                                args=(model, x, engine, target, step, transport, todo, done, bar,
                                      waves, writes))
               for _ in range(jobs if pending and client is None else 0)]
    ran = bool(pending)
    if client is not None and ran:
        results = _cluster_results(client, model_bytes, writes, x, engine, target, step,
                                   pending, bar, token)
    else:
        results = _thread_results(workers, todo, done)
    if ran:
        journal.add_spent(sessions=1)
    last = [t1, ru_self]

    def spent_since_last():
        """Wall and host CPU seconds since the previous chunk (kept even if the run dies)."""
        now, ru = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        t, r = last
        last[:] = [now, ru]
        return {"wall_seconds": now - t,
                "host_cpu_seconds": ru.ru_utime + ru.ru_stime - r.ru_utime - r.ru_stime}

    try:
        for item in results:
            journal.record(*item, **spent_since_last())
    except KeyboardInterrupt:
        if state is not None:
            print(f"\nxnorflow sim: interrupted; {journal.images_done()} of {n} images are kept "
                  f"in {state}: run the same command to continue", file=sys.stderr)
        raise
    finally:
        results.close()   # a cluster run's unfinished tasks are cancelled
        if bar is not None:
            bar.close()
    for w in workers:
        w.join()
    ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
    # A cluster session's simulators ran on the workers: their CPU time is unknown here, so
    # the session never counts as ended and the total stays None (as for a killed session).
    journal.add_spent(**spent_since_last(), **({
        "simulator_cpu_seconds": (ru_c.ru_utime + ru_c.ru_stime - ru_children.ru_utime
                                  - ru_children.ru_stime),
        "sessions_ended": 1} if ran and client is None else {}))
    wall = journal.spent["wall_seconds"]
    # Simulator CPU only when every session's was measured (a killed one's is unknown).
    sim_cpu = (journal.spent["simulator_cpu_seconds"]
               if engine in ("verilator", "cocotb") and own_all
               and journal.simulator_cpu_complete() else None)
    batches = journal.all_batches()
    sim_cycles = int(journal.cycles.sum())
    ints = journal.ints
    golden = model.outputs(x)
    pred = model.head.scores(ints).argmax(axis=1)
    if outputs is not None:
        write_outputs(outputs, pred, ints)
    total = sum(b["total"] for b in batches)
    # the layers the target counts (a dataflow conv's pool runs in its engine, uncounted)
    counted = list(batches[0]["by_layer"]) if batches else [layer.name for layer in model.layers]
    by_layer = {name: sum(b["by_layer"][name] for b in batches) / max(n, 1) for name in counted}
    predicted_ok = all(target.counters_match(b) for b in batches)
    return {
        "model": model.name,
        "engine": engine,
        **_netlist_fields(target),
        "arch": target.arch,
        "array": target.name,
        "images": int(n),
        "batch": int(step),
        "jobs": jobs,
        "mismatches": int((ints != golden).sum()),
        "mismatched_images": int((ints != golden).any(axis=1).sum()),
        "accuracy": None if y is None else float((pred == np.asarray(y)).mean()) if n else 0.0,
        "agree_with_torch": (None if torch_predictions is None
                             else float((pred == np.asarray(torch_predictions)).mean())),
        "cycles_per_inference": total / n if n else 0.0,
        "cycles_by_layer": by_layer,
        "predicted_cycles_match": bool(predicted_ok),
        "simulated_cycles": sim_cycles,
        "resumed_images": journal.resumed_images,
        "build_seconds": round(t_build, 3),
        "wall_seconds": round(wall, 3),
        "simulated_cycles_per_second": sim_cycles / wall if wall > 0 else None,
        "images_per_second": n / wall if wall > 0 else None,
        # Verilator only (Amaranth simulates in this process): CPU seconds of the harness
        # processes, and their cycles per CPU second, which do not depend on the machine load.
        "simulator_cpu_seconds": None if sim_cpu is None else round(sim_cpu, 3),
        "host_cpu_seconds": round(journal.spent["host_cpu_seconds"], 3),
        "simulated_cycles_per_cpu_second": sim_cycles / sim_cpu if sim_cpu else None,
        "waves": None if waves is None or not ran else str(waves),
        **(_dataflow_figures(batches) if target.arch == "dataflow" else {}),
        **(_engine_figures(batches) if engine == "cocotb" and target.arch == "dataflow"
           else {}),
    }


def _engine_figures(batches):
    """The cocotb bench's per-engine stream checks of a dataflow run (each run's record
    carries its own, ``sim/cocotb/tb_model.py``), summed over the runs: every engine's output
    beats (``engine_beats``) and outputs differing from the golden model's output of its layer
    (``engine_mismatches``), keyed by the engine's layer, and the first findings
    (``engine_errors``, naming engine, layer, image and element)."""
    beats, mismatches, errors = {}, {}, []
    for b in batches:
        found = b.get("engines") or {}
        for name, n in found.get("beats", {}).items():
            beats[name] = beats.get(name, 0) + n
        for name, n in found.get("mismatches", {}).items():
            mismatches[name] = mismatches.get(name, 0) + n
        errors += found.get("errors", [])
    return {"engine_beats": beats, "engine_mismatches": mismatches,
            "engine_errors": errors[:5]}


def _dataflow_figures(batches):
    """A dataflow run's one-image latency and steady-state interval, from its counters: the
    interval is the mean over a run's images after the first (an MMV engine makes its group's
    images in a burst, so the last two completions alone would not tell the rate)."""
    multi = [(b["total"] - b["latency"]) / (b["batch"] - 1) for b in batches if b["batch"] > 1]
    multi = [int(v) if v == int(v) else v for v in multi]
    return {"latency_cycles": batches[0]["latency"] if batches else None,
            "interval_cycles": multi[0] if multi else None}


def waves_file(text):
    """argparse type of ``--waves``: a writable ``.vcd`` or ``.fst`` file (the format follows
    the suffix); FST only where Verilator's FST writer can be built (lz4's C headers)."""

    check_writable_file(text)
    suffix = Path(text).suffix.lower()
    if suffix not in (".vcd", ".fst"):
        raise argparse.ArgumentTypeError(f"{text}: name a .vcd or .fst file (the suffix chooses "
                                         f"the format)")
    if suffix == ".fst" and not fst_available():
        raise argparse.ArgumentTypeError(f"{text}: FST needs lz4's C headers (lz4.h, Debian "
                                         f"package liblz4-dev), missing here; name a .vcd file")
    return text


def add_parser(sub):
    p = sub.add_parser(
        "sim", help="run a compiled model on the simulated accelerator (RTL), checked "
                    "bit-exactly against the golden model",
        description="Run a compiled model's test images through the accelerator's RTL "
                    "(Verilator's C++ harness, the cocotb bench, or Amaranth's simulator) or "
                    "its Yosys netlist (--netlist) with the same driver a board uses, and "
                    "compare every output integer with the golden model (and the predictions "
                    "with PyTorch, given --checkpoint). Exit 1 on any difference. Builds are "
                    "cached under build/sim/ (docs/simulation.md, docs/verification.md).")
    p.add_argument("model", help="a compiled model (.xnf)")
    p.add_argument("--dataset", required=True, choices=DATASETS,
                   help="the data set whose test split is simulated (required)")
    p.add_argument("--data-dir", default=None,
                   help="directory of the IDX files (fashion-mnist, mnist; default: the Debian "
                        "package's /usr/share/datasets/...) or of CIFAR-10's pickle batches")
    p.add_argument("--engine", choices=("verilator", "cocotb", "amaranth"), default="verilator",
                   help="verilator: the C++ harness (fast); cocotb: the cocotb bench on "
                        "Verilator (driver with random idle gaps, monitor with random "
                        "backpressure, a scoreboard on every integer; slower); amaranth: "
                        "Amaranth's Python simulator (slow, no C++ build) (default verilator)")
    p.add_argument("--netlist", choices=NETLIST_FAMILIES, default=None,
                   help="simulate the build as Yosys synthesises it, on the Verilator harness: "
                        "ice40 or ecp5 (the synth flow of that family, with Yosys's cell models "
                        "and the project's in sim/cells/), generic (technology-independent "
                        "gates, memories kept as arrays) (default: the RTL)")
    p.add_argument("--x-random", action=argparse.BooleanOptionalAction, default=None,
                   help="with --netlist: every value the netlist leaves undefined (x, the "
                        "contents of RAMs and registers without an initial value) random at "
                        "start, drawn from --x-seed, so a design depending on power-up values "
                        "fails; --no-x-random makes them 0 (default: random)")
    p.add_argument("--x-seed", type=positive_int, default=None, metavar="N",
                   help="with --netlist and --x-random: the seed of the random values "
                        "(default 1)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N test images (default: all)")
    p.add_argument("--arch", choices=("overlay", "dataflow"), default="overlay",
                   help="overlay: one array runs every layer from a program; dataflow: one "
                        "folded engine per layer (default overlay)")
    p.add_argument("--array", type=array_config, default=None, metavar="PxQxK[,key=value...]",
                   help="the overlay build to simulate; the model must fit it (default "
                        "8x8x32 with default depths)")
    p.add_argument("--fold", default=None, metavar="FOLD.json|df:…",
                   help="the dataflow build to simulate: a fold written by `xnorflow fold -o` "
                        "or its text form, e.g. 'df:64u4>256:16x4,256>10r:16x1' (default: the "
                        "fold `xnorflow profile` builds for --board: the fastest recorded build "
                        "of the model's shapes that met its clock, else the fastest fold that "
                        "fits)")
    p.add_argument("--board", choices=("icebreaker", "ulx3s-85f"), default="icebreaker",
                   help="with --arch dataflow and no --fold: the board to fold the model for "
                        "(default icebreaker)")
    p.add_argument("--batch", type=positive_int, default=None, metavar="N",
                   help="images per run of the core (default: as many as the build's memories "
                        "hold; larger values are capped to that)")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="simulator processes running in parallel (Verilator), e.g. one per "
                        "core (default 1)")
    add_cluster_argument(p, "each task simulates one --chunk of the test set on a worker, "
                            "which builds or reuses the simulator and keeps the model loaded "
                            "between its chunks; the results merge into the same JSON, and "
                            "with --state a stopped run resumes")
    p.add_argument("--checkpoint", default=None, metavar="MODEL.pt",
                   help="the training checkpoint: also report the agreement of the simulated "
                        "predictions with PyTorch's (default: none)")
    p.add_argument("--state", type=output_file, default=None, metavar="FILE",
                   help="resumable run: completed chunks of images are kept in FILE (rewritten "
                        "atomically after each); the same command continues after them "
                        "(default: not resumable)")
    p.add_argument("--chunk", type=positive_int, default=None, metavar="N",
                   help="images per chunk with --state or --cluster (one Dask task each), "
                        "rounded up to whole batches (default 256)")
    p.add_argument("--waves", type=waves_file, default=None, metavar="FILE.vcd|FILE.fst",
                   help="write the simulation's waveform to this file, VCD or FST by its "
                        "suffix (FST needs lz4's headers; Amaranth writes VCD only); one "
                        "simulator process, so --jobs 1; use --limit to keep it small "
                        "(default: none)")
    p.add_argument("--outputs", type=output_file, default=None, metavar="FILE.npz",
                   help="write every image's predicted class ('classes') and last-layer "
                        "integers ('scores') as the core computed them, in test-set order "
                        "(default: none)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout instead of a summary line "
                        "(default: the line)")
    p.set_defaults(func=run_sim)


def make_target(model, arch, array=None, fold=None, board=None):
    """The target the options name: the overlay of ``array``, or the dataflow build of the
    ``fold`` file, or the fold ``xnorflow profile`` builds for ``model`` on ``board``: the
    fastest recorded build's that met its clock, else the fastest that fits
    (:func:`~xnorflow.sw.build_records.default_dataflow_build`)."""
    if arch == "overlay":
        if fold is not None:
            raise XnorflowError("--fold is for --arch dataflow; the overlay takes --array")
        return OverlayTarget(array)
    if array is not None:
        raise XnorflowError("--array is for --arch overlay; the dataflow build takes --fold")
    if fold is not None:
        return DataflowTarget(folding.load_fold(fold))
    return DataflowTarget(resolve_dataflow_build(
        model, board, log=lambda line: print(f"sim: {line}", file=sys.stderr)).config)


def check_netlist_options(netlist, x_random, x_seed, engine):
    """Refuse ``--netlist``/``--x-random``/``--x-seed`` combinations that mean nothing, before
    any work: a netlist runs on the Verilator harness; X handling concerns netlists only (the
    RTL gives every register and memory an initial value)."""
    if netlist is not None and engine != "verilator":
        raise XnorflowError(f"--netlist {netlist}: netlists run on the Verilator harness; use "
                            f"--engine verilator (the default), not {engine}")
    if netlist is None and x_random is not None:
        raise XnorflowError("--x-random/--no-x-random: goes with --netlist (the RTL has no "
                            "undefined values)")
    if x_seed is not None and (netlist is None or x_random is False):
        raise XnorflowError(f"--x-seed {x_seed}: goes with --netlist and --x-random")


def netlist_target(target, netlist, x_random=None, x_seed=None):
    """``target``, or its netlist for ``--netlist`` (X random unless ``x_random`` is False)."""
    if netlist is None:
        return target
    return NetlistTarget(target, netlist, x_random=x_random is not False,
                         seed=1 if x_seed is None else x_seed)


def check_cluster_options(cluster, jobs):
    """Refuse ``--jobs`` with ``--cluster`` (the workers run the chunks) and a missing Dask,
    before any work."""
    if cluster is None:
        return
    if jobs != 1:
        raise XnorflowError(f"--jobs {jobs}: with --cluster the Dask workers run the chunks; "
                            f"choose how many with --cluster local:N")
    require_dask()


def run_sim(args):
    check_waves(args.waves, args.engine, args.jobs, args.cluster)
    check_netlist_options(args.netlist, args.x_random, args.x_seed, args.engine)
    check_cluster_options(args.cluster, args.jobs)
    model = xnf.load(args.model)
    x, y = dataset_inputs(model, args.dataset, args.data_dir, args.limit)
    torch_pred = None
    if args.checkpoint:
        from xnorflow.sw.train.checkpoint import load_checkpoint
        torch_pred = torch_predictions(load_checkpoint(args.checkpoint)[0], x)
    target = netlist_target(make_target(model, args.arch, args.array, args.fold, args.board),
                            args.netlist, args.x_random, args.x_seed)
    cluster = (open_client(args.cluster) if args.cluster is not None
               else contextlib.nullcontext())
    try:
        with cluster as client:
            result = simulate(model, x, y, engine=args.engine, target=target, batch=args.batch,
                              torch_predictions=torch_pred, jobs=args.jobs, state=args.state,
                              chunk=args.chunk, waves=args.waves, outputs=args.outputs,
                              client=client)
    except ValueError as e:  # ProgramError and config errors: the model does not fit
        raise XnorflowError(str(e)) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        where = result["engine"] + (f", {result['netlist']} netlist" if result["netlist"] else "")
        line = (f"{result['images']} images on {where} ({result['array']}): "
                f"{result['mismatches']} integer mismatches vs golden, accuracy "
                f"{100 * result['accuracy']:.2f} %, {result['cycles_per_inference']:.0f} cycles "
                f"per inference")
        if torch_pred is not None:
            line += f", agreement with PyTorch {100 * result['agree_with_torch']:.2f} %"
        print(line)
    engines_ok = not any(result.get("engine_mismatches", {}).values())
    ok = (result["mismatches"] == 0 and engines_ok
          and (torch_pred is None or result["agree_with_torch"] == 1.0))
    if not ok:
        print("xnorflow sim: the RTL disagrees with the golden model or PyTorch: this is a bug",
              file=sys.stderr)
        for error in result.get("engine_errors", []):
            print(f"xnorflow sim: {error}", file=sys.stderr)
    return 0 if ok else 1
