"""/settings: a member's defaults, as Midjourney's settings panel (remix, stylize, aspect, model).

The panel's buttons and select save each choice themselves (`bot.views`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.store import queries as q
from bot.views import settings_panel

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["SettingsCog", "setup"]


class SettingsCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="settings", description="Your defaults: remix mode, stylize, aspect ratio, model"
    )
    async def settings(self, interaction: discord.Interaction[ImagineBot]) -> None:
        async with self.bot.db.session(read_only=True) as session:
            prefs = await q.get_user_preferences(session, interaction.user.id)
            panel = settings_panel(prefs, list(self.bot.config.model_aliases))
        await interaction.response.send_message(ephemeral=True, **panel)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(SettingsCog(bot))
