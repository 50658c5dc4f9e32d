"""``synth`` shows its stage and nextpnr's iterations (issue #23, item 12): the log parser on
lines of real nextpnr 0.11 logs, and the display on a terminal and on a pipe. The real build
that shows them end to end is tests/synth/test_synth_flow.py's echo build."""
import io

from xnorflow.sw.synth import BuildLogs, _StageBars

# Lines as nextpnr 0.11 writes them to --log (iCE40 HeAP + router1; ECP5 static + router2).
HEAP_ROUTER1 = """Info: Packing constants..
Info: Packing IOs..
Info: Packing LUT-FFs..
Info: Creating initial analytic placement for 108 cells, random placement wirelen = 3417.
Info:     at initial placer iter 0, wirelen = 53
Info: Running main analytical placer, max placement attempts per cell = 10000.
Info:     at iteration #1, type ALL: wirelen solved = 46, spread = 286, legal = 377; time = 0.00s
Info:     at iteration #12, type ALL: wirelen solved = 120, spread = 287, legal = 343; time = 0.00s
Info: HeAP Placer Time: 0.05s
Info: Running simulated annealing placer for refinement.
Info:   at iteration #1: temp = 0.000000, timing cost = 95, wirelen = 315
Info:   at iteration #16: temp = 0.000000, timing cost = 119, wirelen = 220
Info: Routing..
Info: Setting up routing queue.
Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|
Info:       1000 |       40        940 |   40   940 |      4211|       0.12       0.12|
Info:       2000 |       61       1919 |   21   979 |      3232|       0.20       0.32|
Info: Routing complete.
Info: Program finished normally.""".splitlines()

STATIC_ROUTER2 = """Info: Running Static placer...
Info: iter=0 steplen=2.080994 a=1.000000 penalty=[0.00, 0.00, 0.00, 0.00, 0.00]
Info: overlap: COMB=84.3%, RAM=0.0%, DSP=0.0%, GB=0.0%, IO=0.0%
Info: iter=1 steplen=6.697157 a=1.618034 penalty=[0.00, 0.00, 0.00, 0.00, 0.00]
Info: overlap: COMB=83.8%, RAM=0.0%, DSP=0.0%, GB=0.0%, IO=0.0%
Info: Running router2...
Info: Running main router loop...
Info:     iter=1 wires=2040 overused=94 overuse=118 archfail=NA
Info:     iter=7 wires=2074 overused=8 overuse=8 archfail=NA
Info: Running router1 to check that route is legal...
Info: Routing..
Info: Routing complete.""".splitlines()


def _stages(logs, lines, feed):
    seen = []
    for line in lines:
        feed(line)
        for status in logs.poll():
            if not seen or seen[-1][0] != status.stage:
                seen.append([status.stage, status.count, status.detail])
            else:
                seen[-1][1:] = [status.count, status.detail]
    return [tuple(s) for s in seen]


def test_stages_and_iterations_of_heap_and_router1(tmp_path):
    logs = BuildLogs(tmp_path)
    logs.yosys_line("2.47. Executing ABC pass (technology mapping using ABC).")
    logs.yosys_line("2.48. Executing SHARE pass (SAT-based resource sharing).")
    assert (logs.status.stage, logs.status.count, logs.status.detail) == ("yosys synth", 2, "SHARE")
    assert _stages(logs, HEAP_ROUTER1, logs.nextpnr_line) == [
        ("yosys synth", 2, "SHARE"),
        ("nextpnr pack", 3, "Packing LUT-FFs"),
        ("nextpnr place (HeAP)", 12, ""),
        ("nextpnr place (annealing)", 16, ""),
        ("nextpnr route (router1)", 2000, "3,232 arcs left"),
        ("pack bitstream", 0, ""),
    ]
    logs.finished()
    assert logs.status.count == 1


def test_stages_and_iterations_of_static_and_router2(tmp_path):
    logs = BuildLogs(tmp_path)
    assert _stages(logs, STATIC_ROUTER2, logs.nextpnr_line)[1:] == [
        ("nextpnr pack", 0, "reading the netlist"),
        ("nextpnr place (static)", 2, "COMB overlap 83.8%"),
        ("nextpnr route (router2)", 7, "8 overused wires"),
        ("nextpnr route (legality check)", 0, ""),   # router1's "Routing.." stays in it
    ]


def test_logs_are_read_as_they_grow(tmp_path):
    logs = BuildLogs(tmp_path)
    assert [s.stage for s in logs.poll()] == ["yosys synth"]       # no log yet
    rpt = tmp_path / "top.rpt"
    rpt.write_text("1. Executing RTLIL frontend.\n2. Executing SYNTH_ICE40 pa")   # mid-line
    assert logs.poll()[-1].count == 1
    with open(rpt, "a") as f:
        f.write("ss.\n")
    assert logs.poll()[-1].detail == "SYNTH_ICE40"
    (tmp_path / "top.tim").write_text("\n".join(HEAP_ROUTER1[:8]) + "\n")
    statuses = logs.poll()
    # the stages passed between two polls are each reported, as they ended
    assert [s.stage for s in statuses] == ["yosys synth", "nextpnr pack",
                                           "nextpnr place (HeAP)"]
    assert statuses[0].count == 2 and statuses[-1].count == 12


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _show(statuses, monkeypatch, stream):
    monkeypatch.setattr("sys.stderr", stream)
    bars = _StageBars(interval=3600.0)
    bars.show_all(statuses)
    bars.close()
    return stream.getvalue()


def _statuses(tmp_path):
    logs = BuildLogs(tmp_path)
    shown = []
    for line in HEAP_ROUTER1:
        logs.nextpnr_line(line)
        shown += logs.poll()
    return shown


def test_on_a_pipe_each_stage_is_one_whole_line(tmp_path, monkeypatch):
    text = _show(_statuses(tmp_path), monkeypatch, io.StringIO())
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "yosys synth", "nextpnr pack", "nextpnr place (HeAP)", "nextpnr place (annealing)",
        "nextpnr route (router1)", "pack bitstream"]
    assert lines[2].startswith("synth: nextpnr place (HeAP): 12 iterations (")
    assert lines[4].startswith("synth: nextpnr route (router1): 2000 arcs (")
    assert lines[4].endswith(", 3,232 arcs left)")


def test_on_a_terminal_the_bar_is_redrawn_in_place(tmp_path, monkeypatch):
    text = _show(_statuses(tmp_path), monkeypatch, _Terminal())
    assert "\r" in text                                    # tqdm redraws the line
    assert "synth: nextpnr place (annealing): 16" in text
    assert "3,232 arcs left" in text
