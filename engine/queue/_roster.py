"""The bot's picture of its remote workers and the jobs on them: pure bookkeeping, no Redis, no asyncio.

A worker is one process on one GPU: one slot. The bot gives a worker a job only while it is idle
and holds the job's model, so Redis never holds a backlog and fairness stays with the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.queue._events import JobChannel
from engine.queue._scheduler import DurationStats
from engine.types import GenerationRequest

__all__ = ["RemoteJob", "Roster", "WorkerSlot"]


@dataclass(eq=False, slots=True)
class RemoteJob:
    """A job of the remote queue, from submission until its outcome is handed over."""

    job_id: str
    owner: str
    request: GenerationRequest
    model: str
    """The model id it needs; only a worker holding it may run it."""
    channel: JobChannel
    attempt: int
    """The run this is (1 for a new job); each run lost with its worker adds one."""
    worker: str | None = None
    """The worker it was given to; None while it waits in the bot."""
    given_at: float = 0.0
    started: bool = False
    cancel_requested: bool = False
    last_position: int | None = None


@dataclass(slots=True)
class WorkerSlot:
    """One worker process as the bot last heard of it."""

    name: str
    models: frozenset[str]
    seen: float
    """When its heartbeat was last seen (monotonic seconds)."""
    job: RemoteJob | None = None
    """The job the bot gave it and has not heard the end of."""
    reported_job: str = ""
    """The job its own heartbeat says it runs ("" = idle)."""
    stats: DurationStats = field(default_factory=DurationStats)


class Roster:
    """Live workers and which job each holds."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerSlot] = {}

    def seen(self, name: str, models: Iterable[str], at: float, reported_job: str = "") -> WorkerSlot:
        """A worker said it is alive (hello or heartbeat)."""
        slot = self.workers.get(name)
        if slot is None:
            slot = self.workers[name] = WorkerSlot(name, frozenset(models), at)
        else:
            slot.models, slot.seen = frozenset(models), max(slot.seen, at)
        slot.reported_job = reported_job
        return slot

    def heard(self, name: str, at: float) -> None:
        """News from a worker (an event, a result) shows it alive."""
        slot = self.workers.get(name)
        if slot is not None:
            slot.seen = max(slot.seen, at)

    def idle(self, now: float, fresh_s: float) -> list[WorkerSlot]:
        """Workers with no job that renewed their heartbeat within `fresh_s` (one that missed a
        renewal may be dead: better to wait a moment than to give it a job it never runs)."""
        return [slot for slot in self.workers.values() if slot.job is None and now - slot.seen <= fresh_s]

    def fits(self, job: RemoteJob, idle: Iterable[WorkerSlot]) -> WorkerSlot | None:
        """An idle worker that holds `job`'s model, or None."""
        return next((slot for slot in idle if job.model in slot.models), None)

    def give(self, job: RemoteJob, slot: WorkerSlot, at: float) -> None:
        job.worker, job.given_at, job.started = slot.name, at, False
        slot.job = job

    def free(self, job: RemoteJob) -> WorkerSlot | None:
        """`job` no longer occupies its worker (it ended, or was taken back); that worker, if known."""
        slot = self.workers.get(job.worker) if job.worker else None
        if slot is not None and slot.job is job:
            slot.job = None
        job.worker, job.started = None, False
        return slot

    def lost(self, now: float, lease_s: float) -> list[WorkerSlot]:
        """Forget the workers not heard of for longer than the lease, and return them."""
        gone = [slot for slot in self.workers.values() if now - slot.seen > lease_s]
        for slot in gone:
            del self.workers[slot.name]
        return gone

    def forget(self, name: str) -> WorkerSlot | None:
        """A worker shown to be gone (it let a lease run out, or said goodbye)."""
        return self.workers.pop(name, None)

    def running_owners(self) -> list[str]:
        """Owners of the jobs on workers, oldest first (for the start-order simulation)."""
        jobs = sorted((slot.job for slot in self.workers.values() if slot.job), key=lambda job: job.given_at)
        return [job.owner for job in jobs]
