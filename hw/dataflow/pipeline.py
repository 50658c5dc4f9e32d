"""The engines of a dataflow build chained into one stream pipeline.

``i`` → engine 0 → width converter → engine 1 → … → engine L−1 → ``o``: each engine is a
:class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit` (dense; a
:class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU` when input-first) or a
:class:`~xnorflow.hw.dataflow.conv_engine.ConvEngine` (conv, with its pool); between two engines a
:class:`~xnorflow.hw.dataflow.convert.WidthConverter` regroups the producer's P-bit beats into the
consumer's S-bit beats. No FIFO is needed between them: an engine's own output FIFO covers
its pipeline (credits) and its ping-pong input buffer holds the next image while the current
one computes, so the slowest engine sets the rate (docs/dataflow.md, "Timing").
"""
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.core.pipeline import replica, reset_by_replica

from .config import DataflowConfig
from .conv_engine import ConvEngine
from .convert import WidthConverter
from .mvu import MatrixVectorUnit
from .psum_mvu import PartialSumMVU

__all__ = ["Pipeline", "PipelineWriteSignature"]


class PipelineWriteSignature(wiring.Signature):
    """The run-time write port of a whole pipeline, seen from its driver: ``engine`` selects
    which engine's :class:`~xnorflow.hw.dataflow.mvu.WriteSignature` port gets ``sel``, ``addr``,
    ``data`` and ``en`` (widths: the widest engine's)."""

    def __init__(self, config):
        shapes = [e.shape for e in config.engines]
        super().__init__({
            "engine": Out(max(1, (len(shapes) - 1).bit_length())),
            "sel": Out(max(1, (max(s.selects for s in shapes) - 1).bit_length())),
            "addr": Out(max(s.write_addr_width for s in shapes)),
            "data": Out(max(s.write_data_width for s in shapes)),
            "en": Out(1),
        })


