"""The command floor: what combines the floors below it into the user's commands.

``hw/`` (gateware) ← ``sw/`` (the library: model file, layers, compiler, training, driver,
synthesis) ← ``sim/`` (the simulated board: builds, transports, harnesses) ← this floor (the
``xnorflow`` entry point, ``sim``, ``profile``, ``run``, the simulation journal, the hardware
targets and opening a transport by name). No module imports from a floor above its own
(tests/test_layout.py).
"""
