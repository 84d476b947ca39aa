"""The control plane's durable state: a rollout survives a restart, and whatever the disk
holds (tampered, swapped, missing, huge, a symlink) leads to the safe fallback with its
reason in status, never to a crash. Real ControlPlanes on free ports over a copy of
examples/platform, stopped and started again on the same state directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from control.plane.durable import STATE_NAME
from control.plane.serve import ControlPlane, PlaneOptions
from policies.bundle import generate_signing_key, verify_bundle
from policies.core.xds.client import AdsClient, Node
from policies.core.xds.types import CELL_TABLE, POLICY_ASSIGNMENT, POLICY_BUNDLE, SIDECAR_CLUSTER
from tests.test_control_plane import EXAMPLE, Recorder
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    target = tmp_path / "platform"
    shutil.copytree(EXAMPLE, target)
    return target


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "bundle-signing.key"
    path.parent.mkdir()
    generate_signing_key(path)
    return path


class Planes:
    """Starts planes on one spec, key and state directory; stops every one at the end."""

    def __init__(self, config: Path, key: Path, state: Path) -> None:
        self.config, self.key, self.state = config, key, state
        self.running: list[ControlPlane] = []

    def start(self) -> ControlPlane:
        p = ControlPlane(PlaneOptions(config=self.config, signing_key=self.key,
                                      state_dir=self.state, xds_port=0, status_port=0,
                                      ack_timeout=5.0, rollout_interval=0.2))
        self.running.append(p)
        p.start()
        return p

    def stop(self, p: ControlPlane) -> None:
        p.stop()
        self.running.remove(p)


@pytest.fixture
def planes(config: Path, key: Path, tmp_path: Path) -> Iterator[Planes]:
    ps = Planes(config, key, tmp_path / "state")
    try:
        yield ps
    finally:
        for p in list(ps.running):
            p.stop()


def assignment(p: ControlPlane) -> dict[str, Any]:
    doc = p.status()["policy"]["assignment"]
    assert doc is not None
    return doc


def new_policy(config: Path, marker: int) -> None:
    """A different policy (its data changes), hence a different bundle version."""
    path = config / "policy" / "data.json"
    data = json.loads(path.read_text())
    data["a1_test_marker"] = marker
    path.write_text(json.dumps(data))


def mid_rollout(planes: Planes) -> tuple[ControlPlane, str, str]:
    """A plane with a candidate on the canary cell; (plane, stable, candidate)."""
    p = planes.start()
    stable = assignment(p)["default"]
    new_policy(planes.config, 1)
    doc = wait_until(lambda: (a := assignment(p))["cells"] and a, "the canary assignment")
    candidate = doc["cells"]["cell-1"]
    assert doc == {"default": stable, "cells": {"cell-1": candidate}} and candidate != stable
    return p, stable, candidate


def bundle_file(state: Path, version: str) -> Path:
    return state / "bundles" / f"{version}.bundle"


# -- a rollout survives a restart -----------------------------------------------------------------


def test_a_restart_keeps_the_candidate_on_the_canary_only(planes: Planes) -> None:
    p, stable, candidate = mid_rollout(planes)
    saved = json.loads((planes.state / "state" / STATE_NAME).read_bytes())
    assert saved["rollout"]["stable"] == stable and saved["rollout"]["candidate"] == candidate
    assert bundle_file(planes.state, stable).exists()
    assert bundle_file(planes.state, candidate).exists()
    planes.stop(p)

    p = planes.start()
    assert assignment(p) == {"default": stable, "cells": {"cell-1": candidate}}
    doc = p.status()
    assert doc["durable"]["restore"]["outcome"] == "restored"
    assert doc["durable"]["restore"]["error"] is None
    assert doc["rollout"]["state"] == "canary" and doc["rollout"]["candidate"] == candidate
    assert doc["rollout"]["cells"] == {"cell-1": candidate, "cell-2": stable, "cell-3": stable}
    # what a sidecar receives: both bundles and the canary assignment, nothing else
    rec = Recorder()
    c = AdsClient(f"127.0.0.1:{p.xds_port}", Node("sidecar-after-restart", SIDECAR_CLUSTER),
                  {POLICY_BUNDLE: None, CELL_TABLE: ["cells"], POLICY_ASSIGNMENT: ["assignment"]},
                  rec, backoff_initial=0.05, backoff_max=0.2)
    c.start()
    try:
        assert c.wait_synced(20)
        assert json.loads(rec.of(POLICY_ASSIGNMENT)[-1]["assignment"]) == {
            "default": stable, "cells": {"cell-1": candidate}}
        assert set(rec.of(POLICY_BUNDLE)[-1]) == {stable, candidate}
    finally:
        c.stop()


def test_a_rolled_back_candidate_stays_refused_after_a_restart(planes: Planes) -> None:
    p, stable, candidate = mid_rollout(planes)
    p.abort()
    wait_until(lambda: assignment(p) == {"default": stable, "cells": {}}, "the rollback")
    planes.stop(p)

    p = planes.start()  # the spec still names the candidate
    assert assignment(p) == {"default": stable, "cells": {}}
    rollout = p.status()["rollout"]
    assert rollout["state"] == "idle" and rollout["rejected_version"] == candidate
    assert candidate in (rollout["last_refused"] or "")
    assert p.status()["durable"]["restore"]["outcome"] == "restored"
    # a different policy is a new candidate again, on the canary only
    new_policy(planes.config, 2)
    doc = wait_until(lambda: (a := assignment(p))["cells"] and a, "the next canary")
    assert doc["default"] == stable and set(doc["cells"]) == {"cell-1"}
    assert doc["cells"]["cell-1"] not in (stable, candidate)


def test_without_saved_state_the_spec_policy_goes_everywhere(planes: Planes) -> None:
    p = planes.start()
    doc = p.status()
    assert assignment(p)["cells"] == {}
    assert doc["durable"]["restore"]["outcome"] == "none"
    assert doc["durable"]["saved_at"] is not None and doc["durable"]["save_error"] is None


# -- whatever the disk holds: the safe fallback, the reason in status ------------------------------


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _other_key_bundle(state: Path, stable: str, candidate: str) -> None:
    """The stable bundle's file replaced by a bundle signed with a key the plane never had."""
    from policies.bundle import SigningKey, TrustedKeys, load_signing_key, sign_bundle
    own = load_signing_key(state.parent / "keys" / "bundle-signing.key")  # the fixture's
    real = verify_bundle(bundle_file(state, stable).read_bytes(), TrustedKeys([own.public_key()]))
    forged = sign_bundle(real.module, entrypoint=real.entrypoint, key=SigningKey.generate())
    bundle_file(state, stable).write_bytes(forged)


