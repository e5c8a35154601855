"""/gallery: a member's own signed, expiring link to the web gallery of the server they type it in."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.store import queries as q

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["GalleryCog", "setup"]

GALLERY_OFF = (
    "The web gallery is off on this bot (its owner set IMAGINE_WEB_PORT=0); "
    "`/history` and `/show` still list and post your jobs."
)


class GalleryCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="gallery", description="Your private link to this server's images on the web")
    @app_commands.guild_only()
    async def gallery(self, interaction: discord.Interaction[ImagineBot]) -> None:
        assert interaction.guild_id is not None
        config = self.bot.config
        if config.web_port == 0:
            await interaction.response.send_message(GALLERY_OFF, ephemeral=True)
            return
        admin = interaction.permissions.manage_guild
        token = self.bot.gallery_keys.link_token(
            guild_id=interaction.guild_id,
            user_id=interaction.user.id,
            name=interaction.user.display_name,
            admin=admin,
            now=time.time(),
            ttl_s=config.web_link_ttl_s,
        )
        async with self.bot.db.session(read_only=True) as session:
            rule = (await q.get_guild_rules(session, interaction.guild_id)).gallery
        text = render.gallery_link_content(
            f"{config.gallery_url}/login?t={token}",
            minutes=max(1, round(config.web_link_ttl_s / 60)),
            rule=rule,
            admin=admin,
        )
        await interaction.response.send_message(text, ephemeral=True, suppress_embeds=True)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(GalleryCog(bot))
