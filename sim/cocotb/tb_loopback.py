"""cocotb tests of the loopback top: the test-bench classes themselves (gaps, backpressure,
frame decoding, scoreboard), independent of the link and the core."""
import random

import cocotb
from cocotb.clock import Clock

from xnorflow.sim.testbench import TopBench
from xnorflow.sw import protocol as P


@cocotb.test()
async def frames_echo_with_gaps_and_backpressure(dut):
    Clock(dut.clk, 10, unit="ns").start()
    tb = TopBench(dut, gap=0.3, backpressure=0.3, seed=5)
    await tb.reset()
    rng = random.Random(3)
    frames = [P.encode_response(rng.randrange(7), rng.randbytes(rng.randrange(30)))
              for _ in range(40)]
    for f in frames:
        tb.send(f, P.decode_response(f))  # the loopback echoes: expect the frame itself
    await tb.drain(len(frames))
    assert tb.scoreboard.result() == len(frames)
