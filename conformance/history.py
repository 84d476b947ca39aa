"""The recorded history of a conformance run: every operation, fault and window.

A history is JSON Lines (``docs/conformance.md`` documents the format), one event
per line, so a failed run's ``history.jsonl`` can be replayed through the checkers
offline (``a1 conformance --check HISTORY``). Times are seconds since the run's clock
started, once the stack was up (monotonic), so events from the load threads and the
nemesis order correctly.

Event kinds (the ``type`` field):

- ``meta``: the first line: run id, seed, profile, implementation and version.
- ``window``: a named span of one scenario: ``control`` (no fault), ``fault``
  (a fault injected), ``recovery`` (repaired, converging).
- ``fault``: a nemesis action: ``inject`` or ``repair`` of a named fault.
- ``op``: one client operation: a request and its outcome.
- ``observation``: a measured value (a metric, a status field, a cell table) a
  checker needs besides the operations, e.g. the sidecar's RSS during a window.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from policies.core.errors import UserError

FORMAT_VERSION = 1
MAX_LINE = 1 << 20  # bytes: a longer line is a corrupt history, not an event
MAX_HISTORY_BYTES = 1 << 30  # a run's events, as JSON; a full profile writes ~25 MiB
TRUNCATED = "history_truncated"  # the observation a bounded Recorder ends with


@dataclass(frozen=True, slots=True)
class Op:
    """One request through the edge (or straight to a cell, for misroute probes).

    ``f`` is ``read`` (GET a tenant's items), ``write`` (POST one item whose body is
    ``value``), ``readback`` (the post-run read of a tenant's items; ``value`` then
    lists the item values found), ``probe`` (a request that must be refused: no
    token, a foreign tenant, a role it lacks; ``authorized`` is False) or ``misroute``
    (sent to a cell that does not own the tenant; must get 421).
    """

    scenario: str
    f: str
    tenant: str
    group: str  # the tenant group a checker compares (e.g. "victim", "bystander")
    invoke: float
    complete: float
    status: int | None  # None: no HTTP response (``error`` says why)
    expected_cell: str | None = None
    observed_cell: str | None = None  # the x-a1-cell response header
    policy_version: str | None = None  # the x-a1-policy-version response header
    authorized: bool = True  # False: the request must never succeed
    value: Any = None
    error: str | None = None
    type: str = "op"

    @property
    def latency(self) -> float:
        return self.complete - self.invoke

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Window:
    scenario: str
    name: str  # control | fault | recovery
    start: float
    end: float
    type: str = "window"

    def holds(self, op: Op) -> bool:
        """``op`` belongs to this window. The ``control`` window (the baseline) holds only
        ops that also completed in it; the ``fault`` window every op that overlapped it,
        so one in flight when the fault went in is judged by the fault, never by no
        window; any other window, the ops invoked in it."""
        if self.name == "control":
            return self.start <= op.invoke and op.complete <= self.end
        if self.name == "fault":
            return op.invoke < self.end and op.complete >= self.start
        return self.start <= op.invoke < self.end


@dataclass(frozen=True, slots=True)
class FaultEvent:
    scenario: str
    fault: str  # the fault's name, e.g. "kill:cell-2"
    action: str  # inject | repair
    t: float
    expect: str = ""  # the expected outcome, in words, for the report
    type: str = "fault"


@dataclass(frozen=True, slots=True)
class Observation:
    scenario: str
    name: str
    t: float
    value: Any
    type: str = "observation"


@dataclass(frozen=True, slots=True)
class Meta:
    run_id: str
    seed: int
    profile: str
    implementation: str
    version: str
    started_at: str  # ISO 8601, wall clock
    runtime: str = "process"
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    type: str = "meta"


Event = Op | Window | FaultEvent | Observation | Meta
_KINDS: dict[str, type] = {"op": Op, "window": Window, "fault": FaultEvent,
                           "observation": Observation, "meta": Meta}


class HistoryError(UserError):
    """A history file that cannot be read: names the file and line (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


def to_json(event: Event) -> str:
    return json.dumps(asdict(event), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str)


def from_json(line: str, where: str = "history") -> Event:
    try:
        doc = json.loads(line)
    except RecursionError:
        raise HistoryError(f"{where}: JSON nested too deeply") from None
    except ValueError as err:
        raise HistoryError(f"{where}: not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise HistoryError(f"{where}: an event is a JSON object")
    kind = _KINDS.get(doc.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise HistoryError(f"{where}: type: unknown event type {doc.get('type')!r}")
    try:
        event = kind(**doc)
    except TypeError as err:
        raise HistoryError(f"{where}: {doc['type']} event: {err}") from None
    for f in fields(kind):
        why = _type_error(f.type, getattr(event, f.name))
        if why:
            raise HistoryError(f"{where}: {doc['type']}.{f.name}: {why}")
    return event  # type: ignore[no-any-return]


_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                         "bool": (bool,)}


def _type_error(annotation: Any, value: Any) -> str | None:
    """Why ``value`` does not fit a field's annotation (as written: "float | None")."""
    parts = [p.strip() for p in str(annotation).split("|")]
    if value is None:
        return None if "None" in parts or "Any" in parts else "must not be null"
    for part in parts:
        base = part.split("[", 1)[0]
        if base == "Any":
            return None
        if base == "dict" and isinstance(value, dict):
            return None
        want = _SCALARS.get(base)
        if want and isinstance(value, want) and (base == "bool" or not isinstance(value, bool)):
            return None
    return f"expected {annotation}, got {type(value).__name__}"


@dataclass
class History:
    """Events in the order recorded; filters are what checkers ask."""

    events: list[Event] = field(default_factory=list)

    @property
    def meta(self) -> Meta | None:
        return next((e for e in self.events if isinstance(e, Meta)), None)

    def ops(self, scenario: str | None = None, window: str | None = None,
            f: str | None = None, group: str | None = None) -> list[Op]:
        """Operations, optionally of one scenario, held by one of its windows
        (``Window.holds``)."""
        spans = self.windows(scenario, window) if window else None
        out = []
        for e in self.events:
            if not isinstance(e, Op):
                continue
            if scenario is not None and e.scenario != scenario:
                continue
            if f is not None and e.f != f:
                continue
            if group is not None and e.group != group:
                continue
            if spans is not None and not any(w.holds(e) for w in spans):
                continue
            out.append(e)
        return out

    def windows(self, scenario: str | None = None, name: str | None = None) -> list[Window]:
        return [e for e in self.events if isinstance(e, Window)
                and (scenario is None or e.scenario == scenario)
                and (name is None or e.name == name)]

    def faults(self, scenario: str | None = None) -> list[FaultEvent]:
        return [e for e in self.events if isinstance(e, FaultEvent)
                and (scenario is None or e.scenario == scenario)]

    def observations(self, scenario: str | None = None,
                     name: str | None = None) -> list[Observation]:
        return [e for e in self.events if isinstance(e, Observation)
                and (scenario is None or e.scenario == scenario)
                and (name is None or e.name == name)]

    def scenarios(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.events:
            if not isinstance(e, Meta):
                seen.setdefault(e.scenario, None)
        return list(seen)

    @classmethod
    def load(cls, path: Path) -> History:
        """Read a history file; HistoryError names the file and line of a bad event."""
        try:
            with path.open("rb") as fh:
                return cls(list(_read(fh, str(path))))
        except OSError as err:
            raise HistoryError(f"{path}: cannot read: {err.strerror}") from None


def _read(fh: IO[bytes], name: str) -> Iterator[Event]:
    for n, raw in enumerate(fh, 1):
        where = f"{name}:{n}"
        if len(raw) > MAX_LINE:
            raise HistoryError(f"{where}: line longer than {MAX_LINE} bytes")
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            raise HistoryError(f"{where}: not UTF-8") from None
        if line.strip():
            yield from_json(line, where)


class Recorder:
    """Appends events to a history in memory and, line by line, to a JSONL file.

    Thread-safe: the load threads, the nemesis and the runner record concurrently.
    Each line is flushed as written, so a run that dies leaves a readable history.
    Bounded: past ``max_bytes`` of events it records one ``history_truncated``
    observation and nothing more, which fails the run's verdict (``runner.judge``):
    a run too long to keep is not judged on part of its evidence.
    """

    def __init__(self, path: Path | None = None, max_bytes: int = MAX_HISTORY_BYTES) -> None:
        self.history = History()
        self.max_bytes = max_bytes
        self.bytes = 0
        self.truncated = False
        self._lock = threading.Lock()
        self._fh = path.open("w", encoding="utf-8") if path else None

    def record(self, event: Event) -> None:
        line = to_json(event) + "\n"
        with self._lock:
            if self.truncated:
                return
            if self.bytes + len(line) > self.max_bytes:
                self.truncated = True
                t = getattr(event, "t", None) or getattr(event, "invoke", 0.0)
                event = Observation("*", TRUNCATED, float(t), self.max_bytes)
                line = to_json(event) + "\n"
            self.bytes += len(line)
            self.history.events.append(event)
            if self._fh:
                self._fh.write(line)
                self._fh.flush()

    def extend(self, events: Iterable[Event]) -> None:
        for e in events:
            self.record(e)

    def close(self) -> None:
        with self._lock:
            if self._fh:
                self._fh.close()
                self._fh = None
