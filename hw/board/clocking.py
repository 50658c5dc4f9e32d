"""Board clocking: the ``sync`` domain from the board oscillator through the FPGA's PLL.

The parameter solvers are plain Python (pure functions of frequencies) so that the synthesis
flow and the tests can ask what a PLL will produce without elaborating anything.
"""
from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["Ice40PllParams", "Ecp5PllParams", "ice40_pll_params", "ecp5_pll_params",
           "pll_output_hz", "PllClock"]


@dataclass(frozen=True)
class Ice40PllParams:
    """SB_PLL40_PAD in SIMPLE feedback: ``f_out = f_in·(DIVF+1) / ((DIVR+1)·2^DIVQ)``."""
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_out_hz: float


@dataclass(frozen=True)
class Ecp5PllParams:
    """EHXPLLL with CLKOP feedback: ``f_out = f_in·CLKFB_DIV / CLKI_DIV``,
    ``f_vco = f_out·CLKOP_DIV``."""
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_out_hz: float


def ice40_pll_params(f_in_hz, f_want_hz):
    """The SB_PLL40 setting whose output is closest to ``f_want_hz`` without exceeding it.

    Limits from the iCE40 sysCLOCK PLL guide (TN1251): phase-detector input 10–133 MHz, VCO
    533–1066 MHz, output 16–275 MHz; the loop-filter range follows the PFD frequency.
    """
    best = None
    for divr in range(16):
        f_pfd = f_in_hz / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f_out = f_vco / (1 << divq)
                if not 16e6 <= f_out <= f_want_hz:
                    continue
                if best is None or f_out > best.f_out_hz:
                    fr = next(i + 1 for i, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6,
                                                             133e6)) if f_pfd < top)
                    best = Ice40PllParams(divr, divf, divq, fr, f_out)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting gives 16 MHz..{f_want_hz / 1e6:g} MHz "
                         f"from {f_in_hz / 1e6:g} MHz")
    return best


def ecp5_pll_params(f_in_hz, f_want_hz):
    """The EHXPLLL setting whose output is closest to ``f_want_hz`` without exceeding it
    (PFD ≥ 3.125 MHz, VCO 400–800 MHz, output ≥ 3.125 MHz; ECP5 sysCLOCK guide, TN1263)."""
    best = None
    for clki in range(1, 129):
        if f_in_hz / clki < 3.125e6:
            break
        for clkfb in range(1, 129):
            f_out = f_in_hz * clkfb / clki
            if f_out > f_want_hz:
                break
            for clkop in range(1, 129):
                if 400e6 <= f_out * clkop <= 800e6:
                    if best is None or f_out > best.f_out_hz:
                        best = Ecp5PllParams(clki, clkfb, clkop, f_out)
                    break
    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches ≤ {f_want_hz / 1e6:g} MHz "
                         f"from {f_in_hz / 1e6:g} MHz")
    return best


def pll_output_hz(family, f_in_hz, f_want_hz):
    """The frequency the ``family``'s PLL makes when asked for ``f_want_hz``."""
    solve = {"ice40": ice40_pll_params, "ecp5": ecp5_pll_params}[family]
    return solve(f_in_hz, f_want_hz).f_out_hz


class PllClock(Elaboratable):
    """Drives ``domain`` (the parent defines it) at ``f_want_hz`` (or the closest lower
    frequency the PLL makes) from the platform's default clock pin, held in reset until the
    PLL locks (iCE40: the domain's reset; ECP5: the global set/reset, SGSR).

    Parameters
    ----------
    domain : ClockDomain
        The domain to clock (e.g. the top's ``sync``); on ECP5 reset-less (the global
        set/reset holds every flip-flop until the PLL locks).
    f_want_hz : float
        Requested ``sync`` frequency; :attr:`f_out_hz` is what the PLL produces.
    family : "ice40" or "ecp5"
    f_in_hz : float
        The oscillator's frequency (the platform's ``default_clk_frequency``).

    The domain's clock constraint is added to the platform, so nextpnr checks the design
    against the PLL's output frequency.
    """

    def __init__(self, domain, f_want_hz, family, f_in_hz):
        self.domain = domain
        self.family = family
        self.f_in_hz = f_in_hz
        if family == "ice40":
            self.params = ice40_pll_params(f_in_hz, f_want_hz)
        elif family == "ecp5":
            self.params = ecp5_pll_params(f_in_hz, f_want_hz)
        else:
            raise ValueError(f"no PLL for FPGA family {family!r}")
        self.f_out_hz = self.params.f_out_hz

    def elaborate(self, platform):
        m = Module()
        name = self.domain.name
        pin = platform.request(platform.default_clk, dir="-")
        lock = Signal()
        p = self.params
        if self.family == "ice40":
            # The PAD variant: the oscillator's pin drives the PLL directly (no SB_IO on it).
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf, p_DIVQ=p.divq,
                p_FILTER_RANGE=p.filter_range,
                i_PACKAGEPIN=pin.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=ClockSignal(name), o_LOCK=lock)
        else:
            clk_in = Signal()
            m.submodules.clk_buf = clk_buf = io.Buffer("i", pin)
            m.d.comb += clk_in.eq(clk_buf.i)
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=str(self.f_in_hz / 1e6),
                a_FREQUENCY_PIN_CLKOP=str(p.f_out_hz / 1e6),
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
                p_CLKOP_CPHASE=p.clkop_div - 1, p_CLKOP_FPHASE=0,
                p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p.clkfb_div, p_CLKI_DIV=p.clki_div,
                i_CLKI=clk_in, i_CLKFB=ClockSignal(name), i_RST=Const(0),
                i_STDBY=Const(0), i_PHASESEL0=Const(0), i_PHASESEL1=Const(0),
                i_PHASEDIR=Const(0), i_PHASESTEP=Const(0), i_PHASELOADREG=Const(0),
                i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
                o_CLKOP=ClockSignal(name), o_LOCK=lock)
        if self.family == "ecp5":
            # Nothing runs until the PLL has locked, through the global set/reset: a
            # synchronous SGSR resets every flip-flop to its initial value over the device's
            # own network (Yosys' lattice_gsr enables it on each), where a reset signal
            # routed to thousands of flip-flops across the die took 11–12 ns of route, the
            # critical path of the ECP5 dataflow builds. Its synchronizer is the two
            # flip-flops outside GSR (in GSR they would hold it forever); the parent's domain
            # is reset-less, as Amaranth makes the ECP5's default domain.
            gsr = [Signal(name=f"gsr{i}") for i in range(2)]
            m.submodules += [
                Instance("FD1S3AX", p_GSR="DISABLED", i_CK=ClockSignal(name), i_D=lock,
                         o_Q=gsr[0]),
                Instance("FD1S3AX", p_GSR="DISABLED", i_CK=ClockSignal(name), i_D=gsr[0],
                         o_Q=gsr[1]),
                Instance("SGSR", i_CLK=ClockSignal(name), i_GSR=gsr[1])]
        else:
            # Nothing runs until the PLL has locked; the reset leaves synchronously.
            m.submodules.reset_sync = ResetSynchronizer(~lock, domain=name)
        # No clock constraint on the domain's clock: nextpnr derives the PLL output's frequency
        # from the oscillator pin's constraint and the PLL's dividers (exactly: 24.0015 MHz on
        # the iCEBreaker), while a constraint on the net was ignored with a warning, because
        # the name Amaranth gives that net ("tx$32.clk") does not survive Yosys's flattening.
        return m
