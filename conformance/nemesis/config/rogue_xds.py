"""An impostor ADS server: the real xDS server and cache, with a hand-made snapshot.

It stands on the control plane's address while the plane is stopped, and serves the
snapshot the plane would serve for the spec, with the policy bundle made bad. The
real control plane never signs anything but what it compiled, so only an impostor
(a spoofed or compromised control plane, a corrupting path) can put a corrupted or
unsigned bundle in front of the sidecar; the signature exists for exactly that.

Envoy, the relay and the cells get byte-identical resources (rendering is
deterministic), so they see nothing change; only the sidecar has something to
refuse. Built on ``control.xds.server.XdsServer``: what it does with a NACK (never
re-send the version to that stream) is the real server's behaviour.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from control.pipeline.compile import compile_bundle
from control.pipeline.render import render
from control.pipeline.state import initial_state
from control.spec import load_spec
from control.xds.cache import DEFAULT_GROUP, Resource, Snapshot, SnapshotCache, short_type
from control.xds.server import XdsServer
from policies.bundle import load_signing_key
from policies.core.xds.types import POLICY_ASSIGNMENT, POLICY_BUNDLE, PUSH_ORDER, canonical_json

BAD_BUNDLES = ("corrupted", "unsigned")
FLIP_AT = -100  # a byte inside the module (the signature is the last 64 bytes)


def bad_bundle_snapshot(spec_dir: Path, signing_key: Path, kind: str) -> Snapshot:
    """The spec's steady-state snapshot (every cell on the spec's policy), with its
    bundle ``corrupted`` (one module byte flipped: the signature no longer verifies) or
    ``unsigned`` (the bare module, named by its digest, and an assignment naming it).

    Not ``Snapshot.check``ed: the point is a snapshot the real pipeline would refuse
    to build."""
    if kind not in BAD_BUNDLES:
        raise ValueError(f"kind must be one of {', '.join(BAD_BUNDLES)}")
    spec = load_spec(spec_dir)
    version, bundle = compile_bundle(spec.policy, load_signing_key(signing_key),
                                     origin=str(spec_dir))
    good = render(initial_state(spec, version, bundle))
    if kind == "corrupted":
        flipped = bytearray(bundle)
        flipped[FLIP_AT] ^= 0x01
        bad = [Resource.of(POLICY_BUNDLE, version, bytes(flipped))]
    else:
        from policies.compiler import compile_sources

        module = compile_sources(dict(spec.policy.sources), spec.policy.data,
                                 [spec.policy.entrypoint])
        unsigned = hashlib.sha256(module).hexdigest()
        bad = [Resource.of(POLICY_BUNDLE, unsigned, module),
               Resource.of(POLICY_ASSIGNMENT, "assignment",
                           canonical_json({"default": unsigned, "cells": {}}))]
    replaced = {r.type_url for r in bad}
    kept = [r for t in PUSH_ORDER if t not in replaced for r in good.resources(t).values()]
    return Snapshot([*kept, *bad])


class RogueXds:
    """``RogueXds(address, snapshot).start()`` serves ``snapshot`` to every node on
    ``address`` (``unix:/path`` or ``HOST:PORT``); ``stop()``; ``clients()`` in the
    shape of the control plane's status ``clients``; ``nacks(types)``."""

    def __init__(self, address: str, snapshot: Snapshot) -> None:
        host, port = address, 0
        if not address.startswith("unix:"):
            host, _, port_text = address.rpartition(":")
            host, port = host.strip("[]"), int(port_text)
        self.cache = SnapshotCache()
        self.cache.set_snapshot(DEFAULT_GROUP, snapshot)
        self.registry = CollectorRegistry()
        self.server = XdsServer(self.cache, host=host, port=port,
                                node_group=lambda node: DEFAULT_GROUP, registry=self.registry)

    def start(self) -> RogueXds:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=0)

    def clients(self) -> list[dict[str, Any]]:
        """Each stream: node_id, node_cluster, and per subscribed type (short name) its
        acked_version, nacks, last_nack, last_nack_version (as ``a1 status`` shows)."""
        out = []
        for conn in self.server.connections():
            types = {short_type(t): {"acked_version": st.get("acked_version"),
                                     "nacks": st.get("nack_count", 0),
                                     "last_nack": st.get("last_nack") or None,
                                     "last_nack_version": st.get("last_nack_version") or None}
                     for t, st in (conn.get("types") or {}).items()
                     if st.get("wildcard") or st.get("name_count")}
            out.append({"node_id": conn.get("node_id"),
                        "node_cluster": conn.get("node_cluster"), "types": types})
        return out

    def nacks(self, types: tuple[str, ...]) -> int:
        """NACKs received for the short type names ``types`` since start."""
        return int(sum(self.registry.get_sample_value("a1_xds_nacks_total", {"type": t}) or 0
                       for t in types))
