"""benchmarks/cnn_core.py (issue #26, item 5): the dataflow build beside the overlay for the
CNNs, one row each with resources, clock, rates, latency and the Verilator evidence.

* a dataflow point from a finished ``xnorflow sim --json`` and its build's report: the rates
  are the cycle model's steady state at the report's clock and Fmax
  (:func:`xnorflow.profile.dataflow_numbers`), the verification the sim's;
* a point with no build carries the fold's resource estimate and says ``estimate``;
* overlay points of an earlier run (``--update``) get their ULX3S build's figures;
* bad input (entry syntax, missing files, a sim of another fold, a report of another board)
  is refused in one line naming the option and the file, exit status 2, nothing written;
* the JSON is one document; the plot and the table are written;
* one real Verilator run of the digits CNN's dataflow point (360 images, 0 mismatches).
"""
import json
import subprocess
import sys

import pytest

from xnf_testing import ROOT

from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.profile import dataflow_numbers
from xnorflow.sw import resources, xnf

SCRIPT = ROOT / "benchmarks" / "cnn_core.py"
RESULTS = ROOT / "benchmarks" / "results"
DIGITS_FOLD = ("df:8x8x1u4>16p:9x2s,4x4x16>32p:16x8,128>64:16x1s,64>10r:2x1;"
               "ram_reg=0,in_word=16,levels=2,serial=1")
DIGITS_SIM = RESULTS / "dataflow_cnn" / "digits_cnn_rbnn_sim.json"
DIGITS_REPORT = RESULTS / "dataflow_cnn" / "icebreaker_digits_cnn_report.json"
CNV_MODEL = RESULTS / "fmnist_cnn" / "cnv" / "rbnn.xnf"
CNV_FOLD = ("df:28x28x1u4>64:9x8,28x28x64>64p:192x16,14x14x64>128:192x8,"
            "14x14x128>128p:1152x4,6272>256:128x2,256>10r:1x1;in_word=256")
#: No overlay simulation in the fast tests: only the dataflow points and --update's.
NO_OVERLAY = ("--methods", "", "--cnv-images", "0")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """The digits CNN (RBNN) the committed sim JSON simulated, as a .xnf: compiled from the
    test suite's cached checkpoint when the checked-in copy is not at hand."""
    from xnf_testing import trained_digits_model
    _, compiled = trained_digits_model("rbnn", cnn=True)
    assert xnf.load(compiled).name == json.loads(DIGITS_SIM.read_text())["model"]
    return compiled


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _doc(*args, timeout=300):
    proc = _run(*args, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)   # one JSON document, nothing else on stdout


def _digits_entry(model, board="@icebreaker"):
    return f"digits-df={model}@{DIGITS_FOLD}{board}"


@pytest.fixture(scope="module")
def measured(digits_model, tmp_path_factory):
    """The digits point from its sim JSON and build report, and the CNV as an estimate."""
    out = tmp_path_factory.mktemp("measured")
    doc = _doc(*NO_OVERLAY, "--dataflow", _digits_entry(digits_model),
               "--sims", f"digits-df={DIGITS_SIM}", "--reports", DIGITS_REPORT,
               "--dataflow", f"cnv-df={CNV_MODEL}@{CNV_FOLD}@ulx3s-85f", "--skip-sim", "cnv-df",
               "--plot", out / "rates.png", "--table", out / "table.md")
    return doc, out


