"""The stack wires the sidecar's decision ports as Unix sockets in the state directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from a1 import envoy_bootstrap
from a1.stack import Stack, StackOptions, StackPorts
from policies.core.errors import UserError


def _stack(state: Path, **kw: object) -> Stack:
    return Stack(StackOptions(state_dir=state, cells=2, ports=StackPorts.free(2), **kw))  # type: ignore[arg-type]


def test_decision_ports_default_to_unix_sockets_in_the_state_dir(tmp_path: Path) -> None:
    s = _stack(tmp_path)
    settings = s.sidecar_settings()
    assert settings["grpc_address"] == f"unix:{tmp_path.resolve()}/sidecar-grpc.sock"
    assert settings["http_address"] == f"unix:{tmp_path.resolve()}/sidecar-http.sock"
    assert settings["metrics_address"].startswith("127.0.0.1:")  # metrics stay on TCP
    assert s.sidecar_spec().ready.description.startswith(f"gRPC health {settings['grpc_address']}")
    # Only the metrics port is a TCP port the stack must find free.
    labels = [label for label, _ in s.ports.labelled(s.cell_names, True)]
    assert "sidecar metrics, --internal-port-base" in labels
    assert not any(lb.startswith(("sidecar gRPC", "sidecar HTTP")) for lb in labels)


@pytest.mark.parametrize("mode", ["grpc", "http", "ext_proc"])
def test_envoy_reaches_the_sockets_through_pipe_addresses(tmp_path: Path, mode: str) -> None:
    s = _stack(tmp_path, mode=mode)
    boot = envoy_bootstrap.render_bootstrap(s.bootstrap_params())
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    name = "a1_sidecar_http" if mode == "http" else "a1_sidecar_grpc"
    endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    sock = "sidecar-http.sock" if mode == "http" else "sidecar-grpc.sock"
    assert endpoint["address"] == {"pipe": {"path": str(tmp_path.resolve() / sock)}}
    if mode == "http":
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        authz = next(f for f in hcm["typed_config"]["http_filters"]
                     if f["name"] == "envoy.filters.http.ext_authz")
        assert authz["typed_config"]["http_service"]["server_uri"]["uri"] == "http://a1-sidecar"


def test_tcp_transport_is_still_available(tmp_path: Path) -> None:
    s = _stack(tmp_path, sidecar_transport="tcp")
    assert s.sidecar_settings()["grpc_address"] == f"127.0.0.1:{s.ports.sidecar_grpc}"
    assert s.sidecar_settings()["http_address"] == f"127.0.0.1:{s.ports.sidecar_http}"


def test_state_dir_too_long_for_a_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    with pytest.raises(UserError, match=r"--state-dir: unix socket path is \d+ bytes long"):
        _stack(deep)
    _stack(deep, mode="rbac")  # no sidecar, no sockets: fine
