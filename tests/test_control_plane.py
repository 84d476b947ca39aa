"""The control-plane process through its real interfaces: a ControlPlane on free ports
over a copy of examples/platform, a scripted ADS client (the shared AdsClient), the
HTTP status endpoint, and edits of the spec directory picked up by the watcher."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from control.plane.serve import ControlPlane, PlaneOptions, error_record
from control.plane.status import ACTION_HEADER, MAX_BODY, MAX_PATH, StatusServer
from control.plane.watch import SpecWatcher, TooManyFiles, fingerprint
from policies.bundle import generate_signing_key
from policies.core.cells import CellTable
from policies.core.xds.client import AdsClient, Node
from policies.core.xds.types import CELL_TABLE, POLICY_ASSIGNMENT, POLICY_BUNDLE
from tests.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "platform"



class Recorder:
    """An ADS client's view: every set of every type it ACKed, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.updates: list[tuple[str, dict[str, bytes]]] = []

    def __call__(self, type_url: str, resources: dict[str, bytes], removed: list[str]) -> None:
        if type_url == CELL_TABLE:
            for value in resources.values():
                CellTable.from_dict(json.loads(value), "xds")  # garbage would raise (and NACK)
        with self.lock:
            self.updates.append((type_url, dict(resources)))

    def of(self, type_url: str) -> list[dict[str, bytes]]:
        with self.lock:
            return [r for t, r in self.updates if t == type_url]

    def count(self) -> int:
        with self.lock:
            return len(self.updates)

    def table(self) -> dict[str, Any] | None:
        sets = self.of(CELL_TABLE)
        return json.loads(sets[-1]["cells"]) if sets and "cells" in sets[-1] else None


def set_overrides(config: Path, text: str) -> None:
    spec = config / "platform.yaml"
    lines = spec.read_text().splitlines(keepends=True)
    out = [f"overrides: {text}\n" if ln.startswith("overrides:") else ln for ln in lines]
    spec.write_text("".join(out))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    target = tmp_path / "platform"
    shutil.copytree(EXAMPLE, target)
    return target


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "bundle-signing.key"
    path.parent.mkdir()
    generate_signing_key(path)
    return path


@pytest.fixture
def plane(config: Path, key: Path) -> Iterator[ControlPlane]:
    p = ControlPlane(PlaneOptions(config=config, signing_key=key, xds_port=0, status_port=0,
                                  ack_timeout=5.0, rollout_interval=0.2))
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[Recorder]:
    rec = Recorder()
    c = AdsClient(f"127.0.0.1:{plane.xds_port}", Node("test-sidecar-1", "a1-sidecar"),
                  {POLICY_BUNDLE: None, CELL_TABLE: ["cells"], POLICY_ASSIGNMENT: ["assignment"]},
                  rec, backoff_initial=0.05, backoff_max=0.2)
    c.start()
    try:
        assert c.wait_synced(20), "the client never synced"
        yield rec
    finally:
        c.stop()


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(body) if "json" in ctype else body.decode()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


# -- the initial snapshot and changes ---------------------------------------------------------


def test_initial_snapshot_reaches_a_client_and_status_shows_it(plane: ControlPlane,
                                                                client: Recorder) -> None:
    table = client.table()
    assert table is not None and table["cells"] == ["cell-1", "cell-2", "cell-3"]
    bundles = client.of(POLICY_BUNDLE)[-1]
    assignment = json.loads(client.of(POLICY_ASSIGNMENT)[-1]["assignment"])
    assert set(bundles) == {assignment["default"]} and assignment["cells"] == {}

    code, doc = get(plane.status_url + "/status")
    assert code == 200
    assert doc["spec"]["digest"] == plane.spec_digest
    assert doc["policy"]["version"] == assignment["default"]
    assert doc["last_error"] is None and doc["transition"] is None
    assert set(doc["snapshot"]["versions"]) >= {"Cluster", "Listener", "CellTable"}
    [me] = wait_until(lambda: [c for c in get(plane.status_url + "/status")[1]["clients"]
                               if c["types"].get("PolicyAssignment", {}).get("acked_version")],
                      "the client's ACK in status")
    assert me["node_id"] == "test-sidecar-1" and me["node_cluster"] == "a1-sidecar"
    assert me["types"]["CellTable"]["acked_version"] == doc["snapshot"]["versions"]["CellTable"]
    assert me["types"]["CellTable"]["nacks"] == 0
    assert doc["rollout"]["state"] == "idle"

    code, text = get(plane.status_url + "/metrics")
    assert code == 200
    assert f'a1_config_version{{policy="{assignment["default"]}",version="{plane.spec_digest}"}}' \
        in text
    assert "a1_config_errors_total 0.0" in text
    assert 'a1_xds_connected{node_cluster="a1-sidecar"} 1.0' in text
    assert "a1_rollout_state" in text


