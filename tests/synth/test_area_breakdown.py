"""benchmarks/area_breakdown.py: real Yosys (-noflatten) on the iCEBreaker default, summed per block."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import area_breakdown  # noqa: E402


def test_modules_fall_into_the_blocks_a_reader_knows():
    assert area_breakdown.classify("top.core.core.array.pe_1_3") == "PEs"
    assert area_breakdown.classify("top.core.core.array") == "array column logic"
    assert area_breakdown.classify("top.core.core.seq") == "sequencer"
    assert area_breakdown.classify("top.core.core.walker7") == "conv pixel walkers"
    assert area_breakdown.classify("top.core.link.tx.crc16") == "host link"
    assert area_breakdown.classify("top.core.core") == "core: banks, skew, writer, read-back"
    assert area_breakdown.classify("top.rx$31.sync_rx") == "UART, clocking, top"


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_default_breakdown_adds_up(tmp_path):
    plot = tmp_path / "area.png"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "area_breakdown.py"), "--plot", str(plot)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    report = json.loads(done.stdout)  # exactly one JSON document
    assert report["board"] == "icebreaker" and report["config"].startswith("2x4x16,")
    blocks, total = report["blocks"], report["total"]
    for kind in ("luts", "ffs", "carries", "brams", "sprams", "dsps"):
        assert sum(b[kind] for b in blocks.values()) == total[kind], kind
    assert blocks["PEs"]["modules"] == 8  # 2 x 4
    assert "conv pixel walkers" not in blocks  # conv=0: no walkers are built
    # The placed build (5,259 logic cells) packs these LUT4s with flip-flops: the counts are
    # of that order, and the weights sit in the two SPRAMs, the -dsp multiplier in one MAC16.
    assert 3000 < total["luts"] < 5280 and total["sprams"] == 2 and total["dsps"] == 1
    assert plot.stat().st_size > 10_000
