"""Elaboration parameters of the accelerator core: the array shape and the memory sizes.

This module is plain Python (no Amaranth import) so that the compiler, the cycle model and the
driver can share one description of a bitstream with the gateware. The latencies it reports
(``write_delay``, ``desc_fetch``, ...) are defined once, in :mod:`xnorflow.hw.core.timing`.

Compact string form: ``"PxQxK"`` (e.g. ``"8x8x32"``) sets the array shape and keeps every other
field at its default; the full form appends ``key=value`` pairs separated by commas, e.g.
``"4x2x16,w_depth=256,acc_width=20"``. :meth:`ArrayConfig.format` writes the shortest form that
:meth:`ArrayConfig.parse` reads back to an equal config.

Why the default is 8x8x32: a 256-wide binary layer is 8 words of K=32 bits, so the tile period
(max(words, Q) cycles, see docs/core.md) equals Q=8 and the per-row drain exactly keeps up with
the array; with P=8 the fill/drain overhead of such a layer stays under 10 % even at a batch of
one column group (8 samples). 64 PEs of 32 bits fit an ECP5-25 and up; small boards take less:
the iCEBreaker (iCE40 UP5K, core + host link) fits a 4-PE array, "2x2x16" with SPRAM weight banks
(docs/core.md, "iCE40 mapping").
"""
from dataclasses import dataclass, fields, replace

from xnorflow.hw.core import timing

__all__ = ["ArrayConfig", "DEFAULT"]


def _is_pow2(v):
    return v >= 1 and (v & (v - 1)) == 0


def _log2(v):
    return v.bit_length() - 1


#: ArrayConfig fields that are 0/1 switches; every other field is a positive size.
_FLAGS = ("conv", "issue_reg")


