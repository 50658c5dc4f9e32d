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

Layer entries have a ``type``: ``dense``, ``conv3x3`` (also ``height``, ``width``,
``in_channels``, ``out_channels``; weights ``[C_out, ceil(9·C_in/8)]`` tap-major, thresholds
per output channel) or ``maxpool2x2`` (``height``, ``width``, ``channels`` and a ``direction``
array: the feeding conv's, OR for +1 and AND for −1); see :mod:`xnorflow.sw.layers.conv`. Each layer
type writes and validates its own entry (``manifest``/``arrays``, ``from_manifest``,
``check_follows`` in :mod:`xnorflow.sw.layers`); this module owns the container and the checks that
span layers.

Loading checks, in order: magic, version, length (truncation), checksum, manifest, then every
layer's fields, shapes and value ranges, then how the layers chain (sizes, image geometry,
pool directions). Every failure raises :class:`XnfError`, whose message
names the file and, where it applies, the layer and the field.
"""
import hashlib
import json
import os
import struct
import tempfile

import numpy as np

from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.golden import HEAD_FIELDS, CompiledModel, Head, InputSpec
from xnorflow.sw.layers import LAYER_TYPES, layer_class

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

def to_bytes(model):
    """Serialise a :class:`CompiledModel` to the bytes of a ``.xnf`` file."""
    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        layers.append(layer.manifest(f"layers.{i}"))
        arrays.update(layer.arrays(f"layers.{i}"))
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


def _umask():
    """The process's umask: from /proc (read-only, safe beside other threads), else by
    setting it and straight back (the only portable way to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, data):
    """Write ``data`` to ``path`` atomically: readers see the old file or the new, never half."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        # mkstemp creates the file 0600; a model or report is an ordinary file of the user's,
        # so give it the mode open() would (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
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
    return ManifestReader(path, manifest, payload).model()


class ManifestReader:
    """Turns a checked manifest and payload into a validated CompiledModel.

    The layer types validate their own entries through :meth:`get`, :meth:`array`,
    :meth:`positive_ints` and :meth:`fail` (see :class:`xnorflow.sw.layers.base.Layer`), so every
    message names the file, the layer and the field the same way.
    """

    def __init__(self, path, manifest, payload):
        self.path, self.manifest, self.payload = path, manifest, payload

    def fail(self, message, layer=None, field=None):
        """Raise :class:`XnfError` naming this file, ``layer`` and ``field``."""
        raise XnfError(self.path, message, layer=layer, field=field)

    def get(self, obj, key, kind, layer=None, where=None):
        """``obj[key]``, which must exist and be of ``kind`` (``int`` excludes bools)."""
        if not isinstance(obj, dict) or key not in obj:
            self.fail("missing", layer=layer, field=where or key)
        value = obj[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(f"must be an integer, got {value!r}", layer=layer, field=where or key)
        if kind is not int and not isinstance(value, kind):
            self.fail(f"has the wrong type ({type(value).__name__})", layer=layer, field=where or key)
        return value

    def array(self, name, dtype, shape, layer=None, field=None):
        """The payload array ``name``, which must have ``dtype`` and ``shape``."""
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
        self.check_unique_names(layers)
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

    def check_unique_names(self, layers):
        """Every command addresses layers by name (counters, tables, journals): one name, one
        layer, checked here so inspect, eval, sim and profile agree on what a file is."""
        seen = set()
        for layer in layers:
            if not isinstance(layer.name, str) or not layer.name:
                self.fail("must be a non-empty string", layer=layer.name, field="name")
            if layer.name in seen:
                self.fail(f"the name {layer.name!r} is used by more than one layer; layer "
                          f"names must be unique", layer=layer.name, field="name")
            seen.add(layer.name)

    def layer(self, i, e, count):
        """Layer ``i`` of ``count``: its type validates its own entry."""
        name = e.get("name", f"#{i}") if isinstance(e, dict) else f"#{i}"
        if not isinstance(e, dict):
            self.fail("layer entry is not an object", layer=name)
        ltype = e.get("type")
        cls = layer_class(ltype)
        if cls is None:
            self.fail(f"unknown layer type {ltype!r} (known: {', '.join(LAYER_TYPES)})", name,
                      "type")
        return cls.from_manifest(self, name, e, last=i == count - 1)

    def positive_ints(self, name, e, keys):
        """The positive integer fields ``keys`` of layer ``name``'s entry ``e`` (geometry)."""
        values = tuple(self.get(e, key, int, name) for key in keys)
        for key, v in zip(keys, values):
            if v <= 0:
                self.fail(f"must be positive, got {v}", name, key)
        return values

    def check_chain(self, layers, features, bits):
        """How the layers chain: the classifier last, the model inputs first, then each pair
        (its type's own rules, binary inputs after the first, sizes)."""
        first = layers[0]
        if not layers[-1].classifier:
            self.fail("the last layer must be a dense layer with raw output (the classifier)",
                      layers[-1].name, "type")
        if first.input_kind != "unsigned":
            self.fail("the first layer takes the unsigned k-bit model inputs", first.name,
                      "input_kind")
        if first.in_features != features or first.input_bits != bits:
            self.fail(f"takes {first.in_features} inputs of {first.input_bits} bits but the model "
                      f"input is {features} of {bits} bits", first.name, "in_features")
        for prev, layer in zip(layers, layers[1:]):
            layer.check_follows(self, prev)
            if layer.input_kind != "binary":
                self.fail("layers after the first take binary inputs", layer.name, "input_kind")
            if layer.in_features != prev.out_features:
                self.fail(f"in_features {layer.in_features} does not match the previous layer "
                          f"'{prev.name}' out_features {prev.out_features}", layer.name,
                          "in_features")
