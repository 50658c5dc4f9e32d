"""Elaboration parameters of a dataflow build: one folded engine per layer (plain Python).

A dataflow bitstream is made for one network *shape*: the layers' sizes, input and output
kinds and each engine's folding. The weights and thresholds are not part of it: the host
writes them at run time (new weights of the same shape need no new bitstream).

Compact text form (the IDENT block carries it, so the driver recovers the build)::

    df:64u4>256:16x32,256>256:32x16m2,256>10r:32x2;in_images=16

one ``N[u k]>M[r]:SxP[m M][i][s|l]`` item per engine (``u k``: unsigned k-bit input, else
binary ±1; ``r``: raw integer output, else threshold bits; ``S`` synapses per cycle, ``P``
channels in parallel; ``m M``: M images per weight read (MMV; a conv engine's M pixels);
``i``: input-first, a pass per input beat with partial sums in a memory
(:class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU`); ``s``/``l``: weights in SPRAM/LUT
RAM),
then ``;key=value`` build options (:class:`DataflowConfig`'s fields).
"""
import math
import re
from dataclasses import dataclass, replace

from .shape import MvuShape
from . import timing

__all__ = ["EngineFold", "DataflowConfig", "input_lanes", "gate_cycles"]

#: The folding part of an engine's text: S x P, MMV, loop order, weight memory.
_FOLD_TEXT = re.compile(r"(?P<simd>\d+)x(?P<pe>\d+)(?:m(?P<mmv>\d+))?(?P<order>i?)(?P<ram>[sl]?)")

#: Loop orders of a dense engine: output-first (MatrixVectorUnit: a fold per channel group over
#: the whole stored image) or input-first (PartialSumMVU: a pass per input beat as it arrives).
ORDERS = ("output", "input")

#: Taps of a 3×3 convolution window (docs/conv.md).
KERNEL_TAPS = 9

#: Input-FIFO word widths (bits) a config may ask for (the host writes a word byte by byte).
IN_WORDS = (8, 16, 32, 64, 128, 256, 512, 1024)

#: Most input beats a converter between two engines of an ECP5 (``ram_reg``) build gathers
#: into one register (:attr:`DataflowConfig.gather_slots`).
GATHER_SLOTS = 8

#: Weight memory kinds: (text suffix, Yosys ram_style).
_WEIGHT_RAMS = {"block": ("", None), "spram": ("s", "huge"), "lutram": ("l", "distributed")}


