"""Formal proof: the cores answer every bus request in time (the link's side of the contract).

The host-link proofs (test_link_formal.py) hold for *any* bus target that acknowledges each
request at most ``BUS_LATENCY = 4`` cycles after ``stb`` rises, never in that cycle; the link
in turn holds each request until its ack (proven there too). This proof closes the circle for
the accelerator tops (hw/top.py = HostLink + Core, hw/dataflow/top.py = HostLink +
DataflowCore, each on that bus): against any initiator that follows hw/bus.py's rules, the
real core acknowledges every request, read or write, mapped or not, idle or running, exactly
once and within those 4 cycles, whatever its state.
"""
import pytest
from amaranth.hdl import Signal

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import bus_target as bus_target_module
from xnorflow.hw.core import core as core_module
from xnorflow.hw.core.core import Core
from xnorflow.hw.dataflow.core import DataflowCore
from tests.formal.harness import Harness, free, run_proof
from tests.formal.test_link_formal import BUS_LATENCY

pytestmark = pytest.mark.formal

#: The smallest core the configuration allows (dense only; the bus handshake does not
#: depend on the array shape or the memory depths).
SMALL = "2x2x8,w_depth=16,thr_depth=4,in_depth=16,act_depth=16,out_depth=4,desc_depth=2,conv=0"
#: Two engines (a threshold layer and a raw one), the smallest folds.
DATAFLOW_SMALL = "df:8>4:4x2,4>4r:4x2"
DEPTH = 6       # the read pipeline (4 registers) flushed, plus 2


class CoreAcksEveryRequest(Harness):
    title = "the core acknowledges every bus request exactly once within 4 cycles"

    def __init__(self, make_core=lambda: Core(ArrayConfig.parse(SMALL))):
        super().__init__()
        self.make_core = make_core

    def build(self, m):
        m.submodules.core = core = self.make_core()
        bus = core.bus
        # The initiator: free requests, but it follows hw/bus.py: once stb is up it stays up
        # with the same addr, we and w_data until the ack (the link proves it does).
        stb, addr, we, w_data = free(1), free(len(bus.addr)), free(1), free(8)
        m.d.comb += [bus.stb.eq(stb), bus.addr.eq(addr), bus.we.eq(we), bus.w_data.eq(w_data)]
        waiting = Signal()
        held_addr, held_we, held_w = Signal.like(bus.addr), Signal(), Signal(8)
        m.d.sync += [waiting.eq(bus.stb & ~bus.ack), held_addr.eq(bus.addr),
                     held_we.eq(bus.we), held_w.eq(bus.w_data)]
        self.assume(m, ~waiting | (bus.stb & (bus.addr == held_addr) & (bus.we == held_we)
                                   & (bus.w_data == held_w)))

        # Cycles the current request has waited (0 in the cycle stb rises).
        age = Signal(range(BUS_LATENCY + 2))
        with m.If(bus.stb & ~bus.ack):
            with m.If(age != BUS_LATENCY + 1):
                m.d.sync += age.eq(age + 1)
        with m.Else():
            m.d.sync += age.eq(0)

        self.check(m, ~bus.ack | (bus.stb & (age != 0)),
                   "ack comes only for a request, and never in the cycle stb rises")
        self.check(m, ~bus.stb | bus.ack | (age < BUS_LATENCY),
                   f"every request is acknowledged at most {BUS_LATENCY} cycles after stb "
                   f"rises")


def test_core_acks_every_bus_request_within_the_links_latency(tmp_path):
    result = run_proof(CoreAcksEveryRequest(), tmp_path, depth=DEPTH)
    print(result.explain())
    assert result.status == "PASS", result.explain()


def test_dataflow_core_acks_every_bus_request_within_the_links_latency(tmp_path):
    # The dataflow accelerator (hw/dataflow/top.py) puts the same HostLink in front of it.
    harness = CoreAcksEveryRequest(lambda: DataflowCore(DATAFLOW_SMALL))
    result = run_proof(harness, tmp_path, depth=DEPTH)
    print(result.explain())
    assert result.status == "PASS", result.explain()


def _assigned(m, name):
    """The signal called ``name`` that module ``m`` (under construction) assigns."""
    found = {id(sig): sig for stmts in m._statements.values() for stmt in stmts
             for sig in stmt._lhs_signals() if sig.name == name}
    (sig,) = found.values()
    return sig


class SlowReads(bus_target_module.BusTarget):
    """Broken on purpose: a read is acknowledged a cycle after its data is ready (5 cycles
    after stb rises), as if a register were added to the read path but not to the ack."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        req, rd_pend3 = _assigned(m, "req"), _assigned(m, "rd_pend3")
        late = Signal()
        m.d.sync += [late.eq(rd_pend3), self.bus.ack.eq((req & self.bus.we) | late)]
        return m


def test_core_bus_proof_catches_a_read_acknowledged_late(tmp_path, monkeypatch):
    monkeypatch.setattr(core_module, "BusTarget", SlowReads)
    result = run_proof(CoreAcksEveryRequest(), tmp_path, mode="bmc", depth=DEPTH + 2)
    print(result.explain())
    assert result.status == "FAIL", result.explain()
    assert any(msg.startswith("every request is acknowledged at most") for msg in result.failed), \
        result.explain()
