"""Config faults: bad input the platform must refuse while the old config keeps serving.

Each builder returns a ``ConfigFault`` (a ``Fault`` with two readings the I-8
checker needs): ``visible()`` says whether, and where, the rejection shows to an
operator (the control plane's status, the sidecar's metrics), and ``nacks()``
counts the NACKs of the rejected version against the subscriptions that could
NACK it, so a server that re-sends NACKed config is caught. ``repair`` takes both
readings just before it undoes the fault (``observed``), because some of them
live in a process the repair replaces.

- ``config:invalid-spec:syntax`` / ``:schema``: a line appended to platform.yaml;
  the control plane refuses it (status ``last_error`` at file:line:col).
- ``config:envoy-nack:access-log``: an access log under a directory that cannot
  exist; A1 cannot check Envoy's filesystem, Envoy NACKs the listeners.
- ``config:bundle:wrongly-signed``: the real control plane restarted with a key
  the sidecar does not trust; the sidecar NACKs the bundles.
- ``config:bundle:corrupted`` / ``:unsigned``: an impostor ADS server on the
  control plane's address; the sidecar NACKs the bundle.
- ``config:policy:fuel`` / ``:memory``: a policy that compiles, loads and traps at
  evaluation; the canary cell fails closed (500), the rollout rolls it back.

Why an impostor for corrupted and unsigned bundles: the real control plane signs
everything it compiles, so only something else on its address (a compromised or
spoofed control plane, a corrupting path) can serve such a bundle; that is the
threat the signature defends against. Corrupting the sidecar's last-known-good
instead would only test a boot that refuses to start, a data-plane outage.

Where things are is read from the target's launcher (the control plane's and
the sidecar's command lines), so any ``Target`` with those processes works.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from conformance.harness.waiting import NotConverged, poll
from conformance.nemesis.base import Fault, Target
from policies.core.errors import ConfigError, one_line

SPEC_FILE = "platform.yaml"
MAX_ANSWER = 16 << 20  # bytes read from a status or metrics endpoint
SETTLE = 20.0  # seconds inject waits for the fault to show (it never fails on it)
RECOVER = 60.0  # seconds repair waits for the stack to be back (NotConverged after)
# A directory no process can create (procfs): Envoy cannot open a file under it.
UNOPENABLE_LOG = "/proc/a1-conformance-nack/access.log"
HTTP_TIMEOUT = 5.0

Reading = Callable[[], tuple[bool, str]]


# -- where the planes are ------------------------------------------------------------------


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


def metric_sum(url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    return sum(v for ls, v in metric_values(url, name)
               if all(ls.get(k) == want for k, want in labels.items()))


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


# -- the fault shape -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFault(Fault):
    """A config fault, and how to see its rejection.

    ``visible()`` → (seen, where): the place an operator sees the rejection, and what
    it says. ``nacks()`` → {"nacks", "subscribers"}: NACKs of the rejected version
    since inject, and the (stream, type) subscriptions that could send one.
    ``affected_cells``: cells whose tenants are under the bad config (they may fail,
    closed); every other tenant must be served throughout. ``observed`` holds the
    ``rejection_visible`` and ``xds_nacks`` observation values, taken by ``repair``
    before it undoes the fault.
    """

    read_visible: Reading = lambda: (False, "not measured")
    read_nacks: Callable[[], tuple[int, int]] = lambda: (0, 0)
    affected_cells: tuple[str, ...] = ()
    observed: dict[str, Any] = field(default_factory=dict)

    def visible(self) -> tuple[bool, str]:
        try:
            return self.read_visible()
        except (OSError, ValueError, KeyError) as err:
            return False, f"cannot read: {one_line(err, 200)}"

    def nacks(self) -> dict[str, Any]:
        try:
            n, subs = self.read_nacks()
        except (OSError, ValueError, KeyError) as err:
            return {"fault": self.name, "nacks": None, "subscribers": None,
                    "error": one_line(err, 200)}
        return {"fault": self.name, "nacks": n, "subscribers": subs}

    def measure(self) -> dict[str, Any]:
        """Both observation values now: {"rejection_visible": ..., "xds_nacks": ...}."""
        seen, where = self.visible()
        return {"rejection_visible": {"fault": self.name, "visible": seen, "where": where},
                "xds_nacks": self.nacks()}

    def observations(self) -> list[tuple[str, Any]]:
        """(name, value) pairs to record: as measured at repair, else now."""
        values = self.observed or self.measure()
        return [(k, values[k]) for k in ("rejection_visible", "xds_nacks")]


def _unavailable(target: Target, *needs: str) -> str | None:
    names = target.launcher.names()
    missing = [n for n in needs if n not in names]
    if missing:
        return f"no {' or '.join(missing)} process in this stack (config from files, not xDS)"
    return None


def _make(name: str, expect: str, inject: Callable[[], None], undo: Callable[[], None],
          read_visible: Reading, read_nacks: Callable[[], tuple[int, int]],
          unavailable: str | None, affected: tuple[str, ...] = (),
          settled: Callable[[], bool] | None = None) -> ConfigFault:
    """A ConfigFault whose inject waits (bounded) until ``settled()`` (default: the
    rejection shows), and whose repair measures first, then runs ``undo``."""
    box: dict[str, ConfigFault] = {}

    def repair() -> None:
        fault = box["f"]
        fault.observed.clear()
        fault.observed.update(fault.measure())
        undo()

    def injected() -> None:
        box["f"].observed.clear()
        inject()
        done = settled or (lambda: box["f"].visible()[0])
        with contextlib.suppress(NotConverged):  # not showing is what the checker judges
            poll(done, timeout=SETTLE, interval=0.1, what=f"{name} to take effect")

    fault = ConfigFault(name=name, inject=injected, repair=repair, expect=expect,
                        unavailable=unavailable, read_visible=read_visible,
                        read_nacks=read_nacks, affected_cells=affected)
    box["f"] = fault
    return fault


# -- spec files ----------------------------------------------------------------------------


def write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` at once (rename), keeping its mode: the watcher sees one change."""
    from control.spec.edit import write_atomic

    write_atomic(path, data)


