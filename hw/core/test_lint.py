"""The core's Verilog passes `verilator --lint-only -Wall` with the waivers in
verilator_lint.vlt (each waiver states why it is the Verilog writer's, not the design's)."""
import os
import subprocess

import pytest

from xnorflow.sw.tools import verilator_executable

from xnorflow.hw.core.core import verilog

HERE = os.path.dirname(__file__)


@pytest.mark.verilator
@pytest.mark.parametrize("extra", ["", ",row_groups=2"])
def test_verilator_lint_clean(tmp_path, extra):
    exe = verilator_executable()
    if exe is None:
        pytest.skip("verilator not found")
    src = tmp_path / "core.v"
    src.write_text(verilog("2x4x16,w_depth=64,thr_depth=16,in_depth=64,act_depth=16,"
                           "out_depth=32,desc_depth=4,acc_width=16" + extra))
    env = dict(os.environ, PATH=os.path.dirname(exe) + os.pathsep + os.environ.get("PATH", ""))
    res = subprocess.run([exe, "--lint-only", "-Wall", os.path.join(HERE, "verilator_lint.vlt"),
                          str(src), "--top-module", "xnorflow_core"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "%Warning" not in res.stderr and "%Error" not in res.stderr
