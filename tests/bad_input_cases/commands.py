"""Bad values for compile, eval, inspect, profile, run and the model loader (issue #23)."""

CASES = [
    # item 4: values that must be refused, naming the option
    (["run", "--epochs", "-1", "--out", "{tmp}/run"], "--epochs"),
    (["run", "--epochs", "0", "--out", "{tmp}/run"], "--epochs"),
    (["run", "--hidden", "12,x", "--out", "{tmp}/run"], "--hidden"),
    (["eval", "{model}", "--dataset", "digits", "--limit", "-1"], "--limit"),
    (["eval", "{model}", "--dataset", "digits", "--limit", "0"], "--limit"),
    (["eval", "{model}", "--dataset", "cifar100"], "--dataset"),
    (["inspect", "{model}", "--batch", "0"], "--batch"),
    (["profile", "{model}", "--board", "icebreaker", "--batch", "0", "--no-sim"], "--batch"),
    (["profile", "{model}", "--board", "icebreaker", "--baud", "0", "--no-sim"], "--baud"),
    (["profile", "{model}", "--board", "icebreaker", "--clock-mhz", "nan", "--no-sim"],
     "--clock-mhz"),
    (["profile", "{model}", "--board", "nexys", "--no-sim"], "--board"),
    # a model whose accumulator is wider than the build's: the real cause, not "batch 0"
    (["profile", "{wide_model}", "--board", "icebreaker", "--no-sim"], "accumulator"),
    # item 5: output paths checked before any work
    (["compile", "{checkpoint}", "-o", "{tmp}/missing/model.xnf"], "does not exist"),
    (["compile", "{checkpoint}", "-o", "/proc/model.xnf"], "not writable"),
    (["compile", "{checkpoint}", "-o", "{tmp}"], "is a directory"),
    (["profile", "{model}", "--board", "icebreaker", "--no-sim", "--plot", "{tmp}/no/p.png"],
     "does not exist"),
    (["run", "--out", "{tmp}/afile/run"], "is a file"),
    (["run", "--out", "/proc/run"], "not writable"),
    # item 7: one validation in the loader for every command
    (["inspect", "{tmp}/duplicate-names.xnf"], "field 'name'"),
    (["eval", "{tmp}/duplicate-names.xnf", "--dataset", "digits"], "field 'name'"),
    # issue #28: --cluster, refused before a cluster starts
    (["sim", "{model}", "--dataset", "digits", "--cluster", "bogus"],
     "argument --cluster: expected local (one worker process per core), local:N"),
    (["sim", "{model}", "--dataset", "digits", "--cluster", "local:0"],
     "argument --cluster: local:0: the number of worker processes must be at least 1"),
    (["sim", "{model}", "--dataset", "digits", "--cluster", "tcp://host:99999"],
     "argument --cluster: tcp://host:99999: the port must be 1..65535"),
    (["sim", "{model}", "--dataset", "digits", "--cluster", "local:2", "--jobs", "2"],
     "--jobs 2: with --cluster the Dask workers run the chunks"),
    (["sim", "{model}", "--dataset", "digits", "--cluster", "local:2", "--waves",
      "{tmp}/w.vcd"], "w.vcd: one simulator process writes the waveform; run without --cluster"),
]


def make_files(tmp):
    """A file where a directory is expected, and a model file with two layers named alike."""
    import numpy as np

    from xnorflow.sw import xnf
    from xnorflow.sw.random_models import random_model
    (tmp / "afile").write_text("not a directory")
    model = random_model(np.random.default_rng(3), [64, 16, 10], input_bits=4, name="dup")
    model.layers[1].name = model.layers[0].name
    (tmp / "duplicate-names.xnf").write_bytes(xnf.to_bytes(model))
