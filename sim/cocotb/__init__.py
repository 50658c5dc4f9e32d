"""cocotb test modules (run inside the simulator by :func:`xnorflow.sim.cocotb_runner.run_cocotb`):
``tb_accelerator`` (random models, registers, bad frames), ``tb_loopback`` (the bench itself),
``tb_model`` (a compiled model's images, ``xnorflow sim --engine cocotb``)."""
