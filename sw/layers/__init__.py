"""Layer types. Each module owns one layer type's golden computation, its file entry, its
packing for the accelerator and its cycle model, side by side (as FINN's matrix-vector unit
does); :mod:`xnorflow.sw.layers.base` is the interface every type implements, and callers ask the layer
object, or this registry, instead of comparing type strings. A new layer type is one new
module and one line here."""
from xnorflow.sw.layers.conv import ConvLayer, MaxPoolLayer
from xnorflow.sw.layers.dense import DenseLayer

LAYER_TYPES = {cls.type: cls for cls in (DenseLayer, ConvLayer, MaxPoolLayer)}
"""Every layer type by its ``type`` string (the order error messages list them in)."""


def layer_class(name):
    """The class of layer type ``name``, or None when there is no such type."""
    return LAYER_TYPES.get(name) if isinstance(name, str) else None
