"""Byte address map of the accelerator core and its descriptor format (docs/memory_map.md).

The host driver imports these constants; the gateware decodes addresses and descriptors with
them alone (hw/core/bus_target.py: :data:`WINDOWS`, :func:`interleave`; hw/core/interfaces.py:
:data:`DESCRIPTOR_FIELDS`, :data:`OP_FIELDS`). All multi-byte values are little-endian. Region
bases are fixed; a region's used size depends on the :class:`xnorflow.hw.config.ArrayConfig` (see
:func:`regions`). Plain Python: nothing here imports Amaranth.
"""
__all__ = [
    "REG_ID", "REG_CONFIG", "REG_CTRL", "REG_BATCH", "REG_STATUS", "REG_ERROR",
    "REG_TOTAL_CYCLES", "REG_LAYERS_DONE", "REG_DEPTHS_W_IN", "REG_DEPTHS_ACT_OUT",
    "REG_DEPTHS_THR_DESC", "REG_END", "REG_BYTES", "LAYER_CYCLES_BASE", "check_fits",
    "config_from_registers", "config_registers",
    "DESC_BASE", "DESC_BYTES", "THR_BASE", "IN_BASE", "W_BASE", "OUT_BASE", "ADDR_SPACE",
    "PAGE_BYTES", "WINDOWS", "window_bits", "interleave", "region_of",
    "ID_VALUE", "CTRL_START", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR",
    "ERR_NONE", "ERR_BATCH", "ERR_OPCODE", "ERR_NO_END", "ERROR_NAMES",
    "OP_NONE", "OP_DENSE", "OP_CONV3X3", "OP_MAXPOOL", "FLAG_UNSIGNED", "FLAG_RAW", "FLAG_LAST",
    "FLAG_POOL", "DESC_WORDS", "OP_FIELDS", "DESCRIPTOR_FIELDS",
    "THR_DOWN_BIT", "regions", "encode_descriptor", "decode_descriptor",
]

# -- registers (32-bit, byte-addressed) -------------------------------------------------------
REG_ID = 0x000            # RO  ID_VALUE ("XNF1" in byte order)
REG_CONFIG = 0x004        # RO  P | Q << 8 | log2(K) << 16 | acc_width << 24
REG_CTRL = 0x008          # W   write bit 0 (CTRL_START) of byte 0 to start a run; bytes 1-3
                          #     are ignored (also while busy); reads 0
REG_BATCH = 0x00C         # RW  batch size B (16 bits used) of the next run
REG_STATUS = 0x010        # RO  STATUS_* bits
REG_ERROR = 0x014         # RO  ERR_* code of the last run
REG_TOTAL_CYCLES = 0x018  # RO  cycles of the last (or current) run: every cycle it was busy
REG_LAYERS_DONE = 0x01C   # RO  layers finished in the last (or current) run
REG_DEPTHS_W_IN = 0x020      # RO  w_depth (bits 15:0) | in_depth (bits 31:16)
REG_DEPTHS_ACT_OUT = 0x024   # RO  act_depth (bits 15:0) | out_depth (bits 31:16)
REG_DEPTHS_THR_DESC = 0x028  # RO  thr_depth (bits 15:0) | desc_depth (bits 23:16) |
                             #     log2(ArrayConfig.row_groups) (bits 27:24) |
                             #     bit 30: ArrayConfig.issue_reg | bit 31: ArrayConfig.conv
REG_END = 0x02C              # first byte past the registers
REG_BYTES = 4                # every register, counter, descriptor word and threshold entry
LAYER_CYCLES_BASE = 0x100  # RO  32-bit cycles of layer l at LAYER_CYCLES_BASE + 4·l

ID_VALUE = int.from_bytes(b"XNF1", "little")
CTRL_START = 0x01
STATUS_BUSY = 0x01
STATUS_DONE = 0x02
STATUS_ERROR = 0x04
ERR_NONE = 0
ERR_BATCH = 1      # batch size 0
ERR_OPCODE = 2     # a descriptor's op is not one this build executes
ERR_NO_END = 3     # the table ended (desc_depth layers) without a FLAG_LAST descriptor
#: what the host says for each REG_ERROR code
ERROR_NAMES = {ERR_NONE: "none", ERR_BATCH: "batch size 0", ERR_OPCODE: "unknown descriptor op",
               ERR_NO_END: "no last-layer descriptor"}

# -- memories (RW*: written and read back by the host only while the core is idle) ----------
DESC_BASE = 0x001000  # RW* descriptor l at DESC_BASE + DESC_BYTES·l
DESC_BYTES = 32
DESC_WORDS = DESC_BYTES // 4   # 32-bit words of the descriptor memory per descriptor
THR_BASE = 0x100000   # RW* threshold entry (tile t, row i) at THR_BASE + 4·(t·P + i)
IN_BASE = 0x200000    # RW* input word (a, column j) at IN_BASE + (a·Q + j)·K/8
W_BASE = 0x400000     # RW* weight word (a, row i) at W_BASE + (a·P + i)·K/8
OUT_BASE = 0x800000   # RO  output word (a, row i) at OUT_BASE + 4·(a·P + i)
ADDR_SPACE = 0x1000000  # the bus's 24-bit byte addresses (hw/bus.py: ADDR_WIDTH)
PAGE_BYTES = 0x1000     # page 0 holds the registers and the layer cycles, page 1 the descriptors

