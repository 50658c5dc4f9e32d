"""Partial-sum matrix-vector unit: a dense layer that computes each input beat as it arrives.

The :class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit` loops *output-first*: for each neuron
fold ``nf`` it reads the whole image (``sf = 0..SF−1``) from its ping-pong buffer, so it
starts an image only once the image is all in, and its first result leaves a whole
``SF·NF`` interval after the last input. Chained, one image's latency is the sum of the
engines' intervals (the iCEBreaker digits MLP: 256 + 256 + 160 cycles).

This engine loops *input-first* (a pass per input beat): pass ``sf`` takes input beat ``sf``
as it arrives and, for ``nf = 0..NF−1``, one fold per cycle, adds that beat's count to
channel group ``nf``'s partial sum, kept in a memory; the last pass (``sf = SF−1``) turns the
sums into results, one output beat per cycle. Fed by an output-first engine, which leaves one
beat every ``SF`` of its cycles, it computes while that engine does: its image ends ``NF``
cycles (plus the pipeline) after its last input instead of ``SF·NF`` (docs/dataflow.md,
"Overlapped engines"). The arithmetic is the output-first engine's, the memories' layout and
the write port are the same (the packer's :mod:`xnorflow.hw.dataflow.shape`), so the same
``.xnf`` loads both.

Block diagram::

    i ──► chunk register (beat sf, padding cleared) ─────┐ held for the pass's NF folds
                                                          ▼
    weights_p[nf·SF + sf] ──► PE p: U_t = Σ_b 2^b·popcount(XNOR(x_b, w)) ──┐
                                                                           ▼
    partial sums[nf] (one memory, P lanes) ──► d = (sf = 0 ? T*_p : d) − U_t ──► back, or
                                               in the last pass: (d ≤ 0) XOR inv ──► FIFO ──► o

Arithmetic (threshold): ``d`` starts from ``T*`` (the output-first engine's compare value, read
in pass 0 from a second region of the partial-sum memory, where the host writes the channel
words) and counts down, so the last pass's compare is one sign: ``U ≥ T*`` ⇔ ``T* − U ≤ 0`` ⇔
``T* − U − 1 < 0``, the top bit of ``d + ~U_t``. Raw output (binary input only): the sum is the
result, ``2·U − (2·S·SF − N)``, from ``−(2·S·SF − N)`` up by ``2·U_t`` a pass (no subtraction
at the end). With ``NF = 1`` the partial sums are one register per PE (and a threshold engine's
channel words a register per PE too), and with ``hold_output`` those registers are the output
beat: no FIFO, but a first pass, which restarts them, waits for the beat to leave (up to
:func:`~xnorflow.hw.dataflow.timing.psum_latency` + 1 cycles an image; the pipeline holds only
where its interval has that slack: :meth:`DataflowConfig.holds_output`).

Parameters
----------
n_in, n_out, simd, pe, input_bits, input_kind, output, acc_width
    The layer and its folding (:class:`~xnorflow.hw.dataflow.shape.MvuShape`). Raw output needs
    binary input (a raw unsigned layer would need its channel constant and the partial sum in
    the same cycle: use the output-first engine).
levels_per_stage : int
    Adder levels between two pipeline registers in the popcount and plane trees.
fifo_depth : int or None
    Output FIFO beats; default :func:`~xnorflow.hw.dataflow.timing.psum_fifo_depth`, the
    least with which a ready ``o`` never delays a fold.
hold_output : bool
    ``NF = 1`` only: the sums' registers are the output beat (above); no FIFO.
ram_styles : dict or None
    Yosys ``ram_style`` per memory: ``"weights"`` (``"huge"``: iCE40 SPRAM, as the
    output-first engine's) and ``"psums"``.

No ``ram_reg`` (the ECP5 builds' register stages; the ECP5 targets are met output-first), no
MMV, no serial output stage (the last pass makes a beat per cycle, too fast for one compare),
no pool flags: the fold text and :class:`~xnorflow.hw.dataflow.config.DataflowConfig` refuse
them.

Ports
-----
i : In(stream.Signature(k·S))
    Input beats, ``SF`` per image, as the output-first engine's. ``ready`` is high when a pass
    can start (the previous one has issued its last fold; for a last pass, and with
    ``hold_output`` a first pass, with an output credit); it depends on no input.
o : Out(stream.Signature(P or P·acc_width))
    Output beats, ``NF`` per image, as the output-first engine's; ``valid`` from the FIFO (or
    the held beat's flag).
wr : In(WriteSignature(shape))
    Run-time loading, the output-first engine's layout (select ``p``: PE ``p``'s weights,
    ``P + p``: its channel words). Only while no image is in flight.
busy : Out(1)
    A fold read a weight word this cycle: ``SF·NF`` cycles per image.

Timing (:mod:`xnorflow.hw.dataflow.timing`: :func:`psum_latency`, :class:`PsumMvuModel`)
-----------------------------------------------------------------------------------------
* initiation interval ``SF·NF`` cycles per image (one fold per cycle; a pass starts the cycle
  its beat is taken, right after the previous pass's last fold); with ``hold_output`` an
  image's first pass also waits for the previous image's beat to leave;
* a fold's beat is valid :func:`~xnorflow.hw.dataflow.timing.psum_latency` cycles after the
  fold issues (``A + 1``: ``A`` = 1 + datapath stages to the count, then the partial sum and
  result, written into the FIFO, whose entry is the register); the first beat of an image
  that many cycles after its last input beat is taken, the others one per cycle.
"""
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib.fifo import SyncFIFO

