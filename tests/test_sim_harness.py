"""The Verilator C++ harness and its transport, on a loopback top (no link, no core).

One harness build for the whole session (cached under build/sim/ across sessions too).
"""
import random

import pytest

from xnorflow.sw import protocol as P
from xnorflow.sw.driver import TransportTimeout

pytestmark = pytest.mark.verilator


@pytest.fixture(scope="session")
def loopback_exe():
    from xnorflow.sim.build import TopSpec, build_harness
    spec = TopSpec("xnorflow.sim.loopback:loopback", {"depth": 16}, "loopback",
                   sources=("sim/loopback.py",))
    return build_harness(spec, waves=False)


@pytest.fixture
def transport(loopback_exe):
    from xnorflow.sim.verilator_transport import VerilatorTransport
    t = VerilatorTransport(loopback_exe)
    yield t
    t.close()


def test_frames_round_trip_with_exact_cycle_counts(transport):
    # The loopback's buffered FIFO returns every byte two cycles after taking it, so a frame
    # of n bytes is complete n + 2 cycles after its first byte: the harness counts exactly that.
    for n in (0, 1, 5, 250):
        frame = P.encode_response(P.Status.OK, bytes(range(n)))
        before = transport.cycles
        assert transport.transact(frame) == frame
        assert transport.last.cycles == len(frame) + 2
        assert transport.cycles == before + len(frame) + 2
        assert P.decode_response(frame).payload == bytes(range(n))


def test_pipelined_frames_with_random_gaps_and_backpressure(transport):
    rng = random.Random(7)
    frames = [P.encode_response(rng.randrange(7), rng.randbytes(rng.randrange(40)))
              for _ in range(60)]
    transport.transact_many(frames)
    fast = transport.last.cycles
    transport.set_gaps(400, 400, seed=3)
    assert transport.transact_many(frames) == frames
    # Idle gaps and backpressure must show up as extra cycles, not as lost bytes.
    assert transport.last.cycles > fast * 1.3


def test_bytes_outside_frames_pass_through_and_sync_is_found(transport):
    frame = P.encode_response(P.Status.BAD_CRC)
    ex = transport.exchange(b"\x00\xff\x13" + frame, frames=1)
    assert ex.frames == [frame]
    assert ex.out == b"\x00\xff\x13" + frame


def test_cycle_bound_is_a_timeout_never_a_hang(transport):
    ex = transport.exchange(b"", frames=1, max_cycles=5000)
    assert ex.timed_out and ex.cycles == 5000 and ex.frames == []
    # A truncated frame: the header promises 100 payload bytes that never come.
    with pytest.raises(TransportTimeout, match="0 of 1 response frames"):
        transport.transact(P.encode_response(0, bytes(100))[:20], max_cycles=3000)
    assert transport.last.cycles == 3000


def test_idle_and_reset(transport):
    ex = transport.idle(123)
    assert ex.cycles == 123 and not ex.timed_out and ex.out == b""
    before = transport.cycles
    transport.reset(4)
    assert transport.cycles == before + 4
    frame = P.encode_response(0, b"after reset")
    assert transport.transact(frame) == frame


@pytest.mark.slow
def test_waveforms_only_on_request(monkeypatch, tmp_path):
    """XNORFLOW_WAVES=1 selects a tracing build and writes a waveform (FST where the wheel's
    FST writer builds, else VCD); without it no tracing build is made."""
    from xnorflow.sim.build import TopSpec, build_dir, wave_suffix
    from xnorflow.sim.verilator_transport import VerilatorTransport
    spec = TopSpec("xnorflow.sim.loopback:loopback", {"depth": 16}, "loopback",
                   sources=("sim/loopback.py",))
    monkeypatch.setenv("XNORFLOW_WAVES", "1")
    with VerilatorTransport(spec, trace=tmp_path / f"w{wave_suffix()}") as t:
        frame = P.encode_response(0, b"wave")
        assert t.transact(frame) == frame
    data = (tmp_path / f"w{wave_suffix()}").read_bytes()
    assert len(data) > 100
    if wave_suffix() == ".vcd":
        assert b"in_valid" in data
    monkeypatch.delenv("XNORFLOW_WAVES")
    with VerilatorTransport(spec) as t:
        assert t.trace is None
    assert (build_dir(spec) / "harness").is_dir()


@pytest.mark.slow
def test_cocotb_bench_classes_on_the_loopback():
    """The cocotb driver/monitor/scoreboard (sim/testbench.py) with 30 % idle gaps and 30 %
    backpressure: 40 frames come back exactly (sim/cocotb/tb_loopback.py)."""
    from xnorflow.sim.build import TopSpec
    from xnorflow.sim.cocotb_runner import run_cocotb
    spec = TopSpec("xnorflow.sim.loopback:loopback", {"depth": 16}, "loopback",
                   sources=("sim/loopback.py",))
    assert run_cocotb(spec, "xnorflow.sim.cocotb.tb_loopback") == (1, 0)
