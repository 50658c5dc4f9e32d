"""The dataflow core end to end in Amaranth's simulator: host link + core + engines, driven by
the real driver over frames. Every image is compared with the golden model, every counter
with the cycle model (hw/dataflow/run_timing.py), and bad requests get bus errors, never a
wedge."""
import numpy as np
import pytest

from xnorflow.hw.dataflow import memory_map as mm
from xnorflow.hw.dataflow.run_timing import run_cycles
from xnorflow.hw.dataflow.top import DataflowAccelerator
from xnorflow.sim.amaranth_transport import AmaranthTransport
from xnorflow.sw.dataflow_driver import DataflowDevice
from xnorflow.sw.dataflow_program import DataflowProgramError, fold_for
from xnorflow.sw.driver import DriverError
from xnorflow.sw.protocol import DeviceError
from xnorflow.sw.random_models import random_inputs, random_model

# (layer sizes, input bits, folds): each engine in turn the slowest, wires, gathering and
# splitting converters, sizes that are not multiples of S or P
FOLDS = [
    ([16, 12, 8, 5], 2, [(4, 4), (4, 4), (4, 1)], {}),    # first engine slowest
    ([16, 12, 8, 5], 4, [(16, 4), (1, 2), (8, 5)], {}),   # middle; split 4:1, gather 2:8
    ([16, 12, 8, 5], 2, [(16, 12), (12, 8), (1, 1)], {}),  # last; split 8:1
    ([16, 64, 8, 5], 1, [(16, 8), (1, 4), (2, 2)], {}),   # a long split behind a fast engine
    ([20, 9, 7], 3, [(3, 2), (2, 3)], {}),                # two engines, odd sizes
    # a 72-bit weight word (ECP5): the core's word register under two copies of its shift
    # enable, one per 64 bits
    ([144, 4, 5], 1, [(72, 2), (4, 5)], {}),
    # the iCE40 options: serial output stages, two adder levels per stage, no RAM registers
    ([16, 12, 8, 5], 2, [(4, 4), (4, 4), (4, 1)], {"serial": 1, "levels": 2, "ram_reg": 0}),
    ([16, 12, 8, 5], 4, [(16, 4), (1, 2), (8, 5)], {"serial": 1, "levels": 3}),
    # MMV (images per weight read, third item): runs are whole groups, the driver pads
    ([16, 12, 8, 5], 2, [(4, 4), (4, 2, 2), (4, 1)], {"in_images": 6, "out_images": 6}),
    ([16, 12, 8, 5], 2, [(4, 2, 2), (4, 4), (4, 1)], {"in_images": 6, "out_images": 6}),
    ([16, 12, 8, 5], 2, [(4, 4), (4, 4), (2, 1, 4)], {"in_images": 8, "out_images": 8}),
    ([16, 12, 8, 5], 2, [(4, 4), (4, 2, 2), (4, 1)],
     {"in_images": 6, "out_images": 6, "serial": 1, "levels": 2, "ram_reg": 0}),
    ([20, 9, 7], 3, [(2, 1, 2), (1, 7)], {"in_images": 6, "out_images": 6}),
    # a first S that is not a power of two (the fold search's n/2^k: 24 → 12): the input
    # word is its 12 lanes, one word per beat, not the 4 lanes of the powers of two
    ([24, 12, 5], 2, [(12, 4), (12, 5)], {}),
    ([24, 12, 5], 1, [(12, 4, 2), (4, 5)], {"in_images": 6, "out_images": 6}),
    # input-first engines (a pass per input beat, overlapping the engine before): behind an
    # output-first engine, behind one another, first, raw with NF = 1 (sums in registers)
    ([16, 12, 8, 5], 2, [(4, 4), (4, 2, "i"), (4, 1)], {"ram_reg": 0}),
    ([16, 12, 8, 5], 2, [(4, 4), (4, 2, "i"), (2, 5, "i")], {"ram_reg": 0, "levels": 2}),
    ([16, 12, 8, 5], 4, [(4, 2, "i"), (4, 4), (8, 1, "i")], {"ram_reg": 0, "serial": 1}),
    ([20, 9, 7], 1, [(3, 3), (9, 7, "i")], {"ram_reg": 0}),
    # the first engine takes the input FIFO's words into its buffer itself (no converter):
    # 4 words a beat, behind it output-first and input-first engines
    ([16, 12, 8, 5], 2, [(16, 4), (4, 4), (4, 1)], {"ram_reg": 0, "in_word": 8}),
    ([16, 12, 8, 5], 4, [(8, 4), (4, 2, "i"), (2, 5, "i")],
     {"ram_reg": 0, "in_word": 8, "levels": 2, "serial": 1}),
]


