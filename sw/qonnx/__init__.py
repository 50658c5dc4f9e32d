"""QONNX in and out: binary networks from Brevitas/FINN as xnorflow models, and back.

* :mod:`xnorflow.sw.qonnx.importer` — ``import_onnx``: a QONNX graph (``Quant``/``BipolarQuant``/
  ``MultiThreshold``, ``MatMul``/``Gemm``/``Conv``, ``BatchNormalization``, ``MaxPool``, …)
  folded into the contracts of ``xnorflow compile``: integer thresholds proven against the
  ONNX executor itself over every reachable accumulator value, the last affine as the host head.
* :mod:`xnorflow.sw.qonnx.exporter` — ``export_onnx``: a compiled model as a QONNX graph that
  ``qonnx``'s executor runs with the golden model's integers and classes.
* :mod:`xnorflow.sw.qonnx.check` — golden model against ``qonnx.core.onnx_exec.execute_onnx``, per image.
* :mod:`xnorflow.sw.qonnx.cli` — ``xnorflow import`` and ``xnorflow export``.

The ONNX packages are an optional extra; :func:`require_extra` turns their absence into a
one-line user error instead of a traceback. docs/qonnx.md describes the op mapping.
"""
import importlib

from xnorflow.sw.errors import XnorflowError

EXTRA_HINT = "install the onnx extra: pip install 'xnorflow[onnx]'"

#: The modules import and export need (brevitas is only used by the tests' model builders).
_REQUIRED = ("onnx", "onnxruntime", "qonnx")


class MissingExtraError(XnorflowError):
    """The optional ONNX packages are not installed."""


def require_extra():
    """Raise :class:`MissingExtraError` (naming the missing module) unless onnx, onnxruntime and
    qonnx import."""
    for name in _REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise MissingExtraError(f"{EXTRA_HINT} (cannot import {name}: {e})") from None
