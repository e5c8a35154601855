"""The seam between callers and any job queue: the `JobQueue` protocol and job handles.

`LocalQueue` implements it in-process; a queue on Redis with remote workers can implement it
too (feeding each job's `JobChannel` from a stream) without callers changing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from engine.queue._events import EventStream, JobChannel
from engine.types import GenerationRequest, GenerationResult

__all__ = ["JobHandle", "JobQueue"]


class JobHandle:
    """A caller's grip on one submitted job: its result, its events, and a way to cancel it."""

    def __init__(
        self,
        job_id: str,
        owner: str,
        request: GenerationRequest,
        channel: JobChannel,
        canceller: Callable[[str], Awaitable[bool]],
        releaser: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.job_id = job_id
        self.owner = owner
        self.request = request
        self._channel = channel
        self._canceller = canceller
        self._releaser = releaser

    async def result(self) -> GenerationResult:
        """Wait for the images; raise `GenerationError`, or `JobCancelled` if it was cancelled.

        `JobInterrupted` (a `JobCancelled`) means the queue shut down first: the job may run again.
        """
        return await self._channel.wait()

    def events(self) -> EventStream:
        """Subscribe from now: where the job stands, then its events up to and including the final one."""
        return self._channel.subscribe()

    def done(self) -> bool:
        return self._channel.done()

    async def cancel(self) -> bool:
        """Same as `queue.cancel(handle.job_id)`."""
        return await self._canceller(self.job_id)

    async def release(self) -> None:
        """The caller has stored the job's outcome: a queue that keeps a copy (a remote one, until the
        bot has saved the images) may now delete it. Until then it survives a restart of the bot."""
        if self._releaser is not None:
            await self._releaser(self.job_id)

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_id} owner={self.owner} done={self.done()}>"


@runtime_checkable
class JobQueue(Protocol):
    """What the bot needs from a job queue, local or remote."""

    async def start(self) -> None:
        """Start running jobs; jobs submitted earlier wait until then."""
        ...

    async def close(self, *, grace_s: float = 30.0) -> None:
        """Take no more jobs, drop waiting ones, give running ones `grace_s` seconds, then stop them."""
        ...

    async def submit(
        self,
        owner: str,
        request: GenerationRequest,
        *,
        job_id: str | None = None,
        max_running: int | None = None,
        max_waiting: int | None = None,
        attempts: int = 0,
    ) -> JobHandle:
        """Queue a job; raise `QueueFull` or `QueueClosed`. Pass a stored `job_id` to resume a job.

        `max_running`/`max_waiting` override the queue's per-owner limits for this owner.
        `attempts`: how many runs a resumed job has had (a queue that numbers runs goes on from it).
        """
        ...

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting or running job; True means it will end with `JobCancelled`."""
        ...

    def position(self, job_id: str) -> int | None:
        """0 = running, n = n-th to start (1 = next); None if the job is not in the queue."""
        ...

    def estimate(self, job_id: str) -> float | None:
        """Seconds until the job should be done; None if unknown."""
        ...