def _device(model, folds, options=None, **kw):
    cfg = fold_for(model, folds, **{"in_images": 5, "out_images": 5, **(options or {})})
    top = DataflowAccelerator(cfg, max_payload=128, timeout=2000)
    return cfg, AmaranthTransport(top, max_cycles=400_000, **kw)


@pytest.mark.parametrize("sizes, bits, folds, options", FOLDS,
                         ids=[f"{f}{o or ''}" for _, _, f, o in FOLDS])
def test_every_image_exact_and_every_counter_equals_the_cycle_model(sizes, bits, folds, options):
    rng = np.random.default_rng(len(sizes) * 7 + bits)
    model = random_model(rng, sizes, input_bits=bits)
    cfg, transport = _device(model, folds, options)
    with transport:
        dev = DataflowDevice(transport)
        assert dev.config == cfg            # recovered from IDENT
        dev.load(model)
        for batch in (1, 2, 5):
            x = random_inputs(rng, model, batch)
            acc, _ = dev.run(x, check=True)
            assert (acc == model.forward(x)[-1][0]).all()
            ran = -(-batch // cfg.group) * cfg.group     # whole MMV groups
            got, want = dev.last_counters, run_cycles(cfg, ran)
            assert (got["total"], got["latency"], got["interval"]) == \
                (want["total"], want["latency"], want["interval"]), (got, want)
            assert list(got["by_layer"].values()) == want["by_engine"]
            assert got["images_done"] == got["batch"] == ran


def test_gaps_and_stalls_on_the_link_change_nothing():
    rng = np.random.default_rng(5)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    x = random_inputs(rng, model, 7)
    _, transport = _device(model, [(4, 4), (4, 4), (4, 1)], p_gap=0.3, p_stall=0.3, seed=3)
    with transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        acc, _ = dev.run(x, check=True)
    assert (acc == model.forward(x)[-1][0]).all()


def test_images_written_during_a_run_queue_behind_it():
    """The host writes run n + 1's images while run n computes (the FIFO takes them)."""
    rng = np.random.default_rng(6)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    cfg, transport = _device(model, [(4, 4), (4, 4), (4, 1)])
    from xnorflow.sw.dataflow_program import decode_output_bytes, input_bytes
    x = random_inputs(rng, model, 4)
    with transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        dev.write(mm.IN_BASE, input_bytes(x[:2], cfg))
        dev.write(mm.REG_COUNT, (2).to_bytes(4, "little"))
        dev.write(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]))
        dev.write(mm.IN_BASE, input_bytes(x[2:], cfg))      # while the run goes on
        transport.wait(1000)
        assert not dev.status()["busy"]
        dev.write(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]))   # the queued two
        transport.wait(1000)
        data = dev.read(mm.OUT_BASE, 4 * cfg.out_words * cfg.out_word_bytes)
    assert (decode_output_bytes(data, cfg, 4) == model.forward(x)[-1][0]).all()


