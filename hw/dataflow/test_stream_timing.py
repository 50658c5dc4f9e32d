"""The stream models of hw/dataflow/timing.py (MvuModel, ConverterModel, the register slices)
against the simulated blocks under random input gaps and output stalls: every input and output
handshake at the simulated cycle, whatever cycles the output is ready in (backpressure), which
the chain model of a whole core (hw/dataflow/run_timing.py) is built from."""
import numpy as np
import pytest

from xnorflow.hw.dataflow.convert import WidthConverter
from xnorflow.hw.dataflow.mvu import MatrixVectorUnit
from xnorflow.hw.register_slice import RegisterSlice
from xnorflow.hw.dataflow.testing import StreamMonitor, offered_cycles, send, simulate
from xnorflow.hw.dataflow.timing import (ConverterModel, MvuModel, OnDemand, RegisterSliceModel,
                                         SinkModel, SkidSliceModel, SourceModel, connect_chain,
                                         mvu_latency)


def run(dut, beats, outputs, rng, gap, stall):
    """Offer ``beats`` on ``dut.i`` with random gaps, ``dut.o.ready`` low with probability
    ``stall`` per cycle until ``outputs`` beats have left. Returns the monitors and the
    ready of every cycle."""
    mon_i, mon_o, ready = StreamMonitor(dut.i), StreamMonitor(dut.o), []

    async def source(ctx):
        await send(ctx, dut.i, beats, rng, gap)

    async def sink(ctx):
        while len(mon_o.beats) < outputs:
            ready.append(int(rng.random() >= stall))
            ctx.set(dut.o.ready, ready[-1])
            await ctx.tick()
            assert len(ready) < 100_000, "the block stopped producing"

    simulate(dut, [source, sink], [mon_i.testbench, mon_o.testbench], name="stream_timing")
    assert all(ready[c] for c in mon_o.cycles())          # the record is cycle-aligned
    return mon_i, mon_o, ready


def check_model(dut, model, inputs, outputs, rng, gap, stall):
    """``model``: the block's stage model, or a list of them in a row (a block of steps)."""
    models = model if isinstance(model, list) else [model]
    beats = rng.integers(0, 1 << min(len(dut.i.payload), 62), inputs).tolist()
    mon_i, mon_o, ready = run(dut, beats, outputs, rng, gap, stall)
    connect_chain([SourceModel(offered_cycles(mon_i)), *models, SinkModel(ready)])
    assert [models[0].i.taken(n) for n in range(inputs)] == mon_i.cycles()
    assert [models[-1].o.taken(n) for n in range(outputs)] == mon_o.cycles()


@pytest.mark.parametrize("n, m, simd, pe, k, options, gap, stall", [
    (16, 12, 4, 2, 1, {}, 0.2, 0.5),
    (16, 12, 4, 2, 2, {}, 0.0, 0.8),                         # the output mostly stalls
    (16, 12, 4, 2, 1, {}, 0.8, 0.1),                         # the input mostly waits
    (16, 12, 4, 2, 1, {"fifo_depth": 1}, 0.0, 0.3),          # one credit
    (24, 8, 3, 2, 4, {"output_stage": "serial", "ram_reg": False}, 0.1, 0.5),
    (12, 5, 12, 5, 1, {}, 0.0, 0.5),                         # SF = NF = 1
    (32, 16, 4, 2, 1, {"mmv": 2}, 0.1, 0.5),                 # a reorder buffer
    (32, 16, 4, 2, 2, {"mmv": 4, "levels_per_stage": 2}, 0.0, 0.7),
    (32, 16, 4, 1, 1, {"mmv": 2, "output_stage": "serial"}, 0.3, 0.3),
    (32, 16, 4, 2, 1, {"mmv": 2, "fifo_depth": 8}, 0.0, 0.6),    # the fewest columns: NF
    # beats taken as words straight into the buffer (the first engine behind the input FIFO)
    (16, 12, 8, 2, 2, {"in_words": 4, "ram_reg": False}, 0.2, 0.5),
    (64, 16, 16, 4, 4, {"in_words": 4, "ram_reg": False, "levels_per_stage": 2,
                        "output_stage": "serial"}, 0.0, 0.7),
    (16, 4, 16, 4, 1, {"in_words": 2, "ram_reg": False}, 0.5, 0.2),   # SF = NF = 1
    # a conv engine's window beats as words on ECP5 (ram_reg: the buffer's write lag), MMV
    (32, 16, 8, 2, 1, {"in_words": 2, "mmv": 2}, 0.1, 0.5),
    (64, 8, 32, 2, 1, {"in_words": 4, "mmv": 2, "levels_per_stage": 2}, 0.0, 0.7),
    (18, 8, 18, 4, 1, {"in_words": 9}, 0.3, 0.3),                       # SF = 1: no lag
])
def test_mvu_model_equals_the_hardware(n, m, simd, pe, k, options, gap, stall):
    rng = np.random.default_rng([n, m, simd, pe, k, int(10 * gap), int(10 * stall)])
    dut = MatrixVectorUnit(n, m, simd, pe, k, "threshold", **options)
    s, images = dut.shape, 4 * dut.mmv
    model = MvuModel(s.synapse_folds, s.neuron_folds, mvu_latency(**dut._timing_args()),
                     dut.fifo_depth, dut.mmv, dut.buffer_write_lag, dut.in_words)
    check_model(dut, model, images * s.synapse_folds * dut.in_words,
                images * s.neuron_folds, rng, gap, stall)


