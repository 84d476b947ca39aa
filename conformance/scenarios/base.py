"""A scenario: one fault against the running target, the windows around it, its checker.

Scenarios are data: the invariant they prove, how to build the fault from the live
target, how long each window lasts, which tenants form which group, and hooks to
record observations a checker needs besides the operations (a resync time, a cell
table, a memory sample). The runner (``conformance.runner``) plays them; the
checker registry (``conformance.checkers.registry``) judges them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.load import Mix
from conformance.nemesis.base import Fault

if TYPE_CHECKING:
    from conformance.runner import Run


@dataclass(frozen=True)
class Windows:
    control: float = 5.0  # seconds of steady load before the fault
    fault: float = 8.0  # seconds the fault lasts
    recovery: float = 30.0  # the bound on convergence after the repair
    settle: float = 2.0  # seconds of load kept after convergence, in the recovery window


Hook = Callable[["Run"], None]


@dataclass(frozen=True)
class Scenario:
    id: str  # "I-5/kill-cell": the invariant, then the fault
    title: str  # what the scenario shows, for the progress line
    fault: Callable[[Run], Fault]
    windows: Windows = Windows()
    profiles: tuple[str, ...] = ("quick", "full")
    # "victim"/"bystander" split by the cell a fault hits; None: one group, "all".
    victim_cell: Callable[[Run], str] | None = None
    # No positive decision can exist while the fault lasts (the decision point is
    # down): every op sent in the fault window is marked authorized=False (I-6).
    no_decisions: bool = False
    after_inject: Hook | None = None  # record observations once the fault is in
    after_repair: Hook | None = None
    sample: dict[str, Callable[[Run], Any]] = field(default_factory=dict)  # polled
    mix: Mix | None = None  # None: the runner's default mix of operations

    @property
    def invariant(self) -> str:
        """The invariant the scenario proves: its id's prefix (``I-5``), as ``judge`` reads it."""
        return self.id.split("/", 1)[0]
