"""Config-fault and churn nemeses against a real stack: inject, see it, repair, see it gone.

One stack (control plane, relay, Envoy, sidecar, two cells, all real processes)
serves the whole module. Each fault is injected, its rejection is read where an
operator would read it (the control plane's status and metrics, the sidecar's
metrics), the data plane is checked with real requests through Envoy, and the
repair must leave the spec directory byte-identical and the stack as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from a1.launcher import Launcher
from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.stacks import make_stack, tenants_by_cell
from conformance.harness.waiting import poll
from conformance.nemesis.base import Fault
from conformance.nemesis.churn import Churn, churn
from conformance.nemesis.config import (
    BAD_LINES,
    ConfigFault,
    bundle_from_impostor,
    bundle_wrongly_signed,
    config_faults,
    envoy_nack,
    invalid_spec,
    plane,
    policy_trap,
    status,
    trap_policy,
)
from control.spec import load_spec
from control.spec.load import load_spec_text
from policies.compiler import compile_sources
from policies.core.errors import ConfigError
from policies.runtime import PolicyError, PolicyModule

ENTRYPOINT = "a1/authz/decision"


@dataclass
class StackTarget:
    """The nemesis Target protocol over a plain Stack."""

    stack: Stack

    @property
    def launcher(self) -> Launcher:
        return self.stack.launcher

    @property
    def state_dir(self) -> Path:
        return self.stack.files.state_dir

    @property
    def spec_dir(self) -> Path:
        return self.stack.files.platform

    def proxy(self, link: str) -> Any:
        raise LookupError(f"no fault proxy on {link} in this stack")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = make_stack(tmp_path_factory.mktemp("stack"), cells=2)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def target(stack: Stack) -> StackTarget:
    return StackTarget(stack)


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> dict[str, str]:
    """One tenant per cell: cell -> tenant."""
    return {cell: names[0] for cell, names in tenants_by_cell(stack, 1).items()}


def ask(stack: Stack, tenant: str) -> tuple[int, str | None]:
    """One request through Envoy: (status, the policy version that decided it)."""
    resp = Client(stack.http_url, timeout=10).get(f"/t/{tenant}/echo",
                                                  stack.token(tenant, ["reader"]))
    version = resp.json()["headers"].get("x-a1-policy-version") if resp.status == 200 else None
    return resp.status, version


def served(stack: Stack, tenants: list[str], version: str, rounds: int = 5) -> None:
    """Every request of every tenant is 200 and decided by ``version``."""
    for _ in range(rounds):
        for tenant in tenants:
            assert ask(stack, tenant) == (200, version), tenant


@pytest.fixture
def stable(stack: Stack, tenants: dict[str, str], target: StackTarget) -> Iterator[str]:
    """The policy version serving before the test; the stack is checked back on it after."""
    original = {p: p.read_bytes() for p in target.spec_dir.rglob("*") if p.is_file()}
    _, version = ask(stack, next(iter(tenants.values())))
    assert version
    yield version
    assert {p: p.read_bytes() for p in target.spec_dir.rglob("*") if p.is_file()} == original
    for tenant in tenants.values():
        poll(lambda t=tenant: ask(stack, t) == (200, version), timeout=30,
             what=f"{tenant} back on the stable policy")


def run(fault: Fault) -> None:
    assert fault.unavailable is None, fault.unavailable
    fault.inject()


# -- invalid spec --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_an_invalid_spec_is_refused_at_its_line_and_the_old_snapshot_keeps_serving(
        stack: Stack, target: StackTarget, tenants: dict[str, str], stable: str,
        kind: str) -> None:
    p = plane(target)
    spec_file = target.spec_dir / "platform.yaml"
    line = spec_file.read_bytes().count(b"\n") + 1
    before = status(p)
    fault = invalid_spec(target, kind)
    run(fault)
    try:
        seen, where = fault.visible()
        assert seen, where
        text, marker = BAD_LINES[kind]
        assert f"platform.yaml:{line}:{text.index(marker) + 1}" in where, where
        during = status(p)
        assert during["snapshot"]["versions"] == before["snapshot"]["versions"]
        assert during["config_errors"] == before["config_errors"] + 1
        served(stack, list(tenants.values()), stable)
    finally:
        fault.repair()
    assert fault.observed["rejection_visible"]["visible"] is True
    assert fault.observed["xds_nacks"] == {"fault": fault.name, "nacks": 0, "subscribers": 0}
    after = status(p)
    assert after["spec"]["digest"] == load_spec(target.spec_dir).digest
    assert after["config_errors"] == before["config_errors"] + 1  # the restore refused nothing


def test_the_bad_lines_fail_the_loader_where_the_fault_says(tmp_path: Path,
                                                            target: StackTarget) -> None:
    text = (target.spec_dir / "platform.yaml").read_text()
    line = text.count("\n") + 1
    for bad, marker in BAD_LINES.values():
        with pytest.raises(ConfigError, match=rf"platform.yaml:{line}:{bad.index(marker) + 1}: "):
            load_spec_text(target.spec_dir, text + bad + "\n")


# -- Envoy NACK ----------------------------------------------------------------------------


def test_a_listener_envoy_nacks_is_visible_nacked_once_and_the_old_one_keeps_serving(
        stack: Stack, target: StackTarget, tenants: dict[str, str], stable: str) -> None:
    fault = envoy_nack(target)
    run(fault)
    try:
        seen, where = fault.visible()
        assert seen and "unable to open file" in where, where
        served(stack, list(tenants.values()), stable)
        assert fault.nacks() == {"fault": fault.name, "nacks": 1, "subscribers": 1}
    finally:
        fault.repair()
    assert fault.observed["rejection_visible"]["visible"] is True
    assert fault.observed["xds_nacks"]["nacks"] == 1
    assert fault.visible()[0] is False  # Envoy ACKed the restored listeners
    served(stack, list(tenants.values()), stable, rounds=1)


# -- bad bundles ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [bundle_wrongly_signed,
                                  lambda t: bundle_from_impostor(t, "corrupted"),
                                  lambda t: bundle_from_impostor(t, "unsigned")],
                         ids=["wrongly-signed", "corrupted", "unsigned"])
def test_a_bad_bundle_is_nacked_by_the_sidecar_and_the_signed_policy_keeps_deciding(
        stack: Stack, target: StackTarget, tenants: dict[str, str], stable: str,
        make: Any) -> None:
    fault: ConfigFault = make(target)
    run(fault)
    try:
        seen, where = fault.visible()
        assert seen, where
        assert "a1_policy_load_failures_total +" in where, where
        served(stack, list(tenants.values()), stable)
        counted = fault.nacks()
        assert 1 <= counted["nacks"] <= counted["subscribers"], counted
    finally:
        fault.repair()
    assert fault.observed["rejection_visible"]["visible"] is True
    assert fault.visible()[0] is False  # the real plane is back: nothing refused
    served(stack, list(tenants.values()), stable, rounds=1)


# -- policies that trap --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fuel", "memory"])
def test_a_trapping_policy_fails_closed_on_the_canary_cell_only(
        stack: Stack, target: StackTarget, tenants: dict[str, str], stable: str,
        kind: str) -> None:
    fault = policy_trap(target, kind)
    (canary,) = fault.affected_cells
    others = [t for c, t in tenants.items() if c != canary]
    run(fault)
    try:
        for _ in range(5):
            code, _ = ask(stack, tenants[canary])
            assert code == 500, code  # evaluation failed: denied, never 2xx
            served(stack, others, stable, rounds=1)
        seen, where = fault.visible()
        assert seen and "a1_policy_eval_errors_total +" in where, where
    finally:
        fault.repair()
    assert fault.observed["xds_nacks"]["nacks"] == 0  # the bundle itself is valid


@pytest.mark.parametrize("kind", ["fuel", "memory"])
def test_the_trap_policies_compile_and_trap_under_the_sidecars_limits(kind: str) -> None:
    wasm = compile_sources({"p.rego": trap_policy(ENTRYPOINT, kind)}, None, [ENTRYPOINT])
    ev = PolicyModule.load(wasm).evaluator(ENTRYPOINT)  # the sidecar's default limits
    want = {"fuel": "out of fuel", "memory": "memory cap"}[kind]
    for doc in ({}, {"method": "GET", "tenant": "t"}):
        with pytest.raises(PolicyError, match=want):
            ev.evaluate(doc)


# -- churn ---------------------------------------------------------------------------------


def test_churn_changes_versions_not_decisions_and_repair_restores_the_spec(
        stack: Stack, target: StackTarget, tenants: dict[str, str], stable: str) -> None:
    fault = churn(target, 5, "mixed", max_updates=200)
    assert fault.churn is not None
    run(fault)
    seen_versions: set[str] = set()
    try:
        def enough() -> bool:
            for tenant in tenants.values():
                code, version = ask(stack, tenant)
                assert code == 200, (tenant, code)
                seen_versions.add(str(version))
            return fault.churn is not None and fault.churn.applied >= 12
        poll(enough, timeout=60, what="a dozen churn updates")
    finally:
        fault.repair()
    names = dict(fault.observations())
    assert names["churn_writes"] >= 12 and names["churn_updates"] >= 2, names
    assert fault.churn.errors == 0, fault.churn.last_error
    assert len(seen_versions) >= 2, seen_versions  # policy versions really changed


def test_churn_refuses_unbounded_or_unknown_settings(target: StackTarget) -> None:
    for rate, kind, limit in ((0, "mixed", 10), (1000, "mixed", 10), (1, "cells", 10),
                              (1, "policy", 0), (1, "policy", 10**9)):
        with pytest.raises(ValueError):
            Churn(target, rate, kind, max_updates=limit)


def test_every_fault_is_named_and_runnable_on_an_xds_stack(target: StackTarget) -> None:
    faults = config_faults(target)
    assert len({f.name for f in faults}) == len(faults) == 8
    assert all(isinstance(f, Fault) and f.unavailable is None and f.expect for f in faults)
