"""Network nemeses: a toxic on one link, or the link down, as ``Fault`` data.

The fault proxy on each link (``Target.proxy(link)``) does the work; a fault only
says what to switch on at the start of a fault window and off at its end, and what
must hold meanwhile (the invariant of ``../shared/DESIGN.md`` the link's fault tests).
"""

from __future__ import annotations

from typing import Any

from conformance.nemesis.base import Fault
from conformance.nemesis.proxy.toxics import parse_toxic


def expectation(link: str) -> str:
    """What must hold while ``link`` is faulty, in words."""
    if link.endswith("-xds"):
        return ("I-1: the data plane serves as before on its last-known-good config and "
                "re-syncs once the link heals")
    if link.endswith("-sink"):
        return ("I-7: latency and memory bounds unchanged by the faulty telemetry link; "
                "I-11: decision-log entries delivered once it heals, none lost")
    if link.startswith("envoy-"):
        return f"I-5: only the tenants of {link.removeprefix('envoy-')} see errors"
    return "the planes on either side of the link stay within their invariants"


def toxic(target: Any, link: str, kind: str, *, direction: str = "downstream",
          toxicity: float = 1.0, expect: str | None = None, **attributes: int) -> Fault:
    """``kind`` with ``attributes`` on ``link`` for the fault window. The toxic is
    validated now (ToxicError), so a bad schedule fails before the run starts."""
    name = f"nemesis-{kind}-{direction}"
    parse_toxic({"name": name, "kind": kind, "direction": direction, "toxicity": toxicity,
                 "attributes": attributes})

    def inject() -> None:
        target.proxy(link).add(kind, name=name, direction=direction, toxicity=toxicity,
                               **attributes)

    def repair() -> None:
        target.proxy(link).remove(name)

    return Fault(name=f"toxic:{link}:{kind}", inject=inject, repair=repair,
                 expect=expect or expectation(link))


def down(target: Any, link: str, *, expect: str | None = None) -> Fault:
    """``link`` down (connections cut, new ones refused) for the fault window."""
    return Fault(name=f"down:{link}", inject=lambda: target.proxy(link).disable(),
                 repair=lambda: target.proxy(link).enable(), expect=expect or expectation(link))
