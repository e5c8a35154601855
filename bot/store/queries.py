"""The queries the bot needs, each a small async function over a session the caller owns.

Functions flush but never commit: `Database.session()` commits the whole unit of work at the end.
Job status moves queued → running → succeeded | failed | cancelled (running → queued on recovery);
any other change raises `JobStateError`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.errors import JobNotFound, JobStateError
from bot.store.models import (
    CELL_INDEXES,
    GuildSettings,
    Image,
    Job,
    JobKind,
    JobStatus,
    QuotaRule,
    QuotaScope,
    UsageEntry,
    UserSettings,
    new_job_id,
    utcnow,
)

__all__ = [
    "UNSET",
    "ImageRecord",
    "Recovery",
    "Usage",
    "create_job",
    "delete_quota_rule",
    "get_guild_settings",
    "get_job",
    "get_user_settings",
    "guild_usage_since",
    "mark_cancelled",
    "mark_failed",
    "mark_running",
    "mark_succeeded",
    "quota_rules",
    "recent_jobs",
    "recover_unfinished",
    "requeue_job",
    "set_message_id",
    "set_quota_rule",
    "unfinished_jobs",
    "upsert_guild_settings",
    "upsert_user_settings",
    "usage_since",
]

UNFINISHED: Final = (JobStatus.QUEUED, JobStatus.RUNNING)


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET
"""Default of upsert arguments: leave the stored value as it is (None is a value: "no limit")."""


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
class Usage:
    """Totals from the usage ledger over a window."""

    jobs: int
    gpu_seconds: float

    @property
    def gpu_minutes(self) -> float:
        return self.gpu_seconds / 60


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


# --- usage and quotas -------------------------------------------------------------------------


async def _usage(session: AsyncSession, *conditions: Any) -> Usage:
    query = select(
        func.coalesce(func.sum(UsageEntry.jobs), 0), func.coalesce(func.sum(UsageEntry.gpu_seconds), 0.0)
    ).where(*conditions)
    jobs, seconds = (await session.execute(query)).one()
    return Usage(jobs=int(jobs), gpu_seconds=float(seconds))


async def usage_since(
    session: AsyncSession, user_id: int, since: datetime, *, guild_id: int | None = None
) -> Usage:
    """A member's jobs and GPU seconds since `since` (in one guild, or everywhere)."""
    conditions = [UsageEntry.user_id == user_id, UsageEntry.at >= since]
    if guild_id is not None:
        conditions.append(UsageEntry.guild_id == guild_id)
    return await _usage(session, *conditions)


async def guild_usage_since(session: AsyncSession, guild_id: int, since: datetime) -> Usage:
    """A whole guild's jobs and GPU seconds since `since`."""
    return await _usage(session, UsageEntry.guild_id == guild_id, UsageEntry.at >= since)


async def quota_rules(session: AsyncSession, guild_id: int) -> list[QuotaRule]:
    """Every quota rule of a guild: the guild rule first, then role rules, then user rules."""
    order = {QuotaScope.GUILD: 0, QuotaScope.ROLE: 1, QuotaScope.USER: 2}
    rules = (await session.scalars(select(QuotaRule).where(QuotaRule.guild_id == guild_id))).all()
    return sorted(rules, key=lambda rule: (order[rule.scope], rule.target_id or 0))


def _check_target(scope: QuotaScope, target_id: int | None) -> None:
    if (scope is QuotaScope.GUILD) != (target_id is None):
        raise ValueError(
            f"a {scope.value} quota rule {'takes no' if scope is QuotaScope.GUILD else 'needs a'} target id"
        )


async def _find_rule(
    session: AsyncSession, guild_id: int, scope: QuotaScope, target_id: int | None
) -> QuotaRule | None:
    target = QuotaRule.target_id.is_(None) if target_id is None else QuotaRule.target_id == target_id
    query = select(QuotaRule).where(QuotaRule.guild_id == guild_id, QuotaRule.scope == scope, target)
    return (await session.scalars(query)).one_or_none()


