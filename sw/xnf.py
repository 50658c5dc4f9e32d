"""The compiled-model file (``.xnf``): a versioned, self-describing, checksummed container.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"XNORFLOW"
    8       2     format version (this code reads and writes version 1)
    10      4     manifest length L (bytes of UTF-8 JSON)
    14      8     payload length P (bytes)
    22      L     manifest (JSON): model description and an index of the arrays
    22+L    P     payload: the arrays' raw bytes (C order, little-endian dtypes)
    22+L+P  32    SHA-256 of every byte before it

The manifest names every array with its dtype, shape and byte range in the payload, so a file
can be read without this library. Writing is atomic (a temporary file in the same directory,
then ``os.replace``): a crash never leaves a half-written model under the target name.

Loading checks, in order: magic, version, length (truncation), checksum, manifest, then every
layer's fields, shapes and value ranges. Every failure raises :class:`XnfError`, whose message
names the file and, where it applies, the layer and the field.
"""
import hashlib
import json
import os
import struct
import tempfile

import numpy as np

from sw import bits as B
from sw.errors import XnorflowError
from sw.golden import HEAD_FIELDS, CompiledModel, Head, InputSpec
from sw.layers.dense import INPUT_KINDS, OUTPUT_KINDS, DenseLayer

MAGIC = b"XNORFLOW"
VERSION = 1
_HEADER = struct.Struct("<8sHIQ")
_DIGEST = 32
_ALLOWED_DTYPES = {"uint8", "int8", "int32", "float64"}


class XnfError(XnorflowError, ValueError):
    """A model file that cannot be used; the message names the file, layer and field."""

    def __init__(self, path, message, layer=None, field=None):
        self.path, self.layer, self.field = str(path), layer, field
        where = [self.path]
        if layer is not None:
            where.append(f"layer '{layer}'")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}")


# ---------------------------------------------------------------- writing

def _layer_manifest(i, layer, arrays):
    prefix = f"layers.{i}"
    entry = {
        "name": layer.name, "type": layer.type,
        "in_features": layer.in_features, "out_features": layer.out_features,
        "input_kind": layer.input_kind, "input_bits": layer.input_bits, "output": layer.output,
        "arrays": {"weights": f"{prefix}.weights"},
        "extra": layer.extra,
    }
    arrays[f"{prefix}.weights"] = np.asarray(layer.weights, dtype=np.uint8)
    if layer.output == "threshold":
        entry["arrays"]["threshold"] = f"{prefix}.threshold"
        entry["arrays"]["direction"] = f"{prefix}.direction"
        arrays[f"{prefix}.threshold"] = np.asarray(layer.threshold, dtype=np.int32)
        arrays[f"{prefix}.direction"] = np.asarray(layer.direction, dtype=np.int8)
    return entry


def to_bytes(model):
    """Serialise a :class:`CompiledModel` to the bytes of a ``.xnf`` file."""
    arrays = {}
    layers = [_layer_manifest(i, layer, arrays) for i, layer in enumerate(model.layers)]
    for f in HEAD_FIELDS:
        arrays[f"head.{f}"] = np.asarray(getattr(model.head, f), dtype=np.float64)
    index, chunks, offset = {}, [], 0
    for name, arr in arrays.items():
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        index[name] = {"dtype": arr.dtype.name, "shape": list(arr.shape),
                       "offset": offset, "nbytes": len(data)}
        chunks.append(data)
        offset += len(data)
    manifest = {
        "format": "xnorflow-model", "version": VERSION, "name": model.name,
        "input": {"features": model.input.features, "bits": model.input.bits,
                  "max_value": model.input.max_value},
        "layers": layers,
        "head": {f: f"head.{f}" for f in HEAD_FIELDS},
        "meta": model.meta,
        "arrays": index,
    }
    mbytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    payload = b"".join(chunks)
    body = _HEADER.pack(MAGIC, VERSION, len(mbytes), len(payload)) + mbytes + payload
    return body + hashlib.sha256(body).digest()


def atomic_write(path, data):
    """Write ``data`` to ``path`` atomically: readers see the old file or the new, never half."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(model, path):
    """Validate ``model`` and write it to ``path`` as a ``.xnf`` file (atomically)."""
    data = to_bytes(model)
    from_bytes(data, path)  # refuse to write anything the loader would reject
    atomic_write(path, data)


# ---------------------------------------------------------------- reading

def load(path):
    """Read and validate a ``.xnf`` file; returns a :class:`CompiledModel`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise XnfError(path, "no such file") from None
    except OSError as e:
        raise XnfError(path, f"cannot read: {e.strerror}") from None
    return from_bytes(data, path)


