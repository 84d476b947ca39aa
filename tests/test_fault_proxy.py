"""The conformance fault proxy, through real sockets: each toxic's effect measured end to
end against an echo server, per direction, with toxicity, switched at run time on open
connections; the proxy's enable switch; Unix sockets on both sides; the control API
under bad input; the process entry.

Time bounds are one-sided and loose (a delay is at least most of what was asked; an
unaffected path is well under a delay that is large): the machine is noisy.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import select
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.nemesis.proxy import (
    ProxyControl,
    ProxyControlError,
    RunningProxy,
    ToxicError,
    faults,
    parse_toxic,
    start_proxy,
)
from conformance.nemesis.proxy.address import parse_address
from conformance.nemesis.proxy.server import QUEUE_BYTES, READ_BYTES, FaultProxy
from policies.core.errors import ConfigError
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
GREETING = b"hello\n"


# -- an upstream: echo, optionally greeting first -------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            if self.server.greet:  # type: ignore[attr-defined]
                sock.sendall(GREETING)
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class _TcpEcho(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixEcho(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def _serve(server: Any, greet: bool) -> Iterator[Any]:
    server.greet = greet
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def echo() -> Iterator[str]:
    server = _TcpEcho(("127.0.0.1", 0), _Echo)
    for s in _serve(server, greet=False):
        yield f"127.0.0.1:{s.server_address[1]}"


@pytest.fixture
def greeter() -> Iterator[str]:
    server = _TcpEcho(("127.0.0.1", 0), _Echo)
    for s in _serve(server, greet=True):
        yield f"127.0.0.1:{s.server_address[1]}"


@pytest.fixture
def proxy(echo: str) -> Iterator[RunningProxy]:
    with start_proxy("127.0.0.1:0", echo, seed=1) as running:
        yield running


def dial(running: RunningProxy, timeout: float = 10.0) -> socket.socket:
    a = running.listen
    sock = socket.create_connection((a.host, a.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise EOFError(f"closed after {len(out)} of {n} bytes")
        out += data
    return out


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def silent_for(sock: socket.socket, seconds: float) -> bool:
    """True when nothing (no bytes, no close) arrives within ``seconds``."""
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(10.0)
    return False


def read_to_end(sock: socket.socket) -> bytes:
    out = b""
    while data := sock.recv(65536):
        out += data
    return out


# -- forwarding -------------------------------------------------------------------------


def test_forwards_both_ways_intact_and_counts_bytes(proxy: RunningProxy) -> None:
    payload = random.Random(3).randbytes(1 << 20)  # far more than any buffer
    with dial(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join()
    stats = wait_until(lambda: (s := proxy.control.stats())["connections"]["open"] == 0 and s,
                       "connection closed")
    assert stats["connections"]["total"] == 1
    for direction in ("upstream", "downstream"):
        assert stats["bytes"][direction] == {"received": len(payload), "sent": len(payload)}


def test_a_held_direction_pushes_back_instead_of_buffering(proxy: RunningProxy) -> None:
    """With the downstream held, the proxy reads at most its bounded queue from the
    upstream; the rest stays in the kernels and the client's send stops."""
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.add("timeout", direction="downstream", timeout=0)
        sock.setblocking(False)
        sent, block = 0, b"x" * 65536
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sent < 64 << 20:
            try:
                sent += sock.send(block)
            except BlockingIOError:
                if _stalled(sock):
                    break
        assert sent < 64 << 20, "the client could send without bound"
        down = proxy.control.stats()["bytes"]["downstream"]
        assert down["sent"] == 4  # the first round trip only
        # the queue, the chunk the writer holds, the chunk the reader waits to queue
        assert down["received"] - down["sent"] <= QUEUE_BYTES + 2 * READ_BYTES


def _stalled(sock: socket.socket) -> bool:
    """The socket stays unwritable for a while (the other end stopped reading)."""
    _, writable, _ = select.select([], [sock], [], 0.3)
    return not writable