def test_a_built_point_has_the_cycle_models_rates_at_its_clock_and_fmax(measured, digits_model):
    doc, _ = measured
    row = {p["model"]: p for p in doc["points"]}["digits-df"]
    report = json.loads(DIGITS_REPORT.read_text())
    config = DataflowConfig.parse(DIGITS_FOLD)
    want = dataflow_numbers(xnf.load(digits_model), config, report["fmax_mhz"],
                            report["target_clock_mhz"], report["luts"])
    interval = want["interval_cycles"]
    assert row["interval_cycles"] == interval == 576
    assert row["inferences_per_second_at_fmax"] == pytest.approx(
        report["fmax_mhz"] * 1e6 / interval)
    assert row["inferences_per_second_at_clock"] == pytest.approx(
        report["target_clock_mhz"] * 1e6 / interval) == pytest.approx(
        want["inferences_per_second"])
    assert row["latency_us"] == pytest.approx(want["latency_cycles"] / report["target_clock_mhz"])
    assert row["inferences_per_second_per_lut"] == pytest.approx(
        row["inferences_per_second_at_clock"] / report["luts"])
    assert (row["board"], row["arch"], row["config"], row["source"]) == (
        "icebreaker", "dataflow", config.format(), "build")
    assert {k: row[k] for k in ("luts", "ffs", "brams", "sprams", "fmax_mhz", "clock_mhz")} == {
        "luts": report["luts"], "ffs": report["ffs"], "brams": report["brams"],
        "sprams": report["sprams"], "fmax_mhz": report["fmax_mhz"],
        "clock_mhz": report["target_clock_mhz"]}
    # the verification is the sim JSON's, and the row says where each figure came from
    sim = json.loads(DIGITS_SIM.read_text())
    assert (row["images"], row["mismatches"], row["agree_with_torch"],
            row["predicted_cycles_match"]) == (360, 0, sim["agree_with_torch"], True)
    assert row["sim_json"] == str(DIGITS_SIM.relative_to(ROOT))
    assert row["report"] == str(DIGITS_REPORT.relative_to(ROOT))


def test_a_point_without_a_build_is_the_folds_estimate_and_says_so(measured):
    doc, out = measured
    row = {p["model"]: p for p in doc["points"]}["cnv-df"]
    config = DataflowConfig.parse(CNV_FOLD)
    est = resources.estimate("ulx3s-85f", config)
    assert row["source"] == "estimate" and row["report"] is None
    assert (row["luts"], row["brams"], row["sprams"]) == (est.luts, est.brams, est.sprams)
    assert row["estimate"]["luts"] == est.luts and len(row["estimate"]["layers"]) == 6
    # no Fmax without a build: the rate is at the fold's planned clock only
    assert row["fmax_mhz"] is None and row["inferences_per_second_at_fmax"] is None
    assert row["clock_mhz"] == 100.0
    assert row["inferences_per_second_at_clock"] == pytest.approx(100e6 / row["interval_cycles"])
    # --skip-sim: no verification is claimed
    assert row["images"] == 0 and row["predicted_cycles_match"] is None
    table = (out / "table.md").read_text()
    cnv_line = next(line for line in table.splitlines() if line.startswith("| cnv-df "))
    assert "**estimate**" in cnv_line and "not simulated" in cnv_line


def test_a_fold_file_names_the_board_and_only_keeps_the_points_asked_for(tmp_path,
                                                                          digits_model):
    """A FOLD.json (`xnorflow fold -o`) carries its board, so the entry needs no @BOARD; --only
    drops the points not named."""
    (tmp_path / "fold.json").write_text(json.dumps(
        {"config": DIGITS_FOLD, "board": "icebreaker", "clock_mhz": 28.0}))
    doc = _doc(*NO_OVERLAY, "--dataflow", f"digits-df={digits_model}@{tmp_path / 'fold.json'}",
               "--sims", f"digits-df={DIGITS_SIM}",
               "--dataflow", f"cnv-df={CNV_MODEL}@{CNV_FOLD}@ulx3s-85f", "--skip-sim", "cnv-df",
               "--only", "digits-df", "--plot", tmp_path / "p.png")
    (row,) = doc["points"]
    assert (row["model"], row["board"], row["source"]) == ("digits-df", "icebreaker", "estimate")
    assert row["clock_mhz"] == 28.0     # the fold file's planned clock


def test_the_plot_table_and_references_are_written(measured):
    doc, out = measured
    assert (out / "rates.png").stat().st_size > 10_000
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 2 + 2 + 2     # header, rule, two points, two references
    refs = {r["name"]: r for r in doc["references"]}
    assert refs["BNN-PYNQ CNV-W1A1"]["inferences_per_second"] == 9_150
    assert refs["BNN-PYNQ CNV-W1A1"]["luts"] == 26_072
    assert refs["FINN CNV-max"]["inferences_per_second"] == 21_906
    assert refs["FINN CNV-max"]["luts"] is None          # not found: never invented
    assert all(r["lut_kind"] == "LUT6" and r["source"] for r in doc["references"])


