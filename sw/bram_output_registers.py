"""Move the flip-flop after an ECP5 block RAM's read into the block RAM's own output register.

A DP16KD read without its output register (``REGMODE = NOREG``, the only mode Yosys' ECP5
memory mapping offers) puts its data out 5.6 ns after the clock; with ``OUTREG`` 1.0 ns
(nextpnr 0.11's timing model, speed grade 6, measured on one block RAM with a register on
every pin: tests/synth/test_bram_output_registers.py). The dataflow engines register every
block-RAM read once more beside the block RAM (``_near`` in hw/dataflow/mvu.py), so the
fabric path from the block RAM to that register is 5.6 ns of a 10 ns cycle before any route:
on the CNV's ECP5 builds those paths led the late-endpoint lists (cnv9a: conv 4's weight
near registers 1.9 ns late at 100 MHz, every one a block RAM's output and its route).

This pass rewrites the Yosys JSON netlist between synthesis and place-and-route (the board
flow runs it on ECP5 builds: sw/synth.py, ``build_plan``). For each read port of a DP16KD
whose every connected data output drives exactly one flip-flop and nothing else, where
those flip-flops are clocked by the port's clock on its rising edge, load every cycle or
all on the same clock enable, have no set/reset and all the same global set/reset (none,
or to 0: the ECP5 board top resets through the GSR, which then reaches every flip-flop),
and the port's own reset is tied low, the flip-flops are removed and the port's output
register takes their place (``REGMODE_x = OUTREG``, ``OCEx`` their clock enable or 1, the
block RAM's ``GSR`` as theirs: its output register is then cleared by the global reset as
they were), each flip-flop's output net driven by its data pin. The output register loads
the read's data exactly when the flip-flops did, so the design is unchanged cycle for
cycle. A port that does not qualify is left as it is. (A stalling reader: the window unit
of a conv engine holds its read in a second register with the stage's enable,
hw/dataflow/window.py.)

Yosys maps a 36-bit-wide memory onto a DP16KD in its pseudo-dual-port form (written on port
A, read on port B, the 36 bits on DOA and DOB): there both ports' output registers are set,
as Lattice's own tools do for that form.

Run as ``python -m xnorflow.sw.bram_output_registers NETLIST.json``: it rewrites the file in
place and prints how many flip-flops moved into how many block RAM ports.
"""

import json
import re
import sys

from xnorflow.sw.file_pass import run_file_pass

__all__ = ["absorb_output_registers", "main"]

_DATA_PIN = re.compile(r"^DO([AB])(\d+)$")


def _const(bit, value):
    """Whether a netlist bit is the constant ``value`` ("0" or "1"; nets are numbers)."""
    return bit == value


def _param(cell, name, default=""):
    value = cell["parameters"].get(name, default)
    return value.strip() if isinstance(value, str) else value


def _width(cell, port):
    value = _param(cell, f"DATA_WIDTH_{port}", "18")
    return int(value, 2) if set(str(value)) <= {"0", "1"} and len(str(value)) > 2 else int(value)


def _sinks(module):
    """Net bit → [(cell name, port)] of every cell input it reaches, and the nets the
    module's own ports read (those count as extra sinks)."""
    sinks = {}
    for name, cell in module["cells"].items():
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if directions.get(port, "input") == "input":
                for bit in bits:
                    sinks.setdefault(bit, []).append((name, port))
    for pname, port in module.get("ports", {}).items():
        if port["direction"] in ("output", "inout"):
            for bit in port["bits"]:
                sinks.setdefault(bit, []).append((None, pname))
    return sinks


