"""Formal proof: the dataflow matrix-vector unit's output stream (hw/dataflow/mvu.py) keeps
``valid`` high and its payload stable until ``ready``, under any environment.

Everything the engine sees is free in every cycle: the input stream (no assumption, not even
its own stream rules), the reader's ``ready`` and the run-time write port (weights and channel
words rewritten at any time, which the engine's contract forbids during a run: the output
stream must keep its rules even then). Small shapes keep the proof quick; the output stage is
a ``lib.fifo.SyncFIFO`` whose only shape-dependent parts are its width and depth.
"""
import pytest

from xnorflow.hw.dataflow import convert as convert_module
from xnorflow.hw.dataflow import mvu as mvu_module
from xnorflow.hw.dataflow.mvu import MatrixVectorUnit
from tests.formal.harness import Harness, Internals, free, run_proof
from tests.formal.link_spec import assume_stream_rule, stream_rule

pytestmark = pytest.mark.formal

DEPTH = 3
BROKEN_DEPTH = 20

#: (n_in, n_out, simd, pe, input_bits, options): a threshold layer with the parallel output
#: stage, a raw unsigned 2-bit layer and a serial output stage.
SHAPES = {
    "threshold-parallel": (8, 4, 4, 2, 1, {}),
    "raw-unsigned": (8, 4, 4, 2, 2, {"output": "raw"}),
    "threshold-serial": (16, 4, 4, 2, 1, {"output_stage": "serial"}),
}


class MvuOutputFollowsStreamRules(Harness):
    title = "the MVU's output stream keeps valid and payload until ready"

    def __init__(self, shape, *, lemmas=True):
        super().__init__()
        self.shape, self.lemmas = shape, lemmas

    def build(self, m):
        n_in, n_out, simd, pe, k, options = self.shape
        mvu = mvu_module.MatrixVectorUnit(n_in, n_out, simd, pe, k, **options)
        inside = Internals(mvu)
        m.submodules.mvu = inside.fragment
        m.d.comb += [mvu.i.valid.eq(free(1)), mvu.i.payload.eq(free(len(mvu.i.payload))),
                     mvu.o.ready.eq(free(1)),
                     mvu.wr.sel.eq(free(len(mvu.wr.sel))), mvu.wr.addr.eq(free(len(mvu.wr.addr))),
                     mvu.wr.data.eq(free(len(mvu.wr.data))), mvu.wr.en.eq(free(1))]
        stream_rule(self, m, mvu.o, "mvu.o (output beats)")
        if self.lemmas:
            fifo = inside.sub("fifo")
            produce, consume = fifo.signal("produce"), fifo.signal("consume")
            level, depth = fifo.component.level, fifo.component.depth
            self.lemma(m, (produce < depth) & (consume < depth)
                       & ((produce != consume) | (level == 0) | (level == depth))
                       & ((produce <= consume) | (level == produce - consume))
                       & ((produce >= consume) | (level == depth + produce - consume)),
                       "the output FIFO's pointers are level entries apart")


@pytest.mark.parametrize("name", SHAPES)
def test_mvu_output_keeps_valid_and_payload_until_ready(tmp_path, name):
    result = run_proof(MvuOutputFollowsStreamRules(SHAPES[name]), tmp_path, depth=DEPTH)
    print(result.explain())
    assert result.status == "PASS", result.explain()


class PopsWithoutReader(MatrixVectorUnit):
    """Broken on purpose: pops its output FIFO whether or not the reader takes the beat."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += m.submodules.fifo.r_en.eq(1)
        return m


def test_mvu_stream_proof_catches_an_output_popped_under_backpressure(tmp_path, monkeypatch):
    # The first beat comes out SF + the pipeline latency cycles after an image's first beat.
    monkeypatch.setattr(mvu_module, "MatrixVectorUnit", PopsWithoutReader)
    shape = SHAPES["threshold-parallel"]
    harness = MvuOutputFollowsStreamRules(shape, lemmas=False)
    result = run_proof(harness, tmp_path, mode="bmc", depth=BROKEN_DEPTH)
    print(result.explain())
    assert result.status == "FAIL", result.explain()
    assert any(msg.startswith("mvu.o (output beats)") for msg in result.failed), result.explain()


#: (lane_bits, in_lanes, out_lanes, image_lanes): gathering, splitting (each with a partial
#: last beat) and equal widths.
CONVERTERS = {"gather": (1, 2, 8, 10), "split": (2, 8, 2, 10), "equal": (1, 4, 4, 6)}


class ConverterOutputFollowsStreamRules(Harness):
    title = "the width converter's output keeps valid and payload until ready"

    def __init__(self, params):
        super().__init__()
        self.params = params

    def build(self, m):
        conv = convert_module.WidthConverter(*self.params)
        m.submodules.conv = conv
        m.d.comb += [conv.i.valid.eq(free(1)), conv.i.payload.eq(free(len(conv.i.payload))),
                     conv.o.ready.eq(free(1))]
        # Its source follows the rules (the one assumption the rules allow): a splitting
        # converter passes the input beat's lanes through combinationally.
        assume_stream_rule(self, m, conv.i, "conv.i")
        stream_rule(self, m, conv.o, "converter.o (output beats)")


@pytest.mark.parametrize("name", CONVERTERS)
def test_width_converter_output_keeps_valid_and_payload_until_ready(tmp_path, name):
    result = run_proof(ConverterOutputFollowsStreamRules(CONVERTERS[name]), tmp_path,
                       depth=DEPTH)
    print(result.explain())
    assert result.status == "PASS", result.explain()


class TakesInputWhileStalled(convert_module.WidthConverter):
    """Broken on purpose: accepts the next input beat while its output is held back."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.o.valid & ~self.o.ready):
            m.d.comb += self.i.ready.eq(1)
        return m


@pytest.mark.parametrize("name", ["gather", "split"])
def test_converter_stream_proof_catches_input_taken_under_backpressure(tmp_path, monkeypatch,
                                                                         name):
    monkeypatch.setattr(convert_module, "WidthConverter", TakesInputWhileStalled)
    result = run_proof(ConverterOutputFollowsStreamRules(CONVERTERS[name]), tmp_path,
                       mode="bmc", depth=BROKEN_DEPTH)
    print(result.explain())
    assert result.status == "FAIL", result.explain()
    assert any(msg.startswith("converter.o (output beats)") for msg in result.failed), \
        result.explain()
