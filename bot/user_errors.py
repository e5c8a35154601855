"""The one place that turns an exception into the sentence a Discord user sees.

Errors we raise on purpose already carry a message written for people; anything else is a bug,
logged with an incident id the user can quote to the admin. discord.py is imported only inside the
functions, so the Discord-free core (`bot.jobs`) can use this module without loading it.
"""

from __future__ import annotations

import logging
import secrets

from bot.policy import PolicyError
from bot.prompt import PromptError
from bot.store.errors import JobNotFound, StoreError
from engine.errors import (
    GenerationError,
    JobCancelled,
    ModelLoadError,
    OutOfMemoryError,
    QueueClosed,
    QueueError,
)

__all__ = ["BotError", "UnknownJob", "expected", "user_message"]

log = logging.getLogger(__name__)


class BotError(Exception):
    """A request the bot refuses for a reason the user can act on; the message says what to do."""


class UnknownJob(BotError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"I know no job `{job_id}`; /history lists yours with their ids.")


def _unwrap(error: BaseException) -> BaseException:
    from discord import app_commands

    if isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError):
        return error.__cause__ or error
    return error


def expected(error: BaseException) -> bool:
    """True for refusals the user caused and was told about; False for bugs and outages."""
    from discord import app_commands

    error = _unwrap(error)
    return isinstance(
        error, BotError | PolicyError | PromptError | QueueError | JobNotFound | app_commands.CheckFailure
    )


def user_message(error: BaseException) -> str:
    """A sentence for the user; unexpected errors are logged with an id and named only by that id."""
    import discord
    from discord import app_commands

    error = _unwrap(error)
    if isinstance(error, app_commands.MissingPermissions):
        return "This command needs the Manage Server permission."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server channel."
    if isinstance(error, PromptError):
        return str(error)
    if isinstance(error, QueueClosed):
        return "The bot is restarting and takes no new jobs for a moment; try again shortly."
    if isinstance(error, BotError | PolicyError | QueueError | JobNotFound):
        return str(error)
    if isinstance(error, JobCancelled):
        return "cancelled"
    if isinstance(error, OutOfMemoryError):
        return "the GPU ran out of memory; try a smaller --ar or fewer steps"
    if isinstance(error, GenerationError | ModelLoadError):
        return str(error) or type(error).__name__
    if isinstance(error, StoreError):
        return "The database is not answering right now; try again in a minute."
    if isinstance(error, discord.HTTPException):
        return "Discord did not accept my message; try again in a moment."
    incident = secrets.token_hex(4)
    log.error("unexpected error (incident %s)", incident, exc_info=error)
    return f"Something went wrong on my side (incident `{incident}`); the bot's admin can find it in the log."
