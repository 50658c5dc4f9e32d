"""One place per layer type: each type is one class in sw/layers/ implementing the whole
interface of xnorflow.sw.layers.base.Layer, and nothing else switches on type strings."""
import ast
import inspect
from pathlib import Path

import numpy as np

from xnorflow.sw import xnf
from xnorflow.sw.layers import LAYER_TYPES, layer_class
from xnorflow.sw.layers.base import Layer
from xnorflow.sw.random_models import random_cnn_model, random_model

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("sw", "sim", "benchmarks")
LAYERS_DIR = ROOT / "sw" / "layers"

# What every layer instance carries (documented on xnorflow.sw.layers.base.Layer).
ATTRIBUTES = ("name", "type", "in_features", "out_features", "out_channels", "out_image",
              "input_kind", "input_bits", "output", "extra", "classifier", "table_note",
              "overlay_one_image")
# The columns of `xnorflow inspect` (sw/layer_table.py); "shape" is optional (in→out otherwise).
COLUMNS = {"name", "type", "in_features", "out_features", "input", "output", "acc_range",
           "threshold_min", "threshold_max", "negative_direction", "saturated_always_0",
           "saturated_always_1", "weight_bytes", "threshold_bytes", "binary_macs"}


def _is_type_name(node, names):
    """A string constant naming a layer type, alone or in a tuple/list/set literal."""
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_is_type_name(e, names) for e in node.elts)
    return False


def type_switches(source, names, filename="<source>"):
    """``[(line, what)]``: comparisons with a layer-type string (``==``, ``!=``, ``in``), dict
    keys and subscripts that are layer-type strings, and ``case "conv3x3":`` patterns."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Compare):
            if any(_is_type_name(n, names) for n in [node.left, *node.comparators]):
                found.append((node.lineno, "comparison"))
        elif isinstance(node, ast.Dict):
            if any(k is not None and _is_type_name(k, names) for k in node.keys):
                found.append((node.lineno, "dict key"))
        elif isinstance(node, ast.Subscript):
            if _is_type_name(node.slice, names):
                found.append((node.lineno, "subscript"))
        elif isinstance(node, ast.MatchValue):
            if _is_type_name(node.value, names):
                found.append((node.lineno, "match case"))
    return found


def _scanned_files():
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if LAYERS_DIR not in path.parents and ".venv" not in path.parts:
                yield path


def test_the_scanner_finds_every_kind_of_switch():
    names = set(LAYER_TYPES)
    switches = '''
if layer.type == "dense": pass
if kind in ("conv3x3", "maxpool2x2"): pass
if "maxpool2x2" != t: pass
handlers = {"dense": 1}
h = handlers["conv3x3"]
match t:
    case "dense": pass
'''
    assert [line for line, _ in type_switches(switches, names)] == [2, 3, 4, 5, 6, 8]
    harmless = '''
raise ValueError("a maxpool2x2 must follow a conv3x3 layer")
d = {"type": "conv3x3", "name": "c"}
d.update(type="maxpool2x2")
if layer.type == other.type: pass
'''
    assert type_switches(harmless, names) == []


def test_no_layer_type_switch_outside_sw_layers():
    """sw/xnf.py, sw/program.py, the tables, the compiler, the simulator and the benchmarks ask
    the layer (or xnorflow.sw.layers.LAYER_TYPES); only sw/layers/<type>.py knows a type by name."""
    names = set(LAYER_TYPES)
    offenders = [f"{path.relative_to(ROOT)}:{line}: {what}"
                 for path in _scanned_files()
                 for line, what in type_switches(path.read_text(), names, str(path))]
    assert not offenders, offenders


def _instances():
    """One layer of every kind random models make: dense (unsigned first, binary, raw last),
    conv (unsigned, binary) and max-pool."""
    rng = np.random.default_rng(24)
    cnn = random_cnn_model(rng, (6, 6, 1), [8, "pool", 8], [10], 3)
    return cnn.layers + random_model(rng, [20, 12, 4], 2).layers


def test_every_registered_type_implements_the_whole_interface():
    for name, cls in LAYER_TYPES.items():
        assert cls.type == name and layer_class(name) is cls
        assert issubclass(cls, Layer) and not inspect.isabstract(cls), \
            f"{cls.__name__} leaves {sorted(getattr(cls, '__abstractmethods__', ()))} open"
        assert cls.__module__.startswith("xnorflow.sw.layers."), cls.__module__
    assert layer_class("bogus") is None and layer_class(["dense"]) is None


def test_every_registered_type_is_exercised_and_answers_every_question():
    """Random models hold every registered type (so the suites that use them cover a new
    type), and every instance has the attributes and gives a table row, a file entry that
    loads back, and an overlay shape and memory use."""
    from xnorflow.hw.config import ArrayConfig
    layers = _instances()
    assert {layer.type for layer in layers} == set(LAYER_TYPES)
    config = ArrayConfig.parse("4x4x16")
    for layer in layers:
        for attr in ATTRIBUTES:
            assert hasattr(layer, attr), f"{layer.type} has no {attr}"
        assert COLUMNS <= set(layer.table_row()) <= COLUMNS | {"shape"}, layer.type
        assert set(layer.manifest("p")["arrays"].values()) == set(layer.arrays("p"))
        assert len(layer.overlay_shape(config)) == 5
        assert len(layer.overlay_memory(config)) == 3
        assert layer.overlay_cycles(config, 1) >= 0
    rng = np.random.default_rng(25)
    model = random_cnn_model(rng, (6, 6, 1), [8, "pool", 8], [10], 3)
    back = xnf.from_bytes(xnf.to_bytes(model))
    assert [type(a) for a in back.layers] == [type(b) for b in model.layers]
    assert xnf.to_bytes(back) == xnf.to_bytes(model)
