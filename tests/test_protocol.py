"""sw/protocol.py: CRC, frame encode/decode, streaming decoder, the reference device model."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from xnorflow.sw import protocol as p

payloads = st.binary(max_size=300)


# ------------------------------------------------------------------ CRC

def test_crc_check_value():
    # The catalogue check value of CRC-16/CCITT-FALSE.
    assert p.crc16_bitwise(b"123456789") == 0x29B1
    assert p.crc16(b"123456789") == 0x29B1
    assert p.crc16(b"") == p.CRC16_INIT


@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
def test_crc_table_equals_bitwise(data, init):
    assert p.crc16(data, init) == p.crc16_bitwise(data, init)


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_crc_is_incremental(a, b):
    assert p.crc16(b, p.crc16(a)) == p.crc16(a + b)


@given(st.binary(max_size=100))
def test_crc_residue_is_zero(data):
    # Sent MSB first, the CRC over data+crc is 0: what the receiver gateware checks.
    assert p.crc16(data + p.crc16(data).to_bytes(2, "big")) == 0


# ------------------------------------------------------------------ frames

def test_request_layout():
    f = p.encode_request(p.Cmd.WRITE, b"\x10\x00\x00\x00\xaa")
    assert f[0] == 0xA5 and f[1] == 0x02 and f[2:4] == b"\x05\x00"
    assert f[4:9] == b"\x10\x00\x00\x00\xaa"
    assert int.from_bytes(f[9:], "big") == p.crc16(f[1:9])
    assert p.read_request(0x123456, 7)[4:10] == b"\x56\x34\x12\x00\x07\x00"


@given(st.integers(0, 255), payloads)
def test_request_roundtrip(cmd, payload):
    r = p.decode_request(p.encode_request(cmd, payload))
    assert (r.cmd, r.payload) == (cmd, payload)


@given(st.sampled_from(list(p.Status)), payloads)
def test_response_roundtrip(status, payload):
    r = p.decode_response(p.encode_response(status, payload))
    assert (r.status, r.payload) == (status, payload)


def test_decode_errors():
    good = p.encode_response(p.Status.OK, b"abc")
    with pytest.raises(p.SyncError):
        p.decode_response(p.encode_request(0, b"abc"))
    with pytest.raises(p.TruncatedFrame):
        p.decode_response(good[:-1])
    with pytest.raises(p.TruncatedFrame):
        p.decode_response(good[:3])
    with pytest.raises(p.LengthError):
        p.decode_response(good + b"\x00")
    with pytest.raises(p.CrcError):
        p.decode_response(good[:5] + bytes([good[5] ^ 1]) + good[6:])
    with pytest.raises(p.OversizedFrame):
        p.decode_response(good, max_payload=2)
    with pytest.raises(p.OversizedFrame):
        p.encode_request(p.Cmd.WRITE, bytes(300), max_payload=256)
    with pytest.raises(ValueError):
        p.encode_request(256)
    with pytest.raises(ValueError):
        p.read_request(0, 1 << 16)


@given(payloads, st.integers(0, 1000), st.integers(0, 7))
def test_single_bit_flip_detected(payload, pos, bit):
    f = bytearray(p.encode_response(p.Status.OK, payload))
    pos = 1 + pos % (len(f) - 1)  # anywhere after the sync byte
    f[pos] ^= 1 << bit
    with pytest.raises(p.FrameError):
        p.decode_response(bytes(f))


def test_check_response_and_device_error():
    assert p.check_response(p.Response(p.Status.OK, b"xy"), 2) == b"xy"
    with pytest.raises(p.DeviceError) as e:
        p.check_response(p.Response(p.Status.BUS_ERROR, b"\x03\x00"))
    assert e.value.status == p.Status.BUS_ERROR and e.value.offset == 3
    assert "offset 3" in str(e.value)


def test_ident_block():
    i = p.Ident(1, 1024, 24, b"\x08\x04\x20")
    block = i.encode()
    assert block[:4] == b"XNFL" and block[5:7] == (1024).to_bytes(2, "little")
    assert p.Ident.decode(block) == i
    with pytest.raises(p.LengthError):
        p.Ident.decode(block[:-1])


# ------------------------------------------------------------------ streaming decoder

@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(list(p.Status)), st.binary(max_size=40)), max_size=8),
       st.lists(st.integers(1, 17), min_size=1), st.binary(max_size=10))
def test_stream_decoder_any_chunking(frames, chunks, garbage):
    garbage = garbage.replace(bytes([p.RSP_SYNC]), b"")
    stream = garbage + b"".join(p.encode_response(s, d) for s, d in frames)
    dec = p.StreamDecoder("response")
    got, pos, k = [], 0, 0
    while pos < len(stream):
        n = chunks[k % len(chunks)]
        got += dec.feed(stream[pos:pos + n])
        pos, k = pos + n, k + 1
    assert [(r.status, r.payload) for r in got] == frames
    assert dec.pending == 0 and dec.skipped == len(garbage)


def test_stream_decoder_errors_then_continues():
    good = p.encode_request(p.Cmd.IDENT)
    bad = bytearray(p.encode_request(p.Cmd.WRITE, b"\x00" * 6))
    bad[-1] ^= 0xFF
    big = bytes([p.REQ_SYNC, 2, 0x00, 0x10])  # length 4096
    dec = p.StreamDecoder("request", max_payload=256)
    with pytest.raises(p.CrcError) as e:
        dec.feed(good + bytes(bad) + good)
    assert [r.cmd for r in e.value.frames] == [p.Cmd.IDENT]
    assert [r.cmd for r in dec.feed()] == [p.Cmd.IDENT]
    with pytest.raises(p.OversizedFrame):
        dec.feed(big + good)
    assert [r.cmd for r in dec.feed()] == [p.Cmd.IDENT]
    dec.feed(good[:3])
    assert dec.pending == 3
    dec.reset()
    assert dec.pending == 0 and dec.feed(good)[0].cmd == p.Cmd.IDENT


# ------------------------------------------------------------------ reference device

def responses(link, data):
    return [p.decode_response(r) for r in link.feed(data)]


def test_reference_link_commands():
    link = p.ReferenceLink(max_payload=64, addr_width=16, config=b"\x04\x02\x10", mem_size=32)
    (r,) = responses(link, p.ident_request())
    assert p.Ident.decode(r.payload) == p.Ident(p.PROTOCOL_VERSION, 64, 16, b"\x04\x02\x10")
    assert responses(link, p.write_request(3, b"hello")) == [p.Response(p.Status.OK)]
    assert responses(link, p.read_request(2, 7))[0].payload == b"\x00hello\x00"
    assert responses(link, p.write_request(30, b"abcd")) == [p.Response(p.Status.BUS_ERROR, b"\x02\x00")]
    assert responses(link, p.read_request(0xFFFF, 2))[0].status == p.Status.BUS_ERROR
    assert responses(link, p.read_request(1 << 16, 1))[0].status == p.Status.BUS_ERROR
    assert responses(link, p.read_request(0, 65))[0].status == p.Status.OVERSIZED
    assert responses(link, p.encode_request(p.Cmd.READ, b"\0"))[0].status == p.Status.BAD_LENGTH
    assert responses(link, p.encode_request(p.Cmd.IDENT, b"\0"))[0].status == p.Status.BAD_LENGTH
    assert responses(link, p.encode_request(p.Cmd.WRITE, b"\0"))[0].status == p.Status.BAD_LENGTH
    assert responses(link, p.encode_request(0x77))[0].status == p.Status.UNKNOWN_COMMAND
    assert responses(link, bytes([p.REQ_SYNC, 2, 65, 0]))[0].status == p.Status.OVERSIZED
    assert responses(link, p.ident_request()[:-1]) == []
    assert [p.decode_response(r).status for r in link.idle()] == [p.Status.TIMEOUT]
    assert link.idle() == []


def test_reference_link_skips_garbage():
    link = p.ReferenceLink()
    rs = responses(link, b"\x00\x13\xff" + p.ident_request() + b"\x5a\x00" + p.ident_request())
    assert [r.status for r in rs] == [p.Status.OK, p.Status.OK]


def test_reference_link_random_frames_never_wedge():
    rng = random.Random(5)
    link = p.ReferenceLink(max_payload=32, mem_size=64)
    for _ in range(300):
        f = bytearray(p.write_request(rng.randrange(80), rng.randbytes(rng.randrange(20))))
        if rng.random() < 0.5:
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
        link.feed(f)
        link.idle()
        assert not link.in_frame
        (r,) = responses(link, p.ident_request())
        assert r.status == p.Status.OK