def _swapped(state: Path, stable: str, candidate: str) -> None:
    shutil.copy(bundle_file(state, candidate), bundle_file(state, stable))


def _state_file(state: Path) -> Path:
    return state / "state" / STATE_NAME


SPEC_FALLBACKS: dict[str, tuple[Callable[[Path, str, str], None], str]] = {
    "state not JSON": (lambda s, a, b: _state_file(s).write_bytes(b"{\xff not json"), "not JSON"),
    "state deeply nested": (lambda s, a, b: _state_file(s).write_bytes(b"[" * 60_000),
                            "not JSON"),
    "state huge": (lambda s, a, b: _state_file(s).write_bytes(b" " * 200_000),
                   "more than 65536 bytes"),
    "state wrong types": (lambda s, a, b: _state_file(s).write_text(json.dumps(
        {"format": 1, "rollout": {"stable": 7}})), "rollout.stable"),
    "state bad version": (lambda s, a, b: _state_file(s).write_text(json.dumps(
        {"format": 1, "rollout": {"stable": "../../etc/passwd"}})), "not a bundle version"),
    "state bad rejected": (lambda s, a, b: _state_file(s).write_text(json.dumps(
        {"format": 1, "rollout": {"stable": a, "rejected": ["x"]}})), "rejected"),
    "state symlink": (lambda s, a, b: (_state_file(s).unlink(), _state_file(s).symlink_to(
        "/etc/hostname")), "symlink"),
    "stable bundle tampered": (lambda s, a, b: _flip_a_byte(bundle_file(s, a)), "stable"),
    "stable bundle missing": (lambda s, a, b: bundle_file(s, a).unlink(), "stable"),
    "stable bundle swapped": (_swapped, "not " + "{stable}"),
    "stable bundle forged": (_other_key_bundle, "unknown key"),
}


