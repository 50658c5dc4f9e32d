"""Resource model: what a configuration needs on a board, estimated before synthesis.

``xnorflow synth`` asks this model first and refuses a configuration that clearly cannot fit
(a 64x64x64 array on the iCEBreaker ran Yosys and nextpnr for 7 minutes and 4.7 GB before
anyone stopped it); ``--force`` builds anyway. The API is two functions::

    est = estimate("icebreaker", config)     # Estimate(luts=..., brams=..., sprams=...)
    check_fits("icebreaker", est)            # [(resource, need, have), ...] over the limit

A new hardware target adds its own estimator with :func:`register` (keyed by the type of its
configuration object); :func:`check_fits` and the devices are shared.

Resources (the names of ``report.json``): ``luts`` are nextpnr's placed logic cells on iCE40
(``ICESTORM_LC``, a LUT4 and its flip-flop) and LUT4s on ECP5 (``TRELLIS_COMB``); ``brams``
are block RAMs (iCE40 EBR of 4 kbit, ECP5 DP16KD of 18 kbit); ``sprams`` are the iCE40
UltraPlus 256 kbit single-port RAMs.

**Memories are counted, not fitted.** The board top's memories follow from the configuration
(:func:`array_memories`, checked against the gateware's own list by the tests); each is mapped
as Yosys' ``memory_libmap`` maps it: every geometry of the device's RAM blocks is tried and the
one with the lowest Yosys cost wins (block cost, plus half a unit per read-multiplexer and
write-decoder bit when the depth needs several blocks), or logic when that is cheaper. This
reproduces the block RAM counts of all ten builds below, and the SPRAM counts where they were
recorded, exactly.

**Logic is fitted.** Yosys LUT4 equivalents (``synth_* -noflatten`` of the two area
breakdowns, ``benchmarks/results/area_<board>.json``) set the blocks that do not grow with the
array: sequencer + host link + UART ≈ 1,590, a threshold unit 1.65·acc_width, a conv pixel
walker 93 per column. The array-dependent rest, ``c0 + P·Q·(c1·K + c2·acc_width) +
c3·(P+Q)·K`` (PEs and their drain; the banks' address, data and read-back paths), is a
non-negative least-squares fit of the relative error over the placed builds below; a family
factor turns LUT4s into placed cells (iCE40 1.26: logic cells also hold flip-flops and carry
chains alone; ECP5 1.06), both from the area breakdowns against their placed builds.

Calibrated on (board, array, placed luts, model error; block RAMs exact on all, SPRAMs where
recorded):

====================================================================  =======  =======
iCEBreaker ``2x4x16,…,conv=0`` (the default; bitstreams/)               5,123    +1.9 %
iCEBreaker ``2x2x16,…`` same depths (docs/synthesis.md, older core)     3,970    +3.2 %
iCEBreaker ``4x8x16,…`` (docs/synthesis.md: 195 %, does not fit)       10,334    +9.4 %
ULX3S ``8x8x32`` (the default; bitstreams/)                            23,099    −3.0 %
ULX3S ``8x4x32,…,issue_reg=1`` (CNV; bitstreams/)                      14,982    −5.0 %
ULX3S ``8x4x32,…`` (CNV without issue_reg; bitstreams/)                14,568    −2.3 %
ULX3S ``32x4x64,…,row_groups=4`` at 45 MHz (bitstreams/)               54,781    +2.3 %
ULX3S ``32x4x64,…,row_groups=4`` (benchmarks/results/design_space)     55,233    +1.5 %
ULX3S ``8x8x32,…`` SFC depths (design_space)                           18,116    −0.4 %
ULX3S ``16x8x32,…`` SFC depths (design_space)                          30,592    −0.7 %
====================================================================  =======  =======

(:data:`CALIBRATION` holds these points; ``tests/test_resources.py`` recomputes the errors.)
The fit knows nothing of ``issue_reg`` and ``row_groups`` (registers, few LUTs) and was made
on arrays up to 128 PEs, so :func:`check_fits` refuses logic only above 1.25 × the device:
every build above that fitted its device is accepted (the iCEBreaker default is at 99 % of
it), the 4x8x16 that did not is refused, and a configuration refused is at least 25 % over
by the model, more than twice its largest error. Block memories, counted exactly, are
refused as soon as they exceed the device.
"""
import math
from dataclasses import dataclass

