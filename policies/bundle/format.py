"""The bundle's byte layout: fixed header, canonical JSON manifest, module, signature.

Parsing trusts no length beyond the bytes present and no JSON beyond the three
fields of version 1. The layout and the order of checks are in docs/bundles.md.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from policies.bundle.errors import BundleRefused
from policies.core.xds.types import canonical_json

MAGIC = b"A1BUNDLE"
FORMAT_VERSION = 1
# magic, format version (u16), signer key id (8 bytes), manifest length (u32),
# module length (u32); big-endian, no padding.
HEADER = struct.Struct(">8sH8sII")
HEADER_BYTES = HEADER.size  # 26
SIGNATURE_BYTES = 64  # ed25519
KEY_ID_BYTES = 8
MAX_MANIFEST_BYTES = 64 * 1024
DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024
MAX_MODULE_BYTES_LIMIT = 0xFFFF_FFFF  # what the u32 length field can say
WASM_MAGIC = b"\0asm"

MANIFEST_FIELDS = ("entrypoint", "source_sha256", "version")
# Optional fields: absent means the default, and the default is never written, so a
# manifest keeps one byte form and bundles from before the field keep their bytes.
OPTIONAL_FIELDS = ("input",)
# The input document a policy expects: A1's own, or OPA-Envoy's (docs/opa-envoy.md).
DEFAULT_INPUT = "a1"
INPUT_KINDS = (DEFAULT_INPUT, "opa-envoy")
# Where OPA-Envoy's input holds the request body: a policy reading any of these (or
# a prefix of one) needs Envoy to buffer the body for ext_authz (with_request_body).
BODY_PATHS = (
    ("parsed_body",), ("truncated_body",),
    ("attributes", "request", "http", "body"), ("attributes", "request", "http", "rawBody"),
)  # fmt: skip


def reads_request_body(input_paths: Any) -> bool:
    """Whether an OPA-Envoy policy with these ``input_paths`` (a1.meta) reads the body."""
    for path in input_paths:
        p = tuple(path)
        for body in BODY_PATHS:
            if p[: len(body)] == body or body[: len(p)] == p:
                return True
    return False
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Printable ASCII, no space: every Rego entrypoint path fits, and the manifest's
# canonical bytes never depend on how a JSON encoder escapes non-ASCII text.
ENTRYPOINT = re.compile(r"[\x21-\x7e]{1,256}")


@dataclass(frozen=True)
class Manifest:
    """What the signer states about the module; ``version`` is its sha256 (hex)."""

    version: str
    entrypoint: str
    source_sha256: str
    input: str = DEFAULT_INPUT  # the input document the policy expects (INPUT_KINDS)

    def to_json(self) -> bytes:
        fields = {
            "entrypoint": self.entrypoint,
            "source_sha256": self.source_sha256,
            "version": self.version,
        }
        if self.input != DEFAULT_INPUT:
            fields["input"] = self.input
        return canonical_json(fields)


@dataclass(frozen=True)
class Frame:
    """The regions of a bundle whose lengths and bounds checked out; nothing verified yet."""

    key_id: str
    manifest: bytes
    module: bytes
    signed: memoryview  # header ‖ manifest ‖ module: what the signature covers
    signature: bytes


def check_module_cap(max_module_bytes: int) -> None:
    if not 0 < max_module_bytes <= MAX_MODULE_BYTES_LIMIT:
        raise ValueError(f"max_module_bytes must be in 1..{MAX_MODULE_BYTES_LIMIT}")


def max_bundle_bytes(max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES) -> int:
    return HEADER_BYTES + MAX_MANIFEST_BYTES + max_module_bytes + SIGNATURE_BYTES


def encode_signed_part(key_id: bytes, manifest: bytes, module: bytes) -> bytes:
    """header ‖ manifest ‖ module: the bytes the signature covers, the bundle without it."""
    header = HEADER.pack(MAGIC, FORMAT_VERSION, key_id, len(manifest), len(module))
    return header + manifest + module


def split(data: bytes, source: str, max_module_bytes: int) -> Frame:
    """The bundle's regions, checking sizes, magic, format version and lengths in that order."""
    cap = max_bundle_bytes(max_module_bytes)
    if len(data) > cap:
        raise BundleRefused(f"{source}: {len(data)} bytes, more than the cap of {cap}")
    if data[: len(WASM_MAGIC)] == WASM_MAGIC:
        raise BundleRefused(
            f"{source}: unsigned: a bare WebAssembly module, not a signed bundle "
            f"(sign it with the control plane's key)"
        )
    if len(data) < HEADER_BYTES:
        raise BundleRefused(
            f"{source}: truncated: {len(data)} bytes, shorter than the "
            f"{HEADER_BYTES}-byte header"
        )
    magic, fmt, key_id, manifest_len, module_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BundleRefused(f"{source}: not a signed A1 bundle (no {MAGIC.decode()} magic)")
    if fmt != FORMAT_VERSION:
        raise BundleRefused(
            f"{source}: format version {fmt}; this reader knows version {FORMAT_VERSION}"
        )
    if manifest_len == 0:
        raise BundleRefused(f"{source}: empty manifest")
    if manifest_len > MAX_MANIFEST_BYTES:
        raise BundleRefused(
            f"{source}: manifest length {manifest_len} is over the cap of {MAX_MANIFEST_BYTES}"
        )
    if module_len == 0:
        raise BundleRefused(f"{source}: empty module")
    if module_len > max_module_bytes:
        raise BundleRefused(
            f"{source}: module length {module_len} is over the cap of {max_module_bytes}"
        )
    expected = HEADER_BYTES + manifest_len + module_len + SIGNATURE_BYTES
    if len(data) < expected:
        raise BundleRefused(
            f"{source}: truncated: the header declares {expected} bytes, got {len(data)}"
        )
    if len(data) > expected:
        raise BundleRefused(
            f"{source}: {len(data) - expected} trailing bytes after the signature"
        )
    view = memoryview(data)
    module_at = HEADER_BYTES + manifest_len
    signature_at = module_at + module_len
    return Frame(
        key_id=key_id.hex(),
        manifest=bytes(view[HEADER_BYTES:module_at]),
        module=bytes(view[module_at:signature_at]),
        signed=view[:signature_at],
        signature=bytes(view[signature_at:]),
    )


