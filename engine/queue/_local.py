"""`LocalQueue`: the in-process queue, one worker per backend, each on its own thread.

The event loop owns the jobs' channels and publishes every event; the device threads take their
next job themselves (see `_worker`) and only post what happened back to the loop. The policy of
who goes next lives in `_scheduler`, so this module is the wiring between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from engine.backend import Backend, ProgressCallback
from engine.errors import JobCancelled, JobInterrupted, QueueClosed, QueueFull
from engine.queue._events import JobChannel, JobProgress, JobQueued, JobStarted
from engine.queue._handle import JobHandle
from engine.queue._positions import PositionBoard
from engine.queue._scheduler import FairScheduler, estimate_finish
from engine.queue._worker import DeviceWorker, Outcome, QueueJob
from engine.types import GenerationRequest, GenerationResult, Progress

__all__ = ["LocalQueue"]

log = logging.getLogger("engine.queue")

_ABANDON_AFTER_S = 2.0
"""After `close()` cancels running jobs, how long a backend gets to notice before it is abandoned."""


class LocalQueue:
    """An in-process fair queue over one worker per backend. Use `async with` or `start()`/`close()`.

    Scheduling state is shared with the worker threads (a worker takes its own next job) and is
    guarded by one lock, held only for bookkeeping; events are published on the event loop only.
    """

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
            DeviceWorker(f"{backend.name}#{i}" if many else backend.name, backend)
            for i, backend in enumerate(backends)
        ]
        self.max_waiting_per_owner = max_waiting_per_owner
        self.position_interval_s = position_interval_s
        self._lock = threading.Lock()
        # Guarded by the lock: the scheduler, the running jobs, the idle workers, the flags.
        self._sched: FairScheduler[QueueJob] = FairScheduler(max_running_per_owner=max_running_per_owner)
        self._running: dict[QueueJob, None] = {}  # in start order, oldest first
        self._idle: list[DeviceWorker] = []
        self._started = False
        self._closing = False
        # Event loop only.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: dict[str, QueueJob] = {}
        self._positions: PositionBoard[QueueJob] = PositionBoard(self._rank, interval_s=position_interval_s)
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
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._started = True
            for worker in self._workers:
                worker.start(self)
                self._idle.append(worker)
            self._dispatch_locked()
        self._positions_changed()

    async def close(self, *, grace_s: float = 30.0) -> None:
        """Take no more jobs, drop waiting ones, give running ones `grace_s` seconds, then stop them."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_task(self._close(grace_s))
        # Shielded: a caller that stops waiting does not leave the queue half closed.
        await asyncio.shield(self._closed)

    async def _close(self, grace_s: float) -> None:
        with self._lock:
            self._closing = True
            waiting = [job for job in self._jobs.values() if self._sched.is_waiting(job)]
            for job in waiting:
                self._sched.remove(job)
            running = list(self._running)
        self._positions.close()
        for job in waiting:
            self._forget(job)
            job.channel.fail(
                JobInterrupted(
                    "The bot is shutting down, so this job did not start; it may run after a restart."
                )
            )
        if running:
            loop = asyncio.get_running_loop()
            ends = [loop.create_task(job.channel.ended()) for job in running]
            _, pending = await asyncio.wait(ends, timeout=grace_s)
            if pending:
                for job in running:
                    self._stop(job, JobInterrupted("The bot shut down while this job was running."))
                _, pending = await asyncio.wait(pending, timeout=_ABANDON_AFTER_S)
            for job in running:
                if not job.channel.done():
                    log.warning("abandoning job %s: its backend ignored cancellation", job.job_id)
                    self._forget(job)
                    job.channel.fail(JobInterrupted("The bot shut down while this job was running."))
            await asyncio.gather(*pending)  # every job has an outcome now, so these return at once
        for worker in self._workers:
            worker.stop()

    async def __aenter__(self) -> LocalQueue:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- the public operations ----------------------------------------------------------------

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
        """Queue a job for `owner`; raise `QueueFull` or `QueueClosed`. Reuse a stored `job_id` to resume.

        `max_running`/`max_waiting` override the queue's per-owner limits for this owner (e.g. an
        admin's quota rule); the running limit given last applies to all of the owner's jobs. This
        queue does not number runs (its events carry no attempt), so `attempts` is not used.
        """
        if self._closing:
            raise QueueClosed("The bot is shutting down and takes no new jobs; try again in a minute.")
        job_id = job_id or secrets.token_hex(16)  # like uuid4().hex, at a fraction of the cost
        if job_id in self._jobs:
            raise ValueError(f"job id {job_id!r} is already in the queue")
        if max_running is not None and max_running < 1:
            raise ValueError(f"max_running must be at least 1; got {max_running}")
        if max_waiting is None:
            max_waiting = self.max_waiting_per_owner
        elif max_waiting < 0:
            raise ValueError(f"max_waiting must be 0 or more; got {max_waiting}")
        channel = JobChannel(job_id)
        handle = JobHandle(job_id, owner, request, channel, self.cancel)
        job = QueueJob(job_id=job_id, owner=owner, request=request, channel=channel)
        with self._lock:
            # A job that can start right now never waits, so it does not count against the limit.
            starts_now = self._started and bool(self._idle) and self._sched.can_run(owner, max_running)
            if self._sched.waiting_count(owner) >= max_waiting and not starts_now:
                raise QueueFull(owner, max_waiting)
            self._sched.push(owner, job, max_running=max_running)
            self._dispatch_locked()
            place = None
            if job.worker is None:
                place = self._sched.place_of_newest(owner)
        self._jobs[job_id] = job
        self._positions_changed()
        if place is not None:
            # Told at once (cheaply, so a burst of submits stays linear), so the first event a
            # subscriber sees is JobQueued; everyone hears exact places with the next announcement.
            job.last_position = place
            channel.publish(JobQueued(job_id, place))
        return handle

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job now, a running one at its next step; True: it ends with `JobCancelled`."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        with self._lock:
            removed = self._sched.remove(job)
        if removed:
            self._forget(job)
            job.channel.fail(JobCancelled("This job was cancelled before it started."))
            self._positions_changed()
            return True
        return self._stop(job, JobCancelled("This job was cancelled."))

    def position(self, job_id: str) -> int | None:
        """0 = running, n = n-th to start (1 = next); None if the job is not in the queue."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.worker is not None:
            return 0
        return self._positions.order().get(job)

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
            current = worker.job
            left = average - (now - current.started_at) if current is not None else 0.0
            if current is not None and current.job_id == job_id:
                return max(left, 0.0)
            busy.append((average, left))
        if position == 0:
            return 0.0  # ended on its device a moment ago; the outcome is on its way
        return estimate_finish(position - 1, busy)

    # --- scheduling (any thread, under the lock) --------------------------------------------------

    def _dispatch_locked(self) -> None:
        """Hand waiting jobs to idle workers, fairly, until one side runs out."""
        if not self._started or self._closing:
            return
        while self._idle:
            picked = self._sched.pop_next()
            if picked is None:
                break
            worker = self._idle.pop(0)
            self._assign_locked(picked[1], worker)
            worker.give(picked[1])

    def _assign_locked(self, job: QueueJob, worker: DeviceWorker) -> None:
        job.cancel_event = threading.Event()
        job.worker = worker
        job.started_at = time.monotonic()
        worker.job = job
        self._running[job] = None
        self._positions.invalidate()

    def _running_owners(self) -> list[str]:
        return [job.owner for job in self._running]

    # --- WorkerHost: called on a worker's thread ------------------------------------------------

    def next_job(self, worker: DeviceWorker, ended: QueueJob) -> QueueJob | None:
        """Book `ended` as over and pick the worker's next job right here, without the event loop."""
        with self._lock:
            self._running.pop(ended, None)
            worker.job = None
            self._sched.finished(ended.owner)
            self._positions.invalidate()
            upcoming = None
            if self._started and not self._closing:
                picked = self._sched.pop_next()
                if picked is not None:
                    upcoming = picked[1]
                    self._assign_locked(upcoming, worker)
            if upcoming is None:
                self._idle.append(worker)
            self._dispatch_locked()  # the ended job may have let an owner at the running limit go on
        return upcoming

    def progress_callback(self, job: QueueJob) -> ProgressCallback:
        """Keeps the latest progress and wakes the loop once per burst; never blocks the device."""

        def on_progress(progress: Progress) -> None:
            if job.progress.put(progress):
                self._post(self._flush_progress, job)

        return on_progress

    def started(self, job: QueueJob, worker: DeviceWorker) -> None:
        self._post(self._on_started, job, worker)

    def finished(self, job: QueueJob, worker: DeviceWorker, outcome: Outcome, elapsed: float) -> None:
        self._post(self._on_finished, job, worker, outcome, elapsed)

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    # --- the event loop's side ----------------------------------------------------------------

    def _on_started(self, job: QueueJob, worker: DeviceWorker) -> None:
        job.channel.publish(JobStarted(job.job_id, worker.name))
        self._positions_changed()

    def _on_finished(self, job: QueueJob, worker: DeviceWorker, outcome: Outcome, elapsed: float) -> None:
        self._forget(job)
        if job.cancel_error is not None:
            job.channel.fail(job.cancel_error)  # a cancel wins even if the backend finished
        elif isinstance(outcome, GenerationResult):
            worker.stats.add(elapsed)
            job.channel.finish(outcome)
        else:
            job.channel.fail(outcome)
        self._positions_changed()

    def _flush_progress(self, job: QueueJob) -> None:
        while (progress := job.progress.take()) is not None:
            job.channel.publish(JobProgress(job.job_id, progress))

    def _stop(self, job: QueueJob, error: JobCancelled) -> bool:
        """Ask a running job to stop at its next step; it will end with `error`."""
        if job.worker is None or job.cancel_event is None or job.channel.done():
            return False
        if job.cancel_error is None:
            job.cancel_error = error
        job.cancel_event.set()
        return True

    def _forget(self, job: QueueJob) -> None:
        if self._jobs.get(job.job_id) is job:
            del self._jobs[job.job_id]

    def _rank(self) -> list[QueueJob]:
        with self._lock:
            return self._sched.start_order(self._running_owners(), len(self._workers))

    def _positions_changed(self) -> None:
        self._positions.changed(anyone_waits=bool(len(self._sched)) and not self._closing)