async def set_quota_rule(
    session: AsyncSession,
    guild_id: int,
    scope: QuotaScope,
    target_id: int | None = None,
    *,
    jobs_per_day: int | Literal[_Unset.UNSET] | None = UNSET,
    gpu_minutes_per_day: float | Literal[_Unset.UNSET] | None = UNSET,
    max_waiting: int | Literal[_Unset.UNSET] | None = UNSET,
    max_running: int | Literal[_Unset.UNSET] | None = UNSET,
) -> QuotaRule:
    """Create or change the rule for (guild, scope, target); None = no limit, UNSET = keep."""
    _check_target(scope, target_id)
    rule = await _find_rule(session, guild_id, scope, target_id)
    if rule is None:
        rule = QuotaRule(guild_id=guild_id, scope=scope, target_id=target_id)
        session.add(rule)
    if jobs_per_day is not UNSET:
        rule.jobs_per_day = jobs_per_day
    if gpu_minutes_per_day is not UNSET:
        rule.gpu_minutes_per_day = gpu_minutes_per_day
    if max_waiting is not UNSET:
        rule.max_waiting = max_waiting
    if max_running is not UNSET:
        rule.max_running = max_running
    await session.flush()
    return rule


async def delete_quota_rule(
    session: AsyncSession, guild_id: int, scope: QuotaScope, target_id: int | None = None
) -> bool:
    """Remove the rule for (guild, scope, target); False if there was none."""
    _check_target(scope, target_id)
    rule = await _find_rule(session, guild_id, scope, target_id)
    if rule is None:
        return False
    await session.execute(delete(QuotaRule).where(QuotaRule.id == rule.id))
    session.expunge(rule)
    return True


# --- guild and user settings ------------------------------------------------------------------


async def get_guild_settings(session: AsyncSession, guild_id: int) -> GuildSettings:
    """The guild's settings, or the defaults (not stored) when its admins never changed any."""
    settings = await session.get(GuildSettings, guild_id)
    if settings is not None:
        return settings
    return GuildSettings(
        guild_id=guild_id,
        banned_words=[],
        allowed_channel_ids=[],
        buttons_owner_only=False,
        updated_at=utcnow(),
    )


async def upsert_guild_settings(
    session: AsyncSession,
    guild_id: int,
    *,
    banned_words: Sequence[str] | None = None,
    allowed_channel_ids: Sequence[int] | None = None,
    buttons_owner_only: bool | None = None,
) -> GuildSettings:
    """Change the given guild settings (None = keep), creating the row on first use."""
    settings = await session.get(GuildSettings, guild_id)
    if settings is None:
        settings = await get_guild_settings(session, guild_id)
        session.add(settings)
    if banned_words is not None:
        settings.banned_words = list(banned_words)
    if allowed_channel_ids is not None:
        settings.allowed_channel_ids = [int(channel) for channel in allowed_channel_ids]
    if buttons_owner_only is not None:
        settings.buttons_owner_only = buttons_owner_only
    settings.updated_at = utcnow()
    await session.flush()
    return settings


async def get_user_settings(session: AsyncSession, user_id: int) -> UserSettings:
    """The member's settings, or the defaults (not stored) when they never changed any."""
    settings = await session.get(UserSettings, user_id)
    if settings is not None:
        return settings
    return UserSettings(user_id=user_id, remix=False, defaults={}, model=None, updated_at=utcnow())


async def upsert_user_settings(
    session: AsyncSession,
    user_id: int,
    *,
    remix: bool | None = None,
    defaults: dict[str, str] | None = None,
    model: str | Literal[_Unset.UNSET] | None = UNSET,
) -> UserSettings:
    """Change the given user settings (None/UNSET = keep; `model=None` clears the alias)."""
    settings = await session.get(UserSettings, user_id)
    if settings is None:
        settings = await get_user_settings(session, user_id)
        session.add(settings)
    if remix is not None:
        settings.remix = remix
    if defaults is not None:
        settings.defaults = dict(defaults)
    if model is not UNSET:
        settings.model = model
    settings.updated_at = utcnow()
    await session.flush()
    return settings
