"""Convergence by polling: a condition checked until it holds or a bound passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotConverged(AssertionError):
    """A condition did not hold within its bound (a failed check, in pytest and in runs)."""


def poll(fn: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05,
         what: str = "condition") -> T:
    """Call ``fn`` until it returns something truthy; NotConverged after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise NotConverged(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
