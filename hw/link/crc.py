"""CRC-16/CCITT-FALSE, one byte per cycle."""
from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Crc16", "CRC16_POLY", "CRC16_INIT", "crc16_next"]

CRC16_POLY = 0x1021
CRC16_INIT = 0xFFFF


def _crc16_next_int(crc, data):
    crc ^= data << 8
    for _ in range(8):
        crc = ((crc << 1) ^ (CRC16_POLY if crc & 0x8000 else 0)) & 0xFFFF
    return crc


# The byte step is linear over GF(2): output bit j is the XOR of the input bits listed here
# (bits 0..15 of the CRC, then 16..23 for the data byte).
_TAPS = [[i for i in range(24)
          if _crc16_next_int((1 << i) & 0xFFFF, (1 << i) >> 16) >> j & 1]
         for j in range(16)]


def crc16_next(crc, data):
    """The CRC after one more byte. On Python ints: the bitwise algorithm. On Amaranth values:
    a flat XOR network (one XOR tree per output bit, from the linear-map taps)."""
    if isinstance(crc, int) and isinstance(data, int):
        return _crc16_next_int(crc, data)
    bits = [crc[i] for i in range(16)] + [data[i] for i in range(8)]
    out = []
    for taps in _TAPS:
        x = bits[taps[0]]
        for t in taps[1:]:
            x = x ^ bits[t]
        out.append(x)
    return Cat(*out)


class Crc16(wiring.Component):
    """CRC-16/CCITT-FALSE (width 16, polynomial 0x1021, init 0xFFFF, not reflected, no final
    XOR), most significant bit of each byte first.

    Sent most-significant byte first after the data, the CRC makes the CRC of data+CRC zero,
    so a receiver runs every byte after the sync byte through this unit and checks ``zero``.

    Ports
    -----
    clear : In(1)
        Restart at the initial value 0xFFFF. If ``en`` is high in the same cycle, the byte is
        the first of the new message.
    en : In(1)
        Take ``data`` this cycle.
    data : In(8)
        The byte.
    crc : Out(16)
        The CRC of the bytes taken so far (a register).
    zero : Out(1)
        ``crc == 0``: the bytes taken so far end with their own CRC (residue check).

    Latency: ``crc`` includes a byte from the cycle after ``en``. Throughput: one byte per
    cycle. Cost: 16 flip-flops and an XOR network of depth about 4.
    """

    def __init__(self):
        super().__init__({
            "clear": In(1),
            "en": In(1),
            "data": In(8),
            "crc": Out(16, init=CRC16_INIT),
            "zero": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        base = Signal(16)
        m.d.comb += base.eq(self.crc)
        with m.If(self.clear):
            m.d.comb += base.eq(CRC16_INIT)
        with m.If(self.en):
            m.d.sync += self.crc.eq(crc16_next(base, self.data))
        with m.Elif(self.clear):
            m.d.sync += self.crc.eq(CRC16_INIT)
        m.d.comb += self.zero.eq(self.crc == 0)
        return m
