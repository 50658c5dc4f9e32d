"""A memory's synchronous read, written so that Yosys honours ``no_rw_check``."""
from amaranth.hdl import Signal

__all__ = ["registered_read"]


def registered_read(m, data, name, en=None):
    """The synchronous read of a memory, written as an asynchronous read port (``data``) and
    a register loaded when ``en`` (always when None); returns the register.

    Yosys merges the register into the block RAM (memory_dff) and only then honours
    ``no_rw_check``. A synchronous Amaranth read port reaches Yosys as a port with defined
    read-before-write behaviour, which it emulates with a bypass register and a multiplexer
    per bit (measured on a 256 × 32 memory: 44 LUT4 and 73 FFs on iCE40, 46 LUT4 and 106 FFs
    on ECP5; this way none on ECP5; in a whole dataflow engine on iCE40, 477 → 82 LUT4
    outside the PEs). Timing: the word read at cycle t's address is in the register at t + 1,
    as from a synchronous port."""
    reg = Signal.like(data, name=name, reset_less=True)
    if en is None:
        m.d.sync += reg.eq(data)
    else:
        with m.If(en):
            m.d.sync += reg.eq(data)
    return reg
