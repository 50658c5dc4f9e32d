"""The dataflow build a command makes without ``--fold``: the fastest recorded build of the
model's shapes that met its clock, else the fold search's fastest fold (sw/build_records.py).
On the tracked reports under bitstreams/ and the real CNV models, and on copies of those
reports changed one field at a time; and what a profile of those records counts as MAC units."""
import json
from pathlib import Path

import numpy as np
import pytest

from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.sw import xnf
from xnorflow.sw.build_records import default_dataflow_build, recorded_dataflow_builds
from xnorflow.sw.random_models import random_model
from xnorflow.sw.synth import build_dir_name, build_label

ROOT = Path(__file__).resolve().parent.parent
CNV = ROOT / "benchmarks" / "results" / "fmnist_cnn" / "cnv"
#: build cnvc7: the CNV's fold that met 95 MHz at placement seed 7 (docs/dataflow.md)
CNV_BUILD = ROOT / "bitstreams" / "ulx3s-85f-df-28x28x1u4-64-9x8-95mhz-seed7-24d3b76d"
SFC_BUILD = ROOT / "bitstreams" / "ulx3s-85f-df-784u1-256-196x8m4-100mhz-e30a973f"
OVERLAPPED_DIGITS = ROOT / "bitstreams" / "icebreaker-df-64u4-256-16x4s-37mhz-seed3-af7c92b4"


