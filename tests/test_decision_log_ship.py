"""Shipping the decision log to a network sink (I-7: telemetry is fire-and-forget).

A real sink on a free loopback port receives the engine's decisions; a dead sink,
one that accepts and never reads, and one that answers non-2xx each drop batches,
counted by reason, while decisions keep returning and the queue stays in its bytes
bound. The ``decision_log.url`` field is attacked through the config parser.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from a1.launcher import free_ports
from conformance.harness.sink import Sink
from conformance.harness.waiting import poll
from ext_proc.config import parse_config
from ext_proc.decision_log import (
    DROP_REASONS,
    MAX_URL,
    DecisionLog,
    encode_line,
    entry_cost,
    parse_sink_url,
)
from ext_proc.engine import Engine
from ext_proc.policy import load_policy
from policies.core.errors import ConfigError
from tests.test_engine import ALICE, CELLS, ENTRY, compile_authz

SINK_DROPS = ("sink_error", "sink_timeout", "sink_status", "sink_backoff")


@pytest.fixture(scope="module")
def authz() -> Any:
    return load_policy(compile_authz(), ENTRY, "authz.wasm")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    with Sink(tmp_path / "sink") as s:
        yield s


def engine_with(authz: Any, dl: DecisionLog) -> Engine:
    eng = Engine(decision_log=dl)
    eng.apply(authz, CELLS)
    return eng


def sink_drops(dl: DecisionLog) -> int:
    by = dl.dropped_by_reason()
    return sum(by[r] for r in SINK_DROPS)


class Blackhole:
    """Accepts connections and never reads from them (a sink that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    b = Blackhole()
    try:
        yield b
    finally:
        b.close()


# -- delivery ---------------------------------------------------------------------------


def test_a_real_sink_receives_the_engines_decisions(authz: Any, sink: Sink) -> None:
    dl = DecisionLog(None, interval=0.01, url=sink.url)
    dl.start()
    try:
        eng = engine_with(authz, dl)
        eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
        eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
        eng.decide("POST", "/t/acme/a", "", None, ALICE, "k")
        poll(lambda: sink.stats()["decisions"] == 3, timeout=10, what="3 decisions at the sink")
    finally:
        dl.stop()
    recs = sink.decisions()
    assert [(r["method"], r["allow"], r["cached"]) for r in recs] == [
        ("GET", True, False), ("GET", True, True), ("POST", False, False)]
    assert recs[0]["sub"] == "alice" and recs[0]["cell"] == CELLS.lookup("acme")
    assert dl.shipped == 3 and dl.dropped == 0 and sink.stats()["bad_lines"] == 0


def test_path_and_url_together_get_the_same_lines(authz: Any, sink: Sink,
                                                  tmp_path: Path) -> None:  # fmt: skip
    dl = DecisionLog(tmp_path / "d.jsonl", interval=0.01, url=sink.url, batch_bytes=4096)
    dl.start()
    try:
        eng = engine_with(authz, dl)
        for i in range(200):  # ~70 KiB of lines: many batches of at most 4 KiB
            eng.decide("GET", f"/t/acme/{'p' * 200}{i}", "", None, ALICE, "k")
        poll(lambda: sink.stats()["decisions"] == 200, timeout=10, what="200 at the sink")
    finally:
        dl.stop()
    from_file = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert from_file == sink.decisions()
    assert dl.batches >= 70 // 4 and sink.stats()["batches"] == dl.batches
    assert dl.written == dl.shipped == 200


def test_a_line_the_file_encoder_would_reject_still_ships() -> None:
    e = (1.0, "GET", "/t/a/\ud800", "a", None, "c", True, 200, "", "v", False, 10)
    assert json.loads(encode_line(e))["path"] == "/t/a/\ud800"


# -- a sink that fails ------------------------------------------------------------------


def test_a_dead_sink_drops_and_counts_and_the_queue_stays_bounded(authz: Any) -> None:
    (port,) = free_ports(1)  # nothing listens: every POST is refused
    max_bytes = 64 * 1024
    dl = DecisionLog(None, interval=0.01, max_bytes=max_bytes,
                     url=f"http://127.0.0.1:{port}/v1/decisions")  # fmt: skip
    dl.start()
    try:
        eng = engine_with(authz, dl)
        for i in range(2000):
            eng.decide("GET", f"/t/acme/{i}", "", None, ALICE, "k")
            assert dl.pending_bytes <= max_bytes
        poll(lambda: dl.pending_bytes == 0, timeout=10, what="the writer to drain")
    finally:
        dl.stop()
    by = dl.dropped_by_reason()
    assert set(by) == set(DROP_REASONS)
    assert by["sink_error"] >= 1 and dl.shipped == 0 and by["write_error"] == 0
    assert sink_drops(dl) + by["queue_full"] == 2000 == dl.dropped


def test_a_hung_sink_never_blocks_a_decision(authz: Any, blackhole: Blackhole) -> None:
    """While the writer waits on a POST that is never read (3 s timeout), decisions
    still only append: each returns in far less than the timeout, the queue fills to
    its bound and drops, and the batch in flight is at most batch_bytes."""
    max_bytes, batch_bytes, timeout = 64 * 1024, 4096, 3.0
    dl = DecisionLog(None, interval=0.01, max_bytes=max_bytes, timeout=timeout,
                     batch_bytes=batch_bytes,
                     url=f"http://127.0.0.1:{blackhole.port}/v1/decisions")  # fmt: skip
    eng = engine_with(authz, dl)
    eng.decide("GET", "/t/acme/first", "", None, ALICE, "k")
    dl.start()
    try:
        poll(lambda: blackhole.conns, timeout=10, what="the writer to connect")
        slowest = 0.0
        for i in range(1000):
            t0 = time.monotonic()
            eng.decide("GET", f"/t/acme/{'q' * 100}{i}", "", None, ALICE, "k")
            slowest = max(slowest, time.monotonic() - t0)
            assert dl.pending_bytes <= max_bytes
        # Still inside the first POST: nothing has timed out yet, so every decision
        # above ran while the writer was blocked.
        assert dl.dropped_by_reason()["sink_timeout"] == 0
        assert slowest < timeout / 3, slowest
        assert dl.dropped_by_reason()["queue_full"] > 0
        poll(lambda: dl.dropped_by_reason()["sink_timeout"] >= 1, timeout=timeout + 5,
             what="the POST to time out")  # fmt: skip
    finally:
        dl.stop()
    conn = blackhole.conns[0]
    conn.setblocking(False)
    sent = b""
    try:
        while chunk := conn.recv(65536):
            sent += chunk
    except BlockingIOError:
        pass
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/decisions HTTP/1.1\r\n")
    assert b"Content-Type: application/x-ndjson" in head
    assert 0 < len(body) <= batch_bytes
    assert dl.shipped == 0 and dl.pending_bytes <= max_bytes


def test_a_sink_answering_non_2xx_drops_with_its_reason(authz: Any, sink: Sink) -> None:
    dl = DecisionLog(None, interval=0.01, url=sink.base_url + "/v1/elsewhere")  # 404
    dl.start()
    try:
        engine_with(authz, dl).decide("GET", "/t/acme/a", "", None, ALICE, "k")
        poll(lambda: dl.dropped_by_reason()["sink_status"] == 1, timeout=10, what="a 404 drop")
    finally:
        dl.stop()
    assert dl.shipped == 0 and sink.stats()["decisions"] == 0


def test_shipping_resumes_when_the_sink_comes_back(authz: Any, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    dl = DecisionLog(None, interval=0.01, url=f"http://127.0.0.1:{port}/v1/decisions")
    dl.start()
    try:
        eng = engine_with(authz, dl)
        eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
        poll(lambda: sink_drops(dl) == 1, timeout=10, what="a drop while the sink is down")
        with Sink(tmp_path / "sink", port=port) as sink:

            def shipped() -> bool:
                eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
                return sink.stats()["decisions"] > 0

            poll(shipped, timeout=10, interval=0.1, what="shipping to resume")
    finally:
        dl.stop()
    assert dl.shipped >= 1


def test_stop_does_not_wait_out_a_hung_sink_batch_by_batch(authz: Any,
                                                           blackhole: Blackhole) -> None:
    """A hung sink costs stop() one timeout, not one per queued batch (backoff)."""
    dl = DecisionLog(None, interval=0.01, timeout=0.3, batch_bytes=4096,
                     url=f"http://127.0.0.1:{blackhole.port}/")  # fmt: skip
    eng = engine_with(authz, dl)
    for i in range(300):  # ~30 batches queued before the writer starts
        eng.decide("GET", f"/t/acme/{'z' * 100}{i}", "", None, ALICE, "k")
    dl.start()
    dl.stop()
    by = dl.dropped_by_reason()
    assert by["sink_timeout"] + by["sink_backoff"] == 300 and by["sink_timeout"] < 300
    assert dl.pending_bytes == 0


def test_the_queue_charge_is_unchanged_by_shipping() -> None:
    e = (0.0, "GET", "/p", None, "s", "c", False, 403, "r", "v", False, 1)
    dl = DecisionLog(None, url="http://localhost:9/x", max_bytes=entry_cost(e) * 2)
    for _ in range(3):
        dl.append(e)
    assert dl.pending_bytes == entry_cost(e) * 2 and dl.dropped_by_reason()["queue_full"] == 1
    dl.stop()


def test_a_log_needs_somewhere_to_go() -> None:
    with pytest.raises(ValueError, match="path, a url or both"):
        DecisionLog(None)


# -- the config field -------------------------------------------------------------------

BASE = {"grpc_address": "127.0.0.1:1", "policy": {"module": "p.wasm"},
        "cells": {"table": "c.yaml"}}  # fmt: skip


def parse(tmp_path: Path, log: Any) -> Any:
    return parse_config({**BASE, "decision_log": log}, "s.yaml", tmp_path)


def test_config_url_alone_and_with_a_path(tmp_path: Path) -> None:
    cfg = parse(tmp_path, {"url": "http://127.0.0.1:9000/v1/decisions"})
    assert cfg.decision_log_url == "http://127.0.0.1:9000/v1/decisions"
    assert cfg.decision_log_path is None
    assert (cfg.decision_log_timeout, cfg.decision_log_batch_bytes) == (0.5, 256 * 1024)
    cfg = parse(tmp_path, {"path": "d.jsonl", "url": "http://sink.internal:80/d",
                           "timeout": 2, "batch_bytes": "64KiB"})  # fmt: skip
    assert cfg.decision_log_path == tmp_path / "d.jsonl"
    assert (cfg.decision_log_timeout, cfg.decision_log_batch_bytes) == (2.0, 64 * 1024)
    assert parse(tmp_path, {"path": "d.jsonl"}).decision_log_url is None


@pytest.mark.parametrize(("log", "error"), [
    ({"url": "file:///etc/passwd"}, "decision_log.url: 'file:///etc/passwd': only http://"),
    ({"url": "https://127.0.0.1:1/x"}, "only http://"),
    ({"url": "gopher://127.0.0.1:1/x"}, "only http://"),
    ({"url": "http://user:pw@127.0.0.1:1/x"}, "user info is not allowed"),
    ({"url": "http://@127.0.0.1:1/x"}, "user info is not allowed"),
    ({"url": "http://127.0.0.1:1/" + "a" * MAX_URL}, f"at most {MAX_URL} characters"),
    ({"url": 8080}, "must be a string (http://HOST:PORT/PATH), got int"),
    ({"url": ["http://127.0.0.1:1/"]}, "must be a string"),
    ({"url": {"host": "x"}}, "must be a string"),
    ({"url": True}, "must be a string"),
    ({"url": "http://10.0.0.1:1/x"}, "10.0.0.1 is not loopback"),
    ({"url": "http://169.254.169.254/latest"}, "is not loopback"),
    ({"url": "http://[::ffff:10.0.0.1]:1/x"}, "is not loopback"),
    ({"url": "http://127.1:1/x"}, "neither a loopback address nor a host name"),
    ({"url": "http://2130706433:1/x"}, "neither a loopback address nor a host name"),
    ({"url": "http://0x7f.1:1/x"}, "neither a loopback address nor a host name"),
    ({"url": "http://a_b.example:1/x"}, "neither a loopback address nor a host name"),
    ({"url": "http:///x"}, "needs a host"),
    ({"url": "http://127.0.0.1:0/x"}, "port must be in [1, 65535]"),
    ({"url": "http://127.0.0.1:99999/x"}, "out of range"),
    ({"url": "http://127.0.0.1:1/a\r\nX-Evil: 1"}, "printable ASCII without spaces"),
    ({"url": "http://127.0.0.1:1/a b"}, "printable ASCII without spaces"),
    ({"url": "http://127.0.0.1:1/é"}, "printable ASCII without spaces"),
    ({"url": "http://127.0.0.1:1/a\"b"}, "need percent-encoding"),
    ({"url": "http://127.0.0.1:1/a%zz"}, "need percent-encoding"),
    ({"url": "http://127.0.0.1:1/a#frag"}, "a fragment is not allowed"),
    ({"url": "http://[::1:1/x"}, "Invalid IPv6 URL"),
    ({"queue": 5}, "decision_log.path: missing (set path, url or both)"),
    ({"path": "d", "timeout": 1}, "decision_log.timeout: not used without decision_log.url"),
    ({"path": "d", "batch_bytes": 4096}, "decision_log.batch_bytes: not used without"),
    ({"url": "http://localhost:1/", "timeout": 0}, "decision_log.timeout: must be a number"),
    ({"url": "http://localhost:1/", "timeout": "1s"}, "decision_log.timeout: must be a number"),
    ({"url": "http://localhost:1/", "timeout": True}, "decision_log.timeout: must be a number"),
    ({"url": "http://localhost:1/", "batch_bytes": 1}, "decision_log.batch_bytes: must be a"),
    ({"url": "http://localhost:1/", "batch_bytes": "1GiB"}, "decision_log.batch_bytes: must"),
    ({"url": "http://localhost:1/", "retries": 3}, "decision_log.retries: unknown field"),
])  # fmt: skip
def test_config_refuses_bad_decision_log_fields(tmp_path: Path, log: Any, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, log)
    msg = str(info.value)
    assert msg.startswith("s.yaml: decision_log.") and error in msg
    assert "\n" not in msg and "\r" not in msg and len(msg) < 300


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:1/v1/decisions", "http://127.9.9.9:65535/", "http://[::1]:8080/d?x=1",
    "http://localhost/", "http://LOCALHOST:1", "http://sink:1/a/b%20c", "http://a-1.b-2.example:1/",
])  # fmt: skip
def test_config_accepts_loopback_and_host_names(url: str) -> None:
    u = parse_sink_url(url)
    assert u.target.startswith("/") and 1 <= u.port <= 65535
    assert u.host_header.endswith(f":{u.port}")


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=120),
    st.text(max_size=60).map(lambda s: "http://" + s),
    st.text(max_size=60).map(lambda s: "http://127.0.0.1:8/" + s),
    st.text(alphabet="abc.-_:@[]/?#%0123456789", max_size=40).map(lambda s: "http://" + s),
))  # fmt: skip
def test_any_accepted_url_is_safe_on_the_request_line(text: str) -> None:
    """Property: parse_sink_url either refuses with one line, or yields a target and a
    host header without CR, LF, spaces or non-ASCII, and a loopback-or-named host."""
    try:
        u = parse_sink_url(text)
    except ValueError as err:
        assert "\n" not in str(err) and "\r" not in str(err)
        return
    for part in (u.target, u.host_header, u.host):
        assert part.isascii() and part.isprintable() and " " not in part
    assert "@" not in u.host_header and "#" not in u.target
