"""sim/amaranth_transport.py: frames through the Amaranth simulation, alone and with the core."""
import pytest

from xnorflow.hw.link.testing import LinkWithMemory
from xnorflow.sim.amaranth_transport import AmaranthTransport
from xnorflow.sw import protocol as P
from xnorflow.sw.driver import TransportTimeout


def test_transport_over_link_and_test_memory():
    top = LinkWithMemory(mem_size=64, max_payload=32, timeout=30, addr_width=16)
    with AmaranthTransport(top, p_gap=0.2, p_stall=0.2, max_cycles=5000) as t:
        ident = P.Ident.decode(P.check_response(P.decode_response(t.transact(P.ident_request()))))
        assert ident.max_payload == 32 and ident.addr_width == 16
        rs = t.transact_many([P.write_request(3, b"abc"), P.read_request(2, 5),
                              P.read_request(70, 1)])
        rs = [P.decode_response(r) for r in rs]
        assert rs[0].ok and rs[1].payload == b"\0abc\0" and rs[2].status == P.Status.BUS_ERROR
        # a truncated frame: nothing comes back within the bound, then TIMEOUT arrives
        t.max_cycles = 10
        with pytest.raises(TransportTimeout):
            t.transact(P.ident_request()[:2])
        (late,) = t.receive(60)
        assert P.decode_response(late).status == P.Status.TIMEOUT
        t.max_cycles = 5000
        assert P.decode_response(t.transact(P.read_request(3, 3))).payload == b"abc"
        assert t.cycles > 0


SMALL = "2x2x8,w_depth=64,thr_depth=16,in_depth=64,act_depth=16,out_depth=64,desc_depth=4,acc_width=16"


def test_driver_runs_a_model_bit_exactly_through_the_amaranth_accelerator():
    import numpy as np
    from xnorflow.hw.config import ArrayConfig
    from xnorflow.hw.core import memory_map as mm
    from xnorflow.sw.driver import OverlayDevice
    from xnorflow.sw.random_models import random_inputs, random_model

    rng = np.random.default_rng(7)
    model = random_model(rng, [12, 6, 3], 2)
    x = random_inputs(rng, model, 3)
    with AmaranthTransport(config=SMALL, max_payload=128, p_gap=0.1, p_stall=0.1) as t:
        acc = OverlayDevice(t)
        assert acc.config == ArrayConfig.parse(SMALL)        # from the IDENT config bytes
        assert acc.read32(mm.REG_ID) == mm.ID_VALUE
        acc.load(model)
        ints, _ = acc.run(x, check=True)
        assert ints.shape == (3, 3)
