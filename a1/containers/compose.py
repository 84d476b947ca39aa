"""``a1 compose``: the docker runtime's stack as a Compose-spec file, from the same
plan, the same process specs and the same prepared state directory as
``a1 up --runtime docker``, so ``docker compose up`` (or Debian's docker-compose 1.29)
runs what ``a1 up`` would: same containers, networks and subnets, addresses, bind
mount, user, published ports, labels, and start order gated on health
(``depends_on: condition: service_healthy``).

Healthchecks run inside each container, as ``a1 up``'s probes do from the host: a
GET of the cell's and the control plane's /healthz, a gRPC health check of the relay's
and the sidecar's Unix sockets. The Envoy image has no Python and nothing waits on
Envoy, so it has none.
"""

from __future__ import annotations

import os
from typing import Any

from a1.containers import engine, names
from a1.containers.launcher import ContainerLauncher
from a1.containers.stack import DockerStack
from a1.launcher import ProcessSpec

_GET = ("import sys,urllib.request as u;"
        "sys.exit(0 if u.urlopen(sys.argv[1],timeout=2).status==200 else 1)")
_GRPC = ("import sys,grpc;from grpc_health.v1 import health_pb2 as p,health_pb2_grpc as g;"
         "r=g.HealthStub(grpc.insecure_channel(sys.argv[1]))"
         ".Check(p.HealthCheckRequest(),timeout=2);"
         "sys.exit(0 if r.status==p.HealthCheckResponse.SERVING else 1)")


def _healthcheck(stack: DockerStack, name: str) -> dict[str, Any] | None:
    if name in stack.cell_names:
        test = ["CMD", "python3", "-I", "-S", "-c", _GET, f"{stack.cell_url(name)}/healthz"]
    elif name == "control":
        ip = stack.plan.ip("control", stack.plan.data)
        test = ["CMD", "python3", "-I", "-S", "-c", _GET,
                f"http://{ip}:{stack.ports.control}/healthz"]
    elif name == "relay":
        test = ["CMD", "python3", "-I", "-c", _GRPC, f"unix:{stack.files.relay_socket}"]
    elif name == "sidecar":
        test = ["CMD", "python3", "-I", "-c", _GRPC, stack.sidecar_grpc_address]
    else:
        return None
    return {"test": test, "interval": "1s", "timeout": "3s", "retries": 60,
            "start_period": "2s"}


def specs(stack: DockerStack) -> list[ProcessSpec]:
    """The stack's processes in ``a1 up``'s start order."""
    out = []
    if stack.uses_control_plane:
        out += [stack.control_spec(), stack.relay_spec()]
    out += [stack.cell_spec(n) for n in stack.cell_names]
    if stack.with_sidecar:
        out.append(stack.sidecar_spec())
    return [*out, stack.envoy_spec()]


def _depends(stack: DockerStack, name: str) -> list[str]:
    """Who must be healthy first: ``a1 up``'s start order."""
    first = ["relay"] if stack.uses_control_plane else []
    if name == "relay":
        return ["control"]
    if name in stack.cell_names or name == "sidecar":
        return first
    if name == "envoy":
        return [*stack.cell_names, *(["sidecar"] if stack.with_sidecar else [])]
    return []


def document(stack: DockerStack) -> dict[str, Any]:
    """The Compose-spec document of ``stack`` (prepared, with its plan)."""
    plan, state = stack.plan, str(stack.files.state_dir)
    user = f"{os.getuid()}:{os.getgid()}"
    services: dict[str, Any] = {}
    for spec in specs(stack):
        place = stack.placement(spec)
        argv = ContainerLauncher.container_argv(spec)
        lab = {names.LABEL_PROJECT: names.PROJECT, names.LABEL_RUN: stack.run,
               names.LABEL_COMPONENT: spec.name, engine.LABEL_STATE_DIR: state}
        svc: dict[str, Any] = {
            "image": names.image_for(place.kind),
            "container_name": f"a1-{stack.run}-{spec.name}",
            "hostname": spec.name,
            "command": argv,
            "user": place.user or user,
            "init": True,
            "working_dir": "/",
            "environment": {"PYTHONUNBUFFERED": "1", "HOME": "/tmp", **(spec.env or {})},
            "volumes": [{"type": "bind", "source": state, "target": state}],
            "networks": {net: {"ipv4_address": ip} for net, ip in place.networks.items()},
            "labels": lab,
        }
        if place.ports:
            svc["ports"] = [f"127.0.0.1:{p}:{p}" for p in place.ports]
        check = _healthcheck(stack, spec.name)
        if check is not None:
            svc["healthcheck"] = check
        deps = _depends(stack, spec.name)
        if deps:
            svc["depends_on"] = {d: {"condition": "service_healthy"} for d in deps}
        services[spec.name] = svc
    networks = {
        net.name: {"name": net.name, "driver": "bridge", "internal": net.internal,
                   "ipam": {"config": [{"subnet": str(net.subnet), "gateway": net.gateway}]},
                   "labels": {names.LABEL_PROJECT: names.PROJECT, names.LABEL_RUN: stack.run,
                              names.LABEL_COMPONENT: f"network-{net.role}",
                              engine.LABEL_STATE_DIR: state}}
        for net in plan.networks}
    return _escape({"services": services, "networks": networks})


def _escape(doc: Any) -> Any:
    """Every ``$`` doubled: Compose interpolates ``$VAR`` in values, and the log wrapper
    (``"$@"``, ``"$0"``) and a state directory named with ``$`` must reach docker as is."""
    if isinstance(doc, str):
        return doc.replace("$", "$$")
    if isinstance(doc, list):
        return [_escape(v) for v in doc]
    if isinstance(doc, dict):
        return {k: _escape(v) for k, v in doc.items()}
    return doc
