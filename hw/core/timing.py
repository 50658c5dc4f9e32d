"""The core's pipeline latencies and the cycles of a layer: their one definition.

The gateware is built from these numbers (the PE's popcount pipeline checks its depth against
:func:`popcount_latency`, the array's sums leave :func:`pe_latency` and :func:`drain_latency`
cycles after their last word, the column feed delays its sideband by :data:`MEMORY_READ`, the
threshold stage waits :data:`THRESHOLD_READ`), the sequencer waits :func:`write_delay` cycles
after a layer's last issue before it ends the layer, and the cycle model (``sw/layers/``,
``xnorflow.sw.program.predict_cycles``) and docs/core.md quote :func:`layer_cycles`. A layer counter
and its prediction therefore cannot drift apart; the core tests check them equal, and the
bit-exact outputs check that :func:`write_delay` really covers the last write.

The path of a tile's last word, from its issue to its last write (docs/core.md, "Cycle model"):

=========================  ==========================  =====================================
stage                      cycles                      where
=========================  ==========================  =====================================
issue register             ``issue_reg`` (0 or 1)      ArrayFeed (``ArrayConfig.issue_reg``)
memory read                :data:`MEMORY_READ`         every bank (registered read)
edge register              :data:`EDGE_REGISTER`       ArrayFeed, in front of the array
column skew                ``Q − 1``                   ArrayFeed (column ``j`` reads ``j`` late)
row groups                 ``row_groups − 1``          SystolicArray (one hop per group)
PE                         :func:`pe_latency`          PE (popcount, term, accumulator)
row drain                  :func:`drain_latency`       SystolicArray (registered OR-tree)
threshold read             :data:`THRESHOLD_READ`      ThresholdStage (read, data register)
compare                    :data:`THRESHOLD_COMPARE`   ThresholdUnit (registered)
=========================  ==========================  =====================================

Plain Python (no Amaranth import): the compiler, the cycle model and the driver use it
without the gateware.
"""
from xnorflow.hw.core.memory_map import DESC_WORDS

__all__ = ["MEMORY_READ", "EDGE_REGISTER", "THRESHOLD_READ", "THRESHOLD_COMPARE",
           "PE_REGISTERS", "LOAD", "DESC_FETCH", "popcount_latency", "pe_latency",
           "drain_latency", "write_delay", "layer_cycles"]

#: Every block RAM of the core reads in one cycle (address in, registered word out).
MEMORY_READ = 1
#: The registers between the banks and the array (block-RAM clock-to-out must not meet the
#: PE's XNOR and popcount in one cycle).
EDGE_REGISTER = 1
#: The threshold entry is addressed in the drain cycle, read (:data:`MEMORY_READ`) and its
#: word registered (clock-to-out must not meet the comparator's carry chain); the drained sum
#: waits as long to meet it.
THRESHOLD_READ = MEMORY_READ + 1
#: The threshold unit's registered compare.
THRESHOLD_COMPARE = 1
#: The PE's registers after its popcount: the term (2·popcount − pm) and the accumulator /
#: result register.
PE_REGISTERS = 2
#: Cycles a layer spends latching its descriptor before its first issue.
LOAD = 1
#: Extra cycles of a run's first layer: its descriptor is DESC_WORDS 32-bit words, the first
#: addressed in the start cycle, the others in the FETCH cycles; every later descriptor is read
#: during the previous layer's drain.
DESC_FETCH = DESC_WORDS - 1


def _log2(n):
    return n.bit_length() - 1


def popcount_latency(K):
    """Register stages of the PE's popcount of a K-bit word (K = 8·2^n): one after the 8-bit
    chunk counts, then one after every two adder levels of the tree over the K/8 chunks (and
    after the last)."""
    levels = _log2(K // 8)
    return 1 + (levels + 1) // 2


def pe_latency(K):
    """Cycles from a PE's inputs to its registered result: popcount, term, accumulate."""
    return popcount_latency(K) + PE_REGISTERS


def drain_latency(Q):
    """Register levels of each row's OR-tree that collects its Q PEs' finished sums."""
    return _log2(Q)


def write_delay(config):
    """Cycles from the issue of a layer's last word to the last write of its results (the
    table above); the sequencer's DRAIN lasts exactly this long."""
    return (config.issue_reg + MEMORY_READ + EDGE_REGISTER + (config.Q - 1)
            + (config.row_groups - 1) + pe_latency(config.K) + drain_latency(config.Q)
            + THRESHOLD_READ + THRESHOLD_COMPARE)


def layer_cycles(config, groups, m_tiles, words, first=False):
    """Cycles of one layer, exactly what its counter records::

        [DESC_FETCH if first] + LOAD + (groups·m_tiles − 1)·max(words, Q) + words + write_delay

    ``groups`` column groups (``ceil(B / Q)``; a conv's pixel groups), ``m_tiles`` output tiles
    of P channels, ``words`` words per tile (``in_words·input_bits``). A tile starts every
    ``max(words, Q)`` cycles (a row drains one value per cycle); the last tile needs its
    ``words`` issue cycles and then :func:`write_delay`.
    """
    fetch = DESC_FETCH if first else 0
    return (fetch + LOAD + (groups * m_tiles - 1) * max(words, config.Q) + words
            + write_delay(config))
