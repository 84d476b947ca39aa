"""The Jepsen "client" role: each operation is one request (a readback: one listing)
and becomes exactly one :class:`conformance.history.Op`.

Operations (``Op.f``):

- ``read``: ``GET /t/{tenant}/items`` through the edge, as a reader.
- ``write``: ``POST /t/{tenant}/items`` through the edge, as a writer, with a body
  ``{"v": "<run>-<n>"}`` unique in the run; acknowledged = 201. ``Op.value`` is the
  string written.
- ``readback``: after the run, every page of ``GET /t/{tenant}/items`` (the cell
  lists at most ``MAX_LIST`` items a page; the next page starts ``after`` the last
  id, so no item is missed). ``Op.value`` lists the ``v`` values of this run found
  (items of other runs are not this run's to judge); None if the listing failed.
- ``probe``: a request that must be refused (``authorized=False``): ``no-token``,
  ``foreign-tenant`` (a token for another tenant) or ``missing-role`` (a POST with
  a reader's token). ``Op.value`` is ``{"probe": kind, ...}``.
- ``misroute``: ``GET`` straight to a cell's own port for a tenant it does not own,
  with no token (``authorized=False``); must get 421.

Times come from the runner's clock (seconds since the run started). ``invoke`` may
be given: the open loop passes the intended send time, so a stall before sending
counts in the latency (no coordinated omission). No retries: a failure on the
wire is recorded, never hidden.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from a1.cell import MAX_LIST
from conformance.harness.client import Client, Response
from conformance.history import Op
from conformance.load.tokens import TokenCache, TokenFor
from policies.core.errors import one_line
from policies.headers import CELL_HEADER, VERSION_HEADER

READER = ("reader",)
WRITER = ("writer",)
PROBE_KINDS = ("no-token", "foreign-tenant", "missing-role")
FOREIGN_FALLBACK = "a1-probe-foreign"  # the foreign tenant when the run has only one
MAX_HEADER_CHARS = 256  # a recorded header value (the history is evidence, not a dump)
MAX_ERROR_CHARS = 300
MAX_PAGES = 100_000  # a listing that never ends is a failed readback, not a hang

Clock = Callable[[], float]


class RunClock:
    """Seconds since ``t0`` (``time.monotonic()`` at creation): the run's clock, which
    every event of a history is timed by."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0

    def __call__(self) -> float:
        return time.monotonic() - self.t0


