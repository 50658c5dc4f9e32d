"""The driver's framing on pure-Python transports (no RTL): the protocol's reference device
model and pyserial's loop:// port."""
import pytest

from xnorflow.sw import protocol as P
from xnorflow.sw.driver import OverlayDevice, SerialTransport, Transport, TransportError, TransportTimeout


class ReferenceTransport(Transport):
    """xnorflow.sw.protocol.ReferenceLink (the device model) behind the Transport API."""

    def __init__(self, **kw):
        self.link = P.ReferenceLink(**kw)
        self.requests = 0

    def transact(self, request):
        self.requests += 1
        (frame,) = self.link.feed(request)
        return frame

    def close(self):
        pass


def test_reads_and_writes_are_split_to_the_max_payload():
    t = ReferenceTransport(max_payload=32, mem_size=4096)
    acc = OverlayDevice(t, config="4x4x16")
    assert acc.ident().max_payload == 32
    data = bytes(range(256)) * 3
    acc.write(100, data)
    assert t.requests == 1 + -(-len(data) // 28)  # IDENT + WRITE frames of 32 - 4 data bytes
    assert acc.read(100, len(data)) == data
    assert acc.read(99, 2) == b"\x00\x00"


def test_device_errors_surface_with_the_failing_offset():
    acc = OverlayDevice(ReferenceTransport(mem_size=64), config="4x4x16")
    with pytest.raises(P.DeviceError, match="BUS_ERROR at byte offset 4"):
        acc.write(60, bytes(8))


def test_run_without_a_model_is_a_clear_error():
    acc = OverlayDevice(ReferenceTransport(), config="4x4x16")
    from xnorflow.sw.driver import DriverError
    with pytest.raises(DriverError, match="no model loaded"):
        acc.run([[0]])


def test_serial_transport_frames_and_times_out_clearly():
    with SerialTransport("loop://", timeout=0.3) as t:
        frame = P.encode_response(P.Status.OK, b"\x5a\xa5 payload with sync bytes")
        assert t.transact(frame) == frame  # loop:// echoes: the framing finds the whole frame
        with pytest.raises(TransportTimeout, match="no complete response from 'loop://'"):
            t.transact(P.ident_request())  # echoed as a request (0xA5): never a response


def test_serial_transport_bad_port():
    with pytest.raises(TransportError, match="cannot open serial port"):
        SerialTransport("/dev/does-not-exist-xnorflow")


def test_cocotb_scoreboard_reports_every_kind_of_difference():
    from xnorflow.sim.testbench import Scoreboard
    sb = Scoreboard()
    sb.expect(P.Response(P.Status.OK, b"\x01"))
    sb.expect(lambda r: None if r.payload == b"ok" else "wrong payload")
    sb.expect(None)
    sb.expect(P.Response(P.Status.OK))
    sb.on_response(P.Response(P.Status.OK, b"\x02"))
    sb.on_response(P.Response(P.Status.OK, b"no"))
    sb.on_response(P.Response(P.Status.BAD_CRC))  # anything goes
    with pytest.raises(AssertionError, match="3 scoreboard errors"):
        sb.result()  # two mismatches and one response that never came


def test_uart_figures_of_a_run():
    """A run's wire time at the board's baud: bytes from the driver's frames, 10 bits each."""
    import numpy as np

    from xnorflow.sw.errors import XnorflowError
    from xnorflow.profile import host_link_numbers
    from xnorflow.sw.random_models import random_model
    from xnorflow.sw.synth import build_label, uart_rate
    model = random_model(np.random.default_rng(0), [64, 32, 10], 4)
    assert uart_rate(24.0) == 24e6 / 208  # divisor round(24 MHz / 115,200 Bd) = 208
    assert uart_rate(24.0, 3_000_000) == 3e6  # divisor 8
    with pytest.raises(XnorflowError, match="--baud 8000000: a 24 MHz clock makes at most 6,000,000 Bd"):
        uart_rate(24.0, 8_000_000)
    from xnorflow.hw.config import ArrayConfig
    assert build_label(ArrayConfig(), 50.0) == "8x8x32@50MHz"  # default builds keep their names
    assert build_label(ArrayConfig(), 50.0, 3_000_000) == "8x8x32@50MHz-3000000Bd"
    assert build_label(ArrayConfig(), 50.0, placer="heap") == "8x8x32@50MHz"
    assert build_label(ArrayConfig(), 50.0, placer="static") == "8x8x32@50MHz-static"
    link = host_link_numbers(model, "4x4x16", 4, compute_seconds=1e-4, baud=115_200)
    # inputs: 4 bit-planes of 64/16 words, 2 bytes each, per sample, in one WRITE frame
    assert link["bytes_to_device"] > 4 * 4 * 4 * 2
    wire = 10 * (link["bytes_to_device"] + link["bytes_from_device"]) / 115_200
    assert link["link_seconds_per_run"] == pytest.approx(wire)
    assert link["inferences_per_second"] == pytest.approx(4 / (wire + 1e-4))
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.profile import format_profile, profile_numbers
    from xnorflow.sw.program import predict_cycles
    result = profile_numbers(model, ArrayConfig.parse("4x4x16"),
                             predict_cycles(model.layers, "4x4x16", 4), 4, 30.0, 24.0)
    result.update(model="m", board="icebreaker", array="4x4x16", cycles_checked_in_simulation=False,
                  host_link=link)
    assert f"{link['bytes_to_device']:,} bytes in" in format_profile(result)


def test_config_comes_from_the_registers_when_ident_carries_none():
    """A build whose IDENT block has no configuration text: the driver reads CONFIG and the
    DEPTHS registers (xnorflow.hw.core.memory_map.config_from_registers) and gets the same config."""
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.hw.link import HostLink
    from xnorflow.hw.top import OverlayAccelerator
    from xnorflow.sim.amaranth_transport import AmaranthTransport
    config = ArrayConfig.parse("2x2x8,w_depth=64,thr_depth=16,in_depth=64,act_depth=16,"
                               "out_depth=16,desc_depth=4,acc_width=12,conv=0")
    top = OverlayAccelerator(config, max_payload=128, timeout=2000)
    top.link = HostLink(max_payload=64, timeout=2000, config=b"")
    with AmaranthTransport(top) as transport:
        assert OverlayDevice(transport).config == config