class SavedFiles:
    """The exact bytes of files before a fault touched them; ``restore()`` puts them back."""

    def __init__(self) -> None:
        self.saved: dict[Path, bytes] = {}

    def write(self, path: Path, data: bytes) -> None:
        if path not in self.saved:
            self.saved[path] = path.read_bytes()
        write_file(path, data)

    def restore(self) -> None:
        for path, data in self.saved.items():
            if not path.exists() or path.read_bytes() != data:
                write_file(path, data)
        self.saved.clear()


def spec_document(spec_dir: Path) -> dict[str, Any]:
    """platform.yaml as plain values (the spec's own strict reader)."""
    from control.spec.yamldoc import parse

    path = spec_dir / SPEC_FILE
    doc, _, _ = parse(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a mapping")
    return doc


def dump_spec(doc: dict[str, Any]) -> bytes:
    """A spec document as YAML (comments of the original are not kept; repair restores
    the original bytes)."""
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


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


# -- invalid spec --------------------------------------------------------------------------

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


# -- a resource Envoy NACKs ----------------------------------------------------------------


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


# -- bad bundles ---------------------------------------------------------------------------

BUNDLE_TYPES = ("PolicyBundle", "PolicyAssignment")


def _sidecar_nack_reading(target: Target, clients: Callable[[], list[dict[str, Any]]],
                          needle: str, who: str, base: dict[str, Any]) -> Reading:
    """Visible when the sidecar's NACK (``needle`` in its text) shows in ``clients`` (a
    status view), with the sidecar's own ``a1_policy_load_failures_total`` beside it."""
    metrics = sidecar_metrics_url(target)

    def read() -> tuple[bool, str]:
        rows = client_nacks(clients(), BUNDLE_TYPES, needle)
        failures = ""
        if metrics:
            with contextlib.suppress(OSError, ValueError):
                n = metric_sum(metrics, "a1_policy_load_failures_total")
                failures = f"; sidecar {metrics} a1_policy_load_failures_total " \
                           f"+{n - base.get('failures', 0):g}"
        return bool(rows), f"{who}: {'; '.join(rows) or 'no NACK'}{failures}"

    return read


def _load_failures(target: Target) -> float:
    url = sidecar_metrics_url(target)
    if url is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError):
        return metric_sum(url, "a1_policy_load_failures_total")
    return 0.0


