"""Every scenario, by invariant, and the profiles that play them.

``quick`` plays one scenario per invariant, plus a real partition when root (CI
runs it; about 5 minutes on two cores); ``full`` adds the variants of each fault
(blackholes, refused and slow links, a locked store, every config fault). Ids are
``I-<n>/<fault>``; ``--only I-3,I-5`` selects by invariant.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from conformance.harness.stacks import control_status, metric, published
from conformance.harness.target import Target
from conformance.harness.waiting import poll
from conformance.load import Mix
from conformance.nemesis import config as config_faults
from conformance.nemesis import process
from conformance.nemesis.base import Fault, combine
from conformance.nemesis.churn import churn
from conformance.nemesis.netns import partition
from conformance.nemesis.network import cut_cell, cut_control
from conformance.nemesis.proxy.faults import down, toxic
from conformance.runner import Run
from conformance.scenarios.base import Scenario, Windows
from conformance.scenarios.cells import add_cell
from conformance.scenarios.policies import DENY_ALL, benign_edit, swap_policy
from conformance.variants.store import store_fault
from ext_proc.defaults import LOG_QUEUE_BYTES

PROFILES = ("quick", "full", "docker-ci")
# Profiles that are a named list of scenarios rather than a tag on each. docker-ci: the
# fault kinds of the docker runtime in CI's budget (docs/conformance.md, Docker
# runtime): a kill, a pause, a network cut, a proxy toxic, and fail-closed.
SUBSETS = {"docker-ci": ("I-1/blackhole-xds", "I-3/pause-non-data-plane", "I-5/kill-cell",
                         "I-5/partition-cell", "I-6/kill-sidecar")}


def _last_cell(run: Run) -> str:
    """The victim: the last cell, never the rollout's canary (the first)."""
    return run.target.cell_names[-1]


def _canary(run: Run) -> str:
    order = (control_status(run.target).get("rollout") or {}).get("order") or []
    return str(order[0]) if order else run.target.cell_names[0]


def _resync(run: Run) -> None:
    """After the control plane returns: seconds until every xDS client is connected again."""
    t0 = time.monotonic()
    expected = 2 + len(run.target.cell_names)  # the relay (Envoy), the sidecar, each cell
    poll(lambda: control_status(run.target)["xds"]["clients"] >= expected, timeout=60,
         interval=0.1, what="every xDS client to reconnect")
    poll(lambda: published(run.target), timeout=60, interval=0.1, what="the spec published")
    run.observe(run.load.scenario, "resync_s", round(time.monotonic() - t0, 3))


def _docker(run: Run) -> bool:
    return getattr(run.target, "runtime", "process") == "docker"


def _partition_cell(run: Run) -> Fault:
    """A cell cut off Envoy: a network-namespace partition on the process runtime, the
    cell's container disconnected from its network on docker."""
    if _docker(run):
        return cut_cell(run.target, _last_cell(run))
    return partition(run.target, f"envoy-{run.target.target_options.netns_cell}")


def _both_ways(run: Run, links: tuple[str, ...], kind: str, **attrs: int) -> Fault:
    """``kind`` on each link, in both directions, as one fault."""
    faults = [toxic(run.target, link, kind, direction=d, **attrs)
              for link in links for d in ("upstream", "downstream")]
    return combine(f"toxic:{'+'.join(links)}:{kind}", faults, faults[0].expect)


def _metric(name: str) -> Callable[[Run], object]:
    return lambda run: metric(run.target, name, absent=None)


TELEMETRY = {"sidecar_rss_bytes": _metric("process_resident_memory_bytes"),
             "decision_log_queue_bytes": _metric("a1_decision_log_queue_bytes")}


def _record_log_bound(run: Run) -> None:
    settings = run.target.sidecar_settings()["decision_log"]
    run.observe(run.load.scenario, "decision_log_max_bytes",
                int(settings.get("max_bytes") or LOG_QUEUE_BYTES))


CONFIG_FAULTS: dict[str, Callable[[Target], Fault]] = {
    "invalid-spec": lambda t: config_faults.invalid_spec(t, "syntax"),
    "schema-error": lambda t: config_faults.invalid_spec(t, "schema"),
    "envoy-nack": config_faults.envoy_nack,
    "wrong-signature": config_faults.bundle_wrongly_signed,
    "corrupted-bundle": lambda t: config_faults.bundle_from_impostor(t, "corrupted"),
    "unsigned-bundle": lambda t: config_faults.bundle_from_impostor(t, "unsigned"),
    "fuel-policy": lambda t: config_faults.policy_trap(t, "fuel"),
    "memory-policy": lambda t: config_faults.policy_trap(t, "memory"),
}
QUICK_CONFIG = ("invalid-spec", "envoy-nack", "wrong-signature", "fuel-policy")


