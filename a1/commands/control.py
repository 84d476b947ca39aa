"""``a1 control serve``, ``a1 status``, ``a1 cells add|remove`` and ``a1 policy rollout``.

``serve`` runs the control plane in the foreground; the others are its operator
interface: ``status`` and ``policy rollout`` talk to the running plane's HTTP
status endpoint, and ``cells add|remove`` edit the spec directory, which the
running plane picks up through its watcher (docs/control-plane.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from a1.argtypes import port
from a1.commands import relay
from control.plane.status import ACTION_HEADER
from policies.core.errors import UserError, one_line

DEFAULT_CONTROL = "http://127.0.0.1:18001"
MAX_ANSWER = 16 * 1024 * 1024  # bytes of a status answer the CLI reads
HTTP_TIMEOUT = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    control = sub.add_parser("control", help="the xDS control plane")
    csub = control.add_subparsers(dest="control_command", required=True, metavar="COMMAND")
    serve = csub.add_parser(
        "serve", help="serve the platform spec in DIR over ADS (xDS) until Ctrl-C",
        description="Load, compile, sign and publish the spec in --config; watch it and "
        "publish every valid change; serve status on --status-port (loopback).")
    serve.add_argument("--config", type=Path, required=True, metavar="DIR",
                       help="platform spec directory (platform.yaml)")
    serve.add_argument("--xds-port", type=_port0, default=18000, help="ADS port (default 18000)")
    serve.add_argument("--status-port", type=_port0, default=18001,
                       help="HTTP status port (default 18001)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address the ADS server binds (default 127.0.0.1)")
    serve.add_argument("--xds-socket", type=Path, metavar="PATH",
                       help="serve ADS on this Unix socket (mode 0600: only this user's "
                       "processes may connect) instead of --host/--xds-port")
    serve.add_argument("--status-host", default="127.0.0.1",
                       help="address the status endpoint binds (default 127.0.0.1: it has no "
                       "authentication and can promote or abort a rollout)")
    serve.add_argument("--scrape-host", action="append", default=[], type=_scrape_host,
                       metavar="HOST", help="a host beyond loopback whose sidecar metrics the "
                       "rollout may scrape (repeatable; sidecars announce their URL over xDS, "
                       "so only hosts named here are ever fetched)")
    serve.add_argument("--signing-key", type=Path, metavar="PATH",
                       help="ed25519 bundle signing key (PEM); its .pub is what sidecars "
                       "trust (default: DIR/bundle-signing.key of --state-dir, created if "
                       "missing)")
    serve.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="where the rollout and its bundles are kept across restarts "
                       "(default: the directory of --signing-key); give at least one of the two")
    serve.add_argument("--ack-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="how long each phase of a topology change waits for ACKs "
                       "(default 10)")
    serve.add_argument("--drain", type=float, default=1.0, metavar="SECONDS",
                       help="how long each ACKed intermediate phase is held before the next, "
                       "so requests routed by it finish (default 1; at least the upstream "
                       "timeout where requests are long)")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    serve.set_defaults(func=cmd_serve)
    relay.register(csub)

    status = sub.add_parser("status", help="show the control plane's clients, versions, "
                            "NACKs and rollout")
    _control_url(status)
    status.add_argument("--json", action="store_true", help="print the status document as is")
    status.set_defaults(func=cmd_status)


def register_cells(cells_sub: argparse._SubParsersAction) -> None:
    """``a1 cells add|remove``: called by a1/commands/stack.py on its ``cells`` parser."""
    add = cells_sub.add_parser("add", help="add a cell to the platform spec",
                               description="Append a cell to platform.yaml (only about "
                               "1/(N+1) of the buckets move, all to it). A running control "
                               "plane publishes the change make-before-break.")
    add.add_argument("name")
    add.add_argument("--endpoint", action="append", required=True, metavar="HOST:PORT",
                     help="an upstream of the cell (repeatable)")
    _config_dir(add)
    add.set_defaults(func=cmd_cells_add)
    remove = cells_sub.add_parser("remove", help="remove a cell from the platform spec",
                                  description="Remove a cell from platform.yaml: its buckets "
                                  "move to the others, then its cluster goes.")
    remove.add_argument("name")
    _config_dir(remove)
    remove.set_defaults(func=cmd_cells_remove)


def register_rollout(policy_sub: argparse._SubParsersAction) -> None:
    """``a1 policy rollout status|promote|abort``: called by a1/commands/policy.py."""
    rollout = policy_sub.add_parser("rollout", help="the staged policy rollout of a running "
                                    "control plane")
    rsub = rollout.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    for name, text in (("status", "show the rollout state"),
                       ("promote", "promote the version under rollout now, to every cell"),
                       ("abort", "roll back to the previous version")):
        p = rsub.add_parser(name, help=text)
        _control_url(p)
        p.add_argument("--json", action="store_true", help="print the answer as JSON")
        p.set_defaults(func=cmd_rollout, action=name)


def _port0(text: str) -> int:
    """A TCP port, or 0 for any free port."""
    return 0 if text.strip() == "0" else port(text)


def _control_url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--control", default=DEFAULT_CONTROL, metavar="URL",
                   help=f"the control plane's status endpoint (default {DEFAULT_CONTROL})")


def _config_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=Path("."), metavar="DIR",
                   help="platform spec directory (default: the current directory)")


# -- a1 control serve --------------------------------------------------------------------


def _scrape_host(text: str) -> str:
    """An IP address or a host name, in one canonical (lower-case, unbracketed) form."""
    import ipaddress

    from policies.core.urls import host_error

    host = text.strip().lower().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    why = host_error(host)
    if why:
        raise argparse.ArgumentTypeError(why)
    return host


def cmd_serve(args: argparse.Namespace) -> int:
    from control.plane.serve import ControlPlane, PlaneOptions
    from policies.bundle import ensure_signing_key

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.ack_timeout <= 0 or args.ack_timeout > 600:
        raise UserError("--ack-timeout: must be in (0, 600] seconds", 2)
    if not 0 <= args.drain <= 600:
        raise UserError("--drain: must be in [0, 600] seconds", 2)
    key, state_dir = args.signing_key, args.state_dir
    if key is None and state_dir is None:
        raise UserError("control serve: give --signing-key PATH or --state-dir DIR (or both)", 2)
    if state_dir is not None:
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise UserError(f"--state-dir: {state_dir}: {err.strerror}", 2) from None
    if key is None:
        assert state_dir is not None
        key = state_dir / "bundle-signing.key"
        ensure_signing_key(key)
    if state_dir is None:  # the key's directory: a1 up's STATE/control, private already
        state_dir = key.parent
    host = args.host
    if args.xds_socket is not None:
        from policies.core.unix_socket import unix_path_error

        socket_path = str(args.xds_socket.absolute())
        why = unix_path_error(socket_path)
        if why is not None:
            raise UserError(f"--xds-socket: {why}", 2)
        host = f"unix:{socket_path}"
    options = PlaneOptions(config=args.config, signing_key=key, state_dir=state_dir,
                           host=host,
                           xds_port=args.xds_port, status_host=args.status_host,
                           status_port=args.status_port, ack_timeout=args.ack_timeout,
                           drain=args.drain, scrape_hosts=tuple(args.scrape_host))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    plane = ControlPlane(options)
    try:
        plane.start()
        print(f"a1 control: serving {args.config} over ADS on {plane.xds_address}, status "
              f"{plane.status_url}/status (spec {plane.spec_digest[:12]})", flush=True)
        while not stop.wait(1.0):
            pass
        print("a1 control: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        plane.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- talking to a running control plane --------------------------------------------------


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"--control: not an http(s) URL: {url!r}", 2)
    return url.rstrip("/")


def request(control: str, path: str, method: str = "GET") -> Any:
    """The JSON answer of the control plane at ``control``; one-line UserError otherwise."""
    base = _check_url(control)
    req = urllib.request.Request(base + path, method=method,
                                 data=b"" if method == "POST" else None,
                                 headers={ACTION_HEADER: "1"} if method == "POST" else {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            body = resp.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as err:
        raise UserError(f"control plane at {base}: {_error_text(err)}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror
        raise UserError(f"control plane at {base} unreachable ({one_line(reason, 500)})") from None
    if len(body) > MAX_ANSWER:
        raise UserError(f"control plane at {base}: answer larger than {MAX_ANSWER} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise UserError(f"control plane at {base}: {path} did not answer JSON") from None


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(err.read(64 * 1024))
        text = doc["error"] if isinstance(doc, dict) and "error" in doc else str(doc)
    except (ValueError, OSError):
        text = err.reason
    return f"HTTP {err.code}: {one_line(text, 500)}"


def cmd_status(args: argparse.Namespace) -> int:
    doc = request(args.control, "/status")
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(format_status(doc))
    return 0


def _short(version: object) -> str:
    return str(version)[:8] if version else "-"


def _ago(ts: object) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    return f"{max(0.0, time.time() - ts):.0f}s ago"


def format_status(doc: dict[str, Any]) -> str:
    """The status document as an operator reads it: header, clients table, errors, rollout."""
    lines = [f"control plane  xDS {doc.get('xds', {}).get('address', '?')}  "
             f"spec {_short(doc.get('spec', {}).get('digest'))}  "
             f"policy {_short(doc.get('policy', {}).get('version'))}"]
    snap = doc.get("snapshot") or {}
    versions = snap.get("versions") or {}
    types = list(versions)
    if versions:
        lines.append("published      " + "  ".join(f"{t} {_short(v)}" for t, v in versions.items()))
    err = doc.get("last_error")
    if err:
        lines.append(f"last error     {one_line(err.get('message'), 300)} ({_ago(err.get('at'))})")
    tr = doc.get("transition")
    if tr:
        lines.append(f"transition     phase {tr.get('phase')} of {tr.get('phases')}, waiting for "
                     f"{', '.join(tr.get('waiting_for') or []) or '-'}")
    last = doc.get("last_transition")
    if last and last.get("error"):
        lines.append(f"stopped        {one_line(last['error'], 300)}")
    clients = doc.get("clients") or []
    lines.append("")
    lines.append(f"clients ({len(clients)})")
    if clients:
        header = ["NODE", "CLUSTER", "PROTO", *types]
        rows = [header]
        for c in clients:
            ctypes = c.get("types") or {}
            row = [str(c.get("node_id") or "?"), str(c.get("node_cluster") or "-"),
                   str(c.get("protocol") or "-")]
            for t in types:
                st = ctypes.get(t)
                if st is None:
                    row.append("")
                    continue
                cell = _short(st.get("acked_version"))
                if st.get("acked_version") and st.get("acked_version") == versions.get(t):
                    cell += " ok"
                if st.get("nacks"):
                    cell += f" NACK×{st['nacks']}"
                row.append(cell)
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        nacks = [(c, t, st) for c in clients for t, st in (c.get("types") or {}).items()
                 if st.get("last_nack")]
        if nacks:
            lines.append("")
            lines.append("NACKs")
            for c, t, st in nacks:
                lines.append(f"  {c.get('node_id')} {t} {_short(st.get('last_nack_version'))}: "
                             f"{one_line(st.get('last_nack'), 300)}")
    rollout = doc.get("rollout")
    if rollout is not None:
        lines.append("")
        lines.append("rollout " + format_rollout(rollout))
    return "\n".join(lines)


def format_rollout(rollout: Any) -> str:
    """The rollout status (control.rollout's ``status()``) in a few lines."""
    if not isinstance(rollout, dict):
        return one_line(rollout)
    if "rollout" in rollout and isinstance(rollout["rollout"], dict):  # an action's answer
        return f"{rollout.get('action', '')}: " + format_rollout(rollout["rollout"])
    lines = [f"state={rollout.get('state')} stable={_short(rollout.get('stable'))} "
             f"candidate={_short(rollout.get('candidate'))} "
             f"step={rollout.get('step', '-')}/{rollout.get('steps', '-')}"]
    if rollout.get("message"):
        lines.append(f"  {one_line(rollout['message'], 300)}")
    cells = rollout.get("cells")
    if isinstance(cells, dict) and cells:
        lines.append("  cells     " + ", ".join(f"{c} {_short(v)}" for c, v in cells.items()))
    observed = rollout.get("observed")
    if isinstance(observed, dict):
        for cell, o in observed.items():
            if isinstance(o, dict):
                lines.append(f"  observed  {cell}: {o.get('requests')} requests, error rate "
                             f"{o.get('error_rate')}, deny rate {o.get('deny_rate')}")
    for key in ("last_breach", "last_refused"):
        if rollout.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {one_line(rollout[key], 300)}")
    return "\n".join(lines)


# -- a1 policy rollout ---------------------------------------------------------------------


def cmd_rollout(args: argparse.Namespace) -> int:
    if args.action == "status":
        doc = request(args.control, "/status").get("rollout")
    else:
        doc = request(args.control, f"/rollout/{args.action}", method="POST")
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(format_rollout(doc))
    return 0


# -- a1 cells add | remove -------------------------------------------------------------------


def cmd_cells_add(args: argparse.Namespace) -> int:
    from control.spec import add_cell

    add_cell(args.config, args.name, list(args.endpoint))
    print(f"{args.config}: added cell {args.name} ({', '.join(args.endpoint)}); a running "
          "control plane publishes it")
    return 0


def cmd_cells_remove(args: argparse.Namespace) -> int:
    from control.spec import remove_cell

    remove_cell(args.config, args.name)
    print(f"{args.config}: removed cell {args.name}; a running control plane drains it first")
    return 0

