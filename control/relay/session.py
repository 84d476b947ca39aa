"""One Envoy SotW stream as the relay sees it: what Envoy subscribed to, what it holds,
which response it is answering, and what the record should answer while the control
plane is away. Pure bookkeeping (no I/O), so the rules are tested on their own.

ACK rule (xDS spec): a request of the same type whose ``response_nonce`` is the nonce
of the latest response sent to Envoy, with no ``error_detail``, and whose
``version_info`` is that response's version. A request with that nonce and an
``error_detail`` is a NACK; a request with an older nonce is stale.

Record rule: a response from the control plane becomes the type's record when Envoy
ACKs it (unless the record arrived later: ``RecordStore.record``). Served from the
record, a type is answered only when Envoy holds nothing of it (``version_info`` empty:
a booting Envoy, or a type it subscribes to anew): an Envoy that holds a version keeps
it. A recorded version Envoy NACKed is not sent again on that stream.

Never backwards: every response the relay reads from the control plane gets an arrival
number (``seq``). Per stream and type, ``floor`` is the number of the newest response
written to Envoy, answered or not (Envoy may be applying it right now). The record is
written to that stream only if it did not arrive before ``floor`` (the same response
again is fine: Envoy asking holding nothing gets what it was sent): what Envoy received
(and ACKed or not before the control plane's stream reset) is never followed by older
config on the same stream. A stream that NACKed the control plane's response then gets
nothing more of that type until the control plane is back (Envoy reconnects and a new
stream starts with no floor).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from control.relay.store import RecordStore
from policies.core.xds.types import PUSH_ORDER

MAX_TYPES = 64  # distinct type URLs on one stream (Envoy uses fewer than ten)


class SessionError(Exception):
    """Envoy broke the protocol (or a bound): its stream is closed with INVALID_ARGUMENT."""


@dataclass
class TypeView:
    subscribed: bool = False  # Envoy requested this type on this stream
    held: str = ""  # version_info of Envoy's latest non-stale request: what it holds
    sent: discovery_pb2.DiscoveryResponse | None = None  # latest response written to Envoy
    from_upstream: bool = False  # ``sent`` came from the control plane (an ACK records it)
    sent_seq: int = -1  # arrival number of ``sent``
    floor: int = -1  # arrival number of the newest response written (-1: none yet)
    answered: bool = True  # Envoy ACKed or NACKed ``sent``
    want: bool = False  # served from the record: answer when possible
    nacked: set[str] = field(default_factory=set)  # versions NACKed on this stream
    last_nack: str = ""


@dataclass(frozen=True)
class Verdict:
    """What one request was: ``initial`` | ``ack`` | ``nack`` | ``stale``; ``record`` is
    the control plane's response it ACKed (to be recorded), if any, and ``seq`` its
    arrival number."""

    kind: str
    record: discovery_pb2.DiscoveryResponse | None = None
    seq: int = 0


class Session:
    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.node: base_pb2.Node | None = None
        self.types: dict[str, TypeView] = {}
        self._nonces = itertools.count(1)

    def _view(self, type_url: str) -> TypeView:
        view = self.types.get(type_url)
        if view is None:
            if len(self.types) >= MAX_TYPES:
                raise SessionError(f"more than {MAX_TYPES} type URLs on one stream")
            view = self.types[type_url] = TypeView()
        return view

    def on_request(self, req: discovery_pb2.DiscoveryRequest) -> Verdict:
        if self.node is None:
            if not req.HasField("node"):
                raise SessionError("the first request carries no node")
            self.node = base_pb2.Node()
            self.node.CopyFrom(req.node)
        view = self._view(req.type_url)
        view.subscribed = True
        nonce = req.response_nonce
        sent = view.sent
        if nonce and (sent is None or nonce != sent.nonce):
            return Verdict("stale")
        view.held = req.version_info
        if not nonce:
            view.want = not req.version_info
            return Verdict("initial")
        view.answered = True
        assert sent is not None
        if req.HasField("error_detail"):
            view.last_nack = req.error_detail.message
            view.nacked.add(sent.version_info)  # never served from the record on this stream
            view.want = False
            return Verdict("nack")
        if req.version_info != sent.version_info:
            return Verdict("stale")  # neither ACK nor NACK: not Envoy's answer to ``sent``
        view.want = False
        if not view.from_upstream:
            return Verdict("ack")
        return Verdict("ack", sent, view.sent_seq)

    def on_response(self, resp: discovery_pb2.DiscoveryResponse, *, upstream: bool,
                    seq: int = 0) -> None:
        """``resp`` (arrival number ``seq``) is being written to Envoy."""
        view = self._view(resp.type_url)
        view.sent, view.from_upstream, view.answered = resp, upstream, False
        view.sent_seq, view.floor = seq, max(view.floor, seq)

    def on_fallback(self) -> None:
        """The control plane is gone: answer from the record every type Envoy holds
        nothing of (it may have subscribed before the control plane answered)."""
        for view in self.types.values():
            if view.subscribed and not view.held:
                view.want = True

    def due(self, store: RecordStore) -> list[discovery_pb2.DiscoveryResponse]:
        """Responses to write now from the record, in push order (make before break)."""
        out = []
        for type_url in PUSH_ORDER:
            view = self.types.get(type_url)
            if view is None or not (view.want and view.answered and not view.held):
                continue
            record = store.get(type_url)
            if record is None or record.version in view.nacked or record.seq < view.floor:
                continue  # nothing, rejected here, or older than what Envoy was sent
            resp = discovery_pb2.DiscoveryResponse()
            resp.CopyFrom(record.response)
            resp.nonce = f"relay-{self.stream_id}-{next(self._nonces)}"
            self.on_response(resp, upstream=False, seq=record.seq)
            view.want = False
            out.append(resp)
        return out

    def status(self) -> dict[str, dict[str, object]]:
        return {t: {"held": v.held, "subscribed": v.subscribed, "answered": v.answered,
                    "sent": v.sent.version_info if v.sent is not None else "",
                    "last_nack": v.last_nack} for t, v in self.types.items()}
