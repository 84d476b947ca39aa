"""The invariants' titles (from the checkers' registry) and their sort order.

The YAML, JUnit and HTML outputs all read ``title()``; the titles themselves live
once, on each checker (``conformance.checkers.registry``).
"""

from __future__ import annotations

from conformance.checkers.registry import CHECKERS

TITLES: dict[str, str] = {inv: c.title for inv, c in CHECKERS.items()}


def title(invariant: str) -> str:
    """The invariant's title; an unknown id (a user's own checker) is its own title."""
    return TITLES.get(invariant, invariant)


def order(invariant: str) -> tuple[int, str]:
    """Sort key: I-2 before I-10, unknown ids after the known ones."""
    head, _, num = invariant.partition("-")
    return (int(num), head) if head == "I" and num.isdigit() else (1 << 30, invariant)
