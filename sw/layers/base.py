"""What every layer type implements: the one place the file loader, the compiler, the golden
model, the layer table and the program builder ask about a layer.

A layer type is one class in one module of :mod:`xnorflow.sw.layers` (registered in
``xnorflow.sw.layers.LAYER_TYPES`` under its ``type`` string). Nothing outside ``sw/layers/`` compares
type strings: callers ask the layer object (or the registry) instead, so a new layer type is
one new module and one registry line. ``tests/test_layer_types.py`` checks both.

The methods come in groups, one per part of xnorflow that uses them:

* **model file** (:mod:`xnorflow.sw.xnf`): :meth:`Layer.from_manifest` validates a manifest entry
  through the loader's helper (``reader``: ``get``, ``array``, ``positive_ints``, ``fail``; every
  failure names the file, layer and field) and :meth:`Layer.check_follows` how it chains to the
  layer before it; :meth:`Layer.manifest` and :meth:`Layer.arrays` are what the writer stores.
* **compiler** (:mod:`xnorflow.sw.compile`): :meth:`Layer.from_deploy` builds the layer from the training
  deploy contract's dict (before any threshold is folded).
* **golden model** (:mod:`xnorflow.sw.golden`): :meth:`Layer.forward`, :meth:`Layer.acc_range`,
  :meth:`Layer.binary_macs`, :meth:`Layer.derive_from`.
* **tables** (:mod:`xnorflow.sw.layer_table`): :meth:`Layer.table_row` and ``table_note``.
* **overlay** — the time-multiplexed core of ``hw/core`` (:mod:`xnorflow.sw.program`): every method
  and attribute named ``overlay_*``: shape on the array, memory use, the core's rules, pool
  fusion, descriptor fields, memory images, input rows, cycles and utilisation. A second
  hardware target adds its own prefixed group beside it.
"""
from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

from xnorflow.sw.errors import XnorflowError


class CompileError(XnorflowError):
    """The network cannot be compiled; the message names the layer (and channel) and why.
    (Defined here because each layer type builds itself from the deploy contract;
    :mod:`xnorflow.sw.compile` raises it too.)"""


class ProgramError(XnorflowError, ValueError):
    """The model does not fit or does not suit the core; the message names the layer.
    (Defined here because each layer type checks its own rules on the core; :mod:`xnorflow.sw.program`
    raises it too.)"""


class OverlayShape(NamedTuple):
    """How a layer maps onto the core's array (docs/core.md, docs/conv.md)."""

    in_words: int
    """K-bit words of one input vector (per bit-plane)."""
    last_bits: int
    """Valid bits of the last word of a vector (of a tap, for a binary conv)."""
    m_tiles: int
    """Output tiles of P channels."""
    tile_words: int
    """W: words the array consumes per output tile, ``in_words·input_bits``."""
    out_words: int
    """K-bit words of one output vector (per sample or pixel)."""


class OverlayMemory(NamedTuple):
    """What a layer takes of the core's memories, in the units the configuration's depths
    are given in."""

    weight_words: int
    """Words of each row's weight bank."""
    threshold_entries: int
    """Entries of each row's threshold bank."""
    activation_words: int
    """Words per sample (or pixel) of each column's activation bank."""


class OverlayStep(NamedTuple):
    """One descriptor of a program: ``layer`` and the layer the core runs inside it
    (``fused``: a max-pool in its conv's writer), or None."""

    layer: object
    fused: object = None


