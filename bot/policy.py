"""Who may generate what, and how much: pure functions over plain data.

Nothing here touches Discord or the database; callers load the rules and usage and pass them in.

PolicyError
├── BannedWord          the prompt contains a word the guild banned
├── ChannelNotAllowed   the bot does not answer in this channel
├── QuotaExceeded       the user's jobs, GPU time or hosted images for today are used up
├── EngineCannotHonour  the prompt gives a parameter (or a picture) the job's engine cannot honour
├── TooManyJobs         the user already has the most waiting or running jobs allowed
└── NotJobOwner         the guild restricts buttons to the job's owner
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from engine.backend import Capabilities
from engine.types import Mode

if TYPE_CHECKING:
    from bot.prompt import Request

__all__ = [
    "BannedWord",
    "ChannelNotAllowed",
    "EngineCannotHonour",
    "FlaggedImages",
    "GalleryAccess",
    "Limits",
    "NotJobOwner",
    "PolicyError",
    "QuotaExceeded",
    "QuotaRuleSpec",
    "QuotaScope",
    "TooManyJobs",
    "Usage",
    "billed_images",
    "check_banned_words",
    "check_button_press",
    "check_channel",
    "check_engine_honours",
    "check_job_counts",
    "check_quota",
    "day_window",
    "find_banned_word",
    "flagged_images_get",
    "given_parameters",
    "resolve_limits",
    "withheld_reason",
]


class PolicyError(Exception):
    """A request was refused by policy; the message is fit to show the user."""


class BannedWord(PolicyError):
    def __init__(self, word: str) -> None:
        self.word = word
        super().__init__(f"Your prompt contains `{word}`, which this server does not allow; rephrase it.")


class ChannelNotAllowed(PolicyError):
    def __init__(self, allowed: Sequence[int]) -> None:
        self.allowed = tuple(allowed)
        where = ", ".join(f"<#{c}>" for c in self.allowed)
        super().__init__(f"I only make images in {where} on this server.")


class QuotaExceeded(PolicyError):
    def __init__(self, what: str, limit: float, resets_at: datetime) -> None:
        self.what = what
        self.limit = limit
        self.resets_at = resets_at
        stamp = int(resets_at.timestamp())
        super().__init__(
            f"You have used today's {_fmt(limit)} {what}; your quota resets <t:{stamp}:R> (<t:{stamp}:t>)."
        )


class TooManyJobs(PolicyError):
    def __init__(self, state: str, limit: int) -> None:
        self.state = state
        self.limit = limit
        super().__init__(
            f"You already have {limit} jobs {state}, the most allowed; "
            "wait for one to finish or cancel one with /cancel."
        )


class EngineCannotHonour(PolicyError):
    def __init__(self, engine: str, flags: Sequence[str]) -> None:
        self.engine = engine
        self.flags = tuple(flags)
        named = " or ".join(f"`{flag}`" if flag.startswith("--") else flag for flag in self.flags)
        them = "it" if len(self.flags) == 1 else "them"
        super().__init__(f"{engine} can't honour {named}; remove {them}.")


class NotJobOwner(PolicyError):
    def __init__(self, owner_id: int) -> None:
        self.owner_id = owner_id
        super().__init__(f"On this server only <@{owner_id}> can use the buttons of their own images.")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- quotas ---------------------------------------------------------------------------------


class QuotaScope(enum.StrEnum):
    """Whom a quota rule is for; stored by value in `quota_rules.scope`."""

    GUILD = "guild"  # the whole server's default; target_id is None
    ROLE = "role"  # each member holding the role (target_id = role id)
    USER = "user"  # one member (target_id = user id)


@dataclass(frozen=True, slots=True)
class QuotaRuleSpec:
    """One stored quota rule. For the per-day limits None means unlimited; for the job-count limits
    None means "the bot's configured default"."""

    scope: QuotaScope
    target_id: int | None
    jobs_per_day: int | None = None
    gpu_minutes_per_day: float | None = None
    max_waiting: int | None = None
    max_running: int | None = None
    images_per_day: int | None = None
    """Images from hosted engines (which cost money per image) per day."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits that apply to one user right now (None = unlimited)."""

    jobs_per_day: int | None
    gpu_minutes_per_day: float | None
    max_waiting: int
    max_running: int
    source: str = "default"
    """Which rule decided, for /info: `default`, `guild`, `role`, `user`."""
    images_per_day: int | None = None
    """Images from hosted engines per day."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Jobs and GPU seconds a member used in a window (the quota day): finished ones from the ledger,
    plus their jobs still waiting or running when a new job is checked against the quota."""

    jobs: int = 0
    gpu_seconds: float = 0.0
    hosted_images: int = 0
    """Images hosted engines made (or, for jobs not finished yet, may make)."""

    @property
    def gpu_minutes(self) -> float:
        return self.gpu_seconds / 60


