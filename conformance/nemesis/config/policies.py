"""Policy faults: a policy that compiles, loads and traps at evaluation.

- ``config:policy:fuel`` / ``:memory``: the canary cell fails closed (500), the
  rollout rolls it back; no NACK, the bundle is valid. ``settled`` waits for the
  rollout to have either put the trap on the canary cell or rolled it back.
"""

from __future__ import annotations

from typing import Any

from conformance.harness.waiting import poll
from conformance.nemesis.base import Target
from conformance.nemesis.config.fault import (
    RECOVER,
    ConfigFault,
    SavedFiles,
    _make,
    _unavailable,
)
from conformance.nemesis.config.plane import (
    BUNDLE_TYPES,
    _acked,
    nack_total,
    no_candidate,
    plane,
    serves_spec,
    sidecar_metrics_url,
    sidecar_sum,
    status,
    subscriptions,
)
from policies.core.errors import one_line


def _module(entrypoint: str, body: str) -> str:
    """A Rego module defining the entrypoint's rule with ``body`` (rules using ``work``)."""
    package, _, rule = entrypoint.rpartition("/")
    return (f"# A1 conformance: a policy that compiles and traps at evaluation.\n"
            f"package {package.replace('/', '.')}\n\nimport rego.v1\n\n{body}\n"
            f'{rule} := {{"allow": count(work) < 0, "status": 403, '
            f'"reason": "conformance trap", "headers": {{}}}}\n')


# Three nested loops over 400 numbers: 64 million steps, past the 10 M instruction
# budget; nothing is allocated while it spins.
FUEL_BODY = ("work contains a if {\n\tsome a in numbers.range(1, 400)\n"
             "\tsome b in numbers.range(1, 400)\n\tsome c in numbers.range(1, 400)\n"
             "\ta + b + c < 0\n}\n")
# An array doubled 25 times: memory grows page by page until the 16 MiB cap refuses.
MEMORY_BODY = ("a0 := [1, 2, 3, 4, 5, 6, 7, 8]\n"
               + "".join(f"a{i} := array.concat(a{i - 1}, a{i - 1})\n" for i in range(1, 26))
               + "work := a25\n")
POLICIES = {"fuel": FUEL_BODY, "memory": MEMORY_BODY}
ERROR_TEXT = {"fuel": "out of fuel", "memory": "memory cap"}
EVAL_ERRORS = "a1_policy_eval_errors_total"  # the sidecar's counter of failed evaluations


def trap_policy(entrypoint: str, kind: str) -> str:
    """The Rego source of the ``kind`` (fuel | memory) policy for ``entrypoint``."""
    return _module(entrypoint, POLICIES[kind])


def policy_trap(target: Target, kind: str = "fuel") -> ConfigFault:
    """The spec's policy replaced by one that compiles, loads, and traps on every
    evaluation (``kind``: fuel, or memory past the cap). A new version goes to the
    canary cell first (docs/rollout.md).

    Expect: requests of the canary cell's tenants get 500 (evaluation failed: fail
    closed), never 2xx, until the rollout rolls back on the error rate; every other
    cell keeps the stable version and fails nothing. Visible in the sidecar's
    ``a1_policy_eval_errors_total`` and the rollout's status; no NACK (the bundle is
    valid)."""
    from control.spec import load_spec

    if kind not in POLICIES:
        raise ValueError(f"policy_trap: kind must be one of {', '.join(POLICIES)}")
    unavailable = _unavailable(target, "control", "sidecar")
    p = None if unavailable else plane(target)
    files = SavedFiles()
    base: dict[str, Any] = {}
    canary: tuple[str, ...] = ()
    if p is not None:
        spec = load_spec(target.spec_dir)
        canary = (spec.rollout.canary_cell or spec.cell_names[0],)
    metrics = sidecar_metrics_url(target)

    def inject() -> None:
        assert p is not None
        spec = load_spec(target.spec_dir)
        sources = list(spec.policy.sources)
        base.update(errors=sidecar_sum(metrics, EVAL_ERRORS), nacks=nack_total(
            f"{p.status_url}/metrics", BUNDLE_TYPES),
            version=(status(p).get("policy") or {}).get("version"))
        root = target.spec_dir
        files.write(root / sources[0], trap_policy(spec.policy.entrypoint, kind).encode())
        for i, rel in enumerate(sources[1:], 1):  # other sources must not define the rule
            files.write(root / rel, f"package a1_conformance_blank_{i}\n".encode())

    def read_visible() -> tuple[bool, str]:
        assert p is not None
        errors = sidecar_sum(metrics, EVAL_ERRORS) - base.get("errors", 0)
        rollout = status(p).get("rollout") or {}
        breach = rollout.get("last_breach")
        seen = errors > 0 or bool(breach)
        return seen, (f"sidecar {metrics} a1_policy_eval_errors_total +{errors:g}; "
                      f"control plane {p.status_url}/status rollout state "
                      f"{rollout.get('state')}, last_breach {one_line(str(breach), 200)}")

    def read_nacks() -> tuple[int, int]:
        assert p is not None
        n = nack_total(f"{p.status_url}/metrics", BUNDLE_TYPES) - base.get("nacks", 0)
        return n, subscriptions(status(p).get("clients", []), BUNDLE_TYPES)

    def undo() -> None:
        files.restore()
        assert p is not None
        poll(lambda: serves_spec(p, target.spec_dir) and no_candidate(p), timeout=RECOVER,
             what="the stable policy back on every cell")

    def settled() -> bool:
        assert p is not None
        st = status(p)
        if (st.get("policy") or {}).get("version") == base.get("version"):
            return False  # the plane has not taken the new policy yet
        return _candidate_on(st, canary[0]) or _rolled_back(st)

    return _make(f"config:policy:{kind}",
                 f"the canary cell's requests fail closed (500: {ERROR_TEXT[kind]}), never "
                 "2xx; other cells keep the stable policy and fail nothing",
                 inject, undo, read_visible, read_nacks, unavailable, canary, settled)


def _candidate_on(st: dict[str, Any], cell: str) -> bool:
    """In status ``st``: the spec's policy is assigned to ``cell``, and every subscriber
    has ACKed it."""
    version = (st.get("policy") or {}).get("version")
    assignment = (st.get("policy") or {}).get("assignment") or {}
    on = (assignment.get("cells") or {}).get(cell, assignment.get("default"))
    return bool(version and on == version and _acked(st, BUNDLE_TYPES))


def _rolled_back(st: dict[str, Any]) -> bool:
    """In status ``st``: the spec's policy was the candidate and is already rolled back."""
    rollout = st.get("rollout") or {}
    return bool(rollout.get("state") == "rolled_back"
                and rollout.get("rejected_version") == (st.get("policy") or {}).get("version"))

