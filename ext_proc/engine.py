"""The decision pipeline shared by the three front doors (ext_authz gRPC, ext_proc, HTTP).

identity + target tenant → cell → policy (through the exact decision cache) → a
``Decision`` that each front door renders once and then reuses.

Concurrency: the engine serves from one immutable ``Snapshot`` (policy module, cell
table, cache) that a ``ConfigSource`` swaps in with a single attribute store.
Evaluators are not thread-safe, so each thread keeps its own, rebuilt when the
snapshot changes. Everything that goes wrong inside ``decide`` is a deny.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ext_proc import defaults
from ext_proc.bounded import ENTRY_OVERHEAD, ByteLRU
from ext_proc.config import DEFAULT_ENTRYPOINT, TenantSource
from ext_proc.decision_log import DecisionLog
from ext_proc.logutil import RateLimited, describe
from ext_proc.policy import UNDEFINED, PolicyError
from ext_proc.request import A1_PREFIX, RequestFacts, RequestReader
from ext_proc.stats import Stats, ThreadStats
from policies.core.cells import CellTable
from policies.headers import drop_label, forbidden_header_reason, header_value_reason

log = logging.getLogger("ext_proc.engine")

CELL_HEADER = "x-a1-cell"
VERSION_HEADER = "x-a1-policy-version"
REASON_HEADER = "x-a1-deny-reason"
__all__ = ["A1_PREFIX", "Decision", "Engine", "deny"]
# What front doors may memoise per decision (pre-serialized responses: one door's
# typical allow rendering is 170-260 bytes, so three doors' fit).
RENDER_BUDGET = 1024

_perf_ns = time.perf_counter_ns
_now = time.time


class Decision:
    """One outcome, immutable once built; front doors memoise their renderings in ``rendered``.

    ``headers`` are the upstream request headers to set on allow, or the client
    response headers on deny. ``set_names`` lets a front door strip every other
    client-supplied ``x-a1-*`` header.
    """

    __slots__ = (
        "allow", "body", "cell", "cost", "dropped", "headers", "reason", "rendered",
        "rendered_bytes", "result", "set_names", "status", "version",
    )  # fmt: skip

    def __init__(
        self,
        allow: bool,
        status: int,
        reason: str,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        cell: str,
        version: str,
        result: str,
        dropped: tuple[str, ...] = (),
    ) -> None:
        self.allow = allow
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.cell = cell
        self.version = version
        self.result = result  # metric label: allow | deny | error
        self.set_names = frozenset(k for k, _ in headers)
        self.dropped = dropped  # metric labels of policy headers refused (policies.headers)
        self.rendered: dict[Any, bytes] = {}
        self.rendered_bytes = 0
        # Bytes charged to a cache holding this decision: its strings, the renderings
        # budget and a fixed overhead (ext_proc.bounded).
        self.cost = (
            len(reason) + len(body) + len(cell) + len(version)
            + sum(len(k) + len(v) + 64 for k, v in headers)
            + RENDER_BUDGET + 2 * ENTRY_OVERHEAD
        )  # fmt: skip

    def memo_render(self, key: Any, b: bytes) -> None:
        """Keep a front door's rendering, within ``RENDER_BUDGET`` bytes per decision."""
        n = len(b) + sizeof_key(key)
        if self.rendered_bytes + n <= RENDER_BUDGET:
            self.rendered[key] = b
            self.rendered_bytes += n

    def __repr__(self) -> str:
        return (
            f"Decision(allow={self.allow}, status={self.status}, reason={self.reason!r}, "
            f"cell={self.cell!r}, headers={self.headers!r})"
        )


def deny(
    status: int, reason: str, cell: str = "", version: str = "", result: str = "deny"
) -> Decision:
    reason = header_safe(reason)
    return Decision(
        False,
        status,
        reason,
        ((REASON_HEADER, reason), ("content-type", "application/json")),
        json.dumps({"error": reason}).encode(),
        cell,
        version,
        result,
    )


def header_safe(value: str) -> str:
    """Printable ASCII only: a policy string must not be able to break a header."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(c if " " <= c <= "~" else "?" for c in value)


def sizeof_key(key: Any) -> int:
    """Bytes of a flat tuple key's str/bytes parts (memo, exact and rendering keys)."""
    n = 0
    for part in key:
        t = type(part)
        if t is str or t is bytes:
            n += len(part)
        elif t is tuple:
            n += sum(len(x) for x in part)
    return n


