"""Layer types. Each module owns one layer type's golden computation, its packing for the
accelerator and its cycle model, side by side (as FINN's matrix-vector unit does)."""
from sw.layers.conv import ConvLayer, MaxPoolLayer
from sw.layers.dense import DenseLayer

LAYER_TYPES = {"dense": DenseLayer, "conv3x3": ConvLayer, "maxpool2x2": MaxPoolLayer}
