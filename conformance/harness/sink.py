"""The telemetry sink: receives the sidecar's decision log and scrapes its metrics.

The conformance suite needs a real telemetry consumer to fault (I-7: a dead or slow
sink changes neither the data plane's latency nor its memory; I-3: it is paused with
every other non-data-plane process). It is also the suite's witness of the
sidecar's side of I-7: it scrapes ``/metrics`` and keeps a bounded series of the
samples that show memory and the decision-log queue.

``python -m conformance.harness.sink --listen HOST:PORT --out DIR
[--scrape URL --scrape-interval S]``, or in process: ``Sink(out_dir).start()``
(``stop()`` or a ``with`` block), or under the launcher: ``sink_spec(...)``.

Endpoints:
- ``POST /v1/decisions``: ``application/x-ndjson`` with a Content-Length of at most
  ``max_body`` (413 beyond, 411 without, 415 for another type). Each line that is a
  JSON object is a decision, appended (re-serialized: ASCII, one line) to
  ``DIR/decisions.jsonl`` until that file would pass ``max_file_bytes``; past it
  lines are counted, not written. A line that is not a JSON object (bad UTF-8 or
  JSON, nesting past the parser's recursion limit, over ``MAX_LINE``) is counted
  in ``bad_lines``; the batch is still accepted (200).
- ``GET /stats``: counters and the last scraped samples (JSON, see ``Sink.stats``).
- ``GET /series``: the bounded sample series, ``{name: [[t, value], ...]}``.
- ``GET /healthz``: 200 ``ok``.
Other methods get 405, other paths 404. At most ``MAX_CONNECTIONS`` connections
are served at once (more are closed at accept); each socket read waits at most
``READ_TIMEOUT`` seconds.

Times (``t``) are ``time.monotonic()`` seconds: one clock for every process on the
machine (Linux CLOCK_MONOTONIC), so a run subtracts its own start to place a sample
in its windows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from a1.argtypes import positive
from a1.launcher import ProcessSpec, http_probe
from control.rollout.scrape import ScrapeError, check_target
from policies.core.jsonhttp import HttpError, JsonHandler, JsonHTTPServer

MiB = 1 << 20
MAX_BODY = 8 * MiB  # bytes of one POST (the sidecar's batches are at most 16 MiB, 256 KiB default)
MAX_FILE_BYTES = 256 * MiB  # bytes of decisions.jsonl
MAX_LINE = 1 * MiB  # bytes of one decision line
MAX_SAMPLES = 10_000  # points kept per series
MAX_SCRAPE_BYTES = 4 * MiB
MAX_CONNECTIONS = 32
READ_TIMEOUT = 5.0
SELECTED = (
    "process_resident_memory_bytes", "a1_decision_log_queue_bytes",
    "a1_decision_log_dropped_total",
)  # fmt: skip
DECISIONS_PATH = "/v1/decisions"
log = logging.getLogger("a1.conformance.sink")

REJECTIONS = ("too_large", "no_length", "bad_type", "bad_method", "not_found", "short_body",
              "busy")  # fmt: skip


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class Sink:
    """A sink on ``host:port`` (0: a free port) writing under ``out_dir``.

    ``start()`` serves on daemon threads (and scrapes ``scrape_url`` every
    ``scrape_interval`` seconds when given); ``stop()`` shuts both down and closes
    the file. ``url`` is what ``decision_log.url`` should be."""

    def __init__(
        self,
        out_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        scrape_url: str | None = None,
        scrape_interval: float = 1.0,
        max_body: int = MAX_BODY,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_samples: int = MAX_SAMPLES,
        scrape_hosts: tuple[str, ...] = (),
    ) -> None:
        self.out_dir = Path(out_dir)
        # A scrape goes to loopback unless a host is named (the docker runtime's sidecar
        # is another container): ``scrape_hosts`` are the only others allowed.
        self.scrape_url = (check_target(scrape_url, scrape_hosts) if scrape_url is not None
                           else None)
        self.scrape_interval = scrape_interval
        self.scrape_timeout = min(max(scrape_interval, 0.1), 2.0)
        self.max_body = max_body
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("decisions", "batches", "bytes", "bad_lines", "written_bytes", "dropped_lines",
             "scrapes", "scrape_errors"), 0)  # fmt: skip
        self._rejected = dict.fromkeys(REJECTIONS, 0)
        self._series: dict[str, deque[tuple[float, float]]] = {
            n: deque(maxlen=max_samples) for n in SELECTED
        }
        self._last: dict[str, float | None] = dict.fromkeys(SELECTED)
        self._last_scrape_t: float | None = None
        self._last_scrape_error: str | None = None
        self._last_scrape = b""
        self._full = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.decisions_path = self.out_dir / "decisions.jsonl"
        self._file = open(self.decisions_path, "ab")  # noqa: SIM115 - closed in stop()
        self._counts["written_bytes"] = self._file.tell()
        try:
            self._server = JsonHTTPServer((host, port), _Handler, self, log=log,
                                          max_connections=MAX_CONNECTIONS,
                                          on_busy=lambda: self.reject("busy"))
        except BaseException:
            self._file.close()
            raise
        self._stop = threading.Event()
        self._scraper: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + DECISIONS_PATH

    def start(self) -> Sink:
        self._server.start("a1-sink-http")
        if self.scrape_url is not None:
            self._scraper = threading.Thread(target=self._scrape_loop, name="a1-sink-scrape",
                                             daemon=True)  # fmt: skip
            self._scraper.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.stop()
        if self._scraper is not None:
            self._scraper.join(timeout=5)
        with self._lock:
            self._file.close()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests and the harness read ------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters (``decisions``: lines that were JSON objects; ``batches``: POSTs
        accepted; ``bytes``: their body bytes; ``bad_lines``; ``written_bytes`` and
        ``dropped_lines`` of decisions.jsonl; ``scrapes``, ``scrape_errors``),
        ``rejected`` requests by reason, ``last`` sample of each selected metric
        (None before one was seen), ``last_scrape_t`` and ``last_scrape_error``."""
        with self._lock:
            return {
                **self._counts,
                "rejected": dict(self._rejected),
                "last": dict(self._last),
                "last_scrape_t": self._last_scrape_t,
                "last_scrape_error": self._last_scrape_error,
                "file_full": self._full,
            }

    def series(self) -> dict[str, list[tuple[float, float]]]:
        """The kept ``(t, value)`` points of each selected metric, oldest first."""
        with self._lock:
            return {n: list(d) for n, d in self._series.items()}

    def last_scrape(self) -> bytes:
        with self._lock:
            return self._last_scrape

    def decisions(self) -> list[dict[str, Any]]:
        """The decisions written so far (decisions.jsonl, bounded by max_file_bytes)."""
        text = self.decisions_path.read_text(encoding="ascii")
        return [json.loads(line) for line in text.splitlines() if line]

    # -- ingest -------------------------------------------------------------------------

    def ingest(self, body: bytes) -> tuple[int, int]:
        """Count and append one POST body; (decisions, bad lines)."""
        good: list[bytes] = []
        bad = 0
        for raw in body.split(b"\n"):
            line = raw.rstrip(b"\r")
            if not line.strip():
                continue
            if len(line) > MAX_LINE:
                bad += 1
                continue
            try:
                obj = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                # ASCII on one line: no raw U+2028 or CR for a line splitter to trip on.
                out = json.dumps(obj, separators=(",", ":"), allow_nan=False)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                bad += 1
                continue
            good.append(out.encode("ascii") + b"\n")
        with self._lock:
            c = self._counts
            c["batches"] += 1
            c["bytes"] += len(body)
            c["decisions"] += len(good)
            c["bad_lines"] += bad
            for line in good:
                if self._full or c["written_bytes"] + len(line) > self.max_file_bytes:
                    self._full = True
                    c["dropped_lines"] += 1
                    continue
                try:
                    self._file.write(line)
                    c["written_bytes"] += len(line)
                except (OSError, ValueError):
                    c["dropped_lines"] += 1
            with contextlib.suppress(OSError, ValueError):  # readers see whole batches
                self._file.flush()
        return len(good), bad

    def reject(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] += 1

    # -- scraping -----------------------------------------------------------------------

    def _scrape_loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.scrape_once()
            self._stop.wait(max(0.0, self.scrape_interval - (time.monotonic() - began)))

    def scrape_once(self) -> bool:
        """Fetch ``scrape_url`` once and record the selected samples; False on failure
        (counted, the reason in ``last_scrape_error``)."""
        assert self.scrape_url is not None
        t = time.monotonic()
        try:
            body = _fetch(self.scrape_url, self.scrape_timeout)
            found = _select(body)
        except ScrapeError as err:
            with self._lock:
                self._counts["scrape_errors"] += 1
                self._last_scrape_error = str(err)
            return False
        with self._lock:
            self._counts["scrapes"] += 1
            self._last_scrape = body
            self._last_scrape_t = t
            self._last_scrape_error = None
            for name, value in found.items():
                self._last[name] = value
                self._series[name].append((t, value))
        _write_atomically(self.out_dir / "last_scrape.prom", body)
        return True


