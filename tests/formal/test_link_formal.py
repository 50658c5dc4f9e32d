"""Formal proofs on the host link (hw/link/hostlink.py): it never wedges, and its streams and
its bus requests follow their handshake rules, for every byte sequence and every behaviour of
the host, the response reader and the bus target.

Each proof runs on the accelerator's own link (``max_payload = 256``, ``timeout = 2**20``)
and on the smallest one (``max_payload = 16``, the executor's minimum, ``timeout = 2``), with
a bus target that answers within ``BUS_LATENCY = 4`` cycles (the core's slowest answer, a
read; test_core_bus_formal.py proves the cores keep to it). ``XNF_FORMAL_FULL=1`` adds the
protocol's largest payload, 65535 (minutes). Why these instances cover every other one:
docs/verification.md, "Why a few link instances cover them all".
"""
import os
from dataclasses import dataclass

import pytest
from amaranth.hdl import Cat, Mux, Signal, Value

from xnorflow.hw.bus import ADDR_WIDTH
from xnorflow.hw.link import hostlink as hostlink_module
from xnorflow.hw.link.hostlink import HostLink
from xnorflow.hw.link.defs import RSP_SYNC, Cmd, Status
from xnorflow.hw.link.executor import CommandExecutor
from xnorflow.hw.link.receiver import FrameReceiver
from xnorflow.hw.link.transmitter import ResponseTransmitter
from xnorflow.hw.top import DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT
from tests.formal.harness import Harness, Internals, free, run_proof
from tests.formal.link_spec import (ANY_STATUS, RequestTracker, ResponseTracker, Rq, Rs,
                                    bus_hold_rule, bus_target, stream_rule)

pytestmark = pytest.mark.formal

#: The slowest bus target the proofs allow: the core answers a read 4 cycles after stb rises
#: (test_core_bus_formal.py proves it), the dataflow core any request after 2.
BUS_LATENCY = 4
#: A response of n payload bytes takes 7 + n cycles, not counting cycles o.ready is low.
RESPONSE_CYCLES = 7
#: The link takes input again at most this many cycles after a response's last byte.
REARM_CYCLES = 3


@dataclass(frozen=True)
class LinkInstance:
    """The HostLink parameters a proof elaborates, and the bounds (HostLink's docstring
    formulas) they give."""
    max_payload: int
    timeout: int
    bus_latency: int = BUS_LATENCY
    config: bytes = b""

    @property
    def first_byte_bound(self):
        """The first response byte comes at most this many cycles after a request's end."""
        return 16 + self.max_payload * (2 + self.bus_latency)

    @property
    def busy_bound(self):
        """The longest run of cycles with i.ready low (not counting cycles o.ready holds a
        response back): the wait, the response, the re-arm, and the timed-out cycle."""
        return 1 + self.first_byte_bound + RESPONSE_CYCLES + self.max_payload + REARM_CYCLES

    def link(self):
        return HostLink(max_payload=self.max_payload, timeout=self.timeout,
                        addr_width=ADDR_WIDTH, config=self.config)


#: The executor's minimum payload and a 2-cycle timeout: the shortest paths through every
#: state. The accelerator's own parameters (hw/top.py). The protocol's largest payload with
#: the shortest timeout (minutes: run with XNF_FORMAL_FULL=1).
SMALLEST = LinkInstance(max_payload=16, timeout=2)
ACCELERATOR = LinkInstance(max_payload=DEFAULT_MAX_PAYLOAD, timeout=DEFAULT_TIMEOUT)
PROTOCOL_MAX = LinkInstance(max_payload=65535, timeout=1)
INSTANCES = {"smallest": SMALLEST, "accelerator": ACCELERATOR,
             "protocol-max": pytest.param(PROTOCOL_MAX, marks=pytest.mark.skipif(
                 not os.environ.get("XNF_FORMAL_FULL"),
                 reason="max_payload=65535 takes minutes; set XNF_FORMAL_FULL=1"))}


def saturating(m, counter, *, reset, count, start=0):
    """``counter`` := ``start`` on ``reset``, else +1 while ``count`` (stopping at its
    maximum)."""
    top = (1 << len(counter)) - 1
    with m.If(reset):
        m.d.sync += counter.eq(start)
    with m.Elif(count & (counter != top)):
        m.d.sync += counter.eq(counter + 1)


