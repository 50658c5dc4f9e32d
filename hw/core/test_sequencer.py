"""Sequencer alone: issue order and addresses, tile padding, layer cycle counts, errors."""
import pytest

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core.sequencer import Sequencer
from xnorflow.hw.core.testing import run


def expected_issue(d, batch, Q):
    """(w_addr, a_addr, last_word, double, tile_last) in the documented order."""
    k, nw, mt = d["input_bits"], d["in_words"], d["m_tiles"]
    W = nw * k
    out = []
    for g in range(-(-batch // Q)):
        for t in range(mt):
            for q in range(k):
                for w in range(nw):
                    out.append((d["w_base"] + t * nw + w, g * W + q * nw + w, int(w == nw - 1),
                                int(w == 0 and q > 0), int(w == nw - 1 and q == k - 1)))
    return out


def descriptor_table(descs, cfg):
    """The descriptor memory's 32-bit words holding ``descs`` (zero-filled)."""
    raw = b"".join(mm.encode_descriptor(**d) for d in descs)
    raw += bytes(mm.DESC_BYTES * cfg.desc_depth - len(raw))
    return [int.from_bytes(raw[o:o + 4], "little") for o in range(0, len(raw), 4)]


async def run_table(ctx, dut, table, batch, each_cycle):
    """Start a run of ``batch`` and answer the descriptor reads from ``table`` (one cycle
    latency) until done, calling ``each_cycle(ctx)`` before every clock edge."""
    ctx.set(dut.control.batch, batch)
    ctx.set(dut.control.start, 1)
    assert ctx.get(dut.desc.owner) and ctx.get(dut.desc.addr) == 0
    await ctx.tick()
    ctx.set(dut.control.start, 0)
    ctx.set(dut.desc.data, table[0])     # the memory answers the start cycle's address
    for _ in range(2000):
        addr = ctx.get(dut.desc.addr)
        each_cycle(ctx)
        await ctx.tick()
        ctx.set(dut.desc.data, table[addr])
        if ctx.get(dut.control.done):
            break
    assert ctx.get(dut.control.error) == mm.ERR_NONE


@pytest.mark.parametrize("batch", [1, 5])
def test_sequencer_issue_order_and_cycles(batch):
    cfg = ArrayConfig.parse("2x4x8,desc_depth=4")
    descs = [dict(op=mm.OP_DENSE | mm.FLAG_UNSIGNED, input_bits=3, in_words=2, last_bits=5,
                  m_tiles=3, w_base=7, t_base=0, out_words=1),
             dict(op=mm.OP_DENSE, input_bits=1, in_words=1, last_bits=6, m_tiles=2,
                  w_base=13, t_base=3, out_words=1),
             dict(op=mm.OP_DENSE | mm.FLAG_RAW | mm.FLAG_LAST, input_bits=1, in_words=5,
                  last_bits=8, m_tiles=2, w_base=15, t_base=0, out_words=0)]
    table = descriptor_table(descs, cfg)
    dut = Sequencer(cfg)
    issued, lc, starts = [], [], []

    def each_cycle(ctx):
        if ctx.get(dut.issue.valid):
            issued.append((ctx.get(dut.issue.w_addr), ctx.get(dut.issue.a_addr),
                           ctx.get(dut.issue.last_word), ctx.get(dut.issue.double),
                           ctx.get(dut.issue.tile_last)))
        if ctx.get(dut.layer_cycles.en):
            lc.append(ctx.get(dut.layer_cycles.data))
        if ctx.get(dut.layer.start):
            starts.append(ctx.get(dut.layer.index))

    async def tb(ctx):
        await run_table(ctx, dut, table, batch, each_cycle)
        assert ctx.get(dut.control.total_cycles) == sum(lc)
        assert ctx.get(dut.control.layers_done) == 3

    run(dut, tb, name="sequencer")
    want = sum((expected_issue(d, batch, cfg.Q) for d in descs), [])
    assert issued == want
    for idx, (d, cycles) in enumerate(zip(descs, lc)):
        G = -(-batch // cfg.Q)
        W = d["in_words"] * d["input_bits"]
        fetch = cfg.desc_fetch if idx == 0 else 0
        assert cycles == fetch + 1 + (G * d["m_tiles"] - 1) * max(W, cfg.Q) + W + \
            cfg.write_delay
    assert starts == [0, 1, 2]


def test_sequencer_walks_conv_taps():
    """A binary conv: G from the descriptor, the activation address is the tap offset
    ((ky − 1)·W + kx − 1)·pix_words + word (mod 2^16), the last-word flag marks each tap's
    last word, and g_next pulses after each group but the last."""
    cfg = ArrayConfig.parse("2x4x8,desc_depth=2")
    H, W, pw, groups, mt = 5, 6, 2, 3, 2
    d = dict(op=mm.OP_CONV3X3 | mm.FLAG_LAST, input_bits=1, in_words=9 * pw, last_bits=3,
             m_tiles=mt, w_base=4, t_base=0, out_words=1, groups=groups, height=H, width=W,
             pix_words=pw, row_words=W * pw, out_units=H * W, step_words=4 * pw,
             wrap_words=4 * pw)
    table = descriptor_table([d], cfg)
    dut = Sequencer(cfg)
    issued, g_next = [], []

    def each_cycle(ctx):
        walk = dut.layer.walk
        if ctx.get(dut.layer.start):
            assert (ctx.get(walk.height), ctx.get(walk.width),
                    ctx.get(walk.pix_words), ctx.get(walk.row_words)) == (H, W, pw, W * pw)
        if ctx.get(dut.issue.valid):
            assert ctx.get(dut.layer.conv) and ctx.get(dut.layer.bcast) \
                and not ctx.get(dut.layer.pool)
            issued.append((ctx.get(dut.issue.w_addr), ctx.get(dut.issue.a_addr),
                           ctx.get(dut.issue.kx), ctx.get(dut.issue.ky),
                           ctx.get(dut.issue.last_word), ctx.get(dut.issue.tile_last)))
            g_next.append(ctx.get(dut.issue.g_next))

    async def tb(ctx):
        # batch 7 is ignored by a conv: G comes from the descriptor
        await run_table(ctx, dut, table, 7, each_cycle)

    run(dut, tb, name="sequencer_conv")
    want, want_next = [], []
    for g in range(groups):
        for t in range(mt):
            for ky in range(3):
                for kx in range(3):
                    for w in range(pw):
                        n = (ky * 3 + kx) * pw + w
                        off = (((ky - 1) * W + kx - 1) * pw + w) & 0xFFFF
                        want.append((4 + t * 9 * pw + n, off, kx, ky, int(w == pw - 1),
                                     int(n == 9 * pw - 1)))
                        want_next.append(int(n == 9 * pw - 1 and t == mt - 1 and
                                             g < groups - 1))
    assert issued == want
    assert g_next == want_next