def _fetch(url: str, timeout: float) -> bytes:
    """GET ``url`` (no proxy, no redirect followed) within ``timeout`` per socket wait."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            if resp.status != 200:
                raise ScrapeError(f"HTTP {resp.status}")
            body: bytes = resp.read(MAX_SCRAPE_BYTES + 1)
    except ScrapeError:
        raise
    except Exception as err:  # URLError, HTTPError, timeouts, resets
        raise ScrapeError(" ".join(f"{type(err).__name__}: {err}".split())[:200]) from None
    if len(body) > MAX_SCRAPE_BYTES:
        raise ScrapeError(f"answer is over {MAX_SCRAPE_BYTES} bytes")
    return body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _select(body: bytes) -> dict[str, float]:
    """The selected samples of one exposition, each summed over its label sets."""
    try:
        text = body.decode("utf-8")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in SELECTED:
                    out[s.name] = out.get(s.name, 0.0) + float(s.value)
    except Exception as err:  # the parser raises ValueError, IndexError, ... on garbage
        raise ScrapeError(f"unparsable exposition: {type(err).__name__}") from None
    return out


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass  # the in-memory copy (last_scrape) is what checks read


# -- HTTP ------------------------------------------------------------------------------


class _Handler(JsonHandler):
    server: JsonHTTPServer[Sink]
    protocol_version = "HTTP/1.0"  # one request a connection, as the sidecar sends them
    timeout = READ_TIMEOUT
    server_version = "a1-sink"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # counters, not access logs: a load test would fill the disk

    def _error(self, status: int, reason: str, message: str,
               extra: dict[str, str] | None = None) -> None:  # fmt: skip
        self.server.owner.reject(reason)
        self.close_connection = True
        self.reply(status, {"error": message}, extra)

    def _route(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        sink = self.server.owner
        route = self._route()
        if route == "/healthz":
            self.send_body(200, b"ok\n", "text/plain")
        elif route == "/stats":
            self.reply(200, sink.stats())
        elif route == "/series":
            self.reply(200, sink.series())
        elif route == DECISIONS_PATH:
            self._not_allowed()
        else:
            self._error(404, "not_found", f"no such path: {route[:100]!r}")

    def do_POST(self) -> None:
        sink = self.server.owner
        route = self._route()
        if route != DECISIONS_PATH:
            if route in ("/healthz", "/stats", "/series"):
                self._error(405, "bad_method", "use GET", {"Allow": "GET"})
            else:
                self._error(404, "not_found", f"no such path: {route[:100]!r}")
            return
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-ndjson":
            self._error(415, "bad_type", "Content-Type must be application/x-ndjson")
            return
        try:
            body = self.read_body(sink.max_body, required=True)
        except HttpError as err:
            if err.reason == "short_body":  # the client is gone: nothing to answer
                sink.reject(err.reason)
            else:
                self._error(err.status, err.reason, str(err))
            return
        accepted, bad = sink.ingest(body)
        self.reply(200, {"accepted": accepted, "bad_lines": bad})

    def _not_allowed(self) -> None:
        allow = "POST" if self._route() == DECISIONS_PATH else "GET"
        self._error(405, "bad_method", f"use {allow}", {"Allow": allow})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_HEAD = _not_allowed


# -- under the launcher ----------------------------------------------------------------


def sink_spec(out_dir: Path, port: int, host: str = "127.0.0.1", *, name: str = "sink",
              scrape_url: str | None = None, scrape_interval: float = 1.0,
              log_path: Path | None = None) -> ProcessSpec:  # fmt: skip
    """A ProcessSpec for ``Launcher.start``: the sink on ``host:port`` (a fixed port:
    the sidecar's ``decision_log.url`` names it), ready when ``/healthz`` answers."""
    shown = f"[{host}]" if ":" in host else host
    argv = [sys.executable, "-m", "conformance.harness.sink", "--listen", f"{shown}:{port}",
            "--out", str(out_dir)]  # fmt: skip
    if scrape_url is not None:
        argv += ["--scrape", scrape_url, "--scrape-interval", str(scrape_interval)]
    return ProcessSpec(
        name=name,
        argv=argv,
        log_path=log_path or Path(out_dir) / f"{name}.log",
        ready=http_probe(f"http://{shown}:{port}/healthz"),
    )


def decisions_url(host: str, port: int) -> str:
    """The ``decision_log.url`` for a sink on ``host:port``."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{DECISIONS_PATH}"


# -- command line ----------------------------------------------------------------------


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.05 <= v <= 60:
        raise argparse.ArgumentTypeError(f"must be in [0.05, 60] seconds, got {text}")
    return v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.harness.sink",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--listen", type=_listen, required=True, metavar="HOST:PORT")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="decisions.jsonl and last_scrape.prom go here")
    parser.add_argument("--scrape", metavar="URL", help="the sidecar's http://HOST:PORT/metrics")
    parser.add_argument("--scrape-interval", type=_interval, default=1.0, metavar="S")
    parser.add_argument("--scrape-host", action="append", default=[], metavar="HOST",
                        help="a non-loopback host --scrape may name (repeatable)")
    parser.add_argument("--max-body", type=positive, default=MAX_BODY, metavar="BYTES")
    parser.add_argument("--max-file-bytes", type=positive, default=MAX_FILE_BYTES,
                        metavar="BYTES")
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        sink = Sink(args.out, host, port, scrape_url=args.scrape,
                    scrape_interval=args.scrape_interval, max_body=args.max_body,
                    max_file_bytes=args.max_file_bytes,
                    scrape_hosts=tuple(h.lower() for h in args.scrape_host))  # fmt: skip
    except ScrapeError as err:
        print(f"sink: --scrape: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"sink: cannot listen on {host}:{port} or write {args.out}: {err.strerror}",
              file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sink.start()
    print(f"sink: listening on {sink.url}, writing {sink.decisions_path}"
          + (f", scraping {sink.scrape_url} every {sink.scrape_interval}s" if sink.scrape_url
             else ""), file=sys.stderr, flush=True)  # fmt: skip
    while not done.wait(0.5):
        pass
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
