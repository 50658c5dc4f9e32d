"""The gateware's protocol constants equal xnorflow.sw.protocol's."""
from xnorflow.hw.link import defs
from xnorflow.sw import protocol as p


def test_constants_agree():
    assert (defs.REQ_SYNC, defs.RSP_SYNC) == (p.REQ_SYNC, p.RSP_SYNC)
    assert defs.PROTOCOL_VERSION == p.PROTOCOL_VERSION and defs.IDENT_MAGIC == p.IDENT_MAGIC
    for c in p.Cmd:
        assert getattr(defs.Cmd, c.name) == c.value
    for s in p.Status:
        assert getattr(defs.Status, s.name) == s.value
    assert defs.ident_block(256, 24, b"\x01\x02") == p.Ident(p.PROTOCOL_VERSION, 256, 24,
                                                             b"\x01\x02").encode()
