"""CIFAR-10 python-pickle loader (sw/data.py) on small batch files written here."""
import os
import pickle

import numpy as np
import pytest

from xnorflow.sw import data


def _write_batches(directory, n=4, protocol=2, str_keys=False):
    """Six small batch files like the official ones; returns {name: (data, labels)}."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(len(str(directory)))
    out = {}
    for name in data.CIFAR10_TRAIN_FILES + (data.CIFAR10_TEST_FILE,):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        keys = ("data", "labels") if str_keys else (b"data", b"labels")
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump({keys[0]: x, keys[1]: y, b"batch_label": b"test"}, f, protocol=protocol)
        out[name] = (x, y)
    return out


@pytest.mark.parametrize("protocol,str_keys", [(2, False), (pickle.HIGHEST_PROTOCOL, True)])
def test_cifar10_batches_load_hwc(tmp_path, protocol, str_keys):
    written = _write_batches(tmp_path, protocol=protocol, str_keys=str_keys)
    ds = data.load_dataset("cifar10", str(tmp_path))
    assert ds.x_train.shape == (20, 3072) and ds.x_test.shape == (4, 3072)
    assert ds.max_value == 255 and ds.num_classes == 10 and ds.image_shape == (32, 32, 3)
    x, y = written["data_batch_2"]
    img = x[1].reshape(3, 32, 32)                       # stored as R, G, B planes
    got = ds.x_train[4 + 1].reshape(32, 32, 3)          # HWC
    assert got[5, 7, 0] == img[0, 5, 7] and got[5, 7, 2] == img[2, 5, 7]
    np.testing.assert_array_equal(ds.y_train[4:8], y)
    np.testing.assert_array_equal(ds.y_test, written["test_batch"][1])


def test_cifar10_found_in_the_archive_subdirectory(tmp_path):
    _write_batches(tmp_path / "cifar-10-batches-py")
    assert len(data.load_dataset("cifar10", str(tmp_path)).x_test) == 4


def test_cifar10_errors_name_the_directory_and_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DatasetError, match=f"data directory {missing} does not exist"):
        data.load_dataset("cifar10", str(missing))
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load_dataset("cifar10", None)
    _write_batches(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(data.DatasetError, match=f"data_batch_3 not found in {tmp_path}"):
        data.load_dataset("cifar10", str(tmp_path))
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(data.DatasetError, match="cannot read .*data_batch_3"):
        data.load_dataset("cifar10", str(tmp_path))


def test_cifar10_refuses_pickles_that_name_other_code(tmp_path):
    _write_batches(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": os.getcwd, b"labels": []}, f)   # a pickle naming a function
    with pytest.raises(data.DatasetError, match="test_batch.*refusing to load"):
        data.load_dataset("cifar10", str(tmp_path))


def test_image_shapes_of_the_other_datasets():
    assert data.load_dataset("digits").image_shape == (8, 8, 1)


def test_cifar10_cnn_trains_compiles_and_is_bit_exact(tmp_path, capsys):
    """Three input channels through the whole software flow: train → compile → eval."""
    import json

    from xnorflow.cli import main
    _write_batches(tmp_path / "cifar", n=8)
    out = tmp_path / "run"
    assert main(["train", "--method", "irnet", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"),
                 "--arch", "cnv:4,p,4,p", "--hidden", "8", "--input-bits", "3", "--epochs", "1",
                 "--batch-size", "16", "--quiet", "--out", str(out)]) == 0
    assert main(["compile", str(out / "model.pt"), "-o", str(tmp_path / "c.xnf")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "c.xnf"), "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"),
                 "--checkpoint", str(out / "model.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 8 and result["agree_with_torch"] == 1.0 and result["integers_equal"]
    from xnorflow.sw import xnf
    first = xnf.load(tmp_path / "c.xnf").layers[0]
    assert (first.type, first.height, first.in_channels, first.input_bits) == ("conv3x3", 32, 3, 3)
