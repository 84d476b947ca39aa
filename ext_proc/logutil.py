"""One line per event on stderr, and no log flood from the request path."""

from __future__ import annotations

import logging
import threading
import time


def describe(err: BaseException) -> str:
    """``Type: message`` on one line (a traceback would span many)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class RateLimited:
    """Logs at most one line per ``interval`` seconds per key; says how many it skipped.

    A broken policy fails every request; the deny is counted in metrics, so the log
    only needs to say so once a second, not 50,000 times.
    """

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self._interval:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return
            self._last[key] = now
            skipped = self._skipped.pop(key, 0)
        if skipped:
            msg += f" (and {skipped} more since the last report)"
        self._logger.log(level, msg, *args)
