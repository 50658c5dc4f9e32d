"""The engines' Verilog passes `verilator --lint-only -Wall` with the waivers in
hw/dataflow/verilator_lint.vlt (each one a property of Amaranth's Verilog writer)."""
import os
import subprocess

import pytest
from amaranth.back import verilog

from xnorflow.hw.dataflow.convert import WidthConverter
from xnorflow.hw.dataflow.mvu import MatrixVectorUnit
from xnorflow.hw.dataflow.pool import MaxPool2x2
from xnorflow.hw.dataflow.psum_mvu import PartialSumMVU
from xnorflow.hw.dataflow.window import SlidingWindowUnit
from xnorflow.sw.tools import verilator_executable

HERE = os.path.dirname(__file__)

# Every structural variant: threshold / raw binary / raw unsigned, k-bit planes, padding,
# SF = 1, NF = 1, one-word memories, no edge registers, the serial output stage, SPRAM-style
# weights, beats taken as words (`in_words`), MMV; the converter's three modes; the sliding
# window (binary, k-bit one-channel,
# and a one-pixel image: zero-width counters, a one-word ring stored as two).
DESIGNS = {
    "mvu_threshold_padded": lambda: MatrixVectorUnit(37, 13, 8, 4),
    "mvu_unsigned4_raw": lambda: MatrixVectorUnit(19, 7, 5, 2, 4, "raw"),
    "mvu_binary_raw": lambda: MatrixVectorUnit(30, 11, 7, 2, output="raw"),
    "mvu_sf1_no_edge_regs": lambda: MatrixVectorUnit(23, 9, 23, 3, ram_reg=False),
    "mvu_one_word_memories": lambda: MatrixVectorUnit(8, 4, 8, 4),
    "mvu_digits_layer1": lambda: MatrixVectorUnit(64, 256, 16, 4, 4),
    "mvu_serial_threshold": lambda: MatrixVectorUnit(37, 13, 8, 4, output_stage="serial"),
    "mvu_serial_three_pes": lambda: MatrixVectorUnit(27, 10, 8, 3, 4, output_stage="serial"),
    "mvu_serial_raw_unsigned_one_pe": lambda: MatrixVectorUnit(29, 6, 9, 1, output="raw",
                                                               input_kind="unsigned",
                                                               output_stage="serial"),
    "mvu_digits_layer1_words": lambda: MatrixVectorUnit(
        64, 256, 16, 4, 4, ram_reg=False, in_words=4, ram_styles={"weights": "huge"}),
    "mvu_spram_weights_two_levels": lambda: MatrixVectorUnit(
        40, 9, 16, 3, 4, levels_per_stage=2, ram_styles={"weights": "huge"}),
    # MMV: the input buffer's per-image write enables, the m lanes per PE, the reorder buffer
    # (column counts that are and are not powers of two, 3 images), both output stages
    "mvu_mmv2_threshold_padded": lambda: MatrixVectorUnit(37, 13, 8, 4, mmv=2),
    "mvu_mmv3_unsigned4_raw": lambda: MatrixVectorUnit(27, 10, 8, 3, 4, "raw", mmv=3),
    "mvu_mmv4_binary_raw_no_edge_regs": lambda: MatrixVectorUnit(32, 8, 8, 2, output="raw",
                                                                 ram_reg=False, mmv=4),
    "mvu_mmv2_fewest_columns": lambda: MatrixVectorUnit(32, 8, 8, 2, fifo_depth=4, mmv=2),
    "mvu_mmv3_serial": lambda: MatrixVectorUnit(40, 12, 4, 2, output_stage="serial", mmv=3),
    "mvu_mmv4_serial_raw_unsigned_one_pe": lambda: MatrixVectorUnit(
        45, 8, 5, 1, 4, "raw", input_kind="unsigned", output_stage="serial", mmv=4),
    "mvu_mmv2_spram_weights_block_output": lambda: MatrixVectorUnit(
        40, 9, 16, 3, 4, levels_per_stage=2, mmv=2,
        ram_styles={"weights": "huge", "output": "block"}),
    # input-first: the partial-sum memory with its threshold region, SF = 1, sums in
    # registers (NF = 1, threshold and raw), SPRAM weights
    "psum_threshold_padded": lambda: PartialSumMVU(37, 13, 8, 4),
    "psum_sf1_unsigned4": lambda: PartialSumMVU(23, 9, 23, 3, 4),
    "psum_nf1_threshold": lambda: PartialSumMVU(20, 5, 6, 5),
    "psum_nf1_raw_ten_pes": lambda: PartialSumMVU(256, 10, 4, 10, output="raw"),
    "psum_raw_two_levels": lambda: PartialSumMVU(30, 11, 7, 2, output="raw", levels_per_stage=2),
    "psum_spram_weights": lambda: PartialSumMVU(64, 16, 16, 4, 4,
                                                ram_styles={"weights": "huge"}),
    "convert_gather": lambda: WidthConverter(1, 4, 32, 70),
    "convert_gather_odd": lambda: WidthConverter(1, 1, 5, 5),
    "convert_split": lambda: WidthConverter(1, 32, 8, 70),
    "convert_pass": lambda: WidthConverter(1, 8, 8, 20),
    # the pool: odd geometry with three folds; one word per row with the forwarding register
    "pool_odd_three_folds": lambda: MaxPool2x2(5, 7, 12, 4),
    "pool_one_window_forwarding": lambda: MaxPool2x2(3, 2, 16, 16),
    "window_binary": lambda: SlidingWindowUnit(5, 3, 8, 1, 4),
    "window_unsigned4_one_channel": lambda: SlidingWindowUnit(4, 4, 1, 4, 1),
    "window_one_pixel": lambda: SlidingWindowUnit(1, 1, 2, 1, 2),
}


@pytest.mark.verilator
@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_verilator_lint_clean(tmp_path, name):
    exe = verilator_executable()
    if exe is None:
        pytest.skip("verilator not found")
    src = tmp_path / f"{name}.v"
    src.write_text(verilog.convert(DESIGNS[name](), name=name))
    env = dict(os.environ, PATH=os.path.dirname(exe) + os.pathsep + os.environ.get("PATH", ""))
    res = subprocess.run([exe, "--lint-only", "-Wall", os.path.join(HERE, "verilator_lint.vlt"),
                          str(src), "--top-module", name],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "%Warning" not in res.stderr and "%Error" not in res.stderr
