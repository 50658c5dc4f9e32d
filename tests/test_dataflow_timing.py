"""The dataflow run model (hw/dataflow/run_timing.py): the stream model equals the closed form
for every fold without MMV whose engines' output beats are taken as soon as they are valid,
is never earlier than it otherwise, and MMV folds are whole groups."""
import random

import pytest

from xnorflow.hw.dataflow.config import DataflowConfig, EngineFold
from xnorflow.hw.dataflow.run_timing import completions, pipeline_latency, run_cycles
from xnorflow.hw.dataflow.timing import mvu_latency


def _random_config(rng, mmv=False):
    sizes = [rng.choice([12, 16, 20, 33, 64]) for _ in range(rng.randint(2, 4))]
    engines = []
    for e, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        simd = rng.choice([d for d in (1, 2, 4, 8, 16) if d <= n_in])
        if engines:   # S and the previous P divide one another
            prev = engines[-1].pe
            simd = rng.choice([d for d in (1, 2, 4, 8, 16) if d <= n_in
                               and (d % prev == 0 or prev % d == 0)] or [prev])
        pe = rng.choice([d for d in (1, 2, 4, 8) if d <= n_out])
        last = e == len(sizes) - 2
        engines.append(EngineFold(n_in, n_out, simd, pe,
                                  input_bits=2 if e == 0 else 1,
                                  input_kind="unsigned" if e == 0 else "binary",
                                  output="raw" if last else "threshold"))
    options = {"serial": rng.choice([0, 1]), "levels": rng.choice([1, 2]),
               "ram_reg": rng.choice([0, 1])}
    return DataflowConfig(tuple(engines), in_images=8, out_images=8, **options)


def _nothing_splits(config):
    """No engine's beats leave through a splitting converter (each P at most its consumer's
    lanes: the next S, or one integer a word after the last engine)."""
    lanes = [e.in_lanes for e in config.engines[1:]] + [1]
    return all(e.pe <= n for e, n in zip(config.engines, lanes))


@pytest.mark.parametrize("seed", range(200))
def test_the_stream_model_is_the_closed_form_where_its_assumption_holds(seed):
    rng = random.Random(seed)
    try:
        config = _random_config(rng)
    except ValueError:
        pytest.skip("an invalid random fold")
    latency = pipeline_latency(config)
    for batch in (1, 2, 5):
        done = completions(config, batch)
        closed = [latency - 1 + i * config.interval for i in range(batch)]
        if _nothing_splits(config):
            assert done == closed
        else:       # credits that come back late only ever delay
            assert all(d >= c for d, c in zip(done, closed))


def test_an_mmv_engine_makes_its_group_in_a_burst():
    config = DataflowConfig.parse("df:64u4>256:16x4,256>256:16x8m2,256>10r:16x2;"
                                  "in_images=6,out_images=6")
    run = run_cycles(config, 6)
    done = completions(config, 6)
    # the middle engine: a pair every 16·32 = 512 cycles; the last engine makes each pair's
    # images its own 16·5 = 80 cycles apart
    assert [b - a for a, b in zip(done[0::2], done[2::2])] == [512, 512]
    assert [b - a for a, b in zip(done[0::2], done[1::2])] == [80, 80, 80]
    assert run["by_engine"] == [6 * 4 * 64, 3 * 16 * 32, 6 * 16 * 5]
    assert config.interval == 256


@pytest.mark.parametrize("text, message", [
    ("df:64u4>256:16x4m3,256>10r:16x1", "mmv must be a power of two"),
    ("df:64u4>256:16x4m128,256>10r:16x1", "exceeds its 64 neuron folds"),
    ("df:64u4>256:32x4m4,256>10r:16x1", "exceeds its 2 synapse folds"),
    ("df:64u4>256:16x8m2,256>10r:4x1", "an MMV engine's next S must be at least its P"),
    ("df:64u4>256:16x4m2,256>10r:16x1;in_images=5", "in_images must be a multiple of 2"),
    ("df:64u4>256:16x4m2,256>10r:16x1;out_images=3", "out_images must be a multiple of 2"),
    # a conv engine's mmv groups pixels: it must divide the image's H·W
    ("df:5x5x1u4>8:9x1m2,200>10r:8x1", r"mmv 2 pixels per weight read must divide the 5×5"),
    ("df:4x4x1u4>8:9x1m4,128>10r:8x1", "exceeds its 1 synapse folds"),
])
def test_mmv_folds_that_cannot_work_are_refused_by_name(text, message):
    with pytest.raises(ValueError, match=message):
        DataflowConfig.parse(text)


def test_a_conv_engines_mmv_groups_pixels_not_images():
    text = "df:4x4x2u4>8p:2x1m4,2x2x8>16:8x2m4,64>10r:16x5"
    config = DataflowConfig.parse(text)
    assert config.format() == text
    conv0, conv1, _ = config.engines
    # runs need no whole groups of images: a group never leaves its image
    assert config.group == 1 and conv0.images_per_group == 1
    # conv0: SF·NF = 9·8 per 4 pixels, 4 groups per image; conv1: one group per 2×2 image
    assert (conv0.cycles, conv0.busy_cycles, conv1.cycles) == (4 * 72, 4 * 72, 72)
    assert run_cycles(config, 3)["by_engine"] == [3 * 4 * 72, 3 * 72, 3 * 4 * 2]