def implies(a, b):
    return ~a | b


class LinkAnswersEveryFrame(Harness):
    title = "the host link answers every frame within a bounded time and never wedges"

    def __init__(self, instance=SMALLEST, *, lemmas=True):
        super().__init__()
        self.p, self.lemmas = instance, lemmas

    def build(self, m):
        p = self.p
        link = p.link()
        inside = Internals(link)
        m.submodules.link = inside.fragment
        i, o = link.i, link.o
        # The host sends anything at any time (no assumption at all, not even the stream
        # rules), the response reader stalls at will, the bus target errs at will.
        m.d.comb += [i.valid.eq(free(1)), i.payload.eq(free(8)), o.ready.eq(free(1))]
        self.age = bus_target(m, link.bus, latency=p.bus_latency)
        self.rsp = rsp = ResponseTracker(m, o)
        self.req = req = RequestTracker(m, i, max_payload=p.max_payload, timeout=p.timeout,
                                        response_done=rsp.done)
        answering = req.state == Rq.ANSWER
        stalled = o.valid & ~o.ready

        # Cycles since the frame's end (its last byte, or the cycle it timed out), counted
        # until the first response byte is offered.
        self.wait = wait = Signal(range(p.first_byte_bound + 2))
        saturating(m, wait, reset=req.ends, start=1,
                   count=answering & (rsp.state == Rs.IDLE) & ~o.valid)
        # Cycles of the response so far, not counting stalls.
        self.sending = sending = Signal(range(RESPONSE_CYCLES + p.max_payload + 2))
        saturating(m, sending, reset=rsp.done, count=((rsp.state != Rs.IDLE) | o.valid) & ~stalled)
        # Cycles since a response's last byte (from 1; saturated: "long ago").
        self.rearm = rearm = Signal(range(REARM_CYCLES + 1), init=REARM_CYCLES)
        saturating(m, rearm, reset=rsp.done, start=1, count=1)
        # Consecutive cycles with i.ready low, not counting stalls of o.
        self.busy = busy = Signal(range(p.busy_bound + 2))
        saturating(m, busy, reset=i.ready, count=~stalled)

        self.check(m, busy <= p.busy_bound,
                   f"no byte sequence wedges the link: i.ready is never low for more than "
                   f"{p.busy_bound} cycles (not counting cycles o.ready holds a response back)")
        self.check(m, implies(answering & (rsp.state == Rs.IDLE), wait <= p.first_byte_bound),
                   f"every frame, valid or not, is answered: its first response byte is "
                   f"offered at most 16 + max_payload*(2+L) = {p.first_byte_bound} cycles after "
                   f"its end")
        self.check(m, implies(o.valid, answering),
                   "a response is only sent after a request frame has ended, one per frame")
        self.check(m, implies((rsp.state == Rs.IDLE) & o.valid, o.payload == RSP_SYNC),
                   "every response starts with the sync byte 0x5A")
        self.check(m, implies((rsp.state == Rs.STATUS) & o.valid & (req.expect != ANY_STATUS),
                              o.payload == req.expect),
                   "a truncated frame is answered TIMEOUT, an oversized length OVERSIZED")
        self.check(m, implies((rsp.state == Rs.LEN1) & o.valid, rsp.announced <= p.max_payload),
                   "a response's payload is at most max_payload bytes")
        self.check(m, implies(rsp.done, sending + 1 <= RESPONSE_CYCLES + rsp.length),
                   "a response of n payload bytes is sent in 7 + n cycles plus the cycles "
                   "o.ready is low")
        self.check(m, implies(req.in_frame, i.ready == (req.idle != p.timeout)),
                   "inside a frame the link takes a byte every cycle until the timeout")
        self.check(m, implies(answering, ~i.ready),
                   "from a frame's end until its response's last byte the link takes no byte")
        self.check(m, implies((req.state == Rq.HUNT) & (rearm >= REARM_CYCLES), i.ready),
                   f"the link takes input again {REARM_CYCLES} cycles after a response's last "
                   f"byte at the latest, and takes every byte while hunting for a frame")
        rx, ex = inside.sub("rx").component, inside.sub("ex").component
        written = Mux(rx.frame.valid, ex.buf_w.en, rx.buf.en)     # HostLink's write port
        self.check(m, ~(ex.buf_r.en & written),
                   "the payload buffer is never read and written in the same cycle "
                   "(its no_rw_check attribute)")
        if self.lemmas:
            parts = (inside, inside.sub("rx"), inside.sub("ex"), inside.sub("tx"))
            self.receiver_lemmas(m, *parts)
            self.executor_lemmas(m, *parts)
            self.response_lemmas(m, *parts)
            self.counter_lemmas(m, *parts)

    # The lemmas: the link's reachable states, phase by phase, tied to the trackers. With
    # them the properties are 2-inductive; without, the induction step may start in a state
    # the link never reaches (e.g. the executor streaming past its response length).

    def receiver_lemmas(self, m, link, rx, ex, tx):
        p = self.p
        req, rearm, wait = self.req, self.rearm, self.wait
        info = rx.component.frame.payload
        hunting, answering = req.state == Rq.HUNT, req.state == Rq.ANSWER
        ex_idle, tx_idle = ex.state("IDLE"), tx.state("IDLE")
        after_payload = (req.state == Rq.PAYLOAD) | (req.state == Rq.CRC0) | (req.state == Rq.CRC1)
        self.lemma(m, rx.any_state() & ex.any_state() & tx.any_state()
                   & (Value.cast(self.rsp.state) <= Rs.CRC1.value),
                   "every FSM holds the code of one of its states")
        self.lemma(m, implies(hunting & (rearm == 1),
                              rx.state("DONE") & ex.state("WAIT_TX") & tx_idle),
                   "the cycle after a response, the receiver is being released")
        self.lemma(m, implies(hunting & (rearm >= 2), rx.state("HUNT") & ex_idle & tx_idle),
                   "while hunting, receiver, executor and transmitter are idle")
        for name in ("CMD", "LEN0", "LEN1", "PAYLOAD", "CRC0", "CRC1"):
            self.lemma(m, implies(req.state == getattr(Rq, name),
                                  rx.state(name) & ex_idle & tx_idle
                                  & (rx.signal("idle") == req.idle)
                                  & (info.status == Status.OK)),
                       "inside a frame the receiver is in the tracker's state, the rest idle")
        self.lemma(m, implies(req.in_frame & (req.state != Rq.CMD), info.cmd == req.cmd),
                   "the receiver holds the frame's command")
        self.lemma(m, implies(req.state == Rq.LEN1, info.length[:8] == req.length[:8])
                   & implies(after_payload, (info.length == req.length)
                             & (req.length <= p.max_payload)),
                   "the receiver holds the frame's length, at most max_payload")
        self.lemma(m, implies(req.state == Rq.PAYLOAD,
                              (rx.signal("count") == req.count) & (req.count < req.length)
                              & (rx.signal("last_byte") == (req.count + 1 == req.length))),
                   "the receiver counts the payload as the tracker does, and knows its last "
                   "byte")
        low = info.length[:8]
        self.lemma(m, implies(req.state == Rq.LEN1,
                              (rx.signal("low_over") == (low > (p.max_payload & 0xFF)))
                              & (rx.signal("low_zero") == (low == 0))),
                   "at the length's high byte the receiver holds its low byte's compares")
        self.lemma(m, implies(~answering, req.expect == ANY_STATUS)
                   & ((req.expect == ANY_STATUS) | (req.expect == Status.TIMEOUT)
                      | (req.expect == Status.OVERSIZED)),
                   "the tracker expects TIMEOUT, OVERSIZED or any status, only for an ended frame")
        self.lemma(m, implies(answering, rx.state("CHECK", "DONE")),
                   "from a frame's end to its response's end the receiver presents the frame")
        self.lemma(m, implies(rx.state("CHECK"), answering & (wait == 1) & ex_idle
                              & (info.status == Status.OK) & (req.expect == ANY_STATUS)),
                   "the CRC check takes the cycle after the last byte")
        self.lemma(m, implies(answering & (req.expect != ANY_STATUS), info.status == req.expect),
                   "a truncated or oversized frame reaches the executor with its status")
        self.lemma(m, implies(answering & (req.expect == ANY_STATUS),
                              ((info.status == Status.OK) | (info.status == Status.BAD_CRC))
                              & (info.cmd == req.cmd) & (info.length == req.length)
                              & (req.length <= p.max_payload)),
                   "a complete frame reaches the executor with its command and length")

    def executor_lemmas(self, m, link, rx, ex, tx):
        p = self.p
        req, rsp, wait, age = self.req, self.rsp, self.wait, self.age
        info = rx.component.frame.payload
        answering = req.state == Rq.ANSWER
        L, B = p.bus_latency, p.first_byte_bound
        # the command's data bytes: those done (idx) and those left
        idx = ex.signal("idx")
        n = idx + ex.signal("left")
        ok = info.status == Status.OK
        write_or_read = (info.cmd == Cmd.WRITE) | (info.cmd == Cmd.READ)
        self.lemma(m, implies(answering & ~ex.state("STREAM", "WAIT_TX"),
                              (rsp.state == Rs.IDLE) & tx.state("IDLE")),
                   "the transmitter starts only when the executor streams")
        self.lemma(m, implies(ex.state("IDLE") & answering,
                              (wait <= 2) & rx.state("CHECK", "DONE")),
                   "the executor takes a frame at most 2 cycles after its end")
        self.lemma(m, implies(ex.signal("from_ident") & ~ex.state("IDLE"),
                              ok & (info.cmd == Cmd.IDENT)
                              & (ex.signal("rlen") == len(link.component.ident))),
                   "only IDENT answers from the identification block, all of it")
        self.lemma(m, implies(ex.state("DISPATCH"),
                              answering & (wait <= 3) & rx.state("CHECK", "DONE")),
                   "the executor dispatches a frame the cycle after it takes it")
        decoded = {"failed": ~ok, "is_ident": info.cmd == Cmd.IDENT,
                   "empty": info.length == 0, "write_or_read": write_or_read,
                   "is_write": info.cmd == Cmd.WRITE, "short": info.length < 4,
                   "address_only": info.length == 4, "read_length": info.length == 6}
        self.lemma(m, implies(~ex.state("IDLE"),
                              Cat(*(ex.signal(name) == value for name, value in decoded.items()))
                              .all()),
                   "from the cycle after the executor takes a frame, its decode registers hold "
                   "the frame's decode")
        self.lemma(m, implies(ex.state("FIELDS"), (wait <= 4 + idx) & (idx <= 6) & ok
                              & write_or_read),
                   "a WRITE's or READ's address and count fields take 7 cycles")
        self.lemma(m, implies(ex.state("DECODE"), (wait <= 11) & ok & write_or_read),
                   "the command is decoded at most 11 cycles after the frame's end")
        self.lemma(m, implies(ex.state("W_READ", "W_BUS"), ok & (info.cmd == Cmd.WRITE)
                              & (info.length >= 4) & (n == info.length - 4)),
                   "a WRITE writes length - 4 bytes")
        self.lemma(m, implies(ex.state("W_READ", "W_BUS", "R_BUS"),
                              ex.signal("at_end") == (ex.signal("left") == 0)),
                   "the end flag follows the bytes left")
        strobe_lemma(self, m, link, ex)
        self.lemma(m, implies(ex.state("W_READ"), (idx <= n) & (wait <= 12 + idx * (2 + L))),
                   "a WRITE spends at most 2 + L cycles per byte")
        self.lemma(m, implies(ex.state("W_BUS"), (idx < n) & (wait <= 13 + idx * (2 + L) + age)),
                   "a WRITE's bus request has waited age cycles")
        self.lemma(m, implies(ex.state("R_BUS"), ok & (info.cmd == Cmd.READ)
                              & (n <= p.max_payload) & (idx <= n)
                              & (wait <= 12 + idx * (1 + L) + age)),
                   "a READ reads at most max_payload bytes, 1 + L cycles each")
        self.lemma(m, implies(ex.state("ERR0", "ERR1"), ok & write_or_read),
                   "only a WRITE or READ meets a bus error")
        self.lemma(m, implies(ex.state("ERR0"), wait <= B - 3)
                   & implies(ex.state("ERR1"), wait <= B - 2)
                   & implies(ex.state("SEND"), wait <= B - 1),
                   "a bus error is answered 3 cycles later")
        self.lemma(m, implies(ex.state("W_READ", "W_BUS", "R_BUS"),
                              ex.signal("oor") == (ex.signal("addr")[ADDR_WIDTH:] != 0)),
                   "the out-of-range flag follows the address")
        self.lemma(m, implies(age != 0, link.component.bus.stb & ex.state("W_BUS", "R_BUS"))
                   & (age <= L),
                   "a bus request in progress is the executor's")

    def response_lemmas(self, m, link, rx, ex, tx):
        p = self.p
        req, rsp, sending = self.req, self.rsp, self.sending
        answering = req.state == Rq.ANSWER
        idx, rlen = ex.signal("idx"), ex.signal("rlen")
        pvalid, bvalid = ex.signal("pvalid"), ex.signal("bvalid")
        status = ex.signal("status")
        self.lemma(m, implies(ex.state("SEND", "STREAM", "WAIT_TX") & answering,
                              (rlen <= p.max_payload)
                              & implies(req.expect != ANY_STATUS, status == req.expect)),
                   "the executor's answer fits max_payload and carries the frame's status")
        self.lemma(m, tx.signal("idle_r") == tx.state("IDLE"),
                   "the transmitter's idle flag is its IDLE state")
        in_step = [("SYNC", Rs.IDLE), ("STATUS", Rs.STATUS), ("LEN0", Rs.LEN0),
                   ("LEN1", Rs.LEN1), ("PAYLOAD", Rs.PAYLOAD), ("CRC_WAIT", Rs.CRC0),
                   ("CRC0", Rs.CRC0), ("CRC1", Rs.CRC1)]
        for name, rs_state in in_step:
            self.lemma(m, implies(tx.state(name), answering & (rsp.state == rs_state)
                                  & (tx.signal("length") == rlen)
                                  & (tx.signal("status") == status)),
                       "the transmitter is where the response tracker is")
        past_length = (rsp.state == Rs.PAYLOAD) | (rsp.state == Rs.CRC0) | (rsp.state == Rs.CRC1)
        self.lemma(m, implies(rsp.state == Rs.LEN1, rsp.length[:8] == rlen[:8])
                   & implies(past_length, rsp.length == rlen),
                   "the response tracker has seen the transmitter's length")
        self.lemma(m, implies(ex.state("STREAM"), (ex.signal("at_end") == (idx == rlen))
                              & (idx + ex.signal("left") == rlen)),
                   "while streaming, the end flag follows the byte index")
        header = tx.state("SYNC", "STATUS", "LEN0", "LEN1")
        self.lemma(m, implies(header, ex.state("STREAM", "WAIT_TX")
                              & implies(ex.state("STREAM"), (idx == pvalid + bvalid) & (idx <= rlen)
                                      & implies(bvalid | pvalid, rlen != 0))
                              & implies(ex.state("WAIT_TX"), rlen == 0)),
                   "during the header the executor has the first payload byte ready")
        self.lemma(m, implies(tx.state("PAYLOAD"), ex.state("STREAM") & pvalid
                              & (bvalid == (rsp.count + 1 < rsp.length))
                              & (idx == rsp.count + 1 + bvalid) & (rsp.count < rsp.length)
                              & (tx.signal("left") == rsp.length - rsp.count)
                              & (tx.signal("last") == (tx.signal("left") == 1))),
                   "during the payload the executor streams at full rate")
        self.lemma(m, implies(tx.state("CRC_WAIT"),
                              (ex.state("STREAM") & (idx == rlen) & ~pvalid & ~bvalid)
                              | ex.state("WAIT_TX"))
                   & implies(tx.state("CRC0", "CRC1"), ex.state("WAIT_TX"))
                   & implies(ex.state("STREAM"), header | tx.state("PAYLOAD", "CRC_WAIT")),
                   "after the payload the executor waits for the transmitter")
        self.lemma(m, implies(tx.state("SYNC"), sending == 0)
                   & implies(tx.state("STATUS"), sending == 1)
                   & implies(tx.state("LEN0"), sending == 2)
                   & implies(tx.state("LEN1"), sending == 3)
                   & implies(tx.state("PAYLOAD"), sending == 4 + rsp.count)
                   & implies(tx.state("CRC_WAIT"), sending == 4 + rsp.length)
                   & implies(tx.state("CRC0"), sending == 5 + rsp.length)
                   & implies(tx.state("CRC1"), sending == 6 + rsp.length)
                   & implies(tx.state("IDLE"), sending == 0),
                   "the response has taken one cycle per byte, plus one before the CRC")

    def counter_lemmas(self, m, link, rx, ex, tx):
        p = self.p
        req, rsp, wait, sending, rearm, busy = (self.req, self.rsp, self.wait, self.sending,
                                                self.rearm, self.busy)
        o = link.component.o
        hunting, answering = req.state == Rq.HUNT, req.state == Rq.ANSWER
        most = p.first_byte_bound + RESPONSE_CYCLES + p.max_payload
        self.lemma(m, wait <= p.first_byte_bound, "the wait counter stays within the bound")
        self.lemma(m, implies(req.in_frame, busy == 0)
                   & implies(answering & (rsp.state == Rs.IDLE) & ~o.valid, busy <= wait)
                   & implies(answering & ((rsp.state != Rs.IDLE) | o.valid),
                             busy <= wait + sending)
                   & implies(hunting & (rearm == 1), busy <= most)
                   & implies(hunting & (rearm == 2), busy <= most + 1)
                   & implies(hunting & (rearm >= 3), busy == 0),
                   "i.ready has been low since the frame's end at most")