# -- each toxic ---------------------------------------------------------------------------


def test_latency_delays_until_removed(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.add("latency", latency=300)
        assert round_trip(sock) >= 0.28
        proxy.control.add("latency", direction="upstream", latency=100, jitter=50)
        assert round_trip(sock) >= 0.3 + 0.045
        proxy.control.remove("latency_downstream")
        proxy.control.remove("latency_upstream")
        proxy.control.add("latency", latency=5000, name="long")
        proxy.control.remove("long")
        assert round_trip(sock) < 2.5  # nothing left of 5 s


def test_an_update_wakes_a_waiting_chunk(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.add("latency", name="slow", latency=60_000)
        sock.sendall(b"x")
        assert silent_for(sock, 0.3)
        proxy.control.update("slow", latency=0)
        start = time.monotonic()
        assert recv_exactly(sock, 1) == b"x"
        assert time.monotonic() - start < 30  # not the minute it was first asked to wait


def test_upstream_toxic_does_not_delay_downstream(greeter: str) -> None:
    with start_proxy("127.0.0.1:0", greeter) as running:
        running.control.add("latency", direction="upstream", latency=2000)
        with dial(running) as sock:
            start = time.monotonic()
            assert recv_exactly(sock, len(GREETING)) == GREETING  # server -> client
            greeted = time.monotonic() - start
            assert round_trip(sock) >= 1.9  # client -> server carries the 2 s
        assert greeted < 1.5


def test_blackhole_drops_data_and_keeps_the_connection(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.add("blackhole", direction="downstream")
        sock.sendall(b"lost")
        assert silent_for(sock, 0.5)
        proxy.control.remove("blackhole_downstream")
        assert round_trip(sock, b"kept") < 10  # open all along; "lost" never comes


def test_timeout_closes_after_its_time_without_passing_data(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        round_trip(sock)
        start = time.monotonic()
        proxy.control.add("timeout", direction="upstream", timeout=300)
        sock.sendall(b"held")
        assert read_to_end(sock) == b""
        assert time.monotonic() - start >= 0.28


def test_timeout_zero_holds_until_removed(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.add("timeout", direction="upstream", timeout=0)
        sock.sendall(b"held")
        assert silent_for(sock, 0.5)
        proxy.control.remove("timeout_upstream")
        assert recv_exactly(sock, 4) == b"held"


def test_reset_peer_resets(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        round_trip(sock)
        start = time.monotonic()
        proxy.control.add("reset_peer", timeout=200)
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"x")
            read_to_end(sock)
        assert time.monotonic() - start >= 0.18


def test_bandwidth_limits_throughput(proxy: RunningProxy) -> None:
    payload = random.Random(5).randbytes(60_000)
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.add("bandwidth", rate=100)  # 100 KB/s: 60 KB take about 0.5 s or more
        start = time.monotonic()
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join()
        assert time.monotonic() - start >= 0.35


def test_slicer_splits_a_write_into_several_reads(proxy: RunningProxy) -> None:
    payload = bytes(range(200))
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.add("slicer", average_size=20, size_variation=5, delay=20_000)
        sock.sendall(payload)
        reads: list[bytes] = []
        while sum(map(len, reads)) < len(payload):
            reads.append(sock.recv(4096))
        assert b"".join(reads) == payload
        assert len(reads) >= 4


def test_limit_data_closes_after_n_bytes(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        proxy.control.add("limit_data", bytes=100)
        sock.sendall(b"a" * 60)
        assert recv_exactly(sock, 60) == b"a" * 60
        sock.sendall(b"b" * 200)
        assert read_to_end(sock) == b"b" * 40


# -- toxicity, seeds, switching -------------------------------------------------------------


def _poisoned(running: RunningProxy, n: int) -> list[bool]:
    """For ``n`` connections in turn: did the limit_data(0) toxic apply (closed at once)?"""
    out = []
    for _ in range(n):
        with dial(running) as sock:
            sock.sendall(b"x")
            out.append(read_to_end_or_echo(sock))
    return out


def read_to_end_or_echo(sock: socket.socket) -> bool:
    data = sock.recv(1)
    return data == b""


@pytest.mark.parametrize("toxicity", [0.0, 1.0])
def test_toxicity_zero_never_one_always(proxy: RunningProxy, toxicity: float) -> None:
    proxy.control.add("limit_data", bytes=0, toxicity=toxicity)
    assert _poisoned(proxy, 6) == [toxicity == 1.0] * 6


def test_toxicity_draws_follow_the_seed(echo: str) -> None:
    patterns = []
    for _ in range(2):
        with start_proxy("127.0.0.1:0", echo, seed=42) as running:
            running.control.add("limit_data", bytes=0, toxicity=0.5)
            patterns.append(_poisoned(running, 12))
    assert patterns[0] == patterns[1]
    assert True in patterns[0] and False in patterns[0]


def test_disable_cuts_connections_and_refuses_new_ones(proxy: RunningProxy) -> None:
    with dial(proxy) as sock:
        round_trip(sock)
        proxy.control.disable()
        with pytest.raises((ConnectionResetError, EOFError)):
            round_trip(sock)
    with pytest.raises(ConnectionRefusedError):
        dial(proxy)
    assert proxy.control.info()["enabled"] is False
    proxy.control.enable()
    with dial(proxy) as sock:
        round_trip(sock)


def test_reset_removes_toxics_and_enables(proxy: RunningProxy) -> None:
    proxy.control.add("blackhole")
    proxy.control.disable()
    info = proxy.control.reset()
    assert info["enabled"] is True and info["toxics"] == []
    with dial(proxy) as sock:
        round_trip(sock)


def test_connection_bound(echo: str) -> None:
    proxy = FaultProxy(parse_address("127.0.0.1:0", "l", listen=True),
                       parse_address(echo, "u"), max_connections=2)
    proxy.start()
    try:
        a = proxy.listen
        socks = [socket.create_connection((a.host, a.port), timeout=10) for _ in range(3)]
        for s in socks[:2]:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        with pytest.raises((ConnectionResetError, EOFError)):
            socks[2].sendall(b"x")
            if not socks[2].recv(1):
                raise EOFError
        assert proxy.stats()["connections"]["refused"] == 1
        for s in socks:
            s.close()
    finally:
        proxy.stop()


# -- Unix sockets ---------------------------------------------------------------------------


def test_unix_upstream_and_unix_listen(tmp_path: Path) -> None:
    upstream = str(tmp_path / "up.sock")
    listen = str(tmp_path / "px.sock")
    for _ in _serve(_UnixEcho(upstream, _Echo), greet=False):
        # a stale socket at the listen path (nobody answers) is replaced
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(listen)
        stale.close()
        with start_proxy(f"unix:{listen}", f"unix:{upstream}") as running:
            assert stat.S_IMODE(os.lstat(listen).st_mode) == 0o600
            running.control.add("latency", latency=200)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(listen)
                assert round_trip(sock) >= 0.18
            running.control.disable()
            running.control.enable()
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(listen)
                assert round_trip(sock, b"again") >= 0.18
        assert not os.path.exists(listen)  # our socket, removed at stop


def test_unix_listen_refuses_a_symlink_and_a_live_socket(tmp_path: Path, echo: str) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "px.sock"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symlink"):
        start_proxy(f"unix:{link}", echo)
    assert target.read_text() == "keep"
    live = str(tmp_path / "live.sock")
    with start_proxy(f"unix:{live}", echo), pytest.raises(ConfigError, match="in use"):
        start_proxy(f"unix:{live}", echo)


@pytest.mark.parametrize("text, message", [
    ("", "expected host:port"), ("localhost", "expected host:port"),
    ("127.0.0.1:99999", "out of range"), ("127.0.0.1:0", "out of range"),
    ("127.0.0.1:+80", "expected host:port"), ("unix:relative.sock", "must be absolute"),
    ("unix:/" + "a" * 200, "sun_path"), ("bad host:80", "bad host"),
])
def test_bad_upstream_addresses(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_address(text, "--upstream")
    assert str(err.value).startswith("--upstream: ") and "\n" not in str(err.value)


def test_upstream_unreachable_closes_the_client(tmp_path: Path) -> None:
    with start_proxy("127.0.0.1:0", f"unix:{tmp_path}/nobody.sock") as running:
        with dial(running) as sock:
            assert read_to_end_or_reset(sock)
        assert running.control.stats()["connections"]["upstream_failed"] == 1


def read_to_end_or_reset(sock: socket.socket) -> bool:
    try:
        return read_to_end(sock) == b""
    except ConnectionResetError:
        return True


# -- the control API under bad input --------------------------------------------------------


def raw(running: RunningProxy, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, Any]:
    ctl = running.control
    conn = http.client.HTTPConnection(ctl.host, ctl.port, timeout=10)
    try:
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    assert "Traceback" not in text and text.count("\n") <= 1, text
    return response.status, json.loads(text)


def toxic(**doc: Any) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("body, field", [
    (toxic(kind="latency", attributes={"latency": "100"}), "toxic.attributes.latency"),
    (toxic(kind="latency", attributes={"latency": -1}), "toxic.attributes.latency"),
    (toxic(kind="latency", attributes={"latency": 1.5}), "toxic.attributes.latency"),
    (toxic(kind="latency", attributes={"latency": True}), "toxic.attributes.latency"),
    (toxic(kind="latency", attributes={"latency": 10 ** 30}), "toxic.attributes.latency"),
    (toxic(kind="latency"), "toxic.attributes.latency: required"),
    (toxic(kind="latency", attributes={"latency": 1, "color": 2}), "toxic.attributes.color"),
    (toxic(kind="gremlin"), "toxic.kind: unknown toxic kind"),
    (toxic(kind=["latency"]), "toxic.kind"),
    (toxic(kind="blackhole", direction="sideways"), "toxic.direction"),
    (toxic(kind="blackhole", toxicity=1.5), "toxic.toxicity"),
    (toxic(kind="blackhole", toxicity="1"), "toxic.toxicity"),
    (toxic(kind="blackhole", name="../proxy"), "toxic.name"),
    (toxic(kind="blackhole", name="x" * 65), "toxic.name"),
    (toxic(kind="blackhole", stream="upstream"), "toxic.stream: unknown field"),
    (toxic(kind="bandwidth", attributes={"rate": 0}), "toxic.attributes.rate"),
    (toxic(kind="slicer", attributes={"average_size": 10, "size_variation": 10}),
     "toxic.attributes.size_variation"),
    (b"[1, 2]", "toxic: must be an object"),
    (b"{\"kind\": \"latency\", \"attributes\": {\"latency\": NaN}}", "NaN is not JSON"),
    (b"{\"kind\": ", "body:1:10: invalid JSON"),
    (b"[" * 5000 + b"]" * 5000, "nesting deeper than"),
    (b"\xff\xfe", "not UTF-8"),
], ids=lambda v: v.split(":")[0] if isinstance(v, str) else "doc")
def test_control_api_refuses_bad_toxics(proxy: RunningProxy, body: bytes, field: str) -> None:
    status, answer = raw(proxy, "POST", "/toxics", body)
    assert status == 400 and field in answer["error"], answer
    assert proxy.control.toxics() == []


@pytest.mark.parametrize("method, path, body, headers, status, message", [
    ("POST", "/toxics", b"{" + b" " * 20000 + b"}", {}, 413, "larger than"),
    ("POST", "/toxics", toxic(kind="blackhole"), {"Content-Type": "text/plain"}, 415,
     "Content-Type"),
    ("GET", "/proxy", None, {"Host": "evil.example:80"}, 421, "not this server"),
    ("GET", "/nothing", None, {}, 404, "no such endpoint"),
    ("GET", "/toxics/../proxy", None, {}, 404, "no such endpoint"),
    ("GET", "/toxics/%2e%2e", None, {}, 404, "no such endpoint"),
    ("GET", "/toxics/absent", None, {}, 404, "no toxic named"),
    ("DELETE", "/toxics/absent", None, {}, 404, "no toxic named"),
    ("PUT", "/toxics", None, {}, 405, "not allowed"),
    ("DELETE", "/proxy", None, {}, 405, "not allowed"),
    ("POST", "/reset", None, {"Content-Type": ""}, 415, "Content-Type"),
    ("DELETE", "/toxics/x", None, {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ("POST", "/proxy", b"{\"enabled\": \"no\"}", {}, 400, "proxy.enabled"),
    ("POST", "/proxy", b"{\"enabled\": false, \"why\": 1}", {}, 400, "proxy.why"),
    ("GET", "/" + "a" * 300, None, {}, 414, "longer than"),
    ("POST", "/toxics", b"{}", {"Content-Length": "1e9"}, 400, "Content-Length"),
], ids=lambda v: v[:30] if isinstance(v, str) else str(v) if isinstance(v, int) else "x")
def test_control_api_refuses_bad_requests(proxy: RunningProxy, method: str, path: str,
                                          body: bytes | None, headers: dict[str, str],
                                          status: int, message: str) -> None:
    got, answer = raw(proxy, method, path, body, headers)
    assert got == status and message in answer["error"], answer
    assert proxy.control.info()["enabled"] is True


def test_control_api_add_update_conflicts(proxy: RunningProxy) -> None:
    ctl = proxy.control
    added = ctl.add("latency", name="lag", latency=10)
    assert added == {"name": "lag", "kind": "latency", "direction": "downstream",
                     "toxicity": 1.0, "attributes": {"latency": 10, "jitter": 0}}
    with pytest.raises(ProxyControlError, match="already exists") as err:
        ctl.add("latency", name="lag", latency=10)
    assert err.value.status == 409
    assert ctl.update("lag", toxicity=0.5, jitter=3)["attributes"] == {"latency": 10,
                                                                       "jitter": 3}
    status, answer = raw(proxy, "POST", "/toxics/lag", toxic(kind="blackhole"))
    assert status == 400 and "toxic.kind: cannot be changed" in answer["error"]
    with pytest.raises(ProxyControlError, match=r"toxic\.attributes\.latency"):
        ctl.update("lag", latency=-5)
    assert ctl.toxics()[0]["attributes"]["latency"] == 10  # a refused update changes nothing
    ctl.remove("lag")
    assert ctl.toxics() == []


def test_control_is_loopback_only(echo: str) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        start_proxy("127.0.0.1:0", echo, control="0.0.0.0:0")


def test_client_reports_an_unreachable_api() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = ProxyControl(f"127.0.0.1:{port}", link="envoy-xds", timeout=2)
    with pytest.raises(ProxyControlError, match="fault proxy envoy-xds") as err:
        ctl.stats()
    assert err.value.status == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)
toxic_docs = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["latency", "bandwidth", "timeout", "blackhole", "reset_peer",
                             "slicer", "limit_data", "nope"]) | json_values,
    "direction": st.sampled_from(["upstream", "downstream"]) | json_values,
    "toxicity": st.floats() | json_values,
    "name": st.text(max_size=70) | json_values,
    "attributes": st.dictionaries(
        st.sampled_from(["latency", "jitter", "rate", "timeout", "average_size",
                         "size_variation", "delay", "bytes", "x"]),
        st.integers(-10, 10 ** 16) | json_values, max_size=4) | json_values,
}) | json_values


@settings(max_examples=200, deadline=None)
@given(toxic_docs)
def test_any_document_is_a_toxic_or_a_one_line_error(doc: Any) -> None:
    try:
        parsed = parse_toxic(doc)
    except ToxicError as err:
        assert str(err).startswith("toxic") and "\n" not in str(err)
    else:
        assert parse_toxic(parsed.to_dict()) == parsed  # what it answers, it accepts again


class _Target:
    """What the network nemeses use of a target: its proxies by link."""

    def __init__(self, links: dict[str, ProxyControl]) -> None:
        self.links = links

    def proxy(self, link: str) -> ProxyControl:
        return self.links[link]


def test_network_faults_inject_and_repair(proxy: RunningProxy) -> None:
    target = _Target({"sidecar-sink": proxy.control})
    fault = faults.toxic(target, "sidecar-sink", "blackhole", direction="upstream")
    assert fault.name == "toxic:sidecar-sink:blackhole" and "I-7" in fault.expect
    with dial(proxy) as sock:
        fault.inject()
        sock.sendall(b"gone")
        assert silent_for(sock, 0.3)
        fault.repair()
        assert round_trip(sock) < 10
    outage = faults.down(target, "sidecar-sink")
    outage.inject()
    with pytest.raises(ConnectionRefusedError):
        dial(proxy)
    outage.repair()
    assert proxy.control.info()["toxics"] == [] and proxy.control.info()["enabled"]
    with pytest.raises(ToxicError, match=r"toxic\.attributes\.latency"):
        faults.toxic(target, "envoy-xds", "latency", latency=-1)  # refused before the run
    assert "I-5" in faults.toxic(target, "envoy-cell-2", "reset_peer").expect


# -- the process entry ----------------------------------------------------------------------


def _entry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance.nemesis.proxy", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("args, message", [
    ([], "required"),
    (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--control", "127.0.0.1:0",
      "--seed", "x"], "--seed"),
    (["--listen", "nowhere", "--upstream", "127.0.0.1:1", "--control", "127.0.0.1:0"],
     "--listen: expected host:port"),
    (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:0", "--control", "127.0.0.1:0"],
     "--upstream: port 0 out of range"),
    (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--control", "10.1.2.3:9"],
     "--control: 10.1.2.3 is not a loopback address"),
])
def test_entry_refuses_bad_arguments(args: list[str], message: str) -> None:
    done = _entry(*args)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""


def test_entry_runs_a_proxy_to_a_unix_upstream(tmp_path: Path) -> None:
    upstream = str(tmp_path / "xds.sock")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen_port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        control_port = s.getsockname()[1]
    for _ in _serve(_UnixEcho(upstream, _Echo), greet=False):
        proc = subprocess.Popen(
            [sys.executable, "-m", "conformance.nemesis.proxy", "--listen",
             f"127.0.0.1:{listen_port}", "--upstream", f"unix:{upstream}", "--control",
             f"127.0.0.1:{control_port}", "--seed", "7", "--name", "envoy-xds"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ctl = ProxyControl(f"127.0.0.1:{control_port}", link="envoy-xds")
            info = ctl.wait_ready(timeout=20)
            assert info["upstream"] == f"unix:{upstream}" and info["name"] == "envoy-xds"
            ctl.add("latency", latency=150)
            with socket.create_connection(("127.0.0.1", listen_port), timeout=10) as sock:
                assert round_trip(sock) >= 0.13
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0 and out == "" and err == ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_a_grpc_channel_over_unix_sockets_sees_a_blackhole_come_and_go(tmp_path: Path) -> None:
    """The xDS link's shape: gRPC (HTTP/2) to a Unix-socket server, one long-lived
    channel, a toxic switched on and off under it."""
    path = str(tmp_path / "xds.sock")
    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(f"unix:{path}")
    server.start()
    try:
        with start_proxy("127.0.0.1:0", f"unix:{path}") as running, \
                grpc.insecure_channel(str(running.listen)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            assert stub.Check(request, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            running.control.add("blackhole", direction="downstream")
            with pytest.raises(grpc.RpcError) as err:
                stub.Check(request, timeout=0.5)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            running.control.remove("blackhole_downstream")
            assert stub.Check(request, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            assert running.control.stats()["connections"]["total"] == 1  # the same connection
    finally:
        server.stop(0)
