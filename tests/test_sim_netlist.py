"""``xnorflow sim --netlist``: the accelerator as Yosys synthesises it (iCE40 and ECP5 board
flows, technology-independent gates), on the Verilator pipe harness with the same driver,
checked image by image against the golden model and the cycle model, with every undefined
value random (the default) or zero.

The builds are small: a 2x2x16 overlay that holds the trained digits MLP (64-256-256-10; its
4096-word weight banks go to the UltraPlus SPRAM on iCE40, as the iCEBreaker's do), synthesised
in 10-20 s; the first session builds each netlist once (``build/sim/``), later ones only run.
"""
import json
import re
import shutil
import subprocess
import sys

import pytest

from xnf_testing import ROOT

CONFIG = ("2x2x16,w_depth=4096,in_depth=64,act_depth=64,out_depth=64,desc_depth=4,acc_width=16,"
          "conv=0")


# --------------------------------------------------------------------------- recipes (fast)

def test_board_family_scripts_run_the_synth_flow_of_their_board():
    from xnorflow.sim.netlist import NETLIST_PASSES, yosys_script
    from xnorflow.sw.synth import BOARDS
    for board in BOARDS.values():
        script = yosys_script(board.family)
        lines = script.splitlines()
        last = ("write_json netlist.v.json" if board.family in NETLIST_PASSES
                else "write_verilog -noattr netlist.v")     # finish_netlist writes the Verilog
        assert lines[0] == "read_rtlil top.il" and lines[-1] == last
        overrides = dict(board.overrides)
        synth = next(line for line in lines if line.startswith(f"synth_{board.family}"))
        assert synth.split() == [f"synth_{board.family}",
                                 *overrides.get("synth_opts", "").split(), "-top", "top"]
        for key in ("script_after_read", "script_after_synth"):
            for command in overrides.get(key, "").splitlines():   # one command per line
                assert command in lines, (board.name, key, command)


def test_generic_script_keeps_memories_as_arrays_without_initial_contents():
    from xnorflow.sim.netlist import drops_inits, yosys_script
    lines = yosys_script("generic").splitlines()
    assert drops_inits("generic") and drops_inits("ice40")
    assert not drops_inits("ecp5")
    assert "synth -flatten -top top -run :fine" in lines  # synth up to memory -nomap
    assert not any(line.startswith("memory_map") or line.startswith("synth_") for line in lines)


def test_cell_library_puts_the_project_models_in_place_of_yosys_stubs():
    from xnorflow.sim.netlist import cell_library, project_cells
    ecp5 = cell_library("ecp5")
    modules = re.findall(r"^\s*module\s+\\?([\w$]+)", ecp5, re.M)
    assert len(modules) == len(set(modules)), "a cell defined twice"
    assert {"DP16KD", "MULT18X18D", "TRELLIS_FF", "LUT4", "CCU2C",
            "TRELLIS_DPR16X4"} <= set(modules)
    assert "Behavioural model of the Lattice ECP5 DP16KD" in ecp5  # ours, not the stub
    assert "`include" not in re.sub(r"//.*", "", ecp5)  # self-contained
    assert {name for name, _ in project_cells("ecp5")} == {"DP16KD", "MULT18X18D"}
    ice40 = cell_library("ice40")
    assert {"SB_SPRAM256KA", "SB_RAM40_4K", "SB_MAC16", "SB_LUT4"} <= set(
        re.findall(r"^\s*module\s+(\w+)", ice40, re.M))
    assert cell_library("generic") == ""


