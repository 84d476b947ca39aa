"""The sidecar's three front doors, as Envoy reaches them: a real process on Unix sockets.

Every door must read the same facts from the same request and give the same
answer (status and reason): canonical paths and the tenant grammar are enforced
once, UTF-8 is decoded strictly everywhere, and a policy cannot set framing or
proxy-control headers. The decision sockets are private (0600), stale sockets are
replaced safely, and memory stays bounded under a flood of huge denied requests.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2

from a1.launcher import free_ports
from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.waiting import poll
from ext_proc.slim import SlimCheckRequest
from policies.compiler import compile_files, compile_sources
from policies.core.cells import CellTable

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "policies" / "library"
ENTRY = "a1/authz/decision"
CELLS = CellTable.balanced(["cell-1", "cell-2", "cell-3"])
ALICE = {"sub": "alice", "tenant": "acme", "roles": ["reader"]}
JWT_NS = "envoy.filters.http.jwt_authn"


def short_dir() -> Path:
    """A directory whose socket paths fit in sun_path (pytest's tmp_path can be long)."""
    return Path(tempfile.mkdtemp(prefix="a1sd-", dir="/tmp"))


@dataclass
class Sidecar:
    proc: subprocess.Popen[bytes]
    dir: Path
    metrics: int

    @property
    def grpc_path(self) -> Path:
        return self.dir / "grpc.sock"

    @property
    def http_path(self) -> Path:
        return self.dir / "http.sock"

    def stderr(self) -> str:
        return (self.dir / "stderr.log").read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def metric(self, name: str, labels: str = "") -> float:
        url = f"http://127.0.0.1:{self.metrics}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        want = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == want:
                return float(value)
        return 0.0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def write_config(d: Path, extra: str = "", module: bytes | None = None) -> tuple[Path, int]:
    (d / "authz.wasm").write_bytes(module or compile_files([LIBRARY / "authz.rego"],
                                                          LIBRARY / "data.json", [ENTRY]))
    CELLS.save(d / "cells.yaml")
    m = free_ports(1)[0]
    cfg = d / "sidecar.yaml"
    cfg.write_text(
        f"grpc_address: unix:{d / 'grpc.sock'}\nhttp_address: unix:{d / 'http.sock'}\n"
        f"metrics_address: 127.0.0.1:{m}\npolicy: {{module: authz.wasm}}\n"
        f"cells: {{table: cells.yaml}}\ndecision_log: {{path: decisions.jsonl}}\n{extra}"
    )
    return cfg, m


def launch(d: Path, extra: str = "", module: bytes | None = None) -> Sidecar:
    cfg, m = write_config(d, extra, module)
    proc = subprocess.Popen([sys.executable, "-m", "ext_proc", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=(d / "stderr.log").open("wb"))
    sc = Sidecar(proc, d, m)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"sidecar exited {proc.returncode}: {sc.stderr()}")
        return "serving grpc=" in sc.stderr()

    poll(ready, what="sidecar readiness")
    return sc


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    d = short_dir()
    sc = launch(d)
    try:
        yield sc
    finally:
        sc.stop()
        shutil.rmtree(d, ignore_errors=True)


# -- the three doors, spoken as Envoy speaks them --------------------------------------


def payload(claims: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


def _metadata(claims: dict[str, Any] | None) -> bytes:
    md = base_pb2.Metadata()
    if claims is not None:
        s = struct_pb2.Struct()
        s.update({"jwt_payload": claims})
        md.filter_metadata[JWT_NS].CopyFrom(s)
    return md.SerializeToString()


def via_grpc(sc: Sidecar, path: bytes, claims: dict[str, Any] | None) -> tuple[int, str]:
    # Built with the slim message (bytes fields), so a path may hold any bytes.
    req = SlimCheckRequest()
    h = req.attributes.request.http
    h.method, h.path, h.host = b"GET", path, b"api.local"
    req.attributes.metadata_context = _metadata(claims)
    with grpc.insecure_channel(f"unix:{sc.grpc_path}") as ch:
        call = ch.unary_unary("/envoy.service.auth.v3.Authorization/Check",
                              request_serializer=lambda b: b,
                              response_deserializer=external_auth_pb2.CheckResponse.FromString)
        resp = call(req.SerializeToString(), timeout=10)
    if resp.status.code == 0:
        return 200, ""
    hdrs = {x.header.key: x.header.value for x in resp.denied_response.headers}
    return resp.denied_response.status.code, hdrs.get("x-a1-deny-reason", "")


def via_ext_proc(sc: Sidecar, path: bytes, claims: dict[str, Any] | None) -> tuple[int, str]:
    req = ep.ProcessingRequest()
    for k, v in ((":method", b"GET"), (":path", path), (":authority", b"api.local")):
        hv = req.request_headers.headers.headers.add()
        hv.key, hv.raw_value = k, v
    if claims is not None:
        hv = req.request_headers.headers.headers.add()
        hv.key, hv.raw_value = "x-a1-jwt-payload", payload(claims).encode()
    with grpc.insecure_channel(f"unix:{sc.grpc_path}") as ch:
        call = ch.stream_stream("/envoy.service.ext_proc.v3.ExternalProcessor/Process",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=ep.ProcessingResponse.FromString)
        (resp,) = list(call(iter([req]), timeout=10))
    if resp.WhichOneof("response") == "request_headers":
        return 200, ""
    imm = resp.immediate_response
    hdrs = {x.header.key: x.header.raw_value.decode() for x in imm.headers.set_headers}
    return imm.status.code, hdrs.get("x-a1-deny-reason", "")


def http_exchange(sc: Sidecar, raw: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sc.http_path))
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def via_http(sc: Sidecar, path: bytes, claims: dict[str, Any] | None) -> tuple[int, str]:
    head = b"GET " + path + b" HTTP/1.1\r\nhost: api.local\r\nconnection: close\r\n"
    if claims is not None:
        head += b"x-a1-jwt-payload: " + payload(claims).encode() + b"\r\n"
    out = http_exchange(sc, head + b"\r\n")
    lines = out.split(b"\r\n\r\n")[0].decode().split("\r\n")
    hdrs = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), hdrs.get("x-a1-deny-reason", "")


