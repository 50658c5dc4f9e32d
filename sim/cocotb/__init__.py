"""cocotb test modules (run inside the simulator by :func:`sim.cocotb_runner.run_cocotb`)."""
