"""The golden model against qonnx's executor, image by image.

:func:`compare` feeds the same raw images to both — the golden model through
:func:`xnorflow.sw.data.quantize_inputs`, the ONNX graph as ``raw/S`` (:func:`xnorflow.sw.qonnx.inputs.onnx_input`)
run by :func:`qonnx.core.onnx_exec.execute_onnx` — and counts, with no tolerance, the images
whose class differs, the last layer's integers that differ, and the hidden integers and bits
that differ wherever the graph has a tensor for them (the import's trace says where and how:
``gain·acc + offset``, NCHW against HWC). Used by the tests and ``benchmarks/qonnx_check.py``.
"""
import copy
import warnings

import numpy as np

from xnorflow.sw.bits import unpack_bits
from xnorflow.sw.data import quantize_inputs
from xnorflow.sw.qonnx.inputs import onnx_input

CHUNK = 100


class Executor:
    """An ONNX model ready for ``execute_onnx`` on batches of images.

    Batches change the graph's batch dimension with qonnx's own ChangeBatchSize, on the
    model as it is or, when that fails (a Reshape of constants computed in the graph, as
    the TorchScript exporter writes pads), after qonnx's FoldConstants; when
    neither works, images run one at a time on the model as it is. ``mode`` says which.
    """

    def __init__(self, path):
        from qonnx.core.modelwrapper import ModelWrapper
        self.model = ModelWrapper(str(path))
        inits = {i.name for i in self.model.graph.initializer}
        self.input = next(i.name for i in self.model.graph.input if i.name not in inits)
        self.output = self.model.graph.output[0].name
        dims = self.model.graph.input[[i.name for i in self.model.graph.input].index(self.input)]
        self.shape = (1,) + tuple(d.dim_value for d in dims.type.tensor_type.shape.dim[1:])
        self.mode = None
        self._batched = {}

    def batched(self, size):
        """The model with batch ``size``, or None when qonnx cannot change it."""
        if size not in self._batched:
            self._batched[size] = None
            for cleaned in (False, True):
                model = self._try_batch(size, cleaned)
                if model is not None:
                    self._batched[size] = model
                    self.mode = "batched after qonnx constant folding" if cleaned else "batched"
                    break
        return self._batched[size]

    def _try_batch(self, size, cleaned):
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.change_batchsize import ChangeBatchSize
        from qonnx.transformation.fold_constants import FoldConstants
        from qonnx.transformation.infer_shapes import InferShapes
        try:
            with _quiet():
                m = ModelWrapper(copy.deepcopy(self.model.model))
                if cleaned:  # cleanup's constant folding, keeping the tensor names
                    m = m.transform(InferShapes()).transform(
                        FoldConstants(exclude_op_types=["Quant", "BipolarQuant"]))
                m = m.transform(ChangeBatchSize(size)).transform(InferShapes())
                if not m.check_all_tensor_shapes_specified() or \
                        tuple(m.get_tensor_shape(m.graph.output[0].name))[0] != size:
                    return None
                self._execute(m, np.zeros((size,) + self.shape[1:], np.float32), [])
            return m
        except Exception:  # the graph computes a shape qonnx cannot rewrite
            return None

    def _execute(self, model, x, tensors):
        from qonnx.core.onnx_exec import execute_onnx
        inits = {i.name for i in model.graph.initializer}
        name = next(i.name for i in model.graph.input if i.name not in inits)
        with _quiet():
            ctx = execute_onnx(model, {name: x}, return_full_exec_context=True)
        out = model.graph.output[0].name
        return {t: np.asarray(ctx[out if t == self.output else t]) for t in tensors}

    def run(self, x, tensors):
        """``{tensor: array [B, ...]}`` for the images ``x`` [B, ...] (the graph's input shape
        with batch B)."""
        model = self.batched(len(x)) if len(x) > 1 else None
        if model is not None:
            return self._execute(model, x, tensors)
        self.mode = self.mode or "per image"
        parts = [self._execute(self.model, x[i:i + 1], tensors) for i in range(len(x))]
        return {t: np.concatenate([p[t] for p in parts]) for t in tensors}