def bundle_wrongly_signed(target: Target) -> ConfigFault:
    """The real control plane restarted with a signing key the sidecar does not trust
    (its own state directory beside the key, so its durable state starts empty).

    Expect: the sidecar NACKs every bundle (``signed by unknown key``) and keeps
    deciding with the trusted policy; repair restarts the plane with its own key."""
    unavailable = _unavailable(target, "control", "sidecar")
    p = None if unavailable else plane(target)
    held: dict[str, Any] = {}

    def inject() -> None:
        from policies.bundle import generate_signing_key

        assert p is not None
        launcher = target.launcher
        original = launcher[p.process].spec
        keydir = Path(tempfile.mkdtemp(prefix="a1-rogue-key-"))
        key = keydir / "bundle-signing.key"
        generate_signing_key(key)
        argv = [str(a) for a in original.argv]
        argv = [*_without(_without(argv, "--signing-key"), "--state-dir"),
                "--signing-key", str(key), "--state-dir", str(keydir)]
        held.update(original=original, keydir=keydir, failures=_load_failures(target))
        launcher.stop(p.process)
        launcher.start(replace(original, argv=argv))
        launcher.wait_ready([p.process], timeout=RECOVER)

    def clients() -> list[dict[str, Any]]:
        assert p is not None
        return list(status(p).get("clients", []))

    def read_nacks() -> tuple[int, int]:
        assert p is not None  # a fresh process: its counter is this fault's alone
        return nack_total(f"{p.status_url}/metrics", BUNDLE_TYPES), \
            subscriptions(clients(), BUNDLE_TYPES)

    def undo() -> None:
        assert p is not None
        launcher = target.launcher
        launcher.stop(p.process)
        launcher.start(held["original"])
        launcher.wait_ready([p.process], timeout=RECOVER)
        shutil.rmtree(held.pop("keydir"), ignore_errors=True)
        _resynced(p)

    where = "control plane (rogue key) /status clients[a1-sidecar]"
    return _make("config:bundle:wrongly-signed",
                 "the sidecar NACKs bundles signed by an untrusted key and keeps deciding "
                 "with the trusted policy; no request fails",
                 inject, undo,
                 _sidecar_nack_reading(target, clients, "unknown key", where, held),
                 read_nacks, unavailable)


