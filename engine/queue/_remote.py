"""`RemoteQueue`: the bot's side of a queue whose jobs run on `imaginebot worker` processes via Redis.

Fairness stays here: the same `FairScheduler` as the local queue decides at the last moment, and a
job goes to Redis only when a worker that holds its model is idle, so Redis never holds a backlog
and a newcomer still waits at most one job slot. What is in flight is in Redis (see `_wire`); the
bot's database stays the source of truth, so losing Redis loses no job: what was on a worker that
cannot be reached any more runs again, counted as a new run (`attempt`), and a late result of an
older run is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engine.errors import (
    EngineError,
    GenerationError,
    JobCancelled,
    JobInterrupted,
    QueueClosed,
    QueueFull,
)
from engine.queue._events import JobChannel, JobProgress, JobQueued, JobRetried, JobStarted
from engine.queue._handle import JobHandle
from engine.queue._positions import PositionBoard
from engine.queue._remote_io import RemoteIO
from engine.queue._roster import RemoteJob, Roster, WorkerSlot
from engine.queue._scheduler import FairScheduler, estimate_finish
from engine.queue._wire import Fields, read_error, read_progress, read_result, text
from engine.types import GenerationRequest

__all__ = ["RemoteQueue"]

log = logging.getLogger("engine.queue")


class RemoteQueue:
    """A fair queue over remote workers; the same interface as `LocalQueue` (`JobQueue`)."""

    def __init__(
        self,
        url: str,
        *,
        model_of: Callable[[GenerationRequest], str],
        prefix: str = "imaginebot",
        lease_s: float = 30.0,
        max_attempts: int = 3,
        max_running_per_owner: int = 3,
        max_waiting_per_owner: int = 10,
        position_interval_s: float = 0.5,
    ) -> None:
        """`model_of(request)` names the model a job needs, as workers name the models they hold."""
        self._model_of = model_of
        self.max_waiting_per_owner = max_waiting_per_owner
        self.max_attempts = max_attempts
        self.lease_s = lease_s
        self._io = RemoteIO(url, prefix=prefix, lease_s=lease_s, book=self)
        self._sched: FairScheduler[RemoteJob] = FairScheduler(max_running_per_owner=max_running_per_owner)
        self._roster = Roster()
        self._jobs: dict[str, RemoteJob] = {}
        self._handed: dict[str, tuple[str, int]] = {}
        """Jobs whose outcome is handed over but not yet released: job id → (result entry, attempt)."""
        self._positions: PositionBoard[RemoteJob] = PositionBoard(self._rank, interval_s=position_interval_s)
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (raises `QueueUnavailable` with one sentence), find the workers and what is in flight."""
        await self._io.start()
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_forever())
        self._wake.set()

    async def close(self, *, grace_s: float = 30.0) -> None:
        """Take no more jobs; waiting ones end as interrupted; running ones get `grace_s` seconds to
        finish, then also end as interrupted here while they go on on their workers: their results
        wait in Redis for the next start."""
        if self._closing:
            return
        self._closing = True
        self._positions.close()
        for job in [job for job in self._jobs.values() if self._sched.remove(job)]:
            self._forget(job)
            job.channel.fail(JobInterrupted("The bot is shutting down, so this job did not start."))
        running = [job.channel.ended() for job in self._jobs.values()]
        if running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*running), timeout=grace_s)
        for job in list(self._jobs.values()):
            self._forget(job)
            job.channel.fail(JobInterrupted("The bot shut down; the job goes on on its worker."))
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        await self._io.close()

    async def __aenter__(self) -> RemoteQueue:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- the public operations -------------------------------------------------------------

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
        """Queue a job; raise `QueueFull` or `QueueClosed`. A stored `job_id` that is still in flight
        (a restart of the bot) is followed where it runs instead of being run again."""
        if self._closing:
            raise QueueClosed("The bot is shutting down and takes no new jobs; try again in a minute.")
        job_id = job_id or secrets.token_hex(16)
        if job_id in self._jobs or job_id in self._handed:
            raise ValueError(f"job id {job_id!r} is already in the queue")
        channel = JobChannel(job_id)
        handle = JobHandle(job_id, owner, request, channel, self.cancel, self.release)
        job = RemoteJob(job_id, owner, request, self._model_of(request), channel, attempt=attempts + 1)
        if self._io.resume(job):  # in flight since before a restart: its worker or result is waiting
            self._jobs[job_id] = job
            self._sched.add_running(owner, max_running=max_running)
            return handle
        if max_waiting is None:
            max_waiting = self.max_waiting_per_owner
        starts_now = bool(self._roster.fits(job, self._idle())) and self._sched.can_run(owner, max_running)
        if self._sched.waiting_count(owner) >= max_waiting and not starts_now:
            raise QueueFull(owner, max_waiting)
        self._sched.push(owner, job, max_running=max_running)
        self._jobs[job_id] = job
        job.last_position = place = self._sched.place_of_newest(owner)
        channel.publish(JobQueued(job_id, place))
        self._changed()
        return handle

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job now, a running one at its worker's next step; True: it ends cancelled."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if self._sched.remove(job):
            self._forget(job)
            job.channel.fail(JobCancelled("This job was cancelled before it started."))
            self._changed()
            return True
        job.cancel_requested = True
        await self._io.cancel(job)
        return True

    async def release(self, job_id: str) -> None:
        """The bot stored the job's outcome: delete the result and the in-flight record from Redis."""
        handed = self._handed.pop(job_id, None)
        if handed is not None:
            await self._io.release(job_id, *handed)

    def position(self, job_id: str) -> int | None:
        """0 = running (or given to a worker), n = n-th to start; None if the job is not in the queue."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.worker is not None:
            return 0
        return self._positions.order().get(job)

    def estimate(self, job_id: str) -> float | None:
        """Seconds until the job should be done, from the workers' recent job durations."""
        position = self.position(job_id)
        slots = list(self._roster.workers.values())
        known = [slot.stats.average for slot in slots if slot.stats.average is not None]
        if position is None or not known:
            return None
        fallback, now = sum(known) / len(known), time.monotonic()
        busy: list[tuple[float | None, float]] = []
        for slot in slots:
            average = slot.stats.average if slot.stats.average is not None else fallback
            left = average - (now - slot.job.given_at) if slot.job is not None else 0.0
            if slot.job is not None and slot.job.job_id == job_id:
                return max(left, 0.0)
            busy.append((average, left))
        return 0.0 if position == 0 else estimate_finish(position - 1, busy)

    # --- dispatch ---------------------------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._closing and (pair := self._next()) is not None:
                job, slot = pair
                try:
                    init = await self._source_image(job)
                except OSError as exc:
                    self._end(
                        job, GenerationError(f"Its source image cannot be read ({exc.strerror or exc}).")
                    )
                    continue
                try:
                    await self._io.give(job, slot.name, init)
                except Exception as exc:  # Redis is away: the job waits at the front, the worker idles
                    log.warning(
                        "could not give job %s to worker %s (%s); retrying", job.job_id, slot.name, exc
                    )
                    self._roster.free(job)
                    self._sched.finished(job.owner)
                    self._sched.push(job.owner, job, front=True)
                    self._io.later(self._wake.set, 1.0)
                    break

    async def _source_image(self, job: RemoteJob) -> bytes | None:
        """The bytes of the job's source image (its worker may be on another machine)."""
        path = job.request.init_image
        return None if path is None else await asyncio.to_thread(path.read_bytes)

    def _end(self, job: RemoteJob, error: EngineError) -> None:
        """End a job that was given a worker slot without it running there."""
        self._roster.free(job)
        self._sched.finished(job.owner)
        self._forget(job)
        job.channel.fail(error, job.attempt)
        self._changed()

    def _next(self) -> tuple[RemoteJob, WorkerSlot] | None:
        """The next job to give and the idle worker for it, booked as running; None if none fits."""
        idle = self._idle()
        if not idle:
            return None
        picked = self._sched.pop_next(fits=lambda job: self._roster.fits(job, idle) is not None)
        if picked is None:
            return None
        job = picked[1]
        slot = self._roster.fits(job, idle)
        assert slot is not None
        self._roster.give(job, slot, time.monotonic())
        self._positions_moved()
        return job, slot

    def _idle(self) -> list[WorkerSlot]:
        # A worker renews every third of a lease and the reaper looks every third: one silent for
        # longer than that has probably died, and is given nothing until it is heard of again.
        return self._roster.idle(time.monotonic(), fresh_s=0.8 * self.lease_s)

    def _changed(self) -> None:
        self._positions_moved()
        self._wake.set()

    def _positions_moved(self) -> None:
        self._positions.changed(anyone_waits=bool(len(self._sched)) and not self._closing)

    def _rank(self) -> list[RemoteJob]:
        return self._sched.start_order(self._roster.running_owners(), max(1, len(self._roster.workers)))

    def _forget(self, job: RemoteJob) -> None:
        if self._jobs.get(job.job_id) is job:
            del self._jobs[job.job_id]

    # --- what the workers say (called by RemoteIO) -----------------------------------------

    def worker_seen(
        self, name: str, models: list[str], reported_job: str = "", renewed_at: float | None = None
    ) -> None:
        """A hello, or a heartbeat last renewed at `renewed_at` (monotonic; None = now)."""
        known = name in self._roster.workers
        self._roster.seen(name, models, time.monotonic() if renewed_at is None else renewed_at, reported_job)
        if not known:
            log.info("worker %s is up, holding %s", name, ", ".join(models) or "no model")
        self._changed()

    def worker_gone(self, name: str, reason: str) -> None:
        """`name` is known to be gone; its job, if any, runs again."""
        slot = self._roster.forget(name)
        if slot is not None:
            log.warning("worker %s is gone: %s", name, reason)
            if slot.job is not None:
                self.retry(slot.job, reason)

    def on_event(self, fields: Fields) -> None:
        self._roster.heard(text(fields, "worker"), time.monotonic())
        job = self._current(text(fields, "job"), fields)
        if job is None:
            return
        kind = text(fields, "type")
        if kind == "started":
            job.started = True
            job.channel.publish(JobStarted(job.job_id, text(fields, "worker"), job.attempt))
        elif kind == "progress":
            job.channel.publish(JobProgress(job.job_id, read_progress(fields)))

    async def on_result(
        self, entry: str, fields: Fields, fetch: Callable[[str, int], Awaitable[Any]]
    ) -> bool:
        """A worker finished a run; False if nobody here waits for it (a late or unknown one)."""
        self._roster.heard(text(fields, "worker"), time.monotonic())
        job_id, attempt = text(fields, "job"), int(text(fields, "attempt", "0"))
        job = self._current(job_id, fields)
        if job is None:
            return False
        slot = self._roster.free(job)
        self._sched.finished(job.owner)
        self._forget(job)
        self._handed[job_id] = (entry, attempt)
        if slot is not None and (elapsed := text(fields, "elapsed")):
            slot.stats.add(float(elapsed))
        self._changed()
        if job.cancel_requested:
            job.channel.fail(JobCancelled("This job was cancelled."), attempt)
        elif text(fields, "status") == "ok":
            payload = await fetch(job_id, attempt)
            if payload:
                job.channel.finish(await asyncio.to_thread(read_result, payload), attempt)
            else:
                job.channel.fail(
                    GenerationError("The worker's images expired in Redis before the bot read them.")
                )
        else:
            job.channel.fail(read_error(fields), attempt)
        return True

    def _current(self, job_id: str, fields: Fields) -> RemoteJob | None:
        """The job, if the news is about its current run on the worker it was given to."""
        job = self._jobs.get(job_id)
        attempt = int(text(fields, "attempt", "0"))
        if job is None or job.attempt != attempt or job.worker != text(fields, "worker"):
            return None
        return job

    def lost_workers(self, now: float) -> list[RemoteJob]:
        """Forget workers silent past the lease; their jobs, to run again."""
        lost = []
        for slot in self._roster.lost(now, self.lease_s):
            log.warning("worker %s stopped answering", slot.name)
            if slot.job is not None:
                lost.append(slot.job)
        return lost

    def unclaimed(self, now: float) -> list[RemoteJob]:
        """Jobs given to a worker that, a lease later, says it runs something else (the entry was lost)."""
        return [
            job
            for job in self._jobs.values()
            if job.worker is not None
            and (slot := self._roster.workers.get(job.worker)) is not None
            and slot.reported_job != job.job_id
            and now - job.given_at > self.lease_s
        ]

    def job_on(self, job_id: str, attempt: int) -> RemoteJob | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.attempt == attempt and job.worker is not None else None

    def retry(self, job: RemoteJob, reason: str) -> None:
        """The run of `job` is lost: run it again at the front of its owner's line, or give up."""
        if self._jobs.get(job.job_id) is not job or job.worker is None:
            return
        self._roster.free(job)
        self._sched.finished(job.owner)
        if job.cancel_requested:  # it was being stopped anyway
            self._forget(job)
            job.channel.fail(JobCancelled("This job was cancelled."), job.attempt)
        elif job.attempt >= self.max_attempts:
            self._forget(job)
            job.channel.fail(
                GenerationError(f"It was given up after {job.attempt} tries: each time {reason}."),
                job.attempt,
            )
        else:
            job.attempt += 1
            log.warning("job %s runs again (run %d): %s", job.job_id, job.attempt, reason)
            self._sched.push(job.owner, job, front=True)
            job.channel.publish(JobRetried(job.job_id, job.attempt, reason))
        self._changed()

    def resume_on(self, job: RemoteJob, worker: str, attempt: int) -> None:
        """`job` was in flight on `worker` as run `attempt` before the bot restarted."""
        job.attempt = attempt
        slot = self._roster.workers.get(worker)
        if slot is not None and slot.job is None:
            self._roster.give(job, slot, time.monotonic())
        else:  # the worker is gone or busy with another: the reaper takes the job back after a lease
            job.worker, job.given_at = worker, time.monotonic()
