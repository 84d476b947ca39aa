"""The benchmark variants of the bootstrap, each serving a real stack.

``http`` (ext_authz over the sidecar's HTTP path) and ``ext_proc`` must behave
exactly like the default gRPC ext_authz; ``rbac`` (Envoy's native RBAC on the
claims, no sidecar) is coarser and pins all traffic to one cell.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.stacks import tenants_by_cell

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("mode", ["http", "ext_proc"])
def test_sidecar_variants_decide_and_route_like_grpc(start_stack: Callable[..., Stack],
                                                     mode: str) -> None:
    stack = start_stack(mode=mode, cells=2)
    client = Client(stack.http_url)
    prefix = mode.replace("_", "-")  # a tenant id has no "_"
    for cell, names in tenants_by_cell(stack, per_cell=2, prefix=prefix).items():
        for t in names:
            writer, reader = stack.token(t, ["reader", "writer"]), stack.token(t, ["reader"])
            created = client.post(f"/t/{t}/items", writer, {"mode": mode})
            assert created.status == 201 and created.headers["x-a1-cell"] == cell, created
            got = client.get(f"/t/{t}/items/{created.json()['id']}", reader,
                             headers={"x-a1-cell": "cell-9"})  # forged: ignored
            assert got.status == 200 and got.headers["x-a1-cell"] == cell, got
            denied = client.post(f"/t/{t}/items", reader, {"x": 1})
            assert denied.status == 403, denied
            assert denied.headers["x-a1-deny-reason"] == "no role permits this method"
            cross = client.get("/t/someone-else/items", writer)
            assert cross.status == 403 and cross.headers["x-a1-deny-reason"] == \
                "cross-tenant request"
    assert client.get("/t/x/items").status == 401
    assert client.get("/healthz").status == 200


def test_rbac_variant_checks_roles_natively_and_pins_one_cell(
        start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(mode="rbac", cells=2)
    assert "sidecar" not in stack.launcher.names()
    client = Client(stack.http_url)
    tenants = tenants_by_cell(stack, per_cell=1, prefix="rbac")
    mine, other = tenants["cell-1"][0], tenants["cell-2"][0]
    reader, writer = stack.token(mine, ["reader"]), stack.token(mine, ["writer"])
    assert client.get(f"/t/{mine}/items", reader).status == 200
    denied = client.post(f"/t/{mine}/items", reader, {"x": 1})
    assert denied.status == 403 and b"RBAC" in denied.body
    created = client.post(f"/t/{mine}/items", writer, {"x": 1})
    assert created.status == 201 and created.headers["x-a1-cell"] == "cell-1"
    # No cell selection without the sidecar: the pinned cell's guard refuses the rest.
    foreign = client.get(f"/t/{other}/items", stack.token(other, ["reader"]))
    assert foreign.status == 421 and foreign.headers["x-a1-cell"] == "cell-1"
    assert client.get(f"/t/{mine}/items", stack.token(mine, [])).status == 403
    assert client.get(f"/t/{mine}/items").status == 401
