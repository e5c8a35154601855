"""The database handle: SQLite settings, sessions, timestamps, JSON, concurrent writers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import StatementError

from bot.store import Database, DatabaseUnavailable, GuildRules, Job, JobKind, JobStatus, StoreError
from bot.store import queries as q
from bot.store.db import normalize_url

SNOWFLAKE = 2**63 - 1  # Discord ids use all 64 bits


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    async with await Database.connect(sqlite_url) as db, db.session() as session:
        journal = (await session.execute(text("PRAGMA journal_mode"))).scalar_one()
        foreign_keys = (await session.execute(text("PRAGMA foreign_keys"))).scalar_one()
        busy_timeout = (await session.execute(text("PRAGMA busy_timeout"))).scalar_one()

    assert journal == "wal"
    assert foreign_keys == 1
    assert busy_timeout > 0


async def test_connect_creates_the_folder_and_accepts_a_plain_sqlite_url(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "bot.db"

    database = await Database.connect(f"sqlite:///{path}")
    await database.close()

    assert path.is_file()
    assert database.url.drivername == "sqlite+aiosqlite"


def test_postgres_urls_get_the_async_driver() -> None:
    assert normalize_url("postgres://u:p@h/db").drivername == "postgresql+asyncpg"
    assert normalize_url("postgresql+asyncpg://u:p@h/db").drivername == "postgresql+asyncpg"


@pytest.mark.parametrize(
    "url",
    [
        "not a url with a s3cret",
        "nosuchdb://user:s3cret@host/db",
        "postgresql://user:s3cret@127.0.0.1:1/db",  # nothing listens on port 1
    ],
)
async def test_bad_url_is_explained_without_the_password(url: str) -> None:
    with pytest.raises(DatabaseUnavailable, match="DATABASE_URL") as caught:
        await Database.connect(url)

    assert "s3cret" not in str(caught.value)


async def test_session_rolls_back_when_the_block_raises(db: Database) -> None:
    async def failing_unit() -> None:
        async with db.session() as session:
            await q.create_job(
                session,
                kind=JobKind.IMAGINE,
                user_id=1,
                channel_id=2,
                prompt="a fox",
                seed=1,
                job_id="x" * 32,
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_unit()

    async with db.session() as session:
        assert await q.get_job(session, "x" * 32) is None


async def test_timestamps_are_utc_aware_and_compare_across_offsets(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    created = datetime(2026, 1, 1, 12, 0, tzinfo=plus_two)  # 10:00 UTC
    async with db.session() as session:
        await q.create_job(
            session,
            kind=JobKind.IMAGINE,
            user_id=1,
            channel_id=2,
            prompt="a",
            seed=1,
            job_id="a" * 32,
            now=created,
        )

    async with db.session() as session:
        job = await q.get_job(session, "a" * 32)
        earlier = (
            select(func.count())
            .select_from(Job)
            .where(Job.created_at > datetime(2026, 1, 1, 11, 59, tzinfo=plus_two))
        )
        later = (
            select(func.count())
            .select_from(Job)
            .where(Job.created_at > datetime(2026, 1, 1, 10, 1, tzinfo=UTC))
        )
        after_earlier = (await session.execute(earlier)).scalar_one()
        after_later = (await session.execute(later)).scalar_one()

    assert job is not None
    assert job.created_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert job.created_at.tzinfo is UTC
    assert (after_earlier, after_later) == (1, 0)


async def test_naive_timestamps_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="timezone-aware"):
        async with db.session() as session:
            await q.create_job(
                session,
                kind=JobKind.IMAGINE,
                user_id=1,
                channel_id=2,
                prompt="a",
                seed=1,
                now=datetime(2026, 1, 1),
            )


async def test_json_columns_and_snowflakes_round_trip(db: Database) -> None:
    params = {
        "ar": [16, 9],
        "no": "blurry, text",
        "parts": [{"text": "café ☕", "weight": -0.5}],
        "tile": True,
    }
    async with db.session() as session:
        job = await q.create_job(
            session,
            kind=JobKind.IMAGINE,
            user_id=SNOWFLAKE,
            guild_id=SNOWFLAKE - 1,
            channel_id=SNOWFLAKE - 2,
            prompt="a",
            params=params,
            seed=2**32 - 1,
        )
        await q.update_guild_rules(
            session, SNOWFLAKE, banned_words=["gore", "ünïcode"], allowed_channel_ids=[SNOWFLAKE]
        )
        job_id = job.id

    async with db.session() as session:
        loaded = await q.get_job(session, job_id)
        guild = await session.get(GuildRules, SNOWFLAKE)

    assert loaded is not None
    assert guild is not None
    assert loaded.params == params
    assert (loaded.user_id, loaded.guild_id, loaded.channel_id, loaded.seed) == (
        SNOWFLAKE,
        SNOWFLAKE - 1,
        SNOWFLAKE - 2,
        2**32 - 1,
    )
    assert loaded.status is JobStatus.QUEUED
    assert guild.banned_words == ["gore", "ünïcode"]
    assert guild.allowed_channel_ids == [SNOWFLAKE]


async def test_concurrent_read_then_write_units_do_not_lock(db: Database) -> None:
    async def worker(n: int) -> None:
        for i in range(8):
            async with db.session() as session:
                # Read first, then write: the pattern that fails at once with "database is locked"
                # under SQLite's deferred transactions when another writer commits in between.
                await session.execute(select(func.count()).select_from(Job))
                job = await q.create_job(
                    session, kind=JobKind.IMAGINE, user_id=n, channel_id=1, prompt=f"{n}-{i}", seed=i
                )
                await asyncio.sleep(0)
                await q.mark_running(session, job.id)

    await asyncio.gather(*(worker(n) for n in range(6)))

    async with db.session() as session:
        count = (await session.execute(select(func.count()).select_from(Job))).scalar_one()
        running = (
            await session.execute(select(func.count()).where(Job.status == JobStatus.RUNNING))
        ).scalar_one()
    assert (count, running) == (48, 48)


async def test_read_only_session_reads_and_refuses_to_write(db: Database) -> None:
    async with db.session() as session:
        job = await q.create_job(session, kind=JobKind.IMAGINE, user_id=1, channel_id=2, prompt="a", seed=1)

    async with db.session(read_only=True) as session:
        loaded = await q.get_job(session, job.id)
    with pytest.raises(StoreError, match="read_only"):
        async with db.session(read_only=True) as session:
            await q.mark_running(session, job.id)
    async with db.session(read_only=True) as session:
        still = await q.get_job(session, job.id)

    assert loaded is not None
    assert loaded.prompt == "a"
    assert still is not None
    assert still.status is JobStatus.QUEUED


async def test_read_only_sessions_run_beside_a_writer(db: Database) -> None:
    async with db.session() as writer:
        await q.create_job(writer, kind=JobKind.IMAGINE, user_id=1, channel_id=2, prompt="a", seed=1)
        # The writer holds its transaction open; a reader must not wait for it.
        async with asyncio.timeout(5), db.session(read_only=True) as reader:
            seen = (await reader.execute(select(func.count()).select_from(Job))).scalar_one()

    assert seen == 0


async def test_nested_write_session_in_one_task_fails_fast_on_sqlite(sqlite_url: str) -> None:
    async with await Database.connect(sqlite_url) as db, db.session():
        with pytest.raises(StoreError, match="inside another"):
            async with db.session():
                pass
