"""The Jepsen "generator" role for load: which op next, and when it is sent.

- :class:`Planner`: the sequence of ops, from a seeded RNG, so a ``seed`` gives
  the same sequence (groups in turn, a tenant of the group, an op by the mix).
- :class:`Schedule`: closed loop (W workers back to back) or open loop (a fixed
  arrival rate; op ``i`` is due at ``start + i / rate``, its latency counts from
  that intended time, so a stall is not hidden by sending late: no coordinated
  omission; at most ``workers`` in flight, and an op that cannot be sent within
  ``slack`` of its time is recorded as failed, ``error="overload: not sent"``).
- :class:`Load`: runs a planner on a schedule and records every op into a
  :class:`conformance.history.Recorder`. One load runs through every scenario:
  the runner switches ``scenario`` (and groups or mix) at run time, and sets
  ``authorized = False`` while the decision point is down, so ops sent then are
  marked as ones that must never succeed. The load keeps only O(1) live counters
  per group; the recorder keeps the events.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conformance.harness.stacks import tenants_in_table
from conformance.history import Op, Recorder
from conformance.load.client import PROBE_KINDS, Clock, OpClient
from conformance.load.stats import GroupStats, LiveStats
from policies.core.cells import CellTable
from policies.core.errors import one_line

if TYPE_CHECKING:
    from a1.stack import Stack

OVERLOAD = "overload: not sent"
# group -> {tenant: the cell that owns it (None: not known)}
Groups = Mapping[str, Mapping[str, str | None]]


def groups_for(table: CellTable, victim: str | None = None, per_cell: int = 2,
               prefix: str = "tenant") -> dict[str, dict[str, str | None]]:
    """``per_cell`` tenants of every cell of ``table``: in group ``victim`` (the tenants of
    cell ``victim``) and ``bystander`` (all others) when a victim is named, else one group
    per cell, named for the cell."""
    if victim is not None and victim not in table.cells:
        raise ValueError(f"victim: no cell {victim!r} (cells: {', '.join(table.cells)})")
    out: dict[str, dict[str, str | None]] = {}
    for cell, tenants in tenants_in_table(table, per_cell, prefix).items():
        group = cell if victim is None else "victim" if cell == victim else "bystander"
        out.setdefault(group, {}).update(dict.fromkeys(tenants, cell))
    return out


@dataclass(frozen=True)
class Mix:
    """Relative weights of the ops the load sends (they need not sum to 1)."""

    read: float = 0.75
    write: float = 0.2
    probe: float = 0.05
    misroute: float = 0.0

    def __post_init__(self) -> None:
        for name in ("read", "write", "probe", "misroute"):
            w = getattr(self, name)
            if not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
                raise ValueError(f"mix.{name}: must be a finite number >= 0, got {w!r}")
        if self.read + self.write + self.probe + self.misroute <= 0:
            raise ValueError("mix: at least one weight must be > 0")

    def choose(self, x: float) -> str:
        """The op for ``x`` in [0, 1)."""
        total = self.read + self.write + self.probe + self.misroute
        edge = 0.0
        for f, w in (("read", self.read), ("write", self.write), ("probe", self.probe),
                     ("misroute", self.misroute)):
            edge += w / total
            if w and x < edge:
                return f
        return next(f for f, w in (("misroute", self.misroute), ("probe", self.probe),
                                   ("write", self.write), ("read", self.read)) if w)


@dataclass(frozen=True)
class Schedule:
    """When ops are sent: ``closed`` (``workers`` back to back) or ``open`` (``rate``
    ops/s, at most ``workers`` in flight, ``slack`` seconds of grace to send one)."""

    mode: str = "closed"
    workers: int = 4
    rate: float = 0.0
    slack: float = 0.25

    def __post_init__(self) -> None:
        if self.mode not in ("closed", "open"):
            raise ValueError(f"schedule.mode: must be closed or open, got {self.mode!r}")
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 1024:
            raise ValueError(f"schedule.workers: must be an integer in [1, 1024], "
                             f"got {self.workers!r}")
        if self.mode == "open" and not (math.isfinite(self.rate) and 0 < self.rate <= 100_000):
            raise ValueError(f"schedule.rate: must be in (0, 100000] ops/s, got {self.rate!r}")
        if not (math.isfinite(self.slack) and self.slack >= 0):
            raise ValueError(f"schedule.slack: must be >= 0 seconds, got {self.slack!r}")

    @classmethod
    def closed(cls, workers: int = 6) -> Schedule:
        return cls("closed", workers)

    @classmethod
    def open(cls, rate: float, max_in_flight: int = 32, slack: float = 0.25) -> Schedule:
        return cls("open", max_in_flight, rate, slack)


@dataclass(frozen=True, slots=True)
class Planned:
    """One op of the plan. ``detail``: the probe kind, or the cell a misroute goes to;
    ``other``: the tenant whose token a foreign-tenant probe presents."""

    n: int
    f: str
    group: str
    tenant: str
    expected_cell: str | None
    detail: str | None = None
    other: str | None = None


class Planner:
    """The op sequence: group ``n mod G`` (every group gets an equal share whatever its
    size), a tenant of it and an op by the mix, both from ``random.Random(seed)``.

    Groups and tenants are taken in sorted order, so the plan does not depend on
    the order a mapping was built in. ``cells`` are the cells a misroute may go to.
    """

    def __init__(self, groups: Groups, mix: Mix, seed: int, cells: Sequence[str] = ()) -> None:
        self._rng = random.Random(seed)
        self._n = 0
        self._cells = sorted(cells)
        self._lock = threading.Lock()
        self._set(groups, mix)

    def _set(self, groups: Groups, mix: Mix) -> None:
        plan = [(g, sorted(tenants.items())) for g, tenants in sorted(groups.items()) if tenants]
        if not plan:
            raise ValueError("groups: at least one group with a tenant is needed")
        if mix.misroute > 0:
            for g, tenants in plan:
                for t, cell in tenants:
                    if not [c for c in self._cells if c != cell] or cell is None:
                        raise ValueError(f"groups.{g}.{t}: a misroute needs the tenant's cell "
                                         f"and another cell to send it to (cells: "
                                         f"{', '.join(self._cells) or 'none'})")
        self._groups = plan
        self._all = sorted({t for _, tenants in plan for t, _ in tenants})
        self._mix = mix

    def switch(self, groups: Groups | None = None, mix: Mix | None = None) -> None:
        with self._lock:
            self._set(groups if groups is not None else
                      {g: dict(ts) for g, ts in self._groups}, mix or self._mix)

    def tenants(self) -> dict[str, tuple[str, str | None]]:
        """Every tenant of the current groups: tenant -> (group, expected cell)."""
        with self._lock:
            return {t: (g, c) for g, tenants in self._groups for t, c in tenants}

    def next(self, slot: int | None = None) -> Planned:
        """The next op; ``slot`` (a closed-loop worker's index) picks its group, so a
        group whose requests stall holds only its own workers, never another group's."""
        with self._lock:
            n, rng = self._n, self._rng
            self._n += 1
            group, tenants = self._groups[(n if slot is None else slot) % len(self._groups)]
            tenant, cell = tenants[rng.randrange(len(tenants))]
            f = self._mix.choose(rng.random())
            if f == "probe":
                kind = PROBE_KINDS[rng.randrange(len(PROBE_KINDS))]
                others = [t for t in self._all if t != tenant]
                other = others[rng.randrange(len(others))] if others else None
                return Planned(n, f, group, tenant, cell, kind, other)
            if f == "misroute":
                targets = [c for c in self._cells if c != cell]
                return Planned(n, f, group, tenant, cell, targets[rng.randrange(len(targets))])
            return Planned(n, f, group, tenant, cell)

    def plan(self, count: int) -> list[Planned]:
        return [self.next() for _ in range(count)]


class Load:
    """A running load: ``start()``, ``stop()``, switches, live stats and the readback.

    ``groups`` maps each tenant group to its tenants and their owning cells.
    Every op goes to ``recorder`` as it completes.
    """

    def __init__(self, client: OpClient, recorder: Recorder, groups: Groups, *,
                 schedule: Schedule | None = None, mix: Mix | None = None, seed: int = 0,
                 scenario: str = "") -> None:
        self.client = client
        self.recorder = recorder
        self.schedule = schedule or Schedule.closed()
        self.planner = Planner(groups, mix or Mix(), seed, list(client.cells))
        self.scenario = scenario
        self.authorized = True  # False: ops sent now must never succeed (the runner sets it)
        self._live = LiveStats()
        self._known = self.planner.tenants()  # every tenant ever in a group, for the readback
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._slots = threading.BoundedSemaphore(self.schedule.workers)
        self._queue: queue.SimpleQueue[tuple[Planned, float, str, bool] | None] = (
            queue.SimpleQueue())
        self._started = False

    # -- control ----------------------------------------------------------------------

    @classmethod
    def for_stack(cls, stack: Stack, recorder: Recorder, groups: Groups | None = None, *,
                  clock: Clock | None = None, timeout: float = 5.0, run_id: str | None = None,
                  **kw: Any) -> Load:
        """A load on ``stack``'s edge (its tokens, its cells' own ports for misroutes);
        ``groups`` default to :func:`groups_for` the stack's cell table, no victim."""
        client = OpClient(stack.http_url, stack.token, clock, timeout=timeout, run_id=run_id,
                          cell_urls={n: stack.cell_url(n) for n in stack.cell_names})
        return cls(client, recorder, groups if groups is not None
                   else groups_for(stack.cell_table()), **kw)

    @property
    def clock(self) -> Clock:
        """The run's clock every op is timed by (the client's)."""
        return self.client.clock

    def switch(self, scenario: str | None = None, *, groups: Groups | None = None,
               mix: Mix | None = None) -> None:
        """Move to another scenario (its ops are labelled with it), tenant groups or mix."""
        if groups is not None or mix is not None:
            self.planner.switch(groups, mix)
            self._known.update(self.planner.tenants())
        if scenario is not None:
            self.scenario = scenario

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        if self._started:
            raise RuntimeError("load: already started")
        self._started = True
        if self.schedule.mode == "closed":
            self._threads = [threading.Thread(target=self._closed_worker, args=(i,),
                                              name=f"load-{i}", daemon=True)
                             for i in range(self.schedule.workers)]
        else:
            targets = [self._open_worker] * self.schedule.workers + [self._dispatch]
            self._threads = [threading.Thread(target=t, name=f"load-{i}", daemon=True)
                             for i, t in enumerate(targets)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop sending; ops in flight complete (within the client's timeout) and are recorded.
        A load never started has nothing to stop."""
        if not self._started:
            return
        self._stop.set()
        limit = timeout if timeout is not None else self.client.edge.timeout + 5.0
        if self.schedule.mode == "open":  # the dispatcher first: nothing is queued after
            self._threads[-1].join(limit)
            for _ in range(self.schedule.workers):
                self._queue.put(None)
        for t in self._threads:
            t.join(limit)

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, GroupStats]:
        """Per group: ops and unexpected outcomes in the last whole second, and totals."""
        return self._live.snapshot(self.client.clock())

    def live(self) -> str:
        """The progress line: per group, ops/s and the error rate over the last second."""
        return ", ".join(f"{g} {s.ops} op/s {s.error_rate:.1%} err"
                         for g, s in sorted(self.stats().items()) if s.ops) or "no ops yet"

    # -- the readback -----------------------------------------------------------------

    def readback(self, tenants: Iterable[str] | None = None, *, scenario: str | None = None,
                 attempts: int = 3, interval: float = 0.5) -> list[Op]:
        """One ``readback`` op per tenant (default: every tenant the load has had), recorded.

        A failed listing is tried again up to ``attempts`` times, ``interval`` apart;
        only the last try is recorded (a readback is judged by its value, not timed).
        """
        out = []
        for tenant in tenants if tenants is not None else sorted(self._known):
            group, cell = self._known.get(tenant, ("", None))
            for attempt in range(attempts):
                if attempt:
                    time.sleep(interval)  # a retry's pause, not a wait for a condition
                op = self.client.readback(scenario or self.scenario, tenant, group, cell)
                if op.value is not None:
                    break
            self.recorder.record(op)
            out.append(op)
        return out

    # -- loops ------------------------------------------------------------------------

    def _closed_worker(self, slot: int) -> None:
        while not self._stop.is_set():
            self._perform(self.planner.next(slot), None, self.scenario, self.authorized)

    def _dispatch(self) -> None:
        """The open loop's clock: op i is due at start + i / rate, whatever came before."""
        rate, slack = self.schedule.rate, self.schedule.slack
        clock = self.client.clock
        start = clock()
        i = 0
        while True:
            due = start + i / rate
            wait = due - clock()
            if wait > 0 and self._stop.wait(wait):
                return
            if self._stop.is_set():
                return
            planned = self.planner.next()
            scenario, authorized = self.scenario, self.authorized
            if self._slots.acquire(timeout=max(0.0, due + slack - clock())):
                self._queue.put((planned, due, scenario, authorized))
            else:
                self._record(Op(scenario, planned.f, planned.tenant, planned.group, due,
                                clock(), None, planned.expected_cell,
                                authorized=authorized and planned.f not in ("probe", "misroute"),
                                error=OVERLOAD))
            i += 1

    def _open_worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            planned, due, scenario, authorized = item
            try:
                self._perform(planned, due, scenario, authorized)
            finally:
                self._slots.release()

    def _perform(self, p: Planned, invoke: float | None, scenario: str, authorized: bool) -> None:
        c = self.client
        try:
            if p.f == "read":
                op = c.read(scenario, p.tenant, p.group, p.expected_cell, invoke=invoke,
                            authorized=authorized)
            elif p.f == "write":
                op = c.write(scenario, p.tenant, p.group, p.expected_cell, invoke=invoke,
                             authorized=authorized)
            elif p.f == "probe":
                op = c.probe(scenario, p.tenant, p.group, p.expected_cell, kind=str(p.detail),
                             other_tenant=p.other, invoke=invoke)
            else:
                op = c.misroute(scenario, p.tenant, p.group, str(p.detail), p.expected_cell,
                                invoke=invoke)
        except Exception as err:  # a bug in the harness is still an op, never a dead worker
            now = c.clock()
            op = Op(scenario, p.f, p.tenant, p.group, now if invoke is None else invoke, now,
                    None, p.expected_cell, authorized=authorized,
                    error=one_line(f"load: {type(err).__name__}: {err}", 300))
        self._record(op)

    def _record(self, op: Op) -> None:
        self.recorder.record(op)
        self._live.add(op)
