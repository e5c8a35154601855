"""The Discord side of a job's life: its own channel message, edited as the job moves on.

Everything goes through the channel endpoints with the bot's own token, never the interaction
token (which dies after 15 minutes), so a job that finishes late still shows up. Transient Discord
failures (5xx, timeouts, connection resets) are retried with backoff; a message that vanished is
posted again.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import discord

from bot import render
from bot.jobs import JobCard
from bot.views import result_view
from engine.backend import Capabilities
from engine.images import SavedImages
from engine.types import Progress

__all__ = ["DiscordClosed", "DiscordPresenter", "with_retries"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_DELAYS_S = (0.5, 2.0, 5.0)


class DiscordClosed(Exception):
    """The bot's connection to Discord is closed (it is shutting down): nothing can be shown now."""


_UNSHOWN = (discord.HTTPException, TimeoutError, aiohttp.ClientError, DiscordClosed)
"""What keeps a message from being shown; the job itself is not affected by it."""


def _transient(error: BaseException) -> bool:
    if isinstance(error, discord.DiscordServerError):
        return True
    if isinstance(error, discord.HTTPException):
        return error.status in (408, 429) or error.status >= 500
    return isinstance(error, TimeoutError | aiohttp.ClientError | ConnectionError)


async def with_retries(
    action: Callable[[], Awaitable[T]], *, what: str, delays: tuple[float, ...] = RETRY_DELAYS_S
) -> T:
    """Run `action`, retrying transient Discord failures after each of `delays` seconds."""
    for delay in (*delays, None):
        try:
            return await action()
        except Exception as exc:
            if delay is None or not _transient(exc):
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _result_file(saved: SavedImages, *, spoiler: bool) -> discord.File:
    """The posted file: from memory when the job has just made it (it may not be on disk yet)."""
    if saved.upload is None:
        return render.attachment_file(saved.attachment, spoiler=spoiler)
    return discord.File(io.BytesIO(saved.upload.data), filename=saved.attachment.name, spoiler=spoiler)


class DiscordPresenter:
    """Implements `bot.jobs.Presenter` over a discord.py client's REST API."""

    def __init__(
        self,
        client: discord.Client,
        *,
        progress_interval_s: float,
        capabilities: Callable[[str | None], Capabilities] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        """`progress_interval_s`: the least time between two progress edits of one message;
        `capabilities(alias)`: what a job's model can do (`JobService.capabilities`): upscales get the
        editing buttons where it can paint."""
        self.client = client
        self.progress_interval_s = progress_interval_s
        self.capabilities = capabilities or (lambda alias: Capabilities("this engine"))
        self.retry_delays = retry_delays

    def _channel(self, card: JobCard) -> discord.PartialMessageable:
        if self.client.is_closed():  # its HTTP session is gone; say so instead of failing inside aiohttp
            raise DiscordClosed(f"Discord is closed; job {card.job_id} is not shown")
        return self.client.get_partial_messageable(card.channel_id, guild_id=card.guild_id)

    async def _send(self, card: JobCard, make: Callable[[], dict[str, Any]]) -> int:
        """Post a new message from `make()`'s edit arguments (`attachments` become `files`)."""

        async def send() -> int:
            # Fresh kwargs per try: discord.py closes the files it uploaded.
            kwargs = make()
            kwargs["files"] = kwargs.pop("attachments", [])
            if kwargs.get("view", ...) is None:
                del kwargs["view"]  # "remove the buttons" is for edits; a new message has none
            message = await self._channel(card).send(
                allowed_mentions=render.only_mention(card.user_id), **kwargs
            )
            return message.id

        return await with_retries(send, what=f"posting job {card.job_id}", delays=self.retry_delays)

    async def _edit_or_send(self, card: JobCard, make: Callable[[], dict[str, Any]]) -> int:
        """Edit the job's message; post a new one if it is gone (deleted, or never posted)."""
        if card.message_id is not None:
            message = self._channel(card).get_partial_message(card.message_id)

            async def edit() -> int:
                await message.edit(allowed_mentions=render.only_mention(card.user_id), **make())
                return message.id

            try:
                return await with_retries(edit, what=f"editing job {card.job_id}", delays=self.retry_delays)
            except (discord.NotFound, discord.Forbidden) as exc:
                log.warning("job %s: its message is gone (%s); posting a new one", card.job_id, exc.status)
        return await self._send(card, make)

    async def show_waiting(self, card: JobCard) -> int | None:
        try:
            return await self._send(card, lambda: {"content": render.waiting_content(card)})
        except _UNSHOWN as exc:
            log.error("job %s: cannot post its message: %s", card.job_id, exc)
            return None

    async def show_progress(self, card: JobCard, progress: Progress) -> None:
        if card.message_id is None:
            return
        if progress.total:
            content = render.progress_content(card, min(99, int(progress.fraction * 100)))  # 100%: the grid
        else:  # an engine that can't say how far it is (a hosted API) reports elapsed seconds
            content = render.elapsed_content(card, progress.step)
        attachments = [render.preview_file(progress.preview)] if progress.preview is not None else []
        try:
            message = self._channel(card).get_partial_message(card.message_id)
            # One try only: a lost progress edit is replaced by the next one anyway.
            await message.edit(content=content, attachments=attachments)
        except _UNSHOWN as exc:
            log.warning("job %s: progress edit failed: %s", card.job_id, exc)

    async def show_result(self, card: JobCard, saved: SavedImages) -> int | None:
        try:
            return await self._edit_or_send(
                card,
                lambda: {
                    "content": render.result_content(card),
                    "attachments": [_result_file(saved, spoiler=card.spoiler)],
                    "view": result_view(card, edits=self.capabilities(card.model).edits),
                },
            )
        except _UNSHOWN as exc:
            log.error("job %s: cannot post its result (use /show %s): %s", card.job_id, card.job_id, exc)
            return None

    async def show_failure(self, card: JobCard, reason: str) -> None:
        content = (
            render.cancelled_content(card) if reason == "cancelled" else render.failed_content(card, reason)
        )
        try:
            await self._edit_or_send(card, lambda: {"content": content, "attachments": [], "view": None})
        except _UNSHOWN as exc:
            log.error("job %s: cannot tell its owner it failed: %s", card.job_id, exc)

    async def show_moderated(self, card: JobCard, reason: str) -> None:
        # The edit drops every attachment, progress previews included: nothing of the job stays posted.
        content = render.moderated_content(card, reason)
        try:
            await self._edit_or_send(card, lambda: {"content": content, "attachments": [], "view": None})
        except _UNSHOWN as exc:
            log.error("job %s: cannot tell its owner it was moderated: %s", card.job_id, exc)
