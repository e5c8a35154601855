"""The ledger counts the images each job made, and sums only hosted engines' for the image cap
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.policy import QuotaScope
from bot.store import queries as q
from bot.store.db import Database
from bot.store.models import JobKind, UsageEntry
from bot.store.queries import ImageRecord

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GRID = [
    ImageRecord(index=0, width=128, height=128, path="g.png"),
    *(ImageRecord(index=i, width=64, height=64, path=f"c{i}.png", seed=i) for i in (1, 2, 3, 4)),
]
UPSCALE = [ImageRecord(index=1, width=128, height=128, path="u.png", seed=1)]


async def _finished(db: Database, images: list[ImageRecord], *, hosted: bool, seconds: float) -> None:
    async with db.session() as session:
        job = await q.create_job(
            session,
            kind=JobKind.IMAGINE,
            user_id=1,
            guild_id=10,
            channel_id=100,
            prompt="x",
            params={},
            seed=1,
            now=T0,
        )
        await q.mark_succeeded(
            session,
            job.id,
            images=images,
            seeds=[1],
            gpu_seconds=seconds,
            hosted=hosted,
            now=T0 + timedelta(minutes=1),
        )


async def test_images_are_recorded_and_hosted_ones_summed_apart(db: Database) -> None:
    await _finished(db, GRID, hosted=True, seconds=6.0)
    await _finished(db, UPSCALE, hosted=True, seconds=0.1)
    await _finished(db, GRID, hosted=False, seconds=2.0)
    async with db.session() as session:
        ledger = (await session.scalars(select(UsageEntry).order_by(UsageEntry.id))).all()
        usage = await q.usage_since(session, 1, T0)
    assert [(entry.images, entry.hosted, entry.gpu_seconds) for entry in ledger] == [
        (4, True, 6.0),
        (1, True, 0.1),
        (4, False, 2.0),
    ]
    assert (usage.jobs, usage.hosted_images) == (3, 5)
    assert usage.gpu_seconds == pytest.approx(8.1)


async def test_quota_rules_keep_an_image_cap(db: Database) -> None:
    async with db.session() as session:
        rule = await q.set_quota_rule(session, 10, QuotaScope.GUILD, images_per_day=40)
        assert rule.images_per_day == 40
        rule = await q.set_quota_rule(session, 10, QuotaScope.GUILD, jobs_per_day=5)  # the cap stays
    async with db.session() as session:
        (stored,) = await q.quota_rules(session, 10)
    assert (stored.jobs_per_day, stored.images_per_day) == (5, 40)
