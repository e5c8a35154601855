"""Where each waiting job stands in line, and telling the jobs, shared by every queue implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from engine.queue._events import JobChannel, JobQueued

__all__ = ["PositionBoard"]


class _Waiting(Hashable, Protocol):
    job_id: str
    channel: JobChannel
    last_position: int | None


J = TypeVar("J", bound=_Waiting)


class PositionBoard(Generic[J]):
    """The start order of the waiting jobs, cached until something moves, and told to the jobs at
    most once per `interval_s`: every start moves every waiting job, so telling each move would cost
    the event loop a wakeup per waiting subscriber per started job."""

    def __init__(self, rank: Callable[[], list[J]], *, interval_s: float) -> None:
        """`rank()` gives every waiting job in the order it would start (under the queue's lock)."""
        self._rank = rank
        self.interval_s = interval_s
        self._order: dict[J, int] | None = None
        self._announcement: asyncio.TimerHandle | None = None
        self._last_announced = float("-inf")

    def invalidate(self) -> None:
        """Something moved; safe from any thread."""
        self._order = None

    def order(self) -> dict[J, int]:
        """Each waiting job's place: 1 starts next."""
        order = self._order
        if order is None:
            order = self._order = {job: place for place, job in enumerate(self._rank(), start=1)}
        return order

    def changed(self, *, anyone_waits: bool) -> None:
        """Positions moved (on the event loop): tell the waiting jobs soon."""
        self._order = None
        if self._announcement is None and anyone_waits:
            loop = asyncio.get_running_loop()
            delay = max(self._last_announced + self.interval_s - loop.time(), 0.0)
            self._announcement = loop.call_later(delay, self._announce)

    def close(self) -> None:
        if self._announcement is not None:
            self._announcement.cancel()
            self._announcement = None

    def _announce(self) -> None:
        self._announcement = None
        self._last_announced = asyncio.get_running_loop().time()
        for job, place in self.order().items():
            if place != job.last_position:
                job.last_position = place
                job.channel.publish(JobQueued(job.job_id, place))
