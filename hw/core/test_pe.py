"""PE against the golden model: binary and bit-serial unsigned dot products, random masks."""
import numpy as np
import pytest

from xnorflow.hw.core.pe import PE, popcount_latency
from xnorflow.hw.core.testing import run
from xnorflow.sw import bits as B
from xnorflow.sw.layers.dense import binary_dot, unsigned_dot


def words_of(packed, K):
    """uint8 [nb] packed bits → list of K-bit ints (little-endian words, contract of xnorflow.sw.bits)."""
    nb = K // 8
    packed = np.pad(packed, (0, (-len(packed)) % nb))
    return [int.from_bytes(packed[i:i + nb].tobytes(), "little") for i in range(0, len(packed), nb)]


def simulate(K, acc_width, stream, rng, gaps=True, unsigned=0):
    """Feed (w, x, m, dbl, last) tuples with random idle cycles; return the finished sums.

    The test does the column's share of the work the way the array does: it clears the
    padding bits of ``x``, sets ``zero_agrees`` (the mask in binary mode, 0 in unsigned mode)
    and delays ``popcount(m)`` and the sideband by the popcount latency.
    """
    dut = PE(K, acc_width)
    results = []
    # (pm, dbl, valid, last) of the word that entered popcount_latency cycles ago
    lag = [(0, 0, 0, 0)] * popcount_latency(K)

    async def tb(ctx):
        items = list(stream)
        idle = 0
        while items or idle < dut.latency + 2:
            pm, dbl, valid, last = lag[0]
            ctx.set(dut.pm_in, pm); ctx.set(dut.dbl_in, dbl)
            ctx.set(dut.valid_in, valid); ctx.set(dut.last_in, last)
            if items and not (gaps and rng.random() < 0.25):
                w, x, mk, dbl, last = items.pop(0)
                x_col = x & mk
                # Garbage in the weight's padding bits: x and zero_agrees must keep it out.
                junk = int(rng.integers(1 << min(K, 62)))
                ctx.set(dut.w_in, (w & mk) | (junk & ~mk)); ctx.set(dut.x_in, x_col)
                ctx.set(dut.zero_agrees, 0 if unsigned else mk)
                lag.append((bin(x_col if unsigned else mk).count("1"), dbl, 1, last))
                idle = 0
            else:
                # Idle words carry garbage: only valid may keep them out of the sum.
                ctx.set(dut.w_in, int(rng.integers(1 << K)) if K < 63 else 0)
                ctx.set(dut.x_in, int(rng.integers(1 << 8)))
                ctx.set(dut.zero_agrees, int(rng.integers(1 << 8)))
                lag.append((int(rng.integers(K + 1)), int(rng.integers(2)), 0,
                            int(rng.integers(2))))
                idle += 1
            lag.pop(0)
            await ctx.tick()
            if ctx.get(dut.out_valid):
                results.append(ctx.get(dut.out_acc))
            else:
                assert ctx.get(dut.out_acc) == 0

    run(dut, tb, name=f"pe_{K}")
    return results


@pytest.mark.parametrize("K", [8, 16, 32, 64])
def test_pe_binary_and_unsigned_vs_golden(K):
    rng = np.random.default_rng(K)
    binary, unsigned, want_b, want_u = [], [], [], []
    for tile in range(4):
        n = int(rng.integers(1, 3 * K))
        x = rng.integers(0, 2, n).astype(bool)
        w = rng.integers(0, 2, n).astype(bool)
        xp, wp = B.pack_bits(x), B.pack_bits(w)
        mp = B.valid_mask(n)
        xs, ws, ms = words_of(xp, K), words_of(wp, K), words_of(mp, K)
        for i in range(len(ws)):
            binary.append((ws[i], xs[i], ms[i], 0, i == len(ws) - 1))
        want_b.append(int(binary_dot(xp[None], wp[None], n)[0, 0]))

        # Unsigned k-bit input: bit-planes most significant first, doubling at each new
        # plane (contract 3 via the same PE).
        k = int(rng.integers(1, 9))
        xi = rng.integers(0, 1 << k, n).astype(np.uint8)
        for q in range(k):
            b = k - 1 - q
            for i in range(len(ws)):
                plane = words_of(B.pack_bits((xi >> b) & 1), K)[i]
                unsigned.append((ws[i], plane, ms[i], int(i == 0 and q > 0),
                                 i == len(ws) - 1 and q == k - 1))
        want_u.append(int(unsigned_dot(xi[None], wp[None], n, k)[0, 0]))
    assert simulate(K, 20, binary, rng) == want_b
    assert simulate(K, 20, unsigned, rng, unsigned=1) == want_u


def test_pe_random_words_and_doubling():
    """Binary mode with arbitrary masks and doubling: acc = (2·acc if dbl) + 2·pc − pm."""
    K = 16
    rng = np.random.default_rng(7)
    stream, expect = [], []
    for tile in range(6):
        total = 0
        nwords = int(rng.integers(1, 5))
        for i in range(nwords):
            w, x, mk = (int(v) for v in rng.integers(0, 1 << K, 3))
            dbl = int(i > 0 and rng.random() < 0.5)
            agree = np.array([~(x ^ w) & mk & 0xFFFF], dtype=np.uint64)
            total = (2 * total if dbl else total) + 2 * int(B.popcount(agree)) \
                - int(B.popcount(np.array([mk], np.uint64)))
            stream.append((w, x, mk, dbl, i == nwords - 1))
        expect.append(total)
    assert simulate(K, 20, stream, rng) == expect