def _config(kind: str) -> Scenario:
    build = CONFIG_FAULTS[kind]
    return Scenario(
        f"I-8/{kind}", f"bad config ({kind}) is rejected and the old config serves",
        lambda run: build(run.target),
        profiles=("quick", "full") if kind in QUICK_CONFIG else ("full",))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("I-1/kill-control", "control plane killed: the data plane serves on LKG",
             lambda run: process.kill(run.target, "control"), after_repair=_resync),
    Scenario("I-1/blackhole-xds", "xDS links blackholed: the data plane serves on LKG",
             lambda run: _both_ways(run, ("envoy-xds", "sidecar-xds"), "blackhole"),
             after_repair=_resync, profiles=("full",)),
    Scenario("I-1/xds-down", "xDS links down (refused): the data plane serves on LKG",
             lambda run: combine("down:envoy-xds+sidecar-xds",
                                 [down(run.target, "envoy-xds"), down(run.target, "sidecar-xds")],
                                 "the data plane serves on last-known-good and re-syncs"),
             after_repair=_resync, profiles=("full",)),
    Scenario("I-1/cut-control",
             "control plane cut off its network (docker): the data plane serves on LKG",
             lambda run: cut_control(run.target), after_repair=_resync, profiles=("full",)),
    Scenario("I-2/pause-policy-source",
             "policy source (the control plane) paused: decisions continue, no slower",
             lambda run: process.pause(run.target, "control")),
    Scenario("I-3/pause-non-data-plane",
             "every non-data-plane process paused: latency unchanged",
             lambda run: process.pause(run.target, "control", "sink")),
    Scenario("I-4/churn", "config churn: p99 within bound, no request fails",
             lambda run: churn(run.target, rate_per_s=2.0, kind="mixed"),
             windows=Windows(fault=10.0)),
    Scenario("I-5/kill-cell", "one cell killed: only its tenants see errors",
             lambda run: process.kill(run.target, _last_cell(run)),
             victim_cell=_last_cell),
    Scenario("I-5/lock-store", "a cell's store locked: only its tenants' writes fail",
             lambda run: store_fault(run.target, _last_cell(run)),
             victim_cell=_last_cell, profiles=("full",)),
    Scenario("I-5/partition-cell",
             "one cell cut off by a network partition: only its tenants see errors",
             _partition_cell,
             victim_cell=lambda run: run.target.target_options.netns_cell or _last_cell(run)),
    Scenario("I-6/kill-sidecar", "sidecar killed: deny or 503, never a success",
             lambda run: process.kill(run.target, "sidecar"), no_decisions=True),
    Scenario("I-7/sink-down", "telemetry sink paused: latency and memory unchanged",
             lambda run: process.pause(run.target, "sink"),
             after_inject=_record_log_bound, sample=TELEMETRY),
    Scenario("I-7/sink-slow", "telemetry link slowed: latency and memory unchanged",
             lambda run: _both_ways(run, ("sidecar-sink",), "latency", latency=2000, jitter=500),
             after_inject=_record_log_bound, sample=TELEMETRY,
             profiles=("full",)),
    *(_config(kind) for kind in CONFIG_FAULTS),
    # No writes: a cell added moves tenants to an empty cell (cells do not migrate data;
    # docs/conformance.md), so writes there would be lost when the repair removes it.
    # No misroutes: while a table changes, a moved tenant's old cell rightly accepts it
    # until the change is drained, so "foreign" is not yet defined (I-5 judges misroutes).
    Scenario("I-9/add-cell", "a cell added: about 1/(N+1) of tenants move, all to it",
             add_cell, windows=Windows(fault=6.0),
             mix=Mix(read=0.95, write=0.0, probe=0.05, misroute=0.0)),
    Scenario("I-10/propagation", "a new policy version reaches every sidecar in bound",
             lambda run: swap_policy(run, benign_edit(run), measure=True),
             windows=Windows(fault=4.0, recovery=60.0)),
    Scenario("I-10/rollback", "a breaching canary is rolled back by itself",
             lambda run: swap_policy(run, DENY_ALL, rollback=True),
             victim_cell=_canary,
             windows=Windows(fault=2.0, recovery=60.0)),
)


def select(profile: str, only: set[str] | None = None) -> list[Scenario]:
    """The scenarios a profile plays, optionally only these invariants (``I-3``)."""
    subset = SUBSETS.get(profile)
    return [s for s in SCENARIOS
            if (s.id in subset if subset is not None else profile in s.profiles)
            and (not only or s.invariant in only or s.id in only)]

