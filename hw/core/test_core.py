"""Core-level test: a random 3-layer model through the bus, bit-exact and cycle-exact."""
import numpy as np
import pytest

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core.core import Core
from xnorflow.hw.core.testing import run
from xnorflow.sw import bits as B
from xnorflow.sw.layers.dense import DenseLayer
from xnorflow.sw.program import build_program, decode_outputs, encode_inputs, encode_model_inputs, \
    hw_steps, output_region, predict_cycles


class BusInitiator:
    """Drives the core's bus from an async testbench, one byte per request."""

    def __init__(self, ctx, bus, rng=None, gap=0.0):
        self.ctx, self.bus = ctx, bus
        self.rng, self.gap = rng, gap    # random idle cycles between requests

    async def _idle(self):
        while self.rng is not None and self.rng.random() < self.gap:
            await self.ctx.tick()

    async def _request(self, addr, we, data=0):
        ctx, bus = self.ctx, self.bus
        await self._idle()
        ctx.set(bus.addr, addr); ctx.set(bus.we, we); ctx.set(bus.w_data, data)
        ctx.set(bus.stb, 1)
        while True:
            await ctx.tick()
            if ctx.get(bus.ack):
                break
        result = ctx.get(bus.r_data), ctx.get(bus.err)
        # hw/bus.py: the request is held through the ack cycle (a clocked initiator sees ack
        # at the edge that ends it); the core's registered write enables rely on that.
        await ctx.tick()
        ctx.set(bus.stb, 0)
        return result

    async def write(self, addr, data, expect_err=False):
        for k, byte in enumerate(bytes(data)):
            _, err = await self._request(addr + k, 1, byte)
            assert err == expect_err, hex(addr + k)

    async def read(self, addr, n, expect_err=False):
        out = bytearray()
        for k in range(n):
            byte, err = await self._request(addr + k, 0)
            assert err == expect_err, hex(addr + k)
            out.append(byte)
        return bytes(out)

    async def read32(self, addr):
        return int.from_bytes(await self.read(addr, 4), "little")


def random_model(rng, k, sizes, x, first="unsigned"):
    """Golden DenseLayers: unsigned k-bit (or binary) first layer, binary hidden, raw last;
    thresholds from the accumulators of the test batch (so bits are balanced), a few
    saturated. ``x`` is in the first layer's golden format."""
    layers, act = [], x
    for idx, (n, mo) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = idx == len(sizes) - 2
        layer = DenseLayer(
            name=f"fc{idx}", in_features=n, out_features=mo,
            input_kind=first if idx == 0 else "binary", input_bits=k if idx == 0 else 1,
            weights=B.pack_bits(rng.integers(0, 2, (mo, n))),
            output="raw" if last else "threshold")
        if not last:
            acc = layer.dot(act)
            lo, hi = layer.acc_range()
            layer.threshold = np.array([int(rng.choice(acc[:, c])) + int(rng.integers(-1, 2))
                                        for c in range(mo)], np.int32)
            layer.threshold[0] = hi + 5                   # saturated
            layer.threshold[-1] = lo - 7                  # saturated the other way
            layer.direction = rng.choice([-1, 1], mo).astype(np.int8)
            act = layer.forward(act)[1]
        layers.append(layer)
    return layers


def golden(layers, x):
    act = x
    for layer in layers:
        acc, act = layer.forward(act)
    return acc


