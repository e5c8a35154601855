"""Starting the real ImagineBot against the loopback fake Discord, with a simulated or tiny engine.

`async with started_bot(fake, settings, backend) as world:` builds the same objects `bot.app` builds
(migrated SQLite database, LocalQueue, JobService, ImagineBot) and runs the bot with `run_bot`, which
fails the test on any handler exception; the bot's own `handler_errors` must stay empty too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.client import INTENTS, ImagineBot
from bot.jobs import JobService
from bot.settings import Settings
from bot.store.db import Database
from bot.store.migrate import upgrade
from engine.backend import Backend
from engine.queue import LocalQueue
from tests.fakediscord import FakeDiscord, MessageRecord, RunningBot, run_bot

__all__ = ["BotWorld", "custom_id", "grid_message", "imagine_grid", "make_settings", "started_bot"]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: its own data dir and database, no `.env`, quick progress edits."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "discord_token": "fake-bot-token",
        "model": "simulated",
        "progress_interval_s": 0.5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class BotWorld:
    fake: FakeDiscord
    running: RunningBot
    bot: ImagineBot
    settings: Settings
    queue: LocalQueue

    @property
    def jobs(self) -> JobService:
        return self.bot.jobs


@contextlib.asynccontextmanager
async def started_bot(
    fake: FakeDiscord,
    settings: Settings,
    backend: Backend,
    *,
    require_sync: bool = True,
    wait_jobs: bool = True,
) -> AsyncIterator[BotWorld]:
    """Run an ImagineBot wired as `bot.app.run` wires it; wait for its jobs before closing
    (`wait_jobs=False` stops it like a crash would: unfinished jobs stay unfinished in the database)."""
    await upgrade(settings.database_url)
    db = await Database.connect(settings.database_url)
    queue = LocalQueue(
        [backend],
        max_running_per_owner=settings.max_running_per_owner,
        max_waiting_per_owner=settings.max_waiting_per_owner,
    )
    await queue.start()
    jobs = JobService(db=db, queue=queue, settings=settings)
    bot = ImagineBot(settings=settings, db=db, queue=queue, jobs=jobs, intents=INTENTS)
    try:
        async with run_bot(bot, fake, require_sync=require_sync) as running:
            yield BotWorld(fake, running, bot, settings, queue)
            if wait_jobs:
                await jobs.wait_idle()
            assert bot.handler_errors == [], bot.handler_errors
            # Nothing the bot sent broke a rule production Discord enforces (late acks, limits, ...).
            assert fake.state.violations == [], fake.state.violations
    finally:
        await queue.close(grace_s=1.0)
        await jobs.close()
        await db.close()


def grid_message(fake: FakeDiscord, content_start: str) -> MessageRecord | None:
    """The message in #general whose content starts with `content_start` and carries the 9 buttons."""
    for message in fake.messages_in(fake.channel):
        if message.content.startswith(content_start) and len(message.custom_ids()) == 9:
            return message
    return None


async def imagine_grid(
    world: BotWorld, prompt: str, *, user: Any = None, wait_s: float = 15
) -> MessageRecord:
    """Run /imagine as `user` and wait for its finished grid message."""
    fake = world.fake
    member = user or fake.member
    before = {m.id for m in fake.messages_in(fake.channel) if len(m.custom_ids()) == 9}
    interaction = await fake.slash("imagine", {"prompt": prompt}, user=member)
    await interaction.response(timeout=3)
    return await fake.wait_for_message(
        lambda m: m.id not in before and len(m.custom_ids()) == 9 and f"<@{member.user.id}>" in m.content,
        timeout=wait_s,
    )


def custom_id(message: MessageRecord, label: str) -> str:
    """The custom_id of the button labelled `label` (or with emoji `label`)."""
    for button in message.buttons():
        emoji = (button.get("emoji") or {}).get("name")
        if label in (button.get("label"), emoji) and "custom_id" in button:
            return str(button["custom_id"])
    raise AssertionError(f"no button {label!r} on message {message.id}: {message.button_labels()}")
