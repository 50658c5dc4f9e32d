"""The dataflow accelerator's per-layer engines (issue #25): one matrix-vector unit per dense
layer, chained by streams, each with its own weight and threshold memories.

Gateware only: nothing here imports from ``sw`` or ``sim``. The shape, memory layout and
stream formats are :mod:`xnorflow.hw.dataflow.shape`; the cycle model :mod:`xnorflow.hw.dataflow.timing`; the
software packer ``sw/layers/dataflow_pack.py``.
"""
