"""``--cluster``: run a command's independent pieces of work as Dask tasks (docs/scale-out.md).

The commands that fan out work (``xnorflow sim``, ``benchmarks/design_space.py``,
``benchmarks/train_methods.py``) take ``--cluster SPEC``:

* ``local`` — a :class:`distributed.LocalCluster` on this machine, one worker process per
  core (one thread each: a worker runs one simulator or one nextpnr at a time);
* ``local:N`` — the same with ``N`` worker processes;
* ``tcp://HOST:PORT`` — a running Dask scheduler (``dask scheduler``) and the workers that
  joined it (``dask worker tcp://HOST:PORT``), on this or other machines.

Without ``--cluster`` the commands keep their in-process behaviour. Dask (``dask``,
``distributed``) is the optional ``dask`` extra: it is imported only here, inside functions,
and a command that needs it and does not find it says so in one line
(:func:`require_dask`). This module also shows the progress of distributed work on stderr
(tasks done / running / failed, :class:`TaskProgress`) and prints the dashboard's address.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import time
import urllib.request
from dataclasses import dataclass

from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.progress import progress_bar

__all__ = ["ClusterSpec", "cluster_spec", "add_cluster_argument", "require_dask",
           "open_client", "dashboard_note", "worker_count", "TaskProgress", "completed",
           "MissingDaskError", "ClusterError", "DASK_HINT", "CLUSTER_FORMS"]

DASK_HINT = "install the 'dask' extra: pip install -e '.[dask]'"
CLUSTER_FORMS = ("local (one worker process per core), local:N (N worker processes) or "
                 "tcp://HOST:PORT (a running Dask scheduler)")
#: Seconds to wait for a scheduler named by ``tcp://HOST:PORT`` before giving up.
CONNECT_TIMEOUT = 15.0

_LOCAL = re.compile(r"local(?::(\d+))?")
_SCHEDULER = re.compile(r"tcp://([^\s:/]+|\[[0-9A-Fa-f:.]+\]):(\d+)")


class MissingDaskError(XnorflowError):
    """``--cluster`` was given but Dask (the ``dask`` extra) is not installed."""


class ClusterError(XnorflowError):
    """The cluster cannot be reached, or a task's workers kept dying."""


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--cluster`` value: ``workers`` local processes (None: one per core), or the
    ``address`` of a running scheduler."""
    text: str
    workers: int | None = None
    address: str | None = None

    @property
    def local(self):
        return self.address is None

    def __str__(self):
        return self.text


def cluster_spec(text):
    """argparse type of ``--cluster``: ``local``, ``local:N`` or ``tcp://HOST:PORT``; anything
    else is refused naming the accepted forms (argparse adds ``argument --cluster:``)."""
    local = _LOCAL.fullmatch(text)
    if local:
        n = local.group(1)
        if n is not None and int(n) < 1:
            raise argparse.ArgumentTypeError(f"local:{n}: the number of worker processes must "
                                             f"be at least 1")
        return ClusterSpec(text, workers=None if n is None else int(n))
    remote = _SCHEDULER.fullmatch(text)
    if remote:
        if not 1 <= int(remote.group(2)) <= 65535:
            raise argparse.ArgumentTypeError(f"{text}: the port must be 1..65535")
        return ClusterSpec(text, address=text)
    raise argparse.ArgumentTypeError(f"expected {CLUSTER_FORMS}, got {text!r}")


cluster_spec.__name__ = "cluster"  # argparse names the type in its messages


def add_cluster_argument(parser, work):
    """``--cluster SPEC`` on ``parser``; ``work`` says what one Dask task does."""
    parser.add_argument(
        "--cluster", type=cluster_spec, default=None, metavar="SPEC",
        help=f"run the work as Dask tasks ({work}): 'local' starts one worker process per "
             f"core on this machine, 'local:N' N of them, 'tcp://HOST:PORT' uses a running "
             f"Dask scheduler and its workers (docs/scale-out.md; needs the 'dask' extra) "
             f"(default: in this process, as without Dask)")


def require_dask():
    """The ``distributed`` module; :class:`MissingDaskError` (one line, naming the extra) when
    dask or distributed cannot be imported."""
    try:
        importlib.import_module("dask")
        return importlib.import_module("distributed")
    except ImportError as e:
        raise MissingDaskError(f"--cluster: {DASK_HINT} (cannot import {e.name}: {e})") from None


def _local_workers(spec):
    """Worker processes of a local cluster: as asked, else the cores this process may use."""
    if spec.workers is not None:
        return spec.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def dashboard_note(client):
    """What to print about the scheduler's dashboard: its address, or why there is none.

    The scheduler serves its address even without bokeh (a page saying bokeh is missing
    there), so the page is read once to tell the two apart."""
    if "dashboard" not in client.scheduler_info().get("services", {}):
        return "xnorflow: the Dask scheduler serves no dashboard"
    link = client.dashboard_link
    try:
        with urllib.request.urlopen(link, timeout=3) as page:
            missing = b"needs bokeh" in page.read(2000)
    except OSError:          # not reachable from here: the address may still be of use
        return f"xnorflow: Dask dashboard at {link} (not reachable from this machine)"
    if missing:
        return ("xnorflow: no Dask dashboard (it needs bokeh where the scheduler runs: "
                "pip install bokeh)")
    return f"xnorflow: Dask dashboard at {link}"


def _start_local(distributed, spec, log):
    """A LocalCluster of ``spec``'s worker processes and a client of it."""
    n = _local_workers(spec)
    # Processes, not threads: the simulators and nextpnr are separate processes anyway, but
    # the driver, the golden model and Yosys's Python hold the GIL. Dashboard ':0' takes a
    # free port (a fixed one clashes with a second run on the machine).
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    try:
        client = distributed.Client(cluster)
    except BaseException:
        cluster.close()
        raise
    log(f"xnorflow: Dask local cluster of {n} worker process{'es' * (n != 1)} "
        f"({cluster.scheduler_address})")
    return cluster, client


