"""benchmarks/design_space.py (issue #25, item 7): the overlay and the dataflow build side by
side, from finished builds' reports (``--reports``, no synthesis) or from ``--arrays`` entries.

* a report's row is what ``xnorflow profile``'s cycle model says for its configuration on both
  architectures (rates and latency at the build's Fmax), and the dataflow rows are the run model
  the hardware counters are checked against (hw/dataflow/run_timing.py);
* each row carries the end-to-end rate through the board's USB-UART at the fastest rate both
  the bridge and the board's UART make, from the driver's own bytes;
* a ``df:`` entry and an overlay entry run in one sweep, each built as its own top (checked
  through ``xnorflow synth``'s cache: the builds are found under the labels and design hashes
  the tops make, so nothing is synthesized here; tests/test_cluster.py runs real builds);
* bad reports and entries are refused in one line, exit status 2, before anything is written;
* the JSON carries the published references with their sources; the plot and table are written.
"""
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from xnf_testing import ROOT

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.hw.dataflow.run_timing import run_cycles
from xnorflow.profile import (dataflow_link_numbers, dataflow_numbers, host_link_numbers,
                              profile_numbers)
from xnorflow.sw.program import max_batch, predict_cycles
from xnorflow.sw.random_models import random_model
from xnorflow.sw.synth import (REPORT_FILE, accelerator_top, build_dir_name, build_label,
                               build_plan, cache_key, dataflow_top, get_board)

SCRIPT = ROOT / "benchmarks" / "design_space.py"
ICE_OVERLAY = ROOT / "bitstreams/icebreaker-2x4x16-24mhz-68fd7f97/report.json"
ICE_DATAFLOW = ROOT / "bitstreams/icebreaker-df-64u4-256-16x4s-32.25mhz-cbf9bfbb/report.json"
ECP5_OVERLAY = ROOT / "bitstreams/ulx3s-85f-32x4x64-45mhz-static-ee0c7b73/report.json"
#: Two dataflow ECP5 builds' reports (not under bitstreams/: timing not met).
ECP5_DATAFLOW_BUILDS = ROOT / "benchmarks/results/dataflow_sfc/ecp5_builds.json"
BRIDGE_MAX = {"icebreaker": ("FT2232H", 12e6), "ulx3s-85f": ("FT231X", 3e6)}


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _sweep(*args):
    """The script's JSON document and its stderr."""
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def _model(board):
    """The board's reference model, as the script makes it (only the shape matters)."""
    sizes, bits = ([784, 256, 256, 256, 10], 1) if board == "ulx3s-85f" else ([64, 256, 256, 10], 4)
    return random_model(np.random.default_rng(0), sizes, input_bits=bits)


@pytest.fixture(scope="module")
def ecp5_dataflow_report(tmp_path_factory):
    """The second ECP5 dataflow build (512-image FIFOs) as a report file of its own."""
    path = tmp_path_factory.mktemp("reports") / "report.json"
    path.write_text(json.dumps(json.loads(ECP5_DATAFLOW_BUILDS.read_text())["builds"][1]))
    return path


@pytest.fixture(scope="module")
def ecp5(ecp5_dataflow_report, tmp_path_factory):
    out = tmp_path_factory.mktemp("ecp5")
    doc, _ = _sweep("--reports", ECP5_OVERLAY, ecp5_dataflow_report, "--plot", out / "p.png",
                    "--table", out / "t.md")
    return doc, out, {"overlay": ECP5_OVERLAY, "dataflow": ecp5_dataflow_report}


@pytest.fixture(scope="module")
def icebreaker(tmp_path_factory):
    out = tmp_path_factory.mktemp("icebreaker")
    doc, _ = _sweep("--board", "icebreaker", "--reports", ICE_OVERLAY, ICE_DATAFLOW,
                    "--plot", out / "p.png")
    return doc, out, {"overlay": ICE_OVERLAY, "dataflow": ICE_DATAFLOW}


# -- rows from reports: the cycle models ---------------------------------------------------------

def _check_overlay_row(row, report, model):
    config = ArrayConfig.parse(report["array"])
    fmax, batch = report["fmax_mhz"], max_batch(model.layers, config)
    run = profile_numbers(model, config, predict_cycles(model.layers, config, batch), batch, fmax)
    one = profile_numbers(model, config, predict_cycles(model.layers, config, 1), 1, fmax)
    assert row["batch"] == batch and row["cycles_per_inference"] == run["cycles_per_inference"]
    assert row["inferences_per_second"] == pytest.approx(run["inferences_per_second_at_fmax"],
                                                         rel=1e-12)
    assert row["latency_us"] == pytest.approx(one["latency_us"], rel=1e-12)


