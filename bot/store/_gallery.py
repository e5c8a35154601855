"""What the web gallery reads: a server's finished jobs newest first (searched, filtered, paged by
keyset), a job's family tree, and the usage ledger per day and per member for the admin page.

Only jobs that succeeded and were not flagged by the safety check are ever returned: a moderated
or flagged image never reaches the gallery, whoever asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.policy import GalleryAccess, day_window
from bot.store.models import GuildRules, Image, Job, JobStatus, UsageEntry

__all__ = [
    "FAMILY_LIMIT",
    "DayUsage",
    "GalleryImage",
    "GalleryQuery",
    "MemberUsage",
    "family_of",
    "gallery_image",
    "gallery_job",
    "gallery_jobs",
    "member_names",
    "usage_by_day",
    "usage_by_member",
]

FAMILY_LIMIT: Final = 500
"""The most jobs a family tree shows (a tree this big is a very busy afternoon)."""


@dataclass(frozen=True, slots=True)
class GalleryQuery:
    """Which of a server's jobs a gallery page lists; every filter given must hold."""

    guild_id: int
    owner_only: int | None = None
    """Only this member's jobs: what they may see when the server's gallery is off for them."""
    words: tuple[str, ...] = ()
    """Each must appear in the prompt (case-insensitive)."""
    aspect: str | None = None
    model: str | None = None
    member: int | None = None
    since: date | None = None
    until: date | None = None
    """Inclusive: jobs of that whole day (UTC) are listed."""
    before: tuple[datetime, str] | None = None
    """The (created_at, id) of the last job on the previous page: list only older ones."""


def _shown() -> ColumnElement[bool]:
    return and_(Job.status == JobStatus.SUCCEEDED, Job.flagged == false())


