"""Bit packing: the one encoding shared by the golden model, the model file and the wire.

Encoding (docs/contracts.md, contract 1): bit 1 stands for +1, bit 0 for -1.

Packed layout (also the byte order on the host link):
    A vector of ``n`` bits is stored in ``ceil(n / 8)`` bytes. Element ``i`` goes to byte
    ``i // 8``, bit position ``i % 8`` (least significant bit first). Bits past ``n`` in the last
    byte ("padding bits") are written as 0 and never counted by any computation.
    A K-bit hardware word (K a multiple of 8) is K/8 consecutive bytes read little-endian, so
    element ``i`` sits in word ``i // K`` at bit ``i % K`` whatever K is: the byte stream does not
    depend on the word width, only its padding to a whole number of words does.

All functions work on the last axis and broadcast over leading (batch) axes.
"""
import numpy as np


def packed_len(n_bits, word_bits=8):
    """Bytes needed for ``n_bits`` elements padded to a whole number of ``word_bits`` words."""
    if word_bits % 8:
        raise ValueError(f"word width must be a multiple of 8 bits, got {word_bits}")
    words = -(-n_bits // word_bits)
    return words * word_bits // 8


def pack_bits(bits, word_bits=8):
    """Pack booleans (or 0/1 integers) along the last axis into uint8, LSB first.

    The result is padded with zero bits to a whole number of ``word_bits``-bit words.
    """
    bits = np.asarray(bits)
    if bits.dtype != bool:
        if bits.size and (bits.min() < 0 or bits.max() > 1):
            raise ValueError("pack_bits takes booleans or 0/1 values; use pm1_to_bits for ±1")
        bits = bits.astype(bool)
    n = bits.shape[-1]
    packed = np.packbits(bits, axis=-1, bitorder="little")
    want = packed_len(n, word_bits)
    if packed.shape[-1] < want:
        pad = [(0, 0)] * (packed.ndim - 1) + [(0, want - packed.shape[-1])]
        packed = np.pad(packed, pad)
    return packed


def unpack_bits(packed, n_bits):
    """Inverse of :func:`pack_bits`: the first ``n_bits`` bits along the last axis, as bool."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.shape[-1] * 8 < n_bits:
        raise ValueError(f"{packed.shape[-1]} bytes hold fewer than {n_bits} bits")
    return np.unpackbits(packed, axis=-1, count=n_bits, bitorder="little").astype(bool)


def pm1_to_bits(values):
    """±1 values (any numeric dtype) to booleans, with ``sign(0) = +1``: True where value ≥ 0."""
    return np.asarray(values) >= 0


def bits_to_pm1(bits):
    """Booleans to int8 ±1 (True → +1, False → -1)."""
    return np.where(np.asarray(bits, dtype=bool), 1, -1).astype(np.int8)


def valid_mask(n_bits, word_bits=8):
    """uint8 mask over the packed bytes of an ``n_bits`` vector: 1 on real bits, 0 on padding."""
    return pack_bits(np.ones(n_bits, dtype=bool), word_bits)


def popcount(a, axis=-1):
    """Number of set bits of an unsigned integer array, summed over ``axis`` (int64)."""
    return np.bitwise_count(a).sum(axis=axis, dtype=np.int64)
