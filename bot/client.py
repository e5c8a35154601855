"""The `commands.AutoShardedBot` subclass: receives the services, loads one cog per feature, resumes jobs.

Nothing is built here: `bot.services` builds the config, database, queue and job service and the
bot is handed them, so tests start the same bot against a fake Discord and a simulated engine.

Sharded in one process: `IMAGINE_SHARDS` gateway sessions, or as many as Discord's `GET /gateway/bot`
recommends. `setup_hook` still runs once, before the first shard connects; `on_ready` fires once every
shard has received its guilds, `on_shard_ready` once per shard.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.presenter import DiscordPresenter
from bot.replies import report_error
from bot.services import Services
from bot.views import DYNAMIC_ITEMS

__all__ = ["COGS", "INTENTS", "ImagineBot"]

log = logging.getLogger(__name__)

COGS = ("bot.cogs.imagine", "bot.cogs.info", "bot.cogs.settings", "bot.cogs.admin", "bot.cogs.gallery")

INTENTS = discord.Intents(guilds=True)
"""Slash commands and buttons arrive as interactions, which need no privileged intent."""


class _Tree(app_commands.CommandTree["ImagineBot"]):
    async def on_error(
        self, interaction: discord.Interaction[ImagineBot], error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error)


class ImagineBot(commands.AutoShardedBot):
    """The Discord bot; `async with ImagineBot(services) as bot: await bot.start(token)`."""

    def __init__(self, services: Services, **options: Any) -> None:
        options.setdefault("intents", INTENTS)
        options.setdefault("shard_count", services.config.shards)  # None: Discord's recommendation
        super().__init__(command_prefix=commands.when_mentioned, tree_cls=_Tree, help_command=None, **options)
        self.config = services.config
        self.db = services.db
        self.jobs = services.jobs
        self.safety_checker = services.safety_checker
        self.gallery_keys = services.gallery_keys

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for cog in COGS:
            await self.load_extension(cog)
        presenter = DiscordPresenter(
            self, progress_interval_s=self.config.progress_interval_s, capabilities=self.jobs.capabilities
        )
        resumed, failed = await self.jobs.start(presenter)
        if resumed or failed:
            log.info("recovery: %d unfinished jobs resumed, %d failed with a notice", resumed, failed)
        await self._sync_commands()

    async def _sync_commands(self) -> None:
        guild_id = self.config.dev_guild_id
        if guild_id is not None:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d commands globally (Discord may take up to an hour to show them)", len(synced))

    async def on_shard_ready(self, shard_id: int) -> None:
        guilds = sum(1 for guild in self.guilds if guild.shard_id == shard_id)
        log.info("shard %d of %s ready with %d guilds", shard_id, self.shard_count, guilds)

    async def on_ready(self) -> None:
        log.info(
            "logged in as %s (%s) in %d guilds on %s shards",
            self.user,
            getattr(self.user, "id", "?"),
            len(self.guilds),
            self.shard_count,
        )
