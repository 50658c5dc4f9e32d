"""Accelerator core top: the memories, and the components joined around them."""
from amaranth.back import verilog as _verilog
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, connect

from xnorflow.hw.bus import BusSignature
from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core import memory_map as mm
from xnorflow.hw.core.array import SystolicArray
from xnorflow.hw.core.bus_target import BusTarget
from xnorflow.hw.core.feed import ArrayFeed
from xnorflow.hw.core.sequencer import Sequencer
from xnorflow.hw.core.threshold import ThresholdStage
from xnorflow.hw.core.writer import ActivationWriter

__all__ = ["Core", "verilog"]


class Core(wiring.Component):
    """The BNN accelerator core: an overlay that runs any model fitting its memories.

    The host loads descriptors, weights, thresholds and inputs through ``bus``, writes the
    batch size and starts a run; the sequencer executes the descriptor table layer by layer on
    the systolic array; the last layer's raw integers land in the output buffer, and the cycle
    counters record the run. docs/core.md has the block diagram and the dataflow;
    docs/memory_map.md (and :mod:`xnorflow.hw.core.memory_map`) the address map.

    The core holds the memories and joins its components (``wiring.connect``, signatures in
    :mod:`xnorflow.hw.core.interfaces`)::

        bus ─► BusTarget ─control─► Sequencer ─issue─► ArrayFeed ─edge─► SystolicArray
                   │                    └──layer──► (feed, ThresholdStage, ActivationWriter)
                   └ host side of the banks        SystolicArray ─sums─► ThresholdStage
                                                   ThresholdStage ─bits─► ActivationWriter

    A bank used by the host (while idle) and by the core (while busy) gets its address, and
    for the row banks its write, from the side that owns it now (:meth:`_share`); the other
    banks' ports are connected straight to their one user.

    Parameters
    ----------
    config : ArrayConfig or str
        Array shape (P, Q, K), memory depths and accumulator width.

    Ports
    -----
    bus : In(BusSignature())
        Byte-wide register bus, target side (hw/bus.py). A write is acknowledged in the
        cycle after ``stb`` rises (one byte per two cycles), a read three cycles later (the
        read word, its byte and the read byte are registered; one byte per five cycles).
        ``err`` is raised for unmapped addresses, writes to read-only locations, and, while a
        run is busy, for any memory access but the layer-cycle counters and for writes to
        ``BATCH`` or ``CTRL`` byte 0 (nothing is written then).

    Latency and throughput
    ----------------------
    The array consumes one K-bit word per row and column per cycle while a layer issues; a
    layer takes :func:`xnorflow.hw.core.timing.layer_cycles` cycles, ``1 + (G·m_tiles − 1)·max(W, Q) +
    W + write_delay`` (plus ``DESC_FETCH`` for a run's first layer) with ``G = ceil(B / Q)``
    and ``W = in_words·input_bits``: the cycle model (sw/layers/) uses the same definition,
    and the counters count exactly this.
    """

    def __init__(self, config=None):
        self.config = ArrayConfig.parse(config) if config is not None else ArrayConfig()
        mm.check_fits(self.config)
        super().__init__({"bus": In(BusSignature())})
        cfg = self.config

        def mem(width, depth, **attrs):
            # no_rw_check: no port ever needs the value of a word written in the same cycle
            # (host writes happen only while idle, when the sequencer reads nothing; the
            # ping-pong halves keep activation reads and writes apart; outputs and counters
            # are defined only when idle). Without it Yosys adds read-first collision logic to
            # every memory: about 30-45 LUTs and 50-80 flip-flops each on ECP5 and iCE40.
            return Memory(shape=width, depth=depth, init=[], attrs={"no_rw_check": 1, **attrs})

        #: The memories by region (lists are banks); simulations may load them directly.
        self.memories = {
            # Eight 32-bit words per descriptor: narrow enough for small block RAMs.
            "desc": mem(32, mm.DESC_WORDS * cfg.desc_depth),
            "layer_cycles": mem(32, cfg.desc_depth),
            # Single-port use (one shared address, see _share): deep banks are asked to
            # be "huge" RAM, which Yosys maps to iCE40 UltraPlus SPRAM (synth_ice40 -spram
            # uses huge RAM only when asked by ram_style).
            "w": [mem(cfg.K, cfg.w_depth, **({"ram_style": "huge"} if cfg.w_huge else {}))
                  for _ in range(cfg.P)],
            # One bank per row holds the thresholds (words 0 .. thr_depth-1) and the raw
            # outputs (from word thr_depth on): a layer uses one or the other, never both,
            # and one bank instead of two per row is what block-RAM-poor FPGAs need.
            "thr": [mem(32, cfg.thr_depth + cfg.out_depth) for _ in range(cfg.P)],
            "in": [mem(cfg.K, cfg.in_depth) for _ in range(cfg.Q)],
            "act": [mem(cfg.K, 2 * cfg.act_depth) for _ in range(cfg.Q)],
        }
        # Ports are made here, once, so that elaborating the core twice (Verilog, then a
        # simulation) does not add ports. Host byte writes use granularity 8; the activation
        # banks use granularity P: one tile's P output bits fill one lane of a word.
        mems = self.memories

        def both(mem_, granularity=None):
            return mem_.read_port(), mem_.write_port(granularity=granularity)

        def banks(mems_, granularity=None):
            pairs = [both(x, granularity) for x in mems_]
            return [r for r, _ in pairs], [w for _, w in pairs]

        self._ports = {
            "desc": both(mems["desc"], 8), "layer_cycles": both(mems["layer_cycles"]),
            "w": banks(mems["w"], 8), "thr": banks(mems["thr"], 8), "in": banks(mems["in"], 8),
            "act": banks(mems["act"], cfg.P),
        }

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.seq = seq = Sequencer(cfg)
        m.submodules.feed = feed = ArrayFeed(cfg)
        m.submodules.array = array = SystolicArray(cfg.P, cfg.Q, cfg.K, cfg.acc_width,
                                                   cfg.row_groups)
        m.submodules.thresholds = thresholds = ThresholdStage(cfg)
        m.submodules.writer = writer = ActivationWriter(cfg)
        m.submodules.target = target = BusTarget(cfg)
        for name, memory in self.memories.items():
            for idx, sub in enumerate(memory if isinstance(memory, list) else [memory]):
                m.submodules[f"{name}_{idx}" if isinstance(memory, list) else name] = sub

        connect(m, wiring.flipped(self.bus), target.bus)
        connect(m, target.control, seq.control)
        connect(m, seq.layer, feed.layer, thresholds.layer, writer.layer)
        connect(m, seq.issue, feed.issue)
        connect(m, feed.edge, array.edge)
        connect(m, array.sums, thresholds.sums)
        connect(m, thresholds.bits, writer.bits)
        # Memory ports with one user.
        ports = self._ports
        connect(m, seq.layer_cycles, ports["layer_cycles"][1])
        connect(m, target.lc_read, ports["layer_cycles"][0])
        connect(m, target.desc_write, ports["desc"][1])
        for j in range(cfg.Q):
            connect(m, feed.act_read[j], ports["act"][0][j])
            connect(m, writer.act_write[j], ports["act"][1][j])
            connect(m, target.in_write[j], ports["in"][1][j])
        self._share(m, seq, feed, thresholds, target)
        return m

    def _share(self, m, seq, feed, thresholds, target):
        """The ports the host uses while idle and the core while busy (only then do the
        sequencer's side read the memories: no arbitration beyond ``busy`` is needed)."""
        cfg, ports, busy = self.config, self._ports, seq.control.busy
        desc_r = ports["desc"][0]
        m.d.comb += [desc_r.addr.eq(Mux(seq.desc.owner, seq.desc.addr, target.desc_read.addr)),
                     seq.desc.data.eq(desc_r.data), target.desc_read.data.eq(desc_r.data)]
        (w_r, w_w), (t_r, t_w), (i_r, _) = ports["w"], ports["thr"], ports["in"]
        for i in range(cfg.P):
            # One address per weight bank for its read and its write port: the host writes
            # (and reads back) only while idle, the sequencer reads only while busy. A bank is
            # then a single-port RAM (iCE40 SPRAM: one address, registered read, no init),
            # with the same 1-cycle read as a dual-port bank, so the timing does not change.
            w_shared = Signal(len(w_r[i].addr), name=f"w_addr{i}")
            m.d.comb += [w_shared.eq(Mux(busy, feed.w_read[i].addr, target.w_read[i].addr)),
                         w_r[i].addr.eq(w_shared), w_w[i].addr.eq(w_shared),
                         # Reads pause while the host writes (the read data is not used
                         # then): SPRAM keeps its output during a write ("no_change").
                         w_r[i].en.eq(~w_w[i].en.any()),
                         w_w[i].data.eq(target.w_write[i].data),
                         w_w[i].en.eq(target.w_write[i].en),
                         feed.w_read[i].data.eq(w_r[i].data),
                         target.w_read[i].data.eq(w_r[i].data)]
            # Row bank: host threshold writes while idle, raw outputs while busy.
            core_w, host_w = thresholds.thr_write[i], target.thr_write[i]
            m.d.comb += [
                t_r[i].addr.eq(Mux(busy, thresholds.thr_read[i].addr, target.thr_read[i].addr)),
                thresholds.thr_read[i].data.eq(t_r[i].data),
                target.thr_read[i].data.eq(t_r[i].data),
                t_w[i].addr.eq(Mux(busy, core_w.addr, host_w.addr)),
                t_w[i].data.eq(Mux(busy, core_w.data, host_w.data)),
                t_w[i].en.eq(Mux(busy, core_w.en, host_w.en)),
            ]
        for j in range(cfg.Q):
            m.d.comb += [i_r[j].addr.eq(Mux(busy, feed.in_read[j].addr, target.in_read[j].addr)),
                         feed.in_read[j].data.eq(i_r[j].data),
                         target.in_read[j].data.eq(i_r[j].data)]


def verilog(config=None, name="xnorflow_core"):
    """Verilog text of the core for ``config`` (an :class:`ArrayConfig` or its string form)."""
    core = Core(config)
    return _verilog.convert(core, name=name)
