"""Every bad value, path and data file of every command: one row each, the command's real
entry point, exit status 2 and a one-line message that names the culprit (issue #23).

Rows live in ``tests/bad_input_cases/<area>.py`` (``CASES`` and an optional ``make_files``)."""
import importlib
import pkgutil
import shlex
from pathlib import Path

import numpy as np
import pytest

import tests.bad_input_cases as cases_pkg
from xnorflow.sw import xnf
from xnorflow.cli import main
from xnorflow.sw.random_models import random_model

AREAS = [importlib.import_module(f"{cases_pkg.__name__}.{m.name}")
         for m in pkgutil.iter_modules(cases_pkg.__path__)]
ROWS = [(area.__name__.rsplit(".", 1)[1], argv, expected)
        for area in AREAS for argv, expected in area.CASES]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, digits_models):
    """A directory with every file the rows refer to: a valid model, a model too wide for the
    iCEBreaker's accumulator, a real checkpoint, and each area's damaged files."""
    tmp = tmp_path_factory.mktemp("bad input")
    xnf.save(random_model(np.random.default_rng(1), [64, 16, 10], input_bits=4, name="ok"),
             tmp / "model.xnf")
    # 200 inputs of 8 bits: |acc| ≤ 200·255 = 51,000 needs 17 bits, the build has 16
    xnf.save(random_model(np.random.default_rng(2), [200, 16, 10], input_bits=8, name="wide"),
             tmp / "wide.xnf")
    for area in AREAS:
        if hasattr(area, "make_files"):
            area.make_files(tmp)
    checkpoint, _ = digits_models("irnet")
    return tmp, {"tmp": str(tmp), "model": str(tmp / "model.xnf"),
                 "wide_model": str(tmp / "wide.xnf"), "checkpoint": str(checkpoint)}


def run_cli(argv, capsys):
    """``xnorflow ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("area, argv, expected", ROWS,
                         ids=[f"{a}: {shlex.join(argv)}" for a, argv, _ in ROWS])
def test_bad_input_is_refused_by_name(area, argv, expected, workdir, capsys):
    tmp, fill = workdir
    before = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    code, out, err = run_cli([a.format(**fill) for a in argv], capsys)
    assert code == 2, (code, err)
    assert expected in err, err
    assert "Traceback" not in err, err
    message = [line for line in err.splitlines() if "error" in line]
    assert message, err
    # nothing half-written: the run left no new file behind
    after = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    assert after == before, set(after) - set(before)
