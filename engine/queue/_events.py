"""Job events and their fan-out to subscribers, shared by every queue implementation.

A `JobChannel` holds one job's outcome (set exactly once) and its subscribers. Each subscriber
buffers only what it has not read yet, with progress coalesced to the latest, so a slow reader
loses intermediate progress but never a lifecycle event, and the publisher never waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

from engine.errors import EngineError, JobCancelled
from engine.types import GenerationResult, Progress

__all__ = [
    "EventStream",
    "JobChannel",
    "JobEvent",
    "JobFailed",
    "JobFinished",
    "JobProgress",
    "JobQueued",
    "JobRetried",
    "JobStarted",
    "TerminalEvent",
]


@dataclass(frozen=True, slots=True)
class JobQueued:
    """The job waits; `position` is its place in the start order (1 = starts next)."""

    job_id: str
    position: int


@dataclass(frozen=True, slots=True)
class JobStarted:
    """A worker took the job; `worker` names its backend."""

    job_id: str
    worker: str
    attempt: int | None = None
    """Which run of the job this is, where the queue numbers them (a remote queue does)."""


@dataclass(frozen=True, slots=True)
class JobRetried:
    """The worker running the job was lost; the job waits to run again as run `attempt`."""

    job_id: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class JobProgress:
    job_id: str
    progress: Progress


@dataclass(frozen=True, slots=True)
class JobFinished:
    job_id: str
    result: GenerationResult
    attempt: int | None = None
    """The run that made the result, where the queue numbers runs."""


@dataclass(frozen=True, slots=True)
class JobFailed:
    """The job ended without a result; a cancelled job fails with a `JobCancelled` error."""

    job_id: str
    error: EngineError
    attempt: int | None = None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, JobCancelled)


JobEvent = JobQueued | JobStarted | JobRetried | JobProgress | JobFinished | JobFailed
TerminalEvent = JobFinished | JobFailed

# Events a reader only needs the latest of: a newer one replaces an unread older one.
_COALESCED = (JobQueued, JobProgress)


class EventStream(AsyncIterator[JobEvent]):
    """One subscriber's events, ending after the terminal event. Use as `async for` or `async with`."""

    def __init__(self, channel: JobChannel) -> None:
        self._channel = channel
        self._pending: deque[JobEvent] = deque()
        self._wakeup = asyncio.Event()
        self._ended = False

    def _push(self, event: JobEvent) -> None:
        if self._pending and isinstance(event, _COALESCED) and type(self._pending[-1]) is type(event):
            self._pending[-1] = event
        else:
            self._pending.append(event)
        self._wakeup.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> JobEvent:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        event = self._pending.popleft()
        if isinstance(event, JobFinished | JobFailed):
            self._end()
        return event

    def _end(self) -> None:
        self._ended = True
        self._channel._unsubscribe(self)
        self._wakeup.set()

    async def aclose(self) -> None:
        """Stop listening; events not read yet are dropped."""
        self._pending.clear()
        self._end()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class JobChannel:
    """One job's outcome and event fan-out. Lives on the event loop; not thread-safe."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._subscribers: set[EventStream] = set()
        self._latest: list[JobEvent] = []
        """What a late subscriber is told first: the lifecycle so far, latest of each kind."""
        self._outcome: TerminalEvent | None = None
        self._done = asyncio.Event()

    @property
    def outcome(self) -> TerminalEvent | None:
        return self._outcome

    def done(self) -> bool:
        return self._outcome is not None

    def publish(self, event: JobEvent) -> None:
        """Hand `event` to every subscriber without waiting; ignored once the job has ended."""
        if self._outcome is not None:
            return
        if isinstance(event, JobFinished | JobFailed):
            self._outcome = event
            self._latest = [event]
            self._done.set()
        elif self._latest and type(self._latest[-1]) is type(event):
            self._latest[-1] = event
        elif isinstance(event, JobStarted | JobRetried):
            self._latest = [event]
        else:
            self._latest.append(event)
        for subscriber in tuple(self._subscribers):
            subscriber._push(event)
        if self._outcome is not None:
            self._subscribers.clear()

    def finish(self, result: GenerationResult, attempt: int | None = None) -> bool:
        """Deliver the result; False if the job had already ended (the first outcome wins)."""
        if self._outcome is not None:
            return False
        self.publish(JobFinished(self.job_id, result, attempt))
        return True

    def fail(self, error: EngineError, attempt: int | None = None) -> bool:
        """Deliver a failure; False if the job had already ended (the first outcome wins)."""
        if self._outcome is not None:
            return False
        self.publish(JobFailed(self.job_id, error, attempt))
        return True

    def subscribe(self) -> EventStream:
        """A new reader, first told where the job stands now (a finished job: its terminal event)."""
        stream = EventStream(self)
        for event in self._latest:
            stream._push(event)
        if self._outcome is None:
            self._subscribers.add(stream)
        return stream

    def _unsubscribe(self, stream: EventStream) -> None:
        self._subscribers.discard(stream)

    async def ended(self) -> None:
        """Return once the job has an outcome."""
        await self._done.wait()

    async def wait(self) -> GenerationResult:
        """The result, or raise the job's error."""
        await self._done.wait()
        outcome = self._outcome
        if isinstance(outcome, JobFinished):
            return outcome.result
        assert isinstance(outcome, JobFailed)
        raise outcome.error
