"""Scraping sidecars for the rollout (control.rollout.scrape) over real loopback HTTP.

The sidecar side is the real exposition: ``ext_proc.stats.Stats`` counters rendered
by ``ext_proc.metrics.EngineCollector`` and served by ``serve_metrics``. Hostile
targets are real sockets: silent, trickling, huge, garbage, redirecting, gone.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from control.pipeline.state import Assignment
from control.rollout import (
    RolloutController,
    Sample,
    ScrapeError,
    Scraper,
    State,
    check_target,
    metrics_targets,
)
from control.rollout.scrape import MAX_BODY, parse_samples
from control.spec.model import Rollout
from control.xds.cache import SnapshotCache
from control.xds.server import XdsServer
from ext_proc.config import parse_config
from ext_proc.metrics import EngineCollector, serve_metrics
from ext_proc.stats import Stats
from policies.core.errors import ConfigError
from policies.core.xds import types
from policies.core.xds.client import AdsClient, Node
from tests.waiting import free_port, wait_until

BOUNDS = Rollout(canary_cell="cell-2", soak_seconds=60, max_error_rate=0.01,
                 max_deny_rate=0.2, min_requests=10)  # fmt: skip




class Sidecar:
    """The sidecar's real counters and exposition on a free loopback port."""

    def __init__(self) -> None:
        self.stats = Stats()
        engine = SimpleNamespace(stats=self.stats, snapshot=None, decision_log=None)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EngineCollector(engine))  # type: ignore[arg-type]
        self.port = free_port()
        self.server: Any = serve_metrics(f"127.0.0.1:{self.port}", registry)
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def assign(self, default: str, cells: dict[str, str]) -> None:
        self.stats.set_versions(default, "t1", cells, frozenset({default, *cells.values()}))

    def decide(self, cell: str, version: str, result: str, n: int = 1) -> None:
        st = self.stats.mine()
        for _ in range(n):
            st.record((result, cell, cell, version), 1000)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sidecar() -> Iterator[Sidecar]:
    s = Sidecar()
    yield s
    s.stop()


