# The sources' hashes are taken before any gateware module is imported (see source_snapshot).
from . import source_snapshot  # noqa: F401
