"""`xnorflow verilog` output is lint-clean under `verilator --lint-only -Wall` (with the
documented waivers) for the whole accelerator and for the core alone."""
import re
import subprocess
import sys

import pytest

from xnf_testing import ROOT
from xnorflow.sw.verilog import LINT_WAIVERS

SMALL = "2x4x16,w_depth=64,thr_depth=16,in_depth=64,act_depth=16,out_depth=32,desc_depth=4"


@pytest.mark.verilator
@pytest.mark.parametrize("top,module", [("accelerator", "xnorflow_accelerator"),
                                        ("core", "xnorflow_core")])
def test_verilog_command_output_is_lint_clean(tmp_path, top, module):
    out = tmp_path / f"{top}.v"
    proc = subprocess.run([sys.executable, "-m", "xnorflow.cli", "verilog", "--array", SMALL, "--top",
                           top, "-o", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"module {module}" in out.read_text()
    from xnorflow.sw.tools import ensure_tools_on_path
    ensure_tools_on_path()
    lint = subprocess.run(["verilator", "--lint-only", "-Wall", str(LINT_WAIVERS), str(out),
                           "--top-module", module], cwd=tmp_path, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr[-3000:]
    assert "%Warning" not in lint.stderr


def test_verilog_command_rejects_a_bad_configuration(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xnorflow.cli", "verilog", "--array", "3x4x16", "-o",
                           str(tmp_path / "x.v")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--array" in proc.stderr and "power of two" in proc.stderr
    assert not (tmp_path / "x.v").exists()


@pytest.mark.slow
@pytest.mark.parametrize("argv,module", [([], "xnorflow_accelerator"),
                                         (["--top", "core"], "xnorflow_core")],
                         ids=["all-defaults", "core-default-array"])
def test_verilog_command_with_its_defaults(tmp_path, argv, module):
    """``xnorflow verilog -o FILE`` alone (the default build, 8x8x32, as its help says)
    writes the whole module; it once failed with "--array '': empty array config"."""
    out = tmp_path / "core.v"
    proc = subprocess.run([sys.executable, "-m", "xnorflow.cli", "verilog", *argv, "-o", "core.v"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"module {module}" in proc.stderr
    text = out.read_text()
    assert f"module {module}(" in text and text.rstrip().endswith("endmodule")
    assert len(text.splitlines()) > 1000
    # the 8x8 array of the default build: one module per processing element
    pes = set(re.findall(r"^module \\\S*\.array\.pe_(\d+)_(\d+) ", text, re.M))
    assert pes == {(str(i), str(j)) for i in range(8) for j in range(8)}
