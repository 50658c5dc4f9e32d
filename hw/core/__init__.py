"""The accelerator core: PE, systolic array, threshold units, sequencer and the bus-mapped top.

Gateware only: nothing here imports from ``sw`` or ``sim``. The address map the host uses is
:mod:`hw.core.memory_map`.
"""
