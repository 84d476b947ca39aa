"""``a1 up``'s supervisor, through ``a1 up`` itself: a failure stays inside its component.

Each test runs ``a1 up`` as a subprocess on free ports in a temporary state
directory, injects a fault with a real signal, and polls ``status.json`` and
real requests; every ``a1 up`` and its children are killed at the end even if
the test fails (``up_factory``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from a1 import pki
from conformance.harness.client import Client, Response
from conformance.harness.stacks import tenants_in_table
from conformance.harness.waiting import poll
from control.spec import load_spec
from e2e.test_stack_up import Up, processes_mentioning

pytestmark = pytest.mark.e2e

RECOVERY_S = 20.0  # "serves again within seconds", with room for a loaded 2-core machine


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    started: list[Up] = []

    def make(*extra: str) -> Up:
        up = Up(tmp_path / f"state{len(started)}", *extra)
        started.append(up)
        return up

    yield make
    for up in started:
        up.cleanup()


# -- reading the stack ----------------------------------------------------------------


def status(up: Up) -> dict[str, Any] | None:
    try:
        return json.loads((up.state / "status.json").read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


def component(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["components"] if c["name"] == name)


def wait_status(up: Up, cond: Callable[[dict[str, Any]], bool], what: str,
                timeout: float = 90.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        if up.proc.poll() is not None:
            pytest.fail(f"a1 up exited {up.proc.returncode} waiting for {what}:\n{up.stderr()}")
        doc = status(up)
        return doc if doc is not None and cond(doc) else None
    return poll(check, timeout=timeout, interval=0.05, what=what)


def all_running(doc: dict[str, Any]) -> bool:
    return doc["stack"] == "running"


def tenants_by_cell(up: Up, per_cell: int = 2) -> dict[str, list[str]]:
    return tenants_in_table(load_spec(up.state / "platform").cell_table(), per_cell, "sup")


def descendants(root: int) -> set[tuple[int, int]]:
    """Every process below ``root`` as (pid, start time), by walking /proc's PPid tree."""
    parent_of: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[int(entry)] = (int(fields[1]), int(fields[19]))  # ppid, starttime
    found: set[tuple[int, int]] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in parent_of.items():
            if ppid == parent and (pid, start) not in found:
                found.add((pid, start))
                frontier.append(pid)
    return found


def still_running(proc: tuple[int, int]) -> bool:
    """The very same process (pid and start time) exists and is not a zombie."""
    pid, start = proc
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[19]) == start and fields[0] not in ("Z", "X")


class Stream:
    """Requests in a loop on background threads, each response recorded."""

    def __init__(self, request: Callable[[int], tuple[str, Response | Exception]],
                 threads: int = 2) -> None:
        self.results: list[tuple[float, str, Response | Exception]] = []
        self._stop = threading.Event()
        self._request = request
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, seed: int) -> None:
        i = seed
        while not self._stop.is_set():
            what, result = self._request(i)
            self.results.append((time.monotonic(), what, result))
            i += len(self._threads)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        target = len(self.results) + count
        poll(lambda: len(self.results) >= target, timeout=timeout,
             what=f"{count} more requests")

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def safe(client: Client, method: str, path: str, token: str) -> Response | Exception:
    try:
        return client.request(method, path, token, body={"n": 1} if method == "POST" else None)
    except Exception as err:  # a connection error is an error the test must see
        return err


# -- the tests ------------------------------------------------------------------------


