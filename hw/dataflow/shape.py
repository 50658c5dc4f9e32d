"""Shape of one matrix-vector unit (MVU) and where its weights, inputs and outputs sit.

Plain Python (no Amaranth): the gateware (:mod:`xnorflow.hw.dataflow.mvu`), its cycle model
(:mod:`xnorflow.hw.dataflow.timing`) and the software packer (``sw/layers/dataflow_pack.py``) all derive
every width, depth and address from one :class:`MvuShape`, so they cannot disagree.

Folding (FINN's terms)
----------------------
A dense layer ``N → M`` runs on ``P`` processing elements (output channels in parallel), each
consuming ``S`` synapses (weight bits) per cycle. ``SF = ⌈N/S⌉`` synapse folds make one output
channel, ``NF = ⌈M/P⌉`` neuron folds make the whole output vector:

* channel ``c = nf·P + p`` is computed by PE ``p`` in neuron fold ``nf``;
* input element ``i = sf·S + j`` is lane ``j`` of synapse fold ``sf``.

Elements ``i ≥ N`` and channels ``c ≥ M`` are padding (docs/contracts.md, contract 2: they
never count).

The arithmetic the hardware does (why the channel memory holds T* and not T)
---------------------------------------------------------------------------
Every PE counts agreements ``XNOR(x_b, w)`` over all ``S·SF`` stored bits of every bit-plane
``b`` and weighs plane ``b`` by ``2^b``: ``U = Σ_b 2^b·popcount(XNOR(x_b, w))``, an unsigned
integer in ``[0, U_max]``, ``U_max = (2^k − 1)·S·SF``. Input padding is forced to 0 by the
engine and weight padding is stored as 0, so padding bits always agree and add a known amount.
The layer's integer dot product (sw/layers/dense.py, contracts 2-3) is then

* ``binary`` input (±1 bits, k = 1): ``acc = 2·U − (2·S·SF − N)``;
* ``unsigned`` k-bit input: ``acc = U − (2^k − 1)·z_c`` with ``z_c`` the zero bits of channel
  ``c``'s stored weight row (padding included). Because
  ``2·popcount(x_b AND w) − popcount(x_b) = popcount(XNOR(x_b, w)) − z_c`` per plane, binary and
  unsigned layers share one datapath: XNOR, popcount, shift by plane, accumulate.

A threshold channel (``acc ≥ T`` for d = +1, ``acc ≤ T`` for d = −1) therefore becomes one
unsigned compare ``bit = (U ≥ T*) XOR inv``; :meth:`MvuShape.channel_threshold` gives
``(T*, inv)``, clamped to ``[0, U_max + 1]`` (exact for every reachable U, so saturated channels
stay saturated). A raw channel outputs ``acc`` itself: ``2·U − (2·S·SF − N)`` (binary, a
constant) or ``U − C_c`` with ``C_c = (2^k − 1)·z_c`` from the channel memory (unsigned).

Memory layout (what the write port addresses)
---------------------------------------------
* **Weights**: one memory per PE, ``S`` bits wide, ``NF·SF`` words deep. Memory select
  ``p`` (:meth:`weight_select`), word ``nf·SF + sf``, bit ``j`` holds the weight bit (1 = +1)
  of channel ``nf·P + p`` for input ``sf·S + j``; 0 for padding (:meth:`weight_location`).
* **Channel constants**: one memory per PE, ``NF`` words deep (none for raw binary layers).
  Memory select ``P + p`` (:meth:`channel_select`), word ``nf``: channel ``nf·P + p``'s
  ``T* | inv << threshold_width`` (threshold layers) or ``C_c`` (raw unsigned layers).
  Channels past ``M``: ``T* = U_max + 1, inv = 0`` (their bit is always 0).

Stream formats
--------------
* **Input** ``i``: ``SF`` beats per image, beat ``sf`` carrying elements ``sf·S .. sf·S+S−1``,
  element ``j`` of the beat in bits ``[k·j, k·j + k)`` (LSB first; k = 1 for binary layers,
  bit 1 = +1). Padding elements of the last beat are ignored (forced to 0 inside).
* **Output** ``o``: ``NF`` beats per image, beat ``nf`` carrying channels ``nf·P .. nf·P+P−1``:
  channel ``nf·P + p`` in bit ``p`` (threshold) or in bits ``[p·W, p·W + W)`` as a two's
  complement integer of ``W = acc_width`` bits (raw). Padding channels: bit 0 (threshold,
  when packed by the packer), unspecified (raw). With ``flags`` (threshold), bit ``P + p``
  carries the channel's ``inv`` (1: direction −1; 0 for padding channels).

A threshold engine's output (P bits per beat) feeds the next engine's input (S bits per beat)
through :class:`xnorflow.hw.dataflow.convert.WidthConverter` (one of P, S must divide the other).

MMV (the engine's ``mmv``: m images per weight read) is not part of the shape: it changes
none of the above (the memories, their layout and the per-image streams are the same for
every m), only the engine's internal buffers and its cycle model (:mod:`xnorflow.hw.dataflow.timing`),
so the packer's shape and the engine's are one and the same.
"""
from dataclasses import dataclass

