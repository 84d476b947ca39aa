"""Compiled policies agree with regorus on every input: values, undefined and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler.frontend import parse_sources
from tests.policy_corpus import CORPUS, DATA, EXTRA_MODULES, HEADER
from tests.rego_oracle import Compiled, Oracle, agree

LIBRARY = Path(__file__).resolve().parents[1] / "policies" / "library"

# Values the policies compare against, so generated inputs hit the interesting branches.
_WORDS = [
    "GET",
    "POST",
    "admin",
    "root",
    "x",
    "y",
    "k",
    "v",
    "bad",
    "badness",
    "a",
    "b",
    "alice",
    "bob",
    "mallory",
    "skip",
    "ab-mid-yz",
    "pre-suf",
    "abc12",
    "foobar",
    "api.example.com",
    "api/x/y/v1",
    "10.1.2.3",
    "192.168.0.1",
    "2001:db8::1",
    "",
    "é",
    "Straße",
    "ǅ",
    "  x  ",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-20, max_value=20),
    # Short binary fractions: regorus's JSON number parser rounds long decimals
    # differently from IEEE parsing, which is an oracle artefact, not a semantic.
    st.integers(min_value=-4000, max_value=4000).map(lambda i: i / 8),
    st.sampled_from(_WORDS),
    st.text(max_size=6),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_WORDS), st.text(max_size=3)), inner, max_size=4),
    ),
    max_leaves=8,
)
_FIELDS = ["a", "b", "n", "m", "s", "xs", "ys", "o", "user", "method", "roles", "ip"]
_TYPED = {
    "n": st.integers(min_value=-3, max_value=12),
    "m": st.one_of(
        st.integers(min_value=-3, max_value=5), st.lists(st.lists(scalars, max_size=3), max_size=3)
    ),
    "xs": st.lists(scalars, max_size=5),
    "ys": st.lists(scalars, max_size=5),
    "o": st.dictionaries(st.sampled_from(_WORDS), scalars, max_size=4),
    "s": st.sampled_from(_WORDS),
    "user": st.one_of(
        st.sampled_from(["alice", "bob", "mallory"]),
        st.fixed_dictionaries(
            {"role": st.sampled_from(["admin", "x"]), "name": st.sampled_from(["root", "y"])}
        ),
    ),
    "method": st.sampled_from(["GET", "POST", "PUT"]),
    "roles": st.lists(st.sampled_from(["admin", "reader", "writer"]), max_size=3),
}


@st.composite
def inputs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for field in _FIELDS:
        choice = draw(st.integers(0, 9))
        if choice < 2:
            continue  # missing field
        if choice < 4:
            doc[field] = draw(json_values)  # any type at all
        else:
            doc[field] = draw(_TYPED.get(field, scalars))
    return doc


def _entrypoints(sources: dict[str, str], package: tuple[str, ...]) -> list[str]:
    program = parse_sources(sources)
    rules = sorted(
        p
        for p, r in program.rules.items()
        if p[: len(package)] == package and len(p) == len(package) + 1 and r.kind != "function"
    )
    return ["/".join(package)] + ["/".join(p) for p in rules]


def _pair(name: str) -> tuple[Compiled, Oracle, list[str]]:
    sources = {f"{name}.rego": HEADER + CORPUS[name], **EXTRA_MODULES.get(name, {})}
    entrypoints = _entrypoints(sources, ("t",))
    return Compiled(sources, entrypoints, DATA), Oracle(sources, DATA), entrypoints


_PAIRS: dict[str, tuple[Compiled, Oracle, list[str]]] = {}


def _cached_pair(name: str) -> tuple[Compiled, Oracle, list[str]]:
    if name not in _PAIRS:
        _PAIRS[name] = _pair(name)
    return _PAIRS[name]


def _check(ours: Compiled, theirs: Oracle, entrypoints: list[str], doc: Any) -> None:
    for entry in entrypoints:
        mine, ref = ours.eval(entry, doc), theirs.eval(entry, doc)
        assert agree(mine, ref), (
            f"{entry} on {json.dumps(doc)}:\n  compiled: {mine}\n  regorus:  {ref}"
        )


@pytest.mark.parametrize("name", sorted(CORPUS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=inputs())
def test_corpus_agrees_with_regorus(name: str, doc: dict[str, Any]) -> None:
    ours, theirs, entrypoints = _cached_pair(name)
    _check(ours, theirs, entrypoints, doc)


# ------------------------------------------------------------ shipped policy

_ROLES = st.lists(st.sampled_from(["reader", "writer", "admin", "platform-admin", "auditor", ""]),
                 max_size=3)
_TENANTS = st.sampled_from(["acme", "globex", "suspended-co", "", "ünïcode"])


@st.composite
def authz_inputs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 9)) < 9:
        doc["method"] = draw(
            st.one_of(
                st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
                json_values,
            )
        )
    if draw(st.integers(0, 9)) < 9:
        doc["path"] = draw(
            st.one_of(
                st.sampled_from(["/public/readme", "/t/acme/items", "/t/globex/items/1", "/", ""]),
                json_values,
            )
        )
    if draw(st.integers(0, 9)) < 8:
        doc["tenant"] = draw(st.one_of(_TENANTS, json_values))
    if draw(st.integers(0, 9)) < 8:
        subject: dict[str, Any] = {}
        for key, strat in (("sub", st.text(max_size=5)), ("tenant", _TENANTS), ("roles", _ROLES)):
            if draw(st.integers(0, 9)) < 8:
                subject[key] = draw(
                    st.one_of(strat, json_values) if draw(st.integers(0, 9)) == 0 else strat
                )
        doc["subject"] = subject
    return doc


@pytest.fixture(scope="module")
def authz_pair() -> tuple[Compiled, Oracle, list[str]]:
    sources = {"authz.rego": (LIBRARY / "authz.rego").read_text()}
    data = json.loads((LIBRARY / "data.json").read_text())
    entrypoints = _entrypoints(sources, ("a1", "authz"))
    return Compiled(sources, entrypoints, data), Oracle(sources, data), entrypoints


@settings(max_examples=1500, deadline=None)
@given(doc=authz_inputs())
def test_shipped_authz_agrees_with_regorus(
    authz_pair: tuple[Compiled, Oracle, list[str]], doc: dict[str, Any]
) -> None:
    _check(*authz_pair, doc)
