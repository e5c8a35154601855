"""The bot's own errors, and the one place that turns any exception into the sentence a member sees.

Errors we raise on purpose already carry a message written for people; anything else is a bug,
logged with an incident id the member can quote to the admin. No Discord here: `bot.jobs` uses it.
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

__all__ = ["BotError", "UnknownJob", "user_message"]

log = logging.getLogger(__name__)


class BotError(Exception):
    """A request the bot refuses for a reason the user can act on; the message says what to do."""


class UnknownJob(BotError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"I know no job `{job_id}`; /history lists yours with their ids.")


def user_message(error: BaseException) -> str:
    """A sentence for the member; an unexpected error is logged with an incident id and named only by it.

    Discord's own errors are worded by `bot.replies`, which falls back to this.
    """
    if isinstance(error, QueueClosed):
        return "The bot is restarting and takes no new jobs for a moment; try again shortly."
    if isinstance(error, BotError | PolicyError | PromptError | QueueError | JobNotFound):
        return str(error)
    if isinstance(error, JobCancelled):
        return "cancelled"
    if isinstance(error, OutOfMemoryError):
        return "the GPU ran out of memory; try a smaller --ar or fewer steps"
    if isinstance(error, GenerationError | ModelLoadError):
        return str(error) or type(error).__name__
    if isinstance(error, StoreError):
        return "The database is not answering right now; try again in a minute."
    incident = secrets.token_hex(4)
    log.error("unexpected error (incident %s)", incident, exc_info=error)
    return f"Something went wrong on my side (incident `{incident}`); the bot's admin can find it in the log."
