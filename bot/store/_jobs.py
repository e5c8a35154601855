"""Job rows through their life: queued → running → succeeded | failed | cancelled | moderated.

Every change of a job's status in the bot goes through these functions, and each checks the move:
a finished job never changes again, and running → queued happens only when recovery requeues a job
after a restart. Anything else raises `JobStateError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.errors import JobNotFound, JobStateError, StaleAttempt
from bot.store.models import (
    CELL_INDEXES,
    MAX_NAME_LENGTH,
    UNFINISHED,
    Image,
    Job,
    JobKind,
    JobStatus,
    UsageEntry,
    new_job_id,
    utcnow,
)

__all__ = [
    "MAX_ATTEMPTS",
    "ImageRecord",
    "Recovery",
    "active_jobs",
    "count_active",
    "create_job",
    "get_job",
    "image_path",
    "mark_cancelled",
    "mark_failed",
    "mark_moderated",
    "mark_running",
    "mark_succeeded",
    "recent_jobs",
    "recover_unfinished",
    "requeue_job",
    "set_message_id",
    "unfinished_jobs",
]

MAX_ATTEMPTS: Final = 3
"""A job started this many times without finishing (it keeps taking the bot down) is given up."""


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


def aspect_of(params: dict[str, Any]) -> str | None:
    """`W:H` of the request a job row's `params` keep (`bot.jobs.conversions.request_to_params`)."""
    ratio = (params.get("request") or {}).get("aspect_ratio")
    if not isinstance(ratio, list | tuple) or len(ratio) != 2:
        return None
    return f"{int(ratio[0])}:{int(ratio[1])}"


# --- changes ----------------------------------------------------------------------------------


async def create_job(
    session: AsyncSession,
    *,
    kind: JobKind,
    user_id: int,
    channel_id: int,
    prompt: str,
    seed: int,
    params: dict[str, Any] | None = None,
    user_name: str | None = None,
    model: str | None = None,
    guild_id: int | None = None,
    parent_id: str | None = None,
    parent_index: int | None = None,
    message_id: int | None = None,
    job_id: str | None = None,
    now: datetime | None = None,
) -> Job:
    """Add a queued job and flush it (so a bad parent id fails here, not at commit)."""
    params = dict(params or {})
    if parent_index is not None and not CELL_INDEXES[0] <= parent_index <= CELL_INDEXES[1]:
        raise ValueError(f"parent_index is a grid cell 1–4; got {parent_index}")
    job = Job(
        id=job_id or new_job_id(),
        kind=kind,
        user_id=user_id,
        user_name=user_name[:MAX_NAME_LENGTH] if user_name else None,
        guild_id=guild_id,
        channel_id=channel_id,
        message_id=message_id,
        prompt=prompt,
        params=params,
        model=model,
        aspect=aspect_of(params),
        seed=seed,
        seeds=[],
        status=JobStatus.QUEUED,
        attempts=0,
        parent_id=parent_id,
        parent_index=parent_index,
        created_at=now or utcnow(),
        gpu_seconds=0.0,
        flagged=False,
    )
    session.add(job)
    await session.flush()
    return job


async def _job_for_change(
    session: AsyncSession, job_id: str, wanted: JobStatus, attempt: int | None = None
) -> Job:
    """The unfinished job, locked for the change; with `attempt` (a queue that numbers runs), a run
    older than the job's latest is refused with `StaleAttempt` and a newer one becomes the latest."""
    # FOR UPDATE locks the row on PostgreSQL (SQLite ignores it; its write lock is taken at BEGIN).
    job = await session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    if job.status not in UNFINISHED:
        raise JobStateError(job_id, job.status, wanted)
    if attempt is not None:
        if attempt < job.attempts:
            raise StaleAttempt(job_id, attempt, job.attempts)
        job.attempts = attempt
    return job


async def mark_running(
    session: AsyncSession, job_id: str, *, attempt: int | None = None, now: datetime | None = None
) -> Job:
    """The queue started the job: record the start time and count the run (`attempt`, when the queue
    numbers runs; otherwise one more than before)."""
    job = await _job_for_change(session, job_id, JobStatus.RUNNING, attempt)
    if job.status is JobStatus.RUNNING:
        raise JobStateError(job_id, job.status, JobStatus.RUNNING)
    job.status = JobStatus.RUNNING
    job.started_at = now or utcnow()
    if attempt is None:
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
    flagged: bool = False,
    hosted: bool = False,
    attempt: int | None = None,
    now: datetime | None = None,
) -> Job:
    """Store the result: images, seeds, GPU time, and one usage-ledger row (with the number of images
    made, and whether a `hosted` engine made them), all in this transaction.

    `flagged`: the safety check flagged an image, and the server's rule let it be posted. Accepted
    from queued too: a job can end before its follower heard that it started. A result of a run
    older than the job's latest (`attempt`) is refused with `StaleAttempt`: once a lost worker's job
    was given to another, only the new run's result counts.
    """
    job = await _job_for_change(session, job_id, JobStatus.SUCCEEDED, attempt)
    finished = now or utcnow()
    job.status = JobStatus.SUCCEEDED
    made = sum(1 for image in images if image.index > 0)  # index 0 is the grid made of them
    _ran(session, job, gpu_seconds, finished, images=made, hosted=hosted)
    job.seeds = [int(seed) for seed in seeds]
    job.grid_path = grid_path
    job.error = None
    job.flagged = flagged
    if model is not None:
        job.model = model
    job.images = [
        Image(index=image.index, seed=image.seed, width=image.width, height=image.height, path=image.path)
        for image in images
    ]
    await session.flush()
    return job


