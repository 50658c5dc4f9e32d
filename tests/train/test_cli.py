"""``xnorflow train``: outputs, metrics.json content, and clean exit-2 errors for bad input."""
import json

import pytest

from xnorflow.cli import main


def test_train_writes_model_metrics_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--method", "irnet", "--dataset", "digits", "--epochs", "2", "--hidden", "32",
               "--input-bits", "3", "--quiet", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("method", "dataset", "test_accuracy", "epochs", "train_seconds", "input_bits", "hidden", "history"):
        assert key in m
    assert m["input_bits"] == 3 and m["hidden"] == [32] and len(m["history"]) == 2
    assert {"loss", "train_acc", "test_acc", "t", "k"} <= set(m["history"][0])
    assert (out / "training.png").read_bytes()[:4] == b"\x89PNG"
    from xnorflow.sw.train.checkpoint import load_checkpoint
    model, meta = load_checkpoint(str(out / "model.pt"))
    assert meta["input_bits"] == 3 and meta["max_value"] == 16 and model.input_bits == 3


@pytest.mark.parametrize("args,option", [
    (["--dataset", "fashion-mnist", "--data-dir", "/no/such/dir"], "--data-dir"),
    (["--dataset", "digits", "--hidden", "256,abc"], "--hidden"),
    (["--dataset", "digits", "--hidden", "256,-1"], "--hidden"),
    (["--dataset", "digits", "--input-bits", "0"], "--input-bits"),
    (["--dataset", "digits", "--input-bits", "9"], "--input-bits"),
    (["--dataset", "digits", "--epochs", "0"], "--epochs"),
    (["--dataset", "digits", "--lr", "abc"], "--lr"),
    (["--dataset", "digits", "--input-dropout", "1"], "--input-dropout"),
    (["--dataset", "digits", "--distill-alpha", "1.5"], "--distill-alpha"),
    (["--dataset", "digits", "--weight-decay", "-1"], "--weight-decay"),
])
def test_bad_input_exits_2_naming_the_option(args, option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        rc = main(["train", "--method", "ste", *args, "--out", str(tmp_path / "o")])
        raise SystemExit(rc)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
