"""What SotW and Delta streams share: per-type state, NACK memory and ordered pushes.

One ``ProtocolStream`` per gRPC stream, driven by the server with
``on_request(request)`` and ``next_response(snapshot)``; it does no I/O, so the
protocol rules are testable without a network. The rules (docs/xds-protocol.md):

- a request whose ``response_nonce`` is the last nonce sent for its type is an
  ACK, or a NACK when it carries ``error_detail``; neither gets a response of its
  own;
- a NACKed version of a type is never sent again on this stream until the
  snapshot's version of that type changes;
- pushes go in ``PUSH_ORDER``, and a type is sent only when every subscribed type
  it waits for (``WAITS_FOR``: listeners and routes wait for clusters, listeners
  for secrets, an assignment for bundles and tables) holds the current
  snapshot's version, ACKed; a NACK holds back what waits for that type until it
  changes. Endpoints and secrets wait for nothing, because Envoy warms clusters
  and listeners with them and ACKs the clusters only once they are warm. At most
  one response per type is outstanding.

Responses come out encoded (``Response.data``), and the server writes those bytes
as they are: a SotW response is a body shared through the snapshot's memo by every
stream with the same subscription, plus this stream's nonce.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from control.xds.cache import Snapshot, short_type
from control.xds.limits import Limits, StreamLimitError, StreamProtocolError
from policies.core.xds.types import KNOWN_TYPES, PUSH_ORDER, WAITS_FOR

log = logging.getLogger("a1.control.xds")

WILDCARD = "*"


class Response(NamedTuple):
    """One encoded response: ``data`` is the serialized Discovery(Delta)Response."""

    type_url: str
    nonce: str
    data: bytes


@dataclass
class TypeState:
    """What one stream knows about one type: subscription, last response, client state."""

    type_url: str
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    explicit: bool = False  # ever named a resource: the legacy wildcard rule is off
    sent_version: str | None = None
    sent_nonce: str = ""
    pending: bool = False  # the last response awaits its ACK or NACK
    acked_version: str | None = None  # the version the client is known to hold
    nacked_version: str | None = None  # never re-sent while the snapshot has it
    nack_count: int = 0
    last_nack: str = ""
    last_nack_version: str = ""
    pushes: int = 0
    stale: int = 0

    def active(self) -> bool:
        return self.wildcard or bool(self.names)

    def status(self) -> dict[str, Any]:
        names = sorted(self.names)
        return {
            "wildcard": self.wildcard,
            "names": names[:100],
            "name_count": len(names),
            "sent_version": self.sent_version,
            "sent_nonce": self.sent_nonce,
            "pending": self.pending,
            "acked_version": self.acked_version,
            "nack_count": self.nack_count,
            "last_nack": self.last_nack,
            "last_nack_version": self.last_nack_version,
            "pushes": self.pushes,
            "stale_nonces": self.stale,
        }


class ProtocolStream:
    """The per-stream state machine; subclasses parse requests and build responses."""

    kind = "?"
    response_type: ClassVar[Any]  # the message class of ``Response.data``

    def __init__(self, limits: Limits, peer: str = "") -> None:
        self.limits = limits
        self.peer = peer
        self.types: dict[str, TypeState] = {}
        self._nonce_prefix = secrets.token_hex(4)
        self._nonces = 0
        self._unknown_logged: set[str] = set()
        self.node_id = ""
        self.node_cluster = ""
        self.node_metadata: dict[str, str] = {}

    # -- requests -----------------------------------------------------------

    def set_node(self, node: Any) -> None:
        """Record the node of the first request: id, cluster and its string metadata.

        Metadata is what clients announce about themselves (a sidecar's metrics URL);
        only string fields are kept, within ``Limits.node_metadata_*`` bounds, because
        status pages show it and the rollout controller reads it.
        """
        self.node_id, self.node_cluster = node.id, node.cluster
        kept: dict[str, str] = {}
        for key, value in sorted(node.metadata.fields.items()):
            if len(kept) >= self.limits.node_metadata_fields:
                break
            if (value.WhichOneof("kind") == "string_value"
                    and len(key) <= self.limits.node_metadata_key_chars
                    and len(value.string_value) <= self.limits.node_metadata_value_chars):
                kept[key] = value.string_value
        self.node_metadata = kept

    def type_state(self, req: Any) -> tuple[TypeState, bool] | None:
        """The state of the request's type and whether this request created it, after
        taking the node from the stream's first request; None for a type not served."""
        if not self.node_id and not self.node_cluster:
            if not req.HasField("node"):
                raise StreamProtocolError("the first request carries no node")
            self.set_node(req.node)
        if not self.known_type(req.type_url):
            return None
        st = self.types.get(req.type_url)
        if st is not None:
            return st, False
        st = self.types[req.type_url] = TypeState(req.type_url)
        return st, True

    def known_type(self, type_url: str) -> bool:
        """Unknown types are ignored (logged once per stream), never NACKed or fatal."""
        if type_url in KNOWN_TYPES:
            return True
        if type_url not in self._unknown_logged and len(self._unknown_logged) < 16:
            self._unknown_logged.add(type_url)
            log.warning(
                "xds %s stream %s (node %s): ignoring requests for unknown type %.200r",
                self.kind, self.peer, self.node_id, type_url,
            )
        return False

    def ack_or_nack(self, st: TypeState, nonce: str, error: Any | None) -> None:
        """Record an ACK or NACK of the outstanding response whose nonce is ``nonce``."""
        if not st.pending or nonce != st.sent_nonce:
            return
        st.pending = False
        if error is None:
            st.acked_version = st.sent_version
            self.on_ack(st)
            return
        text = error.message.encode()[: self.limits.max_error_bytes].decode(errors="replace")
        st.nacked_version = st.sent_version
        st.nack_count += 1
        st.last_nack = text.replace("\n", " ")
        st.last_nack_version = st.sent_version or ""
        self.on_nack(st)
        log.warning(
            "xds %s NACK from node %s (%s) for %s version %s: %s",
            self.kind, self.node_id, self.peer, short_type(st.type_url), st.sent_version,
            st.last_nack[:500],
        )

    def check_names(self) -> None:
        """Bound the subscriptions of the whole stream, in count and bytes."""
        count = sum(len(s.names) for s in self.types.values())
        size = sum(len(n) for s in self.types.values() for n in s.names)
        if count > self.limits.max_names or size > self.limits.max_name_bytes:
            raise StreamLimitError(
                f"subscribes {count} names ({size} bytes); limits are "
                f"{self.limits.max_names} names and {self.limits.max_name_bytes} bytes"
            )

    def on_ack(self, st: TypeState) -> None:
        """Delta applies the acknowledged diff to its view of the client here."""

    def on_nack(self, st: TypeState) -> None:
        """Delta drops the refused diff here."""

    # -- responses ----------------------------------------------------------

    def nonce(self) -> str:
        self._nonces += 1
        return f"{self._nonce_prefix}-{self._nonces}"

    def blocked(self, st: TypeState, snapshot: Snapshot) -> bool:
        """True while the snapshot still holds the version this client NACKed."""
        return st.nacked_version is not None and snapshot.version(st.type_url) == st.nacked_version

    def decode(self, response: Response) -> Any:
        """The message a response encodes (tests and debugging; the server sends bytes)."""
        return self.response_type.FromString(response.data)

    def next_response(self, snapshot: Snapshot | None) -> Response | None:
        """The one response due now, in push order, or None (see the module docstring)."""
        if snapshot is None:
            return None
        for type_url in PUSH_ORDER:
            st = self.types.get(type_url)
            if st is None or not st.active() or st.pending:
                continue  # not subscribed (holds nothing back), or awaiting its ACK
            if not self.settled(WAITS_FOR[type_url], snapshot):
                continue  # what it names is not there yet (or was NACKed): held back
            if self.blocked(st, snapshot):
                continue  # this very version was NACKed: not until the type changes
            response = self.build(st, snapshot)
            if response is not None:
                st.pending = True
                st.pushes += 1
                st.sent_version = snapshot.version(type_url)
                if st.sent_version != st.nacked_version:
                    st.nacked_version = None  # the config changed: the block is lifted
                return response
        return None

    def settled(self, types: tuple[str, ...], snapshot: Snapshot) -> bool:
        """Every subscribed type of ``types`` holds the snapshot's version, ACKed."""
        for type_url in types:
            st = self.types.get(type_url)
            if st is not None and st.active() and (
                    st.pending or st.acked_version != snapshot.version(type_url)):
                return False
        return True

    def build(self, st: TypeState, snapshot: Snapshot) -> Response | None:
        """The response that brings ``st`` to ``snapshot``, or None when it has it already."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {
            "protocol": self.kind,
            "node_id": self.node_id,
            "node_cluster": self.node_cluster,
            "node_metadata": dict(self.node_metadata),
            "peer": self.peer,
            "types": {t: s.status() for t, s in sorted(self.types.items())},
        }