def _most_generous(values: Iterable[float | None]) -> float | None:
    """None (unlimited) beats any number; otherwise the largest."""
    best: float | None = 0.0
    for value in values:
        if value is None:
            return None
        best = value if best is None else max(best, value)
    return best


def resolve_limits(
    rules: Iterable[QuotaRuleSpec],
    *,
    user_id: int,
    role_ids: Iterable[int] = (),
    default_max_waiting: int,
    default_max_running: int,
) -> Limits:
    """The most specific rule wins (user > role > guild); among several matching roles, the most generous."""
    roles = set(role_ids)
    user_rule: QuotaRuleSpec | None = None
    role_rules: list[QuotaRuleSpec] = []
    guild_rule: QuotaRuleSpec | None = None
    for rule in rules:
        if rule.scope is QuotaScope.USER and rule.target_id == user_id:
            user_rule = rule
        elif rule.scope is QuotaScope.ROLE and rule.target_id in roles:
            role_rules.append(rule)
        elif rule.scope is QuotaScope.GUILD:
            guild_rule = rule

    def counts(rule: QuotaRuleSpec) -> tuple[int, int]:
        waiting = rule.max_waiting if rule.max_waiting is not None else default_max_waiting
        running = rule.max_running if rule.max_running is not None else default_max_running
        return waiting, running

    if user_rule is not None:
        waiting, running = counts(user_rule)
        return Limits(
            user_rule.jobs_per_day,
            user_rule.gpu_minutes_per_day,
            waiting,
            running,
            "user",
            user_rule.images_per_day,
        )
    if role_rules:
        jobs = _most_generous(r.jobs_per_day for r in role_rules)
        minutes = _most_generous(r.gpu_minutes_per_day for r in role_rules)
        images = _most_generous(r.images_per_day for r in role_rules)
        waiting = max(counts(r)[0] for r in role_rules)
        running = max(counts(r)[1] for r in role_rules)
        return Limits(
            None if jobs is None else int(jobs),
            minutes,
            waiting,
            running,
            "role",
            None if images is None else int(images),
        )
    if guild_rule is not None:
        waiting, running = counts(guild_rule)
        return Limits(
            guild_rule.jobs_per_day,
            guild_rule.gpu_minutes_per_day,
            waiting,
            running,
            "guild",
            guild_rule.images_per_day,
        )
    return Limits(None, None, default_max_waiting, default_max_running, "default")


def day_window(now: datetime) -> tuple[datetime, datetime]:
    """The quota day containing `now`: UTC midnight to the next UTC midnight."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def check_quota(
    limits: Limits, usage: Usage, *, now: datetime, new_jobs: int = 1, new_hosted_images: int = 0
) -> None:
    """Raise `QuotaExceeded` if `new_jobs` more jobs (making `new_hosted_images` images on hosted
    engines) would go over today's limits."""
    _, resets_at = day_window(now)
    if limits.jobs_per_day is not None and usage.jobs + new_jobs > limits.jobs_per_day:
        raise QuotaExceeded("jobs", limits.jobs_per_day, resets_at)
    if (
        limits.images_per_day is not None
        and new_hosted_images
        and usage.hosted_images + new_hosted_images > limits.images_per_day
    ):
        raise QuotaExceeded("hosted-engine images", limits.images_per_day, resets_at)
    # GPU time is only known after a job ran, so refuse once the minutes are used up.
    if limits.gpu_minutes_per_day is not None and usage.gpu_seconds >= limits.gpu_minutes_per_day * 60:
        raise QuotaExceeded("GPU minutes", limits.gpu_minutes_per_day, resets_at)


def check_job_counts(limits: Limits, *, waiting: int, running: int, new_jobs: int = 1) -> None:
    """Raise `TooManyJobs` if `new_jobs` more would exceed the user's waiting plus running allowance."""
    # A new job runs at once while one of the user's running slots is free; only the rest wait.
    free_running = max(0, limits.max_running - running)
    if waiting + new_jobs > limits.max_waiting + free_running:
        raise TooManyJobs("waiting", limits.max_waiting)


# --- what an engine honours ----------------------------------------------------------------

