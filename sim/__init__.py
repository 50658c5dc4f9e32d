"""Simulation of the whole accelerator: Verilog generation and Verilator builds (``build``),
the fast C++ harness transport (``verilator_transport``), the Amaranth-simulator transport
(``amaranth_transport``), cocotb test benches (``testbench``, ``cocotb/``, ``cocotb_runner``),
protocol fuzzing (``fuzz``), the simulated tops (``tops``, ``loopback``) and ``xnorflow sim``
(``cli``). See docs/simulation.md."""