from xnorflow.hw.config import ArrayConfig
from xnorflow.hw.core.memory_map import DESC_WORDS
from xnorflow.hw.dataflow.config import DataflowConfig
from xnorflow.hw.top import DEFAULT_MAX_PAYLOAD

__all__ = ["Device", "DEVICES", "Estimate", "MemoryUse", "MemorySpec", "estimate", "check_fits",
           "describe_misfits", "register", "map_memory", "array_memories", "PACKING",
           "CALIBRATION", "LIMIT_FACTOR"]


@dataclass(frozen=True)
class Device:
    """The FPGA of a board and the resources the model counts."""

    name: str
    family: str      # "ice40" or "ecp5"
    luts: int        # iCE40: logic cells (LUT4 + FF); ECP5: LUT4s
    brams: int       # iCE40: 4 kbit EBR; ECP5: 18 kbit DP16KD
    sprams: int      # iCE40 UltraPlus 256 kbit SPRAM


DEVICES = {
    "icebreaker": Device("iCE40 UP5K", "ice40", luts=5280, brams=30, sprams=4),
    "ulx3s-85f": Device("ECP5 LFE5U-85F", "ecp5", luts=83640, brams=208, sprams=0),
}

#: What each resource is called in messages, per family.
RESOURCE_NAMES = {
    "ice40": {"luts": "logic cells", "brams": "EBR blocks (4 kbit)",
              "sprams": "SPRAM blocks (256 kbit)"},
    "ecp5": {"luts": "LUTs", "brams": "block RAMs (DP16KD, 18 kbit)", "sprams": "SPRAM blocks"},
}

#: Need/have above which :func:`check_fits` reports a resource: logic is a fitted estimate
#: (error up to ~10 % on its calibration points), memories are counted exactly.
LIMIT_FACTOR = {"luts": 1.25, "brams": 1.0, "sprams": 1.0}


@dataclass(frozen=True)
class MemoryUse:
    """``count`` memories of ``width`` bits × ``depth`` words and the blocks each maps to."""

    name: str
    count: int
    width: int
    depth: int
    kind: str          # "bram", "spram", "lutram" or "logic"
    blocks_each: int


@dataclass(frozen=True)
class Estimate:
    """Resources a configuration needs on a board (names as in ``report.json``)."""

    luts: int
    brams: int
    sprams: int
    memories: tuple = ()   # MemoryUse, for the curious (which memory takes the blocks)

    def as_dict(self):
        return {"luts": self.luts, "brams": self.brams, "sprams": self.sprams}


# ---------------------------------------------------------------- memories

@dataclass(frozen=True)
class MemorySpec:
    """A memory of the board top: ``count`` of ``width`` × ``depth`` with one read and one
    write port; ``granularity`` bits per write enable (None: the whole word); ``huge``: marked
    ``ram_style = "huge"`` (SPRAM on the iCE40 UltraPlus); ``block``: marked
    ``ram_style = "block"`` (block RAM however small)."""

    name: str
    count: int
    width: int
    depth: int
    granularity: int = None
    huge: bool = False
    block: bool = False


def array_memories(config, max_payload=None):
    """The memories of the accelerator board top for ``config`` (``hw/core/core.py``'s
    ``Core.memories`` and the host link's frame buffer, ``hw/link/hostlink.py``)."""
    c = config
    return [
        MemorySpec("desc", 1, 32, DESC_WORDS * c.desc_depth, 8),
        MemorySpec("layer_cycles", 1, 32, c.desc_depth),
        MemorySpec("w", c.P, c.K, c.w_depth, 8, huge=c.w_huge),
        MemorySpec("thr", c.P, 32, c.thr_depth + c.out_depth, 8),
        MemorySpec("in", c.Q, c.K, c.in_depth, 8),
        MemorySpec("act", c.Q, c.K, 2 * c.act_depth, c.P),
        MemorySpec("link_buf", 1, 8, max_payload or DEFAULT_MAX_PAYLOAD),
    ]


@dataclass(frozen=True)
class _Block:
    """One geometry of a RAM primitive, as Yosys' memory library describes it
    (``share/ice40/brams.txt``, ``spram.txt``, ``share/lattice/brams_16kd.txt``,
    ``lutrams_trellis.txt``)."""

    kind: str
    width: int
    depth: int
    cost: float
    byte: int          # bits per hardware write enable at this width (0: none)


