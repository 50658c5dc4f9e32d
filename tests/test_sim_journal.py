"""``xnorflow sim --state``: a simulation stopped after some chunks continues where it stopped
and ends with the result an uninterrupted run gives; a journal of another run is refused.

The small build of test_sim_accelerator (cached once per machine) and a random model with a
ragged last batch, so chunks, batches and the last partial batch all meet.
"""
import json

import numpy as np
import pytest

from xnorflow.sw.random_models import random_inputs, random_model

pytestmark = pytest.mark.verilator

CONFIG = "4x4x16,w_depth=256,thr_depth=32,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"
SAME = ("images", "batch", "mismatches", "mismatched_images", "accuracy", "cycles_per_inference",
        "cycles_by_layer", "predicted_cycles_match", "simulated_cycles")


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(7)
    model = random_model(rng, [40, 24, 10], 4)
    x = random_inputs(rng, model, 45)
    y = rng.integers(0, 10, len(x))
    return model, x, y


def _sim(case, **kw):
    from xnorflow.simulate import simulate
    model, x, y = case
    return simulate(model, x, y, config=CONFIG, batch=4, progress=False, **kw)


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(case, tmp_path, monkeypatch):
    from xnorflow.journal import Journal
    straight = _sim(case)
    state = tmp_path / "sim.npz"
    record = Journal.record

    def record_then_ctrl_c(self, *args, **kw):  # Ctrl-C right after the second chunk is saved
        record(self, *args, **kw)
        if self.done.sum() == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Journal, "record", record_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _sim(case, state=state, chunk=10)          # chunks of 12 images (3 batches of 4)
    monkeypatch.setattr(Journal, "record", record)
    assert state.exists()
    resumed = _sim(case, state=state, chunk=10, jobs=2)  # jobs change nothing in the result
    assert resumed["resumed_images"] == 24 and resumed["jobs"] == 2
    # The interrupted session's simulators never reported their CPU time: not made up.
    assert resumed["simulator_cpu_seconds"] is None and straight["simulator_cpu_seconds"] > 0
    assert resumed["wall_seconds"] > 0
    assert {k: resumed[k] for k in SAME} == {k: straight[k] for k in SAME}
    assert straight["mismatches"] == 0 and straight["predicted_cycles_match"]
    model, x, _ = case
    with np.load(state) as f:                      # the file holds every image's integers
        assert f["done"].all()
        assert np.array_equal(f["ints"], model.forward(x)[-1][0])
        assert json.loads(str(f["key"]))["chunk"] == 12
    again = _sim(case, state=state, chunk=10)      # complete: nothing left to simulate
    assert again["resumed_images"] == 45
    assert again["simulated_cycles"] == straight["simulated_cycles"]


def test_a_journal_of_another_run_is_refused_by_field(case, tmp_path):
    from xnorflow.journal import JournalError
    model, x, y = case
    state = tmp_path / "sim.npz"
    _sim((model, x[:8], y[:8]), state=state, chunk=4)
    with pytest.raises(JournalError, match="'inputs_sha256'"):
        _sim(case, state=state, chunk=4)
    with pytest.raises(JournalError, match="'chunk' is 4 in the journal but 8"):
        _sim((model, x[:8], y[:8]), state=state, chunk=8)
    state.write_bytes(b"not a journal")
    with pytest.raises(JournalError, match="not a simulation journal"):
        _sim(case, state=state)
