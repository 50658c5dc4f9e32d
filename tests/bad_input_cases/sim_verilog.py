"""Bad values and output paths for ``sim`` and ``verilog`` (issue #23, items 4, 5 and 13).

Every row is refused before any work (no build, no simulation, no Verilog written)."""

_SIM = ["sim", "{model}", "--dataset", "digits"]

CASES = [
    # item 4: values that must be refused, naming the option
    (_SIM + ["--batch", "0"], "argument --batch: must be a positive integer"),
    (_SIM + ["--jobs", "-2"], "argument --jobs: must be a positive integer"),
    (_SIM + ["--jobs", "0"], "argument --jobs: must be a positive integer"),
    (_SIM + ["--chunk", "0"], "argument --chunk: must be a positive integer"),
    (_SIM + ["--limit", "0"], "argument --limit: must be a positive integer"),
    (_SIM + ["--limit", "-1"], "argument --limit: must be a positive integer"),
    (_SIM + ["--array", "3x4x16"], "argument --array: P must be a power of two"),
    (_SIM + ["--array", ""], "argument --array: empty array config"),
    (["sim", "{model}", "--dataset", "cifar100"], "argument --dataset: invalid choice"),
    (_SIM + ["--engine", "icarus"], "argument --engine: invalid choice"),
    # item 5: output paths checked before the work starts
    (_SIM + ["--state", "{tmp}/missing/state.npz"], "argument --state: directory"),
    (_SIM + ["--state", "/proc/1/state.npz"], "not writable"),
    (_SIM + ["--state", "{tmp}"], "is a directory"),
    # item 13: --waves, a waveform file the run can write
    (_SIM + ["--waves", "{tmp}/missing/w.vcd"], "argument --waves: directory"),
    (_SIM + ["--waves", "{tmp}/w.txt"], "name a .vcd or .fst file"),
    (_SIM + ["--waves", "{tmp}/w.vcd", "--jobs", "2"], "run with --jobs 1"),
    # FST: refused for the Amaranth engine, and by every engine where lz4.h is missing
    (_SIM + ["--waves", "{tmp}/w.fst", "--engine", "amaranth"], "name a .vcd file"),
    # verilog
    (["verilog", "-o", "{tmp}/missing/core.v"], "argument -o/--out: directory"),
    (["verilog", "-o", "/proc/1/core.v"], "not writable"),
    (["verilog", "-o", "{tmp}"], "is a directory"),
    (["verilog", "--array", "3x4x16", "-o", "{tmp}/core.v"],
     "argument --array: P must be a power of two"),
    (["verilog", "--array", "", "-o", "{tmp}/core.v"], "argument --array: empty array config"),
    (["verilog", "--top", "board", "-o", "{tmp}/core.v"], "argument --top: invalid choice"),
    (["verilog"], "the following arguments are required: -o/--out"),
]
