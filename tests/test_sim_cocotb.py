"""``xnorflow sim --engine cocotb``: trained weights through the cocotb bench
(``sim/cocotb/tb_model.py``): the project's driver over a cycle-level driver with random idle
gaps and a monitor with random backpressure, a scoreboard on every output integer and counter,
the same JSON as the other engines."""
import json
import subprocess
import sys

import numpy as np
import pytest

from xnf_testing import ROOT

# The build of tests/test_sim_trained.py: holds the 64-256-256-10 digits models, 16 images per
# run of the core (batches keep the bench's Python per cycle to the link traffic).
CONFIG = "4x4x16,w_depth=2048,thr_depth=128,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("method", ["irnet", "rbnn"])
def test_trained_model_on_the_cocotb_bench_is_bit_exact_on_the_whole_test_set(method,
                                                                             digits_models):
    ckpt, compiled = digits_models(method)
    proc = subprocess.run(
        [sys.executable, "-m", "xnorflow.cli", "sim", str(compiled), "--dataset", "digits",
         "--engine", "cocotb", "--array", CONFIG, "--checkpoint", str(ckpt), "--json"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["engine"] == "cocotb" and result["netlist"] is None
    assert result["images"] == 360 and result["batch"] == 16
    assert result["mismatches"] == 0 and result["mismatched_images"] == 0
    assert result["agree_with_torch"] == 1.0
    assert result["predicted_cycles_match"] is True
    assert set(result["cycles_by_layer"]) == {"fc0", "fc1", "fc2"}
    assert result["simulated_cycles"] > 360 * result["cycles_per_inference"]
    assert result["simulator_cpu_seconds"] is not None


@pytest.mark.slow
@pytest.mark.verilator
def test_the_bench_stalls_the_streams_and_still_gets_every_integer(digits_models):
    """The same images with and without random gaps and backpressure: the same integers, every
    one scoreboarded, and the stalls cost cycles (they really happened)."""
    from xnorflow.sim.cocotb_runner import run_model
    from xnorflow.sim.tops import accelerator_spec
    from xnorflow.sw import xnf
    from xnorflow.sw.evaluate import dataset_inputs
    model = xnf.load(digits_models("irnet")[1])
    x, _ = dataset_inputs(model, "digits", None, 20)
    runs = {}
    for gap in (0.0, 0.3):
        runs[gap] = run_model(accelerator_spec(CONFIG), model, x, device="xnorflow.sw.driver:OverlayDevice",
                              config=CONFIG, batch=16, gap=gap, backpressure=gap,
                              run_id=f"test-gaps-{gap}")
    (ints0, batches0, cycles0, checks0), (ints1, batches1, cycles1, checks1) = runs.values()
    golden = model.forward(x)[-1][0]
    assert np.array_equal(ints0, golden) and np.array_equal(ints1, golden)
    assert [b["batch"] for b in batches1] == [16, 4]  # 20 images: two runs of the core
    for checks in (checks0, checks1):
        assert checks["scoreboard"]["integers_checked"] == golden.size
        assert checks["scoreboard"]["mismatches"] == 0 and checks["link_errors"] == []
    assert cycles1 - cycles0 > 1000, (cycles0, cycles1)


def test_output_scoreboard_reports_every_wrong_integer_and_counter():
    from xnorflow.sim.cocotb.tb_model import OutputScoreboard
    from xnorflow.sw.random_models import random_inputs, random_model
    rng = np.random.default_rng(29)
    model = random_model(rng, [40, 24, 10], 4)
    x = random_inputs(rng, model, 8)
    good = model.forward(x)[-1][0]
    board = OutputScoreboard(model)
    board.check_run(0, x, good, {"total": 5, "predicted": {"total": 5}})
    assert board.summary()["mismatches"] == 0
    board.result()  # nothing to report
    bad = good.copy()
    bad[3, 7] += 1
    bad[5, 0] -= 2
    board.check_run(8, x, bad, {"total": 6, "by_layer": {"fc0": 1},
                                "predicted": {"total": 5, "by_layer": {"fc0": 1}}})
    summary = board.summary()
    assert summary["integers_checked"] == 2 * good.size and summary["mismatches"] == 2
    assert "image 11 class 7" in summary["errors"][0]
    assert "'total': (6, 5)" in summary["counter_errors"][0]
    with pytest.raises(AssertionError, match="scoreboard findings"):
        board.result()


@pytest.mark.parametrize("args, message", [
    (["--engine", "cocotb", "--waves", "{tmp}/run.vcd"], "the cocotb engine writes no waveform"),
    (["--engine", "cocotb", "--netlist", "ice40"], "netlists run on the Verilator harness"),
])
def test_cocotb_engine_refuses_what_it_cannot_do_by_name(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "xnorflow.cli", "sim", str(tmp_path / "none.xnf"),
                           "--dataset", "digits", *args], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
