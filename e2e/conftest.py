"""Shared e2e fixtures: real Envoy, sidecar and cells on free loopback ports.

A stack is started once per module (``stack`` fixture, or ``start_stack`` for a
module's own variant) and always torn down, by the launcher, even when a test
fails. Waiting is by polling (``conformance.harness.waiting.poll``), never by
sleeping for a fixed time. The client, polling and stack helpers live in
``conformance.harness``, which the conformance suite shares.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.stacks import make_stack


def decode_payload_header(value: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


_running: list[Stack] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, say which stack process died unasked, with its log tail."""
    report = yield
    if report.failed:
        lines = []
        for s in _running:
            for proc in s.launcher.unexpected_exits():
                lines.append(s.launcher.death_report(proc))
        if lines:
            report.sections.append(("a1 stack processes that died", "\n".join(lines)))
    return report


@pytest.fixture(scope="module")
def start_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Stack]]:
    """Start stacks for this module (``start_stack(mode="http")``); all stopped at the end."""
    started: list[Stack] = []

    def start(**options: Any) -> Stack:
        s = make_stack(tmp_path_factory.mktemp("stack"), **options)
        started.append(s)
        _running.append(s)
        s.start()
        return s

    try:
        yield start
    finally:
        for s in reversed(started):
            s.stop()
            _running.remove(s)


@pytest.fixture(scope="module")
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """The default stack: grpc ext_authz, three cells."""
    return start_stack()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Client:
    return Client(stack.http_url)
