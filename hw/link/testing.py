"""Simulation helpers for the host-link tests (and the Amaranth transport): a byte-memory bus
target with random ack latency, and a byte-stream bench with random valid/ready stalls."""
import random
from collections import deque

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from ..bus import BusSignature, ADDR_WIDTH

__all__ = ["BusMemory", "ByteStreamBench"]


class BusMemory(wiring.Component):
    """A bus target for tests: ``size`` bytes of memory at addresses ``0 .. size-1``; every
    other address answers ``err`` (and writes nothing).

    Each request is acknowledged ``1 + w`` cycles after ``stb`` is seen, ``w`` drawn from a
    16-bit LFSR in ``0 .. 2**wait_bits - 1`` (``wait_bits=0``: always the next cycle).

    Ports
    -----
    bus : In(BusSignature(addr_width))

    Attributes (simulation only)
    ----------------------------
    writes : Signal(32)
        Number of acknowledged write requests (err or not).
    mem : lib.memory.Memory
        The storage, for direct inspection with ``ctx.get(mem.data[a])``.
    """

    def __init__(self, *, size=256, addr_width=ADDR_WIDTH, wait_bits=2, seed=0xACE1,
                 init=()):
        self.size = size
        self.wait_bits = wait_bits
        self.seed = seed or 1
        self.mem = Memory(shape=8, depth=size, init=list(init))
        self.writes = Signal(32)
        super().__init__({"bus": In(BusSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        wr = self.mem.write_port()
        rd = self.mem.read_port(domain="sync")
        bus = self.bus

        lfsr = Signal(16, init=self.seed)
        m.d.sync += lfsr.eq((lfsr << 1)[:16] ^ (0x002D * lfsr[15]))
        wait = Signal(max(self.wait_bits, 1))
        oor = Signal()
        m.d.comb += [
            oor.eq(bus.addr >= self.size),
            rd.addr.eq(bus.addr),
            wr.addr.eq(bus.addr),
            wr.data.eq(bus.w_data),
            bus.r_data.eq(rd.data),
        ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(bus.stb):
                    m.d.sync += wait.eq(lfsr[:self.wait_bits] if self.wait_bits else 0)
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(wait == 0):
                    m.d.comb += [bus.ack.eq(1), bus.err.eq(oor),
                                 wr.en.eq(bus.we & ~oor)]
                    with m.If(bus.we):
                        m.d.sync += self.writes.eq(self.writes + 1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
        return m


class ByteStreamBench:
    """Drives a byte-stream input and drains a byte-stream output of a simulated design.

    Adds two background testbenches to ``sim``: a driver that sends the queued bytes on
    ``i`` (``valid`` dropped for a random gap before a byte with probability ``p_gap``), and
    a sink that takes bytes from ``o`` (``ready`` low with probability ``p_stall``), checks
    the stream rule (payload held while ``valid`` and not ``ready``) and, if ``bus`` is
    given, the initiator rule of ``hw/bus.py`` (``stb``, ``addr``, ``we``, ``w_data`` held
    until ``ack``).

    ``i`` may be None (nothing to drive). ``cycle`` counts clock cycles; ``received`` holds ``(cycle, byte)`` of every taken
    output byte; ``sent_cycle`` is the cycle the last queued byte was taken;
    ``offer_cycles`` the cycles at which ``o.valid`` rose.
    """

    def __init__(self, sim, i, o, *, bus=None, rng=None, p_gap=0.0, p_stall=0.0):
        self.i, self.o, self.bus = i, o, bus
        self.rng = rng or random.Random(0)
        self.p_gap, self.p_stall = p_gap, p_stall
        self.queue = deque()
        self.cycle = 0
        self.received = []
        self.sent_cycle = None
        self.offer_cycles = []
        self.errors = []
        if i is not None:
            sim.add_testbench(self._drive, background=True)
        sim.add_testbench(self._sink, background=True)

    def send(self, data):
        self.queue.extend(bytes(data))

    @property
    def idle(self):
        """All queued bytes have been taken by the design."""
        return not self.queue and not self._busy

    _busy = False

    async def _drive(self, ctx):
        i = self.i
        while True:
            if not self.queue:
                await ctx.tick()
                continue
            self._busy = True
            byte = self.queue.popleft()
            while self.p_gap and self.rng.random() < self.p_gap:
                await ctx.tick()
            ctx.set(i.payload, byte)
            ctx.set(i.valid, 1)
            await ctx.tick().until(i.ready)
            ctx.set(i.valid, 0)
            self.sent_cycle = self.cycle
            self._busy = False

    async def _sink(self, ctx):
        o, bus = self.o, self.bus
        rng, p = self.rng, self.p_stall
        prev_valid, prev_payload, prev_taken = 0, 0, True
        prev_bus = None
        sampled = [o.valid, o.payload]
        if bus is not None:
            sampled += [bus.stb, bus.ack, bus.addr, bus.we, bus.w_data]
        while True:
            ready = 0 if (p and rng.random() < p) else 1
            ctx.set(o.ready, ready)
            _, _, valid, payload, *b = await ctx.tick().sample(*sampled)
            self.cycle += 1
            if valid and not prev_valid:
                self.offer_cycles.append(self.cycle)
            if prev_valid and not prev_taken and (not valid or payload != prev_payload):
                self.errors.append(f"cycle {self.cycle}: o changed before it was taken")
            taken = bool(valid and ready)
            if taken:
                self.received.append((self.cycle, payload))
            prev_valid, prev_payload, prev_taken = valid, payload, taken
            if bus is not None:
                stb, ack, addr, we, w_data = b
                if prev_bus is not None and prev_bus[0] and not prev_bus[1]:
                    if not stb or (addr, we, w_data) != prev_bus[2:]:
                        self.errors.append(f"cycle {self.cycle}: bus request dropped/changed "
                                           "before ack")
                if ack and not stb:
                    self.errors.append(f"cycle {self.cycle}: ack without stb")
                prev_bus = (stb, ack, addr, we, w_data)

    def take_received(self):
        """The bytes received since the last call."""
        data = bytes(b for _, b in self.received)
        self.received.clear()
        return data


class LinkWithMemory(wiring.Component):
    """A ``HostLink`` whose bus is joined to a ``BusMemory``: the device of the link tests.

    Ports: ``i: In(stream.Signature(8))``, ``o: Out(stream.Signature(8))``; ``link`` and
    ``target`` are the two parts.
    """

    def __init__(self, *, mem_size=128, wait_bits=2, seed=0xACE1, **link_args):
        from amaranth.lib import stream
        from amaranth.lib.wiring import Out
        from .hostlink import HostLink
        self.link = HostLink(**link_args)
        self.target = BusMemory(size=mem_size, addr_width=self.link.addr_width,
                                wait_bits=wait_bits, seed=seed)
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        m.submodules.target = self.target
        wiring.connect(m, wiring.flipped(self.i), self.link.i)
        wiring.connect(m, self.link.o, wiring.flipped(self.o))
        wiring.connect(m, self.link.bus, self.target.bus)
        return m
