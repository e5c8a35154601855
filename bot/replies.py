"""Answering interactions: who asked, a job's first message, and the one error reporter that every
command, button, select and modal goes through."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot import render
from bot.errors import user_message
from bot.jobs import JobTicket, Notify, Requester

__all__ = ["answer_with_jobs", "report_error", "reporting", "requester"]

log = logging.getLogger(__name__)

_QUIET = discord.AllowedMentions.none()


_NSFW_CAPABLE = (
    discord.TextChannel,
    discord.VoiceChannel,
    discord.StageChannel,
    discord.ForumChannel,
    discord.Thread,
)
"""Channels Discord can mark age-restricted (a thread is when its parent is); DMs never are."""


def requester(interaction: discord.Interaction[Any]) -> Requester:
    """Who pressed or typed, where, with which roles (quota rules can target roles), and whether the
    channel is age-restricted (the only kind where flagged images may be posted)."""
    user = interaction.user
    roles = tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()
    channel = interaction.channel
    return Requester(
        user_id=user.id,
        user_name=user.display_name,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        role_ids=roles,
        age_restricted=isinstance(channel, _NSFW_CAPABLE) and channel.is_nsfw(),
    )


def _message(error: BaseException) -> str:
    if isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError):
        error = error.__cause__ or error
    if isinstance(error, app_commands.MissingPermissions):
        return "This command needs the Manage Server permission."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server channel."
    if isinstance(error, discord.HTTPException):
        return "Discord did not accept my message; try again in a moment."
    return user_message(error)  # logs the traceback of anything unexpected


async def report_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Tell the member what went wrong, only them, whether or not the interaction was answered yet."""
    text = _message(error)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=_QUIET)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=_QUIET)
    except discord.HTTPException as exc:
        log.warning("could not send an error message: %s", exc)


@contextlib.asynccontextmanager
async def reporting(interaction: discord.Interaction[Any]) -> AsyncIterator[None]:
    """Run a button's, select's or modal's work; whatever it raises is reported to the member."""
    try:
        yield
    except Exception as exc:
        await report_error(interaction, exc)


async def answer_with_jobs(interaction: discord.Interaction[Any], tickets: Sequence[JobTicket]) -> None:
    """Answer the interaction with the first job's "Waiting to start" message; the others (`--repeat`,
    permutations) post their own. An interaction deferred while pictures were fetched is only the
    member's (so a refusal stays private): every job then posts its own message.

    Later edits go through the channel endpoint (the bot wrote the message), so they work long after
    the interaction token expired. If answering fails, the job posts its own message instead: it is
    queued and must be shown either way.
    """
    first, *rest = tickets
    message_id: int | None = None
    notify = _notifier(interaction)
    if interaction.response.is_done():  # deferred, only the member sees it: the job posts its own message
        for ticket in tickets:
            ticket.show_in(None, notify=notify)
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=render.started_below_content(len(tickets)))
        return
    try:
        response = await interaction.response.send_message(
            render.waiting_content(first.card), allowed_mentions=render.only_mention(first.card.user_id)
        )
        message_id = response.message_id
        if message_id is None:
            message_id = (await interaction.original_response()).id
    except discord.HTTPException as exc:
        log.warning("job %s: could not answer the interaction (%s); posting in the channel", first, exc)
    finally:
        first.show_in(message_id, notify=notify)
        for ticket in rest:
            ticket.show_in(None, notify=notify)


def _notifier(interaction: discord.Interaction[Any]) -> Notify:
    """Tells the member something only they see, while the interaction's token lives (15 minutes);
    after that, or if Discord refuses, the job's own message is all they get."""

    async def notify(text: str) -> None:
        if interaction.is_expired():
            return
        try:
            await interaction.followup.send(text[:2000], ephemeral=True, allowed_mentions=_QUIET)
        except (discord.HTTPException, discord.ClientException, aiohttp.ClientError, TimeoutError) as exc:
            log.info("could not tell %s privately: %s", interaction.user.id, exc)

    return notify
