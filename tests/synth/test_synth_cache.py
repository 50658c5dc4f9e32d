"""Builds are keyed by content, whatever the checkout's path; the tracked report holds no
machine or run facts (issue #23, item 11); build directories have shell-safe names with the
full configuration in the report (issue #24, item 7). No tool runs here."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from xnorflow.hw.config import ArrayConfig
from xnorflow.sw.synth import build_dir_name, build_label, find_builds
from xnf_testing import installed_copy

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((ROOT / "bitstreams").glob("*/report.json"))

# Run inside a copy of the checkout: the cache key of a board top (the copy's hw/board: UART,
# PLL clocking) around a loopback, and a plain hash of the same plan files (which name the
# checkout's own paths). The accelerator core is left out so that the test does not depend on
# it; the paths are the same kind of text either way (Amaranth's src attributes).
_KEY_OF_THIS_CHECKOUT = """
import hashlib, json
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
import xnorflow.sw.synth as s
from xnorflow.hw.board.top import UartBridgeTop

class Loopback(wiring.Component):
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
        return m

board = s.get_board("icebreaker")
plan = s.build_plan(UartBridgeTop(Loopback(), clock_hz=24e6), board)
raw = hashlib.sha256()
for name, content in sorted(plan.files.items()):
    raw.update(content.encode() if isinstance(content, str) else content)
print(json.dumps({"module": s.__file__, "key": s.cache_key(plan, board),
                  "raw": raw.hexdigest()}))
"""


def _key_in(checkout):
    """The key computed by a second checkout at ``checkout``, installed in its own environment."""
    python = installed_copy(checkout)
    done = subprocess.run([python, "-c", _KEY_OF_THIS_CHECKOUT], cwd=checkout,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_cache_key_is_the_same_for_two_checkouts_at_different_paths(tmp_path):
    one = _key_in(tmp_path / "one")
    two = _key_in(tmp_path / "elsewhere" / "second checkout")
    # each copy really built its own plan, and that plan names its own absolute paths ...
    assert one["module"].startswith(str(tmp_path / "one"))
    assert two["module"].startswith(str(tmp_path / "elsewhere" / "second checkout"))
    assert one["raw"] != two["raw"]
    # ... which the cache key leaves out
    assert one["key"] == two["key"]


@pytest.mark.parametrize("path", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_reports_hold_no_machine_or_run_facts(path):
    text = path.read_text()
    report = json.loads(text)
    assert "build_seconds" not in report and "skipped" not in report
    assert str(ROOT) not in text
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    assert not [s for s in strings if s.startswith("/")], "an absolute path"


@pytest.mark.parametrize("path", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_builds_have_shell_safe_names_and_their_full_configuration(path):
    report = json.loads(path.read_text())
    name = path.parent.name
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name), name
    assert name == build_dir_name(report["board"], report["config"])
    if report.get("arch") == "dataflow":
        from xnorflow.hw.dataflow.config import DataflowConfig
        config = DataflowConfig.parse(report["fold"])
        assert report["config"].startswith(config.format() + "@")
        return
    config = ArrayConfig.parse(report["array"])
    assert report["config"].startswith(config.format() + "@")
    assert find_builds(report["board"], report["array"]) != []


def test_build_dir_names():
    full = ArrayConfig.parse("2x4x16,w_depth=16384,in_depth=256,act_depth=128,out_depth=256,"
                             "desc_depth=8,acc_width=16,conv=0")
    name = build_dir_name("icebreaker", build_label(full, 24.0))
    assert re.fullmatch(r"icebreaker-2x4x16-24mhz-[0-9a-f]{8}", name), name
    # builds that differ only in depths, UART rate or placer get their own directories
    other_depth = build_dir_name("icebreaker", build_label(full.replace(in_depth=128), 24.0))
    assert other_depth != name and other_depth.startswith("icebreaker-2x4x16-24mhz-")
    fast = build_dir_name("icebreaker", build_label(full, 24.0, 3_000_000))
    assert re.fullmatch(r"icebreaker-2x4x16-24mhz-3000000bd-[0-9a-f]{8}", fast), fast
    spread = build_dir_name("ulx3s-85f", build_label(ArrayConfig(), 45.0, placer="static"))
    assert re.fullmatch(r"ulx3s-85f-8x8x32-45mhz-static-[0-9a-f]{8}", spread), spread
    assert build_dir_name("icebreaker", "echo").startswith("icebreaker-echo-")


def test_a_placement_seed_reaches_nextpnr_and_names_its_own_build():
    """``synth --seed N`` passes ``--seed N`` to nextpnr, so it is part of the cache key, and
    the build has its own label and directory (a sweep's seeds never overwrite each other)."""
    from xnorflow.hw.config import ArrayConfig as Config
    from xnorflow.sw.synth import accelerator_top, build_plan, cache_key, get_board
    board = get_board("icebreaker")
    config = Config.parse("1x1x8,w_depth=256,thr_depth=32,in_depth=128,act_depth=64,"
                          "out_depth=64,desc_depth=4,conv=0")
    plans = {seed: build_plan(accelerator_top(config), board, seed=seed) for seed in (None, 7)}
    scripts = {seed: "\n".join(str(v) for k, v in plan.files.items() if k.endswith((".sh", ".bat")))
               for seed, plan in plans.items()}
    assert "--seed 7" in scripts[7] and "--seed" not in scripts[None]
    assert cache_key(plans[7], board) != cache_key(plans[None], board)
    labels = {seed: build_label(config, seed=seed) for seed in (None, 7)}
    assert labels[7] == labels[None] + "-seed7"
    assert build_dir_name("icebreaker", labels[7]) != build_dir_name("icebreaker", labels[None])


def test_a_detailed_timing_build_has_the_key_of_a_plain_one():
    # the flag changes nextpnr's report, not the bitstream: a build made for
    # benchmarks/late_endpoints.py must serve `xnorflow profile` without a rebuild
    from xnorflow.hw.board.top import UartBridgeTop
    from xnorflow.sim.loopback import Loopback
    from xnorflow.sw import synth

    board = synth.get_board("ulx3s-85f")

    def plan(**options):
        return synth.build_plan(UartBridgeTop(Loopback(), clock_hz=50e6), board, **options)

    plain, detailed, seeded = plan(), plan(detailed_timing=True), plan(seed=3)
    assert plain.files != detailed.files                 # nextpnr is asked for the report
    assert synth.cache_key(plain, board) == synth.cache_key(detailed, board)
    assert synth.cache_key(seeded, board) != synth.cache_key(plain, board)


def test_a_detailed_request_reuses_only_a_build_whose_report_has_the_arrivals(tmp_path):
    from xnorflow.sw import synth

    (tmp_path / "report.json").write_text(json.dumps({"design_hash": "k"}))
    (tmp_path / "top.bit").write_bytes(b"bits")
    (tmp_path / synth.REPORT_FILE).write_text(json.dumps({"critical_paths": []}))
    bitstream = tmp_path / "top.bit"
    assert synth._cached_build(tmp_path, "k", bitstream)["skipped"]
    assert synth._cached_build(tmp_path, "k", bitstream, detailed_timing=True) is None
    (tmp_path / synth.REPORT_FILE).write_text(json.dumps({"detailed_net_timings": []}))
    assert synth._cached_build(tmp_path, "k", bitstream, detailed_timing=True)["skipped"]
