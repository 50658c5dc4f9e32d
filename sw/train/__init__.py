"""Training binary MLPs that deploy bit-exactly: IR-Net, RBNN, Self-Binarizing, BWNH, STE, float.

Modules: :mod:`.estimators` (sign + surrogate gradients), :mod:`.quantizers` (weight and
activation quantizers), :mod:`.schedules` (epoch callbacks), :mod:`.models` (``BinaryMLP``, the
deploy contract), :mod:`.bwnh` (hashing), :mod:`.trainer` (the loop), :mod:`.methods` (recipes),
:mod:`.checkpoint`, :mod:`.plots`, :mod:`.cli` (``xnorflow train``). See docs/training.md.
"""
