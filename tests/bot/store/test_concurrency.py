"""The store stays correct when two transactions race, on SQLite and on PostgreSQL.

Each race holds the first transaction open, its reads and writes done, until the second has run too (or
has waited `HOLD_S` for its turn). Without the store's locks, PostgreSQL (read committed) lets the second
read before the first commits, which is the race each test would then lose; SQLite's writers take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.jobs._admission import admit
from bot.jobs.types import Requester
from bot.policy import QuotaScope, TooManyJobs
from bot.store import Database, JobKind
from bot.store import queries as q
from bot.store.models import QuotaRule

T = TypeVar("T")

HOLD_S = 0.5
"""How long the first transaction waits for the second before it commits. It only decides whether a store
without locks loses the race here; with them the outcome is right however long it is."""

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD = 10
MEMBER = Requester(user_id=1, guild_id=GUILD, channel_id=100)


async def _race(
    db: Database,
    first: Callable[[AsyncSession], Awaitable[T]],
    second: Callable[[AsyncSession], Awaitable[T]],
) -> tuple[T | BaseException, T | BaseException]:
    """Run `first` and then `second` in two write sessions, the first still open while the second runs."""
    first_done = asyncio.Event()
    second_done = asyncio.Event()

    async def run_first() -> T:
        async with db.session() as session:
            result = await first(session)
            first_done.set()
            # The second waits here for its lock (or for SQLite's write lock) where the store takes one.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second_done.wait(), HOLD_S)
        return result

    async def run_second() -> T:
        await first_done.wait()
        try:
            async with db.session() as session:
                return await second(session)
        finally:
            second_done.set()

    first_result, second_result = await asyncio.gather(run_first(), run_second(), return_exceptions=True)
    return first_result, second_result


async def test_concurrent_guild_quota_rules_make_one_rule(db: Database) -> None:
    async def set_jobs(session: AsyncSession) -> object:
        return await q.set_quota_rule(session, GUILD, QuotaScope.GUILD, jobs_per_day=5)

    async def set_running(session: AsyncSession) -> object:
        return await q.set_quota_rule(session, GUILD, QuotaScope.GUILD, max_running=2)

    results = await _race(db, set_jobs, set_running)

    assert not [r for r in results if isinstance(r, BaseException)]
    async with db.session(read_only=True) as session:
        assert await session.scalar(select(func.count()).select_from(QuotaRule)) == 1
        (rule,) = await q.quota_rules(session, GUILD)
    assert (rule.jobs_per_day, rule.max_running) == (5, 2)


async def test_concurrent_deletes_of_a_rule_remove_it_once(db: Database) -> None:
    async with db.session() as session:
        await q.set_quota_rule(session, GUILD, QuotaScope.GUILD, jobs_per_day=5)

    async def remove(session: AsyncSession) -> bool:
        return await q.delete_quota_rule(session, GUILD, QuotaScope.GUILD)

    assert await _race(db, remove, remove) == (True, False)


async def test_concurrent_first_preference_writes_both_apply(db: Database) -> None:
    async def remix_on(session: AsyncSession) -> tuple[bool, dict[str, str]]:
        prefs = await q.update_user_preferences(session, MEMBER.user_id, remix=True)
        return prefs.remix, dict(prefs.defaults)

    async def set_defaults(session: AsyncSession) -> tuple[bool, dict[str, str]]:
        prefs = await q.update_user_preferences(session, MEMBER.user_id, defaults={"ar": "16:9"})
        return prefs.remix, dict(prefs.defaults)

    first, second = await _race(db, remix_on, set_defaults)

    assert first == (True, {})
    assert second == (True, {"ar": "16:9"})  # the second saw the first's row
    async with db.session(read_only=True) as session:
        prefs = await q.get_user_preferences(session, MEMBER.user_id)
        assert (prefs.remix, prefs.defaults) == (True, {"ar": "16:9"})


async def test_concurrent_first_guild_rules_writes_both_apply(db: Database) -> None:
    async def ban(session: AsyncSession) -> tuple[list[str], bool]:
        rules = await q.update_guild_rules(session, GUILD, banned_words=["gore"])
        return list(rules.banned_words), rules.buttons_owner_only

    async def owner_only(session: AsyncSession) -> tuple[list[str], bool]:
        rules = await q.update_guild_rules(session, GUILD, buttons_owner_only=True)
        return list(rules.banned_words), rules.buttons_owner_only

    first, second = await _race(db, ban, owner_only)

    assert first == (["gore"], False)
    assert second == (["gore"], True)
    async with db.session(read_only=True) as session:
        rules = await q.get_guild_rules(session, GUILD)
        assert (rules.banned_words, rules.buttons_owner_only) == (["gore"], True)


async def test_concurrent_admissions_keep_to_the_limit(db: Database) -> None:
    one_active_job = Config(_env_file=None, max_running_per_owner=1, max_waiting_per_owner=0)

    async def submit(session: AsyncSession) -> str:
        # As JobService._submit does: the policy check and the job row in one transaction.
        await admit(session, MEMBER, "a lighthouse", 1, config=one_active_job, now=T0)
        job = await q.create_job(
            session,
            kind=JobKind.IMAGINE,
            user_id=MEMBER.user_id,
            guild_id=MEMBER.guild_id,
            channel_id=MEMBER.channel_id,
            prompt="a lighthouse",
            seed=1,
            now=T0,
        )
        return job.id

    first, second = await _race(db, submit, submit)

    assert isinstance(first, str)
    assert isinstance(second, TooManyJobs)
    async with db.session(read_only=True) as session:
        assert await q.count_active(session, MEMBER.user_id) == (1, 0)
