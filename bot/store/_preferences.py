"""A server's rules (set by its admins with /config) and a member's preferences (set with /settings).

Each update first takes a lock on its server or member (`serialize`), so two first writes take turns
instead of both finding no row and both inserting one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from bot.policy import FlaggedImages, GalleryAccess
from bot.store._locks import serialize
from bot.store._usage import UNSET, Unset
from bot.store.models import GuildRules, UserPreferences, utcnow

__all__ = ["get_guild_rules", "get_user_preferences", "update_guild_rules", "update_user_preferences"]


async def get_guild_rules(session: AsyncSession, guild_id: int | None) -> GuildRules:
    """The server's rules, or the defaults (not stored) when its admins never set any or in a DM."""
    rules = None if guild_id is None else await session.get(GuildRules, guild_id)
    if rules is not None:
        return rules
    return GuildRules(
        guild_id=guild_id,
        banned_words=[],
        allowed_channel_ids=[],
        buttons_owner_only=False,
        flagged_images=FlaggedImages.BLOCK,
        gallery=GalleryAccess.OFF,
        updated_at=utcnow(),
    )


async def update_guild_rules(
    session: AsyncSession,
    guild_id: int,
    *,
    banned_words: Sequence[str] | None = None,
    allowed_channel_ids: Sequence[int] | None = None,
    buttons_owner_only: bool | None = None,
    flagged_images: FlaggedImages | None = None,
    gallery: GalleryAccess | None = None,
) -> GuildRules:
    """Change the given rules (None = keep), creating the row on first use."""
    await serialize(session, "guild_rules", guild_id)
    rules = await session.get(GuildRules, guild_id)
    if rules is None:
        rules = await get_guild_rules(session, guild_id)
        session.add(rules)
    if banned_words is not None:
        rules.banned_words = list(banned_words)
    if allowed_channel_ids is not None:
        rules.allowed_channel_ids = [int(channel) for channel in allowed_channel_ids]
    if buttons_owner_only is not None:
        rules.buttons_owner_only = buttons_owner_only
    if flagged_images is not None:
        rules.flagged_images = FlaggedImages(flagged_images)
    if gallery is not None:
        rules.gallery = GalleryAccess(gallery)
    rules.updated_at = utcnow()
    await session.flush()
    return rules


async def get_user_preferences(session: AsyncSession, user_id: int) -> UserPreferences:
    """The member's preferences, or the defaults (not stored) when they never changed any."""
    prefs = await session.get(UserPreferences, user_id)
    if prefs is not None:
        return prefs
    return UserPreferences(user_id=user_id, remix=False, defaults={}, model=None, updated_at=utcnow())


async def update_user_preferences(
    session: AsyncSession,
    user_id: int,
    *,
    remix: bool | None = None,
    defaults: dict[str, str] | None = None,
    model: str | Literal[Unset.UNSET] | None = UNSET,
) -> UserPreferences:
    """Change the given preferences (None/UNSET = keep; `model=None` clears the alias)."""
    await serialize(session, "user_preferences", user_id)
    prefs = await session.get(UserPreferences, user_id)
    if prefs is None:
        prefs = await get_user_preferences(session, user_id)
        session.add(prefs)
    if remix is not None:
        prefs.remix = remix
    if defaults is not None:
        prefs.defaults = dict(defaults)
    if model is not UNSET:
        prefs.model = model
    prefs.updated_at = utcnow()
    await session.flush()
    return prefs
