"""``xnorflow import``/``export`` on the command line, and ``eval --outputs`` compared with
qonnx's executor image by image."""
import json
import subprocess
import sys

import numpy as np
import pytest

from xnorflow.sw.outputs import read_outputs, write_outputs
from xnorflow.sw.qonnx.check import Executor
from xnorflow.sw.qonnx.inputs import onnx_input

def xnorflow(*argv):
    """``xnorflow ARGV`` through the real entry point, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "xnorflow.cli", *map(str, argv)],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_import_eval_outputs_equal_the_executor(brevitas_models, digits, tmp_path):
    """import → eval --outputs: every image's class and last-layer integers are the executor's."""
    path, _ = brevitas_models("tfc")
    r = xnorflow("import", path, "-o", tmp_path / "m.xnf", "--input-scale", "16", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["input"] == {"features": 64, "bits": 1, "max_value": 16.0, "input_scale": 16.0}
    assert report["head"]["argmax_identical"]
    r = xnorflow("eval", tmp_path / "m.xnf", "--dataset", "digits", "--outputs",
                 tmp_path / "out.npz", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    classes, scores = read_outputs(tmp_path / "out.npz")
    assert classes.dtype == scores.dtype == np.int64 and scores.shape == (360, 10)
    ex = Executor(path)
    last = [n for n in ex.model.graph.node if n.op_type in ("Gemm", "MatMul")][-1].output[0]
    ctx = ex.run(onnx_input(digits.x_test, 16, ex.shape), [ex.output, last])
    assert np.array_equal(classes, ctx[ex.output].argmax(axis=1))
    assert np.array_equal(scores, ctx[last])  # BNN-PYNQ's unit scales: the integers themselves
    assert json.loads(r.stdout)["accuracy"] == pytest.approx((classes == digits.y_test).mean())


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("kind", ["tfc", "cnv"])
def test_imported_models_run_exactly_on_verilator(kind, brevitas_models, digits, tmp_path):
    """import → sim --engine verilator --outputs: 0 mismatches against the golden model on the
    whole digits test set, and every image's class and integers equal the executor's."""
    path, _ = brevitas_models(kind)
    r = xnorflow("import", path, "-o", tmp_path / "m.xnf", "--input-scale", "16", "--json")
    assert r.returncode == 0, r.stderr
    r = xnorflow("sim", tmp_path / "m.xnf", "--dataset", "digits", "--outputs",
                 tmp_path / "sim.npz", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["images"] == 360 and result["mismatches"] == 0
    assert result["predicted_cycles_match"]
    r = xnorflow("eval", tmp_path / "m.xnf", "--dataset", "digits", "--outputs",
                 tmp_path / "eval.npz", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    sim_classes, sim_scores = read_outputs(tmp_path / "sim.npz")
    eval_classes, eval_scores = read_outputs(tmp_path / "eval.npz")
    assert np.array_equal(sim_scores, eval_scores) and np.array_equal(sim_classes, eval_classes)
    ex = Executor(path)
    ctx = ex.run(onnx_input(digits.x_test, 16, ex.shape), [ex.output])
    assert np.array_equal(sim_classes, ctx[ex.output].argmax(axis=1))


@pytest.mark.slow
def test_export_from_a_checkpoint_and_from_the_xnf_agree(digits_models, tmp_path):
    ckpt, compiled = digits_models("rbnn")
    for src, out in ((ckpt, "a.onnx"), (compiled, "b.onnx")):
        r = xnorflow("export", src, "-o", tmp_path / out, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["input_shape"] == [1, 64]
    r = xnorflow("import", tmp_path / "a.onnx", "-o", tmp_path / "a.xnf")
    assert r.returncode == 0 and r.stdout == "" and "imported" in r.stderr
    assert (tmp_path / "a.xnf").read_bytes() == compiled.read_bytes()


def test_bad_options_are_refused_by_argparse(tmp_path):
    for argv, words in ((["import", "m.onnx", "-o", tmp_path / "m.xnf", "--input-bits", "9"],
                         "argument --input-bits: must be an integer in 1..8"),
                        (["import", "m.onnx", "-o", tmp_path / "m.xnf", "--input-scale", "0.5"],
                         "argument --input-scale: must be a number in [1, 65535]"),
                        (["export", "m.xnf", "-o", tmp_path / "missing" / "m.onnx"],
                         "argument -o/--out: directory")):
        r = xnorflow(*argv)
        assert r.returncode == 2 and words in r.stderr, r.stderr


def test_export_of_a_missing_file_is_one_line(tmp_path):
    r = xnorflow("export", tmp_path / "nope.xnf", "-o", tmp_path / "m.onnx")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope.xnf" in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_write_outputs_is_atomic_and_checked(tmp_path):
    path = tmp_path / "o.npz"
    write_outputs(path, [1, 2], [[3, 4], [5, 6]])
    classes, scores = read_outputs(path)
    assert classes.tolist() == [1, 2] and scores.tolist() == [[3, 4], [5, 6]]
    from xnorflow.sw.errors import XnorflowError
    with pytest.raises(XnorflowError, match="classes \\[N\\] and scores \\[N, C\\]"):
        write_outputs(tmp_path / "bad.npz", [1, 2, 3], [[3, 4], [5, 6]])
    assert not (tmp_path / "bad.npz").exists()
