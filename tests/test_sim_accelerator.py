"""The whole accelerator (hw/top.py: host link + core) on Verilator, bit-exact against the golden
model: the fast C++ harness driven by xnorflow.sw.driver.OverlayDevice, a protocol fuzz interleaved with
inferences, the cocotb test bench, and ``xnorflow sim``.

One small configuration for everything (one Verilog generation, one harness build and one
cocotb build per session, none when build/sim/ has them cached).
"""
import json
import random

import numpy as np
import pytest

from xnorflow.sw import protocol as P
from xnorflow.sw.random_models import random_inputs, random_model

pytestmark = pytest.mark.verilator

CONFIG = "4x4x16,w_depth=256,thr_depth=32,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


@pytest.fixture(scope="session")
def accel_spec():
    from xnorflow.sim.tops import accelerator_spec
    return accelerator_spec(CONFIG)  # the very build `xnorflow sim --array CONFIG` uses


@pytest.fixture(scope="session")
def accel_exe(accel_spec):
    from xnorflow.sim.build import build_harness
    return build_harness(accel_spec, waves=False)


@pytest.fixture
def accel(accel_exe):
    from xnorflow.sim.verilator_transport import VerilatorTransport
    from xnorflow.sw.driver import OverlayDevice
    with VerilatorTransport(accel_exe) as t:
        yield OverlayDevice(t)  # config discovered from the IDENT block


def test_ident_reports_the_build(accel):
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.hw.core import memory_map as mm
    assert accel.config == ArrayConfig.parse(CONFIG)
    assert accel.read32(mm.REG_ID) == mm.ID_VALUE
    assert accel.status() == {"busy": False, "done": False, "error": 0, "error_name": "none"}


@pytest.mark.parametrize("sizes,bits,batch", [
    ([50, 20, 17, 7], 4, 9),           # padding everywhere, partial column group
    ([16, 16, 4], 1, 4),               # binary (1-bit) input, exact multiples
    ([33, 40, 10], 8, 40),             # 8-bit input, a batch larger than one run holds
    ([20, 8, 8, 8, 8, 3], 2, 1),       # deep and narrow, batch of one
], ids=["ragged", "binary-input", "multi-run", "deep"])
def test_random_models_are_bit_exact_and_counters_match_the_model(accel, sizes, bits, batch):
    from xnorflow.sw import program
    rng = np.random.default_rng(sum(sizes) + bits)
    model = random_model(rng, sizes, bits)
    accel.load(model)
    x = random_inputs(rng, model, batch)
    ints, pred = accel.run(x)
    assert (ints == model.forward(x)[-1][0]).all()
    assert (pred == model.predict(x)).all()
    for run in accel.batches:
        assert run["total"] == run["predicted"]["total"]
        assert run["by_layer"] == run["predicted"]["by_layer"]
        assert run["layers_done"] == len(sizes) - 1
    assert len(accel.batches) == -(-batch // program.max_batch(model.layers, accel.config))
    assert accel.counters()["by_layer"] == accel.batches[-1]["by_layer"]


def test_fuzz_interleaved_with_inferences(accel):
    """≥1,000 malformed and valid frames between inferences: every frame answered as the
    reference link answers it (within its cycle bound), every inference still bit-exact."""
    from xnorflow.sim.fuzz import RefuseBus, fuzz_items, run_fuzz
    from xnorflow.sim.tops import SIM_TIMEOUT
    t = accel.transport
    ident = accel.ident()
    rng = random.Random(6)
    nrng = np.random.default_rng(6)
    model = random_model(nrng, [40, 24, 6], 3)
    accel.load(model)
    # The valid frames are IDENTs: the reference model cannot answer for the core's bus, and
    # malformed frames must never reach the bus (RefuseBus would show it as a difference).
    ref = P.ReferenceLink(max_payload=ident.max_payload, addr_width=ident.addr_width,
                          config=ident.config, bus=RefuseBus())
    total = 0
    for round_ in range(6):
        items = fuzz_items(rng, 180, P.ident_request, max_payload=ident.max_payload)
        t.set_gaps(*((0, 0) if round_ % 2 == 0 else (250, 250)), seed=round_ + 1)
        report = run_fuzz(t, items, ref, timeout_cycles=SIM_TIMEOUT)
        total += report["items"]
        x = random_inputs(nrng, model, 5)
        accel.run(x, check=True)  # raises on any integer differing from the golden model
    assert total >= 1000


@pytest.mark.slow
def test_cocotb_testbench(accel_spec):
    """Driver/monitor/scoreboard bench: registers, bad frames and an inference, with random
    idle gaps and backpressure, checked against the golden model (sim/cocotb/)."""
    from xnorflow.sim.cocotb_runner import run_cocotb
    passed, failed = run_cocotb(accel_spec, "xnorflow.sim.cocotb.tb_accelerator", env={"XNF_TB_SEED": 3})
    assert passed == 2 and failed == 0


@pytest.mark.slow
def test_sim_cli_json(accel_spec, accel_exe, tmp_path, capsys):
    """``xnorflow sim`` end to end on the digits data set (a random 64-32-10 model)."""
    from xnorflow.sw import xnf
    from xnorflow.cli import main
    model = random_model(np.random.default_rng(3), [64, 32, 10], 4, name="digits-random")
    path = tmp_path / "m.xnf"
    xnf.save(model, path)
    rc = main(["sim", str(path), "--dataset", "digits", "--engine", "verilator",
               "--limit", "50", "--array", CONFIG, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["images"] == 50 and out["mismatches"] == 0
    assert out["agree_with_torch"] is None and 0 <= out["accuracy"] <= 1
    assert out["predicted_cycles_match"] and out["cycles_per_inference"] > 0
    assert set(out["cycles_by_layer"]) == {"fc1", "fc2"}


class _CountingTransport:
    """Delegates to a transport and counts the bytes each way and the STATUS polls."""

    def __init__(self, inner, status_frame):
        self.inner, self.status_frame = inner, status_frame
        self.to_device = self.from_device = self.polls = 0

    def transact_many(self, requests):
        answers = self.inner.transact_many(requests)
        self.to_device += sum(len(r) for r in requests)
        self.from_device += sum(len(a) for a in answers)
        self.polls += sum(r == self.status_frame for r in requests)
        return answers

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_run_frames_count_the_bytes_a_run_puts_on_the_wire(accel):
    """profile's end-to-end UART figures rest on RunFrames.traffic: it must equal what the
    driver really sends and receives in a run."""
    from xnorflow.sw.driver import run_frames
    rng = np.random.default_rng(7)
    model = random_model(rng, [50, 20, 7], 4)
    accel.load(model)
    x = random_inputs(rng, model, 6)
    frames = run_frames(model.layers, accel.config, x, accel.max_payload)
    counting = _CountingTransport(accel.transport, frames.status[0])
    accel.transport = counting
    accel.run(x)
    assert counting.polls >= 1
    assert frames.traffic(polls=counting.polls) == {"to_device": counting.to_device,
                                                     "from_device": counting.from_device}