@dataclass(frozen=True)
class EngineFold:
    """One dense layer's engine: its shape and folding (:class:`~xnorflow.hw.dataflow.shape.MvuShape`).

    ``acc_width``: bits of a raw output integer (None: the narrowest that holds the layer).
    ``mmv``: images per weight read (FINN's MMV, :class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit`):
    a power of two, at most ``NF = ⌈n_out/pe⌉`` and ``SF = ⌈n_in/simd⌉``; the engine computes
    groups of ``mmv`` images in ``SF·NF`` cycles, so its cycles per image are ``SF·NF/mmv``
    with the weight-memory bandwidth of ``SF·NF`` (block RAM ports, not LUTs, bind a fast
    ECP5 build). Powers of two because a run must be whole groups and the core checks COUNT
    with a mask (docs/dataflow.md, "MMV").
    ``image``: ``(H, W, C)`` for a 3×3 convolution (stride 1, one pixel of padding, HWC
    activations: docs/conv.md): a :class:`~xnorflow.hw.dataflow.window.SlidingWindowUnit` makes
    each output pixel's window of ``n_in = 9·C`` elements (tap-major) and the matrix-vector
    unit computes its ``n_out`` channels, pixel after pixel; ``pool``: a 2×2 max-pool follows
    the threshold (:class:`~xnorflow.hw.dataflow.pool.MaxPool2x2`). Text
    ``HxWxC[uK]>M[p]:SxP[mM]``, e.g. ``28x28x1u4>64:9x8`` or ``28x28x64>64p:576x8m4``. A conv
    engine thresholds and has ``P`` dividing ``M`` (its output stream has no padding inside an
    image). A conv engine's ``mmv`` counts *pixels* per weight read, not images: the unit
    takes each output pixel's window as one of its vectors, so ``m`` consecutive windows of
    the same image share every weight word, and its reorder buffer plays their outputs out
    pixel after pixel (HWC order, as the stream wants). ``m`` divides ``H·W`` (a group never
    straddles two images, so runs need no padding images) and the engine's cycles per image
    are ``H·W/m · max(SF·NF, m·9·C/lanes)`` (the window unit makes one beat per cycle). This
    is what moves a fast conv's weights from LUT RAM to block RAM: m× fewer weight bits per
    MAC (docs/dataflow.md, "Convolution").
    ``weights``: where the weight memory lives: ``"block"`` (Yosys chooses, block RAM for
    anything large), ``"spram"`` (iCE40 UltraPlus SPRAM, ``ram_style = "huge"``: 16 bits wide
    each, S·P/16 of the four 256 kbit blocks side by side; text suffix ``s``) or ``"lutram"``
    (ECP5 distributed RAM, ``ram_style = "distributed"``: 16 bits per LUT, for weight
    bandwidth beyond the block RAMs' ports; suffix ``l``).
    ``order``: ``"output"`` (the default: :class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit`,
    which starts an image once it is all in) or ``"input"`` (suffix ``i``:
    :class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU`, which computes each input beat as
    it arrives and keeps partial sums, so it overlaps the engine before it: an image's
    latency through it is ``NF`` cycles after its last input, not ``SF·NF``). Input-first
    engines are dense, without MMV, and need binary input when their output is raw; the
    config refuses them with ``ram_reg`` (docs/dataflow.md, "Overlapped engines").
    """

    n_in: int
    n_out: int
    simd: int
    pe: int
    input_bits: int = 1
    input_kind: str = "binary"
    output: str = "threshold"
    acc_width: int | None = None
    weights: str = "block"
    mmv: int = 1
    image: tuple | None = None
    pool: bool = False
    order: str = "output"

    def __post_init__(self):
        if isinstance(self.image, list):      # from JSON
            object.__setattr__(self, "image", tuple(self.image))
        if self.image is not None:
            self._check_conv()
        elif self.pool:
            raise ValueError(f"engine {self.format()}: only a conv engine (HxWxC>…) can pool")
        s = self.shape  # validates (MvuShape raises ValueError naming the field)
        if self.weights not in _WEIGHT_RAMS:
            raise ValueError(f"engine weights must be one of {', '.join(_WEIGHT_RAMS)}, got "
                             f"{self.weights!r}")
        m = self.mmv
        if not isinstance(m, int) or isinstance(m, bool) or m < 1 or m & (m - 1):
            raise ValueError(f"engine {self.format()}: mmv must be a power of two (1, 2, 4, "
                             f"...), got {m!r}")
        if m > s.neuron_folds:
            raise ValueError(f"engine {self.format()}: mmv {m} exceeds its {s.neuron_folds} "
                             f"neuron folds ⌈{self.n_out}/{self.pe}⌉ (a group's inputs would "
                             f"not arrive in time)")
        if m > s.synapse_folds:
            raise ValueError(f"engine {self.format()}: mmv {m} exceeds its {s.synapse_folds} "
                             f"synapse folds ⌈{self.n_in}/{self.simd}⌉ (a group's outputs "
                             f"would not leave in time)")
        self._check_order()

    def _check_order(self):
        if self.order not in ORDERS:
            raise ValueError(f"engine order must be one of {', '.join(ORDERS)}, got "
                             f"{self.order!r}")
        if self.order == "output":
            return
        where = f"engine {self.format()}: an input-first engine"
        if self.is_conv:
            raise ValueError(f"{where} is dense (a conv engine's window unit feeds it whole "
                             f"windows)")
        if self.mmv != 1:
            raise ValueError(f"{where} takes one image at a time (no mmv)")
        if self.output == "raw" and self.input_kind != "binary":
            raise ValueError(f"{where} with raw output needs binary input")

    def _check_conv(self):
        image = self.image
        if (not isinstance(image, tuple) or len(image) != 3
                or not all(isinstance(v, int) and v >= 1 for v in image)):
            raise ValueError(f"a conv engine's image must be (H, W, C) positive integers, got "
                             f"{image!r}")
        h, w, c = image
        where = f"engine {self.format()}"
        if self.n_in != KERNEL_TAPS * c:
            raise ValueError(f"{where}: a 3×3 conv over {c} channels takes {KERNEL_TAPS * c} "
                             f"inputs per pixel, not {self.n_in}")
        if self.output != "threshold":
            raise ValueError(f"{where}: a conv engine thresholds (the raw last layer is dense)")
        if self.n_out % self.pe:
            raise ValueError(f"{where}: P={self.pe} must divide the {self.n_out} output "
                             f"channels (a conv's output stream has no padding inside an image)")
        if isinstance(self.mmv, int) and self.mmv >= 1 and (h * w) % self.mmv:
            raise ValueError(f"{where}: mmv {self.mmv} pixels per weight read must divide the "
                             f"{h}×{w} = {h * w} output pixels of an image (a group never "
                             f"straddles two images)")
        if self.pool and (h < 2 or w < 2):
            raise ValueError(f"{where}: a 2×2 pool needs an image of at least 2×2, got {h}×{w}")

    @property
    def is_conv(self):
        return self.image is not None

    @property
    def in_features(self):
        """Elements of one image into the engine: ``H·W·C`` (conv) or ``n_in``."""
        if self.is_conv:
            h, w, c = self.image
            return h * w * c
        return self.n_in

    @property
    def out_image(self):
        """``(H, W, M)`` of a conv engine's output, ``(⌊H/2⌋, ⌊W/2⌋, M)`` pooled; None for dense."""
        if not self.is_conv:
            return None
        h, w, _ = self.image
        return (h // 2, w // 2, self.n_out) if self.pool else (h, w, self.n_out)

    @property
    def out_features(self):
        """Elements of one image out of the engine."""
        if self.is_conv:
            h, w, c = self.out_image
            return h * w * c
        return self.n_out

    @property
    def in_lanes(self):
        """Elements per beat into the engine: its S (dense), or its window unit's lanes
        ``gcd(C, S)`` (conv: a window beat never straddles two taps, and the converter into
        the matrix-vector unit gathers whole beats)."""
        return math.gcd(self.image[2], self.simd) if self.is_conv else self.simd

    @property
    def in_beats(self):
        """Input beats per image, ``⌈in_features/in_lanes⌉`` (``SF`` of a dense engine)."""
        return -(-self.in_features // self.in_lanes)

    @property
    def pixels(self):
        """Vectors the matrix-vector unit computes per image: ``H·W`` (conv) or 1."""
        return self.image[0] * self.image[1] if self.is_conv else 1

    @property
    def ram_style(self):
        """The Yosys ``ram_style`` of the weight memory (None: Yosys decides)."""
        return _WEIGHT_RAMS[self.weights][1]

    @property
    def shape(self):
        return MvuShape(self.n_in, self.n_out, self.simd, self.pe, self.input_bits,
                        self.input_kind, self.output, self.acc_width, flags=self.pool)

    @property
    def window_beats(self):
        """Beats the window unit makes per output pixel, ``9·C/lanes`` (conv; 0 for dense)."""
        return self.n_in // self.in_lanes if self.is_conv else 0

    @property
    def images_per_group(self):
        """Images the engine computes together: ``mmv`` for a dense engine; 1 for a conv
        engine, whose ``mmv`` groups the pixels of one image."""
        return 1 if self.is_conv else self.mmv

    @property
    def group_cycles(self):
        """Initiation interval of this engine alone: cycles per group of
        :attr:`images_per_group` images (:func:`timing.mvu_cycles`, ``SF·NF``); a conv
        engine's groups of ``mmv`` pixels each take the longer of the matrix-vector unit's
        ``SF·NF`` and the window unit's beats for them (one per cycle)."""
        mvu = timing.mvu_cycles(self.n_in, self.n_out, self.simd, self.pe, self.input_bits,
                                self.mmv)
        if self.is_conv:
            return self.pixels // self.mmv * max(mvu, self.mmv * self.window_beats)
        return mvu

    @property
    def busy_cycles(self):
        """Cycles per group in which the engine reads a weight word (its ``busy`` counter):
        ``SF·NF`` per group of vectors (for a conv engine ``H·W/mmv`` of them per image)."""
        mvu = timing.mvu_cycles(self.n_in, self.n_out, self.simd, self.pe, self.input_bits,
                                self.mmv)
        return self.pixels // self.mmv * mvu if self.is_conv else mvu

    @property
    def cycles(self):
        """Cycles per image: ``group_cycles / images_per_group`` (an int when it divides, else
        a float)."""
        group, n = self.group_cycles, self.images_per_group
        return group // n if group % n == 0 else group / n

    def format(self):
        k = f"u{self.input_bits}" if self.input_kind == "unsigned" else ""
        r = "r" if self.output == "raw" else "p" if self.pool else ""
        m = f"m{self.mmv}" if self.mmv != 1 else ""
        i = "i" if self.order == "input" else ""
        src = "x".join(map(str, self.image)) if self.is_conv else str(self.n_in)
        return (f"{src}{k}>{self.n_out}{r}:{self.simd}x{self.pe}{m}{i}"
                f"{_WEIGHT_RAMS[self.weights][0]}")

    @classmethod
    def parse(cls, text):
        try:
            layer, fold = text.split(":")
            src, dst = layer.split(">")
            raw, pool = dst.endswith("r"), dst.endswith("p")
            n_out = int(dst[:-1] if raw or pool else dst)
            if "u" in src:
                src, k = src.split("u")
                k, kind = int(k), "unsigned"
            else:
                k, kind = 1, "binary"
            image = tuple(int(v) for v in src.split("x")) if "x" in src else None
            if image is not None and len(image) != 3:
                raise ValueError(src)
            n_in = KERNEL_TAPS * image[2] if image else int(src)
            match = _FOLD_TEXT.fullmatch(fold)
            if match is None:
                raise ValueError(fold)
            simd, pe = int(match["simd"]), int(match["pe"])
            mmv = int(match["mmv"]) if match["mmv"] else 1
            weights = next(name for name, (suffix, _) in _WEIGHT_RAMS.items()
                           if suffix == match["ram"])
            order = "input" if match["order"] else "output"
        except ValueError:
            raise ValueError(f"engine {text!r}: expected N[uK]>M[r]:SxP[mM][i][s|l] (dense) or "
                             f"HxWxC[uK]>M[p]:SxP[mM][s|l] (conv), e.g. 64u4>256:16x32, "
                             f"256>256:32x8m2, 256>256:64x4i or 28x28x1u4>64p:9x8") from None
        return cls(n_in, n_out, simd, pe, k, kind, "raw" if raw else "threshold",
                   weights=weights, mmv=mmv, image=image, pool=pool, order=order)


@dataclass(frozen=True)
class DataflowConfig:
    """A dataflow build: the engines in order and the buffers around them.

    Parameters
    ----------
    engines : tuple of EngineFold
        One per layer; every layer but the last has threshold output, the last raw output;
        engine ``e``'s ``P`` and engine ``e + 1``'s ``S`` divide one another (the width
        converter between them regroups lanes).
    in_images, out_images : int
        Whole images the input and output FIFOs hold: a run takes at most ``in_images``
        images written before its start (more may follow while it runs) and leaves at most
        ``out_images`` results unread before the pipeline waits.
    ram_reg : int
        1 to register every block RAM's read data once (ECP5: its clock-to-out meets the
        first popcount level otherwise), the input FIFO's through a register slice (one
        cycle more of latency); 0 saves a logic cell per bit on iCE40.
    in_word : int
        Most bits of an input-FIFO word (a power of two, 8..1024): narrow words keep the FIFO
        in one block RAM (16 on iCE40, whose blocks are at most 16 wide), wide ones feed a
        first engine that reads many input bits per cycle, and keep a deep FIFO one block
        deep (no depth multiplexer after the block RAMs' read: ECP5 at 100 MHz).
    levels : int
        Adder levels between pipeline registers in the popcount trees (1: every level
        registered, for ECP5 at 100 MHz and more; 2 on iCE40 saves a logic cell per register
        bit and still closes above 60 MHz: hw/dataflow/mvu.py, "Measured").
    leaf_reg : int
        1 to register the popcounts' first level (the XNOR pairs' 2-bit counts, one
        flip-flop per synapse); 0 puts it in the first adder level's stage, a cycle less of
        latency per engine: on ECP5 those flip-flops sit with their LUTs, but the CNV's
        engines held 7,680 of them at 82 % of the device's flip-flops. Output-first engines
        only (:func:`~xnorflow.hw.dataflow.mvu.xnor_popcount`).
    serial : int
        1: every engine whose P ≤ SF compares its P sums one per cycle against one channel
        memory (one comparator and one block RAM instead of P of each: the UP5K's block RAMs
        run out first); 0: P comparators in parallel.
    """

    engines: tuple = ()
    in_images: int = 16
    out_images: int = 16
    ram_reg: int = 1
    in_word: int = 32
    levels: int = 1
    leaf_reg: int = 1
    serial: int = 0

    def __post_init__(self):
        engines = tuple(e if isinstance(e, EngineFold) else EngineFold(**e)
                        for e in self.engines)
        object.__setattr__(self, "engines", engines)
        if not engines:
            raise ValueError("a dataflow build needs at least one engine")
        for name in ("in_images", "out_images"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("ram_reg", "serial", "leaf_reg"):
            if getattr(self, name) not in (0, 1):
                raise ValueError(f"{name} must be 0 or 1, got {getattr(self, name)!r}")
        if not isinstance(self.levels, int) or not 1 <= self.levels <= 8:
            raise ValueError(f"levels must be an integer in 1..8, got {self.levels!r}")
        if self.in_word not in IN_WORDS:
            raise ValueError(f"in_word must be one of {', '.join(map(str, IN_WORDS))} bits, "
                             f"got {self.in_word!r}")
        for e, (a, b) in enumerate(zip(engines, engines[1:])):
            where = f"engine {e + 1} ({b.format()})"
            if a.output != "threshold":
                raise ValueError(f"engine {e} ({a.format()}): only the last engine may have raw "
                                 f"output")
            if b.input_kind != "binary":
                raise ValueError(f"{where}: only the first engine may take unsigned inputs")
            if b.in_features != a.out_features:
                raise ValueError(f"{where}: takes {b.in_features} inputs, engine {e} makes "
                                 f"{a.out_features}")
            if b.is_conv and b.image != a.out_image:
                raise ValueError(f"{where}: a conv engine takes the {a.out_image or 'vector'} "
                                 f"map engine {e} makes as an image of {b.image}")
            if a.pe % b.in_lanes and b.in_lanes % a.pe:
                raise ValueError(f"{where}: its {b.in_lanes} input lanes and engine {e}'s "
                                 f"P={a.pe} must divide one another")
            if a.mmv > 1 and a.pe > b.in_lanes:
                # an MMV engine's beats come one per cycle: a converter splitting each into
                # P/S beats would fall behind it
                raise ValueError(f"{where}: its S={b.simd} is below engine {e}'s P={a.pe}, "
                                 f"which computes {a.mmv} vectors per weight read: an MMV "
                                 f"engine's next S must be at least its P")
        if engines[-1].output != "raw":
            raise ValueError(f"the last engine ({engines[-1].format()}) must have raw output")
        for e, engine in enumerate(engines):
            if engine.order == "input" and self.ram_reg:
                raise ValueError(f"engine {e} ({engine.format()}): an input-first engine has "
                                 f"no ram_reg register stages (build with ram_reg=0)")
            if engine.order == "input" and not self.leaf_reg:
                raise ValueError(f"engine {e} ({engine.format()}): an input-first engine "
                                 f"registers its popcounts' first level (build with "
                                 f"leaf_reg=1)")
        for name in ("in_images", "out_images"):
            if getattr(self, name) % self.group:
                raise ValueError(f"{name} must be a multiple of {self.group}, the largest dense "
                                 f"mmv (a run is whole groups), got {getattr(self, name)}")

    # -- derived figures -------------------------------------------------------------------

    def output_stage(self, engine):
        """``"serial"`` or ``"parallel"``: the output stage of one of :attr:`engines`."""
        s = engine.shape
        fits = engine.mmv * s.pe <= s.synapse_folds   # the walk over m·P sums fits in a fold
        return "serial" if self.serial and fits else "parallel"

    def output_slice(self, engine):
        """Whether a skid register slice ends ``engine``'s output: a dense MMV engine's
        reorder buffer plays its beats out of a block RAM whose read has no output register,
        then picks the image's beat; with ``ram_reg`` a slice between the two keeps that
        clock-to-out off the multiplexer and the next converter's registers (ECP5 SFC build
        12's critical path: 13.0 ns with no slice; build 19's, 2.1 ns late with the slice
        after the multiplexer). :data:`~xnorflow.hw.dataflow.timing.OUTPUT_SLICES` skid
        slices (cycles) per such engine, dense or conv (a conv engine's before its pool: CNV
        build cnv10n, the read through the multiplexer into conv 4's pool, 2.3 ns late)."""
        return bool(self.ram_reg) and engine.mmv > 1

    def window_slice(self, engine):
        """Whether a skid register slice follows a conv engine's window unit: with
        ``ram_reg`` the ring's block-RAM read (5.8 ns from clock to output) then lands in
        the slice's flip-flops beside the ring, and the gathering converter loads from them,
        not from the block RAM across the engine (CNV build cnv9a: conv 3's converter, 2.1 ns
        late at 100 MHz). One cycle of latency."""
        return bool(self.ram_reg) and engine.is_conv

    def input_slice(self, engine):
        """Whether a skid register slice sits in front of a conv engine's window unit: with
        ``ram_reg`` the converter before it then loads its output register on a ``ready``
        from a flip-flop, not on the window unit's ring state through its ``ready`` logic in
        the same cycle (CNV build cnv9o: conv 4's window into the converter before it, the
        enable of its 66 output flip-flops, 2.3 ns late at 100 MHz). One cycle of latency.
        Not the first engine: its input comes through the core's splitting converter, whose
        multiplexer into the slice's entries was 2.3 ns late (cnv9q), and its window unit
        had taken it in time (cnv9o)."""
        return bool(self.ram_reg) and engine.is_conv and engine is not self.engines[0]

    def pool_slice(self, engine):
        """Whether a skid register slice sits between a pooled conv engine's matrix-vector
        unit (``mmv = 1``: its output FIFO) and its pool: with ``ram_reg`` the unit's
        ``o.ready`` is then a flip-flop, so its credit counter does not wait on the pool's
        window position through the pool's ``ready`` in one cycle (CNV build cnv9k: conv 2's
        credit counter, 2.3 ns late at 100 MHz). With ``mmv > 1`` the reorder buffer's own
        slices do this (:meth:`output_slice`). One cycle of latency."""
        return bool(self.ram_reg) and engine.is_conv and engine.pool and engine.mmv == 1

    def end_slice(self, engine):
        """Whether a skid register slice ends a conv engine (after its pool): with
        ``ram_reg`` its ``ready`` is a flip-flop, so the engine's credit counter no longer
        waits on the next engine's window unit through the converter and the pool in one
        cycle (CNV build cnv10n: conv 1's, 2.4 ns late at 100 MHz). One cycle of latency."""
        return bool(self.ram_reg) and engine.is_conv

    def conv_in_words(self, engine):
        """Window beats a conv engine's matrix-vector unit takes per beat of its own, straight
        into its input buffer (:class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit`
        ``in_words``), or 1 (a gathering converter between the window unit and the unit).
        Words with ``ram_reg`` wherever the beats are whole words (the window's lanes divide
        ``S``, ``S`` divides ``9·C``): the converter's wide register then goes, whose slots'
        clock enables came from the unit's ``ready`` across the engine (CNV build cnv9x:
        conv 4's 384 bits, 2.7 ns late at 95 MHz), and a cycle of latency with it. iCE40
        builds keep the converter (their logic)."""
        if not (self.ram_reg and engine.is_conv):
            return 1
        words, rest = divmod(engine.simd, engine.in_lanes)
        return words if words > 1 and not rest and engine.n_in % engine.simd == 0 else 1

    @property
    def gather_slots(self):
        """Most beats a converter between two engines gathers into one register
        (:class:`~xnorflow.hw.dataflow.convert.WidthConverter` ``most_slots``), or None for
        any number: with ``ram_reg`` 8, so a wider regrouping takes steps and a beat fans out
        to at most 8 slots (CNV builds cnv9w, cnv9x: the 49 slots in front of fc 6, 1.2-2.3 ns
        late at 95 MHz). A cycle of latency per step more."""
        return GATHER_SLOTS if self.ram_reg else None

    def holds_output(self, engine):
        """Whether an input-first engine with one neuron fold keeps its output beat in its
        sums' registers (:class:`~xnorflow.hw.dataflow.psum_mvu.PartialSumMVU`
        ``hold_output``: no FIFO, P·acc_width flip-flops fewer for a raw last layer): only
        where the wait that costs its next image (a credit's cycles) stays inside the
        pipeline's interval, so the rate does not change."""
        if engine.order != "input" or engine.shape.neuron_folds != 1:
            return False
        held = timing.psum_credit_cycles(engine.simd, engine.input_bits, self.levels)
        return engine.cycles + held <= self.interval

    def timing_args(self, engine):
        """The keyword arguments of :mod:`xnorflow.hw.dataflow.timing`'s functions for ``engine``."""
        return {"n_in": engine.n_in, "n_out": engine.n_out, "simd": engine.simd,
                "pe": engine.pe, "input_bits": engine.input_bits,
                "ram_reg": bool(self.ram_reg), "levels_per_stage": self.levels,
                "leaf_reg": bool(self.leaf_reg),
                "output_stage": self.output_stage(engine), "mmv": engine.mmv,
                "weight_style": engine.ram_style}

    @property
    def group(self):
        """Images a run is a multiple of: the largest dense engine's ``mmv`` (all are powers
        of two; a conv engine's groups pixels inside an image)."""
        return max(e.images_per_group for e in self.engines)

    @property
    def first_in_words(self):
        """Input-FIFO words the first engine takes per beat of its own, written straight into
        its input buffer (``W > 1``: no gathering converter in front of it, see
        :class:`~xnorflow.hw.dataflow.mvu.MatrixVectorUnit` ``in_words``), else 1 (a converter
        regroups the words, or they are its beats). Direct where the buffer is written in
        the cycle of the accept (no ``ram_reg``), the engine is dense, output-first and of one
        image per group, and an image is whole words of whole beats. Why: on the UP5K the
        converter's beat register is a logic cell per bit (the digits MLP's 64-bit beat:
        about 64 of 5,280), and it holds a beat a cycle before the buffer has it."""
        e, lanes = self.engines[0], self.in_lanes
        if (self.ram_reg or e.is_conv or e.order != "output" or e.mmv != 1
                or e.in_lanes <= lanes or e.in_lanes % lanes or e.in_features % e.in_lanes):
            return 1
        return e.in_lanes // lanes

    @property
    def first(self):
        return self.engines[0].shape

    @property
    def last(self):
        return self.engines[-1].shape

    @property
    def interval(self):
        """Initiation interval of the pipeline, cycles per image: its slowest stage's: an
        engine's ``SF·NF`` (over ``mmv`` for an MMV engine; a float when that does not
        divide), the gate's input words (one per cycle) or the output converter's integers
        (one per cycle into the output FIFO)."""
        return max(max(e.cycles for e in self.engines), self.gate_cycles, self.out_words)

    @property
    def gate_cycles(self):
        """Cycles the gate needs per image: one input-FIFO word per cycle, regrouped into the
        first engine's beats (a splitting converter passes one beat per cycle)."""
        return gate_cycles(self.engines[0], self.in_word)

    # The host's side of the FIFOs is narrow (a word of a few elements or one integer), so
    # a wide first-engine beat or last-engine beat costs no wide FIFO memory: width
    # converters between the FIFOs and the pipeline regroup the lanes (docs/dataflow.md).

    @property
    def in_lanes(self):
        """Input elements per input-FIFO word: the most in ``in_word`` bits that the first
        engine's beat and it divide one another (the converter regroups them): a power of
        two, or the beat itself when it fits the word. The latter keeps a first engine whose
        S is not a power of two (784 = 4·196 synapses) at one word per beat: its powers of
        two alone would be the 4 lanes that divide 196, 49 words per image."""
        return input_lanes(self.engines[0], self.in_word)

    @property
    def in_word_bits(self):
        return self.in_lanes * self.first.input_bits

    @property
    def in_word_bytes(self):
        """Bytes the host writes per input word (little-endian, element j in bits [k·j, k·j+k))."""
        return -(-self.in_word_bits // 8)

    @property
    def in_words(self):
        """Input words per image (the last one padded)."""
        return -(-self.engines[0].in_features // self.in_lanes)

    @property
    def out_word_bits(self):
        """One last-layer integer per output-FIFO word (two's complement)."""
        return self.last.acc_width

    @property
    def out_word_bytes(self):
        """Bytes the host reads per output integer (little-endian, sign in the top bit)."""
        return -(-self.out_word_bits // 8)

    @property
    def out_words(self):
        """Output integers per image."""
        return self.last.n_out

    # -- text form -----------------------------------------------------------------------

    def format(self):
        opts = [f"{f}={getattr(self, f)}" for f in ("in_images", "out_images", "ram_reg", "in_word",
                                                  "levels", "leaf_reg", "serial")
                if getattr(self, f) != _DEFAULTS[f]]
        return "df:" + ",".join(e.format() for e in self.engines) + \
            (";" + ",".join(opts) if opts else "")

    __str__ = format

    @classmethod
    def parse(cls, text):
        """A config from :meth:`format`'s text (or a DataflowConfig, returned as is)."""
        if isinstance(text, DataflowConfig):
            return text
        text = str(text).strip()
        if not text.startswith("df:"):
            raise ValueError(f"a dataflow configuration starts with 'df:', got {text!r}")
        body, _, opts = text[3:].partition(";")
        kw = {}
        for item in filter(None, opts.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in _DEFAULTS:
                raise ValueError(f"unknown dataflow option {item!r} (known: "
                                 f"{', '.join(_DEFAULTS)})")
            try:
                kw[key] = int(value)
            except ValueError:
                raise ValueError(f"dataflow option {key} must be an integer, got {value!r}") \
                    from None
        engines = tuple(EngineFold.parse(e) for e in body.split(",") if e)
        return cls(engines, **kw)

    def replace(self, **kw):
        return replace(self, **kw)

    def to_json(self):
        """The fold as a JSON-able dict (FOLD.json's ``config`` and ``engines``)."""
        return {"config": self.format(),
                "engines": [{"n_in": e.n_in, "n_out": e.n_out, "simd": e.simd, "pe": e.pe,
                             "input_bits": e.input_bits, "input_kind": e.input_kind,
                             "output": e.output, "weights": e.weights, "mmv": e.mmv,
                             "order": e.order, "cycles": e.cycles}
                            for e in self.engines]}


_DEFAULTS = {f.name: f.default for f in DataflowConfig.__dataclass_fields__.values()
             if f.name != "engines"}


def input_lanes(first, in_word):
    """Input elements per input-FIFO word of ``in_word`` bits in front of the first engine
    ``first`` (an :class:`EngineFold`): :attr:`DataflowConfig.in_lanes`."""
    k, simd = first.shape.input_bits, first.in_lanes
    lanes = 1
    while (2 * lanes * k <= in_word and 2 * lanes <= first.in_features
           and (simd % (2 * lanes) == 0 or (2 * lanes) % simd == 0)):
        lanes *= 2
    return max(lanes, simd) if simd * k <= in_word else lanes


def gate_cycles(first, in_word):
    """Cycles per image the input gate needs in front of the first engine ``first``: one
    input-FIFO word per cycle, regrouped into its beats (a splitting converter passes one
    beat per cycle): :attr:`DataflowConfig.gate_cycles`. The fold search bounds a first
    engine's candidates by it (a fold of 32 cycles behind 98 input words runs at 98)."""
    lanes = input_lanes(first, in_word)
    return -(-first.in_features // lanes) if first.in_lanes > lanes else first.in_beats
