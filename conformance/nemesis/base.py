"""Faults as data: what to inject, how to repair it, and what must hold meanwhile.

A nemesis is a function from a target to a ``Fault``. The generator injects it at
the start of a scenario's fault window and repairs it at the end; the history
records both (``FaultEvent``), with ``expect`` so the report can say what the
fault was meant to show. ``unavailable`` says why a fault cannot run here (not
root, no ``ip``): the scenario is then skipped with that reason, never passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from a1.launcher import Launcher


class Target(Protocol):
    """What nemeses act on: the stack under test (``conformance.harness.target``)."""

    launcher: Launcher  # processes by name: control, relay, envoy, sidecar, sink, cell-N
    state_dir: Path
    spec_dir: Path  # the platform spec directory the control plane watches

    def proxy(self, link: str) -> Any:
        """The fault proxy on ``link`` (``envoy-xds``, ``sidecar-xds``, ``sidecar-sink``,
        ``envoy-<cell>``): a ``conformance.nemesis.proxy.ProxyControl``."""
        ...


Action = Callable[[], None]


@dataclass(frozen=True)
class Fault:
    name: str  # e.g. "kill:cell-2", "toxic:envoy-xds:blackhole"
    inject: Action
    repair: Action
    expect: str  # the outcome the checker holds it to, in words
    unavailable: str | None = None  # why it cannot run here; None: it can


def combine(name: str, faults: list[Fault], expect: str) -> Fault:
    """Several faults as one: injected in order, repaired in reverse, every repair tried."""
    reasons = [f.unavailable for f in faults if f.unavailable]

    def inject() -> None:
        for f in faults:
            f.inject()

    def repair() -> None:
        errors: list[BaseException] = []
        for f in reversed(faults):
            try:
                f.repair()
            except Exception as err:  # repair the rest; report the first failure
                errors.append(err)
        if errors:
            raise errors[0]

    return Fault(name, inject, repair, expect, reasons[0] if reasons else None)
