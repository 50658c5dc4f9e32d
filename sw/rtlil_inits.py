"""Drop the initial values the iCE40 flow must not pass to Yosys: the all-zero contents
Amaranth gives every memory, and the FSM state registers' initial values.

* **Memories.** Amaranth 0.5 writes a ``$meminit_v2`` cell for every ``lib.memory.Memory``,
  all zeros for one declared ``init=[]``. ``synth_ice40 -spram`` maps a memory to an UltraPlus
  SPRAM only if it has no initial contents (the EBRs still come up zero from the bitstream,
  and the design loads every such memory before reading it). A memory with real contents
  keeps them: the host link's payload buffer holds the IDENT block beyond its payload area
  (hw/link/defs.py, ``payload_buffer_init``), which a blanket ``delete t:$meminit_v2`` would
  erase.
* **FSM state registers** (Amaranth's ``fsm_state`` wires). Yosys's ``fsm`` pass leaves a
  state register with an initial value alone ("Register has an initialization value"), so
  every FSM stayed binary-coded, its next-state logic up to seven LUT levels deep (the host
  link's executor at 40 MHz on the iCEBreaker: 4.9 ns late). Without it Yosys recodes them
  one-hot. The initial value is not needed: the iCE40 ``sync`` domain is held in reset from
  power-up until the PLL locks (hw/board/clocking.py), and the reset puts every FSM in its
  initial state; the netlist simulations reset the design first, too.

This pass rewrites Amaranth's RTLIL text before Yosys reads it (the iCEBreaker's build script,
sw/synth.py ``build_plan``; the netlist simulation of the same flow, sim/netlist.py). Run as
``python -m xnorflow.sw.rtlil_inits TOP.il``: it rewrites the file in place and prints what it
dropped and kept.
"""
import re
import sys

from xnorflow.sw.file_pass import run_file_pass

__all__ = ["drop_zero_memory_inits", "drop_fsm_state_inits", "drop_inits", "main"]

# One memory initialiser cell of Amaranth's RTLIL, from its "cell" line to its "end" line (the
# attribute lines before it go with it).
_MEMINIT = re.compile(r"(?:^[ \t]*attribute [^\n]*\n)*^[ \t]*cell \$meminit_v2 [^\n]*\n"
                      r"(?P<body>(?:(?![ \t]*end\b)[^\n]*\n)*)[ \t]*end\n", re.M)
_DATA = re.compile(r"^[ \t]*connect \\DATA (\d+)'([01xz]+)$", re.M)
# The ``init`` attribute line of an Amaranth FSM's state wire (among the wire's attribute lines).
_FSM_STATE_INIT = re.compile(r"^[ \t]*attribute \\init [^\n]*\n(?=(?:[ \t]*attribute [^\n]*\n)*"
                             r"[ \t]*wire width \d+ \\fsm_state\n)", re.M)


def drop_zero_memory_inits(text):
    """``(text without the all-zero $meminit_v2 cells, dropped, kept)``. An initialiser
    whose data is not a plain binary constant is kept."""
    counts = {"dropped": 0, "kept": 0}

    def edit(match):
        data = _DATA.search(match.group("body"))
        if data and set(data.group(2)) == {"0"}:
            counts["dropped"] += 1
            return ""
        counts["kept"] += 1
        return match.group(0)

    return _MEMINIT.sub(edit, text), counts["dropped"], counts["kept"]


def drop_fsm_state_inits(text):
    """``(text without the initial values of the FSM state wires, how many)``."""
    return _FSM_STATE_INIT.subn("", text)


def drop_inits(text):
    """Both passes: ``(text, summary)``, the summary a line saying what changed."""
    text, dropped, kept = drop_zero_memory_inits(text)
    text, fsms = drop_fsm_state_inits(text)
    return text, (f"{dropped} all-zero memory initialisers dropped, {kept} kept; "
                  f"{fsms} FSM state initial values dropped")


def main(argv=None):
    return run_file_pass(argv, "rtlil_inits", "TOP.il", drop_inits)


if __name__ == "__main__":
    sys.exit(main())
