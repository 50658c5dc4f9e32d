"""Protocol fuzz on Verilator: the host link (hw/link) in front of its test memory, byte-exact
against xnorflow.sw.protocol.ReferenceLink, through the C++ harness with random gaps and backpressure."""
import random

import pytest

from xnorflow.sw import protocol as P

pytestmark = pytest.mark.verilator

LINK = dict(max_payload=64, timeout=400, size=512, wait_bits=2)


@pytest.fixture(scope="session")
def linkmem_exe():
    from xnorflow.sim.build import build_harness
    from xnorflow.sim.tops import link_memory_spec
    return build_harness(link_memory_spec(**LINK), waves=False)


def _valid_frames(rng):
    """Valid requests over the whole memory, some refused by the bus (beyond its size)."""
    def make():
        kind = rng.random()
        if kind < 0.1:
            return P.ident_request()
        addr = rng.randrange(0, LINK["size"] + 16)
        if kind < 0.55:
            return P.write_request(addr, rng.randbytes(rng.randrange(0, LINK["max_payload"] - 3)))
        return P.read_request(addr, rng.randrange(0, LINK["max_payload"] + 1))
    return make


def test_round_trips_match_the_reference_link(linkmem_exe):
    from xnorflow.sim.verilator_transport import VerilatorTransport
    ref = P.ReferenceLink(max_payload=LINK["max_payload"], mem_size=LINK["size"])
    rng = random.Random(11)
    make = _valid_frames(rng)
    with VerilatorTransport(linkmem_exe) as t:
        reqs = [make() for _ in range(100)]
        want = [f for r in reqs for f in ref.feed(r)]
        assert t.transact_many(reqs) == want  # pipelined in one harness op
        assert P.Ident.decode(P.decode_response(t.transact(P.ident_request())).payload) \
            == ref.ident


@pytest.mark.parametrize("gaps", [(0, 0), (300, 300)], ids=["full-speed", "gaps"])
def test_fuzz_frames_are_all_answered_and_valid_ones_stay_correct(linkmem_exe, gaps):
    """1,200 items: random, truncated, CRC-corrupted, bit-flipped, oversized, unknown-command
    and bad-length frames interleaved with valid WRITE/READ/IDENT requests. Every frame gets
    exactly the reference link's answer within its cycle bound; nothing hangs."""
    from xnorflow.sim.fuzz import fuzz_items, run_fuzz
    from xnorflow.sim.verilator_transport import VerilatorTransport
    rng = random.Random(2024 + gaps[0])
    items = fuzz_items(rng, 1200, _valid_frames(rng), max_payload=LINK["max_payload"])
    ref = P.ReferenceLink(max_payload=LINK["max_payload"], mem_size=LINK["size"])
    with VerilatorTransport(linkmem_exe, gaps=gaps, seed=rng.randrange(1 << 32)) as t:
        report = run_fuzz(t, items, ref, timeout_cycles=LINK["timeout"])
        # Nothing left over: no spurious frame after the last item.
        assert t.idle(4 * LINK["timeout"]).out == b""
    assert report["items"] == 1200 and set(report["by_kind"]) >= {
        "valid", "crc", "truncated", "garbage", "bit_flip", "oversized"}
    # The bound that held for every single item (a 64-byte payload at 2..5 cycles per byte).
    assert report["max_cycles"] < LINK["timeout"] + 16 * 72 + 2000
    assert t.total_cycles > 0