def from_bytes(data, path="<bytes>"):
    """Parse and validate the bytes of a ``.xnf`` file (see :func:`load`)."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC[:len(data)]:
        raise XnfError(path, "not an xnorflow model file (bad magic bytes)")
    if len(data) < _HEADER.size:
        raise XnfError(path, f"file is truncated: {len(data)} bytes, shorter than the "
                             f"{_HEADER.size}-byte header")
    _, version, mlen, plen = _HEADER.unpack_from(data)
    if version != VERSION:
        raise XnfError(path, f"unknown format version {version}; this xnorflow reads version "
                             f"{VERSION} (recompile the model with this xnorflow)", field="version")
    expected = _HEADER.size + mlen + plen + _DIGEST
    if len(data) < expected:
        raise XnfError(path, f"file is truncated: {len(data)} bytes, the header says {expected}")
    if len(data) > expected:
        raise XnfError(path, f"{len(data) - expected} unexpected bytes after the end of the model")
    body = data[:-_DIGEST]
    if hashlib.sha256(body).digest() != data[-_DIGEST:]:
        raise XnfError(path, "checksum mismatch: the file is corrupted", field="sha256")
    try:
        manifest = json.loads(body[_HEADER.size:_HEADER.size + mlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise XnfError(path, f"manifest is not valid JSON ({e})", field="manifest") from None
    payload = body[_HEADER.size + mlen:]
    return _Reader(path, manifest, payload).model()


class _Reader:
    """Turns a checked manifest and payload into a validated CompiledModel."""

    def __init__(self, path, manifest, payload):
        self.path, self.manifest, self.payload = path, manifest, payload

    def fail(self, message, layer=None, field=None):
        raise XnfError(self.path, message, layer=layer, field=field)

    def get(self, obj, key, kind, layer=None, where=None):
        if not isinstance(obj, dict) or key not in obj:
            self.fail("missing", layer=layer, field=where or key)
        value = obj[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(f"must be an integer, got {value!r}", layer=layer, field=where or key)
        if kind is not int and not isinstance(value, kind):
            self.fail(f"has the wrong type ({type(value).__name__})", layer=layer, field=where or key)
        return value

    def array(self, name, dtype, shape, layer=None, field=None):
        index = self.get(self.manifest, "arrays", dict)
        if name not in index:
            self.fail(f"array '{name}' is not in the file", layer, field)
        entry = index[name]
        if entry.get("dtype") != dtype:
            self.fail(f"dtype is {entry.get('dtype')!r}, expected {dtype}", layer, field)
        if list(entry.get("shape", [])) != list(shape):
            self.fail(f"shape is {entry.get('shape')}, expected {list(shape)}", layer, field)
        offset, nbytes = entry.get("offset"), entry.get("nbytes")
        want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if not (isinstance(offset, int) and isinstance(nbytes, int)) or nbytes != want \
                or offset < 0 or offset + nbytes > len(self.payload):
            self.fail(f"byte range offset={offset} nbytes={nbytes} does not fit the payload "
                      f"({len(self.payload)} bytes) or the shape", layer, field)
        return np.frombuffer(self.payload, dtype=np.dtype(dtype).newbyteorder("<"),
                             count=want // np.dtype(dtype).itemsize, offset=offset) \
            .reshape(shape).astype(dtype)

    def model(self):
        m = self.manifest
        if not isinstance(m, dict) or m.get("format") != "xnorflow-model":
            self.fail("manifest does not describe an xnorflow model", field="format")
        if m.get("version") != VERSION:
            self.fail(f"manifest version {m.get('version')!r} disagrees with the header "
                      f"({VERSION})", field="version")
        spec = self.get(m, "input", dict)
        features = self.get(spec, "features", int, where="input.features")
        bits = self.get(spec, "bits", int, where="input.bits")
        max_value = self.get(spec, "max_value", (int, float), where="input.max_value")
        if not 1 <= bits <= 8:
            self.fail(f"input bits must be 1..8, got {bits}", field="input.bits")
        if not (features > 0 and max_value > 0):
            self.fail("input features and max_value must be positive", field="input")
        entries = self.get(m, "layers", list)
        if not entries:
            self.fail("the model has no layers", field="layers")
        layers = [self.layer(i, e, len(entries)) for i, e in enumerate(entries)]
        self.check_chain(layers, features, bits)
        head = self.get(m, "head", dict)
        classes = layers[-1].out_features
        values = {}
        for f in HEAD_FIELDS:
            values[f] = self.array(self.get(head, f, str, where=f"head.{f}"), "float64",
                                   [classes], field=f"head.{f}")
            if not np.isfinite(values[f]).all():
                self.fail("must hold finite numbers", field=f"head.{f}")
        if (values["sigma"] == 0).any():
            self.fail("must not be zero", field="head.sigma")
        return CompiledModel(name=str(m.get("name", "")), input=InputSpec(features, bits, max_value),
                             layers=layers, head=Head(**values), meta=m.get("meta") or {})

    def layer(self, i, e, count):
        name = e.get("name", f"#{i}") if isinstance(e, dict) else f"#{i}"
        if not isinstance(e, dict):
            self.fail("layer entry is not an object", layer=name)
        if e.get("type") != "dense":
            self.fail(f"unknown layer type {e.get('type')!r} (known: dense)", name, "type")
        n = self.get(e, "in_features", int, name)
        mo = self.get(e, "out_features", int, name)
        if n <= 0 or mo <= 0:
            self.fail(f"sizes must be positive, got {n}→{mo}", name, "in_features/out_features")
        kind = self.get(e, "input_kind", str, name)
        if kind not in INPUT_KINDS:
            self.fail(f"must be one of {INPUT_KINDS}, got {kind!r}", name, "input_kind")
        k = self.get(e, "input_bits", int, name)
        if kind == "binary" and k != 1 or not 1 <= k <= 8:
            self.fail(f"{kind} input takes {'1' if kind == 'binary' else '1..8'} bits, got {k}",
                      name, "input_bits")
        output = self.get(e, "output", str, name)
        if output not in OUTPUT_KINDS:
            self.fail(f"must be one of {OUTPUT_KINDS}, got {output!r}", name, "output")
        if (output == "raw") != (i == count - 1):
            self.fail("only the last layer has raw output; every other layer thresholds",
                      name, "output")
        names = self.get(e, "arrays", dict, name)
        weights = self.array(self.get(names, "weights", str, name, "arrays.weights"), "uint8",
                             [mo, B.packed_len(n)], name, "weights")
        pad = ~B.valid_mask(n)
        if (weights & pad).any():
            self.fail("padding bits past in_features must be 0", name, "weights")
        layer = DenseLayer(name=name, in_features=n, out_features=mo, input_kind=kind,
                           input_bits=k, weights=weights, output=output,
                           extra=e.get("extra") or {})
        if output == "threshold":
            thr = self.array(self.get(names, "threshold", str, name, "arrays.threshold"),
                             "int32", [mo], name, "threshold")
            dirs = self.array(self.get(names, "direction", str, name, "arrays.direction"),
                              "int8", [mo], name, "direction")
            lo, hi = layer.acc_range()
            bad = np.flatnonzero((thr < lo - 1) | (thr > hi + 1))
            if bad.size:
                c = int(bad[0])
                self.fail(f"channel {c} threshold {int(thr[c])} is outside [{lo - 1}, {hi + 1}] "
                          f"(the accumulator range ±1; saturate to the bound instead)",
                          name, "threshold")
            bad = np.flatnonzero(np.abs(dirs) != 1)
            if bad.size:
                self.fail(f"channel {int(bad[0])} direction {int(dirs[bad[0]])} is not ±1",
                          name, "direction")
            layer.threshold, layer.direction = thr, dirs
        return layer

    def check_chain(self, layers, features, bits):
        first = layers[0]
        if first.input_kind != "unsigned":
            self.fail("the first layer takes the unsigned k-bit model inputs", first.name,
                      "input_kind")
        if first.in_features != features or first.input_bits != bits:
            self.fail(f"takes {first.in_features} inputs of {first.input_bits} bits but the model "
                      f"input is {features} of {bits} bits", first.name, "in_features")
        for prev, layer in zip(layers, layers[1:]):
            if layer.input_kind != "binary":
                self.fail("layers after the first take binary inputs", layer.name, "input_kind")
            if layer.in_features != prev.out_features:
                self.fail(f"in_features {layer.in_features} does not match the previous layer "
                          f"'{prev.name}' out_features {prev.out_features}", layer.name,
                          "in_features")
