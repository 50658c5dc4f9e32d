"""Merge a benchmark run into an earlier output, so points measured at different times share
one table and one chart (``--update`` of benchmarks/cnn_core.py and design_space.py)."""
import json
from pathlib import Path


def merge_points(earlier_json, points, key):
    """The earlier output's points with ``points`` added; an earlier point whose ``key`` equals
    a new point's is replaced (the new one is the current measurement)."""
    earlier = json.loads(Path(earlier_json).read_text())["points"]
    ours = {p[key] for p in points}
    return [p for p in earlier if p[key] not in ours] + points
