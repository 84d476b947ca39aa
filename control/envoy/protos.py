"""Envoy resources as protobuf messages (xds-protos), checked field by field.

``json_format.ParseDict`` turns each proto3 JSON mapping into its xds-protos
message, so a misspelt field, a wrong type or an unknown ``@type`` is an error
naming the resource and the field before anything is served. Serialization is
deterministic all the way down (maps sorted, and every nested ``Any`` repacked
deterministically, which ``ParseDict`` does not do), so a resource's bytes, and the
content hash the server versions it by, are the same in every replica and process.

Every extension type the templates name in a ``typed_config`` is imported here, so
that its descriptor is in the default pool when ``Any`` is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

# Extensions named by "@type" in envoy/ (imported for their descriptors).
from envoy.extensions.access_loggers.file.v3 import file_pb2  # noqa: F401
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2  # noqa: F401
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2  # noqa: F401
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (  # noqa: F401
    header_mutation_pb2,
)
from envoy.extensions.resource_monitors.downstream_connections.v3 import (  # noqa: F401
    downstream_connections_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from control.envoy.resources import EnvoyResources
from policies.core.errors import ConfigError
from policies.core.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

MESSAGE_TYPES: Mapping[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    SECRET: secret_pb2.Secret,
}
_ANY = any_pb2.Any.DESCRIPTOR.full_name


def _message_class(type_url: str) -> type[Message]:
    name = type_url.rpartition("/")[2]
    return message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(name))


def canonicalize(msg: Message) -> None:
    """Repack every nested ``Any`` with deterministic serialization, in place."""
    for fd, value in msg.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for v in value.values():
                    canonicalize(v)
        elif fd.is_repeated:
            for v in value:
                canonicalize(v)
        else:
            canonicalize(value)
    if msg.DESCRIPTOR.full_name == _ANY and msg.value:
        inner = _message_class(msg.type_url)()
        inner.ParseFromString(msg.value)
        canonicalize(inner)
        msg.value = inner.SerializeToString(deterministic=True)


def parse(message: Message, mapping: Mapping[str, Any], where: str) -> Message:
    """Fill ``message`` from a proto3 JSON mapping; any fault is a one-line ConfigError."""
    try:
        json_format.ParseDict(mapping, message)
    except (json_format.ParseError, KeyError, TypeError, ValueError, RecursionError) as err:
        text = " ".join(str(err).split())
        raise ConfigError(f"{where}: {text[:400]}") from None
    canonicalize(message)
    return message


def to_message(type_url: str, name: str, resource: Mapping[str, Any]) -> Message:
    """One resource as its message; its own name must be the name it is keyed by."""
    cls = MESSAGE_TYPES.get(type_url)
    kind = type_url.rpartition(".")[2]
    if cls is None:
        raise ConfigError(f"{kind} {name!r}: {type_url} is not an Envoy type A1 builds")
    msg = parse(cls(), resource, f"{kind} {name!r}")
    own = getattr(msg, "cluster_name" if type_url == ENDPOINT else "name")
    if own != name:
        raise ConfigError(f"{kind} {name!r}: the resource calls itself {own!r}")
    return msg


def to_messages(resources: EnvoyResources) -> dict[str, dict[str, Message]]:
    """type URL → name → message, for every resource (push order)."""
    return {type_url: {name: to_message(type_url, name, r) for name, r in of.items()}
            for type_url, of in resources.items()}


def pack(resources: EnvoyResources) -> dict[str, dict[str, bytes]]:
    """type URL → name → ``Any.value`` (the message, serialized deterministically)."""
    return {type_url: {name: m.SerializeToString(deterministic=True) for name, m in of.items()}
            for type_url, of in to_messages(resources).items()}


def to_any(type_url: str, value: bytes) -> any_pb2.Any:
    """A packed resource as the ``Any`` a DiscoveryResponse carries."""
    return any_pb2.Any(type_url=type_url, value=value)


def bootstrap_message(bootstrap: Mapping[str, Any], where: str = "bootstrap"
                      ) -> bootstrap_pb2.Bootstrap:
    """A whole bootstrap mapping as the Bootstrap message (checks every field)."""
    msg = bootstrap_pb2.Bootstrap()
    parse(msg, bootstrap, where)
    return msg
