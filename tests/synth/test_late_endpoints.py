"""benchmarks/late_endpoints.py on a real build: nextpnr's detailed report read back as slacks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from xnorflow.hw.board.top import UartBridgeTop

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "synth"))

import late_endpoints  # noqa: E402
from test_synth_flow import Echo  # noqa: E402


def test_replicas_bits_and_tool_suffixes_fall_into_one_group():
    # cell names as nextpnr reports them for an ECP5 build
    assert (late_endpoints.group_name("pipeline.engine4.weights0_10_wr_addr_TRELLIS_FF_Q_3")
            == late_endpoints.group_name("pipeline.engine4.weights0_2_wr_addr_TRELLIS_FF_Q")
            == "pipeline.engine4.weights0_#_wr_addr")    # which engine stays in the name
    assert late_endpoints.group_name("pipeline.engine4.weights0_2.0.6") == "pipeline.engine4.weights0_#.#.#"
    assert late_endpoints.group_name("core.fifo.level[4]$DFF") == "core.fifo.level#"


@pytest.mark.synth
@pytest.mark.slow
def test_every_endpoint_past_the_clock_is_listed_and_the_worst_is_the_critical_path():
    from xnorflow.sw.synth import synthesize
    out_root = ROOT / "build" / "test-synth"   # YoWASP cannot see the host's /tmp
    report = synthesize(UartBridgeTop(Echo()), "icebreaker", "echo-detailed", out_root=out_root,
                        force=True, detailed_timing=True, progress=False)
    fmax = report["fmax_mhz"]

    def run(clock_mhz):
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "late_endpoints.py"),
                               report["build_dir"], "--clock-mhz", str(clock_mhz), "--top", "1000"],
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout)   # exactly one JSON document

    assert run(fmax / 2)["late_endpoints"] == 0
    tight = run(fmax * 2)
    assert tight["late_endpoints"] > 0 and tight["groups"]
    assert Path(tight["plot"]).stat().st_size > 1000
    # the worst arrival is the critical path's delay, give or take the capture register's
    # setup and clock delay, which nextpnr's report leaves out of the arrivals
    worst = -min(g["worst_slack_ns"] for g in tight["groups"]) + 1000 / (fmax * 2)
    assert abs(worst - 1000 / fmax) < 1.0
    assert sum(g["endpoints"] for g in tight["groups"]) == tight["late_endpoints"]
