"""net.cidr_* host builtins (``policies/runtime/host/net.py``).

``net.cidr_contains``/``is_valid``/``expand`` are compared with regorus through
compiled policies whose networks come from the input (so the host path runs, not
the constant matcher); the builtins regorus lacks (``intersects``, ``merge``,
``contains_matches``) are checked against Python's ``ipaddress``.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler.patterns.cidr import compile_cidr
from policies.compiler.patterns.errors import PatternError
from policies.core.ipaddr import read_ipnet
from policies.runtime.host import net as host_net
from policies.runtime.values import RegoSet
from tests.host_diff import Pair, call, mutate, refused
from tests.rego_oracle import Compiled

# ---------------------------------------------------------------- regorus's builtins


def test_contains() -> None:
    assert call("net.cidr_contains", "10.0.0.0/8", "10.1.2.3") is True
    assert call("net.cidr_contains", "10.0.0.0/8", "10.1.0.0/16") is True
    assert call("net.cidr_contains", "10.0.0.0/8", "9.0.0.0/7") is False
    assert call("net.cidr_contains", "10.1.2.3/8", "10.255.255.255") is True  # host bits
    assert call("net.cidr_contains", "fd00::/16", "fd00:1::1") is True
    assert call("net.cidr_contains", "::/0", "10.0.0.1") is False  # families never mix
    assert call("net.cidr_contains", "10.0.0.0/8", "010.1.2.3/32") is True  # ipnet: zeros
    assert "as IP address" in refused("net.cidr_contains", "10.0.0.0/8", "010.1.2.3")  # std
    for bad in [("x", "1.1.1.1"), ("10.0.0.0/33", "1.1.1.1"), ("10.0.0.0/8", "1.1.1.1/x")]:
        refused("net.cidr_contains", *bad)
    assert "operand 1 must be string" in refused("net.cidr_contains", 1, "x")
    assert call("net.cidr_overlap", "10.0.0.0/8", "10.1.2.3") is True


def test_is_valid() -> None:
    for text in ["10.0.0.0/8", "::1/128", "10.0.0.0/+8", "10.0.0.0/-0", "10.0.0.0/0008"]:
        assert call("net.cidr_is_valid", text) is True, text
    for text in ["10.0.0.0", "256.0.0.0/8", "10.0.0.0/33", "::/129", "010.0.0.0/8",
                 "10.0.0.0/", "10.0.0.0/" + "0" * 10_000 + "99999", "fe80::1%eth0/64"]:  # fmt: skip
        assert call("net.cidr_is_valid", text) is False, text
    refused("net.cidr_is_valid", None)


def test_expand_lists_every_address_and_is_bounded() -> None:
    assert call("net.cidr_expand", "10.0.0.1/30") == [f"10.0.0.{i}" for i in range(4)]
    assert call("net.cidr_expand", "::ffff:1.2.3.4/127") == ["::ffff:1.2.3.4", "::ffff:1.2.3.5"]
    assert len(call("net.cidr_expand", "10.0.0.0/16")) == host_net.MAX_EXPAND
    for huge in ["10.0.0.0/15", "0.0.0.0/0", "::/0", "fd00::/64"]:
        assert "more than" in refused("net.cidr_expand", huge)


@settings(max_examples=300, deadline=None)
@given(st.text("0123456789abcdef:./ ", max_size=40))
def test_the_constant_matcher_reads_networks_as_the_host_does(text: str) -> None:
    """One grammar (``policies.core.ipaddr``) for a constant network and a dynamic one: the
    compiler takes exactly the networks the host takes, and the host's network holds the
    address the compiler's blob starts at."""
    try:
        blob = compile_cidr(text)
    except PatternError:
        assert "error parsing" in refused("net.cidr_contains", text, "::")
        return
    family, prefix = struct.unpack("<2I", blob[8:16])
    width = 4 if family == 4 else 16
    first = ipaddress.ip_address(blob[16 : 16 + width])
    assert call("net.cidr_contains", text, f"{first}/{prefix}") is True


DIFF = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS = ["10.0.0.0/8", "192.168.1.1/24", "0.0.0.0/0", "::/0", "fd00::/16",
         "::ffff:1.2.3.4/120", "1:2:3:4:5:6:7:8/64", "1::8/128", "::1", "10.1.2.3", "010.1.2.3",
         "1.2.3.4/32", "2001:db8::/33", "::ffff:10.0.0.1", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
         "255.255.255.255/31", "10.0.0.0/08", "::1.2.3.4", "10.0.0.0/30", "fe80::/126"]  # fmt: skip


def mutated(data: st.DataObject) -> str:
    return mutate(data, data.draw(st.sampled_from(SEEDS)), "0123456789abcdef:./ +-x%", 2)


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair(
        {
            "contains": "net.cidr_contains(input.a, input.b)",
            "valid": "net.cidr_is_valid(input.a)",
            "expand": "net.cidr_expand(input.a)",
        }
    )


