"""One thread per device, running blocking backend calls for the event loop.

A dedicated thread keeps a device's CUDA context on one thread. It is a daemon thread (unlike a
`ThreadPoolExecutor`'s) so a backend stuck in a call cannot keep the process from exiting after
the queue has given up on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DeviceThread"]

T = TypeVar("T")

_Call = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class DeviceThread:
    """Runs submitted calls one at a time, in order, on its own thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inbox: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def run(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `call`; the future settles on the calling loop. Cancelling it does not stop the call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._inbox.put((call, loop, future))
        return future

    def stop(self) -> None:
        """Let the thread end after the call it is running, if any."""
        self._inbox.put(None)

    def _main(self) -> None:
        while (item := self._inbox.get()) is not None:
            _run_one(*item)
            del item  # hold no result while idle


def _run_one(call: Callable[[], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
    try:
        outcome: tuple[Any, BaseException | None] = (call(), None)
    except BaseException as exc:  # handed to the awaiting task, which decides
        outcome = (None, exc)
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
    if future.cancelled():
        return
    value, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
