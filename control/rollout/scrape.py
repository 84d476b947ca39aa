"""Scraping the sidecars' decision counters, off every request path.

Why a thread and not the control plane's asyncio loop: the loop serves the xDS
streams, and a scrape is blocking socket I/O plus text parsing; on a thread of its
own (with a small worker pool) a slow or dead sidecar can delay only the scrape of
that sidecar, never an xDS push. Each round fetches every target concurrently, each
fetch under its own deadline (a watchdog shuts the socket of a fetch past it, so a
server that trickles bytes cannot hold a worker), and hands the samples of the
targets that answered to ``sink`` (the control plane: ``controller.observe`` and
publish what it returns). Targets come from the sidecars' node metadata
(``a1.metrics_url``), which any xDS client can forge: ``check_target`` accepts only
``http://<loopback or allowed host>:<port>/metrics``, and the fetch follows no
redirect and uses no proxy, so a forged URL cannot make the control plane fetch
anything else (SSRF).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from control.rollout.signals import RESULTS, Counts, Sample
from policies.core.urls import UrlError, check_http_url
from policies.core.xds.types import METRICS_URL_KEY

log = logging.getLogger("a1.control.rollout.scrape")

MiB = 1024 * 1024
MAX_BODY = 4 * MiB  # bytes of one /metrics answer; more aborts the read
MAX_SERIES = 10_000  # decision series (cell, version, result) per target
MAX_LABEL = 128  # characters of a cell or version label
MAX_URL = 256  # characters of a target URL
MAX_TARGETS = 1024  # targets scraped per round
MAX_WORKERS = 16
DECISIONS = "a1_policy_decisions_total"
ASSIGNED = "a1_cell_policy_version"


class ScrapeError(Exception):
    """One target's scrape failed (its one-line reason goes to status)."""


# -- targets -----------------------------------------------------------------------------


def check_target(url: object, allowed_hosts: Iterable[str] = ()) -> str:
    """The normalized URL, or ScrapeError: ``http://HOST:PORT/metrics`` where HOST is a
    loopback address, ``localhost`` or one of ``allowed_hosts`` (exact, lower case);
    no user info, query or fragment (``policies.core.urls``)."""
    try:
        checked = check_http_url(url, MAX_URL, tuple(allowed_hosts),
                                 allowed_name="allowed scrape host")  # fmt: skip
    except UrlError as err:
        raise ScrapeError(f"metrics URL {err}") from None
    host, port = checked.host, checked.port
    if checked.path != "/metrics" or checked.query or "?" in checked.url:
        raise ScrapeError(f"metrics URL {url!r}: the path must be exactly /metrics")
    if port is None:
        raise ScrapeError(f"metrics URL {url!r}: needs a port")
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


def metrics_targets(
    connections: Iterable[Mapping[str, Any]], allowed_hosts: Iterable[str] = ()
) -> list[str]:
    """The scrape targets announced by connected xDS clients (``XdsServer.nodes(cluster)``
    or ``connections()`` entries whose ``node_metadata`` holds ``a1.metrics_url``): valid ones only,
    deduplicated, sorted, at most ``MAX_TARGETS``. Refused URLs are logged."""
    allowed = tuple(allowed_hosts)
    out: set[str] = set()
    for conn in connections:
        meta = conn.get("node_metadata") if isinstance(conn, Mapping) else None
        if not isinstance(meta, Mapping) or METRICS_URL_KEY not in meta:
            continue
        try:
            out.add(check_target(meta[METRICS_URL_KEY], allowed))
        except ScrapeError as err:
            log.warning("rollout scrape: node %.100r: %s", conn.get("node_id", "?"), err)
    return sorted(out)[:MAX_TARGETS]


# -- one target --------------------------------------------------------------------------


