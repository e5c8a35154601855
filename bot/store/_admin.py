"""The usage ledger, quota rules, and guild and user settings."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import GuildSettings, QuotaRule, QuotaScope, UsageEntry, UserSettings, utcnow


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET
"""Default of upsert arguments: leave the stored value as it is (None is a value: "no limit")."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Totals from the usage ledger over a window."""

    jobs: int
    gpu_seconds: float

    @property
    def gpu_minutes(self) -> float:
        return self.gpu_seconds / 60


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