#: The windows the core decodes: name -> (base, size in bytes). Every size is a power of two and
#: every base a multiple of its size, so an address is in a window when its bits from
#: :func:`window_bits` up equal ``base >> window_bits`` (one narrow compare, no adder), and the
#: bits below are its offset there. Past a region's used size (:func:`regions`) a window is
#: unmapped. The registers and the layer-cycle counters share page 0.
WINDOWS = {
    "page0": (0, PAGE_BYTES),
    "desc": (DESC_BASE, PAGE_BYTES),
    "thr": (THR_BASE, IN_BASE - THR_BASE),
    "in": (IN_BASE, W_BASE - IN_BASE),
    "w": (W_BASE, OUT_BASE - W_BASE),
    "out": (OUT_BASE, ADDR_SPACE - OUT_BASE),
}

# Threshold entry: bits [acc_width-1:0] = T (two's complement), bit 31 = direction d = −1.
THR_DOWN_BIT = 31

# -- descriptor (32 bytes) --------------------------------------------------------------------
# byte 0      op: bits 1:0 kind (OP_*), bit 2 FLAG_UNSIGNED, bit 3 FLAG_RAW, bit 4 FLAG_LAST,
#             bit 5 FLAG_POOL (conv only: 2×2 max-pool fused into the writer)
# byte 1      input_bits k (1..8; 1 for binary input)
# bytes 2-3   in_words   words per input vector: ceil(N / K) (conv: all nine taps)
# bytes 4-5   last_bits  valid bits in the vector's last word: N − (in_words − 1)·K
#                        (binary conv: in each tap's last word)
# bytes 6-7   m_tiles    output tiles: ceil(M / P)
# bytes 8-9   w_base     first weight word (per row bank) of the layer
# bytes 10-11 t_base     first threshold entry (per row bank) of the layer
# bytes 12-13 out_words  words per output vector: ceil(m_tiles·P / K) (threshold layers;
#                        conv: per output pixel)
# Conv only (0 in a dense descriptor); the compiler computes every product, so the
# sequencer needs no multiplier (docs/conv.md, "Addressing"):
# bytes 14-15 groups     column groups of output pixels: ceil(H·W / Q)
# byte 16     height H   of the input (= output) image
# byte 17     width W
# bytes 18-19 pix_words  words per input pixel: ceil(C_in / K) (binary conv)
# bytes 20-21 row_words  W·pix_words: one image row of the input
# bytes 22-23 out_units  output pixels written: H·W, or (H/2)·(W/2) pooled windows
# bytes 24-25 step_words how far a column's pixel moves per group, in words, within a row
# bytes 26-27 wrap_words the same when it wraps to the next row (mod 2^16)
# bytes 28-31 reserved   0
OP_NONE = 0
OP_DENSE = 1
OP_CONV3X3 = 2   # 3×3, stride 1, padding PAD_BIT; columns are output pixels (docs/conv.md)
OP_MAXPOOL = 3   # reserved: pools are fused into the conv before them (FLAG_POOL)

#: The op byte's fields, least significant first: (name, bits); the rest of the byte is 0.
OP_FIELDS = (("kind", 2), ("unsigned", 1), ("raw", 1), ("last", 1), ("pool", 1))


def _op_flag(name):
    """The op-byte mask of the one-bit field ``name`` of :data:`OP_FIELDS`."""
    offset = 0
    for field, bits in OP_FIELDS:
        if field == name:
            assert bits == 1, field
            return 1 << offset
        offset += bits
    raise KeyError(name)


FLAG_UNSIGNED = _op_flag("unsigned")   # 1 << 2
FLAG_RAW = _op_flag("raw")             # 1 << 3
FLAG_LAST = _op_flag("last")           # 1 << 4
FLAG_POOL = _op_flag("pool")           # 1 << 5

# The fields after the op and input_bits bytes: (name, bytes).
_FIELDS = (("in_words", 2), ("last_bits", 2), ("m_tiles", 2), ("w_base", 2), ("t_base", 2),
           ("out_words", 2), ("groups", 2), ("height", 1), ("width", 1), ("pix_words", 2),
           ("row_words", 2), ("out_units", 2), ("step_words", 2), ("wrap_words", 2))
#: Every field of a descriptor in byte order: (name, bytes); the rest up to DESC_BYTES is
#: reserved (0). The encoder below and the gateware's descriptor layout are built from it.
DESCRIPTOR_FIELDS = (("op", 1), ("input_bits", 1)) + _FIELDS


