"""What a checker returns: the verdict, its statistic, its bounds and what it measured.

A checker is a pure function of a recorded history (``conformance.history``), so a
failed run replays offline through the same code. Every result states the statistic
used and the bounds it was held to, and the measured values next to them, so the
report shows evidence rather than a bare pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    invariant: str  # "I-1" .. "I-11"
    scenario: str
    passed: bool
    statistic: str  # the test or count used, in words
    bounds: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    detail: str = ""  # why it failed, naming the operations or windows
    skipped: str | None = None  # why it did not run (then ``passed`` is False)

    @property
    def outcome(self) -> str:
        return "skipped" if self.skipped else ("passed" if self.passed else "failed")
