"""Decision counters from many sidecars turned into increases, windows and rates.

Sidecars expose cumulative counters ``a1_policy_decisions_total{cell,version,result}``.
A counter restarts at zero when its sidecar restarts, and a version's label sets
vanish when the sidecar retires that version. The rollout needs, per (cell, version),
how many decisions of each result happened since a moment (a soak's start), summed
over every sidecar. ``CounterTracker`` keeps per-source last values and adds only
increases to per-(cell, version) totals, the way Prometheus' ``increase()`` does:

- a series' first sample is its baseline (what it counted before is not known to
  fall in any window, so it counts for none);
- a value below the last one is a reset: the whole new value is the increase. The
  three results of one (source, cell, version) reset together (one process), so a
  restart that caught up to an old value of one result still counts as a reset;
- a source that goes away keeps what it added; totals never go down.

Totals are then monotonic, and ``window(start)`` is ``totals - totals_at_start``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

RESULTS = ("allow", "deny", "error")
MAX_SERIES = 100_000  # (source, cell, version) last values kept, least recently seen go first


@dataclass(frozen=True)
class Counts:
    """Decisions by result (cumulative, or an increase over a window)."""

    allow: float = 0.0
    deny: float = 0.0
    error: float = 0.0

    @property
    def total(self) -> float:
        return self.allow + self.deny + self.error

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.allow + other.allow, self.deny + other.deny, self.error + other.error)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.allow - other.allow, self.deny - other.deny, self.error - other.error)

    def rates(self) -> tuple[float, float]:
        """(error rate, deny rate) = errors/total, denies/total; (0, 0) without traffic."""
        t = self.total
        return (self.error / t, self.deny / t) if t > 0 else (0.0, 0.0)

    def valid(self) -> bool:
        return all(math.isfinite(v) and v >= 0 for v in (self.allow, self.deny, self.error))


@dataclass(frozen=True)
class Sample:
    """One sidecar's cumulative counters for one (cell, version), as scraped.

    ``source`` names the sidecar instance (its metrics URL): resets are detected per
    source, and totals are summed over sources.
    """

    source: str
    cell: str
    version: str
    counts: Counts


CellVersion = tuple[str, str]


class CounterTracker:
    """Monotonic per-(cell, version) totals from cumulative per-source samples.

    Only versions in ``tracked`` are kept (the rollout's stable and candidate):
    ``track`` forgets the others, so memory is bounded by sources x cells x 2, and a
    version tracked again starts from a fresh baseline. Not thread-safe: the
    controller calls it under its lock.
    """

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        self.tracked: frozenset[str] = frozenset()
        self._last: OrderedDict[tuple[str, str, str], Counts] = OrderedDict()
        self._totals: dict[CellVersion, Counts] = {}
        self.resets = 0  # resets seen (for status)
        self.ignored = 0  # samples refused (negative, NaN, infinite)

    def track(self, versions: Iterable[str]) -> None:
        keep = frozenset(v for v in versions if v)
        if keep == self.tracked:
            return
        self.tracked = keep
        for key in [k for k in self._last if k[2] not in keep]:
            del self._last[key]
        for cv in [cv for cv in self._totals if cv[1] not in keep]:
            del self._totals[cv]

    def add(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            if s.version not in self.tracked:
                continue
            if not s.counts.valid():
                self.ignored += 1
                continue
            key = (s.source, s.cell, s.version)
            prev = self._last.pop(key, None)
            self._last[key] = s.counts
            if prev is None:
                self._totals.setdefault((s.cell, s.version), Counts())
                while len(self._last) > self.max_series:
                    self._last.popitem(last=False)
                continue
            c, p = s.counts, prev
            if c.allow < p.allow or c.deny < p.deny or c.error < p.error:
                self.resets += 1
                inc = c
            else:
                inc = c - p
            cv = (s.cell, s.version)
            self._totals[cv] = self._totals.get(cv, Counts()) + inc

    def total(self, cell: str, version: str) -> Counts:
        return self._totals.get((cell, version), Counts())

    def totals(self) -> Mapping[CellVersion, Counts]:
        """A copy: what a window's start is measured from."""
        return dict(self._totals)

    def window(self, start: Mapping[CellVersion, Counts], cell: str, version: str) -> Counts:
        """What (cell, version) counted since ``start`` (a ``totals()`` copy).

        Never negative: a version tracked anew restarts its totals at zero."""
        d = self.total(cell, version) - start.get((cell, version), Counts())
        return Counts(max(d.allow, 0.0), max(d.deny, 0.0), max(d.error, 0.0))