def test_spec_change_reaches_the_client(plane: ControlPlane, client: Recorder,
                                        config: Path) -> None:
    before = plane.spec_digest
    set_overrides(config, "{acme: cell-3}")
    wait_until(lambda: (client.table() or {}).get("overrides") == {"acme": "cell-3"},
               "the new table at the client")
    wait_until(lambda: plane.spec_digest != before and plane.status()["transition"] is None,
               "the transition's end")
    doc = get(plane.status_url + "/status")[1]
    assert doc["last_error"] is None and doc["spec"]["digest"] == plane.spec_digest


@pytest.mark.parametrize("breakage, where", [
    (lambda c: set_overrides(c, "{acme: [cell-1"), "platform.yaml"),  # bad YAML
    (lambda c: set_overrides(c, "{acme: no-such-cell}"), "overrides"),  # semantic
    (lambda c: (c / "platform.yaml").write_text(
        (c / "platform.yaml").read_text().replace("buckets: 16384", "buckets: -5")),
     "buckets"),  # schema
    (lambda c: (c / "policy" / "authz.rego").write_text("package a1.authz\n\ndecision := {\n"),
     "authz.rego"),  # Rego syntax error
])
def test_invalid_change_never_leaves_the_server(plane: ControlPlane, client: Recorder,
                                                config: Path, breakage: Callable[[Path], None],
                                                where: str) -> None:
    versions = get(plane.status_url + "/status")[1]["snapshot"]["versions"]
    seen = client.count()
    breakage(config)
    doc = wait_until(lambda: (d := get(plane.status_url + "/status")[1])["last_error"] and d,
                     "the error in status")
    err = doc["last_error"]
    assert where in err["message"] and "\n" not in err["message"]
    assert err["file"] and err["at"] > 0
    assert doc["config_errors"] == 1 and doc["snapshot"]["versions"] == versions
    assert "a1_config_errors_total 1.0" in get(plane.status_url + "/metrics")[1]
    time.sleep(0.5)  # the client must receive nothing new: there is no event to poll for
    assert client.count() == seen
    # the spec repaired: published, and the error stays in status until then
    shutil.copy(EXAMPLE / "platform.yaml", config / "platform.yaml")
    shutil.copy(EXAMPLE / "policy" / "authz.rego", config / "policy" / "authz.rego")
    set_overrides(config, "{acme: cell-2}")
    wait_until(lambda: (client.table() or {}).get("overrides") == {"acme": "cell-2"},
               "the repaired spec at the client")


def test_schema_error_names_the_field(plane: ControlPlane, config: Path) -> None:
    text = (config / "platform.yaml").read_text().replace("buckets: 16384", "buckets: -5")
    (config / "platform.yaml").write_text(text)
    err = wait_until(lambda: get(plane.status_url + "/status")[1]["last_error"], "the error")
    assert err["file"].endswith("platform.yaml") and err["field"] == "buckets"
    assert err["line"] and err["column"]


def test_a_refused_edit_reverted_clears_the_error(plane: ControlPlane, config: Path) -> None:
    spec = config / "platform.yaml"
    good = spec.read_bytes()
    spec.write_bytes(good.replace(b"buckets: 16384", b"buckets: -5"))
    wait_until(lambda: get(plane.status_url + "/status")[1]["last_error"], "the error")
    spec.write_bytes(good)  # back to exactly what serves: nothing to publish
    wait_until(lambda: get(plane.status_url + "/status")[1]["last_error"] is None,
               "the error cleared once the spec is what serves again")


def test_a_burst_of_edits_is_published_once_or_twice(plane: ControlPlane, client: Recorder,
                                                     config: Path) -> None:
    written = [json.dumps({f"t{i}": "cell-2"}) for i in range(20)]
    start = time.monotonic()
    for text in written:
        set_overrides(config, text)
        time.sleep(0.005)
    assert time.monotonic() - start < 1.0
    final = {"t19": "cell-2"}
    wait_until(lambda: (client.table() or {}).get("overrides") == final, "the last edit")
    time.sleep(0.5)
    tables = {sets["cells"] for sets in client.of(CELL_TABLE) if "cells" in sets}
    overrides = [json.loads(t)["overrides"] for t in tables]
    assert 2 <= len(tables) <= 3, overrides  # the initial table, then one or two publishes
    assert all(o == {} or o in [json.loads(w) for w in written] for o in overrides)


