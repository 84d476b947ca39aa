"""Waiting by polling, for unit tests that drive real servers and processes.

The one polling loop is ``conformance.harness.waiting.poll`` (the e2e tests and
the conformance suite use it); this names its arguments the way these tests read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from a1.launcher import free_ports
from conformance.harness.waiting import poll


def wait_until(predicate: Callable[[], Any], what: str = "condition",
               timeout: float = 20.0, interval: float = 0.02) -> Any:
    """``predicate()``'s first truthy value; NotConverged (an AssertionError) at ``timeout``."""
    return poll(predicate, timeout=timeout, interval=interval, what=what)


def free_port() -> int:
    """A loopback TCP port the kernel just handed out."""
    return free_ports(1)[0]
