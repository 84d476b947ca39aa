"""The real sidecar process: gRPC Check/Process/Health, the HTTP path, /metrics, hot reload.

Starts ``python -m ext_proc --config ...`` on free loopback ports and talks to it
with grpc clients built from xds-protos and with http.client, without Envoy.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policies.core.cells import CellTable
from tests.test_engine import compile_authz
from tests.waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
CELLS = CellTable.balanced(["cell-1", "cell-2", "cell-3"])
ALICE = {"sub": "alice", "tenant": "acme", "roles": ["reader"], "iss": "a1-dev", "aud": "a1"}




def put(path: Path, data: bytes) -> None:
    """Replace a watched file atomically, as a deploy tool would."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def payload(claims: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


@dataclass
class Sidecar:
    proc: subprocess.Popen[bytes]
    dir: Path
    grpc: str
    http: int
    metrics: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5).read()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.decode().splitlines():
            if line.startswith(name):
                key, _, value = line.rpartition(" ")
                if key == name or key == f"{name}{{{want}}}":
                    return float(value)
        return 0.0


def start_sidecar(tmp: Path, extra: str = "") -> Sidecar:
    (tmp / "authz.wasm").write_bytes(compile_authz())
    CELLS.save(tmp / "cells.yaml")
    g, h, m = free_port(), free_port(), free_port()
    (tmp / "sidecar.yaml").write_text(
        f"grpc_address: 127.0.0.1:{g}\nhttp_address: 127.0.0.1:{h}\n"
        f"metrics_address: 127.0.0.1:{m}\npolicy: {{module: authz.wasm}}\n"
        f"cells: {{table: cells.yaml}}\ndecision_log: {{path: decisions.jsonl}}\n"
        f"watch: {{interval: 0.05}}\n{extra}"
    )
    err = tmp / "stderr.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ext_proc", "--config", str(tmp / "sidecar.yaml")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=err.open("wb"),
    )
    sc = Sidecar(proc, tmp, f"127.0.0.1:{g}", h, m, err)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"sidecar exited {proc.returncode}: {sc.stderr()}")
        return "serving grpc=" in sc.stderr()

    wait_until(ready, what="sidecar readiness")
    return sc


def stop_sidecar(sc: Sidecar) -> int:
    if sc.proc.poll() is None:
        sc.proc.send_signal(signal.SIGTERM)
        try:
            return sc.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sc.proc.kill()
            sc.proc.wait()
            raise
    return sc.proc.returncode


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sc = start_sidecar(tmp_path_factory.mktemp("sidecar"))
    try:
        yield sc
    finally:
        stop_sidecar(sc)


@pytest.fixture(scope="module")
def channel(sidecar: Sidecar) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(sidecar.grpc)
    try:
        yield ch
    finally:
        ch.close()


def check(channel: grpc.Channel, method: str, path: str, claims: Any = None, **headers: str) -> Any:
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = method, path, "api.local"
    for k, v in headers.items():
        http.headers[k.replace("_", "-")] = v
    if claims is not None:
        req.attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update(
            {"jwt_payload": claims}
        )
    return external_auth_pb2_grpc.AuthorizationStub(channel).Check(req, timeout=5)