class _quiet:
    """Silence qonnx's shape warnings and onnxruntime's error log while trying a graph."""

    def __enter__(self):

        import onnxruntime
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        onnxruntime.set_default_logger_severity(4)
        return self

    def __exit__(self, *exc):
        import onnxruntime
        onnxruntime.set_default_logger_severity(2)
        self._warnings.__exit__(*exc)
        return False


def _hwc(a, image):
    """An NCHW tensor [B, C, H, W] as xnorflow's HWC vectors [B, H·W·C]."""
    a = np.asarray(a)
    if image and a.ndim == 4:
        return a.transpose(0, 2, 3, 1).reshape(len(a), -1)
    return a.reshape(len(a), -1)


def compare(imported, onnx_path, raw, progress=None, executor=None):
    """Counts of differences between the golden model of ``imported`` (an
    :class:`~xnorflow.sw.qonnx.importer.Imported`) and the executor on ``onnx_path`` for raw images
    ``raw`` [B, features]; ``progress``: a bar to update per chunk."""
    model = imported.model
    executor = executor or Executor(onnx_path)
    traces = imported.trace
    by_name = {layer.name: layer for layer in model.layers}
    wanted = {executor.output}
    for t in traces:
        wanted.update(v for v in (t.acc_tensor, t.bits_tensor) if v)
    totals = {"images": 0, "class_disagreements": 0, "last_layer_integer_differences": 0,
              "hidden_integer_differences": 0, "hidden_bit_differences": 0,
              "scores_identical": True}
    per_layer = {t.layer: {"name": t.layer, "integer_differences": None, "bit_differences": None}
                 for t in traces}
    classes_out = []
    for start in range(0, len(raw), CHUNK):
        chunk = np.asarray(raw[start:start + CHUNK])
        xq = quantize_inputs(chunk, model.input.bits, model.input.max_value)
        golden = dict(zip((layer.name for layer in model.layers), model.forward(xq)))
        ctx = executor.run(onnx_input(chunk, imported.input_scale, executor.shape), sorted(wanted))
        scores = model.head.scores(golden[model.layers[-1].name][0])
        ours, theirs = scores.argmax(axis=1), np.asarray(ctx[executor.output]).argmax(axis=1)
        classes_out.append(theirs)
        totals["images"] += len(chunk)
        totals["class_disagreements"] += int((ours != theirs).sum())
        totals["scores_identical"] &= bool(np.array_equal(
            scores, np.asarray(ctx[executor.output], dtype=np.float64).reshape(scores.shape)))
        for i, t in enumerate(traces):
            acc, out = golden[t.layer]
            layer = by_name[t.layer]
            entry = per_layer[t.layer]
            if t.acc_tensor is not None:
                n = _integer_differences(t, acc, ctx[t.acc_tensor], layer)
                entry["integer_differences"] = (entry["integer_differences"] or 0) + n
                key = "last_layer_integer_differences" if i == len(traces) - 1 \
                    else "hidden_integer_differences"
                totals[key] += n
            if t.bits_tensor is not None:
                ref = unpack_bits(out, layer.out_features)
                got = _hwc(ctx[t.bits_tensor], t.image) == t.high
                n = int((ref != got).sum())
                entry["bit_differences"] = (entry["bit_differences"] or 0) + n
                totals["hidden_bit_differences"] += n
        if progress is not None:
            progress.update(len(chunk))
    totals["layers"] = list(per_layer.values())
    totals["classes"] = np.concatenate(classes_out) if classes_out else np.zeros(0, np.int64)
    return totals


def _integer_differences(trace, acc, onnx_acc, layer):
    """Elements where the graph's accumulator is not ``gain·acc + offset`` (per channel)."""
    channels = layer.out_channels
    acc = np.asarray(acc).reshape(len(acc), -1, channels)
    signed = np.where(trace.flip[None, None, :], -acc, acc) if trace.flip is not None else acc
    want = signed * trace.gain[None, None, :] + trace.offset[None, None, :]
    got = _hwc(onnx_acc, trace.image).reshape(want.shape)
    return int((got.astype(np.float64) != want).sum())