class Layer(ABC):
    """The interface of a layer type (see the module docstring for who asks what).

    Every instance also has these attributes: ``name`` (unique in a model, used in every
    message), ``in_features`` and ``out_features`` (elements of the input and output vectors;
    layers chain on them), ``out_channels`` (channels per output pixel: ``out_features`` for a
    vector), ``out_image`` (``(height, width, channels)`` of the output when it is an image,
    else None), ``input_kind`` (``"binary"`` or ``"unsigned"``), ``input_bits``, ``output``
    (``"threshold"``, ``"raw"`` or ``"bits"``) and ``extra`` (a dict kept in the file).
    """

    type: ClassVar[str]
    """The name of the type in model files, deploy dicts and tables."""
    classifier: ClassVar[bool] = False
    """True when a layer of this type may be a model's last layer: raw integers to the host's
    head."""
    table_note: ClassVar[str | None] = None
    """A line the layer table prints under its cycle figures when the model has this type."""
    out_image: ClassVar[tuple | None] = None
    """Default for a layer whose output is a vector; image types override it with a property."""
    overlay_one_image: ClassVar[bool] = False
    """True when, on the core, the columns compute the pixels of one image (a model with such
    a layer runs one image per run)."""

    # -- model file (sw/xnf.py) --------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_manifest(cls, reader, name, entry, last):
        """A validated layer from its manifest ``entry`` (``last``: the model's last layer)."""

    @abstractmethod
    def check_follows(self, reader, prev):
        """Fail through ``reader`` unless this layer may follow ``prev`` (type-specific rules;
        the loader checks sizes and input kinds of every pair itself)."""

    @abstractmethod
    def manifest_fields(self):
        """The scalar fields of this layer's manifest entry (beyond name, type, arrays, extra)."""

    @abstractmethod
    def stored_arrays(self):
        """``{field: array}`` of the arrays this layer stores, in file order and file dtypes."""

    def manifest(self, prefix):
        """This layer's manifest entry; its arrays are named ``prefix.field``."""
        return {"name": self.name, "type": self.type, **self.manifest_fields(),
                "arrays": {f: f"{prefix}.{f}" for f in self.stored_arrays()},
                "extra": self.extra}

    def arrays(self, prefix):
        """``{array name: array}`` the writer stores (the names :meth:`manifest` lists)."""
        return {f"{prefix}.{f}": a for f, a in self.stored_arrays().items()}

    # -- compiler (sw/compile.py) -------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_deploy(cls, d, prev, first, last, input_bits):
        """The layer described by a deploy-contract dict ``d``, thresholds not yet folded;
        ``prev`` is the layer built before it (or None); raises :class:`CompileError`."""

    # -- golden model ---------------------------------------------------------------------------

    @abstractmethod
    def forward(self, x):
        """``(acc, out)`` for a batch in this layer's input format: the integer accumulators
        (None when the layer has none) and the output (packed bits, or ``acc`` when raw)."""

    @abstractmethod
    def acc_range(self):
        """(lowest, highest) value of the accumulator, or None for a layer without one."""

    @abstractmethod
    def binary_macs(self):
        """Binary multiply-accumulates per input (each bit-plane of a k-bit input counts)."""

    def derive_from(self, prev):
        """Take again what this layer derives from ``prev``, the layer before it, after
        ``prev`` changed (a max-pool pools by its conv's directions). Default: nothing."""

    # -- tables (sw/layer_table.py) -----------------------------------------------------------

    @abstractmethod
    def table_row(self):
        """One dict of what ``xnorflow inspect`` shows for this layer (cycles are added by the
        table)."""

    # -- overlay: the time-multiplexed core (sw/program.py, hw/core) --------------------------

    @abstractmethod
    def overlay_shape(self, config):
        """:class:`OverlayShape` of this layer on ``config``."""

    @abstractmethod
    def overlay_memory(self, config):
        """:class:`OverlayMemory` this layer takes on ``config``."""

    @abstractmethod
    def overlay_check(self, index, fused, prev, config, last):
        """Raise :class:`ProgramError` unless this layer can run as descriptor ``index`` on
        ``config`` with ``fused`` in its writer, after ``prev`` (the layer whose output it
        reads, or None); ``last``: the program's last descriptor."""

    def overlay_fuses(self, layer):
        """True when the core runs ``layer``, the next layer of the model, inside this
        layer's descriptor (as a max-pool in its conv's writer). Default: never."""
        return False

    @abstractmethod
    def overlay_descriptor(self, config, w_base, t_base, last, fused=None):
        """Descriptor fields (``xnorflow.hw.core.memory_map.encode_descriptor``) of this layer."""

    @abstractmethod
    def overlay_weight_image(self, config):
        """Weight-bank bytes of this layer, from its first word address on."""

    @abstractmethod
    def overlay_threshold_image(self, config):
        """Threshold-bank bytes of this layer, from its first entry on."""

    @abstractmethod
    def overlay_input_rows(self, x, fused):
        """The rows the host writes to the input banks when this is the first layer, for the
        model inputs ``x`` (uint8 [B, N]); ``fused``: the layer fused into it, or None."""

    @abstractmethod
    def overlay_cycles(self, config, batch, first=False):
        """Cycles on the core for ``batch`` inputs, exactly as its counter counts them;
        ``first``: the layer is the first of its run."""

    @abstractmethod
    def overlay_utilisation(self, config, batch):
        """Fraction of this layer's cycles in which the array consumes a word."""

    # -- dataflow target (hw/dataflow, sw/dataflow_program.py) ---------------------------------

    dataflow_pools: ClassVar[bool] = False
    """True when the dataflow target runs this layer as the 2×2 pool of the conv engine before
    it (no engine of its own)."""

    def dataflow_engine(self):
        """The geometry of this layer's dataflow engine: the fields of
        :class:`~xnorflow.hw.dataflow.config.EngineFold` a build must match (``n_in``,
        ``n_out``, ``input_bits``, ``input_kind``, ``output``, ``image``)."""
        raise ProgramError(f"layer {self.name!r}: a {self.type} layer has no dataflow engine")
