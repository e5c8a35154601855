"""/settings: per-user defaults as Midjourney's settings panel (remix, stylize, aspect, model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.client import send_error
from bot.store import queries
from bot.store.models import UserSettings
from bot.store.queries import UNSET

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["SettingsCog", "setup"]

# Panel keys → the prompt parameter (long name) they set a default for.
_PARAMETER = {"stylize": "stylize", "ar": "aspect"}


class SettingsCog(commands.Cog):
    """Implements `bot.views.SettingsHandler`."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.settings_handler = self

    async def cog_unload(self) -> None:
        self.bot.settings_handler = None

    def _panel(self, prefs: UserSettings) -> dict[str, Any]:
        defaults = dict(prefs.defaults or {})
        return {
            "content": render.settings_content(remix=bool(prefs.remix), defaults=defaults, model=prefs.model),
            "view": render.settings_view(
                remix=bool(prefs.remix),
                defaults=defaults,
                model=prefs.model,
                model_aliases=list(self.bot.settings.model_aliases),
            ),
        }

    @app_commands.command(
        name="settings", description="Your defaults: remix mode, stylize, aspect ratio, model"
    )
    async def settings(self, interaction: discord.Interaction[ImagineBot]) -> None:
        async with self.bot.db.session() as session:
            prefs = await queries.get_user_settings(session, interaction.user.id)
            panel = self._panel(prefs)
        await interaction.response.send_message(ephemeral=True, **panel)

    async def on_settings_choice(self, interaction: discord.Interaction[Any], key: str, value: str) -> None:
        try:
            async with self.bot.db.session() as session:
                prefs = await queries.get_user_settings(session, interaction.user.id)
                defaults = dict(prefs.defaults or {})
                if key == "remix":
                    prefs = await queries.upsert_user_settings(
                        session, interaction.user.id, remix=value == "on"
                    )
                elif key == "reset":
                    prefs = await queries.upsert_user_settings(
                        session, interaction.user.id, remix=False, defaults={}, model=None
                    )
                elif key == "model":
                    model = None if value == "default" else value
                    prefs = await queries.upsert_user_settings(session, interaction.user.id, model=model)
                elif key in _PARAMETER:
                    name = _PARAMETER[key]
                    # Pressing the active preset again clears it, as in Midjourney's panel.
                    if defaults.get(name) == value:
                        defaults.pop(name)
                    else:
                        defaults[name] = value
                    prefs = await queries.upsert_user_settings(
                        session, interaction.user.id, defaults=defaults, model=UNSET
                    )
                panel = self._panel(prefs)
            await interaction.response.edit_message(**panel)
        except Exception as exc:
            await send_error(interaction, exc)
            self.bot.handler_errors.append(exc)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(SettingsCog(bot))
