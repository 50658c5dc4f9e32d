"""The synthesis flow end to end on a small design: real Yosys + nextpnr, report parsed."""
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.board.top import UartBridgeTop
from sw.synth import synthesize

ROOT = Path(__file__).resolve().parents[2]


class Echo(wiring.Component):
    """Answers every byte with the byte plus one (a registered stream stage)."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload + 1)]
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        return m


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_echo_builds_reports_and_skips_rebuild():
    # Inside the repository: YoWASP's sandbox cannot see the host's /tmp.
    out_root = ROOT / "build" / "test-synth"
    first = synthesize(UartBridgeTop(Echo()), "icebreaker", "echo", out_root=out_root, force=True)
    assert first["skipped"] is False
    assert (out_root / "icebreaker-echo" / "top.bin").stat().st_size > 100_000
    assert 20 < first["luts"] < 500 and first["luts_available"] == 5280
    assert 20 < first["ffs"] < first["luts"]
    assert first["fmax_mhz"] > 12
    again = synthesize(UartBridgeTop(Echo()), "icebreaker", "echo", out_root=out_root)
    assert again["skipped"] is True and again["design_hash"] == first["design_hash"]
