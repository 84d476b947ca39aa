"""Live progress counters: per group, ops and unexpected outcomes in the last second.

For the progress line only (checkers judge the recorded history, not these).
O(1) memory per group: the current and the previous second's counts and totals.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from conformance.history import Op


def unexpected(op: Op) -> bool:
    """An outcome that is not what the op expects, for the live error rate.

    A misroute expects 421; any other op marked ``authorized=False`` expects a
    refusal (a response that is not 2xx); every other op expects 2xx.
    """
    if op.f == "misroute":
        return op.status != 421
    if not op.authorized:
        return op.status is None or op.ok
    return not op.ok


@dataclass(frozen=True)
class GroupStats:
    ops: int  # completed in the last whole second
    errors: int  # of those, unexpected outcomes
    total: int  # since start
    total_errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.ops if self.ops else 0.0


class _Seconds:
    __slots__ = ("errors", "ops", "prev_errors", "prev_ops", "prev_sec", "sec", "total",
                 "total_errors")

    def __init__(self) -> None:
        self.sec = self.prev_sec = -1
        self.ops = self.errors = self.prev_ops = self.prev_errors = 0
        self.total = self.total_errors = 0

    def add(self, sec: int, error: bool) -> None:
        if sec > self.sec:
            self.prev_sec, self.prev_ops, self.prev_errors = self.sec, self.ops, self.errors
            self.sec, self.ops, self.errors = sec, 0, 0
        if sec == self.sec:
            self.ops += 1
            self.errors += error
        elif sec == self.prev_sec:  # a late completion of the second before
            self.prev_ops += 1
            self.prev_errors += error
        self.total += 1
        self.total_errors += error

    def last(self, sec: int) -> tuple[int, int]:
        if sec == self.sec:
            return self.ops, self.errors
        if sec == self.prev_sec:
            return self.prev_ops, self.prev_errors
        return 0, 0


class LiveStats:
    """Counts completed ops per group by the second of their completion time."""

    def __init__(self) -> None:
        self._groups: dict[str, _Seconds] = {}
        self._lock = threading.Lock()

    def add(self, op: Op) -> None:
        with self._lock:
            self._groups.setdefault(op.group, _Seconds()).add(int(op.complete), unexpected(op))

    def snapshot(self, now: float) -> dict[str, GroupStats]:
        """Per group: the last whole second before ``now`` (run-clock seconds), and totals."""
        sec = int(now) - 1
        with self._lock:
            return {g: GroupStats(*c.last(sec), c.total, c.total_errors)
                    for g, c in self._groups.items()}
