"""The dataflow build on Verilator, through the real command: every trained digits model over
the whole test set, bit-exact, with the core's counters equal to the cycle model (issue #25)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from xnf_testing import DEPLOYABLE

ROOT = Path(__file__).resolve().parent.parent
OVERLAPPED_BUILD = "icebreaker-df-64u4-256-16x4s-37mhz-seed3-af7c92b4"


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("method", DEPLOYABLE)
def test_trained_digits_models_are_exact_on_the_icebreaker_fold(method, digits_models):
    checkpoint, model = digits_models(method)
    proc = subprocess.run(
        [sys.executable, "-m", "xnorflow.cli", "sim", str(model), "--dataset", "digits",
         "--arch", "dataflow", "--board", "icebreaker", "--checkpoint", str(checkpoint),
         "--json"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # no --fold: the fastest recorded build of the digits MLP's shapes that met its clock,
    # the overlapped fold at 37 MHz (sw/build_records.py; tests/test_build_records.py)
    recorded = json.loads((ROOT / "bitstreams" / OVERLAPPED_BUILD / "report.json").read_text())
    assert result["arch"] == "dataflow" and result["array"] == recorded["fold"]
    assert "the fastest recorded build that met its clock" in proc.stderr
    assert result["images"] == 360 and result["mismatches"] == 0
    assert result["agree_with_torch"] == 1.0 and result["predicted_cycles_match"]
    assert result["interval_cycles"] == 256
