"""Where the planes are, and what they say: the readings every config fault takes.

Where things are is read from the target's launcher (the control plane's and
the sidecar's command lines), so any ``Target`` with those processes works. The
readings are the control plane's ``/status`` and the ``/metrics`` of either plane,
each read bounded in bytes: NACK counts against the subscriptions that could NACK,
and whether every subscriber has ACKed what the plane publishes.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from conformance.nemesis.base import Target
from policies.core.errors import ConfigError, one_line

MAX_ANSWER = 16 << 20  # bytes read from a status or metrics endpoint
HTTP_TIMEOUT = 5.0

BUNDLE_TYPES = ("PolicyBundle", "PolicyAssignment")


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


@dataclass(frozen=True)
class Plane:
    """The control plane as the target launched it."""

    status_url: str  # http://HOST:PORT (GET /status, /metrics)
    xds_address: str  # unix:/path or HOST:PORT
    signing_key: Path
    process: str = "control"


def plane(target: Target) -> Plane:
    """Read the control plane's addresses from its command line (KeyError: none runs)."""
    argv = [str(a) for a in target.launcher[Plane.process].spec.argv]
    host = _flag(argv, "--status-host") or "127.0.0.1"
    port = _flag(argv, "--status-port") or 18001
    status = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    sock = _flag(argv, "--xds-socket")
    xds = (f"unix:{sock}" if sock else
           f"{_flag(argv, '--host') or '127.0.0.1'}:{_flag(argv, '--xds-port') or 18000}")
    key = _flag(argv, "--signing-key")
    if key is None:
        key = str(Path(_flag(argv, "--state-dir") or ".") / "bundle-signing.key")
    return Plane(status, xds, Path(key))


def sidecar_metrics_url(target: Target) -> str | None:
    """The sidecar's /metrics, from the config file on its command line (None: no sidecar
    or no metrics address)."""
    try:
        argv = [str(a) for a in target.launcher["sidecar"].spec.argv]
    except KeyError:
        return None
    config = _flag(argv, "--config")
    if config is None:
        return None
    doc = yaml.safe_load(Path(config).read_text())
    address = doc.get("metrics_address") if isinstance(doc, dict) else None
    return f"http://{address}/metrics" if isinstance(address, str) else None


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
        data: bytes = resp.read(MAX_ANSWER + 1)
    if len(data) > MAX_ANSWER:
        raise ValueError(f"{url}: answer larger than {MAX_ANSWER} bytes")
    return data


def status(p: Plane) -> dict[str, Any]:
    """The control plane's status document."""
    doc = json.loads(_get(f"{p.status_url}/status"))
    if not isinstance(doc, dict):
        raise ValueError(f"{p.status_url}/status: not a JSON object")
    return doc


def metric_values(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample ``name`` (full sample name, e.g. ``a1_xds_nacks_total``) at ``url``."""
    text = _get(url).decode("utf-8", "replace")
    return [(dict(s.labels), float(s.value)) for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == name]


def metric_sum(url: str, name: str) -> float:
    """The sum of ``name``'s samples (0 if none)."""
    return sum(v for _, v in metric_values(url, name))


def sidecar_sum(url: str | None, name: str) -> float:
    """``metric_sum`` at the sidecar's ``url``, 0 when it has no metrics address or cannot
    be read: a baseline, which must not fail the fault that takes it."""
    if url is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError):
        return metric_sum(url, name)
    return 0.0


def nack_total(url: str, types: Iterable[str]) -> int:
    """``a1_xds_nacks_total`` summed over the short type names ``types``."""
    wanted = set(types)
    return int(sum(v for ls, v in metric_values(url, "a1_xds_nacks_total")
                   if ls.get("type") in wanted))


def subscriptions(clients: Iterable[dict[str, Any]], types: Iterable[str]) -> int:
    """(stream, type) subscriptions to ``types``: how many NACKs one bad version may get."""
    wanted = set(types)
    return sum(1 for c in clients for t in (c.get("types") or {}) if t in wanted)


def client_nacks(clients: Iterable[dict[str, Any]], types: Iterable[str],
                 needle: str = "") -> list[str]:
    """``node_id:Type: text`` of each subscription whose last NACK contains ``needle``."""
    out = []
    for c in clients:
        for t, st in (c.get("types") or {}).items():
            text = st.get("last_nack") or ""
            if t in set(types) and st.get("nacks") and needle in text:
                out.append(f"{c.get('node_id')}:{t}: {one_line(text, 300)}")
    return out



def serves_spec(p: Plane, spec_dir: Path) -> bool:
    """The plane serves the spec directory as it is now, every phase published."""
    from control.spec import load_spec

    try:
        digest = load_spec(spec_dir).digest
    except ConfigError:
        return False
    st = status(p)
    last = st.get("last_transition") or {}
    return bool(st.get("spec", {}).get("digest") == digest and last.get("digest") == digest
                and not last.get("error") and last.get("done") == last.get("phases"))



def _acked(st: dict[str, Any], types: Iterable[str]) -> bool:
    """In status ``st``: something subscribes to ``types``, and every subscriber has
    ACKed the published version (a sidecar still reconnecting is not "every")."""
    want = st.get("snapshot", {}).get("versions", {})
    held = [t.get("acked_version") == want.get(name)
            for c in st.get("clients", []) for name, t in (c.get("types") or {}).items()
            if name in set(types)]
    return bool(held) and all(held)



def no_candidate(p: Plane) -> bool:
    """No candidate: every cell on the stable version, and every subscriber ACKed it."""
    st = status(p)
    rollout = st.get("rollout") or {}
    return rollout.get("candidate") is None and _acked(st, BUNDLE_TYPES)

