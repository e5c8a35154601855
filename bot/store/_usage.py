"""The usage ledger and quota rules: what members used, and what they may use."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.policy import QuotaRuleSpec, QuotaScope, Usage
from bot.store._locks import serialize
from bot.store.models import QuotaRule, UsageEntry

__all__ = ["UNSET", "Unset", "delete_quota_rule", "quota_rules", "set_quota_rule", "usage_since"]


class Unset(enum.Enum):
    UNSET = "unset"


UNSET: Final = Unset.UNSET
"""Default of update arguments: leave the stored value as it is (None is a value: "no limit")."""

_SCOPE_ORDER = {QuotaScope.GUILD: 0, QuotaScope.ROLE: 1, QuotaScope.USER: 2}
_RULES_LOCK = "quota_rules"
"""Changes to one guild's quota rules take turns (find, then insert or delete)."""


async def usage_since(
    session: AsyncSession, user_id: int, since: datetime, *, guild_id: int | None = None
) -> Usage:
    """A member's finished jobs, engine seconds and hosted-engine images in the ledger since `since`
    (in one guild, or everywhere)."""
    hosted_images = case((UsageEntry.hosted, UsageEntry.images), else_=0)
    query = select(
        func.coalesce(func.sum(UsageEntry.jobs), 0),
        func.coalesce(func.sum(UsageEntry.gpu_seconds), 0.0),
        func.coalesce(func.sum(hosted_images), 0),
    ).where(UsageEntry.user_id == user_id, UsageEntry.at >= since)
    if guild_id is not None:
        query = query.where(UsageEntry.guild_id == guild_id)
    jobs, seconds, images = (await session.execute(query)).one()
    return Usage(jobs=int(jobs), gpu_seconds=float(seconds), hosted_images=int(images))


def _spec(rule: QuotaRule) -> QuotaRuleSpec:
    return QuotaRuleSpec(
        rule.scope,
        rule.target_id,
        jobs_per_day=rule.jobs_per_day,
        gpu_minutes_per_day=rule.gpu_minutes_per_day,
        max_waiting=rule.max_waiting,
        max_running=rule.max_running,
        images_per_day=rule.images_per_day,
    )


async def quota_rules(session: AsyncSession, guild_id: int | None) -> list[QuotaRuleSpec]:
    """Every quota rule of a guild (none in a DM): the guild rule first, then role rules, then user rules."""
    if guild_id is None:
        return []
    rules = (await session.scalars(select(QuotaRule).where(QuotaRule.guild_id == guild_id))).all()
    return [_spec(rule) for rule in sorted(rules, key=lambda r: (_SCOPE_ORDER[r.scope], r.target_id or 0))]


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
    jobs_per_day: int | Literal[Unset.UNSET] | None = UNSET,
    gpu_minutes_per_day: float | Literal[Unset.UNSET] | None = UNSET,
    max_waiting: int | Literal[Unset.UNSET] | None = UNSET,
    max_running: int | Literal[Unset.UNSET] | None = UNSET,
    images_per_day: int | Literal[Unset.UNSET] | None = UNSET,
) -> QuotaRuleSpec:
    """Create or change the rule for (guild, scope, target); None = no limit, UNSET = keep."""
    _check_target(scope, target_id)
    # The unique constraint cannot catch a second guild rule: its target_id is NULL, and NULLs differ.
    await serialize(session, _RULES_LOCK, guild_id)
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
    if images_per_day is not UNSET:
        rule.images_per_day = images_per_day
    await session.flush()
    return _spec(rule)


async def delete_quota_rule(
    session: AsyncSession, guild_id: int, scope: QuotaScope, target_id: int | None = None
) -> bool:
    """Remove the rule for (guild, scope, target); False if there was none."""
    _check_target(scope, target_id)
    await serialize(session, _RULES_LOCK, guild_id)
    rule = await _find_rule(session, guild_id, scope, target_id)
    if rule is None:
        return False
    await session.execute(delete(QuotaRule).where(QuotaRule.id == rule.id))
    session.expunge(rule)
    return True
