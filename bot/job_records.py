"""Job rows ↔ engine requests, and the few queries the job service needs.

A job's `params` column keeps everything needed to run it again after a restart: the engine
request (minus the source image, which is derived from the parent) and how to show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.policy import QuotaRuleSpec, RuleScope, Usage
from bot.store.models import GuildSettings, Image, Job, JobStatus, QuotaRule, UsageEntry, UserSettings
from engine.types import GenerationRequest, Mode, WeightedPrompt

__all__ = [
    "ACTIVE",
    "active_jobs",
    "count_active",
    "guild_settings",
    "image_path",
    "params_to_request",
    "quota_rules",
    "recent_jobs",
    "request_to_params",
    "unfinished_jobs",
    "usage_since",
    "user_settings",
]

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def request_to_params(request: GenerationRequest, *, init: str | None = None, **ui: Any) -> dict[str, Any]:
    """JSON-able form of `request`; `init` is the source image relative to the data dir."""
    stored: dict[str, Any] = {}
    for spec in fields(request):
        value = getattr(request, spec.name)
        if spec.name == "init_image":
            continue
        if spec.name == "weighted_prompts":
            value = [[part.text, part.weight] for part in value]
        elif spec.name == "aspect_ratio":
            value = list(value)
        elif spec.name == "mode":
            value = value.value
        stored[spec.name] = value
    return {"request": stored, "init": init, "ui": ui}


def params_to_request(params: dict[str, Any], data_dir: Path) -> GenerationRequest:
    """Rebuild the engine request a job row stores (the source image path made absolute)."""
    stored = dict(params["request"])
    stored["weighted_prompts"] = tuple(
        WeightedPrompt(text, weight) for text, weight in stored["weighted_prompts"]
    )
    stored["aspect_ratio"] = tuple(stored["aspect_ratio"])
    stored["mode"] = Mode(stored["mode"])
    init = params.get("init")
    return GenerationRequest(init_image=data_dir / init if init else None, **stored)


def ui_params(job: Job) -> dict[str, Any]:
    ui = (job.params or {}).get("ui") or {}
    return dict(ui)


async def guild_settings(session: AsyncSession, guild_id: int | None) -> GuildSettings | None:
    return None if guild_id is None else await session.get(GuildSettings, guild_id)


async def user_settings(session: AsyncSession, user_id: int) -> UserSettings | None:
    return await session.get(UserSettings, user_id)


async def quota_rules(session: AsyncSession, guild_id: int | None) -> list[QuotaRuleSpec]:
    if guild_id is None:
        return []
    rows = await session.scalars(select(QuotaRule).where(QuotaRule.guild_id == guild_id))
    return [
        QuotaRuleSpec(
            RuleScope(rule.scope.value),
            rule.target_id,
            jobs_per_day=rule.jobs_per_day,
            gpu_minutes_per_day=rule.gpu_minutes_per_day,
            max_waiting=rule.max_waiting,
            max_running=rule.max_running,
        )
        for rule in rows
    ]


async def usage_since(session: AsyncSession, user_id: int, guild_id: int | None, since: datetime) -> Usage:
    """Finished work from the ledger plus the jobs still waiting or running (they will count too)."""
    query = select(
        func.coalesce(func.sum(UsageEntry.jobs), 0), func.coalesce(func.sum(UsageEntry.gpu_seconds), 0.0)
    )
    query = query.where(UsageEntry.user_id == user_id, UsageEntry.at >= since)
    if guild_id is not None:
        query = query.where(UsageEntry.guild_id == guild_id)
    jobs, seconds = (await session.execute(query)).one()
    waiting, running = await count_active(session, user_id)
    return Usage(jobs=int(jobs) + waiting + running, gpu_seconds=float(seconds))


async def count_active(session: AsyncSession, user_id: int) -> tuple[int, int]:
    """(waiting, running) jobs of the user, across servers: the queue is shared."""
    query = (
        select(Job.status, func.count())
        .where(Job.user_id == user_id, Job.status.in_(ACTIVE))
        .group_by(Job.status)
    )
    counts = {status: int(n) for status, n in (await session.execute(query)).all()}
    return counts.get(JobStatus.QUEUED, 0), counts.get(JobStatus.RUNNING, 0)


async def active_jobs(session: AsyncSession, user_id: int) -> Sequence[Job]:
    query = select(Job).where(Job.user_id == user_id, Job.status.in_(ACTIVE)).order_by(Job.created_at)
    return (await session.scalars(query)).all()


async def unfinished_jobs(session: AsyncSession) -> Sequence[Job]:
    query = select(Job).where(Job.status.in_(ACTIVE)).order_by(Job.created_at)
    return (await session.scalars(query)).all()


async def recent_jobs(session: AsyncSession, user_id: int, guild_id: int | None, limit: int) -> Sequence[Job]:
    query = select(Job).where(Job.user_id == user_id)
    if guild_id is not None:
        query = query.where(Job.guild_id == guild_id)
    return (await session.scalars(query.order_by(Job.created_at.desc()).limit(limit))).all()


async def image_path(session: AsyncSession, job_id: str, index: int) -> str | None:
    query = select(Image.path).where(Image.job_id == job_id, Image.index == index)
    return (await session.scalars(query)).first()
