"""The host link's Verilog passes `verilator --lint-only -Wall`."""
import os
import subprocess

import pytest

from xnorflow.sw.tools import verilator_executable
from amaranth.back import verilog

from xnorflow.hw.link import HostLink

WAIVERS = os.path.join(os.path.dirname(__file__), "..", "core", "verilator_lint.vlt")


@pytest.mark.verilator
def test_hostlink_verilator_lint_clean(tmp_path):
    exe = verilator_executable()
    if exe is None:
        pytest.skip("verilator not found")
    (tmp_path / "link.v").write_text(verilog.convert(
        HostLink(max_payload=256, timeout=1 << 20, config=b"8x8x32"), name="hostlink"))
    args = [exe, "--lint-only", "-Wall"]
    if os.path.exists(WAIVERS):
        args.append(os.path.abspath(WAIVERS))
    env = dict(os.environ, PATH=os.path.dirname(exe) + os.pathsep + os.environ.get("PATH", ""))
    res = subprocess.run(args + ["link.v", "--top-module", "hostlink"], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "%Warning" not in res.stderr and "%Error" not in res.stderr
