"""The server under test of ``a1 bench control``, in its own process, with a bench port.

``python -m a1.bench.control_server --config DIR --xds-port P --bench-port Q [--floor]``

Its own process, so that its memory (VmRSS) and CPU are its own and the clients
(Envoys, the simulated fan-out) never share its GIL. It runs:

- ``spec`` (default): the xDS server (``control.xds.XdsServer``) on the snapshots
  a spec watcher publishes: poll ``platform.yaml``, load it, build Envoy's
  resources (``control.envoy``), pack them, check and ``set_snapshot``. This is
  the spec → Envoy-resources path of the control plane's pipeline (its Envoy half;
  policy bundles and the cell table are the sidecar's).
- ``--floor``: a no-op ADS server (grpc.aio) that answers every subscription with
  one pre-serialized response per type and, on a bump, writes one more pre-serialized
  response to every stream. No protocol state, no per-stream building: the Python
  floor a fan-out can be compared against, as ``a1 bench sidecar`` compares the
  sidecar with a no-op ext_authz server.

The bench port is loopback HTTP for the driver, never for anything else:

- ``GET /state``: generation, versions, VmRSS (KiB), CPU ticks;
- ``GET /synced?clients=N&timeout=S``: wait until N streams hold every Envoy type ACKed;
- ``POST /arm?type=URL&clients=N&timeout=S`` → ``{"id"}``: start waiting for the next
  published generation to be ACKed by N streams (armed before the change is made,
  so the ACK time is seen as it happens, not when asked);
- ``GET /result?id=I``: that wait's timestamps (``time.monotonic()``, one clock for
  every process on the machine): change detected, snapshot built, published, all ACKed;
- ``POST /bump`` (floor only, or the spec server's direct publish): publish the
  alternate snapshot without the spec, for the push+ACK floor.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP = "default"


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of a process, in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid: int | str = "self") -> int:
    """utime + stime of every thread of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# -- the spec path: spec → Envoy resources → snapshot ------------------------------------


def envoy_params(spec: Any) -> Any:
    """The Envoy parameters a platform spec stands for (the Envoy half of the pipeline).

    The benchmark's spec carries an https listener with TLS, because the resources
    always hold both listeners and the SDS secret (``control.envoy.build_resources``).
    """
    from control.envoy import CellEndpoint, EnvoyParams

    http, https = spec.listeners.http, spec.listeners.https
    if http is None or https is None or https.tls is None:
        raise ValueError("the benchmark's spec needs an http and an https listener with tls")
    issuer = spec.jwt[0]
    return EnvoyParams(
        cells=[CellEndpoint(c.name, e.host, e.port) for c in spec.cells for e in c.endpoints],
        jwks_path=None, jwks_inline=issuer.jwks,
        tls_cert=spec.directory / https.tls.cert_path,
        tls_key=spec.directory / https.tls.key_path,
        mode=spec.sidecar.mode, bind_address=http.address, http_port=http.port,
        https_port=https.port, sidecar_grpc=spec.sidecar.grpc,
        sidecar_http=spec.sidecar.http or "127.0.0.1:10101",
        authz_timeout_ms=spec.sidecar.timeout_ms, issuer=issuer.issuer,
        audience=issuer.audiences[0] if issuer.audiences else "a1",
    )


def build_snapshot(config: Path) -> Any:
    """Load the spec directory and build the checked snapshot of Envoy's resources."""
    from control.envoy import build_resources
    from control.envoy.protos import pack
    from control.spec import load_spec
    from control.xds.cache import Resource, Snapshot

    spec = load_spec(config)
    packed = pack(build_resources(envoy_params(spec)))
    snapshot = Snapshot(Resource.of(t, name, value)
                        for t, of in packed.items() for name, value in of.items())
    snapshot.check()
    return snapshot


class SpecWatcher:
    """Polls ``platform.yaml`` (inode, size, mtime) and publishes each valid change.

    An invalid spec is logged and never published: the previous snapshot keeps serving.
    """

    def __init__(self, config: Path, publish: Callable[[Any, float, float], None],
                 interval: float) -> None:
        self.config, self.publish, self.interval = config, publish, interval
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.config / "platform.yaml").stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def poll(self) -> None:
        seen = self._stat()
        if seen is None or seen == self._seen:
            return
        detected = time.monotonic()
        self._seen = seen
        try:
            snapshot = build_snapshot(self.config)
        except Exception as err:  # the previous snapshot keeps serving
            print(f"control_server: spec refused: {' '.join(str(err).split())[:300]}",
                  file=sys.stderr, flush=True)
            return
        self.publish(snapshot, detected, time.monotonic())

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self._stop.set()


# -- the harness both servers share --------------------------------------------------------