class OpClient:
    """Performs operations against one stack and returns them as ``Op`` events.

    ``edge_url`` is Envoy's listener; ``cell_urls`` maps cell names to their own
    ports (for misroutes); ``token_for(tenant, roles)`` mints a JWT (Stack.token);
    ``clock()`` is the run's clock (default: a new :class:`RunClock`). Thread-safe:
    the load's workers share one.
    """

    def __init__(self, edge_url: str, token_for: TokenFor, clock: Clock | None = None, *,
                 cell_urls: Mapping[str, str] | None = None, cafile: Path | None = None,
                 timeout: float = 5.0, run_id: str | None = None) -> None:
        self.edge = Client(edge_url, cafile=cafile, timeout=timeout)
        self.cells = {name: Client(url, timeout=timeout)
                      for name, url in (cell_urls or {}).items()}
        self.tokens = TokenCache(token_for)
        self.clock: Clock = clock or RunClock()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._counter = itertools.count()
        self._counter_lock = threading.Lock()

    def new_value(self, kind: str = "") -> str:
        """A value unique in this run: ``<run>-<n>`` (``<run>-<kind><n>`` for probes)."""
        with self._counter_lock:
            n = next(self._counter)
        return f"{self.run_id}-{kind}{n}"

    def owns(self, value: Any) -> bool:
        """Whether ``value`` was written by this run (any client with this run id)."""
        return isinstance(value, str) and value.startswith(self.run_id + "-")

    # -- operations -------------------------------------------------------------------

    def read(self, scenario: str, tenant: str, group: str, expected_cell: str | None = None,
             *, invoke: float | None = None, authorized: bool = True) -> Op:
        return self._run(scenario, "read", tenant, group, expected_cell, invoke, authorized,
                         lambda: self.edge.get(f"/t/{tenant}/items?limit=1",
                                               self.tokens.get(tenant, READER)))

    def write(self, scenario: str, tenant: str, group: str, expected_cell: str | None = None,
              *, invoke: float | None = None, authorized: bool = True) -> Op:
        value = self.new_value()
        return self._run(scenario, "write", tenant, group, expected_cell, invoke, authorized,
                         lambda: self.edge.post(f"/t/{tenant}/items",
                                                self.tokens.get(tenant, WRITER), {"v": value}),
                         value=value)

    def probe(self, scenario: str, tenant: str, group: str, expected_cell: str | None = None,
              *, kind: str, other_tenant: str | None = None,
              invoke: float | None = None) -> Op:
        """A request that must be refused; ``other_tenant`` is whose token ``foreign-tenant``
        presents (a tenant other than ``tenant``)."""
        path = f"/t/{tenant}/items"
        send: Callable[[], Response]
        if kind == "no-token":
            value: dict[str, Any] = {"probe": kind}
            send = lambda: self.edge.get(path)  # noqa: E731
        elif kind == "foreign-tenant":
            other = other_tenant if other_tenant and other_tenant != tenant else FOREIGN_FALLBACK
            value = {"probe": kind, "as": other}
            send = lambda: self.edge.get(path, self.tokens.get(other, ("reader", "writer")))  # noqa: E731
        elif kind == "missing-role":
            v = self.new_value("probe")  # if the write lands, the readback shows it
            value = {"probe": kind, "v": v}
            send = lambda: self.edge.post(path, self.tokens.get(tenant, READER), {"v": v})  # noqa: E731
        else:
            raise ValueError(f"probe kind: {kind!r} is not one of {', '.join(PROBE_KINDS)}")
        return self._run(scenario, "probe", tenant, group, expected_cell, invoke, False, send,
                         value=value)

    def misroute(self, scenario: str, tenant: str, group: str, cell: str,
                 expected_cell: str | None = None, *, invoke: float | None = None) -> Op:
        """``GET`` on ``cell``'s own port for ``tenant`` (owned by ``expected_cell``)."""
        client = self.cells.get(cell)
        if client is None:
            raise ValueError(f"misroute: no URL for cell {cell!r} "
                             f"(cell_urls has {', '.join(self.cells) or 'none'})")
        return self._run(scenario, "misroute", tenant, group, expected_cell, invoke, False,
                         lambda: client.get(f"/t/{tenant}/items?limit=1"),
                         value={"cell": cell})

    def readback(self, scenario: str, tenant: str, group: str,
                 expected_cell: str | None = None) -> Op:
        """Every item of ``tenant`` through the edge, page by page; one Op for all pages."""
        invoke = self.clock()
        values: list[Any] = []
        after: str | None = None
        resp: Response | None = None
        try:
            token = self.tokens.get(tenant, READER)
            for _ in range(MAX_PAGES):
                query = f"limit={MAX_LIST}" + (f"&after={after}" if after else "")
                resp = self.edge.get(f"/t/{tenant}/items?{query}", token)
                if resp.status != 200:
                    return self._op(scenario, "readback", tenant, group, expected_cell, invoke,
                                    True, resp, error=f"page after {after}: HTTP {resp.status}")
                items = resp.json()["items"]
                for item in items:
                    body = item.get("item")
                    v = body.get("v") if isinstance(body, dict) else None
                    if self.owns(v):
                        values.append(v)
                if len(items) < MAX_LIST:
                    return self._op(scenario, "readback", tenant, group, expected_cell, invoke,
                                    True, resp, value=values)
                after = str(items[-1]["id"])
            return self._op(scenario, "readback", tenant, group, expected_cell, invoke, True,
                            resp, error=f"more than {MAX_PAGES} pages")
        except Exception as err:  # every failure is recorded, none raised
            return self._op(scenario, "readback", tenant, group, expected_cell, invoke, True,
                            resp, error=_describe(err))

    # -- plumbing ---------------------------------------------------------------------

    def _run(self, scenario: str, f: str, tenant: str, group: str, expected_cell: str | None,
             invoke: float | None, authorized: bool, send: Callable[[], Response],
             value: Any = None) -> Op:
        start = self.clock() if invoke is None else invoke
        try:
            resp = send()
        except Exception as err:  # no response: recorded with the reason
            return self._op(scenario, f, tenant, group, expected_cell, start, authorized, None,
                            value=value, error=_describe(err))
        return self._op(scenario, f, tenant, group, expected_cell, start, authorized, resp,
                        value=value)

    def _op(self, scenario: str, f: str, tenant: str, group: str, expected_cell: str | None,
            invoke: float, authorized: bool, resp: Response | None, value: Any = None,
            error: str | None = None) -> Op:
        headers = resp.headers if resp is not None else {}
        return Op(scenario=scenario, f=f, tenant=tenant, group=group, invoke=invoke,
                  complete=self.clock(), status=resp.status if resp is not None else None,
                  expected_cell=expected_cell, observed_cell=_header(headers, CELL_HEADER),
                  policy_version=_header(headers, VERSION_HEADER), authorized=authorized,
                  value=value, error=one_line(error, MAX_ERROR_CHARS) if error else None)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    v = headers.get(name)
    return None if v is None else v[:MAX_HEADER_CHARS]


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
