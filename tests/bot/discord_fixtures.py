"""Starting the real ImagineBot against the loopback fake Discord, with a simulated or tiny engine.

`async with started_bot(fake, config, backend) as world:` builds the services with `bot.services`,
as `imaginebot run` does, and runs the bot with `run_bot`, which fails the test on any handler
exception or traceback the bot logs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.client import INTENTS, ImagineBot
from bot.config import Config
from bot.jobs import JobService
from bot.services import Services, open_services
from engine.backend import Backend
from fakediscord import FakeDiscord, MessageRecord, RunningBot, run_bot

__all__ = ["BotWorld", "custom_id", "grid_message", "imagine_grid", "make_config", "started_bot"]


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """Config for a test: its own data dir and database, no `.env`, quick progress edits."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "discord_token": "fake-bot-token",
        "model": "simulated",
        "progress_interval_s": 0.5,
        "web_port": 0,  # no gallery unless a test asks for one (`free_port()`): tests run side by side
    }
    values.update(overrides)
    return Config(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class BotWorld:
    fake: FakeDiscord
    running: RunningBot
    bot: ImagineBot
    services: Services

    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def jobs(self) -> JobService:
        return self.services.jobs


@contextlib.asynccontextmanager
async def started_bot(
    fake: FakeDiscord,
    config: Config,
    backend: Backend | None,
    *,
    require_sync: bool = True,
    wait_jobs: bool = True,
) -> AsyncIterator[BotWorld]:
    """Run an ImagineBot on `bot.services`, as `imaginebot run` does; wait for its jobs before closing
    (`wait_jobs=False` stops it like a crash would: unfinished jobs stay unfinished in the database)."""
    async with open_services(config, backend=backend, grace_s=1.0) as services:
        bot = ImagineBot(services, intents=INTENTS)
        async with run_bot(bot, fake, require_sync=require_sync, error_loggers=("discord", "bot")) as running:
            yield BotWorld(fake, running, bot, services)
            if wait_jobs:
                await services.jobs.wait_idle()
            else:  # like a crash: what runs is left unfinished, with no last word to Discord or the database
                await services.queue.close(grace_s=0)
                await services.jobs.wait_idle()
            # Nothing the bot sent broke a rule production Discord enforces (late acks, limits, ...).
            assert fake.state.violations == [], fake.state.violations


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
