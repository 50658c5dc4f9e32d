"""The host link: framed commands over a byte stream to the register bus (docs/protocol.md)."""
from .hostlink import HostLink

__all__ = ["HostLink"]
