"""Conv engines in the dataflow core: every image bit-exact against the golden model and every
hardware counter equal to the cycle model (hw/dataflow/run_timing.py), over folds where each
block in turn is the bottleneck, so that backpressure runs through every stream: the window
unit, the matrix-vector unit (whose credits then stall the window unit's output), a pool whose
output waits for a splitting converter, the gate, a conv engine slower or faster than the one
before it, and a dense engine after a conv stack. Plus the model's own properties: following a
run's repeating pattern equals computing every beat, and its dense results are the hardware's
where the image-by-image model of dense engines is not."""
import random
import time

import numpy as np
import pytest

from xnorflow.hw.dataflow.config import DataflowConfig, EngineFold
from xnorflow.hw.dataflow.run_timing import run_cycles, steady_interval, stream_completions
from xnorflow.hw.dataflow.top import DataflowAccelerator
from xnorflow.sim.amaranth_transport import AmaranthTransport
from xnorflow.sw.dataflow_driver import DataflowDevice
from xnorflow.sw.dataflow_program import fold_for
from xnorflow.sw.random_models import balanced_cnn_model, random_inputs, random_model

# name: (image, input bits, conv stack, dense layers, folds (S, P[, mmv]), options, the run's
# interval: the bottleneck's cycles per image, which the case is there to exercise)
FOLDS = {
    # conv0's window unit: 9 beats per pixel, its MVU 1·2; 36 pixels
    "window": ((6, 6, 1), 2, [4, "pool", 8], [12, 5], [(9, 2), (12, 4), (8, 4), (4, 5)], {},
               36 * 9),
    # conv0's MVU (SF·NF = 9·4 per pixel) stalls its window unit's output; conv1 waits on it
    "mvu, a faster conv after it": ((4, 4, 2), 1, [4, 4], [5], [(2, 1), (4, 4), (16, 5)], {},
                                    16 * 36),
    # conv1's MVU (9·4 per pixel): its ring fills, conv0's credits and buffer halves run out,
    # conv0's ring fills and the gate waits
    "conv after a faster conv": ((4, 4, 1), 2, [4, 8], [5], [(9, 4), (4, 2), (16, 5)], {},
                                 16 * 36),
    # conv1's window unit (72 beats per pixel, lanes 1): the splitting converter 8 → 1 before it
    # stalls the pool's window-completing beats, the pool conv0's output FIFO
    "pool and split before a slower conv": ((4, 4, 1), 2, [8, "pool", 4], [5],
                                            [(9, 8), (1, 4), (16, 5)], {}, 4 * 72),
    # the gate: 8-bit input words of two 4-bit elements, 16 per pixel, gathered into 32 lanes
    # (the window unit makes 9 beats per pixel); a one-row image
    "gate": ((1, 2, 32), 4, [4], [5], [(32, 4), (8, 5)], {"in_word": 8}, 2 * 16),
    # a dense engine after the conv stack (64·12 cycles); a 1-bit unsigned first layer
    "dense after conv, 1-bit input": ((4, 4, 1), 1, [4], [12, 5], [(9, 4), (1, 1), (4, 5)], {},
                                      64 * 12),
    # the ECP5 options (ram_reg): conv0's 1-channel beats gathered into the dense engine's
    # S = 16 in two steps (2 · 8 slots, WidthConverter most_slots: a cycle each)
    "gather in steps into a dense engine": ((4, 4, 1), 2, [4], [5], [(9, 1), (16, 5)], {},
                                            16 * 9),
    # an odd 5×5 map pooled (the last row and column dropped) into a 2×2 conv
    "odd image pooled": ((5, 5, 2), 2, [4, "pool", 4], [5], [(6, 2), (4, 2), (16, 5)], {},
                         25 * 9),
    # an MMV dense engine after a conv: runs are whole pairs
    "mmv dense after conv": ((4, 4, 1), 2, [2], [16, 5], [(9, 2), (4, 2, 2), (4, 5)],
                             {"in_images": 4, "out_images": 4}, 16 * 9),
    # the iCE40 options: serial output stages, two adder levels per stage, no RAM registers
    "serial, levels 2, no ram_reg": ((4, 4, 1), 2, [4, 8], [5], [(9, 4), (4, 2), (16, 5)],
                                     {"serial": 1, "levels": 2, "ram_reg": 0}, 16 * 36),
    # MMV over pixels: conv0 computes 4 windows per weight read (SF·NF = 9·8 per 4 pixels),
    # its burst of 4·8 beats goes through the pool, a gathering converter and conv1 (4 pixels
    # per read: a whole 2×2 image a group)
    "pixel mmv, pool, pixel mmv": ((4, 4, 2), 2, [8, "pool", 16], [5],
                                   [(2, 1, 4), (8, 2, 4), (16, 5)], {}, 16 * 18),
    # the ECP5 options (ram_reg) with pixel MMV: each unit takes its window beats as words
    # straight into its buffer (MatrixVectorUnit in_words = 3: 4- and 8-lane beats, S = 12
    # and 24), image after image, no gathering converter; the window units are the
    # bottleneck (9 beats per pixel)
    "pixel mmv, window beats as words": ((4, 4, 4), 1, [8, 8], [5],
                                         [(12, 2, 2), (24, 4, 2), (16, 5)], {}, 16 * 9),
    # a conv of 4 pixels per read (its window unit the bottleneck: 4·9 beats per group) into
    # a dense engine of 2 images per read: runs are whole pairs of images
    "pixel mmv, then image mmv": ((4, 4, 1), 4, [4], [16, 5], [(1, 1, 4), (4, 2, 2), (4, 5)],
                                  {"in_images": 4, "out_images": 4}, 16 * 9),
    # S a conv's window over a power of two (fold search: 9·C/2): conv0's S = 9 of its 18
    # synapses takes window beats of gcd(2, 9) = 1 lane, conv1's S = 18 of 36 beats of
    # gcd(4, 18) = 2 lanes, 9 gathered per fold; each window unit makes 18 beats per pixel
    "S over a power of two": ((4, 4, 2), 2, [4, 4], [5], [(9, 2), (18, 2), (16, 5)], {},
                              16 * 18),
    # the ECP5 options with two adder levels per stage and the popcounts' first level
    # unregistered (leaf_reg=0: a cycle less per engine)
    "pixel mmv, levels 2, no leaf register": ((4, 4, 2), 2, [8, "pool", 16], [5],
                                              [(2, 1, 4), (8, 2, 4), (16, 5)],
                                              {"levels": 2, "leaf_reg": 0}, 16 * 18),
    # pixel MMV with the iCE40 options: the serial stage walks m·P sums in a fold
    "pixel mmv, serial, levels 2, no ram_reg": ((4, 4, 1), 2, [4, 8], [5],
                                                [(1, 1, 2), (4, 2, 4), (16, 5)],
                                                {"serial": 1, "levels": 2, "ram_reg": 0},
                                                16 * 18),
}


