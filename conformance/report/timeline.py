"""A tenant group's operations, reduced to what a chart can show at any run length.

A long run records hundreds of thousands of ops; drawing each one would make the
page tens of megabytes. Each group is cut into at most ``BUCKETS`` time buckets
(count, unexpected count, p50 and p99 latency of the reads and writes whose outcome
was the expected one, as the checkers' latency statistic counts them), plus an even
sample of at most
``MAX_POINTS`` ops to scatter, in which every unexpected op is kept first (up to
the cap), because the red marks are what a reader looks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from conformance.history import Op
from conformance.report.model import unexpected

BUCKETS = 160
MAX_POINTS = 500
MIN_LATENCY = 1e-5  # seconds: the floor of the log scale (a 0 latency is drawn here)


@dataclass(frozen=True)
class Bucket:
    t0: float
    t1: float
    n: int
    bad: int  # unexpected outcomes
    p50: float | None  # seconds, of the ops with the expected outcome; None: no such op
    p99: float | None


@dataclass(frozen=True)
class Point:
    t: float
    latency: float
    bad: bool
    label: str = ""  # for an unexpected op: what it was (the chart's hover text)


@dataclass
class Series:
    """One tenant group of one scenario, ready to draw."""

    group: str
    n: int = 0
    bad: int = 0
    p50: float | None = None
    p99: float | None = None
    buckets: list[Bucket] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (non-empty)."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def series(group: str, ops: list[Op], t0: float, t1: float, buckets: int = BUCKETS,
           max_points: int = MAX_POINTS) -> Series:
    """Aggregate ``ops`` (one group's) over [t0, t1] by invoke time."""
    out = Series(group, n=len(ops), bad=sum(unexpected(op) for op in ops))
    if not ops:
        return out
    lat = sorted(_latency(op) for op in ops if _timed(op))
    if lat:
        out.p50, out.p99 = quantile(lat, 0.5), quantile(lat, 0.99)
    width = max(t1 - t0, 1e-9) / buckets
    cells: list[list[Op]] = [[] for _ in range(buckets)]
    for op in ops:
        cells[min(buckets - 1, max(0, int((op.invoke - t0) / width)))].append(op)
    for i, cell in enumerate(cells):
        if not cell:
            continue
        ls = sorted(_latency(op) for op in cell if _timed(op))
        out.buckets.append(Bucket(t0 + i * width, t0 + (i + 1) * width, len(cell),
                                  sum(unexpected(op) for op in cell),
                                  quantile(ls, 0.5) if ls else None,
                                  quantile(ls, 0.99) if ls else None))
    out.points = _sample(ops, max_points)
    return out


def _timed(op: Op) -> bool:
    """In the p50/p99 lines: a read or write with the expected outcome, as the checkers'
    latency statistic counts them (probes and misroutes, refused fast, only scatter)."""
    return op.f in ("read", "write") and not unexpected(op)


def _latency(op: Op) -> float:
    return max(op.latency, MIN_LATENCY) if math.isfinite(op.latency) else MIN_LATENCY


def _sample(ops: list[Op], limit: int) -> list[Point]:
    bad = [op for op in ops if unexpected(op)]
    good = [op for op in ops if not unexpected(op)]
    keep = _even(bad, limit) + _even(good, max(0, limit - min(len(bad), limit)))
    return sorted((_point(op) for op in keep), key=lambda p: p.t)


def _point(op: Op) -> Point:
    if not unexpected(op):
        return Point(op.invoke, _latency(op), False)
    status = op.status if op.status is not None else f"no response ({op.error or 'error'})"
    label = f"{op.f} {op.tenant}: {status}" + ("" if op.authorized else " (must be refused)")
    return Point(op.invoke, _latency(op), True, label[:300])


def _even(items: list[Op], limit: int) -> list[Op]:
    """At most ``limit`` items spread evenly over the list (deterministic)."""
    if len(items) <= limit:
        return items
    if limit <= 0:
        return []
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]