def _ice40_blocks():
    # SB_RAM40_4K: 256x16 with per-bit write mask, or 512x8 / 1024x4 / 2048x2 without one.
    return [_Block("bram", 16, 256, 64, 1)] + [
        _Block("bram", w, 4096 // w, 64, 0) for w in (8, 4, 2)]


def _ecp5_blocks():
    # DP16KD: 1024x18 and 2048x9 with 9-bit byte enables, narrower without; PDPW16KD: 512x36
    # (one read and one write port, byte enables). TRELLIS_DPR16X4: 16x4 distributed RAM.
    return ([_Block("bram", 36, 512, 128, 9), _Block("bram", 18, 1024, 128, 9),
             _Block("bram", 9, 2048, 128, 9)]
            + [_Block("bram", w, 16384 // w, 128, 0) for w in (4, 2, 1)]
            + [_Block("lutram", 4, 16, 4, 0)])


_SPRAM = _Block("spram", 16, 16384, 2048, 4)   # SB_SPRAM256KA, nibble write mask
#: Yosys' cost of one memory bit in flip-flops and LUTs (memory_libmap's -logic-cost-ram).
_LOGIC_COST_PER_BIT = 1.0


def _map_on(block, mem):
    """(blocks, Yosys cost) of ``mem`` on ``block``, or None when it cannot map there."""
    groups = 1 if mem.granularity is None else mem.width // mem.granularity
    group_bits = mem.width // groups
    if groups > 1 and block.byte == 0:
        if block.width > group_bits:
            return None     # one write enable per block, but the block spans two groups
        units = groups * math.ceil(group_bits / block.width)
    elif groups > 1 and block.byte > 1:
        # each write group sits in whole hardware bytes (an 8-bit group in a 9-bit byte)
        padded = math.ceil(group_bits / block.byte) * block.byte
        units = math.ceil(groups * padded / block.width)
    else:
        units = math.ceil(mem.width / block.width)
    depth_blocks = math.ceil(mem.depth / block.depth)
    blocks = units * depth_blocks
    mux = (depth_blocks - 1) * mem.width
    demux = depth_blocks * groups if depth_blocks > 1 else 0
    return blocks, block.cost * blocks + 0.5 * mux + 0.5 * demux


def map_memory(family, mem):
    """The cheapest mapping of one memory: (kind, blocks)."""
    if mem.huge and family == "ice40":
        # ram_style = "huge" forces SPRAM (synth_ice40 -spram); the single port is shared.
        return "spram", _map_on(_SPRAM, mem)[0]
    options = [] if mem.block else [("logic", (0, _LOGIC_COST_PER_BIT * mem.width * mem.depth))]
    for block in (_ice40_blocks() if family == "ice40" else _ecp5_blocks()):
        mapped = _map_on(block, mem)
        if mapped is not None and (block.kind == "bram" or not mem.block):
            options.append((block.kind, mapped))
    kind, (blocks, _) = min(options, key=lambda o: o[1][1])
    return kind, blocks


# ---------------------------------------------------------------- logic

#: Yosys LUT4s of the blocks that do not grow with the array (area breakdowns).
_FIXED_LUT4 = 1590          # sequencer + host link + UART, clocking, top
_THRESHOLD_LUT4_PER_BIT = 1.65
_WALKER_LUT4 = 93           # conv pixel walker, one per column
#: Fitted: c0 + P·Q·(c1·K + c2·acc_width) + c3·(P+Q)·K (module docstring).
_C0, _C1, _C2, _C3 = 280, 0.67, 6.4, 13.7
#: Placed cells per Yosys LUT4 (area breakdown against its placed build).
PACKING = {"ice40": 1.26, "ecp5": 1.06}


def _array_lut4(config):
    c = config
    return (_FIXED_LUT4 + _THRESHOLD_LUT4_PER_BIT * c.acc_width * c.P + _WALKER_LUT4 * c.Q * c.conv
            + _C0 + c.P * c.Q * (_C1 * c.K + _C2 * c.acc_width) + _C3 * (c.P + c.Q) * c.K)


def _estimate_array(device, config):
    uses = []
    for mem in array_memories(config):
        kind, blocks = map_memory(device.family, mem)
        uses.append(MemoryUse(mem.name, mem.count, mem.width, mem.depth, kind, blocks))
    count = {kind: sum(u.count * u.blocks_each for u in uses if u.kind == kind)
             for kind in ("bram", "spram")}
    luts = round(_array_lut4(config) * PACKING[device.family])
    return Estimate(luts=luts, brams=count["bram"], sprams=count["spram"], memories=tuple(uses))


_ESTIMATORS = {ArrayConfig: _estimate_array}


def register(config_type, estimator):
    """Add the estimator of another hardware target: ``estimator(device, config) ->
    Estimate`` for configurations of ``config_type``."""
    _ESTIMATORS[config_type] = estimator


def get_device(board):
    """The :class:`Device` of a board name (KeyError names the known boards)."""
    try:
        return DEVICES[board]
    except KeyError:
        raise KeyError(f"no resource model for board {board!r}; known: "
                       f"{', '.join(DEVICES)}") from None


def estimate(board, config):
    """The :class:`Estimate` of ``config`` (an :class:`ArrayConfig` or its string form, or a
    registered target's configuration) on ``board``."""
    if isinstance(config, str):
        config = _parse_config(config)
    if type(config) not in _ESTIMATORS:
        import xnorflow.sw.fold  # noqa: F401  (registers the dataflow target's estimator)
    try:
        estimator = _ESTIMATORS[type(config)]
    except KeyError:
        raise TypeError(f"no resource estimator for {type(config).__name__}") from None
    return estimator(get_device(board), config)


def _parse_config(text):
    """An ArrayConfig, or a DataflowConfig for the ``df:`` text of a dataflow build."""
    if text.startswith("df:"):
        return DataflowConfig.parse(text)
    return ArrayConfig.parse(text)


def check_fits(board, est):
    """``[(resource, need, have), ...]`` for each resource of ``est`` that exceeds ``board``'s
    device by more than :data:`LIMIT_FACTOR`; empty when it may fit."""
    device = get_device(board)
    over = []
    for resource, need in est.as_dict().items():
        have = getattr(device, resource)
        if need > have * LIMIT_FACTOR[resource]:
            over.append((resource, need, have))
    return over


def describe_misfits(board, misfits):
    """``misfits`` of :func:`check_fits` as text: ``~9,999 logic cells of 5,280, ...``."""
    device = get_device(board)
    names = RESOURCE_NAMES[device.family]
    return ", ".join(f"{'~' if resource == 'luts' else ''}{need:,} {names[resource]} of {have:,}"
                     for resource, need, have in misfits)


#: The builds the model was calibrated on (module docstring): (board, array, placed luts,
#: brams, sprams (None: not recorded), where it was measured).
CALIBRATION = [
    ("icebreaker", "2x4x16,w_depth=16384,in_depth=256,act_depth=128,out_depth=256,desc_depth=8,"
                   "acc_width=16,conv=0", 5123, 21, 2, "bitstreams/"),
    ("icebreaker", "2x2x16,w_depth=16384,in_depth=256,act_depth=128,out_depth=256,desc_depth=8,"
                   "acc_width=16,conv=0", 3970, 17, None, "docs/synthesis.md"),
    ("icebreaker", "4x8x16,w_depth=16384,thr_depth=128,in_depth=128,act_depth=64,out_depth=128,"
                   "desc_depth=8,acc_width=16", 10334, 29, None, "docs/synthesis.md"),
    ("ulx3s-85f", "8x8x32", 23099, 90, 0, "bitstreams/"),
    ("ulx3s-85f", "8x4x32,w_depth=7424,thr_depth=128,in_depth=1600,act_depth=1600,out_depth=64,"
                  "issue_reg=1", 14982, 182, 0, "bitstreams/"),
    ("ulx3s-85f", "8x4x32,w_depth=7424,thr_depth=128,in_depth=1600,act_depth=1600,out_depth=64",
     14568, 182, 0, "bitstreams/"),
    ("ulx3s-85f", "32x4x64,w_depth=256,thr_depth=64,in_depth=512,out_depth=256,acc_width=16,"
                  "conv=0,issue_reg=1,row_groups=4", 54781, 114, 0, "bitstreams/"),
    ("ulx3s-85f", "32x4x64,w_depth=256,thr_depth=64,in_depth=512,out_depth=256,acc_width=16,"
                  "conv=0,issue_reg=1,row_groups=4", 55233, 114, 0,
     "benchmarks/results/design_space.json"),
    ("ulx3s-85f", "8x8x32,w_depth=1024,thr_depth=64,in_depth=512,out_depth=256,acc_width=16,"
                  "conv=0", 18116, 42, 0, "benchmarks/results/design_space.json"),
    ("ulx3s-85f", "16x8x32,w_depth=1024,thr_depth=64,in_depth=512,out_depth=256,acc_width=16,"
                  "conv=0", 30592, 66, 0, "benchmarks/results/design_space.json"),
]
