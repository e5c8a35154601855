"""What several cogs share: answering an interaction with a job's own message."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.jobs import JobCard

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = ["answer_with_job", "start_jobs"]

log = logging.getLogger(__name__)


async def answer_with_job(interaction: discord.Interaction[Any], bot: ImagineBot, card: JobCard) -> None:
    """Answer the interaction with the job's "Waiting to start" message, then follow the job.

    Later edits go through the channel endpoint (the bot wrote the message), so they work long
    after the interaction token expired. If answering fails, the job posts its own message instead.
    """
    try:
        response = await interaction.response.send_message(
            render.waiting_content(card), allowed_mentions=render.only_mention(card.user_id)
        )
        message_id = response.message_id
        if message_id is None:
            message_id = (await interaction.original_response()).id
        card = replace(card, message_id=message_id)
        await bot.jobs.set_message(card.job_id, message_id)
    except discord.HTTPException as exc:
        log.warning("job %s: could not answer the interaction (%s); posting in the channel", card.job_id, exc)
    finally:
        bot.jobs.follow(card)  # whatever happened above, the job is queued and must be shown


async def start_jobs(interaction: discord.Interaction[Any], bot: ImagineBot, cards: list[JobCard]) -> None:
    """The first job answers the interaction; the others (`--repeat`, permutations) post their own."""
    first, *rest = cards
    await answer_with_job(interaction, bot, first)
    for card in rest:
        bot.jobs.follow(card)