def test_overlay_points_of_an_earlier_run_get_their_builds_figures(tmp_path):
    earlier = json.loads((RESULTS / "cnn_core.json").read_text())
    digits = next(p for p in earlier["points"] if p["model"] == "digits-cnn-rbnn")
    (tmp_path / "earlier.json").write_text(json.dumps({"points": [digits]}))
    doc = _doc(*NO_OVERLAY, "--update", tmp_path / "earlier.json", "--plot", tmp_path / "p.png")
    (row,) = doc["points"]
    report = json.loads((ROOT / "bitstreams/ulx3s-85f-8x8x32-50mhz-45f78109/report.json")
                        .read_text())
    assert (row["board"], row["arch"], row["config"], row["source"]) == (
        "ulx3s-85f", "overlay", "8x8x32", "build")
    assert (row["luts"], row["fmax_mhz"], row["clock_mhz"]) == (
        report["luts"], report["fmax_mhz"], report["target_clock_mhz"])
    assert row["inferences_per_second_at_clock"] == pytest.approx(
        report["target_clock_mhz"] * 1e6 / digits["cycles_per_inference"])
    assert row["latency_us"] == pytest.approx(
        digits["cycles_per_inference"] / report["target_clock_mhz"])


def _refused(tmp_path, *args):
    """Run with ``args``; it must exit 2 with one error line, writing no plot or table."""
    plot, table = tmp_path / "p.png", tmp_path / "t.md"
    proc = _run(*NO_OVERLAY, *args, "--plot", plot, "--table", table)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == "" and not plot.exists() and not table.exists()
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("entry, says", [
    ("digits-df", "expected NAME=MODEL.xnf@FOLD"),
    (f"digits-df=@{DIGITS_FOLD}", "expected NAME=MODEL.xnf@FOLD"),
    (f"digits-df=missing.xnf@{DIGITS_FOLD}", "the model missing.xnf does not exist"),
    ("digits-df={model}@missing-fold.json", "the fold file missing-fold.json does not exist"),
    ("digits-df={model}@" + DIGITS_FOLD + "@pynq", "unknown board 'pynq'"),
])
def test_a_bad_dataflow_entry_is_refused(tmp_path, digits_model, entry, says):
    line = _refused(tmp_path, "--dataflow", entry.format(model=digits_model))
    assert line.startswith("cnn_core.py: error: argument --dataflow: ") and says in line, line


def test_a_fold_of_another_model_is_refused(tmp_path, digits_model):
    line = _refused(tmp_path, "--dataflow", f"d={digits_model}@{CNV_FOLD}@ulx3s-85f")
    assert line.startswith(f"cnn_core: error: --dataflow d={digits_model}@") \
        and "not of the model 'rbnn-digits'" in line, line


def test_a_sim_of_another_fold_is_refused(tmp_path, digits_model):
    sim = json.loads(DIGITS_SIM.read_text())
    sim["array"] = DIGITS_FOLD.replace("16x8", "16x4")
    (tmp_path / "sim.json").write_text(json.dumps(sim))
    line = _refused(tmp_path, "--dataflow", _digits_entry(digits_model),
                    "--sims", f"digits-df={tmp_path / 'sim.json'}")
    assert line.startswith(f"cnn_core: error: --sims digits-df={tmp_path / 'sim.json'}: ") \
        and "not the fold of --dataflow digits-df" in line, line


def test_a_sim_of_another_model_is_refused(tmp_path, digits_model):
    sim = json.loads(DIGITS_SIM.read_text())
    sim["model"] = "irnet-digits"
    (tmp_path / "sim.json").write_text(json.dumps(sim))
    line = _refused(tmp_path, "--dataflow", _digits_entry(digits_model),
                    "--sims", f"digits-df={tmp_path / 'sim.json'}")
    assert f"--sims digits-df={tmp_path / 'sim.json'}: it simulated model 'irnet-digits'" in line


