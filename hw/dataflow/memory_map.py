"""Byte address map of the dataflow core (docs/dataflow.md, "Address map"); plain Python.

The host driver and the gateware (:mod:`xnorflow.hw.dataflow.core`) both take every address from here.
Registers are 32-bit little-endian words. The input and output ports are windows: every
byte written anywhere in ``[IN_BASE, IN_BASE + PORT_WINDOW)`` is the next input byte, every
byte read anywhere in the output window is the next output byte (a WRITE or READ frame
addresses consecutive bytes, so one frame moves up to a payload of bytes).

Engine memories: engine ``e``'s memory ``sel`` (:class:`~xnorflow.hw.dataflow.shape.MvuShape`'s write
selects: PE ``p``'s weights at ``p``, its channel constants at ``P + p``) holds words of
``word_bytes[e]`` bytes (the memory's width rounded up to a power of two of bytes; the
bytes past the width are written and ignored); word ``a``'s byte ``b`` is at::

    W_BASE + (e << engine_shift) + (sel << select_shift(e)) + (a << word_shift(e)) + b

(each engine's select field sits just above its own deepest memory, so a build whose engines
differ widely in depth and width, a CNV's, still fits the window).

A word is written into the memory when its last byte (``b = word_bytes(e) − 1``) arrives, so
the host writes whole words, lowest byte first (one WRITE frame of consecutive bytes does).
"""
from dataclasses import dataclass

__all__ = ["REG_ID", "REG_CTRL", "REG_COUNT", "REG_STATUS", "REG_ERROR", "REG_TOTAL_CYCLES",
           "REG_LATENCY", "REG_INTERVAL", "REG_IMAGES_DONE", "REG_IN_FREE", "REG_OUT_LEVEL",
           "REG_ENGINES", "REG_END", "ENGINE_BUSY_BASE", "IN_BASE", "OUT_BASE", "PORT_WINDOW",
           "W_BASE", "ID_VALUE", "CTRL_START", "CTRL_ABORT", "STATUS_BUSY", "STATUS_DONE",
           "STATUS_ERROR", "ERR_NONE", "ERR_COUNT", "ERR_ABORTED", "ERROR_NAMES", "MemoryLayout", "layout"]

REG_ID = 0x000            # RO  ID_VALUE ("XDF1")
REG_CTRL = 0x008          # W   byte 0: CTRL_START starts a run of COUNT images, CTRL_ABORT
                          #     empties the pipeline and the FIFOs (any time); reads 0
REG_COUNT = 0x00C         # RW  images of the next run (16 bits used)
REG_STATUS = 0x010        # RO  STATUS_* bits
REG_ERROR = 0x014         # RO  ERR_* of the last run
REG_TOTAL_CYCLES = 0x018  # RO  cycles from START to the last image's last output beat (run)
REG_LATENCY = 0x01C       # RO  cycles from START to the first image's last output beat
REG_INTERVAL = 0x020      # RO  cycles between the last two images' last output beats
REG_IMAGES_DONE = 0x024   # RO  images of the run whose results are complete
REG_IN_FREE = 0x028       # RO  input beats the input FIFO can take now
REG_OUT_LEVEL = 0x02C     # RO  output beats waiting in the output FIFO
REG_ENGINES = 0x030       # RO  number of engines
REG_END = 0x034
ENGINE_BUSY_BASE = 0x100  # RO  engine e's busy cycles of the run (weight words consumed)

IN_BASE = 0x010000
OUT_BASE = 0x020000
PORT_WINDOW = 0x010000
W_BASE = 0x800000

ID_VALUE = int.from_bytes(b"XDF1", "little")
CTRL_START = 0x01
CTRL_ABORT = 0x02
STATUS_BUSY = 0x01
STATUS_DONE = 0x02
STATUS_ERROR = 0x04
ERR_NONE = 0
ERR_COUNT = 1       # START with COUNT = 0 or not whole groups of the MMV engines
ERR_ABORTED = 2     # the run was aborted by CTRL_ABORT
#: what the host says for each REG_ERROR code
ERROR_NAMES = {ERR_NONE: "none", ERR_COUNT: "COUNT is 0 or not a multiple of the MMV group", ERR_ABORTED: "aborted"}


def _ceil_log2(v):
    return max(0, (v - 1).bit_length())


@dataclass(frozen=True)
class MemoryLayout:
    """Where engine memories sit in the weight window of one build (see the module text)."""

    engine_shift: int
    select_shifts: tuple  # per engine
    word_shifts: tuple    # per engine
    word_bytes: tuple     # per engine
    depths: tuple         # per engine: the deepest memory's words

    def address(self, engine, select, word, byte=0):
        return (W_BASE + (engine << self.engine_shift) + (select << self.select_shifts[engine])
                + (word << self.word_shifts[engine]) + byte)


def layout(config):
    """The :class:`MemoryLayout` of a :class:`xnorflow.hw.dataflow.config.DataflowConfig`; ValueError
    when the build's memories do not fit the 8 MiB weight window."""
    shapes = [e.shape for e in config.engines]
    # A word's slot is a power of two of bytes and every byte of it is written (bytes past
    # the memory's width are ignored), so a whole memory is one run of consecutive bytes.
    word_shifts = tuple(_ceil_log2(-(-s.write_data_width // 8)) for s in shapes)
    word_bytes = tuple(1 << ws for ws in word_shifts)
    depths = tuple(s.weight_depth for s in shapes)
    select_shifts = tuple(_ceil_log2(d) + ws for d, ws in zip(depths, word_shifts))
    engine_shift = max(ss + _ceil_log2(s.selects) for ss, s in zip(select_shifts, shapes))
    if _ceil_log2(len(shapes)) + engine_shift > 23:
        raise ValueError(f"the engine memories of {config.format()} need "
                         f"{1 << (_ceil_log2(len(shapes)) + engine_shift)} bytes of address "
                         f"space; the weight window has {1 << 23}")
    return MemoryLayout(engine_shift, select_shifts, word_shifts, word_bytes, depths)
