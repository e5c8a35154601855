"""The one place that words Discord messages: content for jobs and commands, and their files.

Content follows Midjourney's wording: `**<prompt>** - <@user> (Waiting to start)`, `(37%)`, then the
result. Mentions are limited to the job's owner so a prompt can never ping `@everyone`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import discord
from PIL import Image

from bot.jobs import JobCard, UserInfo, message_url
from bot.policy import FlaggedImages, GalleryAccess
from bot.store.models import Job, JobKind, JobStatus

__all__ = [
    "ASPECT_PRESETS",
    "REGION_CELL_NAMES",
    "STYLIZE_PRESETS",
    "attachment_file",
    "cancelled_content",
    "failed_content",
    "flagged_images_rule",
    "gallery_link_content",
    "gallery_rule",
    "history_content",
    "info_content",
    "moderated_content",
    "only_mention",
    "preview_file",
    "progress_content",
    "region_picker_content",
    "result_content",
    "safety_check_text",
    "settings_content",
    "waiting_content",
]

MAX_CONTENT = 2000
_MAX_PROMPT_SHOWN = 1500

STYLIZE_PRESETS: tuple[tuple[str, str], ...] = (
    ("Stylize low", "50"),
    ("Stylize med", "100"),
    ("Stylize high", "250"),
    ("Stylize very high", "750"),
)
ASPECT_PRESETS: tuple[str, ...] = ("1:1", "3:2", "2:3", "16:9", "9:16")


def only_mention(user_id: int) -> discord.AllowedMentions:
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(user_id)])


def _prompt(text: str) -> str:
    shown = text if len(text) <= _MAX_PROMPT_SHOWN else text[: _MAX_PROMPT_SHOWN - 1] + "…"
    return discord.utils.escape_markdown(shown)


def _head(card: JobCard) -> str:
    if card.kind is JobKind.UPSCALE and not card.upscale:
        return f"**{_prompt(card.prompt)}** - Image #{card.parent_index} <@{card.user_id}>"
    what = card.what
    if what is not None:
        return f"**{_prompt(card.prompt)}** - {what} by <@{card.user_id}>"
    return f"**{_prompt(card.prompt)}** - <@{card.user_id}>"


def waiting_content(card: JobCard) -> str:
    return f"{_head(card)} (Waiting to start)"


def started_below_content(jobs: int) -> str:
    return (
        "Got your pictures; your job is below."
        if jobs == 1
        else f"Got your pictures; your {jobs} jobs are below."
    )


def progress_content(card: JobCard, percent: int) -> str:
    return f"{_head(card)} ({percent}%)"


def elapsed_content(card: JobCard, seconds: int) -> str:
    """Progress of an engine that can't say how far it is: how long it has been at it."""
    return f"{_head(card)} (working, {seconds} s)"


def result_content(card: JobCard) -> str:
    return _head(card)


def failed_content(card: JobCard, reason: str) -> str:
    return f"{_head(card)} (failed: {reason})"[:MAX_CONTENT]


def cancelled_content(card: JobCard) -> str:
    return f"{_head(card)} (cancelled)"


def moderated_content(card: JobCard, reason: str) -> str:
    """The job's message once the safety check withheld its images: no image, and why."""
    return f"{_head(card)} (withheld by this server's moderation: {reason})"[:MAX_CONTENT]


REGION_CELL_NAMES = (
    "Top left",
    "Top",
    "Top right",
    "Left",
    "Middle",
    "Right",
    "Bottom left",
    "Bottom",
    "Bottom right",
)
"""Vary (Region)'s cells 1–9, a 3x3 grid over the image row by row from the top left."""


def region_picker_content() -> str:
    """Vary (Region)'s private message above its select."""
    return (
        "**Vary (Region)**: pick the parts of the image to repaint (a 3x3 grid; several are fine), "
        "then say what goes there. Everything else stays as it is."
    )


def preview_file(preview: Image.Image) -> discord.File:
    """A small JPEG of the current latents: a 512² preview is ~15 KiB and a few ms to encode (as PNG,
    ~180 KiB and tens of ms on the event loop; bench/post_gpu_latency.py)."""
    buffer = io.BytesIO()
    preview.convert("RGB").save(buffer, format="JPEG", quality=80)
    buffer.seek(0)
    return discord.File(buffer, filename="preview.jpg")


# --- commands around it ---------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return f"<t:{int(moment.timestamp())}:R>"