def _connect(distributed, spec, log):
    """A client of the running scheduler ``spec`` names (ClusterError if none answers)."""
    try:
        client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"--cluster {spec}: cannot reach a Dask scheduler there within "
                           f"{CONNECT_TIMEOUT:g} s ({e}); start one with `dask scheduler` "
                           f"(docs/scale-out.md)") from None
    log(f"xnorflow: Dask scheduler {spec.address}, {worker_count(client)} worker(s) connected")
    return client


@contextlib.contextmanager
def open_client(spec, log=_log):
    """A :class:`distributed.Client` for ``spec`` (a :class:`ClusterSpec` or its text),
    closed (with the local cluster it started) on exit. The dashboard's address goes to
    ``log`` when the scheduler serves one; with no worker connected yet (e.g. Slurm jobs
    still queued) it waits for the first."""
    if isinstance(spec, str):
        spec = cluster_spec(spec)
    distributed = require_dask()
    if spec.local:
        cluster, client = _start_local(distributed, spec, log)
    else:
        cluster, client = None, _connect(distributed, spec, log)
    try:
        log(dashboard_note(client))
        if worker_count(client) == 0:
            log(f"xnorflow: waiting for a worker to join (`dask worker {spec.address}`)")
            client.wait_for_workers(1)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def worker_count(client):
    """Workers connected to the scheduler now."""
    return len(client.scheduler_info(n_workers=-1).get("workers", {}))


