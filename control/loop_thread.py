"""An asyncio service driven from synchronous code: its own event loop in a daemon thread.

The xDS server and the relay run on ``grpc.aio``; the control plane process, the
tests and the benchmarks drive them from ordinary threads. This is the one bridge
between the two, so both services start, stop and answer status the same way,
including a prompt ``stop()`` after a failed start (the loop is closed before the
failure is reported, so nothing waits on a loop that will never run again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

START_TIMEOUT = 30.0


class LoopThread:
    """``start(astart)`` runs ``astart()`` on a new loop in a daemon thread, which then
    keeps serving until ``stop(astop)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done: asyncio.Event | None = None

    def start(self, astart: Callable[[], Awaitable[T]]) -> T:
        """``astart()``'s result; its exception is raised here, with the loop closed."""
        started: concurrent.futures.Future[T] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        done = asyncio.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                result = loop.run_until_complete(astart())
            except BaseException as err:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                started.set_exception(err)
                return
            started.set_result(result)
            loop.run_until_complete(done.wait())
            loop.run_until_complete(loop.shutdown_asyncgens())  # also runs pending callbacks
            loop.close()

        thread = threading.Thread(target=run, name=self.name, daemon=True)
        thread.start()
        try:
            result = started.result(timeout=START_TIMEOUT)
        except BaseException:
            thread.join(timeout=5)
            raise
        self.loop, self._thread, self._done = loop, thread, done
        return result

    def stop(self, astop: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Run ``astop()`` on the loop, end the loop and join the thread; a no-op when
        the service is not running (never started, failed to start, stopped)."""
        loop, thread, done = self.loop, self._thread, self._done
        if loop is None or thread is None or done is None:
            return
        self.loop = self._thread = self._done = None

        async def finish() -> None:
            try:
                await astop()
            finally:
                done.set()

        if not loop.is_closed():
            asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=timeout)
        thread.join(timeout=30)



def call_on(loop: asyncio.AbstractEventLoop | None, fn: Callable[[], T],
            timeout: float = 10.0) -> T:
    """``fn()`` on ``loop``'s thread, so it sees a service's state consistently from
    any thread; directly when the loop is not running or this is its thread."""
    if loop is None or loop.is_closed() or not loop.is_running():
        return fn()
    with contextlib.suppress(RuntimeError):  # RuntimeError: no running loop here
        if asyncio.get_running_loop() is loop:
            return fn()

    async def on_loop() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(on_loop(), loop).result(timeout=timeout)
