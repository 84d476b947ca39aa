"""The stack ``a1 up`` runs, on its control plane: outages, topology changes, rollbacks.

Every component here takes its config from the control plane (Envoy through its
relay, the sidecar, the cells). The tests drive real faults and real spec edits
and check the data plane through real requests under steady load:

- the control plane killed: traffic stays at 100 %; an Envoy and a sidecar
  restarted during the outage boot from last-known-good and serve; the control
  plane back, a spec change reaches everyone again;
- a cell added and a cell removed under steady load fail no request, and so does a
  cell slow to pass its first health check (Envoy warms its cluster first);
- a canary policy that breaches the deny-rate bound is rolled back by itself;
- a tampered or unsigned bundle is refused, and the old policy keeps deciding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from a1.cli import main as a1_main
from a1.launcher import ProcessSpec, free_ports, http_probe
from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.stacks import control_status, published, tenants_in_table
from conformance.harness.waiting import poll
from conformance.nemesis.proxy import start_proxy
from control.pipeline.compile import compile_bundle
from control.pipeline.render import render
from control.pipeline.state import initial_state
from control.spec import load_spec
from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.server import XdsServer
from policies.bundle import load_signing_key, load_trusted_keys, public_key_path, verify_bundle
from policies.core.xds.types import POLICY_ASSIGNMENT, POLICY_BUNDLE, PUSH_ORDER, canonical_json

pytestmark = pytest.mark.e2e


class Load:
    """Steady GETs for a fixed set of tenants, on threads, counting every outcome."""

    def __init__(self, stack: Stack, tenants: list[str], threads: int = 4) -> None:
        self.client = Client(stack.http_url, timeout=5)
        self.tokens = {t: stack.token(t, ["reader"]) for t in tenants}
        self.outcomes: Counter[str] = Counter()
        self.by_tenant: dict[str, Counter[str]] = {t: Counter() for t in tenants}
        self.cells: dict[str, set[str]] = {t: set() for t in tenants}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def _run(self, offset: int) -> None:
        names = list(self.tokens)
        i = offset
        while not self._stop.is_set():
            tenant = names[i % len(names)]
            i += 1
            try:
                resp = self.client.get(f"/t/{tenant}/items", self.tokens[tenant])
                outcome = str(resp.status)
                cell = resp.headers.get("x-a1-cell")
            except OSError as err:
                outcome, cell = f"error: {err}", None
            with self._lock:
                self.outcomes[outcome] += 1
                self.by_tenant[tenant][outcome] += 1
                if cell:
                    self.cells[tenant].add(cell)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def total(self) -> int:
        with self._lock:
            return sum(self.outcomes.values())

    def failures(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in self.outcomes.items() if k != "200"}


@pytest.fixture(scope="module")
def stack(start_stack: Any) -> Stack:
    s: Stack = start_stack()
    assert s.uses_control_plane
    return s


def tenants_of(stack: Stack, per_cell: int = 2) -> list[str]:
    return [t for names in tenants_in_table(stack.cell_table(), per_cell).values()
            for t in names]


def test_a_control_plane_outage_loses_nothing_and_restarts_boot_from_last_known_good(
        stack: Stack) -> None:
    tenants = tenants_of(stack)
    with Load(stack, tenants) as load:
        poll(lambda: load.total() > 50, what="steady load before the fault")
        stack.launcher.kill("control")  # SIGKILL: no goodbye to any client
        before = load.total()
        poll(lambda: load.total() > before + 200, timeout=60, what="load during the outage")
        assert load.failures() == {}, load.outcomes
    try:
        # Restarted while the control plane is still down: both boot from what they kept.
        for name in ("sidecar", "envoy"):
            stack.launcher.restart(name)
            stack.launcher.wait_ready([name], timeout=60)
        client = Client(stack.http_url)
        for tenant in tenants:
            resp = client.get(f"/t/{tenant}/items", stack.token(tenant, ["reader"]))
            assert resp.status == 200, resp
        log = (stack.files.logs / "sidecar.log").read_text()
        assert "last-known-good" in log, log[-2000:]
    finally:
        stack.launcher.restart("control")
        stack.launcher.wait_ready(["control"], timeout=60)
    # Back: a spec change reaches Envoy and the sidecar again (an override moves a tenant).
    moved = tenants[0]
    table = stack.cell_table()
    target = next(c for c in table.cells if c != table.lookup(moved))
    spec_file = stack.files.platform / "platform.yaml"
    doc = yaml.safe_load(spec_file.read_text())
    doc["overrides"] = {moved: target}
    spec_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    client = Client(stack.http_url)
    token = stack.token(moved, ["reader"])
    poll(lambda: client.get(f"/t/{moved}/items", token).headers.get("x-a1-cell") == target,
         timeout=60, what=f"{moved} moved to {target} after the control plane came back")
    doc["overrides"] = {}
    spec_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    poll(lambda: client.get(f"/t/{moved}/items", token).headers.get("x-a1-cell")
         == table.lookup(moved), timeout=60, what="the override lifted")


@contextlib.contextmanager
def extra_cell(stack: Stack, name: str, tmp_path: Path) -> Iterator[int]:
    """A cell process not yet in the spec (it takes its table from the control plane,
    as an operator's new cell does); its port while it runs."""
    port = free_ports(1)[0]
    stack.launcher.start(ProcessSpec(
        name=name,
        argv=[sys.executable, "-m", "a1.cell", "--name", name, "--port", str(port),
              "--db", str(tmp_path / f"{name}.db"), "--xds", stack.xds_address],
        log_path=stack.files.logs / f"{name}.log",
        ready=http_probe(f"http://127.0.0.1:{port}/healthz")))
    try:
        stack.launcher.wait_ready([name], timeout=30)
        yield port
    finally:
        stack.launcher.stop(name)


@pytest.fixture
def fourth_cell(stack: Stack, tmp_path: Path) -> Iterator[int]:
    with extra_cell(stack, "cell-4", tmp_path) as port:
        yield port


def failed_requests(stack: Stack, last: int = 20) -> str:
    """Envoy's failed requests grouped by (status, flags, cell, upstream) with their first
    and last times, and the control plane's transition log: which phase a failure fell in."""
    lines = (stack.files.logs / "envoy-access.log").read_text(errors="replace").splitlines()
    groups: dict[str, list[str]] = {}
    for line in lines:
        if '" 200 ' in line or '" 201 ' in line:
            continue
        when, _, rest = line.partition("] ")
        key = re.sub(r"/t/[^/ ]+", "/t/*", rest.rsplit(" ", 1)[0])
        groups.setdefault(key, []).append(when.lstrip("["))
    control = (stack.files.logs / "control.log").read_text(errors="replace").splitlines()
    phases = [line for line in control if "phase" in line or "transition" in line]
    try:
        clusters = urllib.request.urlopen(f"{stack.admin_url}/clusters", timeout=5).read()
        health = [line for line in clusters.decode().splitlines() if "health_flags" in line]
    except OSError as err:
        health = [f"unavailable: {err}"]
    return "\n".join(["failed requests:",
                      *(f"  {len(t)}x {k} (first {t[0]}, last {t[-1]})" for k, t in groups.items()),
                      "control plane:", *phases[-last:], "envoy cluster health now:", *health])


def test_a_cell_added_and_removed_under_steady_load_fails_no_request(
        stack: Stack, fourth_cell: int) -> None:
    before = stack.cell_table()
    grown = before.add_cell("cell-4")
    movers = [t for t in (f"mover-{i}" for i in range(5000))
              if grown.lookup(t) == "cell-4"][:4]
    stayers = tenants_of(stack, per_cell=1)
    config = str(stack.files.platform)
    with Load(stack, movers + stayers) as load:
        poll(lambda: load.total() > 50, what="steady load before the change")
        assert a1_main(["cells", "add", "cell-4", "--endpoint", f"127.0.0.1:{fourth_cell}",
                        "--config", config]) == 0
        poll(lambda: published(stack), timeout=90, what="cell-4 added")
        client = Client(stack.http_url)
        for t in movers:
            resp = client.get(f"/t/{t}/items", stack.token(t, ["reader"]))
            assert resp.status == 200 and resp.headers["x-a1-cell"] == "cell-4", resp
        mid = load.total()
        poll(lambda: load.total() > mid + 100, what="load on the grown table")
        assert a1_main(["cells", "remove", "cell-4", "--config", config]) == 0
        poll(lambda: published(stack), timeout=90, what="cell-4 removed")
        end = load.total()
        poll(lambda: load.total() > end + 100, what="load on the shrunk table")
    assert load.failures() == {}, f"{dict(load.outcomes)}\n{failed_requests(stack)}"
    assert all("cell-4" in load.cells[t] and before.lookup(t) in load.cells[t]
               for t in movers), load.cells
    clusters = urllib.request.urlopen(f"{stack.admin_url}/clusters", timeout=5).read().decode()
    assert "cell_cell-4::" not in clusters


@pytest.fixture
def slow_cell(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A fifth cell that Envoy reaches through a fault proxy adding 1.4 s to every answer
    (a loaded or far cell): Envoy's first health check of it takes that long. Its
    endpoint as the spec names it (the proxy)."""
    with (extra_cell(stack, "cell-5", tmp_path) as port,
          start_proxy("127.0.0.1:0", f"127.0.0.1:{port}", link="envoy-cell-5") as proxy):
        proxy.control.add("latency", latency=1400)
        yield f"127.0.0.1:{proxy.listen.port}"


def test_a_cell_slow_to_pass_its_first_health_check_is_added_without_a_503(
        stack: Stack, slow_cell: str) -> None:
    """A route to a cluster Envoy is still warming (its first health check running)
    answers 503. Envoy holds the ACK of the phase that adds the cell until it has warmed
    the cluster, and the publisher waits for that ACK, so no tenant is sent there early
    (docs/control-plane.md, "ACKs and cluster warming")."""
    grown = stack.cell_table().add_cell("cell-5")
    movers = [t for t in (f"slow-{i}" for i in range(5000)) if grown.lookup(t) == "cell-5"][:2]
    config = str(stack.files.platform)
    with Load(stack, movers) as load:
        poll(lambda: load.total() > 20, what="steady load before the change")
        assert a1_main(["cells", "add", "cell-5", "--endpoint", slow_cell,
                        "--config", config]) == 0
        poll(lambda: published(stack), timeout=90, what="cell-5 added")
        poll(lambda: all("cell-5" in load.cells[t] for t in movers), timeout=30,
             what="the movers served by cell-5")
    try:
        assert load.failures() == {}, f"{dict(load.outcomes)}\n{failed_requests(stack)}"
    finally:
        assert a1_main(["cells", "remove", "cell-5", "--config", config]) == 0
        poll(lambda: published(stack), timeout=90, what="cell-5 removed")


DENY_ALL = """package a1.authz

import rego.v1

decision := {"allow": false, "status": 403, "reason": "canary denies all", "headers": {}}
"""


def test_a_canary_that_breaches_the_deny_bound_is_rolled_back_by_itself(stack: Stack) -> None:
    spec_dir = stack.files.platform
    policy = next((spec_dir / "policy").glob("*.rego"))
    good = policy.read_text()
    spec_file = spec_dir / "platform.yaml"
    doc = yaml.safe_load(spec_file.read_text())
    canary = doc["rollout"]["canary_cell"]
    table = stack.cell_table()
    canary_tenants = [t for t in (f"canary-{i}" for i in range(2000))
                      if table.lookup(t) == canary][:3]
    others = [t for t in (f"other-{i}" for i in range(2000)) if table.lookup(t) != canary][:3]
    doc["rollout"].update(soak_seconds=300, max_deny_rate=0.2, min_requests=20)
    spec_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    policy.write_text(DENY_ALL)
    try:
        with Load(stack, canary_tenants + others) as load:
            poll(lambda: control_status(stack)["rollout"]["state"] == "rolled_back",
                 timeout=90, interval=0.2, what="the rollout to roll back by itself")
            client = Client(stack.http_url)
            token = stack.token(canary_tenants[0], ["reader"])
            poll(lambda: client.get(f"/t/{canary_tenants[0]}/items", token).status == 200,
                 timeout=30, what="the canary cell back on the stable policy")
        # Only the canary's tenants ever saw the candidate's denies.
        assert all(load.by_tenant[t]["403"] > 0 for t in canary_tenants), load.by_tenant
        assert {t: dict(load.by_tenant[t]) for t in others
                if set(load.by_tenant[t]) != {"200"}} == {}
        status = control_status(stack)["rollout"]
        assert "deny" in json.dumps(status).lower(), status
    finally:
        policy.write_text(good)
    # The stable policy (the same bytes) is proposed again: the rollout ends idle.
    poll(lambda: control_status(stack)["rollout"]["state"] in ("idle", "rolled_back"),
         what="the rollout to settle")


def sidecar_nack(server: XdsServer) -> str:
    """The sidecar's last NACK text for policy bundles on ``server`` ("" if none)."""
    for conn in server.connections():
        if conn["node_cluster"] == "a1-sidecar":
            return str(conn["types"].get(POLICY_BUNDLE, {}).get("last_nack") or "")
    return ""


def test_a_tampered_or_unsigned_bundle_is_refused_and_the_old_policy_keeps_deciding(
        stack: Stack) -> None:
    """An impostor on the control plane's port serves the real snapshot with the policy
    bundle tampered, then unsigned: the sidecar NACKs both, Envoy keeps serving, and
    every decision still comes from the policy the real control plane signed."""
    client = Client(stack.http_url)
    tenant = tenants_of(stack, per_cell=1)[0]
    token = stack.token(tenant, ["reader"])
    version = client.get(f"/t/{tenant}/echo", token).json()["headers"]["x-a1-policy-version"]
    spec = load_spec(stack.files.platform)
    key = load_signing_key(stack.files.signing_key)
    real_version, bundle = compile_bundle(spec.policy, key)
    good = render(initial_state(spec, real_version, bundle))
    module = verify_bundle(bundle, load_trusted_keys(public_key_path(stack.files.signing_key)),
                           source="test").module
    tampered = bytearray(bundle)
    tampered[-100] ^= 0x01  # inside the module: the signature no longer verifies
    unsigned_version = hashlib.sha256(module).hexdigest()
    cases = {
        "tampered": [Resource.of(POLICY_BUNDLE, real_version, bytes(tampered))],
        "unsigned": [Resource.of(POLICY_BUNDLE, unsigned_version, module),
                     Resource.of(POLICY_ASSIGNMENT, "assignment",
                                 canonical_json({"default": unsigned_version, "cells": {}}))],
    }
    stack.launcher.stop("control")
    try:
        for case, replaced in cases.items():
            swap = {(r.type_url, r.name) for r in replaced}
            kept = [r for t in PUSH_ORDER for r in good.resources(t).values()
                    if (t, r.name) not in swap and not (case == "unsigned" and t == POLICY_BUNDLE)]
            cache = SnapshotCache()
            cache.set_snapshot("default", Snapshot([*kept, *replaced]))
            impostor = XdsServer(cache, host=stack.xds_address,
                                 node_group=lambda node: "default")
            impostor.start()
            try:
                reason = poll(lambda server=impostor: sidecar_nack(server), timeout=30,
                              what=f"the sidecar to NACK the {case} bundle")
                assert "signature" in reason or "unsigned" in reason, reason
                for _ in range(20):
                    resp = client.get(f"/t/{tenant}/echo", token)
                    assert resp.status == 200, resp
                    assert resp.json()["headers"]["x-a1-policy-version"] == version
            finally:
                impostor.stop(grace=0)
    finally:
        stack.launcher.start(stack.control_spec())
        stack.launcher.wait_ready(["control"], timeout=60)
