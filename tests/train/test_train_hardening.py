"""``xnorflow train`` refuses what cannot work before any training (issue #23 items 4, 5, 9,
13): every row of tests/bad_input_cases/train_data.py, a diverging run, a saved state, the
output directory, the memory a network needs, and the help texts."""
import json
import os
import pathlib
import pickle
import sys

import numpy as np
import pytest

from xnorflow.cli import build_parser, main

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bad_input_cases import train_data  # noqa: E402

TRAIN = ["train", "--method", "ste", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet"]


@pytest.fixture(scope="module")
def table_files(tmp_path_factory):
    """The files the table's rows name, and a compiled digits-shaped model for ``{model}``."""
    from xnorflow.sw import xnf
    from xnorflow.sw.random_models import random_model
    tmp = tmp_path_factory.mktemp("bad-input")
    train_data.make_files(tmp)
    model = tmp / "model.xnf"
    model.write_bytes(xnf.to_bytes(random_model(np.random.default_rng(0), [64, 16, 10], 4)))
    return tmp, model


def _fill(argv, tmp, model):
    return [a.replace("{tmp}", str(tmp)).replace("{model}", str(model)) for a in argv]


@pytest.mark.parametrize("argv,expected", train_data.CASES,
                         ids=[f"{i}-{' '.join(a[:1] + a[-4:])}" for i, (a, _) in enumerate(train_data.CASES)])
def test_bad_input_table_row(table_files, argv, expected, capsys):
    """Exit status 2, the expected text on the one error line, no traceback, nothing run from a
    malicious file, and no training: no output directory appears."""
    tmp, model = table_files
    before = set(os.listdir(tmp))
    try:
        rc = main(_fill(argv, tmp, model))
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert rc == 2, err
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err
    assert not (tmp / "MARKER").exists()
    assert set(os.listdir(tmp)) == before  # no o/, o-NAME/ or e.xnf left behind


def test_out_is_checked_before_the_data_is_read(tmp_path, capsys):
    """An unusable --out is reported, not the (also wrong) data directory read after it."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--method", "ste", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"),
              "--out", str(tmp_path / "afile")])
    assert exc.value.code == 2
    assert f"argument --out: {tmp_path / 'afile'} is a file, expected a directory" in capsys.readouterr().err


def test_a_diverging_run_stops_at_once_naming_lr(tmp_path, capsys):
    """fp at lr 1e30 reaches a NaN loss in the first epoch: exit 2, no model, no empty directory."""
    out = tmp_path / "o"
    rc = main(["train", "--method", "fp", "--dataset", "digits", "--epochs", "3", "--hidden", "16", "--lr", "1e30",
               "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("xnorflow train: error: --lr: training diverged: the loss became nan at step ")
    assert "of epoch 1 (fp, learning rate 1e+30); use a smaller one" in err
    assert not out.exists()


def test_a_saved_state_is_refused_without_resume_and_discarded_with_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    state = out / "train_state.pt"
    state.write_bytes(b"an interrupted run")
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"xnorflow train: error: --out: {state} holds the saved state of an interrupted run: continue "
                   f"it with --resume, or discard it and start afresh with --overwrite\n")
    assert state.read_bytes() == b"an interrupted run"
    assert main([*TRAIN, "--overwrite", "--out", str(out)]) == 0
    assert not state.exists() and (out / "model.pt").exists()


def test_a_finished_model_in_out_is_replaced_when_the_new_run_ends(tmp_path):
    """Allowed (the --out help says so): only the new run's end replaces it."""
    out = tmp_path / "o"
    assert main([*TRAIN, "--seed", "0", "--out", str(out)]) == 0
    assert main([*TRAIN, "--seed", "1", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1
    from xnorflow.sw.train.checkpoint import load_checkpoint
    assert load_checkpoint(str(out / "model.pt"))[1]["metrics"]["seed"] == 1


def test_a_network_larger_than_memory_is_refused_before_allocation(tmp_path, capsys):
    from xnorflow.sw.train.cli import physical_memory
    widths = [65536] * 3
    need = 16 * (64 * widths[0] + sum(a * b for a, b in zip(widths, widths[1:])))
    if physical_memory() is None or physical_memory() >= need:
        pytest.skip("this machine could hold the network")
    rc = main([*TRAIN[:-3], "--hidden", ",".join(map(str, widths)), "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("xnorflow train: error: --hidden: the network has 8,595,")  # weights 8,594,718,720
    assert "parameters; training it needs about 128.1 GiB but this machine has " in err
    assert not (tmp_path / "o").exists()


def _write_cifar(directory):
    """Six CIFAR-10 batch files of two images each (the loader's real format)."""
    from xnorflow.sw import data
    directory.mkdir()
    rng = np.random.default_rng(0)
    for name in data.CIFAR10_TRAIN_FILES + (data.CIFAR10_TEST_FILE,):
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("option", [["--augment-shift", "1"], ["--augment-flip"]])
def test_augmentation_of_colour_images_is_refused_naming_the_option(tmp_path, capsys, option):
    _write_cifar(tmp_path / "cifar")
    rc = main(["train", "--method", "ste", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"),
               "--epochs", "1", "--hidden", "16", *option, "--quiet", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert capsys.readouterr().err == (f"xnorflow train: error: {option[0]}: needs square single-channel images; "
                                       "cifar10 images are 32x32x3\n")


def _train_options():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return [a for a in sub.choices["train"]._actions if a.dest != "help"]


def test_every_train_option_says_what_it_does_and_its_default():
    for action in _train_options():
        text = action.help or ""
        assert len(text) > 20 and ("default" in text or "required" in text), action.option_strings


@pytest.mark.parametrize("option,quoted", [
    ("--epochs", "default digits 60, fashion-mnist 80, mnist 20, cifar10 40"),
    ("--lr", "default digits 0.003 (rbnn 0.01), fashion-mnist 0.006, mnist 0.001, cifar10 0.001"),
    ("--batch-size", "default digits 64, fashion-mnist 256, mnist 128, cifar10 128"),
    ("--hidden", "default digits 256,256, fashion-mnist 256,256,256, mnist 256,256,256"),
    ("--input-bits", "default digits 4, fashion-mnist 8, mnist 8, cifar10 8"),
    ("--input-dropout", "default digits 0, fashion-mnist 0.1 (rbnn 0.2), mnist 0, cifar10 0"),
    ("--distill", "default digits none, fashion-mnist fp, mnist none, cifar10 none"),
    ("--bn-recalibrate", "default digits off, fashion-mnist on, mnist off, cifar10 off"),
    ("--seed", "(default 0)"),
    ("--overwrite", "--resume or --overwrite"),
    ("--out", "replaced only when the new run ends"),
])
def test_help_quotes_the_real_defaults(option, quoted):
    text = next(a.help for a in _train_options() if option in a.option_strings)
    assert quoted in " ".join(text.split()), text
