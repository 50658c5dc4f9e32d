"""The gateware's source text as this process loaded it, for caches keyed by sources on disk.

A simulation build is cached under a digest of ``hw/``'s files (``sim/build.py``), computed
without elaborating the design. A process elaborates the modules it imported, though: if a file
under ``hw/`` is edited while a long command runs, the build it makes next would come from the
old code but be filed under the new code's digest, and every later run would reuse that build
as if it were the new design (session 26: a CNV simulation reused such a build). This module
records every source's hash when the package is first imported, before any gateware module is;
:func:`changed_since_import` names the files that differ on disk now.
"""
import hashlib
from pathlib import Path

__all__ = ["HW_ROOT", "digest_files", "changed_since_import"]

HW_ROOT = Path(__file__).resolve().parent


def digest_files(root=HW_ROOT):
    """``{path relative to root: SHA-256}`` of the Python sources under ``root``, tests and
    caches left out (they are not gateware)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.py"))
            if "__pycache__" not in p.parts and not p.name.startswith("test_")}


AT_IMPORT = digest_files()
"""The sources' hashes when ``xnorflow.hw`` was first imported by this process."""


def changed_since_import():
    """Sources under ``hw/`` added, removed or edited since this process imported the package,
    sorted (empty when the code in memory is the code on disk)."""
    now = digest_files()
    return sorted(f for f in AT_IMPORT.keys() | now.keys() if AT_IMPORT.get(f) != now.get(f))