DOORS = {"grpc": via_grpc, "ext_proc": via_ext_proc, "http": via_http}


# -- tests -------------------------------------------------------------------------------


def test_decision_sockets_are_private_sockets(sidecar: Sidecar) -> None:
    for p in (sidecar.grpc_path, sidecar.http_path):
        st = os.lstat(p)
        assert stat.S_ISSOCK(st.st_mode), p
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert st.st_uid == os.getuid()


CASES: list[tuple[bytes, dict[str, Any] | None, int, str]] = [
    (b"/t/acme/items", ALICE, 200, ""),
    (b"/t/globex/items", ALICE, 403, "cross-tenant request"),
    # the tenant grammar: one spelling per tenant
    (b"/t/ACME/items", ALICE, 400, "target tenant id 'ACME' does not match"),
    ("/t/écme/items".encode(), ALICE, 400, "does not match"),  # latin-1 on HTTP before
    (b"/t/%61%63me/items", ALICE, 400, "does not match"),
    (b"/t//items", ALICE, 400, "empty segment"),
    (b"/t/", ALICE, 400, "tenant id is empty"),
    # dot-segments and encoded slashes, plain and percent-encoded, any case
    (b"/t/../globex/items", ALICE, 400, "dot-segment"),
    (b"/t/acme/../globex/items", ALICE, 400, "dot-segment"),
    (b"/public/../t/globex/items", None, 400, "dot-segment"),
    (b"/t/%2e%2E/globex/items", ALICE, 400, "dot-segment"),
    (b"/t/acme/.%2e/globex/items", ALICE, 400, "dot-segment"),
    (b"/t/acme%2fglobex/items", ALICE, 400, "encoded slash"),
    (b"/t/acme%5Cglobex/items", ALICE, 400, "encoded slash"),
    (b"/t/acme\\globex/items", ALICE, 400, "backslash"),
    (b"t/acme/items", ALICE, 400, "must start with /"),
    # the caller's claim follows the same grammar: a claim outside it can never match
    (b"/t/acme/items", {**ALICE, "tenant": "%61%63me"}, 403, "tenant claim is not a canonical"),
    (b"/t/acme/items", {**ALICE, "tenant": "ACME"}, 403, "tenant claim is not a canonical"),
    # invalid UTF-8 anywhere in what the sidecar reads
    (b"/t/acme/\xff", ALICE, 400, "not valid UTF-8"),
    (b"/t/ac\xc3me/items", ALICE, 400, "not valid UTF-8"),
    # bounded request size
    (b"/t/acme/" + b"a" * 16384, ALICE, 414, "path is longer than 8192 bytes"),
]


