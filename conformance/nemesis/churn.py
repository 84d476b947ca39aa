"""Config churn: N spec updates per second that move no tenant and change no decision.

Two kinds of update, written to the spec directory the control plane watches:

- ``resources``: ``sidecar.timeout_ms`` (Envoy's ext_authz / ext_proc timeout) set
  to the original value + 1..16, cycling: every update re-renders both listeners
  and Envoy applies new filter chains, while tenants, cells and decisions stay put
  (a decision takes milliseconds, far below any of these timeouts);
- ``policy``: the first policy source with a changing trailing comment: the source
  digest, and so the bundle version, changes (a new candidate on the canary cell,
  docs/rollout.md) while the policy's meaning does not;
- ``mixed``: the two alternately.

Each update is one atomic rename, and ``applied`` counts the ones that landed. The
control plane debounces its watcher (a change is taken once the directory has been
quiet for 200 ms, and at least every 2 s under continuous edits), so above ~5
updates per second several updates publish as one; ``published()`` counts what the
plane actually published (``a1_config_transitions_total``), which is the figure the
data plane felt. Repair stops the thread and restores every file's exact bytes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from conformance.harness.waiting import poll
from conformance.nemesis.base import Fault, Target
from conformance.nemesis.config.fault import (
    RECOVER,
    SPEC_FILE,
    SavedFiles,
    dump_spec,
    spec_document,
)
from conformance.nemesis.config.plane import metric_sum, no_candidate, plane, serves_spec
from policies.core.errors import one_line

KINDS = ("resources", "policy", "mixed")
MAX_RATE = 100.0  # updates per second
MAX_UPDATES = 100_000  # per run: a forgotten churn stops by itself
TIMEOUT_STEPS = 16  # timeout_ms cycles through original + 1 .. original + 16
MAX_TIMEOUT_MS = 60_000  # the spec's bound


class Churn:
    """A thread writing ``rate_per_s`` spec updates of ``kind`` until ``stop()``.

    ``start()``; ``stop()`` (joins; idempotent); ``restore()`` (the original bytes);
    ``applied`` (updates written); ``errors`` (updates that failed, with ``last_error``);
    ``published()`` (transitions the control plane published since ``start``).
    """

    def __init__(self, target: Target, rate_per_s: float, kind: str = "mixed", *,
                 max_updates: int = MAX_UPDATES) -> None:
        if kind not in KINDS:
            raise ValueError(f"churn: kind must be one of {', '.join(KINDS)}")
        if not 0 < rate_per_s <= MAX_RATE:
            raise ValueError(f"churn: rate_per_s must be in (0, {MAX_RATE:g}]")
        if not 0 < max_updates <= MAX_UPDATES:
            raise ValueError(f"churn: max_updates must be in [1, {MAX_UPDATES}]")
        self.target, self.rate, self.kind, self.max_updates = target, rate_per_s, kind, max_updates
        self.applied = 0
        self.errors = 0
        self.last_error: str | None = None
        self._files = SavedFiles()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base_published = 0.0
        self._spec: dict[str, Any] = {}
        self._policy: tuple[Any, bytes] | None = None
        self._timeout = 500

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Read the originals and start writing (ConfigError if the spec is invalid now)."""
        from control.spec import load_spec

        spec = load_spec(self.target.spec_dir)
        self._spec = spec_document(self.target.spec_dir)
        self._timeout = spec.sidecar.timeout_ms
        first = self.target.spec_dir / next(iter(spec.policy.sources))
        self._policy = (first, first.read_bytes())
        self._base_published = self._transitions()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="a1-churn", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def restore(self) -> None:
        """Every file churn wrote back to its exact original bytes."""
        self._files.restore()

    def published(self) -> int:
        """Transitions the control plane published since ``start`` (0 if unreadable)."""
        return max(0, int(self._transitions() - self._base_published))

    def _transitions(self) -> float:
        with contextlib.suppress(OSError, ValueError, KeyError):
            url = f"{plane(self.target).status_url}/metrics"
            return metric_sum(url, "a1_config_transitions_total")
        return 0.0

    # -- the updates -------------------------------------------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        i = 0
        while i < self.max_updates:
            delay = started + i / self.rate - time.monotonic()
            if self._stop.wait(max(0.0, delay)):
                return
            try:
                self.update(i)
                self.applied += 1
            except (OSError, ValueError) as err:
                self.errors += 1
                self.last_error = one_line(err, 300)
            i += 1

    def update(self, i: int) -> None:
        """Write update number ``i`` (resources on even ``i`` in mixed mode)."""
        kind = self.kind if self.kind != "mixed" else ("resources", "policy")[i % 2]
        if kind == "resources":
            step = i % TIMEOUT_STEPS + 1
            value = self._timeout + step
            if value > MAX_TIMEOUT_MS:
                value = self._timeout - step
            doc = dict(self._spec)
            doc["sidecar"] = {**doc.get("sidecar", {}), "timeout_ms": value}
            self._files.write(self.target.spec_dir / SPEC_FILE, dump_spec(doc))
        else:
            assert self._policy is not None
            path, original = self._policy
            sep = b"" if original.endswith(b"\n") else b"\n"
            self._files.write(path, original + sep + f"# a1 conformance churn {i}\n".encode())


@dataclass(frozen=True)
class ChurnFault(Fault):
    """A ``Fault`` that also holds its ``Churn``; ``observations()`` gives
    ``churn_updates`` (what the plane published) and ``churn_writes`` (what was written)."""

    churn: Churn | None = None

    def observations(self) -> list[tuple[str, Any]]:
        c = self.churn
        assert c is not None
        return [("churn_updates", c.published()), ("churn_writes", c.applied)]


def churn(target: Target, rate_per_s: float, kind: str = "mixed", *,
          max_updates: int = MAX_UPDATES) -> ChurnFault:
    """Config churn as a fault: inject starts the thread; repair stops it, restores the
    original bytes and waits until the plane serves them with no candidate left."""
    c = Churn(target, rate_per_s, kind, max_updates=max_updates)
    names = target.launcher.names()
    unavailable = None if "control" in names else "no control plane process in this stack"

    def repair() -> None:
        c.stop()
        c.restore()
        p = plane(target)
        poll(lambda: serves_spec(p, target.spec_dir) and no_candidate(p), timeout=RECOVER,
             what="the control plane to serve the original spec after churn")

    fault = ChurnFault(name=f"churn:{kind}:{rate_per_s:g}/s", inject=c.start, repair=repair,
                       expect=f"{rate_per_s:g} spec updates/s ({kind}) that move no tenant and "
                              f"change no decision: no request fails, p99 within bound",
                       unavailable=unavailable, churn=c)
    return fault