@dataclass(frozen=True)
class ArrayConfig:
    """Shape and memory sizes of one accelerator build.

    Parameters
    ----------
    P : rows of the array = output channels computed at once (power of two).
    Q : columns of the array = input vectors (batch samples) computed at once (power of two).
    K : bits per word consumed by each PE per cycle (power of two, ≥ 8, multiple of P).
    w_depth : K-bit words per weight bank (one bank per row).
    thr_depth : threshold entries per row bank (one per output tile of a threshold layer).
    in_depth : K-bit words per input bank (one bank per column; bit-planes of the k-bit inputs).
    act_depth : K-bit words per half of each activation ping-pong bank (one bank per column).
    out_depth : 32-bit output words per row (raw integers of the last layer); they share each
        row's threshold bank, after its ``thr_depth`` threshold entries.
    desc_depth : layer descriptors the descriptor table holds (= most layers per program).
    acc_width : accumulator width in bits (signed).
    conv : 1 to build the conv datapath (per-column pixel walkers, padding, broadcast writes
        and the fused max-pool; docs/conv.md), 0 for a dense-only core (about 100 LUTs less
        per column: the iCEBreaker's default, whose memories hold no feature map anyway).
    issue_reg : 1 to register the sequencer's issue (memory addresses and their sideband) once
        before it reaches the memories: one more cycle per layer (``write_delay``) for a
        whole cycle of routing between the sequencer and banks spread over a large device
        (the Fashion-MNIST CNV build on the ECP5-85F, whose weight-address route set its Fmax).
    row_groups : G, the array's rows split into G groups of P/G (a power of two ≤ P). Each
        column's activation word and sideband pass one register per group on their way down
        the column, so no net reaches more than P/G PEs and each copy can sit beside its rows;
        group g gets its weights and activations g cycles after group 0, and its sums wait
        G−1−g cycles to rejoin the others: G−1 more cycles per layer (``write_delay``). For
        tall arrays whose broadcast nets do not route (32 rows on the ECP5-85F,
        docs/synthesis.md); 1 (one net per column) otherwise.
    """

    P: int = 8
    Q: int = 8
    K: int = 32
    w_depth: int = 2048
    thr_depth: int = 256
    in_depth: int = 2048
    act_depth: int = 256
    out_depth: int = 512
    desc_depth: int = 16
    acc_width: int = 24
    conv: int = 1
    issue_reg: int = 0
    row_groups: int = 1

    def __post_init__(self):
        for name in ("P", "Q", "K", "row_groups"):
            if not _is_pow2(getattr(self, name)):
                raise ValueError(f"{name} must be a power of two, got {getattr(self, name)}")
        if self.K < 8:
            raise ValueError(f"K must be at least 8 (whole bytes), got {self.K}")
        if self.row_groups > self.P:
            raise ValueError(f"row_groups ({self.row_groups}) must not exceed P ({self.P})")
        if self.K % self.P:
            # Threshold outputs of one tile (P bits) are written as one lane of a K-bit word.
            raise ValueError(f"K ({self.K}) must be a multiple of P ({self.P})")
        for flag in _FLAGS:
            if getattr(self, flag) not in (0, 1):
                raise ValueError(f"{flag} must be 0 or 1, got {getattr(self, flag)}")
        for f in fields(self):
            if f.name not in _FLAGS and getattr(self, f.name) < 1:
                raise ValueError(f"{f.name} must be positive")
        if not 8 <= self.acc_width <= 32:
            raise ValueError(f"acc_width must be 8..32 (outputs leave as 32-bit words), "
                             f"got {self.acc_width}")
        for name in ("w_depth", "thr_depth", "in_depth", "act_depth", "out_depth"):
            if getattr(self, name) > 0xFFFF:
                # Descriptor fields and the DEPTHS registers hold 16-bit word addresses.
                raise ValueError(f"{name} must be below 65536, got {getattr(self, name)}")
        if self.desc_depth > 128:
            # 32-byte descriptors in the 4 KB descriptor page
            raise ValueError("desc_depth is limited to 128 descriptors by the address map")

    # -- derived quantities shared by the gateware and the cycle model -------------------------

    @property
    def w_huge(self):
        """Weight banks of ``w_depth`` ≥ 4096 words are marked ``ram_style = "huge"``: Yosys
        maps them to iCE40 UltraPlus SPRAM (16K×16, single port) instead of block RAM (a
        4096-word bank would take 16 of the UP5K's 30 EBR at K = 16). The banks are used as
        single-port RAMs anyway (docs/core.md, "iCE40 mapping"), so timing is unchanged."""
        return self.w_depth >= 4096

    @property
    def log2P(self):
        return _log2(self.P)

    @property
    def log2Q(self):
        return _log2(self.Q)

    @property
    def word_bytes(self):
        return self.K // 8

    @property
    def lanes(self):
        """P-bit lanes per K-bit activation word (one lane per output tile)."""
        return self.K // self.P

    @property
    def popcount_latency(self):
        """:func:`xnorflow.hw.core.timing.popcount_latency` of K."""
        return timing.popcount_latency(self.K)

    @property
    def pe_latency(self):
        """:func:`xnorflow.hw.core.timing.pe_latency` of K."""
        return timing.pe_latency(self.K)

    @property
    def rows_per_group(self):
        """Rows per row group: row ``i`` is in group ``i // rows_per_group``."""
        return self.P // self.row_groups

    @property
    def drain_latency(self):
        """:func:`xnorflow.hw.core.timing.drain_latency` of Q."""
        return timing.drain_latency(self.Q)

    @property
    def desc_fetch(self):
        """:data:`xnorflow.hw.core.timing.DESC_FETCH`: extra cycles of a run's first layer."""
        return timing.DESC_FETCH

    @property
    def write_delay(self):
        """:func:`xnorflow.hw.core.timing.write_delay` of this build: cycles from the issue of a
        layer's last word to its last write."""
        return timing.write_delay(self)

    # -- string form --------------------------------------------------------------------------

    @classmethod
    def parse(cls, text):
        """Read ``"PxQxK"`` optionally followed by ``,key=value`` pairs."""
        if isinstance(text, cls):
            return text
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        if not parts:
            raise ValueError("empty array config")
        shape = parts[0].lower().split("x")
        if len(shape) != 3 or not all(s.isdigit() for s in shape):
            raise ValueError(f"array config must start with PxQxK (e.g. 8x8x32), got {text!r}")
        kw = dict(zip("PQK", map(int, shape)))
        names = {f.name for f in fields(cls)}
        for p in parts[1:]:
            key, sep, value = p.partition("=")
            key = key.strip()
            if not sep or key not in names or key in "PQK":
                raise ValueError(f"unknown array config field {p!r}; known: "
                                 f"{', '.join(sorted(names - set('PQK')))}")
            kw[key] = int(value, 0)
        return cls(**kw)

    def format(self):
        """The compact string form; fields equal to their defaults are left out."""
        text = f"{self.P}x{self.Q}x{self.K}"
        base = ArrayConfig()
        extra = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                 if f.name not in "PQK" and getattr(self, f.name) != getattr(base, f.name)]
        return ",".join([text] + extra)

    def __str__(self):
        return self.format()

    def replace(self, **kw):
        return replace(self, **kw)


DEFAULT = ArrayConfig()