def encode_descriptor(op, input_bits, in_words, last_bits, m_tiles, w_base, t_base, out_words,
                      **conv):
    """The 32 descriptor bytes (see the layout above); ``conv`` holds the conv-only fields
    (``groups``, ``height``, ``width``, ``pix_words``, ``row_words``, ``out_units``,
    ``step_words``, ``wrap_words``; missing ones are 0)."""
    vals = dict(in_words=in_words, last_bits=last_bits, m_tiles=m_tiles, w_base=w_base,
                t_base=t_base, out_words=out_words)
    unknown = set(conv) - {name for name, _ in _FIELDS}
    if unknown:
        raise ValueError(f"unknown descriptor fields {sorted(unknown)}")
    vals.update(conv)
    out = bytes([op, input_bits])
    for name, size in _FIELDS:
        v = vals.get(name, 0)
        if not 0 <= v < 1 << (8 * size):
            raise ValueError(f"descriptor field {name}={v} does not fit {8 * size} bits")
        out += v.to_bytes(size, "little")
    return out + bytes(DESC_BYTES - len(out))


def decode_descriptor(data):
    """Inverse of :func:`encode_descriptor`, as a dict."""
    d = {"op": data[0], "input_bits": data[1]}
    pos = 2
    for name, size in _FIELDS:
        d[name] = int.from_bytes(data[pos:pos + size], "little")
        pos += size
    return d


def window_bits(name):
    """log2 of the size of window ``name`` (:data:`WINDOWS`): the offset bits below it."""
    return (WINDOWS[name][1] - 1).bit_length()


def interleave(name, config):
    """``(unit_bytes, banks)`` of a region: its byte offset is ``(word·banks + bank)·unit_bytes
    + byte`` (one linear array for the host, word-interleaved over the banks)."""
    word_bytes = config.K // 8
    return {"page0": (REG_BYTES, 1), "layer_cycles": (REG_BYTES, 1), "desc": (REG_BYTES, 1),
            "thr": (REG_BYTES, config.P), "out": (REG_BYTES, config.P),
            "in": (word_bytes, config.Q), "w": (word_bytes, config.P)}[name]


def region_of(addr, config):
    """The region (a key of :func:`regions`) that byte address ``addr`` maps to, or None if
    unmapped: the reference the core's decoder is tested against."""
    for name, (base, size, _) in regions(config).items():
        if name == "regs":
            size = REG_END
        if base <= addr < base + size:
            return name
    return None


def regions(config):
    """{name: (base, used size in bytes, access)} for a build with ``config``."""
    wb = config.K // 8
    return {
        "regs": (0, 0x100, "rw"),
        "layer_cycles": (LAYER_CYCLES_BASE, 4 * config.desc_depth, "ro"),
        "desc": (DESC_BASE, DESC_BYTES * config.desc_depth, "rw-idle"),
        "thr": (THR_BASE, 4 * config.P * config.thr_depth, "rw-idle"),
        "in": (IN_BASE, wb * config.Q * config.in_depth, "rw-idle"),
        "w": (W_BASE, wb * config.P * config.w_depth, "rw-idle"),
        "out": (OUT_BASE, 4 * config.P * config.out_depth, "ro"),
    }


def check_fits(config):
    """Raise ValueError when a region of ``config`` overflows its window."""
    windows = {name: size for name, (_, size) in WINDOWS.items()}
    windows["layer_cycles"] = PAGE_BYTES - LAYER_CYCLES_BASE    # page 0, after the registers
    for name, (base, size, _) in regions(config).items():
        if name in windows and size > windows[name]:
            raise ValueError(f"{name} region of {config} needs {size} bytes, "
                             f"its window has {windows[name]}")


def config_registers(config):
    """{register offset: value} of the registers that describe the build (CONFIG, DEPTHS_*);
    the inverse of :func:`config_from_registers`."""
    return {
        REG_CONFIG: (config.P | config.Q << 8 | (config.K.bit_length() - 1) << 16
                     | config.acc_width << 24),
        REG_DEPTHS_W_IN: config.w_depth | config.in_depth << 16,
        REG_DEPTHS_ACT_OUT: config.act_depth | config.out_depth << 16,
        REG_DEPTHS_THR_DESC: (config.thr_depth | config.desc_depth << 16
                              | (config.row_groups.bit_length() - 1) << 24
                              | config.issue_reg << 30 | config.conv << 31),
    }


def config_from_registers(config_word, depths_w_in, depths_act_out, depths_thr_desc):
    """The build's :class:`xnorflow.hw.config.ArrayConfig` from the registers CONFIG and DEPTHS_*."""
    from xnorflow.hw.config import ArrayConfig
    lo, hi = (lambda w: w & 0xFFFF), (lambda w: w >> 16 & 0xFFFF)
    return ArrayConfig(P=config_word & 0xFF, Q=config_word >> 8 & 0xFF,
                       K=1 << (config_word >> 16 & 0xFF), acc_width=config_word >> 24 & 0xFF,
                       w_depth=lo(depths_w_in), in_depth=hi(depths_w_in),
                       act_depth=lo(depths_act_out), out_depth=hi(depths_act_out),
                       thr_depth=lo(depths_thr_desc), desc_depth=hi(depths_thr_desc) & 0xFF,
                       row_groups=1 << (depths_thr_desc >> 24 & 0xF),
                       issue_reg=depths_thr_desc >> 30 & 1, conv=depths_thr_desc >> 31)