class RawServer:
    """A loopback TCP server whose connections are handled by ``handle(conn)``."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.handle = handle
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            self.handle(conn)

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


@contextlib.contextmanager
def raw(handle: Callable[[socket.socket], None]) -> Iterator[RawServer]:
    s = RawServer(handle)
    try:
        yield s
    finally:
        s.stop()


def http_answer(body: bytes, head: str = "HTTP/1.1 200 OK", length: bool = True) -> bytes:
    hdr = head + "\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    if length:
        hdr += f"Content-Length: {len(body)}\r\n"
    return hdr.encode() + b"\r\n" + body


def scraper_for(urls: list[str], sink: Callable[[list[Sample]], object] | None = None,
                timeout: float = 0.5) -> Scraper:  # fmt: skip
    return Scraper(lambda: urls, sink or (lambda s: None), timeout=timeout, interval=0.05)


# -- the real exposition ---------------------------------------------------------------


def test_parses_the_sidecar_exposition(sidecar: Sidecar) -> None:
    sidecar.assign("A", {"cell-1": "A", "cell-2": "B", "cell-3": "A"})
    sidecar.decide("cell-1", "A", "allow", 5)
    sidecar.decide("cell-1", "A", "deny", 2)
    sidecar.decide("cell-2", "B", "error", 1)
    sc = scraper_for([sidecar.url])
    try:
        got = {(s.cell, s.version): s.counts for s in sc.scrape_once()}
    finally:
        sc.stop()
    assert {k: (c.allow, c.deny, c.error) for k, c in got.items()} == {
        ("cell-1", "A"): (5, 2, 0),
        ("cell-2", "B"): (0, 0, 1),
        ("cell-3", "A"): (0, 0, 0),  # assigned, nothing decided yet: a zero sample
    }
    st = sc.status()["targets"][sidecar.url]
    assert st["ok"] and st["series"] == 3 and st["last_error"] is None


def test_a_canary_breach_scraped_from_two_sidecars_rolls_back() -> None:
    reg = CollectorRegistry()
    ctl = RolloutController(BOUNDS, ("cell-1", "cell-2", "cell-3"), registry=reg)
    ctl.propose("A")
    a = ctl.propose("B")
    cars = [Sidecar(), Sidecar()]
    published: list[Assignment] = []

    def sink(samples: list[Sample]) -> None:
        changed = ctl.observe(samples)
        if changed is not None:
            published.append(changed)

    sc = Scraper(lambda: [c.url for c in cars], sink, interval=0.05, timeout=0.5)
    try:
        for c in cars:
            c.assign(a.default, dict(a.cells))
        sc.start()
        wait_until(lambda: sc.rounds >= 2)  # zero samples seen: the window starts at zero
        for c in cars:
            c.decide("cell-2", "B", "allow", 4)
            c.decide("cell-2", "B", "error", 1)  # 2 of 10 in the window
        wait_until(lambda: ctl.state is State.ROLLED_BACK)
        assert published == [Assignment("A")]
        assert ctl.status()["last_breach"] == (
            "error rate 0.2000 > 0.01 on cell cell-2 (2 of 10 requests)")
    finally:
        sc.stop()
        for c in cars:
            c.stop()


def test_a_sidecar_that_goes_away_keeps_its_counts_and_its_error_shows(sidecar: Sidecar) -> None:
    sidecar.assign("A", {"cell-2": "B"})
    sidecar.decide("cell-2", "B", "allow", 3)
    sc = scraper_for([sidecar.url])
    try:
        assert len(sc.scrape_once()) == 1
        sidecar.stop()
        assert sc.scrape_once() == []
        st = sc.status()["targets"][sidecar.url]
        assert not st["ok"] and "Connection refused" in st["last_error"] and st["errors"] == 1
        assert st["last_success"] is not None
    finally:
        sc.stop()
        sidecar.server = SimpleNamespace(shutdown=lambda: None, server_close=lambda: None)


# -- hostile or broken targets ---------------------------------------------------------


def test_a_silent_and_a_trickling_server_delay_nobody(sidecar: Sidecar) -> None:
    sidecar.assign("A", {"cell-1": "A"})
    sidecar.decide("cell-1", "A", "allow")
    stop = threading.Event()

    def silent(conn: socket.socket) -> None:
        stop.wait(30)

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        while not stop.is_set():
            conn.sendall(b"#")  # a byte at a time, each well inside the socket timeout
            time.sleep(0.02)

    with raw(silent) as s1, raw(trickle) as s2:
        sc = scraper_for([s1.url, s2.url, sidecar.url], timeout=0.3)
        try:
            began = time.monotonic()
            samples = sc.scrape_once()
            took = time.monotonic() - began
            assert [(s.cell, s.version) for s in samples] == [("cell-1", "A")]
            targets = sc.status()["targets"]
            for url in (s1.url, s2.url):
                assert targets[url]["last_error"] in (
                    "no complete answer within 0.3 s", "TimeoutError: timed out")
            assert took < 10  # a deadline, not a benchmark: the watchdog cut both
        finally:
            stop.set()
            sc.stop()


@pytest.mark.parametrize("length", [True, False])
def test_a_huge_answer_is_cut(length: bool) -> None:
    body = b"# " + b"x" * (MAX_BODY + 10) + b"\n"
    with raw(lambda c: c.sendall(http_answer(body, length=length))) as srv:
        sc = scraper_for([srv.url], timeout=5)
        try:
            assert sc.scrape_once() == []
            assert "bytes" in sc.status()["targets"][srv.url]["last_error"]
            assert "over 4194304" in sc.status()["targets"][srv.url]["last_error"]
        finally:
            sc.stop()


@pytest.mark.parametrize(("answer", "error"), [
    pytest.param(http_answer(b"a1_policy_decisions_total{cell=\"c\" 1\n"),
                 "unparsable exposition", id="truncated-labels"),
    pytest.param(http_answer(b"\xff\xfe garbage"), "not UTF-8", id="not-utf8"),
    pytest.param(http_answer(b"{}{}{}\n" * 100), "unparsable exposition", id="braces"),
    pytest.param(http_answer(
        b"a1_policy_decisions_total{cell=\"c\",version=\"v\",result=\"allow\"} -5\n"),
        "bad value", id="negative"),
    pytest.param(http_answer(
        b"a1_policy_decisions_total{cell=\"c\",version=\"v\",result=\"deny\"} NaN\n"),
        "bad value", id="nan"),
    pytest.param(http_answer(b"oops", head="HTTP/1.1 500 Internal Server Error"), "HTTP 500",
                 id="http-500"),
    pytest.param(http_answer(b"", head="HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/metrics"),
                 "HTTP 302", id="redirect-not-followed"),
    pytest.param(b"not http at all\r\n\r\n", "BadStatusLine", id="not-http"),
])  # fmt: skip
def test_broken_answers_fail_only_their_target(answer: bytes, error: str,
                                               sidecar: Sidecar) -> None:  # fmt: skip
    sidecar.assign("A", {"cell-1": "A"})
    with raw(lambda c: c.sendall(answer)) as srv:
        sc = scraper_for([srv.url, sidecar.url])
        try:
            assert [s.source for s in sc.scrape_once()] == [sidecar.url]
            assert error in sc.status()["targets"][srv.url]["last_error"]
        finally:
            sc.stop()


def test_label_and_series_caps() -> None:
    line = 'a1_policy_decisions_total{{cell="c{i}",version="v",result="allow"}} 1\n'
    body = "".join(line.format(i=i) for i in range(20)).encode()
    with pytest.raises(ScrapeError, match="more than 10 decision series"):
        parse_samples(body, "s", max_series=10)
    long = ('a1_policy_decisions_total{cell="' + "c" * 500 + '",version="v",result="allow"} 1\n'
            'a1_policy_decisions_total{cell="c",version="v",result="bogus"} 1\n'
            'a1_policy_decisions_total{cell="c",version="",result="allow"} 1\n'
            'a1_policy_decisions_total{cell="c",version="v",result="allow"} 7\n')  # fmt: skip
    assert [(s.cell, s.counts.allow) for s in parse_samples(long.encode(), "s")] == [("c", 7)]


def test_a_stuck_target_holds_at_most_one_worker() -> None:
    release = threading.Event()
    with raw(lambda c: release.wait(30)) as srv:
        sc = Scraper(lambda: [srv.url], lambda s: None, timeout=30)  # no watchdog in time
        try:
            t = threading.Thread(target=sc.scrape_once, daemon=True)
            t.start()
            wait_until(lambda: bool(sc._inflight))
            assert sc.scrape_once() == []  # the second round skips it at once
            assert sc.status()["targets"][srv.url]["last_error"] == (
                "still busy with the previous scrape")
        finally:
            release.set()
            t.join(10)
            sc.stop()


def test_the_thread_scrapes_until_stopped(sidecar: Sidecar) -> None:
    sidecar.assign("A", {"cell-1": "A"})
    rounds: list[int] = []
    sc = Scraper(lambda: [sidecar.url], lambda s: rounds.append(len(s)), interval=0.01)
    sc.start()
    try:
        wait_until(lambda: len(rounds) >= 3)
    finally:
        sc.stop()
    n = len(rounds)
    time.sleep(0.05)
    assert len(rounds) == n and set(rounds) == {1}


def test_a_failing_sink_or_target_list_does_not_stop_scraping(sidecar: Sidecar) -> None:
    sidecar.assign("A", {"cell-1": "A"})
    calls: list[int] = []

    def targets() -> list[str]:
        calls.append(1)
        if len(calls) % 2:
            raise RuntimeError("connections() failed")
        return [sidecar.url]

    def sink(samples: list[Sample]) -> None:
        raise RuntimeError("boom")

    sc = Scraper(targets, sink, interval=0.01)
    sc.start()
    try:
        wait_until(lambda: len(calls) >= 4)
    finally:
        sc.stop()


# -- targets and SSRF ------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://127.0.0.1:9000/metrics",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/metrics",
    "http://user:pw@127.0.0.1:9000/metrics",
    "http://127.0.0.1@10.0.0.1:9000/metrics",
    "http://10.0.0.1:9000/metrics",
    "http://169.254.169.254:80/metrics",
    "http://metadata.google.internal:80/metrics",
    "http://localhost.evil.example:9000/metrics",
    "http://2130706433:9000/metrics",
    "http://127.1:9000/metrics",
    "http://0x7f000001:9000/metrics",
    "http://[::ffff:10.0.0.1]:9000/metrics",
    "http://0.0.0.0:9000/metrics",
    "http://127.0.0.1:9000/admin",
    "http://127.0.0.1:9000/metrics/../admin",
    "http://127.0.0.1:9000/metrics?x=1",
    "http://127.0.0.1:9000/metrics#x",
    "http://127.0.0.1/metrics",
    "http://127.0.0.1:0/metrics",
    "http://127.0.0.1:99999/metrics",
    "http://127.0.0.1:9000/metrics\r\nHost: evil",
    "http://127.0.0.1:9000/métrics",
    "http://127.0.0.1:9000/" + "m" * 300,
    "",
    None,
    9000,
    ["http://127.0.0.1:9000/metrics"],
])  # fmt: skip
def test_forged_metrics_urls_are_refused(url: object) -> None:
    with pytest.raises(ScrapeError):
        check_target(url)


def test_accepted_metrics_urls() -> None:
    assert check_target("http://127.0.0.1:9000/metrics") == "http://127.0.0.1:9000/metrics"
    assert check_target("http://127.9.9.9:9000/metrics") == "http://127.9.9.9:9000/metrics"
    assert check_target("http://[::1]:9000/metrics") == "http://[::1]:9000/metrics"
    assert check_target("HTTP://LocalHost:9000/metrics") == "http://localhost:9000/metrics"
    with pytest.raises(ScrapeError, match="not loopback nor an allowed scrape host"):
        check_target("http://sidecar.internal:9000/metrics")
    assert check_target("http://sidecar.internal:9000/metrics", ["Sidecar.Internal"]) == (
        "http://sidecar.internal:9000/metrics")


def test_metrics_targets_from_connections() -> None:
    conns: list[Any] = [
        {"node_id": "a", "node_metadata": {"a1.metrics_url": "http://127.0.0.1:9001/metrics"}},
        {"node_id": "b", "node_metadata": {"a1.metrics_url": "http://127.0.0.1:9001/metrics"}},
        {"node_id": "c", "node_metadata": {"a1.metrics_url": "http://10.1.1.1:9001/metrics"}},
        {"node_id": "d", "node_metadata": {"a1.metrics_url": ["x"]}},
        {"node_id": "e", "node_metadata": "http://127.0.0.1:9002/metrics"},
        {"node_id": "f", "node_metadata": {}},
        {"node_id": "g"},
        "not a mapping",
        {"node_id": "h", "node_metadata": {"a1.metrics_url": "http://[::1]:9003/metrics"}},
    ]
    assert metrics_targets(conns) == [
        "http://127.0.0.1:9001/metrics", "http://[::1]:9003/metrics"]
    assert metrics_targets(conns, ["10.1.1.1"])[0] == "http://10.1.1.1:9001/metrics"


def test_a_forged_target_is_never_fetched() -> None:
    """The refusal happens before any socket: a listener on the forged host sees nothing."""
    hits: list[int] = []
    with raw(lambda c: hits.append(1)) as srv:
        forged = f"http://127.0.0.1:{srv.port}/admin"
        sc = scraper_for(metrics_targets([{"node_metadata": {"a1.metrics_url": forged}}]))
        try:
            sc.scrape_once()
        finally:
            sc.stop()
    assert hits == []


# -- how sidecars announce their URL ---------------------------------------------------


@pytest.mark.parametrize(("address", "url"), [
    ("127.0.0.1:9100", "http://127.0.0.1:9100/metrics"),
    ("0.0.0.0:9100", "http://127.0.0.1:9100/metrics"),
    ("[::]:9100", "http://[::1]:9100/metrics"),
    ("127.0.0.1:0", ""),  # ephemeral: not known before the bind, not announced
    (None, ""),
])  # fmt: skip
def test_the_sidecar_config_announces_its_metrics_url(address: str | None, url: str,
                                                      tmp_path: Any) -> None:  # fmt: skip
    doc: dict[str, Any] = {
        "grpc_address": "127.0.0.1:9001",
        "source": {"kind": "xds", "address": "127.0.0.1:18000", "state_dir": "lkg",
                   "trusted_keys": "keys"},
    }  # fmt: skip
    if address is not None:
        doc["metrics_address"] = address
    cfg = parse_config(doc, "sidecar.yaml", tmp_path)
    assert cfg.xds is not None and cfg.xds.metrics_url == url
    if url:
        assert check_target(url) == url


def _xds_doc(**source: Any) -> dict[str, Any]:
    return {"grpc_address": "127.0.0.1:9001", "metrics_address": "0.0.0.0:9100",
            "source": {"kind": "xds", "address": "10.9.0.2:18000", "state_dir": "lkg",
                       "trusted_keys": "keys", **source}}  # fmt: skip


def test_a_sidecar_in_a_container_announces_its_own_address(tmp_path: Any) -> None:
    """Its loopback is not the control plane's: it names its control-network address,
    and the control plane scrapes it only when that host is allowed (--scrape-host)."""
    url = "http://10.9.0.5:9100/metrics"
    cfg = parse_config(_xds_doc(metrics_url=url), "sidecar.yaml", tmp_path)
    assert cfg.xds is not None and cfg.xds.metrics_url == url
    with pytest.raises(ScrapeError):
        check_target(url)
    assert check_target(url, ["10.9.0.5"]) == url


@pytest.mark.parametrize("url", [
    "https://10.9.0.5:9100/metrics", "http://10.9.0.5:9100/admin", "http://10.9.0.5/metrics",
    "http://u:p@10.9.0.5:9100/metrics", "http://10.9.0.5:9100/metrics?x=1",
    "http://10.9.0.5:9100/metrics#f", "http://10.9.0.5:9100/metrics\r\nHost: x",
    "http://" + "a" * 3000 + ":9100/metrics", "", 9100, ["http://10.9.0.5:9100/metrics"],
    "http://sidecar\u00e9:9100/metrics",
])  # fmt: skip
def test_a_bad_announced_metrics_url_is_refused(url: object, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"source\.metrics_url"):
        parse_config(_xds_doc(metrics_url=url), "sidecar.yaml", tmp_path)


def test_the_metrics_url_reaches_the_xds_server_as_node_metadata() -> None:
    url = "http://127.0.0.1:9100/metrics"
    node = Node("side-1", "a1-sidecar", {"a1.metrics_url": url})
    assert dict(node.to_proto().metadata) == {"a1.metrics_url": url}
    server = XdsServer(SnapshotCache())
    server.start()
    client = AdsClient(f"127.0.0.1:{server.port}", node, {types.CELL_TABLE: ["cells"]},
                       lambda t, r, rm: None)  # fmt: skip
    client.start()
    try:
        wait_until(lambda: bool(server.connections()))
        conns = server.connections()
        assert metrics_targets(conns) == [url]
    finally:
        client.stop()
        server.stop(grace=0)