def test_same_content_is_not_republished(plane: ControlPlane, client: Recorder,
                                         config: Path) -> None:
    seen = client.count()
    spec = config / "platform.yaml"
    spec.write_text(spec.read_text())  # touched: new mtime, same bytes
    time.sleep(0.6)
    assert client.count() == seen
    assert get(plane.status_url + "/status")[1]["last_error"] is None


def test_a_new_policy_is_proposed_to_the_rollout(plane: ControlPlane, client: Recorder,
                                                 config: Path) -> None:
    stable = json.loads(client.of(POLICY_ASSIGNMENT)[-1]["assignment"])["default"]
    data = json.loads((config / "policy" / "data.json").read_text())
    data["a1_test_marker"] = 1
    (config / "policy" / "data.json").write_text(json.dumps(data))
    doc = wait_until(lambda: (d := get(plane.status_url + "/status")[1])["rollout"]["candidate"]
                     and d, "a candidate")
    candidate = doc["rollout"]["candidate"]
    assert doc["rollout"]["state"] == "canary" and candidate != stable
    assignment = wait_until(
        lambda: (a := json.loads(client.of(POLICY_ASSIGNMENT)[-1]["assignment"]))["cells"] and a,
        "the canary assignment")
    assert assignment == {"default": stable, "cells": {"cell-1": candidate}}
    assert set(client.of(POLICY_BUNDLE)[-1]) == {stable, candidate}
    # the operator aborts: the stable version everywhere, the candidate's bundle gone
    # a web page's cross-site POST (no action header) or a rebound Host is refused
    assert get_post(plane.status_url + "/rollout/abort", headers={})[0] == 403
    assert get_post(plane.status_url + "/rollout/abort",
                    headers={ACTION_HEADER: "1", "Host": "evil.example:80"})[0] == 421
    code, answer = get_post(plane.status_url + "/rollout/abort")
    assert code == 200 and answer["rollout"]["state"] == "aborted"
    wait_until(lambda: json.loads(client.of(POLICY_ASSIGNMENT)[-1]["assignment"])
               == {"default": stable, "cells": {}}, "the rollback")
    code, doc = get_post(plane.status_url + "/rollout/promote")
    assert code == 409 and "no rollout in progress" in doc["error"]


