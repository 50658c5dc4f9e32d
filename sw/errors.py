"""User-facing errors: the CLI prints their message (no traceback) and exits with status 2."""


class XnorflowError(Exception):
    """An error whose message tells the user what is wrong and where (file, layer, field)."""
