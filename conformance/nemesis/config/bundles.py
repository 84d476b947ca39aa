"""Bundle faults: policy bundles the sidecar must NACK while it keeps the trusted one.

- ``config:bundle:wrongly-signed``: the real control plane restarted with a key
  the sidecar does not trust; the sidecar NACKs the bundles.
- ``config:bundle:corrupted`` / ``:unsigned``: an impostor ADS server on the
  control plane's address; the sidecar NACKs the bundle.

Why an impostor for corrupted and unsigned bundles: the real control plane signs
everything it compiles, so only something else on its address (a compromised or
spoofed control plane, a corrupting path) can serve such a bundle; that is the
threat the signature defends against. Corrupting the sidecar's last-known-good
instead would only test a boot that refuses to start, a data-plane outage.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from conformance.harness.waiting import poll
from conformance.nemesis.base import Target
from conformance.nemesis.config.fault import RECOVER, ConfigFault, Reading, _make, _unavailable
from conformance.nemesis.config.plane import (
    BUNDLE_TYPES,
    Plane,
    _acked,
    client_nacks,
    metric_sum,
    nack_total,
    plane,
    sidecar_metrics_url,
    sidecar_sum,
    status,
    subscriptions,
)


def _sidecar_nack_reading(target: Target, clients: Callable[[], list[dict[str, Any]]],
                          needle: str, who: str, base: dict[str, Any]) -> Reading:
    """Visible when the sidecar's NACK (``needle`` in its text) shows in ``clients`` (a
    status view), with the sidecar's own ``a1_policy_load_failures_total`` beside it."""
    metrics = sidecar_metrics_url(target)

    def read() -> tuple[bool, str]:
        rows = client_nacks(clients(), BUNDLE_TYPES, needle)
        failures = ""
        if metrics:
            with contextlib.suppress(OSError, ValueError):
                n = metric_sum(metrics, "a1_policy_load_failures_total")
                failures = f"; sidecar {metrics} a1_policy_load_failures_total " \
                           f"+{n - base.get('failures', 0):g}"
        return bool(rows), f"{who}: {'; '.join(rows) or 'no NACK'}{failures}"

    return read


def _load_failures(target: Target) -> float:
    return sidecar_sum(sidecar_metrics_url(target), "a1_policy_load_failures_total")


def bundle_wrongly_signed(target: Target) -> ConfigFault:
    """The real control plane restarted with a signing key the sidecar does not trust
    (its own state directory beside the key, so its durable state starts empty).

    Expect: the sidecar NACKs every bundle (``signed by unknown key``) and keeps
    deciding with the trusted policy; repair restarts the plane with its own key."""
    unavailable = _unavailable(target, "control", "sidecar")
    p = None if unavailable else plane(target)
    held: dict[str, Any] = {}

    def inject() -> None:
        from policies.bundle import generate_signing_key

        assert p is not None
        launcher = target.launcher
        original = launcher[p.process].spec
        # In the state directory: the docker runtime's containers see only that.
        keydir = Path(tempfile.mkdtemp(prefix="rogue-key-", dir=target.state_dir))
        key = keydir / "bundle-signing.key"
        generate_signing_key(key)
        argv = [str(a) for a in original.argv]
        argv = [*_without(_without(argv, "--signing-key"), "--state-dir"),
                "--signing-key", str(key), "--state-dir", str(keydir)]
        held.update(original=original, keydir=keydir, failures=_load_failures(target))
        launcher.stop(p.process)
        launcher.start(replace(original, argv=argv))
        launcher.wait_ready([p.process], timeout=RECOVER)

    def clients() -> list[dict[str, Any]]:
        assert p is not None
        return list(status(p).get("clients", []))

    def read_nacks() -> tuple[int, int]:
        assert p is not None  # a fresh process: its counter is this fault's alone
        return nack_total(f"{p.status_url}/metrics", BUNDLE_TYPES), \
            subscriptions(clients(), BUNDLE_TYPES)

    def undo() -> None:
        assert p is not None
        launcher = target.launcher
        launcher.stop(p.process)
        launcher.start(held["original"])
        launcher.wait_ready([p.process], timeout=RECOVER)
        shutil.rmtree(held.pop("keydir"), ignore_errors=True)
        _resynced(p)

    where = "control plane (rogue key) /status clients[a1-sidecar]"
    return _make("config:bundle:wrongly-signed",
                 "the sidecar NACKs bundles signed by an untrusted key and keeps deciding "
                 "with the trusted policy; no request fails",
                 inject, undo,
                 _sidecar_nack_reading(target, clients, "unknown key", where, held),
                 read_nacks, unavailable)


def _without(argv: list[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if not arg.startswith(name + "="):
            out.append(arg)
    return out


def bundle_from_impostor(target: Target, kind: str = "corrupted") -> ConfigFault:
    """An impostor ADS server on the control plane's address (the plane stopped) serving
    the spec's snapshot with its bundle corrupted (one byte of the module flipped) or
    unsigned (the bare module, and an assignment naming it).

    Expect: the sidecar NACKs it and keeps deciding with the signed policy; Envoy and
    the cells get byte-identical config and notice nothing; repair restarts the plane."""
    from conformance.nemesis.config.rogue_xds import BAD_BUNDLES, RogueXds, bad_bundle_snapshot

    if kind not in BAD_BUNDLES:
        raise ValueError(f"bundle_from_impostor: kind must be one of {', '.join(BAD_BUNDLES)}")
    unavailable = _unavailable(target, "control", "sidecar")
    if unavailable is None and getattr(target, "runtime", "process") == "docker":
        unavailable = ("the impostor serves from the suite's own process on the control "
                       "plane's address, which on docker is inside the internal control "
                       "network: process runtime only")
    p = None if unavailable else plane(target)
    held: dict[str, Any] = {}

    def inject() -> None:
        assert p is not None
        snapshot = bad_bundle_snapshot(target.spec_dir, p.signing_key, kind)
        held.update(original=target.launcher[p.process].spec,
                    failures=_load_failures(target))
        target.launcher.stop(p.process)
        held["rogue"] = RogueXds(p.xds_address, snapshot).start()

    def clients() -> list[dict[str, Any]]:
        rogue = held.get("rogue")
        return rogue.clients() if rogue is not None else []

    def read_nacks() -> tuple[int, int]:
        rogue = held.get("rogue")
        if rogue is None:
            return 0, 0
        return rogue.nacks(BUNDLE_TYPES), subscriptions(clients(), BUNDLE_TYPES)

    def undo() -> None:
        assert p is not None
        rogue = held.pop("rogue", None)
        if rogue is not None:
            rogue.stop()
        target.launcher.start(held["original"])
        target.launcher.wait_ready([p.process], timeout=RECOVER)
        _resynced(p)

    needle = "signature" if kind == "corrupted" else "unsigned"
    return _make(f"config:bundle:{kind}",
                 f"the sidecar NACKs a {kind} bundle served by an impostor on the control "
                 "plane's address and keeps deciding with the signed policy; no request fails",
                 inject, undo,
                 _sidecar_nack_reading(target, clients, needle,
                                       "impostor ADS server's view of the sidecar", held),
                 read_nacks, unavailable)


def _resynced(p: Plane) -> None:
    """After a restart of the plane: wait until the sidecar is back and holds its config."""
    poll(lambda: _acked(status(p), BUNDLE_TYPES), timeout=RECOVER, interval=0.1,
         what="the sidecar to resync with the control plane")