def strobe_lemma(harness, m, link, ex):
    """The executor's bus strobe, a register, is what its state decodes."""
    oor, at_end = ex.signal("oor"), ex.signal("at_end")
    harness.lemma(m, link.component.bus.stb == ((ex.state("W_BUS") & ~oor)
                                                | (ex.state("R_BUS") & ~at_end & ~oor)),
                  "the bus strobe register is what the executor's state decodes")


class LinkStreamsFollowRules(Harness):
    title = "every stream of the host link keeps valid and payload until ready"

    def __init__(self, instance=SMALLEST, *, lemmas=True):
        super().__init__()
        self.p, self.lemmas = instance, lemmas

    def build(self, m):
        p = self.p
        link = p.link()
        inside = Internals(link)
        m.submodules.link = inside.fragment
        rx, ex, tx = inside.sub("rx"), inside.sub("ex"), inside.sub("tx")
        i, o = link.i, link.o
        # Any host, any reader, any bus target (it may never answer).
        m.d.comb += [i.valid.eq(free(1)), i.payload.eq(free(8)), o.ready.eq(free(1))]
        bus_target(m, link.bus)

        stream_rule(self, m, o, "link.o (response bytes)")
        stream_rule(self, m, rx.component.frame, "receiver -> executor frame")
        stream_rule(self, m, ex.component.header, "executor -> transmitter header")
        stream_rule(self, m, ex.component.payload, "executor -> transmitter payload")
        bus_hold_rule(self, m, link.bus, "link.bus")
        if self.lemmas:
            self.lemma(m, rx.any_state() & ex.any_state() & tx.any_state()
                       & (tx.signal("idle_r") == tx.state("IDLE")),
                       "every FSM holds the code of one of its states (the transmitter's "
                       "idle flag its IDLE state)")
            strobe_lemma(self, m, inside, ex)
            self.lemma(m, (~ex.signal("pvalid") & ~ex.signal("bvalid")) | ex.state("STREAM"),
                       "the executor's payload stages are full only while it streams")