def get_post(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST an action, with the action header unless ``headers`` says otherwise."""
    req = urllib.request.Request(url, method="POST", data=b"",
                                 headers={ACTION_HEADER: "1"} if headers is None else headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_invalid_spec_at_start_is_a_config_error(config: Path, key: Path) -> None:
    set_overrides(config, "{acme: nowhere}")
    p = ControlPlane(PlaneOptions(config=config, signing_key=key, xds_port=0, status_port=0))
    with pytest.raises(Exception) as info:
        p.start()
    assert getattr(info.value, "code", None) == 2 and "overrides" in str(info.value)
    p.stop()


# -- the status endpoint's bounds -------------------------------------------------------------


def test_status_endpoint_methods_and_bounds(plane: ControlPlane) -> None:
    port = int(plane.status_url.rsplit(":", 1)[1])
    assert get(plane.status_url + "/nope")[0] == 404
    code, doc = get_post(plane.status_url + "/status")
    assert code == 405 and "GET" in doc["error"]
    code, doc = get(plane.status_url + "/rollout/promote")
    assert code == 405 and "POST" in doc["error"]
    answer = raw(port, f"GET /{'a' * (MAX_PATH + 1)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 414")
    answer = raw(port, b"POST /rollout/abort HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 + str(MAX_BODY + 1).encode() + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")
    answer = raw(port, b"POST /rollout/abort HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                 b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")
    answer = raw(port, b"GET /status HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    answer = raw(port, b"\x16\x03\x01garbage\r\n\r\n")  # a TLS hello, say
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400")
    assert b"Traceback" not in answer
    headers = b"".join(b"X-%d: y\r\n" % i for i in range(200))
    answer = raw(port, b"GET /status HTTP/1.1\r\n" + headers + b"\r\n")
    assert b" 431 " in answer.split(b"\r\n", 1)[0] and b"Traceback" not in answer
    # the server still serves after all of that
    assert get(plane.status_url + "/status")[0] == 200


def test_status_endpoint_errors_are_one_line_json() -> None:
    def broken() -> Any:
        raise RuntimeError("boom\nwith a second line")

    server = StatusServer(broken, __import__("prometheus_client").CollectorRegistry(),
                          {"promote": broken})
    server.start()
    try:
        code, doc = get(server.url + "/status")
        assert code == 500 and doc["error"] == "/status: boom with a second line"
        code, doc = get_post(server.url + "/rollout/promote")
        assert code == 500 and "\n" not in doc["error"]
        assert get_post(server.url + "/rollout/abort")[0] == 404  # not an action here
    finally:
        server.stop()


def test_status_endpoint_bounds_connections() -> None:
    from prometheus_client import CollectorRegistry

    server = StatusServer(lambda: {"ok": True}, CollectorRegistry(), max_connections=2)
    server.start()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        def third_refused() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            try:
                conn.request("GET", "/status")
                conn.getresponse()
                return False
            except (ConnectionError, http.client.HTTPException, OSError):
                return True
            finally:
                conn.close()
        assert wait_until(third_refused, "a third connection closed", timeout=5)
        for s in idle:
            s.close()
        def served() -> bool:  # the server frees a slot when it sees the close, not before
            try:
                return get(server.url + "/status")[0] == 200
            except (ConnectionError, http.client.HTTPException, OSError):
                return False
        wait_until(served, "a slot again", timeout=15)
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_error_record_finds_file_position_and_field() -> None:
    rec = error_record(ValueError("/x/platform.yaml:12:5: cells[1].endpoints[0]: bad port"), 1.0)
    assert (rec["file"], rec["line"], rec["column"], rec["field"]) == (
        "/x/platform.yaml", 12, 5, "cells[1].endpoints[0]")
    rec = error_record(ValueError("/x/spec: policy/authz.rego:3:1: rego parse error: x"), 1.0)
    assert (rec["file"], rec["line"]) == ("policy/authz.rego", 3)
    rec = error_record(ValueError("snapshot:\n cluster 'x' is missing"), 1.0)
    assert rec["message"] == "snapshot: cluster 'x' is missing" and rec["line"] is None


# -- the watcher -------------------------------------------------------------------------------


def test_watcher_debounces_a_burst_into_one_notice(tmp_path: Path) -> None:
    calls: list[float] = []
    (tmp_path / "a.yaml").write_text("x")
    w = SpecWatcher(tmp_path, lambda: calls.append(time.monotonic()), poll=0.01, quiet=0.2)
    w.start()
    try:
        for i in range(20):
            (tmp_path / "a.yaml").write_text("y" * i)
            time.sleep(0.005)
        wait_until(lambda: calls, "a notice")
        time.sleep(0.4)
        assert len(calls) == 1
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "b.rego").write_text("z")
        wait_until(lambda: len(calls) == 2, "a notice for a new file in a subdirectory")
    finally:
        w.stop()


def test_watcher_notices_under_continuous_churn(tmp_path: Path) -> None:
    calls: list[float] = []
    w = SpecWatcher(tmp_path, lambda: calls.append(1), poll=0.01, quiet=0.2, max_delay=0.3)
    w.start()
    try:
        deadline = time.monotonic() + 1.5
        i = 0
        while time.monotonic() < deadline and len(calls) < 2:
            (tmp_path / "a").write_text(str(i))
            i += 1
            time.sleep(0.02)  # never quiet for 0.2 s
        assert len(calls) >= 2
    finally:
        w.stop()


def test_fingerprint_is_bounded_and_skips_directory_symlinks(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path)  # not followed: no recursion
    assert [p for p, *_ in fingerprint(tmp_path)] == ["f0", "f1", "f2", "f3", "f4", "loop"]
    with pytest.raises(TooManyFiles):
        fingerprint(tmp_path, max_files=3)


# -- shutdown ------------------------------------------------------------------------------------


def test_clean_shutdown_frees_the_ports(config: Path, key: Path) -> None:
    p = ControlPlane(PlaneOptions(config=config, signing_key=key, xds_port=0, status_port=0))
    p.start()
    xds, status = p.xds_port, int(p.status_url.rsplit(":", 1)[1])
    p.stop()
    for port in (xds, status):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free again
    alive = [t.name for t in threading.enumerate() if t.name.startswith("a1-")]
    assert not [n for n in alive if n in ("a1-spec-watch", "a1-control-rollout",
                                          "a1-control-status", "a1-xds-server")]
