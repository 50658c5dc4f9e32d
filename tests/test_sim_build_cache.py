"""The simulation build cache is keyed by the gateware this process runs, never by newer files.

A build's directory is named by a digest of the sources on disk (sim/build.py), but a process
elaborates the modules it imported at its start. These tests play a process whose ``hw/`` was
edited after it started by giving it a different snapshot of what it imported (editing the real
tree would disturb the other test workers)."""
import pytest

from xnorflow.hw import source_snapshot
from xnorflow.sim.build import BuildError, TopSpec, build_dir
from xnorflow.sim.tops import link_memory_spec

LINK_TOP = link_memory_spec()
LOOPBACK = TopSpec("xnorflow.sim.loopback:loopback", {"depth": 16}, "loopback",
                   sources=("sim/loopback.py",))


def test_the_snapshot_holds_the_gateware_and_not_its_tests():
    files = source_snapshot.AT_IMPORT
    assert "dataflow/mvu.py" in files and "link/receiver.py" in files
    assert not any(f.rsplit("/", 1)[-1].startswith("test_") for f in files)
    assert source_snapshot.changed_since_import() == []


def test_a_gateware_edit_after_the_start_refuses_the_build_and_names_the_file(monkeypatch):
    imported = dict(source_snapshot.AT_IMPORT)
    unchanged = build_dir(LINK_TOP)
    imported["dataflow/mvu.py"] = "0" * 64           # the process loaded another mvu.py
    monkeypatch.setattr(source_snapshot, "AT_IMPORT", imported)
    with pytest.raises(BuildError, match=r"hw/dataflow/mvu\.py.*run the command again"):
        build_dir(LINK_TOP)
    # a file the process never saw (added since) counts as well
    del imported["dataflow/mvu.py"]
    with pytest.raises(BuildError, match=r"hw/dataflow/mvu\.py"):
        build_dir(LINK_TOP)
    # a top that does not depend on hw/ is keyed as before
    assert build_dir(LOOPBACK).name.startswith("loopback-")
    monkeypatch.undo()
    assert build_dir(LINK_TOP) == unchanged
