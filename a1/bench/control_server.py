"""The server under test of ``a1 bench control``, in its own process, with a bench port.

``python -m a1.bench.control_server --config DIR --signing-key KEY --xds-port P
--bench-port Q [--floor]``

Its own process, so that its memory (VmRSS) and CPU are its own and the clients
(Envoys, the simulated fan-out) never share its GIL. It runs:

- by default: the control plane, ``control.plane.ControlPlane`` as ``a1 control
  serve`` runs it (spec watcher, compile and sign, render, publisher, ADS server,
  status, rollout), observed at two points: when its watcher reports a change
  and when a snapshot is set in its cache;
- ``--floor``: a no-op ADS server (grpc.aio) that answers every subscription with
  one pre-serialized response per type (the bytes the control plane publishes for
  the same spec) and, on a bump, writes one more pre-serialized response to every
  stream. No protocol state, nothing built per stream: the Python floor a fan-out
  is compared against, as ``a1 bench sidecar`` compares the sidecar with a no-op
  ext_authz server.

The bench port is loopback HTTP for the driver (``a1.bench.control``) only:

- ``GET /state``: generation, versions, VmRSS (KiB), CPU ticks;
- ``GET /synced?clients=N&timeout=S``: wait until N streams hold every Envoy type ACKed;
- ``POST /arm?type=URL&clients=N&timeout=S`` → ``{"id"}``: start waiting for the next
  published generation to be ACKed by N streams (armed before the change is made,
  so the ACK is seen as it happens, not when asked);
- ``GET /result?id=I``: that wait's timestamps (``time.monotonic()``, one clock for
  every process on the machine): change detected, published, every client ACKed;
- ``POST /bump`` (floor only): push the next pre-serialized response to every stream.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


# -- the snapshot the control plane publishes for a spec --------------------------------------


def plane_snapshot(config: Path, signing_key: Path) -> Any:
    """What the control plane publishes first for the spec in ``config``: load, compile
    and sign (``control.pipeline``), render and check. The floor serves these bytes."""
    from control.pipeline.compile import compile_bundle
    from control.pipeline.render import render
    from control.pipeline.state import state_for_spec
    from control.spec import load_spec
    from policies.bundle import load_signing_key

    spec = load_spec(config)
    bundle = compile_bundle(spec.policy, load_signing_key(signing_key), origin=str(config))
    return render(state_for_spec(spec, None, bundle))


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


class PlaneServer(Harness):
    """The control plane, ``control.plane.ControlPlane`` exactly as ``a1 control serve``
    runs it (spec watcher with its debounce, compile, render, publisher, ADS, status),
    with two observers: when its watcher reports a change, and when a snapshot is set."""

    def __init__(self, config: Path, port: int, signing_key: Path) -> None:
        super().__init__()
        from control.plane.serve import ControlPlane, PlaneOptions
        from control.xds.cache import DEFAULT_GROUP

        self.group = DEFAULT_GROUP
        self.plane = ControlPlane(PlaneOptions(config=config, signing_key=signing_key,
                                               xds_port=port, status_port=0))
        self.cache, self.server = self.plane.cache, self.plane.server
        self._detected: float | None = None
        reload = self.plane.watcher.on_change

        def on_change() -> None:
            with self.lock:
                self._detected = time.monotonic()
            reload()

        self.plane.watcher.on_change = on_change
        self.cache.watch(self._on_publish)
        self.plane.start()

    def _on_publish(self, group: str) -> None:
        now = time.monotonic()
        generation = self.cache.entry(group)[0]
        with self.lock:
            stamps = {"published": now}
            if self._detected is not None:
                stamps["detected"] = self._detected
            self.published[generation] = stamps

    def generation(self) -> int:
        return self.cache.entry(self.group)[0]

    def versions(self) -> dict[str, str]:
        snapshot = self.cache.snapshot(self.group)
        return snapshot.versions() if snapshot is not None else {}

    def wait_generation(self, after: int, timeout: float) -> int:
        return self.cache.wait(self.group, after, timeout)

    def wait_acked(self, generation: int, type_url: str, clients: int, timeout: float) -> bool:
        snapshot = self.cache.snapshot(self.group)
        assert snapshot is not None
        return self.server.wait_acked(self.group, type_url, snapshot.version(type_url),
                                      timeout=timeout, min_clients=clients)

    def synced(self, clients: int, timeout: float) -> bool:
        """``clients`` streams hold every Envoy type ACKed (what Envoys and the simulated
        clients subscribe to; the sidecar's types have no subscriber here)."""
        from control.envoy.resources import ENVOY_TYPES

        snapshot = self.cache.snapshot(self.group)
        assert snapshot is not None
        deadline = time.monotonic() + timeout
        return all(self.server.wait_acked(self.group, t, snapshot.version(t),
                                          timeout=max(0.0, deadline - time.monotonic()),
                                          min_clients=clients)
                   for t in ENVOY_TYPES if snapshot.resources(t))

    def bump(self) -> None:
        raise ValueError("the control plane publishes spec changes only")

    def streams(self) -> int:
        return len(self.server.connections())


# -- the floor: a no-op ADS server ----------------------------------------------------------


class FloorServer(Harness):
    """Pre-serialized responses, no protocol state: the least a Python ADS server can do.

    Every stream gets, per type it asks for, the snapshot's response (built once);
    a bump writes the next pre-built ENDPOINT response to every stream and counts
    the ACKs (a request of that type echoing the nonce) until all have answered.
    """

    def __init__(self, config: Path, port: int, signing_key: Path) -> None:
        super().__init__()
        from envoy.service.discovery.v3 import discovery_pb2

        from control.envoy.resources import ENVOY_TYPES
        from control.xds.sotw import pack as pack_any
        from policies.core.xds.types import ENDPOINT

        snapshots = [plane_snapshot(config, signing_key)]
        self.endpoint_type = ENDPOINT
        self.responses: dict[str, Any] = {}
        for type_url in ENVOY_TYPES:
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
    p.add_argument("--signing-key", type=Path, required=True, help="ed25519 bundle signing key")
    p.add_argument("--floor", action="store_true", help="run the no-op ADS floor instead")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    harness: Harness = (FloorServer(args.config, args.xds_port, args.signing_key) if args.floor
                        else PlaneServer(args.config, args.xds_port, args.signing_key))
    serve_bench(harness, args.bench_port)
    print(f"control_server: ready (xds {args.xds_port}, bench {args.bench_port})", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
