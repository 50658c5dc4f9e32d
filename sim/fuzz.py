"""Protocol fuzzing: random, truncated, CRC-corrupted and otherwise malformed request frames
interleaved with valid ones, judged byte-exactly against ``xnorflow.sw.protocol.ReferenceLink``.

Each item is sent as one harness exchange that waits for exactly as many response frames as
the reference link produces for those bytes (plus its TIMEOUT answer when the bytes leave a
frame open), under a cycle bound: a frame the device does not answer, or answers differently,
or a hang, fails the check. Valid items keep working in between, which is the point.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from xnorflow.sw import protocol as P

__all__ = ["FuzzItem", "fuzz_items", "run_fuzz", "RefuseBus"]

KINDS = ("valid", "crc", "truncated", "garbage", "unknown_cmd", "bad_length", "oversized",
         "bit_flip")


@dataclass
class FuzzItem:
    kind: str
    data: bytes


class RefuseBus:
    """A ReferenceLink bus that refuses every access (for tops whose bus target is not
    modelled: malformed frames must never reach it)."""

    def read(self, addr):
        raise P.BusError(addr)

    def write(self, addr, value):
        raise P.BusError(addr)


def fuzz_items(rng: random.Random, count, valid, *, max_payload=64, weights=None):
    """``count`` items; ``valid()`` returns a valid request frame (bytes). ``weights`` maps
    kinds (see :data:`KINDS`) to relative frequencies."""
    weights = weights or {"valid": 40, "crc": 12, "truncated": 8, "garbage": 10,
                          "unknown_cmd": 8, "bad_length": 8, "oversized": 6, "bit_flip": 8}
    kinds, w = zip(*weights.items())
    items = []
    for _ in range(count):
        kind = rng.choices(kinds, w)[0]
        frame = bytearray(valid())
        if kind == "crc":  # CRC bytes corrupted: length intact, must answer BAD_CRC
            frame[-1 - rng.randrange(2)] ^= 1 << rng.randrange(8)
        elif kind == "bit_flip":  # any bit after the sync byte (may hit cmd or length)
            k = rng.randrange(1, len(frame))
            frame[k] ^= 1 << rng.randrange(8)
        elif kind == "truncated":
            frame = frame[:rng.randrange(1, len(frame))]
        elif kind == "garbage":  # no sync byte: must be skipped silently
            frame = bytearray(rng.choice([b for b in range(256) if b != P.REQ_SYNC])
                              for _ in range(rng.randrange(1, 40)))
        elif kind == "unknown_cmd":
            frame = bytearray(P.encode_request(rng.choice([0, 4, 0x55, 0xFF]),
                                               rng.randbytes(rng.randrange(8))))
        elif kind == "bad_length":  # good CRC, payload length wrong for the command
            cmd, n = rng.choice([(P.Cmd.IDENT, rng.randrange(1, 5)),
                                 (P.Cmd.READ, rng.choice([0, 5, 7])),
                                 (P.Cmd.WRITE, rng.randrange(0, 4))])
            frame = bytearray(P.encode_request(cmd, rng.randbytes(n)))
        elif kind == "oversized":  # length field above the max payload; bytes follow
            n = rng.randrange(max_payload + 1, 0x10000)
            frame = bytearray([P.REQ_SYNC, P.Cmd.WRITE, n & 0xFF, n >> 8])
            frame += rng.randbytes(rng.randrange(0, 12)).replace(bytes([P.REQ_SYNC]), b"\0")
        items.append(FuzzItem(kind, bytes(frame)))
    return items


def run_fuzz(transport, items, reference, *, timeout_cycles, slack=2000):
    """Send every item through ``transport`` (a ``VerilatorTransport``) and compare the
    response frames with ``reference`` (a ``ReferenceLink`` fed the same bytes).

    Returns ``{"items", "frames", "by_kind", "max_cycles"}``; raises AssertionError on the
    first difference or timeout. The cycle bound per item is ``timeout_cycles`` (the link's
    idle timeout) + ``16·len`` + ``slack``.
    """
    by_kind = {}
    frames = 0
    worst = 0
    for n, item in enumerate(items):
        want = reference.feed(item.data)
        if reference.in_frame:
            want += reference.idle()  # the device's idle timeout answers the open frame
        bound = timeout_cycles + 16 * len(item.data) + slack
        ex = transport.exchange(item.data, len(want), bound)
        assert not ex.timed_out, (
            f"item {n} ({item.kind}, {item.data.hex()}): {len(ex.frames)} of {len(want)} "
            f"responses within {bound} cycles")
        assert ex.frames == want, (
            f"item {n} ({item.kind}, {item.data.hex()}): got "
            f"{[P.decode_response(f) for f in ex.frames]}, expected "
            f"{[P.decode_response(f) for f in want]}")
        frames += len(want)
        worst = max(worst, ex.cycles)
        by_kind[item.kind] = by_kind.get(item.kind, 0) + 1
    return {"items": len(items), "frames": frames, "by_kind": by_kind, "max_cycles": worst}