__all__ = ["MvuShape", "INPUT_KINDS", "OUTPUT_KINDS"]

INPUT_KINDS = ("binary", "unsigned")
OUTPUT_KINDS = ("threshold", "raw")


def _ceil_div(a, b):
    return -(-a // b)


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"MVU {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class MvuShape:
    """One engine's layer and folding; every width, depth and address derives from it.

    Parameters
    ----------
    n_in, n_out : N input elements, M output channels.
    simd : S, synapses (weight bits) per PE per cycle; a k-bit layer also reads k·S input bits.
    pe : P, output channels computed in parallel.
    input_bits : k, bits per input element (1..8).
    input_kind : ``"binary"`` (±1 bits, k = 1) or ``"unsigned"`` (k-bit integers); default
        ``"binary"`` for k = 1, ``"unsigned"`` otherwise. (A 1-bit *unsigned* first layer,
        e.g. binarised pixels of 0/1, differs from a binary one only in its constants.)
    output : ``"threshold"`` (one bit per channel) or ``"raw"`` (the signed integer).
    acc_width : W, bits of a raw output integer (two's complement); default (None) the
        narrowest that holds the layer's range ``±N·(2^k − 1)``. Threshold layers do not use
        it (their accumulator is sized from the shape: :attr:`u_width`).
    flags : threshold output only: each beat also carries every channel's ``inv`` (1 for
        direction −1), which a 2×2 max-pool behind a conv engine needs (OR for +1, AND for
        −1; the directions are run-time data in the channel memory, so they travel with the
        bits rather than live in the pool).
    """

    n_in: int
    n_out: int
    simd: int
    pe: int
    input_bits: int = 1
    input_kind: str | None = None
    output: str = "threshold"
    acc_width: int | None = None
    flags: bool = False

    def __post_init__(self):
        for name in ("n_in", "n_out", "simd", "pe", "input_bits"):
            _positive_int(name, getattr(self, name))
        if self.input_bits > 8:
            raise ValueError(f"MVU input_bits must be 1..8, got {self.input_bits}")
        kind = self.input_kind or ("binary" if self.input_bits == 1 else "unsigned")
        if kind not in INPUT_KINDS:
            raise ValueError(f"MVU input_kind must be one of {INPUT_KINDS}, got {kind!r}")
        if kind == "binary" and self.input_bits != 1:
            raise ValueError(f"a binary (±1) MVU input has 1 bit, got input_bits={self.input_bits}")
        object.__setattr__(self, "input_kind", kind)
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"MVU output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.simd > self.n_in:
            raise ValueError(f"MVU simd {self.simd} exceeds n_in {self.n_in}: every cycle "
                             f"would carry only padding in {self.simd - self.n_in} lanes")
        if self.pe > self.n_out:
            raise ValueError(f"MVU pe {self.pe} exceeds n_out {self.n_out}: "
                             f"{self.pe - self.n_out} PEs would compute only padding channels")
        if self.flags and self.output != "threshold":
            raise ValueError("MVU flags (each channel's direction beside its bit) need "
                             "threshold output")
        need = self.min_acc_width
        if self.acc_width is None:
            object.__setattr__(self, "acc_width", need)
        else:
            _positive_int("acc_width", self.acc_width)
            if self.acc_width < need:
                raise ValueError(f"MVU acc_width {self.acc_width} cannot hold the layer's range "
                                 f"±{self.acc_top} (needs {need} bits)")

    # -- folds --------------------------------------------------------------------------------

    @property
    def synapse_folds(self):
        """SF = ⌈N/S⌉: input beats per image, cycles per output channel."""
        return _ceil_div(self.n_in, self.simd)

    @property
    def neuron_folds(self):
        """NF = ⌈M/P⌉: output beats per image."""
        return _ceil_div(self.n_out, self.pe)

    @property
    def padding_inputs(self):
        """Padding elements in the last input beat (S·SF − N)."""
        return self.simd * self.synapse_folds - self.n_in

    @property
    def last_beat_elements(self):
        """Real elements in the last input beat."""
        return self.n_in - (self.synapse_folds - 1) * self.simd

    # -- arithmetic widths ---------------------------------------------------------------------

    @property
    def acc_top(self):
        """The layer's range bound: |acc| ≤ N·(2^k − 1)."""
        return self.n_in * ((1 << self.input_bits) - 1)

    @property
    def min_acc_width(self):
        """Bits of the narrowest signed integer holding ±acc_top."""
        return self.acc_top.bit_length() + 1

    @property
    def u_max(self):
        """Largest agreement count U = (2^k − 1)·S·SF (padding included)."""
        return ((1 << self.input_bits) - 1) * self.simd * self.synapse_folds

    @property
    def u_width(self):
        """Bits of the unsigned accumulator (holds U_max)."""
        return self.u_max.bit_length()

    @property
    def threshold_width(self):
        """Bits of T* (holds U_max + 1); the inversion bit sits above them."""
        return (self.u_max + 1).bit_length()

    @property
    def binary_offset(self):
        """``2·S·SF − N``: a binary layer's ``acc = 2·U − binary_offset``."""
        return 2 * self.simd * self.synapse_folds - self.n_in

    # -- memories ------------------------------------------------------------------------------

    @property
    def weight_depth(self):
        """Words per PE weight memory: NF·SF."""
        return self.neuron_folds * self.synapse_folds

    @property
    def has_channel_memory(self):
        """Threshold layers and raw unsigned layers keep a per-channel constant; raw binary
        layers subtract one constant for all channels."""
        return self.output == "threshold" or self.input_kind == "unsigned"

    @property
    def channel_word_width(self):
        """Bits of a channel-memory word (0 when there is no channel memory)."""
        if self.output == "threshold":
            return self.threshold_width + 1
        return self.u_width if self.input_kind == "unsigned" else 0

    @property
    def write_addr_width(self):
        """Bits of the write port's ``addr`` (enough for the deepest memory)."""
        return max(1, (self.weight_depth - 1).bit_length())

    @property
    def write_data_width(self):
        """Bits of the write port's ``data`` (the widest memory word)."""
        return max(self.simd, self.channel_word_width)

    @property
    def selects(self):
        """Number of memory selects: P weight memories, then P channel memories (if any)."""
        return 2 * self.pe if self.has_channel_memory else self.pe

    def weight_select(self, p):
        """Write-port select of PE ``p``'s weight memory."""
        return p

    def channel_select(self, p):
        """Write-port select of PE ``p``'s channel memory."""
        if not self.has_channel_memory:
            raise ValueError("a raw binary MVU has no channel memory")
        return self.pe + p

    def weight_location(self, channel, index):
        """(select, word address, bit) of the weight of ``channel`` for input ``index``."""
        nf, p = divmod(channel, self.pe)
        sf, j = divmod(index, self.simd)
        return self.weight_select(p), nf * self.synapse_folds + sf, j

    def channel_location(self, channel):
        """(select, word address) of ``channel``'s constant in the channel memories."""
        nf, p = divmod(channel, self.pe)
        return self.channel_select(p), nf

    # -- streams -------------------------------------------------------------------------------

    @property
    def in_beat_bits(self):
        """Bits of an input beat: S elements of k bits."""
        return self.simd * self.input_bits

    @property
    def out_beat_bits(self):
        """Bits of an output beat: P bits (threshold; 2·P with :attr:`flags`) or P integers of
        acc_width bits (raw)."""
        if self.output == "threshold":
            return 2 * self.pe if self.flags else self.pe
        return self.pe * self.acc_width

    # -- the constants the hardware compares or subtracts --------------------------------------

    def channel_threshold(self, threshold, direction, zeros):
        """(T*, inv) of a channel with threshold ``T``, direction ``d`` (±1) and ``zeros``
        zero bits in its stored weight row (padding included; unused for binary inputs):
        ``(U ≥ T*) XOR inv`` equals ``acc ≥ T`` (d = +1) or ``acc ≤ T`` (d = −1) for every
        reachable U."""
        t = int(threshold)
        if self.input_kind == "binary":
            # acc = 2U − c0: acc ≥ T ⟺ U ≥ ⌈(T + c0)/2⌉; acc ≤ T ⟺ U ≤ ⌊(T + c0)/2⌋.
            c0 = self.binary_offset
            up, down = -(-(t + c0) // 2), (t + c0) // 2
        else:
            # acc = U − (2^k − 1)·z: acc ≥ T ⟺ U ≥ T + (2^k − 1)·z, ≤ likewise.
            up = down = t + ((1 << self.input_bits) - 1) * int(zeros)
        if int(direction) > 0:
            t_star, inv = up, 0
        else:
            t_star, inv = down + 1, 1   # U ≤ D ⟺ NOT (U ≥ D + 1)
        return min(max(t_star, 0), self.u_max + 1), inv

    def channel_offset(self, zeros):
        """C_c of a raw unsigned channel with ``zeros`` stored zero bits: acc = U − C_c."""
        return ((1 << self.input_bits) - 1) * int(zeros)