def _check_dataflow_row(row, report, model):
    config = DataflowConfig.parse(report["fold"])
    fmax = report["fmax_mhz"]
    steady = dataflow_numbers(model, config, fmax, fmax)
    assert row["interval_cycles"] == steady["interval_cycles"]
    assert row["inferences_per_second_streaming"] == pytest.approx(
        steady["inferences_per_second_at_fmax"], rel=1e-12)
    # a run of as many images as the FIFOs take, and one group's first image (the counters'
    # model, hw/dataflow/run_timing.py)
    batch = min(config.in_images, config.out_images)
    assert row["batch"] == batch
    assert row["inferences_per_second"] == pytest.approx(
        batch * fmax * 1e6 / run_cycles(config, batch)["total"], rel=1e-12)
    assert row["latency_us"] == pytest.approx(
        run_cycles(config, config.group)["latency"] / fmax, rel=1e-12)
    if config.group == 1:   # profile's closed-form latency holds without MMV
        assert row["latency_us"] == pytest.approx(steady["latency_us"], rel=1e-12)
    # a pipeline filled and drained once per run is slower than the endless stream
    assert row["inferences_per_second"] < row["inferences_per_second_streaming"]


@pytest.mark.parametrize("board", ["ecp5", "icebreaker"])
def test_report_rows_are_the_profile_cycle_models(board, request):
    doc, _, paths = request.getfixturevalue(board)
    model = _model(doc["board"])
    assert [p["arch"] for p in doc["points"]] == ["overlay", "dataflow"]
    for row in doc["points"]:
        report = json.loads(paths[row["arch"]].read_text())
        assert row["reused_build"] is True and row["build_seconds"] is None
        assert row["report"].endswith("report.json")
        for key in ("luts", "ffs", "brams", "fmax_mhz"):
            assert row[key] == report[key]
        assert row["inferences_per_second_per_lut"] == pytest.approx(
            row["inferences_per_second"] / report["luts"])
        (_check_dataflow_row if row["arch"] == "dataflow" else _check_overlay_row)(
            row, report, model)
    assert doc["model_shape"]["sizes"] == [layer.in_features for layer in model.layers] + [10]


@pytest.mark.parametrize("board", ["ecp5", "icebreaker"])
def test_each_row_has_the_rate_over_the_boards_usb_uart(board, request):
    doc, _, paths = request.getfixturevalue(board)
    chip, fastest = BRIDGE_MAX[doc["board"]]
    model = _model(doc["board"])
    for row in doc["points"]:
        link = row["host_link"]
        assert link["bridge"] == chip and link["bridge_max_baud"] == fastest
        assert link["clock_mhz"] == row["fmax_mhz"]
        # the board's UART divides its clock by a whole number ≥ 4; the bridge makes a rate
        # within 2 % of it, at most its fastest
        divisor = link["clock_mhz"] * 1e6 / link["baud"]
        assert divisor >= 4 and divisor == pytest.approx(round(divisor), abs=1e-6)
        assert link["bridge_baud"] <= fastest
        assert abs(link["bridge_baud"] - link["baud"]) <= 0.02 * link["baud"]
        # the driver's bytes are xnorflow profile's (not re-derived)
        seconds = row["cycles_per_inference"] * row["batch"] / (row["fmax_mhz"] * 1e6)
        if row["arch"] == "dataflow":
            want = dataflow_link_numbers(DataflowConfig.parse(row["array"]),
                                         seconds / row["batch"], link["baud"], row["batch"])
        else:
            want = host_link_numbers(model, ArrayConfig.parse(row["array"]), row["batch"],
                                     seconds, link["baud"])
        assert (link["bytes_to_device"], link["bytes_from_device"]) == \
            (want["bytes_to_device"], want["bytes_from_device"])
        assert link["inferences_per_second_over_uart"] == pytest.approx(
            want["inferences_per_second"], rel=1e-9)
        # on a board the UART, not the accelerator, bounds a run: most of it is on the wire
        assert link["link_share"] > 0.5
        assert link["inferences_per_second_over_uart"] < row["inferences_per_second"] / 2
    assert "the UART, not the accelerator" in doc["host_link_note"]


