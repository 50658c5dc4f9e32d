"""Which registers a routed build cannot clock in time: every late endpoint, grouped by name.

nextpnr reports one critical path per clock; fixing one path per build leaves the next one
hidden until the next build (half an hour on the ECP5-85F). With ``--detailed-timing-report``
(``xnorflow synth`` asks for it) nextpnr's JSON report also holds the arrival time of every
timing endpoint. This script turns those into slacks at a clock and groups the failing
endpoints by their cell's name with the bit and replica indices taken out, so one look shows
every structure that misses the clock, how many flip-flops or memories of it, and by how much.

The arrival nextpnr reports is the delay from the launching clock edge to the pin; the slack
here is the period minus it. nextpnr's own slack also counts the capture register's setup and
clock delay: on the ECP5 builds the two agree (SFC build 18's worst: -2.835 ns both ways), on
a small iCE40 build this one was 0.8 ns more pessimistic.

Prints ONE JSON document on stdout and writes a bar chart of the worst groups.

    python benchmarks/late_endpoints.py BUILD_DIR_OR_REPORT [--clock-mhz F] [--top N] [--plot PNG]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

# nextpnr's report of an Amaranth build (sw/synth.py REPORT_FILE).
REPORT_NAME = "top.nextpnr.json"

# Indices that tell one bit, PE, replica or chunk of the same structure from another.
_INDEX = re.compile(r"(?<=[._\[$])\d+|\[\d+\]")
# What packing and techmapping append to a flip-flop's or memory's name.
_SUFFIX = re.compile(r"(_TRELLIS_\w*|_SB_\w*|\$.*)$")


def group_name(cell):
    """The structure a cell belongs to: its name without indices or tool suffixes."""
    name = _SUFFIX.sub("", cell)
    return _INDEX.sub("#", name)


def late_endpoints(report, period_ns):
    """(cell, port, net, slack_ns, net's source lines) of every endpoint whose arrival exceeds
    ``period_ns``."""
    nets = report.get("detailed_net_timings")
    if nets is None:
        raise SystemExit("late_endpoints: the report has no detailed_net_timings: rerun nextpnr "
                         "with --detailed-timing-report")
    late = []
    for net in nets:
        for ep in net["endpoints"]:
            delay = ep["delay"]   # [min, max] in today's nextpnr, one number in older ones
            slack = period_ns - (max(delay) if isinstance(delay, list) else delay)
            if slack < 0:
                late.append((ep["cell"], ep["port"], net["net"], slack,
                             _repo_relative(net.get("sources", []))))
    return late


def _repo_relative(sources):
    """Source lines (``/path/to/checkout/hw/x.py:12``) from the checkout's root on."""
    return [re.sub(r"^.*?/(?=(hw|sw|sim)/)", "", s) for s in sources]


def summarise(late, top):
    groups = defaultdict(list)
    for cell, port, net, slack, sources in late:
        groups[group_name(cell)].append((slack, cell, port, net, sources))
    rows = []
    for name, eps in groups.items():
        eps.sort()
        worst = eps[0]
        rows.append({"group": name, "endpoints": len(eps), "worst_slack_ns": round(worst[0], 3),
                     "worst_cell": worst[1], "worst_port": worst[2], "worst_net": worst[3],
                     "worst_net_source": worst[4]})
    rows.sort(key=lambda r: r["worst_slack_ns"])
    return rows[:top], len(rows)


def plot(rows, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [r["group"][-60:] for r in rows][::-1]
    slacks = [r["worst_slack_ns"] for r in rows][::-1]
    counts = [r["endpoints"] for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 1.5))
    bars = ax.barh(range(len(names)), slacks, color="tab:red")
    for bar, count in zip(bars, counts):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {count} ",
                va="center", ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("worst slack (ns); label: late endpoints in the group")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="a build directory or its nextpnr JSON report")
    ap.add_argument("--clock-mhz", type=float, default=None,
                    help="the clock to check against (default: the report's constraint)")
    ap.add_argument("--top", type=int, default=40, help="groups to list (worst first)")
    ap.add_argument("--plot", type=Path, default=None, help="bar chart (default: beside the report)")
    args = ap.parse_args(argv)

    path = args.report
    if path.is_dir():
        found = sorted(path.rglob(REPORT_NAME))
        if not found:
            raise SystemExit(f"late_endpoints: no {REPORT_NAME} under {path}")
        path = found[0]
    report = json.loads(path.read_text())
    fmax = next(iter(report["fmax"].values()))
    clock = args.clock_mhz or fmax["constraint"]
    late = late_endpoints(report, 1000.0 / clock)
    rows, n_groups = summarise(late, args.top)
    plot_path = args.plot or path.with_name("late_endpoints.png")
    if rows:
        plot(rows, f"{path.parent.name}: late endpoints at {clock:g} MHz", plot_path)
    print(json.dumps({
        "report": str(path), "clock_mhz": clock, "fmax_mhz": round(fmax["achieved"], 2),
        "late_endpoints": len(late), "late_groups": n_groups, "groups": rows,
        "plot": str(plot_path) if rows else None,
    }, indent=2))


if __name__ == "__main__":
    main()
