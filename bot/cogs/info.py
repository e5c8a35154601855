"""/info, /history, /show and /cancel: everything around your jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.replies import requester
from bot.views import result_view

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["InfoCog", "setup"]

_QUIET = discord.AllowedMentions.none()


class InfoCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="info", description="Your queue, running jobs and today's usage")
    async def info(self, interaction: discord.Interaction[ImagineBot]) -> None:
        info = await self.bot.jobs.info(requester(interaction))
        content = render.info_content(interaction.user.id, info)
        await interaction.response.send_message(content, ephemeral=True, allowed_mentions=_QUIET)

    @app_commands.command(name="history", description="Recent jobs with links")
    @app_commands.describe(user="Whose jobs (default: yours)")
    async def history(
        self, interaction: discord.Interaction[ImagineBot], user: discord.User | None = None
    ) -> None:
        target = user or interaction.user
        jobs = await self.bot.jobs.history(target.id, interaction.guild_id)
        await interaction.response.send_message(
            render.history_content(target.id, jobs), ephemeral=True, allowed_mentions=_QUIET
        )

    @app_commands.command(name="show", description="Post a job's images again, with working buttons")
    @app_commands.describe(job_id="The job id, from /history")
    async def show(self, interaction: discord.Interaction[ImagineBot], job_id: str) -> None:
        card, path = await self.bot.jobs.reshow(requester(interaction), job_id.strip().lower())
        await interaction.response.send_message(
            render.result_content(card),
            file=render.attachment_file(path, spoiler=card.spoiler),
            view=result_view(card, edits=self.bot.jobs.capabilities(card.model).edits),
            allowed_mentions=_QUIET,
        )

    @app_commands.command(name="cancel", description="Cancel your waiting or running job")
    @app_commands.describe(job="The job id (default: your newest waiting or running job)")
    async def cancel(self, interaction: discord.Interaction[ImagineBot], job: str | None = None) -> None:
        job_id = await self.bot.jobs.cancel(requester(interaction), job.strip().lower() if job else None)
        await interaction.response.send_message(f"Cancelled job `{job_id}`.", ephemeral=True)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(InfoCog(bot))
