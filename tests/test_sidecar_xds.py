"""The sidecar as an xDS client, against the real control-plane server (control.xds).

In process (``XdsConfigSource`` feeding a real ``Engine``): sync, updates, per-cell
versions, every refusal (tampered, unsigned, misnamed bundle, an assignment naming
a missing version or cell, too many bundles) NACKed with its reason while the old
policy keeps deciding; last-known-good on disk, and refused when tampered. Through
the real process (``python -m ext_proc`` with ``source: {kind: xds}``): decisions
through a control-plane outage, a restart during it (boots from disk and decides
identically), and re-sync when the control plane returns.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.server import XdsServer
from ext_proc.config import XdsSourceConfig, parse_config
from ext_proc.engine import Engine
from ext_proc.xds_source import STATE_NAME, XdsConfigSource
from policies.bundle import BundleRefused, SigningKey, sign_bundle
from policies.core.cells import CellTable
from policies.core.errors import ConfigError
from policies.core.xds import types
from policies.core.xds.types import canonical_json
from tests.test_engine import ENTRY, compile_authz
from tests.test_sidecar_grpc import ALICE, ROOT, Sidecar, check, stop_sidecar
from tests.waiting import free_port, wait_until

GROUP = "a1-sidecar"
CELLS = CellTable.balanced(["cell-1", "cell-2", "cell-3"])
KEY = SigningKey.generate()
ACME_CELL = CELLS.lookup("acme")
OTHER = next(t for t in (f"t{i}" for i in range(100)) if CELLS.lookup(t) != ACME_CELL)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wasm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Two policy versions: v1 (the shipped policy) and v2 (tenant acme suspended)."""
    return {"v1": compile_authz(), "v2": compile_authz(["acme"], tmp_path_factory.mktemp("v2"))}


@pytest.fixture(scope="module")
def v(wasm: dict[str, bytes]) -> dict[str, str]:
    return {k: sha(m) for k, m in wasm.items()}


@pytest.fixture(scope="module")
def signed(wasm: dict[str, bytes]) -> dict[str, bytes]:
    return {k: sign_bundle(m, entrypoint=ENTRY, key=KEY) for k, m in wasm.items()}


def snapshot(
    bundles: dict[str, bytes],
    default: str,
    cells: dict[str, str] | None = None,
    table: CellTable = CELLS,
) -> Snapshot:
    rs = [Resource.of(types.POLICY_BUNDLE, name, data) for name, data in bundles.items()]
    rs.append(Resource.of(types.CELL_TABLE, "cells", canonical_json(table.to_dict())))
    assignment = {"default": default, "cells": cells or {}}
    rs.append(Resource.of(types.POLICY_ASSIGNMENT, "assignment", canonical_json(assignment)))
    return Snapshot(rs)


def trusted(tmp: Path) -> Path:
    keys = tmp / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "control.pub").write_bytes(KEY.public_pem())
    return keys


@pytest.fixture
def cp() -> Iterator[tuple[SnapshotCache, XdsServer]]:
    cache = SnapshotCache()
    server = XdsServer(cache)
    server.start()
    try:
        yield cache, server
    finally:
        server.stop(grace=0)


class Running:
    """An XdsConfigSource feeding a real Engine; failures as on_failure saw them."""

    def __init__(self, tmp: Path, port: int, **kw: Any) -> None:
        cfg = XdsSourceConfig(
            address=f"127.0.0.1:{port}",
            state_dir=tmp / "lkg",
            trusted_keys=trusted(tmp),
            node_id="sidecar-test",
            **{"boot_timeout": 10.0, **kw},
        )
        self.source = XdsConfigSource(cfg, ENTRY)
        self.engine = Engine()
        self.failures: list[str] = []

    def start(self) -> Running:
        self.source.start(self.engine.apply, self.failures.append)
        return self

    def decide(self, tenant: str = "acme") -> Any:
        return self.engine.decide("GET", f"/t/{tenant}/orders", subject={**ALICE, "tenant": tenant})


