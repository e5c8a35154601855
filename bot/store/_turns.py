"""SQLite's one writer at a time, taken in turns inside this process, urgent units of work first."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["WriterTurns"]


class WriterTurns:
    """A lock whose waiters go in two lines: urgent ones (a member waits for the answer to an
    interaction, which Discord wants within 3 s) before background bookkeeping (a job's "running",
    its images); first come, first served within each. Waking the next writer the moment the last
    one commits also beats SQLite's busy handler, which polls with sleeps of up to 100 ms."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @asynccontextmanager
    async def turn(self, *, urgent: bool) -> AsyncIterator[None]:
        if self._held or self._waiting:
            granted = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (0 if urgent else 1, next(self._arrivals), granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._pass_on()  # it was ours already: hand it to the next in line
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():  # a waiter that gave up has a cancelled future
                granted.set_result(None)
                return
        self._held = False