_FLAGS = {
    "aspect": "--ar",
    "no": "--no",
    "chaos": "--chaos",
    "stylize": "--stylize",
    "quality": "--quality",
    "stop": "--stop",
    "tile": "--tile",
    "iw": "--iw",
    "seed": "--seed",
    "steps": "--steps",
    "cfg": "--cfg",
    "sampler": "--sampler",
}
"""`engine.backend.PARAMETERS` → the flag a member writes."""


def given_parameters(request: Request) -> list[str]:
    """The parameters (long names, `engine.backend.PARAMETERS`) a parsed prompt sets away from
    Midjourney's defaults, by hand or through the member's saved defaults."""
    given = {
        "aspect": request.aspect_ratio != (1, 1),
        "no": bool(request.negative_prompt),
        "chaos": request.chaos != 0,
        "stylize": request.stylize != 100,
        "quality": request.quality != 1.0,
        "stop": request.stop != 100,
        "tile": request.tile,
        "iw": bool(request.image_prompts) and request.image_weight != 1.0,
        "seed": request.seed is not None,
        "steps": request.steps is not None,
        "cfg": request.cfg is not None,
        "sampler": request.sampler is not None,
    }
    return [name for name, set_ in given.items() if set_]


def billed_images(mode: Mode, count: int, capabilities: Capabilities) -> int:
    """How many images a job has a paid API make (what `/quota` images per day counts): all of them on a
    hosted engine, but none for an upscale, which every engine here resamples locally."""
    return count if capabilities.hosted and mode is not Mode.UPSCALE else 0


def check_engine_honours(request: Request, capabilities: Capabilities) -> None:
    """Raise `EngineCannotHonour` for the parameters (and pictures) `request` gives that the engine
    would otherwise ignore: a prompt is never silently half-done."""
    refused = [_FLAGS[name] for name in given_parameters(request) if name not in capabilities.honours]
    if request.image_prompts and not capabilities.image_prompts:
        refused.append("image prompts (links or attachments)")
    if refused:
        raise EngineCannotHonour(capabilities.engine, refused)


# --- words and places -----------------------------------------------------------------------


def find_banned_word(text: str, banned: Iterable[str]) -> str | None:
    """The first banned word or phrase found in `text` as a whole word, case-insensitively."""
    lowered = text.casefold()
    for word in banned:
        word = word.strip()
        if word and re.search(rf"(?<!\w){re.escape(word.casefold())}(?!\w)", lowered):
            return word
    return None


def check_banned_words(text: str, banned: Iterable[str]) -> None:
    if (word := find_banned_word(text, banned)) is not None:
        raise BannedWord(word)


def check_channel(channel_id: int, allowed: Sequence[int]) -> None:
    """An empty allow-list means every channel."""
    if allowed and channel_id not in allowed:
        raise ChannelNotAllowed(allowed)


def check_button_press(*, presser_id: int, owner_id: int, owner_only: bool) -> None:
    if owner_only and presser_id != owner_id:
        raise NotJobOwner(owner_id)


# --- moderation -------------------------------------------------------------------------------


class GalleryAccess(enum.StrEnum):
    """Who sees a server's jobs in the web gallery (`/config gallery`); a member always sees their own."""

    OFF = "off"
    """Each member sees only their own jobs."""
    MEMBERS = "members"
    """Every member who opens the gallery from the server (`/gallery`) sees the server's jobs."""
    PUBLIC = "public"
    """Anyone with the gallery's address sees the server's jobs, signed in or not."""


class FlaggedImages(enum.StrEnum):
    """What an image the safety check flagged gets on a server (`/config moderation`). The rule applies
    in age-restricted channels only: everywhere else a flagged image is always withheld."""

    BLOCK = "block"
    """Withheld: never posted, never kept."""
    SPOILER = "spoiler"
    """Posted behind Discord's spoiler blur."""
    ALLOW = "allow"
    """Posted like any other."""


def flagged_images_get(rule: FlaggedImages, *, age_restricted: bool) -> FlaggedImages:
    """What a flagged image gets in a channel: the server's rule where Discord marks the channel
    age-restricted, `BLOCK` anywhere else (DMs and the terminal included)."""
    return rule if age_restricted else FlaggedImages.BLOCK


def withheld_reason(*, age_restricted: bool) -> str:
    """Why a job's flagged images were withheld, for its owner."""
    why = (
        "this server blocks flagged images"
        if age_restricted
        else "flagged images are posted only in age-restricted channels"
    )
    return f"The safety check flagged what this job made, and {why}; nothing was kept."
