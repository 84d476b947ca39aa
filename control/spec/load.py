"""``load_spec(directory)``: read, validate and resolve a platform spec directory.

Three stages, each refusing with one line that names the file, the position and
the field (``platform.yaml:12:5: cells[1].endpoints[0]: ...``):

1. read ``platform.yaml`` bounded and strictly (:mod:`control.spec.yamldoc`);
2. validate it against ``schema.json`` (JSON Schema 2020-12), reporting the
   first error in file order;
3. the checks a schema cannot express: cross-references, duplicates, address
   clashes, and the referenced files, each read inside the directory
   (:mod:`control.spec.files`) and parsed (JSON, PEM) so that a bad file is
   refused here, with its field, and never reaches Envoy or the sidecar.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from control.spec import files, table, yamldoc
from control.spec.model import (
    Cell,
    Endpoint,
    JwtIssuer,
    Listener,
    Listeners,
    PlatformSpec,
    Policy,
    Rollout,
    Sidecar,
    Tls,
    frozen_map,
)
from policies.core.cells import DEFAULT_BUCKETS, CellTable
from policies.core.errors import ConfigError
from policies.core.tenant import tenant_error
from policies.core.unix_socket import unix_path_error
from policies.core.xds.types import canonical_json

_WILDCARDS = {"0.0.0.0", "::"}
_ROLLOUT_DEFAULTS = {"soak_seconds": 60, "max_error_rate": 0.01, "max_deny_rate": 0.2,
                     "min_requests": 100}
_PATTERN_HINTS = {
    "^[a-z0-9][a-z0-9._-]{0,62}$": "is not a cell name ([a-z0-9][a-z0-9._-]{0,62})",
    "^[a-z0-9][a-z0-9-]{0,62}$": "does not match [a-z0-9][a-z0-9-]{0,62}",
    "\\.rego$": "is not a .rego file",
}

FieldPath = tuple[str | int, ...]


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of ``platform.yaml`` (package data ``control/spec/schema.json``)."""
    return json.loads(resources.files("control.spec").joinpath("schema.json").read_text())


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def field_name(path: FieldPath) -> str:
    """``("cells", 2, "endpoints", 0)`` → ``cells[2].endpoints[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum() and part.isascii():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part[:80])}]"
    return out or "(top level)"


def load_spec(directory: Path) -> PlatformSpec:
    """The validated spec in ``directory``; ConfigError naming file and field if not."""
    root = _root(directory)
    return _load(directory, root, _read_spec_text(directory, root))


def load_spec_text(directory: Path, text: str) -> PlatformSpec:
    """As :func:`load_spec`, with ``text`` standing for ``platform.yaml`` (used by the
    editor to validate an edit before it replaces the file)."""
    return _load(directory, _root(directory), text)


def _root(directory: Path) -> Path:
    try:
        return files.spec_root(Path(directory))
    except files.FileRefused as err:
        raise ConfigError(str(err)) from None


def _read_spec_text(directory: Path, root: Path) -> str:
    source = str(Path(directory) / files.SPEC_FILE)
    try:
        data = files.read_ref(root, files.SPEC_FILE, files.MAX_SPEC_BYTES)
    except files.FileRefused as err:
        raise ConfigError(f"{source}: {err}") from None
    return decode(source, data)


def decode(source: str, data: bytes) -> str:
    """UTF-8 text, or a ConfigError at the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start].decode("utf-8")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise ConfigError(f"{source}:{line}:{col}: not valid UTF-8 (byte {err.start})") from None


def _load(directory: Path, root: Path, text: str) -> PlatformSpec:
    source = str(Path(directory) / files.SPEC_FILE)
    doc, positions, _ = yamldoc.parse(text, source)
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else f"a {type(doc).__name__}"
        raise ConfigError(f"{source}:1:1: the spec is {kind}; expected a mapping of fields")
    _check_schema(doc, positions, source)
    return _Resolver(directory, root, source, positions).resolve(doc)


# -- stage 2: the schema ------------------------------------------------------------------


def _check_schema(doc: dict[str, Any], positions: yamldoc.Positions, source: str) -> None:
    placed = [_place(err, positions) for err in _validator().iter_errors(doc)]
    if placed:
        (line, col), path, message = min(placed, key=lambda p: (p[0], field_name(p[1])))
        raise ConfigError(f"{source}:{line}:{col}: {field_name(path)}: {message}")


