"""State-of-the-World ADS (StreamAggregatedResources): one stream's protocol state.

Subscriptions follow the spec's wildcard rules: a type whose requests have never
named a resource is a (legacy) wildcard subscription; once a name is given,
only ``*`` means wildcard and an empty list means "nothing". Every response
carries the whole subscribed set that exists (full state, as LDS and CDS
require), its ``version_info`` is the snapshot's version of that type, and a
request with a stale nonce is ignored entirely, as the spec says.
"""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from control.xds.cache import Resource, Snapshot
from control.xds.stream import WILDCARD, ProtocolStream, Response, TypeState
from policies.core.xds.types import RESOURCE_WRAPPER, is_a1_type


def pack(resource: Resource) -> any_pb2.Any:
    """Envoy types as plain Any; A1 types wrapped in a discovery Resource to carry a name."""
    inner = any_pb2.Any(type_url=resource.type_url, value=resource.value)
    if not is_a1_type(resource.type_url):
        return inner
    wrapped = discovery_pb2.Resource(name=resource.name, version=resource.version, resource=inner)
    return any_pb2.Any(type_url=RESOURCE_WRAPPER, value=wrapped.SerializeToString())


def encode_body(snapshot: Snapshot, type_url: str, names: frozenset[str]) -> bytes:
    """The response for ``names`` of ``type_url`` without its nonce: what every stream with
    that subscription shares. Its fields (1, 2, 4) all precede ``nonce`` (5), so the body
    followed by the nonce's field is, byte for byte, the whole response serialized."""
    have = snapshot.resources(type_url)
    return discovery_pb2.DiscoveryResponse(
        version_info=snapshot.version(type_url),
        type_url=type_url,
        resources=[pack(have[n]) for n in sorted(names)],
    ).SerializeToString()


class SotwStream(ProtocolStream):
    kind = "sotw"
    response_type = discovery_pb2.DiscoveryResponse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent_names: dict[str, frozenset[str]] = {}
        self.acked_names: dict[str, frozenset[str]] = {}

    def on_request(self, req: discovery_pb2.DiscoveryRequest, snapshot: Snapshot | None) -> None:
        found = self.type_state(req)
        if found is None:
            return
        st, first = found
        nonce = req.response_nonce
        if st.sent_nonce and nonce and nonce != st.sent_nonce:
            st.stale += 1  # an answer to a response that has been superseded: ignore it
            return
        if nonce:
            self.ack_or_nack(st, nonce, req.error_detail if req.HasField("error_detail") else None)
        names = set(req.resource_names)
        if names:
            st.explicit = True
        st.wildcard = WILDCARD in names or (not st.explicit and not names)
        st.names = names - {WILDCARD}
        self.check_names()
        if first and req.version_info and snapshot is not None and st.wildcard:
            self._resume(st, req.version_info, snapshot)

    def _resume(self, st: TypeState, version: str, snapshot: Snapshot) -> None:
        """A reconnecting wildcard client that holds the current version needs no push.

        Versions are content hashes of the whole type, so equal versions mean the
        client holds exactly these resources, whichever replica sent them.
        """
        if version == snapshot.version(st.type_url):
            st.sent_version = st.acked_version = version
            self.sent_names[st.type_url] = snapshot.names(st.type_url)
            self.acked_names[st.type_url] = self.sent_names[st.type_url]

    def on_ack(self, st: TypeState) -> None:
        self.acked_names[st.type_url] = self.sent_names.get(st.type_url, frozenset())

    def on_nack(self, st: TypeState) -> None:
        """A NACK leaves the client on what it ACKed last: compare the next snapshot with
        that, so a snapshot that returns to it is not sent again."""
        st.sent_version = st.acked_version
        if st.type_url in self.acked_names:
            self.sent_names[st.type_url] = self.acked_names[st.type_url]
        else:
            self.sent_names.pop(st.type_url, None)

    def build(self, st: TypeState, snapshot: Snapshot) -> Response | None:
        type_url = st.type_url
        chosen = snapshot.names(type_url)
        if not st.wildcard:
            chosen = chosen & st.names
        current = st.sent_version == snapshot.version(type_url)
        if current and self.sent_names.get(type_url) == chosen:
            return None
        self.sent_names[type_url] = chosen
        st.sent_nonce = nonce = self.nonce()
        body = snapshot.memo(type_url, chosen, lambda: encode_body(snapshot, type_url, chosen))
        tail = discovery_pb2.DiscoveryResponse(nonce=nonce).SerializeToString()
        return Response(type_url, nonce, body + tail)
