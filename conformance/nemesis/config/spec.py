"""Spec faults: a platform.yaml the control plane refuses, and one Envoy NACKs.

- ``config:invalid-spec:syntax`` / ``:schema``: a line appended to platform.yaml;
  the control plane refuses it (status ``last_error`` at file:line:col).
- ``config:envoy-nack:access-log``: an access log under a directory that cannot
  exist; A1 cannot check Envoy's filesystem, Envoy NACKs the listeners.
"""

from __future__ import annotations

import time
from typing import Any

from conformance.harness.waiting import poll
from conformance.nemesis.base import Target
from conformance.nemesis.config.fault import (
    RECOVER,
    SPEC_FILE,
    ConfigFault,
    SavedFiles,
    _make,
    _unavailable,
    dump_spec,
    spec_document,
)
from conformance.nemesis.config.plane import nack_total, plane, serves_spec, status, subscriptions
from policies.core.errors import one_line

# A directory no process can create (procfs): Envoy cannot open a file under it.
UNOPENABLE_LOG = "/proc/a1-conformance-nack/access.log"

# Appended to platform.yaml: a flow sequence closed by the wrong bracket (syntax), or
# an unknown top-level field (schema). The loader reports both at this line.
BAD_LINES = {"syntax": ("a1_conformance_invalid: [1, 2}", "}"),
             "schema": ("a1_conformance_invalid: true", "a")}


def invalid_spec(target: Target, kind: str = "syntax") -> ConfigFault:
    """platform.yaml made invalid by one appended line (``kind``: syntax | schema).

    Expect: the control plane refuses the change, keeps serving its last snapshot,
    and shows ``last_error`` at the appended line and column; repair restores the
    file's exact bytes."""
    if kind not in BAD_LINES:
        raise ValueError(f"invalid_spec: kind must be one of {', '.join(BAD_LINES)}")
    line_text, marker = BAD_LINES[kind]
    spec_file = target.spec_dir / SPEC_FILE
    files = SavedFiles()
    where: dict[str, Any] = {}
    unavailable = _unavailable(target, "control")
    p = None if unavailable else plane(target)

    def inject() -> None:
        assert p is not None
        text = spec_file.read_bytes()
        if text and not text.endswith(b"\n"):
            text += b"\n"
        where.update(line=text.count(b"\n") + 1, column=line_text.index(marker) + 1,
                     at=time.time(), errors=status(p).get("config_errors", 0))
        files.write(spec_file, text + line_text.encode() + b"\n")

    def read_visible() -> tuple[bool, str]:
        assert p is not None
        err = status(p).get("last_error") or {}
        place = f"{err.get('file')}:{err.get('line')}:{err.get('column')}"
        seen = (bool(err) and str(err.get("file", "")).endswith(SPEC_FILE)
                and err.get("line") == where.get("line")
                and err.get("column") == where.get("column")
                and float(err.get("at") or 0) >= where.get("at", 0) - 1)
        return seen, (f"control plane {p.status_url}/status last_error ({place}): "
                      f"{one_line(err.get('message') or 'none', 300)}")

    def undo() -> None:
        files.restore()
        assert p is not None
        poll(lambda: serves_spec(p, target.spec_dir), timeout=RECOVER,
             what="the control plane to serve the restored spec")

    return _make(f"config:invalid-spec:{kind}",
                 "the control plane refuses the change (status last_error names "
                 "platform.yaml:line:col), the old snapshot keeps serving, no request fails",
                 inject, undo, read_visible, lambda: (0, 0), unavailable)


def envoy_nack(target: Target) -> ConfigFault:
    """An access log path under a directory that cannot exist: A1's checks pass (the path
    is on Envoy's host, which the control plane cannot see), Envoy 1.40 NACKs the listeners
    ("unable to open file").

    Expect: Envoy keeps its old listeners, the NACK shows in status (Envoy's row,
    ``a1_xds_nacks_total{type="Listener"}``), the version is NACKed once per
    subscriber and never re-sent; repair restores the spec and Envoy ACKs again."""
    spec_file = target.spec_dir / SPEC_FILE
    files = SavedFiles()
    base: dict[str, Any] = {}
    unavailable = _unavailable(target, "control")
    p = None if unavailable else plane(target)
    types = ("Listener",)

    def inject() -> None:
        assert p is not None
        doc = spec_document(target.spec_dir)
        doc.setdefault("listeners", {})["access_log"] = UNOPENABLE_LOG
        base["nacks"] = nack_total(f"{p.status_url}/metrics", types)
        files.write(spec_file, dump_spec(doc))

    def read_visible() -> tuple[bool, str]:
        assert p is not None
        st = status(p)
        bad = st.get("snapshot", {}).get("versions", {}).get("Listener")
        rows = [f"{c.get('node_id')}: {one_line(t.get('last_nack') or '', 300)}"
                for c in st.get("clients", [])
                for name, t in (c.get("types") or {}).items()
                if name == "Listener" and t.get("nacks") and t.get("last_nack_version") == bad]
        return bool(rows), (f"control plane {p.status_url}/status clients[].types.Listener"
                            f".last_nack: {'; '.join(rows) or 'none for the published version'}")

    def read_nacks() -> tuple[int, int]:
        assert p is not None
        n = nack_total(f"{p.status_url}/metrics", types) - base.get("nacks", 0)
        return n, subscriptions(status(p).get("clients", []), types)

    def undo() -> None:
        files.restore()
        assert p is not None
        poll(lambda: serves_spec(p, target.spec_dir) and not read_visible()[0],
             timeout=RECOVER, what="Envoy to ACK the restored listeners")

    return _make("config:envoy-nack:access-log",
                 "Envoy NACKs the listeners (unopenable access log) and keeps serving the old "
                 "ones; the NACK shows in status; NACKed once per subscriber, never re-sent",
                 inject, undo, read_visible, read_nacks, unavailable)