def _like(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _contains(word: str, dialect: str) -> ColumnElement[bool]:
    """The prompt holds `word`, in any case. SQLite's LIKE already ignores the case of ASCII letters, and
    only of those, exactly as its `lower()` does: `ilike`'s lower() on both sides would change nothing
    there but cost a call per row scanned."""
    if dialect == "sqlite":
        return Job.prompt.like(_like(word), escape="\\")
    return Job.prompt.ilike(_like(word), escape="\\")


def _filtered(query: GalleryQuery, dialect: str) -> Select[Job]:
    statement = select(Job).where(Job.guild_id == query.guild_id, _shown())
    if query.owner_only is not None:
        statement = statement.where(Job.user_id == query.owner_only)
    if query.member is not None:
        statement = statement.where(Job.user_id == query.member)
    for word in query.words:
        statement = statement.where(_contains(word, dialect))
    if query.aspect is not None:
        statement = statement.where(Job.aspect == query.aspect)
    if query.model is not None:
        statement = statement.where(Job.model == query.model)
    if query.since is not None:
        statement = statement.where(Job.created_at >= _utc_day(query.since)[0])
    if query.until is not None:
        statement = statement.where(Job.created_at < _utc_day(query.until)[1])
    if query.before is not None:
        at, job_id = query.before
        # `created_at <= at` says nothing the OR does not, but unlike the OR it bounds an index range:
        # without it a deep page walked every newer row of the server (35 ms half-way down 60,000).
        statement = statement.where(
            Job.created_at <= at, or_(Job.created_at < at, and_(Job.created_at == at, Job.id < job_id))
        )
    return statement


def _utc_day(day: date) -> tuple[datetime, datetime]:
    """UTC midnight starting `day` and the next one, as quotas count days (`bot.policy.day_window`)."""
    return day_window(datetime.combine(day, time(), UTC))


async def gallery_jobs(session: AsyncSession, query: GalleryQuery, *, limit: int) -> list[Job]:
    """Up to `limit` jobs matching `query`, newest first (ties broken by id, so paging is stable).

    Each job's `images` holds only what its card shows: the grid (0) and the first image (1)."""
    dialect = session.get_bind().dialect.name
    statement = (
        _filtered(query, dialect)
        .options(selectinload(Job.images.and_(Image.index <= 1)))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def gallery_job(session: AsyncSession, guild_id: int, job_id: str) -> Job | None:
    """The server's job `job_id` if the gallery may show it at all (succeeded, not flagged)."""
    statement = select(Job).where(Job.id == job_id, Job.guild_id == guild_id, _shown())
    return (await session.scalars(statement)).one_or_none()


@dataclass(frozen=True, slots=True)
class GalleryImage:
    """One stored image of a job the gallery may show, with what deciding who sees it takes."""

    path: str
    """Relative to the data dir."""
    owner_id: int
    access: GalleryAccess
    """The server's gallery rule."""


async def gallery_image(session: AsyncSession, guild_id: int, job_id: str, index: int) -> GalleryImage | None:
    """Image `index` of the server's job `job_id` if the gallery may show that job at all: one query, as
    a page's every thumbnail asks."""
    statement = (
        select(Image.path, Job.user_id, GuildRules.gallery)
        .join(Job, Job.id == Image.job_id)
        .outerjoin(GuildRules, GuildRules.guild_id == Job.guild_id)
        .where(Image.job_id == job_id, Image.index == index, Job.guild_id == guild_id, _shown())
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    path, owner_id, access = row
    return GalleryImage(path, owner_id, access or GalleryAccess.OFF)


async def family_of(session: AsyncSession, job: Job) -> tuple[Job, list[Job]]:
    """The `/imagine` (or oldest ancestor still stored) `job` came from, and every job made from that
    root, at any depth, oldest first; at most `FAMILY_LIMIT` of them. Every status is included: the
    caller decides what to show."""
    root = job
    seen = {job.id}
    while root.parent_id is not None and root.parent_id not in seen and len(seen) < FAMILY_LIMIT:
        parent = await session.get(Job, root.parent_id)
        if parent is None:
            break
        seen.add(parent.id)
        root = parent
    family: list[Job] = []
    level = [root.id]
    while level and len(family) < FAMILY_LIMIT:
        statement = (
            select(Job)
            .where(Job.parent_id.in_(level))
            .order_by(Job.created_at, Job.id)
            .limit(FAMILY_LIMIT - len(family))
        )
        children = list((await session.scalars(statement)).all())
        family += children
        level = [child.id for child in children]
    return root, family


async def member_names(session: AsyncSession, guild_id: int, user_ids: Sequence[int]) -> dict[int, str]:
    """The display name each member's newest named job in the server keeps (members whose jobs keep
    none are left out). One short indexed lookup per member: a busy member has thousands of jobs."""
    names: dict[int, str] = {}
    for user_id in dict.fromkeys(user_ids):
        statement = (
            select(Job.user_name)
            .where(Job.user_id == user_id, Job.guild_id == guild_id, Job.user_name.is_not(None))
            .order_by(Job.created_at.desc())
            .limit(1)
        )
        if name := (await session.scalars(statement)).first():
            names[user_id] = name
    return names


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One UTC day of a server's usage ledger."""

    day: date
    jobs: int
    gpu_seconds: float
    images: int
    hosted_images: int


@dataclass(frozen=True, slots=True)
class MemberUsage:
    """One member's use of a server: over the whole period, and on their busiest day in it."""

    user_id: int
    jobs: int
    gpu_seconds: float
    hosted_images: int
    busiest_jobs: int
    busiest_gpu_seconds: float
    busiest_hosted_images: int


def _day_of(session: AsyncSession) -> ColumnElement[Any]:
    # The UTC calendar day of a ledger row; PostgreSQL would otherwise use the session's time zone.
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", UsageEntry.at))
    return func.date(UsageEntry.at)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


async def _daily_rows(session: AsyncSession, guild_id: int, since: datetime, *, per_member: bool) -> Any:
    day = _day_of(session).label("day")
    hosted = func.sum(UsageEntry.images).filter(UsageEntry.hosted).label("hosted_images")
    columns: list[Any] = [
        day,
        func.sum(UsageEntry.jobs),
        func.sum(UsageEntry.gpu_seconds),
        func.sum(UsageEntry.images),
        hosted,
    ]
    group: list[Any] = [day]
    if per_member:
        columns.insert(0, UsageEntry.user_id)
        group.insert(0, UsageEntry.user_id)
    statement = (
        select(*columns)
        .where(UsageEntry.guild_id == guild_id, UsageEntry.at >= since)
        .group_by(*group)
        .order_by(*group)
    )
    return (await session.execute(statement)).all()


async def usage_by_day(session: AsyncSession, guild_id: int, since: datetime) -> list[DayUsage]:
    """The server's usage per UTC day from `since` on, oldest first (days with none are left out)."""
    rows = await _daily_rows(session, guild_id, since, per_member=False)
    return [
        DayUsage(_as_date(day), int(jobs or 0), float(seconds or 0), int(images or 0), int(hosted or 0))
        for day, jobs, seconds, images, hosted in rows
    ]


async def usage_by_member(session: AsyncSession, guild_id: int, since: datetime) -> list[MemberUsage]:
    """Each member's usage of the server from `since` on, the most GPU time first."""
    totals: dict[int, list[float]] = {}
    for user_id, _day, jobs, seconds, _images, hosted in await _daily_rows(
        session, guild_id, since, per_member=True
    ):
        entry = totals.setdefault(user_id, [0, 0.0, 0, 0, 0.0, 0])
        day = (int(jobs or 0), float(seconds or 0), int(hosted or 0))
        for i, value in enumerate(day):
            entry[i] += value
            entry[3 + i] = max(entry[3 + i], value)
    members = [
        MemberUsage(user_id, int(v[0]), v[1], int(v[2]), int(v[3]), v[4], int(v[5]))
        for user_id, v in totals.items()
    ]
    return sorted(members, key=lambda m: (-m.gpu_seconds, -m.jobs, m.user_id))