def test_mmv_round_trips_through_the_text_form():
    text = "df:64u4>256:16x4m2s,256>256:32x8m4,256>10r:16x1;in_images=8,out_images=8"
    config = DataflowConfig.parse(text)
    assert config.format() == text
    assert [e.mmv for e in config.engines] == [2, 4, 1] and config.group == 4
    # a serial output stage walks m·P sums in one fold: only where they fit
    serial = DataflowConfig.parse(text + ",serial=1")
    assert [serial.output_stage(e) for e in serial.engines] == ["parallel", "parallel", "serial"]
    # 64u4>256:16x4: SF = 4 holds P = 4 sums alone, not the 2·4 of two images
    plain = DataflowConfig.parse("df:64u4>256:16x4,256>10r:16x1;serial=1")
    assert plain.output_stage(plain.engines[0]) == "serial"

def test_leaf_reg_round_trips_and_takes_a_cycle_off_every_output_first_engine():
    text = "df:64u4>256:16x4,256>256:32x8m2,256>10r:16x1;in_images=8,out_images=8,levels=2"
    config = DataflowConfig.parse(text + ",leaf_reg=0")
    assert config.format() == text + ",leaf_reg=0" and config.leaf_reg == 0
    registered = DataflowConfig.parse(text)
    assert registered.format() == text and registered.leaf_reg == 1
    for with_leaf, without in zip(registered.engines, config.engines):
        assert (mvu_latency(**registered.timing_args(with_leaf))
                == mvu_latency(**config.timing_args(without)) + 1)
    # an input-first engine's pass has no such option
    with pytest.raises(ValueError, match=r"engine 1 \(256>256:32x8i\): an input-first engine "
                                         r"registers its popcounts' first level"):
        DataflowConfig.parse("df:64u4>256:16x4,256>256:32x8i,256>10r:16x1;ram_reg=0,leaf_reg=0")
    with pytest.raises(ValueError, match="leaf_reg must be 0 or 1, got 2"):
        DataflowConfig.parse(text + ",leaf_reg=2")


def _submodules(elaboratable):
    """An elaboratable's (or fragment's) direct submodules, by the name they were added under."""
    from amaranth.hdl import Fragment
    return {name: fragment for fragment, name, _ in Fragment.get(elaboratable, None).subfragments}


def test_conv_engines_slices_before_their_pool_and_their_window_unit_with_ram_reg():
    """In the hardware and the model alike: the pooled conv engine of one pixel per weight
    read (its unit's output FIFO) gets a skid slice before its pool, the pooled one of four
    pixels (its reorder buffer's own slices) and the unpooled one do not; every conv engine
    but the first gets one in front of its window unit; without ram_reg none."""
    from xnorflow.hw.dataflow.pipeline import Pipeline
    for pixels, text in ((1, "df:4x4x2u4>8p:18x2,2x2x8>16:8x2m4,64>10r:16x5"),
                         (4, "df:4x4x2u4>8p:2x1m4,2x2x8>16:8x2m4,64>10r:16x5")):
        for ram_reg in (0, 1):
            config = DataflowConfig.parse(f"{text};ram_reg={ram_reg}")
            want = [bool(ram_reg) and pixels == 1, False, False]
            assert [config.pool_slice(e) for e in config.engines] == want
            # ... and a slice in front of every conv engine's window unit but the first's
            assert [config.input_slice(e) for e in config.engines] == [False, bool(ram_reg), False]
            pipeline = Pipeline(config)
            for e, conv in enumerate(pipeline.engines[:2]):
                names = set(_submodules(conv))
                assert ("pool_slice" in names) == want[e]
                assert ("input_slice" in names) == (bool(ram_reg) and e == 1)


def test_a_register_slice_follows_each_dense_mmv_engine_on_ram_reg_builds_only():
    """The reorder buffer's block-RAM read has no output register: with ``ram_reg`` a slice
    takes its beats (one cycle later), in the hardware and in the model alike."""
    from xnorflow.hw.dataflow.pipeline import Pipeline
    text = "df:64u4>256:16x4,256>256:16x8m2,256>10r:16x2m2;in_images=6,out_images=6"
    for ram_reg in (0, 1):
        config = DataflowConfig.parse(f"{text},ram_reg={ram_reg}")
        assert [config.output_slice(e) for e in config.engines] == [False] + [bool(ram_reg)] * 2
        pipeline = Pipeline(config)
        assert [getattr(e, "output_slice", False) for e in pipeline.engines] == \
            [False] + [bool(ram_reg)] * 2
        for e in (1, 2):
            reorder = _submodules(pipeline.engines[e])["reorder"]
            names = set(_submodules(reorder))
            assert ("out_slice" in names) == bool(ram_reg)


def test_the_drivers_prediction_is_the_run_model_and_each_call_its_own():
    """sw/dataflow_program.py's ``predict_run`` keeps each (build, images) run it computed
    (a CNV run of 16 takes the stream model seconds, and a simulation asks for the same run
    hundreds of times): equal to the run model, and a caller changing its copy changes no
    later answer."""
    from xnorflow.sw.dataflow_program import predict_run
    cfg = DataflowConfig.parse("df:8x8x1u4>16p:9x2s,4x4x16>32p:16x8,128>64:16x1s,64>10r:2x1;"
                               "ram_reg=0,in_word=16,levels=2,serial=1")
    want = run_cycles(cfg, 3)
    first = predict_run(cfg, 3)
    assert first == want
    first["by_engine"][0] += 1
    first["total"] += 1
    assert predict_run(cfg.format(), 3) == want
    assert predict_run(cfg, 2) == run_cycles(cfg, 2)
