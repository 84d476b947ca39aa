"""Every broken variant the self-test runs, as data: what it breaks and who must catch it.

A variant is started by the target (``conformance.harness.target``) with each
process named in ``wrap`` run through its wrapper module instead of the product's
entry point: ``[python, -m, <wrapper>, <the process's own arguments>]``. The suite
then plays ``scenario``; the self-test passes when the checker of ``catches``
fails on it (and the product passes the same scenario).
"""

from __future__ import annotations

from dataclasses import dataclass

_PKG = "conformance.variants"
# The cells of the suite's default stack (three cells): a cell variant wraps them all,
# so whichever cell a scenario picks as victim or misroutes to is the broken one.
CELLS = ("cell-1", "cell-2", "cell-3")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    catches: str  # the invariant whose checker must fail, e.g. "I-6"
    scenario: str  # the scenario that shows it, "I-<n>/<fault>"
    wrap: dict[str, str]  # launcher process name -> wrapper module
    # Words the catching checker's detail must contain: the variant is caught for the
    # problem it has, not because the stack was merely unwell (missing evidence, an
    # unhealthy control window).
    shows: str


def _cells(module: str) -> dict[str, str]:
    return {cell: f"{_PKG}.{module}" for cell in CELLS}


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant(
        "fail-open-envoy",
        "Envoy's ext_authz/ext_proc filter rendered with failure_mode_allow: true, and "
        "requests without a cell routed to the first cell instead of a 503",
        "I-6", "I-6/kill-sidecar", {"control": f"{_PKG}.fail_open_envoy"},
        "unauthorized ops answered 2xx"),
    Variant(
        "sync-policy-fetch",
        "the sidecar asks the control plane (a blocking gRPC call) before every decision "
        "and denies with 503 when it cannot",
        "I-3", "I-3/pause-non-data-plane", {"sidecar": f"{_PKG}.sync_policy_fetch"},
        "failed load ops in fault+recovery"),
    Variant(
        "shared-cell-store",
        "the cells share one SQLite store (shared-store.db beside their own)",
        "I-5", "I-5/lock-store", _cells("shared_cell_store"),
        "failed load ops in bystander"),
    Variant(
        "inline-decision-log",
        "the sidecar POSTs each decision's log line to the sink on the request path and "
        "waits for the answer; a failed POST fails the decision",
        "I-7", "I-7/sink-down", {"sidecar": f"{_PKG}.inline_decision_log"},
        "failed load ops in fault+recovery"),
    Variant(
        "resend-nacked-xds",
        "the control plane's xDS streams answer a NACK by sending the NACKed version again",
        "I-8", "I-8/envoy-nack", {"control": f"{_PKG}.resend_nacked_xds"},
        "the rejected config was sent again"),
    Variant(
        "foreign-tenant-cell",
        "cells accept every tenant instead of answering 421 to tenants they do not own",
        "I-5", "I-5/kill-cell", _cells("foreign_tenant_cell"),
        "misroute ops not answered 421"),
)}
