"""`/imagine prompt:<text>`: the Midjourney command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.replies import answer_with_jobs, requester

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["ImagineCog", "setup"]


class ImagineCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Create images from a prompt")
    @app_commands.describe(prompt="What to imagine, with parameters like --ar 16:9 --seed 7")
    async def imagine(self, interaction: discord.Interaction[ImagineBot], prompt: str) -> None:
        # Refusals (bad prompt, banned word, quota, full queue) raise before anything is queued;
        # the tree's error handler answers them ephemerally.
        tickets = await self.bot.jobs.imagine(requester(interaction), prompt)
        await answer_with_jobs(interaction, tickets)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(ImagineCog(bot))