@pytest.mark.parametrize("free", [False, True])
def test_the_fifo_level_registers_equal_the_fifos_level_every_cycle(free):
    """REG_IN_FREE and REG_OUT_LEVEL read counters of the FIFOs' handshakes (core.py,
    ``_handshake_count``): with random writes, reads and aborts (which reset the FIFO) the
    counter equals the FIFO's own level (or depth minus it) in every cycle."""
    from amaranth.hdl import Module, ResetInserter, Signal
    from amaranth.lib.fifo import SyncFIFOBuffered
    from amaranth.sim import Simulator
    from xnorflow.hw.dataflow.core import _handshake_count
    m, abort = Module(), Signal()
    m.submodules.fifo = fifo = ResetInserter(abort)(SyncFIFOBuffered(width=4, depth=5))
    count = _handshake_count(m, abort, fifo, 5, "count", free=free)
    rng = np.random.default_rng(int(free))
    seen = set()

    async def bench(ctx):
        for _ in range(600):
            ctx.set(fifo.w_en, int(rng.random() < 0.6))
            ctx.set(fifo.r_en, int(rng.random() < 0.4))
            ctx.set(abort, int(rng.random() < 0.02))
            await ctx.tick()
            level = ctx.get(fifo.level)
            seen.add(level)
            assert ctx.get(count) == (5 - level if free else level)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == set(range(6))          # empty to full


def test_the_ice40_register_file_errs_beyond_its_registers():
    """Without ``ram_reg`` the register word is decoded from the index bits in stage 0 and
    the bits above them are asked in stage 1: a read there errs, whatever its low bits."""
    rng = np.random.default_rng(8)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    cfg, transport = _device(model, [(4, 4), (4, 4), (4, 1)], {"ram_reg": 0})
    with transport:
        dev = DataflowDevice(transport)
        assert not cfg.ram_reg
        assert int.from_bytes(dev.read(mm.REG_ID, 4), "little") == mm.ID_VALUE
        for high in (0x8000, 0x400, 0x4000):         # engine busy counters end at 0x1FF
            with pytest.raises(DeviceError):
                dev.read(high + mm.REG_ID, 1)
        assert dev.status()["busy"] == 0            # still answering


def test_bad_requests_get_bus_errors_and_abort_recovers_a_starved_run():
    rng = np.random.default_rng(7)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    cfg, transport = _device(model, [(4, 4), (4, 4), (4, 1)])
    with transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        with pytest.raises(DeviceError):
            dev.read(mm.OUT_BASE, 1)                          # nothing to read
        with pytest.raises(DeviceError):
            dev.write(mm.REG_ID, b"\0")                       # read-only
        with pytest.raises(DeviceError):
            dev.read(0x400000, 1)                             # unmapped
        with pytest.raises(DeviceError):                      # below the ports, beyond the
            dev.read(0x8000 + mm.REG_ID, 1)                   # registers: REG_ID's low bits
        lay, first = mm.layout(cfg), cfg.engines[0].shape
        assert cfg.ram_reg     # the decode of a weight address a stage early (core.py)
        for select, word in ((0, first.weight_depth), (first.pe, first.neuron_folds)):
            assert word < 1 << (lay.select_shifts[0] - lay.word_shifts[0])   # in its field
            with pytest.raises(DeviceError):                  # past a weight / channel memory
                dev.write(lay.address(0, select, word), bytes(lay.word_bytes[0]))
        with pytest.raises(DeviceError):                      # past the last engine
            dev.write(mm.W_BASE + (len(cfg.engines) << lay.engine_shift), b"\0")
        with pytest.raises(DeviceError):                      # more than the FIFO holds
            dev.write(mm.IN_BASE, bytes(cfg.in_word_bytes * cfg.in_words * (cfg.in_images + 1)))
        dev.abort()
        # exactly what it holds fits, the free count says so, and the next byte is refused
        depth = cfg.in_words * cfg.in_images
        dev.write(mm.IN_BASE, bytes(cfg.in_word_bytes * depth))
        assert int.from_bytes(dev.read(mm.REG_IN_FREE, 4), "little") == 0
        with pytest.raises(DeviceError):
            dev.write(mm.IN_BASE, b"\0")
        dev.abort()
        assert int.from_bytes(dev.read(mm.REG_IN_FREE, 4), "little") == depth
        # a run of 3 images with only one written waits for the others...
        dev.write(mm.IN_BASE, bytes(cfg.in_word_bytes * cfg.in_words))
        dev.write(mm.REG_COUNT, (3).to_bytes(4, "little"))
        dev.write(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]))
        transport.wait(500)
        assert dev.status()["busy"]
        with pytest.raises(DeviceError):                      # weights only while idle
            dev.write(mm.W_BASE, bytes(4))
        dev.abort()                                           # ...until the host aborts it
        assert dev.status() == {"busy": False, "done": False, "error": mm.ERR_ABORTED,
                                "error_name": "aborted"}
        dev.write(mm.REG_COUNT, bytes(4))
        dev.write(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]))
        assert dev.status()["error"] == mm.ERR_COUNT
        x = random_inputs(rng, model, 3)                      # and the core works on
        acc, _ = dev.run(x, check=True)
        assert dev.last_counters["total"] == run_cycles(cfg, 3)["total"]


