"""Job rows through their life: queued → running → succeeded | failed | cancelled.

Running → queued happens only on recovery after a restart; any other change raises `JobStateError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.errors import JobNotFound, JobStateError
from bot.store.models import CELL_INDEXES, Image, Job, JobKind, JobStatus, UsageEntry, new_job_id, utcnow

UNFINISHED: Final = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One file a finished job wrote: index 0 = grid, 1–4 = cells (an upscale writes index 1)."""

    index: int
    width: int
    height: int
    path: str
    """Relative to the data dir."""
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `recover_unfinished` did: jobs to submit again, and jobs given up (tell their owners)."""

    requeued: list[Job] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)


# --- jobs -------------------------------------------------------------------------------------


async def create_job(
    session: AsyncSession,
    *,
    kind: JobKind,
    user_id: int,
    channel_id: int,
    prompt: str,
    seed: int,
    params: dict[str, Any] | None = None,
    model: str | None = None,
    guild_id: int | None = None,
    parent_id: str | None = None,
    parent_index: int | None = None,
    message_id: int | None = None,
    job_id: str | None = None,
    now: datetime | None = None,
) -> Job:
    """Add a queued job and flush it (so a bad parent id fails here, not at commit)."""
    if parent_index is not None and not CELL_INDEXES[0] <= parent_index <= CELL_INDEXES[1]:
        raise ValueError(f"parent_index is a grid cell 1–4; got {parent_index}")
    job = Job(
        id=job_id or new_job_id(),
        kind=kind,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        message_id=message_id,
        prompt=prompt,
        params=dict(params or {}),
        model=model,
        seed=seed,
        seeds=[],
        status=JobStatus.QUEUED,
        attempts=0,
        parent_id=parent_id,
        parent_index=parent_index,
        created_at=now or utcnow(),
        gpu_seconds=0.0,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(session: AsyncSession, job_id: str) -> Job | None:
    """The job with its images (in index order), or None."""
    return await session.get(Job, job_id)


async def _job_for_change(session: AsyncSession, job_id: str, wanted: JobStatus) -> Job:
    # FOR UPDATE locks the row on PostgreSQL (SQLite ignores it; its write lock is taken at BEGIN).
    job = await session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    if job.status not in UNFINISHED:
        raise JobStateError(job_id, job.status, wanted)
    return job


async def mark_running(session: AsyncSession, job_id: str, *, now: datetime | None = None) -> Job:
    """The queue started the job: record the start time and count the attempt."""
    job = await _job_for_change(session, job_id, JobStatus.RUNNING)
    if job.status is JobStatus.RUNNING:
        raise JobStateError(job_id, job.status, JobStatus.RUNNING)
    job.status = JobStatus.RUNNING
    job.started_at = now or utcnow()
    job.attempts += 1
    await session.flush()
    return job


async def mark_succeeded(
    session: AsyncSession,
    job_id: str,
    *,
    images: Sequence[ImageRecord],
    seeds: Sequence[int],
    gpu_seconds: float,
    model: str | None = None,
    grid_path: str | None = None,
    now: datetime | None = None,
) -> Job:
    """Store the result: images, seeds, GPU time, and one usage-ledger row, all in this transaction.

    Accepted from queued too: a slow consumer of queue events may never see "started".
    """
    job = await _job_for_change(session, job_id, JobStatus.SUCCEEDED)
    finished = now or utcnow()
    job.status = JobStatus.SUCCEEDED
    job.started_at = job.started_at or finished - timedelta(seconds=gpu_seconds)
    job.finished_at = finished
    job.seeds = [int(seed) for seed in seeds]
    job.gpu_seconds = gpu_seconds
    job.grid_path = grid_path
    job.error = None
    if model is not None:
        job.model = model
    job.images = [
        Image(index=image.index, seed=image.seed, width=image.width, height=image.height, path=image.path)
        for image in images
    ]
    session.add(
        UsageEntry(
            job_id=job.id,
            user_id=job.user_id,
            guild_id=job.guild_id,
            at=finished,
            gpu_seconds=gpu_seconds,
            jobs=1,
        )
    )
    await session.flush()
    return job


async def mark_failed(
    session: AsyncSession, job_id: str, error: str, *, gpu_seconds: float = 0.0, now: datetime | None = None
) -> Job:
    """The job failed; `error` is the sentence shown to its owner."""
    job = await _job_for_change(session, job_id, JobStatus.FAILED)
    job.status = JobStatus.FAILED
    job.error = error
    job.gpu_seconds = gpu_seconds
    job.finished_at = now or utcnow()
    await session.flush()
    return job


async def mark_cancelled(session: AsyncSession, job_id: str, *, now: datetime | None = None) -> Job:
    """The owner (or an admin) cancelled the job before it finished."""
    job = await _job_for_change(session, job_id, JobStatus.CANCELLED)
    job.status = JobStatus.CANCELLED
    job.finished_at = now or utcnow()
    await session.flush()
    return job


async def requeue_job(session: AsyncSession, job_id: str) -> Job:
    """Put an unfinished job back to queued (after a restart), keeping its attempt count."""
    job = await _job_for_change(session, job_id, JobStatus.QUEUED)
    job.status = JobStatus.QUEUED
    job.started_at = None
    await session.flush()
    return job


async def set_message_id(session: AsyncSession, job_id: str, message_id: int) -> None:
    """Remember the channel message that shows the job."""
    job = await session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    job.message_id = message_id
    await session.flush()


async def recent_jobs(
    session: AsyncSession,
    user_id: int,
    *,
    limit: int = 10,
    guild_id: int | None = None,
    statuses: Sequence[JobStatus] | None = None,
) -> list[Job]:
    """A member's jobs, newest first (their history), optionally in one guild or with given statuses."""
    query = select(Job).where(Job.user_id == user_id)
    if guild_id is not None:
        query = query.where(Job.guild_id == guild_id)
    if statuses is not None:
        query = query.where(Job.status.in_(statuses))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def unfinished_jobs(session: AsyncSession) -> list[Job]:
    """Jobs left queued or running (by a previous run of the bot), oldest first."""
    query = select(Job).where(Job.status.in_(UNFINISHED)).order_by(Job.created_at, Job.id)
    return list((await session.scalars(query)).all())


async def recover_unfinished(
    session: AsyncSession,
    *,
    max_attempts: int = 2,
    error: str | None = None,
    now: datetime | None = None,
) -> Recovery:
    """On start: requeue unfinished jobs (oldest first), fail those already started `max_attempts` times.

    The bot then submits `requeued` to the queue again and tells the owners of `failed` (`job.error`).
    """
    error = error or (
        f"This job was interrupted by a bot restart {max_attempts} times, so it was given up; "
        "run it again to retry."
    )
    recovery = Recovery()
    for job in await unfinished_jobs(session):
        if job.attempts >= max_attempts:
            recovery.failed.append(await mark_failed(session, job.id, error, now=now))
        else:
            recovery.requeued.append(await requeue_job(session, job.id))
    return recovery