@pytest.mark.parametrize(("path", "claims", "status", "reason"), CASES,
                         ids=[c[0][:40].decode(errors="replace") for c in CASES])
def test_every_door_gives_the_same_answer(sidecar: Sidecar, path: bytes,
                                          claims: dict[str, Any] | None, status: int,
                                          reason: str) -> None:
    answers = {name: door(sidecar, path, claims) for name, door in DOORS.items()}
    for name, (got_status, got_reason) in answers.items():
        assert got_status == status, (name, answers)
        assert reason in got_reason, (name, answers)
    assert len(set(answers.values())) == 1, answers


def test_http_door_framing_errors_close_the_connection(sidecar: Sidecar) -> None:
    out = http_exchange(sidecar, b"GET /t/acme/x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 501 ") and b"connection: close" in out
    out = http_exchange(sidecar, b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")


def _decisions_total(sc: Sidecar) -> float:
    url = f"http://127.0.0.1:{sc.metrics}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("a1_decisions_total{"))


def _logged(sc: Sidecar) -> list[dict[str, Any]]:
    p = sc.dir / "decisions.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


@pytest.mark.parametrize(("raw", "status", "reason"), [
    (b"GET /t/acme/\xff HTTP/1.1\r\nconnection: close\r\n\r\n", 400, "not valid UTF-8"),
    (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
    (b"GET /t/acme/x HTTP/1.1\r\nno-colon\r\n\r\n", 400, "malformed header line"),
    (b"GET /t/acme/x HTTP/1.1\r\ncontent-length: x\r\n\r\n", 400, "bad content-length"),
    (b"GET /t/acme/x HTTP/1.1\r\ncontent-length: 99999999\r\n\r\n", 413, "too large"),
    (b"GET /t/acme/x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", 501, "chunked"),
    (b"GET /t/acme/x HTTP/1.1\r\nx-big: " + b"a" * 70000, 431, "header too large"),
], ids=["utf8", "request-line", "header-line", "content-length", "body-size", "chunked",
        "head-size"])
def test_http_door_counts_and_logs_the_requests_it_refuses(
        sidecar: Sidecar, raw: bytes, status: int, reason: str) -> None:
    """As the gRPC doors do: a refused request is a decision, in the metrics and the log."""
    # Earlier tests' decisions may still be on their way to the log: every one is logged.
    poll(lambda: len(_logged(sidecar)) == _decisions_total(sidecar), what="the log to catch up")
    before, logged = _decisions_total(sidecar), len(_logged(sidecar))
    out = http_exchange(sidecar, raw)
    assert out.startswith(f"HTTP/1.1 {status} ".encode()) and reason.encode() in out, out[:200]
    poll(lambda: _decisions_total(sidecar) == before + 1, what="the refusal to be counted")
    rows = poll(lambda: _logged(sidecar)[logged:], what="the refusal to be logged")
    assert [(r["allow"], r["status"]) for r in rows] == [(False, status)]
    assert reason in rows[0]["reason"]
    # The gRPC door's refusal of a broken request is counted the same way.
    before, logged = _decisions_total(sidecar), len(_logged(sidecar))
    assert via_grpc(sidecar, b"/t/acme/\xff", ALICE)[0] == 400
    poll(lambda: _decisions_total(sidecar) == before + 1, what="the gRPC refusal to be counted")
    rows = poll(lambda: _logged(sidecar)[logged:], what="the gRPC refusal to be logged")
    assert [(r["allow"], r["status"], r["reason"]) for r in rows] == [
        (False, 400, "request is not valid UTF-8")]


def _doors_with(sc: Sidecar, path: bytes, host: bytes, tenant: list[bytes]
                ) -> dict[str, tuple[int, str]]:
    """Ask all three doors, carrying ``tenant`` as copies of x-tenant-id, as Envoy would."""
    req = SlimCheckRequest()
    h = req.attributes.request.http
    h.method, h.path, h.host = b"GET", path, host
    if tenant:
        h.headers["x-tenant-id"] = b",".join(tenant)  # how Envoy's ext_authz sends copies
    req.attributes.metadata_context = _metadata(ALICE)
    with grpc.insecure_channel(f"unix:{sc.grpc_path}") as ch:
        call = ch.unary_unary("/envoy.service.auth.v3.Authorization/Check",
                              request_serializer=lambda b: b,
                              response_deserializer=external_auth_pb2.CheckResponse.FromString)
        resp = call(req.SerializeToString(), timeout=10)
    hdrs = {x.header.key: x.header.value for x in resp.denied_response.headers}
    answers = {"grpc": (200, "") if resp.status.code == 0 else
               (resp.denied_response.status.code, hdrs.get("x-a1-deny-reason", ""))}
    preq = ep.ProcessingRequest()
    pairs = [(":method", b"GET"), (":path", path), (":authority", host),
             ("x-a1-jwt-payload", payload(ALICE).encode())]
    for k, v in pairs + [("x-tenant-id", t) for t in tenant]:
        hv = preq.request_headers.headers.headers.add()
        hv.key, hv.raw_value = k, v
    with grpc.insecure_channel(f"unix:{sc.grpc_path}") as ch:
        stream = ch.stream_stream("/envoy.service.ext_proc.v3.ExternalProcessor/Process",
                                  request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=ep.ProcessingResponse.FromString)
        (presp,) = list(stream(iter([preq]), timeout=10))
    if presp.WhichOneof("response") == "request_headers":
        answers["ext_proc"] = (200, "")
    else:
        imm = presp.immediate_response
        ph = {x.header.key: x.header.raw_value.decode() for x in imm.headers.set_headers}
        answers["ext_proc"] = (imm.status.code, ph.get("x-a1-deny-reason", ""))
    head = (b"GET " + path + b" HTTP/1.1\r\nhost: " + host + b"\r\nconnection: close\r\n"
            b"x-a1-jwt-payload: " + payload(ALICE).encode() + b"\r\n")
    head += b"".join(b"x-tenant-id: " + t + b"\r\n" for t in tenant)
    lines = http_exchange(sc, head + b"\r\n").split(b"\r\n\r\n")[0].decode().split("\r\n")
    hh = dict(line.split(": ", 1) for line in lines[1:])
    answers["http"] = (int(lines[0].split(" ")[1]), hh.get("x-a1-deny-reason", ""))
    return answers


HEADER_CASES: list[tuple[bytes, list[bytes], int, str]] = [
    (b"/items", [b"acme"], 200, ""),
    (b"/t/acme/items", [b"acme"], 200, ""),
    # acme's reader names acme in the header and globex in the path the cell serves
    (b"/t/globex/items", [b"acme"], 400, "path tenant does not match the header tenant"),
    (b"/t/globex/items", [], 400, "path tenant does not match the header tenant"),
    # two copies are ambiguous on every door, even when they agree
    (b"/items", [b"globex", b"acme"], 400, "ambiguous tenant header x-tenant-id"),
    (b"/items", [b"acme", b"acme"], 400, "ambiguous tenant header x-tenant-id"),
    (b"/items", [b"acme,globex"], 400, "ambiguous tenant header x-tenant-id"),
]


@pytest.fixture(scope="module")
def header_sidecar() -> Iterator[Sidecar]:
    d = short_dir()
    sc = launch(d, "tenant: {from: header, name: x-tenant-id}\n")
    try:
        yield sc
    finally:
        sc.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize(("path", "tenant", "status", "reason"), HEADER_CASES,
                         ids=[f"{c[0].decode()}-{b'+'.join(c[1]).decode()}" for c in HEADER_CASES])
def test_header_mode_doors_agree(header_sidecar: Sidecar, path: bytes, tenant: list[bytes],
                                 status: int, reason: str) -> None:
    answers = _doors_with(header_sidecar, path, b"api.local", tenant)
    for name, (got_status, got_reason) in answers.items():
        assert got_status == status and reason in got_reason, (name, answers)
    assert len(set(answers.values())) == 1, answers


HOST_CASES: list[tuple[bytes, bytes, int, str]] = [
    (b"/items", b"acme.example.com", 200, ""),
    (b"/items", b"ACME.Example.com:8443", 200, ""),  # DNS names are case-insensitive
    (b"/t/acme/items", b"acme.example.com", 200, ""),
    (b"/t/globex/items", b"acme.example.com", 400, "path tenant does not match the host tenant"),
    # U+212A KELVIN SIGN: Python's str.lower() would make this tenant "kacme"
    ("\u212aacme.example.com".encode(), b"", 400, "host is not ASCII"),
]


@pytest.mark.parametrize(("path", "host", "status", "reason"), HOST_CASES,
                         ids=[f"{c[0].decode()}@{c[1].decode()}" for c in HOST_CASES])
def test_host_mode_doors_agree(path: bytes, host: bytes, status: int, reason: str) -> None:
    if not host:  # the non-ASCII case: the odd host goes in the host field
        path, host = b"/items", path
    d = short_dir()
    sc = launch(d, "tenant: {from: host, pattern: '{tenant}.example.com'}\n")
    try:
        answers = _doors_with(sc, path, host, [])
    finally:
        sc.stop()
        shutil.rmtree(d, ignore_errors=True)
    for name, (got_status, got_reason) in answers.items():
        assert got_status == status and reason in got_reason, (name, answers)
    assert len(set(answers.values())) == 1, answers


HEADER_POLICY = """package a1.authz
import rego.v1
# Header names come from the caller's roles: the compiler cannot see them.
decision := {"allow": true, "headers": {r: "1" | some r in input.subject.roles}}
"""


def test_policy_cannot_set_framing_or_proxy_headers(tmp_path: Path) -> None:
    module = compile_sources({"h.rego": HEADER_POLICY}, None, [ENTRY])
    d = short_dir()
    sc = launch(d, module=module)
    try:
        refused = ["content-length", "transfer-encoding", "connection", "te", "upgrade",
                   "host", ":authority", ":path", "x-envoy-original-path", "x-a1-cell",
                   "x-a1-jwt-payload", "bad header", "x-ok\r\nx-injected"]
        roles = [*refused, "x-a1-tag"]
        claims = {"sub": "alice", "tenant": "acme", "roles": roles}
        req = SlimCheckRequest()
        h = req.attributes.request.http
        h.method, h.path = b"GET", b"/t/acme/items"
        req.attributes.metadata_context = _metadata(claims)
        with grpc.insecure_channel(f"unix:{sc.grpc_path}") as ch:
            call = ch.unary_unary("/envoy.service.auth.v3.Authorization/Check",
                                  request_serializer=lambda b: b,
                                  response_deserializer=external_auth_pb2.CheckResponse.FromString)
            resp = call(req.SerializeToString(), timeout=10)
        assert resp.status.code == 0
        set_headers = [(x.header.key, x.header.value) for x in resp.ok_response.headers]
        names = {k for k, _ in set_headers}
        assert "x-a1-tag" in names
        assert not names & ({r.lower() for r in refused} - {"x-a1-cell"})
        # x-a1-cell is the sidecar's own, once, never the policy's "1"
        assert [v for k, v in set_headers if k == "x-a1-cell"] == [CELLS.lookup("acme")]
        # Counted, with bounded labels.
        assert sc.metric("a1_policy_headers_dropped_total", 'header="content-length"') == 1
        assert sc.metric("a1_policy_headers_dropped_total", 'header="x-envoy-*"') == 1
        assert sc.metric("a1_policy_headers_dropped_total", 'header=":pseudo"') == 2
        assert sc.metric("a1_policy_headers_dropped_total", 'header="invalid-name"') == 2
        # The HTTP door renders the same decision without them.
        out = http_exchange(sc, b"GET /t/acme/items HTTP/1.1\r\nconnection: close\r\n"
                            b"x-a1-jwt-payload: " + payload(claims).encode() + b"\r\n\r\n")
        head = out.split(b"\r\n\r\n")[0].decode().lower().split("\r\n")
        assert head[0].startswith("http/1.1 200")
        assert sum(1 for line in head if line.startswith("content-length:")) == 1
        assert not any(line.startswith(("transfer-encoding", "x-envoy-original", "x-injected"))
                       for line in head)
    finally:
        sc.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_memory_stays_bounded_under_huge_denied_requests() -> None:
    """The reported attack: 3,000 denied requests with 16 KiB paths from one token grew the
    sidecar by ~100 MB. Here they reach the caches (limits.max_path raised above them) and
    the growth must stay under BOUND_MIB; with the default max_path they are a 414."""
    bound_mib = 32
    d = short_dir()
    sc = launch(d, extra="limits: {max_path: 20000}\ncache: {max_bytes: 8MiB}\n"
                         "decision_log: {path: decisions.jsonl, max_bytes: 4MiB}\n")
    try:
        token = payload(ALICE).encode()

        def flood(start: int, n: int) -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                s.connect(str(sc.http_path))
                batch = 50
                for i in range(start, start + n, batch):
                    reqs = b"".join(
                        b"GET /t/globex/" + b"x" * 16384 + str(j).encode() + b" HTTP/1.1\r\n"
                        b"x-a1-jwt-payload: " + token + b"\r\n\r\n"
                        for j in range(i, min(i + batch, start + n)))
                    s.sendall(reqs)
                    want = min(batch, start + n - i)
                    got = b""
                    while got.count(b"HTTP/1.1 403 ") < want or not got.endswith(
                            b'"cross-tenant request"}'):
                        chunk = s.recv(1 << 20)
                        assert chunk, "connection closed"
                        got += chunk

        flood(0, 300)  # warm up: allocator arenas, code paths
        before = sc.rss_kib()
        flood(300, 3000)
        grown_mib = (sc.rss_kib() - before) / 1024
        assert grown_mib < bound_mib, f"RSS grew {grown_mib:.1f} MiB"
        assert sc.metric("a1_cache_bytes") <= 8 * 1024 * 1024
    finally:
        sc.stop()
        shutil.rmtree(d, ignore_errors=True)


# -- the socket files ------------------------------------------------------------------


def run_sidecar(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ext_proc", "--config", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_stale_socket_is_replaced_and_removed_at_exit() -> None:
    d = short_dir()
    try:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(d / "grpc.sock"))
        stale.close()  # a dead sidecar's socket: the file stays
        sc = launch(d)
        assert via_grpc(sc, b"/t/acme/items", ALICE) == (200, "")
        assert sc.stop() == 0
        assert not (d / "grpc.sock").exists() and not (d / "http.sock").exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("kind", ["symlink", "file", "live"])
def test_socket_path_that_is_not_a_dead_socket_is_refused(kind: str) -> None:
    d = short_dir()
    live = None
    try:
        cfg, _ = write_config(d)
        target = d / "victim"
        target.write_text("keep me")
        if kind == "symlink":
            (d / "grpc.sock").symlink_to(target)
        elif kind == "file":
            (d / "grpc.sock").write_text("not a socket")
        else:
            live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            live.bind(str(d / "grpc.sock"))
            live.listen()
        r = run_sidecar(cfg)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr
        assert "grpc_address" in lines[0] and str(d / "grpc.sock") in lines[0]
        assert target.read_text() == "keep me"
        assert os.path.lexists(d / "grpc.sock")
    finally:
        if live is not None:
            live.close()
        shutil.rmtree(d, ignore_errors=True)


def test_socket_path_longer_than_sun_path_is_refused_naming_the_field(tmp_path: Path) -> None:
    cfg, _ = write_config(tmp_path)
    text = cfg.read_text().replace(f"unix:{tmp_path / 'http.sock'}",
                                   "unix:/tmp/" + "d" * 100 + "/http.sock")
    cfg.write_text(text)
    r = run_sidecar(cfg)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "http_address" in line and "at most 107" in line, line


# -- through real Envoy, in each sidecar mode ---------------------------------------------


@pytest.mark.parametrize("mode", ["grpc", "http", "ext_proc"])
def test_through_envoy_the_edge_refuses_what_the_sidecar_refuses(
        start_stack: Callable[..., Stack], mode: str) -> None:
    stack = start_stack(mode=mode, cells=1)
    # The decision ports are private Unix sockets in the state directory.
    for address in (stack.sidecar_grpc_address, stack.sidecar_http_address):
        st = os.lstat(address.removeprefix("unix:"))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    client = Client(stack.http_url)
    acme = stack.token("acme", ["reader"])
    assert client.get("/t/acme/items", acme).status == 200
    upper = client.get("/t/ACME/items", acme)
    assert upper.status == 400 and "does not match" in upper.headers["x-a1-deny-reason"], upper
    # Envoy decodes unreserved characters first: this is acme's canonical path.
    encoded = client.get("/t/%61%63me/items", acme)
    assert encoded.status == 200 and encoded.json()["tenant"] == "acme", encoded
    # Whatever Envoy makes of these, they never reach a cell as acme's or globex's.
    for path in ("/t/acme/../globex/items", "/public/../t/globex/items",
                 "/t/acme%2fglobex/items", "/t/acme/%2e%2e/globex/items"):
        r = client.get(path, acme)
        assert r.status in (400, 403, 404) and "x-a1-cell" not in r.headers, (path, r)
    huge = client.get("/t/acme/" + "a" * 16384, acme)
    assert huge.status in (414, 431), huge
