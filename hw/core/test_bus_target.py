"""The bus target alone, against the address map's own definitions (hw/core/memory_map.py):
every region's edges decode to the right error, bank, word and byte lane, idle and busy."""
import pytest

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core.bus_target import BusTarget
from xnorflow.hw.core.testing import run

CONFIG = ArrayConfig.parse("2x4x16,w_depth=64,thr_depth=16,in_depth=32,act_depth=16,"
                           "out_depth=32,desc_depth=4,acc_width=16")
BANKED = {"thr": "thr", "out": "thr", "in": "in", "w": "w"}   # region -> the target's ports


def probe_addresses(config):
    """The first and last byte of every region, the bytes just outside, and the ends of every
    window of the map (past a region's used size, still inside its window)."""
    addrs = set()
    for base, size, _ in mm.regions(config).values():
        addrs.update({base, base + 1, base + size - 1, base + size, max(base - 1, 0)})
    for base, size in mm.WINDOWS.values():
        addrs.update({base + size - 1, base + size // 2})
    addrs.update({mm.REG_END - 1, mm.REG_END, mm.REG_CTRL + 1, mm.REG_BATCH + 3})
    return sorted(a for a in addrs if a < mm.ADDR_SPACE)


def expected_err(addr, write, busy, config):
    """``err`` of a request, from docs/memory_map.md's rules and :func:`mm.region_of`."""
    region = mm.region_of(addr, config)
    if region == "regs":
        if not write:
            return 0
        if mm.REG_CTRL < addr < mm.REG_CTRL + mm.REG_BYTES:
            return 0                    # CTRL bytes 1-3: ignored, even while busy
        writable = {mm.REG_CTRL, mm.REG_BATCH} & {addr - addr % mm.REG_BYTES}
        return busy if writable else 1
    if region == "layer_cycles":
        return int(write)
    if region in ("desc", "thr", "in", "w"):
        return busy
    if region == "out":
        return 1 if write else busy
    return 1                            # unmapped


def place(addr, region, config):
    """(bank, word, byte) of ``addr`` in ``region`` by memory_map.interleave."""
    unit, banks = mm.interleave(region, config)
    offset = addr - mm.regions(config)[region][0]
    return offset // unit % banks, offset // (unit * banks), offset % unit


def bank_word(bank, unit_bytes):
    """A recognisable read word of ``bank`` (its bytes are bank·16 + byte index)."""
    return int.from_bytes(bytes(bank * 16 + b for b in range(unit_bytes)), "little")


@pytest.mark.parametrize("busy", [0, 1])
def test_every_region_edge_decodes_by_the_map(busy):
    dut = BusTarget(CONFIG)
    addrs = probe_addresses(CONFIG)
    seen = []

    async def request(ctx, addr, write):
        ctx.set(dut.bus.addr, addr); ctx.set(dut.bus.we, write); ctx.set(dut.bus.w_data, 0x5A)
        ctx.set(dut.bus.stb, 1)
        for _ in range(8):
            await ctx.tick()
            if ctx.get(dut.bus.ack):
                break
        else:
            raise AssertionError(f"no ack for {addr:#x}")
        result = {"err": ctx.get(dut.bus.err), "r_data": ctx.get(dut.bus.r_data)}
        for name in ("w", "thr", "in"):
            for bank, port in enumerate(getattr(dut, f"{name}_write")):
                result[name, bank] = ctx.get(port.en), ctx.get(port.addr)
            for bank, port in enumerate(getattr(dut, f"{name}_read")):
                result[name, "read", bank] = ctx.get(port.addr)
        await ctx.tick()                # the initiator drops stb after the ack cycle
        ctx.set(dut.bus.stb, 0)
        return result

    async def tb(ctx):
        ctx.set(dut.control.busy, busy)
        for name in ("w", "thr", "in"):
            for bank, port in enumerate(getattr(dut, f"{name}_read")):
                ctx.set(port.data, bank_word(bank, len(port.data) // 8))
        for addr in addrs:
            for write in (0, 1):
                seen.append((addr, write, await request(ctx, addr, write)))

    run(dut, tb, name="bus_target")
    for addr, write, got in seen:
        where = f"{'write' if write else 'read'} {addr:#08x} busy={busy}"
        assert got["err"] == expected_err(addr, write, busy, CONFIG), where
        region = mm.region_of(addr, CONFIG)
        if region not in BANKED:
            continue
        bank, word, byte = place(addr, region, CONFIG)
        ports = BANKED[region]
        row_word = word + CONFIG.thr_depth if region == "out" else word
        assert got[ports, "read", bank] == row_word, where
        written = write and not busy and region != "out"    # the output buffer is read-only
        if written:
            assert got[ports, bank] == (1 << byte, word), where
        elif not write and not busy:
            assert got["r_data"] == bank * 16 + byte, where
        for other in range(len(getattr(dut, f"{ports}_write"))):
            if not (written and other == bank):
                assert got[ports, other][0] == 0, f"{where}: bank {other} written"


@pytest.mark.parametrize("text", ["8x8x32", "2x4x16,w_depth=16384,conv=0,desc_depth=8",
                                  "32x4x64,issue_reg=1,row_groups=4,acc_width=16"])
def test_config_registers_describe_the_build(text):
    config = ArrayConfig.parse(text)
    regs = mm.config_registers(config)
    assert mm.config_from_registers(regs[mm.REG_CONFIG], regs[mm.REG_DEPTHS_W_IN],
                                    regs[mm.REG_DEPTHS_ACT_OUT],
                                    regs[mm.REG_DEPTHS_THR_DESC]) == config