class HTTP:
    """One keep-alive connection to the HTTP ext_authz port."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def __call__(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, headers=headers or {})
        r = self.conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


# -- gRPC ext_authz ----------------------------------------------------------------------


def test_check_allow_and_deny(channel: grpc.Channel) -> None:
    resp = check(channel, "GET", "/t/acme/orders", ALICE, x_a1_cell="forged", x_a1_debug="1")
    assert resp.status.code == 0
    hs = {h.header.key: h.header.value for h in resp.ok_response.headers}
    assert hs["x-a1-cell"] == CELLS.lookup("acme")
    assert len(hs["x-a1-policy-version"]) == 64
    assert hs["x-a1-subject"] == "alice"
    assert list(resp.ok_response.headers_to_remove) == ["x-a1-debug"]

    resp = check(channel, "DELETE", "/t/acme/orders", ALICE)
    assert resp.status.code == 7
    assert resp.denied_response.status.code == 403
    assert json.loads(resp.denied_response.body) == {"error": "no role permits this method"}


def test_check_without_claims_denies(channel: grpc.Channel) -> None:
    # A payload header without verified metadata is not trusted on the gRPC path.
    resp = check(channel, "GET", "/t/acme/orders", None, x_a1_jwt_payload=payload(ALICE))
    assert resp.status.code == 7 and resp.denied_response.status.code == 403


# -- gRPC ext_proc -----------------------------------------------------------------------


def _headers_msg(headers: dict[str, str]) -> ep.ProcessingRequest:
    req = ep.ProcessingRequest()
    for k, v in headers.items():
        h = req.request_headers.headers.headers.add()
        h.key, h.raw_value = k, v.encode()
    return req


def test_process_stream(channel: grpc.Channel) -> None:
    stub = ep_grpc.ExternalProcessorStub(channel)
    base = {":method": "GET", ":path": "/t/acme/x", ":authority": "api.local"}
    allow = _headers_msg({**base, "x-a1-jwt-payload": payload(ALICE)})
    later = ep.ProcessingRequest()
    later.response_headers.SetInParent()
    out = list(stub.Process(iter([allow, later]), timeout=5))
    assert [r.WhichOneof("response") for r in out] == ["request_headers", "response_headers"]
    mut = out[0].request_headers.response.header_mutation
    assert {h.header.key for h in mut.set_headers} == {
        "x-a1-cell", "x-a1-policy-version", "x-a1-subject"
    }  # fmt: skip
    assert list(mut.remove_headers) == ["x-a1-jwt-payload"]

    deny = _headers_msg({**base, ":path": "/t/globex/x", "x-a1-jwt-payload": payload(ALICE)})
    (resp,) = list(stub.Process(iter([deny]), timeout=5))
    assert resp.immediate_response.status.code == 403
    assert json.loads(resp.immediate_response.body) == {"error": "cross-tenant request"}


# -- health ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service",
    ["", "envoy.service.auth.v3.Authorization", "envoy.service.ext_proc.v3.ExternalProcessor"],
)
def test_health(channel: grpc.Channel, service: str) -> None:
    resp = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


# -- HTTP ext_authz ----------------------------------------------------------------------


def test_http_path_keep_alive(sidecar: Sidecar) -> None:
    h = HTTP(sidecar.http)
    claims = {"x-a1-jwt-payload": payload(ALICE)}
    status, hs, body = h("GET", "/t/acme/orders?page=2", {**claims, "x-a1-cell": "forged"})
    assert status == 200 and body == b""
    assert hs["x-a1-cell"] == CELLS.lookup("acme")
    assert hs["x-envoy-auth-headers-to-remove"] == "x-a1-jwt-payload"
    status, hs, body = h("POST", "/t/acme/orders", claims)  # same connection
    assert status == 403 and hs["x-a1-deny-reason"] == "no role permits this method"
    assert json.loads(body) == {"error": "no role permits this method"}
    status, hs, body = h("HEAD", "/t/acme/orders", claims)
    assert status == 200 and body == b""
    status, _, _ = h("GET", "/t/acme/orders")  # no claims: no subject, deny
    assert status == 403
    status, _, _ = h("GET", "/public/logo.png")
    assert status == 200


def test_http_pipelined_requests_and_bodies(sidecar: Sidecar) -> None:
    p = payload(ALICE)
    raw = (
        f"POST /t/acme/a HTTP/1.1\r\nhost: x\r\nx-a1-jwt-payload: {p}\r\ncontent-length: 5\r\n"
        "\r\nhello"
        f"GET /t/acme/a HTTP/1.1\r\nhost: x\r\nx-a1-jwt-payload: {p}\r\n\r\n"
        "GET /t/acme/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", sidecar.http), timeout=5) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"403", b"200", b"403"]


def test_http_duplicate_payload_headers_are_not_trusted(sidecar: Sidecar) -> None:
    p = payload(ALICE)
    raw = (
        f"GET /t/acme/a HTTP/1.1\r\nhost: x\r\nx-a1-jwt-payload: {p}\r\n"
        f"x-a1-jwt-payload: {p}\r\nconnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", sidecar.http), timeout=5) as s:
        s.sendall(raw)
        assert s.recv(65536).startswith(b"HTTP/1.1 403 ")


def test_http_malformed_request_is_rejected(sidecar: Sidecar) -> None:
    with socket.create_connection(("127.0.0.1", sidecar.http), timeout=5) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 400 ")


# -- metrics -----------------------------------------------------------------------------


def test_metrics(sidecar: Sidecar, channel: grpc.Channel) -> None:
    cell = CELLS.lookup("acme")
    before = sidecar.metric("a1_decisions_total", cell=cell, result="allow")
    hits = sidecar.metric("a1_cache_hits_total")
    for _ in range(3):
        check(channel, "GET", "/t/acme/metrics", ALICE)
    assert sidecar.metric("a1_decisions_total", cell=cell, result="allow") == before + 3
    assert sidecar.metric("a1_cache_hits_total") >= hits + 2
    assert sidecar.metric("a1_decision_latency_seconds_count") > 0
    for name in (
        "a1_policy_eval_errors_total",
        "a1_policy_load_failures_total",
        "a1_decision_log_dropped_total",
    ):
        assert sidecar.metric(name) == 0
    text = urllib.request.urlopen(f"http://127.0.0.1:{sidecar.metrics}/metrics").read().decode()
    assert 'a1_policy_version_info{cells_version="' in text


# -- hot reload (own process: it changes the policy) -------------------------------------


def test_reload_refuses_bad_files_and_applies_good_ones(tmp_path: Path) -> None:
    sc = start_sidecar(tmp_path)
    try:
        h = HTTP(sc.http)
        claims = {"x-a1-jwt-payload": payload(ALICE)}
        status, hs, _ = h("GET", "/t/acme/a", claims)
        assert status == 200
        v1 = hs["x-a1-policy-version"]

        put(tmp_path / "authz.wasm", b"\0asm\x01\0\0\0 not a policy")
        wait_until(lambda: sc.metric("a1_policy_load_failures_total") == 1, what="refusal")
        assert "authz.wasm" in sc.stderr() and "refused new policy module" in sc.stderr()
        status, hs, _ = h("GET", "/t/acme/a", claims)
        assert status == 200 and hs["x-a1-policy-version"] == v1  # the old one keeps serving

        put(tmp_path / "cells.yaml", b"buckets: 4\ncells: [a]\nassignment: [[0, 9, a]]\n")
        wait_until(lambda: sc.metric("a1_policy_load_failures_total") == 2, what="refusal")
        assert "cells.yaml: assignment[0][1]: last bucket 9 outside [0, 3]" in sc.stderr()
        assert h("GET", "/t/acme/a", claims)[1]["x-a1-cell"] == CELLS.lookup("acme")

        # A new valid version: x-a1-policy-version changes (and its data suspends globex).
        (tmp_path / "v2").mkdir()
        put(tmp_path / "authz.wasm", compile_authz(["globex"], tmp_path / "v2"))

        def new_version() -> str | None:
            v = h("GET", "/t/acme/a", claims)[1].get("x-a1-policy-version")
            return v if v != v1 else None

        v2 = wait_until(new_version, what="new policy version")
        assert len(v2) == 64
        bigger = CELLS.with_overrides(
            {"acme": "cell-3" if CELLS.lookup("acme") != "cell-3" else "cell-1"}
        )
        bigger.save(tmp_path / "cells.yaml")
        wait_until(lambda: h("GET", "/t/acme/a", claims)[1]["x-a1-cell"] == bigger.lookup("acme"))
        text = urllib.request.urlopen(f"http://127.0.0.1:{sc.metrics}/metrics").read().decode()
        assert f'version="{v2}"' in text
    finally:
        code = stop_sidecar(sc)
    assert code == 0
    # Graceful stop flushed the decision log: one line per decision.
    lines = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert len(lines) >= 4 and all(json.loads(x)["method"] == "GET" for x in lines)
    assert "decision log flushed" in sc.stderr()


# -- startup errors ----------------------------------------------------------------------


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ext_proc", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("grpc_address: nowhere\n", "sidecar.yaml: grpc_address: expected HOST:PORT"),
        ("grpc_address: 127.0.0.1:1\npolicy: {}\n", "sidecar.yaml: policy.module: missing"),
        (
            "grpc_address: 127.0.0.1:1\npolicy: {module: authz.wasm}\ncells: {table: bad.yaml}\n",
            "bad.yaml: cells: must be a non-empty list",
        ),
        (
            "grpc_address: 127.0.0.1:1\npolicy: {module: garbage.wasm}\ncells: {table: c.yaml}\n",
            "garbage.wasm: policy.module: invalid policy module:",
        ),
        ("grpc_address: [\n", "sidecar.yaml:2:1: invalid YAML"),
    ],
)
def test_bad_config_at_startup_exits_2_with_one_line(
    tmp_path: Path, setup: str, expected: str
) -> None:
    (tmp_path / "authz.wasm").write_bytes(compile_authz())
    (tmp_path / "garbage.wasm").write_bytes(b"garbage")
    (tmp_path / "bad.yaml").write_text("buckets: 4\ncells: []\nassignment: []\n")
    CELLS.save(tmp_path / "c.yaml")
    cfg = tmp_path / "sidecar.yaml"
    cfg.write_text(setup)
    r = _run(cfg)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("ext_proc: ") and expected in lines[0], lines[0]