class _Number:
    """Any JSON number: the manifest has none, so it is only ever a wrong type.

    Never converting it keeps a 64 KiB digit string from costing quadratic time.
    """

    def __init__(self, _text: str) -> None:
        pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _name(key: str) -> str:
    """A field name as an error shows it: quoted, escaped, short."""
    shown = repr(key)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _type(value: Any) -> str:
    if isinstance(value, _Number):
        return "number"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def parse_manifest(raw: bytes, source: str) -> Manifest:
    """The manifest, strictly: UTF-8, one JSON object, exactly the known string fields, canonical.

    Duplicate keys, unknown or missing fields, wrong types and non-canonical
    bytes are each refused, so a manifest has exactly one byte form.
    """
    where = f"{source}: manifest"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BundleRefused(f"{where}: not UTF-8 (byte {err.start})") from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_constant,
        )
    except _Duplicate as dup:
        raise BundleRefused(f"{where}: duplicate field {_name(dup.key)}") from None
    except RecursionError:
        raise BundleRefused(f"{where}: nested too deeply") from None
    except ValueError as err:
        first = str(err).splitlines()[0] if str(err) else "invalid"
        raise BundleRefused(f"{where}: not JSON: {first}") from None
    if not isinstance(obj, dict):
        raise BundleRefused(f"{where}: must be a JSON object, got {_type(obj)}")
    unknown = sorted(set(obj) - set(MANIFEST_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise BundleRefused(f"{where}: unknown field {_name(unknown[0])}")
    for field in MANIFEST_FIELDS:
        if field not in obj:
            raise BundleRefused(f"{where}: missing field {field!r}")
        if type(obj[field]) is not str:
            raise BundleRefused(f"{where}.{field}: must be a string, got {_type(obj[field])}")
    for field in ("version", "source_sha256"):
        if not SHA256_HEX.fullmatch(obj[field]):
            raise BundleRefused(f"{where}.{field}: must be 64 lowercase hex digits (a sha256)")
    if not ENTRYPOINT.fullmatch(obj["entrypoint"]):
        raise BundleRefused(
            f"{where}.entrypoint: must be 1 to 256 printable ASCII characters, no spaces"
        )
    input_kind = obj.get("input", DEFAULT_INPUT)
    if type(input_kind) is not str:
        raise BundleRefused(f"{where}.input: must be a string, got {_type(input_kind)}")
    if input_kind not in INPUT_KINDS:
        raise BundleRefused(
            f"{where}.input: must be one of {', '.join(INPUT_KINDS)}, got {_name(input_kind)}"
        )
    manifest = Manifest(obj["version"], obj["entrypoint"], obj["source_sha256"], input_kind)
    if manifest.to_json() != raw:
        raise BundleRefused(f"{where}: not canonical JSON (sorted keys, no whitespace)")
    return manifest
