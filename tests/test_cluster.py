"""``--cluster`` (issue #28): work spread as Dask tasks over a real ``distributed.LocalCluster``
of worker processes gives what the in-process run gives.

* ``xnorflow sim --cluster local:2`` shards the digits test set and prints the serial JSON
  (timings aside); a worker process killed mid-run (SIGKILL) and a client stopped with
  Ctrl-C lose nothing and count nothing twice;
* a two-point synthesis sweep (benchmarks/design_space.py) on the iCEBreaker writes the
  reports two serial builds write, and reuses them when run again;
* a training sweep (benchmarks/train_methods.py) gives the serial runs;
* bad ``--cluster`` values, a missing Dask and an unreachable scheduler are refused in one
  line (more rows in tests/bad_input_cases/commands.py).
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from xnf_testing import ROOT

pytest.importorskip("distributed", reason="the 'dask' extra is not installed")

# Holds the digits MLP (64-256-256-10) and the digits CNN (tests/test_sim_trained.py's build).
CONFIG = "4x4x16,w_depth=2048,thr_depth=128,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"
#: What differs between two runs of the same simulation: how long it took, and where.
TIMING = {"build_seconds", "wall_seconds", "simulated_cycles_per_second", "images_per_second",
          "simulator_cpu_seconds", "host_cpu_seconds", "simulated_cycles_per_cpu_second"}
#: ``jobs`` says how many processes ran the chunks (the workers, for a cluster run).
LAYOUT = {"jobs"}


def _sim_argv(model, *extra):
    return [sys.executable, "-m", "xnorflow.cli", "sim", str(model), "--dataset", "digits",
            "--array", CONFIG, "--json", *extra]


def _sim(model, *extra):
    """``xnorflow sim MODEL --json EXTRA`` through the real entry: (result, stderr)."""
    proc = subprocess.run(_sim_argv(model, *extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def _same_simulation(result, reference, also=()):
    """Every field but the timings (and the run layout, and ``also``) equal."""
    skip = TIMING | LAYOUT | set(also)
    assert {k: v for k, v in result.items() if k not in skip} == \
        {k: v for k, v in reference.items() if k not in skip}


def _chunks_done(state):
    """Chunks recorded in a journal file so far (0 before it exists or while it is replaced)."""
    try:
        with np.load(state) as f:
            return int(f["done"].sum())
    except (OSError, ValueError, KeyError):
        return 0


def _wait_for_a_chunk(proc, state):
    """Block until the journal holds a chunk (the run's first results arrived)."""
    deadline = time.monotonic() + 300
    while _chunks_done(state) == 0:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no chunk recorded within 300 s"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def mlp(digits_models):
    return digits_models("irnet")[1]


@pytest.fixture(scope="module")
def cnn(digits_cnns):
    """The digits CNN: one image per run of the core, so a run of 2-image chunks lasts long
    enough (seconds) to be interrupted in its middle."""
    return digits_cnns("irnet")[1]


@pytest.fixture(scope="module")
def serial_cnn(cnn):
    return _sim(cnn)[0]


@pytest.mark.verilator
def test_sharded_sim_prints_the_serial_json(mlp, tmp_path):
    serial, _ = _sim(mlp, "--outputs", str(tmp_path / "serial.npz"))
    sharded, err = _sim(mlp, "--cluster", "local:2", "--chunk", "24",
                        "--outputs", str(tmp_path / "sharded.npz"))
    assert "Dask local cluster of 2 worker processes" in err
    chunk = -(-24 // serial["batch"]) * serial["batch"]        # whole batches
    tasks = -(-360 // chunk)
    assert tasks > 2 and f"tasks {tasks}/{tasks} done, 0 running, 0 failed" in err
    assert serial["images"] == 360 and serial["mismatches"] == 0
    assert serial["predicted_cycles_match"] is True
    _same_simulation(sharded, serial)
    assert sharded["jobs"] == 2 and sharded["simulator_cpu_seconds"] is None
    with np.load(tmp_path / "serial.npz") as a, np.load(tmp_path / "sharded.npz") as b:
        assert (a["scores"] == b["scores"]).all() and (a["classes"] == b["classes"]).all()


@pytest.mark.verilator
def test_a_worker_killed_mid_run_loses_nothing(cnn, serial_cnn, tmp_path):
    from distributed import Client, LocalCluster
    state = tmp_path / "run.npz"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        proc = subprocess.Popen(
            _sim_argv(cnn, "--cluster", cluster.scheduler_address, "--state", str(state),
                      "--chunk", "2"),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_a_chunk(proc, state)
            # A worker that holds chunks of this run (running or next in its queue).
            victim = next(w for w, keys in client.processing().items() if keys)
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            killed_at = _chunks_done(state)
            out, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-3000:]
        assert pid not in client.run(os.getpid).values()       # the process is gone
    assert killed_at < 180, "the run ended before the worker was killed"
    result = json.loads(out)
    assert result["mismatches"] == 0 and result["images"] == 360
    _same_simulation(result, serial_cnn)       # nothing lost, no chunk counted twice
    with np.load(state) as f:
        assert f["done"].all() and len(f["done"]) == 180
        assert sum(len(chunk) for chunk in json.loads(str(f["batches"]))) == 360  # batch 1


def _interrupt_after_a_chunk(argv, state):
    """Run ``argv``, Ctrl-C it once its journal holds a chunk: (returncode, stdout, stderr).
    The child gets SIGINT's default action back: an earlier test in the same pytest worker can
    leave SIGINT ignored (seen in CI: exit 0, the run finished), and an ignored signal stays
    ignored across exec, so Python would never raise KeyboardInterrupt in the child."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_a_chunk(proc, state)
        proc.send_signal(signal.SIGINT)                          # Ctrl-C on the client
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@pytest.mark.verilator
def test_an_interrupted_cluster_run_resumes_from_its_state(cnn, serial_cnn, tmp_path):
    state = tmp_path / "run.npz"
    # One worker and one image a task: 360 tasks, so the run lasts long enough for the Ctrl-C
    # to land in its middle even when the machine is loaded (with two workers and two-image
    # chunks the whole run took 4 s, and under a loaded CI the signal came after its end).
    argv = _sim_argv(cnn, "--cluster", "local:1", "--state", str(state), "--chunk", "1")
    # A try whose signal still lands after the run ended tests nothing and is made again.
    for _ in range(3):
        code, out, err = _interrupt_after_a_chunk(argv, state)
        if not (code == 0 and _chunks_done(state) == 360):
            break
        state.unlink()
    assert code == 130, err[-3000:]
    assert out == "" and "run the same command to continue" in err
    kept = _chunks_done(state)
    assert 0 < kept < 360
    result, err = _sim(cnn, "--cluster", "local:1", "--state", str(state), "--chunk", "1")
    assert f"resuming from {state}: {kept} of 360 images done" in err
    assert result["resumed_images"] == kept
    _same_simulation(result, serial_cnn, also={"resumed_images"})


# -- synthesis sweep ----------------------------------------------------------------------------

# The two smallest overlay builds whose memories hold an image of the sweep's model (on the
# iCEBreaker the digits MLP, batches of 2 and 4):
# about 30 s each on the iCEBreaker.
SWEEP = ["1x1x8,w_depth=256,thr_depth=32,in_depth=128,act_depth=64,out_depth=64,desc_depth=4,"
         "conv=0",
         "2x2x8,w_depth=256,thr_depth=32,in_depth=128,act_depth=64,out_depth=64,desc_depth=4,"
         "conv=0"]


def _sweep(out_root, arrays, *extra):
    """benchmarks/design_space.py on the iCEBreaker over ``arrays``: its JSON document."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "design_space.py"), "--board", "icebreaker",
         "--arrays", *arrays, "--out-root", str(out_root), "--plot", str(out_root / "plot.png"),
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def _reports(out_root):
    return {p.parent.name: p.read_text() for p in sorted(out_root.glob("*/report.json"))}


@pytest.mark.synth
@pytest.mark.slow
def test_a_synthesis_sweep_on_the_cluster_writes_the_serial_reports(tmp_path):
    # The serial reference builds the first point only (each build is ~30 s of the suite's
    # time); the cluster builds both, so its scheduling, ordering and reuse are still shown.
    serial, _ = _sweep(tmp_path / "serial", SWEEP[:1], "--jobs", "1", "--seeds", "3")
    swept, err = _sweep(tmp_path / "cluster", SWEEP, "--cluster", "local:2", "--seeds", "3")
    assert "tasks 2/2 done, 0 running, 0 failed" in err
    serial_reports, cluster_reports = _reports(tmp_path / "serial"), _reports(tmp_path / "cluster")
    assert len(serial_reports) == 1 and len(cluster_reports) == 2
    # the placement seed is a point's coordinate: in the label, the directory and the report
    assert all("-seed3-" in name and json.loads(text)["seed"] == 3
               for name, text in cluster_reports.items())
    (name, text), = serial_reports.items()
    assert cluster_reports[name] == text

    def row(p):
        return {k: v for k, v in p.items() if k not in ("build_seconds", "reused_build")}
    assert row(swept["points"][0]) == row(serial["points"][0])
    assert [p["array"] for p in swept["points"]] == SWEEP       # in the order asked
    assert (tmp_path / "cluster" / "plot.png").exists()
    assert not any(p["reused_build"] for p in swept["points"])
    again, _ = _sweep(tmp_path / "cluster", SWEEP, "--cluster", "local:2", "--seeds", "3")
    assert all(p["reused_build"] for p in again["points"])       # the builds exist
    assert [row(p) for p in again["points"]] == [row(p) for p in swept["points"]]
    assert again["pareto"] == swept["pareto"]


# -- training sweep ------------------------------------------------------------------------------

def _train(tmp_path, name, *extra):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_methods.py"), "--datasets", "digits",
         "--methods", "irnet,ste", "--seeds", "0", "--epochs", "1",
         "--png", str(tmp_path / f"{name}.png"), "--runs-log", str(tmp_path / f"{name}.jsonl"),
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)["runs"], proc.stderr


@pytest.mark.slow
def test_a_training_sweep_on_the_cluster_gives_the_serial_runs(tmp_path):
    serial, _ = _train(tmp_path, "serial")
    swept, err = _train(tmp_path, "cluster", "--cluster", "local:2")
    assert "tasks 2/2 done, 0 running, 0 failed" in err

    def same(runs):
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in runs]
    assert [r["method"] for r in swept] == ["irnet", "ste"]
    assert same(swept) == same(serial)
    logged = [json.loads(line) for line in (tmp_path / "cluster.jsonl").read_text().splitlines()]
    assert sorted(same(logged), key=lambda r: r["method"]) == same(serial)


# -- refusals ------------------------------------------------------------------------------------

def test_cluster_values_parse_to_what_they_name():
    from xnorflow.cluster import cluster_spec
    assert cluster_spec("local").local and cluster_spec("local").workers is None
    assert cluster_spec("local:3").workers == 3
    remote = cluster_spec("tcp://10.0.0.5:8786")
    assert not remote.local and remote.address == "tcp://10.0.0.5:8786"
    assert cluster_spec("tcp://[::1]:8786").address == "tcp://[::1]:8786"


FORMS = ("expected local (one worker process per core), local:N (N worker processes) or "
         "tcp://HOST:PORT (a running Dask scheduler)")


@pytest.mark.parametrize("text, expected", [
    ("bogus", f"{FORMS}, got 'bogus'"),
    ("local:0", "local:0: the number of worker processes must be at least 1"),
    ("local:-1", f"{FORMS}, got 'local:-1'"),
    ("local:two", f"{FORMS}, got 'local:two'"),
    ("tcp://host", f"{FORMS}, got 'tcp://host'"),
    ("tcp://host:0", "tcp://host:0: the port must be 1..65535"),
    ("tcp://host:65536", "tcp://host:65536: the port must be 1..65535"),
    ("udp://host:8786", f"{FORMS}, got 'udp://host:8786'"),
    ("", f"{FORMS}, got ''"),
])
def test_bad_cluster_values_are_refused_naming_the_forms(text, expected, capsys):
    import argparse
    from xnorflow.cluster import add_cluster_argument
    parser = argparse.ArgumentParser(prog="xnorflow sim")
    add_cluster_argument(parser, "a chunk each")
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--cluster", text])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"xnorflow sim: error: argument --cluster: {expected}\n" in err, err


def test_a_missing_dask_is_named_with_the_extra_to_install(tmp_path):
    from xnorflow.sw import xnf
    from xnorflow.sw.random_models import random_model
    model = tmp_path / "m.xnf"
    xnf.save(random_model(np.random.default_rng(1), [64, 16, 10], input_bits=4), model)
    code = ("import sys\n"
            "sys.modules['dask'] = sys.modules['distributed'] = None  # as if not installed\n"
            "from xnorflow.cli import main\n"
            f"sys.exit(main(['sim', {str(model)!r}, '--dataset', 'digits', "
            "'--cluster', 'local:2']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("xnorflow sim: error: --cluster: install the 'dask' extra: "
                                  "pip install -e '.[dask]' (cannot import dask"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_an_unreachable_scheduler_is_named(monkeypatch, capsys):
    import socket
    from xnorflow import cluster
    from xnorflow.sw.errors import XnorflowError
    with socket.socket() as s:      # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2.0)
    with pytest.raises(XnorflowError) as e:
        with cluster.open_client(f"tcp://127.0.0.1:{port}"):
            pass
    assert str(e.value).startswith(f"--cluster tcp://127.0.0.1:{port}: cannot reach a Dask "
                                   f"scheduler there within 2 s")
