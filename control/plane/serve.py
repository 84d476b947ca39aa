"""``ControlPlane``: the control-plane process, from spec directory to ADS streams.

    spec dir ──watch──▶ load ─▶ compile+sign ─▶ rollout.propose ─▶ PlatformState
        ─▶ topology.transition ─▶ render+check every phase ─▶ Publisher ─▶ SnapshotCache
        ─▶ XdsServer (every node in group "default")          StatusServer (HTTP)

One worker at a time publishes (a lock): the watcher's reloads, the rollout's
timer (scrape sidecars, observe, tick) and the operator's promote/abort. A
change is first rendered and checked whole, every phase of its transition, so
an invalid change never leaves the server: the previous snapshot keeps serving
and the error goes to status, the log and ``a1_config_errors_total``. With a state
directory the rollout's decisions and their bundles are saved before they are
published, and restored at start (``durable``), so a restart resumes a rollout.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from control.pipeline.compile import compile_bundle
from control.pipeline.render import render
from control.pipeline.state import Assignment, PlatformState, initial_state, state_for_spec
from control.pipeline.topology import transition
from control.plane.durable import PlaneStore
from control.plane.publisher import ACK_TIMEOUT, DRAIN, Publisher, PublishResult
from control.plane.status import ActionRefused, StatusServer
from control.plane.watch import SpecWatcher
from control.rollout import RolloutController, Scraper, metrics_targets
from control.spec import PlatformSpec, load_spec
from control.xds.cache import DEFAULT_GROUP, Snapshot, SnapshotCache, short_type
from control.xds.server import XdsServer
from policies.bundle import load_signing_key
from policies.core.errors import ConfigError, UserError, one_line
from policies.core.xds.types import SIDECAR_CLUSTER

log = logging.getLogger("a1.control")

ROLLOUT_INTERVAL = 1.0  # seconds between rollout observe/tick rounds
RETRY_INTERVAL = 5.0  # seconds between retries of a transition that stopped part way

_FIELD = r"(?:(?P<field>[A-Za-z_][\w-]*(?:\[\d+\]|\.[\w-]+)*): )?"
_AT_POSITION = re.compile(r"(?:^|: )(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): " + _FIELD)
_AT_FILE = re.compile(r"^(?P<file>[^\s:]+): " + _FIELD)


def every_node_default(node: Any) -> str:
    """One snapshot serves every node: each client subscribes only to the types it needs."""
    return DEFAULT_GROUP


@dataclass(frozen=True)
class PlaneOptions:
    config: Path
    signing_key: Path
    state_dir: Path | None = None  # None: nothing survives a restart (the rollout restarts)
    host: str = "127.0.0.1"
    xds_port: int = 18000
    status_host: str = "127.0.0.1"
    status_port: int = 18001
    ack_timeout: float = ACK_TIMEOUT
    drain: float = DRAIN
    rollout_interval: float = ROLLOUT_INTERVAL
    # Hosts beyond loopback whose /metrics the rollout scraper may fetch (sidecars in
    # containers announce their address on the control network).
    scrape_hosts: tuple[str, ...] = ()
    watch_poll: float = 0.05
    watch_quiet: float = 0.2
    watch_max_delay: float = 2.0


def error_record(err: BaseException, at: float) -> dict[str, Any]:
    """A refusal for status: the one-line message, and its file, position and field
    when the message starts with them (``file:line:col: field: ...``)."""
    message = one_line(err, 2000)
    out: dict[str, Any] = {"message": message, "at": at,
                           "at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                           "file": None, "line": None, "column": None, "field": None}
    m = _AT_POSITION.search(message)
    if m:
        out.update(file=m["file"], line=int(m["line"]), column=int(m["col"]), field=m["field"])
    elif m := _AT_FILE.match(message):
        out.update(file=m["file"], field=m["field"])
    return out


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter("a1_config_errors_total",
                              "Spec changes refused (invalid spec, policy or snapshot)",
                              registry=registry)
        self.version = Gauge("a1_config_version",
                             "The published config (info): spec digest and default policy "
                             "bundle version", ["version", "policy"], registry=registry)
        self.transitions = Counter("a1_config_transitions_total",
                                   "Transitions published, by result (ok, stopped)",
                                   ["result"], registry=registry)

    def published(self, spec_digest: str, policy: str) -> None:
        self.version.clear()
        self.version.labels(spec_digest, policy).set(1)


class ControlPlane:
    """``start()`` (ConfigError if the spec is invalid), ``reload()``, ``status()``,
    ``promote()``, ``abort()``, ``stop()``; ports are 0 for any free one."""

    def __init__(self, options: PlaneOptions, registry: CollectorRegistry | None = None) -> None:
        self.options = options
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = _Metrics(self.registry)
        self.cache = SnapshotCache()
        self.server = XdsServer(self.cache, port=options.xds_port, host=options.host,
                                node_group=every_node_default, registry=self.registry)
        self.publisher = Publisher(self.cache, self.server, ack_timeout=options.ack_timeout,
                                   drain=options.drain)
        self.status_server = StatusServer(
            self.status, self.registry, {"promote": self.promote, "abort": self.abort},
            host=options.status_host, port=options.status_port)
        self.watcher = SpecWatcher(options.config, self.reload, poll=options.watch_poll,
                                   quiet=options.watch_quiet,
                                   max_delay=options.watch_max_delay)
        self._key = None
        self._durable: PlaneStore | None = None
        self._restored_bundles: dict[str, bytes] = {}  # the pool of the first state only
        self._restore: dict[str, Any] | None = None
        self._saved_at: float | None = None
        self._save_error: str | None = None
        self._lock = threading.RLock()  # one publisher at a time
        self._stop = threading.Event()
        self._rollout_thread: threading.Thread | None = None
        self._spec: PlatformSpec | None = None
        self._state: PlatformState | None = None  # published last (a phase, if stopped)
        self._bundle: tuple[str, bytes] | None = None  # the spec's policy, compiled
        self._rollout: RolloutController | None = None
        self._scraper = Scraper(self._scrape_targets, self._on_samples,
                                interval=options.rollout_interval)
        self._last_error: dict[str, Any] | None = None
        self._last_transition: dict[str, Any] | None = None
        self._published_at: float | None = None
        self._loaded_at: float | None = None
        self._errors = 0
        self._reloads = 0
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load, compile, publish; then serve ADS and status, watch, and run the rollout.

        An invalid spec raises ConfigError before anything is bound."""
        self._key = load_signing_key(self.options.signing_key)
        if self.options.state_dir is not None:
            self._durable = PlaneStore(self.options.state_dir, self._key)
        with self._lock:
            spec = load_spec(self.options.config)
            self._apply(spec, initial=True)
        self._bind("ADS", self.options.host, self.options.xds_port, self.server.start)
        try:
            self._bind("status", self.options.status_host, self.options.status_port,
                       self.status_server.start)
        except BaseException:
            self.server.stop()
            raise
        self._started = True
        self.watcher.start()
        self._scraper.start()
        self._rollout_thread = threading.Thread(target=self._rollout_loop,
                                                name="a1-control-rollout", daemon=True)
        self._rollout_thread.start()

    @staticmethod
    def _bind(what: str, host: str, port: int, start: Any) -> None:
        try:
            start()
        except (OSError, RuntimeError) as err:
            reason = getattr(err, "strerror", None) or one_line(err)
            where = (host if host.startswith("unix:")
                     else f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            raise UserError(f"control: cannot serve {what} on {where}: {reason}") from None

    def stop(self) -> None:
        self._stop.set()
        self.watcher.stop()
        self._scraper.stop()
        if self._rollout_thread is not None:
            self._rollout_thread.join(10)
            self._rollout_thread = None
        self.status_server.stop()
        self.server.stop()  # a no-op if it never started

    @property
    def xds_port(self) -> int:
        return self.server.port

    @property
    def xds_address(self) -> str:
        return self.server.address

    @property
    def status_url(self) -> str:
        return self.status_server.url

    @property
    def spec_digest(self) -> str:
        return self._spec.digest if self._spec else ""

    # -- the pipeline ------------------------------------------------------------------------

    def reload(self) -> bool:
        """Read the spec directory and publish it if valid; False (and status) if refused."""
        with self._lock:
            self._reloads += 1
            try:
                spec = load_spec(self.options.config)
                if (self._spec is not None and spec.digest == self._spec.digest
                        and not self.transition_stopped()):
                    # Touched, not changed (a stopped transition is retried); or reverted
                    # to what serves, so a refusal of the reverted edit no longer applies.
                    self._last_error = None
                    return True
                self._apply(spec)
                return True
            except ConfigError as err:
                self._refuse(err)
                return False
            except Exception as err:  # a bug must not stop the watcher, nor serve garbage
                log.error("control: unexpected failure building the snapshot: %s", one_line(err))
                self._refuse(err)
                return False

    def _refuse(self, err: BaseException) -> None:
        self._errors += 1
        self.metrics.errors.inc()
        self._last_error = error_record(err, time.time())
        log.error("control: change refused, the previous config keeps serving: %s",
                  self._last_error["message"])

    def _apply(self, spec: PlatformSpec, *, initial: bool = False,
               assignment: Assignment | None = None) -> PublishResult:
        """Compile, assign, render and check every phase, then publish (under the lock).

        ``assignment`` given: a rollout step on the current spec; else the spec is new
        and its policy is proposed to the rollout controller."""
        bundle = self._compile(spec)
        if assignment is None:
            assignment = self._assign(spec, bundle[0])
        previous = self._state
        if previous is None and self._restored_bundles:  # restored versions join the pool
            seed = initial_state(spec, *bundle)
            previous = replace(seed, bundles={**self._restored_bundles, **seed.bundles})
        desired = state_for_spec(spec, previous, bundle, assignment)
        phases = [desired] if self._state is None else transition(self._state, desired)
        snapshots: list[Snapshot] = [render(p) for p in phases]  # ConfigError: nothing sent
        self._persist(desired.bundles)  # before it is acted on: a rollback must survive a crash
        result = self.publisher.publish(snapshots)
        self._spec, self._loaded_at = spec, time.time()
        if result.done:
            self._state = phases[result.done - 1]
            self._published_at = time.time()
        self._last_transition = {"digest": spec.digest, "phases": result.phases,
                                 "done": result.done, "error": result.error,
                                 "nacked": result.nacked, "at": time.time()}
        self.metrics.transitions.labels("ok" if result.ok else "stopped").inc()
        if self._state is not None:
            self.metrics.published(spec.digest, self._state.assignment.default)
        self._last_error = None  # status shows what serves now; the log and metric keep history
        log.info("control: published spec %s (policy %s) in %d of %d phase(s)%s",
                 spec.digest[:12], bundle[0][:12], result.done, result.phases,
                 f"; stopped: {result.error}" if result.error else "")
        return result

    def _compile(self, spec: PlatformSpec) -> tuple[str, bytes]:
        """The spec's policy as (version, signed bundle); the pipeline memoises by content."""
        assert self._key is not None
        self._bundle = compile_bundle(spec.policy, self._key, origin=str(self.options.config))
        return self._bundle

    def _assign(self, spec: PlatformSpec, version: str) -> Assignment:
        """The rollout controller's assignment for a new spec whose policy is ``version``."""
        if self._rollout is None:
            self._rollout = RolloutController(spec.rollout, spec.cell_names,
                                              registry=self.registry)
            self._restore_into(self._rollout, version)
        else:
            self._rollout.configure(spec.rollout, spec.cell_names)
        return self._rollout.propose(version)

    # -- durable state -------------------------------------------------------------------------

    def _restore_into(self, rollout: RolloutController, version: str) -> None:
        """Before the first ``propose``: the saved rollout, or the safe fallback (one line
        in the log and in status): the stable version everywhere if only the candidate's
        bundle is refused, else nothing restored and the spec's policy everywhere."""
        if self._durable is None:
            return
        assert self._bundle is not None
        where = self._durable.directory
        found = self._durable.load({version: self._bundle[1]})
        outcome, error, data = found.outcome, found.error, found.rollout
        if data is not None:
            try:
                rollout.restore(data)
                self._restored_bundles = dict(found.bundles)
            except ValueError as err:
                outcome, error, data = "spec", f"{where}: {one_line(err)}", None
        self._restore = {"outcome": outcome, "error": error, "at": time.time(),
                         "stable": data.get("stable") if data else None,
                         "candidate": data.get("candidate") if data else None,
                         "rejected": data.get("rejected") if data else None}
        if outcome == "restored":
            log.info("control: restored the rollout from %s: stable %s, candidate %s, "
                     "refused %s", where, *(str(self._restore[k])[:12]
                                            for k in ("stable", "candidate", "rejected")))
        elif outcome == "stable":
            log.error("control: rollout state in %s: %s; the stable version %s serves every "
                      "cell", where, error, str(self._restore["stable"])[:12])
        elif outcome == "spec":
            log.error("control: rollout state in %s refused: %s; the spec's policy %s serves "
                      "every cell", where, error, version[:12])

    def _persist(self, bundles: Mapping[str, bytes]) -> None:
        """Save the controller's decision and the bundles it assigns, if they changed. A
        failure is logged and shown; publishing goes on (a rollback must not wait)."""
        if self._durable is None or self._rollout is None:
            return
        try:
            if self._durable.save(self._rollout.export(), bundles):
                self._saved_at, self._save_error = time.time(), None
        except (ConfigError, OSError) as err:
            self._save_error = one_line(err)
            log.error("control: cannot save the rollout state in %s: %s",
                      self._durable.directory, self._save_error)

    # -- rollout -----------------------------------------------------------------------------

    def transition_stopped(self) -> bool:
        """The last transition stopped part way because ACKs did not come in time (a
        NACKed one waits for a config change instead)."""
        last = self._last_transition
        return bool(last and last.get("error") and not last.get("nacked"))

    def _rollout_loop(self) -> None:
        """Let time pass for the rollout: a soak that lasted long enough promotes; and
        retry, every ``RETRY_INTERVAL``, a transition that stopped part way, from the
        phase it reached (a reconnected client, or a fixed one, lets it finish)."""
        retry_at = 0.0
        while not self._stop.wait(self.options.rollout_interval):
            if self.transition_stopped() and time.monotonic() >= retry_at:
                retry_at = time.monotonic() + RETRY_INTERVAL
                self.reload()
            try:
                with self._lock:
                    if self._rollout is not None and self._rollout.tick() is not None:
                        self._publish_assignment()
            except Exception as err:  # keep ticking; the error is in the log
                log.error("control: rollout tick failed: %s", one_line(err))

    def _scrape_targets(self) -> list[str]:
        """Only sidecars' streams, and only their node metadata: ``connections()`` would
        build every stream's per-type status each round."""
        if not self._started:
            return []
        return metrics_targets(self.server.nodes(SIDECAR_CLUSTER), self.options.scrape_hosts)

    def _on_samples(self, samples: list[Any]) -> None:
        """The scraper's round (on its thread): a breach rolls back within this call."""
        with self._lock:
            if self._rollout is not None and self._rollout.observe(samples) is not None:
                self._publish_assignment()

    def _publish_assignment(self) -> None:
        """Publish the controller's current assignment on the current spec, if it moved."""
        if self._rollout is None or self._spec is None or self._state is None:
            return
        assignment = self._rollout.assignment()
        if assignment is None or assignment == self._state.assignment:
            return
        try:
            self._apply(self._spec, assignment=assignment)
        except ConfigError as err:
            self._refuse(err)

    def promote(self) -> dict[str, Any]:
        return self._action("promote")

    def abort(self) -> dict[str, Any]:
        return self._action("abort")

    def _action(self, name: str) -> dict[str, Any]:
        with self._lock:
            if self._rollout is None:
                raise ActionRefused("the control plane is starting: no rollout yet")
            try:
                getattr(self._rollout, name)()
            except UserError as err:
                raise ActionRefused(one_line(err)) from None
            self._publish_assignment()
            return {"action": name, "rollout": self._rollout.status()}

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The status document (docs/control-plane.md, ## Status).

        Never takes the publish lock: a transition holds it while it waits for ACKs
        and drains, which is exactly when an operator asks for status. Every field
        read here is replaced whole by the publisher (one reference store each), and
        the rollout controller guards its own state.
        """
        snapshot = self.cache.snapshot(DEFAULT_GROUP)
        versions: Mapping[str, str] = snapshot.versions() if snapshot else {}
        spec, state, bundle = self._spec, self._state, self._bundle
        doc: dict[str, Any] = {
            "xds": {"address": self.xds_address, "clients": 0},
            "spec": {"directory": str(self.options.config),
                     "digest": spec.digest if spec else None,
                     "region": spec.region if spec else None,
                     "cells": list(spec.cell_names) if spec else [],
                     "loaded_at": self._loaded_at},
            "policy": {"version": bundle[0] if bundle else None,
                       "assignment": _assignment_doc(state.assignment) if state else None},
            "snapshot": {"versions": {short_type(t): v for t, v in versions.items()},
                         "size_bytes": snapshot.size_bytes() if snapshot else 0,
                         "published_at": self._published_at},
            "last_error": self._last_error,
            "config_errors": self._errors,
            "transition": self.publisher.progress(),
            "last_transition": self._last_transition,
            "rollout": self._rollout.status() if self._rollout is not None else None,
            "scrape": self._scraper.status(),
            "durable": {"directory": str(self.options.state_dir)
                        if self.options.state_dir else None,
                        "restore": dict(self._restore) if self._restore else None,
                        "saved_at": self._saved_at, "save_error": self._save_error},
        }
        clients = [_client_doc(c) for c in self.server.connections()] if self._started else []
        doc["clients"] = clients
        doc["xds"]["clients"] = len(clients)
        return doc


def _assignment_doc(assignment: Any) -> dict[str, Any]:
    return {"default": assignment.default, "cells": dict(assignment.cells)}


def _client_doc(conn: Mapping[str, Any]) -> dict[str, Any]:
    types = {}
    for type_url, st in (conn.get("types") or {}).items():
        if not (st.get("wildcard") or st.get("name_count")):
            continue
        types[short_type(type_url)] = {
            "acked_version": st.get("acked_version"),
            "sent_version": st.get("sent_version"),
            "pending": st.get("pending"),
            "nacks": st.get("nack_count", 0),
            "last_nack": st.get("last_nack") or None,
            "last_nack_version": st.get("last_nack_version") or None,
            "names": st.get("names") if not st.get("wildcard") else "*",
        }
    return {"node_id": conn.get("node_id"), "node_cluster": conn.get("node_cluster"),
            "protocol": conn.get("protocol"), "peer": conn.get("peer"),
            "connected_at": conn.get("connected_at"), "types": types}