@DIFF
@given(data=st.data())
def test_agrees_with_regorus(pair: Pair, data: Any) -> None:
    a, b = mutated(data), mutated(data)
    pair.check("contains", {"a": a, "b": b})
    pair.check("valid", {"a": a})
    net = read_ipnet(a)
    small = net is not None and net[2] >= (24 if net[0] == 4 else 120)
    if small or net is None:
        pair.check("expand", {"a": a})


def test_a_constant_network_still_compiles_to_the_matcher() -> None:
    src = {"p.rego": 'package p\nx := net.cidr_contains("10.0.0.0/8", input.ip)\n'}
    module = Compiled(src, ["p/x"]).module
    assert "net.cidr_contains" not in module.meta.host_builtins


# ---------------------------------------------------------------- OPA's builtins


def net_of(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


networks = st.one_of(
    st.builds(lambda a, p: f"{ipaddress.IPv4Address(a)}/{p}", st.integers(0, 2**32 - 1),
              st.integers(0, 32)),
    st.builds(lambda a, p: f"{ipaddress.IPv6Address(a)}/{p}", st.integers(0, 2**128 - 1),
              st.integers(0, 128)),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(networks, networks)
def test_intersects_agrees_with_ipaddress(a: str, b: str) -> None:
    na, nb = net_of(a), net_of(b)
    expected = na.version == nb.version and na.overlaps(nb)
    assert call("net.cidr_intersects", a, b) is expected


def test_intersects_refusals() -> None:
    assert call("net.cidr_intersects", "::ffff:10.0.0.0/104", "10.1.0.0/16") is True  # Go's To4
    for bad in [("10.0.0.0", "10.0.0.0/8"), ("10.0.0.0/8", "x/8"), ("010.0.0.0/8", "10.0.0.0/8"),
                ("10.0.0.0/8", "10.0.0.0/+8"), ("fe80::%eth0/64", "::/0")]:  # fmt: skip
        assert "invalid CIDR address" in refused("net.cidr_intersects", *bad)
    assert "operand 2 must be string" in refused("net.cidr_intersects", "10.0.0.0/8", 1)


def test_merge() -> None:
    assert call("net.cidr_merge", ["192.0.128.0/24", "192.0.129.0/24"]) == RegoSet(
        ["192.0.128.0/23"]
    )
    assert call("net.cidr_merge", {"10.0.0.0/9", "10.128.0.0/9", "11.0.0.0/8"}) == RegoSet(
        ["10.0.0.0/7"]
    )
    # OPA gives a bare IPv4 address its classful mask, printed unmasked when nothing merges
    assert call("net.cidr_merge", ["10.1.2.3", "192.168.7.7"]) == RegoSet(
        ["10.1.2.3/8", "192.168.7.7/24"]
    )
    assert call("net.cidr_merge", []) == RegoSet([])
    assert call("net.cidr_merge", ["fd00::/17", "fd00:8000::/17"]) == RegoSet(["fd00::/16"])
    assert "needs prefix length" in refused("net.cidr_merge", ["::1"])
    assert "must be string" in refused("net.cidr_merge", [1])
    assert "must be an array" in refused("net.cidr_merge", "10.0.0.0/8")


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(st.lists(networks.filter(lambda n: n.count(".") == 3), max_size=8))
def test_merge_covers_exactly_the_same_addresses(items: list[str]) -> None:
    got = call("net.cidr_merge", items)
    merged = [net_of(n) for n in got]
    expected = list(ipaddress.collapse_addresses(net_of(n) for n in items))
    # as many addresses, none outside the input (OPA's result is not always minimal: a
    # range starting at 0.0.0.0 never merges with what comes before it)
    inputs = [net_of(n) for n in items]
    assert sum(n.num_addresses for n in expected) == sum(
        n.num_addresses for n in ipaddress.collapse_addresses(merged)
    )
    for n in merged:
        assert any(n.subnet_of(i) for i in expected), (n, inputs)


def test_contains_matches() -> None:
    cidrs = {"a": "10.0.0.0/8", "b": ["192.168.0.0/16", "extra"]}
    addrs = ["10.1.1.1", "192.168.1.1", ["11.0.0.1", "x"]]
    assert call("net.cidr_contains_matches", cidrs, addrs) == RegoSet([["a", 0], ["b", 1]])
    assert call("net.cidr_contains_matches", "10.0.0.0/8", "10.1.1.1") == RegoSet(
        [["10.0.0.0/8", "10.1.1.1"]]
    )
    assert call("net.cidr_contains_matches", {"10.0.0.0/8"}, {"10.0.0.0/24"}) == RegoSet(
        [["10.0.0.0/8", "10.0.0.0/24"]]
    )
    assert call("net.cidr_contains_matches", [], [1]) == RegoSet([])
    assert "non-empty array" in refused("net.cidr_contains_matches", [[]], "10.0.0.1")
    refused("net.cidr_contains_matches", ["x"], "10.0.0.1")
    refused("net.cidr_contains_matches", 5, "10.0.0.1")


def test_contains_matches_is_bounded() -> None:
    many = [f"10.0.{i // 256}.{i % 256}" for i in range(2048)]
    assert "pairs" in refused("net.cidr_contains_matches", many, many)