def _lint(tmp_path, instance):
    """Verilator's verdict on a one-cell design with the ECP5 library (netlist build flags)."""
    from xnorflow.sim.netlist import cell_library, verilator_args
    from xnorflow.sw.tools import ensure_tools_on_path
    ensure_tools_on_path()
    (tmp_path / "cells.v").write_text(cell_library("ecp5"))
    (tmp_path / "top.v").write_text(f"module top(input a, output y);\n{instance}\nendmodule\n")
    args = [a for a in verilator_args(False) if a != "-O3"]
    return subprocess.run([shutil.which("verilator"), "--lint-only", *args, "--top-module", "top",
                           "top.v", "cells.v"], cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.verilator
@pytest.mark.parametrize("instance, message", [
    ('DP16KD #(.DATA_WIDTH_A(18), .REGMODE_A("PIPELINE")) ram (.CLKA(a), .DOA0(y));',
     "REGMODE PIPELINE/NOREG: NOREG or OUTREG"),
    ('DP16KD #(.DATA_WIDTH_A(36), .DATA_WIDTH_B(36), .REGMODE_B("OUTREG")) ram (.CLKA(a), '
     '.DOA0(y));', "the same on both in the 36-bit form"),
    ('DP16KD #(.DATA_WIDTH_A(18), .DATA_WIDTH_B(36)) ram (.CLKA(a), .DOA0(y));',
     "36-bit read on B needs the 36-bit write on A"),
    ('MULT18X18D #(.REG_OUTPUT_CLK("CLK0")) mul (.A0(a), .P0(y));', "are not modelled"),
])
def test_cell_models_refuse_settings_they_do_not_model(tmp_path, instance, message):
    result = _lint(tmp_path, instance)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


@pytest.mark.verilator
def test_cell_models_accept_the_settings_yosys_uses(tmp_path):
    result = _lint(tmp_path, 'DP16KD #(.DATA_WIDTH_A(36), .DATA_WIDTH_B(36), .RESETMODE("ASYNC"))'
                             ' ram (.CLKA(a), .DOA0(y));\nMULT18X18D mul (.A0(a));\n'
                             'DP16KD #(.DATA_WIDTH_A(36), .DATA_WIDTH_B(36), .REGMODE_A("OUTREG"),'
                             ' .REGMODE_B("OUTREG")) pdp (.CLKB(a));\n'
                             'DP16KD #(.DATA_WIDTH_A(9), .DATA_WIDTH_B(9), .REGMODE_B("OUTREG"))'
                             ' tdp (.CLKB(a));')
    assert result.returncode == 0, result.stderr[-2000:]


def test_random_and_zero_builds_share_one_synthesis_and_seeds_share_one_build():
    from xnorflow.sim.build import build_dir
    from xnorflow.sim.netlist import netlist_spec, synthesis_spec
    from xnorflow.sim.tops import accelerator_spec
    rtl = accelerator_spec(CONFIG)
    zero = netlist_spec(rtl, "ice40", x_random=False)
    seed1 = netlist_spec(rtl, "ice40", x_random=True, seed=1)
    seed2 = netlist_spec(rtl, "ice40", x_random=True, seed=2)
    assert build_dir(seed1) == build_dir(seed2) != build_dir(zero) != build_dir(rtl)
    assert build_dir(synthesis_spec(seed1)) == build_dir(zero)
    assert seed1.plusargs == ("+verilator+rand+reset+2", "+verilator+seed+1")
    assert zero.plusargs == ()
    assert build_dir(netlist_spec(rtl, "ecp5", x_random=False)) != build_dir(zero)


def _sim_cli(*args):
    return subprocess.run([sys.executable, "-m", "xnorflow.cli", "sim", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--netlist", "ice40", "--engine", "amaranth"], "--netlist ice40: netlists run on the "
                                                     "Verilator harness"),
    (["--netlist", "ecp5", "--engine", "cocotb"], "--netlist ecp5: netlists run on the "
                                                  "Verilator harness"),
    (["--x-random"], "--x-random/--no-x-random: goes with --netlist"),
    (["--netlist", "generic", "--no-x-random", "--x-seed", "3"], "--x-seed 3: goes with"),
    (["--netlist", "ice41"], "argument --netlist: invalid choice: 'ice41'"),
    (["--netlist", "generic", "--x-seed", "0"], "argument --x-seed"),
])
def test_netlist_options_that_mean_nothing_are_refused_by_name(tmp_path, args, message):
    result = _sim_cli(tmp_path / "none.xnf", "--dataset", "digits", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- trained models

def _simulate(xnf_path, family, x_random, seed=1):
    from xnorflow.simulate import simulate
    from xnorflow.targets import NetlistTarget, OverlayTarget
    from xnorflow.sw import xnf
    from xnorflow.sw.evaluate import dataset_inputs
    model = xnf.load(xnf_path)
    x, y = dataset_inputs(model, "digits", None, None)
    target = NetlistTarget(OverlayTarget(CONFIG), family, x_random=x_random, seed=seed)
    return simulate(model, x, y, target=target, progress=False)


def _check_bit_exact(result, family, x_random):
    assert result["netlist"] == family and result["x_random"] is x_random
    assert result["images"] == 360
    assert result["mismatches"] == 0
    assert result["predicted_cycles_match"] is True
    assert set(result["cycles_by_layer"]) == {"fc0", "fc1", "fc2"}


@pytest.mark.slow
@pytest.mark.synth
@pytest.mark.verilator
# Every pair of (family, method, X random) values appears in some row: the three factors
# are independent (the cell library, the weights, the memory's power-up contents), so the
# full product's eight whole-test-set runs (about 35 s each) would repeat what these five
# already show (ECP5 keeps its one row, as before).
@pytest.mark.parametrize("family, method, x_random", [
    ("ice40", "rbnn", True), ("ice40", "irnet", False),
    ("generic", "irnet", True), ("generic", "rbnn", False),
    ("ecp5", "irnet", True),
])
def test_trained_model_on_a_netlist_is_bit_exact_on_the_whole_test_set(family, method, x_random,
                                                                       digits_models):
    _check_bit_exact(_simulate(digits_models(method)[1], family, x_random), family, x_random)


@pytest.mark.slow
@pytest.mark.synth
@pytest.mark.verilator
def test_sim_netlist_json_with_the_checkpoint_agrees_with_pytorch(digits_models):
    """The command line of the feature: iCE40 netlist, X random (the default), IR-Net."""
    ckpt, compiled = digits_models("irnet")
    result = _sim_cli(compiled, "--dataset", "digits", "--netlist", "ice40", "--array", CONFIG,
                      "--checkpoint", ckpt, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    _check_bit_exact(doc, "ice40", True)
    assert doc["x_seed"] == 1 and doc["agree_with_torch"] == 1.0 and doc["engine"] == "verilator"


@pytest.mark.slow
@pytest.mark.synth
@pytest.mark.verilator
@pytest.mark.parametrize("family, region", [("ice40", 0x400000), ("generic", 0x200000)])
def test_x_random_fills_what_the_design_never_initialises(family, region):
    """A fresh netlist reads back memory the host never wrote (iCE40: the SPRAM weight banks;
    generic: the input banks, arrays without initial contents): all zero in the zero build,
    random with X random, and a different draw for another seed; so a design that read such
    a word before writing it would compute with garbage."""
    from xnorflow.targets import NetlistTarget, OverlayTarget
    from xnorflow.sim.verilator_transport import VerilatorTransport
    from xnorflow.sw.driver import OverlayDevice

    def unwritten(x_random, seed=1):
        spec = NetlistTarget(OverlayTarget(CONFIG), family, x_random=x_random, seed=seed).spec()
        with VerilatorTransport(spec) as t:
            return OverlayDevice(t, CONFIG).read(region, 16)

    zero, seed1, seed2 = unwritten(False), unwritten(True, 1), unwritten(True, 2)
    assert zero == bytes(16)
    assert seed1 != bytes(16) and seed2 != bytes(16) and seed1 != seed2
    assert unwritten(True, 1) == seed1  # reproducible


@pytest.mark.slow
@pytest.mark.synth
@pytest.mark.verilator
def test_dataflow_cnn_on_the_ecp5_netlist_with_block_ram_output_registers_is_bit_exact():
    """The digits CNN's ECP5 dataflow build, its weight reads' registers moved into the block
    RAMs by the board flow's netlist pass (REGMODE OUTREG), over the whole test set with the
    netlist's undefined values random: every image exact, every counter the cycle model's."""
    from xnorflow.simulate import simulate
    from xnorflow.sw import xnf
    from xnorflow.sw.evaluate import dataset_inputs
    from xnorflow.sim.netlist import build_dir, synthesis_spec
    from xnorflow.targets import DataflowTarget, NetlistTarget
    model = xnf.load(ROOT / "benchmarks" / "results" / "dataflow_cnn" / "digits_cnn_rbnn.xnf")
    x, y = dataset_inputs(model, "digits", None, None)
    target = NetlistTarget(DataflowTarget(
        "df:8x8x1u4>16p:9x2,4x4x16>32p:36x2m2,128>64:16x1,64>10r:4x1;in_word=256"), "ecp5")
    result = simulate(model, x, y, target=target, progress=False)
    assert result["images"] == 360 and result["mismatches"] == 0
    assert result["predicted_cycles_match"] is True
    netlist = (build_dir(synthesis_spec(target.spec())) / "netlist.v").read_text()
    # the window rings' read registers (conv 1's and conv 2's), conv 2's two PEs', fc 3's weights
    assert netlist.count('.REGMODE_B("OUTREG")') == 5
