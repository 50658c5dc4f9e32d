"""PE against the golden model: binary and bit-serial unsigned dot products, random masks."""
import numpy as np
import pytest

from hw.core.pe import PE, popcount_latency
from hw.core.testing import run
from sw import bits as B
from sw.layers.dense import binary_dot, unsigned_dot


def words_of(packed, K):
    """uint8 [nb] packed bits → list of K-bit ints (little-endian words, contract of sw.bits)."""
    nb = K // 8
    packed = np.pad(packed, (0, (-len(packed)) % nb))
    return [int.from_bytes(packed[i:i + nb].tobytes(), "little") for i in range(0, len(packed), nb)]


def simulate(K, acc_width, stream, rng, gaps=True):
    """Feed (w, x, m, s, last) tuples with random idle cycles; return the finished sums."""
    dut = PE(K, acc_width)
    results = []

    lag = [0] * popcount_latency(K)      # pm_in lags its word by the popcount latency

    async def tb(ctx):
        items = list(stream)
        idle = 0
        while items or idle < dut.latency + 2:
            ctx.set(dut.pm_in, lag[0])
            if items and not (gaps and rng.random() < 0.25):
                w, x, mk, s, last = items.pop(0)
                ctx.set(dut.w_in, w); ctx.set(dut.x_in, x); ctx.set(dut.m_in, mk)
                ctx.set(dut.s_in, s); ctx.set(dut.last_in, last); ctx.set(dut.valid_in, 1)
                lag.append(bin(mk).count("1"))
                idle = 0
            else:
                # Idle words carry garbage: only valid may keep them out of the sum.
                ctx.set(dut.w_in, int(rng.integers(1 << K)) if K < 63 else 0)
                ctx.set(dut.x_in, int(rng.integers(1 << 8)))
                ctx.set(dut.m_in, (1 << K) - 1)
                ctx.set(dut.last_in, int(rng.integers(2)))
                ctx.set(dut.valid_in, 0)
                lag.append(int(rng.integers(K + 1)))
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
    stream, expect = [], []
    for tile in range(4):
        n = int(rng.integers(1, 3 * K))
        x = rng.integers(0, 2, n).astype(bool)
        w = rng.integers(0, 2, n).astype(bool)
        xp, wp = B.pack_bits(x), B.pack_bits(w)
        mp = B.valid_mask(n)
        xs, ws, ms = words_of(xp, K), words_of(wp, K), words_of(mp, K)
        for i in range(len(ws)):
            stream.append((ws[i], xs[i], ms[i], 0, i == len(ws) - 1))
        expect.append(int(binary_dot(xp[None], wp[None], n)[0, 0]))

        # Unsigned k-bit input: x = m = bit-plane b, s = b (contract 3 via the same PE).
        k = int(rng.integers(1, 9))
        xi = rng.integers(0, 1 << k, n).astype(np.uint8)
        for i in range(len(ws)):
            for b in range(k):
                plane = words_of(B.pack_bits((xi >> b) & 1), K)[i]
                stream.append((ws[i], plane, plane, b, i == len(ws) - 1 and b == k - 1))
        expect.append(int(unsigned_dot(xi[None], wp[None], n, k)[0, 0]))
    assert simulate(K, 20, stream, rng) == expect


def test_pe_random_masks_and_shifts():
    K = 16
    rng = np.random.default_rng(7)
    stream, expect = [], []
    for tile in range(6):
        total = 0
        nwords = int(rng.integers(1, 5))
        for i in range(nwords):
            w, x, mk = (int(v) for v in rng.integers(0, 1 << K, 3))
            s = int(rng.integers(0, 8))
            agree = np.array([~(x ^ w) & mk & 0xFFFF], dtype=np.uint64)
            total += (2 * int(B.popcount(agree)) - int(B.popcount(np.array([mk], np.uint64)))) << s
            stream.append((w, x, mk, s, i == nwords - 1))
        expect.append(total)
    assert simulate(K, 20, stream, rng) == expect
