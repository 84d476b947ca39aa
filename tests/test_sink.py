"""The conformance telemetry sink: its endpoints under attack, its bounds, its scraping of
a real sidecar metrics server, and the process the launcher runs."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a1.launcher import Launcher, free_ports
from conformance.harness.sink import (
    MAX_CONNECTIONS,
    MAX_LINE,
    Sink,
    decisions_url,
    main,
    sink_spec,
)
from conformance.harness.waiting import poll
from control.rollout.scrape import ScrapeError
from ext_proc.decision_log import DecisionLog
from ext_proc.engine import Engine
from ext_proc.metrics import make_registry, serve_metrics

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    with Sink(tmp_path / "out", max_body=64 * 1024) as s:
        yield s


def request(sink: Sink, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = sink.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def post(sink: Sink, body: bytes) -> tuple[int, Any]:
    status, _, data = request(sink, "POST", "/v1/decisions", body, NDJSON)
    return status, json.loads(data)


def raw(sink: Sink, data: bytes) -> bytes:
    """Send ``data`` as is; the whole answer (the sink closes after it)."""
    with socket.create_connection(sink.address, timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# -- decisions --------------------------------------------------------------------------


def test_decisions_are_counted_and_appended(sink: Sink) -> None:
    status, answer = post(sink, b'{"a":1}\n{"b":"\xe2\x80\xa8"}\r\n\n{"c":[1,2]}\n')
    assert (status, answer) == (200, {"accepted": 3, "bad_lines": 0})
    assert sink.decisions() == [{"a": 1}, {"b": "\u2028"}, {"c": [1, 2]}]
    # Re-serialized as ASCII: a line splitter never breaks a record.
    assert len(sink.decisions_path.read_bytes().decode("ascii").splitlines()) == 3
    st = sink.stats()
    assert (st["decisions"], st["batches"], st["bad_lines"]) == (3, 1, 0)
    assert st["written_bytes"] == sink.decisions_path.stat().st_size


def test_bad_lines_are_counted_not_fatal(sink: Sink) -> None:
    deep = b"[" * 30_000 + b"]" * 30_000  # past the parser's recursion limit
    body = b"\n".join([
        b'{"ok":1}', b"not json", b"[1,2]", b'"str"', b"\xff\xfe{}", b'{"n":NaN}',
        b'{"n":1e999}', b'{"a":' + b"9" * 5000 + b"}", b'{"x":1', b"{" * 100 + b"}" * 100,
        b'{"ok":2}',
    ]) + b"\n"  # fmt: skip
    assert post(sink, body) == (200, {"accepted": 2, "bad_lines": 9})
    assert post(sink, deep) == (200, {"accepted": 0, "bad_lines": 1})
    nested_obj = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert post(sink, nested_obj[: 64 * 1024 - 1]) == (200, {"accepted": 0, "bad_lines": 1})
    assert sink.decisions() == [{"ok": 1}, {"ok": 2}]
    assert request(sink, "GET", "/healthz")[0] == 200  # still serving


def test_a_line_over_the_line_bound_is_bad(tmp_path: Path) -> None:
    with Sink(tmp_path, max_body=4 * MAX_LINE) as s:
        huge = b'{"a":"' + b"x" * MAX_LINE + b'"}\n'
        assert post(s, huge + b'{"b":1}\n') == (200, {"accepted": 1, "bad_lines": 1})


def test_the_file_stops_at_its_bound_and_counts(tmp_path: Path) -> None:
    with Sink(tmp_path, max_file_bytes=100) as s:
        for _ in range(5):
            post(s, b'{"k":"0123456789"}\n' * 3)  # 19 bytes a line
        st = s.stats()
        assert st["written_bytes"] <= 100 and st["file_full"]
        assert st["decisions"] == 15 and st["dropped_lines"] == 15 - st["written_bytes"] // 19
        assert s.decisions_path.stat().st_size == st["written_bytes"]


def test_an_existing_file_counts_toward_the_bound(tmp_path: Path) -> None:
    (tmp_path / "decisions.jsonl").write_bytes(b"{}\n" * 30)
    with Sink(tmp_path, max_file_bytes=100) as s:
        post(s, b'{"a":1}\n' * 2)
        assert s.stats()["written_bytes"] == 98 and s.stats()["dropped_lines"] == 1


# -- attacks on the endpoints -----------------------------------------------------------


def test_a_huge_body_is_refused_before_it_is_read(sink: Sink) -> None:
    answer = raw(sink, b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       b"application/x-ndjson\r\nContent-Length: 10000000000\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.0 413 ")
    status, _, _ = request(sink, "POST", "/v1/decisions", b"x" * (64 * 1024 + 1), NDJSON)
    assert status == 413
    assert sink.stats()["rejected"]["too_large"] == 2 and sink.stats()["batches"] == 0


@pytest.mark.parametrize(("head", "status", "reason"), [
    (b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n", 411, "no_length"),
    (b"Content-Type: application/x-ndjson\r\n", 411, "no_length"),
    (b"Content-Type: application/x-ndjson\r\nContent-Length: 2\r\nContent-Length: 3\r\n",
     411, "no_length"),
    (b"Content-Type: application/x-ndjson\r\nContent-Length: -2\r\n", 411, "no_length"),
    (b"Content-Type: application/x-ndjson\r\nContent-Length: 0x10\r\n", 411, "no_length"),
    (b"Content-Type: text/plain\r\nContent-Length: 2\r\n", 415, "bad_type"),
    (b"Content-Length: 2\r\n", 415, "bad_type"),
])  # fmt: skip
def test_malformed_posts_are_refused(sink: Sink, head: bytes, status: int, reason: str) -> None:
    answer = raw(sink, b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n{}")
    assert answer.startswith(f"HTTP/1.0 {status} ".encode()), answer[:80]
    assert sink.stats()["rejected"][reason] == 1 and sink.stats()["decisions"] == 0


@pytest.mark.parametrize(("method", "path", "status", "allow"), [
    ("GET", "/v1/decisions", 405, "POST"),
    ("PUT", "/v1/decisions", 405, "POST"),
    ("DELETE", "/v1/decisions", 405, "POST"),
    ("PATCH", "/v1/decisions", 405, "POST"),
    ("OPTIONS", "/v1/decisions", 405, "POST"),
    ("POST", "/stats", 405, "GET"),
    ("POST", "/healthz", 405, "GET"),
    ("DELETE", "/stats", 405, "GET"),
    ("HEAD", "/stats", 405, None),
    ("GET", "/../etc/passwd", 404, None),
    ("POST", "/v1/decisions/../x", 404, None),
    ("GET", "/" + "a" * 10_000, 404, None),
])  # fmt: skip
def test_wrong_methods_and_paths(sink: Sink, method: str, path: str, status: int,
                                 allow: str | None) -> None:  # fmt: skip
    got, headers, _ = request(sink, method, path, b"{}" if method == "POST" else None, NDJSON)
    assert got == status
    if allow is not None:
        assert headers["Allow"] == allow
    assert sink.stats()["decisions"] == 0


def test_a_short_body_is_counted_and_dropped(sink: Sink) -> None:
    answer = raw(sink, b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       b"application/x-ndjson\r\nContent-Length: 100\r\n\r\n{\"a\":1}\n")
    assert answer == b""
    poll(lambda: sink.stats()["rejected"]["short_body"] == 1, timeout=10, what="short body")
    assert sink.stats()["decisions"] == 0


def test_connections_past_the_bound_are_closed_then_served_again(sink: Sink) -> None:
    idle = [socket.create_connection(sink.address, timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        poll(lambda: sink.stats()["rejected"]["busy"] > 0 or _refused(sink), timeout=10,
             what="a connection past the bound to be closed")  # fmt: skip
    finally:
        for s in idle:
            s.close()
    poll(lambda: _served(sink), timeout=10, what="the sink to serve again")
    assert sink.stats()["rejected"]["busy"] >= 1


def _refused(sink: Sink) -> bool:
    try:
        return raw(sink, b"GET /healthz HTTP/1.0\r\n\r\n") == b""
    except OSError:
        return True


def _served(sink: Sink) -> bool:
    try:
        return raw(sink, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
    except OSError:
        return False


# -- scraping a real sidecar metrics server ---------------------------------------------


@pytest.fixture
def sidecar_metrics(tmp_path: Path) -> Iterator[tuple[str, DecisionLog]]:
    (port,) = free_ports(1)
    dl = DecisionLog(tmp_path / "d.jsonl", interval=0.01)
    eng = Engine(decision_log=dl)
    server: Any = serve_metrics(f"127.0.0.1:{port}", make_registry(eng))
    try:
        yield f"http://127.0.0.1:{port}/metrics", dl
    finally:
        server.shutdown()
        server.server_close()
        dl.stop()


def test_scrapes_keep_bounded_series_of_the_selected_samples(
        tmp_path: Path, sidecar_metrics: tuple[str, DecisionLog]) -> None:  # fmt: skip
    url, dl = sidecar_metrics
    dl.queue_size = 2
    for _ in range(5):  # writer not started: 3 dropped, 2 queued
        dl.append((0.0, "GET", "/p", None, None, "c", True, 200, "", "v", False, 1))
    with Sink(tmp_path / "s", scrape_url=url, scrape_interval=0.05, max_samples=4) as s:
        poll(lambda: s.stats()["scrapes"] >= 6, timeout=10, what="6 scrapes")
        st, series = s.stats(), s.series()
    assert st["last"]["a1_decision_log_queue_bytes"] == dl.pending_bytes > 0
    assert st["last"]["a1_decision_log_dropped_total"] == 3
    assert st["last"]["process_resident_memory_bytes"] > 1 << 20  # the process collector
    q = series["a1_decision_log_queue_bytes"]
    assert len(q) == 4 and all(v == dl.pending_bytes for _, v in q)  # only the last 4 kept
    assert [t for t, _ in q] == sorted(t for t, _ in q)
    assert b"a1_decision_log_queue_bytes" in (tmp_path / "s" / "last_scrape.prom").read_bytes()
    assert st["scrape_errors"] == 0


def test_a_dead_scrape_target_is_counted(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with Sink(tmp_path, scrape_url=f"http://127.0.0.1:{port}/metrics",
              scrape_interval=0.05) as s:  # fmt: skip
        poll(lambda: s.stats()["scrape_errors"] >= 2, timeout=10, what="scrape errors")
        assert s.stats()["last_scrape_error"] and s.stats()["scrapes"] == 0


@pytest.mark.parametrize("url", [
    "http://10.0.0.1:9/metrics", "file:///etc/passwd", "http://127.0.0.1:9/other",
    "http://u@127.0.0.1:9/metrics",
])  # fmt: skip
def test_scrape_urls_are_checked(tmp_path: Path, url: str) -> None:
    with pytest.raises(ScrapeError):
        Sink(tmp_path, scrape_url=url)


# -- the process ------------------------------------------------------------------------


def test_the_process_under_the_launcher(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    spec = sink_spec(tmp_path / "sink", port)
    assert spec.log_path == tmp_path / "sink" / "sink.log"
    with Launcher() as launcher:
        launcher.start(spec)
        launcher.wait_ready(["sink"], timeout=30)
        url = decisions_url("127.0.0.1", port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", url.split(str(port), 1)[1], body=b'{"a":1}\n', headers=NDJSON)
        assert conn.getresponse().status == 200
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/stats")
        assert json.loads(conn.getresponse().read())["decisions"] == 1
        conn.close()
        assert launcher.stop("sink") == 0  # SIGTERM: a clean exit
    assert (tmp_path / "sink" / "decisions.jsonl").read_bytes() == b'{"a":1}\n'


@pytest.mark.parametrize(("args", "error"), [
    (["--listen", "nope"], "expected HOST:PORT"),
    (["--listen", "127.0.0.1:1", "--scrape", "http://10.0.0.1:1/metrics"], "sink: --scrape:"),
    (["--listen", "127.0.0.1:1", "--scrape-interval", "0"], "must be in [0.05, 60]"),
    (["--listen", "127.0.0.1:1", "--max-body", "-5"], "must be at least 1"),
])  # fmt: skip
def test_cli_errors_are_one_line(tmp_path: Path, capsys: Any, args: list[str],
                                 error: str) -> None:  # fmt: skip
    try:
        code = main(["--out", str(tmp_path), *args])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and error in err and "Traceback" not in err


def test_cli_refuses_a_port_in_use(tmp_path: Path, capsys: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["--listen", f"127.0.0.1:{port}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1" in err and err.count("\n") == 1
