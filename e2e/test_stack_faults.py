"""Faults on a real stack: dead sidecar, dead cell, bad policy, a cell Envoy does not know.

Each test injects one fault, checks the data plane fails closed and only where
it must, then repairs the stack (restart, restore) and polls until it serves
again, so the tests are independent of each other's order.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import pytest

from a1.files import write_atomic
from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.stacks import metric, tenants_by_cell
from conformance.harness.waiting import poll

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def static_stack(start_stack: Any) -> Stack:
    """A stack on files written once (no control plane): the faults below are file faults."""
    s: Stack = start_stack(config_source="static")
    return s


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> dict[str, list[str]]:
    return tenants_by_cell(stack, per_cell=2, prefix="fault")


def sidecar_cells_version(stack: Stack) -> str:
    text = Client(stack.metrics_url.rsplit("/", 1)[0]).get("/metrics").body.decode()
    m = re.search(r'^a1_policy_version_info\{[^}]*cells_version="([0-9a-f]+)"', text, re.M)
    return m.group(1) if m else ""


def all_serve(stack: Stack, client: Client, tenants: dict[str, list[str]]) -> bool:
    for cell, names in tenants.items():
        for t in names:
            r = client.get(f"/t/{t}/items", stack.token(t, ["reader"]))
            if r.status != 200 or r.headers.get("x-a1-cell") != cell:
                return False
    return True


def test_killed_sidecar_yields_503_never_200(stack: Stack, client: Client,
                                             tenants: dict[str, list[str]]) -> None:
    assert all_serve(stack, client, tenants)
    stack.launcher.kill("sidecar")
    try:
        for names in tenants.values():
            for t in names:
                writer = stack.token(t, ["reader", "writer"])
                for resp in (client.get(f"/t/{t}/items", writer),
                             client.post(f"/t/{t}/items", writer, {"during": "outage"}),
                             client.get("/t/other/items", writer)):
                    assert resp.status == 503, resp
                    assert "x-a1-cell" not in resp.headers
        # SIGKILL leaves the socket files behind: the restart must replace them safely.
        assert os.path.lexists(stack.sidecar_grpc_address.removeprefix("unix:"))
    finally:
        stack.launcher.restart("sidecar")
    poll(lambda: all_serve(stack, client, tenants), what="service after sidecar restart")
    for address in (stack.sidecar_grpc_address, stack.sidecar_http_address):
        st = os.lstat(address.removeprefix("unix:"))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, address
    # Nothing written during the outage.
    for names in tenants.values():
        for t in names:
            items = client.get(f"/t/{t}/items", stack.token(t, ["reader"])).json()["items"]
            assert {"during": "outage"} not in [i["item"] for i in items]


def test_killed_cell_errors_only_its_own_tenants(stack: Stack, client: Client,
                                                 tenants: dict[str, list[str]]) -> None:
    assert all_serve(stack, client, tenants)
    stack.launcher.kill("cell-2")
    try:
        for _ in range(5):
            for cell, names in tenants.items():
                for t in names:
                    resp = client.get(f"/t/{t}/items", stack.token(t, ["reader"]))
                    if cell == "cell-2":
                        assert resp.status == 503, resp  # never served by another cell
                        assert "x-a1-cell" not in resp.headers
                    else:
                        assert resp.status == 200 and resp.headers["x-a1-cell"] == cell, resp
    finally:
        stack.launcher.restart("cell-2")
    poll(lambda: all_serve(stack, client, tenants), what="cell-2 readmitted by health checks")


def test_invalid_policy_leaves_the_old_one_serving(static_stack: Stack) -> None:
    stack, client = static_stack, Client(static_stack.http_url)
    module = stack.files.policy_module
    good = module.read_bytes()
    writer, reader = stack.token("acme", ["reader", "writer"]), stack.token("acme", ["reader"])
    version = client.get("/t/acme/echo", writer).json()["headers"]["x-a1-policy-version"]
    failures = metric(stack, "a1_policy_load_failures_total")
    try:
        module.write_bytes(b"\0asm garbage, not a policy module")
        poll(lambda: metric(stack, "a1_policy_load_failures_total") > failures,
             what="the sidecar to refuse the bad module")
        # Still decided by the old module: allow, deny with reason, same version.
        echo = client.get("/t/acme/echo", writer)
        assert echo.status == 200 and echo.json()["headers"]["x-a1-policy-version"] == version
        assert client.post("/t/acme/items", writer, {"kept": True}).status == 201
        denied = client.post("/t/acme/items", reader, {"x": 1})
        assert denied.status == 403
        assert denied.headers["x-a1-deny-reason"] == "no role permits this method"
        assert client.get("/t/globex/items", writer).status == 403
    finally:
        write_atomic(module, good)


def test_a_cell_unknown_to_envoy_gets_503_never_another_cell(static_stack: Stack) -> None:
    """The table names a cell Envoy has no route for: its tenants get Envoy's 503.

    The control plane never publishes such a table (its snapshots are checked whole),
    so the fault is injected on a stack whose table is a file."""
    stack, client = static_stack, Client(static_stack.http_url)
    tenants = tenants_by_cell(stack, per_cell=2, prefix="fault")
    path = stack.files.cells_table
    original = path.read_bytes()
    table = stack.cell_table()
    grown = table.add_cell("cell-9")
    moved = [t for t in (f"moved-{i}" for i in range(2000)) if grown.lookup(t) == "cell-9"][:3]
    stayed = {t: table.lookup(t) for t in (f"moved-{i}" for i in range(2000))
              if grown.lookup(t) != "cell-9"}
    try:
        grown.save(path)
        poll(lambda: sidecar_cells_version(stack) == grown.version,
             what="the sidecar to load the new cell table")
        for t in moved:
            resp = client.get(f"/t/{t}/items", stack.token(t, ["reader"]))
            assert resp.status == 503, resp
            assert resp.headers["x-a1-deny-reason"] == "no cell serves this request"
            assert "x-a1-cell" not in resp.headers
        for t, cell in list(stayed.items())[:6]:
            resp = client.get(f"/t/{t}/items", stack.token(t, ["reader"]))
            assert resp.status == 200 and resp.headers["x-a1-cell"] == cell
    finally:
        write_atomic(path, original)
    poll(lambda: sidecar_cells_version(stack) == table.version, what="the table restored")
    poll(lambda: all_serve(stack, client, tenants), what="service on the restored table")
