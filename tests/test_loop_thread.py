"""The one bridge from threads to the asyncio services (xDS server, relay)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from control.loop_thread import LoopThread, call_on


def test_start_returns_the_result_and_stop_runs_astop_on_the_loop() -> None:
    runner = LoopThread("t")
    seen: list[str] = []

    async def astart() -> int:
        seen.append(threading.current_thread().name)
        return 7

    async def astop() -> None:
        seen.append(threading.current_thread().name)

    assert runner.start(astart) == 7
    loop = runner.loop
    assert loop is not None and loop.is_running()
    assert call_on(loop, lambda: threading.current_thread().name) == "t"
    runner.stop(astop, timeout=5)
    assert seen == ["t", "t"] and loop.is_closed()
    runner.stop(astop, timeout=5)  # twice: a no-op


def test_a_failed_start_raises_here_and_stop_returns_at_once() -> None:
    runner = LoopThread("t")

    async def astart() -> int:
        raise OSError("cannot bind")

    async def astop() -> None:
        raise AssertionError("never called: nothing started")

    with pytest.raises(OSError, match="cannot bind"):
        runner.start(astart)
    t0 = time.monotonic()
    runner.stop(astop, timeout=30)
    assert time.monotonic() - t0 < 1


def test_call_on_runs_directly_without_a_running_loop_or_on_its_own_thread() -> None:
    assert call_on(None, lambda: 1) == 1
    loop = asyncio.new_event_loop()
    try:
        assert call_on(loop, lambda: 2) == 2  # not running
        assert loop.run_until_complete(_inside(loop)) == 3  # its own thread
    finally:
        loop.close()


async def _inside(loop: asyncio.AbstractEventLoop) -> int:
    return call_on(loop, lambda: 3)