@pytest.fixture
def running() -> Iterator[list[Running]]:
    made: list[Running] = []
    try:
        yield made
    finally:
        for r in made:
            r.source.stop()


def start(made: list[Running], tmp: Path, port: int, **kw: Any) -> Running:
    r = Running(tmp, port, **kw)
    made.append(r)
    return r.start()


def nack_text(server: XdsServer, type_url: str) -> str:
    return str(server.connections()[0]["types"][type_url]["last_nack"])


# -- in process -------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_sync_then_an_update_is_applied_acked_and_persisted(
    cp: Any,
    running: list[Running],
    tmp_path: Path,
    v: dict[str, str],
    signed: dict[str, bytes],
    delta: bool,
) -> None:
    cache, server = cp
    cache.set_snapshot(GROUP, snapshot({v["v1"]: signed["v1"]}, v["v1"]))
    r = start(running, tmp_path, server.port, delta=delta)
    assert r.source.booted_from == "xds"
    d = r.decide()
    assert d.allow and d.version == v["v1"] and d.cell == ACME_CELL

    snap = snapshot({v["v1"]: signed["v1"], v["v2"]: signed["v2"]}, v["v2"])
    cache.set_snapshot(GROUP, snap)
    version = snap.version(types.POLICY_ASSIGNMENT)
    assert server.wait_acked(GROUP, types.POLICY_ASSIGNMENT, version, timeout=20)
    d = r.decide()
    assert not d.allow and d.status == 403 and d.version == v["v2"]  # v2 suspends acme
    assert r.failures == []
    state = json.loads((tmp_path / "lkg" / "state" / STATE_NAME).read_bytes())
    assert state["assignment"] == {"default": v["v2"], "cells": {}}
    assert CellTable.from_dict(state["cells"], "lkg") == CELLS
    assert (tmp_path / "lkg" / "bundles" / f"{v['v2']}.bundle").read_bytes() == signed["v2"]

    # Make before break: v1 leaves the bundle set after the assignment moved off it.
    gone = snapshot({v["v2"]: signed["v2"]}, v["v2"])
    cache.set_snapshot(GROUP, gone)
    assert server.wait_acked(
        GROUP, types.POLICY_BUNDLE, gone.version(types.POLICY_BUNDLE), timeout=20
    )
    assert r.decide().version == v["v2"] and r.failures == []
    status = r.source.status()
    assert status["assignment"]["default"] == v["v2"] and status["connected"]


