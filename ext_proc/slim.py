"""A field-subset view of ``envoy.service.auth.v3.CheckRequest`` for the hot path.

Envoy's CheckRequest carries much the sidecar never reads (peers, TLS session,
time, route metadata). This message declares only what the engine needs, with
field numbers copied from the xds-protos descriptors at import time (so it
cannot drift from them), and declares ``metadata_context`` as ``bytes``: the
same wire type as the embedded message, so upb hands over Envoy's serialized
metadata without parsing it. Those bytes are what determine the caller's claims,
so they key the claims memo and the decision memo directly; they are parsed
(with the real ``Metadata`` class) only on a memo miss. Everything the subset
leaves out is skipped by the C parser. Measured on a 770-byte request: parse plus
field access ~1.9 us instead of ~3.3 us.
"""

from __future__ import annotations

from typing import Any

from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _number(descriptor: Any, name: str) -> int:
    return int(descriptor.fields_by_name[name].number)


def _build() -> Any:
    ctx = attribute_context_pb2.AttributeContext.DESCRIPTOR
    request = ctx.nested_types_by_name["Request"]
    http_request = ctx.nested_types_by_name["HttpRequest"]
    fdp = descriptor_pb2.FileDescriptorProto(
        name="a1/ext_proc/slim_check.proto", package="a1.slim", syntax="proto3"
    )

    def field(
        msg: Any, name: str, number: int, kind: int, type_name: str = "", rep: bool = False
    ) -> None:
        f = msg.field.add(
            name=name,
            number=number,
            type=kind,
            label=_F.LABEL_REPEATED if rep else _F.LABEL_OPTIONAL,
        )
        if type_name:
            f.type_name = type_name

    http = fdp.message_type.add(name="HttpRequest")
    # Declared as bytes (same wire type as string): upb would refuse invalid UTF-8
    # with a parse error (an RPC failure); the sidecar decodes and answers 400 instead.
    for name in ("method", "path", "host"):
        field(http, name, _number(http_request, name), _F.TYPE_BYTES)
    entry = http.nested_type.add(name="HeadersEntry")
    field(entry, "key", 1, _F.TYPE_STRING)
    field(entry, "value", 2, _F.TYPE_BYTES)
    entry.options.map_entry = True
    field(http, "headers", _number(http_request, "headers"), _F.TYPE_MESSAGE,
          ".a1.slim.HttpRequest.HeadersEntry", rep=True)  # fmt: skip
    # Only when Envoy sends encode_raw_headers: parsed on demand with the real HeaderMap.
    field(http, "header_map", _number(http_request, "header_map"), _F.TYPE_BYTES)

    req = fdp.message_type.add(name="Request")
    field(req, "http", _number(request, "http"), _F.TYPE_MESSAGE, ".a1.slim.HttpRequest")
    attrs = fdp.message_type.add(name="AttributeContext")
    field(attrs, "request", _number(ctx, "request"), _F.TYPE_MESSAGE, ".a1.slim.Request")
    field(attrs, "metadata_context", _number(ctx, "metadata_context"), _F.TYPE_BYTES)
    check = fdp.message_type.add(name="CheckRequest")
    field(
        check,
        "attributes",
        _number(external_auth_pb2.CheckRequest.DESCRIPTOR, "attributes"),
        _F.TYPE_MESSAGE,
        ".a1.slim.AttributeContext",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("a1.slim.CheckRequest"))


SlimCheckRequest: Any = _build()