def test_the_fastest_rate_of_the_ft2232h_at_a_clock_is_found():
    """29.47 MHz (the iCEBreaker overlay's Fmax): 12 and 8 MBd need fewer than 4 cycles a bit
    or miss the bridge's 8 MBd by 8 %; 29.47/5 = 5.89 MBd is within 2 % of the FT2232H's
    6 MBd (12 MBd / 2)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import design_space
    finally:
        sys.path.remove(str(SCRIPT.parent))
    link = design_space.uart_link("icebreaker", 29.47)
    assert link["baud"] == pytest.approx(29.47e6 / 5) and link["bridge_baud"] == 6e6
    assert design_space.uart_link("ulx3s-85f", 48.0)["baud"] == 3e6          # 48 / 16
    ft2232h = design_space.BRIDGES["icebreaker"]
    assert ft2232h.nearest(7.4e6) == 8e6 and ft2232h.nearest(5.2e6) == 12e6 / 2.25


# -- --arrays: a dataflow fold and an overlay array in one run ----------------------------------

SMALL_OVERLAY = ("1x1x8,w_depth=256,thr_depth=32,in_depth=128,act_depth=64,out_depth=64,"
                 "desc_depth=4,conv=0")


def _seed_build(out_root, top, config, report):
    """Put in ``out_root`` the build ``synthesize`` looks for before building ``top``: the
    directory of its label and a report with its design hash (figures from ``report``), so the
    sweep takes it as done. The directory and hash are those of the top elaborated here, so a
    sweep that built another top (or under another label) would not find it."""
    board = get_board("icebreaker")
    key = cache_key(build_plan(top, board, REPORT_FILE), board)
    directory = out_root / build_dir_name(board.name, build_label(config))
    directory.mkdir(parents=True)
    (directory / "report.json").write_text(json.dumps({**report, "design_hash": key}))
    (directory / "top.bin").write_bytes(b"")
    return directory.name


def test_a_df_entry_and_an_overlay_entry_run_in_one_sweep(tmp_path):
    fold = json.loads(ICE_DATAFLOW.read_text())["fold"]
    overlay = json.loads(ICE_OVERLAY.read_text())
    dataflow = json.loads(ICE_DATAFLOW.read_text())
    seeded = {
        _seed_build(tmp_path, accelerator_top(ArrayConfig.parse(SMALL_OVERLAY)),
                    ArrayConfig.parse(SMALL_OVERLAY),
                    {**overlay, "array": ArrayConfig.parse(SMALL_OVERLAY).format()}),
        _seed_build(tmp_path, dataflow_top(DataflowConfig.parse(fold)),
                    DataflowConfig.parse(fold), dataflow)}
    doc, err = _sweep("--board", "icebreaker", "--arrays", SMALL_OVERLAY, fold, "--jobs", "1",
                      "--out-root", tmp_path, "--plot", tmp_path / "p.png")
    assert err.count("is up to date") == 2 and "building for" not in err
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == seeded   # nothing else built
    ov, df = doc["points"]
    assert (ov["arch"], df["arch"]) == ("overlay", "dataflow")
    assert ov["array"] == ArrayConfig.parse(SMALL_OVERLAY).format() and df["array"] == fold
    assert ov["reused_build"] and df["reused_build"]
    assert df["luts"] == dataflow["luts"] and df["fmax_mhz"] == dataflow["fmax_mhz"]
    model = _model("icebreaker")
    _check_overlay_row(ov, {**overlay, "array": SMALL_OVERLAY}, model)
    _check_dataflow_row(df, dataflow, model)
    assert doc["pareto"] == [fold]    # fewer logic cells and more inferences/s


# -- refusals ------------------------------------------------------------------------------------

def _refused(proc, *words):
    """Exit status 2, one line on stderr naming ``words``, nothing on stdout."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("design_space: error: "), proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("case", ["missing", "not json", "not a report", "other board",
                                  "other shape"])
