"""PLL settings: every solution respects the device limits and lands on the asked frequency
when it is reachable; the board top instantiates the PLL and constrains the clock."""
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from xnorflow.hw.board.clocking import ecp5_pll_params, ice40_pll_params
from xnorflow.hw.board.top import UartBridgeTop


@pytest.mark.parametrize("want", [18e6, 24e6, 30e6, 36e6, 48e6, 96e6])
def test_ice40_pll_within_limits(want):
    p = ice40_pll_params(12e6, want)
    f_pfd = 12e6 / (p.divr + 1)
    f_vco = f_pfd * (p.divf + 1)
    assert 10e6 <= f_pfd <= 133e6 and 533e6 <= f_vco <= 1066e6 and 1 <= p.divq <= 6
    assert p.f_out_hz == f_vco / (1 << p.divq) <= want
    assert p.f_out_hz == want          # all of these are reachable from 12 MHz exactly


@pytest.mark.parametrize("want", [25e6, 50e6, 60e6, 62.5e6, 100e6])
def test_ecp5_pll_within_limits(want):
    p = ecp5_pll_params(25e6, want)
    assert 25e6 / p.clki_div >= 3.125e6
    assert 400e6 <= p.f_out_hz * p.clkop_div <= 800e6
    assert p.f_out_hz == 25e6 * p.clkfb_div / p.clki_div == want


def test_pll_rounds_down_to_what_it_can_make():
    assert ice40_pll_params(12e6, 100e6).f_out_hz == 99e6


def test_pll_refuses_impossible_frequencies():
    with pytest.raises(ValueError, match="no iCE40 PLL setting"):
        ice40_pll_params(12e6, 10e6)


class _Echo(wiring.Component):
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
        return m


@pytest.mark.parametrize("platform_cls,primitive,mhz,pin_constraint", [
    (ICEBreakerPlatform, "SB_PLL40_PAD", 24, "set_frequency clk12_0__io 12.0"),
    (ULX3S_85F_Platform, "EHXPLLL", 50, 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ;'),
])
def test_board_top_has_the_pll_and_only_the_pin_constraint(platform_cls, primitive, mhz, pin_constraint):
    top = UartBridgeTop(_Echo(), clock_hz=mhz * 1e6)
    plan = platform_cls().build(top, name="top", do_build=False)
    assert primitive in plan.files["top.il"]
    pins = next(v for k, v in plan.files.items() if k.endswith((".pcf", ".lpf")))
    # nextpnr derives the PLL output's constraint from the oscillator pin's (checked on a
    # real build in tests/synth/test_synth_flow.py); a net constraint would be ignored.
    frequencies = [line.strip() for line in pins.splitlines() if line.startswith(("set_frequency", "FREQUENCY"))]
    assert frequencies == [pin_constraint], pins
