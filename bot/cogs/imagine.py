"""`/imagine prompt:<text> [image…]` and `/blend`: the Midjourney commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError
from bot.replies import answer_with_jobs, requester

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["BLEND_DIMENSIONS", "BLEND_IMAGE_WEIGHT", "ImagineCog", "setup"]

BLEND_DIMENSIONS = {"square": "1:1", "portrait": "2:3", "landscape": "3:2"}
"""`/blend`'s `dimensions` choices and the aspect ratio each gives, as on Midjourney."""
BLEND_IMAGE_WEIGHT = 2.0
"""The `--iw` of a `/blend` (image-to-image strength 0.45)."""

_LINK_STARTS = ("http://", "https://", "<http://", "<https://")


def _picture_links(
    attachments: list[discord.Attachment | None], limit_bytes: int, limit_pixels: int
) -> list[str]:
    """The links of the given attachments, refusing at once what Discord already says cannot be a
    usable picture (the download then decides what the file really is)."""
    links = []
    for attachment in attachments:
        if attachment is None:
            continue
        kind = (attachment.content_type or "").split(";")[0]
        if kind.startswith(("video/", "audio/")):
            raise BotError(
                f"`{attachment.filename}` is a {kind.split('/')[0]}; "
                "attach a picture (PNG, JPEG, WebP or GIF) instead."
            )
        if attachment.size > limit_bytes:
            raise BotError(
                f"`{attachment.filename}` is {attachment.size / 2**20:.1f} MB; pictures may be at most "
                f"{limit_bytes / 2**20:g} MB here."
            )
        if attachment.width and attachment.height and attachment.width * attachment.height > limit_pixels:
            raise BotError(
                f"`{attachment.filename}` is {attachment.width}×{attachment.height} pixels, more than the "
                f"{limit_pixels / 1e6:g} megapixels I take; give a smaller image."
            )
        links.append(attachment.url)
    return links


class ImagineCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    def _links(self, attachments: list[discord.Attachment | None]) -> list[str]:
        config = self.bot.config
        return _picture_links(attachments, config.max_image_bytes, config.max_image_pixels)

    async def _start(self, interaction: discord.Interaction[ImagineBot], text: str, links: list[str]) -> None:
        if links or text.lstrip().lower().startswith(_LINK_STARTS):
            # Pictures are downloaded first, which may take longer than Discord waits for an answer;
            # "thinking" is only the member's, so a refusal stays between them and the bot.
            await interaction.response.defer(ephemeral=True, thinking=True)
        # Refusals (bad prompt or picture, banned word, quota, full queue) raise before anything is
        # queued; the tree's error handler answers them ephemerally.
        tickets = await self.bot.jobs.imagine(requester(interaction), text, images=links)
        await answer_with_jobs(interaction, tickets)

    @app_commands.command(name="imagine", description="Create images from a prompt")
    @app_commands.describe(
        prompt="What to imagine, with parameters like --ar 16:9 --seed 7; image links may come first",
        image="A picture to start from (--iw 0-3 sets how much it counts)",
        image2="Another picture to blend in",
        image3="Another picture to blend in",
    )
    async def imagine(
        self,
        interaction: discord.Interaction[ImagineBot],
        prompt: str,
        image: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
    ) -> None:
        links = self._links([image, image2, image3])
        await self._start(interaction, prompt, links)

    @app_commands.command(name="blend", description="Blend 2 to 5 pictures into a new grid")
    @app_commands.describe(dimensions="The grid's shape: square (1:1), portrait (2:3) or landscape (3:2)")
    @app_commands.choices(
        dimensions=[app_commands.Choice(name=name, value=name) for name in BLEND_DIMENSIONS]
    )
    async def blend(
        self,
        interaction: discord.Interaction[ImagineBot],
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        dimensions: str = "square",
    ) -> None:
        pictures = [image1, image2, image3, image4, image5]
        links = self._links(pictures)
        # No words: the pictures are all there is to follow, so they count twice the default, on an
        # engine that can weigh them (a hosted one takes them as they are).
        weigh = "iw" in self.bot.jobs.capabilities(None).honours
        weight = f" --iw {BLEND_IMAGE_WEIGHT:g}" if weigh else ""
        await self._start(interaction, f"--ar {BLEND_DIMENSIONS[dimensions]}{weight}", links)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(ImagineCog(bot))
