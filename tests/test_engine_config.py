"""The sidecar config file: every bad field is named; defaults and relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from ext_proc.config import load_config, parse_config
from policies.core.errors import ConfigError

GOOD = {
    "grpc_address": "127.0.0.1:9000",
    "http_address": "127.0.0.1:9001",
    "metrics_address": "127.0.0.1:9002",
    "policy": {"module": "authz.wasm"},
    "cells": {"table": "/abs/cells.yaml"},
}


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse_config(GOOD, "s.yaml", tmp_path)
    assert cfg.policy_module == tmp_path / "authz.wasm"
    assert cfg.cells_table == Path("/abs/cells.yaml")
    assert cfg.entrypoint == "a1/authz/decision"
    assert cfg.tenant.kind == "path"
    assert cfg.decision_log_path is None
    assert (cfg.cache_size, cfg.watch_interval) == (100_000, 0.2)


def test_full_config(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        "grpc_address: unix:/tmp/a1.sock\n"
        "policy: {module: p.wasm, entrypoint: a1/authz/allow}\n"
        "cells: {table: c.yaml}\n"
        "tenant: {from: host, pattern: '{tenant}.Example.com'}\n"
        "decision_log: {path: d.jsonl, queue: 5}\n"
        "cache: {size: 0}\n"
        "watch: {interval: 1}\n"
    )
    cfg = load_config(path)
    assert cfg.grpc_address == "unix:/tmp/a1.sock" and cfg.http_address is None
    assert cfg.tenant.pattern == "{tenant}.example.com"
    assert cfg.decision_log_path == tmp_path / "d.jsonl" and cfg.decision_log_queue == 5
    assert cfg.cache_size == 0 and cfg.entrypoint == "a1/authz/allow"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"grpc_address": None}, "s.yaml: grpc_address: missing"),
        ({"grpc_address": "localhost"}, "s.yaml: grpc_address: expected HOST:PORT"),
        ({"http_address": "1.2.3.4:99999"}, "s.yaml: http_address: expected HOST:PORT"),
        ({"metrics_address": "unix:/x"}, "s.yaml: metrics_address: expected HOST:PORT"),
        ({"policy": None}, "s.yaml: policy: missing"),
        ({"policy": {}}, "s.yaml: policy.module: missing"),
        ({"policy": {"module": 3}}, "s.yaml: policy.module: must be a non-empty string"),
        ({"policy": {"module": "p", "entry": "x"}}, "s.yaml: policy.entry: unknown field"),
        ({"cells": "c.yaml"}, "s.yaml: cells: must be a mapping"),
        ({"tenant": {"from": "cookie"}}, "s.yaml: tenant.from: must be path, header or host"),
        ({"tenant": {"from": "header"}}, "s.yaml: tenant.name: missing"),
        ({"tenant": {"from": "header", "name": "x y"}}, "s.yaml: tenant.name: invalid header"),
        ({"tenant": {"from": "header", "name": "t\u00e9"}}, "s.yaml: tenant.name: invalid header"),
        ({"tenant": {"from": "header", "name": "X-A1-Tenant"}},
         "s.yaml: tenant.name: 'x-a1-tenant': x-a1-* header names are reserved"),
        ({"tenant": {"from": "header", "name": "x-envoy-t"}}, "s.yaml: tenant.name: 'x-envoy-t'"),
        ({"tenant": {"from": "host", "pattern": "{tenant}.\u212aexample.com"}},
         "s.yaml: tenant.pattern: must be ASCII"),
        ({"tenant": {"from": "host", "pattern": "x.com"}}, "s.yaml: tenant.pattern: must contain"),
        ({"tenant": {"from": "path", "name": "x"}}, "s.yaml: tenant.name: not used"),
        ({"decision_log": {"queue": 5}}, "s.yaml: decision_log.path: missing"),
        ({"decision_log": {"path": "d", "queue": 0}}, "s.yaml: decision_log.queue: must be"),
        ({"cache": {"size": -1}}, "s.yaml: cache.size: must be an integer"),
        ({"watch": {"interval": "fast"}}, "s.yaml: watch.interval: must be a number"),
        ({"extra": 1}, "s.yaml: extra: unknown field"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, patch: dict[str, object], message: str) -> None:
    d = {**GOOD, **patch}
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_config(d, "s.yaml", tmp_path)
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.code == 2


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("grpc_address: [\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2:1: invalid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("just a string\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
