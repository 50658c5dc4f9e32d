"""xnorflow's models as QONNX: qonnx's executor gives the golden model's classes, integers and
scores on every image; qonnx's cleanup and inference-cost tools accept the graph; export then
import gives the same .xnf bytes."""
import json

import numpy as np
import pytest

from xnorflow.sw import xnf
from xnorflow.sw.qonnx.check import Executor, compare
from xnorflow.sw.qonnx.exporter import export_onnx
from xnorflow.sw.qonnx.importer import import_details
from xnorflow.sw.random_models import random_cnn_model, random_model


def _exact(result, images):
    assert result["images"] == images
    assert result["class_disagreements"] == 0
    assert result["last_layer_integer_differences"] == 0
    assert result["hidden_integer_differences"] == 0
    assert result["hidden_bit_differences"] == 0
    assert result["scores_identical"]  # the head runs in float64 in the graph, in its order


@pytest.mark.slow
@pytest.mark.parametrize("method", ["irnet", "rbnn"])
@pytest.mark.parametrize("cnn", [False, True], ids=["mlp", "cnn"])
def test_trained_model_exports_exactly(method, cnn, digits_models, digits, tmp_path):
    _, path = digits_models(method, cnn=cnn) if not cnn else digits_models(method, cnn=True)
    model = xnf.load(path)
    onnx_path = tmp_path / "model.onnx"
    export_onnx(model, onnx_path)
    imported = import_details(onnx_path)
    assert xnf.to_bytes(imported.model) == xnf.to_bytes(model)  # the round trip
    result = compare(imported, onnx_path, digits.x_test)
    _exact(result, 360)
    from xnorflow.sw.data import quantize_inputs
    golden = model.predict(quantize_inputs(digits.x_test, model.input.bits, model.input.max_value))
    assert np.array_equal(result["classes"], golden)


@pytest.mark.parametrize("seed", range(3))
def test_random_models_round_trip_and_run_exactly(seed, tmp_path):
    """Random weights and thresholds, saturated channels both ways, k from 1 to 8: the file
    comes back byte for byte and the executor agrees on random raw images."""
    rng = np.random.default_rng(seed)
    bits = [1, 4, 8][seed]
    models = [random_model(rng, [20, 12, 8, 5], bits),
              random_cnn_model(rng, (6, 6, 2), [4, "pool", 8], [6, 4], bits)]
    for model in models:
        path = tmp_path / f"{model.name}.onnx"
        export_onnx(model, path)
        imported = import_details(path)
        assert xnf.to_bytes(imported.model) == xnf.to_bytes(model)
        raw = rng.integers(0, int(model.input.max_value) + 1, size=(40, model.input.features))
        _exact(compare(imported, path, raw), 40)


def test_exported_graph_runs_one_image_at_a_time_too(tmp_path):
    """The batched executor (qonnx's ChangeBatchSize) and the graph as written agree."""
    rng = np.random.default_rng(7)
    model = random_cnn_model(rng, (6, 6, 1), [4, "pool"], [3], 2)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    ex = Executor(path)
    from xnorflow.sw.qonnx.inputs import onnx_input
    x = onnx_input(rng.integers(0, 4, size=(5, 36)), model.input.max_value, ex.shape)
    batched = ex.run(x, [ex.output])[ex.output]
    single = np.concatenate([ex._execute(ex.model, x[i:i + 1], [ex.output])[ex.output]
                             for i in range(5)])
    assert ex.mode == "batched"
    assert np.array_equal(batched, single)


def test_qonnx_cleanup_and_inference_cost_accept_the_export(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup, cleanup_model
    from qonnx.util.inference_cost import inference_cost

    rng = np.random.default_rng(3)
    model = random_cnn_model(rng, (6, 6, 1), [4, "pool", 8], [5], 4)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    # cleanup (the file tool and the model-level function) keeps what the graph computes
    cleanup(str(path), out_file=str(tmp_path / "clean.onnx"))
    clean = cleanup_model(ModelWrapper(str(path)))
    x = (rng.integers(0, 16, size=(1, 1, 6, 6)) / np.float32(15)).astype(np.float32)
    ours = execute_onnx(ModelWrapper(str(path)), {"x": x})["scores"]
    for m in (clean, ModelWrapper(str(tmp_path / "clean.onnx"))):
        theirs = execute_onnx(m, {m.graph.input[0].name: x})
        assert np.array_equal(next(iter(theirs.values())), ours)
    # inference cost: the MACs are the model's (conv: H·W·9·C_in·C_out, dense: N·M)
    out = tmp_path / "cost.json"
    inference_cost(str(path), output_json=str(out), preprocess=True, discount_sparsity=False)
    cost = json.loads(out.read_text())["total_cost"]
    macs = sum(layer.binary_macs() // layer.input_bits for layer in model.layers)
    assert cost["total_macs"] == macs
    # it sees k-bit inputs times binary weights in the first layer, binary after
    assert cost["op_mac_UINT4_BIPOLAR"] == model.layers[0].binary_macs() // 4
    weighted = [layer for layer in model.layers if hasattr(layer, "filter_len")]
    assert cost["total_mem_w_elems"] == sum(lyr.out_channels * lyr.filter_len for lyr in weighted)