def _without(argv: list[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if not arg.startswith(name + "="):
            out.append(arg)
    return out


def bundle_from_impostor(target: Target, kind: str = "corrupted") -> ConfigFault:
    """An impostor ADS server on the control plane's address (the plane stopped) serving
    the spec's snapshot with its bundle corrupted (one byte of the module flipped) or
    unsigned (the bare module, and an assignment naming it).

    Expect: the sidecar NACKs it and keeps deciding with the signed policy; Envoy and
    the cells get byte-identical config and notice nothing; repair restarts the plane."""
    from conformance.nemesis.rogue_xds import BAD_BUNDLES, RogueXds, bad_bundle_snapshot

    if kind not in BAD_BUNDLES:
        raise ValueError(f"bundle_from_impostor: kind must be one of {', '.join(BAD_BUNDLES)}")
    unavailable = _unavailable(target, "control", "sidecar")
    p = None if unavailable else plane(target)
    held: dict[str, Any] = {}

    def inject() -> None:
        assert p is not None
        snapshot = bad_bundle_snapshot(target.spec_dir, p.signing_key, kind)
        held.update(original=target.launcher[p.process].spec,
                    failures=_load_failures(target))
        target.launcher.stop(p.process)
        held["rogue"] = RogueXds(p.xds_address, snapshot).start()

    def clients() -> list[dict[str, Any]]:
        rogue = held.get("rogue")
        return rogue.clients() if rogue is not None else []

    def read_nacks() -> tuple[int, int]:
        rogue = held.get("rogue")
        if rogue is None:
            return 0, 0
        return rogue.nacks(BUNDLE_TYPES), subscriptions(clients(), BUNDLE_TYPES)

    def undo() -> None:
        assert p is not None
        rogue = held.pop("rogue", None)
        if rogue is not None:
            rogue.stop()
        target.launcher.start(held["original"])
        target.launcher.wait_ready([p.process], timeout=RECOVER)
        _resynced(p)

    needle = "signature" if kind == "corrupted" else "unsigned"
    return _make(f"config:bundle:{kind}",
                 f"the sidecar NACKs a {kind} bundle served by an impostor on the control "
                 "plane's address and keeps deciding with the signed policy; no request fails",
                 inject, undo,
                 _sidecar_nack_reading(target, clients, needle,
                                       "impostor ADS server's view of the sidecar", held),
                 read_nacks, unavailable)


# -- policies that trap --------------------------------------------------------------------


def _module(entrypoint: str, body: str) -> str:
    """A Rego module defining the entrypoint's rule with ``body`` (rules using ``work``)."""
    package, _, rule = entrypoint.rpartition("/")
    return (f"# A1 conformance: a policy that compiles and traps at evaluation.\n"
            f"package {package.replace('/', '.')}\n\nimport rego.v1\n\n{body}\n"
            f'{rule} := {{"allow": count(work) < 0, "status": 403, '
            f'"reason": "conformance trap", "headers": {{}}}}\n')


# Three nested loops over 400 numbers: 64 million steps, past the 10 M instruction
# budget; nothing is allocated while it spins.
FUEL_BODY = ("work contains a if {\n\tsome a in numbers.range(1, 400)\n"
             "\tsome b in numbers.range(1, 400)\n\tsome c in numbers.range(1, 400)\n"
             "\ta + b + c < 0\n}\n")
# An array doubled 25 times: memory grows page by page until the 16 MiB cap refuses.
MEMORY_BODY = ("a0 := [1, 2, 3, 4, 5, 6, 7, 8]\n"
               + "".join(f"a{i} := array.concat(a{i - 1}, a{i - 1})\n" for i in range(1, 26))
               + "work := a25\n")
POLICIES = {"fuel": FUEL_BODY, "memory": MEMORY_BODY}
ERROR_TEXT = {"fuel": "out of fuel", "memory": "memory cap"}


def trap_policy(entrypoint: str, kind: str) -> str:
    """The Rego source of the ``kind`` (fuel | memory) policy for ``entrypoint``."""
    return _module(entrypoint, POLICIES[kind])


def policy_trap(target: Target, kind: str = "fuel") -> ConfigFault:
    """The spec's policy replaced by one that compiles, loads, and traps on every
    evaluation (``kind``: fuel, or memory past the cap). A new version goes to the
    canary cell first (docs/rollout.md).

    Expect: requests of the canary cell's tenants get 500 (evaluation failed: fail
    closed), never 2xx, until the rollout rolls back on the error rate; every other
    cell keeps the stable version and fails nothing. Visible in the sidecar's
    ``a1_policy_eval_errors_total`` and the rollout's status; no NACK (the bundle is
    valid)."""
    from control.spec import load_spec

    if kind not in POLICIES:
        raise ValueError(f"policy_trap: kind must be one of {', '.join(POLICIES)}")
    unavailable = _unavailable(target, "control", "sidecar")
    p = None if unavailable else plane(target)
    files = SavedFiles()
    base: dict[str, Any] = {}
    canary: tuple[str, ...] = ()
    if p is not None:
        spec = load_spec(target.spec_dir)
        canary = (spec.rollout.canary_cell or spec.cell_names[0],)
    metrics = sidecar_metrics_url(target)

    def inject() -> None:
        assert p is not None
        spec = load_spec(target.spec_dir)
        sources = list(spec.policy.sources)
        base.update(errors=_eval_errors(metrics), nacks=nack_total(
            f"{p.status_url}/metrics", BUNDLE_TYPES),
            version=(status(p).get("policy") or {}).get("version"))
        root = target.spec_dir
        files.write(root / sources[0], trap_policy(spec.policy.entrypoint, kind).encode())
        for i, rel in enumerate(sources[1:], 1):  # other sources must not define the rule
            files.write(root / rel, f"package a1_conformance_blank_{i}\n".encode())

    def read_visible() -> tuple[bool, str]:
        assert p is not None
        errors = _eval_errors(metrics) - base.get("errors", 0)
        rollout = status(p).get("rollout") or {}
        breach = rollout.get("last_breach")
        seen = errors > 0 or bool(breach)
        return seen, (f"sidecar {metrics} a1_policy_eval_errors_total +{errors:g}; "
                      f"control plane {p.status_url}/status rollout state "
                      f"{rollout.get('state')}, last_breach {one_line(str(breach), 200)}")

    def read_nacks() -> tuple[int, int]:
        assert p is not None
        n = nack_total(f"{p.status_url}/metrics", BUNDLE_TYPES) - base.get("nacks", 0)
        return n, subscriptions(status(p).get("clients", []), BUNDLE_TYPES)

    def undo() -> None:
        files.restore()
        assert p is not None
        poll(lambda: serves_spec(p, target.spec_dir) and no_candidate(p), timeout=RECOVER,
             what="the stable policy back on every cell")

    def settled() -> bool:
        assert p is not None
        st = status(p)
        if (st.get("policy") or {}).get("version") == base.get("version"):
            return False  # the plane has not taken the new policy yet
        return _candidate_on(st, canary[0]) or _rolled_back(st)

    return _make(f"config:policy:{kind}",
                 f"the canary cell's requests fail closed (500: {ERROR_TEXT[kind]}), never "
                 "2xx; other cells keep the stable policy and fail nothing",
                 inject, undo, read_visible, read_nacks, unavailable, canary, settled)


def _eval_errors(metrics: str | None) -> float:
    if metrics is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError):
        return metric_sum(metrics, "a1_policy_eval_errors_total")
    return 0.0


def _candidate_on(st: dict[str, Any], cell: str) -> bool:
    """In status ``st``: the spec's policy is assigned to ``cell``, and every subscriber
    has ACKed it."""
    version = (st.get("policy") or {}).get("version")
    assignment = (st.get("policy") or {}).get("assignment") or {}
    on = (assignment.get("cells") or {}).get(cell, assignment.get("default"))
    return bool(version and on == version and _acked(st, BUNDLE_TYPES))


def _rolled_back(st: dict[str, Any]) -> bool:
    """In status ``st``: the spec's policy was the candidate and is already rolled back."""
    rollout = st.get("rollout") or {}
    return bool(rollout.get("state") == "rolled_back"
                and rollout.get("rejected_version") == (st.get("policy") or {}).get("version"))


def _acked(st: dict[str, Any], types: Iterable[str]) -> bool:
    """In status ``st``: something subscribes to ``types``, and every subscriber has
    ACKed the published version (a sidecar still reconnecting is not "every")."""
    want = st.get("snapshot", {}).get("versions", {})
    held = [t.get("acked_version") == want.get(name)
            for c in st.get("clients", []) for name, t in (c.get("types") or {}).items()
            if name in set(types)]
    return bool(held) and all(held)


def _resynced(p: Plane) -> None:
    """After a restart of the plane: wait until the sidecar is back and holds its config."""
    poll(lambda: _acked(status(p), BUNDLE_TYPES), timeout=RECOVER, interval=0.1,
         what="the sidecar to resync with the control plane")


def no_candidate(p: Plane) -> bool:
    """No candidate: every cell on the stable version, and every subscriber ACKed it."""
    st = status(p)
    rollout = st.get("rollout") or {}
    return rollout.get("candidate") is None and _acked(st, BUNDLE_TYPES)


# -- all of them ---------------------------------------------------------------------------


def config_faults(target: Target) -> list[ConfigFault]:
    """Every config fault of I-8, in a safe order (each repaired before the next)."""
    return [invalid_spec(target, "syntax"), invalid_spec(target, "schema"),
            envoy_nack(target), bundle_wrongly_signed(target),
            bundle_from_impostor(target, "corrupted"), bundle_from_impostor(target, "unsigned"),
            policy_trap(target, "fuel"), policy_trap(target, "memory")]
