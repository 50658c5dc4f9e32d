"""The builds on record under ``bitstreams/``: finding them (:func:`find_builds`), their labels
(:func:`build_label`), and the dataflow build a command makes when no ``--fold`` is given: the
fastest on record (:func:`default_dataflow_build`).

The fold search (:func:`xnorflow.sw.fold.fold_model`) ranks folds by the resource estimate;
whether a fold closes timing at a clock only a placed and routed build can show. The CNV's
fastest estimated fold on the ECP5-85F (7,056 cycles at 100 MHz) never routed, while a
9,408-cycle fold met 95 MHz at one placement seed (docs/dataflow.md, "Convolution"). So, like
the folding configurations FINN's examples ship per model and board, the builds on record
decide: a tracked ``bitstreams/*/report.json`` that met its clock is a recipe (fold, clock,
placer, seed) known to close, and nextpnr places the same netlist at the same seed the same
way, so building it again reproduces it.

:func:`default_dataflow_build` picks, among the recorded dataflow builds for the board that met
their clock and whose engines have the model's layer shapes (:func:`check_model`), the one with
the most images per second at its clock (``clock / interval``; ties: the fewer LUTs, then the
directory name). Options the user gave (``--clock-mhz``, ``--seed``, ``--placer``) select among
the records: a record built otherwise is not the build asked for. Records with a non-default
UART rate are left out (the commands that resolve builds take ``--baud`` on their own). With no
matching record, the fold search's fastest fold at the given clock or the board's.
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

from xnorflow.hw.board.top import DEFAULT_BAUD
from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.sw import fold as folding
from xnorflow.sw.dataflow_program import DataflowProgramError, check_model

__all__ = ["DEFAULT_OUT_ROOT", "DataflowBuild", "build_label", "default_dataflow_build",
           "find_builds", "recorded_dataflow_builds", "resolve_dataflow_build"]

#: Where `xnorflow synth` writes its builds and where the tracked reports are
DEFAULT_OUT_ROOT = Path(__file__).resolve().parent.parent / "bitstreams"


def find_builds(board=None, array=None, root=None):
    """``[(report_path, report), ...]`` of the builds under ``root`` (default ``bitstreams/``)
    for ``board`` and ``array`` (any when None), sorted by directory name."""
    want = ArrayConfig.parse(array).format() if array is not None else None
    found = []
    for path in sorted(Path(root or DEFAULT_OUT_ROOT).glob("*/report.json")):
        report = json.loads(path.read_text())
        if board is not None and report.get("board") != board:
            continue
        if want is not None and report.get("array") != want:
            continue
        found.append((path, report))
    return found


def build_label(config, clock_mhz=None, baud=None, placer=None, seed=None):
    """Label of a build (``report.json``'s ``config``): the config's compact form, the clock
    if a PLL makes it, the UART rate if it is not the default, the placer if it is not
    nextpnr's default and the placement seed if one was given."""
    return (config.format() + (f"@{clock_mhz:g}MHz" if clock_mhz is not None else "")
            + (f"-{baud}Bd" if baud and baud != DEFAULT_BAUD else "")
            + (f"-{placer}" if placer and placer != "heap" else "")
            + (f"-seed{seed}" if seed is not None else ""))


@dataclass(frozen=True)
class DataflowBuild:
    """A dataflow build's recipe: ``config`` (the fold), ``clock_mhz`` (as asked of the PLL,
    ``--clock-mhz``), ``placer`` and ``seed`` (None: nextpnr's defaults); ``source``: the
    record's ``report.json`` path, or None when the fold search chose the fold; ``pll_mhz``:
    the clock the record's PLL made (37 MHz asked on the iCE40 is 36.75), None without one."""
    config: DataflowConfig
    clock_mhz: float
    placer: str | None = None
    seed: int | None = None
    source: Path | None = None
    pll_mhz: float | None = None

    @property
    def images_per_second(self):
        """Images per second in steady state at the clock the build runs at."""
        return (self.pll_mhz or self.clock_mhz) * 1e6 / self.config.interval

    @property
    def origin(self):
        """Where the recipe came from: the record's ``bitstreams/<build>`` directory, or
        ``fold search``."""
        if self.source is None:
            return "fold search"
        return f"{self.source.parent.parent.name}/{self.source.parent.name}"

    def describe(self):
        """One line for the log: what is built and why."""
        opts = f"{self.clock_mhz:g} MHz" + (f", seed {self.seed}" if self.seed is not None else "")
        if self.placer is not None:
            opts += f", placer {self.placer}"
        origin = (f"the fastest recorded build that met its clock ({self.source.parent.name})"
                  if self.source else "the fastest fold that fits (no recorded build of "
                                      "this model's shapes met its clock with the options "
                                      "given)")
        return f"no --fold: {origin}: {self.config.format()} at {opts}"


def _recipe(path, report):
    """The recipe a report records, or None when it is not a dataflow build this module can
    repeat exactly (its label would differ: another UART rate, or an unreadable fold)."""
    if report.get("arch") != "dataflow" or not report.get("timing_met"):
        return None
    try:
        config = DataflowConfig.parse(report["fold"])
        # the label holds the clock asked for; the report's target is what the PLL made
        asked = float(re.search(r"@([0-9.]+)MHz", report["config"]).group(1))
        made = float(report["target_clock_mhz"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    placer = report.get("placer")
    placer = None if placer in (None, "heap") else placer
    seed = report.get("seed")
    if report["config"] != build_label(config, asked, None, placer, seed):
        return None
    return DataflowBuild(config, asked, placer, seed, path, made)


def recorded_dataflow_builds(model, board, root=None):
    """Every recorded dataflow build for ``board`` (under ``root``, default ``bitstreams/``)
    that met its clock and fits ``model``'s layers, fastest first."""
    found = []
    for path, report in find_builds(board, root=root):
        build = _recipe(path, report)
        if build is None:
            continue
        try:
            check_model(model, build.config)
        except DataflowProgramError:
            continue
        found.append((build, report.get("luts", 0)))
    found.sort(key=lambda b: (-b[0].images_per_second, b[1], b[0].source.parent.name))
    return [b for b, _ in found]


def default_dataflow_build(model, board, clock_mhz=None, seed=None, placer=None, root=None):
    """The build to make for ``model`` on ``board`` without a ``--fold`` (see the module's
    docstring); ``clock_mhz``, ``seed``, ``placer``: the user's options, None when not given."""
    want_placer = None if placer == "heap" else placer
    for build in recorded_dataflow_builds(model, board, root):
        if ((clock_mhz is None or build.clock_mhz == clock_mhz)
                and (seed is None or build.seed == seed)
                and (placer is None or build.placer == want_placer)):
            return build
    clock = clock_mhz or folding.DATAFLOW_CLOCK_MHZ[board]
    return DataflowBuild(folding.fold_model(model, board, clock_mhz=clock).config, clock,
                         placer, seed)


def resolve_dataflow_build(model, board, fold=None, clock_mhz=None, seed=None, placer=None,
                           log=None):
    """The build a dataflow command makes from its options: ``fold`` (a DataflowConfig) with
    them as given, at the board's dataflow clock unless ``clock_mhz``; without ``fold``
    :func:`default_dataflow_build` of ``model``, whose choice is written to ``log`` (a
    function of one line) when given."""
    if fold is not None:
        return DataflowBuild(fold, clock_mhz or folding.DATAFLOW_CLOCK_MHZ[board], placer, seed)
    build = default_dataflow_build(model, board, clock_mhz, seed, placer)
    if log is not None:
        log(build.describe())
    return build
