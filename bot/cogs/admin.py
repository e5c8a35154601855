"""Admin commands: /quota (limits per server, role and member) and /config (words, channels, buttons,
what flagged images get).

Discord hides them from members without Manage Server (`default_permissions`), and the bot checks
again, since a server can override command permissions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.policy import FlaggedImages, GalleryAccess, QuotaRuleSpec, QuotaScope
from bot.store import queries as q
from bot.store.models import GuildRules

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["AdminCog", "setup"]

_ADMIN = discord.Permissions(manage_guild=True)
_QUIET = discord.AllowedMentions.none()
Target = discord.Member | discord.User | discord.Role


def _unlimited(value: float | None) -> Any:
    """Omitted = keep the current value; -1 = unlimited (None)."""
    if value is None:
        return q.UNSET
    return None if value < 0 else value


def _scope(target: Target | None) -> tuple[QuotaScope, int | None]:
    if target is None:
        return QuotaScope.GUILD, None
    if isinstance(target, discord.Role):
        return QuotaScope.ROLE, target.id
    return QuotaScope.USER, target.id


def _rule_line(rule: QuotaRuleSpec) -> str:
    who = {
        "guild": "everyone (server default)",
        "role": f"<@&{rule.target_id}>",
        "user": f"<@{rule.target_id}>",
    }
    parts = [
        f"jobs/day {rule.jobs_per_day if rule.jobs_per_day is not None else 'unlimited'}",
        f"GPU min/day {rule.gpu_minutes_per_day if rule.gpu_minutes_per_day is not None else 'unlimited'}",
        f"waiting {rule.max_waiting if rule.max_waiting is not None else 'default'}",
        f"running {rule.max_running if rule.max_running is not None else 'default'}",
        f"hosted images/day {rule.images_per_day if rule.images_per_day is not None else 'unlimited'}",
    ]
    return f"{who[rule.scope.value]}: " + ", ".join(parts)


def _config_text(rules: GuildRules, safety_check: str) -> str:
    words = ", ".join(f"`{w}`" for w in rules.banned_words or []) or "none"
    channels = " ".join(f"<#{c}>" for c in rules.allowed_channel_ids or []) or "every channel"
    owner_only = "only the job's owner" if rules.buttons_owner_only else "anyone in the channel"
    return (
        f"**Banned words:** {words}\n**Channels:** {channels}\n**Who may press buttons:** {owner_only}\n"
        f"**Safety check:** {safety_check}\n"
        f"**Flagged images:** {render.flagged_images_rule(rules.flagged_images)}\n"
        f"**Web gallery:** {render.gallery_rule(rules.gallery)}"
    )


class AdminCog(commands.Cog):
    quota = app_commands.Group(
        name="quota",
        description="Daily limits per server, role and member",
        default_permissions=_ADMIN,
        guild_only=True,
    )
    config = app_commands.Group(
        name="config",
        description="Banned words, channels, button owners, moderation, the web gallery",
        default_permissions=_ADMIN,
        guild_only=True,
    )

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        # Checked again here: a server can grant the command to anyone in its integration settings.
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    # --- /quota ---------------------------------------------------------------------------

    @quota.command(
        name="set", description="Set a limit; the most specific rule wins (member > role > server)"
    )
    @app_commands.describe(
        target="A member or role (leave out for the server default)",
        jobs_per_day="Jobs per day (-1 = unlimited)",
        gpu_minutes_per_day="GPU minutes per day (-1 = unlimited)",
        max_waiting="Jobs one member may have waiting (-1 = bot default)",
        max_running="Jobs one member may have running (-1 = bot default)",
        images_per_day="Images per day from hosted engines, which cost money per image (-1 = unlimited)",
    )
    async def quota_set(
        self,
        interaction: discord.Interaction[ImagineBot],
        target: discord.Member | discord.Role | None = None,
        jobs_per_day: app_commands.Range[int, -1] | None = None,
        gpu_minutes_per_day: app_commands.Range[float, -1] | None = None,
        max_waiting: app_commands.Range[int, -1] | None = None,
        max_running: app_commands.Range[int, -1, 100] | None = None,
        images_per_day: app_commands.Range[int, -1] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        scope, target_id = _scope(target)
        if max_running == 0:
            max_running = -1  # zero running jobs would block the member forever; use jobs_per_day 0 for that
        async with self.bot.db.session(urgent=True) as session:
            rule = await q.set_quota_rule(
                session,
                interaction.guild_id,
                scope,
                target_id,
                jobs_per_day=_unlimited(jobs_per_day),
                gpu_minutes_per_day=_unlimited(gpu_minutes_per_day),
                max_waiting=_unlimited(max_waiting),
                max_running=_unlimited(max_running),
                images_per_day=_unlimited(images_per_day),
            )
            line = _rule_line(rule)
        await interaction.response.send_message(f"Quota set. {line}", ephemeral=True, allowed_mentions=_QUIET)

    @quota.command(name="clear", description="Remove the rule of a member, a role or the server default")
    async def quota_clear(
        self,
        interaction: discord.Interaction[ImagineBot],
        target: discord.Member | discord.Role | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        scope, target_id = _scope(target)
        async with self.bot.db.session(urgent=True) as session:
            removed = await q.delete_quota_rule(session, interaction.guild_id, scope, target_id)
        text = "Rule removed." if removed else "There was no such rule."
        await interaction.response.send_message(text, ephemeral=True)

    @quota.command(name="show", description="List this server's quota rules")
    async def quota_show(self, interaction: discord.Interaction[ImagineBot]) -> None:
        assert interaction.guild_id is not None
        async with self.bot.db.session(read_only=True) as session:
            rules = await q.quota_rules(session, interaction.guild_id)
            lines = [_rule_line(rule) for rule in rules]
        text = "**Quota rules**\n" + ("\n".join(lines) if lines else "none: everyone is unlimited")
        await interaction.response.send_message(text[:2000], ephemeral=True, allowed_mentions=_QUIET)

    # --- /config --------------------------------------------------------------------------

    async def _update(self, interaction: discord.Interaction[ImagineBot], **changes: Any) -> None:
        assert interaction.guild_id is not None
        async with self.bot.db.session(urgent=True) as session:
            rules = await q.update_guild_rules(session, interaction.guild_id, **changes)
            text = _config_text(rules, self._safety_check())
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=_QUIET)

    def _safety_check(self) -> str:
        config = self.bot.config
        return render.safety_check_text(
            self.bot.safety_checker, setting=config.safety_checker, remote=config.queue_url is not None
        )

    async def _current(self, guild_id: int) -> GuildRules:
        async with self.bot.db.session(read_only=True) as session:
            return await q.get_guild_rules(session, guild_id)

    @config.command(name="show", description="Show this server's bot settings")
    async def config_show(self, interaction: discord.Interaction[ImagineBot]) -> None:
        assert interaction.guild_id is not None
        text = _config_text(await self._current(interaction.guild_id), self._safety_check())
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=_QUIET)

    @config.command(name="banned-words", description="Add or remove banned words (comma-separated)")
    async def config_words(
        self, interaction: discord.Interaction[ImagineBot], action: Literal["add", "remove"], words: str
    ) -> None:
        assert interaction.guild_id is not None
        given = [w.strip() for w in words.split(",") if w.strip()]
        current = list((await self._current(interaction.guild_id)).banned_words or [])
        if action == "add":
            current += [w for w in given if w.casefold() not in {c.casefold() for c in current}]
        else:
            drop = {w.casefold() for w in given}
            current = [w for w in current if w.casefold() not in drop]
        await self._update(interaction, banned_words=current)

    @config.command(
        name="channel", description="Allow or disallow /imagine in a channel (none allowed = all)"
    )
    async def config_channel(
        self,
        interaction: discord.Interaction[ImagineBot],
        action: Literal["allow", "disallow"],
        channel: discord.TextChannel,
    ) -> None:
        assert interaction.guild_id is not None
        current = [
            c
            for c in (await self._current(interaction.guild_id)).allowed_channel_ids or []
            if c != channel.id
        ]
        if action == "allow":
            current.append(channel.id)
        await self._update(interaction, allowed_channel_ids=current)

    @config.command(name="buttons", description="Whether only a job's owner may press its buttons")
    async def config_buttons(self, interaction: discord.Interaction[ImagineBot], owner_only: bool) -> None:
        await self._update(interaction, buttons_owner_only=owner_only)

    @config.command(
        name="moderation",
        description="What flagged images get in age-restricted channels (elsewhere: withheld)",
    )
    @app_commands.describe(
        flagged_images="block: withheld, never posted; spoiler: posted blurred; allow: posted as they are"
    )
    async def config_moderation(
        self,
        interaction: discord.Interaction[ImagineBot],
        flagged_images: Literal["block", "spoiler", "allow"],
    ) -> None:
        await self._update(interaction, flagged_images=FlaggedImages(flagged_images))

    @config.command(name="gallery", description="Who sees this server's images in the web gallery (/gallery)")
    @app_commands.describe(
        access="off: each member sees only their own; members: every member with a /gallery link; "
        "public: anyone with the address"
    )
    async def config_gallery(
        self, interaction: discord.Interaction[ImagineBot], access: Literal["off", "members", "public"]
    ) -> None:
        await self._update(interaction, gallery=GalleryAccess(access))


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(AdminCog(bot))