class Pipeline(wiring.Component):
    """Every engine of ``config`` chained by streams.

    Parameters
    ----------
    config : DataflowConfig or str
    ram_styles : dict or None
        Per engine index, the ``ram_styles`` of its :class:`MatrixVectorUnit`; default the
        weight memory's style from the fold (:attr:`EngineFold.ram_style`).

    Ports
    -----
    i : In(stream.Signature(k·S of engine 0, over ``config.first_in_words``))
        The first engine's input beats (its stream format, :mod:`xnorflow.hw.dataflow.shape`),
        or their words where the engine takes input-FIFO words itself
        (:attr:`DataflowConfig.first_in_words`).
    o : Out(stream.Signature(P·W of the last engine))
        The last engine's raw output beats.
    abort : In(1)
        Reset every engine and converter (their registers that have a reset) at the end of
        the next cycle: each takes it from a replica register of its own, so the reset of an
        ECP5 build is one short net per block instead of one net to every engine on the die
        (the CNV 7 k/s pixel-MMV build's critical path: 15.7 ns of route).
    wr : In(PipelineWriteSignature(config))
        Run-time loading of every engine's memories; only while no image is in flight. With
        ``config.ram_reg`` a write reaches its engine one cycle later (a register per engine).
    busy : Out(number of engines)
        Bit ``e``: engine ``e`` consumed a weight word this cycle.

    With ``config.ram_reg`` every dense MMV engine's reorder buffer has a skid register slice
    after its unregistered block-RAM read (:meth:`DataflowConfig.output_slice`).

    Timing: initiation interval ``config.interval`` (the slowest engine's ``SF·NF`` per
    image, ``SF·NF/mmv`` for an MMV engine); the latency is the sum over the chain
    (docs/dataflow.md, :mod:`xnorflow.hw.dataflow.run_timing`).
    """

    def __init__(self, config, ram_styles=None):
        self.config = DataflowConfig.parse(config)
        self.engines = []
        for index, fold in enumerate(self.config.engines):
            styles = (ram_styles or {}).get(index)
            if styles is None and fold.ram_style:
                styles = {"weights": fold.ram_style}
            options = dict(ram_reg=bool(self.config.ram_reg),
                           levels_per_stage=self.config.levels,
                           leaf_reg=bool(self.config.leaf_reg),
                           output_stage=self.config.output_stage(fold), ram_styles=styles)
            if fold.is_conv:
                self.engines.append(ConvEngine(
                    fold, output_slice=self.config.output_slice(fold),
                    window_slice=self.config.window_slice(fold),
                    end_slice=self.config.end_slice(fold),
                    pool_slice=self.config.pool_slice(fold),
                    input_slice=self.config.input_slice(fold),
                    in_words=self.config.conv_in_words(fold), **options))
            elif fold.order == "input":
                self.engines.append(PartialSumMVU(
                    fold.n_in, fold.n_out, fold.simd, fold.pe, fold.input_bits, fold.output,
                    fold.acc_width, input_kind=fold.input_kind,
                    levels_per_stage=self.config.levels, ram_styles=styles,
                    hold_output=self.config.holds_output(fold)))
            else:
                self.engines.append(MatrixVectorUnit(
                    fold.n_in, fold.n_out, fold.simd, fold.pe, fold.input_bits, fold.output,
                    fold.acc_width, input_kind=fold.input_kind, mmv=fold.mmv,
                    output_slice=self.config.output_slice(fold),
                    in_words=self.config.first_in_words if index == 0 else 1, **options))
        # a conv engine's output has no padding inside an image (P divides M), so every
        # stream regroups over the image's whole map
        self.converters = [
            WidthConverter(1, a.pe, b.in_lanes, a.out_features, eager=self.config.ram_reg,
                           most_slots=self.config.gather_slots)
            for a, b in zip(self.config.engines, self.config.engines[1:])]
        first = self.config.engines[0]
        super().__init__({
            "i": In(stream.Signature(first.in_lanes * first.input_bits
                                     // self.config.first_in_words)),
            "o": Out(stream.Signature(self.config.last.out_beat_bits)),
            "abort": In(1),
            "wr": In(PipelineWriteSignature(self.config)),
            "busy": Out(len(self.engines)),
        })

    def elaborate(self, platform):
        m = Module()
        for e, engine in enumerate(self.engines):
            m.submodules[f"engine{e}"] = self._reset_by_abort(m, engine, f"engine{e}")
            hit = self.wr.engine == e
            if self.config.ram_reg:
                # Each engine takes its writes from registers of its own, a cycle later: one
                # short net per engine instead of one from the core to every weight memory on
                # the die (18.7 ns of route, the 3 M/s ECP5 SFC build's critical path).
                # Replicas, so Yosys cannot merge the engines' identical copies back into one
                # (it did: 17.3 ns, the next build's path); they copy every cycle, with no
                # clock enable from the engine decode (ECP5 CNV build cnv10k: 1.5 ns late),
                # since the engine's write stage takes them only with its enable.
                # Writes happen only while no image is in flight: the cycle changes nothing.
                # Reset-less: only the enable matters after a reset.
                held = [Signal.like(port, name=replica(f"engine{e}_wr_{name}"), reset_less=True)
                        for name, port in (("sel", engine.wr.sel), ("addr", engine.wr.addr),
                                           ("data", engine.wr.data))]
                m.d.sync += [held[0].eq(self.wr.sel), held[1].eq(self.wr.addr),
                             held[2].eq(self.wr.data)]
                m.d.comb += [engine.wr.sel.eq(held[0]), engine.wr.addr.eq(held[1]),
                             engine.wr.data.eq(held[2])]
                m.d.sync += engine.wr.en.eq(self.wr.en & hit)
            else:
                m.d.comb += [engine.wr.sel.eq(self.wr.sel), engine.wr.addr.eq(self.wr.addr),
                             engine.wr.data.eq(self.wr.data), engine.wr.en.eq(self.wr.en & hit)]
            m.d.comb += self.busy[e].eq(engine.busy)
        outputs = [engine.o for engine in self.engines]
        for e, converter in enumerate(self.converters):
            m.submodules[f"convert{e}"] = self._reset_by_abort(m, converter, f"convert{e}")
            wiring.connect(m, outputs[e], converter.i)
            wiring.connect(m, converter.o, self.engines[e + 1].i)
        wiring.connect(m, wiring.flipped(self.i), self.engines[0].i)
        wiring.connect(m, outputs[-1], wiring.flipped(self.o))
        return m

    def _reset_by_abort(self, m, block, name):
        """``block`` reset by its own replica register of ``abort``; a block with an ``abort``
        port of its own (a conv engine: a replica per inner block) takes ``abort`` there."""
        if "abort" in block.signature.members:
            m.d.comb += block.abort.eq(self.abort)
            return block
        return reset_by_replica(m, block, self.abort, name)