def test_a_missing_sim_file_is_refused(tmp_path, digits_model):
    line = _refused(tmp_path, "--dataflow", _digits_entry(digits_model),
                    "--sims", f"digits-df={tmp_path / 'none.json'}")
    assert line.startswith("cnn_core.py: error: argument --sims: ") \
        and f"{tmp_path / 'none.json'} does not exist" in line, line


def test_a_report_for_another_board_is_refused(tmp_path, digits_model):
    report = json.loads(DIGITS_REPORT.read_text())
    report["board"] = "ulx3s-85f"
    (tmp_path / "report.json").write_text(json.dumps(report))
    line = _refused(tmp_path, "--dataflow", _digits_entry(digits_model),
                    "--sims", f"digits-df={DIGITS_SIM}", "--reports", tmp_path / "report.json")
    assert line == (f"cnn_core: error: --reports {tmp_path / 'report.json'}: a build for "
                    f"ulx3s-85f, but --dataflow digits-df is for icebreaker"), line


@pytest.mark.parametrize("content, says", [
    ("not json", "not a JSON file"),
    (json.dumps({"board": "icebreaker", "luts": 1}), "not a dataflow build's report.json"),
])
def test_a_file_that_is_no_dataflow_report_is_refused(tmp_path, digits_model, content, says):
    (tmp_path / "report.json").write_text(content)
    line = _refused(tmp_path, "--dataflow", _digits_entry(digits_model),
                    "--sims", f"digits-df={DIGITS_SIM}", "--reports", tmp_path / "report.json")
    assert f"--reports {tmp_path / 'report.json'}: {says}" in line, line


def test_a_dataflow_name_may_not_replace_an_overlay_point(tmp_path, digits_model):
    line = _refused(tmp_path, "--dataflow",
                    f"digits-cnn-rbnn={digits_model}@{DIGITS_FOLD}@icebreaker",
                    "--sims", f"digits-cnn-rbnn={DIGITS_SIM}",
                    "--update", RESULTS / "cnn_core.json")
    assert "digits-cnn-rbnn is an overlay point's name" in line, line


@pytest.mark.slow
def test_the_digits_dataflow_point_runs_bit_exactly_on_verilator(tmp_path, digits_model):
    """The real thing: all 360 digits test images through the dataflow build on Verilator,
    from the checkpoint (so the agreement with PyTorch is measured too)."""
    from xnf_testing import trained_digits_model
    checkpoint, _ = trained_digits_model("rbnn", cnn=True)
    doc = _doc(*NO_OVERLAY, "--dataflow", _digits_entry(checkpoint),
               "--reports", DIGITS_REPORT, "--plot", tmp_path / "p.png", timeout=600)
    (row,) = doc["points"]
    assert (row["images"], row["mismatches"], row["predicted_cycles_match"],
            row["agree_with_torch"]) == (360, 0, True, 1.0)
    assert row["simulated_interval_cycles"] == row["interval_cycles"]
    assert row["sim"] == "simulated by this run (Verilator)" and row["source"] == "build"


def test_a_build_that_missed_its_clock_is_drawn_at_its_fmax():
    """The plot's y is a rate the bitstream runs at: the build's clock, or its Fmax when the
    build did not meet the clock it asked for (the ECP5 CNV builds asked for 100 MHz)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cnn_core
    met = {"timing_met": True, "inferences_per_second_at_clock": 48_177.0,
           "inferences_per_second_at_fmax": 50_762.0, "clock_mhz": 27.75, "fmax_mhz": 29.2}
    missed = {"timing_met": False, "inferences_per_second_at_clock": 7_086.0,
              "inferences_per_second_at_fmax": 4_756.0, "clock_mhz": 100.0, "fmax_mhz": 67.12}
    assert cnn_core.plotted_rate(met) == (48_177.0, "at 27.75 MHz")
    assert cnn_core.plotted_rate(missed) == (4_756.0, "at Fmax 67.1 MHz")
