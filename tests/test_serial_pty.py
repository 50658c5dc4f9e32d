"""The real driver path: ``xnorflow.sw.driver.SerialTransport`` (pyserial, unmodified) on a pseudo-terminal
whose other end is the simulated board top (``xnorflow.hw.board.top.UartBridgeTop``: the accelerator
behind ``UartRx``/``UartTx``, the logic of the bitstreams) with its UART pins driven bit by bit
by the Verilator harness ``sim/pty_harness/uart_pty.cpp`` (``sim/pty_board.py``).

One harness build per configuration (cached under build/sim/ across sessions); a fresh board
process (tens of milliseconds to start) per test.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xnorflow.sw import protocol as P
from xnorflow.sw.random_models import random_inputs, random_model

pytestmark = pytest.mark.verilator

REPO = Path(__file__).resolve().parent.parent
CONFIG = "4x4x16,w_depth=256,thr_depth=32,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


@pytest.fixture(scope="session")
def pty_exe():
    from xnorflow.sim.pty_board import build_pty_harness, pty_board_spec
    return build_pty_harness(pty_board_spec(CONFIG))


@pytest.fixture
def port(pty_exe):
    from xnorflow.sim.pty_board import pty_board
    with pty_board(CONFIG, exe=pty_exe) as path:
        yield path


@pytest.fixture
def transport(port):
    from xnorflow.sw.driver import SerialTransport
    with SerialTransport(port, baudrate=115200, timeout=10.0) as t:
        yield t


def _accelerator(transport):
    from xnorflow.sw.driver import OverlayDevice
    return OverlayDevice(transport)  # config discovered from the IDENT block, as on a board


def _check_run(acc, model, x):
    """Integers bit-exact against the golden model, the core's cycle counters equal to
    xnorflow.sw.program.predict_cycles for every batch the driver ran."""
    from xnorflow.sw import program
    acc.batches = []
    ints, pred = acc.run(x)
    assert ints.dtype == np.int64 and ints.shape == (len(x), model.layers[-1].out_features)
    assert (ints == model.forward(x)[-1][0]).all()
    assert (pred == model.predict(x)).all()
    assert sum(b["batch"] for b in acc.batches) == len(x)
    for b in acc.batches:
        want = program.predict_cycles(model.layers, acc.config, b["batch"])
        assert b["total"] == want["total"]
        assert b["by_layer"] == want["by_layer"]
        assert b["layers_done"] == len(model.layers)
    assert acc.counters()["by_layer"] == acc.batches[-1]["by_layer"]


def test_ident_over_the_serial_port(transport):
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.hw.core import memory_map as mm
    acc = _accelerator(transport)
    ident = acc.ident()
    assert ident.version == P.PROTOCOL_VERSION and ident.max_payload == 256
    assert acc.config == ArrayConfig.parse(CONFIG)
    assert acc.read32(mm.REG_ID) == mm.ID_VALUE
    assert acc.status() == {"busy": False, "done": False, "error": 0, "error_name": "none"}


@pytest.mark.parametrize("sizes,bits,batch", [
    ([50, 20, 17, 7], 4, 9),           # padding everywhere, partial column group
    ([16, 16, 4], 1, 4),               # binary (1-bit) input, exact multiples
    ([33, 40, 10], 8, 40),             # 8-bit input, a batch larger than one run holds
], ids=["ragged", "binary-input", "multi-run"])
def test_random_model_over_the_serial_port_is_bit_exact(transport, sizes, bits, batch):
    from xnorflow.sw import program
    acc = _accelerator(transport)
    rng = np.random.default_rng(sum(sizes) * 7 + bits)
    model = random_model(rng, sizes, bits)
    program.build_program(model.layers, acc.config)  # sized for the config: it fits
    acc.load(model)
    _check_run(acc, model, random_inputs(rng, model, batch))
    if batch > program.max_batch(model.layers, acc.config):
        assert len(acc.batches) > 1


def _raw(transport, frame, timeout=10.0):
    """Write bytes as they are (no encoder) and decode the one response frame."""
    return P.decode_response(transport.transact(frame, timeout=timeout))


def test_corrupted_frames_get_error_answers_and_the_next_request_works(transport):
    from xnorflow.hw.core import memory_map as mm
    from xnorflow.sw.driver import TransportTimeout
    acc = _accelerator(transport)
    acc.write(mm.REG_BATCH, (3).to_bytes(4, "little"))

    # A bit flipped in the CRC, in the payload of a WRITE: BAD_CRC, and nothing is written.
    bad = bytearray(P.ident_request())
    bad[-1] ^= 0x10
    assert _raw(transport, bytes(bad)).status == P.Status.BAD_CRC
    bad = bytearray(P.write_request(mm.REG_BATCH, (7).to_bytes(4, "little")))
    bad[6] ^= 0x04
    assert _raw(transport, bytes(bad)).status == P.Status.BAD_CRC
    assert acc.read32(mm.REG_BATCH) == 3

    # Unknown command and wrong length (CRC good): their own error codes.
    assert _raw(transport, P.encode_request(0x7E, b"xy")).status == P.Status.UNKNOWN_COMMAND
    assert _raw(transport, P.encode_request(P.Cmd.READ, b"\0\0")).status == P.Status.BAD_LENGTH

    # A truncated frame: the link's partial-frame timeout answers it (simulated cycles; the
    # harness keeps clocking after the line goes quiet).
    assert _raw(transport, P.write_request(mm.REG_BATCH, bytes(8))[:7]).status \
        == P.Status.TIMEOUT
    assert acc.read32(mm.REG_BATCH) == 3

    # Garbage without a sync byte: skipped, no answer at all; the next request is answered.
    with pytest.raises(TransportTimeout):
        transport.transact(b"\x00\x11garbage\xff" * 4, timeout=0.5)
    acc2 = _accelerator(transport)
    assert acc2.ident().max_payload == 256
    assert acc2.read32(mm.REG_ID) == mm.ID_VALUE

    # And a whole inference still works after all that.
    rng = np.random.default_rng(5)
    model = random_model(rng, [24, 12, 5], 3)
    acc2.load(model)
    _check_run(acc2, model, random_inputs(rng, model, 6))


def test_the_port_can_be_opened_again_and_again(port):
    from xnorflow.hw.core import memory_map as mm
    from xnorflow.sw.driver import SerialTransport
    for _ in range(3):
        with SerialTransport(port, timeout=10.0) as t:
            assert _accelerator(t).read32(mm.REG_ID) == mm.ID_VALUE


def _cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _gone(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited (a zombie waiting for its reaper counts as gone)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_harness_sleeps_when_idle_and_stops_with_its_user(pty_exe, transport, port, tmp_path):
    from xnorflow.hw.core import memory_map as mm
    assert _accelerator(transport).read32(mm.REG_ID) == mm.ID_VALUE
    # Past its idle window (PTY_IDLE_CYCLES after the last byte) the harness sleeps in poll():
    # a whole second then costs it (almost) no CPU. Spinning, it would take a core's worth.
    pid = port.process.pid
    used = []
    for _ in range(10):  # a loaded machine may take a while to simulate the idle window
        before = _cpu_seconds(pid)
        time.sleep(1.0)
        used.append(_cpu_seconds(pid) - before)
        if used[-1] < 0.05:
            break
    assert used[-1] < 0.05, f"CPU seconds per second while idle: {used}"

    # Closing the context stops it on its own (stdin closed: exit status 0, not killed); a
    # requested symlink points at the pty while it runs and is removed afterwards.
    from xnorflow.sim.pty_board import pty_board
    from xnorflow.sw.driver import SerialTransport
    link = tmp_path / "board"
    with pty_board(CONFIG, exe=pty_exe, link=link) as p:
        assert p == str(link) and os.readlink(link) == p.device
        with SerialTransport(p, timeout=10.0) as t:
            assert _accelerator(t).read32(mm.REG_ID) == mm.ID_VALUE
        proc = p.process
    assert proc.returncode == 0 and not link.exists()

    # Its user dies without cleaning up (SIGKILL): the harness must not outlive it.
    code = ("import sys, time\n"
            "from xnorflow.sim.pty_board import pty_board\n"
            f"with pty_board({CONFIG!r}, exe={str(pty_exe)!r}) as p:\n"
            "    print(p.process.pid, flush=True)\n"
            "    time.sleep(60)\n")
    user = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
    try:
        child = int(user.stdout.readline())
        assert not _gone(child)
        user.kill()
        user.wait()
        deadline = time.monotonic() + 5
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child)
    finally:
        user.kill()
        user.stdout.close()
        user.wait()


# Deep enough weight banks for the 64-256-256-10 digits models (tests/test_sim_trained.py).
TRAINED_CONFIG = "4x4x16,w_depth=2048,thr_depth=128,in_depth=256,act_depth=64,out_depth=128,desc_depth=8"


@pytest.mark.slow
def test_trained_model_over_the_serial_port_is_bit_exact(digits_models):
    """A really trained IR-Net digits model, loaded over the serial port, on 40 test images."""
    from xnorflow.sim.pty_board import pty_board
    from xnorflow.sw import xnf
    from xnorflow.sw.driver import SerialTransport
    from xnorflow.sw.evaluate import dataset_inputs
    _, compiled = digits_models("irnet")
    model = xnf.load(compiled)
    x, _ = dataset_inputs(model, "digits", limit=40)
    with pty_board(TRAINED_CONFIG) as port, SerialTransport(port, timeout=20.0) as t:
        acc = _accelerator(t)
        acc.load(model)
        _check_run(acc, model, x)