class _Fetch:
    """One in-flight GET; ``abort`` (the watchdog) shuts its socket down."""

    def __init__(self, url: str, timeout: float, max_bytes: int) -> None:
        self.url = url
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.started = time.monotonic()
        self.conn: http.client.HTTPConnection | None = None
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> bytes:
        parts = urlsplit(self.url)
        deadline = self.started + self.timeout
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        self.conn = conn
        try:
            conn.request("GET", "/metrics", headers={
                "Accept": "text/plain; version=0.0.4", "Accept-Encoding": "identity",
            })  # fmt: skip
            resp = conn.getresponse()
            if resp.status != 200:
                raise ScrapeError(f"HTTP {resp.status}")
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                raise ScrapeError(f"answer of {length} bytes is over {self.max_bytes}")
            chunks: list[bytes] = []
            size = 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.aborted:
                    raise ScrapeError(f"no complete answer within {self.timeout} s")
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                chunk = resp.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise ScrapeError(f"answer is over {self.max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        except ScrapeError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as err:
            if self.aborted:
                raise ScrapeError(f"no complete answer within {self.timeout} s") from None
            raise ScrapeError(" ".join(f"{type(err).__name__}: {err}".split())[:200]) from None
        finally:
            conn.close()


def parse_samples(body: bytes, source: str, max_series: int = MAX_SERIES) -> list[Sample]:
    """The (cell, version) decision counters of one /metrics answer.

    Each (cell, version) the sidecar reports as assigned (``a1_cell_policy_version``)
    without decisions yet is a zero sample, so a version's first decisions count
    from zero rather than being taken as the series' baseline. Anything malformed
    fails the whole target (a half-read target would look like a counter reset)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScrapeError(f"answer is not UTF-8 (byte {err.start})") from None
    counts: dict[tuple[str, str], dict[str, float]] = {}
    assigned: set[tuple[str, str]] = set()
    series = 0
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == DECISIONS:
                    series += 1
                    if series > max_series:
                        raise ScrapeError(f"more than {max_series} decision series")
                    cell, version = s.labels.get("cell", ""), s.labels.get("version", "")
                    result = s.labels.get("result", "")
                    if not _label_ok(cell) or not _label_ok(version) or result not in RESULTS:
                        continue  # "" version: counts of retired versions; unknown results
                    if not math.isfinite(s.value) or s.value < 0:
                        raise ScrapeError(f"{DECISIONS}: bad value {s.value!r}")
                    counts.setdefault((cell, version), {})[result] = s.value
                elif s.name == ASSIGNED and s.value == 1:
                    cell, version = s.labels.get("cell", ""), s.labels.get("version", "")
                    if _label_ok(cell) and _label_ok(version) and len(assigned) < max_series:
                        assigned.add((cell, version))
    except ScrapeError:
        raise
    except Exception as err:  # the parser raises ValueError, IndexError, ... on garbage
        raise ScrapeError(f"unparsable exposition: {type(err).__name__}") from None
    for cv in assigned:
        counts.setdefault(cv, {})
    return [
        Sample(source, cell, version, Counts(**c))
        for (cell, version), c in sorted(counts.items())
    ]


def _label_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_LABEL and value.isprintable()


# -- the scraper -------------------------------------------------------------------------


class Scraper:
    """``start()`` a daemon thread that scrapes ``targets()`` every ``interval`` seconds
    and calls ``sink(samples)`` once per round; ``scrape_once()`` runs one round on
    the caller's thread; ``status()`` is per target: last error, last success, sizes.

    ``timeout`` bounds each target's whole fetch (connect, headers, body). A target
    still in flight from an earlier round (which the watchdog is shutting down) is
    skipped, so a stuck sidecar never takes more than one worker."""

    def __init__(
        self,
        targets: Callable[[], list[str]],
        sink: Callable[[list[Sample]], object],
        *,
        interval: float = 1.0,
        timeout: float = 0.5,
        max_bytes: int = MAX_BODY,
        max_series: int = MAX_SERIES,
        max_workers: int = MAX_WORKERS,
    ) -> None:
        self.targets = targets
        self.sink = sink
        self.interval = interval
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_series = max_series
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="a1-scrape")
        self._lock = threading.Lock()
        self._inflight: dict[str, _Fetch] = {}
        self._status: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="a1-rollout-scraper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            for f in self._inflight.values():
                f.abort()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.scrape_once()
            except Exception:  # a bug here must not end telemetry for good
                log.exception("rollout scrape: round failed")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def scrape_once(self) -> list[Sample]:
        """One round: fetch every target, hand the samples to ``sink``, return them."""
        try:
            targets = list(dict.fromkeys(self.targets()))[:MAX_TARGETS]
        except Exception as err:
            log.warning("rollout scrape: cannot list targets: %s", err)
            targets = []
        futures: dict[Future[list[Sample]], _Fetch] = {}
        for url in targets:
            with self._lock:
                if url in self._inflight:
                    self._record(url, error="still busy with the previous scrape")
                    continue
                fetch = _Fetch(url, self.timeout, self.max_bytes)
                self._inflight[url] = fetch
            futures[self._pool.submit(self._one, fetch)] = fetch
        samples: list[Sample] = []
        pending = set(futures)
        while pending:
            done, pending = wait(
                pending, timeout=min(0.05, self.timeout), return_when=FIRST_COMPLETED
            )
            for fut in done:
                with contextlib.suppress(Exception):  # recorded by _one
                    samples.extend(fut.result())
            now = time.monotonic()
            for fut in pending:
                f = futures[fut]
                if now - f.started > self.timeout:
                    f.abort()
        with self._lock:
            self._status = {u: st for u, st in self._status.items() if u in targets}
            self.rounds += 1
        if samples or targets:
            try:
                self.sink(samples)
            except Exception:
                log.exception("rollout scrape: sink failed")
        return samples

    def _one(self, fetch: _Fetch) -> list[Sample]:
        try:
            body = fetch.run()
            samples = parse_samples(body, fetch.url, self.max_series)
        except Exception as err:
            text = str(err) if isinstance(err, ScrapeError) else f"{type(err).__name__}: {err}"
            with self._lock:
                self._record(fetch.url, error=" ".join(text.split())[:300])
            raise
        finally:
            with self._lock:
                self._inflight.pop(fetch.url, None)
        with self._lock:
            self._record(fetch.url, ok=True, size=len(body), series=len(samples))
        return samples

    def _record(self, url: str, *, error: str = "", ok: bool = False, size: int = 0,
                series: int = 0) -> None:  # fmt: skip
        st = self._status.setdefault(url, {"last_success": None, "errors": 0})
        if ok:
            st.update(ok=True, last_error=None, last_success=round(time.time(), 3),
                      bytes=size, series=series)  # fmt: skip
        else:
            st.update(ok=False, last_error=error)
            st["errors"] += 1

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rounds": self.rounds,
                "targets": {u: dict(st) for u, st in sorted(self._status.items())},
            }