def _place(err: ValidationError, positions: yamldoc.Positions
           ) -> tuple[tuple[int, int], FieldPath, str]:
    """The position, field path and message of one schema error."""
    path: FieldPath = tuple(err.absolute_path)
    instance = err.instance
    if err.validator == "additionalProperties" and isinstance(instance, dict):
        known = list(err.schema.get("properties", {}))
        extra = min((k for k in instance if k not in known),
                    key=lambda k: positions.key((*path, k)))
        where = (*path, extra)
        return positions.key(where), where, f"unknown field (expected {', '.join(known)})"
    if "propertyNames" in err.schema_path:  # the instance is the offending key
        where = (*path, instance)
        why = tenant_error(instance) if path == ("overrides",) else None
        return positions.key(where), where, why or f"invalid key {instance[:80]!r}"
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return positions.of(path), path, f"missing required field {missing!r}"
    if err.validator == "pattern" and isinstance(instance, str):
        hint = _PATTERN_HINTS.get(str(err.validator_value))
        message = f"{instance[:80]!r} {hint}" if hint else _short(err.message)
        return positions.of(path), path, message
    if err.validator == "type" and err.validator_value == "string" and not isinstance(
            instance, dict | list):
        return positions.of(path), path, (f"{_short(repr(instance))} is not a string "
                                          "(quote it to make it one)")
    return positions.of(path), path, _short(err.message)


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


# -- stage 3: the semantic checks and the files ----------------------------------------