def backdoor_load(ctx, dut, writes):
    """Put ``(address, bytes)`` writes straight into the core's memories (simulation only):
    the bus path is covered by the other tests; this keeps big-array runs fast."""
    cfg, mems = dut.config, dut.memories
    wb = cfg.word_bytes
    regions = [(mm.DESC_BASE, "desc", 4, 1), (mm.THR_BASE, "thr", 4, cfg.P),
               (mm.IN_BASE, "in", wb, cfg.Q), (mm.W_BASE, "w", wb, cfg.P)]
    for addr, data in writes:
        base, name, size, banks = max(r for r in regions if r[0] <= addr)
        assert (addr - base) % size == 0 and len(data) % size == 0
        for k in range(len(data) // size):
            unit = (addr - base) // size + k
            mem = mems[name] if name == "desc" else mems[name][unit % banks]
            value = int.from_bytes(data[k * size:(k + 1) * size], "little")
            ctx.set(mem.data[unit // banks], value)


def run_core(config, layers, x, k, poke_while_busy=True, backdoor=False, gap=0.3):
    dut = Core(config)
    batch = x.shape[0]
    program = build_program(layers, config) + encode_model_inputs(layers, x, config)
    out_addr, out_len = output_region(layers, config, batch)
    result = {}

    async def tb(ctx):
        bus = BusInitiator(ctx, dut.bus, np.random.default_rng(batch), gap)
        assert await bus.read32(mm.REG_ID) == mm.ID_VALUE
        if backdoor:
            backdoor_load(ctx, dut, program)
        else:
            for addr, data in program:
                await bus.write(addr, data)
        words = [await bus.read32(a) for a in (mm.REG_CONFIG, mm.REG_DEPTHS_W_IN,
                                                 mm.REG_DEPTHS_ACT_OUT, mm.REG_DEPTHS_THR_DESC)]
        assert mm.config_from_registers(*words) == config
        await bus.write(mm.REG_BATCH, batch.to_bytes(4, "little"))
        assert await bus.read32(mm.REG_BATCH) == batch
        # CTRL as one 32-bit word: bytes 1-3 arrive while busy and are ignored without err.
        await bus.write(mm.REG_CTRL, [mm.CTRL_START, 0, 0, 0])
        status = (await bus.read(mm.REG_STATUS, 1))[0]
        assert status & mm.STATUS_BUSY
        if poke_while_busy:
            # Refused while running: the last layer's weights, the batch, a second start.
            await bus.write(program[-3][0], b"\xff", expect_err=True)
            await bus.write(mm.REG_BATCH, b"\x07", expect_err=True)
            await bus.write(mm.REG_CTRL, [mm.CTRL_START], expect_err=True)
            await bus.read(mm.W_BASE, 1, expect_err=True)    # no read-back while busy
        while True:
            status = (await bus.read(mm.REG_STATUS, 1))[0]
            if not status & mm.STATUS_BUSY:
                break
            for _ in range(20):
                await ctx.tick()
        result["status"] = status
        result["error"] = await bus.read32(mm.REG_ERROR)
        result["total"] = await bus.read32(mm.REG_TOTAL_CYCLES)
        result["layers"] = await bus.read32(mm.REG_LAYERS_DONE)
        result["by_layer"] = [await bus.read32(mm.LAYER_CYCLES_BASE + 4 * i)
                              for i in range(len(hw_steps(layers)))]
        result["out"] = await bus.read(out_addr, out_len)
        # Idle: the loaded memories read back as written.
        for addr, data in program:
            if addr != mm.IN_BASE:
                assert await bus.read(addr, min(len(data), 48)) == bytes(data[:48]), hex(addr)
            else:
                assert await bus.read(addr + len(data) - 8, 8) == bytes(data[-8:])
        # Unmapped / read-only accesses answer with err and do not wedge the bus.
        await bus.read(mm.W_BASE + mm.regions(config)["w"][1], 1, expect_err=True)
        await bus.write(mm.REG_STATUS, b"\x00", expect_err=True)
        await bus.read(0x0FF0, 1, expect_err=True)
        assert await bus.read32(mm.REG_ID) == mm.ID_VALUE

    run(dut, tb, name=f"core_{config.P}x{config.Q}x{config.K}")
    return result


def check(config, layers, x, k, res, x_golden=None):
    batch = x.shape[0]
    assert res["status"] == mm.STATUS_DONE and res["error"] == mm.ERR_NONE
    assert res["layers"] == len(layers)
    got = decode_outputs(res["out"], layers, config, batch)
    np.testing.assert_array_equal(got, golden(layers, x if x_golden is None else x_golden))
    want = predict_cycles(layers, config, batch)
    assert res["by_layer"] == list(want["by_layer"].values())
    assert res["total"] == want["total"]


SMALL = dict(w_depth=64, thr_depth=16, in_depth=64, act_depth=16, out_depth=64, desc_depth=4,
             acc_width=16)


@pytest.mark.parametrize("shape,seed", [("4x2x16", 1), ("2x2x8", 2), ("2x4x8", 3),
                                        ("4x2x16", 4), ("1x1x8", 5), ("8x1x8", 6),
                                        ("2x4x8,issue_reg=1", 7), ("4x2x16,row_groups=2", 8),
                                        ("8x1x8,row_groups=8,issue_reg=1", 9)])
def test_core_random_three_layer_model(shape, seed):
    config = ArrayConfig.parse(shape).replace(**SMALL)
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 9))
    n0 = int(rng.integers(config.K + 1, 2 * config.K))           # N not a multiple of K
    sizes = [n0, config.P * 2 + 1, config.P + 3, 5]                # M not a multiple of P
    batch = config.Q * 2 + 1                                       # > Q: three column groups
    x = rng.integers(0, 1 << k, (batch, n0)).astype(np.uint8)
    layers = random_model(rng, k, sizes, x)
    check(config, layers, x, k, run_core(config, layers, x, k))


@pytest.mark.slow
def test_core_default_config_256_wide_layer_utilisation():
    """8x8x32 (the default) runs 40→256 (k=2), 256→256, 256→10 bit-exactly; the counters
    equal the cycle model, and the 256→256 layer keeps the array busy ≥ 90 % of its cycles."""
    config = ArrayConfig()
    rng = np.random.default_rng(256)
    k, batch = 2, config.Q
    x = rng.integers(0, 1 << k, (batch, 40)).astype(np.uint8)
    layers = random_model(rng, k, [40, 256, 256, 10], x)
    res = run_core(config, layers, x, k, poke_while_busy=False, backdoor=True, gap=0.0)
    check(config, layers, x, k, res)
    hidden = layers[1]
    shape = hidden.overlay_shape(config)
    measured = shape.m_tiles * shape.tile_words / res["by_layer"][1]   # issue / counted cycles
    assert res["by_layer"][1] == 276
    assert measured == hidden.overlay_utilisation(config, batch) >= 0.9


@pytest.mark.parametrize("conv", [1, 0])
def test_core_errors_and_recovery(conv):
    """Batch 0, a reserved op code (and a conv on a dense-only build) and a table without
    FLAG_LAST stop with their error codes; the core then runs a good program normally."""
    config = ArrayConfig.parse("2x2x8").replace(**SMALL, conv=conv)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, (3, 10)).astype(np.uint8)
    layers = random_model(rng, 2, [10, 6, 3], x)
    dut = Core(config)
    program = build_program(layers, config) + encode_inputs(x, 2, config)
    out_addr, out_len = output_region(layers, config, 3)

    async def run_once(bus, batch):
        await bus.write(mm.REG_BATCH, batch.to_bytes(2, "little"))
        await bus.write(mm.REG_CTRL, [mm.CTRL_START])
        while (await bus.read(mm.REG_STATUS, 1))[0] & mm.STATUS_BUSY:
            pass
        return (await bus.read(mm.REG_STATUS, 1))[0], await bus.read32(mm.REG_ERROR)

    async def tb(ctx):
        bus = BusInitiator(ctx, dut.bus)
        assert await run_once(bus, 0) == (mm.STATUS_DONE | mm.STATUS_ERROR, mm.ERR_BATCH)
        for op in [mm.OP_MAXPOOL] + ([] if conv else [mm.OP_CONV3X3 | mm.FLAG_LAST]):
            desc = mm.encode_descriptor(op, 1, 1, 8, 1, 0, 0, 1, groups=1)
            await bus.write(mm.DESC_BASE, desc)
            assert await run_once(bus, 2) == (mm.STATUS_DONE | mm.STATUS_ERROR, mm.ERR_OPCODE)
        desc = mm.encode_descriptor(mm.OP_DENSE, 1, 1, 8, 1, 0, 0, 1)   # no FLAG_LAST
        for i in range(config.desc_depth):
            await bus.write(mm.DESC_BASE + mm.DESC_BYTES * i, desc)
        assert await run_once(bus, 2) == (mm.STATUS_DONE | mm.STATUS_ERROR, mm.ERR_NO_END)
        assert await bus.read32(mm.REG_LAYERS_DONE) == config.desc_depth
        for addr, data in program:
            await bus.write(addr, data)
        assert await run_once(bus, 3) == (mm.STATUS_DONE, mm.ERR_NONE)
        got = decode_outputs(await bus.read(out_addr, out_len), layers, config, 3)
        np.testing.assert_array_equal(got, golden(layers, x))

    run(dut, tb, name="core_errors")