def _ran(
    session: AsyncSession,
    job: Job,
    gpu_seconds: float,
    finished: datetime,
    *,
    images: int = 0,
    hosted: bool = False,
) -> None:
    """The device ran the job to its end: its times, GPU seconds and one usage-ledger row."""
    job.started_at = job.started_at or finished - timedelta(seconds=gpu_seconds)
    job.finished_at = finished
    job.gpu_seconds = gpu_seconds
    session.add(
        UsageEntry(
            job_id=job.id,
            user_id=job.user_id,
            guild_id=job.guild_id,
            at=finished,
            gpu_seconds=gpu_seconds,
            jobs=1,
            images=images,
            hosted=hosted,
        )
    )


async def mark_moderated(
    session: AsyncSession,
    job_id: str,
    reason: str,
    *,
    gpu_seconds: float | None = None,
    attempt: int | None = None,
    now: datetime | None = None,
) -> Job:
    """The safety check flagged the job's start picture or its images, and they were withheld: nothing
    is kept, and `reason` tells its owner why.

    `gpu_seconds`: how long the device ran it when its images were withheld (they are counted in the
    usage ledger, as for `mark_succeeded`); None when it never ran (its picture was flagged first).
    Accepted from queued too, and `attempt` is checked as for `mark_succeeded`.
    """
    job = await _job_for_change(session, job_id, JobStatus.MODERATED, attempt)
    finished = now or utcnow()
    job.status = JobStatus.MODERATED
    job.error = reason
    job.flagged = True
    if gpu_seconds is None:
        job.finished_at = finished
    else:
        _ran(session, job, gpu_seconds, finished)
    await session.flush()
    return job


async def mark_failed(
    session: AsyncSession,
    job_id: str,
    error: str,
    *,
    gpu_seconds: float = 0.0,
    attempt: int | None = None,
    now: datetime | None = None,
) -> Job:
    """The job failed; `error` is the reason shown to its owner (`attempt` as for `mark_succeeded`)."""
    job = await _job_for_change(session, job_id, JobStatus.FAILED, attempt)
    job.status = JobStatus.FAILED
    job.error = error
    job.gpu_seconds = gpu_seconds
    job.finished_at = now or utcnow()
    await session.flush()
    return job


async def mark_cancelled(
    session: AsyncSession, job_id: str, *, reason: str = "cancelled", now: datetime | None = None
) -> Job:
    """The job ended before it ran to the end: its owner cancelled it, or the bot took it back."""
    job = await _job_for_change(session, job_id, JobStatus.CANCELLED)
    job.status = JobStatus.CANCELLED
    job.error = reason
    job.finished_at = now or utcnow()
    await session.flush()
    return job


async def requeue_job(session: AsyncSession, job_id: str, *, attempt: int | None = None) -> Job:
    """Put an unfinished job back to queued: after a restart (keeping its attempt count), or when the
    worker running it was lost and it will run again as run `attempt` (older runs are then refused)."""
    job = await _job_for_change(session, job_id, JobStatus.QUEUED, attempt)
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


async def recover_unfinished(
    session: AsyncSession, *, max_attempts: int = MAX_ATTEMPTS, now: datetime | None = None
) -> Recovery:
    """On start: requeue the jobs a previous run left unfinished (oldest first), and fail those
    already started `max_attempts` times. The bot submits `requeued` again and tells the owners of `failed`.
    """
    recovery = Recovery()
    for job in await unfinished_jobs(session):
        if job.attempts >= max_attempts:
            reason = f"it was interrupted by a bot restart {job.attempts} times, so it was given up"
            recovery.failed.append(await mark_failed(session, job.id, reason, now=now))
        else:
            recovery.requeued.append(await requeue_job(session, job.id))
    return recovery


# --- reads ------------------------------------------------------------------------------------


async def get_job(session: AsyncSession, job_id: str) -> Job | None:
    """The job with its images (in index order), or None."""
    return await session.get(Job, job_id)


async def unfinished_jobs(session: AsyncSession) -> list[Job]:
    """Jobs left queued or running, oldest first."""
    query = select(Job).where(Job.status.in_(UNFINISHED)).order_by(Job.created_at, Job.id)
    return list((await session.scalars(query)).all())


async def active_jobs(session: AsyncSession, user_id: int) -> list[Job]:
    """A member's jobs still waiting or running, oldest first."""
    query = (
        select(Job).where(Job.user_id == user_id, Job.status.in_(UNFINISHED)).order_by(Job.created_at, Job.id)
    )
    return list((await session.scalars(query)).all())


async def count_active(session: AsyncSession, user_id: int) -> tuple[int, int]:
    """(waiting, running) jobs of a member, across servers: the queue is shared."""
    query = (
        select(Job.status, func.count())
        .where(Job.user_id == user_id, Job.status.in_(UNFINISHED))
        .group_by(Job.status)
    )
    counts = {status: int(n) for status, n in (await session.execute(query)).all()}
    return counts.get(JobStatus.QUEUED, 0), counts.get(JobStatus.RUNNING, 0)


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


async def image_path(session: AsyncSession, job_id: str, index: int) -> str | None:
    """Where a job's image `index` (0 grid, 1–4 cells) lies, relative to the data dir."""
    query = select(Image.path).where(Image.job_id == job_id, Image.index == index)
    return (await session.scalars(query)).first()
