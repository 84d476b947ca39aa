"""The shared loopback JSON server (policies.core.jsonhttp), through a real socket:
framing attacks on the body, Host forms, HEAD, the connection bound, and a handler
that raises (one log line, no traceback). Its users' routes are tested in
test_control_plane, test_fault_proxy and test_sink."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.harness.waiting import poll
from policies.core.jsonhttp import HttpError, JsonHandler, JsonHTTPServer, request_host

log = logging.getLogger("a1.test.jsonhttp")


class _Owner:
    def __init__(self) -> None:
        self.busy = 0


class _Echo(JsonHandler):
    server: JsonHTTPServer[_Owner]

    def dispatch(self, method: str) -> None:
        try:
            path = self.request_path(64)
            self.check_host()
            body = self.read_body(100)
        except HttpError as err:
            self.reply(err.status, {"error": str(err), "reason": err.reason})
            return
        if path == "/boom":
            raise RuntimeError("a bug\nwith two lines")
        self.reply(200, {"method": method, "body": body.decode()})


@pytest.fixture
def server() -> Iterator[JsonHTTPServer[_Owner]]:
    owner = _Owner()
    srv = JsonHTTPServer(("127.0.0.1", 0), _Echo, owner, max_connections=2, log=log,
                         on_busy=lambda: setattr(owner, "busy", owner.busy + 1))
    srv.start("test-jsonhttp")
    try:
        yield srv
    finally:
        srv.stop()


def raw(srv: JsonHTTPServer[Any], data: bytes) -> tuple[int, bytes, bytes]:
    """Send ``data``, half-close, read to EOF: (status, head, body)."""
    with socket.create_connection(srv.server_address[:2], timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.mark.parametrize(("headers", "status", "reason"), [
    (b"Content-Length: 2\r\nContent-Length: 3\r\n", 400, "bad_length"),  # smuggling
    (b"Content-Length: -2\r\n", 400, "bad_length"),
    (b"Content-Length: 1_0\r\n", 400, "bad_length"),  # a number to int(), not here
    (b"Content-Length: 1" + b"0" * 40 + b"\r\n", 413, "too_large"),
    (b"Content-Length: 101\r\n", 413, "too_large"),
    (b"Transfer-Encoding: chunked\r\n", 411, "no_length"),
    (b"Content-Length: 50\r\n", 400, "short_body"),
    (b"Host: evil.example:80\r\n", 421, "bad_host"),
])  # fmt: skip
def test_bad_framing_and_hosts_are_one_line_json(server: JsonHTTPServer[Any], headers: bytes,
                                                 status: int, reason: str) -> None:
    host = b"" if b"Host:" in headers else b"Host: localhost\r\n"
    got, head, body = raw(server, b"POST / HTTP/1.1\r\n" + host + headers + b"\r\n{}")
    assert got == status and b"Connection: close" in head
    assert json.loads(body)["reason"] == reason and body.count(b"\n") == 1


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1", "127.0.0.1:9", "[::1]:9", "[::1]",
                                  "::1"])
def test_loopback_host_forms_are_accepted(server: JsonHTTPServer[Any], host: str) -> None:
    got, _, body = raw(server, f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n"
                               "\r\nhi".encode())  # fmt: skip
    assert got == 200 and json.loads(body) == {"body": "hi", "method": "POST"}


def test_request_host() -> None:
    assert request_host("[::1]:80") == "::1"
    assert request_host("Evil.Example:80") == "evil.example"
    assert request_host("[::1") == "[::1"  # malformed: kept, so it matches nothing


def test_head_has_no_body_and_errors_have_no_traceback(server: JsonHTTPServer[Any],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    got, head, body = raw(server, b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close"
                                  b"\r\n\r\n")  # fmt: skip
    assert got == 200 and body == b"" and b"Content-Length: " in head
    got, head, body = raw(server, b"\x16\x03\x01garbage\r\n\r\n")
    assert got == 400 and b"application/json" in head and b"Traceback" not in body
    with caplog.at_level(logging.WARNING, logger=log.name), socket.create_connection(
        server.server_address[:2], timeout=10
    ) as s:
        s.sendall(b"GET /boom HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(100) == b""  # closed without an answer
    poll(lambda: any("a bug with two lines" in r.getMessage() for r in caplog.records),
         timeout=10, what="the one-line log of the failed request")


def test_connections_past_the_bound_are_closed(server: JsonHTTPServer[_Owner]) -> None:
    idle = [socket.create_connection(server.server_address[:2], timeout=10) for _ in range(2)]
    try:
        def refused() -> bool:
            with socket.create_connection(server.server_address[:2], timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                try:
                    return s.recv(100) == b""
                except ConnectionResetError:
                    return True
        poll(refused, timeout=10, what="a connection over the bound closed")
        assert server.owner.busy >= 1
    finally:
        for s in idle:
            s.close()

    def served() -> bool:
        """Slots free again once the handlers of the closed connections saw their EOF
        (asynchronously): until then a new connection is still over the bound."""
        with socket.create_connection(server.server_address[:2], timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            try:
                return s.recv(100).startswith(b"HTTP/1.1 200 ")
            except ConnectionResetError:
                return False
    poll(served, timeout=10, what="a connection under the bound served again")
