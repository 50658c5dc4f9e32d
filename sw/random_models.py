"""Random compiled models for tests and benchmarks: any shape, any input width, with
saturated and negative-direction channels, so every corner of the contracts gets exercised."""
import numpy as np

from xnorflow.sw import bits as B
from xnorflow.sw.golden import CompiledModel, Head, InputSpec
from xnorflow.sw.layers.conv import ConvLayer, MaxPoolLayer
from xnorflow.sw.layers.dense import DenseLayer


def random_thresholds(rng, lo, hi, count):
    """Thresholds and directions covering the whole range, saturated values included."""
    thr = rng.integers(lo - 1, hi + 2, size=count).astype(np.int32)
    # A few channels pinned to the saturating bounds: always 0 / always 1 in both directions.
    pinned = rng.random(count) < 0.1
    thr[pinned] = rng.choice([lo - 1, hi + 1], size=int(pinned.sum()))
    direction = rng.choice(np.array([-1, 1], dtype=np.int8), size=count)
    return thr, direction


def random_model(rng, sizes, input_bits, name="random"):
    """A CompiledModel with layer widths ``sizes`` (inputs first, classes last)."""
    layers = []
    for i, (n, m) in enumerate(zip(sizes, sizes[1:])):
        first, last = i == 0, i == len(sizes) - 2
        layer = DenseLayer(
            name=f"fc{i + 1}", in_features=n, out_features=m,
            input_kind="unsigned" if first else "binary",
            input_bits=input_bits if first else 1,
            weights=B.pack_bits(rng.integers(0, 2, size=(m, n)).astype(bool)),
            output="raw" if last else "threshold")
        if not last:
            layer.threshold, layer.direction = random_thresholds(rng, *layer.acc_range(), m)
        layers.append(layer)
    classes = sizes[-1]
    head = Head.affine(rng.uniform(-1, 1, classes), rng.uniform(-1, 1, classes))
    return CompiledModel(name=name, input=InputSpec(sizes[0], input_bits, float((1 << input_bits) - 1)),
                         layers=layers, head=head)


def random_inputs(rng, model, batch):
    """uint8 [batch, N] unsigned inputs below 2**k for ``model``."""
    return rng.integers(0, 1 << model.input.bits, size=(batch, model.input.features), dtype=np.uint8)


def random_cnn_model(rng, image, stack, dense, input_bits, name="random-cnn"):
    """A CompiledModel with a conv stack: ``image = (H, W, C)``; ``stack`` a list of conv output
    channel counts and ``"pool"``; then dense layers of widths ``dense`` (classes last)."""
    h, w, c = image
    layers = []
    for i, item in enumerate(stack):
        if item == "pool":
            prev = layers[-1]
            layers.append(MaxPoolLayer(f"pool{i}", h, w, c, prev.direction.copy()))
            h, w = h // 2, w // 2
            continue
        first = not layers
        layer = ConvLayer(
            name=f"conv{i}", height=h, width=w, in_channels=c, out_channels=item,
            input_kind="unsigned" if first else "binary", input_bits=input_bits if first else 1,
            weights=B.pack_bits(rng.integers(0, 2, size=(item, 9 * c)).astype(bool)))
        layer.threshold, layer.direction = random_thresholds(rng, *layer.acc_range(), item)
        layers.append(layer)
        c = item
    n = h * w * c
    for j, m in enumerate(dense):
        last = j == len(dense) - 1
        layer = DenseLayer(name=f"fc{j}", in_features=n, out_features=m, input_kind="binary",
                           input_bits=1, weights=B.pack_bits(rng.integers(0, 2, size=(m, n)).astype(bool)),
                           output="raw" if last else "threshold")
        if not last:
            layer.threshold, layer.direction = random_thresholds(rng, *layer.acc_range(), m)
        layers.append(layer)
        n = m
    head = Head.affine(rng.uniform(-1, 1, n), rng.uniform(-1, 1, n))
    features = image[0] * image[1] * image[2]
    return CompiledModel(name=name, input=InputSpec(features, input_bits, float((1 << input_bits) - 1)),
                         layers=layers, head=head)


def balanced_cnn_model(rng, image, stack, dense, input_bits, x, name="random-cnn"):
    """:func:`random_cnn_model` with each threshold drawn from the accumulators the inputs ``x``
    (uint8 [B, H·W·C]) give, so output bits are mixed rather than saturated, plus one
    saturated channel each way per layer; pools take their conv's directions."""
    model = random_cnn_model(rng, image, stack, dense, input_bits, name=name)
    act = x
    for idx, layer in enumerate(model.layers):
        if idx:
            layer.derive_from(model.layers[idx - 1])     # a pool: its conv's new directions
        if layer.output == "threshold":
            channels = layer.out_channels
            acc = layer.dot(act).reshape(-1, channels)
            pick = acc[rng.integers(0, len(acc), channels), np.arange(channels)]
            layer.threshold = (pick + rng.integers(-1, 2, channels)).astype(np.int32)
            lo, hi = layer.acc_range()
            layer.threshold[0], layer.threshold[-1] = hi + 1, lo - 1   # xnf keeps ±1 beyond the range
            layer.direction = rng.choice([-1, 1], channels).astype(np.int8)
        act = layer.forward(act)[1]
    return model
