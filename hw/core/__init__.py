"""The accelerator core: the bus-mapped top (:mod:`xnorflow.hw.core.core`) and its components, the bus
target, sequencer, array feed, systolic array of PEs, threshold stage and activation writer,
joined by the signatures of :mod:`xnorflow.hw.core.interfaces`.

Gateware only: nothing here imports from ``sw`` or ``sim``. The address map the host uses is
:mod:`xnorflow.hw.core.memory_map` and the pipeline latencies and layer cycle formula are
:mod:`xnorflow.hw.core.timing` (both plain Python, shared with the compiler and the cycle model).
"""
