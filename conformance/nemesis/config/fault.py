"""The config fault's shape, and the spec-file edits every fault undoes byte for byte.

Each builder returns a ``ConfigFault`` (a ``Fault`` with two readings the I-8
checker needs): ``visible()`` says whether, and where, the rejection shows to an
operator (the control plane's status, the sidecar's metrics), and ``nacks()``
counts the NACKs of the rejected version against the subscriptions that could
NACK it, so a server that re-sends NACKed config is caught. ``repair`` takes both
readings just before it undoes the fault (``observed``), because some of them
live in a process the repair replaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.harness.waiting import NotConverged, poll
from conformance.nemesis.base import Fault, Target
from policies.core.errors import ConfigError, one_line

SPEC_FILE = "platform.yaml"
SETTLE = 20.0  # seconds inject waits for the fault to show (it never fails on it)
RECOVER = 60.0  # seconds repair waits for the stack to be back (NotConverged after)

Reading = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class ConfigFault(Fault):
    """A config fault, and how to see its rejection.

    ``visible()`` → (seen, where): the place an operator sees the rejection, and what
    it says. ``nacks()`` → {"nacks", "subscribers"}: NACKs of the rejected version
    since inject, and the (stream, type) subscriptions that could send one.
    ``affected_cells``: cells whose tenants are under the bad config (they may fail,
    closed); every other tenant must be served throughout. ``observed`` holds the
    ``rejection_visible`` and ``xds_nacks`` observation values, taken by ``repair``
    before it undoes the fault.
    """

    read_visible: Reading = lambda: (False, "not measured")
    read_nacks: Callable[[], tuple[int, int]] = lambda: (0, 0)
    affected_cells: tuple[str, ...] = ()
    observed: dict[str, Any] = field(default_factory=dict)

    def visible(self) -> tuple[bool, str]:
        try:
            return self.read_visible()
        except (OSError, ValueError, KeyError) as err:
            return False, f"cannot read: {one_line(err, 200)}"

    def nacks(self) -> dict[str, Any]:
        try:
            n, subs = self.read_nacks()
        except (OSError, ValueError, KeyError) as err:
            return {"fault": self.name, "nacks": None, "subscribers": None,
                    "error": one_line(err, 200)}
        return {"fault": self.name, "nacks": n, "subscribers": subs}

    def measure(self) -> dict[str, Any]:
        """Both observation values now: {"rejection_visible": ..., "xds_nacks": ...}."""
        seen, where = self.visible()
        return {"rejection_visible": {"fault": self.name, "visible": seen, "where": where},
                "xds_nacks": self.nacks()}

    def observations(self) -> list[tuple[str, Any]]:
        """(name, value) pairs to record: as measured at repair, else now."""
        values = self.observed or self.measure()
        return [(k, values[k]) for k in ("rejection_visible", "xds_nacks")]


def _unavailable(target: Target, *needs: str) -> str | None:
    names = target.launcher.names()
    missing = [n for n in needs if n not in names]
    if missing:
        return f"no {' or '.join(missing)} process in this stack (config from files, not xDS)"
    return None


def _make(name: str, expect: str, inject: Callable[[], None], undo: Callable[[], None],
          read_visible: Reading, read_nacks: Callable[[], tuple[int, int]],
          unavailable: str | None, affected: tuple[str, ...] = (),
          settled: Callable[[], bool] | None = None) -> ConfigFault:
    """A ConfigFault whose inject waits (bounded) until ``settled()`` (default: the
    rejection shows), and whose repair measures first, then runs ``undo``."""
    box: dict[str, ConfigFault] = {}

    def repair() -> None:
        fault = box["f"]
        fault.observed.clear()
        fault.observed.update(fault.measure())
        undo()

    def injected() -> None:
        box["f"].observed.clear()
        inject()
        done = settled or (lambda: box["f"].visible()[0])
        with contextlib.suppress(NotConverged):  # not showing is what the checker judges
            poll(done, timeout=SETTLE, interval=0.1, what=f"{name} to take effect")

    fault = ConfigFault(name=name, inject=injected, repair=repair, expect=expect,
                        unavailable=unavailable, read_visible=read_visible,
                        read_nacks=read_nacks, affected_cells=affected)
    box["f"] = fault
    return fault


def write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` at once (rename), keeping its mode: the watcher sees one change."""
    from control.spec.edit import write_atomic

    write_atomic(path, data)


class SavedFiles:
    """The exact bytes of files before a fault touched them; ``restore()`` puts them back."""

    def __init__(self) -> None:
        self.saved: dict[Path, bytes] = {}

    def write(self, path: Path, data: bytes) -> None:
        if path not in self.saved:
            self.saved[path] = path.read_bytes()
        write_file(path, data)

    def restore(self) -> None:
        for path, data in self.saved.items():
            if not path.exists() or path.read_bytes() != data:
                write_file(path, data)
        self.saved.clear()


def spec_document(spec_dir: Path) -> dict[str, Any]:
    """platform.yaml as plain values (the spec's own strict reader)."""
    from control.spec.yamldoc import parse

    path = spec_dir / SPEC_FILE
    doc, _, _ = parse(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a mapping")
    return doc


def dump_spec(doc: dict[str, Any]) -> bytes:
    """A spec document as YAML (comments of the original are not kept; repair restores
    the original bytes)."""
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
