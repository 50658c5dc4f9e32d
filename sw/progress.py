"""Progress on stderr for long steps: a live bar on a terminal, sparse plain lines elsewhere.

A tqdm bar redraws with carriage returns; written to a log file or a pipe that becomes one
enormous line of frames. :func:`progress_bar` therefore draws tqdm only when the stream is a
terminal and otherwise prints a whole line at most every ``interval`` seconds (and at the end).
"""
import sys
import time


class LineProgress:
    """The non-terminal stand-in for a tqdm bar (``update``, ``set_postfix_str``, ``close``,
    context manager): one ``desc: n/total unit (rate)`` line per ``interval`` seconds."""

    def __init__(self, total=None, desc="", unit="it", file=None, interval=10.0, initial=0):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.interval, self.n, self.postfix = interval, initial, ""
        self._start = self._last = time.monotonic()
        self._initial = initial
        self._closed = False

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def set_description(self, desc, refresh=True):
        self.desc = desc

    def _print(self, now):
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        elapsed = now - self._start
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit} ({elapsed:.0f} s, {rate:.1f} {self.unit}/s{tail})",
              file=self.file, flush=True)

    def close(self):
        if not self._closed:
            self._closed = True
            self._print(time.monotonic())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class _Disabled:
    """A bar that prints nothing (``disable=True``)."""

    def __init__(self, *a, **k):
        self.n = k.get("initial", 0)

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, *a, **k):
        pass

    def set_description(self, *a, **k):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(total=None, desc="", unit="it", file=None, disable=False, interval=10.0, initial=0,
                 leave=False):
    """A tqdm bar on a terminal, :class:`LineProgress` otherwise, nothing if ``disable``."""
    file = file if file is not None else sys.stderr
    if disable:
        return _Disabled(initial=initial)
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=file, leave=leave, initial=initial)
    return LineProgress(total=total, desc=desc, unit=unit, file=file, interval=interval, initial=initial)
