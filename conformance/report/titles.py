"""The invariants' titles, as ``../shared/DESIGN.md``'s table names them.

Kept here, in one place, until the checkers' registry carries titles; the YAML,
JUnit and HTML outputs all read ``title()`` so a rename touches one line.
"""

from __future__ import annotations

TITLES: dict[str, str] = {
    "I-1": "Control-plane outage",
    "I-2": "Governance outage",
    "I-3": "No synchronous dependency",
    "I-4": "Config churn",
    "I-5": "Blast radius",
    "I-6": "Fail closed",
    "I-7": "Telemetry is fire-and-forget",
    "I-8": "Bad config is rejected",
    "I-9": "Minimal movement",
    "I-10": "Propagation and staged rollout",
    "I-11": "Nothing lost",
}


def title(invariant: str) -> str:
    """The invariant's title; an unknown id (a user's own checker) is its own title."""
    return TITLES.get(invariant, invariant)


def order(invariant: str) -> tuple[int, str]:
    """Sort key: I-2 before I-10, unknown ids after the known ones."""
    head, _, num = invariant.partition("-")
    return (int(num), head) if head == "I" and num.isdigit() else (1 << 30, invariant)
