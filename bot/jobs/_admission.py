"""Whether a member may start new jobs now: the server's rules, quotas and job counts, read in the
same transaction that then stores the jobs. Before reading, it takes a lock on the member (`serialize`:
an advisory lock on PostgreSQL; on SQLite every write transaction already holds the write lock), so a
second request of the same member waits until the first one's jobs are committed, and counts them:
two requests at once cannot both slip under a limit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.jobs.types import Requester
from bot.policy import (
    Limits,
    QuotaRuleSpec,
    Usage,
    check_banned_words,
    check_channel,
    check_job_counts,
    check_quota,
    day_window,
    resolve_limits,
)
from bot.store import queries as q
from bot.store.models import GuildRules
from engine.types import GRID_SIZE

__all__ = ["UNLIMITED", "admit", "check_server_rules", "member_limits"]

UNLIMITED = 1_000_000
"""The waiting limit where no member limit applies: resumed jobs, and the operator's."""


def member_limits(rules: list[QuotaRuleSpec], who: Requester, config: Config) -> Limits:
    """The limits that apply to `who` under the server's quota rules and the bot's defaults."""
    return resolve_limits(
        rules,
        user_id=who.user_id,
        role_ids=who.role_ids,
        default_max_waiting=config.max_waiting_per_owner,
        default_max_running=config.max_running_per_owner,
    )


def check_server_rules(rules: GuildRules, who: Requester, text: str | None) -> None:
    """Raise `PolicyError` where the server's rules refuse `who`'s prompt `text` (channel, banned words)."""
    check_channel(who.channel_id, rules.allowed_channel_ids or [])
    if text is not None:
        check_banned_words(text, rules.banned_words or [])


async def admit(
    session: AsyncSession,
    who: Requester,
    text: str | None,
    new_jobs: int,
    *,
    config: Config,
    now: datetime,
    new_hosted_images: int = 0,
) -> Limits:
    """Raise `PolicyError` if `who` may not start `new_jobs` more jobs (prompt `text`, making
    `new_hosted_images` images on hosted engines); else their limits.

    Store the jobs in `session`'s transaction: later admissions of the same member wait until it ends."""
    if who.operator:
        return Limits(None, None, UNLIMITED, config.max_running_per_owner, "operator")
    # Held until the caller's transaction ends, after it has stored the jobs admitted here.
    await q.serialize(session, "admission", who.user_id)
    check_server_rules(await q.get_guild_rules(session, who.guild_id), who, text)
    limits = member_limits(await q.quota_rules(session, who.guild_id), who, config)
    ledger = await q.usage_since(session, who.user_id, day_window(now)[0], guild_id=who.guild_id)
    waiting, running = await q.count_active(session, who.user_id)
    # Jobs still waiting or running will count too once they finish.
    # Jobs still waiting or running will count too once they finish; for hosted images each is taken
    # as a full grid (their engine is not stored apart), so a cap is never overshot, at worst undershot.
    usage = Usage(
        jobs=ledger.jobs + waiting + running,
        gpu_seconds=ledger.gpu_seconds,
        hosted_images=ledger.hosted_images + GRID_SIZE * (waiting + running),
    )
    check_quota(limits, usage, now=now, new_jobs=new_jobs, new_hosted_images=new_hosted_images)
    check_job_counts(limits, waiting=waiting, running=running, new_jobs=new_jobs)
    return limits
