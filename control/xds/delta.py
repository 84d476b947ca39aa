"""Incremental ADS (DeltaAggregatedResources): one stream's protocol state.

The server keeps, per type, what the client holds (``have``: name -> version),
seeded from ``initial_resource_versions`` on the first request of a type, so a
reconnecting client is sent only what changed and told what was removed. A
response's diff moves into ``have`` only when it is ACKed. Subscription changes
are deltas, so unlike SotW they are applied even when the nonce is stale; only
the ACK/NACK reading of a stale nonce is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from control.xds.cache import Snapshot
from control.xds.limits import StreamLimitError
from control.xds.stream import WILDCARD, ProtocolStream, Response, TypeState


@dataclass
class _Client:
    """The client's resources as the server knows them, and the diff awaiting its ACK."""

    have: dict[str, str] = field(default_factory=dict)
    told_absent: set[str] = field(default_factory=set)
    updates: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    answered: bool = False  # a response (even an empty one) has been sent


class DeltaStream(ProtocolStream):
    kind = "delta"
    response_type = discovery_pb2.DeltaDiscoveryResponse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients: dict[str, _Client] = {}

    def on_request(
        self, req: discovery_pb2.DeltaDiscoveryRequest, snapshot: Snapshot | None
    ) -> None:
        found = self.type_state(req)
        if found is None:
            return
        st, first = found
        if first:
            client = self.clients[req.type_url] = _Client()
            if len(req.initial_resource_versions) > self.limits.max_names:
                raise StreamLimitError(
                    f"sends {len(req.initial_resource_versions)} initial_resource_versions; "
                    f"the limit is {self.limits.max_names}"
                )
            client.have = dict(req.initial_resource_versions)
            client.answered = bool(client.have)
        client = self.clients[req.type_url]
        nonce = req.response_nonce
        if nonce and st.pending and nonce == st.sent_nonce:
            self.ack_or_nack(st, nonce, req.error_detail if req.HasField("error_detail") else None)
        elif nonce and nonce != st.sent_nonce:
            st.stale += 1
        subscribe = set(req.resource_names_subscribe)
        unsubscribe = set(req.resource_names_unsubscribe)
        if first and not subscribe:
            st.wildcard = True  # legacy wildcard: the first request names nothing
        if WILDCARD in subscribe:
            st.wildcard = True
        if WILDCARD in unsubscribe:
            st.wildcard = False
        st.names |= subscribe - {WILDCARD}
        st.names -= unsubscribe
        for name in unsubscribe:
            client.told_absent.discard(name)
            if not st.wildcard:
                client.have.pop(name, None)  # the client forgets it; no removal owed
        self.check_names()

    def on_ack(self, st: TypeState) -> None:
        client = self.clients[st.type_url]
        # A name unsubscribed while the response was in flight is dropped by the client.
        kept = {n: v for n, v in client.updates.items() if st.wildcard or n in st.names}
        client.have.update(kept)
        client.told_absent -= kept.keys()
        for name in client.removed:
            client.have.pop(name, None)
            if name in st.names:  # bounded by the subscription, not by churn
                client.told_absent.add(name)
        client.updates, client.removed = {}, []

    def on_nack(self, st: TypeState) -> None:
        client = self.clients[st.type_url]
        client.updates, client.removed = {}, []

    def build(self, st: TypeState, snapshot: Snapshot) -> Response | None:
        client = self.clients[st.type_url]
        resources = snapshot.resources(st.type_url)
        wanted = set(resources) if st.wildcard else set()
        wanted |= st.names & set(resources)
        updates = {n: resources[n].version for n in sorted(wanted)
                   if client.have.get(n) != resources[n].version}
        removed = sorted(
            {n for n in client.have if n not in wanted}
            | {n for n in st.names - set(resources) if n not in client.told_absent}
        )
        version = snapshot.version(st.type_url)
        if not updates and not removed and client.answered:
            st.acked_version = version  # the client already holds this version
            return None
        if len(removed) > self.limits.max_names:
            raise StreamLimitError(f"would remove {len(removed)} names")
        client.updates, client.removed, client.answered = updates, removed, True
        st.sent_nonce = self.nonce()
        message = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=st.type_url,
            nonce=st.sent_nonce,
            resources=[
                discovery_pb2.Resource(
                    name=n,
                    version=v,
                    resource=any_pb2.Any(type_url=st.type_url, value=resources[n].value),
                )
                for n, v in updates.items()
            ],
            removed_resources=removed,
        )
        return Response(st.type_url, st.sent_nonce, message.SerializeToString())
