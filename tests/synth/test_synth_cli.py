"""``xnorflow synth`` refuses bad options, output roots and configurations that cannot fit
before anything is elaborated or built (issue #23, items 4, 5, 8 and 13). The rows are
tests/bad_input_cases/synth.py's, which tests/test_bad_input.py also runs."""
import json
import math
import shlex
from pathlib import Path

import pytest

from xnorflow.cli import main
from xnorflow.sw.errors import XnorflowError
from tests.bad_input_cases.synth import CASES, make_files

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:      # argparse refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, expected", CASES, ids=[shlex.join(a) for a, _ in CASES])
def test_bad_synth_input_is_refused_by_name_before_any_work(argv, expected, tmp_path, capsys):
    make_files(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    bitstreams_before = sorted((ROOT / "bitstreams").iterdir())
    code, out, err = _run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2, (code, err)
    assert expected in err, err
    assert "Traceback" not in err and out == ""
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    assert sorted(tmp_path.rglob("*")) == before            # nothing created, no build dir
    assert sorted((ROOT / "bitstreams").iterdir()) == bitstreams_before


def test_force_builds_what_does_not_fit_with_a_warning():
    # (the build itself is not run: check_resources is what synthesize calls first)
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.sw.synth import check_resources
    config = ArrayConfig.parse("64x64x64")
    with pytest.raises(XnorflowError, match="--force builds it anyway"):
        check_resources("icebreaker", config, log=lambda msg: None)
    said = []
    est = check_resources("icebreaker", config, force=True, log=said.append)
    assert est.luts > 5280 and "WARNING" in said[-1] and "(--force)" in said[-1]


def test_helpers_other_commands_share_refuse_bad_values_too():
    # profile calls these with its own options: 0 Bd is not "the default", nan is no clock
    from xnorflow.sw.synth import board_clock, board_config, uart_rate
    with pytest.raises(XnorflowError, match="--baud must be positive, got 0"):
        uart_rate(24.0, 0)
    for bad in (math.nan, math.inf, -1.0, 0.0, 300.0):
        with pytest.raises(XnorflowError, match="--clock-mhz"):
            board_clock("icebreaker", bad)
    assert board_clock("icebreaker", 27.0) == 27.0 and board_clock("icebreaker") == 24.0
    with pytest.raises(XnorflowError, match="w region of .* needs"):
        board_config("icebreaker", "64x64x64,w_depth=65000")


def test_every_synth_option_says_what_it_does_and_its_default():
    import argparse

    from xnorflow.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    synth = sub.choices["synth"]
    assert len(synth.description) > 100
    for action in synth._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            assert len(action.help or "") > 20, action.option_strings
            assert "default" in action.help or action.required, action.option_strings


def test_json_summary_of_a_cached_build_is_one_document(tmp_path, capsys):
    # An up-to-date build is answered from its report without running any tool: write one
    # (report.json with the current cache key, a bitstream file) and ask for it with --json.
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.sw.synth import (accelerator_top, build_dir_name, build_label, build_plan, cache_key,
                          get_board)
    board = get_board("icebreaker")
    config = ArrayConfig.parse("2x2x16,w_depth=1024,in_depth=64,act_depth=64,out_depth=64,"
                               "desc_depth=4,acc_width=16,conv=0")
    label = build_label(config, 24.0)
    key = cache_key(build_plan(accelerator_top(config, 24.0), board), board)
    build = tmp_path / build_dir_name("icebreaker", label)
    build.mkdir()
    (build / "top.bin").write_bytes(b"\0")
    report = {"board": "icebreaker", "config": label, "array": config.format(), "luts": 1,
              "luts_available": 5280, "ffs": 1, "brams": 1, "sprams": 0, "dsps": 0,
              "fmax_mhz": 30.0, "target_clock_mhz": 24.0, "timing_met": True,
              "design_hash": key}
    (build / "report.json").write_text(json.dumps(report))
    (build / "run.json").write_text(json.dumps({"build_seconds": 12.5}))
    code, out, err = _run(["synth", "--board", "icebreaker", "--array", config.format(),
                           "--out", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    answer = json.loads(out)                               # exactly one JSON document
    assert answer["skipped"] is True and answer["build_seconds"] == 12.5
    assert answer["build_dir"] == str(build.resolve()) and answer["design_hash"] == key
    assert "is up to date" in err and "synth: estimate for 2x2x16" in err