def test_a_bad_report_is_refused_naming_the_file(case, tmp_path):
    path, board, why = tmp_path / "report.json", "icebreaker", ()
    if case == "missing":
        why = ("cannot read it",)
    elif case == "not json":
        path.write_text('{"board": ')
        why = ("not a JSON file",)
    elif case == "not a report":
        path.write_text(json.dumps({"board": "icebreaker", "luts": 1}))
        why = ("not a build's report.json", "fmax_mhz")
    elif case == "other board":
        shutil.copy(ICE_DATAFLOW, path)
        board, why = "ulx3s-85f", ("a build for icebreaker, not for --board ulx3s-85f",)
    else:   # the iCEBreaker's digits fold, said to be an ECP5 build, offered for the SFC
        path.write_text(json.dumps({**json.loads(ICE_DATAFLOW.read_text()),
                                    "board": "ulx3s-85f"}))
        board, why = "ulx3s-85f", ("the fold is not of the model's shape",)
    plot = tmp_path / "p.png"
    _refused(_run("--board", board, "--reports", ICE_OVERLAY if board == "icebreaker" else
                  ECP5_OVERLAY, path, "--plot", plot), f"--reports {path}", *why)
    assert not plot.exists()


@pytest.mark.parametrize("entry, why", [
    ("df:64u4>256:16x4s,256>256:32x8,256>10r:16x1;bogus=1", "unknown dataflow option 'bogus=1'"),
    ("df:64u4>256:64x64,256>256:32x8,256>10r:16x1", "does not fit the icebreaker"),
    ("df:784u1>256:256x8,256>10r:16x1", "the fold is not of the model's shape"),
    ("2x4x16,w_depth=3", "does not fit the icebreaker"),
    ("2x4x16:fast", "unknown placer"),
])
def test_a_bad_entry_is_refused_before_any_build(entry, why, tmp_path):
    out = tmp_path / "builds"
    _refused(_run("--board", "icebreaker", "--arrays", SMALL_OVERLAY, entry, "--out-root", out,
                  "--plot", tmp_path / "p.png"), why)
    assert not out.exists()


def test_a_bad_model_shape_is_refused_by_argparse():
    proc = _run("--model-shape", "784,256:9", "--reports", ECP5_OVERLAY)
    assert proc.returncode == 2 and "argument --model-shape: expected N0,N1" in proc.stderr


# -- references, plot, table ---------------------------------------------------------------------

def test_the_json_carries_the_published_references_with_their_sources(ecp5):
    doc, _, _ = ecp5
    refs = {r["name"]: r for r in doc["references"]}
    assert set(refs) == {"FINN SFC-max", "BNN-PYNQ LFC-W1A1"}
    for r in refs.values():
        assert r["lut_kind"] == "LUT6" and "Zynq" in r["device"]
        assert r["luts"] > 0 and r["inferences_per_second"] > 0 and len(r["source"]) > 40
    assert "arXiv:1612.07119" in refs["FINN SFC-max"]["source"]
    assert "github.com/Xilinx/BNN-PYNQ" in refs["BNN-PYNQ LFC-W1A1"]["source"]
    assert "LUT6" in doc["references_note"] and "LUT4" in doc["references_note"]


def test_the_plot_and_the_table_are_written(ecp5, icebreaker):
    for doc, out, _ in (ecp5, icebreaker):
        png = (out / "p.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    doc, out, _ = ecp5
    table = (out / "t.md").read_text().splitlines()
    assert len(table) == 2 + len(doc["points"]) + len(doc["references"])
    assert any("FINN SFC-max (published)" in line for line in table)
    assert all(math.isfinite(p["latency_us"]) for p in doc["points"])
    # the iCEBreaker's digits MLP is another network: the references are named, not drawn
    assert "not drawn" in icebreaker[0]["references_note"]


def test_a_plot_path_that_cannot_be_written_is_refused_by_argparse(tmp_path):
    proc = _run("--reports", ECP5_OVERLAY, "--plot", tmp_path)
    assert proc.returncode == 2 and "argument --plot: expected a file path" in proc.stderr
    (tmp_path / "file").write_text("")
    proc = _run("--reports", ECP5_OVERLAY, "--plot", tmp_path / "file" / "p.png")
    assert proc.returncode == 2 and "is a file, expected a directory" in proc.stderr


def test_the_plot_may_go_into_a_directory_made_for_it(tmp_path):
    """As into --out-root before its first build (tests/test_cluster.py's sweep)."""
    plot = tmp_path / "new" / "deeper" / "p.png"
    _sweep("--reports", ECP5_OVERLAY, "--plot", plot)
    assert plot.exists()