class _Resolver:
    """Turns a schema-valid document into a PlatformSpec, reading its files."""

    def __init__(self, directory: Path, root: Path, source: str,
                 positions: yamldoc.Positions) -> None:
        self.directory = Path(directory)
        self.root = root
        self.source = source
        self.positions = positions
        self.files: dict[str, bytes] = {}
        self.total = 0

    def error(self, path: FieldPath, message: str, key: bool = False) -> ConfigError:
        line, col = self.positions.key(path) if key else self.positions.of(path)
        return ConfigError(f"{self.source}:{line}:{col}: {field_name(path)}: {message}")

    # files ------------------------------------------------------------------------

    def read(self, path: FieldPath, ref: str) -> tuple[str, bytes]:
        """The normalised relative path and bytes of the file the field names."""
        try:
            data = files.read_ref(self.root, ref, files.MAX_FILE_BYTES)
        except files.FileRefused as err:
            raise self.error(path, f"{ref[:200]}: {err}") from None
        name = PurePosixPath(ref).as_posix()
        if name not in self.files:
            self.total += len(data)
            if self.total > files.MAX_TOTAL_BYTES:
                raise self.error(path, f"{name}: the referenced files exceed "
                                       f"{files.MAX_TOTAL_BYTES} bytes in total")
        self.files[name] = data
        return name, data

    def text(self, path: FieldPath, ref: str) -> tuple[str, str]:
        name, data = self.read(path, ref)
        try:
            return name, decode(str(self.directory / name), data)
        except ConfigError as err:
            raise self.error(path, str(err)) from None

    def json(self, path: FieldPath, ref: str) -> tuple[str, str, Any]:
        name, text = self.text(path, ref)
        from policies.compiler.errors import CompileError
        from policies.compiler.limits import check_json

        where = str(self.directory / name)
        try:
            check_json(where, text)
            return name, text, json.loads(text)
        except CompileError as err:
            raise self.error(path, str(err).replace(": error:", ":")) from None
        except json.JSONDecodeError as err:
            raise self.error(path, f"{where}:{err.lineno}:{err.colno}: "
                                   f"invalid JSON: {err.msg}") from None
        except RecursionError:
            raise self.error(path, f"{where}: nested too deeply") from None

    # the whole spec ---------------------------------------------------------------

    def resolve(self, doc: dict[str, Any]) -> PlatformSpec:
        cells = self.cells(doc["cells"])
        names = [c.name for c in cells]
        buckets = doc.get("buckets", DEFAULT_BUCKETS)
        if buckets < len(cells):
            raise self.error(("buckets",), f"{buckets} buckets for {len(cells)} cells; "
                                           "every cell needs at least one")
        overrides = self.overrides(doc.get("overrides", {}), set(names))
        policy = self.policy(doc["policy"])
        issuers = self.jwt(doc["jwt"])
        listeners = self.listeners(doc["listeners"])
        sidecar = self.sidecar(doc["sidecar"], listeners)
        self.endpoints_clash(cells, listeners, sidecar)
        rollout = self.rollout(doc.get("rollout", {}), names)
        cell_table = self.table(names, buckets, overrides)
        parts = dict(region=doc["region"], cells=tuple(cells), buckets=buckets,
                     overrides=frozen_map(overrides), policy=policy, jwt=issuers,
                     listeners=listeners, sidecar=sidecar, rollout=rollout)
        return PlatformSpec(**parts, files=frozen_map(self.files),
                            digest=digest(parts, self.files, cell_table),
                            directory=self.directory, table=cell_table)

    def cells(self, raw: list[dict[str, Any]]) -> list[Cell]:
        seen: dict[str, int] = {}
        out = []
        for i, c in enumerate(raw):
            name = c["name"]
            if name in seen:
                raise self.error(("cells", i, "name"),
                                 f"duplicate cell {name!r} (also cells[{seen[name]}])")
            seen[name] = i
            endpoints: list[Endpoint] = []
            for j, ep in enumerate(c["endpoints"]):
                where = ("cells", i, "endpoints", j)
                host, port = self.host_port(where, ep)
                endpoint = Endpoint(host, port)
                if endpoint in endpoints:
                    raise self.error(where, f"duplicate endpoint {ep!r}")
                endpoints.append(endpoint)
            out.append(Cell(name, tuple(endpoints)))
        return out

    def host_port(self, where: FieldPath, value: str) -> tuple[str, int]:
        host, _, port_text = value.rpartition(":")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise self.error(where, f"port {port} in {value!r} is outside 1..65535")
        if host.startswith("["):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise self.error(where, f"{host[:80]!r} is not an IPv6 address") from None
        elif host.replace(".", "").isdigit():
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise self.error(where, f"{host[:80]!r} is not an IPv4 address") from None
        elif len(host) > 253 or any(not 1 <= len(p) <= 63 for p in host.split(".")):
            raise self.error(where, f"{host[:80]!r} is not a host name")
        return host, port

    def overrides(self, raw: dict[str, str], cells: set[str]) -> dict[str, str]:
        for tenant, cell in raw.items():
            why = tenant_error(tenant)
            if why is not None:
                raise self.error(("overrides", tenant), why, key=True)
            if cell not in cells:
                raise self.error(("overrides", tenant), f"unknown cell {cell!r} "
                                 f"(cells are {', '.join(sorted(cells))})")
        return dict(raw)

    def policy(self, raw: dict[str, Any]) -> Policy:
        sources: dict[str, str] = {}
        for i, ref in enumerate(raw["sources"]):
            name, text = self.text(("policy", "sources", i), ref)
            if name in sources:
                raise self.error(("policy", "sources", i), f"{name} is listed twice")
            sources[name] = text
        data = data_path = None
        if "data" in raw:
            data_path, _, data = self.json(("policy", "data"), raw["data"])
            if not isinstance(data, dict):
                raise self.error(("policy", "data"), f"{data_path}: must hold a JSON object")
        return Policy(frozen_map(sources), raw["entrypoint"], data, data_path,
                      raw.get("input", "a1"), raw.get("verifies_tokens", False))

    def jwt(self, raw: dict[str, Any]) -> tuple[JwtIssuer, ...]:
        out: list[JwtIssuer] = []
        seen: dict[str, int] = {}
        for i, iss in enumerate(raw["issuers"]):
            issuer = iss["issuer"]
            if issuer in seen:
                raise self.error(("jwt", "issuers", i, "issuer"), f"duplicate issuer "
                                 f"{issuer[:80]!r} (also jwt.issuers[{seen[issuer]}])")
            seen[issuer] = i
            where = ("jwt", "issuers", i, "jwks")
            name, text, doc = self.json(where, iss["jwks"])
            keys = doc.get("keys") if isinstance(doc, dict) else None
            if not isinstance(keys, list) or not keys:
                raise self.error(where, f"{name}: a JWKS must be an object with a non-empty "
                                        "\"keys\" list")
            for k, key in enumerate(keys):
                if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
                    raise self.error(where, f"{name}: keys[{k}] is not a JWK (no \"kty\")")
                if any(p in key for p in ("d", "p", "q", "dp", "dq", "qi", "k")):
                    raise self.error(where, f"{name}: keys[{k}] holds private or secret key "
                                            "material; a JWKS here must be public keys only")
            out.append(JwtIssuer(iss["issuer"], tuple(iss["audiences"]), name, text))
        return tuple(out)

    def listeners(self, raw: dict[str, Any]) -> Listeners:
        built: dict[str, Listener] = {}
        for kind in ("http", "https"):
            if kind not in raw:
                continue
            lst = raw[kind]
            try:
                ipaddress.ip_address(lst["address"])
            except ValueError:
                raise self.error(("listeners", kind, "address"),
                                 f"{lst['address'][:80]!r} is not an IP address "
                                 "(Envoy listeners bind to addresses, not names)") from None
            tls = self.tls(lst["tls"]) if kind == "https" else None
            built[kind] = Listener(lst["address"], lst["port"], tls)
        if "http" in built and "https" in built and _clash(
                (built["http"].address, built["http"].port),
                (built["https"].address, built["https"].port)):
            raise self.error(("listeners", "https", "port"),
                             f"{built['https'].address}:{built['https'].port} is also the "
                             "http listener's address")
        log = raw.get("access_log")
        if log is not None and any(seg in (".", "..") for seg in log.split("/")):
            raise self.error(("listeners", "access_log"),
                             f"{log[:80]!r} has a '.' or '..' segment; give the plain path")
        return Listeners(built.get("http"), built.get("https"), log)

    def tls(self, raw: dict[str, str]) -> Tls:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        cert_where = ("listeners", "https", "tls", "cert")
        key_where = ("listeners", "https", "tls", "key")
        cert_name, cert_pem = self.read(cert_where, raw["cert"])
        key_name, key_pem = self.read(key_where, raw["key"])
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError:
            raise self.error(cert_where, f"{cert_name}: no PEM certificate could be read") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise self.error(key_where, f"{key_name}: not an unencrypted PEM private key "
                                        "of a supported type") from None
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if (key.public_key().public_bytes(der, spki)
                != chain[0].public_key().public_bytes(der, spki)):
            raise self.error(key_where, f"{key_name}: does not match the certificate in "
                                        f"{cert_name}")
        return Tls(cert_name, key_name, cert_pem, key_pem)

    def sidecar(self, raw: dict[str, Any], listeners: Listeners) -> Sidecar:
        addrs: dict[str, str] = {}
        for kind in ("grpc", "http"):
            if kind not in raw:
                continue
            where = ("sidecar", kind)
            value = raw[kind]
            if value.startswith("unix:"):
                why = unix_path_error(value[len("unix:"):])
                if why is not None:
                    raise self.error(where, why)
            else:
                bind = self.host_port(where, value)
                for lk, lst in (("http", listeners.http), ("https", listeners.https)):
                    if lst is not None and _clash(bind, (lst.address, lst.port)):
                        raise self.error(where, f"{value} is also the {lk} listener's address")
            if value in addrs.values():
                raise self.error(where, f"{value} is also sidecar.grpc")
            addrs[kind] = value
        return Sidecar(raw["mode"], raw["grpc"], raw.get("http"), raw.get("timeout_ms", 500))

    def endpoints_clash(self, cells: list[Cell], listeners: Listeners, sidecar: Sidecar) -> None:
        """A cell endpoint that is one of Envoy's own listeners would route to itself."""
        for i, cell in enumerate(cells):
            for j, ep in enumerate(cell.endpoints):
                for kind, lst in (("http", listeners.http), ("https", listeners.https)):
                    if lst is not None and (ep.host, ep.port) == (lst.address, lst.port):
                        raise self.error(("cells", i, "endpoints", j),
                                         f"{ep} is the {kind} listener's address (Envoy "
                                         "would route to itself)")
                for kind, addr in (("grpc", sidecar.grpc), ("http", sidecar.http)):
                    if addr is not None and addr == str(ep):
                        raise self.error(("cells", i, "endpoints", j),
                                         f"{ep} is sidecar.{kind}'s address")

    def rollout(self, raw: dict[str, Any], names: list[str]) -> Rollout:
        canary = raw.get("canary_cell", names[0])
        if canary not in names:
            raise self.error(("rollout", "canary_cell"),
                             f"unknown cell {canary!r} (cells are {', '.join(names)})")
        values = {**_ROLLOUT_DEFAULTS, **{k: v for k, v in raw.items() if k != "canary_cell"}}
        return Rollout(canary, values["soak_seconds"], float(values["max_error_rate"]),
                       float(values["max_deny_rate"]), values["min_requests"])

    def table(self, names: list[str], buckets: int, overrides: dict[str, str]) -> CellTable:
        recorded = read_recorded_table(self.directory, self.root)
        if recorded is not None and recorded.buckets != buckets:
            raise self.error(("buckets",), f"{buckets}, but {files.TABLE_FILE} records "
                             f"{recorded.buckets} buckets; changing the bucket count moves "
                             f"every tenant: delete {files.TABLE_FILE} to do it on purpose")
        return table.derive(names, buckets, overrides, recorded)


