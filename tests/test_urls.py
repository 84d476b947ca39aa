"""The shared URL rule (policies.core.urls) in both host modes; its callers' field names
and own rules are tested in test_decision_log_ship, test_engine_config and
test_rollout_scrape."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.core.urls import UrlError, check_http_url


def test_parts_of_an_accepted_url() -> None:
    u = check_http_url("HTTP://[::1]:9/a?b=1", 100)
    assert (u.host, u.port, u.path, u.query) == ("::1", 9, "/a", "b=1")
    assert check_http_url("http://sink.internal/x", 100).port is None


@pytest.mark.parametrize(("url", "allowed", "why"), [
    ("http://sink.internal:1/x", None, None),
    ("http://localhost:1/x", (), None),
    ("http://Sidecar.Internal:1/x", ("sidecar.internal",), None),
    ("http://10.1.1.1:1/x", ("10.1.1.1",), None),
    ("http://sink.internal:1/x", (), "not loopback nor an allowed host"),
    ("http://localhost.evil.example:1/x", (), "not loopback nor an allowed host"),
    ("http://10.0.0.1:1/x", None, "is not loopback (name the host)"),
    ("http://0x7f.1:1/x", None, "neither a loopback address nor a host name"),
    ("http://127.1:1/x", (), "not loopback nor an allowed host"),
    ("http://u@127.0.0.1:1/x", (), "user info"),
    ("http://127.0.0.1:1/x#f", None, "fragment"),
    ("http://127.0.0.1:1/x#", None, "fragment"),
    ("https://127.0.0.1:1/x", None, "only http://"),
    ("http://127.0.0.1:0/x", None, "port must be in"),
    ("http://127.0.0.1:1/a b", None, "without spaces"),
    ("http://127.0.0.1:1/" + "a" * 100, None, "at most 100 characters"),
    (b"http://127.0.0.1:1/", None, "must be a string"),
])  # fmt: skip
def test_host_modes_and_refusals(url: object, allowed: tuple[str, ...] | None,
                                 why: str | None) -> None:  # fmt: skip
    if why is None:
        check_http_url(url, 100, allowed)
    else:
        with pytest.raises(UrlError, match=why.replace("(", r"\(").replace(")", r"\)")):
            check_http_url(url, 100, allowed)


@given(st.text(max_size=120))
def test_any_text_is_checked_or_refused_in_one_line(url: str) -> None:
    try:
        u = check_http_url(url, 100, ())
    except UrlError as err:
        assert "\n" not in str(err) and len(str(err)) < 300
    else:  # whatever passes has a loopback or localhost host and no space, CR or LF
        assert u.host == "localhost" or ipaddress.ip_address(u.host).is_loopback
        assert not any(c in url for c in " \r\n")