#: Induction lengths (measured: the smallest that close).
ANSWERS_DEPTH = 2
RULES_DEPTH = 3
#: BMC depth for the broken variants: their first counterexamples need a timed-out frame
#: and its response (about 16 cycles), an IDENT frame answered up to its first payload byte
#: (about 24) or a WRITE frame up to its first bus request (about 25).
BROKEN_DEPTH = 26


@pytest.mark.parametrize("instance", INSTANCES.values(), ids=INSTANCES.keys())
def test_link_answers_every_frame_in_bounded_time_and_never_wedges(tmp_path, instance):
    result = run_proof(LinkAnswersEveryFrame(instance), tmp_path, depth=ANSWERS_DEPTH)
    print(result.explain())
    assert result.status == "PASS", result.explain()


@pytest.mark.parametrize("instance", INSTANCES.values(), ids=INSTANCES.keys())
def test_link_streams_keep_valid_and_payload_until_ready(tmp_path, instance):
    result = run_proof(LinkStreamsFollowRules(instance), tmp_path, depth=RULES_DEPTH)
    print(result.explain())
    assert result.status == "PASS", result.explain()


def _counterexample(harness, tmp_path, expected_message, depth=BROKEN_DEPTH):
    """Bounded check from reset (a real trace, not an induction artefact) without the lemmas,
    so that the named property itself must catch the bug."""
    result = run_proof(harness, tmp_path, mode="bmc", depth=depth)
    print(result.explain())
    assert result.status == "FAIL", result.explain()
    assert any(msg.startswith(expected_message) for msg in result.failed), result.explain()


