"""The fair asyncio GPU job queue.

`LocalQueue` runs jobs on one worker per backend (one backend = one device), each on its own
thread so the event loop never stalls. Owners are served round-robin (least recently served
first), within a per-owner running limit and waiting limit. Callers code against `JobQueue` and
`JobHandle`, so a queue on Redis with remote workers can replace it without changing them.

Events of a job, in order: `JobQueued` (again when its position changes, at most every
`position_interval_s`), `JobStarted`, `JobProgress`…, then exactly one of `JobFinished` /
`JobFailed`; a slow reader misses intermediate `JobQueued`/`JobProgress`, never the rest.
A cancelled job fails with `JobCancelled` (`JobFailed.cancelled` is true); one dropped by
`close()` with its subclass `JobInterrupted`, so the bot can run it again after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from engine._queue_api import JobHandle, JobQueue, QueueStats
from engine._queue_events import (
    EventStream,
    JobChannel,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobStarted,
)
from engine._queue_sched import DurationStats, FairScheduler, estimate_finish
from engine._queue_thread import DeviceThread
from engine.backend import Backend, ProgressCallback
from engine.errors import EngineError, GenerationError, JobCancelled, JobInterrupted, QueueClosed, QueueFull
from engine.types import GenerationRequest, GenerationResult, Progress

__all__ = [
    "EventStream",
    "JobEvent",
    "JobFailed",
    "JobFinished",
    "JobHandle",
    "JobProgress",
    "JobQueue",
    "JobQueued",
    "JobStarted",
    "LocalQueue",
    "QueueStats",
]

log = logging.getLogger(__name__)

_ABANDON_AFTER_S = 2.0
"""After `close()` cancels running jobs, how long a backend gets to notice before it is abandoned."""


@dataclass(eq=False, slots=True)
class _Job:
    job_id: str
    owner: str
    request: GenerationRequest
    channel: JobChannel
    handle: JobHandle
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_error: JobCancelled | None = None
    """Set when asked to stop the running job; it then ends with this, whatever the backend does."""
    worker: _Worker | None = None
    started_at: float = 0.0
    last_position: int | None = None
    # Progress from the device thread waits here; the loop is woken once per burst.
    progress_lock: threading.Lock = field(default_factory=threading.Lock)
    pending_progress: Progress | None = None
    flush_scheduled: bool = False


@dataclass(eq=False, slots=True)
class _Worker:
    name: str
    backend: Backend
    thread: DeviceThread | None = None
    stats: DurationStats = field(default_factory=DurationStats)
    job: _Job | None = None


class LocalQueue:
    """An in-process fair queue over one worker per backend. Use `async with` or `start()`/`close()`."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        max_running_per_owner: int = 3,
        max_waiting_per_owner: int = 10,
        position_interval_s: float = 0.5,
    ) -> None:
        """`position_interval_s`: waiting jobs hear of a new position at most this often."""
        if not backends:
            raise ValueError("LocalQueue needs at least one backend to run jobs on")
        if max_waiting_per_owner < 0:
            raise ValueError(f"max_waiting_per_owner must be 0 or more; got {max_waiting_per_owner}")
        many = len(backends) > 1
        self._workers = [
            _Worker(name=f"{backend.name}#{i}" if many else backend.name, backend=backend)
            for i, backend in enumerate(backends)
        ]
        self.max_waiting_per_owner = max_waiting_per_owner
        self.position_interval_s = position_interval_s
        self._sched: FairScheduler[_Job] = FairScheduler(max_running_per_owner=max_running_per_owner)
        self._jobs: dict[str, _Job] = {}
        self._running: dict[_Job, None] = {}  # in start order, oldest first
        self._idle: list[_Worker] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._order: dict[_Job, int] | None = None  # cached start order of waiting jobs
        self._announcement: asyncio.TimerHandle | None = None
        self._last_announced = float("-inf")
        self._started = False
        self._closing = False
        self._closed: asyncio.Task[None] | None = None

    @property
    def max_running_per_owner(self) -> int:
        return self._sched.max_running

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one device thread per backend and begin running jobs."""
        if self._closing:
            raise QueueClosed("The queue is closed and cannot be started again.")
        if self._started:
            return
        self._started = True
        for worker in self._workers:
            worker.thread = DeviceThread(f"imagine-{worker.name}")
            self._idle.append(worker)
        self._dispatch()

    async def close(self, *, grace_s: float = 30.0) -> None:
        """Take no more jobs, drop waiting ones, give running ones `grace_s` seconds, then stop them."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_task(self._close(grace_s))
        # Shielded: a caller that stops waiting does not leave the queue half closed.
        await asyncio.shield(self._closed)

    async def _close(self, grace_s: float) -> None:
        self._closing = True
        if self._announcement is not None:
            self._announcement.cancel()
        for job in [job for job in self._jobs.values() if self._sched.is_waiting(job)]:
            self._sched.remove(job)
            self._end(job)
            job.channel.fail(
                JobInterrupted(
                    "The bot is shutting down, so this job did not start; it may run after a restart."
                )
            )
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            if pending:
                for job in self._running:
                    self._stop(job, JobInterrupted("The bot shut down while this job was running."))
                _, pending = await asyncio.wait(pending, timeout=_ABANDON_AFTER_S)
            for task in pending:
                log.warning("abandoning a backend call that ignored cancellation (%s)", task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.stop()

    async def __aenter__(self) -> LocalQueue:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- the public operations ----------------------------------------------------------------

    async def submit(self, owner: str, request: GenerationRequest, *, job_id: str | None = None) -> JobHandle:
        """Queue a job for `owner`; raise `QueueFull` or `QueueClosed`. Reuse a stored `job_id` to resume."""
        if self._closing:
            raise QueueClosed("The bot is shutting down and takes no new jobs; try again in a minute.")
        job_id = job_id or uuid.uuid4().hex
        if job_id in self._jobs:
            raise ValueError(f"job id {job_id!r} is already in the queue")
        # A job that can start right now never waits, so it does not count against the waiting limit.
        starts_now = bool(self._started and self._idle and self._sched.can_run(owner))
        if self._sched.waiting_count(owner) >= self.max_waiting_per_owner and not starts_now:
            raise QueueFull(owner, self.max_waiting_per_owner)
        channel = JobChannel(job_id)
        handle = JobHandle(job_id, owner, request, channel, self.cancel)
        job = _Job(job_id=job_id, owner=owner, request=request, channel=channel, handle=handle)
        self._jobs[job_id] = job
        self._sched.push(owner, job)
        self._positions_changed()
        self._dispatch()
        if job.worker is None:
            # Told at once, so the first event a subscriber sees is JobQueued; the others
            # hear of their new places with the next announcement.
            job.last_position = self._sched.place_of_newest(owner, self._running_owners(), len(self._workers))
            channel.publish(JobQueued(job_id, job.last_position))
        return handle

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job now, a running one at its next step; True: it ends with `JobCancelled`."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if self._sched.remove(job):
            self._end(job)
            job.channel.fail(JobCancelled("This job was cancelled before it started."))
            self._positions_changed()
            return True
        return self._stop(job, JobCancelled("This job was cancelled."))

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a job still waiting or running."""
        job = self._jobs.get(job_id)
        return job.handle if job else None

    def position(self, job_id: str) -> int | None:
        """0 = running, n = n-th to start (1 = next); None if the job is not in the queue."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.worker is not None:
            return 0
        return self._start_order().get(job)

    def estimate(self, job_id: str) -> float | None:
        """Seconds until the job should be done, from recent job durations; None before any job finished."""
        position = self.position(job_id)
        if position is None:
            return None
        known = [w.stats.average for w in self._workers if w.stats.average is not None]
        if not known:
            return None
        fallback = sum(known) / len(known)
        now = time.monotonic()
        busy: list[tuple[float | None, float]] = []
        for worker in self._workers:
            average = worker.stats.average if worker.stats.average is not None else fallback
            left = average - (now - worker.job.started_at) if worker.job is not None else 0.0
            if worker.job is not None and worker.job.job_id == job_id:
                return max(left, 0.0)
            busy.append((average, left))
        return estimate_finish(position - 1, busy)

    def jobs_of(self, owner: str) -> tuple[str, ...]:
        """Ids of `owner`'s jobs in the queue: running first, then waiting in the order they will start."""
        running = tuple(job.job_id for job in self._running if job.owner == owner)
        return running + tuple(job.job_id for job in self._sched.waiting_jobs(owner))

    @property
    def waiting(self) -> int:
        return len(self._sched)

    @property
    def running(self) -> int:
        return len(self._running)

    def stats(self) -> QueueStats:
        """A snapshot for an admin's status command."""
        known = [w.stats.average for w in self._workers if w.stats.average is not None]
        return QueueStats(
            workers=len(self._workers),
            running=len(self._running),
            waiting=len(self._sched),
            owners=len({job.owner for job in self._jobs.values()}),
            average_job_s=sum(known) / len(known) if known else None,
        )

    # --- scheduling -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand waiting jobs to idle workers, fairly, until one side runs out."""
        if not self._started or self._closing:
            return
        started = False
        while self._idle:
            picked = self._sched.pop_next()
            if picked is None:
                break
            _, job = picked
            self._launch(job, self._idle.pop(0))
            started = True
        if started:
            self._positions_changed()

    def _launch(self, job: _Job, worker: _Worker) -> None:
        """Hand `job` to `worker`'s device thread now, and a task to wait for it."""
        assert worker.thread is not None
        loop = asyncio.get_running_loop()
        on_progress = self._progress_callback(job, loop)

        def call() -> GenerationResult:
            return worker.backend.generate(job.request, on_progress=on_progress, cancelled=job.cancel_event)

        job.worker = worker
        job.started_at = time.monotonic()
        worker.job = job
        self._running[job] = None
        running = worker.thread.run(call)
        job.channel.publish(JobStarted(job.job_id, worker.name))
        task = loop.create_task(self._finish(job, worker, running), name=f"job-{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, job: _Job, worker: _Worker, running: asyncio.Future[GenerationResult]) -> None:
        """Wait for the device thread, start the worker's next job, then deliver this one's outcome."""
        outcome: GenerationResult | EngineError
        try:
            outcome = await running
        except EngineError as exc:  # JobCancelled included
            outcome = exc
        except asyncio.CancelledError:
            # Only close() cancels this wait, after giving up on the backend.
            outcome = JobInterrupted("The bot shut down while this job was running.")
            raise
        except Exception as exc:
            log.exception("backend %s failed job %s", worker.name, job.job_id)
            outcome = GenerationError(
                f"The image generator failed unexpectedly ({type(exc).__name__}); "
                "try again, and tell the server admin if it keeps happening."
            )
            outcome.__cause__ = exc
        finally:
            elapsed = time.monotonic() - job.started_at
            # The device first: the next job starts before anyone hears of this one.
            self._end(job)
            worker.job = None
            self._sched.finished(job.owner)
            self._idle.append(worker)
            self._dispatch()
            if job.cancel_error is not None:
                job.channel.fail(job.cancel_error)  # a cancel wins even if the backend finished
            elif isinstance(outcome, GenerationResult):
                worker.stats.add(elapsed)
                job.channel.finish(outcome)
            else:
                job.channel.fail(outcome)

    def _stop(self, job: _Job, error: JobCancelled) -> bool:
        """Ask a running job to stop at its next step; it will end with `error`."""
        if job.worker is None or job.channel.done():
            return False
        if job.cancel_error is None:
            job.cancel_error = error
        job.cancel_event.set()
        return True

    def _end(self, job: _Job) -> None:
        self._jobs.pop(job.job_id, None)
        self._running.pop(job, None)

    # --- progress and positions -----------------------------------------------------------

    def _progress_callback(self, job: _Job, loop: asyncio.AbstractEventLoop) -> ProgressCallback:
        """A callback for the device thread: keeps the latest progress and wakes the loop once per burst."""

        def on_progress(progress: Progress) -> None:
            with job.progress_lock:
                job.pending_progress = progress
                if job.flush_scheduled:
                    return
                job.flush_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(self._flush_progress, job)

        return on_progress

    def _flush_progress(self, job: _Job) -> None:
        with job.progress_lock:
            progress, job.pending_progress = job.pending_progress, None
            job.flush_scheduled = False
        if progress is not None:
            job.channel.publish(JobProgress(job.job_id, progress))

    def _running_owners(self) -> list[str]:
        return [job.owner for job in self._running]

    def _start_order(self) -> dict[_Job, int]:
        if self._order is None:
            order = self._sched.start_order(self._running_owners(), len(self._workers))
            self._order = {job: place for place, job in enumerate(order, start=1)}
        return self._order

    def _positions_changed(self) -> None:
        """Positions moved; tell waiting jobs soon, at most once per `position_interval_s`.

        Every start moves every waiting job, so announcing each change would cost the loop
        a wakeup per waiting subscriber per job.
        """
        self._order = None
        if self._announcement is None and len(self._sched) and not self._closing:
            loop = asyncio.get_running_loop()
            delay = max(self._last_announced + self.position_interval_s - loop.time(), 0.0)
            self._announcement = loop.call_later(delay, self._announce_positions)

    def _announce_positions(self) -> None:
        self._announcement = None
        self._last_announced = asyncio.get_running_loop().time()
        for job, place in self._start_order().items():
            if place != job.last_position:
                job.last_position = place
                job.channel.publish(JobQueued(job.job_id, place))