def test_a_canary_cell_runs_its_own_version(
    cp: Any, running: list[Running], tmp_path: Path, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    cache, server = cp
    both = {v["v1"]: signed["v1"], v["v2"]: signed["v2"]}
    cache.set_snapshot(GROUP, snapshot(both, v["v1"], {ACME_CELL: v["v2"]}))
    r = start(running, tmp_path, server.port)
    d = r.decide("acme")
    assert not d.allow and d.version == v["v2"]
    assert r.decide(OTHER).version == v["v1"]


def refused(cp: Any, r: Running, snap: Snapshot, type_url: str, v1: str) -> str:
    """Publish ``snap``; it must be NACKed on ``type_url`` while v1 keeps deciding."""
    cache, server = cp
    cache.set_snapshot(GROUP, snap)
    assert not server.wait_acked(GROUP, type_url, snap.version(type_url), timeout=20)
    text = nack_text(server, type_url)
    d = r.decide()
    assert d.allow and d.version == v1, "the old policy keeps deciding"
    assert r.failures and r.failures[-1] == text  # counted (a1_policy_load_failures_total)
    return text


@pytest.fixture
def on_v1(
    cp: Any, running: list[Running], tmp_path: Path, v: dict[str, str], signed: dict[str, bytes]
) -> Running:
    cache, server = cp
    cache.set_snapshot(GROUP, snapshot({v["v1"]: signed["v1"]}, v["v1"]))
    return start(running, tmp_path, server.port)


def test_a_tampered_bundle_is_nacked(
    cp: Any, on_v1: Running, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    bad = bytearray(signed["v2"])
    bad[len(bad) // 2] ^= 0x01  # one bit inside the module
    snap = snapshot({v["v1"]: signed["v1"], v["v2"]: bytes(bad)}, v["v2"])
    text = refused(cp, on_v1, snap, types.POLICY_BUNDLE, v["v1"])
    assert f"xds:PolicyBundle/{v['v2']}" in text and "signature does not verify" in text


def test_an_unsigned_bundle_is_nacked(
    cp: Any, on_v1: Running, v: dict[str, str], wasm: dict[str, bytes], signed: dict[str, bytes]
) -> None:
    snap = snapshot({v["v1"]: signed["v1"], v["v2"]: wasm["v2"]}, v["v2"])  # bare wasm
    text = refused(cp, on_v1, snap, types.POLICY_BUNDLE, v["v1"])
    assert text.startswith(f"xds:PolicyBundle/{v['v2']}")


def test_a_bundle_under_another_versions_name_is_nacked(
    cp: Any, on_v1: Running, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    snap = snapshot({v["v1"]: signed["v1"], "ab" * 32: signed["v2"]}, v["v1"])
    text = refused(cp, on_v1, snap, types.POLICY_BUNDLE, v["v1"])
    assert "not the version it is named for" in text


def test_a_bundle_signed_by_an_untrusted_key_is_nacked(
    cp: Any, on_v1: Running, v: dict[str, str], wasm: dict[str, bytes], signed: dict[str, bytes]
) -> None:
    forged = sign_bundle(wasm["v2"], entrypoint=ENTRY, key=SigningKey.generate())
    snap = snapshot({v["v1"]: signed["v1"], v["v2"]: forged}, v["v2"])
    assert "unknown key" in refused(cp, on_v1, snap, types.POLICY_BUNDLE, v["v1"])


def test_an_assignment_naming_a_missing_version_is_nacked(
    cp: Any, on_v1: Running, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    missing = "f" * 64
    snap = snapshot({v["v1"]: signed["v1"]}, missing)
    text = refused(cp, on_v1, snap, types.POLICY_ASSIGNMENT, v["v1"])
    assert f"names bundle version {missing[:16]}" in text


def test_an_assignment_naming_a_missing_cell_is_nacked(
    cp: Any, on_v1: Running, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    snap = snapshot({v["v1"]: signed["v1"]}, v["v1"], {"cell-9": v["v1"]})
    text = refused(cp, on_v1, snap, types.POLICY_ASSIGNMENT, v["v1"])
    assert "cells.cell-9: no such cell" in text


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"[" * 100_000, "not JSON"),  # nesting bomb
        (b'{"default": "x"}', "not a bundle version"),
        (
            b'{"default": "' + b"a" * 64 + b'", "cells": {"../x": "' + b"a" * 64 + b'"}}',
            "invalid cell name",
        ),
        (b'{"default": "' + b"a" * 64 + b'", "extra": 1}', "unknown field"),
    ],
)
def test_a_malformed_assignment_is_nacked(
    cp: Any, on_v1: Running, v: dict[str, str], signed: dict[str, bytes], value: bytes, why: str
) -> None:
    rs = [
        r
        for t in (types.POLICY_BUNDLE, types.CELL_TABLE)
        for r in snapshot({v["v1"]: signed["v1"]}, v["v1"]).resources(t).values()
    ]
    snap = Snapshot([*rs, Resource.of(types.POLICY_ASSIGNMENT, "assignment", value)])
    assert why in refused(cp, on_v1, snap, types.POLICY_ASSIGNMENT, v["v1"])


def test_more_bundles_than_the_sidecar_holds_are_nacked(
    cp: Any, running: list[Running], tmp_path: Path, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    cache, server = cp
    cache.set_snapshot(GROUP, snapshot({v["v1"]: signed["v1"]}, v["v1"]))
    r = start(running, tmp_path, server.port, max_bundles=1)
    snap = snapshot({v["v1"]: signed["v1"], v["v2"]: signed["v2"]}, v["v2"])
    assert "max_bundles of 1" in refused(cp, r, snap, types.POLICY_BUNDLE, v["v1"])


# -- last-known-good on disk ------------------------------------------------------------------


def test_boots_from_disk_and_refuses_a_tampered_disk(
    cp: Any, running: list[Running], tmp_path: Path, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    cache, server = cp
    cache.set_snapshot(GROUP, snapshot({v["v1"]: signed["v1"]}, v["v1"], {ACME_CELL: v["v1"]}))
    first = start(running, tmp_path, server.port)
    expected = first.decide()
    first.source.stop()
    server.stop(grace=0)

    again = start(running, tmp_path, server.port, boot_timeout=0.3)
    assert again.source.booted_from == "disk"
    d = again.decide()
    assert (d.allow, d.version, d.cell, d.headers) == (
        expected.allow,
        expected.version,
        expected.cell,
        expected.headers,
    )
    again.source.stop()

    stored = tmp_path / "lkg" / "bundles" / f"{v['v1']}.bundle"
    good = stored.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    stored.write_bytes(bytes(bad))
    with pytest.raises(BundleRefused, match=f"{stored}: signature does not verify"):
        Running(tmp_path, server.port, boot_timeout=0.2).start()

    stored.write_bytes(good)
    state = tmp_path / "lkg" / "state" / STATE_NAME
    state.write_bytes(
        b'{"assignment": {"default": "'
        + b"e" * 64
        + b'"}, "cells": '
        + canonical_json(CELLS.to_dict())
        + b"}"
    )
    with pytest.raises(BundleRefused, match="e" * 64):
        Running(tmp_path, server.port, boot_timeout=0.2).start()
    state.write_bytes(b"\xff not json")
    with pytest.raises(ConfigError, match=f"{state}: last-known-good is not JSON"):
        Running(tmp_path, server.port, boot_timeout=0.2).start()


def test_no_control_plane_and_no_disk_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(ConfigError) as err:
        Running(tmp_path, port, boot_timeout=0.3).start()
    text = str(err.value)
    assert text.startswith(f"no config: control plane at 127.0.0.1:{port} unreachable")
    assert text.endswith(f"no last-known-good in {tmp_path / 'lkg'}")


# -- config ----------------------------------------------------------------------------------


def test_config_selects_the_xds_source(tmp_path: Path) -> None:
    base = {"grpc_address": "127.0.0.1:1"}
    cfg = parse_config(
        {
            **base,
            "source": {
                "kind": "xds",
                "address": "cp:18000",
                "state_dir": "lkg",
                "trusted_keys": "keys",
                "delta": True,
                "boot_timeout": 0.5,
                "max_message_bytes": "8MiB",
            },
        },
        "s.yaml",
        tmp_path,
    )
    assert cfg.xds is not None and cfg.policy_module is None and cfg.cells_table is None
    assert cfg.xds.state_dir == tmp_path / "lkg" and cfg.xds.cluster == "a1-sidecar"
    assert cfg.xds.delta and cfg.xds.max_message_bytes == 8 << 20 and cfg.xds.node_id
    file_cfg = parse_config(
        {**base, "policy": {"module": "p.wasm"}, "cells": {"table": "c"}}, "s.yaml", tmp_path
    )
    assert file_cfg.xds is None

    xds = {"kind": "xds", "address": "cp:18000", "state_dir": "d", "trusted_keys": "k"}
    for bad, where in [
        ({"source": {**xds, "address": "nope"}}, "source.address"),
        ({"source": {**xds, "kind": "http"}}, "source.kind"),
        ({"source": {**xds, "port": 1}}, "source.port: unknown field"),
        ({"source": {**xds, "delta": "yes"}}, "source.delta"),
        (
            {"source": {k: x for k, x in xds.items() if k != "trusted_keys"}},
            "source.trusted_keys: missing",
        ),
        ({"source": xds, "cells": {"table": "c"}}, "cells: not used with source.kind: xds"),
        ({"source": xds, "policy": {"module": "p.wasm"}}, "policy.module: unknown field"),
        ({"source": {"kind": "file", "address": "x:1"}}, "source.address: not used"),
    ]:
        with pytest.raises(ConfigError, match=where):
            parse_config({**base, **bad}, "s.yaml", tmp_path)


# -- the real sidecar process ---------------------------------------------------------------


def start_xds_sidecar(tmp: Path, cp_port: int, boot_timeout: float = 5.0) -> Sidecar:
    g, h, m = free_port(), free_port(), free_port()
    trusted(tmp)
    (tmp / "sidecar.yaml").write_text(
        f"grpc_address: 127.0.0.1:{g}\nhttp_address: 127.0.0.1:{h}\n"
        f"metrics_address: 127.0.0.1:{m}\n"
        f"source: {{kind: xds, address: '127.0.0.1:{cp_port}', state_dir: lkg, "
        f"trusted_keys: keys, node_id: sc-e2e, boot_timeout: {boot_timeout}}}\n"
    )
    err = tmp / "stderr.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ext_proc", "--config", str(tmp / "sidecar.yaml")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=err.open("ab"),
    )
    sc = Sidecar(proc, tmp, f"127.0.0.1:{g}", h, m, err)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"sidecar exited {proc.returncode}: {sc.stderr()}")
        return sc.stderr().count("serving grpc=") > starts

    starts = sc.stderr().count("serving grpc=") if err.exists() else 0
    try:
        wait_until(ready, timeout=30, what="sidecar readiness")
    except BaseException:
        stop_sidecar(sc)
        raise
    return sc


def decision(sc: Sidecar, tenant: str = "acme") -> tuple[int, str]:
    """(gRPC status code, x-a1-policy-version): 0 is allow, 7 deny (which names no version)."""
    with grpc.insecure_channel(sc.grpc) as ch:
        resp = check(ch, "GET", f"/t/{tenant}/orders", {**ALICE, "tenant": tenant})
    hs = {h.header.key: h.header.value for h in resp.ok_response.headers}
    return resp.status.code, hs.get("x-a1-policy-version", "")


def test_the_sidecar_process_survives_an_outage_and_a_restart_during_it(
    tmp_path: Path, v: dict[str, str], signed: dict[str, bytes]
) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snapshot({v["v1"]: signed["v1"]}, v["v1"]))
    server = XdsServer(cache)
    port = server.start()
    sc = start_xds_sidecar(tmp_path, port)
    try:
        assert decision(sc) == (0, v["v1"])
        server.stop(grace=0)  # the control plane is gone: decisions continue
        for _ in range(20):
            assert decision(sc) == (0, v["v1"])
        assert stop_sidecar(sc) == 0

        sc = start_xds_sidecar(tmp_path, port, boot_timeout=0.5)  # restarted during the outage
        assert "serving last-known-good" in sc.stderr()
        assert decision(sc) == (0, v["v1"])  # identical: same verdict, same version

        cache.set_snapshot(GROUP, snapshot({v["v2"]: signed["v2"]}, v["v2"]))
        server = XdsServer(cache, port=port)  # back: the sidecar re-syncs by itself
        server.start()
        wait_until(lambda: decision(sc, OTHER) == (0, v["v2"]), timeout=30, what="re-sync")
        assert decision(sc)[0] == 7  # v2 suspends acme
    finally:
        stop_sidecar(sc)
        server.stop(grace=0)


def test_the_sidecar_process_without_any_config_exits_with_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    trusted(tmp_path)
    (tmp_path / "sidecar.yaml").write_text(
        f"grpc_address: 127.0.0.1:{free_port()}\n"
        f"source: {{kind: xds, address: '127.0.0.1:{port}', state_dir: lkg, "
        f"trusted_keys: keys, boot_timeout: 0.3}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ext_proc", "--config", str(tmp_path / "sidecar.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ext_proc: no config: control plane at 127.0.0.1:{port} unreachable")
    assert last.endswith(f"no last-known-good in {tmp_path / 'lkg'}")