class ForgetsTimedOutFrames(CommandExecutor):
    """Broken on purpose: never releases the receiver after answering TIMEOUT (a wedge)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.frame.payload.status == Status.TIMEOUT):
            m.d.comb += self.frame.ready.eq(0)
        return m


def test_link_proof_catches_an_executor_that_wedges_after_a_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(hostlink_module, "CommandExecutor", ForgetsTimedOutFrames)
    _counterexample(LinkAnswersEveryFrame(lemmas=False), tmp_path,
                    "the link takes input again")


def test_link_proof_catches_a_receiver_that_ignores_its_timeout(tmp_path, monkeypatch):
    def slow_receiver(*, max_payload, timeout):
        return FrameReceiver(max_payload=max_payload, timeout=timeout * 1000)
    monkeypatch.setattr(hostlink_module, "FrameReceiver", slow_receiver)
    _counterexample(LinkAnswersEveryFrame(lemmas=False), tmp_path,
                    "inside a frame the link takes a byte every cycle until the timeout")


class TakesPayloadBeforeTheReader(ResponseTransmitter):
    """Broken on purpose: accepts payload bytes whether or not ``o`` passes them on."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.payload.ready.eq(self.payload.valid)
        return m


class GivesUpOnSlowTargets(CommandExecutor):
    """Broken on purpose: withdraws a bus request the target has not answered in a cycle."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        waited = Signal()
        m.d.sync += waited.eq(self.bus.stb & ~self.bus.ack)
        with m.If(waited):
            m.d.comb += self.bus.stb.eq(0)
        return m


def test_stream_proof_catches_a_payload_byte_changing_under_backpressure(tmp_path, monkeypatch):
    monkeypatch.setattr(hostlink_module, "ResponseTransmitter", TakesPayloadBeforeTheReader)
    _counterexample(LinkStreamsFollowRules(lemmas=False), tmp_path, "link.o (response bytes)")


def test_stream_proof_catches_a_bus_request_withdrawn_before_its_ack(tmp_path, monkeypatch):
    monkeypatch.setattr(hostlink_module, "CommandExecutor", GivesUpOnSlowTargets)
    _counterexample(LinkStreamsFollowRules(lemmas=False), tmp_path, "link.bus")


class PrefetchesWhileIdle(CommandExecutor):
    """Broken on purpose: reads the buffer while idle (a prefetch of byte 0), when the
    receiver may be writing a frame's payload into it."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(~self.frame.valid):
            m.d.comb += [self.buf_r.en.eq(1), self.buf_r.addr.eq(0)]
        return m


def test_link_proof_catches_a_buffer_read_during_a_write(tmp_path, monkeypatch):
    monkeypatch.setattr(hostlink_module, "CommandExecutor", PrefetchesWhileIdle)
    # a frame's first payload byte is written 5 cycles after reset at the earliest
    _counterexample(LinkAnswersEveryFrame(lemmas=False), tmp_path,
                    "the payload buffer is never read and written in the same cycle", depth=8)