def _report(build_dir):
    return json.loads((build_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def cnv():
    return xnf.load(CNV / "rbnn.xnf")


@pytest.mark.parametrize("name", ["rbnn.xnf", "irnet_ft.xnf"])
def test_the_cnv_models_get_the_build_that_met_its_clock(name):
    # the literal `xnorflow profile MODEL --board ulx3s-85f --arch dataflow` builds this
    build = default_dataflow_build(xnf.load(CNV / name), "ulx3s-85f")
    assert build.source == CNV_BUILD / "report.json"
    assert build.origin == f"bitstreams/{CNV_BUILD.name}"
    assert build.config.format() == _report(CNV_BUILD)["fold"]
    assert (build.clock_mhz, build.seed, build.placer) == (95.0, 7, None)
    assert build.images_per_second >= 10_000


@pytest.mark.parametrize("sizes, bits, board, build_dir", [
    ([784, 256, 256, 256, 10], 1, "ulx3s-85f", SFC_BUILD),
    ([64, 256, 256, 10], 4, "icebreaker", OVERLAPPED_DIGITS),
])
def test_the_mlps_get_their_fastest_build_that_met_its_clock(sizes, bits, board, build_dir):
    # the digits MLP has two records that met their clocks: the overlapped fold at 37 MHz
    # (143,555/s) beats the search's fold at 32.25 MHz (125,977/s)
    model = random_model(np.random.default_rng(0), sizes, input_bits=bits)
    build = default_dataflow_build(model, board)
    report = _report(build_dir)
    assert build.source == build_dir / "report.json"
    assert build.config.format() == report["fold"]
    assert f"@{build.clock_mhz:g}MHz" in report["config"] and build.seed == report.get("seed")
    assert build.pll_mhz == report["target_clock_mhz"]


def test_options_given_select_among_the_records(cnv):
    assert default_dataflow_build(cnv, "ulx3s-85f", seed=7).source is not None
    assert default_dataflow_build(cnv, "ulx3s-85f", clock_mhz=95.0, placer="heap").source \
        is not None
    # no record at 100 MHz: the search's fastest fold that fits the estimate, at that clock
    searched = default_dataflow_build(cnv, "ulx3s-85f", clock_mhz=100.0)
    assert searched.source is None and searched.origin == "fold search"
    assert searched.clock_mhz == 100.0 and searched.config.interval < 9_408
    other_seed = default_dataflow_build(cnv, "ulx3s-85f", seed=3)
    assert other_seed.source is None and other_seed.seed == 3
    assert default_dataflow_build(cnv, "ulx3s-85f", placer="static").placer == "static"


def _record(root, base, clock, met=True, baud=None, fold=None):
    """A copy of report ``base`` under ``root`` at another clock (and UART rate, fold)."""
    report = {**base, "target_clock_mhz": clock, "timing_met": met}
    if fold is not None:
        report["fold"] = fold
    config = DataflowConfig.parse(report["fold"])
    report["config"] = build_label(config, clock, baud, None, report.get("seed"))
    out = root / build_dir_name(report["board"], report["config"]) / "report.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(report))
    return out


def test_the_fastest_record_that_met_its_clock_wins(tmp_path, cnv):
    base = _report(CNV_BUILD)
    slow = _record(tmp_path, base, 95.0)
    assert default_dataflow_build(cnv, "ulx3s-85f", root=tmp_path).source == slow
    # faster but late: not a recipe that closes
    _record(tmp_path, base, 120.0, met=False)
    assert default_dataflow_build(cnv, "ulx3s-85f", root=tmp_path).source == slow
    # faster at another UART rate: not the build these commands make
    _record(tmp_path, base, 110.0, baud=3_000_000)
    assert default_dataflow_build(cnv, "ulx3s-85f", root=tmp_path).source == slow
    # faster, but a fold of other shapes
    other = _record(tmp_path, base, 105.0, fold=_report(SFC_BUILD)["fold"])
    assert default_dataflow_build(cnv, "ulx3s-85f", root=tmp_path).source == slow
    # faster and met: chosen; the slower one is still on the list
    fast = _record(tmp_path, base, 100.0)
    assert [b.source for b in recorded_dataflow_builds(cnv, "ulx3s-85f", tmp_path)] \
        == [fast, slow]
    assert default_dataflow_build(cnv, "ulx3s-85f", root=tmp_path).source == fast
    # a model of those other shapes: that record
    sfc = random_model(np.random.default_rng(0), [784, 256, 256, 256, 10], input_bits=1)
    assert default_dataflow_build(sfc, "ulx3s-85f", root=tmp_path).source == other


def test_no_record_means_the_fold_search(tmp_path, cnv):
    from xnorflow.sw.fold import fold_model
    build = default_dataflow_build(cnv, "ulx3s-85f", root=tmp_path)
    assert build.source is None and build.clock_mhz == 100.0 and build.seed is None
    assert build.config == fold_model(cnv, "ulx3s-85f").config


def test_synth_builds_the_recorded_build_for_a_model(capsys):
    """`xnorflow synth --arch dataflow --model MODEL` builds the record's fold, clock, placer
    and seed (into the record's own directory, so an up-to-date build is reused); with
    --fold, the fold and the options as given."""
    from argparse import Namespace
    from xnorflow.sw.synth import dataflow_build
    args = Namespace(board="ulx3s-85f", fold=None, model=str(CNV / "rbnn.xnf"), clock_mhz=None,
                     placer=None, seed=None)
    config, clock, placer, seed = dataflow_build(args)
    assert (config.format(), clock, placer, seed) == (_report(CNV_BUILD)["fold"], 95.0, None, 7)
    assert build_dir_name("ulx3s-85f", build_label(config, clock, None, placer, seed)) \
        == CNV_BUILD.name
    assert CNV_BUILD.name in capsys.readouterr().err
    given = Namespace(**{**vars(args), "fold": config.format(), "model": None})
    assert dataflow_build(given) == (config, 100.0, None, None)


@pytest.mark.parametrize("model_path, build_dir", [(CNV / "rbnn.xnf", CNV_BUILD), (None, SFC_BUILD)])
def test_profile_counts_every_mmv_lane_as_mac_units(model_path, build_dir):
    """The recorded builds' profiles: an MMV engine (a weight word serving m pixels or images)
    has m lanes of popcount trees, so its utilisation is its MACs over S·P·k·m units, 100 %
    when its folds are whole (the CNV's conv 3 and 4, every SFC engine), never 200 %; the
    peak counts the lanes."""
    from xnorflow.profile import dataflow_numbers
    model = xnf.load(model_path) if model_path else random_model(
        np.random.default_rng(0), [784, 256, 256, 256, 10], input_bits=1)
    config = DataflowConfig.parse(_report(build_dir)["fold"])
    out = dataflow_numbers(model, config, 100.0, 100.0)
    lanes = [e.mmv for e in config.engines]
    assert max(lanes) > 1
    for layer, m in zip(out["layers"], lanes):
        assert 0 < layer["utilization"] <= 1, layer
        if m > 1:
            assert layer["utilization"] == pytest.approx(1.0, rel=1e-12), layer
    assert out["peak_binary_macs_per_cycle"] == sum(
        e.simd * e.pe * e.input_bits * e.mmv for e in config.engines)
    assert 0.98 < out["utilization"] <= 1
