"""The README's main job, end to end (synthesis has its own test: tests/synth)."""
import json
import subprocess
import sys

import pytest

from xnf_testing import ROOT


@pytest.mark.slow
@pytest.mark.verilator
def test_xnorflow_run_is_bit_exact_and_writes_its_report(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "xnorflow.cli", "run", "--out", str(out), "--epochs",
                           "8", "--no-synth", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["bit_exact"] is True
    assert set(report["simulation"]) == {"overlay", "dataflow"}
    # the dataflow build is the one `xnorflow profile` makes without --fold: the digits MLP's
    # fastest recorded build that met its clock (sw/build_records.py)
    recorded = json.loads((ROOT / "bitstreams" / "icebreaker-df-64u4-256-16x4s-37mhz-seed3-af7c92b4"
                           / "report.json").read_text())
    assert report["simulation"]["dataflow"]["array"] == recorded["fold"]
    for sim in report["simulation"].values():
        assert sim["images"] == 360 and sim["mismatches"] == 0
        assert sim["agree_with_torch"] == 1.0
        assert sim["predicted_cycles_match"] is True
    assert report["golden_vs_torch"]["hidden_bits_equal"] is True
    assert report["training"]["test_accuracy"] > 0.9
    for name in ("model.pt", "model.xnf", "metrics.json", "training.png", "report.md",
                 "report.json"):
        assert (out / name).stat().st_size > 0, name
    assert "Bit-exact end to end: yes" in (out / "report.md").read_text()
    assert "[4/4]" in proc.stderr  # progress is shown stage by stage