def test_a_hung_run_is_reported_within_its_simulated_cycle_bound(monkeypatch):
    """A run that never ends (COUNT asks for one image more than the host sends, so the core
    waits for input forever) is reported by the driver once it has taken twice its predicted
    cycles plus the slack (here 2,000 cycles, to keep the test short), not after 10,000
    polls; an abort then recovers the core."""
    from xnorflow.sw import dataflow_driver, driver
    rng = np.random.default_rng(8)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    cfg, transport = _device(model, [(4, 4), (4, 4), (4, 1)])
    x = random_inputs(rng, model, 3)
    whole = dataflow_driver.dp.input_bytes
    monkeypatch.setattr(dataflow_driver.dp, "input_bytes",      # the last image never sent
                        lambda images, config: whole(images[:-1], config))
    monkeypatch.setattr(driver, "HUNG_RUN_SLACK", 2_000)
    with transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        with pytest.raises(DriverError, match="still busy after .* simulated cycles") as e:
            dev.run(x)
        bound = driver.HUNG_RUN_FACTOR * run_cycles(cfg, 3)["total"] + 2_000
        waited = int(str(e.value).split("after ")[1].split()[0])
        assert bound < waited <= bound + run_cycles(cfg, 3)["total"] // 16 + 1_000
        dev.abort()
        assert dev.status() == {"busy": False, "done": False, "error": mm.ERR_ABORTED,
                                "error_name": "aborted"}


def test_a_model_of_another_shape_is_refused_by_layer_and_field():
    rng = np.random.default_rng(8)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    other = random_model(rng, [16, 12, 9, 5], input_bits=2)
    _, transport = _device(model, [(4, 4), (4, 4), (4, 1)])
    with transport:
        dev = DataflowDevice(transport)
        with pytest.raises(DataflowProgramError, match="field 'out_features' is 9"):
            dev.load(other)
        with pytest.raises(DriverError, match="no model loaded"):
            dev.run(random_inputs(rng, model, 1))


def test_a_run_that_is_not_whole_mmv_groups_is_refused_not_wedged():
    """An MMV engine waits for a whole group: START with COUNT not a multiple of the group
    ends at once with ERR_COUNT (it would otherwise wait forever for the missing image); the
    driver pads its runs with zero images, so odd batches work."""
    rng = np.random.default_rng(8)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    cfg, transport = _device(model, [(4, 4), (4, 2, 2), (4, 1)],
                             {"in_images": 6, "out_images": 6})
    assert cfg.group == 2
    with transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        dev.write(mm.IN_BASE, bytes(cfg.in_word_bytes * cfg.in_words))
        dev.write(mm.REG_COUNT, (1).to_bytes(4, "little"))
        dev.write(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]))
        transport.wait(50)
        assert dev.status() == {"busy": False, "done": True, "error": mm.ERR_COUNT,
                                "error_name": mm.ERROR_NAMES[mm.ERR_COUNT]}
        dev.abort()                                   # empties the FIFO of the odd image
        x = random_inputs(rng, model, 3)
        acc, _ = dev.run(x, check=True)               # padded to 4 by the driver
        assert (acc == model.forward(x)[-1][0]).all() and len(acc) == 3


