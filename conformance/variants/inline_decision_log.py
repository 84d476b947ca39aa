"""Variant ``inline-decision-log``: a sidecar that ships each decision to the telemetry
sink on the request path, synchronously.

The product appends a decision to a bounded queue and a writer thread ships batches
(``ext_proc.decision_log``): the sink can be down or slow and no request notices.
This variant moves the shipping onto the request path: every decision POSTs its
one log line to ``decision_log.url`` and waits for the answer (up to
``INLINE_TIMEOUT``) before the sidecar answers Envoy, and a POST that fails fails
the decision (the sidecar's front door turns the error into its 500 deny). The file
(``decision_log.path``, which the variant needs, as the URL comes from the config
and the log object exists only with a path) is still written by the writer thread. Caught by
I-7: with the sink paused or slowed, decisions stall (a latency shift) and fail.

``python -m conformance.variants.inline_decision_log --config FILE``
"""

from __future__ import annotations

import http.client
from typing import Any

from conformance.variants.wrapper import Entry, arg_value, run

INLINE_TIMEOUT = 10.0  # seconds a decision may wait for the sink: "long", not unbounded


class SinkFailed(RuntimeError):
    """The sink refused, reset, timed out or answered other than 2xx."""


def ship(sink: Any, line: bytes, timeout: float = INLINE_TIMEOUT) -> None:
    """POST one NDJSON line to ``sink`` (an ``ext_proc.decision_log.SinkUrl``) and wait."""
    conn = http.client.HTTPConnection(sink.host, sink.port, timeout=timeout)
    try:
        conn.request("POST", sink.target, body=line, headers={
            "Host": sink.host_header, "Content-Type": "application/x-ndjson"})
        status = conn.getresponse().status
    except OSError as err:
        raise SinkFailed(f"decision log: POST {sink.url}: {err}") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise SinkFailed(f"decision log: POST {sink.url}: HTTP {status}")


def sink_url(config_path: str | None) -> str:
    """``decision_log.url`` of the sidecar's config; ConfigError if it has none."""
    from ext_proc.config import load_config
    from policies.core.errors import ConfigError

    cfg = load_config(config_path) if config_path is not None else None
    if cfg is None or cfg.decision_log_url is None or cfg.decision_log_path is None:
        raise ConfigError("inline-decision-log: the sidecar config needs decision_log.path "
                          "and decision_log.url")
    return cfg.decision_log_url


def patch(url: str) -> None:
    from ext_proc.decision_log import DecisionLog, encode_line, parse_sink_url

    sink = parse_sink_url(url)
    original_init = DecisionLog.__init__
    original_append = DecisionLog.append

    def init_without_shipping(self: DecisionLog, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.sink = None  # the writer thread no longer ships: the request path does

    def append_inline(self: DecisionLog, entry: Any) -> None:
        ship(sink, encode_line(entry) + b"\n")
        original_append(self, entry)

    DecisionLog.__init__ = init_without_shipping  # type: ignore[method-assign]
    DecisionLog.append = append_inline  # type: ignore[method-assign]


def entry() -> Entry:
    from ext_proc.app import main

    return main


def start() -> None:
    import sys

    from policies.core.errors import ConfigError

    try:
        url = sink_url(arg_value(sys.argv[1:], "--config"))
    except ConfigError as err:
        print(f"ext_proc: {err}", file=sys.stderr)
        sys.exit(err.code)
    run(lambda: patch(url), entry)


if __name__ == "__main__":
    start()
