"""The bot's queries round-trip through a migrated SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from bot.policy import FlaggedImages, QuotaScope
from bot.store import (
    Database,
    Image,
    Job,
    JobKind,
    JobNotFound,
    JobStateError,
    JobStatus,
    UsageEntry,
)
from bot.store import queries as q
from bot.store.errors import StaleAttempt
from bot.store.queries import UNSET, ImageRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GRID = [
    ImageRecord(index=0, width=128, height=128, path="grids/g.png"),
    *(ImageRecord(index=i, width=64, height=64, path=f"cells/c{i}.png", seed=40 + i) for i in (4, 1, 3, 2)),
]


async def _new(
    db: Database,
    *,
    kind: JobKind = JobKind.IMAGINE,
    user: int = 1,
    guild: int | None = 10,
    at: datetime = T0,
    **kw: object,
) -> str:
    async with db.session() as session:
        job = await q.create_job(
            session,
            kind=kind,
            user_id=user,
            guild_id=guild,
            channel_id=100,
            prompt="a lighthouse at dusk --ar 16:9",
            params={"ar": "16:9"},
            seed=41,
            now=at,
            **kw,  # type: ignore[arg-type]
        )
        return job.id


async def _succeed(db: Database, job_id: str, *, gpu_seconds: float = 3.5, at: datetime = T0) -> None:
    async with db.session() as session:
        await q.mark_running(session, job_id, now=at)
        await q.mark_succeeded(
            session,
            job_id,
            images=GRID,
            seeds=[41, 42, 43, 44],
            gpu_seconds=gpu_seconds,
            model="tiny",
            grid_path="grids/g.png",
            now=at + timedelta(seconds=gpu_seconds),
        )


async def test_a_job_runs_and_succeeds_with_images_seeds_and_usage(db: Database) -> None:
    job_id = await _new(db)
    await _succeed(db, job_id)

    async with db.session() as session:
        job = await q.get_job(session, job_id)
        usage = (await session.scalars(select(UsageEntry))).all()

    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 1
    assert job.started_at == T0
    assert job.finished_at == T0 + timedelta(seconds=3.5)
    assert job.seeds == [41, 42, 43, 44]
    assert (job.model, job.grid_path, job.gpu_seconds) == ("tiny", "grids/g.png", 3.5)
    assert [image.index for image in job.images] == [0, 1, 2, 3, 4]
    assert [image.seed for image in job.images] == [None, 41, 42, 43, 44]
    assert [(u.job_id, u.user_id, u.guild_id, u.gpu_seconds, u.jobs) for u in usage] == [
        (job_id, 1, 10, 3.5, 1)
    ]


async def test_finishing_a_job_twice_or_a_missing_job_raises(db: Database) -> None:
    job_id = await _new(db)
    await _succeed(db, job_id)

    async with db.session() as session:
        with pytest.raises(JobStateError, match="succeeded"):
            await q.mark_failed(session, job_id, "late")
        with pytest.raises(JobStateError):
            await q.mark_running(session, job_id)
        with pytest.raises(JobNotFound):
            await q.mark_cancelled(session, "0" * 32)
        with pytest.raises(JobNotFound):
            await q.set_message_id(session, "0" * 32, 5)


async def test_running_a_running_job_again_raises(db: Database) -> None:
    job_id = await _new(db)
    async with db.session() as session:
        await q.mark_running(session, job_id)

    async with db.session() as session:
        with pytest.raises(JobStateError, match="running"):
            await q.mark_running(session, job_id)


async def test_failed_and_cancelled_keep_their_reason(db: Database) -> None:
    failed, cancelled = await _new(db), await _new(db)

    async with db.session() as session:
        await q.mark_failed(session, failed, "Out of memory; try a smaller --ar.", now=T0)
        await q.mark_cancelled(session, cancelled, now=T0)
    async with db.session() as session:
        f, c = await q.get_job(session, failed), await q.get_job(session, cancelled)
        ledger = (await session.execute(select(func.count()).select_from(UsageEntry))).scalar_one()

    assert f is not None
    assert c is not None
    assert (f.status, f.error, f.finished_at) == (JobStatus.FAILED, "Out of memory; try a smaller --ar.", T0)
    assert (c.status, c.finished_at) == (JobStatus.CANCELLED, T0)
    assert ledger == 0


async def test_a_moderated_job_keeps_no_images_but_its_gpu_time_counts(db: Database) -> None:
    job_id = await _new(db)
    reason = "The safety check flagged what this job made, and this server blocks flagged images."
    async with db.session() as session:
        await q.mark_running(session, job_id, now=T0)
        await q.mark_moderated(session, job_id, reason, gpu_seconds=2.0, now=T0 + timedelta(seconds=2))
    async with db.session() as session:
        job = await q.get_job(session, job_id)
        usage = (await session.scalars(select(UsageEntry))).all()
        with pytest.raises(JobStateError, match="moderated"):
            await q.mark_succeeded(session, job_id, images=GRID, seeds=[1, 2, 3, 4], gpu_seconds=1.0)

    assert job is not None
    assert (job.status, job.error, job.flagged) == (JobStatus.MODERATED, reason, True)
    assert job.status.finished
    assert (job.images, job.grid_path, job.seeds) == ([], None, [])
    assert (job.started_at, job.finished_at, job.gpu_seconds) == (T0, T0 + timedelta(seconds=2), 2.0)
    assert [(u.job_id, u.gpu_seconds, u.jobs) for u in usage] == [(job_id, 2.0, 1)]


async def test_a_job_moderated_before_it_ran_counts_nothing(db: Database) -> None:
    job_id = await _new(db)
    async with db.session() as session:
        await q.mark_moderated(session, job_id, "Your picture was flagged.", now=T0)
    async with db.session() as session:
        job = await q.get_job(session, job_id)
        ledger = (await session.execute(select(func.count()).select_from(UsageEntry))).scalar_one()

    assert job is not None
    assert (job.status, job.started_at, job.finished_at, job.gpu_seconds) == (
        JobStatus.MODERATED,
        None,
        T0,
        0.0,
    )
    assert ledger == 0


async def test_moderation_news_of_an_older_run_is_refused(db: Database) -> None:
    job_id = await _new(db)
    async with db.session() as session:
        await q.mark_running(session, job_id, attempt=2)
    async with db.session() as session:
        with pytest.raises(StaleAttempt):
            await q.mark_moderated(session, job_id, "flagged", gpu_seconds=1.0, attempt=1)
    async with db.session() as session:
        job = await q.get_job(session, job_id)
    assert job is not None
    assert (job.status, job.flagged) == (JobStatus.RUNNING, False)


async def test_a_flagged_job_that_was_posted_says_so(db: Database) -> None:
    plain, flagged = await _new(db), await _new(db)
    await _succeed(db, plain)
    async with db.session() as session:
        await q.mark_succeeded(
            session,
            flagged,
            images=GRID,
            seeds=[1, 2, 3, 4],
            gpu_seconds=1.0,
            grid_path="g.png",
            flagged=True,
        )
    async with db.session() as session:
        jobs = [await q.get_job(session, job_id) for job_id in (plain, flagged)]
    assert [job.flagged for job in jobs if job is not None] == [False, True]


async def test_message_id_and_parent_cell(db: Database) -> None:
    parent = await _new(db)
    child = await _new(db, kind=JobKind.UPSCALE, parent_id=parent, parent_index=3)

    async with db.session() as session:
        await q.set_message_id(session, child, 2**62)
    async with db.session() as session:
        job = await q.get_job(session, child)

    assert job is not None
    assert (job.kind, job.parent_id, job.parent_index, job.message_id) == (JobKind.UPSCALE, parent, 3, 2**62)


async def test_bad_parent_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="cell 1–4"):
        await _new(db, kind=JobKind.VARIATION, parent_id=None, parent_index=5)
    with pytest.raises(IntegrityError):
        await _new(db, kind=JobKind.VARIATION, parent_id="f" * 32, parent_index=1)


async def test_deleting_a_job_deletes_its_images_and_keeps_its_usage(db: Database) -> None:
    job_id = await _new(db)
    await _succeed(db, job_id)

    async with db.session() as session:
        await session.execute(delete(Job).where(Job.id == job_id))
    async with db.session() as session:
        images = (await session.execute(select(func.count()).select_from(Image))).scalar_one()
        usage = (await session.scalars(select(UsageEntry))).one()

    assert images == 0
    assert usage.job_id is None
    assert usage.gpu_seconds == 3.5


async def test_unfinished_jobs_are_exactly_queued_and_running_oldest_first(db: Database) -> None:
    ids = {}
    for minutes, status in [(5, "queued"), (1, "running"), (3, "succeeded"), (2, "failed"), (4, "cancelled")]:
        ids[status] = await _new(db, at=T0 + timedelta(minutes=minutes))
    older_queued = await _new(db, at=T0)
    async with db.session() as session:
        await q.mark_running(session, ids["running"])
        await q.mark_running(session, ids["succeeded"])
        await q.mark_succeeded(session, ids["succeeded"], images=[], seeds=[1], gpu_seconds=1.0)
        await q.mark_failed(session, ids["failed"], "x")
        await q.mark_cancelled(session, ids["cancelled"])

    async with db.session() as session:
        unfinished = await q.unfinished_jobs(session)

    assert [job.id for job in unfinished] == [older_queued, ids["running"], ids["queued"]]


async def test_recovery_requeues_then_gives_up_on_jobs_that_keep_crashing(db: Database) -> None:
    queued, once, twice = await _new(db), await _new(db), await _new(db)
    async with db.session() as session:
        await q.mark_running(session, once)
        await q.mark_running(session, twice)
        await q.requeue_job(session, twice)
        await q.mark_running(session, twice)

    async with db.session() as session:
        recovery = await q.recover_unfinished(session, max_attempts=2)
    async with db.session() as session:
        states = {job_id: await q.get_job(session, job_id) for job_id in (queued, once, twice)}

    assert sorted(job.id for job in recovery.requeued) == sorted([queued, once])
    assert [job.id for job in recovery.failed] == [twice]
    assert recovery.failed[0].error is not None
    assert "restart" in recovery.failed[0].error
    assert {job_id: (job.status, job.started_at) for job_id, job in states.items() if job} == {
        queued: (JobStatus.QUEUED, None),
        once: (JobStatus.QUEUED, None),
        twice: (JobStatus.FAILED, recovery.failed[0].started_at),
    }
    assert recovery.failed[0].started_at is not None


async def test_recent_jobs_newest_first_filtered_and_limited(db: Database) -> None:
    mine = [await _new(db, user=7, at=T0 + timedelta(minutes=m)) for m in range(4)]
    other_guild = await _new(db, user=7, guild=99, at=T0 + timedelta(minutes=9))
    await _new(db, user=8, at=T0 + timedelta(minutes=10))

    async with db.session() as session:
        top = await q.recent_jobs(session, 7, limit=3)
        in_guild = await q.recent_jobs(session, 7, guild_id=10)
        running = await q.recent_jobs(session, 7, statuses=[JobStatus.RUNNING])

    assert [job.id for job in top] == [other_guild, mine[3], mine[2]]
    assert [job.id for job in in_guild] == mine[::-1]
    assert running == []


async def test_usage_sums_the_ledger_inside_the_window(db: Database) -> None:
    for user, guild, hours_ago, seconds in [
        (1, 10, 30, 100.0),
        (1, 10, 2, 4.0),
        (1, 11, 1, 6.0),
        (2, 10, 1, 8.0),
    ]:
        job_id = await _new(db, user=user, guild=guild)
        await _succeed(db, job_id, gpu_seconds=seconds, at=T0 - timedelta(hours=hours_ago))
    since = T0 - timedelta(days=1)

    async with db.session() as session:
        everywhere = await q.usage_since(session, 1, since)
        in_guild = await q.usage_since(session, 1, since, guild_id=10)
        nobody = await q.usage_since(session, 3, since)

    assert (everywhere.jobs, everywhere.gpu_seconds) == (2, 10.0)
    assert (in_guild.jobs, in_guild.gpu_seconds) == (1, 4.0)
    assert in_guild.gpu_minutes == pytest.approx(4.0 / 60)
    assert (nobody.jobs, nobody.gpu_seconds) == (0, 0.0)


async def test_quota_rules_upsert_keep_unset_limits_and_delete(db: Database) -> None:
    async with db.session() as session:
        await q.set_quota_rule(session, 10, QuotaScope.USER, 5, jobs_per_day=3)
        await q.set_quota_rule(session, 10, QuotaScope.GUILD, gpu_minutes_per_day=60.0)
        await q.set_quota_rule(session, 10, QuotaScope.ROLE, 77, max_running=1)
        await q.set_quota_rule(session, 11, QuotaScope.GUILD, jobs_per_day=1)
    async with db.session() as session:
        await q.set_quota_rule(session, 10, QuotaScope.USER, 5, max_waiting=2)
        await q.set_quota_rule(session, 10, QuotaScope.GUILD, gpu_minutes_per_day=None, jobs_per_day=UNSET)

    async with db.session() as session:
        rules = await q.quota_rules(session, 10)
        removed = await q.delete_quota_rule(session, 10, QuotaScope.ROLE, 77)
        removed_again = await q.delete_quota_rule(session, 10, QuotaScope.ROLE, 77)
    async with db.session() as session:
        after = await q.quota_rules(session, 10)

    summary = [
        (r.scope, r.target_id, r.jobs_per_day, r.gpu_minutes_per_day, r.max_waiting, r.max_running)
        for r in rules
    ]
    assert summary == [
        (QuotaScope.GUILD, None, None, None, None, None),
        (QuotaScope.ROLE, 77, None, None, None, 1),
        (QuotaScope.USER, 5, 3, None, 2, None),
    ]
    assert (removed, removed_again) == (True, False)
    assert [r.scope for r in after] == [QuotaScope.GUILD, QuotaScope.USER]


async def test_quota_rule_target_must_match_scope(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(ValueError, match="guild quota rule takes no target"):
            await q.set_quota_rule(session, 10, QuotaScope.GUILD, 5)
        with pytest.raises(ValueError, match="user quota rule needs a target"):
            await q.set_quota_rule(session, 10, QuotaScope.USER)


async def test_guild_rules_default_then_update_field_by_field(db: Database) -> None:
    async with db.session() as session:
        default = await q.get_guild_rules(session, 10)
    async with db.session() as session:
        await q.update_guild_rules(session, 10, banned_words=["gore"])
    async with db.session() as session:
        await q.update_guild_rules(session, 10, buttons_owner_only=True, allowed_channel_ids=[100, 101])
    async with db.session() as session:
        stored = await q.get_guild_rules(session, 10)
        other = await q.get_guild_rules(session, 11)

    assert (default.banned_words, default.allowed_channel_ids, default.buttons_owner_only) == ([], [], False)
    assert (stored.banned_words, stored.allowed_channel_ids, stored.buttons_owner_only) == (
        ["gore"],
        [100, 101],
        True,
    )
    assert other.banned_words == []
    assert (default.flagged_images, stored.flagged_images) == (FlaggedImages.BLOCK, FlaggedImages.BLOCK)


async def test_what_flagged_images_get_is_a_server_rule(db: Database) -> None:
    async with db.session() as session:
        await q.update_guild_rules(session, 10, banned_words=["gore"])
    async with db.session() as session:
        await q.update_guild_rules(session, 10, flagged_images=FlaggedImages.SPOILER)
    async with db.session() as session:
        stored = await q.get_guild_rules(session, 10)
        other = await q.get_guild_rules(session, 11)
    assert (stored.flagged_images, stored.banned_words) == (FlaggedImages.SPOILER, ["gore"])
    assert other.flagged_images is FlaggedImages.BLOCK


async def test_user_preferences_update_and_clear_the_model(db: Database) -> None:
    async with db.session() as session:
        await q.update_user_preferences(session, 7, remix=True, defaults={"ar": "16:9"}, model="niji")
    async with db.session() as session:
        await q.update_user_preferences(session, 7, defaults={"ar": "16:9", "s": "250"})
    async with db.session() as session:
        kept = await q.get_user_preferences(session, 7)
        kept_view = (kept.remix, kept.defaults, kept.model)
    async with db.session() as session:
        await q.update_user_preferences(session, 7, model=None)
    async with db.session() as session:
        cleared = await q.get_user_preferences(session, 7)
        fresh = await q.get_user_preferences(session, 8)

    assert kept_view == (True, {"ar": "16:9", "s": "250"}, "niji")
    assert (cleared.remix, cleared.model) == (True, None)
    assert (fresh.remix, fresh.defaults, fresh.model) == (False, {}, None)