class TaskProgress:
    """Tasks done / running / failed of one set of futures, on stderr through
    :func:`xnorflow.sw.progress.progress_bar` (a live bar on a terminal, a line every
    ``interval`` seconds otherwise).

    The bar counts ``unit`` (tasks, or the images they hold: ``amount`` per future); the task
    counts go on its postfix. "Running" are the tasks the scheduler has handed to a worker
    (``Client.processing``), refreshed every ``refresh`` seconds."""

    def __init__(self, client, futures, desc, unit="task", amount=None, bar=None, initial=0,
                 total=None, refresh=2.0, disable=False):
        self.client = client
        self.total = len(futures)
        self.keys = {f.key for f in futures}
        self.amount = amount or (lambda future: 1)
        self.bar = bar if bar is not None else progress_bar(
            total=self.total if total is None else total, desc=desc, unit=unit,
            initial=initial, disable=disable)
        self.own_bar = bar is None
        self.done = self.failed = self.running = 0
        self.refresh_every, self._refreshed = refresh, 0.0

    def finished(self, future, ok=True):
        """Count ``future`` as done (``ok``) or failed and move the bar."""
        if ok:
            self.done += 1
            self.bar.update(self.amount(future))
        else:
            self.failed += 1
        self.running = max(0, self.running - 1)   # until the next poll of the scheduler
        self.refresh()

    def refresh(self):
        """Show the counts; the running tasks are asked of the scheduler at most every
        ``refresh`` seconds (one round trip)."""
        now = time.monotonic()
        if now - self._refreshed >= self.refresh_every:
            self._refreshed = now
            with contextlib.suppress(Exception):   # a scheduler restarting a worker: next time
                held = self.client.processing()
                self.running = sum(1 for keys in held.values() for k in keys if k in self.keys)
        if self.done + self.failed == self.total:
            self.running = 0
        self.bar.set_postfix_str(self.text())
        self.bar.update(0)   # a plain-line bar prints on updates only: keep it alive

    def text(self):
        return (f"tasks {self.done}/{self.total} done, {self.running} running, "
                f"{self.failed} failed")

    def close(self):
        if self.own_bar:
            self.bar.close()


def _task_error(future):
    """The exception to raise for a task that failed: its own error (with the remote
    traceback), or a one-line :class:`ClusterError` when its workers kept dying or it was
    cancelled."""
    if future.status == "error":
        error = future.exception()
        if type(error).__name__ == "KilledWorker":
            return ClusterError(f"Dask task {future.key}: its worker died on every attempt "
                                f"(distributed.scheduler.allowed-failures); see the workers' "
                                f"logs")
        return error.with_traceback(future.traceback())
    return ClusterError(f"Dask task {future.key} was {future.status} (the scheduler or its "
                        f"workers went away)")


def completed(futures, progress=None, keep_going=False, poll=0.1):
    """Yield ``(future, result)`` for each of ``futures`` as it finishes, counting it on
    ``progress`` (a :class:`TaskProgress`).

    A task that fails cancels the others and raises its error at once; with ``keep_going`` the
    others finish (and are yielded) first and the first error is raised at the end. A task
    whose worker died is rerun by Dask on another worker (up to
    ``distributed.scheduler.allowed-failures`` times), and so is a finished one whose result
    was lost with its worker before it was read: each comes back once."""
    distributed = require_dask()
    finished = distributed.as_completed(futures)
    # Only ``finished`` holds the futures: once the consumer is done with one, Dask frees its
    # result on the worker (and a worker dying later does not recompute it).
    del futures
    first_error = None
    try:
        while not finished.is_empty():
            batch = finished.next_batch(block=False)
            if not batch:
                if progress is not None:
                    progress.refresh()
                time.sleep(poll)
                continue
            for future in batch:
                failed, result = future.status in ("error", "cancelled"), None
                if not failed:
                    # A lost result ("lost": its worker died after the task ended) is
                    # recomputed because we still hold the future; result() waits for it.
                    try:
                        result = future.result()
                    except Exception:  # noqa: BLE001 - the recomputation failed: reported below
                        failed = True
                if progress is not None:
                    progress.finished(future, ok=not failed)
                if not failed:
                    yield future, result
                elif not keep_going:
                    raise _task_error(future)
                elif first_error is None:
                    first_error = future
    finally:   # an error, Ctrl-C or a consumer that stopped: free the workers
        for future in list(finished.futures):
            future.cancel()
    if first_error is not None:
        raise _task_error(first_error)
