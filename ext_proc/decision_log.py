"""Asynchronous decision log: a bounded queue, one writer thread, drops counted.

A decision only appends a tuple to a deque (atomic under the GIL, no lock, no
wake-up); formatting JSON and writing happen on the writer thread, which drains
the queue every ``interval`` seconds. When the queue is full, in entries
(``decision_log.queue``) or in bytes (``decision_log.max_bytes``: the entry's
strings plus ``ENTRY_OVERHEAD``), the entry is dropped and counted
(``a1_decision_log_dropped_total``): the log never slows a decision nor grows
without bound.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from json.encoder import encode_basestring as _esc  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from ext_proc import defaults
from ext_proc.bounded import ENTRY_OVERHEAD

log = logging.getLogger("ext_proc.decision_log")

# (ts, method, path, tenant, subject, cell, allow, status, reason, policy_version,
#  cached, latency_ns)
Entry = tuple[Any, ...]
FIELDS = (
    "ts", "method", "path", "tenant", "sub", "cell", "allow", "status", "reason",
    "policy_version", "cached", "latency_us",
)  # fmt: skip


def _s(v: str | None) -> str:
    return "null" if v is None else _esc(v)


def format_entry(e: Entry) -> str:
    """One JSON object per line, keys in ``FIELDS`` order. Hand-formatted: 4x faster
    than ``json.dumps(dict)``, and this runs on a thread that shares the GIL."""
    ts, method, path, tenant, sub, cell, allow, status, reason, version, cached, ns = e
    return (
        f'{{"ts":{ts:.6f},"method":{_s(method)},"path":{_s(path)},"tenant":{_s(tenant)},'
        f'"sub":{_s(sub)},"cell":{_s(cell)},"allow":{"true" if allow else "false"},'
        f'"status":{int(status)},"reason":{_s(reason)},"policy_version":{_s(version)},'
        f'"cached":{"true" if cached else "false"},"latency_us":{ns / 1000:.1f}}}'
    )




def entry_cost(e: Entry) -> int:
    """Bytes charged for a queued entry: method, path, tenant, sub, cell, reason, version."""
    n = ENTRY_OVERHEAD
    for i in (1, 2, 3, 4, 5, 8, 9):
        v = e[i]
        if v is not None:
            n += len(v)
    return n


class DecisionLog:
    def __init__(
        self,
        path: Path,
        queue_size: int = defaults.LOG_QUEUE_ENTRIES,
        interval: float = 0.05,
        max_bytes: int = defaults.LOG_QUEUE_BYTES,
    ) -> None:
        self.path = path
        self.queue_size = queue_size
        self.max_bytes = max_bytes
        # Queued bytes = queued_bytes - drained_bytes; each counter has one writer (the
        # deciding thread, the writer thread), so no lock is needed.
        self.queued_bytes = 0
        self.drained_bytes = 0
        self.dropped = 0  # written only by deciding threads; a lost increment is tolerable
        self.written = 0
        self._q: deque[Entry] = deque()
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()

    def append(self, entry: Entry) -> None:
        q = self._q
        cost = entry_cost(entry)
        if (
            len(q) >= self.queue_size
            or self.queued_bytes - self.drained_bytes + cost > self.max_bytes
        ):
            self.dropped += 1
        else:
            self.queued_bytes += cost
            q.append(entry)

    @property
    def pending_bytes(self) -> int:
        return self.queued_bytes - self.drained_bytes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        q = self._q
        if not q:
            return
        lines = []
        drained = 0
        try:
            while True:
                e = q.popleft()
                drained += entry_cost(e)
                lines.append(format_entry(e))
        except IndexError:
            pass
        self.drained_bytes += drained
        try:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
            self.written += len(lines)
        except (OSError, ValueError) as err:
            self.dropped += len(lines)
            log.error("decision log %s: write failed: %s", self.path, err)

    def stop(self) -> None:
        """Flush everything queued so far, then close the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        else:
            self._drain()
        self._file.close()
