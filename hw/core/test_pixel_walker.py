"""PixelWalker alone: each column's pixel, word address and border flags over a layer."""
import pytest

from xnorflow.hw.core.pixel_walker import PixelWalker
from xnorflow.hw.core.testing import run


def expected_pixels(j, Q, H, W, pool, groups):
    """(y, x) of column j in each group: row-major pixels, or pool windows row-major with
    the window's pixel dy·2 + dx in column j mod 4."""
    out = []
    for g in range(groups):
        u = g * Q + j
        if pool:
            win, sub = divmod(u, 4)
            wy, wx = divmod(win, W // 2)
            y, x = 2 * wy + (sub >> 1), 2 * wx + (sub & 1)
        else:
            y, x = divmod(u, W)
        out.append((y, x))
    return out


@pytest.mark.parametrize("Q,H,W,pool,pw", [(8, 5, 10, False, 2), (4, 4, 4, False, 1),
                                           (8, 6, 4, True, 3), (4, 6, 10, True, 1)])
def test_walker_follows_the_pixel_order(Q, H, W, pool, pw):
    groups = -(-H * W // Q)
    step, rows = (Q // 2, 2) if pool else (Q, 1)
    for j in range(Q):
        dut = PixelWalker(j, Q)
        seen = []

        async def tb(ctx):
            ctx.set(dut.start, 1)
            for name, value in (("pool", pool), ("height", H), ("width", W), ("pix_words", pw),
                                ("row_words", W * pw), ("step_words", step * pw),
                                ("wrap_words", (step + (rows - 1) * W) * pw)):
                ctx.set(getattr(dut.geometry, name), value)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for name in ("pool", "height", "width", "pix_words", "row_words", "step_words",
                         "wrap_words"):
                ctx.set(getattr(dut.geometry, name), 0)   # latched at start: later ignored
            assert ctx.get(dut.base) == 0           # column 0's pixel, in time for its read
            await ctx.tick()                        # init: the first base and the bounds
            for g in range(groups):
                pads = {}
                for ky in range(3):
                    for kx in range(3):
                        ctx.set(dut.kx, kx)
                        ctx.set(dut.ky, ky)
                        pads[ky, kx] = ctx.get(dut.pad)
                seen.append((ctx.get(dut.base), pads))
                ctx.set(dut.advance, 1)
                await ctx.tick()
                ctx.set(dut.advance, 0)

        run(dut, tb, name=f"walker{j}")
        want = expected_pixels(j, Q, H, W, pool, groups)
        for g, ((base, pads), (y, x)) in enumerate(zip(seen, want)):
            if y >= H:                  # spare column of the last group: never written
                continue
            assert base == (y * W + x) * pw, (j, g)
            for (ky, kx), pad in pads.items():
                outside = not (0 <= y + ky - 1 < H and 0 <= x + kx - 1 < W)
                assert pad == outside, (j, g, ky, kx)
