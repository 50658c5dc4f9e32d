"""Simulation helpers shared by the core's tests (not gateware; imports nothing from sw/).

Waveforms are written only when the environment asks for them: ``XNF_VCD=dir`` writes
``dir/<name>.vcd`` for every simulation run through :func:`run`.
"""
import os

from amaranth.sim import Simulator

__all__ = ["run"]


def run(dut, *testbenches, name="sim", processes=()):
    """Simulate ``dut`` with a 1 MHz clock on ``sync`` running the async ``testbenches``."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for p in processes:
        sim.add_process(p)
    vcd_dir = os.environ.get("XNF_VCD")
    if vcd_dir:
        os.makedirs(vcd_dir, exist_ok=True)
        with sim.write_vcd(os.path.join(vcd_dir, f"{name}.vcd")):
            sim.run()
    else:
        sim.run()
