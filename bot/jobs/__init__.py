"""Jobs, from a member's request to the images on screen, with no Discord in it.

`JobService` is the one way through: `imagine`/`press` check the policy, store the jobs and queue
them, and return `JobTicket`s that the service follows until the job has ended and been shown
through the `Presenter` it was started with. `conversions` maps prompts, engine requests and stored
rows onto each other; `types` holds what callers share.
"""

from __future__ import annotations

from bot.jobs.service import JobService, message_url
from bot.jobs.types import (
    OPERATOR,
    ButtonAction,
    JobCard,
    JobTicket,
    Notify,
    Presenter,
    Requester,
    UserInfo,
)

__all__ = [
    "OPERATOR",
    "ButtonAction",
    "JobCard",
    "JobService",
    "JobTicket",
    "Notify",
    "Presenter",
    "Requester",
    "UserInfo",
    "message_url",
]
