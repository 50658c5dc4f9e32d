"""cocotb tests of the whole accelerator top (host link + core), bit-exact against the golden
model. Run by tests/test_sim_accelerator.py through :func:`xnorflow.sim.cocotb_runner.run_cocotb`; the
array configuration comes from ``XNF_TB_SPEC``, the random seed from ``XNF_TB_SEED``.

The request frames come from the same helpers the driver uses (``xnorflow.sw.driver.write_frames``,
``read_frames``, ``xnorflow.sw.program``); responses are decoded by the monitor with ``xnorflow.sw.protocol``
and judged by the scoreboard: OK answers to every load write, exact register values, and the
output integers equal to ``CompiledModel.forward`` (the golden model), all of them.
"""
import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.sim.testbench import TopBench
from xnorflow.sw import program
from xnorflow.sw import protocol as P
from xnorflow.sw.driver import read_frames, write_frames
from xnorflow.sw.random_models import random_inputs, random_model

OK = P.Response(P.Status.OK, b"")


def _config():
    spec = json.loads(os.environ["XNF_TB_SPEC"])
    return ArrayConfig.parse(spec["kwargs"].get("config", "8x8x32"))


def _seed():
    return int(os.environ.get("XNF_TB_SEED", "1"))


async def _start(dut, gap, backpressure):
    Clock(dut.clk, 10, unit="ns").start()
    tb = TopBench(dut, gap=gap, backpressure=backpressure, seed=_seed())
    await tb.reset()
    resp = await tb.transact(P.ident_request(), lambda r: None if r.ok else f"IDENT: {r}")
    ident = P.Ident.decode(resp.payload)
    return tb, ident


def _u32(value):
    def check(resp):
        if not resp.ok or resp.payload != value.to_bytes(4, "little"):
            return f"expected OK {value.to_bytes(4, 'little').hex()}, got {resp}"
    return check


@cocotb.test()
async def registers_and_bad_frames(dut):
    """ID register, a read-back register, and corrupted frames answered without side effects,
    all with random idle gaps and backpressure."""
    tb, ident = await _start(dut, gap=0.3, backpressure=0.3)
    rng = random.Random(_seed())
    tb.send(P.read_request(mm.REG_ID, 4), _u32(mm.ID_VALUE))
    for _ in range(8):
        value = rng.randrange(1, 1 << 16)
        bad = bytearray(P.write_request(mm.REG_BATCH, (value ^ 0xFFFF).to_bytes(4, "little")))
        bad[-1] ^= 1 << rng.randrange(8)  # CRC corrupted: must not be executed
        tb.send(P.write_request(mm.REG_BATCH, value.to_bytes(4, "little")), OK)
        tb.send(bytes(bad), P.Response(P.Status.BAD_CRC, b""))
        tb.send(P.encode_request(0x7E), P.Response(P.Status.UNKNOWN_COMMAND, b""))
        tb.send(P.read_request(mm.REG_BATCH, 4), _u32(value))
    await tb.drain(1 + 8 * 4)
    tb.scoreboard.result()


@cocotb.test()
async def inference_is_bit_exact(dut):
    """Load a random model, run a batch, check every output integer and the cycle counters."""
    cfg = _config()
    tb, ident = await _start(dut, gap=0.2, backpressure=0.2)
    rng = np.random.default_rng(_seed())
    model = random_model(rng, [3 * cfg.K // 2 + 3, cfg.P + 3, 2 * cfg.P + 1, 5], 3, name="tb")
    batch = min(cfg.Q + 2, program.max_batch(model.layers, cfg))
    x = random_inputs(rng, model, batch)
    mp = ident.max_payload

    frames = [f for addr, data in program.build_program(model.layers, cfg)
              for f in write_frames(addr, data, mp)]
    frames += [f for addr, data in program.encode_inputs(x, model.input.bits, cfg)
               for f in write_frames(addr, data, mp)]
    frames += write_frames(mm.REG_BATCH, batch.to_bytes(4, "little"), mp)
    frames += write_frames(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]), mp)
    for f in frames:
        tb.send(f, OK)
    await tb.drain(len(frames))

    for _ in range(10_000):  # poll STATUS until the run is over
        resp = await tb.transact(P.read_request(mm.REG_STATUS, 8), None)
        status = int.from_bytes(resp.payload[:4], "little")
        if not status & mm.STATUS_BUSY:
            break
    assert status & mm.STATUS_DONE and not status & mm.STATUS_ERROR, f"status 0x{status:x}"

    predicted = program.predict_cycles(model.layers, cfg, batch)
    tb.send(P.read_request(mm.REG_TOTAL_CYCLES, 4), _u32(predicted["total"]))
    for k, layer in enumerate(model.layers):
        tb.send(P.read_request(mm.LAYER_CYCLES_BASE + 4 * k, 4),
                _u32(predicted["by_layer"][layer.name]))
    addr, length = program.output_region(model.layers, cfg, batch)
    reads = read_frames(addr, length, mp)
    chunks = []
    golden = model.outputs(x)

    def collect(resp):
        chunks.append(resp.payload)
        if not resp.ok:
            return f"output read: {resp}"
        if len(chunks) == len(reads):
            got = program.decode_outputs(b"".join(chunks), model.layers, cfg, batch)
            bad = np.argwhere(got != golden)
            if bad.size:
                b, c = bad[0]
                return (f"{len(bad)} output integers differ from the golden model; first: "
                        f"sample {b} class {c}: RTL {got[b, c]}, golden {golden[b, c]}")

    for f in reads:
        tb.send(f, collect)
    await tb.drain(1 + len(model.layers) + len(reads))
    tb.scoreboard.result()
    dut._log.info(f"{batch} samples bit-exact, {predicted['total']} cycles")