def test_core_binary_first_layer():
    """A binary first layer reads its ±1 inputs as one bit-plane (input_bits = 1)."""
    config = ArrayConfig.parse("2x4x16").replace(**SMALL)
    rng = np.random.default_rng(11)
    x01 = rng.integers(0, 2, (6, 37)).astype(np.uint8)
    layers = random_model(rng, 1, [37, 9, 4], B.pack_bits(x01), first="binary")
    check(config, layers, x01, 1, run_core(config, layers, x01, 1), x_golden=B.pack_bits(x01))


def test_core_deep_weight_banks_ask_for_huge_ram():
    """w_depth ≥ 4096: the weight banks (and only they) carry ram_style = "huge", which
    synth_ice40 -spram maps to SB_SPRAM256KA; their read and write ports share one address
    (single-port use), whatever the depth."""
    from amaranth.back import rtlil
    small = dict(SMALL, w_depth=4096)
    config = ArrayConfig.parse("2x2x8").replace(**small)
    assert config.w_huge and not ArrayConfig.parse("2x2x8").replace(**SMALL).w_huge
    core = Core(config)
    assert all(m.attrs.get("ram_style") == "huge" for m in core.memories["w"])
    others = [m for name, ms in core.memories.items() if name != "w"
              for m in (ms if isinstance(ms, list) else [ms])]
    assert not any("ram_style" in m.attrs for m in others)
    text = rtlil.convert(core, name="core")
    assert text.count('attribute \\ram_style "huge"') == config.P


@pytest.mark.slow
def test_core_icebreaker_default_runs_the_digits_mlp():
    """The iCEBreaker's default build (SPRAM-sized weight banks) runs 64-256-256-10 with
    4-bit inputs bit-exactly, its counters equal to the cycle model."""
    from xnorflow.sw.synth import BOARD_DEFAULT_ARRAY
    config = ArrayConfig.parse(BOARD_DEFAULT_ARRAY["icebreaker"])
    rng = np.random.default_rng(64)
    k, batch = 4, config.Q + 1
    x = rng.integers(0, 1 << k, (batch, 64)).astype(np.uint8)
    layers = random_model(rng, k, [64, 256, 256, 10], x)
    res = run_core(config, layers, x, k, poke_while_busy=False, backdoor=True, gap=0.0)
    check(config, layers, x, k, res)