def test_a_killed_cell_restarts_alone_and_other_cells_see_no_errors(
        up_factory: Callable[..., Up]) -> None:
    up = up_factory()
    up.wait_up()
    before = wait_status(up, all_running, "every component running")
    tenants = tenants_by_cell(up)
    victim = "cell-2"
    others = [(c, t) for c, ts in tenants.items() if c != victim for t in ts]
    tokens = {t: pki.mint_token(up.state, t, ["reader"]) for ts in tenants.values() for t in ts}
    client = Client(f"http://127.0.0.1:{up.http_port}")

    def other_cells(i: int) -> tuple[str, Response | Exception]:
        cell, tenant = others[i % len(others)]
        return cell, safe(client, "GET", f"/t/{tenant}/items", tokens[tenant])

    stream = Stream(other_cells)
    try:
        stream.wait_for(20)
        old = component(before, victim)["pid"]
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        after = wait_status(up, lambda d: component(d, victim)["restarts"] == 1
                            and component(d, victim)["state"] == "running",
                            f"{victim} restarted", timeout=RECOVERY_S)
        t = tenants[victim][0]
        poll(lambda: client.get(f"/t/{t}/items", tokens[t]).status == 200,
             timeout=RECOVERY_S, what=f"{victim}'s tenant served again")
        recovered = time.monotonic() - killed_at
        stream.wait_for(20)  # and the others keep serving after the restart too
    finally:
        stream.stop()

    errors = [(cell, r) for _, cell, r in stream.results
              if not isinstance(r, Response) or r.status != 200
              or r.headers.get("x-a1-cell") != cell]
    assert errors == [], f"{len(errors)} of {len(stream.results)} failed: {errors[:5]}"
    assert len(stream.results) >= 40
    assert recovered < RECOVERY_S
    new = component(after, victim)
    assert new["pid"] != old and new["last_exit"]["signal"] == "SIGKILL"
    for name in ("cell-1", "cell-3", "sidecar", "envoy"):  # nobody else was touched
        assert component(after, name)["pid"] == component(before, name)["pid"]
        assert component(after, name)["restarts"] == 0
    err = up.stderr()
    assert f"{victim} (pid {old}) exited with signal SIGKILL unexpectedly" in err
    assert f"restarted {victim} (pid {new['pid']}, restart 1)" in err
    assert f"{victim} is back" in err
    assert up.proc.poll() is None


def test_a_killed_sidecar_never_lets_an_unauthorized_request_through(
        up_factory: Callable[..., Up]) -> None:
    up = up_factory("--cells", "2")
    up.wait_up()
    before = wait_status(up, all_running, "every component running")
    client = Client(f"http://127.0.0.1:{up.http_port}")
    reader = pki.mint_token(up.state, "alpha", ["reader"])
    writer = pki.mint_token(up.state, "alpha", ["reader", "writer"])
    unauthorized = [("POST", "/t/alpha/items", reader),  # a reader writing
                    ("GET", "/t/beta/items", writer),  # another tenant's items
                    ("POST", "/t/beta/items", writer),
                    ("GET", "/t/alpha/items", "not-a-token")]

    def attack(i: int) -> tuple[str, Response | Exception]:
        method, path, token = unauthorized[i % len(unauthorized)]
        return f"{method} {path}", safe(client, method, path, token)

    assert client.get("/t/alpha/items", reader).status == 200
    stream = Stream(attack)
    try:
        stream.wait_for(20)
        old = component(before, "sidecar")["pid"]
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        # During the outage an authorized request fails closed.
        poll(lambda: client.get("/t/alpha/items", reader).status == 503, timeout=RECOVERY_S,
             what="503 while the sidecar is down")
        wait_status(up, lambda d: component(d, "sidecar")["restarts"] == 1
                    and component(d, "sidecar")["state"] == "running",
                    "sidecar restarted", timeout=RECOVERY_S)
        poll(lambda: client.get("/t/alpha/items", reader).status == 200, timeout=RECOVERY_S,
             what="authorized requests served again")
        recovered = time.monotonic() - killed_at
        stream.wait_for(20)
    finally:
        stream.stop()

    allowed = [(what, r) for _, what, r in stream.results
               if isinstance(r, Response) and 200 <= r.status < 300]
    assert allowed == [], f"unauthorized requests allowed: {allowed[:5]}"
    statuses = {r.status for _, _, r in stream.results if isinstance(r, Response)}
    assert 503 in statuses or recovered < 1.0  # the stream saw the outage (it fails closed)
    assert recovered < RECOVERY_S
    assert "stack-wide outage: sidecar" in up.stderr()
    assert "restarted sidecar (pid" in up.stderr()
    assert client.post("/t/alpha/items", writer, {"after": "restart"}).status == 201


