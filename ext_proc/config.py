"""The sidecar's own config file (``--config FILE.yaml``), validated field by field.

Schema (docs: notes/contracts.md)::

    grpc_address: 127.0.0.1:PORT        # or unix:/path/sock
    http_address: 127.0.0.1:PORT        # optional: HTTP ext_authz fast path
    metrics_address: 127.0.0.1:PORT     # optional: Prometheus /metrics
    policy: {module: /path/authz.wasm, entrypoint: a1/authz/decision,
             input: a1}                 # or opa-envoy: OPA-Envoy's input and decision shapes
                                        # (docs/opa-envoy.md); its default entrypoint is
                                        # envoy/authz/allow
    cells: {table: /path/cells.yaml}
    # or, instead of policy.module and cells.table, config over ADS (docs/sidecar-xds.md):
    source: {kind: xds, address: HOST:PORT or unix:/path, state_dir: /path/lkg,
             trusted_keys: /path/keys, node_id: NAME, cluster: a1-sidecar, delta: false,
             boot_timeout: 2, max_message_bytes: 64MiB, max_bundles: 8}  # default kind: file
    tenant: {from: path}                # | {from: header, name: x-tenant-id}
                                        # | {from: host, pattern: "{tenant}.example.com"}
    decision_log: {path: /path/decisions.jsonl, queue: 10000, max_bytes: 16MiB,  # optional
                   url: http://127.0.0.1:PORT/v1/decisions, timeout: 0.5, batch_bytes: 256KiB}
        # path, url or both; url (http, loopback or a host name) gets POSTs of
        # application/x-ndjson batches; timeout and batch_bytes only with url
    # optional tuning (defaults shown):
    cache: {size: 100000, max_bytes: 64MiB}   # decision cache (both layers); 0 disables it
    claims_cache: {size: 4096, max_bytes: 8MiB}  # decoded claims, per carrier kind
    limits: {max_path: 8192}            # bytes of :path (query included); longer is a 414
    watch: {interval: 0.2}              # seconds between file polls

Sizes in bytes are integers or strings with a unit: ``512KiB``, ``64MiB``, ``1GiB``.
Relative paths are resolved against the config file's directory. ``unix:`` addresses
are created mode 0600 (see ``ext_proc.uds``).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ext_proc import defaults
from ext_proc.decision_log import MAX_BATCH_BYTES, SINK_BATCH_BYTES, SINK_TIMEOUT, parse_sink_url
from ext_proc.defaults import MiB
from ext_proc.opa_envoy import A1_INPUT, DEFAULT_PATH, INPUT_KINDS, OPA_ENVOY_INPUT
from policies.core.errors import ConfigError
from policies.core.unix_socket import unix_path_error
from policies.core.urls import UrlError, check_http_url
from policies.core.xds.types import SIDECAR_CLUSTER
from policies.core.yamlio import read_yaml

DEFAULT_ENTRYPOINT = "a1/authz/decision"
_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": MiB, "gib": 1024 * MiB}
_SIZE = re.compile(r"\s*(\d+)\s*([kmg]ib|b)?\s*\Z", re.IGNORECASE)


@dataclass(frozen=True)
class TenantSource:
    """Where the *target* tenant comes from: ``path`` (/t/{tenant}/…), a header, or the host."""

    kind: str = "path"  # path | header | host
    header: str = ""  # kind == header: lower-case header name
    pattern: str = ""  # kind == host: e.g. "{tenant}.example.com"


MAX_METRICS_URL = 2048  # bytes of an announced scrape URL


@dataclass(frozen=True)
class XdsSourceConfig:
    """``source: {kind: xds, ...}``: where the ADS server is and where last-known-good lives."""

    address: str  # HOST:PORT of the control plane's ADS server
    state_dir: Path  # last-known-good (verified bundles + applied state), 0700
    trusted_keys: Path  # a *.pub file or a directory of them (bundle signers)
    node_id: str = ""  # default: "<hostname>-sidecar"
    cluster: str = SIDECAR_CLUSTER
    delta: bool = False  # Delta xDS instead of State-of-the-World
    boot_timeout: float = 2.0  # seconds to wait for the control plane before booting from disk
    max_message_bytes: int = 64 * MiB  # gRPC receive limit, and the per-type byte budget
    max_bundles: int = 8  # bundles held (and persisted) at once
    metrics_url: str = ""  # announced in node metadata for the rollout scraper ("" = none)


@dataclass(frozen=True)
class SidecarConfig:
    source: str
    grpc_address: str
    http_address: str | None
    metrics_address: str | None
    policy_module: Path | None  # None with source.kind xds
    entrypoint: str
    cells_table: Path | None  # None with source.kind xds
    tenant: TenantSource
    xds: XdsSourceConfig | None = None  # source.kind xds
    decision_log_path: Path | None = None
    decision_log_queue: int = defaults.LOG_QUEUE_ENTRIES
    decision_log_max_bytes: int = defaults.LOG_QUEUE_BYTES
    decision_log_url: str | None = None  # checked by decision_log.parse_sink_url
    decision_log_timeout: float = SINK_TIMEOUT
    decision_log_batch_bytes: int = SINK_BATCH_BYTES
    cache_size: int = defaults.CACHE_ENTRIES
    cache_max_bytes: int = defaults.CACHE_BYTES
    claims_cache_size: int = defaults.CLAIMS_ENTRIES
    claims_cache_max_bytes: int = defaults.CLAIMS_BYTES
    max_path: int = defaults.MAX_PATH
    watch_interval: float = 0.2
    input_kind: str = A1_INPUT  # policy.input: a1 | opa-envoy


_TOP = (
    "grpc_address", "http_address", "metrics_address", "policy", "cells", "tenant",
    "decision_log", "cache", "claims_cache", "limits", "watch", "source",
)  # fmt: skip
_LOG_KEYS = ("path", "url", "queue", "max_bytes", "timeout", "batch_bytes")
_XDS_KEYS = (
    "kind", "address", "state_dir", "trusted_keys", "node_id", "cluster", "delta",
    "boot_timeout", "max_message_bytes", "max_bundles", "metrics_url",
)  # fmt: skip


def load_config(path: str | Path) -> SidecarConfig:
    return parse_config(read_yaml(path), str(path), Path(path).resolve().parent)


def parse_config(d: Any, source: str, base: Path) -> SidecarConfig:
    def bad(field: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {field}: {problem}")

    def section(name: str, keys: tuple[str, ...], required: bool) -> dict[str, Any]:
        v = d.get(name)
        if v is None:
            if required:
                raise bad(name, "missing")
            return {}
        if not isinstance(v, dict):
            raise bad(name, "must be a mapping")
        for k in v:
            if k not in keys:
                raise bad(f"{name}.{k}", f"unknown field (expected {', '.join(keys)})")
        return v

    def string(sec: dict[str, Any], name: str, field: str, required: bool = True) -> str | None:
        v = sec.get(name)
        if v is None:
            if required:
                raise bad(field, "missing")
            return None
        if not isinstance(v, str) or not v.strip():
            raise bad(field, f"must be a non-empty string, got {v!r}")
        return v.strip()

    def address(name: str, required: bool, unix_ok: bool) -> str | None:
        v = string(d, name, name, required)
        if v is None:
            return None
        if v.startswith("unix:"):
            if not unix_ok or len(v) <= 5:
                raise bad(name, f"expected HOST:PORT, got {v!r}")
            p = v[5:]
            if p.startswith("//"):  # unix:///abs (gRPC's URI form)
                p = p[2:]
            p = str(Path(p)) if Path(p).is_absolute() else str(base / p)
            why = unix_path_error(p)
            if why is not None:
                raise bad(name, why)
            return "unix:" + p
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise bad(name, f"expected HOST:PORT{' or unix:/path' if unix_ok else ''}, got {v!r}")
        return v

    def path(sec: dict[str, Any], name: str, field: str) -> Path:
        p = Path(str(string(sec, name, field)))
        return p if p.is_absolute() else base / p

    def integer(sec: dict[str, Any], name: str, field: str, default: int, lo: int, hi: int) -> int:
        v = sec.get(name, default)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise bad(field, f"must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def size(sec: dict[str, Any], name: str, field: str, default: int, lo: int, hi: int) -> int:
        v = sec.get(name, default)
        n = v
        if isinstance(v, str):
            m = _SIZE.match(v)
            n = int(m.group(1)) * _UNITS[(m.group(2) or "").lower()] if m else None
        if not isinstance(n, int) or isinstance(n, bool) or not lo <= n <= hi:
            raise bad(field, f"must be a size in bytes in [{lo}, {hi}] (e.g. 64MiB), got {v!r}")
        return n

    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping (grpc_address, policy, cells, ...)")
    for k in d:
        if k not in _TOP:
            raise bad(str(k), f"unknown field (expected {', '.join(_TOP)})")

    grpc_address = address("grpc_address", True, True)
    http_address = address("http_address", False, True)
    metrics_address = address("metrics_address", False, False)

    src = section("source", _XDS_KEYS, False)
    kind = string(src, "kind", "source.kind", False) or "file"
    xds: XdsSourceConfig | None = None
    if kind == "file":
        for k in src:
            if k != "kind":
                raise bad(f"source.{k}", "not used with source.kind: file")
        policy = section("policy", ("module", "entrypoint", "input"), True)
        module: Path | None = path(policy, "module", "policy.module")
        cells = section("cells", ("table",), True)
        table: Path | None = path(cells, "table", "cells.table")
    elif kind == "xds":
        policy = section("policy", ("entrypoint", "input"), False)
        if d.get("cells") is not None:
            raise bad("cells", "not used with source.kind: xds (the cell table comes over ADS)")
        module = table = None
        xds = _xds_source(src, bad, string, path, size, integer)
        if not xds.metrics_url:  # announced explicitly where loopback is not the sidecar
            xds = replace(xds, metrics_url=_metrics_url(metrics_address))
    else:
        raise bad("source.kind", f"must be file or xds, got {kind!r}")
    input_kind = string(policy, "input", "policy.input", False) or A1_INPUT
    if input_kind not in INPUT_KINDS:
        raise bad("policy.input", f"must be {' or '.join(INPUT_KINDS)}, got {input_kind!r}")
    default_entry = DEFAULT_PATH if input_kind == OPA_ENVOY_INPUT else DEFAULT_ENTRYPOINT
    entrypoint = string(policy, "entrypoint", "policy.entrypoint", False) or default_entry

    t = section("tenant", ("from", "name", "pattern"), False)
    kind = string(t, "from", "tenant.from", False) or "path"
    if kind == "path":
        for k in ("name", "pattern"):
            if k in t:
                raise bad(f"tenant.{k}", "not used with tenant.from: path")
        tenant = TenantSource("path")
    elif kind == "header":
        name = string(t, "name", "tenant.name")
        assert name is not None
        if not name.isascii() or not all(c.isalnum() or c in "-_" for c in name):
            raise bad("tenant.name", f"invalid header name {name!r}")
        name = name.lower()
        for reserved in ("x-a1-", "x-envoy-"):
            if name.startswith(reserved):
                # x-a1-* is the sidecar's own (stripped at the edge, set on allow);
                # x-envoy-* is Envoy's control namespace.
                raise bad("tenant.name", f"{name!r}: {reserved}* header names are reserved")
        tenant = TenantSource("header", header=name)
    elif kind == "host":
        pattern = string(t, "pattern", "tenant.pattern")
        assert pattern is not None
        if not pattern.isascii():
            raise bad("tenant.pattern", f"must be ASCII (hosts are matched as ASCII): {pattern!r}")
        if pattern.count("{tenant}") != 1:
            raise bad("tenant.pattern", f"must contain {{tenant}} exactly once, got {pattern!r}")
        tenant = TenantSource("host", pattern=pattern.lower())
    else:
        raise bad("tenant.from", f"must be path, header or host, got {kind!r}")

    log = section("decision_log", _LOG_KEYS, False)
    log_path = path(log, "path", "decision_log.path") if log.get("path") is not None else None
    log_url = None
    if log.get("url") is not None:
        try:
            log_url = parse_sink_url(log["url"]).url
        except ValueError as err:
            raise bad("decision_log.url", str(err)) from None
    if log and log_path is None and log_url is None:
        raise bad("decision_log.path", "missing (set path, url or both)")
    if log_url is None:
        for k in ("timeout", "batch_bytes"):
            if k in log:
                raise bad(f"decision_log.{k}", "not used without decision_log.url")
    log_queue = integer(log, "queue", "decision_log.queue", defaults.LOG_QUEUE_ENTRIES,
                        1, 10_000_000)
    log_bytes = size(log, "max_bytes", "decision_log.max_bytes", defaults.LOG_QUEUE_BYTES,
                     64 * 1024, 1 << 40)
    log_timeout = log.get("timeout", SINK_TIMEOUT)
    if (
        not isinstance(log_timeout, int | float)
        or isinstance(log_timeout, bool)
        or not 0.01 <= log_timeout <= 30
    ):
        raise bad("decision_log.timeout",
                  f"must be a number of seconds in [0.01, 30], got {log_timeout!r}")
    log_batch = size(log, "batch_bytes", "decision_log.batch_bytes", SINK_BATCH_BYTES,
                     4096, MAX_BATCH_BYTES)

    cache = section("cache", ("size", "max_bytes"), False)
    claims = section("claims_cache", ("size", "max_bytes"), False)
    limits = section("limits", ("max_path",), False)
    watch = section("watch", ("interval",), False)
    interval = watch.get("interval", 0.2)
    if (
        not isinstance(interval, int | float)
        or isinstance(interval, bool)
        or not (0.01 <= interval <= 60)
    ):
        raise bad("watch.interval", f"must be a number of seconds in [0.01, 60], got {interval!r}")

    return SidecarConfig(
        source=source,
        grpc_address=str(grpc_address),
        http_address=http_address,
        metrics_address=metrics_address,
        policy_module=module,
        entrypoint=entrypoint,
        cells_table=table,
        tenant=tenant,
        xds=xds,
        decision_log_path=log_path,
        decision_log_queue=log_queue,
        decision_log_max_bytes=log_bytes,
        decision_log_url=log_url,
        decision_log_timeout=float(log_timeout),
        decision_log_batch_bytes=log_batch,
        cache_size=integer(cache, "size", "cache.size", defaults.CACHE_ENTRIES, 0, 100_000_000),
        cache_max_bytes=size(cache, "max_bytes", "cache.max_bytes", defaults.CACHE_BYTES,
                             0, 1 << 40),
        claims_cache_size=integer(claims, "size", "claims_cache.size", defaults.CLAIMS_ENTRIES,
                                  0, 10_000_000),
        claims_cache_max_bytes=size(
            claims, "max_bytes", "claims_cache.max_bytes", defaults.CLAIMS_BYTES, 0, 1 << 40
        ),
        max_path=integer(limits, "max_path", "limits.max_path", defaults.MAX_PATH, 256, 1 << 20),
        watch_interval=float(interval),
        input_kind=input_kind,
    )


def _metrics_url(address: str | None) -> str:
    """The URL the control plane scrapes (docs/rollout.md): a wildcard host is reached
    on loopback; an ephemeral port (0) is not known yet, so nothing is announced."""
    if not address:
        return ""
    host, _, port = address.rpartition(":")
    if port == "0":
        return ""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def _xds_source(src: dict[str, Any], bad: Any, string: Any, path: Any, size: Any,
                integer: Any) -> XdsSourceConfig:  # fmt: skip
    """The ``source`` section with ``kind: xds``; the helpers are ``parse_config``'s."""
    address = string(src, "address", "source.address")
    if address.startswith("unix:"):  # the control plane's private socket (a1 up)
        why = unix_path_error(address[len("unix:"):])
        if why is not None:
            raise bad("source.address", why)
    else:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise bad("source.address",
                      f"expected HOST:PORT or unix:/path of the ADS server, got {address!r}")
    node_id = string(src, "node_id", "source.node_id", False) or f"{socket.gethostname()}-sidecar"
    cluster = string(src, "cluster", "source.cluster", False) or SIDECAR_CLUSTER
    for field, v in (("node_id", node_id), ("cluster", cluster)):
        if len(v) > 256 or not v.isprintable():
            raise bad(f"source.{field}", f"must be printable and at most 256 characters, got {v!r}")
    delta = src.get("delta", False)
    if not isinstance(delta, bool):
        raise bad("source.delta", f"must be true or false, got {delta!r}")
    boot = src.get("boot_timeout", 2.0)
    if not isinstance(boot, int | float) or isinstance(boot, bool) or not 0 <= boot <= 300:
        raise bad("source.boot_timeout", f"must be a number of seconds in [0, 300], got {boot!r}")
    return XdsSourceConfig(
        address=address,
        state_dir=path(src, "state_dir", "source.state_dir"),
        trusted_keys=path(src, "trusted_keys", "source.trusted_keys"),
        node_id=node_id,
        cluster=cluster,
        delta=delta,
        boot_timeout=float(boot),
        max_message_bytes=size(src, "max_message_bytes", "source.max_message_bytes", 64 * MiB,
                               4 * MiB, 1024 * MiB),
        max_bundles=integer(src, "max_bundles", "source.max_bundles", 8, 1, 64),
        metrics_url=_announced_metrics_url(src.get("metrics_url"), bad),
    )


def _announced_metrics_url(url: object, bad: Any) -> str:
    """``source.metrics_url``: the URL the control plane scrapes this sidecar at, when its
    own loopback is not the sidecar's (a container). Only the shape is checked here: the
    control plane scrapes a non-loopback host only if its operator allowed it."""
    if url is None:
        return ""
    host = urlsplit(url).hostname if isinstance(url, str) and url.isascii() else None
    try:
        checked = check_http_url(url, MAX_METRICS_URL, (host or "",))
    except UrlError as err:
        raise bad("source.metrics_url", str(err)) from None
    if checked.path != "/metrics" or checked.query or checked.port is None:
        raise bad("source.metrics_url", f"must be http://HOST:PORT/metrics, got {url!r}")
    return checked.url
