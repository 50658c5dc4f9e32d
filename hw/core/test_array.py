"""Array against binary_dot / unsigned_dot for random shapes (N % K ≠ 0, M % P ≠ 0)."""
import numpy as np
import pytest

from xnorflow.hw.core.array import SystolicArray
from xnorflow.hw.core.testing import run
from xnorflow.sw import bits as B
from xnorflow.sw.layers.dense import binary_dot, unsigned_dot


def to_words(packed_row, K):
    nb = K // 8
    return [int.from_bytes(packed_row[i:i + nb].tobytes(), "little")
            for i in range(0, len(packed_row), nb)]


def schedule(P, Q, K, kind, k, x, wp, n, rng, G=1):
    """Issue order of the core (group, tile, word, plane) with random idle gaps, skewed by
    column and by row group (``G`` groups: rows of group g get their words g cycles late)."""
    M = wp.shape[0]
    tiles = -(-M // P)
    groups = -(-x.shape[0] // Q)
    wpad = np.zeros((tiles * P, wp.shape[1]), np.uint8)
    wpad[:M] = wp
    mask = to_words(B.valid_mask(n, K), K)
    # Garbage in the weights' padding bits: the array must keep it out of every sum.
    wwords = [[w | (int(rng.integers(1 << min(K, 62))) & ~mk & ((1 << K) - 1))
               for w, mk in zip(to_words(B.pack_bits(B.unpack_bits(r, n), K), K), mask)]
              for r in wpad]
    nw = len(wwords[0])
    xs = np.zeros((groups * Q,) + x.shape[1:], x.dtype)
    xs[:x.shape[0]] = x
    if kind == "binary":
        xw = [[to_words(B.pack_bits(B.unpack_bits(r, n), K), K)] for r in xs]
    else:
        xw = [[to_words(B.pack_bits((r >> b) & 1, K), K) for b in range(k)] for r in xs]
    rows, cols, order = {}, {}, []
    c = 0
    for g in range(groups):
        for t in range(tiles):
            start = c
            for q in range(k):                    # planes most significant first
                b = k - 1 - q
                for w in range(nw):
                    while rng.random() < 0.2:
                        c += 1
                    last = w == nw - 1 and q == k - 1
                    for i in range(P):
                        rows.setdefault(c + i // (P // G), {})[i] = wwords[t * P + i][w]
                    for j in range(Q):
                        plane = xw[g * Q + j][b][w]
                        cols.setdefault(c + j, {})[j] = (plane, mask[w], int(w == 0 and q > 0),
                                                         last)
                    c += 1
            c = max(c, start + Q)       # tiles at least Q cycles apart (start to start)
            order.append((g, t))
    return rows, cols, order, c


@pytest.mark.parametrize("P,Q,K,kind,G", [(2, 2, 8, "binary", 1), (4, 2, 16, "unsigned", 1),
                                          (2, 4, 8, "unsigned", 1), (4, 2, 16, "binary", 1),
                                          (4, 2, 16, "binary", 2), (4, 2, 8, "unsigned", 4)])
def test_array_vs_golden(P, Q, K, kind, G):
    rng = np.random.default_rng(P * 100 + Q * 10 + K + len(kind) + G)
    n = int(rng.integers(K + 1, 3 * K)) | 1           # not a multiple of K
    M = P * 2 + 1                                     # not a multiple of P
    Bn = Q + 1                                        # two column groups, one partial
    k = int(rng.integers(2, 5)) if kind == "unsigned" else 1
    wp = B.pack_bits(rng.integers(0, 2, (M, n)))
    if kind == "binary":
        x = B.pack_bits(rng.integers(0, 2, (Bn, n)))
        want = binary_dot(x, wp, n)
    else:
        x = rng.integers(0, 1 << k, (Bn, n)).astype(np.uint8)
        want = unsigned_dot(x, wp, n, k)
    rows, cols, order, end = schedule(P, Q, K, kind, k, x, wp, n, rng, G)
    dut = SystolicArray(P, Q, K, 20, row_groups=G)
    got = [[] for _ in range(P)]

    async def tb(ctx):
        for c in range(end + Q + dut.group_latency + dut.pe_latency + dut.drain_latency + 4):
            for i in range(P):
                ctx.set(dut.edge.w[i], rows.get(c, {}).get(i, 0x5A))
            for j in range(Q):
                # Idle cycles carry garbage (even in the mask): only valid keeps them out.
                x_, m_, dbl, last = cols.get(c, {}).get(j, (0xA5, 0x3C, 1, 0))
                valid = j in cols.get(c, {})
                z_ = 0 if kind == "unsigned" else m_
                if not valid:
                    z_ = 0x96 & ((1 << K) - 1)      # garbage as well
                edge = dut.edge
                ctx.set(edge.x[j], x_); ctx.set(edge.m[j], m_); ctx.set(edge.z[j], z_)
                ctx.set(edge.dbl[j], dbl)
                ctx.set(edge.last[j], last if valid else 1); ctx.set(edge.valid[j], valid)
            await ctx.tick()
            valid_rows = [ctx.get(dut.sums.valid[i]) for i in range(P)]
            assert len(set(valid_rows)) == 1        # every row delivers in the same cycles
            for i in range(P):
                if valid_rows[i]:
                    got[i].append(ctx.get(dut.sums.acc[i]))

    run(dut, tb, name=f"array_{P}x{Q}x{K}")
    for i in range(P):
        assert len(got[i]) == len(order) * Q
        for idx, (g, t) in enumerate(order):
            for j in range(Q):
                b, ch = g * Q + j, t * P + i
                if b < Bn and ch < M:
                    assert got[i][idx * Q + j] == want[b, ch], (i, g, t, j)