def test_a_killed_envoy_is_a_reported_stack_wide_outage_and_comes_back(
        up_factory: Callable[..., Up]) -> None:
    up = up_factory("--mode", "none", "--cells", "1")
    up.wait_up()
    before = wait_status(up, all_running, "every component running")
    client = Client(f"http://127.0.0.1:{up.http_port}")
    token = pki.mint_token(up.state, "alpha", ["reader"])
    assert client.get("/t/alpha/items", token).status == 200
    old = component(before, "envoy")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_status(up, lambda d: component(d, "envoy")["restarts"] == 1
                and component(d, "envoy")["state"] == "running", "envoy restarted",
                timeout=RECOVERY_S)

    def serves() -> bool:
        try:
            return client.get("/t/alpha/items", token).status == 200
        except OSError:
            return False
    poll(serves, timeout=RECOVERY_S, what="Envoy serving again")
    err = up.stderr()
    assert f"a1: stack-wide outage: envoy (pid {old}) exited with signal SIGKILL" in err
    assert "Envoy is down: no tenant can reach the stack; restarting envoy in 0.5s" in err
    assert "the stack-wide outage is over" in err
    assert up.proc.poll() is None


def test_a_cell_that_keeps_failing_is_given_up_and_the_rest_serve(
        up_factory: Callable[..., Up]) -> None:
    up = up_factory("--cells", "2")
    up.wait_up()
    before = wait_status(up, all_running, "every component running")
    tenants = tenants_by_cell(up, per_cell=1)
    client = Client(f"http://127.0.0.1:{up.http_port}")
    db = up.state / "cells" / "cell-2.db"
    db.unlink()
    db.mkdir()  # the cell cannot open its database any more: every restart exits
    os.kill(component(before, "cell-2")["pid"], signal.SIGKILL)
    after = wait_status(up, lambda d: component(d, "cell-2")["state"] == "failed",
                        "cell-2 given up", timeout=90)
    assert after["stack"] == "degraded"
    assert component(after, "cell-2")["restarts"] == 4
    assert component(after, "cell-1")["pid"] == component(before, "cell-1")["pid"]
    for cell, expect in (("cell-1", 200), ("cell-2", 503)):
        tenant = tenants[cell][0]
        token = pki.mint_token(up.state, tenant, ["reader"])
        assert client.get(f"/t/{tenant}/items", token).status == expect
    err = up.stderr()
    assert "gave up on cell-2 after 5 failures within 60s" in err
    assert "cell-2 is down: its tenants get 503" in err
    assert "unable to open database" in err  # the log tail says why
    assert up.proc.poll() is None  # a1 up keeps serving the rest
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("name", ["sidecar", "envoy"])
def test_a_critical_component_that_keeps_failing_stops_a1_up_with_a_report(
        up_factory: Callable[..., Up], name: str) -> None:
    up = up_factory("--cells", "1")
    up.wait_up()
    before = wait_status(up, all_running, "every component running")
    (up.state / f"{name}.yaml").write_text("admin: [not, a, config]\n")  # every start fails
    os.kill(component(before, name)["pid"], signal.SIGKILL)
    assert up.proc.wait(timeout=90) == 1
    err = up.stderr()
    assert err.count(f"a1: stack-wide outage: {name} (pid") == 5
    assert f"gave up on {name} after 5 failures within 60s" in err
    assert f"a1: stopping the stack: gave up on {name}" in err
    doc = status(up)
    assert doc is not None and doc["stack"] == "failed"
    assert component(doc, name)["state"] == "failed"
    assert {c["state"] for c in doc["components"] if c["name"] != name} == {"stopped"}
    assert up.children() == []


def test_sigterm_leaves_no_descendant_behind(up_factory: Callable[..., Up]) -> None:
    up = up_factory("--cells", "2")
    up.wait_up()
    before = wait_status(up, all_running, "every component running")
    os.kill(component(before, "cell-1")["pid"], signal.SIGKILL)  # a restarted child too
    doc = wait_status(up, lambda d: all_running(d) and component(d, "cell-1")["restarts"] == 1,
                      "cell-1 restarted")
    tree = descendants(up.proc.pid)
    pids = {pid for pid, _ in tree}
    assert {c["pid"] for c in doc["components"]} <= pids
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0
    poll(lambda: not [p for p in tree if still_running(p)], timeout=10,
         what="every descendant of a1 up to be gone")
    assert processes_mentioning(str(up.state)) == []
    final = status(up)
    assert final is not None and final["stack"] == "stopped"
    assert {c["state"] for c in final["components"]} == {"stopped"}