@pytest.mark.parametrize("in_lanes, out_lanes, image_lanes, gap, stall", [
    (1, 4, 10, 0.2, 0.5),       # gather, a partial last beat
    (2, 8, 16, 0.0, 0.7),
    (8, 2, 13, 0.3, 0.4),       # split, a partial last beat
    (4, 1, 8, 0.0, 0.5),
    (4, 4, 12, 0.3, 0.3),       # wires
])
def test_converter_model_equals_the_hardware(in_lanes, out_lanes, image_lanes, gap, stall):
    rng = np.random.default_rng([in_lanes, out_lanes, image_lanes])
    dut = WidthConverter(1, in_lanes, out_lanes, image_lanes)
    check_model(dut, ConverterModel(in_lanes, out_lanes, image_lanes), 3 * dut.in_beats,
                3 * dut.out_beats, rng, gap, stall)


@pytest.mark.parametrize("in_lanes, out_lanes, image_lanes, most_slots, gap, stall", [
    (2, 98, 200, 8, 0.2, 0.5),  # 49 slots in two steps of 7, a partial last beat
    (1, 12, 13, 3, 0.0, 0.7),   # three steps (2, 2, 3), a partial last beat
    (1, 12, 24, 3, 0.5, 0.1),
])
def test_stepped_converter_model_equals_the_hardware(in_lanes, out_lanes, image_lanes,
                                                     most_slots, gap, stall):
    """A converter gathering in steps (``most_slots``) is the row of its steps' models, as
    the core's chain model builds it (run_timing ``_ChainBuilder.convert``)."""
    rng = np.random.default_rng([in_lanes, out_lanes, image_lanes, most_slots])
    dut = WidthConverter(1, in_lanes, out_lanes, image_lanes, eager=True,
                         most_slots=most_slots)
    assert len(dut.steps) > 2
    models = [ConverterModel(a, b, image_lanes) for a, b in zip(dut.steps, dut.steps[1:])]
    check_model(dut, models, 3 * dut.in_beats, 3 * dut.out_beats, rng, gap, stall)


@pytest.mark.parametrize("gap, stall", [(0.0, 0.5), (0.5, 0.2), (0.0, 0.8), (0.3, 0.0)])
@pytest.mark.parametrize("skid", [False, True])
def test_register_slice_model_equals_the_hardware(gap, stall, skid):
    rng = np.random.default_rng(int(10 * gap + 100 * stall))
    model = SkidSliceModel() if skid else RegisterSliceModel()
    check_model(RegisterSlice(8, skid=skid), model, 40, 40, rng, gap, stall)


def test_a_circular_request_is_a_model_error_not_a_hang():
    seq = OnDemand(lambda n, values: seq.at(n) + 1)
    with pytest.raises(RuntimeError, match="depends on itself"):
        seq.at(0)


def test_a_source_refuses_beats_beyond_its_count():
    source, sink = SourceModel(count=2), SinkModel()
    connect_chain([source, sink])
    assert [sink.i.taken(n) for n in range(2)] == [0, 1]
    with pytest.raises(RuntimeError, match="beat 2 asked of a source of 2"):
        sink.i.taken(2)