class Caches:
    """The two layers of the decision cache of one snapshot (pure policies only).

    ``exact`` is keyed on ``(ev.encode(input), cell)``: exactly the values the
    policy reads, so requests that differ only in what the policy ignores share
    an entry. ``memo`` sits in front of ``encode`` (about 5 us): it is keyed on the
    raw request fields that the input and the cell are computed from, so a repeat
    request costs one tuple hash. Both are invalidated together, by replacing the
    snapshot, whenever the bundle version or the cell table changes.

    Each layer holds at most ``size`` entries and ``max_bytes / 2`` bytes: a key
    costs its strings' lengths plus ``ENTRY_OVERHEAD``, and each layer also
    charges the decision it points to (``Decision.cost``), so that a decision
    evicted from one layer is still paid for while the other keeps it alive.
    """

    __slots__ = ("exact", "memo")

    def __init__(self, size: int, max_bytes: int = defaults.CACHE_BYTES) -> None:
        self.exact: ByteLRU[Decision] = ByteLRU(size, max_bytes // 2)
        self.memo: ByteLRU[Decision] = ByteLRU(size, max_bytes // 2)

    def __len__(self) -> int:
        return len(self.exact)


class Snapshot:
    """What the engine serves from: a policy module, a cell table and their caches."""

    __slots__ = ("cache", "cells", "entrypoint", "module", "version")

    def __init__(
        self,
        module: Any,
        cells: CellTable,
        entrypoint: str,
        cache_size: int,
        cache_bytes: int = defaults.CACHE_BYTES,
    ) -> None:
        self.module = module
        self.cells = cells
        self.entrypoint = entrypoint
        self.version: str = module.version
        pure = bool(getattr(module.meta, "pure", False))
        # A new snapshot means new caches: the bundle version is implicit in the keys.
        self.cache = (
            Caches(cache_size, cache_bytes) if pure and cache_size > 0 and cache_bytes > 0 else None
        )


class _Local(threading.local):
    snap: Snapshot | None = None
    ev: Any = None
    stats: ThreadStats | None = None


class Engine:
    """``decide_facts(RequestFacts) -> Decision``; never raises. ``decide(method, path,
    host, tenant_header, subject)`` reads the facts first (``ext_proc.request``)."""

    def __init__(
        self,
        tenant: TenantSource | None = None,
        entrypoint: str = DEFAULT_ENTRYPOINT,
        cache_size: int = defaults.CACHE_ENTRIES,
        stats: Stats | None = None,
        decision_log: DecisionLog | None = None,
        cache_bytes: int = defaults.CACHE_BYTES,
        max_path: int = defaults.MAX_PATH,
    ) -> None:
        self.reader = RequestReader(tenant, max_path)
        self.entrypoint = entrypoint
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self.stats = stats or Stats()
        self.decision_log = decision_log
        self._snap: Snapshot | None = None
        self._limited = RateLimited(log)
        self._local = _Local()
        self._no_policy = deny(503, "no policy loaded", result="error")
        self._eval_error = deny(500, "policy evaluation failed", result="error")
        self._internal_error = deny(500, "internal error", result="error")

    # -- configuration (the ConfigSource sink) -------------------------------------------

    def apply(self, module: Any, cells: CellTable) -> None:
        """Install a new (policy module, cell table) pair atomically."""
        snap = Snapshot(module, cells, self.entrypoint, self.cache_size, self.cache_bytes)
        self._snap = snap
        self.stats.set_versions(snap.version, cells.version)

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snap

    @property
    def policy_version(self) -> str:
        return self._snap.version if self._snap is not None else ""

    @property
    def tenant_header(self) -> str | None:
        return self.reader.tenant_header

    def set_tenant_fn(self, fn: Callable[[str, str, str | None], str | None]) -> None:
        self.reader.tenant_fn = fn
        self.reader.tenant_kind = "custom"

    # -- the hot path -----------------------------------------------------------------------

    def decide(
        self,
        method: str,
        path: str,
        host: str = "",
        tenant_header: str | None = None,
        subject: dict[str, Any] | None = None,
        subject_key: Any = None,
    ) -> Decision:
        """Decide one request given as fields. ``subject_key``, if given, must determine
        ``subject`` exactly (the raw claims carrier); it enables the memo."""
        try:
            f = self.reader.facts(method, path, host, tenant_header, subject, subject_key)
        except Exception as err:
            st = self._stats()
            st.eval_errors += 1
            self._limited.log(logging.ERROR, "internal", "internal error (deny): %s", describe(err))
            st.record("error", "", 0)
            return self._internal_error
        return self.decide_facts(f)

    def _stats(self) -> ThreadStats:
        loc = self._local
        st = loc.stats
        if st is None:
            st = loc.stats = self.stats.mine()
        return st

    def decide_facts(self, f: RequestFacts) -> Decision:
        """Decide one request (see ``ext_proc.request`` for how facts are read)."""
        t0 = _perf_ns()
        loc = self._local
        st = loc.stats
        if st is None:
            st = loc.stats = self.stats.mine()
        method, path, tenant, subject = f.method, f.path, f.tenant, f.subject
        cached = False
        try:
            snap = self._snap
            if f.status:
                d = deny(f.status, f.reason, version=snap.version if snap is not None else "")
            elif snap is None:
                d = self._no_policy
            else:
                cache = snap.cache
                memo_key = None
                subject_key = f.subject_key
                if cache is not None and (subject_key is not None or subject is None):
                    # Everything the input and the cell derive from: a hit skips encode too.
                    memo_key = (method, path, tenant, subject_key)
                    d = cache.memo.get(memo_key)  # type: ignore[assignment]
                    if d is not None:
                        st.cache_hits += 1
                        cached = True
                if not cached:
                    d, cached = self._decide(snap, loc, st, method, path, tenant, subject)
                    if memo_key is not None and d.result != "error":
                        cost = sizeof_key(memo_key) + ENTRY_OVERHEAD + d.cost
                        cache.memo.put(memo_key, d, cost)  # type: ignore[union-attr]
        except PolicyError as err:
            st.eval_errors += 1
            self._limited.log(logging.WARNING, "eval", "policy evaluation error (deny): %s", err)
            d = self._eval_error
        except Exception as err:
            st.eval_errors += 1
            self._limited.log(logging.ERROR, "internal", "internal error (deny): %s", describe(err))
            d = self._internal_error
        elapsed = _perf_ns() - t0
        st.record(d.result, d.cell, elapsed)
        if d.dropped:
            st.drop_headers(d.dropped)
        dl = self.decision_log
        if dl is not None:
            sub = subject.get("sub") if subject is not None else None
            dl.append(
                (_now(), method, path, tenant, sub, d.cell, d.allow, d.status, d.reason,
                 d.version, cached, elapsed)
            )  # fmt: skip
        return d

    def _decide(
        self,
        snap: Snapshot,
        loc: _Local,
        st: ThreadStats,
        method: str,
        path: str,
        tenant: str | None,
        subject: dict[str, Any] | None,
    ) -> tuple[Decision, bool]:
        """Cell, input document, exact cache on the encoded input, evaluation.

        Returns the decision and whether it came from the cache."""
        inp: dict[str, Any] = {"method": method, "path": path}
        if tenant is not None:
            inp["tenant"] = tenant
            cell = snap.cells.lookup(tenant)
        elif subject is not None and isinstance(subject.get("tenant"), str):
            cell = snap.cells.lookup(subject["tenant"])
        else:
            cell = snap.cells.lookup("")
        if subject is not None:
            inp["subject"] = subject
        if loc.snap is not snap:
            loc.ev = snap.module.evaluator(snap.entrypoint)
            loc.snap = snap
        ev = loc.ev
        key = ev.encode(inp)
        cache = snap.cache
        if cache is None:
            d = self._render(ev.eval_encoded(key), cell, snap.version)
        else:
            ck = (key, cell)
            hit = cache.exact.get(ck)
            if hit is not None:
                st.cache_hits += 1
                return hit, True
            d = self._render(ev.eval_encoded(key), cell, snap.version)
            if d.result != "error":
                cache.exact.put(ck, d, len(key) + len(cell) + ENTRY_OVERHEAD + d.cost)
        if d.result == "error":
            st.eval_errors += 1
        return d, False

    def _render(self, result: Any, cell: str, version: str) -> Decision:
        """Map the policy's decision object to a Decision; anything malformed denies."""
        if result is UNDEFINED or not isinstance(result, dict):
            self._limited.log(
                logging.WARNING,
                "shape",
                "policy decision is %s, not an object (deny)",
                _short(result),
            )
            return deny(500, "policy decision undefined", cell, version, "error")
        allow = result.get("allow")
        reason = result.get("reason")
        if not isinstance(reason, str):
            reason = "allowed" if allow is True else "denied"
        if allow is True:
            headers = [(CELL_HEADER, cell), (VERSION_HEADER, version)]
            dropped: list[str] = []
            extra = result.get("headers")
            if extra is not None:
                if not isinstance(extra, dict):
                    self._limited.log(
                        logging.WARNING,
                        "shape",
                        "policy decision headers is %s (deny)",
                        _short(extra),
                    )
                    return deny(500, "policy decision malformed", cell, version, "error")
                for k, v in sorted(extra.items(), key=lambda kv: str(kv[0])):
                    if not isinstance(k, str) or not isinstance(v, str):
                        return deny(500, "policy decision malformed", cell, version, "error")
                    k = k.lower()
                    why = forbidden_header_reason(k)
                    label = drop_label(k)
                    if why is None:
                        why = header_value_reason(v)
                        label = "invalid-value"
                    if why is not None:
                        # Refused, not fatal: the rest of the decision stands.
                        dropped.append(label)
                        self._limited.log(logging.WARNING, "header",
                                          "policy header dropped: %s", why)  # fmt: skip
                        continue
                    headers.append((k, header_safe(v)))
            return Decision(True, 200, reason, tuple(headers), b"", cell, version, "allow",
                            tuple(dropped))  # fmt: skip
        status = result.get("status")
        if isinstance(status, float) and status.is_integer():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            status = 403
        return deny(status, reason, cell, version)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 80 else s[:77] + "..."
