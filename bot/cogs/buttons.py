"""U1–U4, V1–V4, 🔄 and Vary (Strong/Subtle): each press is a new job with its own message."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.client import requester, send_error
from bot.cogs._common import answer_with_job
from bot.jobs import ButtonAction
from bot.store import queries
from bot.user_errors import expected
from bot.views import RemixModal

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["ButtonsCog", "setup"]

log = logging.getLogger(__name__)


class ButtonsCog(commands.Cog):
    """Implements `bot.views.ButtonHandler`."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.button_handler = self

    async def cog_unload(self) -> None:
        self.bot.button_handler = None

    async def _remix_on(self, user_id: int) -> bool:
        async with self.bot.db.session() as session:
            return bool((await queries.get_user_settings(session, user_id)).remix)

    async def on_job_button(
        self, interaction: discord.Interaction[Any], action: ButtonAction, job_id: str, cell: int
    ) -> None:
        try:
            if action.is_variation and await self._remix_on(interaction.user.id):
                job = await self.bot.jobs.get(job_id)
                await interaction.response.send_modal(RemixModal(action, job_id, cell, job.prompt))
                return
            card = await self.bot.jobs.press(requester(interaction), action, job_id, cell)
            await answer_with_job(interaction, self.bot, card)
        except Exception as exc:
            await self._failed(interaction, exc)

    async def on_remix_submit(
        self, interaction: discord.Interaction[Any], action: ButtonAction, job_id: str, cell: int, prompt: str
    ) -> None:
        try:
            card = await self.bot.jobs.press(requester(interaction), action, job_id, cell, remix_text=prompt)
            await answer_with_job(interaction, self.bot, card)
        except Exception as exc:
            await self._failed(interaction, exc)

    async def _failed(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        await send_error(interaction, error)
        if not expected(error):
            self.bot.handler_errors.append(error)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(ButtonsCog(bot))