class Harness:
    """What the bench port reads: publish times per generation and ACK waits."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.published: dict[int, dict[str, float]] = {}  # generation -> timestamps
        self.waits: dict[int, threading.Thread] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.ids = itertools.count(1)

    # Implemented by the two servers below.
    def generation(self) -> int:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        raise NotImplementedError

    def wait_generation(self, after: int, timeout: float) -> int:
        raise NotImplementedError

    def wait_acked(self, generation: int, type_url: str, clients: int, timeout: float) -> bool:
        raise NotImplementedError

    def bump(self) -> None:
        raise NotImplementedError

    def streams(self) -> int:
        raise NotImplementedError

    def arm(self, type_url: str, clients: int, timeout: float) -> int:
        wait_id, after = next(self.ids), self.generation()

        def wait() -> None:
            deadline = time.monotonic() + timeout
            generation = self.wait_generation(after, timeout)
            out: dict[str, Any] = {"generation": generation, "ok": False}
            if generation > after:
                ok = self.wait_acked(generation, type_url, clients,
                                     max(0.0, deadline - time.monotonic()))
                out.update(ok=ok, acked=time.monotonic())
                with self.lock:
                    out.update(self.published.get(generation, {}))
            with self.lock:
                self.results[wait_id] = out

        thread = threading.Thread(target=wait, name=f"bench-wait-{wait_id}", daemon=True)
        with self.lock:
            self.waits[wait_id] = thread
        thread.start()
        return wait_id

    def result(self, wait_id: int, timeout: float) -> dict[str, Any]:
        with self.lock:
            thread = self.waits.pop(wait_id, None)
        if thread is None:
            return {"ok": False, "error": f"no wait {wait_id}"}
        thread.join(timeout)
        with self.lock:
            return self.results.pop(wait_id, {"ok": False, "error": "still waiting"})

    def state(self) -> dict[str, Any]:
        return {"generation": self.generation(), "versions": self.versions(),
                "rss_kib": rss_kib(), "cpu_ticks": cpu_ticks(), "clk_tck": CLK_TCK,
                "pid": os.getpid()}


class SpecServer(Harness):
    """The real xDS server on the spec watcher's snapshots (one group for every node)."""

    def __init__(self, config: Path, port: int, poll_s: float) -> None:
        super().__init__()
        from control.xds.cache import SnapshotCache
        from control.xds.server import XdsServer

        self.cache = SnapshotCache()
        self.server = XdsServer(self.cache, port=port, node_group=lambda node: GROUP)
        self.cache.watch(self._on_publish)
        self._pending: dict[str, float] = {}
        self.watcher = SpecWatcher(config, self._publish, poll_s)
        self.watcher.poll()  # the first snapshot, before any client connects
        if self.cache.snapshot(GROUP) is None:
            raise SystemExit(f"control_server: no valid spec in {config}")
        self._alt: Any = None
        self.server.start()
        threading.Thread(target=self.watcher.run, name="spec-watcher", daemon=True).start()

    def _publish(self, snapshot: Any, detected: float, built: float) -> None:
        with self.lock:
            self._pending = {"detected": detected, "built": built}
        self.cache.set_snapshot(GROUP, snapshot)

    def _on_publish(self, group: str) -> None:
        now = time.monotonic()
        generation = self.cache.entry(group)[0]
        with self.lock:
            self.published[generation] = {**self._pending, "published": now}
            self._pending = {}

    def generation(self) -> int:
        return self.cache.entry(GROUP)[0]

    def versions(self) -> dict[str, str]:
        snapshot = self.cache.snapshot(GROUP)
        return snapshot.versions() if snapshot is not None else {}

    def wait_generation(self, after: int, timeout: float) -> int:
        return self.cache.wait(GROUP, after, timeout)

    def wait_acked(self, generation: int, type_url: str, clients: int, timeout: float) -> bool:
        snapshot = self.cache.snapshot(GROUP)
        assert snapshot is not None
        return self.server.wait_acked(GROUP, type_url, snapshot.version(type_url),
                                      timeout=timeout, min_clients=clients)

    def synced(self, clients: int, timeout: float) -> bool:
        from control.envoy.resources import ENVOY_TYPES

        snapshot = self.cache.snapshot(GROUP)
        assert snapshot is not None
        deadline = time.monotonic() + timeout
        return all(self.server.wait_acked(GROUP, t, snapshot.version(t),
                                          timeout=max(0.0, deadline - time.monotonic()),
                                          min_clients=clients)
                   for t in ENVOY_TYPES if snapshot.resources(t))

    def bump(self) -> None:
        raise ValueError("the spec server publishes spec changes only")

    def streams(self) -> int:
        return len(self.server.connections())


# -- the floor: a no-op ADS server ----------------------------------------------------------


