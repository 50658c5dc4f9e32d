"""Bad values and output paths for ``synth`` (issue #23, items 4, 5 and 8).

Every row is refused before anything is elaborated or built: no Yosys, no nextpnr, no
directory created."""

_SYNTH = ["synth", "--board", "icebreaker", "--out", "{tmp}/synth-out"]

CASES = [
    # item 4: values that must be refused, naming the option
    (_SYNTH + ["--baud", "0"], "argument --baud: must be a positive integer"),
    (_SYNTH + ["--baud", "-9600"], "argument --baud: must be a positive integer"),
    (_SYNTH + ["--baud", "fast"], "argument --baud: expected a positive integer"),
    (_SYNTH + ["--baud", "1000000000"], "--baud 1000000000: a 24 MHz clock makes at most"),
    (_SYNTH + ["--clock-mhz", "0"], "argument --clock-mhz: must be a positive number"),
    (_SYNTH + ["--clock-mhz", "-24"], "argument --clock-mhz: must be a positive number"),
    (_SYNTH + ["--clock-mhz", "nan"], "argument --clock-mhz: must be a positive number"),
    (_SYNTH + ["--clock-mhz", "inf"], "argument --clock-mhz: must be a positive number"),
    (_SYNTH + ["--clock-mhz", "1e9"], "--clock-mhz 1e+09: the icebreaker's ice40 PLL makes 16 to 275 MHz"),
    (_SYNTH + ["--clock-mhz", "5"], "--clock-mhz 5: the icebreaker's ice40 PLL makes 16 to 275 MHz"),
    (["synth", "--board", "ulx3s-85f", "--out", "{tmp}/synth-out", "--clock-mhz", "1000"],
     "--clock-mhz 1000: the ulx3s-85f's ecp5 PLL makes 3.125 to 400 MHz"),
    (_SYNTH + ["--array", ""], "argument --array: empty array config"),
    (_SYNTH + ["--array", "3x4x16"], "argument --array: P must be a power of two"),
    (_SYNTH + ["--array", "8x8x32,w_depth=70000"], "argument --array: w_depth must be below 65536"),
    (_SYNTH + ["--array", "64x64x64,w_depth=65000"],
     "argument --array: w region of 64x64x64,w_depth=65000 needs"),
    (_SYNTH + ["--placer", "annealing"], "argument --placer: invalid choice"),
    (_SYNTH + ["--seed", "-1"], "argument --seed: must be a non-negative integer"),
    (["synth", "--board", "nexys"], "argument --board: invalid choice"),
    (["synth"], "the following arguments are required: --board"),
    # item 8: a configuration that cannot fit is refused with the numbers, before any build
    (_SYNTH + ["--array", "64x64x64"], "--array 64x64x64 does not fit the icebreaker (iCE40 UP5K)"),
    (_SYNTH + ["--array", "64x64x64"], "logic cells of 5,280"),
    (_SYNTH + ["--array", "4x8x16,w_depth=16384,thr_depth=128,in_depth=128,act_depth=64,"
                          "out_depth=128,desc_depth=8,acc_width=16"], "logic cells of 5,280"),
    (_SYNTH + ["--array", "2x4x16,w_depth=2048,in_depth=4096,act_depth=128,out_depth=256,"
                          "desc_depth=8,acc_width=16,conv=0"], "EBR blocks (4 kbit) of 30"),
    (_SYNTH + ["--array", "8x4x16,w_depth=16384,conv=0"], "SPRAM blocks (256 kbit) of 4"),
    (["synth", "--board", "ulx3s-85f", "--out", "{tmp}/synth-out", "--array", "64x16x64"],
     "--array 64x16x64 does not fit the ulx3s-85f (ECP5 LFE5U-85F)"),
    (["synth", "--board", "ulx3s-85f", "--out", "{tmp}/synth-out", "--array",
      "8x8x32,w_depth=16384"], "block RAMs (DP16KD, 18 kbit) of 208"),
    # item 5: the output root is checked before the work starts
    (["synth", "--board", "icebreaker", "--out", "{tmp}/synth-not-a-dir/out"],
     "synth-not-a-dir is a file, expected a directory"),
    (["synth", "--board", "icebreaker", "--out", "/proc/xnorflow-bitstreams"],
     "argument --out: directory /proc is not writable"),
]


def make_files(tmp):
    """A file where ``--out`` expects a directory."""
    (tmp / "synth-not-a-dir").write_text("not a directory")
