"""Files the flow writes get the user's umask; progress on a pipe is whole lines (issue #23,
items 10 and 12)."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np

from xnorflow.sw import xnf
from xnorflow.sw.progress import LineProgress, progress_bar
from xnorflow.sw.random_models import random_model

ROOT = Path(__file__).resolve().parent.parent


def test_atomic_writes_get_the_umask_not_mkstemps_0600(tmp_path):
    model = random_model(np.random.default_rng(0), [64, 16, 10], input_bits=4)
    old = os.umask(0o022)
    try:
        xnf.save(model, tmp_path / "a.xnf")
        os.umask(0o077)
        xnf.atomic_write(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.xnf").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600


def test_progress_on_a_pipe_is_whole_lines_without_carriage_returns():
    class Pipe:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

        def isatty(self):
            return False

    pipe = Pipe()
    bar = progress_bar(total=100, desc="eval", unit="img", file=pipe, interval=0)
    assert isinstance(bar, LineProgress)
    for _ in range(5):
        bar.update(20)
    bar.close()
    assert "\r" not in pipe.text
    lines = pipe.text.splitlines()
    assert lines[-1].startswith("eval: 100/100 img"), lines
    assert len(lines) == 6  # one per update at interval 0, one at the end


def test_eval_shows_progress_on_stderr_and_keeps_stdout_one_json(tmp_path):
    model = random_model(np.random.default_rng(0), [64, 16, 10], input_bits=4)
    xnf.save(model, tmp_path / "m.xnf")
    proc = subprocess.run([sys.executable, "-m", "xnorflow.cli", "eval", str(tmp_path / "m.xnf"),
                           "--dataset", "digits", "--json"], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    import json
    assert json.loads(proc.stdout)["images"] == 360
    assert "eval: 360/360 img" in proc.stderr and "\r" not in proc.stderr, proc.stderr