def info_content(user_id: int, info: UserInfo) -> str:
    """The /info panel: queue, running jobs and today's usage against the quota."""
    limits, usage, active = info.limits, info.usage, info.active
    lines = [f"**Your info** - <@{user_id}>", ""]
    jobs_cap = "unlimited" if limits.jobs_per_day is None else str(limits.jobs_per_day)
    minutes_cap = "unlimited" if limits.gpu_minutes_per_day is None else f"{limits.gpu_minutes_per_day:g}"
    lines.append(f"**Jobs today:** {usage.jobs} of {jobs_cap}")
    lines.append(f"**GPU minutes today:** {usage.gpu_seconds / 60:.2f} of {minutes_cap}")
    if usage.hosted_images or limits.images_per_day is not None:
        images_cap = "unlimited" if limits.images_per_day is None else str(limits.images_per_day)
        lines.append(f"**Hosted-engine images today:** {usage.hosted_images} of {images_cap}")
    lines.append(f"**Quota resets:** {_when(info.resets_at)}")
    lines.append(f"**At once:** up to {limits.max_running} running and {limits.max_waiting} waiting")
    lines.append("")
    if not active:
        lines.append("**Queue:** no jobs waiting or running.")
    for job, position, estimate in active:
        if position == 0:
            where = "running"
        elif position is None:
            where = job.status.value
        else:
            where = f"#{position} in queue"
        eta = f", about {estimate:.0f}s left" if estimate is not None else ""
        lines.append(f"`{job.id}` {where}{eta}: {_prompt(job.prompt)[:80]}")
    return "\n".join(lines)[:MAX_CONTENT]


def history_content(user_id: int, jobs: Sequence[Job]) -> str:
    if not jobs:
        return f"<@{user_id}> has no jobs yet."
    lines = [f"**Recent jobs** of <@{user_id}>"]
    for job in jobs:
        link = f" {message_url(job.guild_id, job.channel_id, job.message_id)}" if job.message_id else ""
        status = "" if job.status is JobStatus.SUCCEEDED else f" ({job.status.value})"
        if job.flagged and job.status is JobStatus.SUCCEEDED:
            status = " (flagged)"
        lines.append(f"`{job.id}` {job.kind.value}{status}: {_prompt(job.prompt)[:80]}{link}")
    return "\n".join(lines)[:MAX_CONTENT]


def settings_content(*, remix: bool, defaults: dict[str, str], model: str | None) -> str:
    shown = " ".join(f"--{key} {value}" for key, value in sorted(defaults.items())) or "none"
    return (
        "**Your settings** (parameters typed in a prompt override them)\n"
        f"Remix mode: {'on' if remix else 'off'} · Model: {model or 'server default'} · Defaults: `{shown}`"
    )


def safety_check_text(checker: str | None, *, setting: str, remote: bool) -> str:
    """/config show's line on what checks images: the checker's name, or why there is none."""
    if remote:
        return "decided on the workers: each checks with its own IMAGINE_SAFETY_CHECKER and model"
    if checker is not None:
        return f"`{checker}`"
    if setting == "none":
        return "none: turned off by the bot's owner (IMAGINE_SAFETY_CHECKER=none)"
    return "none: the model ships no safety checker"


_FLAGGED_IMAGES = {
    FlaggedImages.BLOCK: "blocked: never posted, never kept",
    FlaggedImages.SPOILER: "posted behind a spoiler in age-restricted channels, withheld elsewhere",
    FlaggedImages.ALLOW: "posted as they are in age-restricted channels, withheld elsewhere",
}


def flagged_images_rule(rule: FlaggedImages) -> str:
    """/config show's line on what flagged images get."""
    return f"`{rule.value}`: {_FLAGGED_IMAGES[rule]}"


_GALLERY = {
    GalleryAccess.OFF: "each member sees only their own jobs",
    GalleryAccess.MEMBERS: "every member who opens it with /gallery sees everyone's jobs",
    GalleryAccess.PUBLIC: "anyone with the gallery's address sees everyone's jobs",
}


def gallery_rule(rule: GalleryAccess) -> str:
    """/config show's line on who sees the server's jobs in the web gallery."""
    return f"`{rule.value}`: {_GALLERY[rule]}"


def gallery_link_content(url: str, *, minutes: int, rule: GalleryAccess, admin: bool) -> str:
    """/gallery's private answer: the member's own sign-in link and what they will see."""
    sees = {
        GalleryAccess.OFF: "your own jobs (this server keeps each member's to themselves)",
        GalleryAccess.MEMBERS: "every member's jobs on this server",
        GalleryAccess.PUBLIC: "every member's jobs on this server (its gallery is public)",
    }[rule]
    extra = " and the admin page (usage per day and per member)" if admin else ""
    return (
        f"**[Open the gallery]({url})** — it shows {sees}{extra}.\n"
        f"The link signs you in as you: don't share it. It works for {minutes} minutes; "
        "the session it opens lasts a day."
    )


def attachment_file(path: Path, *, spoiler: bool = False) -> discord.File:
    """The image in memory: discord.py leaves files it did not open itself unclosed on some routes.
    A `spoiler` (a flagged image) is blurred until a member clicks it (`SPOILER_` filename)."""
    return discord.File(io.BytesIO(path.read_bytes()), filename=path.name, spoiler=spoiler)
