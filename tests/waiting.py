"""Waiting by polling, for tests that drive real servers and processes: never sleep-and-hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from a1.launcher import free_ports


def wait_until(predicate: Callable[[], Any], what: str = "condition",
               timeout: float = 20.0, interval: float = 0.02) -> Any:
    """``predicate()``'s first truthy value; AssertionError naming ``what`` at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A loopback TCP port the kernel just handed out."""
    return free_ports(1)[0]