from xnorflow.hw.core.pipeline import delay

from . import timing
from .counters import counter, wrapped_next
from .mvu import MatrixVectorUnit, _memory, fold_count
from ..registered_read import registered_read

__all__ = ["PartialSumMVU"]


class PartialSumMVU(MatrixVectorUnit):
    """An input-first dense engine with its partial sums in a memory (module docstring)."""

    #: ``ram_styles`` kinds the base class checks (``"psums"`` is taken out before it does)
    RAM_KINDS = ("weights",)

    def __init__(self, n_in, n_out, simd, pe, input_bits=1, output="threshold", acc_width=None,
                 *, input_kind=None, levels_per_stage=1, fifo_depth=None, ram_styles=None,
                 hold_output=False):
        kind = input_kind or ("binary" if input_bits == 1 else "unsigned")
        if output == "raw" and kind != "binary":
            raise ValueError("PartialSumMVU: raw output needs binary input (a raw unsigned "
                             "layer needs its channel constant beside the sum: use the "
                             "output-first engine)")
        if hold_output and -(-n_out // pe) != 1:
            raise ValueError("PartialSumMVU: hold_output keeps the output beat in the sums' "
                             "registers, which needs one neuron fold (pe ≥ n_out)")
        self.holds_output = bool(hold_output)
        styles = dict(ram_styles or {})
        self.psum_style = styles.pop("psums", None)
        depth = (timing.psum_fifo_depth(n_in, n_out, simd, pe, input_bits, levels_per_stage,
                                        hold_output)
                 if hold_output or fifo_depth is None else fifo_depth)
        super().__init__(n_in, n_out, simd, pe, input_bits, output, acc_width,
                         input_kind=input_kind, ram_reg=False, levels_per_stage=levels_per_stage,
                         fifo_depth=depth, ram_styles=styles)

    # -- cycle model of this instance ------------------------------------------------------

    @property
    def buffer_write_lag(self):
        return 0

    @property
    def latency(self):
        """Cycles from a fold's issue to its beat valid (from accepting an image's last input
        beat to its first output beat, when idle and ``o`` ready)."""
        s = self.shape
        return timing.psum_latency(s.simd, s.input_bits, self.levels_per_stage)

    # -- gateware ---------------------------------------------------------------------------

    def _sum_width(self):
        """Bits of one PE's partial sum, signed: ``T* − U`` (threshold) or the running result
        ``2·U − (2·S·SF − N)`` (raw), which lies in ``[−(2·S·SF − N), N]``."""
        s = self.shape
        if s.output == "threshold":
            return s.threshold_width + 1
        return max(s.binary_offset, s.n_in).bit_length() + 1

    def elaborate(self, platform):
        m = Module()
        s = self.shape
        S, k, SF, NF, P = s.simd, s.input_bits, s.synapse_folds, s.neuron_folds, s.pe
        self._new_shared_registers()
        depth = self.fifo_depth

        # ---- reader: a pass per input beat, a fold per cycle -----------------------------
        sf, nf = counter(SF, "sf"), counter(NF, "nf")
        w_addr = counter(NF * SF, "w_addr")          # nf·SF + sf
        in_pass = Signal()                          # folds 1..NF−1 of a pass still to issue
        inflight = Signal(range(depth + 1))         # last-pass folds whose beat is not out yet
        release = Signal()
        last_pass = sf == SF - 1
        credit = inflight < depth
        # a pass starts when its beat is taken; a last pass's folds each need an output entry
        # (held output: a first pass too, since it restarts the registers the beat is in)
        needs_credit = (last_pass | (sf == 0)) if self.holds_output else last_pass
        ready = ~in_pass & (~needs_credit | credit)
        accept = self.i.valid & ready
        go = Signal()
        m.d.comb += [self.i.ready.eq(ready),
                     go.eq(Mux(in_pass, ~last_pass | credit, accept))]
        fold_last = nf == NF - 1
        next_sf = wrapped_next(sf, SF)
        with m.If(go):
            m.d.sync += [nf.eq(wrapped_next(nf, NF)), in_pass.eq(~fold_last),
                         w_addr.eq(Mux(fold_last, next_sf, w_addr + SF))]
            with m.If(fold_last):
                m.d.sync += sf.eq(next_sf)
        m.d.sync += inflight.eq(inflight + (go & last_pass) - release)
        m.d.comb += self.busy.eq(go)

        # The beat, its padding lanes cleared (they then agree with the zero padding weights),
        # is held from the cycle after the accept, the cycle its first fold's weights arrive.
        keep = Cat(Const(-1, k) if j < s.last_beat_elements else (~last_pass).replicate(k)
                   for j in range(S))
        chunk = Signal(S * k, name="chunk", reset_less=True)
        with m.If(accept):
            m.d.sync += chunk.eq(self.i.payload & keep)

        # ---- per PE: the fold's count U_t, A = 1 + datapath stages after the issue --------
        counts = []
        for p in range(P):
            w = self._weights(m, p, w_addr)        # registered: one cycle after the issue
            counts.append(fold_count(m, s, chunk, w, self.levels_per_stage))
        stage = timing.psum_stage(S, k, self.levels_per_stage)

        # ---- partial sums: read a cycle before the count arrives, written with it ---------
        # The sideband runs at the read stage (A − 1) from counters that follow the folds in
        # issue order; the accumulate stage (A) takes it a register later.
        valid_r = delay(m, go, stage - 1, "fold_valid")
        nf_r, sf_r = counter(NF, "psum_nf"), counter(SF, "psum_sf")
        with m.If(valid_r):
            m.d.sync += nf_r.eq(wrapped_next(nf_r, NF))
            with m.If(nf_r == NF - 1):
                m.d.sync += sf_r.eq(wrapped_next(sf_r, SF))
        valid_a, nf_a = Signal(name="acc_valid"), Signal.like(nf_r, name="acc_nf")
        first_a, last_a = Signal(name="acc_first"), Signal(name="acc_last")
        m.d.sync += [valid_a.eq(valid_r), nf_a.eq(nf_r), first_a.eq(sf_r == 0),
                     last_a.eq(sf_r == SF - 1)]
        sums, invs = self._partial_sums(m, nf_r, sf_r == 0, first_a)

        # ---- the new sums: stored back, or in the last pass turned into results -----------
        results, new_sums = [], []
        for p in range(P):
            # the result goes into the FIFO in the cycle its sum is made: the FIFO's entry is
            # its register (a register of its own cost a logic cell per bit on the iCE40,
            # P·acc_width of them for a raw last layer)
            if s.output == "threshold":      # d = T* − U counts down: U ≥ T* ⇔ d ≤ 0
                d = Signal(signed(self._sum_width()), name=f"sum{p}")
                m.d.comb += d.eq(sums[p].as_signed() - counts[p])
                # d ≤ 0 ⇔ d − 1 < 0: the sign of sum + ~count (= sum − count − 1), the top of
                # a carry chain of its own, where d's sign OR a zero test over its bits put
                # three logic levels between the partial sums' block RAM and the FIFO (the
                # iCEBreaker overlapped digits build's critical path at 36.75 MHz)
                not_count = ~Cat(counts[p], Const(0, 1)).as_signed()     # −count − 1
                below = Signal(signed(max(self._sum_width(), len(not_count)) + 1),
                               name=f"sum{p}_below")
                m.d.comb += below.eq(sums[p].as_signed() + not_count)
                results.append(below[-1] ^ invs[p])
            else:                            # the result itself, 2·U − offset, counts up
                d = Signal(signed(self._sum_width()), name=f"sum{p}")
                m.d.comb += d.eq(sums[p].as_signed() + (counts[p] << 1))
                results.append(d[:s.acc_width])
            new_sums.append(d)
        if self.holds_output:
            self._held_output(m, valid_a, last_a, new_sums, invs)
        else:
            self._store(m, valid_a & ~last_a, nf_a, new_sums, invs)
            self._output_buffer(m, depth, valid_a & last_a, Cat(*results))
        m.d.comb += release.eq(self.o.valid & self.o.ready)
        return m

    def _held_output(self, m, valid_a, last_a, new_sums, invs):
        """``NF = 1``, one entry (:attr:`holds_output`): every fold's sums go into the
        registers, the last pass's stay there as the output beat, valid until taken (the
        credits keep the next image's first pass off them until then). Saves the beat's own
        register: P·acc_width flip-flops for a raw layer, each a logic cell on the iCE40."""
        s = self.shape
        with m.If(valid_a):
            m.d.sync += [reg.eq(d) for reg, d in zip(self._sum_regs, new_sums)]
        valid = self._beat_valid(m, valid_a & last_a)
        if s.output == "threshold":
            beat = Cat((reg.as_signed() <= 0) ^ inv for reg, inv in zip(self._sum_regs, invs))
        else:
            beat = Cat(reg[:s.acc_width] for reg in self._sum_regs)
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.eq(beat)]

    def _output_buffer(self, m, depth, w_en, w_data):
        """The output FIFO of ``depth`` beats onto ``o``. The credits keep it from
        overflowing, so one entry is a register and its valid flag (a one-word FIFO memory
        has a zero-width address, an illegal ``[-1:0]`` range in the Verilog)."""
        if depth > 1:
            m.submodules.fifo = fifo = SyncFIFO(width=len(w_data), depth=depth)
            m.d.comb += [fifo.w_en.eq(w_en), fifo.w_data.eq(w_data),
                         self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                         fifo.r_en.eq(self.o.ready)]
            return
        beat = Signal(len(w_data), name="out_beat", reset_less=True)
        with m.If(w_en):
            m.d.sync += beat.eq(w_data)
        m.d.comb += [self.o.valid.eq(self._beat_valid(m, w_en)), self.o.payload.eq(beat)]

    def _beat_valid(self, m, load):
        """A one-beat buffer's valid flag: set when a beat is loaded, cleared when ``o``
        takes it (the credits keep a load off a beat not yet taken)."""
        valid = Signal(name="out_valid")
        with m.If(load):
            m.d.sync += valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += valid.eq(0)
        return valid

    def _weights(self, m, p, w_addr):
        """PE ``p``'s weight word, a cycle after ``w_addr``. All PEs read the same address, so
        their weights are one memory of P lanes (each written alone, with the write's select
        ``p``): on the iCE40 a block RAM is at most 16 bits wide, and ten 4-bit memories were
        ten of them where one 40-bit memory is three. SPRAM weights stay one memory per PE
        (:meth:`MatrixVectorUnit._weights`: the SPRAM is 16 bits wide and single-ported)."""
        s = self.shape
        if self.ram_styles.get("weights") == "huge":
            return super()._weights(m, p, w_addr)
        if p == 0:
            m.submodules.weights = mem = self._memory("weights", s.pe * s.simd, s.weight_depth)
            wr, rd = mem.write_port(granularity=s.simd), mem.read_port(domain="comb")
            lanes = Cat(self._selected(s.weight_select(q)) for q in range(s.pe))
            m.d.comb += [wr.addr.eq(self.wr.addr), wr.en.eq(lanes),
                         wr.data.eq(self.wr.data[:s.simd].replicate(s.pe)), rd.addr.eq(w_addr)]
            self._weight_word = registered_read(m, rd.data, "w_ram")
        return self._weight_word[p * s.simd:(p + 1) * s.simd]

    def _lane(self):
        """Bits of one PE's lane of the partial-sum memory: the sum, then (threshold) its
        channel's inv, which comes with ``T*`` in pass 0 and travels with the sum."""
        return self._sum_width() + int(self.shape.output == "threshold")

    def _partial_sums(self, m, nf_r, first_r, first_a):
        """Each PE's sum before this fold's count, at the accumulate stage (``T*`` in a
        threshold engine's first pass, 0 in a raw one's), and its channel's ``inv``
        (threshold; else None). ``NF = 1``: registers (:meth:`_register_sums`)."""
        s = self.shape
        P, NF, W, lane = s.pe, s.neuron_folds, self._sum_width(), self._lane()
        threshold = s.output == "threshold"
        if NF == 1:
            return self._register_sums(m, first_a)
        # one memory of P lanes: words 0..NF−1 the sums, NF..2·NF−1 (threshold) the channel
        # words; a word is read at stage A − 1, the cycle before its fold's count arrives
        m.submodules.psums = self._psum_mem = _memory(P * lane, 2 * NF if threshold else NF,
                                                      self.psum_style)
        rd = self._psum_mem.read_port(domain="comb")
        m.d.comb += rd.addr.eq(Mux(first_r, NF + nf_r, nf_r) if threshold else nf_r)
        word = registered_read(m, rd.data, "psum")
        sums = [word[p * lane:p * lane + W] for p in range(P)]
        if threshold:
            return sums, [word[p * lane + W] for p in range(P)]
        return [Mux(first_a, -s.binary_offset, v.as_signed()) for v in sums], [None] * P

    def _register_sums(self, m, first_a):
        """``NF = 1``: a register per PE for its sum and, threshold, one for its channel word
        (written by the host, select ``P + p``, as the memory's second region would be)."""
        s = self.shape
        self._sum_regs, sums, invs = [], [], []
        for p in range(s.pe):
            reg = Signal(signed(self._sum_width()), name=f"psum{p}", reset_less=True)
            self._sum_regs.append(reg)
            if s.output == "threshold":
                word = Signal(s.channel_word_width, name=f"channel{p}", reset_less=True)
                with m.If(self._selected(s.channel_select(p))):
                    m.d.sync += word.eq(self.wr.data)
                sums.append(Mux(first_a, word[:s.threshold_width], reg))
                invs.append(word[s.threshold_width])
            else:
                sums.append(Mux(first_a, -s.binary_offset, reg.as_signed()))
                invs.append(None)
        return sums, invs

    def _store(self, m, store, nf_a, new_sums, invs):
        """Write each fold's new sums back (``store``: not in the last pass) at ``nf_a``; the
        host's channel words go to the memory's second region (the write port is the
        engine's only while it computes, the host's only while it is idle)."""
        s = self.shape
        P, NF, W, lane = s.pe, s.neuron_folds, self._sum_width(), self._lane()
        if NF == 1:
            with m.If(store):
                m.d.sync += [reg.eq(d) for reg, d in zip(self._sum_regs, new_sums)]
            return
        wr = self._psum_mem.write_port(granularity=lane)
        if s.output != "threshold":
            m.d.comb += [wr.addr.eq(nf_a), wr.data.eq(Cat(*new_sums)),
                         wr.en.eq(store.replicate(P))]
            return
        host = self.wr.en & (self.wr.sel >= P)
        tw = s.threshold_width
        host_word = Cat(self.wr.data[:tw], Const(0, W - tw), self.wr.data[tw])
        sums = Cat(*(Cat(d, inv) for d, inv in zip(new_sums, invs)))
        m.d.comb += [wr.addr.eq(Mux(host, NF + self.wr.addr, nf_a)),
                     wr.data.eq(Mux(host, host_word.replicate(P), sums)),
                     wr.en.eq(Mux(host, Cat(self.wr.sel == P + p for p in range(P)),
                                  store.replicate(P)))]