def read_recorded_table(directory: Path, root: Path | None = None) -> CellTable | None:
    """``cell-table.yaml`` of the spec directory, or None if there is none."""
    root = root or _root(directory)
    source = str(Path(directory) / files.TABLE_FILE)
    if not (root / files.TABLE_FILE).exists() and not (root / files.TABLE_FILE).is_symlink():
        return None
    try:
        data = files.read_ref(root, files.TABLE_FILE, files.MAX_FILE_BYTES)
    except files.FileRefused as err:
        raise ConfigError(f"{source}: {err}") from None
    doc, _, _ = yamldoc.parse(decode(source, data), source)
    recorded = CellTable.from_dict(doc, source)
    most = schema()["properties"]["cells"]["maxItems"]
    if len(recorded.cells) > most:
        raise ConfigError(f"{source}: cells: {len(recorded.cells)} cells; at most {most}")
    if recorded.overrides:
        raise ConfigError(f"{source}: overrides: must be empty (overrides belong in "
                          f"{files.SPEC_FILE})")
    return recorded


def _clash(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Two binds collide on the same port at the same address, or if either is a wildcard."""
    return a[1] == b[1] and (a[0] == b[0] or a[0] in _WILDCARDS or b[0] in _WILDCARDS)


def content(parts: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical JSON content of a spec's fields (defaults applied, files by name)."""
    lst: Callable[[Listener | None], Any] = lambda x: None if x is None else {  # noqa: E731
        "address": x.address, "port": x.port,
        "tls": None if x.tls is None else {"cert": x.tls.cert_path, "key": x.tls.key_path}}
    policy: Policy = parts["policy"]
    return {
        "version": 1,
        "region": parts["region"],
        "cells": [{"name": c.name, "endpoints": [str(e) for e in c.endpoints]}
                  for c in parts["cells"]],
        "buckets": parts["buckets"],
        "overrides": dict(parts["overrides"]),
        "policy": {"sources": list(policy.sources), "data": policy.data_path,
                   "entrypoint": policy.entrypoint,
                   # only when set: a spec without them keeps the digest it always had
                   **({"input": policy.input} if policy.input != "a1" else {}),
                   **({"verifies_tokens": True} if policy.verifies_tokens else {})},
        "jwt": [{"issuer": j.issuer, "audiences": list(j.audiences), "jwks": j.jwks_path}
                for j in parts["jwt"]],
        "listeners": {"http": lst(parts["listeners"].http),
                      "https": lst(parts["listeners"].https),
                      "access_log": parts["listeners"].access_log},
        "sidecar": vars(parts["sidecar"]),
        "rollout": vars(parts["rollout"]),
    }


def digest(parts: Mapping[str, Any], file_bytes: Mapping[str, bytes], cells: CellTable) -> str:
    """SHA-256 over the canonical content, each referenced file's SHA-256 and the table."""
    doc = {
        "spec": content(parts),
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in file_bytes.items()},
        "cell_table": cells.version,
    }
    return hashlib.sha256(canonical_json(doc)).hexdigest()