def _plain_register(cell, clock):
    """``(global set/reset mode, clock enable)`` of a TRELLIS_FF that loads D on rising edges
    of ``clock`` with nothing else (no set/reset, a global set/reset only to 0): the mode
    ``"ENABLED"`` or ``"DISABLED"``, the enable a net bit or ``"1"`` (every edge); None for
    any other cell."""
    if cell["type"] != "TRELLIS_FF":
        return None
    conns = cell["connections"]
    if conns.get("CLK") != [clock] or _param(cell, "CLKMUX", "CLK") != "CLK":
        return None
    gsr = _param(cell, "GSR", "ENABLED")
    if gsr not in ("ENABLED", "DISABLED") or _param(cell, "REGSET", "RESET") != "RESET":
        return None
    ce = conns.get("CE")
    cemux = _param(cell, "CEMUX", "CE")
    if cemux == "1" or ce is None or _const(ce[0], "1"):
        enable = "1"
    elif cemux == "CE" and not isinstance(ce[0], str):
        enable = ce[0]
    else:
        return None     # an inverted or constant-0 enable
    lsr = conns.get("LSR")
    if _param(cell, "LSRMUX", "LSR") != "LSR" or not (lsr is None or _const(lsr[0], "0")):
        return None
    return gsr, enable


def _read_ports(cell):
    """The DP16KD's read ports as (their data pins' port letters, the clock's and reset's
    port letter): one per port in the true-dual-port form, one port over DOA and DOB in the
    36-bit pseudo-dual-port form (written on A, read on B)."""
    if _width(cell, "A") == 36:
        return [(("A", "B"), "B")]
    return [(("A",), "A"), (("B",), "B")]


def absorb_output_registers(netlist):
    """Move qualifying flip-flops into their DP16KDs' output registers, in place (see the
    module text); returns ``(flip_flops_moved, ports_changed)``."""
    moved = ports = 0
    for module in netlist["modules"].values():
        cells = module.get("cells", {})
        sinks = _sinks(module)
        removed, gsr_of = set(), {}
        for name, cell in list(cells.items()):
            if cell["type"] != "DP16KD":
                continue
            conns = cell["connections"]
            for letters, port in _read_ports(cell):
                clock = conns.get(f"CLK{port}", [None])[0]
                if clock is None or isinstance(clock, str):
                    continue
                if _param(cell, f"CLK{port}MUX", f"CLK{port}") != f"CLK{port}":
                    continue
                if not all(_const(conns.get(f"RST{p}", ["0"])[0], "0") for p in letters):
                    continue
                pairs, gsr, enables = [], set(), set()
                for pin, bits in conns.items():
                    match = _DATA_PIN.match(pin)
                    if not match or match.group(1) not in letters or isinstance(bits[0], str):
                        continue
                    targets = sinks.get(bits[0], [])
                    if not targets:
                        continue        # an unused data pin: nothing to move
                    if len(targets) != 1 or targets[0][0] is None or targets[0][1] != "DI":
                        pairs = None
                        break
                    ff = targets[0][0]
                    mode = None if ff in removed else _plain_register(cells[ff], clock)
                    if mode is None:
                        pairs = None
                        break
                    pairs.append((pin, ff))
                    gsr.add(mode[0])
                    enables.add(mode[1])
                if not pairs or len(gsr) > 1 or gsr_of.get(name, gsr) != gsr:
                    continue         # one GSR setting per block RAM: its ports must agree
                if len(enables) > 1:
                    continue         # one output register enable per port
                gsr_of[name] = gsr
                for pin, ff in pairs:
                    conns[pin] = list(cells[ff]["connections"]["Q"])
                    removed.add(ff)
                for p in letters:
                    cell["parameters"][f"REGMODE_{p}"] = "OUTREG"
                    conns[f"OCE{p}"] = [next(iter(enables))]
                cell["parameters"]["GSR"] = next(iter(gsr))
                moved += len(pairs)
                ports += 1
        for ff in removed:
            del cells[ff]
    return moved, ports


def main(argv=None):
    def transform(text):
        netlist = json.loads(text)
        moved, ports = absorb_output_registers(netlist)
        return json.dumps(netlist), (f"{moved} flip-flops moved into the output registers of "
                                     f"{ports} block-RAM read ports")
    return run_file_pass(argv, "bram_output_registers", "NETLIST.json", transform)


if __name__ == "__main__":
    sys.exit(main())