def _conv_model(rng, image, bits, stack, dense):
    x = rng.integers(0, 1 << bits, size=(16, int(np.prod(image))), dtype=np.uint8)
    return balanced_cnn_model(rng, image, stack, dense, bits, x)


def _counters_equal_the_model(dev, cfg, batch):
    ran = -(-batch // cfg.group) * cfg.group           # whole MMV groups (the driver pads)
    got, want = dev.last_counters, run_cycles(cfg, ran)
    assert (got["total"], got["latency"], got["interval"]) == \
        (want["total"], want["latency"], want["interval"]), (batch, got, want)
    assert list(got["by_layer"].values()) == want["by_engine"]
    assert got["images_done"] == ran
    return got


@pytest.mark.parametrize("name", FOLDS)
def test_every_image_exact_and_every_counter_equals_the_cycle_model(name):
    image, bits, stack, dense, folds, options, interval = FOLDS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    model = _conv_model(rng, image, bits, stack, dense)
    cfg = fold_for(model, folds, **{"in_images": 3, "out_images": 3, **options})
    top = DataflowAccelerator(cfg, max_payload=128, timeout=2000)
    with AmaranthTransport(top, max_cycles=2_000_000) as transport:
        dev = DataflowDevice(transport)
        assert dev.config == cfg
        dev.load(model)
        totals = {}
        for batch in (1, 2, cfg.in_images):
            x = random_inputs(rng, model, batch)
            acc, _ = dev.run(x, check=True)
            assert (acc == model.forward(x)[-1][0]).all()
            totals[batch] = _counters_equal_the_model(dev, cfg, batch)["total"]
    # the case exercises what it says: its bottleneck sets the rate (per image, over the
    # last run's images beyond the run of 2: MMV images leave in bursts)
    more = cfg.in_images - 2
    assert (totals[cfg.in_images] - totals[2]) == interval * more


def test_an_abort_at_any_cycle_of_a_conv_run_leaves_nothing_behind():
    """CTRL_ABORT at cycles through a run of a pooled conv stack (each of a conv engine's
    blocks reset from its own replica register, the same cycle as a dense engine): the
    window rings, the pool's row and the MVUs are emptied, and the next run is exact."""
    from tests.test_dataflow_core import abort_a_run_then_run_exactly
    image, bits, stack, dense, folds, options, _ = FOLDS["window"]
    rng = np.random.default_rng(23)
    model = _conv_model(rng, image, bits, stack, dense)
    cfg = fold_for(model, folds, **{"in_images": 2, "out_images": 2, **options})
    top = DataflowAccelerator(cfg, max_payload=128, timeout=2000)
    x = random_inputs(rng, model, 2)
    with AmaranthTransport(top, max_cycles=2_000_000) as transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        for wait in range(0, 900, 150):       # from the first beats to the results leaving
            abort_a_run_then_run_exactly(dev, transport, model, cfg, rng, x, wait)
            _counters_equal_the_model(dev, cfg, 2)


def test_dense_credit_stalls_behind_a_splitting_converter_are_in_the_model():
    """A dense engine whose output beat leaves through a splitting converter (8 → 1) is
    released one beat per 8 cycles, later than its fold's credit needs: the hardware delays
    folds. The earlier image-by-image model of dense engines gave latency 61 and interval 45
    here; the stream model, now the model of every config, gives the hardware's 71 and 55."""
    rng = np.random.default_rng(21)
    model = random_model(rng, [33, 33], input_bits=2)
    cfg = fold_for(model, [(4, 8)], in_images=3, out_images=3, ram_reg=0, levels=2)
    top = DataflowAccelerator(cfg, max_payload=128, timeout=2000)
    with AmaranthTransport(top, max_cycles=400_000) as transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        x = random_inputs(rng, model, 3)
        acc, _ = dev.run(x, check=True)
    assert (acc == model.forward(x)[-1][0]).all()
    want, got = run_cycles(cfg, 3), dev.last_counters
    assert (got["total"], got["latency"], got["interval"]) == \
        (want["total"], want["latency"], want["interval"]) == (181, 71, 55)
    assert steady_interval(cfg) == 55 > cfg.interval == 45


# ---- the model alone ------------------------------------------------------------------------

def _random_conv_config(rng):
    """A random valid conv config (small images, every option), or None."""
    try:
        return _random_conv_fold(rng)
    except ValueError:          # a fold that does not fit (S, P, mmv): draw another
        return None


def _random_conv_fold(rng):
    h, w, c = rng.randint(1, 6), rng.randint(1, 6), rng.choice([1, 2, 4, 8])
    k = rng.choice([1, 2, 4])
    engines = []
    for _ in range(rng.randint(1, 2)):
        m = rng.choice([2, 4, 8])
        pool = h >= 2 and w >= 2 and rng.random() < 0.5
        simd = rng.choice([s for s in range(1, 9 * c + 1) if s <= 40])
        pe = rng.choice([p for p in (1, 2, 4, 8) if m % p == 0])
        engines.append(EngineFold(9 * c, m, simd, pe, k if not engines else 1,
                                  "unsigned" if not engines else "binary",
                                  image=(h, w, c), pool=pool, mmv=rng.choice([1, 1, 2, 4])))
        h, w, c = engines[-1].out_image
    n = h * w * c
    for last in (False, True)[rng.randint(0, 1):]:
        m = rng.choice([5, 12, 16])
        engines.append(EngineFold(n, m, rng.choice([1, 2, 4, 8, 16]), rng.choice([1, 2, 4, 5]),
                                  output="raw" if last else "threshold",
                                  mmv=rng.choice([1, 1, 2]) if not last else 1))
        n = m
    return DataflowConfig(tuple(engines), in_images=8, out_images=8, serial=rng.choice([0, 1]),
                          levels=rng.choice([1, 2]), ram_reg=rng.choice([0, 1]),
                          in_word=rng.choice([8, 32]))


@pytest.mark.parametrize("seed", range(40))
def test_following_the_repeating_pattern_equals_computing_every_beat(seed):
    rng = random.Random(seed)
    config = None
    while config is None:
        config = _random_conv_config(rng)
    batch = 24 * config.group
    assert stream_completions(config, batch) == \
        stream_completions(config, batch, extrapolate=False)


def test_a_long_run_of_a_cnv_sized_layer_is_quick():
    """A few hundred images of a 28×28×64 conv layer (18 window beats and 72 MVU cycles per
    pixel): the pattern repeats after a few images, the rest follow it."""
    config = DataflowConfig.parse("df:28x28x64>64:32x16,50176>10r:512x10;in_images=300,"
                                  "out_images=300")
    start = time.perf_counter()
    run = run_cycles(config, 300)
    assert time.perf_counter() - start < 5
    assert run["interval"] == 28 * 28 * 72
    # four pixels per weight read: a quarter of the weight reads, the same pattern search
    config = DataflowConfig.parse("df:28x28x64>64:64x8m4,50176>10r:512x10;in_images=300,"
                                  "out_images=300")
    start = time.perf_counter()
    run = run_cycles(config, 300)
    assert time.perf_counter() - start < 5
    assert run["interval"] == 28 * 28 // 4 * 9 * 8
    assert run["by_engine"][0] == 300 * 28 * 28 // 4 * 9 * 8


def test_a_conv_engine_refuses_words_that_are_not_its_window_beats():
    """``in_words`` must cut the unit's beat into the window unit's beats (4 lanes of a
    4-channel map for S = 12: 3 words), or the buffer's columns would not be the beats."""
    from xnorflow.hw.dataflow.conv_engine import ConvEngine
    config = DataflowConfig.parse("df:4x4x4u1>8:12x2,128>5r:16x5")
    fold = config.engines[0]
    assert config.conv_in_words(fold) == 3
    ConvEngine(fold, in_words=3)
    with pytest.raises(ValueError, match="6-bit words, the window beats are 4 bits"):
        ConvEngine(fold, in_words=2)