class FloorServer(Harness):
    """Pre-serialized responses, no protocol state: the least a Python ADS server can do.

    Every stream gets, per type it asks for, the snapshot's response (built once);
    a bump writes the next pre-built ENDPOINT response to every stream and counts
    the ACKs (a request of that type echoing the nonce) until all have answered.
    """

    def __init__(self, config: Path, port: int) -> None:
        super().__init__()
        from envoy.service.discovery.v3 import discovery_pb2

        from control.xds.sotw import pack as pack_any
        from policies.core.xds.types import ENDPOINT

        snapshots = [build_snapshot(config)]
        self.endpoint_type = ENDPOINT
        self.responses: dict[str, Any] = {}
        for type_url in snapshots[0].versions():
            have = snapshots[0].resources(type_url)
            if have:
                self.responses[type_url] = discovery_pb2.DiscoveryResponse(
                    version_info=snapshots[0].version(type_url), type_url=type_url,
                    nonce=f"{type_url}-0", resources=[pack_any(have[n]) for n in sorted(have)])
        self._response_class = discovery_pb2.DiscoveryResponse
        self._gen = 0
        self._acks: dict[int, set[int]] = {}
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._changed: asyncio.Event | None = None
        self._ids = itertools.count(1)
        self._cond = threading.Condition(self.lock)
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self.port = port
        threading.Thread(target=self._run, args=(started,), name="floor", daemon=True).start()
        if not started.wait(30):
            raise SystemExit("control_server: the floor server did not start")

    def _run(self, started: threading.Event) -> None:
        import grpc
        from envoy.service.discovery.v3 import ads_pb2_grpc

        floor = self

        class Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
            async def StreamAggregatedResources(self, requests: Any, context: Any) -> Any:
                sid, queue = next(floor._ids), asyncio.Queue()
                floor._streams[sid] = queue

                async def read() -> None:
                    async for req in requests:
                        if req.response_nonce:
                            gen = int(req.response_nonce.rsplit("-", 1)[1])
                            if req.type_url == floor.endpoint_type and gen:
                                floor._acks.setdefault(gen, set()).add(sid)
                                floor._notify()
                        elif req.type_url in floor.responses:
                            queue.put_nowait(floor.responses[req.type_url])
                    queue.put_nowait(None)

                reader = asyncio.create_task(read())
                try:
                    while (item := await queue.get()) is not None:
                        await context.write(item)
                finally:
                    reader.cancel()
                    del floor._streams[sid]

        async def main() -> None:
            server = grpc.aio.server()
            ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Servicer(), server)
            self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
            await server.start()
            started.set()
            await asyncio.Event().wait()

        self._loop.run_until_complete(main())

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def generation(self) -> int:
        return self._gen

    def versions(self) -> dict[str, str]:
        return {t: r.version_info for t, r in self.responses.items()}

    def wait_generation(self, after: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._gen > after, timeout)
            return self._gen

    def wait_acked(self, generation: int, type_url: str, clients: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self._acks.get(generation, ())) >= clients, timeout)

    def synced(self, clients: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self._streams) < clients:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def bump(self) -> None:
        base = self.responses[self.endpoint_type]
        with self._cond:
            gen = self._gen + 1
        response = self._response_class()
        response.CopyFrom(base)
        response.version_info = f"floor-{gen}"
        response.nonce = f"floor-{gen}"

        def push() -> None:
            with self._cond:
                self._gen = gen
                self.published[gen] = {"published": time.monotonic()}
                self._cond.notify_all()
            for queue in self._streams.values():
                queue.put_nowait(response)

        self._loop.call_soon_threadsafe(push)

    def streams(self) -> int:
        return len(self._streams)


# -- the bench port -----------------------------------------------------------------------------


def serve_bench(harness: Any, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            timeout = float(q.get("timeout", "60"))
            try:
                if url.path == "/state":
                    body = harness.state()
                    if q.get("streams"):
                        body["streams"] = harness.streams()
                    self._answer(body)
                elif url.path == "/synced":
                    self._answer({"ok": harness.synced(int(q["clients"]), timeout)})
                elif url.path == "/arm":
                    self._answer({"id": harness.arm(q["type"], int(q["clients"]), timeout)})
                elif url.path == "/result":
                    self._answer(harness.result(int(q["id"]), timeout))
                elif url.path == "/bump":
                    harness.bump()
                    self._answer({"ok": True})
                else:
                    self._answer({"error": "not found"}, 404)
            except (KeyError, ValueError) as err:
                self._answer({"error": str(err)[:300]}, 400)

        do_GET = do_POST = _route

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="bench-port", daemon=True).start()
    return httpd


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m a1.bench.control_server",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="the spec directory")
    p.add_argument("--xds-port", type=int, required=True)
    p.add_argument("--bench-port", type=int, required=True)
    p.add_argument("--poll-ms", type=float, default=10.0,
                   help="how often the spec watcher looks at platform.yaml (default 10)")
    p.add_argument("--floor", action="store_true", help="run the no-op ADS floor instead")
    args = p.parse_args(argv)
    harness: Harness = (FloorServer(args.config, args.xds_port) if args.floor
                        else SpecServer(args.config, args.xds_port, args.poll_ms / 1000))
    serve_bench(harness, args.bench_port)
    print(f"control_server: ready (xds {args.xds_port}, bench {args.bench_port})", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
