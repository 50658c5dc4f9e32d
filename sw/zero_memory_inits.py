"""Drop the all-zero initial contents Amaranth gives every memory, keeping real ones.

Amaranth 0.5 writes a ``$meminit_v2`` cell for every ``lib.memory.Memory``, all zeros for one
declared ``init=[]``. The iCE40 flow must drop those: ``synth_ice40 -spram`` maps a memory to
an UltraPlus SPRAM only if it has no initial contents (the EBRs still come up zero from the
bitstream, and the design loads every such memory before reading it). A memory with real
contents keeps them: the host link's payload buffer holds the IDENT block beyond its payload
area (hw/link/defs.py, ``payload_buffer_init``), which a blanket ``delete t:$meminit_v2`` would
erase.

This pass rewrites Amaranth's RTLIL text before Yosys reads it (the iCEBreaker's build script,
sw/synth.py ``build_plan``; the netlist simulation of the same flow, sim/netlist.py). Run as
``python -m xnorflow.sw.zero_memory_inits TOP.il``: it rewrites the file in place and prints
how many initialisers it dropped and kept.
"""
import re
import sys

from xnorflow.sw.file_pass import run_file_pass

__all__ = ["drop_zero_memory_inits", "main"]

# One memory initialiser cell of Amaranth's RTLIL, from its "cell" line to its "end" line (the
# attribute lines before it go with it).
_MEMINIT = re.compile(r"(?:^[ \t]*attribute [^\n]*\n)*^[ \t]*cell \$meminit_v2 [^\n]*\n"
                      r"(?P<body>(?:(?![ \t]*end\b)[^\n]*\n)*)[ \t]*end\n", re.M)
_DATA = re.compile(r"^[ \t]*connect \\DATA (\d+)'([01xz]+)$", re.M)


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


def main(argv=None):
    def transform(text):
        text, dropped, kept = drop_zero_memory_inits(text)
        return text, f"{dropped} all-zero memory initialisers dropped, {kept} kept"
    return run_file_pass(argv, "zero_memory_inits", "TOP.il", transform)


if __name__ == "__main__":
    sys.exit(main())