@pytest.mark.parametrize("name", sorted(SPEC_FALLBACKS))
def test_a_refused_state_falls_back_to_the_spec_policy(planes: Planes, name: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    breakage, expected = SPEC_FALLBACKS[name]
    p, stable, candidate = mid_rollout(planes)
    planes.stop(p)
    breakage(planes.state, stable, candidate)

    p = planes.start()  # never a crash
    restore = p.status()["durable"]["restore"]
    assert restore["outcome"] == "spec", restore
    assert expected.replace("{stable}", stable[:16]) in restore["error"], restore["error"]
    assert "\n" not in restore["error"]
    # the spec's policy (the candidate) everywhere: nothing to roll out against
    assert assignment(p) == {"default": candidate, "cells": {}}
    assert any("refused" in r.getMessage() and "spec's policy" in r.getMessage()
               for r in caplog.records)
    # and the state on disk is sound again for the next restart
    planes.stop(p)
    p = planes.start()
    assert p.status()["durable"]["restore"]["outcome"] == "restored"
    assert assignment(p) == {"default": candidate, "cells": {}}


def test_a_refused_candidate_bundle_falls_back_to_the_stable_version(planes: Planes) -> None:
    p, stable, candidate = mid_rollout(planes)
    planes.stop(p)
    _flip_a_byte(bundle_file(planes.state, candidate))
    shutil.copy(EXAMPLE / "policy" / "data.json", planes.config / "policy" / "data.json")

    p = planes.start()  # the spec is back at the stable policy
    restore = p.status()["durable"]["restore"]
    assert restore["outcome"] == "stable" and "candidate" in restore["error"]
    assert assignment(p) == {"default": stable, "cells": {}}


def test_an_unusable_state_directory_is_a_config_error(config: Path, key: Path,
                                                       tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state").symlink_to(tmp_path / "elsewhere")
    p = ControlPlane(PlaneOptions(config=config, signing_key=key, state_dir=tmp_path / "state",
                                  xds_port=0, status_port=0))
    with pytest.raises(Exception) as info:
        p.start()
    assert getattr(info.value, "code", None) == 2 and "symlink" in str(info.value)
    p.stop()


# -- stop after a failed start; the scrape's targets ---------------------------------------------


def _stop_returns(p: ControlPlane) -> bool:
    t = threading.Thread(target=p.stop, daemon=True)
    t.start()
    t.join(10)  # a liveness bound (XdsServer.stop() of a failed start waits 30 s), not a timing
    return not t.is_alive()


@pytest.mark.parametrize("which", ["xds", "status"])
def test_stop_after_a_failed_start_returns(config: Path, key: Path, which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"xds_port": port, "status_port": 0} if which == "xds" else {
            "xds_port": 0, "status_port": port}
        p = ControlPlane(PlaneOptions(config=config, signing_key=key, **ports))
        with pytest.raises(Exception) as info:
            p.start()
        assert f"127.0.0.1:{port}" in str(info.value)
        assert _stop_returns(p)


def test_scrape_targets_come_from_sidecar_nodes_only(planes: Planes) -> None:
    p = planes.start()
    clients = [AdsClient(f"127.0.0.1:{p.xds_port}",
                         Node(name, cluster, {"a1.metrics_url": url}),
                         {CELL_TABLE: ["cells"]}, Recorder(), backoff_initial=0.05,
                         backoff_max=0.2)
               for name, cluster, url in [
                   ("sidecar-1", SIDECAR_CLUSTER, "http://127.0.0.1:10101/metrics"),
                   ("sidecar-2", SIDECAR_CLUSTER, "http://169.254.169.254/metrics"),  # SSRF
                   ("edge-1", "a1-edge", "http://127.0.0.1:10102/metrics")]]
    for c in clients:
        c.start()
    try:
        assert all(c.wait_synced(20) for c in clients)
        assert sorted(n["node_id"] for n in p.server.nodes(SIDECAR_CLUSTER)) == [
            "sidecar-1", "sidecar-2"]
        assert p._scrape_targets() == ["http://127.0.0.1:10101/metrics"]
    finally:
        for c in clients:
            c.stop()


# -- a1 control serve: --signing-key and --state-dir -----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("with_state_dir", [False, True])
def test_serve_keeps_state_beside_the_key_or_in_state_dir(config: Path, key: Path,
                                                          tmp_path: Path,
                                                          with_state_dir: bool) -> None:
    state = tmp_path / "state" if with_state_dir else key.parent
    status = _free_port()
    extra = ["--state-dir", str(state)] if with_state_dir else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "a1.cli", "control", "serve", "--config", str(config),
         "--signing-key", str(key), *extra, "--xds-port", "0", "--status-port", str(status)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        def up() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{status}/status", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                assert proc.poll() is None, proc.communicate()
                return None
        doc = wait_until(up, "the status endpoint", timeout=60)
        assert doc["durable"]["directory"] == str(state)
        assert (state / "state" / STATE_NAME).exists()
        assert not (state / "bundle-signing.key").exists() or not with_state_dir
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_needs_a_key_or_a_state_dir(config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "a1.cli", "control", "serve", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "--state-dir" in proc.stderr
    assert "Traceback" not in proc.stderr
