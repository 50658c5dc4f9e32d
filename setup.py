"""Installs the four floors under one ``xnorflow`` namespace (docs/architecture.md,
"Installed names"): the folders stay where a reader looks for them (``flow/``, ``sw/``,
``hw/``, ``sim/``), the installed names are ``xnorflow``, ``xnorflow.sw``, ``xnorflow.hw`` and
``xnorflow.sim``, so a user's own ``sw`` or ``sim`` package never collides with ours. Everything
else is in pyproject.toml; only the folder-to-package mapping needs code (a package list
derived from the folders, so a new subpackage needs no edit here)."""
from setuptools import find_packages, setup

#: installed package name -> folder in the checkout
FLOORS = {"xnorflow": "flow", "xnorflow.sw": "sw", "xnorflow.hw": "hw", "xnorflow.sim": "sim"}


def _packages():
    names = []
    for name, folder in FLOORS.items():
        names.append(name)
        names += [name + sub[len(folder):] for sub in find_packages(include=[f"{folder}.*"])]
    return names


setup(
    packages=_packages(),
    package_dir=FLOORS,
    # files the builds read beside the sources: Verilator lint waivers, the C++ harnesses,
    # the ECP5 cell models for netlist simulation
    package_data={"xnorflow.hw": ["core/*.vlt", "dataflow/*.vlt"],
                  "xnorflow.sim": ["harness/*.cpp", "pty_harness/*.cpp", "cells/ecp5/*.v"]},
)
