"""Register helpers shared by the core's blocks: delay chains, and register replicas that
synthesis keeps apart."""
from amaranth.hdl import ResetInserter, Signal

__all__ = ["delay", "REPLICA_MARK", "replica", "reset_by_replica"]


def delay(m, sig, n, name):
    """``sig`` delayed by ``n`` cycles through a register chain in ``m`` (n = 0: ``sig``)."""
    for k in range(n):
        d = Signal.like(sig, name=f"{name}_d{k + 1}")
        m.d.sync += d.eq(sig)
        sig = d
    return sig


#: What a replica register's name contains. Yosys merges registers with the same inputs
#: (opt_merge), so copies of one register meant to sit near different consumers collapse
#: into the one they copy, and its net reaches every consumer again (the ECP5 SFC builds: the
#: per-PE weight-address registers were one register per engine in the netlist). The ECP5
#: synthesis script marks every flip-flop driving a wire whose name contains this ``keep``
#: (sw/synth.py), which opt_merge leaves alone; nextpnr then places each copy by its loads.
REPLICA_MARK = "_dup"


def replica(name):
    """The name of a register that copies another for fan-out (see :data:`REPLICA_MARK`)."""
    return f"{name}{REPLICA_MARK}"


def reset_by_replica(m, block, reset, name):
    """``block`` reset at the end of the cycle after ``reset``, from a replica register of its
    own (``name_abort``): one short reset net per block instead of one across the die."""
    held = Signal(name=replica(f"{name}_abort"))
    m.d.sync += held.eq(reset)
    return ResetInserter(held)(block)
