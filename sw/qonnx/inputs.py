"""The ONNX input convention and how it meets xnorflow's k-bit input.

An ONNX graph takes ``x = float32(raw) / float32(S)``: raw pixel values (the integers
``0..ceil(S)``) scaled by the input scale ``S`` — 255 by default, BNN-PYNQ's images in [0, 1];
16 for scikit-learn's digits. Images are NCHW; xnorflow's inputs are HWC-flattened
(docs/conv.md), so :func:`onnx_input` also reorders them.

xnorflow's first layer takes ``u = clip(floor(raw/M·(2^k − 1) + 0.5), 0, 2^k − 1)``
(:func:`xnorflow.sw.data.quantize_inputs`, ``M`` the model's ``max_value``). The importer reads which
level ``u(raw)`` the graph's pre-processing and input quantizer give every raw value and
looks for an ``M`` reproducing them all (:func:`find_max_value`); the exporter writes the
thresholds that give exactly ``u(raw)`` back (:func:`input_thresholds`).
"""
import math
from fractions import Fraction

import numpy as np

from xnorflow.sw.data import quantize_inputs

DEFAULT_INPUT_SCALE = 255.0


def raw_domain(input_scale):
    """The raw pixel values an input scale ``S`` stands for: the integers ``0..ceil(S)``."""
    return np.arange(int(math.ceil(input_scale)) + 1, dtype=np.int64)


def scaled(raw, input_scale):
    """``float32(raw) / float32(S)``, the value the ONNX graph receives for raw pixel values."""
    return np.asarray(raw, dtype=np.float32) / np.float32(input_scale)


def onnx_input(raw, input_scale, shape):
    """ONNX input tensor for raw images ``raw`` [B, features] (HWC-flattened, as xnorflow's
    data sets give them) and the graph's input ``shape`` ([1, N] or [1, C, H, W])."""
    raw = np.asarray(raw)
    x = scaled(raw, input_scale)
    if len(shape) == 4:
        _, c, h, w = shape
        return np.ascontiguousarray(x.reshape(len(raw), h, w, c).transpose(0, 3, 1, 2))
    return x.reshape(len(raw), *shape[1:])


def find_max_value(levels, bits, input_scale):
    """The ``max_value`` M for which ``quantize_inputs(raw, bits, M)`` equals ``levels`` (the
    level ``u`` of every raw value of :func:`raw_domain`), or None.

    Tried in order: ``S`` itself, then numbers inside the interval of M the levels allow
    (solved exactly with fractions from ``j − ½ ≤ raw·(2^k − 1)/M < j + ½``): the binary
    fraction with the fewest digits first (255/16 for 8-bit ``round(16·raw) − 128`` levels
    of raw/16), the midpoint last. Each candidate is checked with :func:`quantize_inputs` itself,
    so float64 rounding cannot make a wrong choice.
    """
    raw = raw_domain(input_scale)
    levels = np.asarray(levels)
    top = (1 << bits) - 1

    def exact(m):
        return m > 0 and math.isfinite(m) and np.array_equal(quantize_inputs(raw, bits, m), levels)

    if exact(float(input_scale)):
        return float(input_scale)
    interval = _interval(raw, levels, top)
    if interval is None:
        return None
    lo, hi = interval
    if hi is None:
        hi = lo * 2 + 1
    for e in range(0, 40):  # the dyadic number of smallest denominator in (lo, hi]
        m = Fraction(math.floor(hi * 2 ** e), 2 ** e)
        if m > lo and exact(float(m)):
            return float(m)
    mid = float((lo + hi) / 2)
    return mid if exact(mid) else None


def _interval(raw, levels, top):
    """(lo, hi) with lo < M ≤ hi (hi None: unbounded) from the levels, or None if empty."""
    lo, hi = Fraction(0), None
    for r, j in zip(raw.tolist(), levels.tolist()):
        if r == 0:
            if j != 0:
                return None
            continue
        if j < top:
            lo = max(lo, Fraction(r * top) / (Fraction(j) + Fraction(1, 2)))
        if j >= 1:
            bound = Fraction(r * top) / (Fraction(j) - Fraction(1, 2))
            hi = bound if hi is None else min(hi, bound)
    if hi is not None and lo >= hi:
        return None
    return lo, hi


def input_thresholds(bits, max_value, input_scale):
    """float32 [2^k − 1] thresholds on ``x = raw/S`` giving ``quantize_inputs(raw, k, M)``
    as the count of thresholds ``x`` reaches, for every raw value of :func:`raw_domain`.

    Threshold ``j`` is ``x`` of the first raw value whose level is at least ``j`` (a level no
    raw value reaches gets the largest float32, never reached). ``x`` grows with raw, so the
    count equals the level exactly.
    """
    raw = raw_domain(input_scale)
    x = scaled(raw, input_scale)
    levels = quantize_inputs(raw, bits, max_value)
    top = (1 << bits) - 1
    out = np.full(top, np.finfo(np.float32).max, dtype=np.float32)
    for j in range(1, top + 1):
        hit = np.flatnonzero(levels >= j)
        if hit.size:
            out[j - 1] = x[hit[0]]
    return out
