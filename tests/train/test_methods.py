"""Every method trains to ≥95 % on digits in a short run; SBN saturates and survives its hard swap."""
import pytest

from tests.train.conftest import trained

SHORT_EPOCHS = 15


@pytest.mark.slow
@pytest.mark.parametrize("method", ["irnet", "rbnn", "sbn", "bwnh", "ste", "fp"])
def test_short_run_reaches_95_percent_on_digits(method):
    _, meta, metrics = trained(method, SHORT_EPOCHS)
    assert metrics["test_accuracy"] >= 0.95, (method, metrics["test_accuracy"])
    hist = metrics["history"]
    assert len(hist) == SHORT_EPOCHS and all({"loss", "train_acc", "test_acc"} <= set(h) for h in hist)
    assert metrics["deployable"] == (method != "fp")
    if method == "rbnn":  # the rotation's effect is logged per epoch
        assert all(0.0 <= h["rot_flip_mean"] <= 1.0 for h in hist)
        assert all("rotation_fc0" in h for h in hist)
    if method in ("irnet", "rbnn"):
        ts = [h["t"] for h in hist]
        assert ts == sorted(ts) and ts[0] < ts[-1]
    if method == "bwnh":
        assert 0.9 <= metrics["weight_only_accuracy"] <= 1.0
        assert metrics["deployable_accuracy"] == metrics["test_accuracy"]
        for layer in metrics["hashing"]:
            obj = layer["objective"]
            assert all(b <= a * (1 + 1e-9) for a, b in zip(obj, obj[1:]))


@pytest.mark.slow
def test_sbn_saturates_and_hard_swap_keeps_accuracy():
    _, _, m = trained("sbn", SHORT_EPOCHS)
    assert m["final_sat_weights"] >= 0.99 and m["final_sat_acts"] >= 0.99, m
    # the swap must not lose accuracy (within 1 of 360 test images); it may gain: in a fresh
    # environment on 2026-12-04 the hard network scored 95.83 % against the soft one's 95.00 %
    assert m["hard_test_accuracy"] >= m["soft_test_accuracy"] - 0.005, m
    nus = [h["nu"] for h in m["history"]]
    assert nus == sorted(nus) and nus[-1] == pytest.approx(1000.0)
    assert all("sat_weights" in h and "sat_acts" in h for h in m["history"])
