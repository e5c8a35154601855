"""The `commands.Bot` subclass: receives its resources, loads one cog per feature, resumes jobs.

Nothing is built here; `bot.app` builds the settings, database, queue and job service and passes
them in, so tests can start the same bot against a fake Discord and a simulated engine.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs import JobService, Requester
from bot.presenter import DiscordPresenter
from bot.settings import Settings
from bot.store.db import Database
from bot.user_errors import expected, user_message
from bot.views import DYNAMIC_ITEMS, ButtonHandler, SettingsHandler
from engine.queue import JobQueue

__all__ = ["COGS", "ImagineBot", "requester", "send_error"]

log = logging.getLogger(__name__)

COGS = ("bot.cogs.imagine", "bot.cogs.buttons", "bot.cogs.info", "bot.cogs.settings", "bot.cogs.admin")

INTENTS = discord.Intents(guilds=True)
"""Slash commands and buttons arrive as interactions, which need no privileged intent."""


def requester(interaction: discord.Interaction[Any]) -> Requester:
    """Who pressed or typed, where, and with which roles (quota rules can target roles)."""
    user = interaction.user
    roles = tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()
    return Requester(
        user_id=user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        role_ids=roles,
    )


async def send_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Tell the user what went wrong, only them, whether or not the interaction was answered yet."""
    text = user_message(error)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as exc:
        log.warning("could not send an error message: %s", exc)


class _Tree(app_commands.CommandTree["ImagineBot"]):
    async def on_error(
        self, interaction: discord.Interaction[ImagineBot], error: app_commands.AppCommandError
    ) -> None:
        await send_error(interaction, error)
        if not expected(error):
            self.client.handler_errors.append(error)
            await super().on_error(interaction, error)  # logs the traceback


class ImagineBot(commands.Bot):
    """The Discord bot; `async with ImagineBot(...) as bot: await bot.start(token)`."""

    button_handler: ButtonHandler | None
    settings_handler: SettingsHandler | None

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        queue: JobQueue,
        jobs: JobService,
        **options: Any,
    ) -> None:
        options.setdefault("intents", INTENTS)
        super().__init__(command_prefix=commands.when_mentioned, tree_cls=_Tree, help_command=None, **options)
        self.settings = settings
        self.db = db
        self.queue = queue
        self.jobs = jobs
        self.button_handler = None
        self.settings_handler = None
        self.handler_errors: list[BaseException] = []
        """Unexpected errors from handlers (the user was told); tests assert this stays empty."""

    async def setup_hook(self) -> None:
        self.jobs.presenter = self.jobs.presenter or DiscordPresenter(self)
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for cog in COGS:
            await self.load_extension(cog)
        resumed, failed = await self.jobs.recover()
        if resumed or failed:
            log.info("recovery: %d unfinished jobs resumed, %d failed with a notice", resumed, failed)
        await self._sync_commands()

    async def _sync_commands(self) -> None:
        guild_id = self.settings.dev_guild_id
        if guild_id is not None:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d commands globally (Discord may take up to an hour to show them)", len(synced))

    async def on_ready(self) -> None:
        log.info(
            "logged in as %s (%s) in %d guilds", self.user, getattr(self.user, "id", "?"), len(self.guilds)
        )

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("error in %s", event_method)
        error = sys.exc_info()[1]
        if error is not None:
            self.handler_errors.append(error)

    async def close(self) -> None:
        await self.jobs.close()
        await super().close()
