"""The docker runtime's address plan: who joins which network, fixed addresses, subnets
free against docker's networks and the host's routes."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from a1.containers import network
from policies.core.errors import UserError

CELLS = ["cell-1", "cell-2", "cell-3"]


def subnets(*cidrs: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(c) for c in cidrs]


def test_members_and_isolation() -> None:
    plan = network.plan("r1", CELLS, network.free_subnets([]))
    data = plan.network(plan.data)
    control = plan.network(plan.control)
    assert not data.internal and set(data.members) == {"envoy", "sidecar", "relay", "control"}
    assert control.internal and set(control.members) == {"control", "relay", "sidecar", *CELLS}
    assert "envoy" not in control.members  # Envoy never reaches the control plane directly
    for cell in CELLS:
        net = plan.network(plan.cell_network(cell))
        assert net.internal and net.members == ("envoy", cell)  # a cell sees no other cell
    assert len({n.subnet for n in plan.networks}) == network.count(3) == len(plan.networks)


def test_fixed_addresses() -> None:
    plan = network.plan("r1", CELLS, iter(subnets("10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24",
                                                   "10.0.4.0/24", "10.0.5.0/24")))
    assert plan.ip("control", plan.control) == "10.0.2.2"
    assert plan.ip("cell-2", plan.cell_network("cell-2")) == "10.0.4.12"
    assert plan.networks_of("envoy") == {"a1-r1-data": "10.0.1.5", "a1-r1-cell-cell-1": "10.0.3.5",
                                         "a1-r1-cell-cell-2": "10.0.4.5",
                                         "a1-r1-cell-cell-3": "10.0.5.5"}
    assert plan.network(plan.data).gateway == "10.0.1.1"
    with pytest.raises(KeyError):
        plan.ip("cell-1", plan.data)  # cells are not on the data network


def test_static_stack_has_no_control_network() -> None:
    plan = network.plan("r1", ["c"], network.free_subnets([]), with_control=False)
    assert [n.role for n in plan.networks] == ["data", "cell"]
    assert plan.network(plan.data).members == ("envoy", "sidecar")


def test_free_subnets_skip_taken_and_routes() -> None:
    taken = subnets("172.30.0.0/23", "172.30.5.0/24", "172.30.8.0/21")
    got = list(zip(range(6), network.free_subnets(taken), strict=False))
    assert [str(s) for _, s in got] == ["172.30.2.0/24", "172.30.3.0/24", "172.30.4.0/24",
                                        "172.30.6.0/24", "172.30.7.0/24", "172.30.16.0/24"]
    whole = network.free_subnets(subnets("172.30.0.0/16"))
    assert str(next(whole)) == "10.213.0.0/24"  # the next pool


def test_host_routes_parsed_and_default_route_ignored(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
        "eth0\t001EAC\tbad\n")
    assert network.host_routes(table) == subnets("172.17.0.0/16")
    assert network.host_routes(tmp_path / "absent") == []


def test_too_many_cells_is_a_usage_error() -> None:
    with pytest.raises(UserError) as err:
        network.plan("r", [f"c{i}" for i in range(250)], network.free_subnets([]))
    assert err.value.code == 2 and "--cells" in str(err.value)