def test_an_abort_at_any_cycle_of_a_run_leaves_nothing_behind():
    """CTRL_ABORT at every cycle of a run (beats inside the engines and the converters, results
    leaving into the output FIFO, the datapath reset a cycle after the run state) empties
    everything: the next run is exact and counts its images from the first."""
    rng = np.random.default_rng(9)
    model = random_model(rng, [16, 12, 8, 5], input_bits=2)
    cfg, transport = _device(model, [(16, 4), (1, 2), (8, 5)])
    x = random_inputs(rng, model, 2)
    with transport:
        dev = DataflowDevice(transport)
        dev.load(model)
        for wait in range(0, 260, 13):   # from the first beats to the results leaving
            abort_a_run_then_run_exactly(dev, transport, model, cfg, rng, x, wait)
            assert dev.last_counters["images_done"] == 2, wait


def abort_a_run_then_run_exactly(dev, transport, model, cfg, rng, x, wait):
    """Start a run of two random images, CTRL_ABORT it ``wait`` cycles later, then run ``x``
    (two images): its results must be the model's (shared with tests/test_dataflow_conv.py)."""
    from xnorflow.sw.dataflow_program import input_bytes
    dev.write(mm.IN_BASE, input_bytes(random_inputs(rng, model, 2), cfg))
    dev.write(mm.REG_COUNT, (2).to_bytes(4, "little"))
    dev.write(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0]))
    transport.wait(wait)
    dev.abort()
    acc, _ = dev.run(x, check=True)
    assert (acc == model.forward(x)[-1][0]).all(), wait


def test_a_weight_word_written_just_before_start_is_the_one_the_run_reads():
    """On ECP5 builds (``ram_reg``) a weight write passes eight registers on its way to its
    memory (the core's word and its copy, the pipeline's, the engine's, the memory's own:
    hw/dataflow/mvu.py ``_write``). Written in the frame just before START, with the images
    already queued and a first engine that starts on one beat, a word the run reads first
    is still the one it computes with."""
    from xnorflow.sw.dataflow_program import decode_output_bytes, input_bytes, load_writes
    rng = np.random.default_rng(11)
    right = random_model(rng, [16, 12, 5], input_bits=2)
    cfg, transport = _device(right, [(16, 4), (12, 5)])     # first engine: one beat an image
    assert cfg.ram_reg
    size = mm.layout(cfg).word_bytes[0]
    x = random_inputs(rng, right, 4)
    want = right.forward(x)[-1][0]
    with transport:
        dev = DataflowDevice(transport)
        dev.load(right)

        def run_after_writing(addr, word):
            dev._exchange(dev.write_requests(mm.IN_BASE, input_bytes(x, cfg))
                          + dev.write_requests(mm.REG_COUNT, len(x).to_bytes(4, "little"))
                          + dev.write_requests(addr, word)
                          + dev.write_requests(mm.REG_CTRL, bytes([mm.CTRL_START, 0, 0, 0])))
            transport.wait(2000)
            assert dev.status()["done"]
            return decode_output_bytes(dev.read(mm.OUT_BASE, len(x) * cfg.out_words
                                                * cfg.out_word_bytes), cfg, len(x))

        # engine 0's writes are its PEs' weight memories from address 0, whose first word is
        # what each PE reads first. A word that matters: inverted and written well before the
        # run, the results change (many random thresholds saturate a channel)
        for addr, words in load_writes(right, cfg)[:cfg.engines[0].pe]:
            word, inverted = words[:size], bytes(b ^ 0xFF for b in words[:size])
            dev.write(addr, inverted)
            transport.wait(50)
            acc, _ = dev.run(x)
            if not (acc == want).all():
                break
            dev.write(addr, word)
        else:
            raise AssertionError("no PE's first weight word changes these results")
        assert (run_after_writing(addr, word) == want).all()
        assert not (run_after_writing(addr, inverted) == want).all()
