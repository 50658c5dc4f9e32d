"""Brevitas-trained, Brevitas-exported binary networks imported and compared with qonnx's executor
on every digits test image: classes, last-layer integers and hidden bits identical."""
import numpy as np
import pytest

from xnorflow.sw import xnf
from xnorflow.sw.data import quantize_inputs
from xnorflow.sw.qonnx.check import compare
from xnorflow.sw.qonnx.exporter import export_onnx
from xnorflow.sw.qonnx.importer import import_details

pytestmark = pytest.mark.slow  # training and exporting (cached per machine), the executor


def _exact(result):
    assert result["images"] == 360
    assert result["class_disagreements"] == 0
    assert result["last_layer_integer_differences"] == 0
    assert result["hidden_integer_differences"] == 0
    assert result["hidden_bit_differences"] == 0


@pytest.mark.parametrize("kind", ["tfc", "cnv"])
def test_brevitas_model_matches_the_executor_on_every_test_image(kind, brevitas_models, digits):
    path, torch_accuracy = brevitas_models(kind)
    imported = import_details(path, input_scale=16)
    result = compare(imported, path, digits.x_test)
    _exact(result)
    # every layer with a tensor in the graph was compared, bits and integers
    assert all(e["bit_differences"] == 0 for e in result["layers"][:-1])
    assert result["layers"][-1]["integer_differences"] == 0
    golden = imported.model.predict(quantize_inputs(digits.x_test, imported.model.input.bits,
                                                    imported.model.input.max_value))
    assert np.array_equal(golden, result["classes"])
    # the trained model is a real classifier, and PyTorch's accuracy is the graph's
    assert torch_accuracy > 0.7
    assert (result["classes"] == digits.y_test).mean() == pytest.approx(torch_accuracy, abs=1e-6)
    assert imported.head_check["argmax_identical"]


def test_tfc_maps_its_binarized_input_and_falling_thresholds(brevitas_models):
    path, _ = brevitas_models("tfc")
    model = import_details(path, input_scale=16).model
    # BNN-PYNQ's 1-bit input: sign(2·raw/16 − 1) is xnorflow's 1-bit level of raw/16
    assert (model.input.bits, model.input.max_value) == (1, 16.0)
    assert [layer.type for layer in model.layers] == ["dense"] * 3
    # half the batch norms started negative: falling thresholds (direction −1) survive
    assert all((layer.direction < 0).any() for layer in model.layers[:-1])


def test_cnv_flips_pooled_channels_and_finds_the_q17_input(brevitas_models):
    path, _ = brevitas_models("cnv")
    imported = import_details(path, input_scale=16)
    model = imported.model
    # Q1.7 of 2·raw/16 − 1 is round(16·raw) − 128: 8-bit levels of raw/(16·255/256)
    assert (model.input.bits, model.input.max_value) == (8, 16 * 255 / 256)
    assert [layer.type for layer in model.layers] == ["conv3x3", "maxpool2x2", "conv3x3",
                                                      "maxpool2x2", "dense", "dense"]
    # a channel whose batch norm falls is pooled after its sign in the graph (OR of bits):
    # the import negates its filter so that xnorflow's pool (threshold at the largest acc) is it
    flips = [t.flip.sum() for t in imported.trace if t.flip is not None and t.image]
    assert all(f > 0 for f in flips)
    from xnorflow.sw.layers.weighted import threshold_bits
    for layer in model.layers:
        if layer.type == "conv3x3":   # falling channels left only where the bit is constant
            lo, hi = layer.acc_range()
            down = layer.direction < 0
            at = [threshold_bits(np.full(down.sum(), v), layer.threshold[down],
                                 layer.direction[down]) for v in (lo, hi)]
            assert np.array_equal(at[0], at[1])


def test_both_brevitas_exporters_give_the_same_model(brevitas_models):
    """TorchScript's graph (Constant nodes, pads computed by Concat/Reshape, Shape → Reshape)
    and dynamo's (folded, shared initializers) fold to the same layers."""
    a = import_details(brevitas_models("cnv", dynamo=True)[0], input_scale=16).model
    b = import_details(brevitas_models("cnv", dynamo=False)[0], input_scale=16).model
    for la, lb in zip(a.layers, b.layers):
        assert la.type == lb.type
        for field, arr in la.stored_arrays().items():
            assert np.array_equal(arr, lb.stored_arrays()[field])
    assert a.input.max_value == b.input.max_value


def test_torchscript_export_matches_the_executor(brevitas_models, digits):
    path, _ = brevitas_models("tfc", dynamo=False)
    _exact(compare(import_details(path, input_scale=16), path, digits.x_test))


@pytest.mark.parametrize("kind", ["tfc", "cnv"])
def test_imported_model_is_an_ordinary_model(kind, brevitas_models, tmp_path):
    """It saves and loads as .xnf, the core's program builder takes it for the default array,
    and export → import gives the same file bytes."""
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.sw.program import build_program

    path, _ = brevitas_models(kind)
    model = import_details(path, input_scale=16).model
    xnf.save(model, tmp_path / "m.xnf")
    loaded = xnf.load(tmp_path / "m.xnf")
    assert build_program(loaded.layers, ArrayConfig())
    export_onnx(loaded, tmp_path / "again.onnx")
    again = import_details(tmp_path / "again.onnx").model
    assert xnf.to_bytes(again) == xnf.to_bytes(loaded)


def test_bnn_pynq_tfc_as_defined_imports_exactly(tmp_path):
    """brevitas_examples' own tfc_1w1a (784-64-64-64-10, MNIST's 28×28 raw/255), untrained
    weights: the TorchScript export imports and matches the executor on random images."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import tfc_1w1a

    torch.manual_seed(0)
    model = tfc_1w1a(pretrained=False).eval()
    path = tmp_path / "tfc_1w1a.onnx"
    export_qonnx(model, torch.rand(1, 1, 28, 28), export_path=str(path), dynamo=False)
    imported = import_details(path)
    assert (imported.model.input.features, imported.model.input.bits) == (784, 1)
    raw = np.random.default_rng(0).integers(0, 256, size=(64, 784))
    result = compare(imported, path, raw)
    assert result["images"] == 64
    assert result["class_disagreements"] == result["last_layer_integer_differences"] == 0
    assert result["hidden_bit_differences"] == 0


def test_bnn_pynq_cnv_is_refused_for_its_unpadded_convolutions(tmp_path):
    """brevitas_examples' own cnv_1w1a: its 3×3 convolutions do not pad, xnorflow's keep the
    image size; the import names the first such Conv and says what would work."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import cnv_1w1a

    from xnorflow.sw.qonnx.graph import UnsupportedModelError
    path = tmp_path / "cnv_1w1a.onnx"
    export_qonnx(cnv_1w1a(pretrained=False).eval(), torch.rand(1, 3, 32, 32),
                 export_path=str(path), dynamo=False)
    with pytest.raises(UnsupportedModelError, match=r"node '/conv_features.1/Conv' \(Conv\): "
                                                    r"has no padding"):
        import_details(path)
